//! Starting the app, and small HTTP helpers.

use relaygram::config::{Config, SendLimits};
use relaygram::server::{self, RunningServer};
use relaygram::store::testing;
use relaygram_sandbox::{Limits, Sandbox, SandboxConfig};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::conformance::{self, Violations};

/// Public URL used by tests that need webhook mode. Never contacted: the sandbox only
/// delivers when there are updates, and these tests create none.
pub const PUBLIC_URL: &str = "https://relaygram.example.com";

/// How much faster than Telegram's the sandbox's limits (and relaygram's) run in tests.
pub const TIME_SCALE: f64 = 10.0;

/// Engines every suite runs on.
pub fn engines() -> Vec<&'static str> {
    testing::engines()
}

/// A started server with its sandbox and store.
pub struct TestApp {
    pub server: RunningServer,
    pub sandbox: Sandbox,
    pub http: reqwest::Client,
    pub admin_key: String,
    config: Config,
    /// Answers that contradicted the OpenAPI document (see [`crate::conformance`]).
    pub violations: Violations,
    /// Keeps the database (dropped with it on PostgreSQL) alive for the test's duration.
    _db: testing::TestDatabase,
    /// Keeps the SQLite file and data folder alive for the test's duration.
    _dir: tempfile::TempDir,
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Answer {
    /// Asserts an RFC 9457 problem with this status and type slug.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, slug: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        let ct = self
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert_eq!(ct, "application/problem+json", "body: {}", self.text);
        assert_eq!(
            self.body["type"],
            format!("urn:relaygram:problem:{slug}"),
            "body: {}",
            self.text
        );
        assert_eq!(self.body["status"], status);
        assert!(self.body["title"].is_string());
        assert!(
            self.body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "problem needs a detail: {}",
            self.text
        );
        assert!(
            self.headers.contains_key("x-request-id"),
            "every answer carries a request id"
        );
    }
}

/// Options for [`TestApp::spawn`].
#[derive(Default)]
pub struct Options {
    pub public_url: Option<String>,
    pub max_body_bytes: Option<usize>,
    /// Run the services on a manual clock (see [`TestApp::clock`]).
    pub manual_clock: bool,
    /// The sandbox's `time_scale` (1 when unset): its time limits pass this much faster.
    pub sandbox_time_scale: Option<f64>,
}

impl TestApp {
    pub async fn spawn(engine: &'static str) -> TestApp {
        Self::spawn_with(engine, Options::default()).await
    }

    pub async fn spawn_with(engine: &'static str, options: Options) -> TestApp {
        // Every suite is judged by Telegram's limits as the strictest model has them (at most
        // N arrivals in any sliding window), ten times faster so tests stay quick; relaygram
        // is told the same limits. `stop` fails a test that met one of the sandbox's 429s.
        let time_scale = options.sandbox_time_scale.unwrap_or(TIME_SCALE);
        let sandbox = Sandbox::start(SandboxConfig {
            limits: Limits::Telegram,
            time_scale,
            // 10 s of real time, as without scaling.
            webhook_timeout: std::time::Duration::from_secs(10).mul_f64(time_scale),
            ..SandboxConfig::default()
        })
        .await
        .expect("sandbox starts");
        let dir = tempfile::tempdir().expect("tempdir");
        let db = testing::fresh(engine, dir.path()).await.expect("fresh db");
        let mut config = Config {
            database_url: SecretString::from(db.url.clone()),
            bind: "127.0.0.1:0".parse().unwrap(),
            public_url: options.public_url,
            telegram_api_url: sandbox.url(),
            data_dir: dir.path().join("data"),
            limits: SendLimits {
                per_bot_per_second: 30.0 * TIME_SCALE,
                per_chat_per_second: 1.0 * TIME_SCALE,
                per_group_per_minute: 20.0 * TIME_SCALE,
            },
            ..Config::default()
        };
        if let Some(max) = options.max_body_bytes {
            config.max_body_bytes = max;
        }
        let boot = server::boot(&config).await.expect("boot");
        assert!(boot.key_file_created, "a fresh data folder gets a new key");
        let admin_key = boot
            .new_admin_key
            .expect("an empty store gets an admin key")
            .key
            .expose_secret()
            .to_string();
        let mut services = boot.services;
        if options.manual_clock {
            services.clock = relaygram::clock::Clock::manual(relaygram::ids::now_millis());
        }
        let server = server::spawn(&config, services)
            .await
            .expect("server starts");
        TestApp {
            server,
            sandbox,
            http: reqwest::Client::new(),
            admin_key,
            config,
            violations: Violations::default(),
            _db: db,
            _dir: dir,
        }
    }

    /// Stops the server gracefully and starts it again on the same database, data folder
    /// and port (the sandbox keeps running, so webhooks still arrive).
    pub async fn restarted(self) -> TestApp {
        self.restarted_after(async |_| {}).await
    }

    /// Like [`TestApp::restarted`], running `while_down` (with the sandbox) while the server
    /// is stopped: what Telegram users do during an outage.
    pub async fn restarted_after(self, while_down: impl AsyncFnOnce(&Sandbox)) -> TestApp {
        let TestApp {
            server,
            sandbox,
            http,
            admin_key,
            mut config,
            violations,
            _db,
            _dir,
        } = self;
        config.bind = server.addr;
        server.shutdown().await.expect("graceful shutdown");
        while_down(&sandbox).await;
        let boot = server::boot(&config).await.expect("boot");
        let server = server::spawn(&config, boot.services)
            .await
            .expect("server starts again");
        TestApp {
            server,
            sandbox,
            http,
            admin_key,
            config,
            violations,
            _db,
            _dir,
        }
    }

    pub async fn stop(self) {
        self.violations.assert_none();
        self.server.shutdown().await.expect("graceful shutdown");
        let stats: Value = self
            .http
            .get(format!("{}/sandbox/stats", self.sandbox.url()))
            .send()
            .await
            .expect("sandbox stats")
            .json()
            .await
            .expect("sandbox stats");
        self.sandbox.shutdown().await;
        // 429s the sandbox's limiter gave (not injected floods): relaygram went over a limit.
        for bot in stats["bots"].as_array().into_iter().flatten() {
            let by_cause = &bot["too_many_requests_by_cause"];
            let over: i64 = ["bot", "chat", "group"]
                .iter()
                .map(|k| by_cause[k].as_i64().unwrap_or(0))
                .sum();
            assert_eq!(over, 0, "relaygram went over Telegram's limits: {bot}");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.server.url(), path)
    }

    /// Sends a request to the server and checks the answer against the OpenAPI document
    /// (status documented for the path and method, body matching its schema); a violation
    /// is recorded and fails the test. Every helper that calls the server goes through here.
    pub async fn send(&self, req: reqwest::RequestBuilder) -> Answer {
        let (client, request) = req.build_split();
        let request = request.expect("a well-formed request");
        let method = request.method().clone();
        let url = request.url().clone();
        let response = client.execute(request).await.expect("request");
        let answer = Self::answer(response).await;
        if url.as_str().starts_with(&self.server.url()) {
            let content_type = answer
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok());
            if let Err(e) = conformance::check(
                method.as_str(),
                url.path(),
                answer.status.as_u16(),
                content_type,
                &answer.text,
            ) {
                self.violations.record(format!(
                    "{method} {} → {}: {e}",
                    url.path(),
                    answer.status.as_u16()
                ));
            }
        }
        answer
    }

    async fn answer(response: reqwest::Response) -> Answer {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
            text,
        }
    }

    /// Sends a request with an optional bearer key and JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut req = self.http.request(method, self.url(path));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        self.send(req).await
    }

    /// Sends raw bytes with a content type.
    pub async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> Answer {
        let mut req = self
            .http
            .request(method, self.url(path))
            .header("content-type", content_type)
            .body(body);
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        self.send(req).await
    }

    pub async fn get(&self, path: &str, key: &str) -> Answer {
        self.call(reqwest::Method::GET, path, Some(key), None).await
    }

    pub async fn post(&self, path: &str, key: &str, body: Value) -> Answer {
        self.call(reqwest::Method::POST, path, Some(key), Some(body))
            .await
    }

    pub async fn patch(&self, path: &str, key: &str, body: Value) -> Answer {
        self.call(reqwest::Method::PATCH, path, Some(key), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, key: &str) -> Answer {
        self.call(reqwest::Method::DELETE, path, Some(key), None)
            .await
    }

    /// Creates a tenant with the admin key; returns its id.
    pub async fn tenant(&self, name: &str) -> String {
        let a = self
            .post("/v1/tenants", &self.admin_key, json!({"name": name}))
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
        a.body["id"].as_str().unwrap().to_string()
    }

    /// Creates a tenant key; returns (key id, key).
    pub async fn tenant_key(&self, tenant_id: &str) -> (String, String) {
        let a = self
            .post(
                &format!("/v1/tenants/{tenant_id}/api-keys"),
                &self.admin_key,
                json!({"name": "test"}),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
        (
            a.body["id"].as_str().unwrap().to_string(),
            a.body["key"].as_str().unwrap().to_string(),
        )
    }

    /// Creates a bot in the sandbox; returns (telegram id, token).
    pub async fn sandbox_bot(&self, username: &str) -> (i64, String) {
        let r = self
            .http
            .post(format!("{}/sandbox/bots", self.sandbox.url()))
            .json(&json!({"username": username, "first_name": "Test"}))
            .send()
            .await
            .expect("sandbox answers");
        assert!(
            r.status().is_success(),
            "sandbox create bot: {}",
            r.status()
        );
        let v: Value = r.json().await.unwrap();
        (
            v["id"].as_i64().unwrap(),
            v["token"].as_str().unwrap().to_string(),
        )
    }

    /// The sandbox's view of a bot (`webhook`, `allowed_updates`, …).
    pub async fn sandbox_bot_state(&self, telegram_id: i64) -> Value {
        self.http
            .get(format!("{}/sandbox/bots/{telegram_id}", self.sandbox.url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Adds a sandbox fault.
    pub async fn fault(&self, spec: Value) {
        let r = self
            .http
            .post(format!("{}/sandbox/faults", self.sandbox.url()))
            .json(&spec)
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "fault: {}",
            r.text().await.unwrap()
        );
    }
}

/// Polls `check` until it returns `Some`, failing after a deadline (tests never sleep for
/// work to happen; they wait for a condition).
pub async fn until<T, Fut>(what: &str, mut check: impl FnMut() -> Fut) -> T
where
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(25));
    loop {
        tick.tick().await;
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
    }
}

/// The repository's root folder.
pub fn repo_root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Python with the third-party checkers: `.venv` made by scripts/test, or
/// `RELAYGRAM_TEST_PYTHON`.
pub fn python() -> std::path::PathBuf {
    match std::env::var_os("RELAYGRAM_TEST_PYTHON") {
        Some(p) => std::path::PathBuf::from(p),
        None => repo_root().join(".venv/bin/python"),
    }
}

impl TestApp {
    /// The store's URL, for tests that put the store in a state the API cannot (a crash's).
    #[allow(dead_code)]
    pub fn database_url(&self) -> &str {
        &self._db.url
    }

    /// The services' clock (manual when spawned with `manual_clock`).
    #[allow(dead_code)] // used by the suites that move time
    pub fn clock(&self) -> &relaygram::clock::Clock {
        &self.server.services.clock
    }

    /// POSTs to the sandbox's control API (users, messages, button presses, faults, …) and
    /// returns its answer; fails the test unless it succeeds.
    /// A GET on the sandbox's control API.
    pub async fn sandbox_get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.sandbox.url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// A user presses the button with callback `data` under a bot's `message`; returns the
    /// answer the bot gave the press (as the sandbox recorded it).
    pub async fn press(&self, bot: &str, user: i64, message: &Value, data: &Value) -> Value {
        let pressed = self
            .sandbox_post(
                &format!("/sandbox/users/{user}/callback"),
                serde_json::json!({"bot": bot, "message_id": message["message_id"], "data": data}),
            )
            .await;
        let id = pressed["callback_query_id"].as_str().unwrap().to_string();
        until("the button's answer", || async {
            let v = self.sandbox_get(&format!("/sandbox/callbacks/{id}")).await;
            (v["answered"] == serde_json::json!(true)).then_some(v["answer"].clone())
        })
        .await
    }

    pub async fn sandbox_post(&self, path: &str, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{}{path}", self.sandbox.url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "sandbox {path}: {status} {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// The texts the bot `@bot` sent to `chat`, oldest first (the sandbox's transcript).
    #[allow(dead_code)]
    pub async fn bot_texts(&self, chat: i64, bot: &str) -> Vec<String> {
        sandbox_bot_texts(&self.http, &self.sandbox.url(), &chat.to_string(), bot).await
    }

    /// The messages of a sandbox chat, oldest first, both ways: a user's private chat with
    /// `@bot`, or a group's (`bot` `None`).
    #[allow(dead_code)]
    pub async fn transcript(&self, chat: i64, bot: Option<&str>) -> Vec<Value> {
        sandbox_transcript(&self.http, &self.sandbox.url(), &chat.to_string(), bot).await
    }
}

/// The messages of `chat` in the sandbox at `sandbox_url`, oldest first (see
/// [`TestApp::transcript`]).
pub async fn sandbox_transcript(
    http: &reqwest::Client,
    sandbox_url: &str,
    chat: &str,
    bot: Option<&str>,
) -> Vec<Value> {
    let query = bot.map(|b| format!("?bot={b}")).unwrap_or_default();
    let v: Value = http
        .get(format!(
            "{sandbox_url}/sandbox/chats/{chat}/messages{query}"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["messages"].as_array().unwrap().clone()
}

/// The messages the bot sent, of a transcript.
#[allow(dead_code)]
pub fn outgoing(messages: Vec<Value>) -> Vec<Value> {
    messages
        .into_iter()
        .filter(|m| m["direction"] == "out")
        .collect()
}

/// The texts the bot `@bot` sent to `chat`, oldest first, from the sandbox at `sandbox_url`.
pub async fn sandbox_bot_texts(
    http: &reqwest::Client,
    sandbox_url: &str,
    chat: &str,
    bot: &str,
) -> Vec<String> {
    outgoing(sandbox_transcript(http, sandbox_url, chat, Some(bot)).await)
        .iter()
        .filter_map(|m| m["text"].as_str().map(str::to_string))
        .collect()
}

/// An update's outcome without the replies it queued (`replied to /help (reply msg_…)` →
/// `replied to /help`), checking that a reply suffix names a message.
pub fn outcome(update: &Value) -> &str {
    let text = update["outcome"].as_str().unwrap_or("");
    match text.split_once(" (reply ") {
        Some((base, rest)) => {
            assert!(
                rest.starts_with("msg_") && rest.ends_with(')'),
                "a reply suffix names its message: {text}"
            );
            base
        }
        None => text,
    }
}

/// Runs one statement with text arguments directly on the store, for tests that put it in a
/// state only a crash leaves; returns the rows changed.
pub async fn exec_sql(db_url: &str, sql: &str, args: &[&str]) -> u64 {
    if db_url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(db_url).await.unwrap();
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for a in args {
            q = q.bind(*a);
        }
        let r = q.execute(&pool).await.unwrap();
        pool.close().await;
        r.rows_affected()
    } else {
        let options: sqlx::sqlite::SqliteConnectOptions = db_url.parse().unwrap();
        let pool = sqlx::SqlitePool::connect_with(
            options.busy_timeout(std::time::Duration::from_secs(10)),
        )
        .await
        .unwrap();
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for a in args {
            q = q.bind(*a);
        }
        let r = q.execute(&pool).await.unwrap();
        pool.close().await;
        r.rows_affected()
    }
}
