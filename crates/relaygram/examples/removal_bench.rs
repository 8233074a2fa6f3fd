//! Removal benchmark (issue #17): how late relaygram removes members whose paid access
//! ended, when 10,000 entitlements end in the same minute, paced at the limits it applies.
//!
//! Three processes, as a user runs them: the sandbox (`relaygram sandbox --limits telegram
//! --limit-model window`), the server (`relaygram serve`, SQLite, Telegram's own limits: 30
//! calls/s per bot, 1/s per private chat) and this program, the load. The setup makes a
//! supergroup with the bot as administrator (`can_invite_users`, `can_restrict_members`),
//! binds it as a gated chat (grace 0, no reminders), adds N users as members (relaygram sees
//! each join as a `chat_member` update and marks the membership `member`), then grants each
//! user an entitlement by `telegram_user_id` whose `ends_at` lies `--lead` seconds after the
//! grants began, the N ends spread evenly over `--spread` seconds. Then it waits until the
//! sandbox has seen an `unbanChatMember` for every user and relaygram has every membership
//! `removed`.
//!
//! Lateness of a removal is the time the sandbox recorded its `unbanChatMember` (its call log,
//! `GET /sandbox/calls`, stamped in whole seconds: the midpoint of the second is used, so
//! ±0.5 s) minus the entitlement's `ends_at`; relaygram's own `left_at` (when the sweep saw the
//! job sent and marked the membership `removed`, in milliseconds) gives a second figure. The
//! pace's own lower bound: one bot may make 30 calls a second, so with the ends in hand the
//! earliest the k-th removal can be made is `max(end_k, t_{k−1} + 1/30 s)` (FIFO in order of
//! `ends_at`: for 10,000 ends at one instant that is k/30 s, 333 s for the last); the ideal
//! lateness is that minus `end_k`, and its p50/p99 are printed beside the measured ones.
//!
//! Lost or doubled: the sandbox's call log (polled every second, merged) must hold exactly one
//! accepted `unbanChatMember` per user, and its member list at the end must have every user
//! `left`. Memory is the server process's peak RSS (`VmHWM` in `/proc/<pid>/status`).
//!
//! ```sh
//! cargo build --release -p relaygram --bin relaygram --example removal_bench
//! ./target/release/examples/removal_bench                  # 10,000 users
//! ./target/release/examples/removal_bench --users 500      # a quick run
//! ```
//!
//! Options: `--users N` (10,000), `--lead S` (seconds from the first grant to the first end,
//! 90), `--spread S` (the ends are spread over S seconds, 60), `--concurrency N` (setup
//! requests in flight, 16), `--bin PATH` (the relaygram binary; default beside this example).

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

const ADMIN_KEY: &str = "rg_removal_bench_admin_key_0123456789";
const BOT: &str = "bench_gate_bot";
/// Telegram's calls per second per bot, as relaygram applies them.
const PER_BOT_PER_SECOND: f64 = 30.0;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The relaygram binary beside this example (`target/release/relaygram`), or `--bin`.
fn binary(args: &[String]) -> std::path::PathBuf {
    if let Some(v) = opt(args, "--bin") {
        return v.into();
    }
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    dir.join("relaygram")
}

fn opt(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn num<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    opt(args, name).map_or(default, |v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name} takes a number"))
    })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
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
    let r = http.get(url).bearer_auth(ADMIN_KEY).send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert!(status.is_success(), "{url}: {status} {text}");
    serde_json::from_str(&text).unwrap()
}

/// A `/proc/<pid>/status` figure in kB (`VmHWM`, `VmRSS`).
fn status_kb(pid: u32, key: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// CPU seconds a process has used (user + system), from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Every membership of the gated chat in `state`, page by page.
async fn memberships(
    http: &reqwest::Client,
    base: &str,
    tenant: &str,
    gated: &str,
    state: &str,
) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!(
            "{base}/v1/memberships?tenant_id={tenant}&gated_chat_id={gated}&state={state}&limit=200"
        );
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let page = get(http, &url).await;
        out.extend(page["data"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(c) => after = Some(c.to_string()),
            None => break,
        }
    }
    out
}

/// One accepted-or-not Bot API call from the sandbox's log.
#[derive(Debug, Clone, PartialEq)]
struct Call {
    at: i64,
    user: i64,
    status: u64,
}

fn user_of(params: &Value) -> i64 {
    let v = &params["user_id"];
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

/// The sandbox keeps its last 10,000 calls of every method and bot: each poll's newest
/// `unbanChatMember` calls are appended after the last ones already seen.
#[derive(Default)]
struct CallLog {
    calls: Vec<Call>,
    /// Polls that did not overlap the previous one (calls may have been missed).
    gaps: usize,
}

impl CallLog {
    fn merge(&mut self, fresh: Vec<Call>) {
        if self.calls.is_empty() {
            self.calls = fresh;
            return;
        }
        let k = self.calls.len().min(20);
        let tail = &self.calls[self.calls.len() - k..];
        let found = (k..=fresh.len())
            .rev()
            .find(|&end| fresh[end - k..end] == *tail);
        match found {
            Some(end) => self.calls.extend_from_slice(&fresh[end..]),
            None if fresh.is_empty() => {}
            None => {
                self.gaps += 1;
                let last = self.calls.last().unwrap().at;
                self.calls.extend(fresh.into_iter().filter(|c| c.at > last));
            }
        }
    }
}

async fn poll_calls(http: &reqwest::Client, sandbox_url: &str) -> Vec<Call> {
    let v = get(
        http,
        &format!("{sandbox_url}/sandbox/calls?bot={BOT}&method=unbanChatMember&limit=10000"),
    )
    .await;
    v["calls"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| Call {
            at: c["at"].as_i64().unwrap_or(0),
            user: user_of(&c["params"]),
            status: c["status"].as_u64().unwrap_or(0),
        })
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v
}

fn parse_ms(v: &Value) -> Option<i64> {
    v.as_str()?
        .parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let users: usize = num(&args, "--users", 10_000);
    let lead: f64 = num(&args, "--lead", 90.0);
    let spread: f64 = num(&args, "--spread", 60.0);
    let conc: usize = num(&args, "--concurrency", 16);
    let bin = binary(&args);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let log = |what: &str| eprintln!("[{:7.1} s] {what}", started.elapsed().as_secs_f64());

    let sandbox_port = free_port();
    let sandbox_url = format!("http://127.0.0.1:{sandbox_port}");
    let sandbox = Process(
        Command::new(&bin)
            .args(["sandbox", "--bind", &format!("127.0.0.1:{sandbox_port}")])
            .args(["--limits", "telegram", "--limit-model", "window"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start the sandbox"),
    );
    let sandbox_pid = sandbox.0.id().unwrap();
    wait_ready(&http, &format!("{sandbox_url}/sandbox/stats")).await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let server = Process(
        Command::new(&bin)
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
            .env(
                "RELAYGRAM_LIMITS_PER_BOT_PER_SECOND",
                PER_BOT_PER_SECOND.to_string(),
            )
            .env("RELAYGRAM_LIMITS_PER_CHAT_PER_SECOND", "1")
            .env("RELAYGRAM_LIMITS_PER_GROUP_PER_MINUTE", "20")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start relaygram"),
    );
    let server_pid = server.0.id().unwrap();
    wait_ready(&http, &format!("{base}/healthz")).await;

    // A tenant, its bot, a supergroup with the bot as administrator, bound as a gated chat.
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
        json!({"username": BOT, "first_name": "Gate"}),
    )
    .await;
    let bot = post(
        &http,
        &format!("{base}/v1/bots"),
        json!({"token": bot["token"], "tenant_id": tenant}),
    )
    .await;
    let bot_id = bot["id"].as_str().unwrap().to_string();
    let owner = post(
        &http,
        &format!("{sandbox_url}/sandbox/users"),
        json!({"first_name": "Owner"}),
    )
    .await;
    let group = post(
        &http,
        &format!("{sandbox_url}/sandbox/groups"),
        json!({"title": "VIP", "type": "supergroup", "owner": owner["id"]}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    post(
        &http,
        &format!("{sandbox_url}/sandbox/groups/{group}/bots"),
        json!({"bot": BOT, "status": "administrator",
               "rights": {"can_invite_users": true, "can_restrict_members": true}}),
    )
    .await;
    let gated = post(
        &http,
        &format!("{base}/v1/gated-chats"),
        json!({"tenant_id": tenant, "bot_id": bot_id, "chat_id": group, "name": "VIP",
               "grace_seconds": 0, "reminders": [], "remove_unentitled": false}),
    )
    .await;
    let gated = gated["id"].as_str().unwrap().to_string();
    log("gated chat bound");
    // Join updates are only made once the bot asked for `chat_member` (as on Telegram):
    // wait for relaygram's first getUpdates with its allowed_updates.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = get(
            &http,
            &format!("{sandbox_url}/sandbox/calls?bot={BOT}&method=getUpdates&limit=5"),
        )
        .await;
        if !v["calls"].as_array().is_none_or(|c| c.is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "relaygram never polled the bot");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // N users, each a member of the group (relaygram sees the joins).
    let ids: Vec<i64> = futures_util::stream::iter(0..users)
        .map(|i| {
            let http = http.clone();
            let url = format!("{sandbox_url}/sandbox/users");
            async move {
                post(&http, &url, json!({"first_name": format!("U{i}")})).await["id"]
                    .as_i64()
                    .unwrap()
            }
        })
        .buffered(conc)
        .collect()
        .await;
    futures_util::stream::iter(ids.clone())
        .map(|id| {
            let http = http.clone();
            let url = format!("{sandbox_url}/sandbox/groups/{group}/members");
            async move { post(&http, &url, json!({"user_id": id})).await }
        })
        .buffer_unordered(conc)
        .collect::<Vec<_>>()
        .await;
    log(&format!("{users} users joined the group in the sandbox"));
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let n = memberships(&http, &base, &tenant, &gated, "member")
            .await
            .len();
        if n >= users {
            break;
        }
        assert!(Instant::now() < deadline, "only {n} memberships are member");
        eprintln!("  {n} of {users} memberships `member`");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    log("relaygram has every membership `member`");

    // The grants: ends spread evenly over `spread` seconds, the first `lead` seconds away.
    let t0 = now_ms();
    let first_end = t0 + (lead * 1000.0) as i64;
    let ends: HashMap<i64, i64> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let off = if users > 1 {
                (spread * 1000.0 * i as f64 / (users - 1) as f64) as i64
            } else {
                0
            };
            (*id, first_end + off)
        })
        .collect();
    let granting = Instant::now();
    futures_util::stream::iter(ids.clone())
        .map(|id| {
            let http = http.clone();
            let url = format!("{base}/v1/entitlements");
            let ends_at = jiff::Timestamp::from_millisecond(ends[&id])
                .unwrap()
                .to_string();
            let body = json!({"tenant_id": tenant, "telegram_user_id": id,
                "gated_chat_ids": [gated], "ends_at": ends_at, "source_key": format!("order-{id}")});
            async move { post(&http, &url, body).await }
        })
        .buffer_unordered(conc)
        .collect::<Vec<_>>()
        .await;
    let grant_s = granting.elapsed().as_secs_f64();
    let granted_at = now_ms();
    log(&format!(
        "{users} entitlements granted in {grant_s:.1} s ({:.0}/s); first end in {:.1} s",
        users as f64 / grant_s,
        (first_end - granted_at) as f64 / 1000.0
    ));
    if granted_at > first_end {
        eprintln!(
            "warning: the grants ended {:.1} s after the first ends_at: raise --lead",
            (granted_at - first_end) as f64 / 1000.0
        );
    }

    // Watch the sandbox's call log until every user had an unbanChatMember.
    let cpu0 = cpu_seconds(server_pid);
    let mut calls = CallLog::default();
    let last_end = ends.values().copied().max().unwrap_or(first_end);
    let budget_ms = (users as f64 / PER_BOT_PER_SECOND * 3000.0) as i64 + 180_000;
    let mut last_report = Instant::now();
    loop {
        calls.merge(poll_calls(&http, &sandbox_url).await);
        let mut removed: Vec<i64> = calls
            .calls
            .iter()
            .filter(|c| c.status == 200)
            .map(|c| c.user)
            .collect();
        removed.sort_unstable();
        removed.dedup();
        if removed.len() >= users {
            break;
        }
        if last_report.elapsed() >= Duration::from_secs(30) {
            log(&format!(
                "{} of {users} removed in the sandbox; server RSS {:.0} MB",
                removed.len(),
                status_kb(server_pid, "VmRSS:") / 1024.0
            ));
            last_report = Instant::now();
        }
        if now_ms() > last_end + budget_ms {
            eprintln!("giving up: {} of {users} removed", removed.len());
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    log("the sandbox saw an unbanChatMember for every user");
    let mut removed_rg = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        removed_rg = memberships(&http, &base, &tenant, &gated, "removed").await;
        if removed_rg.len() >= users {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    log(&format!(
        "relaygram has {} memberships `removed`",
        removed_rg.len()
    ));
    // A last look for late doubles.
    tokio::time::sleep(Duration::from_secs(3)).await;
    calls.merge(poll_calls(&http, &sandbox_url).await);
    let cpu = cpu_seconds(server_pid) - cpu0;
    let peak_mb = status_kb(server_pid, "VmHWM:") / 1024.0;
    let rss_mb = status_kb(server_pid, "VmRSS:") / 1024.0;
    let sandbox_peak_mb = status_kb(sandbox_pid, "VmHWM:") / 1024.0;

    // Per user: accepted unbanChatMember calls, the first one's time.
    let mut per_user: HashMap<i64, (usize, i64)> = HashMap::new();
    let mut refused = 0;
    for c in &calls.calls {
        if c.status != 200 {
            refused += 1;
            continue;
        }
        let e = per_user.entry(c.user).or_insert((0, c.at));
        e.0 += 1;
        e.1 = e.1.min(c.at);
    }
    let missed = ids.iter().filter(|id| !per_user.contains_key(id)).count();
    let doubled: usize = per_user.values().map(|(n, _)| n.saturating_sub(1)).sum();
    let groups = get(&http, &format!("{sandbox_url}/sandbox/groups")).await;
    let g = groups
        .as_array()
        .or_else(|| groups["groups"].as_array())
        .unwrap()
        .iter()
        .find(|g| g["id"] == json!(group))
        .cloned()
        .unwrap();
    let still_in = ids
        .iter()
        .filter(|id| {
            // A user who left is `left`, or gone from the list.
            g["members"][id.to_string()]
                .as_str()
                .is_some_and(|s| s != "left")
        })
        .count();

    let late_sandbox = sorted(
        per_user
            .iter()
            .filter_map(|(u, (_, at))| ends.get(u).map(|e| (at * 1000 + 500 - e) as f64 / 1000.0))
            .collect(),
    );
    let late_rg = sorted(
        removed_rg
            .iter()
            .filter_map(|m| {
                let end = ends.get(&m["telegram_user_id"].as_i64()?)?;
                Some((parse_ms(&m["left_at"])? - end) as f64 / 1000.0)
            })
            .collect(),
    );
    // The pace's lower bound: FIFO by ends_at, one call every 1/30 s.
    let mut by_end: Vec<i64> = ends.values().copied().collect();
    by_end.sort_unstable();
    let gap = 1000.0 / PER_BOT_PER_SECOND;
    let mut t = f64::MIN;
    let ideal = sorted(
        by_end
            .iter()
            .map(|&e| {
                t = (e as f64).max(t + gap);
                (t - e as f64) / 1000.0
            })
            .collect(),
    );
    let first_at = per_user.values().map(|v| v.1).min().unwrap_or(0);
    let last_at = per_user.values().map(|v| v.1).max().unwrap_or(0);
    let rate = if last_at > first_at {
        (per_user.len() as f64 - 1.0) / (last_at - first_at) as f64
    } else {
        f64::NAN
    };
    let ideal_drain = ideal.last().copied().unwrap_or(0.0)
        + (by_end.last().unwrap_or(&0) - by_end.first().unwrap_or(&0)) as f64 / 1000.0;
    let drain = (last_at * 1000 + 500 - by_end.first().unwrap_or(&0)) as f64 / 1000.0;

    println!(
        "removals: {users} entitlements ending over {spread:.0} s, grace 0, limits 30/s per bot, 1/s per chat"
    );
    println!(
        "setup: grants {grant_s:.1} s ({:.0}/s); call-log gaps {}",
        users as f64 / grant_s,
        calls.gaps
    );
    println!("| lateness | p50 | p99 | max |");
    println!("|---|---|---|---|");
    let row = |name: &str, v: &[f64]| {
        println!(
            "| {name} | {:.1} s | {:.1} s | {:.1} s |",
            percentile(v, 50.0),
            percentile(v, 99.0),
            v.last().copied().unwrap_or(f64::NAN)
        );
    };
    row("ideal at 30/s (FIFO by ends_at)", &ideal);
    row("sandbox saw unbanChatMember (±0.5 s)", &late_sandbox);
    row("relaygram marked `removed` (left_at)", &late_rg);
    println!(
        "| measured / ideal (sandbox) | {:.2} | {:.2} | {:.2} |",
        percentile(&late_sandbox, 50.0) / percentile(&ideal, 50.0),
        percentile(&late_sandbox, 99.0) / percentile(&ideal, 99.0),
        late_sandbox.last().unwrap_or(&f64::NAN) / ideal.last().unwrap_or(&f64::NAN)
    );
    println!(
        "pace: {rate:.2} removals/s between the first and the last ({:.1} % of 30/s); all removed {drain:.1} s after the first end (ideal {ideal_drain:.1} s, ratio {:.2})",
        rate / PER_BOT_PER_SECOND * 100.0,
        drain / ideal_drain
    );
    println!(
        "missed: {missed} (no unbanChatMember); doubled: {doubled} (extra accepted unbanChatMember); refused calls: {refused}; still in the group (or banned) in the sandbox at the end: {still_in}; relaygram `removed`: {} of {users}",
        removed_rg.len()
    );
    println!(
        "server: peak RSS (VmHWM) {peak_mb:.1} MB, RSS at the end {rss_mb:.1} MB, CPU from the end of the grants {cpu:.1} s ({:.2} ms per removal); sandbox peak RSS {sandbox_peak_mb:.1} MB",
        cpu * 1000.0 / users as f64
    );
    drop(server);
    drop(sandbox);
}
