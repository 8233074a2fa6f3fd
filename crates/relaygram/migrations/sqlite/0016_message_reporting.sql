-- relaygram schema: reporting filters and holds that wait aside.
-- `category`: the category a fan-out addressed (NULL for chats, links and app users named
-- directly), so `GET /v1/messages?category=` and `/v1/stats?category=` can filter by it.
-- `held`: why a queued message waits (`quiet`: its link's quiet hours, `local`: its local
-- send time); a held message does not hold up its chat's lane, and changing the link's
-- quiet hours or time zone re-plans exactly these.
ALTER TABLE messages ADD COLUMN category TEXT;
ALTER TABLE messages ADD COLUMN held TEXT;
CREATE INDEX messages_link ON messages (link_id, id) WHERE link_id IS NOT NULL;
CREATE INDEX messages_category ON messages (tenant_id, category, id) WHERE category IS NOT NULL;
CREATE INDEX messages_created ON messages (tenant_id, created_at);
CREATE INDEX messages_held ON messages (link_id) WHERE held IS NOT NULL;
