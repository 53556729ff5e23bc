-- People: roles, users, their sessions, the single sign-on logins in flight, and the scope
-- (sites and printers) that keys, users and roles may be limited to. An empty `sites` and
-- `printer_ids` means "not limited"; otherwise a printer is in scope when its site is listed or
-- its id is. A user's reach is what both the user's and the role's scope allow.

CREATE TABLE api.roles (
    name          TEXT        PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_-]{0,39}$'),
    description   TEXT        NOT NULL DEFAULT '' CHECK (length(description) <= 500),
    permissions   TEXT[]      NOT NULL
        CHECK (permissions <@ ARRAY['read', 'write', 'control', 'admin'] AND cardinality(permissions) > 0),
    sites         TEXT[]      NOT NULL DEFAULT '{}',
    printer_ids   BIGINT[]    NOT NULL DEFAULT '{}',
    builtin       BOOLEAN     NOT NULL DEFAULT false,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

INSERT INTO api.roles (name, description, permissions, builtin) VALUES
    ('viewer',   'Sees printers, prints and figures',                 '{read}', true),
    ('operator', 'Sees everything and runs printers (pause, resume, stop, clear plates)', '{read,control}', true),
    ('manager',  'Operator who also edits printers, the queue and the archive', '{read,write,control}', true),
    ('admin',    'Everything, including people, keys, webhooks and costs', '{admin}', true);

CREATE TABLE api.users (
    id             BIGSERIAL   PRIMARY KEY,
    username       TEXT        NOT NULL CHECK (length(username) BETWEEN 1 AND 100),
    email          TEXT        CHECK (length(email) <= 254),
    -- Argon2id in PHC string form; NULL for people who sign in only through single sign-on.
    password_hash  TEXT,
    role           TEXT        NOT NULL REFERENCES api.roles (name) ON UPDATE CASCADE,
    sites          TEXT[]      NOT NULL DEFAULT '{}',
    printer_ids    BIGINT[]    NOT NULL DEFAULT '{}',
    enabled        BOOLEAN     NOT NULL DEFAULT true,
    oidc_issuer    TEXT,
    oidc_subject   TEXT,
    failed_logins  INTEGER     NOT NULL DEFAULT 0,
    locked_until   TIMESTAMPTZ,
    last_login_at  TIMESTAMPTZ,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (oidc_issuer, oidc_subject)
);
CREATE UNIQUE INDEX users_username ON api.users (lower(username));

-- A session's token is `pys_<id>_<secret>`: only its SHA-256 is kept, as for API keys.
CREATE TABLE api.sessions (
    id            BIGSERIAL   PRIMARY KEY,
    prefix        TEXT        NOT NULL UNIQUE,
    token_hash    BYTEA       NOT NULL CHECK (length(token_hash) = 32),
    -- Sent back in X-CSRF-Token with every state-changing request made with the cookie.
    csrf_hash     BYTEA       NOT NULL CHECK (length(csrf_hash) = 32),
    user_id       BIGINT      NOT NULL REFERENCES api.users (id) ON DELETE CASCADE,
    method        TEXT        NOT NULL CHECK (method IN ('password', 'sso')),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at    TIMESTAMPTZ NOT NULL,
    last_used_at  TIMESTAMPTZ,
    revoked_at    TIMESTAMPTZ
);
CREATE INDEX sessions_user ON api.sessions (user_id) WHERE revoked_at IS NULL;

-- An authorization-code login between its redirect and its callback, which another replica
-- may answer: the state, the PKCE verifier and the nonce wait here (ten minutes at most).
CREATE TABLE api.sso_logins (
    state          TEXT        PRIMARY KEY,
    pkce_verifier  TEXT        NOT NULL,
    nonce          TEXT        NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

ALTER TABLE api.api_keys
    ADD COLUMN sites        TEXT[]   NOT NULL DEFAULT '{}',
    ADD COLUMN printer_ids  BIGINT[] NOT NULL DEFAULT '{}';

-- The audit log: every state-changing request and printer command, append-only. Rows leave
-- only by the retention sweep, which says so in its own transaction.
CREATE TABLE api.audit (
    id           BIGSERIAL   PRIMARY KEY,
    at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor_kind   TEXT        NOT NULL CHECK (actor_kind IN ('user', 'key', 'anonymous')),
    actor_id     BIGINT,
    actor        TEXT        NOT NULL,
    ip           TEXT,
    method       TEXT        NOT NULL,
    action       TEXT        NOT NULL,
    route        TEXT        NOT NULL,
    object_id    TEXT,
    printer_id   BIGINT,
    status       INTEGER     NOT NULL,
    outcome      TEXT        NOT NULL CHECK (outcome IN ('success', 'denied', 'failed'))
);
CREATE INDEX audit_at ON api.audit (at DESC, id DESC);
CREATE INDEX audit_actor ON api.audit (actor, at DESC);
CREATE INDEX audit_printer ON api.audit (printer_id, at DESC) WHERE printer_id IS NOT NULL;

CREATE FUNCTION api.audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('printyard.audit_retention', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'the audit log is append-only (% refused)', TG_OP;
END $$;
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON api.audit
    FOR EACH ROW EXECUTE FUNCTION api.audit_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON api.audit
    FOR EACH STATEMENT EXECUTE FUNCTION api.audit_append_only();
