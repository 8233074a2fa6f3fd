//! A kill -9 of the real binary between storing an update and finishing it loses nothing and
//! repeats nothing visible: after a restart the update is processed once.

use std::process::Stdio;

use relaygram::store::testing;
use relaygram_sandbox::{Sandbox, SandboxConfig};
use serde_json::{Value, json};

use crate::helpers::{outcome, outgoing, sandbox_transcript, until};

pub(crate) const ADMIN_KEY: &str = "rg_crash_test_admin_key_0123456789";

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) async fn start(
    db_url: &str,
    data_dir: &std::path::Path,
    port: u16,
    sandbox: &str,
) -> tokio::process::Child {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_relaygram"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RELAYGRAM_DATABASE_URL", db_url)
        .env("RELAYGRAM_DATA_DIR", data_dir)
        .env("RELAYGRAM_BIND", format!("127.0.0.1:{port}"))
        .env("RELAYGRAM_PUBLIC_URL", format!("http://127.0.0.1:{port}"))
        .env("RELAYGRAM_TELEGRAM_API_URL", sandbox)
        .env("RELAYGRAM_ADMIN_KEY", ADMIN_KEY)
        .env("RELAYGRAM_UPDATE_LEASE_SECONDS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the relaygram binary starts");
    let http = reqwest::Client::new();
    until("the server to answer", || async {
        http.get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success())
            .map(|_| ())
    })
    .await;
    child
}

#[tokio::test]
async fn kill_9_mid_processing_loses_and_repeats_nothing() {
    for engine in testing::engines() {
        let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
        let s = sandbox.url();
        let dir = tempfile::tempdir().unwrap();
        let db = testing::fresh(engine, dir.path()).await.unwrap();
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let mut child = start(&db.url, &dir.path().join("data"), port, &s).await;

        let bot: Value = http
            .post(format!("{s}/sandbox/bots"))
            .json(&json!({"username": "crash_bot", "first_name": "Crash"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let tenant: Value = http
            .post(format!("{base}/v1/tenants"))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({"name": "t"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let added: Value = http
            .post(format!("{base}/v1/bots"))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({"token": bot["token"], "tenant_id": tenant["id"]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(added["mode"], "webhook", "{added}");
        let bot_id = added["id"].as_str().unwrap().to_string();
        let user: Value = http
            .post(format!("{s}/sandbox/users"))
            .json(&json!({"first_name": "Alice"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let user = user["id"].as_i64().unwrap();

        let say = |text: &'static str| {
            let http = http.clone();
            let s = s.clone();
            async move {
                http.post(format!("{s}/sandbox/users/{user}/messages"))
                    .json(&json!({"bot": "crash_bot", "text": text}))
                    .send()
                    .await
                    .unwrap()
                    .error_for_status()
                    .unwrap();
            }
        };
        let replies = || {
            let http = http.clone();
            let s = s.clone();
            async move {
                outgoing(sandbox_transcript(&http, &s, &user.to_string(), Some("crash_bot")).await)
            }
        };
        say("/stop").await;
        let ask = until("the /stop confirmation", || async {
            replies().await.first().cloned()
        })
        .await;

        // Replies go through the outbox, so the processor waits on Telegram only for calls
        // that are not messages: the button's answer hangs, so the processor is mid-update
        // (the press) when killed, with /help stored behind it in the same chat.
        http.post(format!("{s}/sandbox/faults"))
            .json(&json!({"kind": "timeout", "method": "answerCallbackQuery", "delay_ms": 120_000, "count": 1}))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
        let pressed: Value = http
            .post(format!("{s}/sandbox/users/{user}/callback"))
            .json(
                &json!({"bot": "crash_bot", "message_id": ask["message_id"], "data": "rg:stop:no"}),
            )
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        let cq = pressed["callback_query_id"].as_str().unwrap().to_string();
        say("/help").await;
        let list = |http: reqwest::Client, base: String| {
            let bot_id = bot_id.clone();
            async move {
                let v: Value = http
                    .get(format!("{base}/v1/updates?bot_id={bot_id}"))
                    .bearer_auth(ADMIN_KEY)
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                v["data"].as_array().cloned()
            }
        };
        // The press is in hand once its answer has hit the fault (spent faults are
        // forgotten). PostgreSQL shows it `processing` (leased); on SQLite one server owns
        // the updates, claims them in memory, and the store says `pending` until the end.
        let in_hand = if engine == "postgres" {
            "processing"
        } else {
            "pending"
        };
        until("the press in hand and /help stored", || async {
            let l = list(http.clone(), base.clone()).await?;
            let statuses: Vec<&str> = l.iter().filter_map(|u| u["status"].as_str()).collect();
            let faults: Value = http
                .get(format!("{s}/sandbox/faults"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let hit = faults["faults"].as_array()?.is_empty();
            (hit && statuses == ["pending", in_hand, "handled"]).then_some(())
        })
        .await;

        let pid = child.id().unwrap().to_string();
        assert!(
            std::process::Command::new("kill")
                .args(["-KILL", &pid])
                .status()
                .unwrap()
                .success()
        );
        child.wait().await.unwrap();
        http.delete(format!("{s}/sandbox/faults"))
            .send()
            .await
            .unwrap();

        let mut child = start(&db.url, &dir.path().join("data"), port, &s).await;
        let done = until("every update processed after the restart", || async {
            let l = list(http.clone(), base.clone()).await?;
            (l.len() == 3 && l.iter().all(|u| u["status"] == "handled")).then_some(l)
        })
        .await;
        assert_eq!(outcome(&done[2]), "asked to confirm /stop");
        assert_eq!(outcome(&done[1]), "answered relaygram button stop:no");
        assert_eq!(outcome(&done[0]), "replied to /help");
        let answer: Value = http
            .get(format!("{s}/sandbox/callbacks/{cq}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["answered"], json!(true), "{answer}");

        let out = until("the /help reply", || async {
            let out = replies().await;
            (out.len() >= 2).then_some(out)
        })
        .await;
        let texts: Vec<&str> = out.iter().map(|m| m["text"].as_str().unwrap()).collect();
        assert_eq!(texts.len(), 2, "one reply each, in order: {texts:?}");
        assert!(texts[0].starts_with("Stop notifications"));
        assert!(texts[1].starts_with("Here is what I can do"));
        child.kill().await.unwrap();
        sandbox.shutdown().await;
    }
}

/// SQLite allows one server per database (it keeps the updates waiting in memory): a second
/// `relaygram serve` on the same file stops with a plain message, and once the first is
/// gone (even by kill -9) another may start.
#[tokio::test]
async fn a_second_server_on_one_sqlite_database_is_refused() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = testing::fresh("sqlite", dir.path()).await.unwrap();
    let mut first = start(&db.url, &dir.path().join("a"), free_port(), &sandbox.url()).await;

    let second = tokio::process::Command::new(env!("CARGO_BIN_EXE_relaygram"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RELAYGRAM_DATABASE_URL", &db.url)
        .env("RELAYGRAM_DATA_DIR", dir.path().join("a"))
        .env("RELAYGRAM_BIND", format!("127.0.0.1:{}", free_port()))
        .env("RELAYGRAM_TELEGRAM_API_URL", sandbox.url())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{stderr}");
    assert!(
        stderr.contains("another relaygram server is serving this SQLite database"),
        "{stderr}"
    );

    first.kill().await.unwrap();
    let mut next = start(&db.url, &dir.path().join("a"), free_port(), &sandbox.url()).await;
    next.kill().await.unwrap();
    sandbox.shutdown().await;
}
