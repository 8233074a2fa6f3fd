-- The app's words for its bot: per bot, text key (`welcome`, `help`, …) and language
-- (a lower-case IETF tag such as `de` or `pt-br`; '' is the bot's default, used when no
-- translation matches). A minijinja source, checked when stored. Times are UTC
-- milliseconds since the epoch.
CREATE TABLE bot_texts (
    bot_id      TEXT NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    language    TEXT NOT NULL,
    text        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (bot_id, key, language)
);
-- Built-in commands a bot turned off (a JSON array of names: start, help, settings, stop);
-- NULL = all on. The app gets those as command.received and relaygram does not answer.
ALTER TABLE bots ADD COLUMN builtins_off TEXT;
