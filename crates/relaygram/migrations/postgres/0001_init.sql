-- relaygram schema v1 (PostgreSQL). Times are UTC milliseconds since the Unix epoch.
-- Ids use the "C" collation so that they sort bytewise, as cursor pagination expects.
CREATE TABLE tenants (
    id          TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id           TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    tenant_id    TEXT REFERENCES tenants (id) ON DELETE CASCADE,
    scope        TEXT NOT NULL CHECK (scope IN ('admin', 'tenant')),
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    hash         TEXT NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    revoked_at   BIGINT,
    CHECK ((scope = 'admin') = (tenant_id IS NULL))
);
CREATE INDEX api_keys_prefix ON api_keys (prefix);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, id);

CREATE TABLE bots (
    id                 TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    tenant_id          TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    telegram_id        BIGINT NOT NULL UNIQUE,
    username           TEXT NOT NULL,
    first_name         TEXT NOT NULL,
    token_sealed       TEXT NOT NULL,
    webhook_secret_sealed TEXT,
    webhook_url        TEXT,
    mode               TEXT NOT NULL CHECK (mode IN ('webhook', 'polling')),
    enabled            BOOLEAN NOT NULL,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
CREATE INDEX bots_tenant ON bots (tenant_id, id);

-- Small facts about this store, e.g. a value sealed with the secret key, so that a start
-- with the wrong key is refused instead of failing later on every bot.
CREATE TABLE meta (
    name   TEXT PRIMARY KEY NOT NULL,
    value  TEXT NOT NULL
);
