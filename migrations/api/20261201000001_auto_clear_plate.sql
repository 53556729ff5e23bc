-- Printers that remove finished parts themselves: the queue does not wait for their plate to be
-- marked cleared.
ALTER TABLE api.printers ADD COLUMN auto_clear_plate BOOLEAN NOT NULL DEFAULT false;
