-- relaygram schema: linking (PostgreSQL). App users and groups linked to Telegram chats, the
-- single-use link tokens and team connect codes that make links, notification categories and
-- each link's preferences. Times are UTC milliseconds since the epoch.

-- Kinds of notification a link opts in and out of. A link receives category K iff the link
-- is active and (K is mandatory, or its preference row for K says enabled, or there is no
-- row and K.default_enabled).
CREATE TABLE categories (
    id              TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key             TEXT NOT NULL,
    name            TEXT NOT NULL,
    description     TEXT,
    default_enabled BOOLEAN NOT NULL,
    mandatory       BOOLEAN NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    UNIQUE (tenant_id, key)
);

-- Team codes (`/start ABC23456`): any number of chats may join. Kept in clear so the app can
-- show them again; a rotation replaces the code, a revocation keeps the row (its links stay).
CREATE TABLE connect_codes (
    id          TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    bot_id      TEXT NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    code        TEXT NOT NULL UNIQUE,
    label       TEXT,
    categories  TEXT NOT NULL,
    revoked_at  BIGINT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX connect_codes_tenant ON connect_codes (tenant_id, id);

-- An app user (external_id) or a team code's subscriber ↔ a chat, through a bot.
CREATE TABLE links (
    id               TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    tenant_id        TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    bot_id           TEXT NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    external_id      TEXT,
    chat_id          BIGINT NOT NULL,
    chat_type        TEXT NOT NULL CHECK (chat_type IN ('private', 'group', 'supergroup', 'channel')),
    active           BOOLEAN NOT NULL,
    source           TEXT NOT NULL CHECK (source IN ('token', 'code')),
    connect_code_id  TEXT,
    link_token_id    TEXT,
    telegram_user_id BIGINT,
    metadata         TEXT,
    timezone         TEXT,
    quiet_start      TEXT,
    quiet_end        TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX links_external ON links (tenant_id, external_id);
CREATE INDEX links_chat ON links (bot_id, chat_id);
CREATE INDEX links_tenant ON links (tenant_id, id);
CREATE INDEX links_code ON links (connect_code_id);

CREATE TABLE link_preferences (
    link_id      TEXT NOT NULL REFERENCES links (id) ON DELETE CASCADE,
    category_key TEXT NOT NULL,
    enabled      BOOLEAN NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (link_id, category_key)
);

-- Single-use, expiring link tokens. Looked up by the SHA-256 of the token; the token itself
-- is kept only sealed (encrypted with the server's key) to draw its QR code again.
CREATE TABLE link_tokens (
    id           TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    bot_id       TEXT NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    token_hash   TEXT NOT NULL UNIQUE,
    token_sealed TEXT NOT NULL,
    external_id  TEXT NOT NULL,
    categories   TEXT NOT NULL,
    metadata     TEXT,
    allow_shared_chat BOOLEAN NOT NULL,
    expires_at   BIGINT NOT NULL,
    used_at      BIGINT,
    link_id      TEXT,
    created_at   BIGINT NOT NULL
);
CREATE INDEX link_tokens_tenant ON link_tokens (tenant_id, id);
