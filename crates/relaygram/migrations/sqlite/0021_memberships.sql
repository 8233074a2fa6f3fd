-- relaygram schema: paid access to groups and channels. Times are UTC milliseconds since
-- the epoch; durations are seconds.

-- A supergroup or channel whose members must hold an entitlement.
-- `reminders`: seconds before an entitlement's end at which its holder is reminded (JSON
-- array, largest first). `status`: `active`, or `degraded` while the bot lacks a right it
-- needs (`status_reason` says which); a degraded chat removes nobody.
CREATE TABLE gated_chats (
    id                        TEXT PRIMARY KEY NOT NULL,
    tenant_id                 TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    bot_id                    TEXT NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    chat_id                   INTEGER NOT NULL,
    chat_type                 TEXT NOT NULL CHECK (chat_type IN ('supergroup', 'channel')),
    title                     TEXT,
    name                      TEXT NOT NULL,
    join_mode                 TEXT NOT NULL CHECK (join_mode IN ('request', 'invite', 'stars_subscription')),
    grace_seconds             INTEGER NOT NULL,
    reminders                 TEXT NOT NULL,
    remove_unentitled         BOOLEAN NOT NULL,
    unentitled_grace_seconds  INTEGER NOT NULL,
    access_url                TEXT,
    status                    TEXT NOT NULL CHECK (status IN ('active', 'degraded')),
    status_reason             TEXT,
    swept_at                  INTEGER,
    created_at                INTEGER NOT NULL,
    updated_at                INTEGER NOT NULL,
    UNIQUE (bot_id, chat_id)
);
CREATE INDEX gated_chats_tenant ON gated_chats (tenant_id, id);

-- One entitlement: its holder (an app user, a Telegram user, or both) and the fold of its
-- ledger entries (`entitlement_entries`, the truth): the current end (NULL = forever),
-- whether it ends at period end, when it was cancelled at once or revoked (access ends
-- then, with no grace), and when `entitlement.expired` was said. `synced`: its memberships
-- follow its last entry (the sweep brings the others in line).
CREATE TABLE entitlements (
    id                    TEXT PRIMARY KEY NOT NULL,
    tenant_id             TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    external_id           TEXT,
    telegram_user_id      INTEGER,
    starts_at             INTEGER NOT NULL,
    ends_at               INTEGER,
    cancel_at_period_end  BOOLEAN NOT NULL DEFAULT FALSE,
    cancelled_at          INTEGER,
    revoked_at            INTEGER,
    expired_at            INTEGER,
    source                TEXT NOT NULL,
    synced                BOOLEAN NOT NULL DEFAULT FALSE,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL,
    CHECK (external_id IS NOT NULL OR telegram_user_id IS NOT NULL)
);
CREATE INDEX entitlements_tenant ON entitlements (tenant_id, id);
CREATE INDEX entitlements_external ON entitlements (tenant_id, external_id) WHERE external_id IS NOT NULL;
CREATE INDEX entitlements_user ON entitlements (tenant_id, telegram_user_id) WHERE telegram_user_id IS NOT NULL;
CREATE INDEX entitlements_due ON entitlements (ends_at) WHERE expired_at IS NULL;
CREATE INDEX entitlements_unsynced ON entitlements (updated_at) WHERE synced = FALSE;

CREATE TABLE entitlement_chats (
    entitlement_id  TEXT NOT NULL REFERENCES entitlements (id) ON DELETE CASCADE,
    gated_chat_id   TEXT NOT NULL REFERENCES gated_chats (id) ON DELETE CASCADE,
    PRIMARY KEY (entitlement_id, gated_chat_id)
);
CREATE INDEX entitlement_chats_chat ON entitlement_chats (gated_chat_id);

-- The append-only ledger: each entry applies once per (tenant, source, source_key);
-- `body_hash` tells a replay from a different entry reusing a key.
CREATE TABLE entitlement_entries (
    id              TEXT PRIMARY KEY NOT NULL,
    entitlement_id  TEXT NOT NULL REFERENCES entitlements (id) ON DELETE CASCADE,
    tenant_id       TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('grant', 'extend', 'cancel', 'revoke')),
    source          TEXT NOT NULL,
    source_key      TEXT NOT NULL,
    body_hash       TEXT NOT NULL,
    ends_at         INTEGER,
    at_period_end   BOOLEAN NOT NULL DEFAULT FALSE,
    reason          TEXT,
    created_at      INTEGER NOT NULL,
    UNIQUE (tenant_id, source, source_key)
);
CREATE INDEX entitlement_entries_of ON entitlement_entries (entitlement_id, created_at);

-- One user's presence in one gated chat. `access_until`: when their access ends (with
-- grace; 0 = none, 9223372036854775807 = forever), recomputed whenever the ledger changes.
-- `remove_at`: when the sweep removes them (their access end, or an unentitled member's
-- join plus the chat's grace; NULL = never). `next_reminder_at`: the next reminder due.
-- `job_id`: the outbox job (approve, decline, remove, revoke a link) under way.
CREATE TABLE memberships (
    id                TEXT PRIMARY KEY NOT NULL,
    tenant_id         TEXT NOT NULL,
    gated_chat_id     TEXT NOT NULL REFERENCES gated_chats (id) ON DELETE CASCADE,
    telegram_user_id  INTEGER,
    external_id       TEXT,
    state             TEXT NOT NULL CHECK (state IN ('invited', 'requested', 'member', 'removing', 'removed', 'left', 'declined')),
    invite_link       TEXT,
    access_until      INTEGER NOT NULL,
    ends_at           INTEGER,
    remove_at         INTEGER,
    next_reminder_at  INTEGER,
    reminders_sent    INTEGER NOT NULL DEFAULT 0,
    unentitled        BOOLEAN NOT NULL DEFAULT FALSE,
    job_id            TEXT,
    job_action        TEXT,
    last_error        TEXT,
    joined_at         INTEGER,
    left_at           INTEGER,
    checked_at        INTEGER,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);
CREATE UNIQUE INDEX memberships_user ON memberships (gated_chat_id, telegram_user_id) WHERE telegram_user_id IS NOT NULL;
CREATE UNIQUE INDEX memberships_external ON memberships (gated_chat_id, external_id) WHERE external_id IS NOT NULL AND telegram_user_id IS NULL;
CREATE INDEX memberships_link ON memberships (invite_link) WHERE invite_link IS NOT NULL;
CREATE INDEX memberships_tenant ON memberships (tenant_id, id);
CREATE INDEX memberships_remove ON memberships (remove_at) WHERE remove_at IS NOT NULL;
CREATE INDEX memberships_remind ON memberships (next_reminder_at) WHERE next_reminder_at IS NOT NULL;
CREATE INDEX memberships_job ON memberships (job_id) WHERE job_id IS NOT NULL;

-- Outbox rows gain a kind: `member` jobs call Telegram's member methods (approve, decline,
-- remove, revoke a link) on a gated chat, in the user's lane. SQLite cannot change a
-- column's CHECK, so the table is rebuilt.
CREATE TABLE messages_new (
    id                   TEXT PRIMARY KEY,
    request_id           TEXT NOT NULL REFERENCES message_requests (id) ON DELETE CASCADE,
    tenant_id            TEXT NOT NULL,
    bot_id               TEXT NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    chat_id              INTEGER NOT NULL,
    link_id              TEXT,
    broadcast_id         TEXT,
    status               TEXT NOT NULL CHECK (status IN ('queued', 'paused', 'sending', 'sent', 'throttled', 'failed', 'dead', 'unknown', 'cancelled')),
    priority             INTEGER NOT NULL DEFAULT 0,
    send_at              INTEGER NOT NULL,
    next_attempt_at      INTEGER NOT NULL,
    attempts             INTEGER NOT NULL DEFAULT 0,
    retries              INTEGER NOT NULL DEFAULT 0,
    rate_limited         INTEGER NOT NULL DEFAULT 0,
    parts_sent           INTEGER NOT NULL DEFAULT 0,
    telegram_message_ids TEXT NOT NULL DEFAULT '[]',
    error_class          TEXT,
    last_error           TEXT,
    errors               TEXT NOT NULL DEFAULT '[]',
    claimed_until        INTEGER,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL,
    finished_at          INTEGER,
    local_at             TEXT,
    local_zone           TEXT,
    category             TEXT,
    held                 TEXT,
    kind                 TEXT NOT NULL DEFAULT 'send' CHECK (kind IN ('send', 'edit', 'delete', 'member')),
    edit_of              TEXT,
    edited_at            INTEGER,
    deleted_at           INTEGER,
    content              TEXT
);
INSERT INTO messages_new (id, request_id, tenant_id, bot_id, chat_id, link_id, broadcast_id,
    status, priority, send_at, next_attempt_at, attempts, retries, rate_limited, parts_sent,
    telegram_message_ids, error_class, last_error, errors, claimed_until, created_at,
    updated_at, finished_at, local_at, local_zone, category, held, kind, edit_of, edited_at,
    deleted_at, content)
SELECT id, request_id, tenant_id, bot_id, chat_id, link_id, broadcast_id, status, priority,
    send_at, next_attempt_at, attempts, retries, rate_limited, parts_sent,
    telegram_message_ids, error_class, last_error, errors, claimed_until, created_at,
    updated_at, finished_at, local_at, local_zone, category, held, kind, edit_of, edited_at,
    deleted_at, content FROM messages;
DROP TABLE messages;
ALTER TABLE messages_new RENAME TO messages;
CREATE INDEX messages_ready ON messages (bot_id, status, priority DESC, id);
CREATE INDEX messages_lane ON messages (bot_id, chat_id, status, id);
CREATE INDEX messages_tenant ON messages (tenant_id, id);
CREATE INDEX messages_request ON messages (request_id);
CREATE INDEX messages_broadcast ON messages (broadcast_id, status) WHERE broadcast_id IS NOT NULL;
CREATE INDEX messages_link ON messages (link_id, id) WHERE link_id IS NOT NULL;
CREATE INDEX messages_category ON messages (tenant_id, category, id) WHERE category IS NOT NULL;
CREATE INDEX messages_created ON messages (tenant_id, created_at);
CREATE INDEX messages_held ON messages (link_id) WHERE held IS NOT NULL;
CREATE INDEX messages_edit_of ON messages (edit_of) WHERE edit_of IS NOT NULL;
