//! Storage for events: Events for tenant apps: endpoints, deliveries, attempts.
//!
//! An event is stored once with a per-store increasing `seq` (the pull API's cursor) and one
//! pending delivery per matching endpoint, in one transaction. Deliveries are claimed with
//! a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL), attempted outside any transaction, and
//! finished with the attempt logged; a lease that runs out is claimed again.

use std::str::FromStr;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;

use super::batch::GroupCommit;
pub use super::records::NewEvent;
use super::sql::{Col, Engine, JsonRows, PgStore, SqliteStore, json_array};
use super::{Listed, Page, StoreError, StoreResult};
use crate::ids::new_id;

/// Where a tenant's app receives events.
#[derive(Clone, PartialEq, Eq)]
pub struct EndpointRecord {
    /// Opaque id (`ep_…`).
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// The http(s) URL events are POSTed to.
    pub url: String,
    /// The `whsec_…` signing secret, sealed.
    pub secret_sealed: String,
    /// Operator-chosen text.
    pub description: String,
    /// Whether new events are delivered to it.
    pub enabled: bool,
    /// Type patterns it receives (`link.created`, `message.*`); `None` = every type.
    pub event_types: Option<Vec<String>>,
    /// Creation time (UTC ms).
    pub created_at: i64,
}

impl std::fmt::Debug for EndpointRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointRecord")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("url", &self.url)
            .field("enabled", &self.enabled)
            .field("event_types", &self.event_types)
            .finish_non_exhaustive()
    }
}

impl EndpointRecord {
    /// Whether this endpoint wants events of `event_type`.
    pub fn wants(&self, event_type: &str) -> bool {
        self.event_types
            .as_deref()
            .is_none_or(|patterns| patterns.iter().any(|p| type_matches(p, event_type)))
    }
}

/// Whether a type pattern (`link.created`, `message.*`, `*`) matches an event type.
pub fn type_matches(pattern: &str, event_type: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_suffix('*') {
        Some(prefix) => event_type.starts_with(prefix),
        None => pattern == event_type,
    }
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    /// Position in the store's event sequence (the pull cursor).
    pub seq: i64,
    /// Opaque id (`evt_…`).
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Type, e.g. `command.received`.
    pub event_type: String,
    /// The payload's `data`, as JSON text.
    pub data: String,
    /// Creation time (UTC ms).
    pub created_at: i64,
}

/// An event just stored, and how many deliveries it was given (endpoints that want it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// The event.
    pub event: EventRecord,
    /// Deliveries created for it (0 when no endpoint of its tenant wants it).
    pub deliveries: usize,
}

/// Where a delivery stands.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt (or being attempted).
    Pending,
    /// The endpoint answered 2xx.
    Delivered,
    /// Every attempt of the retry schedule failed.
    Failed,
}

impl DeliveryStatus {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }
}

impl FromStr for DeliveryStatus {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(DeliveryStatus::Pending),
            "delivered" => Ok(DeliveryStatus::Delivered),
            "failed" => Ok(DeliveryStatus::Failed),
            other => Err(StoreError::Corrupt(format!(
                "unknown delivery status {other:?}"
            ))),
        }
    }
}

/// One event's delivery to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// Opaque id (`dlv_…`).
    pub id: String,
    /// The event.
    pub event_id: String,
    /// The endpoint.
    pub endpoint_id: String,
    /// The tenant of both.
    pub tenant_id: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts started in the current round (a replay starts a new round).
    pub attempts: i64,
    /// When the next attempt is due (UTC ms); meaningful while pending.
    pub next_attempt_at: i64,
    /// HTTP status of the last attempt, if it got an answer.
    pub last_status_code: Option<i64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the endpoint acknowledged it (UTC ms).
    pub delivered_at: Option<i64>,
    /// Creation time (UTC ms).
    pub created_at: i64,
    /// Last change (UTC ms).
    pub updated_at: i64,
}

/// One attempt to deliver, as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// Opaque id (`att_…`).
    pub id: String,
    /// The delivery.
    pub delivery_id: String,
    /// The event.
    pub event_id: String,
    /// When it started (UTC ms).
    pub attempted_at: i64,
    /// HTTP status, when the endpoint answered.
    pub status_code: Option<i64>,
    /// Transport error or a summary of the failure.
    pub error: Option<String>,
    /// How long it took, in milliseconds.
    pub duration_ms: i64,
}

/// A delivery claimed for one attempt, with what is needed to make it.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    /// The delivery (its `attempts` already counts this attempt).
    pub delivery: DeliveryRecord,
    /// The event to send.
    pub event: EventRecord,
    /// The endpoint's URL.
    pub url: String,
    /// The endpoint's sealed secret.
    pub secret_sealed: String,
    /// Proof of the claim; finishing with another token changes nothing.
    pub lease_token: String,
}

/// What became of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// 2xx: done.
    Delivered,
    /// Try again at this time (UTC ms).
    RetryAt(i64),
    /// The schedule is exhausted: give up.
    Failed,
}

/// Which events to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    /// The tenant.
    pub tenant_id: String,
    /// Only events with a greater `seq`.
    pub after_seq: i64,
    /// Only this type, or types starting with this prefix when it ends with `*`.
    pub event_type: Option<String>,
    /// At most this many.
    pub limit: u32,
}

/// Events for tenant apps: endpoints, deliveries, attempts.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Stores an endpoint.
    async fn insert_event_endpoint(&self, endpoint: &EndpointRecord) -> StoreResult<()>;
    /// One endpoint.
    async fn get_event_endpoint(&self, id: &str) -> StoreResult<Option<EndpointRecord>>;
    /// Endpoints, of one tenant or of all.
    async fn list_event_endpoints(
        &self,
        tenant_id: Option<&str>,
        page: &Page,
    ) -> StoreResult<Listed<EndpointRecord>>;
    /// Deletes an endpoint with its deliveries; `false` when it did not exist.
    async fn delete_event_endpoint(&self, id: &str) -> StoreResult<bool>;

    /// Stores an event and one pending delivery (due now) per enabled endpoint of its
    /// tenant that wants its type, in one transaction. Returns the stored event.
    async fn insert_event(&self, event: &NewEvent) -> StoreResult<StoredEvent>;
    /// One event.
    async fn get_event(&self, id: &str) -> StoreResult<Option<EventRecord>>;
    /// A tenant's events after a cursor, in `seq` order.
    async fn list_events(&self, query: &EventQuery) -> StoreResult<Vec<EventRecord>>;
    /// The deliveries of one event.
    async fn list_event_deliveries(&self, event_id: &str) -> StoreResult<Vec<DeliveryRecord>>;
    /// The attempts made for one event, oldest first.
    async fn list_event_attempts(&self, event_id: &str) -> StoreResult<Vec<AttemptRecord>>;
    /// Makes the event's delivery to `endpoint_id` pending and due at `at`, starting a new
    /// round (created when missing). Returns the delivery id, or `None` when the event or
    /// endpoint is gone.
    async fn schedule_delivery(
        &self,
        event_id: &str,
        endpoint_id: &str,
        at: i64,
    ) -> StoreResult<Option<String>>;

    /// Claims one due pending delivery whose lease is free, for `lease_ms`.
    async fn claim_delivery(&self, now: i64, lease_ms: i64)
    -> StoreResult<Option<ClaimedDelivery>>;
    /// Logs an attempt and applies its outcome, if the claim is still held. Returns
    /// whether the delivery was updated (`false`: the lease was lost, e.g. to a replay).
    async fn finish_delivery(
        &self,
        claimed: &ClaimedDelivery,
        attempt: &AttemptRecord,
        outcome: DeliveryOutcome,
    ) -> StoreResult<bool>;
}

const ENDPOINT_COLS: &str =
    "id, tenant_id, url, secret_sealed, description, enabled, event_types, created_at";
const EVENT_COLS: &str = "seq, id, tenant_id, type, data, created_at";
const DELIVERY_COLS: &str = "id, event_id, endpoint_id, tenant_id, status, attempts, \
     next_attempt_at, last_status_code, last_error, delivered_at, created_at, updated_at";
const ATTEMPT_COLS: &str =
    "id, delivery_id, event_id, attempted_at, status_code, error, duration_ms";

fn encode_types(types: &Option<Vec<String>>) -> StoreResult<Option<String>> {
    types
        .as_ref()
        .map(|t| serde_json::to_string(t).map_err(|e| StoreError::Corrupt(e.to_string())))
        .transpose()
}

fn decode_types(text: Option<String>) -> StoreResult<Option<Vec<String>>> {
    text.map(|t| {
        serde_json::from_str(&t)
            .map_err(|e| StoreError::Corrupt(format!("endpoint event_types: {e}")))
    })
    .transpose()
}

macro_rules! events_store {
    ($store:ty, $row:ty, $engine:literal, $skip_locked:literal) => {
        impl $store {
            fn endpoint(row: &$row) -> StoreResult<EndpointRecord> {
                Ok(EndpointRecord {
                    id: row.try_get("id")?,
                    tenant_id: row.try_get("tenant_id")?,
                    url: row.try_get("url")?,
                    secret_sealed: row.try_get("secret_sealed")?,
                    description: row.try_get("description")?,
                    enabled: row.try_get("enabled")?,
                    event_types: decode_types(row.try_get("event_types")?)?,
                    created_at: row.try_get("created_at")?,
                })
            }

            fn event(row: &$row) -> StoreResult<EventRecord> {
                Ok(EventRecord {
                    seq: row.try_get("seq")?,
                    id: row.try_get("id")?,
                    tenant_id: row.try_get("tenant_id")?,
                    event_type: row.try_get("type")?,
                    data: row.try_get("data")?,
                    created_at: row.try_get("created_at")?,
                })
            }

            fn delivery(row: &$row) -> StoreResult<DeliveryRecord> {
                Ok(DeliveryRecord {
                    id: row.try_get("id")?,
                    event_id: row.try_get("event_id")?,
                    endpoint_id: row.try_get("endpoint_id")?,
                    tenant_id: row.try_get("tenant_id")?,
                    status: DeliveryStatus::from_str(row.try_get::<&str, _>("status")?)?,
                    attempts: row.try_get("attempts")?,
                    next_attempt_at: row.try_get("next_attempt_at")?,
                    last_status_code: row.try_get("last_status_code")?,
                    last_error: row.try_get("last_error")?,
                    delivered_at: row.try_get("delivered_at")?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                })
            }

            /// Stores events and their deliveries in one transaction (group commit: the
            /// events of every processor finishing at the same time go together).
            async fn insert_events(
                db: <$row as Engine>::Db,
                evs: std::sync::Arc<Vec<NewEvent>>,
            ) -> StoreResult<Vec<StoredEvent>> {
                let mut tx = db.begin().await?;
                let all: Vec<&NewEvent> = evs.iter().collect();
                let written = Self::write_events(&mut *tx, &all).await?;
                tx.commit().await?;
                Ok(evs
                    .iter()
                    .zip(written)
                    .map(|(ev, (seq, deliveries))| StoredEvent {
                        event: EventRecord {
                            seq,
                            id: ev.id.clone(),
                            tenant_id: ev.tenant_id.clone(),
                            event_type: ev.event_type.clone(),
                            data: ev.data.clone(),
                            created_at: ev.created_at,
                        },
                        deliveries,
                    })
                    .collect())
            }

            /// Stores events and one pending delivery per enabled endpoint of their tenant
            /// that wants each, inside the caller's transaction: a statement for the events,
            /// one for the endpoints, one for the deliveries, however many events. Answers
            /// each event's `seq` and its number of deliveries, in order.
            pub(super) async fn write_events(
                conn: &mut <<$row as sqlx::Row>::Database as sqlx::Database>::Connection,
                evs: &[&NewEvent],
            ) -> StoreResult<Vec<(i64, usize)>> {
                if evs.is_empty() {
                    return Ok(Vec::new());
                }
                let mut tenants: Vec<&str> = evs.iter().map(|e| e.tenant_id.as_str()).collect();
                tenants.sort_unstable();
                tenants.dedup();
                if $engine == "postgres" {
                    // Events of one tenant commit in `seq` order, so a reader that has
                    // seen `seq` n never misses a smaller one committed later. Locks are
                    // taken in tenant order, so concurrent batches cannot deadlock.
                    for tenant in &tenants {
                        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                            .bind(*tenant)
                            .execute(&mut *conn)
                            .await?;
                    }
                }
                let sql = format!(
                    "{} RETURNING id, seq",
                    <$store>::json_insert(
                        "events",
                        &[
                            Col::Text("id"),
                            Col::Text("tenant_id"),
                            Col::Text("type"),
                            Col::Text("data"),
                            Col::Int("created_at"),
                        ],
                    )
                );
                let rows = json_array(
                    evs.iter()
                        .map(|e| (&e.id, &e.tenant_id, &e.event_type, &e.data, e.created_at)),
                );
                let mut seqs = std::collections::HashMap::with_capacity(evs.len());
                for row in sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(rows)
                    .fetch_all(&mut *conn)
                    .await?
                {
                    seqs.insert(row.try_get::<String, _>("id")?, row.try_get::<i64, _>("seq")?);
                }
                let sql = format!(
                    "SELECT {ENDPOINT_COLS} FROM event_endpoints \
                     WHERE enabled AND tenant_id IN (SELECT t FROM ({}) AS r) ORDER BY id",
                    <$store>::json_rows("$1", &[Col::Text("t")])
                );
                let endpoints = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(json_array(tenants.iter().map(|t| (t,))))
                    .fetch_all(&mut *conn)
                    .await?
                    .iter()
                    .map(Self::endpoint)
                    .collect::<StoreResult<Vec<_>>>()?;
                let mut counts = vec![0usize; evs.len()];
                let mut deliveries = Vec::new();
                for (i, ev) in evs.iter().enumerate() {
                    for e in endpoints
                        .iter()
                        .filter(|e| e.tenant_id == ev.tenant_id && e.wants(&ev.event_type))
                    {
                        counts[i] += 1;
                        deliveries.push((
                            new_id("dlv"),
                            &ev.id,
                            &e.id,
                            &ev.tenant_id,
                            DeliveryStatus::Pending.as_str(),
                            0i64,
                            ev.created_at,
                            ev.created_at,
                            ev.created_at,
                        ));
                    }
                }
                if !deliveries.is_empty() {
                    let sql = <$store>::json_insert(
                        "event_deliveries",
                        &[
                            Col::Text("id"),
                            Col::Text("event_id"),
                            Col::Text("endpoint_id"),
                            Col::Text("tenant_id"),
                            Col::Text("status"),
                            Col::Int("attempts"),
                            Col::Int("next_attempt_at"),
                            Col::Int("created_at"),
                            Col::Int("updated_at"),
                        ],
                    );
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(json_array(deliveries))
                        .execute(&mut *conn)
                        .await?;
                }
                evs.iter()
                    .zip(counts)
                    .map(|(ev, n)| {
                        let seq = seqs.get(&ev.id).copied().ok_or_else(|| {
                            StoreError::Corrupt(format!("event {} was not stored", ev.id))
                        })?;
                        Ok((seq, n))
                    })
                    .collect()
            }

            async fn insert_one_event(
                db: <$row as Engine>::Db,
                ev: NewEvent,
            ) -> StoreResult<StoredEvent> {
                Ok(Self::insert_events(db, std::sync::Arc::new(vec![ev]))
                    .await?
                    .remove(0))
            }

            fn attempt(row: &$row) -> StoreResult<AttemptRecord> {
                Ok(AttemptRecord {
                    id: row.try_get("id")?,
                    delivery_id: row.try_get("delivery_id")?,
                    event_id: row.try_get("event_id")?,
                    attempted_at: row.try_get("attempted_at")?,
                    status_code: row.try_get("status_code")?,
                    error: row.try_get("error")?,
                    duration_ms: row.try_get("duration_ms")?,
                })
            }
        }

        #[async_trait]
        impl EventStore for $store {
            async fn insert_event_endpoint(&self, e: &EndpointRecord) -> StoreResult<()> {
                let sql = format!(
                    "INSERT INTO event_endpoints ({ENDPOINT_COLS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(&e.id)
                    .bind(&e.tenant_id)
                    .bind(&e.url)
                    .bind(&e.secret_sealed)
                    .bind(&e.description)
                    .bind(e.enabled)
                    .bind(encode_types(&e.event_types)?)
                    .bind(e.created_at)
                    .execute(&self.db)
                    .await?;
                Ok(())
            }

            async fn get_event_endpoint(&self, id: &str) -> StoreResult<Option<EndpointRecord>> {
                let sql = format!("SELECT {ENDPOINT_COLS} FROM event_endpoints WHERE id = $1");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .fetch_optional(&self.db)
                    .await?
                    .as_ref()
                    .map(Self::endpoint)
                    .transpose()
            }

            async fn list_event_endpoints(
                &self,
                tenant_id: Option<&str>,
                page: &Page,
            ) -> StoreResult<Listed<EndpointRecord>> {
                let sql = format!(
                    "SELECT {ENDPOINT_COLS} FROM event_endpoints \
                     WHERE ($1 IS NULL OR tenant_id = $1) AND ($2 IS NULL OR id > $2) \
                     ORDER BY id LIMIT $3"
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(tenant_id)
                    .bind(page.after.as_deref())
                    .bind(i64::from(page.size()) + 1)
                    .fetch_all(&self.db)
                    .await?;
                let items = rows
                    .iter()
                    .map(Self::endpoint)
                    .collect::<StoreResult<Vec<_>>>()?;
                Ok(Listed::from_overfetch(items, page, |e| &e.id))
            }

            async fn delete_event_endpoint(&self, id: &str) -> StoreResult<bool> {
                let done = sqlx::query("DELETE FROM event_endpoints WHERE id = $1")
                    .bind(id)
                    .execute(&self.db)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn insert_event(&self, ev: &NewEvent) -> StoreResult<StoredEvent> {
                let queue = self.hot.events.get_or_init(|| {
                    let (a, b) = (self.db.clone(), self.db.clone());
                    GroupCommit::new(
                        256,
                        1,
                        move |batch| Self::insert_events(a.clone(), batch),
                        move |one| Self::insert_one_event(b.clone(), one),
                    )
                });
                queue.submit(ev.clone()).await
            }

            async fn get_event(&self, id: &str) -> StoreResult<Option<EventRecord>> {
                let sql = format!("SELECT {EVENT_COLS} FROM events WHERE id = $1");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .fetch_optional(&self.db)
                    .await?
                    .as_ref()
                    .map(Self::event)
                    .transpose()
            }

            async fn list_events(&self, q: &EventQuery) -> StoreResult<Vec<EventRecord>> {
                let (exact, prefix) = match q.event_type.as_deref() {
                    Some(t) => match t.strip_suffix('*') {
                        Some(prefix) => (None, Some(prefix)),
                        None => (Some(t), None),
                    },
                    None => (None, None),
                };
                let sql = format!(
                    "SELECT {EVENT_COLS} FROM events \
                     WHERE tenant_id = $1 AND seq > $2 AND ($3 IS NULL OR type = $3) \
                     AND ($4 IS NULL OR substr(type, 1, length($4)) = $4) \
                     ORDER BY seq LIMIT $5"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(&q.tenant_id)
                    .bind(q.after_seq)
                    .bind(exact)
                    .bind(prefix)
                    .bind(i64::from(q.limit.clamp(1, super::MAX_PAGE_SIZE)))
                    .fetch_all(&self.db)
                    .await?
                    .iter()
                    .map(Self::event)
                    .collect()
            }

            async fn list_event_deliveries(
                &self,
                event_id: &str,
            ) -> StoreResult<Vec<DeliveryRecord>> {
                let sql = format!(
                    "SELECT {DELIVERY_COLS} FROM event_deliveries WHERE event_id = $1 ORDER BY id"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(event_id)
                    .fetch_all(&self.db)
                    .await?
                    .iter()
                    .map(Self::delivery)
                    .collect()
            }

            async fn list_event_attempts(&self, event_id: &str) -> StoreResult<Vec<AttemptRecord>> {
                let sql = format!(
                    "SELECT {ATTEMPT_COLS} FROM event_attempts WHERE event_id = $1 ORDER BY id"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(event_id)
                    .fetch_all(&self.db)
                    .await?
                    .iter()
                    .map(Self::attempt)
                    .collect()
            }

            async fn schedule_delivery(
                &self,
                event_id: &str,
                endpoint_id: &str,
                at: i64,
            ) -> StoreResult<Option<String>> {
                // One statement: creates the delivery, or starts a new round of an existing
                // one (dropping any lease, so an attempt in flight cannot overwrite it).
                let row = sqlx::query(
                    "INSERT INTO event_deliveries (id, event_id, endpoint_id, tenant_id, \
                     status, attempts, next_attempt_at, created_at, updated_at) \
                     SELECT $1, ev.id, ep.id, ev.tenant_id, 'pending', 0, $4, $4, $4 \
                     FROM events ev JOIN event_endpoints ep ON ep.tenant_id = ev.tenant_id \
                     WHERE ev.id = $2 AND ep.id = $3 \
                     ON CONFLICT (event_id, endpoint_id) DO UPDATE SET status = 'pending', \
                     attempts = 0, next_attempt_at = $4, lease_token = NULL, \
                     lease_until = NULL, updated_at = $4 \
                     RETURNING id",
                )
                .bind(new_id("dlv"))
                .bind(event_id)
                .bind(endpoint_id)
                .bind(at)
                .fetch_optional(&self.db)
                .await?;
                Ok(row.map(|r| r.try_get("id")).transpose()?)
            }

            async fn claim_delivery(
                &self,
                now: i64,
                lease_ms: i64,
            ) -> StoreResult<Option<ClaimedDelivery>> {
                let token = new_id("lease");
                let sql = format!(
                    "UPDATE event_deliveries SET lease_token = $1, lease_until = $2, \
                     attempts = attempts + 1, updated_at = $3 \
                     WHERE id = (SELECT id FROM event_deliveries \
                         WHERE status = 'pending' AND next_attempt_at <= $3 \
                         AND (lease_until IS NULL OR lease_until <= $3) \
                         ORDER BY next_attempt_at, id LIMIT 1 {}) \
                     AND status = 'pending' AND (lease_until IS NULL OR lease_until <= $3) \
                     RETURNING id",
                    $skip_locked
                );
                let claimed = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(&token)
                    .bind(now.saturating_add(lease_ms))
                    .bind(now)
                    .fetch_optional(&self.db)
                    .await?;
                let Some(row) = claimed else {
                    return Ok(None);
                };
                let id: String = row.try_get("id")?;
                let sql = format!(
                    "SELECT {DELIVERY_COLS} FROM event_deliveries WHERE id = $1 AND lease_token = $2"
                );
                let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(&id)
                    .bind(&token)
                    .fetch_optional(&self.db)
                    .await?
                else {
                    return Ok(None);
                };
                let delivery = Self::delivery(&row)?;
                let event = self.get_event(&delivery.event_id).await?;
                let endpoint = self.get_event_endpoint(&delivery.endpoint_id).await?;
                match (event, endpoint) {
                    (Some(event), Some(endpoint)) => Ok(Some(ClaimedDelivery {
                        delivery,
                        event,
                        url: endpoint.url,
                        secret_sealed: endpoint.secret_sealed,
                        lease_token: token,
                    })),
                    // Deleted meanwhile: its deliveries went with it.
                    _ => Ok(None),
                }
            }

            async fn finish_delivery(
                &self,
                claimed: &ClaimedDelivery,
                a: &AttemptRecord,
                outcome: DeliveryOutcome,
            ) -> StoreResult<bool> {
                let now = a.attempted_at.saturating_add(a.duration_ms);
                let mut tx = self.db.begin().await?;
                let logged = sqlx::query(
                    "INSERT INTO event_attempts (id, delivery_id, event_id, attempted_at, \
                     status_code, error, duration_ms) \
                     SELECT $1, $2, $3, $4, $5, $6, $7 \
                     WHERE EXISTS (SELECT 1 FROM event_deliveries WHERE id = $2)",
                )
                .bind(&a.id)
                .bind(&a.delivery_id)
                .bind(&a.event_id)
                .bind(a.attempted_at)
                .bind(a.status_code)
                .bind(a.error.as_deref())
                .bind(a.duration_ms)
                .execute(&mut *tx)
                .await?;
                if logged.rows_affected() == 0 {
                    tx.commit().await?;
                    return Ok(false);
                }
                let (status, next_at, delivered_at) = match outcome {
                    DeliveryOutcome::Delivered => (DeliveryStatus::Delivered, now, Some(now)),
                    DeliveryOutcome::RetryAt(at) => (DeliveryStatus::Pending, at, None),
                    DeliveryOutcome::Failed => (DeliveryStatus::Failed, now, None),
                };
                let done = sqlx::query(
                    "UPDATE event_deliveries SET status = $3, next_attempt_at = $4, \
                     delivered_at = $5, last_status_code = $6, last_error = $7, \
                     lease_token = NULL, lease_until = NULL, updated_at = $8 \
                     WHERE id = $1 AND lease_token = $2",
                )
                .bind(&claimed.delivery.id)
                .bind(&claimed.lease_token)
                .bind(status.as_str())
                .bind(next_at)
                .bind(delivered_at)
                .bind(a.status_code)
                .bind(a.error.as_deref())
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(done.rows_affected() == 1)
            }
        }
    };
}

events_store!(SqliteStore, SqliteRow, "sqlite", "");
events_store!(PgStore, PgRow, "postgres", "FOR UPDATE SKIP LOCKED");

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use secrecy::SecretString;

    use super::*;
    use crate::store::testing::{engines, fresh};
    use crate::store::{Store, Tenant, connect};

    fn endpoint(id: &str, tenant_id: &str, types: Option<&[&str]>) -> EndpointRecord {
        EndpointRecord {
            id: id.into(),
            tenant_id: tenant_id.into(),
            url: format!("http://127.0.0.1:9/{id}"),
            secret_sealed: "v1:sealed".into(),
            description: String::new(),
            enabled: true,
            event_types: types.map(|t| t.iter().map(|s| s.to_string()).collect()),
            created_at: 10,
        }
    }

    fn event(id: &str, tenant_id: &str, event_type: &str, at: i64) -> NewEvent {
        NewEvent {
            id: id.into(),
            tenant_id: tenant_id.into(),
            event_type: event_type.into(),
            data: format!(r#"{{"n":"{id}"}}"#),
            created_at: at,
        }
    }

    fn attempt(claimed: &ClaimedDelivery, at: i64, status: Option<i64>) -> AttemptRecord {
        AttemptRecord {
            id: new_id("att"),
            delivery_id: claimed.delivery.id.clone(),
            event_id: claimed.event.id.clone(),
            attempted_at: at,
            status_code: status,
            error: status.filter(|s| *s >= 300).map(|s| format!("HTTP {s}")),
            duration_ms: 3,
        }
    }

    async fn story(store: Arc<dyn Store>) {
        let engine = store.engine();
        for t in ["ten_a", "ten_b"] {
            store
                .insert_tenant(&Tenant {
                    id: t.into(),
                    name: t.into(),
                    created_at: 1,
                })
                .await
                .unwrap();
        }
        // Endpoints: scoped lists, filters kept, deletion.
        let all = endpoint("ep_1", "ten_a", None);
        let links = endpoint("ep_2", "ten_a", Some(&["link.*"]));
        let mut off = endpoint("ep_3", "ten_a", None);
        off.enabled = false;
        let other = endpoint("ep_4", "ten_b", None);
        for e in [&all, &links, &off, &other] {
            store.insert_event_endpoint(e).await.unwrap();
        }
        assert_eq!(
            store.get_event_endpoint("ep_2").await.unwrap().unwrap(),
            links
        );
        let a = store
            .list_event_endpoints(Some("ten_a"), &Page::first(2))
            .await
            .unwrap();
        assert_eq!(a.items.len(), 2, "{engine}");
        assert_eq!(a.next_cursor.as_deref(), Some("ep_2"));
        let everyone = store
            .list_event_endpoints(None, &Page::first(10))
            .await
            .unwrap();
        assert_eq!(everyone.items.len(), 4);

        // An event gets one pending delivery per enabled endpoint that wants it.
        let e1 = store
            .insert_event(&event("evt_1", "ten_a", "command.received", 100))
            .await
            .unwrap();
        let e2 = store
            .insert_event(&event("evt_2", "ten_a", "link.created", 101))
            .await
            .unwrap();
        let e3 = store
            .insert_event(&event("evt_3", "ten_b", "link.created", 102))
            .await
            .unwrap();
        assert_eq!(
            (e1.deliveries, e2.deliveries, e3.deliveries),
            (1, 2, 1),
            "{engine}"
        );
        let (e1, e2, e3) = (e1.event, e2.event, e3.event);
        assert!(
            e1.seq < e2.seq && e2.seq < e3.seq,
            "{engine}: seq increases"
        );
        let d1 = store.list_event_deliveries("evt_1").await.unwrap();
        assert_eq!(d1.len(), 1, "{engine}");
        assert_eq!(d1[0].endpoint_id, "ep_1");
        assert_eq!(d1[0].status, DeliveryStatus::Pending);
        let d2 = store.list_event_deliveries("evt_2").await.unwrap();
        let mut eps: Vec<_> = d2.iter().map(|d| d.endpoint_id.as_str()).collect();
        eps.sort();
        assert_eq!(eps, ["ep_1", "ep_2"], "{engine}");

        // Pull: per tenant, after a cursor, by type or prefix.
        let query = |after: i64, t: Option<&str>| EventQuery {
            tenant_id: "ten_a".into(),
            after_seq: after,
            event_type: t.map(str::to_string),
            limit: 10,
        };
        let page = store.list_events(&query(0, None)).await.unwrap();
        assert_eq!(page, vec![e1.clone(), e2.clone()], "{engine}");
        assert_eq!(
            store.list_events(&query(e1.seq, None)).await.unwrap(),
            vec![e2.clone()]
        );
        assert_eq!(
            store.list_events(&query(0, Some("link.*"))).await.unwrap(),
            vec![e2.clone()]
        );
        assert_eq!(
            store
                .list_events(&query(0, Some("command.received")))
                .await
                .unwrap(),
            vec![e1.clone()]
        );
        assert!(
            store
                .list_events(&query(e2.seq, None))
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(store.get_event("evt_3").await.unwrap().unwrap(), e3);

        // Claiming: only due deliveries, each once while its lease holds.
        assert!(
            store.claim_delivery(99, 1000).await.unwrap().is_none(),
            "{engine}: not due yet"
        );
        let mut claimed = Vec::new();
        while let Some(c) = store.claim_delivery(200, 1000).await.unwrap() {
            assert_eq!(c.delivery.attempts, 1);
            claimed.push(c);
        }
        assert_eq!(claimed.len(), 4, "{engine}: ep_1×2, ep_2, ep_4");
        // A crash: the lease runs out and the delivery is claimed again.
        let again = store.claim_delivery(1300, 1000).await.unwrap().unwrap();
        assert_eq!(again.delivery.attempts, 2);
        let stale = claimed
            .iter()
            .find(|c| c.delivery.id == again.delivery.id)
            .unwrap()
            .clone();
        assert!(
            !store
                .finish_delivery(
                    &stale,
                    &attempt(&stale, 1301, Some(200)),
                    DeliveryOutcome::Delivered
                )
                .await
                .unwrap(),
            "{engine}: a lost lease changes nothing"
        );
        assert!(
            store
                .finish_delivery(
                    &again,
                    &attempt(&again, 1302, Some(500)),
                    DeliveryOutcome::RetryAt(5000)
                )
                .await
                .unwrap()
        );
        let d = store.list_event_deliveries(&again.event.id).await.unwrap();
        let d = d.iter().find(|d| d.id == again.delivery.id).unwrap();
        assert_eq!(d.status, DeliveryStatus::Pending);
        assert_eq!(d.next_attempt_at, 5000);
        assert_eq!(d.last_status_code, Some(500));
        assert_eq!(d.last_error.as_deref(), Some("HTTP 500"));
        assert_eq!(
            store
                .list_event_attempts(&again.event.id)
                .await
                .unwrap()
                .len(),
            2,
            "{engine}: both attempts are logged"
        );
        for c in claimed
            .iter()
            .filter(|c| c.delivery.id != again.delivery.id)
        {
            let outcome = if c.event.id == "evt_3" {
                DeliveryOutcome::Failed
            } else {
                DeliveryOutcome::Delivered
            };
            assert!(
                store
                    .finish_delivery(c, &attempt(c, 400, Some(200)), outcome)
                    .await
                    .unwrap()
            );
        }
        let d3 = store.list_event_deliveries("evt_3").await.unwrap();
        assert_eq!(d3[0].status, DeliveryStatus::Failed);
        assert!(store.claim_delivery(4999, 1000).await.unwrap().is_none());
        let retry = store.claim_delivery(5000, 1000).await.unwrap().unwrap();
        assert_eq!(retry.delivery.id, again.delivery.id);
        assert!(
            store
                .finish_delivery(
                    &retry,
                    &attempt(&retry, 5001, Some(204)),
                    DeliveryOutcome::Delivered
                )
                .await
                .unwrap()
        );

        // Replay: a new round for an existing delivery, a new delivery for another endpoint.
        let replayed = store
            .schedule_delivery("evt_3", "ep_4", 6000)
            .await
            .unwrap();
        assert_eq!(replayed.as_deref(), Some(d3[0].id.as_str()), "{engine}");
        let fresh_one = store
            .schedule_delivery("evt_1", "ep_3", 6000)
            .await
            .unwrap();
        assert!(fresh_one.is_some());
        assert_eq!(
            store
                .schedule_delivery("evt_1", "ep_4", 6000)
                .await
                .unwrap(),
            None,
            "{engine}: another tenant's endpoint"
        );
        assert_eq!(
            store
                .schedule_delivery("evt_x", "ep_1", 6000)
                .await
                .unwrap(),
            None
        );
        let d3 = store.list_event_deliveries("evt_3").await.unwrap();
        assert_eq!(d3[0].status, DeliveryStatus::Pending);
        assert_eq!(d3[0].attempts, 0);
        let mut due = 0;
        while let Some(c) = store.claim_delivery(6000, 1000).await.unwrap() {
            assert!(
                store
                    .finish_delivery(
                        &c,
                        &attempt(&c, 6001, Some(200)),
                        DeliveryOutcome::Delivered
                    )
                    .await
                    .unwrap()
            );
            due += 1;
        }
        assert_eq!(due, 2, "{engine}");

        // Deleting an endpoint takes its deliveries along; events stay.
        assert!(store.delete_event_endpoint("ep_1").await.unwrap());
        assert!(!store.delete_event_endpoint("ep_1").await.unwrap());
        let d1 = store.list_event_deliveries("evt_1").await.unwrap();
        assert_eq!(d1.len(), 1, "{engine}: only the ep_3 delivery is left");
        assert!(store.get_event("evt_1").await.unwrap().is_some());
        store.close().await;
    }

    #[tokio::test]
    async fn event_storage_story_on_every_engine() {
        for engine in engines() {
            let dir = tempfile::tempdir().unwrap();
            let db = fresh(engine, dir.path()).await.unwrap();
            let store = connect(&SecretString::from(db.url.clone())).await.unwrap();
            store.migrate().await.unwrap();
            story(store).await;
        }
    }

    #[tokio::test]
    async fn concurrent_claims_take_each_delivery_once_on_every_engine() {
        for engine in engines() {
            let dir = tempfile::tempdir().unwrap();
            let db = fresh(engine, dir.path()).await.unwrap();
            let store = connect(&SecretString::from(db.url.clone())).await.unwrap();
            store.migrate().await.unwrap();
            store
                .insert_tenant(&Tenant {
                    id: "ten_c".into(),
                    name: "c".into(),
                    created_at: 1,
                })
                .await
                .unwrap();
            store
                .insert_event_endpoint(&endpoint("ep_c", "ten_c", None))
                .await
                .unwrap();
            for i in 0..30 {
                store
                    .insert_event(&event(&format!("evt_{i:02}"), "ten_c", "x.y", 5))
                    .await
                    .unwrap();
            }
            let mut claimers = tokio::task::JoinSet::new();
            for _ in 0..6 {
                let store = store.clone();
                claimers.spawn(async move {
                    let mut mine = Vec::new();
                    while let Some(c) = store.claim_delivery(10, 60_000).await.unwrap() {
                        mine.push(c.delivery.id);
                    }
                    mine
                });
            }
            let mut all = Vec::new();
            while let Some(mine) = claimers.join_next().await {
                all.extend(mine.unwrap());
            }
            let count = all.len();
            all.sort();
            all.dedup();
            assert_eq!(count, 30, "{engine}: every delivery claimed");
            assert_eq!(all.len(), 30, "{engine}: none claimed twice");
            store.close().await;
        }
    }

    #[test]
    fn type_patterns() {
        assert!(type_matches("*", "anything"));
        assert!(type_matches("link.*", "link.created"));
        assert!(!type_matches("link.*", "linked"));
        assert!(type_matches("link.created", "link.created"));
        assert!(!type_matches("link.created", "link.created.x"));
    }
}
