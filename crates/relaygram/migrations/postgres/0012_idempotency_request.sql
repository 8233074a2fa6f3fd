-- relaygram schema: an idempotency key remembers its request, so the answer can be rebuilt
-- when a crash came between storing the messages and storing the answer (the key and the
-- messages commit together; the answer is written right after).
ALTER TABLE idempotency_keys ADD COLUMN request_id TEXT;
CREATE INDEX messages_request ON messages (request_id);
