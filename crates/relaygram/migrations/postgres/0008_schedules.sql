-- relaygram schema: schedules (PostgreSQL). Recurring messages and their runs. Times are UTC
-- milliseconds since the epoch; `message` is the JSON body `POST /v1/messages` takes.
CREATE TABLE schedules (
    id            TEXT COLLATE "C" PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    cron          TEXT,
    every         TEXT,
    timezone      TEXT NOT NULL,
    message       TEXT NOT NULL,
    enabled       BOOLEAN NOT NULL,
    catch_up      TEXT NOT NULL CHECK (catch_up IN ('skip', 'once')),
    start_at      BIGINT,
    end_at        BIGINT,
    anchor_at     BIGINT NOT NULL,
    next_fire_at  BIGINT,
    last_fire_at  BIGINT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    CHECK ((cron IS NULL) <> (every IS NULL))
);
CREATE INDEX schedules_tenant ON schedules (tenant_id, id);
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE enabled AND next_fire_at IS NOT NULL;

-- One row per fired occurrence. The unique index is what makes an occurrence fire once:
-- it is inserted in the transaction that advances the schedule's next_fire_at.
CREATE TABLE schedule_runs (
    id             TEXT COLLATE "C" PRIMARY KEY,
    schedule_id    TEXT NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    tenant_id      TEXT NOT NULL,
    occurrence_at  BIGINT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('scheduled', 'catch_up', 'manual')),
    state          TEXT NOT NULL CHECK (state IN ('claimed', 'submitted', 'failed', 'unknown')),
    attempts       BIGINT NOT NULL DEFAULT 0,
    lease_until    BIGINT,
    message_ids    TEXT,
    broadcast_id   TEXT,
    error          TEXT,
    claimed_at     BIGINT NOT NULL,
    finished_at    BIGINT
);
CREATE UNIQUE INDEX schedule_runs_occurrence ON schedule_runs (schedule_id, occurrence_at)
    WHERE kind <> 'manual';
CREATE INDEX schedule_runs_by_schedule ON schedule_runs (schedule_id, id);
CREATE INDEX schedule_runs_claimed ON schedule_runs (lease_until) WHERE state = 'claimed';
