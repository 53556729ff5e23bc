-- Prints whose end no gateway saw: ended from what the printer showed when it was seen again,
-- or `unknown` when nothing tells (the printer was deleted, or showed another print).
ALTER TABLE archive.archives DROP CONSTRAINT archives_status_check;
ALTER TABLE archive.archives ADD CONSTRAINT archives_status_check
    CHECK (status IN ('printing', 'success', 'failed', 'stopped', 'uploaded', 'unknown'));
ALTER TABLE archive.archives
    -- Why the end was not seen, and what it was read from.
    ADD COLUMN end_reason TEXT,
    -- The job name the printer reported (`subtask_name`), to recognise the print again.
    ADD COLUMN job_name   TEXT;
