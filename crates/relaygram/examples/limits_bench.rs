//! Limits benchmark: how close relaygram sends to Telegram's flood limits without ever going
//! over them, judged by a strict sliding-window model of arrivals.
//!
//! Three processes, as a user runs them: the sandbox (`relaygram sandbox --limit-model
//! window`), the server (`relaygram serve`, SQLite) and this program, the load. The sandbox
//! refuses (429) any send that would put more than the limit into any sliding window, timed
//! at arrival; relaygram is told the same limits. Each run prints the share of the ceiling
//! reached ((sends − 1) / (last arrival − first arrival) against the limit), the 429s by
//! cause, the most sends the sandbox saw in any sliding window, and messages lost or doubled.
//!
//! ```sh
//! cargo build --release -p relaygram --bin relaygram --example limits_bench
//! ./target/release/examples/limits_bench                      # every scenario, once
//! ./target/release/examples/limits_bench scaled --runs 10     # scaled | real | group | group-real
//! ```
//!
//! Scenarios:
//! - `scaled`: 3,000 messages to 300 private chats at time scale ×10 (300/s per bot, 10/s per
//!   chat, 200/min per group);
//! - `real`: 300 messages to 30 private chats at Telegram's own limits (30/s, 1/s, 20/min);
//! - `group`: 200 messages to one supergroup at time scale ×30 (its 20/min becomes 600/min);
//! - `group-real`: 61 messages to one supergroup at Telegram's own 20/min, about three minutes,
//!   so the sliding minute binds three times over. 61 is `3 × 20 + 1` on purpose: for a strict
//!   window of 20 a minute, `20k + 1` sends need at least `k` minutes between the first arrival
//!   and the last however they are spread (one every 3 s, or 20 at once each minute), so the
//!   share of the ceiling, `(sends − 1) / (last − first)` against 20/min, tops out at exactly
//!   100 %. With other counts a burst-then-wait pacer could score above 100 % without breaking
//!   the limit.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::process::{Child, Command};

const ADMIN_KEY: &str = "rg_limits_bench_admin_key_0123456789";

#[derive(Debug, Clone, Copy)]
struct Scenario {
    name: &'static str,
    time_scale: f64,
    private_chats: usize,
    groups: usize,
    per_chat: usize,
}

const SCENARIOS: [Scenario; 4] = [
    Scenario {
        name: "scaled",
        time_scale: 10.0,
        private_chats: 300,
        groups: 0,
        per_chat: 10,
    },
    Scenario {
        name: "real",
        time_scale: 1.0,
        private_chats: 30,
        groups: 0,
        per_chat: 10,
    },
    Scenario {
        name: "group",
        time_scale: 30.0,
        private_chats: 0,
        groups: 1,
        per_chat: 200,
    },
    Scenario {
        name: "group-real",
        time_scale: 1.0,
        private_chats: 0,
        groups: 1,
        per_chat: 61,
    },
];

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The relaygram binary beside this example (`target/release/relaygram`), or `--bin`.
fn binary(args: &[String]) -> std::path::PathBuf {
    if let Some(i) = args.iter().position(|a| a == "--bin") {
        return args[i + 1].clone().into();
    }
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    dir.join("relaygram")
}

/// Kills the child when dropped (a failed run leaves no process behind).
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

async fn wait_ready(http: &reqwest::Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(url).send().await.is_err() {
        assert!(Instant::now() < deadline, "{url} did not come up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn post(http: &reqwest::Client, url: &str, body: Value) -> Value {
    let r = http
        .post(url)
        .bearer_auth(ADMIN_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert!(status.is_success(), "{url}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

async fn get(http: &reqwest::Client, url: &str) -> Value {
    http.get(url)
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// CPU seconds a process has used (user + system), from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

struct Figures {
    sent: i64,
    share: f64,
    too_many: Value,
    max_bot: i64,
    max_chat: i64,
    max_group: i64,
    lost: usize,
    doubled: usize,
    seconds: f64,
    cpu_ms_per_message: f64,
}

async fn run(bin: &std::path::Path, s: Scenario) -> Figures {
    let http = reqwest::Client::new();
    let dir = tempfile::tempdir().unwrap();
    let sandbox_port = free_port();
    let sandbox_url = format!("http://127.0.0.1:{sandbox_port}");
    let _sandbox = Process(
        Command::new(bin)
            .args(["sandbox", "--bind", &format!("127.0.0.1:{sandbox_port}")])
            .args(["--limits", "telegram", "--limit-model", "window"])
            .args(["--time-scale", &s.time_scale.to_string()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start the sandbox"),
    );
    wait_ready(&http, &format!("{sandbox_url}/sandbox/stats")).await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let scale = |v: f64| (v * s.time_scale).to_string();
    let server = Process(
        Command::new(bin)
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "RELAYGRAM_DATABASE_URL",
                format!("sqlite:{}", dir.path().join("bench.db").display()),
            )
            .env("RELAYGRAM_DATA_DIR", dir.path().join("data"))
            .env("RELAYGRAM_BIND", format!("127.0.0.1:{port}"))
            .env("RELAYGRAM_TELEGRAM_API_URL", &sandbox_url)
            .env("RELAYGRAM_ADMIN_KEY", ADMIN_KEY)
            .env("RELAYGRAM_LOG_LEVEL", "warn")
            .env("RELAYGRAM_LIMITS_PER_BOT_PER_SECOND", scale(30.0))
            .env("RELAYGRAM_LIMITS_PER_CHAT_PER_SECOND", scale(1.0))
            .env("RELAYGRAM_LIMITS_PER_GROUP_PER_MINUTE", scale(20.0))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start relaygram"),
    );
    let server_pid = server.0.id().unwrap();
    wait_ready(&http, &format!("{base}/healthz")).await;

    let tenant = post(
        &http,
        &format!("{base}/v1/tenants"),
        json!({"name": "bench"}),
    )
    .await;
    let tenant = tenant["id"].as_str().unwrap().to_string();
    let bot = post(
        &http,
        &format!("{sandbox_url}/sandbox/bots"),
        json!({"username": "bench_bot", "first_name": "Bench"}),
    )
    .await;
    let bot = post(
        &http,
        &format!("{base}/v1/bots"),
        json!({"token": bot["token"], "tenant_id": tenant}),
    )
    .await;
    let bot_id = bot["id"].as_str().unwrap().to_string();
    let mut chats = Vec::new();
    for i in 0..s.private_chats {
        let u = post(
            &http,
            &format!("{sandbox_url}/sandbox/users"),
            json!({"first_name": format!("U{i}")}),
        )
        .await;
        let id = u["id"].as_i64().unwrap();
        post(
            &http,
            &format!("{sandbox_url}/sandbox/users/{id}/messages"),
            json!({"bot": "bench_bot", "text": "hi"}),
        )
        .await;
        chats.push(id);
    }
    for i in 0..s.groups {
        let owner = post(
            &http,
            &format!("{sandbox_url}/sandbox/users"),
            json!({"first_name": format!("Owner{i}")}),
        )
        .await;
        let g = post(
            &http,
            &format!("{sandbox_url}/sandbox/groups"),
            json!({"title": format!("G{i}"), "type": "supergroup", "owner": owner["id"]}),
        )
        .await;
        let id = g["id"].as_i64().unwrap();
        post(
            &http,
            &format!("{sandbox_url}/sandbox/groups/{id}/bots"),
            json!({"bot": "bench_bot", "status": "member"}),
        )
        .await;
        chats.push(id);
    }
    // The setup's own sends (none today) are not measured: the figures below are deltas.
    let before = get(&http, &format!("{sandbox_url}/sandbox/stats")).await;
    let accepted_before = before["bots"][0]["accepted"].as_i64().unwrap_or(0);
    let total = (chats.len() * s.per_chat) as i64;

    let cpu0 = cpu_seconds(server_pid);
    let t0 = Instant::now();
    for round in 0..s.per_chat {
        for group in chats.chunks(500) {
            let to: Vec<Value> = group.iter().map(|c| json!({"chat_id": c})).collect();
            post(
                &http,
                &format!("{base}/v1/messages?tenant_id={tenant}"),
                json!({"bot_id": bot_id, "to": to, "text": format!("m{round}")}),
            )
            .await;
        }
    }
    // Done when the outbox has nothing left to send (every message sent or given up).
    let deadline = t0 + Duration::from_secs(600);
    loop {
        let st = get(&http, &format!("{base}/v1/stats?tenant_id={tenant}")).await;
        let b = &st["bots"][0];
        let left: i64 = ["queued", "sending", "paused"]
            .iter()
            .map(|k| b[k].as_i64().unwrap_or(0))
            .sum();
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "not drained: {st}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seconds = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(server_pid) - cpu0;
    let stats = get(&http, &format!("{sandbox_url}/sandbox/stats")).await;
    let b = &stats["bots"][0];
    let sent = b["accepted"].as_i64().unwrap_or(0) - accepted_before;
    let first = b["first_accepted_ms"].as_f64().unwrap_or(0.0);
    let last = b["last_accepted_ms"].as_f64().unwrap_or(0.0);
    let per_second = if sent > 1 && last > first {
        (sent - 1) as f64 / ((last - first) / 1000.0)
    } else {
        0.0
    };
    // The ceiling: the bot's limit, or for groups alone the groups' combined limit.
    let ceiling = if s.private_chats == 0 {
        20.0 * s.time_scale / 60.0 * s.groups as f64
    } else {
        (30.0 * s.time_scale).min(1.0 * s.time_scale * chats.len() as f64)
    };
    let mut lost = 0;
    let mut doubled = 0;
    for c in &chats {
        let t = get(
            &http,
            &format!("{sandbox_url}/sandbox/chats/{c}/messages?bot=bench_bot"),
        )
        .await;
        let mut seen: HashMap<String, usize> = HashMap::new();
        for m in t["messages"].as_array().into_iter().flatten() {
            if m["direction"] == "out" {
                *seen
                    .entry(m["text"].as_str().unwrap_or("").to_string())
                    .or_default() += 1;
            }
        }
        for round in 0..s.per_chat {
            match seen.get(&format!("m{round}")).copied().unwrap_or(0) {
                0 => lost += 1,
                1 => {}
                n => doubled += n - 1,
            }
        }
    }
    drop(server);
    Figures {
        sent,
        share: per_second / ceiling,
        too_many: b["too_many_requests_by_cause"].clone(),
        max_bot: b["max_bot_per_second"].as_i64().unwrap_or(-1),
        max_chat: b["max_private_chat_per_second"].as_i64().unwrap_or(-1),
        max_group: b["max_group_per_minute"].as_i64().unwrap_or(-1),
        lost,
        doubled,
        seconds,
        cpu_ms_per_message: cpu * 1000.0 / total.max(1) as f64,
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runs: usize = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .map_or(1, |v| v.parse().expect("--runs takes a number"));
    let bin = binary(&args);
    let picked: Vec<Scenario> = SCENARIOS
        .iter()
        .copied()
        .filter(|s| args.is_empty() || args.iter().any(|a| a == s.name))
        .collect();
    let picked = if picked.is_empty() {
        SCENARIOS.to_vec()
    } else {
        picked
    };
    println!(
        "| scenario | run | sent | share of ceiling | 429s (bot/chat/group) | max per bot-second | max per chat-second | max per group-minute | lost | doubled | drained after | server CPU per message |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for s in picked {
        for i in 1..=runs {
            let f = run(&bin, s).await;
            let n = |k: &str| f.too_many[k].as_i64().unwrap_or(-1);
            println!(
                "| {} | {i} | {} | {:.1} % | {}/{}/{} | {} | {} | {} | {} | {} | {:.2} s | {:.3} ms |",
                s.name,
                f.sent,
                f.share * 100.0,
                n("bot"),
                n("chat"),
                n("group"),
                f.max_bot,
                f.max_chat,
                f.max_group,
                f.lost,
                f.doubled,
                f.seconds,
                f.cpu_ms_per_message,
            );
        }
    }
}
