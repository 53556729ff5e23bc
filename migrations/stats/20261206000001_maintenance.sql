-- Printer care: maintenance tasks, when each was done on each printer, and which cycles were
-- announced as due. Counted from stats.prints (ended prints: their time and filament).
CREATE TABLE stats.maintenance_tasks (
    id                BIGSERIAL   PRIMARY KEY,
    name              TEXT        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    -- One printer, or every printer of a model, or (both NULL) every printer.
    printer_id        BIGINT,
    model             TEXT,
    every_print_hours DOUBLE PRECISION CHECK (every_print_hours > 0),
    every_prints      BIGINT      CHECK (every_prints > 0),
    every_days        BIGINT      CHECK (every_days > 0),
    every_filament_g  DOUBLE PRECISION CHECK (every_filament_g > 0),
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (printer_id IS NULL OR model IS NULL),
    CHECK (coalesce(every_print_hours, every_prints, every_days, every_filament_g) IS NOT NULL)
);

CREATE TABLE stats.maintenance_done (
    id          BIGSERIAL   PRIMARY KEY,
    task_id     BIGINT      NOT NULL REFERENCES stats.maintenance_tasks (id) ON DELETE CASCADE,
    printer_id  BIGINT      NOT NULL,
    done_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    done_by     TEXT        NOT NULL,
    notes       TEXT        CHECK (length(notes) <= 2000)
);
CREATE INDEX maintenance_done_last ON stats.maintenance_done (task_id, printer_id, done_at DESC);

-- A cycle (task, printer, counted from `since`) announced as due: once each.
CREATE TABLE stats.maintenance_announced (
    task_id     BIGINT      NOT NULL REFERENCES stats.maintenance_tasks (id) ON DELETE CASCADE,
    printer_id  BIGINT      NOT NULL,
    since       TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (task_id, printer_id, since)
);

-- A printer's ended prints since a time, for the counts above.
CREATE INDEX prints_printer_counted ON stats.prints (printer_id, created_at)
    INCLUDE (duration, filament_g) WHERE counted;
