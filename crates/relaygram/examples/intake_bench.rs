//! Intake benchmark: a real relaygram server (SQLite, or PostgreSQL with --database-url)
//! with one webhook bot, fed Telegram-shaped updates over loopback by 64 concurrent
//! connections. Prints updates/s, latency percentiles, and how fast processing keeps up.
//!
//!     cargo run --release -p relaygram --example intake_bench -- [--updates 50000]
//!         [--concurrency 64] [--chats 1000] [--commands] [--database-url postgres://…]
//!
//! With `--commands` every update is `/help` (each gets a reply, queued in the outbox and
//! sent to the sandbox at the bot's limits);
//! otherwise plain text (forwarded to the app as an event).
//!
//! The load generator, the sandbox and relaygram share the machine, so each runs on its own
//! tokio runtime with named threads, and the program prints the CPU time each used (from
//! `/proc/self/task`), to show how much of the machine the server had. PostgreSQL's own
//! processes are not counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use relaygram::config::Config;
use relaygram::server;
use relaygram_sandbox::{Sandbox, SandboxConfig};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

struct Args {
    updates: usize,
    concurrency: usize,
    chats: usize,
    commands: bool,
    database_url: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        updates: 50_000,
        concurrency: 64,
        chats: 1000,
        commands: false,
        database_url: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().expect("flag needs a value");
        match flag.as_str() {
            "--updates" => a.updates = value().parse().expect("a number"),
            "--concurrency" => a.concurrency = value().parse().expect("a number"),
            "--chats" => a.chats = value().parse().expect("a number"),
            "--commands" => a.commands = true,
            "--database-url" => a.database_url = Some(value()),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// CPU seconds used so far by this process's live threads, by thread-name prefix
/// (`relaygram`, `sqlx-sqlite…`, `bench-client`, `sandbox`, …), and by the whole process.
fn cpu_by_thread() -> (std::collections::BTreeMap<String, f64>, f64) {
    // Linux reports times in clock ticks: 100 per second on every mainstream kernel.
    const TICKS: f64 = 100.0;
    let times = |stat: &str| -> f64 {
        // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let n = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        (n(11) + n(12)) / TICKS
    };
    let mut by = std::collections::BTreeMap::new();
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            let path = task.path();
            let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
            let name = name.trim();
            let group = if name.starts_with("sqlx-sqlite") {
                "relaygram (sqlite thread)"
            } else if name.starts_with("relaygram") {
                "relaygram"
            } else if name.starts_with("bench-client") {
                "load generator"
            } else if name.starts_with("sandbox") {
                "sandbox"
            } else {
                "other"
            };
            let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
            *by.entry(group.to_string()).or_insert(0.0) += times(&stat);
        }
    }
    let total = times(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default());
    (by, total)
}

fn cpu_line(
    before: &(std::collections::BTreeMap<String, f64>, f64),
    after: &(std::collections::BTreeMap<String, f64>, f64),
    wall: Duration,
) -> String {
    let mut parts = Vec::new();
    for (name, t) in &after.0 {
        let used = t - before.0.get(name).copied().unwrap_or(0.0);
        if used >= 0.01 {
            parts.push(format!("{name} {used:.2} s"));
        }
    }
    let total = after.1 - before.1;
    format!(
        "{total:.2} s in {:.2} s wall ({:.0}% of one core): {}",
        wall.as_secs_f64(),
        total / wall.as_secs_f64() * 100.0,
        parts.join(", ")
    )
}

fn runtime(name: &str, threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(name)
        .enable_all()
        .build()
}

fn main() -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let server = runtime("relaygram", cores)?;
    let client = runtime("bench-client", cores)?;
    let sandbox = runtime("sandbox", 1)?;
    server.block_on(bench(client.handle().clone(), sandbox.handle().clone()))
}

async fn bench(
    client: tokio::runtime::Handle,
    sandbox_rt: tokio::runtime::Handle,
) -> anyhow::Result<()> {
    let args = args();
    let sandbox = sandbox_rt
        .spawn(Sandbox::start(SandboxConfig::default()))
        .await??;
    let dir = tempfile::tempdir()?;
    let database_url = args
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite:{}", dir.path().join("bench.db").display()));
    let config = Config {
        database_url: SecretString::from(database_url.clone()),
        bind: "127.0.0.1:0".parse()?,
        telegram_api_url: sandbox.url(),
        data_dir: dir.path().join("data"),
        log_level: "warn".into(),
        command_rate_per_minute: u32::MAX,
        ..Config::default()
    };
    relaygram::logging::init(&config);
    let boot = server::boot(&config).await?;
    let admin = boot
        .new_admin_key
        .expect("a fresh store gets an admin key")
        .key
        .expose_secret()
        .to_string();
    let running = server::spawn(&config, boot.services).await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;

    // A sandbox bot whose users have all started it (so the bot may answer them), with
    // those /start updates drained before relaygram sees the bot.
    let bot: Value = http
        .post(format!("{}/sandbox/bots", sandbox.url()))
        .json(&json!({"username": "bench_bot"}))
        .send()
        .await?
        .json()
        .await?;
    let bot_api = format!("{}/bot{}", sandbox.url(), bot["token"].as_str().unwrap());
    let mut first_user = None;
    if args.commands {
        for i in 0..args.chats {
            let u: Value = http
                .post(format!("{}/sandbox/users", sandbox.url()))
                .json(&json!({"first_name": format!("U{i}")}))
                .send()
                .await?
                .json()
                .await?;
            let id = u["id"].as_i64().unwrap();
            first_user.get_or_insert(id);
            http.post(format!("{}/sandbox/users/{id}/messages", sandbox.url()))
                .json(&json!({"bot": "bench_bot", "text": "/start"}))
                .send()
                .await?
                .error_for_status()?;
        }
        loop {
            let got: Value = http
                .post(format!("{bot_api}/getUpdates"))
                .send()
                .await?
                .json()
                .await?;
            let Some(last) = got["result"].as_array().and_then(|a| a.last()).cloned() else {
                break;
            };
            let offset = last["update_id"].as_i64().unwrap() + 1;
            http.post(format!("{bot_api}/getUpdates"))
                .json(&json!({"offset": offset}))
                .send()
                .await?;
        }
    }
    let first_chat = first_user.unwrap_or(100_000_001);
    let tenant: Value = http
        .post(format!("{}/v1/tenants", running.url()))
        .bearer_auth(&admin)
        .json(&json!({"name": "bench"}))
        .send()
        .await?
        .json()
        .await?;
    let added: Value = http
        .post(format!("{}/v1/bots", running.url()))
        .bearer_auth(&admin)
        .json(&json!({"token": bot["token"], "tenant_id": tenant["id"]}))
        .send()
        .await?
        .json()
        .await?;
    let bot_id = added["id"].as_str().expect("bot added").to_string();
    http.post(format!("{}/v1/bots/{bot_id}/webhook", running.url()))
        .bearer_auth(&admin)
        .json(&json!({"base_url": running.url()}))
        .send()
        .await?
        .error_for_status()?;
    let state: Value = http
        .get(format!("{}/sandbox/bots/{}", sandbox.url(), bot["id"]))
        .send()
        .await?
        .json()
        .await?;
    let secret = state["webhook"]["secret_token"]
        .as_str()
        .expect("webhook set")
        .to_string();
    let url = Arc::new(format!("{}/telegram/webhook/{bot_id}", running.url()));
    let next = Arc::new(AtomicUsize::new(0));
    let cpu_at_start = cpu_by_thread();
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (http, url, next, secret) = (http.clone(), url.clone(), next.clone(), secret.clone());
        let (total, chats, commands) = (args.updates, args.chats, args.commands);
        workers.push(client.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return latencies;
                }
                let chat = first_chat + (i % chats) as i64;
                let text = if commands { "/help".to_string() } else { format!("hello {i}") };
                let update = json!({"update_id": i + 1, "message": {"message_id": i + 1, "date": 1_700_000_000,
                    "chat": {"id": chat, "type": "private", "first_name": "U"},
                    "from": {"id": chat, "is_bot": false, "first_name": "U"}, "text": text}});
                let t = Instant::now();
                let r = http
                    .post(url.as_str())
                    .header("X-Telegram-Bot-Api-Secret-Token", &secret)
                    .json(&update)
                    .send()
                    .await
                    .expect("request");
                assert!(r.status().is_success(), "intake answered {}", r.status());
                latencies.push(t.elapsed());
            }
        }));
    }
    let mut latencies = Vec::with_capacity(args.updates);
    for w in workers {
        latencies.extend(w.await?);
    }
    let elapsed = started.elapsed();
    let cpu_at_load_end = cpu_by_thread();
    latencies.sort_unstable();
    let store = running.services.store.clone();
    let open = |store: Arc<dyn relaygram::store::Store>| async move {
        store.count_open_updates().await.expect("count") as usize
    };
    let open_at_end = open(store.clone()).await;
    let drain_started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tick.tick().await;
        if open(store.clone()).await == 0 {
            break;
        }
    }
    let drained = started.elapsed();
    let cpu_at_drained = cpu_by_thread();

    println!(
        "intake benchmark ({}):",
        if args.database_url.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );
    println!(
        "  updates:       {} over {} connections, {} chats, {}",
        args.updates,
        args.concurrency,
        args.chats,
        if args.commands {
            "/help commands (replied)"
        } else {
            "plain text (forwarded as events)"
        }
    );
    println!(
        "  intake:        {:.0} updates/s ({:.2} s)",
        args.updates as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    println!(
        "  latency:       p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3
    );
    println!(
        "  processing:    {} still open when the load ended; all processed {:.2} s after the start ({:.0} updates/s); drain took {:.2} s",
        open_at_end,
        drained.as_secs_f64(),
        args.updates as f64 / drained.as_secs_f64(),
        drain_started.elapsed().as_secs_f64()
    );
    // Replies go through the outbox and leave at the bot's limits (30/s, 1/s per chat):
    // where they stood when the last update was processed.
    if args.commands {
        let stats: Value = http
            .get(format!(
                "{}/v1/stats?tenant_id={}",
                running.url(),
                tenant["id"].as_str().unwrap_or_default()
            ))
            .bearer_auth(&admin)
            .send()
            .await?
            .json()
            .await?;
        let b = &stats["bots"][0];
        println!(
            "  replies:       {} accepted into the outbox; {} sent, {} queued, {} sending, {} failed when processing finished",
            ["queued", "sending", "sent", "failed", "dead", "unknown"]
                .iter()
                .map(|k| b[*k].as_i64().unwrap_or(0))
                .sum::<i64>(),
            b["sent"],
            b["queued"],
            b["sending"],
            b["failed"]
        );
    }
    // Every update should have been handled: say so if some failed (with the first error).
    let (failed, _) = store
        .list_updates(
            &relaygram::store::UpdateFilter {
                status: Some(relaygram::store::UpdateStatus::Failed),
                ..Default::default()
            },
            None,
            200,
        )
        .await?;
    match failed.first() {
        None => println!("  outcomes:      none failed"),
        Some(f) => println!(
            "  outcomes:      {}{} FAILED, e.g. {:?}",
            failed.len(),
            if failed.len() == 200 { "+" } else { "" },
            f.error
        ),
    }
    println!(
        "  CPU, load:     {}",
        cpu_line(&cpu_at_start, &cpu_at_load_end, elapsed)
    );
    println!(
        "  CPU, to drain: {}",
        cpu_line(&cpu_at_start, &cpu_at_drained, drained)
    );
    println!(
        "  CPU per update (relaygram threads, start to drained): {:.0} µs",
        ["relaygram", "relaygram (sqlite thread)"]
            .iter()
            .map(|k| {
                cpu_at_drained.0.get(*k).copied().unwrap_or(0.0)
                    - cpu_at_start.0.get(*k).copied().unwrap_or(0.0)
            })
            .sum::<f64>()
            / args.updates as f64
            * 1e6
    );
    running.shutdown().await?;
    sandbox.shutdown().await;
    Ok(())
}
