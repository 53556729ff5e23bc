-- Printer errors as history: every raise and clear a gateway told (`printer_error`,
-- `print_error`, `printer_error_cleared`, and the clears a printer's first full report implies),
-- kept as facts and paired when asked (see services/stats/src/errors.rs): a raise starts an
-- error unless the same error already stands (a reconnected gateway tells it again); the first
-- clear after it ends it. Facts are kept by event id, so a redelivery is kept once, and their
-- order of arrival does not matter.
CREATE TABLE stats.error_facts (
    event_id   TEXT PRIMARY KEY,
    id         BIGSERIAL UNIQUE,
    printer_id BIGINT      NOT NULL,
    site       TEXT        NOT NULL DEFAULT '',
    source     TEXT        NOT NULL CHECK (source IN ('hms', 'print')),
    code       TEXT        NOT NULL,
    raised     BOOLEAN     NOT NULL,
    severity   TEXT,
    text       TEXT,
    at         TIMESTAMPTZ NOT NULL
);
CREATE INDEX error_facts_printer ON stats.error_facts (printer_id, source, code, at);
CREATE INDEX error_facts_raised ON stats.error_facts (at) WHERE raised;
