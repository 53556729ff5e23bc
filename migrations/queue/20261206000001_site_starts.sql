-- Staggered starts: when each site last had a job claimed for a printer, so that with
-- `scheduler.stagger_secs` the next one (by any scheduler replica) waits that long.
CREATE TABLE queue.site_starts (
    site        TEXT        PRIMARY KEY,
    last_claim  TIMESTAMPTZ NOT NULL
);
