-- Grams used per day, material and colour, kept by a trigger from every change to the usage
-- (no write path can forget it): the material summary's last 30 days are read from at most
-- 30 rows per material and colour instead of every print's usage.
CREATE TABLE filament.usage_days (
    day      DATE             NOT NULL,
    material TEXT             NOT NULL,
    color    TEXT             NOT NULL DEFAULT '',
    grams    DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (day, material, color)
);

CREATE FUNCTION filament.count_usage_day() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO filament.usage_days (day, material, color, grams)
            VALUES ((OLD.at AT TIME ZONE 'UTC')::date, OLD.material, coalesce(OLD.color, ''),
                    -OLD.grams)
        ON CONFLICT (day, material, color)
            DO UPDATE SET grams = filament.usage_days.grams + EXCLUDED.grams;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO filament.usage_days (day, material, color, grams)
            VALUES ((NEW.at AT TIME ZONE 'UTC')::date, NEW.material, coalesce(NEW.color, ''),
                    NEW.grams)
        ON CONFLICT (day, material, color)
            DO UPDATE SET grams = filament.usage_days.grams + EXCLUDED.grams;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER usage_days AFTER INSERT OR UPDATE OF grams, at, material, color OR DELETE
    ON filament.usage FOR EACH ROW EXECUTE FUNCTION filament.count_usage_day();

INSERT INTO filament.usage_days (day, material, color, grams)
    SELECT (at AT TIME ZONE 'UTC')::date, material, coalesce(color, ''), sum(grams)
    FROM filament.usage GROUP BY 1, 2, 3;

-- Listings of the spools not archived walk this instead of the whole table.
CREATE INDEX spools_current ON filament.spools (id) WHERE NOT archived;
