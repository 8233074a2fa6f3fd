//! An unmodified third-party client, python-telegram-bot, against the sandbox. scripts/test
//! installs it into `.venv` (or set RELAYGRAM_TEST_PYTHON to a Python that has it).

use std::path::PathBuf;

use crate::Harness;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn python() -> PathBuf {
    match std::env::var_os("RELAYGRAM_TEST_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => repo_root().join(".venv/bin/python"),
    }
}

#[tokio::test]
async fn python_telegram_bot_round_trip() {
    let h = Harness::with_limits(1.0).await;
    let p = h.pair("ptb_bot").await;
    let python = python();
    assert!(
        python.exists(),
        "{} is missing: run scripts/test, which creates the venv with python-telegram-bot",
        python.display()
    );
    let out = tokio::process::Command::new(&python)
        .arg(repo_root().join("tests/python/ptb_roundtrip.py"))
        .arg(&h.url)
        .arg(&p.token)
        .arg(p.user_id.to_string())
        .arg(&p.username)
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python-telegram-bot failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("round trip OK"), "{stdout}");
    let stats = h.get("/sandbox/stats").await;
    assert!(stats["bots"][0]["too_many_requests"].as_u64().unwrap() >= 1);
}
