//! Storage for digests: open digests per (tenant, key, recipient), their items, and the
//! closing of due ones.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;

use super::sql::{PgStore, SqliteStore};
use super::{Listed, Page, StoreResult};

/// A digest to open when none is open for its key and recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDigest {
    /// Opaque id (used only when this opens a new digest).
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// The app's digest key.
    pub key: String,
    /// One target and the bot, canonical JSON.
    pub recipient: String,
    /// The digest message's base request (JSON).
    pub base: String,
    /// A stored template that renders the digest, if not the default.
    pub template: Option<String>,
    /// The schedule that closes it, if any.
    pub schedule_id: Option<String>,
    /// When it closes (UTC ms).
    pub close_at: i64,
}

/// One item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestItem {
    /// Opaque id.
    pub id: String,
    /// Its text, if any.
    pub text: Option<String>,
    /// Its data (JSON), if any.
    pub data: Option<String>,
    /// When it arrived (UTC ms).
    pub created_at: i64,
}

/// A stored digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestRecord {
    /// Opaque id.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// The app's key.
    pub key: String,
    /// Recipient (canonical JSON).
    pub recipient: String,
    /// Base request (JSON).
    pub base: String,
    /// Digest template.
    pub template: Option<String>,
    /// Closing schedule.
    pub schedule_id: Option<String>,
    /// Closing time.
    pub close_at: i64,
    /// `open`, `closing`, `sent` or `failed`.
    pub status: String,
    /// The delivery request it became.
    pub request_id: Option<String>,
    /// Outbox message ids (JSON array).
    pub message_ids: String,
    /// Why it failed.
    pub error: Option<String>,
    /// Items in it.
    pub items: i64,
    /// Opened at.
    pub created_at: i64,
    /// Closed at.
    pub closed_at: Option<i64>,
}

/// Digests.
#[async_trait]
pub trait DigestStore: Send + Sync {
    /// Adds an item to the open digest of its key and recipient, opening `open` when there
    /// is none; returns the digest's id. An item id already stored adds nothing and
    /// answers the digest it went to (replays of one request).
    async fn add_digest_item(&self, open: &NewDigest, item: &DigestItem) -> StoreResult<String>;
    /// Digests due to close (open or closing, `close_at` reached), oldest first.
    async fn due_digests(&self, now: i64, limit: i64) -> StoreResult<Vec<DigestRecord>>;
    /// Closes a digest (later items open the next one) and returns its items in order.
    /// Idempotent: a closing digest answers its items again.
    async fn close_digest(&self, id: &str, now: i64) -> StoreResult<Vec<DigestItem>>;
    /// Records what became of a closed digest (`sent` or `failed`).
    async fn finish_digest(
        &self,
        id: &str,
        status: &str,
        request_id: Option<&str>,
        message_ids: &str,
        error: Option<&str>,
        now: i64,
    ) -> StoreResult<()>;
    /// One digest (of this tenant, when given).
    async fn get_digest(
        &self,
        tenant_id: Option<&str>,
        id: &str,
    ) -> StoreResult<Option<DigestRecord>>;
    /// The tenant's digests, oldest first, optionally of one key and status.
    async fn list_digests(
        &self,
        tenant_id: &str,
        key: Option<&str>,
        status: Option<&str>,
        page: &Page,
    ) -> StoreResult<Listed<DigestRecord>>;
}

const DIGEST_COLS: &str = "d.id, d.tenant_id, d.key, d.recipient, d.base, d.template, \
     d.schedule_id, d.close_at, d.status, d.request_id, d.message_ids, d.error, d.created_at, \
     d.closed_at, (SELECT COUNT(*) FROM digest_items i WHERE i.digest_id = d.id) AS items";

macro_rules! digests_store {
    ($store:ty, $row:ty) => {
        impl $store {
            fn digest(r: &$row) -> StoreResult<DigestRecord> {
                Ok(DigestRecord {
                    id: r.try_get("id")?,
                    tenant_id: r.try_get("tenant_id")?,
                    key: r.try_get("key")?,
                    recipient: r.try_get("recipient")?,
                    base: r.try_get("base")?,
                    template: r.try_get("template")?,
                    schedule_id: r.try_get("schedule_id")?,
                    close_at: r.try_get("close_at")?,
                    status: r.try_get("status")?,
                    request_id: r.try_get("request_id")?,
                    message_ids: r.try_get("message_ids")?,
                    error: r.try_get("error")?,
                    items: r.try_get::<i64, _>("items")?,
                    created_at: r.try_get("created_at")?,
                    closed_at: r.try_get("closed_at")?,
                })
            }
        }

        #[async_trait]
        impl DigestStore for $store {
            async fn add_digest_item(
                &self,
                open: &NewDigest,
                item: &DigestItem,
            ) -> StoreResult<String> {
                let mut tx = self.db.begin().await?;
                let known = sqlx::query("SELECT digest_id FROM digest_items WHERE id = $1")
                    .bind(&item.id)
                    .fetch_optional(&mut *tx)
                    .await?;
                if let Some(row) = known {
                    return Ok(row.try_get("digest_id")?);
                }
                sqlx::query(
                    "INSERT INTO digests (id, tenant_id, key, recipient, base, template, \
                     schedule_id, close_at, status, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'open', $9, $9) \
                     ON CONFLICT (tenant_id, key, recipient) WHERE status = 'open' DO NOTHING",
                )
                .bind(&open.id)
                .bind(&open.tenant_id)
                .bind(&open.key)
                .bind(&open.recipient)
                .bind(&open.base)
                .bind(open.template.as_deref())
                .bind(open.schedule_id.as_deref())
                .bind(open.close_at)
                .bind(item.created_at)
                .execute(&mut *tx)
                .await?;
                // Touching the open digest locks it (PostgreSQL), so a close waits for this
                // item, and the close reads it.
                let row = sqlx::query(
                    "UPDATE digests SET updated_at = $4 WHERE tenant_id = $1 AND key = $2 \
                     AND recipient = $3 AND status = 'open' RETURNING id",
                )
                .bind(&open.tenant_id)
                .bind(&open.key)
                .bind(&open.recipient)
                .bind(item.created_at)
                .fetch_one(&mut *tx)
                .await?;
                let digest_id: String = row.try_get("id")?;
                sqlx::query(
                    "INSERT INTO digest_items (id, digest_id, seq, text, data, created_at) \
                     VALUES ($1, $2, (SELECT COUNT(*) FROM digest_items WHERE digest_id = $2), \
                     $3, $4, $5)",
                )
                .bind(&item.id)
                .bind(&digest_id)
                .bind(item.text.as_deref())
                .bind(item.data.as_deref())
                .bind(item.created_at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(digest_id)
            }

            async fn due_digests(&self, now: i64, limit: i64) -> StoreResult<Vec<DigestRecord>> {
                let sql = format!(
                    "SELECT {DIGEST_COLS} FROM digests d WHERE d.status IN ('open', 'closing') \
                     AND d.close_at <= $1 ORDER BY d.close_at, d.id LIMIT $2"
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(now)
                    .bind(limit)
                    .fetch_all(&self.db)
                    .await?;
                rows.iter().map(Self::digest).collect()
            }

            async fn close_digest(&self, id: &str, now: i64) -> StoreResult<Vec<DigestItem>> {
                sqlx::query(
                    "UPDATE digests SET status = 'closing', closed_at = $2, updated_at = $2 \
                     WHERE id = $1 AND status = 'open'",
                )
                .bind(id)
                .bind(now)
                .execute(&self.db)
                .await?;
                let rows = sqlx::query(
                    "SELECT id, text, data, created_at FROM digest_items WHERE digest_id = $1 \
                     ORDER BY seq",
                )
                .bind(id)
                .fetch_all(&self.db)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(DigestItem {
                            id: r.try_get("id")?,
                            text: r.try_get("text")?,
                            data: r.try_get("data")?,
                            created_at: r.try_get("created_at")?,
                        })
                    })
                    .collect()
            }

            async fn finish_digest(
                &self,
                id: &str,
                status: &str,
                request_id: Option<&str>,
                message_ids: &str,
                error: Option<&str>,
                now: i64,
            ) -> StoreResult<()> {
                sqlx::query(
                    "UPDATE digests SET status = $2, request_id = $3, message_ids = $4, \
                     error = $5, updated_at = $6 WHERE id = $1 AND status = 'closing'",
                )
                .bind(id)
                .bind(status)
                .bind(request_id)
                .bind(message_ids)
                .bind(error)
                .bind(now)
                .execute(&self.db)
                .await?;
                Ok(())
            }

            async fn get_digest(
                &self,
                tenant_id: Option<&str>,
                id: &str,
            ) -> StoreResult<Option<DigestRecord>> {
                let sql = format!(
                    "SELECT {DIGEST_COLS} FROM digests d \
                     WHERE ($1 IS NULL OR d.tenant_id = $1) AND d.id = $2"
                );
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(tenant_id)
                    .bind(id)
                    .fetch_optional(&self.db)
                    .await?;
                row.as_ref().map(Self::digest).transpose()
            }

            async fn list_digests(
                &self,
                tenant_id: &str,
                key: Option<&str>,
                status: Option<&str>,
                page: &Page,
            ) -> StoreResult<Listed<DigestRecord>> {
                let sql = format!(
                    "SELECT {DIGEST_COLS} FROM digests d WHERE d.tenant_id = $1 \
                     AND ($2 IS NULL OR d.key = $2) AND ($3 IS NULL OR d.status = $3) \
                     AND ($4 IS NULL OR d.id > $4) ORDER BY d.id LIMIT $5"
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(tenant_id)
                    .bind(key)
                    .bind(status)
                    .bind(page.after.as_deref())
                    .bind(i64::from(page.size()) + 1)
                    .fetch_all(&self.db)
                    .await?;
                let items = rows
                    .iter()
                    .map(Self::digest)
                    .collect::<StoreResult<Vec<_>>>()?;
                Ok(Listed::from_overfetch(items, page, |d| d.id.as_str()))
            }
        }
    };
}

digests_store!(SqliteStore, SqliteRow);
digests_store!(PgStore, PgRow);
