//! Scheduler benchmark: 10,000 schedules in a store (SQLite by default), the real
//! scheduler worker on the system clock, and a hand-off that only records when each run
//! reached it. Prints fire-time lateness (hand-off time minus occurrence time) p50/p99/max.
//!
//!     cargo run --release -p relaygram --example schedule_bench -- [--schedules 10000]
//!         [--scenario spread|burst] [--outbox] [--database-url postgres://…]
//!
//! `spread`: schedule i fires every minute at second i mod 60 (about 167 occurrences per
//! second with 10,000 schedules); the first full round after setup is measured.
//! `burst`: every schedule fires once, all at the same instant (everyone's "09:00").
//!
//! Sending is not measured here (delivery has its own benchmark). By default the hand-off
//! only records its time; with `--outbox` each run is really accepted into the delivery
//! outbox (validated and stored, keyed by its occurrence) before its time is recorded; no
//! sender runs, so the messages stay queued.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use relaygram::config::Config;
use relaygram::schedules::Scheduler;
use relaygram::schedules::handoff::{Handed, Handoff, Origin, Outbox, RunMessage};
use relaygram::schedules::service::{self, NewSchedule};
use relaygram::server;
use relaygram::services::{Principal, ServiceResult, Services};
use secrecy::SecretString;
use serde_json::{Value, json};

#[derive(Debug, Default)]
struct Recording {
    lateness_ms: Mutex<Vec<(i64, i64)>>,
    outbox: bool,
}

#[async_trait]
impl Handoff for Recording {
    fn idempotent(&self) -> bool {
        true
    }
    async fn validate(&self, _: &Services, _: &str, _: &Value) -> ServiceResult<()> {
        Ok(())
    }
    async fn submit(
        &self,
        services: &Services,
        tenant_id: &str,
        message: &Value,
        origin: &Origin,
    ) -> ServiceResult<Handed> {
        if self.outbox {
            let handed = Outbox.submit(services, tenant_id, message, origin).await?;
            let now = relaygram::ids::now_millis();
            self.lateness_ms
                .lock()
                .unwrap()
                .push((origin.occurrence_ms, now - origin.occurrence_ms));
            return Ok(handed);
        }
        let now = relaygram::ids::now_millis();
        self.lateness_ms
            .lock()
            .unwrap()
            .push((origin.occurrence_ms, now - origin.occurrence_ms));
        Ok(Handed {
            message_ids: vec![format!("msg_{}", origin.run_id)],
            broadcast_id: None,
            note: None,
        })
    }
    async fn submit_many(
        &self,
        services: &Services,
        runs: &[RunMessage],
    ) -> Vec<ServiceResult<Handed>> {
        if !self.outbox {
            let mut answers = Vec::new();
            for run in runs {
                answers.push(
                    self.submit(services, &run.tenant_id, &run.message, &run.origin)
                        .await,
                );
            }
            return answers;
        }
        // As the scheduler hands a batch to the outbox: one acceptance for all of it.
        let answers = Outbox.submit_many(services, runs).await;
        let now = relaygram::ids::now_millis();
        let mut lateness = self.lateness_ms.lock().unwrap();
        for (run, answer) in runs.iter().zip(&answers) {
            if answer.is_ok() {
                let at = run.origin.occurrence_ms;
                lateness.push((at, now - at));
            }
        }
        answers
    }
}

struct Args {
    schedules: usize,
    burst: bool,
    outbox: bool,
    database_url: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        schedules: 10_000,
        burst: false,
        outbox: false,
        database_url: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().expect("flag needs a value");
        match flag.as_str() {
            "--schedules" => a.schedules = value().parse().expect("a number"),
            "--scenario" => a.burst = value() == "burst",
            "--outbox" => a.outbox = true,
            "--database-url" => a.database_url = Some(value()),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args();
    let dir = tempfile::tempdir()?;
    let database_url = args
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite:{}", dir.path().join("bench.db").display()));
    let config = Config {
        database_url: SecretString::from(database_url),
        data_dir: dir.path().join("data"),
        log_level: "warn".into(),
        ..Config::default()
    };
    relaygram::logging::init(&config);
    let services = server::open_services(&config).await?;
    let tenant = services
        .create_tenant(&Principal::Operator, "bench")
        .await?;
    let recording = Arc::new(Recording {
        outbox: args.outbox,
        ..Recording::default()
    });
    // A bot for the outbox to accept messages for (never started: nothing is sent).
    let now = relaygram::ids::now_millis();
    let bot = relaygram::store::BotRecord {
        id: relaygram::ids::new_id("bot"),
        tenant_id: tenant.id.clone(),
        telegram_id: 7_000_000_001,
        username: "bench_bot".into(),
        first_name: "Bench".into(),
        token_sealed: services
            .secrets
            .seal("7000000001:AAbenchbenchbenchbenchbenchbenchbench"),
        webhook_secret_sealed: None,
        webhook_url: None,
        mode: relaygram::store::BotMode::Polling,
        enabled: true,
        created_at: now,
        updated_at: now,
        allowed_updates: None,
        builtins_off: Vec::new(),
    };
    services.store.insert_bot(&bot).await?;
    let me = Principal::Operator;

    // All burst schedules share one instant, far enough ahead to finish the setup.
    let setup_secs = (args.schedules as i64 / 1000 + 10).max(10);
    let burst_at = (relaygram::ids::now_millis() / 1000 + setup_secs) * 1000;
    let burst_text = relaygram::ids::rfc3339(burst_at);
    let started = Instant::now();
    for i in 0..args.schedules {
        let (cron, start_at, end_at) = if args.burst {
            (
                "* * * * * *".to_string(),
                Some(burst_text.clone()),
                Some(burst_text.clone()),
            )
        } else {
            (format!("{} * * * * *", i % 60), None, None)
        };
        service::create(
            &services,
            recording.as_ref(),
            &me,
            NewSchedule {
                tenant_id: Some(tenant.id.clone()),
                name: format!("s{i}"),
                cron: Some(cron),
                timezone: Some("Europe/Berlin".into()),
                message: json!({"bot_id": bot.id, "to": {"chat_id": 100_000 + i}, "text": "tick"}),
                start_at,
                end_at,
                ..NewSchedule::default()
            },
        )
        .await?;
    }
    let setup = started.elapsed();
    // Spread: measure occurrences from the next whole second on, one full round.
    let measure_from = (relaygram::ids::now_millis() / 1000 + 1) * 1000;
    eprintln!(
        "created {} schedules in {:.1} s; scheduler running",
        args.schedules,
        setup.as_secs_f64()
    );

    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(Scheduler::new(services.clone(), recording.clone()).run(shutdown));
    let deadline = Instant::now() + Duration::from_secs(180);
    let lateness: Vec<i64> = loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let measured: Vec<i64> = recording
            .lateness_ms
            .lock()
            .unwrap()
            .iter()
            .filter(|(at, _)| args.burst || *at >= measure_from)
            .map(|(_, late)| *late)
            .collect();
        if measured.len() >= args.schedules || Instant::now() > deadline {
            break measured;
        }
    };
    let _ = stop.send(true);
    let _ = worker.await;
    let mut sorted = lateness.clone();
    sorted.sort_unstable();
    println!(
        "scenario: {}, schedules: {}, engine: {}, hand-off: {}",
        if args.burst { "burst" } else { "spread" },
        args.schedules,
        services.store.engine(),
        if args.outbox {
            "outbox acceptance"
        } else {
            "record only"
        }
    );
    println!("runs measured: {}", sorted.len());
    if !sorted.is_empty() {
        println!(
            "fire-time lateness: p50 {} ms, p99 {} ms, max {} ms",
            percentile(&sorted, 0.5),
            percentile(&sorted, 0.99),
            sorted[sorted.len() - 1]
        );
    }
    services.store.close().await;
    Ok(())
}
