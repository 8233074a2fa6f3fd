-- relaygram schema: events to tenant apps (signed webhooks and a pull API).
-- Times are UTC milliseconds since the Unix epoch.

-- Where a tenant's app receives events. The `whsec_` secret is sealed (encrypted).
CREATE TABLE event_endpoints (
    id             TEXT PRIMARY KEY NOT NULL,
    tenant_id      TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    url            TEXT NOT NULL,
    secret_sealed  TEXT NOT NULL,
    description    TEXT NOT NULL,
    enabled        BOOLEAN NOT NULL,
    -- JSON array of type patterns (`link.created`, `message.*`); NULL = every type.
    event_types    TEXT,
    created_at     BIGINT NOT NULL
);
CREATE INDEX event_endpoints_tenant ON event_endpoints (tenant_id, id);

-- Events, in the order they were stored: `seq` is the pull API's cursor.
CREATE TABLE events (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    id          TEXT PRIMARY KEY NOT NULL,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    type        TEXT NOT NULL,
    data        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX events_tenant_seq ON events (tenant_id, seq);

-- One delivery per (event, endpoint). A claimed delivery holds a lease; when the lease
-- runs out (the process died mid-attempt) the delivery is claimed again.
CREATE TABLE event_deliveries (
    id               TEXT PRIMARY KEY NOT NULL,
    event_id         TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    endpoint_id      TEXT NOT NULL REFERENCES event_endpoints (id) ON DELETE CASCADE,
    tenant_id        TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         BIGINT NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    lease_token      TEXT,
    lease_until      BIGINT,
    last_status_code BIGINT,
    last_error       TEXT,
    delivered_at     BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    UNIQUE (event_id, endpoint_id)
);
CREATE INDEX event_deliveries_due ON event_deliveries (status, next_attempt_at);
CREATE INDEX event_deliveries_endpoint ON event_deliveries (endpoint_id);

-- Every attempt: when, HTTP status or error, how long it took.
CREATE TABLE event_attempts (
    id            TEXT PRIMARY KEY NOT NULL,
    delivery_id   TEXT NOT NULL REFERENCES event_deliveries (id) ON DELETE CASCADE,
    event_id      TEXT NOT NULL,
    attempted_at  BIGINT NOT NULL,
    status_code   BIGINT,
    error         TEXT,
    duration_ms   BIGINT NOT NULL
);
CREATE INDEX event_attempts_delivery ON event_attempts (delivery_id, id);
CREATE INDEX event_attempts_event ON event_attempts (event_id, id);
