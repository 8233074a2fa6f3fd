//! Fresh, isolated databases for tests: a SQLite file in a temporary folder, and, when
//! `RELAYGRAM_TEST_DATABASE_URL` is set, a new PostgreSQL database per call so tests can
//! run in parallel.

use std::path::{Path, PathBuf};

use sqlx::Connection;

/// The environment variable naming the PostgreSQL server used by tests.
pub const TEST_DATABASE_URL_ENV: &str = "RELAYGRAM_TEST_DATABASE_URL";

/// A database URL for tests, and where it lives. A PostgreSQL database is dropped when
/// this value is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    /// URL to pass as `database_url`.
    pub url: String,
    /// The SQLite file, when the engine is SQLite.
    pub sqlite_file: Option<PathBuf>,
    /// The server URL and database name to drop (PostgreSQL).
    drop_on_exit: Option<(String, String)>,
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((base, name)) = self.drop_on_exit.take() else {
            return;
        };
        // Drop runs inside the test's runtime; do the async work on a thread of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let mut conn = sqlx::PgConnection::connect(&base).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await?;
                conn.close().await?;
                anyhow::Ok(())
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop a test database: {e}");
        }
    }
}

/// Engines to test on: always SQLite, PostgreSQL when the variable is set.
pub fn engines() -> Vec<&'static str> {
    let mut engines = vec!["sqlite"];
    if std::env::var(TEST_DATABASE_URL_ENV).is_ok_and(|v| !v.trim().is_empty()) {
        engines.push("postgres");
    }
    engines
}

/// A URL for a fresh SQLite file inside `dir`.
pub fn sqlite_in(dir: &Path) -> TestDatabase {
    let file = dir.join("relaygram.db");
    TestDatabase {
        url: format!("sqlite:{}", file.display()),
        sqlite_file: Some(file),
        drop_on_exit: None,
    }
}

/// A fresh database of `engine` (`sqlite` in `dir`, or a new PostgreSQL database).
pub async fn fresh(engine: &str, dir: &Path) -> anyhow::Result<TestDatabase> {
    match engine {
        "sqlite" => Ok(sqlite_in(dir)),
        "postgres" => {
            let base = std::env::var(TEST_DATABASE_URL_ENV)?;
            let name = crate::ids::new_id("rgtest");
            let mut conn = sqlx::PgConnection::connect(&base).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                .execute(&mut conn)
                .await?;
            conn.close().await?;
            let mut url = reqwest::Url::parse(&base)?;
            url.set_path(&format!("/{name}"));
            Ok(TestDatabase {
                url: url.to_string(),
                sqlite_file: None,
                drop_on_exit: Some((base, name)),
            })
        }
        other => anyhow::bail!("unknown engine {other}"),
    }
}
