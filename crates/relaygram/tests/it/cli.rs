//! The operator CLI, run as the real binary.

use std::process::Output;

use relaygram_sandbox::{Sandbox, SandboxConfig};
use serde_json::{Value, json};

use crate::helpers::{engines, sandbox_bot_texts};
use crate::secrets::ServeProcess;

struct Cli {
    envs: Vec<(String, String)>,
}

impl Cli {
    fn new(envs: &[(&str, String)]) -> Cli {
        Cli {
            envs: envs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        }
    }

    async fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, &[]).await
    }

    async fn run_with(&self, args: &[&str], extra: &[(&str, &str)]) -> Output {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_relaygram"));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default());
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.output().await.expect("relaygram runs")
    }

    /// Runs and expects success; returns stdout.
    async fn ok(&self, args: &[&str]) -> String {
        self.ok_with(args, &[]).await
    }

    async fn ok_with(&self, args: &[&str], extra: &[(&str, &str)]) -> String {
        let out = self.run_with(args, extra).await;
        assert!(
            out.status.success(),
            "relaygram {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

#[tokio::test]
async fn config_command_masks_secrets_and_bad_config_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli::new(&[
        (
            "RELAYGRAM_DATABASE_URL",
            "postgres://app:s3cr3tpassword@db.internal/rg".into(),
        ),
        ("RELAYGRAM_SECRET_KEY", "ab".repeat(32)),
        ("RELAYGRAM_ADMIN_KEY", "rg_admin_key_from_env_123456".into()),
        ("RELAYGRAM_PUBLIC_URL", "https://gw.example.com".into()),
        ("RELAYGRAM_DATA_DIR", dir.path().display().to_string()),
    ]);
    let shown = cli.ok(&["config"]).await;
    assert!(
        shown.contains("public_url = \"https://gw.example.com\""),
        "{shown}"
    );
    assert!(
        shown.contains("postgres://app:********@db.internal/rg"),
        "{shown}"
    );
    for secret in [
        "s3cr3tpassword",
        &"ab".repeat(32),
        "rg_admin_key_from_env_123456",
    ] {
        assert!(!shown.contains(secret), "{shown}");
    }

    // A config file, with env winning.
    let file = dir.path().join("relaygram.toml");
    std::fs::write(&file, "bind = \"127.0.0.1:9999\"\nlog_format = \"json\"\n").unwrap();
    let shown = cli
        .ok_with(
            &["--config", file.to_str().unwrap(), "config"],
            &[("RELAYGRAM_LOG_FORMAT", "pretty")],
        )
        .await;
    assert!(shown.contains("bind = \"127.0.0.1:9999\""), "{shown}");
    assert!(shown.contains("log_format = \"pretty\""), "{shown}");

    // Bad configuration: one clear line naming the setting, non-zero exit.
    let out = cli
        .run_with(&["serve"], &[("RELAYGRAM_BIND", "not-an-address")])
        .await;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("`bind`"), "{err}");
    let out = cli
        .run(&["--config", "/definitely/not/here.toml", "config"])
        .await;
    assert!(!out.status.success());

    // Help exists for every command.
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["tenants", "create", "--help"],
        vec!["keys", "revoke", "--help"],
        vec!["bots", "add", "--help"],
        vec!["webhook", "register", "--help"],
        vec!["migrate", "--help"],
        vec!["sandbox", "--help"],
        vec!["gated-chats", "show", "--help"],
        vec!["entitlements", "grant", "--help"],
    ] {
        cli.ok(&args).await;
    }
    let unknown = cli.run(&["frobnicate"]).await;
    assert!(!unknown.status.success());
}

#[tokio::test]
async fn operator_commands_mirror_the_api() {
    for engine in engines() {
        let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = relaygram::store::testing::fresh(engine, dir.path())
            .await
            .unwrap();
        let cli = Cli::new(&[
            ("RELAYGRAM_DATABASE_URL", db.url.clone()),
            ("RELAYGRAM_TELEGRAM_API_URL", sandbox.url()),
            (
                "RELAYGRAM_DATA_DIR",
                dir.path().join("data").display().to_string(),
            ),
        ]);
        cli.ok(&["migrate"]).await;

        let created = cli.ok(&["tenants", "create", "--name", "Acme"]).await;
        let tenant = created.split('\t').next().unwrap().trim().to_string();
        assert!(tenant.starts_with("ten_"), "{created}");
        assert!(cli.ok(&["tenants", "list"]).await.contains(&tenant));

        let key = cli
            .ok(&["keys", "create", "--tenant", &tenant, "--name", "backend"])
            .await
            .trim()
            .to_string();
        assert!(key.starts_with("rg_"), "{key}");
        let keys = cli.ok(&["keys", "list", "--tenant", &tenant]).await;
        assert!(keys.contains(&key[..11]), "{keys}");
        assert!(!keys.contains(&key), "lists never show the key");
        let key_id = keys.split('\t').next().unwrap().to_string();
        assert!(
            cli.ok(&["keys", "revoke", &key_id])
                .await
                .contains("revoked")
        );
        assert!(
            cli.ok(&["keys", "list", "--tenant", &tenant])
                .await
                .contains("revoked")
        );
        let missing = cli.run(&["keys", "revoke", "key_missing"]).await;
        assert!(!missing.status.success());
        assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));
        let no_tenant = cli
            .run(&["keys", "create", "--tenant", "ten_missing"])
            .await;
        assert!(!no_tenant.status.success());

        let made: Value = reqwest::Client::new()
            .post(format!("{}/sandbox/bots", sandbox.url()))
            .json(&json!({"username": "cli_bot"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = made["token"].as_str().unwrap();
        let tg_id = made["id"].as_i64().unwrap();

        // Bad token: non-zero exit with Telegram's reason, nothing stored.
        let bad = cli
            .run_with(
                &["bots", "add", "--tenant", &tenant],
                &[("RELAYGRAM_BOT_TOKEN", "42:AAnotAtokenAtAllAtAll")],
            )
            .await;
        assert!(!bad.status.success());
        let bad_err = String::from_utf8_lossy(&bad.stderr);
        assert!(bad_err.contains("Unauthorized"), "{bad_err}");
        assert!(!bad_err.contains("AAnotAtoken"), "{bad_err}");
        assert_eq!(cli.ok(&["bots", "list"]).await.trim(), "");

        let added = cli
            .ok_with(
                &["bots", "add", "--tenant", &tenant],
                &[("RELAYGRAM_BOT_TOKEN", token)],
            )
            .await;
        assert!(
            added.contains("@cli_bot") && added.contains("polling"),
            "{added}"
        );
        let bot_id = added.split('\t').next().unwrap().to_string();
        let listed = cli.ok(&["bots", "list", "--tenant", &tenant]).await;
        assert!(listed.contains(&bot_id), "{listed}");
        assert!(!listed.contains(token));

        let registered = cli
            .ok(&[
                "webhook",
                "register",
                "--bot",
                &bot_id,
                "--base-url",
                "https://hooks.example.com",
            ])
            .await;
        assert!(registered.contains("webhook"), "{registered}");
        let state: Value = reqwest::Client::new()
            .get(format!("{}/sandbox/bots/{tg_id}", sandbox.url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            state["webhook"]["url"],
            format!("https://hooks.example.com/telegram/webhook/{bot_id}")
        );
        let no_url = cli.run(&["webhook", "register", "--bot", &bot_id]).await;
        assert!(!no_url.status.success(), "no public URL configured");

        assert!(
            cli.ok(&["bots", "remove", &bot_id])
                .await
                .contains("removed")
        );
        assert_eq!(cli.ok(&["bots", "list"]).await.trim(), "");
        let state: Value = reqwest::Client::new()
            .get(format!("{}/sandbox/bots/{tg_id}", sandbox.url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(state["webhook"], Value::Null);

        // Admin keys from the CLI.
        let admin = cli.ok(&["keys", "create", "--admin"]).await;
        assert!(admin.trim().starts_with("rg_"));
        assert!(
            cli.ok(&["keys", "list", "--admin"])
                .await
                .contains("(admin)")
        );
        sandbox.shutdown().await;
    }
}

#[tokio::test]
async fn sandbox_command_serves_the_bot_api_until_sigterm() {
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt, BufReader};

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_relaygram"))
        .args([
            "sandbox",
            "--bind",
            "127.0.0.1:0",
            "--limits",
            "off",
            "--limit-model",
            "bucket",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(at) = line.find("http://") {
                return Some(line[at..].split_whitespace().next().unwrap().to_string());
            }
        }
        None
    })
    .await
    .unwrap()
    .expect("the banner names the sandbox URL");
    let answer = reqwest::Client::new()
        .get(format!("{url}/bot1:nope/getMe"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");

    let bad = tokio::process::Command::new(env!("CARGO_BIN_EXE_relaygram"))
        .args(["sandbox", "--limits", "sometimes"])
        .output()
        .await
        .unwrap();
    assert!(!bad.status.success());
    let bad = tokio::process::Command::new(env!("CARGO_BIN_EXE_relaygram"))
        .args(["sandbox", "--limit-model", "leaky"])
        .output()
        .await
        .unwrap();
    assert!(!bad.status.success());
    let error = String::from_utf8_lossy(&bad.stderr);
    assert!(error.contains("--limit-model"), "{error}");
}

#[tokio::test]
async fn send_and_broadcast_follow_delivery_with_progress() {
    for engine in engines() {
        let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
        let s = sandbox.url();
        let dir = tempfile::tempdir().unwrap();
        let db = relaygram::store::testing::fresh(engine, dir.path())
            .await
            .unwrap();
        let data = dir.path().join("data");
        let port = crate::crash::free_port();
        let mut server = crate::crash::start(&db.url, &data, port, &s).await;
        let cli = Cli::new(&[
            ("RELAYGRAM_DATABASE_URL", db.url.clone()),
            ("RELAYGRAM_TELEGRAM_API_URL", s.clone()),
            ("RELAYGRAM_DATA_DIR", data.display().to_string()),
        ]);
        let http = reqwest::Client::new();
        let made: Value = http
            .post(format!("{s}/sandbox/bots"))
            .json(&json!({"username": "send_cli_bot"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let created = cli.ok(&["tenants", "create", "--name", "Acme"]).await;
        let tenant = created.split('\t').next().unwrap().trim().to_string();
        cli.ok_with(
            &["bots", "add", "--tenant", &tenant],
            &[("RELAYGRAM_BOT_TOKEN", made["token"].as_str().unwrap())],
        )
        .await;
        let mut users = Vec::new();
        for i in 0..201 {
            let u: Value = http
                .post(format!("{s}/sandbox/users"))
                .json(&json!({"first_name": format!("U{i}")}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let id = u["id"].as_i64().unwrap();
            http.post(format!("{s}/sandbox/users/{id}/messages"))
                .json(&json!({"bot": "send_cli_bot", "text": "hi"}))
                .send()
                .await
                .unwrap()
                .error_for_status()
                .unwrap();
            users.push(id.to_string());
        }
        let outbound = |chat: String| {
            let (http, s) = (http.clone(), s.clone());
            async move { sandbox_bot_texts(&http, &s, &chat, "send_cli_bot").await }
        };

        // One message: queued, followed until sent; progress lines without a terminal.
        let out = cli
            .run(&[
                "send",
                "--tenant",
                &tenant,
                "--chat-id",
                &users[0],
                "--text",
                "<b>hello</b> from the CLI",
                "--parse-mode",
                "HTML",
                "--timeout",
                "60",
            ])
            .await;
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(stdout.contains("queued\t1 messages"), "{stdout}");
        assert!(
            stdout.contains("done: sent 1 failed 0 remaining 0 of 1"),
            "{stdout}"
        );
        assert!(stderr.contains("progress: sent 1"), "{stderr}");
        assert!(!stderr.contains('\r'), "no bar is drawn without a terminal");
        assert_eq!(
            outbound(users[0].clone()).await,
            vec!["hello from the CLI".to_string()]
        );

        // Targets as JSON, as the API takes them.
        let stdout = cli
            .ok(&[
                "send",
                "--tenant",
                &tenant,
                "--to",
                &format!("[{{\"chat_id\": {}}}]", users[0]),
                "--text",
                "via --to",
            ])
            .await;
        assert!(stdout.contains("done: sent 1"), "{stdout}");
        let to_with_data = format!("{{\"chat_id\": {}, \"data\": {{\"a\": 1}}}}", users[0]);

        // A wall-clock time in the recipient's zone that has already passed: accepted and
        // sent at once (the zone given as the default, since this chat has no link).
        let stdout = cli
            .ok(&[
                "send",
                "--tenant",
                &tenant,
                "--chat-id",
                &users[0],
                "--text",
                "at nine, local time",
                "--send-at-local",
                "2020-01-01T09:00",
                "--default-timezone",
                "Asia/Tokyo",
            ])
            .await;
        assert!(
            stdout.contains("done: sent 1 failed 0 remaining 0 of 1"),
            "{stdout}"
        );
        assert_eq!(
            outbound(users[0].clone()).await,
            ["hello from the CLI", "via --to", "at nine, local time"]
        );

        // A broadcast to 201 chats: progress lines with what is left and an ETA, then done.
        let mut args = vec![
            "broadcast",
            "--tenant",
            &tenant,
            "--text",
            "news",
            "--timeout",
            "120",
        ];
        for u in &users {
            args.push("--chat-id");
            args.push(u);
        }
        let out = cli.run(&args).await;
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{stdout}\n{stderr}");
        let bc = stdout
            .split_whitespace()
            .find(|w| w.starts_with("bc_"))
            .unwrap_or_else(|| panic!("a broadcast id: {stdout}"))
            .to_string();
        assert!(
            stdout.contains("done: sent 201 failed 0 remaining 0 of 201"),
            "{stdout}"
        );
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("progress:"))
            .collect();
        assert!(!lines.is_empty(), "{stderr}");
        assert!(
            lines.last().unwrap().contains("remaining 0 of 201"),
            "{stderr}"
        );
        for u in &users {
            assert_eq!(
                outbound(u.clone())
                    .await
                    .iter()
                    .filter(|t| *t == "news")
                    .count(),
                1
            );
        }
        let followed = cli
            .ok(&["broadcast", "--tenant", &tenant, "--follow", &bc])
            .await;
        assert!(followed.contains("sent 201"), "{followed}");

        // Errors: a plain message and a non-zero exit, nothing queued.
        for (args, says) in [
            (
                vec![
                    "send",
                    "--tenant",
                    &tenant,
                    "--chat-id",
                    &users[0],
                    "--template",
                    "nope",
                ],
                "no template",
            ),
            (
                vec!["send", "--tenant", &tenant, "--text", "x"],
                "name a recipient",
            ),
            (
                vec!["send", "--tenant", &tenant, "--to", "{chat", "--text", "x"],
                "--to is not JSON",
            ),
            (
                vec![
                    "send",
                    "--tenant",
                    &tenant,
                    "--to",
                    &to_with_data,
                    "--text",
                    "x",
                ],
                "only used with `template`",
            ),
            (
                vec![
                    "send",
                    "--tenant",
                    &tenant,
                    "--chat-id",
                    &users[0],
                    "--text",
                    "<b>x",
                    "--parse-mode",
                    "HTML",
                ],
                "can't parse entities",
            ),
            (
                vec![
                    "send",
                    "--tenant",
                    "ten_missing",
                    "--chat-id",
                    "1",
                    "--text",
                    "x",
                ],
                "not found",
            ),
            (
                vec!["broadcast", "--tenant", &tenant, "--follow", "bc_missing"],
                "not found",
            ),
            (
                vec![
                    "send",
                    "--tenant",
                    &tenant,
                    "--chat-id",
                    &users[0],
                    "--text",
                    "x",
                    "--send-at-local",
                    "tomorrow at nine",
                ],
                "send_at_local",
            ),
            (
                vec![
                    "send",
                    "--tenant",
                    &tenant,
                    "--chat-id",
                    &users[0],
                    "--text",
                    "x",
                    "--send-at-local",
                    "2026-11-22T09:00",
                    "--default-timezone",
                    "Mars/Olympus_Mons",
                ],
                "default_timezone",
            ),
        ] {
            let out = cli.run(&args).await;
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{args:?}");
            assert!(stderr.contains(says), "{args:?}: {stderr}");
            assert!(!stderr.contains("panicked"), "{stderr}");
        }
        assert_eq!(
            outbound(users[0].clone()).await.len(),
            4,
            "nothing more was sent"
        );
        server.kill().await.unwrap();
        sandbox.shutdown().await;
    }
}

/// `relaygram config` prints a `relaygram.toml`: valid TOML that loads back to the same settings.
#[tokio::test]
async fn config_output_is_toml_that_loads_back() {
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli::new(&[
        (
            "RELAYGRAM_DATABASE_URL",
            "postgres://app:s3cr3tpassword@db.internal/rg".into(),
        ),
        ("RELAYGRAM_SECRET_KEY", "ab".repeat(32)),
        ("RELAYGRAM_ADMIN_KEY", "rg_admin_key_from_env_123456".into()),
        ("RELAYGRAM_LOG_LEVEL", "relaygram=debug,info".into()),
        ("RELAYGRAM_DATA_DIR", dir.path().display().to_string()),
    ]);
    let shown = cli.ok(&["config"]).await;
    let parsed: toml::Table = toml::from_str(&shown).unwrap_or_else(|e| panic!("{e}\n{shown}"));
    assert_eq!(parsed["log_level"].as_str(), Some("relaygram=debug,info"));
    assert_eq!(
        parsed["database_url"].as_str(),
        Some("postgres://app:********@db.internal/rg")
    );
    assert!(parsed["limits"]["per_bot_per_second"].is_float(), "{shown}");
    // Unset and secret settings are comments, not values.
    for key in ["public_url", "secret_key", "admin_key"] {
        assert!(!parsed.contains_key(key), "{key}: {shown}");
        assert!(shown.contains(&format!("# {key} = ")), "{key}: {shown}");
    }
    for secret in [
        "s3cr3tpassword",
        &"ab".repeat(32),
        "rg_admin_key_from_env_123456",
    ] {
        assert!(!shown.contains(secret), "{shown}");
    }
    // Loaded back with no environment, it is the same configuration.
    let file = dir.path().join("relaygram.toml");
    std::fs::write(&file, &shown).unwrap();
    let again = Cli::new(&[])
        .ok(&["--config", file.to_str().unwrap(), "config"])
        .await;
    let settings = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(settings(&again), settings(&shown));
}

/// A start that finds an admin key says so and how to make another; so does a start with
/// the key in the environment.
#[tokio::test]
async fn every_start_says_where_the_admin_key_is() {
    for engine in engines() {
        let dir = tempfile::tempdir().unwrap();
        let db = relaygram::store::testing::fresh(engine, dir.path())
            .await
            .unwrap();
        let envs = [
            ("RELAYGRAM_DATABASE_URL", db.url.clone()),
            ("RELAYGRAM_BIND", "127.0.0.1:0".to_string()),
            (
                "RELAYGRAM_TELEGRAM_API_URL",
                "http://127.0.0.1:9".to_string(),
            ),
            (
                "RELAYGRAM_DATA_DIR",
                dir.path().join("data").display().to_string(),
            ),
        ];
        let first = ServeProcess::start(&envs).await;
        assert!(
            first.admin_key.is_some(),
            "the first start makes and prints one"
        );
        let (out, _) = first.terminate().await;
        assert!(
            out.contains("Another one: relaygram keys create --admin"),
            "{out}"
        );

        let second = ServeProcess::start(&envs).await;
        assert_eq!(second.admin_key, None, "a key is printed once only");
        let (out, _) = second.terminate().await;
        assert!(out.contains("An admin API key exists (1 active"), "{out}");
        assert!(
            out.contains("Make another: relaygram keys create --admin"),
            "{out}"
        );

        let mut with_key = envs.to_vec();
        with_key.push(("RELAYGRAM_ADMIN_KEY", "rg_admin_key_from_env_123456".into()));
        let third = ServeProcess::start(&with_key).await;
        let (out, _) = third.terminate().await;
        assert!(
            out.contains("the one set in admin_key / RELAYGRAM_ADMIN_KEY"),
            "{out}"
        );
        assert!(!out.contains("rg_admin_key_from_env_123456"), "{out}");
    }
}

/// Connection errors name the URL tried and the setting that set it, never a password.
#[tokio::test]
async fn connection_errors_name_the_url_and_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    for engine in engines() {
        let db = relaygram::store::testing::fresh(engine, dir.path())
            .await
            .unwrap();
        // Nothing listens on port 9 (discard) here: Telegram is unreachable.
        let cli = Cli::new(&[
            ("RELAYGRAM_DATABASE_URL", db.url.clone()),
            ("RELAYGRAM_TELEGRAM_API_URL", "http://127.0.0.1:9".into()),
            (
                "RELAYGRAM_DATA_DIR",
                dir.path().join("data").display().to_string(),
            ),
        ]);
        let created = cli.ok(&["tenants", "create", "--name", "Acme"]).await;
        let tenant = created.split('\t').next().unwrap().trim().to_string();
        let out = cli
            .run_with(
                &["bots", "add", "--tenant", &tenant],
                &[(
                    "RELAYGRAM_BOT_TOKEN",
                    "123456:AAbbCCddEEffGGhhIIjjKKllMMnnOOppQQ",
                )],
            )
            .await;
        assert!(!out.status.success());
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains("http://127.0.0.1:9"), "{err}");
        assert!(
            err.contains("telegram_api_url / RELAYGRAM_TELEGRAM_API_URL"),
            "{err}"
        );
        assert!(!err.contains("AAbbCCdd"), "{err}");
    }

    // A database that cannot be reached: its URL (password masked) and the setting.
    let out = Cli::new(&[
        (
            "RELAYGRAM_DATABASE_URL",
            "postgres://app:s3cr3tpassword@127.0.0.1:9/rg".into(),
        ),
        (
            "RELAYGRAM_DATA_DIR",
            dir.path().join("data").display().to_string(),
        ),
    ])
    .run(&["tenants", "list"])
    .await;
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("postgres://app:********@127.0.0.1:9/rg"),
        "{err}"
    );
    assert!(
        err.contains("database_url / RELAYGRAM_DATABASE_URL"),
        "{err}"
    );
    assert!(!err.contains("s3cr3tpassword"), "{err}");
}

/// Runs and expects failure; returns stderr, checked to be one plain line (no panic, no
/// backtrace, no usage dump).
async fn refused(cli: &Cli, args: &[&str]) -> String {
    let out = cli.run(args).await;
    assert!(!out.status.success(), "relaygram {args:?} succeeded");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    assert!(err.starts_with("error: "), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    err
}

#[tokio::test]
async fn gated_chats_and_entitlements_from_the_command_line() {
    for engine in engines() {
        let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
        let s = sandbox.url();
        let dir = tempfile::tempdir().unwrap();
        let db = relaygram::store::testing::fresh(engine, dir.path())
            .await
            .unwrap();
        let cli = Cli::new(&[
            ("RELAYGRAM_DATABASE_URL", db.url.clone()),
            ("RELAYGRAM_TELEGRAM_API_URL", s.clone()),
            (
                "RELAYGRAM_DATA_DIR",
                dir.path().join("data").display().to_string(),
            ),
        ]);
        cli.ok(&["migrate"]).await;
        let http = reqwest::Client::new();
        let post = |path: String, body: Value| {
            let http = http.clone();
            let url = format!("{s}{path}");
            async move {
                http.post(url)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .error_for_status()
                    .unwrap()
                    .json::<Value>()
                    .await
                    .unwrap()
            }
        };

        // A tenant, its bot, and a supergroup the bot administers with both rights.
        let created = cli.ok(&["tenants", "create", "--name", "Acme"]).await;
        let tenant = created.split('\t').next().unwrap().trim().to_string();
        let made = post("/sandbox/bots".into(), json!({"username": "gate_cli_bot"})).await;
        cli.ok_with(
            &["bots", "add", "--tenant", &tenant],
            &[("RELAYGRAM_BOT_TOKEN", made["token"].as_str().unwrap())],
        )
        .await;
        let owner = post("/sandbox/users".into(), json!({"first_name": "Owner"})).await["id"]
            .as_i64()
            .unwrap();
        let alice = post("/sandbox/users".into(), json!({"first_name": "Alice"})).await["id"]
            .as_i64()
            .unwrap();
        let group = post(
            "/sandbox/groups".into(),
            json!({"title": "VIP", "type": "supergroup", "owner": owner}),
        )
        .await["id"]
            .as_i64()
            .unwrap();
        let group_arg = group.to_string();
        // A plain member: the bind is refused, naming the missing right.
        post(
            format!("/sandbox/groups/{group}/bots"),
            json!({"bot": "gate_cli_bot", "status": "member"}),
        )
        .await;
        let err = refused(&cli, &["gated-chats", "add", "--chat-id", &group_arg]).await;
        assert!(err.contains("can_restrict_members"), "{err}");
        assert_eq!(cli.ok(&["gated-chats", "list"]).await.trim(), "");
        post(
            format!("/sandbox/groups/{group}/bots"),
            json!({"bot": "gate_cli_bot", "status": "administrator",
                   "rights": {"can_invite_users": true, "can_restrict_members": true}}),
        )
        .await;
        let added = cli
            .ok(&[
                "gated-chats",
                "add",
                "--chat-id",
                &group_arg,
                "--name",
                "VIP",
                "--grace",
                "1d",
                "--reminders",
                "3d,1d",
            ])
            .await;
        let gated = added.split('\t').next().unwrap().to_string();
        assert!(gated.starts_with("gc_"), "{added}");
        assert!(
            added.contains(&tenant) && added.contains("\tactive"),
            "{added}"
        );

        // list, with and without --tenant, and as JSON.
        let listed = cli.ok(&["gated-chats", "list"]).await;
        assert_eq!(listed.lines().count(), 1, "{listed}");
        assert!(listed.contains(&gated) && listed.contains(&group_arg));
        let listed = cli
            .ok(&["gated-chats", "list", "--tenant", &tenant, "--json"])
            .await;
        let listed: Value = serde_json::from_str(&listed).unwrap();
        assert_eq!(listed["data"][0]["id"], json!(gated));
        assert_eq!(listed["data"][0]["grace_seconds"], 86_400);
        assert_eq!(listed["data"][0]["reminders"], json!(["3d", "1d"]));

        // grant: the entitlement, and the chat's personal link.
        let grant = [
            "entitlements",
            "grant",
            "--gated-chat",
            &gated,
            "--external-id",
            "user-42",
            "--duration",
            "30d",
            "--source-key",
            "order-1",
        ];
        let out = cli.run(&grant).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let granted = String::from_utf8(out.stdout).unwrap();
        let ent = granted.split('\t').next().unwrap().to_string();
        assert!(ent.starts_with("ent_"), "{granted}");
        assert!(
            granted.contains("user-42") && granted.contains("\tactive\t"),
            "{granted}"
        );
        let chat_line = granted
            .lines()
            .find(|l| l.trim_start().starts_with(&gated))
            .unwrap_or_else(|| panic!("a line for the chat: {granted}"));
        assert!(chat_line.contains("\tinvited\t"), "{chat_line}");
        let link = chat_line.rsplit('\t').next().unwrap();
        assert!(link.starts_with("https://t.me/+"), "{chat_line}");

        // The same grant again (one source key) is one entitlement, and says so.
        let out = cli.run(&grant).await;
        assert!(out.status.success());
        let again = String::from_utf8(out.stdout).unwrap();
        assert!(again.starts_with(&ent), "{again}");
        assert!(again.contains(link), "the same link: {again}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("nothing changed"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The key with another grant: refused, nothing stored.
        let mut other = grant;
        other[7] = "60d";
        let err = refused(&cli, &other).await;
        assert!(err.contains("order-1"), "{err}");

        // A Telegram user, until a fixed time, as JSON.
        let ends = "2099-01-01T00:00:00Z";
        let alice_arg = alice.to_string();
        let out = cli
            .ok(&[
                "entitlements",
                "grant",
                "--gated-chat",
                &gated,
                "--telegram-user-id",
                &alice_arg,
                "--ends-at",
                ends,
                "--reason",
                "gift",
                "--json",
            ])
            .await;
        let alice_ent: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(alice_ent["ends_at"], ends);
        assert_eq!(alice_ent["replayed"], false);
        assert!(
            alice_ent["chats"][0]["invite_link"]
                .as_str()
                .is_some_and(|l| l.starts_with("https://t.me/+")),
            "{alice_ent}"
        );

        // list, filtered.
        let all = cli
            .ok(&["entitlements", "list", "--gated-chat", &gated])
            .await;
        assert_eq!(all.lines().count(), 2, "{all}");
        let mine = cli
            .ok(&["entitlements", "list", "--external-id", "user-42"])
            .await;
        assert_eq!(mine.lines().count(), 1, "{mine}");
        assert!(mine.starts_with(&ent), "{mine}");
        let ended = cli.ok(&["entitlements", "list", "--active", "false"]).await;
        assert_eq!(ended.trim(), "", "{ended}");

        // show: settings and memberships per state.
        let shown = cli.ok(&["gated-chats", "show", &gated]).await;
        assert!(shown.contains("grace\t1d"), "{shown}");
        assert!(shown.contains("reminders\t3d,1d"), "{shown}");
        assert!(shown.contains("memberships\t2 (invited 2)"), "{shown}");
        let shown: Value =
            serde_json::from_str(&cli.ok(&["gated-chats", "show", &gated, "--json"]).await)
                .unwrap();
        assert_eq!(shown["memberships"]["invited"], 2);
        assert_eq!(shown["memberships"]["member"], 0);

        // sync: what it did.
        let synced = cli.ok(&["gated-chats", "sync", &gated]).await;
        assert!(synced.starts_with(&format!("synced {gated}:")), "{synced}");
        assert!(synced.contains("re-checked"), "{synced}");
        let swept: Value =
            serde_json::from_str(&cli.ok(&["gated-chats", "sync", &gated, "--json"]).await)
                .unwrap();
        assert!(swept["rechecked"].is_u64(), "{swept}");

        // revoke: once.
        let revoked = cli
            .ok(&["entitlements", "revoke", &ent, "--reason", "chargeback"])
            .await;
        assert!(revoked.starts_with(&format!("revoked {ent}")), "{revoked}");
        assert!(revoked.contains("\trevoked\t"), "{revoked}");
        let err = refused(&cli, &["entitlements", "revoke", &ent]).await;
        assert!(err.contains("revoked"), "{err}");
        let ended = cli.ok(&["entitlements", "list", "--active", "false"]).await;
        assert!(ended.starts_with(&ent), "{ended}");
        let shown = cli.ok(&["entitlements", "show", &ent]).await;
        assert!(
            shown.contains("\tgrant\tapi\torder-1") && shown.contains("chargeback"),
            "{shown}"
        );

        // Bad input: one plain line, a non-zero exit, nothing changed.
        for (args, needle) in [
            (
                vec![
                    "entitlements",
                    "grant",
                    "--gated-chat",
                    "gc_missing",
                    "--external-id",
                    "x",
                ],
                "gc_missing not found",
            ),
            (
                vec![
                    "entitlements",
                    "grant",
                    "--gated-chat",
                    &gated,
                    "--external-id",
                    "x",
                    "--duration",
                    "30x",
                ],
                "--duration",
            ),
            (
                vec![
                    "entitlements",
                    "grant",
                    "--gated-chat",
                    &gated,
                    "--external-id",
                    "x",
                    "--ends-at",
                    "tomorrow",
                ],
                "--ends-at",
            ),
            (
                vec![
                    "entitlements",
                    "grant",
                    "--gated-chat",
                    &gated,
                    "--external-id",
                    "x",
                    "--ends-at",
                    "2001-01-01T00:00:00Z",
                ],
                "ends_at",
            ),
            (vec!["gated-chats", "show", "gc_missing"], "not found"),
            (vec!["gated-chats", "sync", "gc_missing"], "not found"),
            (vec!["entitlements", "show", "ent_missing"], "not found"),
            (vec!["entitlements", "revoke", "ent_missing"], "not found"),
            (
                vec!["entitlements", "list", "--tenant", "ten_missing"],
                "ten_missing",
            ),
            (
                vec![
                    "gated-chats",
                    "add",
                    "--chat-id",
                    &group_arg,
                    "--grace",
                    "soon",
                ],
                "--grace",
            ),
        ] {
            let err = refused(&cli, &args).await;
            assert!(err.contains(needle), "{args:?}: {err}");
        }
        // Usage errors are clap's: exit 2, the option named.
        let out = cli
            .run(&["entitlements", "grant", "--gated-chat", &gated])
            .await;
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("--external-id"));
        let out = cli
            .run(&["entitlements", "list", "--active", "maybe"])
            .await;
        assert_eq!(out.status.code(), Some(2));
        let all = cli
            .ok(&["entitlements", "list", "--gated-chat", &gated])
            .await;
        assert_eq!(all.lines().count(), 2, "nothing was granted: {all}");
        sandbox.shutdown().await;
    }
}
