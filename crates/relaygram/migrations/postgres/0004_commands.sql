-- relaygram schema: commands (PostgreSQL). Custom commands per bot, shown in Telegram's
-- menu after the built-ins, in `position` order. Times are UTC milliseconds since the epoch.
CREATE TABLE bot_commands (
    bot_id       TEXT COLLATE "C" NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    command      TEXT COLLATE "C" NOT NULL,
    description  TEXT NOT NULL,
    action       TEXT NOT NULL CHECK (action IN ('reply', 'forward')),
    reply_text   TEXT,
    position     BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (bot_id, command),
    CHECK ((action = 'reply') = (reply_text IS NOT NULL))
);
CREATE INDEX bot_commands_order ON bot_commands (bot_id, position);
