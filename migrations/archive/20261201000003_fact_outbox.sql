-- Every change to an archive is announced to the other services (`archive_updated` and
-- `archive_deleted` on FARM_EVENTS, with the archive's facts): statistics are kept from them. A
-- trigger records the change in the transaction that makes it, so no write path can forget
-- it; the archive service's relay publishes the recorded changes and clears them.
ALTER TABLE archive.archives
    -- The site of the printer that printed it.
    ADD COLUMN site     TEXT,
    -- Counts the archive's changes, so that a reader applies only newer facts.
    ADD COLUMN revision BIGINT NOT NULL DEFAULT 1;

CREATE TABLE archive.outbox (
    id         BIGSERIAL PRIMARY KEY,
    archive_id BIGINT  NOT NULL,
    deleted    BOOLEAN NOT NULL DEFAULT false,
    revision   BIGINT  NOT NULL,
    site       TEXT,
    printer_id BIGINT
);

-- A change is any column but the generated search text (not computed yet in a BEFORE trigger).
CREATE FUNCTION archive.next_revision() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF to_jsonb(OLD) - 'search' - 'revision' IS DISTINCT FROM to_jsonb(NEW) - 'search' - 'revision'
    THEN
        NEW.revision := OLD.revision + 1;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER archives_revision BEFORE UPDATE ON archive.archives
    FOR EACH ROW EXECUTE FUNCTION archive.next_revision();

CREATE FUNCTION archive.record_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO archive.outbox (archive_id, deleted, revision, site, printer_id)
            VALUES (OLD.id, true, OLD.revision + 1, OLD.site, OLD.printer_id);
    ELSE
        INSERT INTO archive.outbox (archive_id, deleted, revision, site, printer_id)
            VALUES (NEW.id, false, NEW.revision, NEW.site, NEW.printer_id);
    END IF;
    PERFORM pg_notify('archive_outbox', '');
    RETURN NULL;
END $$;

CREATE TRIGGER archives_outbox AFTER INSERT OR DELETE ON archive.archives
    FOR EACH ROW EXECUTE FUNCTION archive.record_change();
-- An update that changes nothing is no change (the revision moves only with a change).
CREATE TRIGGER archives_outbox_update AFTER UPDATE ON archive.archives
    FOR EACH ROW WHEN (OLD.revision IS DISTINCT FROM NEW.revision)
    EXECUTE FUNCTION archive.record_change();
