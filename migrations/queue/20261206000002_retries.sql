-- A job queued again from an error its print hit (`POST /printers/{id}/errors/{id}/retry`):
-- which job it retries; a job is retried once.
ALTER TABLE queue.jobs ADD COLUMN retry_of BIGINT;
CREATE UNIQUE INDEX jobs_retry_of ON queue.jobs (retry_of) WHERE retry_of IS NOT NULL;
