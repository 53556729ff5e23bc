-- The spool inventory: every spool, where it is loaded, and what each print took from it.
-- Owned by the filament service alone.

CREATE TABLE filament.spools (
    id              BIGSERIAL PRIMARY KEY,
    material        TEXT             NOT NULL,
    -- RRGGBBAA, upper case.
    color           TEXT,
    brand           TEXT,
    sub_brand       TEXT,
    diameter        DOUBLE PRECISION NOT NULL DEFAULT 1.75,
    nominal_g       DOUBLE PRECISION NOT NULL,
    remaining_g     DOUBLE PRECISION NOT NULL,
    price           DOUBLE PRECISION,
    -- A Bambu spool's RFID tag (`tray_uuid`): the same tag anywhere is the same spool.
    tag             TEXT UNIQUE,
    -- The spool's id in Spoolman, when the farm keeps its inventory there.
    spoolman_id     BIGINT UNIQUE,
    -- Where it is loaded (both or neither).
    printer_id      BIGINT,
    tray            INT,
    -- When it was put there through the API: a printer's status from before then does not
    -- take it out again.
    placed_at       TIMESTAMPTZ,
    location        TEXT,
    -- remaining_g follows the printer's own measure (AMS `remain` of a tagged spool).
    measured        BOOLEAN          NOT NULL DEFAULT false,
    archived        BOOLEAN          NOT NULL DEFAULT false,
    first_used      TIMESTAMPTZ,
    last_used       TIMESTAMPTZ,
    notes           TEXT,
    created_at      TIMESTAMPTZ      NOT NULL DEFAULT now(),
    -- How often it went under its material's threshold, and how many of those falls were
    -- announced (`spool_low`): a fall is recorded with the change that makes it and announced
    -- after, so a crash in between delays the announcement and loses nothing.
    low_falls       BIGINT           NOT NULL DEFAULT 0,
    announced_falls BIGINT           NOT NULL DEFAULT 0,
    CHECK ((printer_id IS NULL) = (tray IS NULL))
);

-- One spool per tray.
CREATE UNIQUE INDEX spools_in_tray ON filament.spools (printer_id, tray) WHERE printer_id IS NOT NULL;
CREATE INDEX spools_by_material ON filament.spools (material, color) WHERE NOT archived;
CREATE INDEX spools_unannounced ON filament.spools (id) WHERE low_falls > announced_falls;

-- What each filament of each ended print used (one row per archive and 3MF filament id).
CREATE TABLE filament.usage (
    archive_id BIGINT           NOT NULL,
    slot       INT              NOT NULL,
    material   TEXT             NOT NULL,
    color      TEXT,
    grams      DOUBLE PRECISION NOT NULL,
    tray       INT,
    spool_id   BIGINT REFERENCES filament.spools (id),
    -- Whether the spool goes down by it (not when the printer measured the spool when it was
    -- first charged), and the grams taken off its remaining_g for it.
    charged    BOOLEAN          NOT NULL DEFAULT false,
    deducted   DOUBLE PRECISION NOT NULL DEFAULT 0,
    -- Grams written back to Spoolman for it (its spool is Spoolman's).
    reported   DOUBLE PRECISION NOT NULL DEFAULT 0,
    at         TIMESTAMPTZ      NOT NULL,
    PRIMARY KEY (archive_id, slot)
);
CREATE INDEX usage_by_spool ON filament.usage (spool_id, at DESC);
CREATE INDEX usage_by_time ON filament.usage (at);

-- The newest revision of each archive's facts applied (redeliveries and older facts change
-- nothing), and the newest whose spool-priced cost was announced (`filament_used`): a revision
-- that changed the print's usage is announced after its transaction, and one a dead replica
-- left is announced by the next sweep.
CREATE TABLE filament.archives_applied (
    archive_id BIGINT PRIMARY KEY,
    revision   BIGINT NOT NULL,
    printer_id BIGINT,
    site       TEXT,
    announced  BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX archives_unannounced ON filament.archives_applied (archive_id)
    WHERE announced < revision;
