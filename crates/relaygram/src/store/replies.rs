//! The inbound router's replies: the fast path into the outbox.
//!
//! A reply is always one plain message to one known chat of one known bot, so it needs none
//! of an API acceptance's planning (no fan-out, throttle, broadcast, link lookups). What it
//! does need is to be stored exactly once per `reply:{bot}:{update}:{seq}` key and before the
//! update's outcome. Each reply is one item of a group commit (`batch.rs`): the replies of
//! every processor finishing at the same time are written in one transaction of a few
//! multi-row statements. The key is taken by the database (`ON CONFLICT` on the
//! idempotency keys' primary key) in that same transaction, with the answer for replays
//! already in it, so a replayed reply reads one row and stores nothing.

use async_trait::async_trait;
use sqlx::Row;

use super::StoreResult;
use super::batch::GroupCommit;
use super::inbound::placeholders;
use super::sql::{PgStore, SqliteStore};

/// Replies per batch (each binds at most 9 parameters per statement).
const MAX_BATCH: usize = 256;

/// One reply to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReply {
    /// The request id (`req_…`).
    pub request_id: String,
    /// The message id (`msg_…`).
    pub message_id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// The bot that sends it.
    pub bot_id: String,
    /// Telegram chat id.
    pub chat_id: i64,
    /// The idempotency key (`reply:{bot}:{update}:{seq}`), also the request's origin.
    pub key: String,
    /// The rendered content, JSON.
    pub content: String,
    /// Server-side button data: (id, data).
    pub callbacks: Vec<(String, String)>,
    /// The answer kept with the key for a replay (the acceptance's JSON).
    pub response: String,
    /// Acceptance time (UTC ms): also when it may be sent.
    pub now: i64,
}

/// Storage of the router's replies.
#[async_trait]
pub trait ReplyStore: Send + Sync {
    /// Stores a reply's request, message and button data with its key, batched with other
    /// replies. `None` when stored now; the stored answer when the key was taken before (a
    /// key older than a day is taken again, as for API keys).
    async fn queue_reply(&self, reply: &NewReply) -> StoreResult<Option<String>>;
}

/// `rows` copies of `template` with each `#` replaced by the next placeholder.
fn values(rows: usize, template: &str, numbered: bool) -> String {
    let mut out = String::with_capacity(rows * template.len() * 2);
    let mut n = 0;
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        for ch in template.chars() {
            if ch == '#' {
                n += 1;
                if numbered {
                    out.push('$');
                    out.push_str(&n.to_string());
                } else {
                    out.push('?');
                }
            } else {
                out.push(ch);
            }
        }
    }
    out
}

macro_rules! reply_store {
    ($store:ty, $pool:ty, $writers:literal, $numbered:literal) => {
        impl $store {
            async fn queue_replies(
                pool: $pool,
                batch: Vec<NewReply>,
            ) -> StoreResult<Vec<Option<String>>> {
                // A key twice in one batch: the first copy is stored, the others replay it.
                let mut seen = std::collections::HashSet::new();
                let firsts: Vec<&NewReply> = batch
                    .iter()
                    .filter(|r| seen.insert((r.tenant_id.as_str(), r.key.as_str())))
                    .collect();
                let cutoff = batch.iter().map(|r| r.now).min().unwrap_or(0) - 86_400_000;
                let mut tx = pool.begin().await?;
                // The keys first (the first statement writes, so SQLite takes its write lock
                // up front). A conflict is a replay, unless the key is older than a day.
                let sql = format!(
                    "INSERT INTO idempotency_keys (tenant_id, key, body_hash, response, created_at) \
                     VALUES {} ON CONFLICT (tenant_id, key) DO UPDATE SET body_hash = excluded.body_hash, \
                     response = excluded.response, created_at = excluded.created_at \
                     WHERE idempotency_keys.created_at < {cutoff} RETURNING tenant_id, key",
                    placeholders(firsts.len(), 5, $numbered)
                );
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                for r in &firsts {
                    query = query
                        .bind(&r.tenant_id)
                        .bind(&r.key)
                        .bind("reply")
                        .bind(&r.response)
                        .bind(r.now);
                }
                let mut taken = std::collections::HashSet::new();
                for row in query.fetch_all(&mut *tx).await? {
                    let tenant: String = row.try_get("tenant_id")?;
                    let key: String = row.try_get("key")?;
                    taken.insert((tenant, key));
                }
                let new: Vec<&NewReply> = firsts
                    .into_iter()
                    .filter(|r| taken.contains(&(r.tenant_id.clone(), r.key.clone())))
                    .collect();
                if !new.is_empty() {
                    let sql = format!(
                        "INSERT INTO message_requests (id, tenant_id, origin, content, created_at) \
                         VALUES {}",
                        placeholders(new.len(), 5, $numbered)
                    );
                    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for r in &new {
                        query = query
                            .bind(&r.request_id)
                            .bind(&r.tenant_id)
                            .bind(&r.key)
                            .bind(&r.content)
                            .bind(r.now);
                    }
                    query.execute(&mut *tx).await?;
                    let sql = format!(
                        "INSERT INTO messages (id, request_id, tenant_id, bot_id, chat_id, link_id, \
                         broadcast_id, status, priority, send_at, next_attempt_at, created_at, \
                         updated_at, finished_at) VALUES {}",
                        values(
                            new.len(),
                            "(#, #, #, #, #, NULL, NULL, 'queued', 0, #, #, #, #, NULL)",
                            $numbered
                        )
                    );
                    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for r in &new {
                        query = query
                            .bind(&r.message_id)
                            .bind(&r.request_id)
                            .bind(&r.tenant_id)
                            .bind(&r.bot_id)
                            .bind(r.chat_id)
                            .bind(r.now)
                            .bind(r.now)
                            .bind(r.now)
                            .bind(r.now);
                    }
                    query.execute(&mut *tx).await?;
                    let callbacks: Vec<(&NewReply, &(String, String))> = new
                        .iter()
                        .flat_map(|r| r.callbacks.iter().map(move |c| (*r, c)))
                        .collect();
                    if !callbacks.is_empty() {
                        let sql = format!(
                            "INSERT INTO callback_data (id, tenant_id, request_id, data, created_at) \
                             VALUES {}",
                            placeholders(callbacks.len(), 5, $numbered)
                        );
                        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                        for (r, (id, data)) in &callbacks {
                            query = query
                                .bind(id)
                                .bind(&r.tenant_id)
                                .bind(&r.request_id)
                                .bind(data)
                                .bind(r.now);
                        }
                        query.execute(&mut *tx).await?;
                    }
                }
                let stored: std::collections::HashSet<&str> =
                    new.iter().map(|r| r.message_id.as_str()).collect();
                let mut answers = Vec::with_capacity(batch.len());
                for r in &batch {
                    if stored.contains(r.message_id.as_str()) {
                        answers.push(None);
                        continue;
                    }
                    // A replay (rare: an update processed again): its first answer.
                    let response: Option<String> = sqlx::query(
                        "SELECT response FROM idempotency_keys WHERE tenant_id = $1 AND key = $2",
                    )
                    .bind(&r.tenant_id)
                    .bind(&r.key)
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|row| row.try_get("response"))
                    .transpose()?;
                    answers.push(Some(response.unwrap_or_default()));
                }
                tx.commit().await?;
                Ok(answers)
            }
        }

        #[async_trait]
        impl ReplyStore for $store {
            async fn queue_reply(&self, reply: &NewReply) -> StoreResult<Option<String>> {
                let queue = self.hot.replies.get_or_init(|| {
                    let (a, b) = (self.pool.clone(), self.pool.clone());
                    GroupCommit::new(
                        MAX_BATCH,
                        $writers,
                        move |batch| Self::queue_replies(a.clone(), batch),
                        move |one| {
                            let pool = b.clone();
                            async move { Ok(Self::queue_replies(pool, vec![one]).await?.remove(0)) }
                        },
                    )
                });
                queue.submit(reply.clone()).await
            }
        }
    };
}

// As for updates: one writer on SQLite, batches side by side on PostgreSQL.
reply_store!(SqliteStore, sqlx::SqlitePool, 1, false);
reply_store!(PgStore, sqlx::PgPool, 2, true);
