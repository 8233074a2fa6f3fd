//! Delivery benchmark: the real server (HTTP API, SQLite outbox, senders) against the
//! in-process sandbox. Prints messages/s, CPU seconds per 1,000 messages, peak memory, 429s
//! received, and messages lost or doubled.
//!
//! The server, the sandbox and the benchmark's client run on three tokio runtimes with named
//! threads, and the CPU each used is read from `/proc/self/task`: the figure per message is
//! given for relaygram alone (its runtime and its SQLite thread) and for the whole process.
//!
//! ```sh
//! cargo run --release -p relaygram --example send_bench            # all scenarios
//! cargo run --release -p relaygram --example send_bench -- limits  # one: limits | off | fanout
//! cargo run --release -p relaygram --example send_bench -- off --concurrency 4
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use relaygram::config::{Config, SendLimits};
use relaygram::server;
use relaygram_sandbox::{Limits, Sandbox, SandboxConfig};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds used so far by this process's threads, by group (thread-name prefix).
fn cpu_by_thread() -> BTreeMap<&'static str, f64> {
    let times = |stat: &str| -> f64 {
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        let n = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        (n(11) + n(12)) / 100.0
    };
    let mut by = BTreeMap::new();
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            let path = task.path();
            let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
            let name = name.trim();
            let group = if name.starts_with("sqlx-sqlite") {
                "relaygram sqlite thread"
            } else if name.starts_with("relaygram") {
                "relaygram runtime"
            } else if name.starts_with("bench-client") {
                "benchmark client"
            } else if name.starts_with("sandbox") {
                "sandbox"
            } else {
                "other"
            };
            let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
            *by.entry(group).or_insert(0.0) += times(&stat);
        }
    }
    by
}

fn runtime(name: &str, threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("runtime")
}

fn peak_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

struct Env {
    client: tokio::runtime::Handle,
    concurrency: usize,
    sandbox: Sandbox,
    server: server::RunningServer,
    http: reqwest::Client,
    key: String,
    tenant: String,
    bot: String,
    _dir: tempfile::TempDir,
}

impl Env {
    /// Sends the sandbox accepted so far (all bots).
    async fn sandbox_sends(&self) -> i64 {
        let sb: Value = self
            .http
            .get(format!("{}/sandbox/stats", self.sandbox.url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        sb["bots"].as_array().map_or(0, |b| {
            b.iter()
                .map(|b| b["sends_accepted"].as_i64().unwrap_or(0))
                .sum()
        })
    }
}

struct Runtimes {
    client: tokio::runtime::Handle,
    sandbox: tokio::runtime::Handle,
    concurrency: usize,
}

async fn env(rt: &Runtimes, sandbox_limits: Limits, time_scale: f64, limits: SendLimits) -> Env {
    let sandbox = rt
        .sandbox
        .spawn(Sandbox::start(SandboxConfig {
            limits: sandbox_limits,
            time_scale,
            ..SandboxConfig::default()
        }))
        .await
        .expect("sandbox task")
        .expect("sandbox");
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        database_url: SecretString::from(format!("sqlite:{}", dir.path().join("b.db").display())),
        bind: "127.0.0.1:0".parse().unwrap(),
        telegram_api_url: sandbox.url(),
        data_dir: dir.path().join("data"),
        log_level: "warn".into(),
        limits,
        ..Config::default()
    };
    let boot = server::boot(&config).await.expect("boot");
    let key = boot.new_admin_key.unwrap().key.expose_secret().to_string();
    let server = server::spawn(&config, boot.services).await.expect("spawn");
    let http = reqwest::Client::new();
    let base = server.url();
    let tenant: Value = http
        .post(format!("{base}/v1/tenants"))
        .bearer_auth(&key)
        .json(&json!({"name": "bench"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tenant = tenant["id"].as_str().unwrap().to_string();
    let bot: Value = http
        .post(format!("{}/sandbox/bots", sandbox.url()))
        .json(&json!({"username": "bench_bot", "first_name": "Bench"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let added: Value = http
        .post(format!("{base}/v1/bots"))
        .bearer_auth(&key)
        .json(&json!({"token": bot["token"], "tenant_id": tenant}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    Env {
        client: rt.client.clone(),
        concurrency: rt.concurrency,
        sandbox,
        server,
        http,
        key,
        tenant,
        bot: added["id"].as_str().unwrap().to_string(),
        _dir: dir,
    }
}

async fn users(e: &Env, n: usize) -> Vec<i64> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let u: Value = e
            .http
            .post(format!("{}/sandbox/users", e.sandbox.url()))
            .json(&json!({"first_name": format!("U{i}")}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = u["id"].as_i64().unwrap();
        e.http
            .post(format!("{}/sandbox/users/{id}/messages", e.sandbox.url()))
            .json(&json!({"bot": "bench_bot", "text": "hi"}))
            .send()
            .await
            .unwrap();
        out.push(id);
    }
    out
}

async fn stats(e: &Env) -> Value {
    e.http
        .get(format!(
            "{}/v1/stats?tenant_id={}",
            e.server.url(),
            e.tenant
        ))
        .bearer_auth(&e.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Sends `per_chat` messages to every chat (lists of up to 500 chats per call, from
/// `concurrency` concurrent clients on the client runtime), waits until none is left, and
/// prints the figures.
async fn run(e: &Env, label: &str, chats: &[i64], per_chat: usize, allowed: Option<f64>) {
    let total = chats.len() * per_chat;
    let sends_before = e.sandbox_sends().await;
    // The calls, in order: round by round, 500 chats each.
    let mut calls: Vec<(usize, Vec<i64>)> = Vec::new();
    for round in 0..per_chat {
        for group in chats.chunks(500) {
            calls.push((round, group.to_vec()));
        }
    }
    let calls = Arc::new(calls);
    let next = Arc::new(AtomicUsize::new(0));
    let cpu0 = cpu_by_thread();
    let t0 = Instant::now();
    // A fresh HTTP client: its connections are opened (and their I/O driven) on the client
    // runtime, not on the server's, where the setup's client made its connections.
    let http = reqwest::Client::new();
    let mut clients = Vec::new();
    for _ in 0..e.concurrency {
        let (calls, next, http) = (calls.clone(), next.clone(), http.clone());
        let url = format!("{}/v1/messages?tenant_id={}", e.server.url(), e.tenant);
        let (key, bot) = (e.key.clone(), e.bot.clone());
        clients.push(e.client.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((round, group)) = calls.get(i) else {
                    break;
                };
                let to: Vec<Value> = group.iter().map(|c| json!({"chat_id": c})).collect();
                let r = http
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&json!({"bot_id": bot, "to": to, "text": format!("m{round}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 202, "{}", r.text().await.unwrap());
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    let accepted_in = t0.elapsed();
    // Delivered = the sandbox accepted every send (its counter, read from memory: polling
    // relaygram's /v1/stats here would put a scan of the outbox on the measured path).
    while e.sandbox_sends().await < sends_before + total as i64 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let delivered_in = t0.elapsed();
    // Then every outcome recorded in the outbox.
    loop {
        let s = stats(e).await;
        let b = &s["bots"][0];
        let left = ["queued", "sending", "paused"]
            .iter()
            .map(|k| b[k].as_i64().unwrap_or(0))
            .sum::<i64>();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = t0.elapsed();
    let cpu1 = cpu_by_thread();
    let used: Vec<(&str, f64)> = cpu1
        .iter()
        .map(|(k, v)| (*k, v - cpu0.get(k).copied().unwrap_or(0.0)))
        .collect();
    let cpu: f64 = used.iter().map(|(_, v)| v).sum();
    let server_cpu: f64 = used
        .iter()
        .filter(|(k, _)| k.starts_with("relaygram"))
        .map(|(_, v)| v)
        .sum();
    let s = stats(e).await;
    let b = &s["bots"][0];
    // Lost and doubled, from the sandbox's transcripts.
    let mut lost = 0;
    let mut doubled = 0;
    for c in chats {
        let t: Value = e
            .http
            .get(format!(
                "{}/sandbox/chats/{c}/messages?bot=bench_bot",
                e.sandbox.url()
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for m in t["messages"].as_array().unwrap() {
            if m["direction"] == "out" {
                *seen
                    .entry(m["text"].as_str().unwrap_or("").to_string())
                    .or_default() += 1;
            }
        }
        for round in 0..per_chat {
            match seen.get(&format!("m{round}")).copied().unwrap_or(0) {
                0 => lost += 1,
                1 => {}
                n => doubled += n - 1,
            }
        }
    }
    let sb: Value = e
        .http
        .get(format!("{}/sandbox/stats", e.sandbox.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let too_many = sb["bots"][0]["too_many_requests"].as_i64().unwrap_or(-1);
    let rate = total as f64 / delivered_in.as_secs_f64();
    println!("== {label}");
    println!("messages            {total} to {} chats", chats.len());
    println!("accepted in         {:.3} s", accepted_in.as_secs_f64());
    println!(
        "delivered in        {:.3} s (the sandbox accepted every send)",
        delivered_in.as_secs_f64()
    );
    println!(
        "recorded in         {:.3} s (every outcome stored; CPU below is up to here)",
        elapsed.as_secs_f64()
    );
    println!("messages/s          {rate:.0}");
    if let Some(allowed) = allowed {
        println!(
            "of the allowed rate {:.1} % (allowed {allowed:.0}/s)",
            100.0 * rate / allowed
        );
    }
    println!("concurrent clients  {} (500 chats per call)", e.concurrency);
    println!(
        "CPU s / 1000 msgs   {:.3} ({:.0} µs/message, relaygram: runtime + SQLite thread)",
        1000.0 * server_cpu / total as f64,
        1e6 * server_cpu / total as f64
    );
    println!(
        "                    {:.3} ({:.0} µs/message, whole process)",
        1000.0 * cpu / total as f64,
        1e6 * cpu / total as f64
    );
    println!(
        "CPU by threads      {}",
        used.iter()
            .map(|(k, v)| format!("{k} {v:.2} s"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("peak memory         {:.0} MB", peak_mb());
    println!(
        "429s received       {too_many} (outbox counted {})",
        b["rate_limited"]
    );
    println!(
        "sent {} failed {} dead {} unknown {}",
        b["sent"], b["failed"], b["dead"], b["unknown"]
    );
    println!("lost {lost} doubled {doubled}");
}

async fn fanout(rt: &Runtimes, n: usize) {
    let e = env(rt, Limits::Off, 1.0, SendLimits::default()).await;
    // The linking schema on main (migration 0005), filled directly with a few batched
    // statements: the benchmark measures the fan-out, not linking through Telegram. A third
    // of the links have a preference (half of those opted out), the rest follow the
    // category's default (on).
    let url = format!("sqlite:{}", e._dir.path().join("b.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let fill = Instant::now();
    sqlx::query(
        "INSERT INTO categories (id, tenant_id, key, name, description, default_enabled, mandatory, created_at, updated_at) \
         VALUES ('cat_bench', $1, 'alerts', 'Alerts', NULL, 1, 0, 0, 0)",
    )
    .bind(&e.tenant)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $3) \
         INSERT INTO links (id, tenant_id, bot_id, external_id, chat_id, chat_type, active, source, created_at, updated_at) \
         SELECT printf('lnk_%07d', i), $1, $2, printf('user-%d', i), 1000000 + i, 'private', 1, 'token', 0, 0 FROM n",
    )
    .bind(&e.tenant)
    .bind(&e.bot)
    .bind(n as i64)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO link_preferences (link_id, category_key, enabled, updated_at) \
         SELECT id, 'alerts', (chat_id % 2), 0 FROM links WHERE chat_id % 3 = 0",
    )
    .execute(&pool)
    .await
    .unwrap();
    let expected: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM links l LEFT JOIN link_preferences p \
         ON p.link_id = l.id AND p.category_key = 'alerts' WHERE l.active AND COALESCE(p.enabled, 1)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    println!(
        "(filled {n} links in {:.2} s; {expected} opted in)",
        fill.elapsed().as_secs_f64()
    );
    pool.close().await;
    let rss0 = rss_mb();
    let peak0 = peak_mb();
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let r = e
        .http
        .post(format!("{}/v1/messages?tenant_id={}", e.server.url(), e.tenant))
        .bearer_auth(&e.key)
        .json(&json!({"to": {"category": "alerts"}, "text": "alert", "send_at": "2100-01-01T00:00:00Z"}))
        .send()
        .await
        .unwrap();
    let took = t0.elapsed();
    let body: Value = r.json().await.unwrap();
    println!("== category fan-out");
    println!("links               {n}");
    println!(
        "queued              {} (broadcast {})",
        body["count"], body["broadcast_id"]
    );
    println!(
        "accepted in         {:.3} s (one call, one INSERT … SELECT)",
        took.as_secs_f64()
    );
    println!("CPU s               {:.3}", cpu_seconds() - cpu0);
    println!(
        "memory              resident {rss0:.0} → {:.0} MB, peak {peak0:.0} → {:.0} MB",
        rss_mb(),
        peak_mb()
    );
    assert_eq!(
        body["count"].as_i64(),
        Some(expected),
        "every opted-in link, once"
    );
    e.server.shutdown().await.unwrap();
    e.sandbox.shutdown().await;
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let which = args
        .iter()
        .find(|a| !a.starts_with("--") && a.parse::<usize>().is_err())
        .cloned()
        .unwrap_or_else(|| "all".into());
    let concurrency = args
        .iter()
        .position(|a| a == "--concurrency")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let server = runtime("relaygram", cores);
    let client = runtime("bench-client", 1);
    let sandbox = runtime("sandbox", 1);
    let rt = Runtimes {
        client: client.handle().clone(),
        sandbox: sandbox.handle().clone(),
        concurrency,
    };
    server.block_on(bench(&rt, &which));
}

async fn bench(rt: &Runtimes, which: &str) {
    if which == "all" || which == "limits" {
        // Telegram's limits, time-scaled ×10: 300/s per bot, 10/s per private chat.
        let e = env(
            rt,
            Limits::Telegram,
            10.0,
            SendLimits {
                per_bot_per_second: 300.0,
                per_chat_per_second: 10.0,
                per_group_per_minute: 200.0,
            },
        )
        .await;
        let chats = users(&e, 300).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        run(
            &e,
            "limits on (×10): 3,000 messages to 300 chats",
            &chats,
            10,
            Some(300.0),
        )
        .await;
        e.server.shutdown().await.unwrap();
        e.sandbox.shutdown().await;
    }
    if which == "all" || which == "off" {
        let off = SendLimits {
            per_bot_per_second: 0.0,
            per_chat_per_second: 0.0,
            per_group_per_minute: 0.0,
        };
        let e = env(rt, Limits::Off, 1.0, off).await;
        let chats = users(&e, 1000).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        run(
            &e,
            "limits off: 20,000 messages to 1,000 chats",
            &chats,
            20,
            None,
        )
        .await;
        e.server.shutdown().await.unwrap();
        e.sandbox.shutdown().await;
    }
    if which == "all" || which == "fanout" {
        fanout(rt, 100_000).await;
    }
}
