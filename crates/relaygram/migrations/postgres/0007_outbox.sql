-- relaygram schema: the outbox. One accepted request (content stored once), the messages it
-- fans out to (one row per chat, in per-chat order by id), idempotency keys, throttle windows,
-- broadcasts, server-side button data, per-bot limits and the per-bot sender leases.
CREATE TABLE message_requests (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    origin        TEXT NOT NULL,
    content       TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);

CREATE TABLE messages (
    id                   TEXT PRIMARY KEY,
    request_id           TEXT NOT NULL REFERENCES message_requests (id) ON DELETE CASCADE,
    tenant_id            TEXT NOT NULL,
    bot_id               TEXT NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    chat_id              BIGINT NOT NULL,
    link_id              TEXT,
    broadcast_id         TEXT,
    status               TEXT NOT NULL CHECK (status IN ('queued', 'paused', 'sending', 'sent', 'throttled', 'failed', 'dead', 'unknown', 'cancelled')),
    priority             BIGINT NOT NULL DEFAULT 0,
    send_at              BIGINT NOT NULL,
    next_attempt_at      BIGINT NOT NULL,
    attempts             BIGINT NOT NULL DEFAULT 0,
    retries              BIGINT NOT NULL DEFAULT 0,
    rate_limited         BIGINT NOT NULL DEFAULT 0,
    parts_sent           BIGINT NOT NULL DEFAULT 0,
    telegram_message_ids TEXT NOT NULL DEFAULT '[]',
    error_class          TEXT,
    last_error           TEXT,
    errors               TEXT NOT NULL DEFAULT '[]',
    claimed_until        BIGINT,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL,
    finished_at          BIGINT
);
-- The sender's claim: lane heads of one bot, by priority then order of acceptance.
CREATE INDEX messages_ready ON messages (bot_id, status, priority DESC, id);
-- Per-chat order: is there an earlier unfinished message in this lane?
CREATE INDEX messages_lane ON messages (bot_id, chat_id, status, id);
CREATE INDEX messages_tenant ON messages (tenant_id, id);
CREATE INDEX messages_broadcast ON messages (broadcast_id, status);

CREATE TABLE idempotency_keys (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    body_hash   TEXT NOT NULL,
    response    TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, key)
);

CREATE TABLE throttle_windows (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    until       BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, key)
);

CREATE TABLE broadcasts (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    bot_id      TEXT NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    request_id  TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('running', 'paused', 'cancelled')),
    total       BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX broadcasts_tenant ON broadcasts (tenant_id, id);

CREATE TABLE callback_data (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    request_id  TEXT NOT NULL,
    data        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE bot_limits (
    bot_id               TEXT PRIMARY KEY REFERENCES bots (id) ON DELETE CASCADE,
    per_bot_per_second   DOUBLE PRECISION,
    per_chat_per_second  DOUBLE PRECISION,
    per_group_per_minute DOUBLE PRECISION,
    updated_at           BIGINT NOT NULL
);

CREATE TABLE sender_leases (
    bot_id      TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);
