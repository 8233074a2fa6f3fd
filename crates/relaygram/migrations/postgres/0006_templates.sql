-- relaygram schema: message templates (PostgreSQL). One row per (tenant, key); `buttons` is
-- the JSON array of button rows as the app wrote them. Times are UTC milliseconds since the
-- epoch. Keys compare bytewise ("C"), as in SQLite, so cursors page the same way.
CREATE TABLE templates (
    tenant_id    TEXT COLLATE "C" NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key          TEXT COLLATE "C" NOT NULL,
    text         TEXT NOT NULL,
    parse_mode   TEXT NOT NULL CHECK (parse_mode IN ('html', 'markdown_v2', 'plain')),
    buttons      TEXT NOT NULL,
    description  TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
