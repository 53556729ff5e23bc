-- The printer registry: owned by api, mirrored into the NATS KV bucket `printer_registry`
-- that gateways watch. The access code is kept to connect with and is never returned by the API.
CREATE TABLE api.printers (
    id            BIGSERIAL PRIMARY KEY,
    name          TEXT        NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    host          TEXT        NOT NULL CHECK (length(host) BETWEEN 1 AND 253),
    serial        TEXT        NOT NULL UNIQUE,
    access_code   TEXT        NOT NULL,
    site          TEXT        NOT NULL DEFAULT 'default',
    model         TEXT,
    tls_pin       TEXT,
    tls_insecure  BOOLEAN     NOT NULL DEFAULT false,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
