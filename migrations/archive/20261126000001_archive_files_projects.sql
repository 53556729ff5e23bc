-- Projects, archive files and metadata, full-text search, and the events already applied.

CREATE TABLE archive.projects (
    id            BIGSERIAL PRIMARY KEY,
    name          TEXT        NOT NULL,
    description   TEXT,
    color         TEXT CHECK (color IS NULL OR color ~ '^#[0-9A-Fa-f]{6}$'),
    target_count  INTEGER CHECK (target_count IS NULL OR target_count > 0),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

ALTER TABLE archive.archives
    -- `<printer id>/<gateway print key>`: the print this archive follows (NULL for uploads).
    ADD COLUMN print_key          TEXT UNIQUE,
    ADD COLUMN project_id         BIGINT REFERENCES archive.projects (id) ON DELETE SET NULL,
    ADD COLUMN progress           INTEGER,
    ADD COLUMN plates             INTEGER,
    ADD COLUMN plate              INTEGER,
    ADD COLUMN print_time_estimate BIGINT,
    ADD COLUMN weight             DOUBLE PRECISION,
    ADD COLUMN filaments          JSONB NOT NULL DEFAULT '[]',
    ADD COLUMN printer_model_id   TEXT,
    -- Object keys in archive storage; a 3MF is keyed by its SHA-256, so reprints share it.
    ADD COLUMN file_key           TEXT,
    ADD COLUMN file_size          BIGINT,
    ADD COLUMN file_sha256        TEXT,
    ADD COLUMN thumbnail_key      TEXT,
    ADD COLUMN file_error         TEXT;

-- `array_to_string` is only STABLE; tags are plain text, so joining them is immutable.
CREATE FUNCTION archive.tags_text(tags TEXT[]) RETURNS TEXT
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT array_to_string(tags, ' ') $$;

-- Words only: punctuation becomes space first, so `gear-rack.gcode.3mf` is the words `gear`,
-- `rack`, `gcode`, `3mf` (as the API splits a search), not one lexeme per file name: a prefix
-- search then looks at a few lexemes, not at a million unique names.
ALTER TABLE archive.archives ADD COLUMN search tsvector GENERATED ALWAYS AS (
    to_tsvector('simple', regexp_replace(
        coalesce(name, '') || ' ' || coalesce(filename, '') || ' ' || coalesce(notes, '') || ' '
        || archive.tags_text(tags) || ' ' || coalesce(printer_name, ''),
        '[^[:alnum:]]+', ' ', 'g'))
) STORED;

CREATE INDEX archives_search ON archive.archives USING GIN (search);
CREATE INDEX archives_project ON archive.archives (project_id) WHERE project_id IS NOT NULL;
CREATE INDEX archives_status_created ON archive.archives (status, created_at DESC);
CREATE INDEX archives_file_key ON archive.archives (file_key) WHERE file_key IS NOT NULL;
CREATE INDEX archives_printing ON archive.archives (printer_id, started_at DESC)
    WHERE status = 'printing';

-- Events of FARM_EVENTS already applied, written in the same transaction as their effect.
CREATE TABLE archive.applied_events (
    event_id   TEXT PRIMARY KEY,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
