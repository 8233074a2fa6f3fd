//! Statements sent to the database together.
//!
//! A [`Script`] is a list of statements that run one after another on the caller's
//! connection (inside its transaction), none of them needing, in Rust, the answer of one
//! before it. SQLite runs the whole script as one text: one trip to its thread instead of one
//! per statement. Each trip costs two thread switches and a wait for the caller's task to run
//! again, and while they add up the round holds the store's one connection (BENCHMARKS.md,
//! session 6). PostgreSQL takes one statement per query with parameters, so it runs them in
//! turn.

use async_trait::async_trait;
use futures_util::TryStreamExt;
use std::ops::DerefMut;

use sqlx::postgres::{PgConnection, PgPool, PgRow, Postgres};
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{Either, Executor, Transaction};

use super::StoreResult;
use super::sql::{PgStore, SqliteStore};
use super::sqlite_db::{SqliteDb, SqliteTx};

/// A value bound to a statement's parameter: the hot path's statements take their rows
/// as one JSON text each (see `JsonRows`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Param {
    Text(String),
}

/// One statement: its text, with parameters `$1` to `$n` of its own, and their values.
#[derive(Debug)]
struct Statement {
    sql: String,
    params: Vec<Param>,
}

/// Statements to run in order; each one's rows come back in its place.
#[derive(Debug, Default)]
pub(crate) struct Script {
    statements: Vec<Statement>,
}

impl Script {
    /// Adds a statement; returns its place among the answers of [`RunScript::run_script`].
    pub(crate) fn push(&mut self, sql: impl Into<String>, params: Vec<Param>) -> usize {
        self.statements.push(Statement {
            sql: sql.into(),
            params,
        });
        self.statements.len() - 1
    }

    /// The statements as one text, their parameters numbered on from one to the next.
    fn joined(&self) -> (String, Vec<&Param>) {
        let mut sql = String::new();
        let mut params = Vec::new();
        for s in &self.statements {
            if !sql.is_empty() {
                sql.push_str(";\n");
            }
            renumber(&s.sql, params.len(), &mut sql);
            params.extend(&s.params);
        }
        (sql, params)
    }
}

/// Copies `sql` to `out` with every parameter `$n` written `$(n + offset)` (not inside
/// quoted literals or identifiers).
fn renumber(sql: &str, offset: usize, out: &mut String) {
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (None, '\'' | '"') => quote = Some(c),
            (None, '$') if chars.peek().is_some_and(char::is_ascii_digit) => {
                let mut n = 0usize;
                while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
                    n = n * 10 + d as usize;
                    chars.next();
                }
                out.push('$');
                out.push_str(&(n + offset).to_string());
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
}

/// Runs a [`Script`] on a connection of the engine.
#[async_trait]
pub(crate) trait RunScript {
    type Db;
    type Conn;
    type Tx: DerefMut<Target = Self::Conn> + Send;
    type Row;

    /// The rows of each statement, in the script's order.
    async fn run_script(conn: &mut Self::Conn, script: Script) -> StoreResult<Vec<Vec<Self::Row>>>;

    /// Begins a transaction with `script` run in it. With `last` (nothing else is to be
    /// written in it), SQLite commits it with the script: `BEGIN`, the statements and
    /// `COMMIT` in one text, one trip; the caller's commit then has nothing left to do.
    async fn begin_script(
        db: &Self::Db,
        script: Script,
        last: bool,
    ) -> StoreResult<(Self::Tx, Vec<Vec<Self::Row>>)>;
}

#[async_trait]
impl RunScript for SqliteStore {
    type Db = SqliteDb;
    type Conn = SqliteConnection;
    type Tx = SqliteTx;
    type Row = SqliteRow;

    async fn begin_script(
        db: &SqliteDb,
        script: Script,
        last: bool,
    ) -> StoreResult<(SqliteTx, Vec<Vec<SqliteRow>>)> {
        let mut tx = db.begin_raw().await?;
        let mut whole = Script::default();
        whole.push("BEGIN", vec![]);
        whole.statements.extend(script.statements);
        if last {
            whole.push("COMMIT", vec![]);
        }
        // On an error the transaction is dropped, which rolls it back.
        let mut answers = Self::run_script(&mut tx, whole).await?;
        answers.remove(0);
        if last {
            answers.pop();
            tx.ended();
        }
        Ok((tx, answers))
    }

    async fn run_script(
        conn: &mut SqliteConnection,
        script: Script,
    ) -> StoreResult<Vec<Vec<SqliteRow>>> {
        let mut answers: Vec<Vec<SqliteRow>> =
            script.statements.iter().map(|_| Vec::new()).collect();
        if answers.is_empty() {
            return Ok(answers);
        }
        let (sql, params) = script.joined();
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for p in params {
            query = match p {
                Param::Text(s) => query.bind(s.as_str()),
            };
        }
        // Each statement's rows, then its result (`Left`), in order.
        let mut at = 0;
        let mut results = conn.fetch_many(query);
        while let Some(item) = results.try_next().await? {
            match item {
                Either::Left(_) => at += 1,
                Either::Right(row) => match answers.get_mut(at) {
                    Some(rows) => rows.push(row),
                    None => {
                        return Err(super::StoreError::Corrupt(
                            "a script answered more statements than it has".into(),
                        ));
                    }
                },
            }
        }
        Ok(answers)
    }
}

#[async_trait]
impl RunScript for PgStore {
    type Db = PgPool;
    type Conn = PgConnection;
    type Tx = Transaction<'static, Postgres>;
    type Row = PgRow;

    async fn begin_script(
        db: &PgPool,
        script: Script,
        _last: bool,
    ) -> StoreResult<(Self::Tx, Vec<Vec<PgRow>>)> {
        let mut tx = db.begin().await?;
        let answers = Self::run_script(&mut tx, script).await?;
        Ok((tx, answers))
    }

    async fn run_script(conn: &mut PgConnection, script: Script) -> StoreResult<Vec<Vec<PgRow>>> {
        let mut answers = Vec::with_capacity(script.statements.len());
        for s in &script.statements {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(s.sql.as_str()));
            for p in &s.params {
                query = match p {
                    Param::Text(t) => query.bind(t.as_str()),
                };
            }
            answers.push(query.fetch_all(&mut *conn).await?);
        }
        Ok(answers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_numbered_on_across_statements() {
        let mut script = Script::default();
        let t = |s: &str| Param::Text(s.into());
        script.push("SELECT $1, $2", vec![t("1"), t("2")]);
        script.push(
            "SELECT '$1', \"$2\", $1 || 'x', $10",
            vec![Param::Text("a".into())],
        );
        let (sql, params) = script.joined();
        assert_eq!(sql, "SELECT $1, $2;\nSELECT '$1', \"$2\", $3 || 'x', $12");
        assert_eq!(params.len(), 3);
    }

    #[tokio::test]
    async fn sqlite_answers_each_statement_in_its_place() {
        use sqlx::{Connection, Row};
        let mut conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        let mut script = Script::default();
        script.push("CREATE TABLE t (a INTEGER, b TEXT)", vec![]);
        let insert = script.push(
            "INSERT INTO t VALUES ($1, $2), ($1 + 1, $2) RETURNING a",
            vec![Param::Text("1".into()), Param::Text("x".into())],
        );
        let none = script.push(
            "SELECT a FROM t WHERE b = $1",
            vec![Param::Text("y".into())],
        );
        let all = script.push("SELECT a, b FROM t ORDER BY a", vec![]);
        let answers = SqliteStore::run_script(&mut conn, script).await.unwrap();
        assert_eq!(answers.len(), 4);
        let ints = |rows: &Vec<SqliteRow>| -> Vec<i64> { rows.iter().map(|r| r.get(0)).collect() };
        assert_eq!(ints(&answers[insert]), vec![1, 2]);
        assert!(answers[none].is_empty());
        assert_eq!(ints(&answers[all]), vec![1, 2]);
        assert_eq!(answers[all][1].get::<String, _>("b"), "x");
    }

    #[tokio::test]
    async fn a_script_begun_as_the_last_commits_and_a_failed_one_rolls_back() {
        use sqlx::{Connection, Row};
        let db = SqliteDb::new(SqliteConnection::connect("sqlite::memory:").await.unwrap());
        sqlx::query("CREATE TABLE t (a INTEGER PRIMARY KEY)")
            .execute(&db)
            .await
            .unwrap();
        let insert = |a: &str| {
            let mut script = Script::default();
            script.push("INSERT INTO t VALUES ($1)", vec![Param::Text(a.into())]);
            script
        };
        let count = || async {
            sqlx::query("SELECT COUNT(*) FROM t")
                .fetch_one(&db)
                .await
                .unwrap()
                .get::<i64, _>(0)
        };
        // Committed with the script: the caller's commit has nothing left to do.
        let (tx, _) = SqliteStore::begin_script(&db, insert("1"), true)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        // Left open for more, then committed.
        let (mut tx, _) = SqliteStore::begin_script(&db, insert("2"), false)
            .await
            .unwrap();
        sqlx::query("INSERT INTO t VALUES (3)")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(count().await, 3);
        // Dropped uncommitted, and failing midway: rolled back, the connection usable again.
        let (tx, _) = SqliteStore::begin_script(&db, insert("4"), false)
            .await
            .unwrap();
        drop(tx);
        let mut failing = insert("5");
        failing.push("INSERT INTO t VALUES ($1)", vec![Param::Text("1".into())]);
        assert!(SqliteStore::begin_script(&db, failing, true).await.is_err());
        assert_eq!(count().await, 3);
        let (tx, _) = SqliteStore::begin_script(&db, insert("6"), true)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(count().await, 4);
    }

    #[tokio::test]
    async fn a_failing_statement_fails_the_script() {
        use sqlx::Connection;
        let mut conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        let mut script = Script::default();
        script.push("CREATE TABLE t (a INTEGER PRIMARY KEY)", vec![]);
        script.push("INSERT INTO t VALUES ($1)", vec![Param::Text("1".into())]);
        script.push("INSERT INTO t VALUES ($1)", vec![Param::Text("1".into())]);
        assert!(SqliteStore::run_script(&mut conn, script).await.is_err());
    }
}
