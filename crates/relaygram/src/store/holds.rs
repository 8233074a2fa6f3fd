//! Storage for the sender's holds: what it needs to decide whether a claimed message waits
//! (its local send time, its link's time zone and quiet hours), and putting a held message
//! back in its lane.

use async_trait::async_trait;
use serde_json::{Value, json};
use sqlx::Row;

use super::StoreResult;
use super::sql::{PgStore, SqliteStore};

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

/// Holds in the outbox.
#[async_trait]
pub trait HoldStore: Send + Sync {
    /// Of these messages, those with a local send time or whose link has quiet hours, with
    /// what decides (one read for both rules).
    async fn hold_candidates(&self, message_ids: &[String]) -> StoreResult<Vec<HoldCandidate>>;
    /// Puts claimed (`sending`) messages back in their lanes, due at the given times, as if
    /// they had not been claimed (the claim's attempt is not counted).
    async fn hold_messages(&self, holds: &[Hold], now: i64) -> StoreResult<()>;
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
                })
            })
            .collect(),
    )
    .to_string()
}

macro_rules! hold_store {
    ($store:ty, $in_json:literal, $holds:literal) => {
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
                     claimed_until = NULL, updated_at = $2 \
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
        }
    };
}

hold_store!(
    SqliteStore,
    "IN (SELECT value FROM json_each($1))",
    "SELECT value ->> 'id' AS id, value ->> 'until' AS until, \
     value ->> 'send_at' AS send_at FROM jsonb_each($1)"
);
hold_store!(
    PgStore,
    "IN (SELECT jsonb_array_elements_text(CAST($1 AS TEXT)::jsonb))",
    "SELECT * FROM jsonb_to_recordset(CAST($1 AS TEXT)::jsonb) AS r (id TEXT, until BIGINT, \
     send_at BIGINT)"
);
