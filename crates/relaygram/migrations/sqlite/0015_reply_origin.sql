-- A router reply is stored once per origin, `reply:{bot}:{update_id}:{received_at}:{n}` (the
-- n-th reply to one stored update), so a second run of the update stores nothing: the origin
-- replaces the reply's idempotency key row. Earlier replies' origins (without the time of
-- receipt, so possibly repeated) get their request id appended to stay unique.
UPDATE message_requests SET origin = origin || ':' || id WHERE origin LIKE 'reply:%';
CREATE UNIQUE INDEX message_requests_reply ON message_requests (origin) WHERE origin LIKE 'reply:%';
