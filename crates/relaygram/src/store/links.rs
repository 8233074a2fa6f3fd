//! Storage for linking: categories, link tokens, connect codes, links and their
//! preferences. The rules live in [`crate::linking`]; this module only keeps the rows.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;

use super::sql::{PgStore, SqliteStore};
use super::{Listed, Page, StoreError, StoreResult};

/// A kind of notification that links opt in and out of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryRecord {
    /// Opaque id (`cat_…`).
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Stable key the app sends with (`alerts`), unique in the tenant.
    pub key: String,
    /// Display name shown in `/settings`.
    pub name: String,
    /// Longer description.
    pub description: Option<String>,
    /// Whether a link without a preference row receives it.
    pub default_enabled: bool,
    /// Whether a user may turn it off (`true`: they may not).
    pub mandatory: bool,
    /// Creation time (UTC ms).
    pub created_at: i64,
    /// Last change (UTC ms).
    pub updated_at: i64,
}

/// An app user or a team code's subscriber linked to a chat through a bot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRecord {
    /// Opaque id (`link_…`).
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// The bot that reaches the chat.
    pub bot_id: String,
    /// The app's user id; `None` for links made with a connect code.
    pub external_id: Option<String>,
    /// Telegram chat id (followed on group migration).
    pub chat_id: i64,
    /// `private`, `group`, `supergroup` or `channel`.
    pub chat_type: String,
    /// `false` while the user blocks the bot (or the bot left the group).
    pub active: bool,
    /// `token` or `code`.
    pub source: String,
    /// The connect code that made it (source `code`).
    pub connect_code_id: Option<String>,
    /// The link token that made it (source `token`).
    pub link_token_id: Option<String>,
    /// The Telegram user who linked the chat.
    pub telegram_user_id: Option<i64>,
    /// App-supplied JSON object, as text.
    pub metadata: Option<String>,
    /// IANA time zone for quiet hours.
    pub timezone: Option<String>,
    /// Quiet hours start, `HH:MM`.
    pub quiet_start: Option<String>,
    /// Quiet hours end, `HH:MM`.
    pub quiet_end: Option<String>,
    /// Creation time (UTC ms).
    pub created_at: i64,
    /// Last change (UTC ms).
    pub updated_at: i64,
}

/// A single-use link token (its hash and sealed form, never the token in clear).
#[derive(Clone, PartialEq, Eq)]
pub struct LinkTokenRecord {
    /// Opaque id (`ltk_…`).
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// The bot the token works with.
    pub bot_id: String,
    /// Hex SHA-256 of the token (the lookup key).
    pub token_hash: String,
    /// The token sealed with the server's key (to draw its QR code again).
    pub token_sealed: String,
    /// The app user it links.
    pub external_id: String,
    /// Category keys turned on at link time.
    pub categories: Vec<String>,
    /// App-supplied JSON object, as text; copied to the link.
    pub metadata: Option<String>,
    /// Whether the chat may already be linked for another app user.
    pub allow_shared_chat: bool,
    /// Expiry (UTC ms).
    pub expires_at: i64,
    /// When it was used (UTC ms).
    pub used_at: Option<i64>,
    /// The link it made.
    pub link_id: Option<String>,
    /// Creation time (UTC ms).
    pub created_at: i64,
}

impl std::fmt::Debug for LinkTokenRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkTokenRecord")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("bot_id", &self.bot_id)
            .field("expires_at", &self.expires_at)
            .field("used_at", &self.used_at)
            .finish_non_exhaustive()
    }
}

/// A team connect code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectCodeRecord {
    /// Opaque id (`ccd_…`).
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// The bot the code works with.
    pub bot_id: String,
    /// The code users send (`/start ABCD2345`).
    pub code: String,
    /// Operator-chosen label.
    pub label: Option<String>,
    /// Category keys turned on for each subscriber.
    pub categories: Vec<String>,
    /// When it was revoked.
    pub revoked_at: Option<i64>,
    /// Creation time (UTC ms).
    pub created_at: i64,
    /// Last change (UTC ms).
    pub updated_at: i64,
    /// Active links made with it (counted when read; ignored when written).
    pub subscriber_count: i64,
}

/// Which links to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkFilter {
    /// Only this tenant's.
    pub tenant_id: Option<String>,
    /// Only this app user's.
    pub external_id: Option<String>,
    /// Only through this bot.
    pub bot_id: Option<String>,
    /// Only links opted in to this category key (by the opt-in rule, active or not).
    pub category: Option<String>,
    /// Only active (or inactive) links.
    pub active: Option<bool>,
    /// Only this chat.
    pub chat_id: Option<i64>,
    /// Only subscribers of this connect code.
    pub connect_code_id: Option<String>,
}

/// How a link is made: a new row, or an existing link of the same user and chat taken up again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkWrite {
    /// Insert the link.
    Insert,
    /// The link exists: make it active again and take the new metadata.
    Reactivate,
}

/// Linking storage.
#[async_trait]
pub trait LinkStore: Send + Sync {
    /// Stores a category; [`StoreError::Conflict`] when the tenant has the key already.
    async fn insert_category(&self, c: &CategoryRecord) -> StoreResult<()>;
    /// One category.
    async fn get_category(&self, id: &str) -> StoreResult<Option<CategoryRecord>>;
    /// Categories, optionally of one tenant, in id order.
    async fn list_categories(
        &self,
        tenant_id: Option<&str>,
        page: &Page,
    ) -> StoreResult<Listed<CategoryRecord>>;
    /// Every category of a tenant, in creation order.
    async fn tenant_categories(&self, tenant_id: &str) -> StoreResult<Vec<CategoryRecord>>;
    /// Changes name, description, default and mandatory; `false` when missing.
    async fn update_category(&self, c: &CategoryRecord) -> StoreResult<bool>;
    /// Deletes a category and every link's preference for it; `false` when missing.
    async fn delete_category(&self, id: &str) -> StoreResult<bool>;

    /// Stores a link token.
    async fn insert_link_token(&self, t: &LinkTokenRecord) -> StoreResult<()>;
    /// One link token by id.
    async fn get_link_token(&self, id: &str) -> StoreResult<Option<LinkTokenRecord>>;
    /// A link token by the hash of the token.
    async fn find_link_token(&self, token_hash: &str) -> StoreResult<Option<LinkTokenRecord>>;

    /// Stores a connect code; [`StoreError::Conflict`] when the code is taken.
    async fn insert_connect_code(&self, c: &ConnectCodeRecord) -> StoreResult<()>;
    /// One connect code by id.
    async fn get_connect_code(&self, id: &str) -> StoreResult<Option<ConnectCodeRecord>>;
    /// A connect code by its code.
    async fn find_connect_code(&self, code: &str) -> StoreResult<Option<ConnectCodeRecord>>;
    /// Connect codes, optionally of one tenant and bot, in id order.
    async fn list_connect_codes(
        &self,
        tenant_id: Option<&str>,
        bot_id: Option<&str>,
        page: &Page,
    ) -> StoreResult<Listed<ConnectCodeRecord>>;
    /// Changes code, label, categories, revocation; `false` when missing.
    /// [`StoreError::Conflict`] when the new code is taken.
    async fn update_connect_code(&self, c: &ConnectCodeRecord) -> StoreResult<bool>;

    /// Makes (or takes up again) a link and turns on `enabled` categories, in one
    /// transaction. With `token_id`, the token is consumed first: when it was used or has
    /// expired by `now` meanwhile, nothing is written and `false` comes back.
    async fn write_link(
        &self,
        link: &LinkRecord,
        how: LinkWrite,
        enabled: &[String],
        token_id: Option<&str>,
        now: i64,
    ) -> StoreResult<bool>;
    /// One link.
    async fn get_link(&self, id: &str) -> StoreResult<Option<LinkRecord>>;
    /// One link of a tenant (`None` when missing or another tenant's).
    async fn get_tenant_link(&self, tenant_id: &str, id: &str) -> StoreResult<Option<LinkRecord>>;
    /// Links matching `filter`, in id order.
    async fn list_links(&self, filter: &LinkFilter, page: &Page)
    -> StoreResult<Listed<LinkRecord>>;
    /// Every link of a bot's chat (active or not), oldest first.
    async fn chat_links(&self, bot_id: &str, chat_id: i64) -> StoreResult<Vec<LinkRecord>>;
    /// Stores metadata, time zone, quiet hours and `updated_at`; `false` when missing.
    async fn update_link(&self, link: &LinkRecord) -> StoreResult<bool>;
    /// A link's preference rows: `(category key, enabled)`.
    async fn link_preferences(&self, link_id: &str) -> StoreResult<Vec<(String, bool)>>;
    /// Sets preference rows and the link's `updated_at`.
    async fn set_link_preferences(
        &self,
        link_id: &str,
        prefs: &[(String, bool)],
        at: i64,
    ) -> StoreResult<()>;
    /// Sets `active` on every link of a chat; returns the links that changed (as they are now).
    async fn set_chat_links_active(
        &self,
        bot_id: &str,
        chat_id: i64,
        active: bool,
        at: i64,
    ) -> StoreResult<Vec<LinkRecord>>;
    /// Moves a migrated group's links to the new chat id (a supergroup); returns them.
    async fn migrate_chat_links(
        &self,
        bot_id: &str,
        from: i64,
        to: i64,
        at: i64,
    ) -> StoreResult<Vec<LinkRecord>>;
    /// Deletes a link and its preferences; `false` when missing.
    async fn delete_link(&self, id: &str) -> StoreResult<bool>;
}

const CATEGORY_COLS: &str =
    "id, tenant_id, key, name, description, default_enabled, mandatory, created_at, updated_at";
const TOKEN_COLS: &str = "id, tenant_id, bot_id, token_hash, token_sealed, external_id, \
     categories, metadata, allow_shared_chat, expires_at, used_at, link_id, created_at";
const CODE_COLS: &str = "id, tenant_id, bot_id, code, label, categories, revoked_at, created_at, \
     updated_at, (SELECT COUNT(*) FROM links l WHERE l.connect_code_id = connect_codes.id \
     AND l.active = TRUE) AS subscriber_count";
pub(super) const LINK_COLS: &str = "id, tenant_id, bot_id, external_id, chat_id, chat_type, active, \
     source, connect_code_id, link_token_id, telegram_user_id, metadata, timezone, quiet_start, \
     quiet_end, created_at, updated_at";

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

fn keys_json(keys: &[String]) -> String {
    serde_json::to_string(keys).unwrap_or_else(|_| "[]".into())
}

fn keys_of(text: &str) -> StoreResult<Vec<String>> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("category list is not a JSON array: {e}")))
}

macro_rules! links_store {
    ($store:ty, $row:ty) => {
        impl $store {
            fn category_row(row: &$row) -> StoreResult<CategoryRecord> {
                Ok(CategoryRecord {
                    id: row.try_get("id")?,
                    tenant_id: row.try_get("tenant_id")?,
                    key: row.try_get("key")?,
                    name: row.try_get("name")?,
                    description: row.try_get("description")?,
                    default_enabled: row.try_get("default_enabled")?,
                    mandatory: row.try_get("mandatory")?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                })
            }

            fn token_row(row: &$row) -> StoreResult<LinkTokenRecord> {
                Ok(LinkTokenRecord {
                    id: row.try_get("id")?,
                    tenant_id: row.try_get("tenant_id")?,
                    bot_id: row.try_get("bot_id")?,
                    token_hash: row.try_get("token_hash")?,
                    token_sealed: row.try_get("token_sealed")?,
                    external_id: row.try_get("external_id")?,
                    categories: keys_of(row.try_get::<&str, _>("categories")?)?,
                    metadata: row.try_get("metadata")?,
                    allow_shared_chat: row.try_get("allow_shared_chat")?,
                    expires_at: row.try_get("expires_at")?,
                    used_at: row.try_get("used_at")?,
                    link_id: row.try_get("link_id")?,
                    created_at: row.try_get("created_at")?,
                })
            }

            fn code_row(row: &$row) -> StoreResult<ConnectCodeRecord> {
                Ok(ConnectCodeRecord {
                    id: row.try_get("id")?,
                    tenant_id: row.try_get("tenant_id")?,
                    bot_id: row.try_get("bot_id")?,
                    code: row.try_get("code")?,
                    label: row.try_get("label")?,
                    categories: keys_of(row.try_get::<&str, _>("categories")?)?,
                    revoked_at: row.try_get("revoked_at")?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                    subscriber_count: row.try_get("subscriber_count")?,
                })
            }

            pub(super) fn link_row(row: &$row) -> StoreResult<LinkRecord> {
                Ok(LinkRecord {
                    id: row.try_get("id")?,
                    tenant_id: row.try_get("tenant_id")?,
                    bot_id: row.try_get("bot_id")?,
                    external_id: row.try_get("external_id")?,
                    chat_id: row.try_get("chat_id")?,
                    chat_type: row.try_get("chat_type")?,
                    active: row.try_get("active")?,
                    source: row.try_get("source")?,
                    connect_code_id: row.try_get("connect_code_id")?,
                    link_token_id: row.try_get("link_token_id")?,
                    telegram_user_id: row.try_get("telegram_user_id")?,
                    metadata: row.try_get("metadata")?,
                    timezone: row.try_get("timezone")?,
                    quiet_start: row.try_get("quiet_start")?,
                    quiet_end: row.try_get("quiet_end")?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                })
            }
        }

        #[async_trait]
        impl LinkStore for $store {
            async fn insert_category(&self, c: &CategoryRecord) -> StoreResult<()> {
                let result = sqlx::query(
                    "INSERT INTO categories (id, tenant_id, key, name, description, \
                     default_enabled, mandatory, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(&c.id)
                .bind(&c.tenant_id)
                .bind(&c.key)
                .bind(&c.name)
                .bind(&c.description)
                .bind(c.default_enabled)
                .bind(c.mandatory)
                .bind(c.created_at)
                .bind(c.updated_at)
                .execute(&self.db)
                .await;
                match result {
                    Ok(_) => Ok(()),
                    Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                        "the tenant already has a category with key {:?}",
                        c.key
                    ))),
                    Err(e) => Err(e.into()),
                }
            }

            async fn get_category(&self, id: &str) -> StoreResult<Option<CategoryRecord>> {
                let sql = format!("SELECT {CATEGORY_COLS} FROM categories WHERE id = $1");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .fetch_optional(&self.db)
                    .await?
                    .as_ref()
                    .map(Self::category_row)
                    .transpose()
            }

            async fn list_categories(
                &self,
                tenant_id: Option<&str>,
                page: &Page,
            ) -> StoreResult<Listed<CategoryRecord>> {
                let sql = format!(
                    "SELECT {CATEGORY_COLS} FROM categories \
                     WHERE ($1 IS NULL OR tenant_id = $1) AND ($2 IS NULL OR id > $2) \
                     ORDER BY id LIMIT $3"
                );
                let items = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(tenant_id)
                    .bind(page.after.as_deref())
                    .bind(i64::from(page.size()) + 1)
                    .fetch_all(&self.db)
                    .await?
                    .iter()
                    .map(Self::category_row)
                    .collect::<StoreResult<Vec<_>>>()?;
                Ok(Listed::from_overfetch(items, page, |c| &c.id))
            }

            async fn tenant_categories(&self, tenant_id: &str) -> StoreResult<Vec<CategoryRecord>> {
                let sql = format!(
                    "SELECT {CATEGORY_COLS} FROM categories WHERE tenant_id = $1 ORDER BY id"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(tenant_id)
                    .fetch_all(&self.db)
                    .await?
                    .iter()
                    .map(Self::category_row)
                    .collect()
            }

            async fn update_category(&self, c: &CategoryRecord) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE categories SET name = $2, description = $3, default_enabled = $4, \
                     mandatory = $5, updated_at = $6 WHERE id = $1",
                )
                .bind(&c.id)
                .bind(&c.name)
                .bind(&c.description)
                .bind(c.default_enabled)
                .bind(c.mandatory)
                .bind(c.updated_at)
                .execute(&self.db)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn delete_category(&self, id: &str) -> StoreResult<bool> {
                let mut tx = self.db.begin().await?;
                sqlx::query(
                    "DELETE FROM link_preferences WHERE category_key = \
                     (SELECT key FROM categories WHERE id = $1) AND link_id IN \
                     (SELECT l.id FROM links l JOIN categories c ON c.tenant_id = l.tenant_id \
                      WHERE c.id = $1)",
                )
                .bind(id)
                .execute(&mut *tx)
                .await?;
                let done = sqlx::query("DELETE FROM categories WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(done.rows_affected() == 1)
            }

            async fn insert_link_token(&self, t: &LinkTokenRecord) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO link_tokens (id, tenant_id, bot_id, token_hash, token_sealed, \
                     external_id, categories, metadata, allow_shared_chat, expires_at, used_at, \
                     link_id, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                )
                .bind(&t.id)
                .bind(&t.tenant_id)
                .bind(&t.bot_id)
                .bind(&t.token_hash)
                .bind(&t.token_sealed)
                .bind(&t.external_id)
                .bind(keys_json(&t.categories))
                .bind(&t.metadata)
                .bind(t.allow_shared_chat)
                .bind(t.expires_at)
                .bind(t.used_at)
                .bind(&t.link_id)
                .bind(t.created_at)
                .execute(&self.db)
                .await?;
                Ok(())
            }

            async fn get_link_token(&self, id: &str) -> StoreResult<Option<LinkTokenRecord>> {
                let sql = format!("SELECT {TOKEN_COLS} FROM link_tokens WHERE id = $1");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .fetch_optional(&self.db)
                    .await?
                    .as_ref()
                    .map(Self::token_row)
                    .transpose()
            }

            async fn find_link_token(
                &self,
                token_hash: &str,
            ) -> StoreResult<Option<LinkTokenRecord>> {
                let sql = format!("SELECT {TOKEN_COLS} FROM link_tokens WHERE token_hash = $1");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(token_hash)
                    .fetch_optional(&self.db)
                    .await?
                    .as_ref()
                    .map(Self::token_row)
                    .transpose()
            }

            async fn insert_connect_code(&self, c: &ConnectCodeRecord) -> StoreResult<()> {
                let result = sqlx::query(
                    "INSERT INTO connect_codes (id, tenant_id, bot_id, code, label, categories, \
                     revoked_at, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(&c.id)
                .bind(&c.tenant_id)
                .bind(&c.bot_id)
                .bind(&c.code)
                .bind(&c.label)
                .bind(keys_json(&c.categories))
                .bind(c.revoked_at)
                .bind(c.created_at)
                .bind(c.updated_at)
                .execute(&self.db)
                .await;
                match result {
                    Ok(_) => Ok(()),
                    Err(e) if is_unique_violation(&e) => {
                        Err(StoreError::Conflict("the code is taken".into()))
                    }
                    Err(e) => Err(e.into()),
                }
            }

            async fn get_connect_code(&self, id: &str) -> StoreResult<Option<ConnectCodeRecord>> {
                let sql = format!("SELECT {CODE_COLS} FROM connect_codes WHERE id = $1");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .fetch_optional(&self.db)
                    .await?
                    .as_ref()
                    .map(Self::code_row)
                    .transpose()
            }

            async fn find_connect_code(
                &self,
                code: &str,
            ) -> StoreResult<Option<ConnectCodeRecord>> {
                let sql = format!("SELECT {CODE_COLS} FROM connect_codes WHERE code = $1");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(code)
                    .fetch_optional(&self.db)
                    .await?
                    .as_ref()
                    .map(Self::code_row)
                    .transpose()
            }

            async fn list_connect_codes(
                &self,
                tenant_id: Option<&str>,
                bot_id: Option<&str>,
                page: &Page,
            ) -> StoreResult<Listed<ConnectCodeRecord>> {
                let sql = format!(
                    "SELECT {CODE_COLS} FROM connect_codes \
                     WHERE ($1 IS NULL OR tenant_id = $1) AND ($2 IS NULL OR bot_id = $2) \
                     AND ($3 IS NULL OR id > $3) ORDER BY id LIMIT $4"
                );
                let items = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(tenant_id)
                    .bind(bot_id)
                    .bind(page.after.as_deref())
                    .bind(i64::from(page.size()) + 1)
                    .fetch_all(&self.db)
                    .await?
                    .iter()
                    .map(Self::code_row)
                    .collect::<StoreResult<Vec<_>>>()?;
                Ok(Listed::from_overfetch(items, page, |c| &c.id))
            }

            async fn update_connect_code(&self, c: &ConnectCodeRecord) -> StoreResult<bool> {
                let result = sqlx::query(
                    "UPDATE connect_codes SET code = $2, label = $3, categories = $4, \
                     revoked_at = $5, updated_at = $6 WHERE id = $1",
                )
                .bind(&c.id)
                .bind(&c.code)
                .bind(&c.label)
                .bind(keys_json(&c.categories))
                .bind(c.revoked_at)
                .bind(c.updated_at)
                .execute(&self.db)
                .await;
                match result {
                    Ok(done) => Ok(done.rows_affected() == 1),
                    Err(e) if is_unique_violation(&e) => {
                        Err(StoreError::Conflict("the code is taken".into()))
                    }
                    Err(e) => Err(e.into()),
                }
            }

            async fn write_link(
                &self,
                l: &LinkRecord,
                how: LinkWrite,
                enabled: &[String],
                token_id: Option<&str>,
                now: i64,
            ) -> StoreResult<bool> {
                let mut tx = self.db.begin().await?;
                if let Some(token_id) = token_id {
                    // The consumption is the guard: of two chats racing with one token,
                    // only one updates the row.
                    let done = sqlx::query(
                        "UPDATE link_tokens SET used_at = $2, link_id = $3 \
                         WHERE id = $1 AND used_at IS NULL AND expires_at > $2",
                    )
                    .bind(token_id)
                    .bind(now)
                    .bind(&l.id)
                    .execute(&mut *tx)
                    .await?;
                    if done.rows_affected() != 1 {
                        tx.rollback().await?;
                        return Ok(false);
                    }
                }
                match how {
                    LinkWrite::Insert => {
                        sqlx::query(
                            "INSERT INTO links (id, tenant_id, bot_id, external_id, chat_id, \
                             chat_type, active, source, connect_code_id, link_token_id, \
                             telegram_user_id, metadata, timezone, quiet_start, quiet_end, \
                             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
                             $9, $10, $11, $12, $13, $14, $15, $16, $17)",
                        )
                        .bind(&l.id)
                        .bind(&l.tenant_id)
                        .bind(&l.bot_id)
                        .bind(&l.external_id)
                        .bind(l.chat_id)
                        .bind(&l.chat_type)
                        .bind(l.active)
                        .bind(&l.source)
                        .bind(&l.connect_code_id)
                        .bind(&l.link_token_id)
                        .bind(l.telegram_user_id)
                        .bind(&l.metadata)
                        .bind(&l.timezone)
                        .bind(&l.quiet_start)
                        .bind(&l.quiet_end)
                        .bind(l.created_at)
                        .bind(l.updated_at)
                        .execute(&mut *tx)
                        .await?;
                    }
                    LinkWrite::Reactivate => {
                        sqlx::query(
                            "UPDATE links SET active = $2, metadata = $3, chat_type = $4, \
                             telegram_user_id = $5, updated_at = $6 WHERE id = $1",
                        )
                        .bind(&l.id)
                        .bind(l.active)
                        .bind(&l.metadata)
                        .bind(&l.chat_type)
                        .bind(l.telegram_user_id)
                        .bind(l.updated_at)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                for key in enabled {
                    sqlx::query(
                        "INSERT INTO link_preferences (link_id, category_key, enabled, updated_at) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (link_id, category_key) \
                         DO UPDATE SET enabled = excluded.enabled, updated_at = excluded.updated_at",
                    )
                    .bind(&l.id)
                    .bind(key)
                    .bind(true)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(true)
            }

            async fn get_link(&self, id: &str) -> StoreResult<Option<LinkRecord>> {
                let sql = format!("SELECT {LINK_COLS} FROM links WHERE id = $1");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .fetch_optional(&self.db)
                    .await?
                    .as_ref()
                    .map(Self::link_row)
                    .transpose()
            }

            async fn get_tenant_link(
                &self,
                tenant_id: &str,
                id: &str,
            ) -> StoreResult<Option<LinkRecord>> {
                let sql =
                    format!("SELECT {LINK_COLS} FROM links WHERE id = $1 AND tenant_id = $2");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .bind(tenant_id)
                    .fetch_optional(&self.db)
                    .await?
                    .as_ref()
                    .map(Self::link_row)
                    .transpose()
            }

            async fn list_links(
                &self,
                f: &LinkFilter,
                page: &Page,
            ) -> StoreResult<Listed<LinkRecord>> {
                // The category filter is the opt-in rule (see docs/linking.md).
                let sql = format!(
                    "SELECT {LINK_COLS} FROM links l \
                     WHERE ($1 IS NULL OR l.tenant_id = $1) AND ($2 IS NULL OR l.external_id = $2) \
                     AND ($3 IS NULL OR l.bot_id = $3) AND ($4 IS NULL OR l.active = $4) \
                     AND ($5 IS NULL OR l.chat_id = $5) AND ($6 IS NULL OR l.connect_code_id = $6) \
                     AND ($7 IS NULL OR EXISTS (SELECT 1 FROM categories c \
                         LEFT JOIN link_preferences p ON p.link_id = l.id AND p.category_key = c.key \
                         WHERE c.tenant_id = l.tenant_id AND c.key = $7 \
                         AND (c.mandatory OR COALESCE(p.enabled, c.default_enabled)))) \
                     AND ($8 IS NULL OR l.id > $8) ORDER BY l.id LIMIT $9"
                );
                let items = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(f.tenant_id.as_deref())
                    .bind(f.external_id.as_deref())
                    .bind(f.bot_id.as_deref())
                    .bind(f.active)
                    .bind(f.chat_id)
                    .bind(f.connect_code_id.as_deref())
                    .bind(f.category.as_deref())
                    .bind(page.after.as_deref())
                    .bind(i64::from(page.size()) + 1)
                    .fetch_all(&self.db)
                    .await?
                    .iter()
                    .map(Self::link_row)
                    .collect::<StoreResult<Vec<_>>>()?;
                Ok(Listed::from_overfetch(items, page, |l| &l.id))
            }

            async fn chat_links(&self, bot_id: &str, chat_id: i64) -> StoreResult<Vec<LinkRecord>> {
                let sql = format!(
                    "SELECT {LINK_COLS} FROM links WHERE bot_id = $1 AND chat_id = $2 ORDER BY id"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(bot_id)
                    .bind(chat_id)
                    .fetch_all(&self.db)
                    .await?
                    .iter()
                    .map(Self::link_row)
                    .collect()
            }

            async fn update_link(&self, l: &LinkRecord) -> StoreResult<bool> {
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
                .execute(&self.db)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn link_preferences(&self, link_id: &str) -> StoreResult<Vec<(String, bool)>> {
                let rows = sqlx::query(
                    "SELECT category_key, enabled FROM link_preferences WHERE link_id = $1 \
                     ORDER BY category_key",
                )
                .bind(link_id)
                .fetch_all(&self.db)
                .await?;
                rows.iter()
                    .map(|r| Ok((r.try_get("category_key")?, r.try_get("enabled")?)))
                    .collect()
            }

            async fn set_link_preferences(
                &self,
                link_id: &str,
                prefs: &[(String, bool)],
                at: i64,
            ) -> StoreResult<()> {
                let mut tx = self.db.begin().await?;
                for (key, enabled) in prefs {
                    sqlx::query(
                        "INSERT INTO link_preferences (link_id, category_key, enabled, updated_at) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (link_id, category_key) \
                         DO UPDATE SET enabled = excluded.enabled, updated_at = excluded.updated_at",
                    )
                    .bind(link_id)
                    .bind(key)
                    .bind(*enabled)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query("UPDATE links SET updated_at = $2 WHERE id = $1")
                    .bind(link_id)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn set_chat_links_active(
                &self,
                bot_id: &str,
                chat_id: i64,
                active: bool,
                at: i64,
            ) -> StoreResult<Vec<LinkRecord>> {
                let sql = format!(
                    "UPDATE links SET active = $3, updated_at = $4 \
                     WHERE bot_id = $1 AND chat_id = $2 AND active <> $3 RETURNING {LINK_COLS}"
                );
                let links = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(bot_id)
                    .bind(chat_id)
                    .bind(active)
                    .bind(at)
                    .fetch_all(&self.db)
                    .await?
                    .iter()
                    .map(Self::link_row)
                    .collect::<StoreResult<Vec<_>>>()?;
                if active {
                    // The chat can be written to again at once (the update that says so
                    // stores its chat later): new messages to it must not be cancelled.
                    sqlx::query(
                        "UPDATE chats SET state = 'active', updated_at = $3 WHERE bot_id = $1 \
                         AND chat_id = $2 AND state IN ('blocked', 'kicked', 'left')",
                    )
                    .bind(bot_id)
                    .bind(chat_id)
                    .bind(at)
                    .execute(&self.db)
                    .await?;
                    self.hot.chats.forget(&(bot_id.to_string(), chat_id));
                }
                Ok(links)
            }

            async fn migrate_chat_links(
                &self,
                bot_id: &str,
                from: i64,
                to: i64,
                at: i64,
            ) -> StoreResult<Vec<LinkRecord>> {
                let sql = format!(
                    "UPDATE links SET chat_id = $3, chat_type = 'supergroup', updated_at = $4 \
                     WHERE bot_id = $1 AND chat_id = $2 RETURNING {LINK_COLS}"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(bot_id)
                    .bind(from)
                    .bind(to)
                    .bind(at)
                    .fetch_all(&self.db)
                    .await?
                    .iter()
                    .map(Self::link_row)
                    .collect()
            }

            async fn delete_link(&self, id: &str) -> StoreResult<bool> {
                let mut tx = self.db.begin().await?;
                sqlx::query("DELETE FROM link_preferences WHERE link_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                let done = sqlx::query("DELETE FROM links WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(done.rows_affected() == 1)
            }
        }
    };
}

links_store!(SqliteStore, SqliteRow);
links_store!(PgStore, PgRow);

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use secrecy::SecretString;

    use super::*;
    use crate::store::testing::{engines, fresh};
    use crate::store::{BotMode, BotRecord, Store, Tenant, connect};

    fn category(id: &str, key: &str, default_enabled: bool, mandatory: bool) -> CategoryRecord {
        CategoryRecord {
            id: id.into(),
            tenant_id: "ten_l".into(),
            key: key.into(),
            name: key.into(),
            description: None,
            default_enabled,
            mandatory,
            created_at: 1,
            updated_at: 1,
        }
    }

    fn link(id: &str, chat_id: i64) -> LinkRecord {
        LinkRecord {
            id: id.into(),
            tenant_id: "ten_l".into(),
            bot_id: "bot_l".into(),
            external_id: Some(format!("user-{id}")),
            chat_id,
            chat_type: "group".into(),
            active: true,
            source: "token".into(),
            connect_code_id: None,
            link_token_id: None,
            telegram_user_id: None,
            metadata: None,
            timezone: None,
            quiet_start: None,
            quiet_end: None,
            created_at: 1,
            updated_at: 1,
        }
    }

    async fn ids(store: &dyn Store, category: &str) -> Vec<String> {
        let filter = LinkFilter {
            category: Some(category.into()),
            active: Some(true),
            ..LinkFilter::default()
        };
        store
            .list_links(&filter, &Page::first(50))
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|l| l.id)
            .collect()
    }

    /// The opt-in rule, token consumption, activity and migration, on every engine.
    async fn links_story(store: Arc<dyn Store>) {
        store
            .insert_tenant(&Tenant {
                id: "ten_l".into(),
                name: "L".into(),
                created_at: 1,
            })
            .await
            .unwrap();
        store
            .insert_bot(&BotRecord {
                id: "bot_l".into(),
                tenant_id: "ten_l".into(),
                telegram_id: 77,
                username: "l_bot".into(),
                first_name: "L".into(),
                token_sealed: "v1:x".into(),
                webhook_secret_sealed: None,
                webhook_url: None,
                mode: BotMode::Polling,
                enabled: true,
                created_at: 1,
                updated_at: 1,
                allowed_updates: None,
                builtins_off: Vec::new(),
            })
            .await
            .unwrap();
        for c in [
            category("cat_1", "alerts", true, false),
            category("cat_2", "reports", false, false),
            category("cat_3", "critical", false, true),
        ] {
            store.insert_category(&c).await.unwrap();
        }
        assert!(matches!(
            store
                .insert_category(&category("cat_4", "alerts", true, false))
                .await,
            Err(StoreError::Conflict(_))
        ));
        let token = LinkTokenRecord {
            id: "ltk_1".into(),
            tenant_id: "ten_l".into(),
            bot_id: "bot_l".into(),
            token_hash: "h1".into(),
            token_sealed: "v1:t".into(),
            external_id: "user-a".into(),
            categories: vec!["reports".into()],
            metadata: None,
            allow_shared_chat: false,
            expires_at: 1000,
            used_at: None,
            link_id: None,
            created_at: 1,
        };
        store.insert_link_token(&token).await.unwrap();
        // Expired by `now`: nothing is written.
        assert!(
            !store
                .write_link(
                    &link("link_a", -1),
                    LinkWrite::Insert,
                    &[],
                    Some("ltk_1"),
                    1000
                )
                .await
                .unwrap()
        );
        assert!(store.get_link("link_a").await.unwrap().is_none());
        assert!(
            store
                .write_link(
                    &link("link_a", -1),
                    LinkWrite::Insert,
                    &token.categories,
                    Some("ltk_1"),
                    999
                )
                .await
                .unwrap()
        );
        // Used: a second chat cannot take it.
        assert!(
            !store
                .write_link(
                    &link("link_x", -9),
                    LinkWrite::Insert,
                    &[],
                    Some("ltk_1"),
                    999
                )
                .await
                .unwrap()
        );
        let used = store.find_link_token("h1").await.unwrap().unwrap();
        assert_eq!(used.used_at, Some(999));
        assert_eq!(used.link_id.as_deref(), Some("link_a"));
        store
            .write_link(&link("link_b", -2), LinkWrite::Insert, &[], None, 5)
            .await
            .unwrap();
        store
            .set_link_preferences(
                "link_b",
                &[("alerts".into(), false), ("critical".into(), false)],
                6,
            )
            .await
            .unwrap();

        // a: reports on (token), alerts by default; b: alerts off, critical regardless.
        assert_eq!(ids(&*store, "alerts").await, ["link_a"]);
        assert_eq!(ids(&*store, "reports").await, ["link_a"]);
        assert_eq!(ids(&*store, "critical").await, ["link_a", "link_b"]);
        assert!(ids(&*store, "nope").await.is_empty());

        let changed = store
            .set_chat_links_active("bot_l", -2, false, 7)
            .await
            .unwrap();
        assert_eq!(changed.len(), 1);
        assert!(!changed[0].active);
        assert!(
            store
                .set_chat_links_active("bot_l", -2, false, 8)
                .await
                .unwrap()
                .is_empty(),
            "only changes are returned"
        );
        assert_eq!(
            ids(&*store, "critical").await,
            ["link_a"],
            "inactive links receive nothing"
        );

        let moved = store
            .migrate_chat_links("bot_l", -1, -100, 9)
            .await
            .unwrap();
        assert_eq!(moved.len(), 1);
        let a = store
            .get_tenant_link("ten_l", "link_a")
            .await
            .unwrap()
            .unwrap();
        assert_eq!((a.chat_id, a.chat_type.as_str()), (-100, "supergroup"));
        assert!(
            store
                .get_tenant_link("ten_other", "link_a")
                .await
                .unwrap()
                .is_none()
        );

        // Deleting a category deletes its preference rows.
        assert!(store.delete_category("cat_1").await.unwrap());
        assert_eq!(
            store.link_preferences("link_b").await.unwrap(),
            [("critical".to_string(), false)]
        );
        assert!(store.delete_link("link_b").await.unwrap());
        assert!(store.link_preferences("link_b").await.unwrap().is_empty());
        store.close().await;
    }

    #[tokio::test]
    async fn links_story_on_every_engine() {
        for engine in engines() {
            let dir = tempfile::tempdir().unwrap();
            let db = fresh(engine, dir.path()).await.unwrap();
            let store = connect(&SecretString::from(db.url.clone())).await.unwrap();
            store.migrate().await.unwrap();
            links_story(store).await;
        }
    }
}
