-- Digests: items for one (tenant, key, recipient) collect in the open digest until it
-- closes (by window or schedule), then go out as one message.
CREATE TABLE digests (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    -- One target as written (canonical JSON) and the bot: {"bot_id": …, "to": …}.
    recipient   TEXT NOT NULL,
    -- The first item's request without text/data/digest: the digest message's base.
    base        TEXT NOT NULL,
    template    TEXT,
    schedule_id TEXT,
    close_at    BIGINT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('open', 'closing', 'sent', 'failed')),
    request_id  TEXT,
    message_ids TEXT NOT NULL DEFAULT '[]',
    error       TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    closed_at   BIGINT
);
-- At most one open digest per key and recipient: later items join it.
CREATE UNIQUE INDEX digests_open ON digests (tenant_id, key, recipient) WHERE status = 'open';
CREATE INDEX digests_due ON digests (status, close_at);
CREATE INDEX digests_tenant ON digests (tenant_id, id);

CREATE TABLE digest_items (
    id         TEXT PRIMARY KEY,
    digest_id  TEXT NOT NULL REFERENCES digests (id) ON DELETE CASCADE,
    -- Arrival order within the digest (items of one millisecond keep it).
    seq        BIGINT NOT NULL,
    text       TEXT,
    data       TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX digest_items_digest ON digest_items (digest_id, seq);
