//! Storage for quiet hours: what the sender needs to decide, and putting a held message
//! back in its lane.

use async_trait::async_trait;
use sqlx::Row;

use super::StoreResult;
use super::sql::{PgStore, SqliteStore};

/// A claimed message to a link with quiet hours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuietCandidate {
    /// Message id.
    pub message_id: String,
    /// Its priority (urgent ones are not held).
    pub priority: i64,
    /// The link's IANA time zone.
    pub timezone: Option<String>,
    /// Quiet hours start, `HH:MM`.
    pub quiet_start: Option<String>,
    /// Quiet hours end, `HH:MM`.
    pub quiet_end: Option<String>,
}

/// Quiet hours in the outbox.
#[async_trait]
pub trait QuietStore: Send + Sync {
    /// Of these messages, those whose link has quiet hours, with what decides.
    async fn quiet_candidates(&self, message_ids: &[String]) -> StoreResult<Vec<QuietCandidate>>;
    /// Puts claimed (`sending`) messages back in their lanes, due at the given times, as if
    /// they had not been claimed (the claim's attempt is not counted).
    async fn hold_messages(&self, holds: &[(String, i64)], now: i64) -> StoreResult<()>;
}

fn ids_json(ids: &[String]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())
}

macro_rules! quiet_store {
    ($store:ty, $in_json:literal) => {
        #[async_trait]
        impl QuietStore for $store {
            async fn quiet_candidates(
                &self,
                message_ids: &[String],
            ) -> StoreResult<Vec<QuietCandidate>> {
                let sql = format!(
                    "SELECT m.id, m.priority, l.timezone, l.quiet_start, l.quiet_end \
                     FROM messages m JOIN links l ON l.id = m.link_id \
                     WHERE l.quiet_start IS NOT NULL AND l.quiet_end IS NOT NULL AND m.id {in_json}",
                    in_json = $in_json
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(ids_json(message_ids))
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter()
                    .map(|r| {
                        Ok(QuietCandidate {
                            message_id: r.try_get("id")?,
                            priority: r.try_get::<i64, _>("priority")?,
                            timezone: r.try_get("timezone")?,
                            quiet_start: r.try_get("quiet_start")?,
                            quiet_end: r.try_get("quiet_end")?,
                        })
                    })
                    .collect()
            }

            async fn hold_messages(&self, holds: &[(String, i64)], now: i64) -> StoreResult<()> {
                if holds.is_empty() {
                    return Ok(());
                }
                let mut tx = self.pool.begin().await?;
                for (id, until) in holds {
                    sqlx::query(
                        "UPDATE messages SET status = 'queued', attempts = attempts - 1, \
                         next_attempt_at = $2, claimed_until = NULL, updated_at = $3 \
                         WHERE id = $1 AND status = 'sending'",
                    )
                    .bind(id)
                    .bind(until)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }
        }
    };
}

quiet_store!(SqliteStore, "IN (SELECT value FROM json_each($1))");
quiet_store!(
    PgStore,
    "IN (SELECT jsonb_array_elements_text(CAST($1 AS TEXT)::jsonb))"
);
