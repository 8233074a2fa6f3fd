-- relaygram schema: editing and deleting what was sent.
-- `kind`: what an outbox row does in Telegram. `send` rows are the app's messages; `edit`
-- and `delete` rows are jobs on the sent message `edit_of`, queued in the same chat lane
-- (so after the send), paced like sends, with their own attempts and state. Listings and
-- statistics count `send` rows only.
-- `edited_at` / `deleted_at`: when an edit or delete of this message reached Telegram.
ALTER TABLE messages ADD COLUMN kind TEXT NOT NULL DEFAULT 'send' CHECK (kind IN ('send', 'edit', 'delete'));
ALTER TABLE messages ADD COLUMN edit_of TEXT;
ALTER TABLE messages ADD COLUMN edited_at BIGINT;
ALTER TABLE messages ADD COLUMN deleted_at BIGINT;
CREATE INDEX messages_edit_of ON messages (edit_of) WHERE edit_of IS NOT NULL;
