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
CREATE INDEX prints_counted ON stats.prints (created_at) WHERE counted;
CREATE INDEX prints_printer ON stats.prints (printer_id, created_at) WHERE counted;

-- The sums of counted prints by day (UTC, of the start), printer, site, project, filament type;
-- then by month with the same keys (long ranges by printer); then by day for the whole farm
-- (long ranges without a printer).
CREATE TABLE stats.daily (
    day           DATE   NOT NULL,
    printer_id    BIGINT NOT NULL,
    site          TEXT   NOT NULL,
    project_id    BIGINT NOT NULL,
    filament_type TEXT   NOT NULL,
    prints        BIGINT NOT NULL DEFAULT 0,
    successful    BIGINT NOT NULL DEFAULT 0,
    failed        BIGINT NOT NULL DEFAULT 0,
    stopped       BIGINT NOT NULL DEFAULT 0,
    print_time    BIGINT NOT NULL DEFAULT 0,
    filament_g    DOUBLE PRECISION NOT NULL DEFAULT 0,
    filament_cost DOUBLE PRECISION NOT NULL DEFAULT 0,
    energy_kwh    DOUBLE PRECISION NOT NULL DEFAULT 0,
    energy_cost   DOUBLE PRECISION NOT NULL DEFAULT 0,
    PRIMARY KEY (day, printer_id, site, project_id, filament_type)
);
CREATE INDEX daily_printer ON stats.daily (printer_id, day);

CREATE TABLE stats.monthly (LIKE stats.daily INCLUDING DEFAULTS);
ALTER TABLE stats.monthly RENAME COLUMN day TO month;
ALTER TABLE stats.monthly ADD PRIMARY KEY (month, printer_id, site, project_id, filament_type);

CREATE TABLE stats.daily_farm (LIKE stats.daily INCLUDING DEFAULTS);
ALTER TABLE stats.daily_farm DROP COLUMN printer_id;
ALTER TABLE stats.daily_farm ADD PRIMARY KEY (day, site, project_id, filament_type);

-- Adds (sign 1) or takes away (sign -1) one print's contribution to the three summaries.
CREATE FUNCTION stats.contribute(
    p_at TIMESTAMPTZ, p_printer BIGINT, p_site TEXT, p_project BIGINT, p_type TEXT,
    p_sign INTEGER, p_status TEXT, p_duration BIGINT, p_filament DOUBLE PRECISION,
    p_filament_cost DOUBLE PRECISION, p_kwh DOUBLE PRECISION, p_energy_cost DOUBLE PRECISION)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    d DATE := (p_at AT TIME ZONE 'UTC')::date;
    m DATE := date_trunc('month', p_at AT TIME ZONE 'UTC')::date;
    s INTEGER := (p_status = 'success')::int * p_sign;
    f INTEGER := (p_status = 'failed')::int * p_sign;
    t INTEGER := (p_status = 'stopped')::int * p_sign;
BEGIN
    INSERT INTO stats.daily AS x (day, printer_id, site, project_id, filament_type, prints,
        successful, failed, stopped, print_time, filament_g, filament_cost, energy_kwh, energy_cost)
    VALUES (d, p_printer, p_site, p_project, p_type, p_sign, s, f, t, p_sign * p_duration,
        p_sign * p_filament, p_sign * p_filament_cost, p_sign * p_kwh, p_sign * p_energy_cost)
    ON CONFLICT (day, printer_id, site, project_id, filament_type) DO UPDATE SET
        prints = x.prints + EXCLUDED.prints, successful = x.successful + EXCLUDED.successful,
        failed = x.failed + EXCLUDED.failed, stopped = x.stopped + EXCLUDED.stopped,
        print_time = x.print_time + EXCLUDED.print_time,
        filament_g = x.filament_g + EXCLUDED.filament_g,
        filament_cost = x.filament_cost + EXCLUDED.filament_cost,
        energy_kwh = x.energy_kwh + EXCLUDED.energy_kwh,
        energy_cost = x.energy_cost + EXCLUDED.energy_cost;
    INSERT INTO stats.monthly AS x (month, printer_id, site, project_id, filament_type, prints,
        successful, failed, stopped, print_time, filament_g, filament_cost, energy_kwh, energy_cost)
    VALUES (m, p_printer, p_site, p_project, p_type, p_sign, s, f, t, p_sign * p_duration,
        p_sign * p_filament, p_sign * p_filament_cost, p_sign * p_kwh, p_sign * p_energy_cost)
    ON CONFLICT (month, printer_id, site, project_id, filament_type) DO UPDATE SET
        prints = x.prints + EXCLUDED.prints, successful = x.successful + EXCLUDED.successful,
        failed = x.failed + EXCLUDED.failed, stopped = x.stopped + EXCLUDED.stopped,
        print_time = x.print_time + EXCLUDED.print_time,
        filament_g = x.filament_g + EXCLUDED.filament_g,
        filament_cost = x.filament_cost + EXCLUDED.filament_cost,
        energy_kwh = x.energy_kwh + EXCLUDED.energy_kwh,
        energy_cost = x.energy_cost + EXCLUDED.energy_cost;
    INSERT INTO stats.daily_farm AS x (day, site, project_id, filament_type, prints,
        successful, failed, stopped, print_time, filament_g, filament_cost, energy_kwh, energy_cost)
    VALUES (d, p_site, p_project, p_type, p_sign, s, f, t, p_sign * p_duration,
        p_sign * p_filament, p_sign * p_filament_cost, p_sign * p_kwh, p_sign * p_energy_cost)
    ON CONFLICT (day, site, project_id, filament_type) DO UPDATE SET
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
