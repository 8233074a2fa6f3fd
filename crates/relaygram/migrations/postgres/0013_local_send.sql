-- relaygram schema: delivery at a wall-clock time in each recipient's zone.
-- A message sent with `send_at_local` keeps that local date-time (`2026-11-22T09:00:00`)
-- and the zone for recipients whose link has none; its `send_at` is the earliest instant
-- that time occurs anywhere (read at UTC+14), and the sender holds it until the
-- recipient's own instant.
ALTER TABLE messages ADD COLUMN local_at TEXT;
ALTER TABLE messages ADD COLUMN local_zone TEXT;
-- A schedule whose cron is read in each recipient's zone (its `timezone` is the default).
ALTER TABLE schedules ADD COLUMN recipient_timezone BOOLEAN NOT NULL DEFAULT FALSE;
