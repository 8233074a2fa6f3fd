//! `relaygram schedules …`: the operator's view of schedules (works on the store directly,
//! with admin rights).

use clap::{ArgGroup, Subcommand};

use super::handoff::default_handoff;
use super::service::{self, NewSchedule, SchedulePatch};
use crate::cli::page::PageArgs;
use crate::ids::rfc3339;
use crate::services::{Principal, ServiceError, Services};
use crate::store::{CatchUp, RunRecord, ScheduleRecord};

/// `relaygram schedules …`
#[derive(Debug, Subcommand)]
pub enum SchedulesCommand {
    /// List schedules with their next fire times.
    List {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
        /// Paging.
        #[command(flatten)]
        page: PageArgs,
    },
    /// Add a schedule and print it with its next five fire times.
    #[command(group(ArgGroup::new("when").required(true).args(["cron", "every"])))]
    Add {
        /// Owning tenant.
        #[arg(long)]
        tenant: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Cron expression: 5 fields, or 6 with seconds first.
        #[arg(long)]
        cron: Option<String>,
        /// Interval: 15m, 1h, 1d.
        #[arg(long)]
        every: Option<String>,
        /// IANA time zone (with --recipient-timezone, the zone of recipients without one).
        #[arg(long, default_value = "UTC")]
        timezone: String,
        /// Read the cron in each recipient's time zone (9 AM for everyone, wherever they
        /// are); only with --cron.
        #[arg(long)]
        recipient_timezone: bool,
        /// The message, as the JSON `POST /v1/messages` takes.
        #[arg(long)]
        message: String,
        /// Missed occurrences after downtime: skip or once.
        #[arg(long, default_value = "skip", value_parser = ["skip", "once"])]
        catch_up: String,
        /// No occurrence before (RFC 3339).
        #[arg(long)]
        start_at: Option<String>,
        /// No occurrence after (RFC 3339).
        #[arg(long)]
        end_at: Option<String>,
        /// Create it paused.
        #[arg(long)]
        paused: bool,
    },
    /// Fire a schedule once now and print the run.
    Run {
        /// Schedule id (`sch_…`).
        id: String,
    },
    /// Pause a schedule (occurrences while paused are not caught up).
    Pause {
        /// Schedule id.
        id: String,
    },
    /// Resume a paused schedule from now.
    Resume {
        /// Schedule id.
        id: String,
    },
    /// Remove a schedule and its run history.
    Remove {
        /// Schedule id.
        id: String,
    },
}

fn print_schedule(s: &ScheduleRecord) {
    let when = match (&s.cron, &s.every) {
        (Some(cron), _) => format!("cron {cron:?}"),
        (None, Some(every)) => format!("every {every}"),
        (None, None) => "-".into(),
    };
    let next: Vec<String> = service::next_fire_times(s)
        .into_iter()
        .map(rfc3339)
        .collect();
    let zone = if s.recipient_timezone {
        format!("each recipient's zone (default {})", s.timezone)
    } else {
        s.timezone.clone()
    };
    let local = match service::next_local_times(s) {
        Some(times) if !times.is_empty() => format!("\tlocal: {}", times.join(", ")),
        _ => String::new(),
    };
    println!(
        "{}\t{}\t{}\t{when}\t{zone}\t{}\tnext: {}{local}",
        s.id,
        s.tenant_id,
        s.name,
        if s.enabled { "enabled" } else { "paused" },
        if next.is_empty() {
            "-".to_string()
        } else {
            next.join(", ")
        }
    );
}

fn print_run(r: &RunRecord) {
    println!(
        "{}\t{}\t{}\t{}\t{}",
        r.id,
        r.kind.as_str(),
        r.state.as_str(),
        if r.message_ids.is_empty() {
            r.broadcast_id.clone().unwrap_or_else(|| "-".into())
        } else {
            r.message_ids.join(",")
        },
        r.error.as_deref().unwrap_or("")
    );
}

fn explain(e: ServiceError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// Runs a `schedules` subcommand.
pub async fn run(services: &Services, command: SchedulesCommand) -> anyhow::Result<()> {
    let me = Principal::Operator;
    let handoff = default_handoff();
    match command {
        SchedulesCommand::List { tenant, page } => {
            let listed = service::list(services, &me, tenant.as_deref(), &page.page())
                .await
                .map_err(explain)?;
            for s in &listed.items {
                print_schedule(s);
            }
            if let Some(next) = listed.next_cursor {
                eprintln!("more: --after {next}");
            }
        }
        SchedulesCommand::Add {
            tenant,
            name,
            cron,
            every,
            timezone,
            recipient_timezone,
            message,
            catch_up,
            start_at,
            end_at,
            paused,
        } => {
            let message = serde_json::from_str(&message)
                .map_err(|e| anyhow::anyhow!("--message: not valid JSON: {e}"))?;
            let s = service::create(
                services,
                handoff.as_ref(),
                &me,
                NewSchedule {
                    tenant_id: Some(tenant),
                    name,
                    cron,
                    every,
                    timezone: Some(timezone),
                    recipient_timezone: Some(recipient_timezone),
                    message,
                    enabled: Some(!paused),
                    catch_up: Some(if catch_up == "once" {
                        CatchUp::Once
                    } else {
                        CatchUp::Skip
                    }),
                    start_at,
                    end_at,
                },
            )
            .await
            .map_err(explain)?;
            print_schedule(&s);
        }
        SchedulesCommand::Run { id } => {
            let run = service::run_now(services, handoff.as_ref(), &me, &id)
                .await
                .map_err(explain)?;
            print_run(&run);
            if run.state != crate::store::RunState::Submitted {
                anyhow::bail!(
                    "run {} {}: {}",
                    run.id,
                    run.state.as_str(),
                    run.error.unwrap_or_default()
                );
            }
        }
        SchedulesCommand::Pause { id } => {
            let s = set_enabled(services, handoff.as_ref(), &me, &id, false).await?;
            print_schedule(&s);
        }
        SchedulesCommand::Resume { id } => {
            let s = set_enabled(services, handoff.as_ref(), &me, &id, true).await?;
            print_schedule(&s);
        }
        SchedulesCommand::Remove { id } => {
            service::delete(services, &me, &id).await.map_err(explain)?;
            println!("removed {id}");
        }
    }
    Ok(())
}

async fn set_enabled(
    services: &Services,
    handoff: &dyn super::handoff::Handoff,
    me: &Principal,
    id: &str,
    enabled: bool,
) -> anyhow::Result<ScheduleRecord> {
    service::update(
        services,
        handoff,
        me,
        id,
        SchedulePatch {
            enabled: Some(enabled),
            ..SchedulePatch::default()
        },
    )
    .await
    .map_err(explain)
}
