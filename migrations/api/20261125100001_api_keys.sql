-- API keys: the secret is never stored, only its SHA-256. `prefix` is the key's public part
-- (shown in listings, used to find the row); the rest is compared in constant time.
CREATE TABLE api.api_keys (
    id            BIGSERIAL PRIMARY KEY,
    name          TEXT        NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    prefix        TEXT        NOT NULL UNIQUE,
    key_hash      BYTEA       NOT NULL CHECK (length(key_hash) = 32),
    permissions   TEXT[]      NOT NULL
        CHECK (permissions <@ ARRAY['read', 'write', 'control', 'admin'] AND cardinality(permissions) > 0),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at  TIMESTAMPTZ,
    revoked_at    TIMESTAMPTZ
);

-- Rate limits shared by every api replica: one fixed window per key and class.
CREATE TABLE api.rate_limits (
    key_id        BIGINT      NOT NULL REFERENCES api.api_keys (id) ON DELETE CASCADE,
    class         TEXT        NOT NULL CHECK (class IN ('read', 'write', 'control')),
    window_start  TIMESTAMPTZ NOT NULL,
    count         INTEGER     NOT NULL,
    PRIMARY KEY (key_id, class)
);
