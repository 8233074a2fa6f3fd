-- relaygram schema: inbound updates (stored once per bot and update_id) and the chats they reveal.
CREATE TABLE updates (
    bot_id        TEXT NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    update_id     INTEGER NOT NULL,
    kind          TEXT NOT NULL,
    chat_id       INTEGER,
    user_id       INTEGER,
    body          TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('pending', 'processing', 'handled', 'ignored', 'rate_limited', 'failed')),
    outcome       TEXT,
    error         TEXT,
    received_at   INTEGER NOT NULL,
    claimed_until INTEGER,
    processed_at  INTEGER,
    handling_ms   INTEGER,
    PRIMARY KEY (bot_id, update_id)
);
-- The processors' claim: the oldest pending update, and per-chat checks for an update in hand.
CREATE INDEX updates_status ON updates (status, received_at, update_id);
CREATE INDEX updates_chat ON updates (bot_id, chat_id, status, received_at, update_id);
CREATE INDEX updates_received ON updates (received_at);

CREATE TABLE chats (
    bot_id      TEXT NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    chat_id     INTEGER NOT NULL,
    type        TEXT NOT NULL,
    title       TEXT,
    username    TEXT,
    state       TEXT NOT NULL CHECK (state IN ('active', 'blocked', 'left', 'kicked', 'migrated')),
    migrated_to INTEGER,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (bot_id, chat_id)
);
