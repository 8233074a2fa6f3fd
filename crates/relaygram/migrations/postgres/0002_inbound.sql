-- relaygram schema: inbound updates (stored once per bot and update_id) and the chats they reveal.
CREATE TABLE updates (
    bot_id        TEXT NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    update_id     BIGINT NOT NULL,
    kind          TEXT NOT NULL,
    chat_id       BIGINT,
    user_id       BIGINT,
    body          TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('pending', 'processing', 'handled', 'ignored', 'rate_limited', 'failed')),
    outcome       TEXT,
    error         TEXT,
    received_at   BIGINT NOT NULL,
    claimed_until BIGINT,
    processed_at  BIGINT,
    handling_ms   BIGINT,
    PRIMARY KEY (bot_id, update_id)
);
-- The processors' claim: the oldest pending update, and per-chat checks for an update in hand.
CREATE INDEX updates_status ON updates (status, received_at, update_id);
CREATE INDEX updates_chat ON updates (bot_id, chat_id, status, received_at, update_id);
CREATE INDEX updates_received ON updates (received_at);

CREATE TABLE chats (
    bot_id      TEXT NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    chat_id     BIGINT NOT NULL,
    type        TEXT NOT NULL,
    title       TEXT,
    username    TEXT,
    state       TEXT NOT NULL CHECK (state IN ('active', 'blocked', 'left', 'kicked', 'migrated')),
    migrated_to BIGINT,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (bot_id, chat_id)
);
