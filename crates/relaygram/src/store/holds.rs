//! Storage for the sender's holds: what it needs to decide whether a claimed message waits
//! (its local send time, its link's time zone and quiet hours), putting a held message
//! back in its lane (marked `held`, so it waits aside without holding up the lane), and
//! re-planning a link's held messages when its quiet hours or time zone change.

use async_trait::async_trait;
use serde_json::{Value, json};
use sqlx::Row;

use super::sql::{PgStore, SqliteStore};
use super::{LinkRecord, StoreResult};

/// A claimed message that may have to wait: it has a local send time, or its link has
/// quiet hours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldCandidate {
    /// Message id.
    pub message_id: String,
    /// Its priority (urgent ones ignore quiet hours).
    pub priority: i64,
    /// `send_at_local`: the wall-clock time it goes at in the recipient's zone
    /// (`2026-11-22T09:00:00`).
    pub local_at: Option<String>,
    /// The zone for `local_at` when the link has none (`default_timezone`).
    pub local_zone: Option<String>,
    /// The link's IANA time zone.
    pub timezone: Option<String>,
    /// Quiet hours start, `HH:MM`.
    pub quiet_start: Option<String>,
    /// Quiet hours end, `HH:MM`.
    pub quiet_end: Option<String>,
}

/// A claimed message put back in its lane until `until` (UTC ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// Message id.
    pub message_id: String,
    /// When it is due again.
    pub until: i64,
    /// Whether `send_at` moves too (a local send time: the message is not due before, so
    /// it does not hold up its chat's later messages the way a quiet-hours hold does).
    pub moves_send_at: bool,
}

impl Hold {
    /// The `held` mark it leaves on the message.
    pub fn kind(&self) -> &'static str {
        if self.moves_send_at { "local" } else { "quiet" }
    }
}

/// Decides a held message's hold again (the sender's rule, given the link as it is now).
pub type Replan<'a> = &'a (dyn Fn(&HoldCandidate) -> Option<Hold> + Send + Sync);

/// Holds in the outbox.
#[async_trait]
pub trait HoldStore: Send + Sync {
    /// Of these messages, those with a local send time or whose link has quiet hours, with
    /// what decides (one read for both rules).
    async fn hold_candidates(&self, message_ids: &[String]) -> StoreResult<Vec<HoldCandidate>>;
    /// Puts claimed (`sending`) messages back in their lanes, due at the given times, as if
    /// they had not been claimed (the claim's attempt is not counted).
    async fn hold_messages(&self, holds: &[Hold], now: i64) -> StoreResult<()>;
    /// Stores a link's metadata, time zone, quiet hours and `updated_at` (as
    /// [`super::LinkStore::update_link`]) and, in the same transaction, re-plans its held
    /// messages with `replan` (given the link as stored): no hold any more → due now; a
    /// hold → due at its new end. Returns how many were re-planned, or `None` when the
    /// link is missing.
    async fn update_link_replanning(
        &self,
        link: &LinkRecord,
        replan: Replan<'_>,
        now: i64,
    ) -> StoreResult<Option<u64>>;
}

fn ids_json(ids: &[String]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())
}

fn holds_json(holds: &[Hold]) -> String {
    Value::Array(
        holds
            .iter()
            .map(|h| {
                json!({
                    "id": h.message_id,
                    "until": h.until,
                    "send_at": h.moves_send_at.then_some(h.until),
                    "held": h.kind(),
                })
            })
            .collect(),
    )
    .to_string()
}

macro_rules! hold_store {
    ($store:ty, $in_json:literal, $holds:literal, $plans:literal) => {
        #[async_trait]
        impl HoldStore for $store {
            async fn hold_candidates(
                &self,
                message_ids: &[String],
            ) -> StoreResult<Vec<HoldCandidate>> {
                let sql = format!(
                    "SELECT m.id, m.priority, m.local_at, m.local_zone, l.timezone, \
                     l.quiet_start, l.quiet_end \
                     FROM messages m LEFT JOIN links l ON l.id = m.link_id \
                     WHERE m.id {in_json} AND (m.local_at IS NOT NULL \
                     OR (l.quiet_start IS NOT NULL AND l.quiet_end IS NOT NULL))",
                    in_json = $in_json
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(ids_json(message_ids))
                    .fetch_all(&self.db)
                    .await?;
                rows.iter()
                    .map(|r| {
                        Ok(HoldCandidate {
                            message_id: r.try_get("id")?,
                            priority: r.try_get::<i64, _>("priority")?,
                            local_at: r.try_get("local_at")?,
                            local_zone: r.try_get("local_zone")?,
                            timezone: r.try_get("timezone")?,
                            quiet_start: r.try_get("quiet_start")?,
                            quiet_end: r.try_get("quiet_end")?,
                        })
                    })
                    .collect()
            }

            async fn hold_messages(&self, holds: &[Hold], now: i64) -> StoreResult<()> {
                if holds.is_empty() {
                    return Ok(());
                }
                // One statement for the batch (holds as a JSON array).
                let sql = format!(
                    "UPDATE messages SET status = 'queued', attempts = messages.attempts - 1, \
                     next_attempt_at = h.until, send_at = COALESCE(h.send_at, messages.send_at), \
                     held = h.held, claimed_until = NULL, updated_at = $2 \
                     FROM ({holds}) AS h WHERE messages.id = h.id AND messages.status = 'sending'",
                    holds = $holds
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(holds_json(holds))
                    .bind(now)
                    .execute(&self.db)
                    .await?;
                Ok(())
            }

            async fn update_link_replanning(
                &self,
                l: &LinkRecord,
                replan: Replan<'_>,
                now: i64,
            ) -> StoreResult<Option<u64>> {
                let mut tx = self.db.begin().await?;
                let done = sqlx::query(
                    "UPDATE links SET metadata = $2, timezone = $3, quiet_start = $4, \
                     quiet_end = $5, updated_at = $6 WHERE id = $1",
                )
                .bind(&l.id)
                .bind(&l.metadata)
                .bind(&l.timezone)
                .bind(&l.quiet_start)
                .bind(&l.quiet_end)
                .bind(l.updated_at)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Ok(None);
                }
                // Its held messages (`messages_held`), decided again with the new settings:
                // those of a paused broadcast too, so a resume finds them planned right.
                let rows = sqlx::query(
                    "SELECT id, priority, local_at, local_zone, held, send_at FROM messages \
                     WHERE link_id = $1 AND held IS NOT NULL AND status IN ('queued', 'paused')",
                )
                .bind(&l.id)
                .fetch_all(&mut *tx)
                .await?;
                let mut plans = Vec::with_capacity(rows.len());
                for r in &rows {
                    let c = HoldCandidate {
                        message_id: r.try_get("id")?,
                        priority: r.try_get("priority")?,
                        local_at: r.try_get("local_at")?,
                        local_zone: r.try_get("local_zone")?,
                        timezone: l.timezone.clone(),
                        quiet_start: l.quiet_start.clone(),
                        quiet_end: l.quiet_end.clone(),
                    };
                    let held: String = r.try_get("held")?;
                    let send_at: i64 = r.try_get("send_at")?;
                    // A message held for its local time had `send_at` moved there: once
                    // it is not (or no longer) waiting for it, it is due from now.
                    let base = if held == "local" { now.min(send_at) } else { send_at };
                    let plan = match replan(&c) {
                        Some(h) => json!({
                            "id": c.message_id,
                            "send_at": if h.moves_send_at { h.until } else { base },
                            "next_attempt_at": h.until,
                            "held": h.kind(),
                        }),
                        None => json!({
                            "id": c.message_id, "send_at": base, "next_attempt_at": now, "held": null
                        }),
                    };
                    plans.push(plan);
                }
                let plans_len = plans.len() as u64;
                if !plans.is_empty() {
                    let sql = format!(
                        "UPDATE messages SET send_at = p.send_at, next_attempt_at = p.next_attempt_at, \
                         held = p.held, updated_at = $2 FROM ({plans}) AS p \
                         WHERE messages.id = p.id AND messages.status IN ('queued', 'paused')",
                        plans = $plans
                    );
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(Value::Array(plans).to_string())
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(Some(plans_len))
            }
        }
    };
}

hold_store!(
    SqliteStore,
    "IN (SELECT value FROM json_each($1))",
    "SELECT value ->> 'id' AS id, value ->> 'until' AS until, \
     value ->> 'send_at' AS send_at, value ->> 'held' AS held FROM jsonb_each($1)",
    "SELECT value ->> 'id' AS id, value ->> 'send_at' AS send_at, \
     value ->> 'next_attempt_at' AS next_attempt_at, value ->> 'held' AS held FROM jsonb_each($1)"
);
hold_store!(
    PgStore,
    "IN (SELECT jsonb_array_elements_text(CAST($1 AS TEXT)::jsonb))",
    "SELECT * FROM jsonb_to_recordset(CAST($1 AS TEXT)::jsonb) AS r (id TEXT, until BIGINT, \
     send_at BIGINT, held TEXT)",
    "SELECT * FROM jsonb_to_recordset(CAST($1 AS TEXT)::jsonb) AS r (id TEXT, send_at BIGINT, \
     next_attempt_at BIGINT, held TEXT)"
);
