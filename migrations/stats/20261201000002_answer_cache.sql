-- A counter of changes to the print facts: bumped in every transaction that changes them, so a
-- stats replica can keep answers and know when one is stale (it asks for the counter, one row,
-- instead of summing again).
CREATE TABLE stats.generation (
    only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    value    BIGINT  NOT NULL
);
INSERT INTO stats.generation (value) VALUES (0);

-- A filament type alone, without a printer (its breakdown by printer is read from the prints),
-- is an index-only scan over that type's prints instead of a scan over every print in range.
CREATE INDEX prints_type ON stats.prints (lower(filament_type), created_at)
    INCLUDE (status, printer_id, site, project_id, filament_type, duration, filament_g,
             filament_cost, energy_kwh, energy_cost) WHERE counted;
