//! Storage for schedules and their runs.
//!
//! An occurrence fires once because it is *claimed* before anything is sent: one
//! transaction advances the schedule's `next_fire_at` (compare-and-set on the value it
//! read) and inserts the run, whose `(schedule_id, occurrence_at)` is unique. On
//! PostgreSQL due schedules are read `FOR UPDATE SKIP LOCKED`, so instances share the work
//! without waiting on each other. A run stays `claimed` (with a lease) until its message
//! is handed to delivery; a run whose lease ran out was interrupted and is completed by
//! whichever instance finds it.

use std::str::FromStr;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use utoipa::ToSchema;

use super::sql::{Col, JsonRows, PgStore, SqliteStore};
use super::{Listed, Page, StoreError, StoreResult};

/// What a schedule does about occurrences it missed while nothing was running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Drop them; carry on with the next future occurrence.
    #[default]
    Skip,
    /// Fire one run for all of them, then carry on.
    Once,
}

impl CatchUp {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::Skip => "skip",
            CatchUp::Once => "once",
        }
    }
}

impl FromStr for CatchUp {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "skip" => Ok(CatchUp::Skip),
            "once" => Ok(CatchUp::Once),
            other => Err(StoreError::Corrupt(format!("unknown catch_up {other:?}"))),
        }
    }
}

/// Why a run happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// An occurrence, on time.
    Scheduled,
    /// One run for occurrences missed during downtime (`catch_up: once`).
    CatchUp,
    /// `POST /v1/schedules/{id}/run`.
    Manual,
}

impl RunKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Scheduled => "scheduled",
            RunKind::CatchUp => "catch_up",
            RunKind::Manual => "manual",
        }
    }
}

impl FromStr for RunKind {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "scheduled" => Ok(RunKind::Scheduled),
            "catch_up" => Ok(RunKind::CatchUp),
            "manual" => Ok(RunKind::Manual),
            other => Err(StoreError::Corrupt(format!("unknown run kind {other:?}"))),
        }
    }
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Claimed; its message is being handed to delivery.
    Claimed,
    /// Delivery accepted the message(s).
    Submitted,
    /// Delivery refused it (the error says why).
    Failed,
    /// Interrupted mid hand-off by a hand-off that cannot be safely repeated: it may or
    /// may not have gone out, and is not repeated.
    Unknown,
}

impl RunState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Claimed => "claimed",
            RunState::Submitted => "submitted",
            RunState::Failed => "failed",
            RunState::Unknown => "unknown",
        }
    }
}

impl FromStr for RunState {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "claimed" => Ok(RunState::Claimed),
            "submitted" => Ok(RunState::Submitted),
            "failed" => Ok(RunState::Failed),
            "unknown" => Ok(RunState::Unknown),
            other => Err(StoreError::Corrupt(format!("unknown run state {other:?}"))),
        }
    }
}

/// A stored schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRecord {
    /// Opaque id (`sch_…`).
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Display name.
    pub name: String,
    /// Cron expression (exactly one of `cron` and `every`).
    pub cron: Option<String>,
    /// Interval (`15m`, `1h`, `1d`).
    pub every: Option<String>,
    /// IANA time zone (with `recipient_timezone`, the zone of recipients without one).
    pub timezone: String,
    /// The cron's wall-clock times are read in each recipient's zone.
    pub recipient_timezone: bool,
    /// The message, as the JSON `POST /v1/messages` takes.
    pub message: String,
    /// Whether it fires.
    pub enabled: bool,
    /// What to do about missed occurrences.
    pub catch_up: CatchUp,
    /// No occurrence before (UTC ms).
    pub start_at: Option<i64>,
    /// No occurrence after (UTC ms).
    pub end_at: Option<i64>,
    /// Where an `every` series starts (UTC ms).
    pub anchor_at: i64,
    /// The next occurrence to fire; `None` when there is none.
    pub next_fire_at: Option<i64>,
    /// The last occurrence fired.
    pub last_fire_at: Option<i64>,
    /// Creation time (UTC ms).
    pub created_at: i64,
    /// Last change (UTC ms).
    pub updated_at: i64,
}

/// A run: one occurrence (or manual run) and what it made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    /// Opaque id (`run_…`).
    pub id: String,
    /// The schedule.
    pub schedule_id: String,
    /// The schedule's tenant.
    pub tenant_id: String,
    /// The occurrence it fires (UTC ms); for a manual run, when it was asked for.
    pub occurrence_at: i64,
    /// Why it ran.
    pub kind: RunKind,
    /// Where it is.
    pub state: RunState,
    /// Hand-offs started.
    pub attempts: i64,
    /// While `claimed`: until when the claimer holds it.
    pub lease_until: Option<i64>,
    /// Message ids delivery made.
    pub message_ids: Vec<String>,
    /// The broadcast delivery made, for a large fan-out.
    pub broadcast_id: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// When it was claimed (UTC ms).
    pub claimed_at: i64,
    /// When it was submitted or failed (UTC ms).
    pub finished_at: Option<i64>,
}

/// What the claimer decided for one due schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advance {
    /// The new `next_fire_at` (`None`: no further occurrence).
    pub next_fire_at: Option<i64>,
    /// The run to claim now, if any: its occurrence and kind.
    pub run: Option<(i64, RunKind)>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// Delivery accepted it.
    Submitted {
        /// Message ids.
        message_ids: Vec<String>,
        /// Broadcast id, if one was made.
        broadcast_id: Option<String>,
        /// A remark kept in the run's `error` field.
        note: Option<String>,
    },
    /// Delivery refused it.
    Failed(String),
    /// It may or may not have gone out.
    Unknown(String),
}

/// The decision function the claimer applies to each due schedule (pure, no I/O: it runs
/// inside the claiming transaction).
pub type Decide<'a> = &'a (dyn Fn(&ScheduleRecord) -> Advance + Send + Sync);

/// Schedules and runs.
#[async_trait]
pub trait ScheduleStore: Send + Sync {
    /// Stores a new schedule.
    async fn insert_schedule(&self, s: &ScheduleRecord) -> StoreResult<()>;
    /// One schedule.
    async fn get_schedule(&self, id: &str) -> StoreResult<Option<ScheduleRecord>>;
    /// Schedules in id order, optionally one tenant's.
    async fn list_schedules(
        &self,
        tenant_id: Option<&str>,
        page: &Page,
    ) -> StoreResult<Listed<ScheduleRecord>>;
    /// Replaces a schedule's fields; `false` when it does not exist.
    async fn update_schedule(&self, s: &ScheduleRecord) -> StoreResult<bool>;
    /// Deletes a schedule and its runs; `false` when it did not exist.
    async fn delete_schedule(&self, id: &str) -> StoreResult<bool>;
    /// Claims up to `limit` due schedules (enabled, `next_fire_at <= now`): for each,
    /// `decide` says the new `next_fire_at` and which run to claim; both are written in
    /// one transaction. Returns the claimed runs (state `claimed`, lease until
    /// `lease_until`), each with its schedule as read.
    async fn claim_due_schedules(
        &self,
        now: i64,
        limit: u32,
        lease_until: i64,
        decide: Decide<'_>,
    ) -> StoreResult<Vec<(RunRecord, ScheduleRecord)>>;
    /// Stores a claimed manual run.
    async fn insert_run(&self, run: &RunRecord) -> StoreResult<()>;
    /// Takes over up to `limit` runs still `claimed` whose lease ran out, leasing them
    /// until `lease_until`.
    async fn claim_stale_runs(
        &self,
        now: i64,
        limit: u32,
        lease_until: i64,
    ) -> StoreResult<Vec<RunRecord>>;
    /// Counts a hand-off about to start; `false` when the run is no longer claimed.
    async fn start_run_attempt(&self, run_id: &str) -> StoreResult<bool>;
    /// Records how claimed runs ended (runs no longer claimed are left as they are).
    /// Returns how many were recorded.
    async fn finish_runs(&self, finished: &[(String, RunOutcome)], at: i64) -> StoreResult<u64>;
    /// Records how a claimed run ended; `false` when it was not claimed any more.
    async fn finish_run(&self, run_id: &str, outcome: &RunOutcome, at: i64) -> StoreResult<bool> {
        Ok(self
            .finish_runs(&[(run_id.to_string(), outcome.clone())], at)
            .await?
            == 1)
    }
    /// One run.
    async fn get_run(&self, id: &str) -> StoreResult<Option<RunRecord>>;
    /// A schedule's runs in id (claiming) order.
    async fn list_runs(&self, schedule_id: &str, page: &Page) -> StoreResult<Listed<RunRecord>>;
    /// The earliest time something is due: an enabled schedule's `next_fire_at` or a
    /// claimed run's lease end.
    async fn next_schedule_work_at(&self) -> StoreResult<Option<i64>>;
}

const SCHEDULE_COLS: &str = "id, tenant_id, name, cron, every, timezone, message, enabled, \
     catch_up, start_at, end_at, anchor_at, next_fire_at, last_fire_at, created_at, updated_at, \
     recipient_timezone";
const RUN_COLS: &str = "id, schedule_id, tenant_id, occurrence_at, kind, state, attempts, \
     lease_until, message_ids, broadcast_id, error, claimed_at, finished_at";

fn ids_of(json: Option<String>) -> StoreResult<Vec<String>> {
    match json {
        None => Ok(Vec::new()),
        Some(text) => serde_json::from_str(&text)
            .map_err(|e| StoreError::Corrupt(format!("run message_ids: {e}"))),
    }
}

macro_rules! schedules_store {
    ($store:ty, $row:ty, $skip_locked:literal) => {
        impl $store {
            fn schedule(row: &$row) -> StoreResult<ScheduleRecord> {
                Ok(ScheduleRecord {
                    id: row.try_get("id")?,
                    tenant_id: row.try_get("tenant_id")?,
                    name: row.try_get("name")?,
                    cron: row.try_get("cron")?,
                    every: row.try_get("every")?,
                    timezone: row.try_get("timezone")?,
                    recipient_timezone: row.try_get("recipient_timezone")?,
                    message: row.try_get("message")?,
                    enabled: row.try_get("enabled")?,
                    catch_up: CatchUp::from_str(row.try_get::<&str, _>("catch_up")?)?,
                    start_at: row.try_get("start_at")?,
                    end_at: row.try_get("end_at")?,
                    anchor_at: row.try_get("anchor_at")?,
                    next_fire_at: row.try_get("next_fire_at")?,
                    last_fire_at: row.try_get("last_fire_at")?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                })
            }

            fn run(row: &$row) -> StoreResult<RunRecord> {
                Ok(RunRecord {
                    id: row.try_get("id")?,
                    schedule_id: row.try_get("schedule_id")?,
                    tenant_id: row.try_get("tenant_id")?,
                    occurrence_at: row.try_get("occurrence_at")?,
                    kind: RunKind::from_str(row.try_get::<&str, _>("kind")?)?,
                    state: RunState::from_str(row.try_get::<&str, _>("state")?)?,
                    attempts: row.try_get("attempts")?,
                    lease_until: row.try_get("lease_until")?,
                    message_ids: ids_of(row.try_get("message_ids")?)?,
                    broadcast_id: row.try_get("broadcast_id")?,
                    error: row.try_get("error")?,
                    claimed_at: row.try_get("claimed_at")?,
                    finished_at: row.try_get("finished_at")?,
                })
            }
        }

        #[async_trait]
        impl ScheduleStore for $store {
            async fn insert_schedule(&self, s: &ScheduleRecord) -> StoreResult<()> {
                let sql = format!(
                    "INSERT INTO schedules ({SCHEDULE_COLS}) VALUES \
                     ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(&s.id)
                    .bind(&s.tenant_id)
                    .bind(&s.name)
                    .bind(&s.cron)
                    .bind(&s.every)
                    .bind(&s.timezone)
                    .bind(&s.message)
                    .bind(s.enabled)
                    .bind(s.catch_up.as_str())
                    .bind(s.start_at)
                    .bind(s.end_at)
                    .bind(s.anchor_at)
                    .bind(s.next_fire_at)
                    .bind(s.last_fire_at)
                    .bind(s.created_at)
                    .bind(s.updated_at)
                    .bind(s.recipient_timezone)
                    .execute(&self.db)
                    .await?;
                Ok(())
            }

            async fn get_schedule(&self, id: &str) -> StoreResult<Option<ScheduleRecord>> {
                let sql = format!("SELECT {SCHEDULE_COLS} FROM schedules WHERE id = $1");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .fetch_optional(&self.db)
                    .await?
                    .as_ref()
                    .map(Self::schedule)
                    .transpose()
            }

            async fn list_schedules(
                &self,
                tenant_id: Option<&str>,
                page: &Page,
            ) -> StoreResult<Listed<ScheduleRecord>> {
                let sql = format!(
                    "SELECT {SCHEDULE_COLS} FROM schedules \
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
                    .map(Self::schedule)
                    .collect::<StoreResult<Vec<_>>>()?;
                Ok(Listed::from_overfetch(items, page, |s| &s.id))
            }

            async fn update_schedule(&self, s: &ScheduleRecord) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE schedules SET name = $2, cron = $3, every = $4, timezone = $5, \
                     message = $6, enabled = $7, catch_up = $8, start_at = $9, end_at = $10, \
                     anchor_at = $11, next_fire_at = $12, last_fire_at = $13, updated_at = $14, \
                     recipient_timezone = $15 WHERE id = $1",
                )
                .bind(&s.id)
                .bind(&s.name)
                .bind(&s.cron)
                .bind(&s.every)
                .bind(&s.timezone)
                .bind(&s.message)
                .bind(s.enabled)
                .bind(s.catch_up.as_str())
                .bind(s.start_at)
                .bind(s.end_at)
                .bind(s.anchor_at)
                .bind(s.next_fire_at)
                .bind(s.last_fire_at)
                .bind(s.updated_at)
                .bind(s.recipient_timezone)
                .execute(&self.db)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn delete_schedule(&self, id: &str) -> StoreResult<bool> {
                let done = sqlx::query("DELETE FROM schedules WHERE id = $1")
                    .bind(id)
                    .execute(&self.db)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn claim_due_schedules(
                &self,
                now: i64,
                limit: u32,
                lease_until: i64,
                decide: Decide<'_>,
            ) -> StoreResult<Vec<(RunRecord, ScheduleRecord)>> {
                let mut tx = self.db.begin().await?;
                let sql = format!(
                    "SELECT {SCHEDULE_COLS} FROM schedules \
                     WHERE enabled AND next_fire_at IS NOT NULL AND next_fire_at <= $1 \
                     ORDER BY next_fire_at, id LIMIT $2 {}",
                    $skip_locked
                );
                let due = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(now)
                    .bind(i64::from(limit))
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(Self::schedule)
                    .collect::<StoreResult<Vec<_>>>()?;
                // Every schedule's advance in one statement (compare-and-set on the value
                // read: an instance that read the same occurrence concurrently, as SQLite
                // has no row locks, changes nothing), then every run in one more: a
                // statement per schedule made a burst of 10,000 wait on round trips.
                let advances: Vec<(ScheduleRecord, Advance)> = due
                    .into_iter()
                    .map(|s| {
                        let advance = decide(&s);
                        (s, advance)
                    })
                    .collect();
                if advances.is_empty() {
                    tx.commit().await?;
                    return Ok(Vec::new());
                }
                let moves: Vec<serde_json::Value> = advances
                    .iter()
                    .map(|(s, a)| {
                        serde_json::json!([s.id, s.next_fire_at, a.next_fire_at, a.run.map(|(at, _)| at)])
                    })
                    .collect();
                let move_rows = <$store>::json_rows(
                    "$1",
                    &[Col::Text("id"), Col::Int("prev"), Col::Int("next"), Col::Int("fired")],
                );
                let moves = serde_json::Value::Array(moves).to_string();
                let sql = format!(
                    "UPDATE schedules SET next_fire_at = r.next, \
                     last_fire_at = COALESCE(r.fired, schedules.last_fire_at) \
                     FROM ({move_rows}) AS r \
                     WHERE schedules.id = r.id AND schedules.next_fire_at = r.prev"
                );
                let updated = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(&moves)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                // Usually every one moved. Otherwise another instance advanced some first:
                // those still showing the value read are not ours (rows come back one
                // message each, so they are only read on this rare path).
                let lost: std::collections::HashSet<String> = if updated as usize == advances.len() {
                    std::collections::HashSet::new()
                } else {
                    let sql = format!(
                        "SELECT s.id FROM schedules s JOIN ({move_rows}) AS r ON s.id = r.id \
                         WHERE s.next_fire_at IS DISTINCT FROM r.next"
                    );
                    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                        .bind(&moves)
                        .fetch_all(&mut *tx)
                        .await?
                        .into_iter()
                        .collect()
                };
                let mut candidates: Vec<(RunRecord, ScheduleRecord)> = Vec::new();
                for (schedule, advance) in advances {
                    let Some((occurrence_at, kind)) = advance.run else {
                        continue;
                    };
                    if lost.contains(&schedule.id) {
                        continue;
                    }
                    let run = RunRecord {
                        id: crate::ids::new_id("run"),
                        schedule_id: schedule.id.clone(),
                        tenant_id: schedule.tenant_id.clone(),
                        occurrence_at,
                        kind,
                        state: RunState::Claimed,
                        attempts: 0,
                        lease_until: Some(lease_until),
                        message_ids: Vec::new(),
                        broadcast_id: None,
                        error: None,
                        claimed_at: now,
                        finished_at: None,
                    };
                    candidates.push((run, schedule));
                }
                if candidates.is_empty() {
                    tx.commit().await?;
                    return Ok(Vec::new());
                }
                let rows: Vec<serde_json::Value> = candidates
                    .iter()
                    .map(|(r, _)| {
                        serde_json::json!([r.id, r.schedule_id, r.tenant_id, r.occurrence_at, r.kind.as_str()])
                    })
                    .collect();
                let run_rows = <$store>::json_rows(
                    "$1",
                    &[
                        Col::Text("id"),
                        Col::Text("schedule_id"),
                        Col::Text("tenant_id"),
                        Col::Int("occurrence_at"),
                        Col::Text("kind"),
                    ],
                );
                let rows = serde_json::Value::Array(rows).to_string();
                // `WHERE true` keeps SQLite from reading `ON CONFLICT` as a join's `ON`.
                let sql = format!(
                    "INSERT INTO schedule_runs ({RUN_COLS}) \
                     SELECT r.id, r.schedule_id, r.tenant_id, r.occurrence_at, r.kind, 'claimed', \
                     0, $2, NULL, NULL, NULL, $3, NULL FROM ({run_rows}) AS r WHERE true \
                     ON CONFLICT DO NOTHING"
                );
                let inserted = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(&rows)
                    .bind(lease_until)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                // An occurrence already claimed (its run is unique) fired, or is firing:
                // only the runs this statement stored are ours.
                if inserted as usize != candidates.len() {
                    let sql = format!(
                        "SELECT x.id FROM schedule_runs x JOIN ({run_rows}) AS r ON x.id = r.id"
                    );
                    let ours: std::collections::HashSet<String> =
                        sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                            .bind(&rows)
                            .fetch_all(&mut *tx)
                            .await?
                            .into_iter()
                            .collect();
                    candidates.retain(|(run, _)| ours.contains(&run.id));
                }
                tx.commit().await?;
                Ok(candidates)
            }

            async fn insert_run(&self, run: &RunRecord) -> StoreResult<()> {
                let sql = format!(
                    "INSERT INTO schedule_runs ({RUN_COLS}) VALUES \
                     ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL, NULL, $9, NULL)"
                );
                let result = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(&run.id)
                    .bind(&run.schedule_id)
                    .bind(&run.tenant_id)
                    .bind(run.occurrence_at)
                    .bind(run.kind.as_str())
                    .bind(run.state.as_str())
                    .bind(run.attempts)
                    .bind(run.lease_until)
                    .bind(run.claimed_at)
                    .execute(&self.db)
                    .await;
                match result {
                    Ok(_) => Ok(()),
                    Err(sqlx::Error::Database(db)) if db.is_unique_violation() => Err(
                        StoreError::Conflict("this occurrence already has a run".into()),
                    ),
                    Err(e) => Err(e.into()),
                }
            }

            async fn claim_stale_runs(
                &self,
                now: i64,
                limit: u32,
                lease_until: i64,
            ) -> StoreResult<Vec<RunRecord>> {
                let mut tx = self.db.begin().await?;
                let sql = format!(
                    "SELECT id FROM schedule_runs WHERE state = 'claimed' AND lease_until <= $1 \
                     ORDER BY lease_until, id LIMIT $2 {}",
                    $skip_locked
                );
                let ids: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(now)
                    .bind(i64::from(limit))
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(|r| r.try_get("id"))
                    .collect::<Result<_, _>>()?;
                let mut runs = Vec::new();
                for id in ids {
                    let sql = format!(
                        "UPDATE schedule_runs SET lease_until = $3 \
                         WHERE id = $1 AND state = 'claimed' AND lease_until <= $2 \
                         RETURNING {RUN_COLS}"
                    );
                    if let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(&id)
                        .bind(now)
                        .bind(lease_until)
                        .fetch_optional(&mut *tx)
                        .await?
                    {
                        runs.push(Self::run(&row)?);
                    }
                }
                tx.commit().await?;
                Ok(runs)
            }

            async fn start_run_attempt(&self, run_id: &str) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE schedule_runs SET attempts = attempts + 1 \
                     WHERE id = $1 AND state = 'claimed'",
                )
                .bind(run_id)
                .execute(&self.db)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn finish_runs(&self, finished: &[(String, RunOutcome)], at: i64) -> StoreResult<u64> {
                if finished.is_empty() {
                    return Ok(0);
                }
                let rows: Vec<serde_json::Value> = finished
                    .iter()
                    .map(|(id, outcome)| {
                        let (state, ids, broadcast, error) = match outcome {
                            RunOutcome::Submitted {
                                message_ids,
                                broadcast_id,
                                note,
                            } => (
                                RunState::Submitted,
                                Some(serde_json::to_string(message_ids).unwrap_or_else(|_| "[]".into())),
                                broadcast_id.clone(),
                                note.clone(),
                            ),
                            RunOutcome::Failed(e) => (RunState::Failed, None, None, Some(e.clone())),
                            RunOutcome::Unknown(e) => (RunState::Unknown, None, None, Some(e.clone())),
                        };
                        serde_json::json!([id, state.as_str(), ids, broadcast, error])
                    })
                    .collect();
                let sql = format!(
                    "UPDATE schedule_runs SET state = r.state, message_ids = r.message_ids, \
                     broadcast_id = r.broadcast_id, error = r.error, finished_at = $2, \
                     lease_until = NULL FROM ({}) AS r \
                     WHERE schedule_runs.id = r.id AND schedule_runs.state = 'claimed'",
                    <$store>::json_rows(
                        "$1",
                        &[
                            Col::Text("id"),
                            Col::Text("state"),
                            Col::Text("message_ids"),
                            Col::Text("broadcast_id"),
                            Col::Text("error"),
                        ]
                    )
                );
                let done = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(serde_json::Value::Array(rows).to_string())
                    .bind(at)
                    .execute(&self.db)
                    .await?;
                Ok(done.rows_affected())
            }

            async fn get_run(&self, id: &str) -> StoreResult<Option<RunRecord>> {
                let sql = format!("SELECT {RUN_COLS} FROM schedule_runs WHERE id = $1");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .fetch_optional(&self.db)
                    .await?
                    .as_ref()
                    .map(Self::run)
                    .transpose()
            }

            async fn list_runs(
                &self,
                schedule_id: &str,
                page: &Page,
            ) -> StoreResult<Listed<RunRecord>> {
                let sql = format!(
                    "SELECT {RUN_COLS} FROM schedule_runs \
                     WHERE schedule_id = $1 AND ($2 IS NULL OR id > $2) ORDER BY id LIMIT $3"
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(schedule_id)
                    .bind(page.after.as_deref())
                    .bind(i64::from(page.size()) + 1)
                    .fetch_all(&self.db)
                    .await?;
                let items = rows
                    .iter()
                    .map(Self::run)
                    .collect::<StoreResult<Vec<_>>>()?;
                Ok(Listed::from_overfetch(items, page, |r| &r.id))
            }

            async fn next_schedule_work_at(&self) -> StoreResult<Option<i64>> {
                let row = sqlx::query(
                    "SELECT (SELECT MIN(next_fire_at) FROM schedules \
                         WHERE enabled AND next_fire_at IS NOT NULL) AS fire, \
                     (SELECT MIN(lease_until) FROM schedule_runs WHERE state = 'claimed') AS lease",
                )
                .fetch_one(&self.db)
                .await?;
                let fire: Option<i64> = row.try_get("fire")?;
                let lease: Option<i64> = row.try_get("lease")?;
                Ok(match (fire, lease) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                })
            }
        }
    };
}

schedules_store!(SqliteStore, SqliteRow, "");
schedules_store!(PgStore, PgRow, "FOR UPDATE SKIP LOCKED");

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use secrecy::SecretString;

    use super::*;
    use crate::store::testing::{engines, fresh};
    use crate::store::{Store, Tenant, connect};

    fn schedule(id: &str, next: Option<i64>) -> ScheduleRecord {
        ScheduleRecord {
            id: id.into(),
            tenant_id: "ten_1".into(),
            name: id.into(),
            cron: Some("0 * * * *".into()),
            every: None,
            timezone: "UTC".into(),
            recipient_timezone: false,
            message: "{}".into(),
            enabled: true,
            catch_up: CatchUp::Skip,
            start_at: None,
            end_at: None,
            anchor_at: 0,
            next_fire_at: next,
            last_fire_at: None,
            created_at: 1,
            updated_at: 1,
        }
    }

    /// Fires the due occurrence and moves an hour on.
    fn hourly(s: &ScheduleRecord) -> Advance {
        let due = s.next_fire_at.unwrap();
        Advance {
            next_fire_at: Some(due + 3_600_000),
            run: Some((due, RunKind::Scheduled)),
        }
    }

    #[tokio::test]
    async fn each_occurrence_is_claimed_once_even_by_racing_claimers() {
        for engine in engines() {
            let dir = tempfile::tempdir().unwrap();
            let db = fresh(engine, dir.path()).await.unwrap();
            let store: Arc<dyn Store> = connect(&SecretString::from(db.url.clone())).await.unwrap();
            store.migrate().await.unwrap();
            store
                .insert_tenant(&Tenant {
                    id: "ten_1".into(),
                    name: "t".into(),
                    created_at: 1,
                })
                .await
                .unwrap();
            for i in 0..50 {
                store
                    .insert_schedule(&schedule(&format!("sch_{i:03}"), Some(1_000)))
                    .await
                    .unwrap();
            }
            store
                .insert_schedule(&schedule("sch_later", Some(9_000_000)))
                .await
                .unwrap();
            assert_eq!(store.next_schedule_work_at().await.unwrap(), Some(1_000));

            // Four claimers at once, in batches of 7: every due schedule once.
            let claimers = (0..4).map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut mine = Vec::new();
                    loop {
                        let got = store
                            .claim_due_schedules(2_000, 7, 20_000, &hourly)
                            .await
                            .unwrap();
                        if got.is_empty() {
                            break mine;
                        }
                        mine.extend(got.into_iter().map(|(r, _)| r.schedule_id));
                    }
                })
            });
            let mut all = Vec::new();
            for c in claimers {
                all.extend(c.await.unwrap());
            }
            all.sort();
            assert_eq!(all.len(), 50, "{engine}");
            all.dedup();
            assert_eq!(all.len(), 50, "{engine}: a schedule was claimed twice");
            let s = store.get_schedule("sch_007").await.unwrap().unwrap();
            assert_eq!(s.next_fire_at, Some(3_601_000));
            assert_eq!(s.last_fire_at, Some(1_000));

            // The run exists once; a manual run at the same instant is separate.
            let runs = store.list_runs("sch_007", &Page::first(10)).await.unwrap();
            assert_eq!(runs.items.len(), 1);
            let run = runs.items[0].clone();
            assert_eq!(run.state, RunState::Claimed);
            let manual = RunRecord {
                id: crate::ids::new_id("run"),
                kind: RunKind::Manual,
                lease_until: Some(100_000),
                ..run.clone()
            };
            store.insert_run(&manual).await.unwrap();
            let dup = RunRecord {
                id: crate::ids::new_id("run"),
                ..run.clone()
            };
            assert!(matches!(
                store.insert_run(&dup).await,
                Err(StoreError::Conflict(_))
            ));

            // Runs whose lease ran out are taken over once; finishing is once.
            assert!(
                store
                    .claim_stale_runs(19_999, 100, 40_000)
                    .await
                    .unwrap()
                    .is_empty()
            );
            let stale = store.claim_stale_runs(20_000, 100, 40_000).await.unwrap();
            assert_eq!(stale.len(), 50, "{engine}");
            assert!(stale.iter().all(|r| r.lease_until == Some(40_000)));
            assert!(
                store
                    .claim_stale_runs(20_000, 100, 60_000)
                    .await
                    .unwrap()
                    .is_empty()
            );
            assert!(store.start_run_attempt(&run.id).await.unwrap());
            let submitted = RunOutcome::Submitted {
                message_ids: vec!["msg_1".into()],
                broadcast_id: None,
                note: None,
            };
            assert!(store.finish_run(&run.id, &submitted, 5).await.unwrap());
            assert!(!store.finish_run(&run.id, &submitted, 6).await.unwrap());
            let done = store.get_run(&run.id).await.unwrap().unwrap();
            assert_eq!(done.state, RunState::Submitted);
            assert_eq!(done.attempts, 1);
            assert_eq!(done.message_ids, ["msg_1"]);
            assert_eq!(done.lease_until, None);

            // Paused schedules are not due; deleting takes the runs along.
            let mut paused = store.get_schedule("sch_later").await.unwrap().unwrap();
            paused.enabled = false;
            paused.next_fire_at = Some(1);
            assert!(store.update_schedule(&paused).await.unwrap());
            assert!(
                store
                    .claim_due_schedules(10_000, 100, 20_000, &hourly)
                    .await
                    .unwrap()
                    .is_empty()
            );
            assert!(store.delete_schedule("sch_007").await.unwrap());
            assert_eq!(store.get_run(&run.id).await.unwrap(), None);
            store.close().await;
        }
    }
}
