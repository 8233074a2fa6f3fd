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
    chat_id                   BIGINT NOT NULL,
    chat_type                 TEXT NOT NULL CHECK (chat_type IN ('supergroup', 'channel')),
    title                     TEXT,
    name                      TEXT NOT NULL,
    join_mode                 TEXT NOT NULL CHECK (join_mode IN ('request', 'invite', 'stars_subscription')),
    grace_seconds             BIGINT NOT NULL,
    reminders                 TEXT NOT NULL,
    remove_unentitled         BOOLEAN NOT NULL,
    unentitled_grace_seconds  BIGINT NOT NULL,
    access_url                TEXT,
    status                    TEXT NOT NULL CHECK (status IN ('active', 'degraded')),
    status_reason             TEXT,
    swept_at                  BIGINT,
    created_at                BIGINT NOT NULL,
    updated_at                BIGINT NOT NULL,
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
    telegram_user_id      BIGINT,
    starts_at             BIGINT NOT NULL,
    ends_at               BIGINT,
    cancel_at_period_end  BOOLEAN NOT NULL DEFAULT FALSE,
    cancelled_at          BIGINT,
    revoked_at            BIGINT,
    expired_at            BIGINT,
    source                TEXT NOT NULL,
    synced                BOOLEAN NOT NULL DEFAULT FALSE,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL,
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
    ends_at         BIGINT,
    at_period_end   BOOLEAN NOT NULL DEFAULT FALSE,
    reason          TEXT,
    created_at      BIGINT NOT NULL,
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
    telegram_user_id  BIGINT,
    external_id       TEXT,
    state             TEXT NOT NULL CHECK (state IN ('invited', 'requested', 'member', 'removing', 'removed', 'left', 'declined')),
    invite_link       TEXT,
    access_until      BIGINT NOT NULL,
    ends_at           BIGINT,
    remove_at         BIGINT,
    next_reminder_at  BIGINT,
    reminders_sent    BIGINT NOT NULL DEFAULT 0,
    unentitled        BOOLEAN NOT NULL DEFAULT FALSE,
    job_id            TEXT,
    job_action        TEXT,
    last_error        TEXT,
    joined_at         BIGINT,
    left_at           BIGINT,
    checked_at        BIGINT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE UNIQUE INDEX memberships_user ON memberships (gated_chat_id, telegram_user_id) WHERE telegram_user_id IS NOT NULL;
CREATE UNIQUE INDEX memberships_external ON memberships (gated_chat_id, external_id) WHERE external_id IS NOT NULL AND telegram_user_id IS NULL;
CREATE INDEX memberships_link ON memberships (invite_link) WHERE invite_link IS NOT NULL;
CREATE INDEX memberships_tenant ON memberships (tenant_id, id);
CREATE INDEX memberships_remove ON memberships (remove_at) WHERE remove_at IS NOT NULL;
CREATE INDEX memberships_remind ON memberships (next_reminder_at) WHERE next_reminder_at IS NOT NULL;
CREATE INDEX memberships_job ON memberships (job_id) WHERE job_id IS NOT NULL;

-- Outbox rows gain a kind: `member` jobs call Telegram's member methods (approve, decline,
-- remove, revoke a link) on a gated chat, in the user's lane.
ALTER TABLE messages DROP CONSTRAINT messages_kind_check;
ALTER TABLE messages ADD CONSTRAINT messages_kind_check CHECK (kind IN ('send', 'edit', 'delete', 'member'));
