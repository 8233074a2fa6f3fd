//! The SQL implementation, generated for both engines from the same statements.

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteRow, SqliteSynchronous};
use sqlx::{Connection, Row, SqlSafeStr};

use super::batch::GroupCommit;
use super::cache::{BotCache, Cache};
use super::checkpoints::Checkpoints;
use super::records::CustomCommand;
use super::records::{Answer as InboundAnswer, Op as InboundOp};
use super::sqlite_db::SqliteDb;
use super::update_queue::{self, UpdateQueue};
use super::{
    ApiKeyRecord, BotFilter, BotMode, BotRecord, BuiltinCommand, ChatRecord, KeyOwner, KeyScope,
    Listed, NewEvent, Page, Store, StoreError, StoreResult, Tenant,
};

/// One embedded migration: version, name, SQL.
type Embedded = (i64, &'static str, &'static str);

/// Migrations per engine, in order. Add new ones at the end with the next version.
const SQLITE_MIGRATIONS: &[Embedded] = &[
    (
        1,
        "init",
        include_str!("../../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "inbound",
        include_str!("../../migrations/sqlite/0002_inbound.sql"),
    ),
    (
        3,
        "events",
        include_str!("../../migrations/sqlite/0003_events.sql"),
    ),
    (
        4,
        "commands",
        include_str!("../../migrations/sqlite/0004_commands.sql"),
    ),
    (
        5,
        "linking",
        include_str!("../../migrations/sqlite/0005_linking.sql"),
    ),
    (
        6,
        "templates",
        include_str!("../../migrations/sqlite/0006_templates.sql"),
    ),
    (
        7,
        "outbox",
        include_str!("../../migrations/sqlite/0007_outbox.sql"),
    ),
    (
        8,
        "schedules",
        include_str!("../../migrations/sqlite/0008_schedules.sql"),
    ),
    (
        9,
        "poll_leases",
        include_str!("../../migrations/sqlite/0009_poll_leases.sql"),
    ),
    (
        11,
        "digests",
        include_str!("../../migrations/sqlite/0011_digests.sql"),
    ),
    (
        12,
        "idempotency_request",
        include_str!("../../migrations/sqlite/0012_idempotency_request.sql"),
    ),
    (
        13,
        "local_send",
        include_str!("../../migrations/sqlite/0013_local_send.sql"),
    ),
    (
        14,
        "owned_updates",
        include_str!("../../migrations/sqlite/0014_owned_updates.sql"),
    ),
    (
        15,
        "reply_origin",
        include_str!("../../migrations/sqlite/0015_reply_origin.sql"),
    ),
    (
        16,
        "message_reporting",
        include_str!("../../migrations/sqlite/0016_message_reporting.sql"),
    ),
    (
        17,
        "inbound_events",
        include_str!("../../migrations/sqlite/0017_inbound_events.sql"),
    ),
    (
        18,
        "message_edits",
        include_str!("../../migrations/sqlite/0018_message_edits.sql"),
    ),
    (
        19,
        "personal_content",
        include_str!("../../migrations/sqlite/0019_personal_content.sql"),
    ),
    (
        20,
        "bot_texts",
        include_str!("../../migrations/sqlite/0020_bot_texts.sql"),
    ),
    (
        21,
        "memberships",
        include_str!("../../migrations/sqlite/0021_memberships.sql"),
    ),
    (
        22,
        "gate_tokens",
        include_str!("../../migrations/sqlite/0022_gate_tokens.sql"),
    ),
];
const POSTGRES_MIGRATIONS: &[Embedded] = &[
    (
        1,
        "init",
        include_str!("../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "inbound",
        include_str!("../../migrations/postgres/0002_inbound.sql"),
    ),
    (
        3,
        "events",
        include_str!("../../migrations/postgres/0003_events.sql"),
    ),
    (
        4,
        "commands",
        include_str!("../../migrations/postgres/0004_commands.sql"),
    ),
    (
        5,
        "linking",
        include_str!("../../migrations/postgres/0005_linking.sql"),
    ),
    (
        6,
        "templates",
        include_str!("../../migrations/postgres/0006_templates.sql"),
    ),
    (
        7,
        "outbox",
        include_str!("../../migrations/postgres/0007_outbox.sql"),
    ),
    (
        8,
        "schedules",
        include_str!("../../migrations/postgres/0008_schedules.sql"),
    ),
    (
        9,
        "poll_leases",
        include_str!("../../migrations/postgres/0009_poll_leases.sql"),
    ),
    (
        11,
        "digests",
        include_str!("../../migrations/postgres/0011_digests.sql"),
    ),
    (
        12,
        "idempotency_request",
        include_str!("../../migrations/postgres/0012_idempotency_request.sql"),
    ),
    (
        13,
        "local_send",
        include_str!("../../migrations/postgres/0013_local_send.sql"),
    ),
    (
        15,
        "reply_origin",
        include_str!("../../migrations/postgres/0015_reply_origin.sql"),
    ),
    (
        16,
        "message_reporting",
        include_str!("../../migrations/postgres/0016_message_reporting.sql"),
    ),
    (
        17,
        "inbound_events",
        include_str!("../../migrations/postgres/0017_inbound_events.sql"),
    ),
    (
        18,
        "message_edits",
        include_str!("../../migrations/postgres/0018_message_edits.sql"),
    ),
    (
        19,
        "personal_content",
        include_str!("../../migrations/postgres/0019_personal_content.sql"),
    ),
    (
        20,
        "bot_texts",
        include_str!("../../migrations/postgres/0020_bot_texts.sql"),
    ),
    (
        21,
        "memberships",
        include_str!("../../migrations/postgres/0021_memberships.sql"),
    ),
    (
        22,
        "gate_tokens",
        include_str!("../../migrations/postgres/0022_gate_tokens.sql"),
    ),
];

fn migrator(migrations: &'static [Embedded]) -> Migrator {
    Migrator::with_migrations(
        migrations
            .iter()
            .map(|(version, name, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*name),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

/// What keeps the inbound path fast, per store: group-commit queues for the writes every
/// update makes, and caches of what every update reads.
#[derive(Debug)]
pub(super) struct Hot {
    /// `get_bot`.
    pub(super) bots: BotCache<BotRecord>,
    /// `list_bot_commands`.
    pub(super) commands: BotCache<Vec<CustomCommand>>,
    /// `list_bot_texts`.
    pub(super) texts: BotCache<Vec<super::BotTextRecord>>,
    /// `insert_update`, `finish_update` and `get_chat`: one queue, written in rounds.
    pub(super) inbound: OnceLock<GroupCommit<InboundOp, InboundAnswer>>,
    /// `insert_event`.
    pub(super) events: OnceLock<GroupCommit<NewEvent, super::StoredEvent>>,
    /// `upsert_chat`.
    pub(super) chat_writes: OnceLock<GroupCommit<ChatRecord, ()>>,
    /// Updates waiting for processing, in memory (SQLite: one server per database), or
    /// `None` where servers share the database and claim with statements (PostgreSQL).
    pub(super) updates: Option<Arc<UpdateQueue>>,
    /// `get_chat`, used while this process owns the store's updates (and so is the only
    /// one writing chats). Every chat write forgets the chats it wrote.
    pub(super) chats: Arc<ChatCache>,
}

/// Chats by bot and chat id (`None`: not known).
pub(super) type ChatCache = Cache<(String, i64), Option<ChatRecord>>;

/// Chats kept at most (then the cache starts over).
const CHAT_CACHE_CAPACITY: usize = 100_000;

impl Default for Hot {
    fn default() -> Self {
        Hot {
            bots: BotCache::default(),
            commands: BotCache::default(),
            texts: BotCache::default(),
            inbound: OnceLock::new(),
            events: OnceLock::new(),
            chat_writes: OnceLock::new(),
            updates: None,
            chats: Arc::new(Cache::new(None, CHAT_CACHE_CAPACITY)),
        }
    }
}

impl Hot {
    /// The chat cache, when this process owns the store's updates.
    pub(super) fn owned_chats(&self) -> Option<&ChatCache> {
        self.updates
            .as_ref()
            .filter(|q| q.owned())
            .map(|_| self.chats.as_ref())
    }
}

/// What each engine's store runs its queries on, named by its row type (for the code
/// generated for both engines).
pub(super) trait Engine {
    type Db;
}

impl Engine for SqliteRow {
    type Db = SqliteDb;
}

impl Engine for PgRow {
    type Db = PgPool;
}

/// SQLite store (WAL mode, foreign keys on).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(super) db: SqliteDb,
    pub(super) hot: Arc<Hot>,
    /// Checkpoints in the background while this server owns the database (a file).
    pub(super) checkpoints: Arc<Background>,
}

/// The background checkpoints of a SQLite store: how to open their connection (`None` for
/// an in-memory database, which has no log), and the checkpointer while it runs.
#[derive(Debug, Default)]
pub(super) struct Background {
    options: Option<SqliteConnectOptions>,
    running: tokio::sync::Mutex<Option<Checkpoints>>,
}

impl SqliteStore {
    /// Starts the background checkpoints (once).
    pub(super) async fn start_background(&self) -> StoreResult<()> {
        let mut running = self.checkpoints.running.lock().await;
        if let (None, Some(options)) = (running.as_ref(), &self.checkpoints.options) {
            *running = Some(Checkpoints::start(&self.db, options).await?);
        }
        Ok(())
    }

    /// Stops them.
    async fn stop_background(&self) {
        if let Some(running) = self.checkpoints.running.lock().await.take() {
            running.stop(&self.db).await;
        }
    }
}

impl PgStore {
    /// PostgreSQL checkpoints on its own.
    pub(super) async fn start_background(&self) -> StoreResult<()> {
        Ok(())
    }

    async fn stop_background(&self) {}
}

impl SqliteStore {
    /// Opens (creating when missing) the database file named by a `sqlite:` URL.
    pub async fn connect(url: &str) -> StoreResult<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
            // Room for every statement text the store uses, the inbound round's scripts
            // (one per mix of kinds in a round) among them: sqlx's default of 100 would
            // have some prepared again and again.
            .statement_cache_capacity(1000);
        let file = options.get_filename();
        if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty())
            && !url.contains(":memory:")
        {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Setup(format!("cannot create folder {}: {e}", parent.display()))
            })?;
        }
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let db_file = (!in_memory).then(|| file.to_path_buf());
        // One connection for everything (see `sqlite_db`); an in-memory database lives as
        // long as it does.
        let db = SqliteDb::new(sqlx::SqliteConnection::connect_with(&options).await?);
        let queue = UpdateQueue::new(db_file, update_queue::CAPACITY);
        Ok(SqliteStore {
            db,
            checkpoints: Arc::new(Background {
                options: (!in_memory).then_some(options),
                running: Default::default(),
            }),
            hot: Arc::new(Hot {
                updates: Some(Arc::new(queue)),
                ..Hot::default()
            }),
        })
    }
}

/// PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgStore {
    pub(super) db: PgPool,
    pub(super) hot: Arc<Hot>,
}

impl PgStore {
    /// Connects to a `postgres://` URL.
    pub async fn connect(url: &str, acquire_timeout: Duration) -> StoreResult<PgStore> {
        let db = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(acquire_timeout)
            .connect(url)
            .await?;
        Ok(PgStore {
            db,
            hot: Arc::default(),
        })
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

const TENANT_COLS: &str = "id, name, created_at";
const KEY_COLS: &str = "id, tenant_id, scope, name, prefix, hash, created_at, revoked_at";
const BOT_COLS: &str = "id, tenant_id, telegram_id, username, first_name, token_sealed, \
     webhook_secret_sealed, webhook_url, mode, enabled, created_at, updated_at, allowed_updates, \
     builtins_off";

/// `bots.builtins_off`: a JSON array of command names, NULL when every built-in is on.
fn builtins_off_json(off: &[BuiltinCommand]) -> Option<String> {
    (!off.is_empty()).then(|| {
        serde_json::Value::from(off.iter().map(|c| c.as_str()).collect::<Vec<_>>()).to_string()
    })
}

fn builtins_off(stored: Option<String>) -> StoreResult<Vec<BuiltinCommand>> {
    let Some(stored) = stored else {
        return Ok(Vec::new());
    };
    let names: Vec<String> = serde_json::from_str(&stored)
        .map_err(|e| StoreError::Corrupt(format!("bots.builtins_off: {e}")))?;
    names
        .iter()
        .map(|n| {
            n.parse()
                .map_err(|e| StoreError::Corrupt(format!("bots.builtins_off: {e}")))
        })
        .collect()
}

macro_rules! sql_store {
    ($store:ty, $row:ty, $engine:literal, $migrations:expr) => {
        impl $store {
            fn tenant(row: &$row) -> StoreResult<Tenant> {
                Ok(Tenant {
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    created_at: row.try_get("created_at")?,
                })
            }

            fn key(row: &$row) -> StoreResult<ApiKeyRecord> {
                Ok(ApiKeyRecord {
                    id: row.try_get("id")?,
                    tenant_id: row.try_get("tenant_id")?,
                    scope: KeyScope::from_str(row.try_get::<&str, _>("scope")?)?,
                    name: row.try_get("name")?,
                    prefix: row.try_get("prefix")?,
                    hash: row.try_get("hash")?,
                    created_at: row.try_get("created_at")?,
                    revoked_at: row.try_get("revoked_at")?,
                })
            }

            fn bot(row: &$row) -> StoreResult<BotRecord> {
                Ok(BotRecord {
                    id: row.try_get("id")?,
                    tenant_id: row.try_get("tenant_id")?,
                    telegram_id: row.try_get("telegram_id")?,
                    username: row.try_get("username")?,
                    first_name: row.try_get("first_name")?,
                    token_sealed: row.try_get("token_sealed")?,
                    webhook_secret_sealed: row.try_get("webhook_secret_sealed")?,
                    webhook_url: row.try_get("webhook_url")?,
                    mode: BotMode::from_str(row.try_get::<&str, _>("mode")?)?,
                    enabled: row.try_get("enabled")?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                    allowed_updates: row
                        .try_get::<Option<String>, _>("allowed_updates")?
                        .map(|a| serde_json::from_str(&a))
                        .transpose()
                        .map_err(|e| StoreError::Corrupt(format!("bots.allowed_updates: {e}")))?,
                    builtins_off: builtins_off(row.try_get("builtins_off")?)?,
                })
            }
        }

        #[async_trait]
        impl Store for $store {
            fn engine(&self) -> &'static str {
                $engine
            }

            async fn migrate(&self) -> StoreResult<()> {
                let mut conn = self.db.acquire().await?;
                migrator($migrations).run_direct(None, &mut *conn, false).await?;
                Ok(())
            }

            async fn ping(&self) -> StoreResult<()> {
                sqlx::query("SELECT 1").execute(&self.db).await?;
                Ok(())
            }

            async fn close(&self) {
                self.stop_background().await;
                self.db.close().await;
                if let Some(queue) = &self.hot.updates {
                    queue.disown();
                }
            }

            async fn get_meta(&self, name: &str) -> StoreResult<Option<String>> {
                let row = sqlx::query("SELECT value FROM meta WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&self.db)
                    .await?;
                Ok(row.map(|r| r.try_get("value")).transpose()?)
            }

            async fn put_meta_if_absent(&self, name: &str, value: &str) -> StoreResult<String> {
                sqlx::query(
                    "INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                )
                .bind(name)
                .bind(value)
                .execute(&self.db)
                .await?;
                self.get_meta(name)
                    .await?
                    .ok_or_else(|| StoreError::Corrupt(format!("meta {name} vanished")))
            }

            async fn insert_tenant(&self, t: &Tenant) -> StoreResult<()> {
                sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)")
                    .bind(&t.id)
                    .bind(&t.name)
                    .bind(t.created_at)
                    .execute(&self.db)
                    .await?;
                Ok(())
            }

            async fn get_tenant(&self, id: &str) -> StoreResult<Option<Tenant>> {
                let sql = format!("SELECT {TENANT_COLS} FROM tenants WHERE id = $1");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .fetch_optional(&self.db)
                    .await?
                    .as_ref()
                    .map(Self::tenant)
                    .transpose()
            }

            async fn list_tenants(
                &self,
                only: Option<&str>,
                page: &Page,
            ) -> StoreResult<Listed<Tenant>> {
                let sql = format!(
                    "SELECT {TENANT_COLS} FROM tenants \
                     WHERE ($1 IS NULL OR id = $1) AND ($2 IS NULL OR id > $2) \
                     ORDER BY id LIMIT $3"
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(only)
                    .bind(page.after.as_deref())
                    .bind(i64::from(page.size()) + 1)
                    .fetch_all(&self.db)
                    .await?;
                let items = rows.iter().map(Self::tenant).collect::<StoreResult<Vec<_>>>()?;
                Ok(Listed::from_overfetch(items, page, |t| &t.id))
            }

            async fn insert_api_key(&self, k: &ApiKeyRecord) -> StoreResult<()> {
                let result = sqlx::query(
                    "INSERT INTO api_keys \
                     (id, tenant_id, scope, name, prefix, hash, created_at, revoked_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&k.id)
                .bind(k.tenant_id.as_deref())
                .bind(k.scope.as_str())
                .bind(&k.name)
                .bind(&k.prefix)
                .bind(&k.hash)
                .bind(k.created_at)
                .bind(k.revoked_at)
                .execute(&self.db)
                .await;
                match result {
                    Ok(_) => Ok(()),
                    Err(e) if is_unique_violation(&e) => {
                        Err(StoreError::Conflict("this API key already exists".into()))
                    }
                    Err(e) => Err(e.into()),
                }
            }

            async fn get_api_key(&self, id: &str) -> StoreResult<Option<ApiKeyRecord>> {
                let sql = format!("SELECT {KEY_COLS} FROM api_keys WHERE id = $1");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .fetch_optional(&self.db)
                    .await?
                    .as_ref()
                    .map(Self::key)
                    .transpose()
            }

            async fn find_api_keys_by_prefix(
                &self,
                prefix: &str,
            ) -> StoreResult<Vec<ApiKeyRecord>> {
                let sql = format!("SELECT {KEY_COLS} FROM api_keys WHERE prefix = $1 LIMIT 16");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(prefix)
                    .fetch_all(&self.db)
                    .await?
                    .iter()
                    .map(Self::key)
                    .collect()
            }

            async fn find_api_key_by_hash(&self, hash: &str) -> StoreResult<Option<ApiKeyRecord>> {
                let sql = format!("SELECT {KEY_COLS} FROM api_keys WHERE hash = $1");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(hash)
                    .fetch_optional(&self.db)
                    .await?
                    .as_ref()
                    .map(Self::key)
                    .transpose()
            }

            async fn list_api_keys(
                &self,
                owner: KeyOwner<'_>,
                page: &Page,
            ) -> StoreResult<Listed<ApiKeyRecord>> {
                let (scope, tenant) = match owner {
                    KeyOwner::Admin => ("admin", None),
                    KeyOwner::Tenant(t) => ("tenant", Some(t)),
                };
                let sql = format!(
                    "SELECT {KEY_COLS} FROM api_keys \
                     WHERE scope = $1 AND tenant_id IS NOT DISTINCT FROM $2 \
                     AND ($3 IS NULL OR id > $3) ORDER BY id LIMIT $4"
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(scope)
                    .bind(tenant)
                    .bind(page.after.as_deref())
                    .bind(i64::from(page.size()) + 1)
                    .fetch_all(&self.db)
                    .await?;
                let items = rows.iter().map(Self::key).collect::<StoreResult<Vec<_>>>()?;
                Ok(Listed::from_overfetch(items, page, |k| &k.id))
            }

            async fn revoke_api_key(&self, id: &str, at: i64) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                )
                .bind(id)
                .bind(at)
                .execute(&self.db)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn count_active_admin_keys(&self) -> StoreResult<i64> {
                let row = sqlx::query(
                    "SELECT COUNT(*) AS n FROM api_keys WHERE scope = 'admin' AND revoked_at IS NULL",
                )
                .fetch_one(&self.db)
                .await?;
                Ok(row.try_get("n")?)
            }

            async fn insert_bot(&self, b: &BotRecord) -> StoreResult<()> {
                let sql = format!(
                    "INSERT INTO bots ({BOT_COLS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
                );
                let allowed = b
                    .allowed_updates
                    .as_ref()
                    .map(|a| serde_json::Value::from(a.clone()).to_string());
                let result = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(&b.id)
                    .bind(&b.tenant_id)
                    .bind(b.telegram_id)
                    .bind(&b.username)
                    .bind(&b.first_name)
                    .bind(&b.token_sealed)
                    .bind(b.webhook_secret_sealed.as_deref())
                    .bind(b.webhook_url.as_deref())
                    .bind(b.mode.as_str())
                    .bind(b.enabled)
                    .bind(b.created_at)
                    .bind(b.updated_at)
                    .bind(allowed)
                    .bind(builtins_off_json(&b.builtins_off))
                    .execute(&self.db)
                    .await;
                match result {
                    Ok(_) => Ok(()),
                    Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                        "bot @{} is already registered",
                        b.username
                    ))),
                    Err(e) => Err(e.into()),
                }
            }

            async fn get_bot(&self, id: &str) -> StoreResult<Option<BotRecord>> {
                // Read on every inbound update (webhook check, router): cached briefly.
                if let Some(bot) = self.hot.bots.get(id) {
                    return Ok(Some(bot));
                }
                let ticket = self.hot.bots.ticket();
                let sql = format!("SELECT {BOT_COLS} FROM bots WHERE id = $1");
                let bot = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .fetch_optional(&self.db)
                    .await?
                    .as_ref()
                    .map(Self::bot)
                    .transpose()?;
                if let Some(b) = &bot {
                    self.hot.bots.put(ticket, id, b.clone());
                }
                Ok(bot)
            }

            async fn get_bot_by_telegram_id(
                &self,
                telegram_id: i64,
            ) -> StoreResult<Option<BotRecord>> {
                let sql = format!("SELECT {BOT_COLS} FROM bots WHERE telegram_id = $1");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(telegram_id)
                    .fetch_optional(&self.db)
                    .await?
                    .as_ref()
                    .map(Self::bot)
                    .transpose()
            }

            async fn list_bots(
                &self,
                filter: &BotFilter,
                page: &Page,
            ) -> StoreResult<Listed<BotRecord>> {
                let sql = format!(
                    "SELECT {BOT_COLS} FROM bots \
                     WHERE ($1 IS NULL OR tenant_id = $1) AND ($2 IS NULL OR enabled = $2) \
                     AND ($3 IS NULL OR mode = $3) AND ($4 IS NULL OR id > $4) \
                     ORDER BY id LIMIT $5"
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(filter.tenant_id.as_deref())
                    .bind(filter.enabled)
                    .bind(filter.mode.map(BotMode::as_str))
                    .bind(page.after.as_deref())
                    .bind(i64::from(page.size()) + 1)
                    .fetch_all(&self.db)
                    .await?;
                let items = rows.iter().map(Self::bot).collect::<StoreResult<Vec<_>>>()?;
                Ok(Listed::from_overfetch(items, page, |b| &b.id))
            }

            async fn set_bot_enabled(&self, id: &str, enabled: bool, at: i64) -> StoreResult<bool> {
                let done =
                    sqlx::query("UPDATE bots SET enabled = $2, updated_at = $3 WHERE id = $1")
                        .bind(id)
                        .bind(enabled)
                        .bind(at)
                        .execute(&self.db)
                        .await;
                // After the write: a read racing it cannot cache the old row (see cache.rs).
                self.hot.bots.forget(id);
                Ok(done?.rows_affected() == 1)
            }

            async fn set_bot_allowed_updates(
                &self,
                id: &str,
                allowed: Option<&[String]>,
                at: i64,
            ) -> StoreResult<bool> {
                let allowed = allowed.map(|a| serde_json::Value::from(a.to_vec()).to_string());
                let done = sqlx::query(
                    "UPDATE bots SET allowed_updates = $2, updated_at = $3 WHERE id = $1",
                )
                .bind(id)
                .bind(allowed)
                .bind(at)
                .execute(&self.db)
                .await;
                self.hot.bots.forget(id);
                Ok(done?.rows_affected() == 1)
            }

            async fn set_bot_builtins_off(
                &self,
                id: &str,
                off: &[BuiltinCommand],
                at: i64,
            ) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE bots SET builtins_off = $2, updated_at = $3 WHERE id = $1",
                )
                .bind(id)
                .bind(builtins_off_json(off))
                .bind(at)
                .execute(&self.db)
                .await;
                self.hot.bots.forget(id);
                Ok(done?.rows_affected() == 1)
            }

            async fn set_bot_webhook(
                &self,
                id: &str,
                mode: BotMode,
                webhook_url: Option<&str>,
                webhook_secret_sealed: Option<&str>,
                at: i64,
            ) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE bots SET mode = $2, webhook_url = $3, webhook_secret_sealed = $4, \
                     updated_at = $5 WHERE id = $1",
                )
                .bind(id)
                .bind(mode.as_str())
                .bind(webhook_url)
                .bind(webhook_secret_sealed)
                .bind(at)
                .execute(&self.db)
                .await;
                self.hot.bots.forget(id);
                Ok(done?.rows_affected() == 1)
            }

            async fn delete_bot(&self, id: &str) -> StoreResult<bool> {
                let done = sqlx::query("DELETE FROM bots WHERE id = $1")
                    .bind(id)
                    .execute(&self.db)
                    .await;
                self.hot.bots.forget(id);
                self.hot.commands.forget(id);
                self.hot.texts.forget(id);
                Ok(done?.rows_affected() == 1)
            }
        }
    };
}

sql_store!(SqliteStore, SqliteRow, "sqlite", SQLITE_MIGRATIONS);
sql_store!(PgStore, PgRow, "postgres", POSTGRES_MIGRATIONS);

/// A column of a row set passed as one JSON array of arrays (see [`JsonRows`]).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Col {
    /// Text (or NULL).
    Text(&'static str),
    /// A 64-bit integer (or NULL).
    Int(&'static str),
}

/// Many rows in one statement: the rows travel as one JSON array of arrays bound to one
/// parameter, and this reads them back as a table, element `i` as column `i`. A statement
/// per row costs a round trip each; multi-row VALUES with thousands of parameters spends
/// its time binding them.
pub(crate) trait JsonRows {
    /// `SELECT <cols> FROM <the array bound at param>`.
    fn json_rows(param: &str, cols: &[Col]) -> String;

    /// `INSERT INTO <table> (<cols>)` the rows of the array bound at `$1`.
    fn json_insert(table: &str, cols: &[Col]) -> String {
        let names: Vec<&str> = cols.iter().map(Col::name).collect();
        let names = names.join(", ");
        format!(
            "INSERT INTO {table} ({names}) SELECT {names} FROM ({}) AS r",
            Self::json_rows("$1", cols)
        )
    }
}

/// `rows` as one JSON array of arrays (each row a tuple), the parameter of a [`JsonRows`]
/// statement.
pub(crate) fn json_array<R: serde::Serialize>(rows: impl IntoIterator<Item = R>) -> String {
    let rows: Vec<R> = rows.into_iter().collect();
    serde_json::to_string(&rows).expect("rows of strings and integers serialize")
}

impl Col {
    fn name(&self) -> &'static str {
        match self {
            Col::Text(name) | Col::Int(name) => name,
        }
    }
}

impl JsonRows for SqliteStore {
    // `jsonb_each`, not `json_each`: its rows come out as binary JSON, which `->>` reads as
    // is; `json_each` hands each row out as text that every `->>` parses again (8% of the
    // SQLite thread with replies, see BENCHMARKS.md).
    fn json_rows(param: &str, cols: &[Col]) -> String {
        let cols: Vec<String> = cols
            .iter()
            .enumerate()
            .map(|(i, c)| match c {
                Col::Text(name) | Col::Int(name) => format!("value ->> {i} AS {name}"),
            })
            .collect();
        format!("SELECT {} FROM jsonb_each({param})", cols.join(", "))
    }
}

impl JsonRows for PgStore {
    fn json_rows(param: &str, cols: &[Col]) -> String {
        let cols: Vec<String> = cols
            .iter()
            .enumerate()
            .map(|(i, c)| match c {
                Col::Text(name) => format!("v ->> {i} AS {name}"),
                Col::Int(name) => format!("CAST(v ->> {i} AS BIGINT) AS {name}"),
            })
            .collect();
        format!(
            "SELECT {} FROM jsonb_array_elements(CAST({param} AS TEXT)::jsonb) AS v",
            cols.join(", ")
        )
    }
}
