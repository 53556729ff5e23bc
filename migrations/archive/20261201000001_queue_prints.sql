-- Prints the queue sent: the library archive whose stored file they reuse, and the job; and
-- every sliced plate of a file (the queue prints any plate, the row's own columns describe one).
ALTER TABLE archive.archives
    ADD COLUMN source_archive_id BIGINT,
    ADD COLUMN queue_job_id      BIGINT,
    -- `[{index, prediction_secs, weight_g, printer_model_id, filaments, objects}]`; NULL for
    -- files stored before this column existed (filled from the stored file when first needed).
    ADD COLUMN plate_details     JSONB;
