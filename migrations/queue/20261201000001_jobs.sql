-- The print queue. Owned by the scheduler alone; `api` reaches it over NATS.

CREATE SEQUENCE queue.job_position;

CREATE TABLE queue.jobs (
    id                BIGSERIAL PRIMARY KEY,
    archive_id        BIGINT      NOT NULL,
    -- Targets: a printer, else any printer (of `model`, of `site`).
    printer_id        BIGINT,
    model             TEXT,
    site              TEXT,
    plate             INTEGER     NOT NULL DEFAULT 1 CHECK (plate BETWEEN 1 AND 64),
    position          BIGINT      NOT NULL DEFAULT nextval('queue.job_position'),
    status            TEXT        NOT NULL DEFAULT 'pending' CHECK (status IN
                          ('pending', 'dispatching', 'printing', 'completed', 'failed', 'cancelled')),
    scheduled_time    TIMESTAMPTZ,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at        TIMESTAMPTZ,
    completed_at      TIMESTAMPTZ,
    use_ams           BOOLEAN,
    bed_leveling      BOOLEAN     NOT NULL DEFAULT true,
    timelapse         BOOLEAN     NOT NULL DEFAULT false,
    printer_assigned  BIGINT,
    result_archive_id BIGINT,
    error             TEXT,
    attempts          INTEGER     NOT NULL DEFAULT 0,
    -- A dispatch that failed for a reason that may pass is tried again, not before this.
    not_before        TIMESTAMPTZ,
    -- What the library file says, read when the job was queued.
    name              TEXT        NOT NULL,
    filename          TEXT        NOT NULL,
    has_thumbnail     BOOLEAN     NOT NULL DEFAULT false,
    model_id          TEXT,
    filaments         JSONB       NOT NULL DEFAULT '[]',
    -- The dispatch lease: the scheduler replica sending the job, until when.
    claimed_by        TEXT,
    claim_expires     TIMESTAMPTZ,
    ams_mapping       JSONB,
    sent_use_ams      BOOLEAN
);

-- The claim's scans (see the scheduler's dispatch module), each in queue order: a printer's own
-- pending jobs, and pending jobs for any printer by the model they were sliced for (NULL: none).
CREATE INDEX jobs_pending_printer ON queue.jobs (printer_id, position, id)
    WHERE status = 'pending' AND printer_id IS NOT NULL;
CREATE INDEX jobs_pending_any ON queue.jobs (model_id, position, id)
    WHERE status = 'pending' AND printer_id IS NULL;
-- The queue list by printer.
CREATE INDEX jobs_printer ON queue.jobs (printer_id, position) WHERE printer_id IS NOT NULL;
CREATE INDEX jobs_order ON queue.jobs (position, id);
-- A printer has at most one job dispatching or printing: the database says no to a second.
CREATE UNIQUE INDEX jobs_one_per_printer ON queue.jobs (printer_assigned)
    WHERE status IN ('dispatching', 'printing');
-- Dispatches whose scheduler stopped renewing its lease.
CREATE INDEX jobs_dispatching ON queue.jobs (claim_expires) WHERE status = 'dispatching';

-- Whether a printer's plate holds a finished print: a print ended after the last clear.
CREATE TABLE queue.plates (
    printer_id  BIGINT PRIMARY KEY,
    ended_at    TIMESTAMPTZ,
    cleared_at  TIMESTAMPTZ
);

-- Events of FARM_EVENTS already applied, written in the same transaction as their effect.
CREATE TABLE queue.applied_events (
    event_id   TEXT PRIMARY KEY,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
