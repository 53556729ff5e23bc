-- The AMS mapping a queue print was sent with (one global tray id, or -1, per filament id of the
-- 3MF), from the gateway's `print_started`: the spool inventory reads it in `archive_updated` to
-- tell which tray, so which spool, each filament came from.
ALTER TABLE archive.archives ADD COLUMN ams_mapping JSONB;
