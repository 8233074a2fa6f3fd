//! Storage for editing and deleting what was sent: an edit or delete is an outbox row of
//! its own (`kind` `edit` or `delete`, `edit_of` the sent message) in the sent message's
//! chat lane, so the sender claims it after the send, paces it like a send and records its
//! own attempts. A message not yet sent is changed in place instead: its content replaced,
//! or it is cancelled.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;

use super::StoreResult;
use super::cancel::{CancelReason, Cancelled};
use super::outbox::Callback;
use super::outbox::NewRequest;
use super::sql::{PgStore, SqliteStore};

/// What an outbox row does in Telegram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// The app's message (`sendMessage`, `sendPhoto`…).
    Send,
    /// An edit of a sent message.
    Edit,
    /// A delete of a sent message.
    Delete,
    /// A member call on a gated chat (approve, decline, remove, revoke a link), in the
    /// user's lane.
    Member,
}

impl JobKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Send => "send",
            JobKind::Edit => "edit",
            JobKind::Delete => "delete",
            JobKind::Member => "member",
        }
    }

    /// From the stored name (unknown names are sends: rows from before `kind` existed).
    pub fn parse(s: &str) -> JobKind {
        match s {
            "edit" => JobKind::Edit,
            "delete" => JobKind::Delete,
            "member" => JobKind::Member,
            _ => JobKind::Send,
        }
    }
}

/// An edit or delete job to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// The job's request: its content holds the Bot API calls.
    pub request: NewRequest,
    /// The job's id (`msg_…`: it is read like a message).
    pub id: String,
    /// `Edit`, `Delete` or `Member`.
    pub kind: JobKind,
    /// The sent message it acts on (edits and deletes).
    pub edit_of: Option<String>,
    /// Higher goes first in its lane (approvals before notices).
    pub priority: i64,
    /// The bot and the lane's chat (an edit's message's chat; a member job's user).
    pub bot_id: String,
    /// Telegram chat.
    pub chat_id: i64,
    /// Server-side data of new callback buttons.
    pub callbacks: Vec<Callback>,
}

/// Edits and deletes of messages.
#[async_trait]
pub trait EditStore: Send + Sync {
    /// Stores the job's request and queues the job, due now, in one transaction.
    async fn queue_job(&self, job: &NewJob) -> StoreResult<()>;
    /// Gives a message that has not started sending (`queued` or `paused`, nothing of it
    /// delivered) its own `content` (JSON) instead of what it had; it stays in its request.
    /// False when it has started.
    async fn replace_content(
        &self,
        message_id: &str,
        content: &str,
        callbacks: &[Callback],
        now: i64,
    ) -> StoreResult<bool>;
    /// Cancels one waiting message with `reason` (and its `message.cancelled` event); 0
    /// messages when it is no longer waiting.
    async fn cancel_message(
        &self,
        bot_id: &str,
        chat_id: i64,
        message_id: &str,
        reason: CancelReason,
        now: i64,
    ) -> StoreResult<Cancelled>;
    /// Notes on the sent message that an edit (`edited_at`) or delete (`deleted_at`) of it
    /// reached Telegram.
    async fn mark_edited(&self, edit_of: &str, kind: JobKind, now: i64) -> StoreResult<()>;
    /// What a message sends: its own rendering (a personal message), else its request's.
    async fn message_content(&self, message_id: &str) -> StoreResult<Option<String>>;
}

macro_rules! edit_store {
    ($store:ty, $row:ty) => {
        impl $store {
            /// Inserts a request and its buttons' data inside the caller's transaction.
            async fn insert_request(
                conn: &mut <<$row as sqlx::Row>::Database as sqlx::Database>::Connection,
                r: &NewRequest,
                callbacks: &[Callback],
            ) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO message_requests (id, tenant_id, origin, content, created_at, metadata, skipped) \
                     VALUES ($1, $2, $3, $4, $5, $6, NULL)",
                )
                .bind(&r.id)
                .bind(&r.tenant_id)
                .bind(&r.origin)
                .bind(&r.content)
                .bind(r.created_at)
                .bind(&r.metadata)
                .execute(&mut *conn)
                .await?;
                for c in callbacks {
                    sqlx::query(
                        "INSERT INTO callback_data (id, tenant_id, request_id, data, created_at, answer) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(&c.id)
                    .bind(&r.tenant_id)
                    .bind(&r.id)
                    .bind(&c.data)
                    .bind(r.created_at)
                    .bind(&c.answer)
                    .execute(&mut *conn)
                    .await?;
                }
                Ok(())
            }

            /// Stores a job's request and queues the job, due now, inside the caller's
            /// transaction.
            pub(super) async fn insert_job(
                conn: &mut <<$row as sqlx::Row>::Database as sqlx::Database>::Connection,
                job: &NewJob,
            ) -> StoreResult<()> {
                let r = &job.request;
                Self::insert_request(&mut *conn, r, &job.callbacks).await?;
                sqlx::query(
                    "INSERT INTO messages (id, request_id, tenant_id, bot_id, chat_id, status, \
                     priority, send_at, next_attempt_at, created_at, updated_at, kind, edit_of) \
                     VALUES ($1, $2, $3, $4, $5, 'queued', $8, $6, $6, $6, $6, $7, $9)",
                )
                .bind(&job.id)
                .bind(&r.id)
                .bind(&r.tenant_id)
                .bind(&job.bot_id)
                .bind(job.chat_id)
                .bind(r.created_at)
                .bind(job.kind.as_str())
                .bind(job.priority)
                .bind(job.edit_of.as_deref())
                .execute(&mut *conn)
                .await?;
                Ok(())
            }
        }

        #[async_trait]
        impl EditStore for $store {
            async fn queue_job(&self, job: &NewJob) -> StoreResult<()> {
                let mut tx = self.db.begin().await?;
                Self::insert_job(&mut *tx, job).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn replace_content(
                &self,
                message_id: &str,
                content: &str,
                callbacks: &[Callback],
                now: i64,
            ) -> StoreResult<bool> {
                let mut tx = self.db.begin().await?;
                let Some(row) = sqlx::query(
                    "UPDATE messages SET content = $1, updated_at = $2 WHERE id = $3 \
                     AND kind = 'send' AND status IN ('queued', 'paused') AND parts_sent = 0 \
                     RETURNING tenant_id, request_id",
                )
                .bind(content)
                .bind(now)
                .bind(message_id)
                .fetch_optional(&mut *tx)
                .await?
                else {
                    tx.rollback().await?;
                    return Ok(false);
                };
                let tenant_id: String = row.try_get("tenant_id")?;
                let request_id: String = row.try_get("request_id")?;
                for c in callbacks {
                    sqlx::query(
                        "INSERT INTO callback_data (id, tenant_id, request_id, data, created_at, answer) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(&c.id)
                    .bind(&tenant_id)
                    .bind(&request_id)
                    .bind(&c.data)
                    .bind(now)
                    .bind(&c.answer)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(true)
            }

            async fn cancel_message(
                &self,
                bot_id: &str,
                chat_id: i64,
                message_id: &str,
                reason: CancelReason,
                now: i64,
            ) -> StoreResult<Cancelled> {
                let mut tx = self.db.begin().await?;
                let cancelled = Self::cancel_where(
                    &mut *tx,
                    bot_id,
                    chat_id,
                    "id = $3",
                    Some(message_id.to_string()),
                    reason,
                    now,
                )
                .await?;
                tx.commit().await?;
                Ok(cancelled)
            }

            async fn message_content(&self, message_id: &str) -> StoreResult<Option<String>> {
                let row = sqlx::query(
                    "SELECT COALESCE(m.content, r.content) AS content FROM messages m \
                     JOIN message_requests r ON r.id = m.request_id WHERE m.id = $1",
                )
                .bind(message_id)
                .fetch_optional(&self.db)
                .await?;
                Ok(row.map(|r| r.try_get("content")).transpose()?)
            }

            async fn mark_edited(&self, edit_of: &str, kind: JobKind, now: i64) -> StoreResult<()> {
                let column = match kind {
                    JobKind::Delete => "deleted_at",
                    _ => "edited_at",
                };
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE messages SET {column} = $1, updated_at = $1 WHERE id = $2"
                )))
                .bind(now)
                .bind(edit_of)
                .execute(&self.db)
                .await?;
                Ok(())
            }
        }
    };
}

edit_store!(SqliteStore, SqliteRow);
edit_store!(PgStore, PgRow);
