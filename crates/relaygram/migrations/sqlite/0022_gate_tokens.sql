-- relaygram schema: binding a gated chat through the bot's startgroup link. The operator
-- adds the bot to their group with t.me/<bot>?startgroup=<token>&admin=…; the token (stored
-- as its SHA-256 hash) carries the gated chat's settings (JSON) and binds once, before
-- `expires_at`. Times are UTC milliseconds since the epoch.
CREATE TABLE gated_chat_tokens (
    id             TEXT PRIMARY KEY NOT NULL,
    tenant_id      TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    bot_id         TEXT NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    token_hash     TEXT NOT NULL UNIQUE,
    settings       TEXT NOT NULL,
    expires_at     INTEGER NOT NULL,
    used_at        INTEGER,
    gated_chat_id  TEXT,
    created_at     INTEGER NOT NULL
);
CREATE INDEX gated_chat_tokens_tenant ON gated_chat_tokens (tenant_id, id);
