-- One server owns a SQLite database and claims its updates in memory, so the claim's
-- indexes (status in the key: every claim and outcome moved two entries) give way to ones an
-- outcome moves at most once: the start-up scan reads open updates in order, the audit log
-- reads a chat's.
DROP INDEX updates_status;
DROP INDEX updates_chat;
CREATE INDEX updates_open ON updates (received_at, update_id) WHERE status IN ('pending', 'processing');
CREATE INDEX updates_chat ON updates (bot_id, chat_id, received_at);
-- Most messages (replies, single sends) belong to no broadcast.
DROP INDEX messages_broadcast;
CREATE INDEX messages_broadcast ON messages (broadcast_id, status) WHERE broadcast_id IS NOT NULL;
