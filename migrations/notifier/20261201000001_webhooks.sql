-- Webhook subscriptions and their deliveries. Owned by the notifier service alone.

CREATE TABLE notifier.webhooks (
    id              BIGSERIAL PRIMARY KEY,
    url             TEXT        NOT NULL,
    -- Event names (`print_complete`, ...).
    events          TEXT[]      NOT NULL,
    -- NULL: every printer.
    printer_ids     BIGINT[],
    -- NULL: every site.
    site            TEXT,
    enabled         BOOLEAN     NOT NULL DEFAULT TRUE,
    format          TEXT        NOT NULL DEFAULT 'printyard',
    -- The Standard Webhooks signing secret (`whsec_...`); it signs, so it is kept as is.
    secret          TEXT        NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- When deliveries started failing (NULL after a success).
    failing_since   TIMESTAMPTZ,
    disabled_reason TEXT
);

-- The farm events some webhook wanted, in the order they were taken from the stream (`id`),
-- each stored once (`event_id` is the stream's message id: a redelivered event adds nothing).
CREATE TABLE notifier.events (
    id         BIGSERIAL PRIMARY KEY,
    event_id   TEXT        NOT NULL UNIQUE,
    kind       TEXT        NOT NULL,
    site       TEXT        NOT NULL,
    printer_id BIGINT      NOT NULL,
    at         TIMESTAMPTZ NOT NULL,
    data       JSONB       NOT NULL DEFAULT '{}'
);

-- One event to one webhook. `state`: pending (due at `next_attempt_at`; a claimed delivery is
-- pending with its lease as `next_attempt_at`, so a notifier that dies mid-delivery leaves it to
-- be taken again), delivered, failed. Per webhook and printer, deliveries go out in event order.
CREATE TABLE notifier.deliveries (
    id              BIGSERIAL PRIMARY KEY,
    webhook_id      BIGINT      NOT NULL REFERENCES notifier.webhooks (id) ON DELETE CASCADE,
    event           BIGINT      NOT NULL REFERENCES notifier.events (id) ON DELETE CASCADE,
    -- The ordering key: the event's printer (a test delivery has its own negative key).
    printer_id      BIGINT      NOT NULL,
    state           TEXT        NOT NULL DEFAULT 'pending',
    attempts        INTEGER     NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    response_code   INTEGER,
    latency_ms      BIGINT,
    last_error      TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at     TIMESTAMPTZ,
    UNIQUE (webhook_id, event)
);
CREATE INDEX deliveries_due ON notifier.deliveries (webhook_id, next_attempt_at)
    WHERE state = 'pending';
CREATE INDEX deliveries_order ON notifier.deliveries (webhook_id, printer_id, event)
    WHERE state = 'pending';
CREATE INDEX deliveries_log ON notifier.deliveries (webhook_id, id DESC);
CREATE INDEX deliveries_finished ON notifier.deliveries (finished_at)
    WHERE state <> 'pending';
CREATE INDEX deliveries_event ON notifier.deliveries (event);

-- What the payload needs of a print and the print events do not carry: its archive (from
-- `archive_created`), its file and when it started. Keyed by the gateway's print key.
CREATE TABLE notifier.prints (
    print_key  TEXT PRIMARY KEY,
    printer_id BIGINT      NOT NULL,
    archive_id BIGINT,
    filename   TEXT,
    started_at TIMESTAMPTZ,
    seen_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX prints_seen ON notifier.prints (seen_at);
