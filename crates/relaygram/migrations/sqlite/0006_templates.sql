-- relaygram schema: message templates (SQLite). One row per (tenant, key); `buttons` is the
-- JSON array of button rows as the app wrote them. Times are UTC milliseconds since the epoch.
CREATE TABLE templates (
    tenant_id    TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key          TEXT NOT NULL,
    text         TEXT NOT NULL,
    parse_mode   TEXT NOT NULL CHECK (parse_mode IN ('html', 'markdown_v2', 'plain')),
    buttons      TEXT NOT NULL,
    description  TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
