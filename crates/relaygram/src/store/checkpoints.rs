//! WAL checkpoints in the background, for the SQLite database this server owns.
//!
//! By default SQLite copies the write-ahead log back into the database file inside the
//! commit that takes the log past 1,000 pages, with a sync before and after. On the store's
//! one connection every caller waits for that copy, and the inbound rounds (which write tens
//! of pages each) crossed the mark every few rounds (BENCHMARKS.md, session 6). The server
//! that owns the database turns that off and checkpoints from a second connection instead,
//! `PASSIVE`ly: a checkpoint never waits for the writer and the writer never waits for it.
//! The log starts over once a checkpoint has copied all of it.

use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, Row};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::StoreResult;
use super::sqlite_db::SqliteDb;

/// How often the log is copied back.
const EVERY: Duration = Duration::from_millis(50);

/// The running checkpointer; [`Checkpoints::stop`] ends it.
#[derive(Debug)]
pub(super) struct Checkpoints {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Checkpoints {
    /// Turns off the checkpoints in `db`'s commits and starts checkpointing from a
    /// connection of its own (opened with `options`).
    pub(super) async fn start(
        db: &SqliteDb,
        options: &SqliteConnectOptions,
    ) -> StoreResult<Checkpoints> {
        let mut conn = SqliteConnection::connect_with(options).await?;
        sqlx::query("PRAGMA wal_autocheckpoint = 0")
            .execute(db)
            .await?;
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.changed() => break,
                }
                if let Err(e) = checkpoint(&mut conn).await {
                    tracing::warn!(error = %e, "WAL checkpoint failed");
                }
            }
            let _ = conn.close().await;
        });
        Ok(Checkpoints { stop, task })
    }

    /// Stops checkpointing (closing its connection), and turns the checkpoints in `db`'s
    /// commits back on.
    pub(super) async fn stop(self, db: &SqliteDb) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        if let Err(e) = sqlx::query("PRAGMA wal_autocheckpoint = 1000")
            .execute(db)
            .await
        {
            tracing::debug!(error = %e, "could not turn automatic checkpoints back on");
        }
    }
}

/// One passive checkpoint; logs when the log could not be copied in full.
async fn checkpoint(conn: &mut SqliteConnection) -> StoreResult<()> {
    let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(&mut *conn)
        .await?;
    let (log, copied): (i64, i64) = (row.try_get(1)?, row.try_get(2)?);
    if log > 100_000 {
        tracing::warn!(
            pages = log,
            copied,
            "the write-ahead log is large; checkpoints are behind"
        );
    }
    Ok(())
}
