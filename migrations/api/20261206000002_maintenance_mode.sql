-- Maintenance mode: a printer being serviced gets no job from the queue, and the wall says so.
-- Mirrored into the registry bucket with the rest of the printer's record.
ALTER TABLE api.printers ADD COLUMN maintenance BOOLEAN NOT NULL DEFAULT false;
