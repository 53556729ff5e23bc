-- Utilisation: every printer's activity over time, from the scheduler's `printer_activity`
-- facts, and summaries of it, so that an answer costs the periods and printers asked for, not
-- the transitions (see services/stats/src/utilisation.rs).

-- One row per fact: the printer was in `activity` from `at` until the next fact's `at`
-- (`until`; NULL: it still is). Every fact is kept (one per instant), whatever order they
-- arrived in; consecutive facts of the same state are one spell.
CREATE TABLE stats.activity (
    printer_id BIGINT      NOT NULL,
    at         TIMESTAMPTZ NOT NULL,
    activity   TEXT        NOT NULL,
    site       TEXT        NOT NULL DEFAULT '',
    until      TIMESTAMPTZ,
    PRIMARY KEY (printer_id, at)
);
-- The spells going on now (counted at question time: summaries hold ended spells only).
CREATE INDEX activity_open ON stats.activity (printer_id) WHERE until IS NULL;
-- The spells overlapping a partial day at a range's ends.
CREATE INDEX activity_span ON stats.activity USING gist (tstzrange(at, until, '[)'));

-- Seconds of ended spells by period (UTC day, month, year), per printer and per site, a column
-- per state: a period of a printer is one row, so two years of 500 printers are 1,000 year rows.
CREATE TABLE stats.activity_day (
    period         DATE   NOT NULL,
    printer_id     BIGINT NOT NULL,
    site           TEXT   NOT NULL,
    printing       DOUBLE PRECISION NOT NULL DEFAULT 0,
    paused         DOUBLE PRECISION NOT NULL DEFAULT 0,
    awaiting_clear DOUBLE PRECISION NOT NULL DEFAULT 0,
    idle_queued    DOUBLE PRECISION NOT NULL DEFAULT 0,
    idle           DOUBLE PRECISION NOT NULL DEFAULT 0,
    error          DOUBLE PRECISION NOT NULL DEFAULT 0,
    offline        DOUBLE PRECISION NOT NULL DEFAULT 0,
    maintenance    DOUBLE PRECISION NOT NULL DEFAULT 0,
    PRIMARY KEY (period, printer_id, site)
);
CREATE INDEX activity_day_printer ON stats.activity_day (printer_id, period);
CREATE TABLE stats.activity_month (LIKE stats.activity_day INCLUDING DEFAULTS);
ALTER TABLE stats.activity_month ADD PRIMARY KEY (period, printer_id, site);
CREATE INDEX activity_month_printer ON stats.activity_month (printer_id, period);
CREATE TABLE stats.activity_year (LIKE stats.activity_day INCLUDING DEFAULTS);
ALTER TABLE stats.activity_year ADD PRIMARY KEY (period, printer_id, site);
CREATE INDEX activity_year_printer ON stats.activity_year (printer_id, period);

CREATE TABLE stats.activity_site_day (LIKE stats.activity_day INCLUDING DEFAULTS);
ALTER TABLE stats.activity_site_day DROP COLUMN printer_id;
ALTER TABLE stats.activity_site_day ADD PRIMARY KEY (period, site);

-- Durations (plate clear: a print's end to its plate marked cleared, by the day it was
-- cleared; queue wait: a job queued to started, by the day it started) as counts in
-- logarithmic buckets (bucket b holds 1.1^b to 1.1^(b+1) seconds), per printer and period.
CREATE TABLE stats.waits_day (
    period     DATE    NOT NULL,
    printer_id BIGINT  NOT NULL,
    site       TEXT    NOT NULL,
    kind       TEXT    NOT NULL CHECK (kind IN ('plate_clear', 'queue_wait')),
    bucket     INTEGER NOT NULL,
    count      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (period, printer_id, site, kind, bucket)
);
CREATE TABLE stats.waits_month (LIKE stats.waits_day INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE stats.waits_month ADD PRIMARY KEY (period, printer_id, site, kind, bucket);
CREATE TABLE stats.waits_year (LIKE stats.waits_day INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE stats.waits_year ADD PRIMARY KEY (period, printer_id, site, kind, bucket);

-- The same by site (what the farm's and a site's answers read).
CREATE TABLE stats.waits_site_day (LIKE stats.waits_day INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE stats.waits_site_day DROP COLUMN printer_id;
ALTER TABLE stats.waits_site_day ADD PRIMARY KEY (period, site, kind, bucket);
CREATE TABLE stats.waits_site_month (LIKE stats.waits_site_day INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE stats.waits_site_month ADD PRIMARY KEY (period, site, kind, bucket);
CREATE TABLE stats.waits_site_year (LIKE stats.waits_site_day INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE stats.waits_site_year ADD PRIMARY KEY (period, site, kind, bucket);

-- Each duration counted, once (a redelivered event counts once): `key` is the job for a queue
-- wait, the printer and the clearing's instant for a plate.
CREATE TABLE stats.waits (
    kind       TEXT   NOT NULL,
    key        TEXT   NOT NULL,
    printer_id BIGINT NOT NULL,
    site       TEXT   NOT NULL,
    at         TIMESTAMPTZ NOT NULL,
    seconds    DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE INDEX waits_at ON stats.waits (at);
