-- relaygram schema: polling leases (SQLite). One instance at a time polls a bot with
-- getUpdates (Telegram answers 409 to a second poller): the holder renews its row while it
-- polls, and another instance takes over once `lease_until` (UTC ms) has passed.
CREATE TABLE poll_leases (
    bot_id      TEXT PRIMARY KEY REFERENCES bots (id) ON DELETE CASCADE,
    holder      TEXT NOT NULL,
    lease_until INTEGER NOT NULL
);
