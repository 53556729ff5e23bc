-- Archives: one row per print (or per uploaded 3MF). Owned by the archive service alone.
CREATE TABLE archive.archives (
    id             BIGSERIAL PRIMARY KEY,
    name           TEXT        NOT NULL,
    filename       TEXT        NOT NULL,
    printer_id     BIGINT,
    printer_name   TEXT,
    status         TEXT        NOT NULL
        CHECK (status IN ('printing', 'success', 'failed', 'stopped', 'uploaded')),
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at     TIMESTAMPTZ,
    completed_at   TIMESTAMPTZ,
    duration       BIGINT      CHECK (duration IS NULL OR duration >= 0),
    filament_used  DOUBLE PRECISION,
    filament_type  TEXT,
    notes          TEXT,
    tags           TEXT[]      NOT NULL DEFAULT '{}'
);

CREATE INDEX archives_printer_created ON archive.archives (printer_id, created_at DESC);
CREATE INDEX archives_created ON archive.archives (created_at DESC);
