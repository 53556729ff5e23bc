-- Print facts, kept from the archive's `archive_updated` / `archive_deleted` events (never read
-- from the archive's schema), and summaries of them, so that an answer costs the days and
-- printers asked for, not the prints. Owned by the stats service alone.

CREATE TABLE stats.prints (
    archive_id    BIGINT PRIMARY KEY,
    -- The archive's revision these facts are from: only a newer one replaces them.
    revision      BIGINT      NOT NULL,
    -- Ended prints count; prints still printing, library uploads and deleted archives do not.
    counted       BOOLEAN     NOT NULL,
    status        TEXT        NOT NULL,
    printer_id    BIGINT      NOT NULL DEFAULT 0,
    site          TEXT        NOT NULL DEFAULT '',
    project_id    BIGINT      NOT NULL DEFAULT 0,
    filament_type TEXT        NOT NULL DEFAULT '',
    model         TEXT,
    -- When the print started (the archive's `created_at`, as `/archives` filters it).
    created_at    TIMESTAMPTZ NOT NULL,
    duration      BIGINT      NOT NULL DEFAULT 0,
    filament_g    DOUBLE PRECISION NOT NULL DEFAULT 0,
    filament_cost DOUBLE PRECISION NOT NULL DEFAULT 0,
    energy_kwh    DOUBLE PRECISION NOT NULL DEFAULT 0,
    energy_cost   DOUBLE PRECISION NOT NULL DEFAULT 0,
    -- The cost settings it is priced with: those in force when it first counted (priced at
    -- print time); NULL until then.
    priced_with   BIGINT
);
-- Covering: answers read from the prints (a printer's filament types, a project) are
-- index-only scans.
CREATE INDEX prints_counted ON stats.prints (created_at)
    INCLUDE (status, printer_id, site, project_id, filament_type, duration, filament_g,
             filament_cost, energy_kwh, energy_cost) WHERE counted;
CREATE INDEX prints_printer ON stats.prints (printer_id, created_at)
    INCLUDE (status, site, project_id, filament_type, duration, filament_g, filament_cost,
             energy_kwh, energy_cost) WHERE counted;

CREATE INDEX prints_project ON stats.prints (project_id, created_at)
    INCLUDE (status, printer_id, site, filament_type, duration, filament_g, filament_cost,
             energy_kwh, energy_cost) WHERE counted AND project_id <> 0;

-- The sums of counted prints, by period (UTC day, month and year of the print's start): per
-- printer and site, and per site and filament type; and by day per site. A range is read as
-- whole years, months and days from these, and its partial days from the prints: an answer
-- costs the periods and printers asked for, not the prints. Counts are INTEGER and time is
-- DOUBLE PRECISION so that their sums stay machine numbers (a sum of BIGINT is NUMERIC).
CREATE TABLE stats.printer_day (
    period        DATE   NOT NULL,
    printer_id    BIGINT NOT NULL,
    site          TEXT   NOT NULL,
    prints        INTEGER NOT NULL DEFAULT 0,
    successful    INTEGER NOT NULL DEFAULT 0,
    failed        INTEGER NOT NULL DEFAULT 0,
    stopped       INTEGER NOT NULL DEFAULT 0,
    print_time    DOUBLE PRECISION NOT NULL DEFAULT 0,
    filament_g    DOUBLE PRECISION NOT NULL DEFAULT 0,
    filament_cost DOUBLE PRECISION NOT NULL DEFAULT 0,
    energy_kwh    DOUBLE PRECISION NOT NULL DEFAULT 0,
    energy_cost   DOUBLE PRECISION NOT NULL DEFAULT 0,
    PRIMARY KEY (period, printer_id, site)
);
CREATE INDEX printer_day_printer ON stats.printer_day (printer_id, period);
CREATE TABLE stats.printer_month (LIKE stats.printer_day INCLUDING DEFAULTS);
ALTER TABLE stats.printer_month ADD PRIMARY KEY (period, printer_id, site);
CREATE INDEX printer_month_printer ON stats.printer_month (printer_id, period);
CREATE TABLE stats.printer_year (LIKE stats.printer_day INCLUDING DEFAULTS);
ALTER TABLE stats.printer_year ADD PRIMARY KEY (period, printer_id, site);
CREATE INDEX printer_year_printer ON stats.printer_year (printer_id, period);

CREATE TABLE stats.type_day (LIKE stats.printer_day INCLUDING DEFAULTS);
ALTER TABLE stats.type_day DROP COLUMN printer_id;
ALTER TABLE stats.type_day ADD COLUMN filament_type TEXT NOT NULL DEFAULT '';
ALTER TABLE stats.type_day ADD PRIMARY KEY (period, site, filament_type);
CREATE TABLE stats.type_month (LIKE stats.type_day INCLUDING DEFAULTS);
ALTER TABLE stats.type_month ADD PRIMARY KEY (period, site, filament_type);
CREATE TABLE stats.type_year (LIKE stats.type_day INCLUDING DEFAULTS);
ALTER TABLE stats.type_year ADD PRIMARY KEY (period, site, filament_type);

CREATE TABLE stats.site_day (LIKE stats.type_day INCLUDING DEFAULTS);
ALTER TABLE stats.site_day DROP COLUMN filament_type;
ALTER TABLE stats.site_day ADD PRIMARY KEY (period, site);

-- Adds (sign 1) or takes away (sign -1) one print's contribution to the summaries.
CREATE FUNCTION stats.contribute(
    p_at TIMESTAMPTZ, p_printer BIGINT, p_site TEXT, p_type TEXT,
    p_sign INTEGER, p_status TEXT, p_duration BIGINT, p_filament DOUBLE PRECISION,
    p_filament_cost DOUBLE PRECISION, p_kwh DOUBLE PRECISION, p_energy_cost DOUBLE PRECISION)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    local TIMESTAMP := p_at AT TIME ZONE 'UTC';
    periods DATE[] := ARRAY[local::date, date_trunc('month', local)::date,
                            date_trunc('year', local)::date];
    grains TEXT[] := ARRAY['day', 'month', 'year'];
    s INTEGER := (p_status = 'success')::int * p_sign;
    f INTEGER := (p_status = 'failed')::int * p_sign;
    t INTEGER := (p_status = 'stopped')::int * p_sign;
BEGIN
    FOR i IN 1..3 LOOP
        EXECUTE format(
            'INSERT INTO stats.printer_%s AS x (period, printer_id, site, prints, successful, '
            'failed, stopped, print_time, filament_g, filament_cost, energy_kwh, energy_cost) '
            'VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) '
            'ON CONFLICT (period, printer_id, site) DO UPDATE SET '
            'prints = x.prints + EXCLUDED.prints, successful = x.successful + EXCLUDED.successful, '
            'failed = x.failed + EXCLUDED.failed, stopped = x.stopped + EXCLUDED.stopped, '
            'print_time = x.print_time + EXCLUDED.print_time, '
            'filament_g = x.filament_g + EXCLUDED.filament_g, '
            'filament_cost = x.filament_cost + EXCLUDED.filament_cost, '
            'energy_kwh = x.energy_kwh + EXCLUDED.energy_kwh, '
            'energy_cost = x.energy_cost + EXCLUDED.energy_cost', grains[i])
        USING periods[i], p_printer, p_site, p_sign, s, f, t, p_sign * p_duration,
            p_sign * p_filament, p_sign * p_filament_cost, p_sign * p_kwh, p_sign * p_energy_cost;
        EXECUTE format(
            'INSERT INTO stats.type_%s AS x (period, site, filament_type, prints, successful, '
            'failed, stopped, print_time, filament_g, filament_cost, energy_kwh, energy_cost) '
            'VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) '
            'ON CONFLICT (period, site, filament_type) DO UPDATE SET '
            'prints = x.prints + EXCLUDED.prints, successful = x.successful + EXCLUDED.successful, '
            'failed = x.failed + EXCLUDED.failed, stopped = x.stopped + EXCLUDED.stopped, '
            'print_time = x.print_time + EXCLUDED.print_time, '
            'filament_g = x.filament_g + EXCLUDED.filament_g, '
            'filament_cost = x.filament_cost + EXCLUDED.filament_cost, '
            'energy_kwh = x.energy_kwh + EXCLUDED.energy_kwh, '
            'energy_cost = x.energy_cost + EXCLUDED.energy_cost', grains[i])
        USING periods[i], p_site, p_type, p_sign, s, f, t, p_sign * p_duration,
            p_sign * p_filament, p_sign * p_filament_cost, p_sign * p_kwh, p_sign * p_energy_cost;
    END LOOP;
    INSERT INTO stats.site_day AS x (period, site, prints, successful, failed, stopped,
        print_time, filament_g, filament_cost, energy_kwh, energy_cost)
    VALUES (periods[1], p_site, p_sign, s, f, t, p_sign * p_duration, p_sign * p_filament,
        p_sign * p_filament_cost, p_sign * p_kwh, p_sign * p_energy_cost)
    ON CONFLICT (period, site) DO UPDATE SET
        prints = x.prints + EXCLUDED.prints, successful = x.successful + EXCLUDED.successful,
        failed = x.failed + EXCLUDED.failed, stopped = x.stopped + EXCLUDED.stopped,
        print_time = x.print_time + EXCLUDED.print_time,
        filament_g = x.filament_g + EXCLUDED.filament_g,
        filament_cost = x.filament_cost + EXCLUDED.filament_cost,
        energy_kwh = x.energy_kwh + EXCLUDED.energy_kwh,
        energy_cost = x.energy_cost + EXCLUDED.energy_cost;
END $$;

-- The cost settings, every version kept (prints keep the version they were priced with); the
-- newest is in force. Version 0, the built-in defaults, is not stored.
CREATE TABLE stats.cost_versions (
    version    BIGSERIAL PRIMARY KEY,
    settings   JSONB       NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
