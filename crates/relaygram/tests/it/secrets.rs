//! A bot token never appears in the database, in logs, or in any response after creation.
//! Runs the real `relaygram serve` binary with debug logging and captures its output.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use relaygram_sandbox::{Sandbox, SandboxConfig};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::{PUBLIC_URL, engines};

/// A `relaygram serve` process.
pub struct ServeProcess {
    pub child: Child,
    pub url: String,
    /// The admin key the start printed (only a start that made one prints it).
    pub admin_key: Option<String>,
    pub stdout: Arc<Mutex<String>>,
    pub stderr: Arc<Mutex<String>>,
}

impl ServeProcess {
    pub async fn start(envs: &[(&str, String)]) -> ServeProcess {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_relaygram"));
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("relaygram serve starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().unwrap();
        let err_buf = stderr.clone();
        tokio::spawn(async move {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = err_pipe.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
                err_buf
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        });
        let stdout = Arc::new(Mutex::new(String::new()));
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut url = None;
        let mut admin_key = None;
        let mut expect_key = false;
        let banner = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                stdout.lock().unwrap().push_str(&format!("{line}\n"));
                if let Some(rest) = line.split("listening on ").nth(1) {
                    url = Some(rest.trim().to_string());
                }
                if expect_key && !line.trim().is_empty() {
                    admin_key = Some(line.trim().to_string());
                    expect_key = false;
                }
                if line.contains("Admin API key") {
                    expect_key = true;
                }
                if line.contains("API description") {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(
            matches!(banner, Ok(true)),
            "serve did not print its banner; stderr: {}",
            stderr.lock().unwrap()
        );
        let out_buf = stdout.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                out_buf.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        ServeProcess {
            child,
            url: url.expect("listening line"),
            admin_key,
            stdout,
            stderr,
        }
    }

    /// SIGTERM, then waits for a clean exit.
    pub async fn terminate(mut self) -> (String, String) {
        let pid = self.child.id().expect("running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let exit = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("exits after SIGTERM")
            .unwrap();
        assert!(exit.success(), "graceful shutdown exits 0, got {exit}");
        // Give the reader tasks the last bytes: they end at EOF, which exit guarantees.
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        for _ in 0..100 {
            tick.tick().await;
            if self.stderr.lock().unwrap().contains("shutting down") {
                break;
            }
        }
        let out = self.stdout.lock().unwrap().clone();
        let err = self.stderr.lock().unwrap().clone();
        (out, err)
    }
}

#[tokio::test]
async fn bot_token_never_leaks() {
    for engine in engines() {
        let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = relaygram::store::testing::fresh(engine, dir.path())
            .await
            .unwrap();
        let serve = ServeProcess::start(&[
            ("RELAYGRAM_DATABASE_URL", db.url.clone()),
            ("RELAYGRAM_BIND", "127.0.0.1:0".into()),
            ("RELAYGRAM_TELEGRAM_API_URL", sandbox.url()),
            ("RELAYGRAM_PUBLIC_URL", PUBLIC_URL.into()),
            (
                "RELAYGRAM_DATA_DIR",
                dir.path().join("data").display().to_string(),
            ),
            ("RELAYGRAM_LOG_LEVEL", "trace".into()),
            ("RELAYGRAM_LOG_FORMAT", "json".into()),
        ])
        .await;
        let http = reqwest::Client::new();
        let created: Value = http
            .post(format!("{}/sandbox/bots", sandbox.url()))
            .json(&json!({"username": "secret_bot"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = created["token"].as_str().unwrap().to_string();
        let secret_part = token.split_once(':').unwrap().1.to_string();
        assert!(secret_part.len() >= 16, "sandbox tokens are long: {token}");

        let mut transcript = String::new();
        let mut call =
            async |method: reqwest::Method, path: &str, key: &str, body: Option<Value>| {
                let mut req = http
                    .request(method, format!("{}{path}", serve.url))
                    .bearer_auth(key);
                if let Some(b) = body {
                    req = req.json(&b);
                }
                let r = req.send().await.unwrap();
                let status = r.status();
                let headers = format!("{:?}", r.headers());
                let text = r.text().await.unwrap();
                transcript.push_str(&format!("{status} {headers} {text}\n"));
                serde_json::from_str::<Value>(&text).unwrap_or(Value::Null)
            };
        let admin = serve
            .admin_key
            .clone()
            .expect("admin key printed on first start");
        let tenant = call(
            reqwest::Method::POST,
            "/v1/tenants",
            &admin,
            Some(json!({"name": "T"})),
        )
        .await;
        let tenant_id = tenant["id"].as_str().unwrap().to_string();
        let key = call(
            reqwest::Method::POST,
            &format!("/v1/tenants/{tenant_id}/api-keys"),
            &admin,
            None,
        )
        .await["key"]
            .as_str()
            .unwrap()
            .to_string();
        // The creation response is allowed to echo nothing either: it is checked too.
        let bot = call(
            reqwest::Method::POST,
            "/v1/bots",
            &key,
            Some(json!({"token": token})),
        )
        .await;
        let bot_id = bot["id"].as_str().expect("bot created").to_string();
        call(
            reqwest::Method::POST,
            "/v1/bots",
            &key,
            Some(json!({"token": token})),
        )
        .await;
        call(reqwest::Method::GET, "/v1/bots", &key, None).await;
        call(
            reqwest::Method::GET,
            &format!("/v1/bots/{bot_id}"),
            &key,
            None,
        )
        .await;
        call(
            reqwest::Method::PATCH,
            &format!("/v1/bots/{bot_id}"),
            &key,
            Some(json!({"enabled": false})),
        )
        .await;
        call(
            reqwest::Method::POST,
            &format!("/v1/bots/{bot_id}/webhook"),
            &key,
            None,
        )
        .await;
        call(reqwest::Method::GET, "/v1/bots", &admin, None).await;
        // A wrong token for a known bot id, so an error path runs too.
        let wrong = format!(
            "{}:{}",
            token.split_once(':').unwrap().0,
            "WRONGWRONGWRONGWRONGWRONG"
        );
        call(
            reqwest::Method::POST,
            "/v1/bots",
            &key,
            Some(json!({"token": wrong})),
        )
        .await;
        assert!(transcript.contains(&bot_id));

        let (stdout, stderr) = serve.terminate().await;
        assert!(
            stderr.contains("bot added"),
            "debug logs were captured: {stderr}"
        );
        assert!(
            stderr.contains("request_id"),
            "log lines carry the request id"
        );

        for (what, text) in [
            ("responses", &transcript),
            ("stdout", &stdout),
            ("logs", &stderr),
        ] {
            assert!(!text.contains(&secret_part), "bot token found in {what}");
            assert!(
                !text.contains("WRONGWRONGWRONG"),
                "a rejected token found in {what}"
            );
        }

        // The database holds only the sealed token.
        match &db.sqlite_file {
            Some(file) => {
                let mut found_files = 0;
                for suffix in ["", "-wal", "-shm"] {
                    let path = format!("{}{suffix}", file.display());
                    if let Ok(bytes) = std::fs::read(&path) {
                        found_files += 1;
                        let haystack = String::from_utf8_lossy(&bytes);
                        assert!(
                            !haystack.contains(&secret_part),
                            "bot token found in {path}"
                        );
                    }
                }
                assert!(found_files >= 1);
                // And the bot is really there, sealed.
                let store = relaygram::store::connect(&db.url.clone().into())
                    .await
                    .unwrap();
                let stored = store.get_bot(&bot_id).await.unwrap().unwrap();
                assert!(stored.token_sealed.starts_with("v1:"));
                store.close().await;
            }
            None => {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
                let dump: Vec<String> = sqlx::query_scalar(
                    "SELECT row_to_json(t)::text FROM (SELECT * FROM bots) t \
                     UNION ALL SELECT row_to_json(k)::text FROM (SELECT * FROM api_keys) k \
                     UNION ALL SELECT row_to_json(n)::text FROM (SELECT * FROM tenants) n",
                )
                .fetch_all(&mut conn)
                .await
                .unwrap();
                assert!(dump.iter().any(|row| row.contains(&bot_id)));
                for row in &dump {
                    assert!(!row.contains(&secret_part), "bot token found in PostgreSQL");
                }
            }
        }
        sandbox.shutdown().await;
    }
}
