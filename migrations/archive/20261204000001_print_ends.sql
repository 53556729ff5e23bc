-- Every print end is announced once, by the archive: whichever witness closed a print's record
-- (the gateway that saw it, the printer seen again, the next print, the printer's deletion), a
-- trigger records the end in the transaction that closes the record, and the archive's relay
-- publishes it (`print_complete`, `print_failed`, `print_stopped`, `print_unknown`) and clears
-- it. No write path can close a print without announcing it.
--
-- A print closed from what was seen after it (the printer seen again, another print started)
-- is announced after a grace period: its gateway's own report of the end may still be on its
-- way (handled out of order by another replica), and if it comes meanwhile it replaces the
-- inference before anything is said.
ALTER TABLE archive.archives
    -- Who saw the end: gateway, printer_seen_again, next_print, printer_deleted.
    ADD COLUMN end_witness TEXT,
    -- The printer's error code of a failed print (`0300_8003`).
    ADD COLUMN print_error TEXT,
    -- The printer's task id of the print, when it has one (prints sent through the cloud): two
    -- prints of one job name are told apart by it.
    ADD COLUMN task_id TEXT;

CREATE TABLE archive.print_ends (
    -- One announcement per archive, ever.
    archive_id    BIGINT      PRIMARY KEY,
    -- The archive as it was closed (the announcement says what was known at the end, even if
    -- the archive is deleted before it is published).
    closed        JSONB       NOT NULL,
    recorded      TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Not published before then.
    publish_after TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX print_ends_due ON archive.print_ends (publish_after);

CREATE FUNCTION archive.record_print_end() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO archive.print_ends (archive_id, closed, publish_after)
        VALUES (NEW.id, to_jsonb(NEW) - 'search',
                CASE WHEN NEW.end_witness IN ('next_print', 'printer_seen_again')
                     THEN now() + interval '10 seconds' ELSE now() END)
        ON CONFLICT (archive_id) DO NOTHING;
    PERFORM pg_notify('archive_outbox', '');
    RETURN NULL;
END $$;

CREATE TRIGGER archives_print_end AFTER UPDATE OF status ON archive.archives
    FOR EACH ROW WHEN (OLD.status = 'printing'
        AND NEW.status IN ('success', 'failed', 'stopped', 'unknown'))
    EXECUTE FUNCTION archive.record_print_end();
CREATE TRIGGER archives_print_end_insert AFTER INSERT ON archive.archives
    FOR EACH ROW WHEN (NEW.status IN ('success', 'failed', 'stopped', 'unknown'))
    EXECUTE FUNCTION archive.record_print_end();

-- A gateway that takes a printer over mid-print follows the print by a key of its own: the
-- archive records it as another name of the same print, so the print's end and file find it.
CREATE TABLE archive.print_aliases (
    print_key  TEXT PRIMARY KEY,
    archive_id BIGINT NOT NULL REFERENCES archive.archives (id) ON DELETE CASCADE
);
CREATE INDEX print_aliases_archive ON archive.print_aliases (archive_id);
