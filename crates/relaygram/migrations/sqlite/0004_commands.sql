-- relaygram schema: commands (SQLite). Custom commands per bot, shown in Telegram's menu
-- after the built-ins, in `position` order. Times are UTC milliseconds since the epoch.
CREATE TABLE bot_commands (
    bot_id       TEXT NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    command      TEXT NOT NULL,
    description  TEXT NOT NULL,
    action       TEXT NOT NULL CHECK (action IN ('reply', 'forward')),
    reply_text   TEXT,
    position     INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (bot_id, command),
    CHECK ((action = 'reply') = (reply_text IS NOT NULL))
);
CREATE INDEX bot_commands_order ON bot_commands (bot_id, position);
