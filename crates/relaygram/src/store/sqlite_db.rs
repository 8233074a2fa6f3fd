//! The one connection of a SQLite store, shared in turn.
//!
//! SQLite has one writer at a time, so the store keeps one connection (several writing at
//! once wait on each other in SQLite's busy handler, sleeping, then failing with "database
//! is locked"). A pool of one did that too, but sqlx's pool pings a connection whenever it
//! comes back, from a task of its own, before the next caller may have it: on the hot path
//! every release cost a trip to SQLite's thread and a wait for that task to run, and the
//! inbound rounds spent a quarter of their time waiting for the connection (BENCHMARKS.md,
//! session 6). Here a fair mutex hands it on as soon as the holder is done.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};
use sqlx::sqlite::{Sqlite, SqliteConnection, SqliteQueryResult, SqliteRow, SqliteStatement};
use sqlx::{Connection, Database, Either, Execute, Executor, SqlStr};
use sqlx_core::transaction::TransactionManager;
use tokio::sync::{Mutex, OwnedMappedMutexGuard, OwnedMutexGuard};

type Manager = <Sqlite as Database>::TransactionManager;

/// A handle to the connection (cheap to clone). `&SqliteDb` runs queries like `&Pool`.
#[derive(Clone)]
pub struct SqliteDb {
    conn: Arc<Mutex<Option<SqliteConnection>>>,
}

impl fmt::Debug for SqliteDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteDb").finish_non_exhaustive()
    }
}

/// The connection while one caller has it.
pub type SqliteConn = OwnedMappedMutexGuard<Option<SqliteConnection>, SqliteConnection>;

impl SqliteDb {
    /// Wraps an open connection.
    pub fn new(conn: SqliteConnection) -> SqliteDb {
        SqliteDb {
            conn: Arc::new(Mutex::new(Some(conn))),
        }
    }

    /// Waits for the connection (callers get it in the order they asked).
    pub async fn acquire(&self) -> Result<SqliteConn, sqlx::Error> {
        OwnedMutexGuard::try_map(self.conn.clone().lock_owned().await, Option::as_mut)
            .map_err(|_| sqlx::Error::PoolClosed)
    }

    /// Starts a transaction on the connection, which stays taken until it ends.
    pub async fn begin(&self) -> Result<SqliteTx, sqlx::Error> {
        let mut conn = self.acquire().await?;
        Manager::begin(&mut conn, None).await?;
        Ok(SqliteTx {
            conn: Some(conn),
            state: TxState::Managed,
        })
    }

    /// A transaction begun by a `BEGIN` the caller sends itself, with more statements, in
    /// one text (sqlx's transactions take a trip of their own): it ends with the caller's
    /// `COMMIT` in a text, or [`SqliteTx::commit`], or a `ROLLBACK` when dropped.
    pub(super) async fn begin_raw(&self) -> Result<SqliteTx, sqlx::Error> {
        Ok(SqliteTx {
            conn: Some(self.acquire().await?),
            state: TxState::Raw,
        })
    }

    /// Closes the connection once its holder is done; later calls fail as on a closed pool.
    pub async fn close(&self) {
        if let Some(conn) = self.conn.lock().await.take()
            && let Err(e) = conn.close().await
        {
            tracing::warn!(error = %e, "could not close the SQLite connection cleanly");
        }
    }
}

/// How a [`SqliteTx`] ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxState {
    /// Begun by sqlx's transaction manager.
    Managed,
    /// Begun by a `BEGIN` in the caller's text.
    Raw,
    /// Committed or rolled back.
    Ended,
}

/// A transaction: rolled back when dropped without [`SqliteTx::commit`].
pub struct SqliteTx {
    /// Always there until dropped.
    conn: Option<SqliteConn>,
    state: TxState,
}

impl SqliteTx {
    fn conn(&mut self) -> &mut SqliteConn {
        self.conn
            .as_mut()
            .expect("a transaction has its connection until dropped")
    }

    /// Commits, then hands the connection on.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.end(true).await
    }

    /// Rolls back, then hands the connection on.
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.end(false).await
    }

    async fn end(mut self, commit: bool) -> Result<(), sqlx::Error> {
        match (self.state, commit) {
            (TxState::Managed, true) => Manager::commit(self.conn()).await?,
            (TxState::Managed, false) => Manager::rollback(self.conn()).await?,
            (TxState::Raw, _) => {
                let sql = if commit { "COMMIT" } else { "ROLLBACK" };
                sqlx::query(sql).execute(&mut **self.conn()).await?;
            }
            (TxState::Ended, _) => {}
        }
        self.state = TxState::Ended;
        Ok(())
    }

    /// Marks a raw transaction ended by the caller's own `COMMIT`.
    pub(super) fn ended(&mut self) {
        self.state = TxState::Ended;
    }
}

impl Drop for SqliteTx {
    fn drop(&mut self) {
        match self.state {
            // Queued on the connection, so it runs before the next holder's statements.
            TxState::Managed => Manager::start_rollback(self.conn()),
            // The connection goes to a task that rolls back first (without a runtime the
            // process is ending, and SQLite rolls back what was not committed).
            TxState::Raw => {
                if let (Some(mut conn), Ok(runtime)) =
                    (self.conn.take(), tokio::runtime::Handle::try_current())
                {
                    runtime.spawn(async move {
                        if let Err(e) = sqlx::query("ROLLBACK").execute(&mut *conn).await {
                            tracing::warn!(error = %e, "could not roll back an unfinished transaction");
                        }
                    });
                }
            }
            TxState::Ended => {}
        }
    }
}

impl Deref for SqliteTx {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        self.conn
            .as_ref()
            .expect("a transaction has its connection until dropped")
    }
}

impl DerefMut for SqliteTx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        self.conn()
    }
}

impl fmt::Debug for SqliteTx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteTx")
            .field("state", &self.state)
            .finish()
    }
}

impl<'p> Executor<'p> for &'_ SqliteDb {
    type Database = Sqlite;

    // The rows are gathered while the connection is held, then streamed: every caller
    // collects them anyway, and the connection is free again sooner.
    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<SqliteQueryResult, SqliteRow>, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Sqlite>,
    {
        let db = self.clone();
        stream::once(async move {
            let mut conn = db.acquire().await?;
            conn.fetch_many(query).try_collect::<Vec<_>>().await
        })
        .map_ok(|results| stream::iter(results.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<SqliteRow>, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Sqlite>,
    {
        let db = self.clone();
        Box::pin(async move {
            let mut conn = db.acquire().await?;
            conn.fetch_optional(query).await
        })
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [<Sqlite as Database>::TypeInfo],
    ) -> BoxFuture<'e, Result<SqliteStatement, sqlx::Error>>
    where
        'p: 'e,
    {
        let db = self.clone();
        Box::pin(async move { db.acquire().await?.prepare_with(sql, parameters).await })
    }
}
