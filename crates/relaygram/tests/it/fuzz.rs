//! An independent, schema-driven fuzz run: schemathesis (installed into `.venv` by
//! scripts/test from tests/python/requirements.txt) generates requests from the served
//! OpenAPI document and sends them to the real `relaygram serve`, which talks to a real
//! `relaygram sandbox`. It fails on any 5xx, any status code the document does not list for
//! the operation, any content type it does not name, and any body that contradicts the
//! response schema.

use std::process::Stdio;
use std::time::{Duration, Instant};

use relaygram::store::testing;
use serde_json::{Value, json};

use crate::crash::free_port;
use crate::helpers::{repo_root, until};

const ADMIN_KEY: &str = "rg_fuzz_test_admin_key_0123456789ab";

/// Examples per operation and phase: enough to reach every branch the schema describes,
/// small enough that a run takes about a minute on two cores.
const MAX_EXAMPLES: &str = "30";

/// What every run checks.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance";

fn schemathesis() -> std::path::PathBuf {
    match std::env::var_os("RELAYGRAM_TEST_SCHEMATHESIS") {
        Some(p) => std::path::PathBuf::from(p),
        None => repo_root().join(".venv/bin/schemathesis"),
    }
}

async fn wait_ready(url: &str) {
    let http = reqwest::Client::new();
    until(url, || async {
        http.get(url)
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success())
            .map(|_| ())
    })
    .await;
}

/// Spawns `relaygram <args>` with only the given settings.
fn relaygram(
    args: &[&str],
    env: &[(&str, String)],
    log: &std::path::Path,
) -> tokio::process::Child {
    let log = std::fs::File::create(log).unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_relaygram"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("the relaygram binary starts")
}

#[tokio::test]
async fn schemathesis_finds_no_5xx_and_no_answer_that_contradicts_the_document() {
    let cli = schemathesis();
    assert!(
        cli.exists(),
        "{} is missing: run scripts/test, which creates the venv from tests/python/requirements.txt",
        cli.display()
    );
    for engine in testing::engines() {
        let dir = tempfile::tempdir().unwrap();
        let db = testing::fresh(engine, dir.path()).await.unwrap();
        let sandbox_port = free_port();
        let sandbox_url = format!("http://127.0.0.1:{sandbox_port}");
        let mut sandbox = relaygram(
            &["sandbox", "--bind", &format!("127.0.0.1:{sandbox_port}")],
            &[],
            &dir.path().join("sandbox.log"),
        );
        wait_ready(&format!("{sandbox_url}/sandbox/stats")).await;
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let mut server = relaygram(
            &["serve"],
            &[
                ("RELAYGRAM_DATABASE_URL", db.url.clone()),
                (
                    "RELAYGRAM_DATA_DIR",
                    dir.path().join("data").display().to_string(),
                ),
                ("RELAYGRAM_BIND", format!("127.0.0.1:{port}")),
                ("RELAYGRAM_TELEGRAM_API_URL", sandbox_url.clone()),
                ("RELAYGRAM_ADMIN_KEY", ADMIN_KEY.to_string()),
            ],
            &dir.path().join("server.log"),
        );
        wait_ready(&format!("{base}/readyz")).await;

        // Something to find: a tenant with a key, a bot, a category and a template.
        let http = reqwest::Client::new();
        let post = |url: String, key: &str, body: Value| {
            let http = http.clone();
            let key = key.to_string();
            async move {
                let r = http
                    .post(&url)
                    .bearer_auth(key)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                let status = r.status();
                let v: Value = r.json().await.unwrap();
                assert!(status.is_success(), "{url}: {status} {v}");
                v
            }
        };
        let tenant = post(
            format!("{base}/v1/tenants"),
            ADMIN_KEY,
            json!({"name": "Fuzz"}),
        )
        .await;
        let tenant = tenant["id"].as_str().unwrap();
        let key = post(
            format!("{base}/v1/tenants/{tenant}/api-keys"),
            ADMIN_KEY,
            json!({"name": "fuzz"}),
        )
        .await;
        let key = key["key"].as_str().unwrap().to_string();
        let bot = post(
            format!("{sandbox_url}/sandbox/bots"),
            "",
            json!({"username": "fuzz_bot", "first_name": "Fuzz"}),
        )
        .await;
        post(
            format!("{base}/v1/bots"),
            &key,
            json!({"token": bot["token"]}),
        )
        .await;
        post(
            format!("{base}/v1/categories"),
            &key,
            json!({"key": "alerts", "name": "Alerts"}),
        )
        .await;
        post(
            format!("{base}/v1/templates"),
            &key,
            json!({"key": "hello", "text": "Hello {{ name }}"}),
        )
        .await;

        // As the tenant's app (its key) and as an operator (the admin key), which reach
        // different branches (an admin key must name the tenant, may create tenants…).
        for (who, key) in [("tenant key", key.as_str()), ("admin key", ADMIN_KEY)] {
            let started = Instant::now();
            let out = run(&cli, &base, key, dir.path()).await;
            // Shown with --nocapture (or when the test fails): what was run and found.
            eprintln!(
                "{engine}, {who}: schemathesis ran {:.0?}\n{}",
                started.elapsed(),
                String::from_utf8_lossy(&out.stdout)
            );
            if !out.status.success() {
                let log =
                    std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(60).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                panic!(
                    "{engine}, {who}: schemathesis found answers that contradict the OpenAPI \
                     document (or a server error):\n{}\n{}\nserver log (last lines):\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr),
                    tail.join("\n")
                );
            }
        }
        let _ = server.kill().await;
        let _ = sandbox.kill().await;
    }
}

/// One schemathesis run against the document the server serves.
async fn run(
    cli: &std::path::Path,
    base: &str,
    key: &str,
    dir: &std::path::Path,
) -> std::process::Output {
    // By hand: RELAYGRAM_FUZZ_CHECKS and RELAYGRAM_FUZZ_EXAMPLES widen a run.
    let checks = std::env::var("RELAYGRAM_FUZZ_CHECKS").unwrap_or_else(|_| CHECKS.to_string());
    let examples =
        std::env::var("RELAYGRAM_FUZZ_EXAMPLES").unwrap_or_else(|_| MAX_EXAMPLES.to_string());
    let out = tokio::process::Command::new(cli)
        .arg("--no-color")
        .arg("--config-file")
        .arg(repo_root().join("tests/python/schemathesis.toml"))
        .arg("run")
        .arg(format!("{base}/v1/openapi.json"))
        .args([
            "--checks",
            &checks,
            "--max-examples",
            &examples,
            "--seed",
            "20261204",
            // One worker: CPython 3.11's parser is not thread-safe under Hypothesis.
            "--workers",
            "1",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--request-timeout",
            "20",
            "--max-failures",
            "50",
            "--warnings",
            "off",
        ])
        .arg("--header")
        .arg(format!("Authorization: Bearer {key}"))
        .current_dir(dir)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(600), out)
        .await
        .expect("a fuzz run ends within 10 minutes")
        .expect("schemathesis runs")
}
