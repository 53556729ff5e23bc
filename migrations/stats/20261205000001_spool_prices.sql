-- The part of a print's filament priced by the spools it came from (`filament_used`, from the
-- filament service): `priced_g` grams cost `cost`; a print's other grams are priced per kg. A
-- newer revision of the archive replaces the row; the print's fact is priced again with it.
CREATE TABLE stats.spool_prices (
    archive_id BIGINT PRIMARY KEY,
    revision   BIGINT           NOT NULL,
    priced_g   DOUBLE PRECISION NOT NULL,
    cost       DOUBLE PRECISION NOT NULL
);
