//! The rules for schedules: what a valid schedule is, who may see it, when it fires next,
//! what happens to occurrences missed during downtime, and running one now.

use serde_json::Value;

use super::handoff::{Handoff, Origin, RunMessage};
use super::occurrence::{CronExpr, Interval, Recurrence, Timing, TimingError, Zone};
use crate::ids::new_id;
use crate::services::{Principal, ServiceError, ServiceResult, Services};
use crate::store::{
    Advance, CatchUp, Listed, Page, RunKind, RunOutcome, RunRecord, RunState, ScheduleRecord,
};

/// How many fire times answers show.
pub const SHOWN_FIRE_TIMES: usize = 5;
/// An occurrence found this late (or later) was missed, not merely slow: `catch_up`
/// decides about it. Below this, it fires.
pub const MISFIRE_GRACE_MS: i64 = 60_000;
/// Largest stored message body.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;

fn invalid(field: &'static str, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid {
        field,
        message: message.into(),
    }
}

impl From<TimingError> for ServiceError {
    fn from(e: TimingError) -> Self {
        ServiceError::Invalid {
            field: e.field,
            message: e.message,
        }
    }
}

/// A new schedule, as asked for.
#[derive(Debug, Clone, Default)]
pub struct NewSchedule {
    /// Owning tenant: required with an admin key, implied by a tenant key.
    pub tenant_id: Option<String>,
    /// Display name.
    pub name: String,
    /// Cron expression (or `every`).
    pub cron: Option<String>,
    /// Interval (or `cron`).
    pub every: Option<String>,
    /// IANA zone; UTC when omitted.
    pub timezone: Option<String>,
    /// The message body.
    pub message: Value,
    /// Fires when true (default).
    pub enabled: Option<bool>,
    /// Missed occurrences (default skip).
    pub catch_up: Option<CatchUp>,
    /// RFC 3339.
    pub start_at: Option<String>,
    /// RFC 3339.
    pub end_at: Option<String>,
}

/// Changes to a schedule; `None` leaves a field as it is. `Some(None)` clears an optional
/// one.
#[derive(Debug, Clone, Default)]
pub struct SchedulePatch {
    /// New name.
    pub name: Option<String>,
    /// New cron expression (replaces `every`).
    pub cron: Option<String>,
    /// New interval (replaces `cron`).
    pub every: Option<String>,
    /// New zone.
    pub timezone: Option<String>,
    /// New message.
    pub message: Option<Value>,
    /// Pause (false) or resume (true).
    pub enabled: Option<bool>,
    /// New catch-up rule.
    pub catch_up: Option<CatchUp>,
    /// New start (RFC 3339), or cleared.
    pub start_at: Option<Option<String>>,
    /// New end (RFC 3339), or cleared.
    pub end_at: Option<Option<String>>,
}

/// The timing rules of a stored schedule.
pub fn timing_of(s: &ScheduleRecord) -> Result<Timing, TimingError> {
    let recurrence = match (&s.cron, &s.every) {
        (Some(cron), _) => Recurrence::Cron(Box::new(CronExpr::parse(cron)?)),
        (None, Some(every)) => Recurrence::Every(Interval::parse(every)?),
        (None, None) => {
            return Err(TimingError {
                field: "cron",
                message: "either cron or every is required".into(),
            });
        }
    };
    Ok(Timing {
        recurrence,
        zone: Zone::parse(&s.timezone)?,
        start_at: s.start_at,
        end_at: s.end_at,
        anchor: s.anchor_at,
    })
}

/// What to do with a due schedule at `now` (pure: the claimer calls it inside its
/// transaction). An occurrence found less than [`MISFIRE_GRACE_MS`] late fires; one found
/// later was missed (the service was down or stopped): `skip` drops it and every other
/// missed one, `once` fires one run for all of them. Either way the schedule then waits
/// for its first occurrence after `now`.
pub fn decide(timing: &Timing, catch_up: CatchUp, due: i64, now: i64) -> Advance {
    if now - due < MISFIRE_GRACE_MS {
        return Advance {
            next_fire_at: timing.next_after(due),
            run: Some((due, RunKind::Scheduled)),
        };
    }
    Advance {
        next_fire_at: timing.next_after(now),
        run: match catch_up {
            CatchUp::Skip => None,
            CatchUp::Once => Some((due, RunKind::CatchUp)),
        },
    }
}

/// The next fire times of a schedule as stored (none while paused or finished).
pub fn next_fire_times(s: &ScheduleRecord) -> Vec<i64> {
    let Some(next) = s.next_fire_at.filter(|_| s.enabled) else {
        return Vec::new();
    };
    let mut times = vec![next];
    if let Ok(timing) = timing_of(s) {
        times.extend(timing.next_n(next, SHOWN_FIRE_TIMES - 1));
    }
    times
}

fn parse_time(field: &'static str, text: &str) -> ServiceResult<i64> {
    text.trim()
        .parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|_| {
            invalid(
                field,
                "must be an RFC 3339 time such as 2026-11-21T09:00:00Z",
            )
        })
}

fn validate_name(name: &str) -> ServiceResult<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(invalid(
            "name",
            "must be 1 to 200 characters without control characters",
        ));
    }
    Ok(name.to_string())
}

fn serialize_message(message: &Value) -> ServiceResult<String> {
    let text = serde_json::to_string(message).map_err(|e| invalid("message", e.to_string()))?;
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(invalid("message", "must be at most 64 KiB of JSON"));
    }
    Ok(text)
}

/// The tenant a call acts on: a tenant key's own, or the one an admin key names.
async fn acting_tenant(
    services: &Services,
    principal: &Principal,
    asked: Option<&str>,
) -> ServiceResult<String> {
    match (principal, asked) {
        (Principal::Tenant { tenant_id, .. }, None) => Ok(tenant_id.clone()),
        (Principal::Tenant { tenant_id, .. }, Some(asked)) if tenant_id == asked => {
            Ok(tenant_id.clone())
        }
        (Principal::Tenant { .. }, Some(asked)) => Err(ServiceError::NotFound {
            kind: "tenant",
            id: asked.to_string(),
        }),
        (_, None) => Err(invalid("tenant_id", "is required with an admin key")),
        (_, Some(asked)) => {
            services
                .store
                .get_tenant(asked)
                .await?
                .ok_or_else(|| invalid("tenant_id", format!("no tenant {asked}")))?;
            Ok(asked.to_string())
        }
    }
}

/// Re-reads the timing and sets `next_fire_at` from `now` (after a change, or on resume:
/// occurrences while paused are not caught up).
fn reschedule(s: &mut ScheduleRecord, now: i64) -> ServiceResult<()> {
    let timing = timing_of(s)?;
    timing.check()?;
    s.next_fire_at = timing.next_after(now);
    if s.next_fire_at.is_none() && s.enabled {
        return Err(match (s.end_at, &s.cron) {
            (Some(end), _) if end <= now => invalid("end_at", "is in the past"),
            (_, Some(_)) => invalid("cron", "never matches a future time"),
            _ => invalid("end_at", "leaves no occurrence"),
        });
    }
    Ok(())
}

/// Creates a schedule.
pub async fn create(
    services: &Services,
    handoff: &dyn Handoff,
    principal: &Principal,
    new: NewSchedule,
) -> ServiceResult<ScheduleRecord> {
    let name = validate_name(&new.name)?;
    let (cron, every) = match (new.cron, new.every) {
        (Some(_), Some(_)) => return Err(invalid("every", "give either cron or every, not both")),
        (None, None) => return Err(invalid("cron", "either cron or every is required")),
        (cron, every) => (
            cron.map(|c| c.trim().to_string()),
            every.map(|e| e.trim().to_string()),
        ),
    };
    let timezone = new
        .timezone
        .unwrap_or_else(|| "UTC".into())
        .trim()
        .to_string();
    let start_at = new
        .start_at
        .as_deref()
        .map(|t| parse_time("start_at", t))
        .transpose()?;
    let end_at = new
        .end_at
        .as_deref()
        .map(|t| parse_time("end_at", t))
        .transpose()?;
    let tenant_id = acting_tenant(services, principal, new.tenant_id.as_deref()).await?;
    let now = services.clock.now_millis();
    let mut record = ScheduleRecord {
        id: new_id("sch"),
        tenant_id,
        name,
        cron,
        every,
        timezone,
        message: serialize_message(&new.message)?,
        enabled: new.enabled.unwrap_or(true),
        catch_up: new.catch_up.unwrap_or_default(),
        start_at,
        end_at,
        anchor_at: start_at.unwrap_or(now),
        next_fire_at: None,
        last_fire_at: None,
        created_at: now,
        updated_at: now,
    };
    reschedule(&mut record, now)?;
    handoff
        .validate(services, &record.tenant_id, &new.message)
        .await?;
    services.store.insert_schedule(&record).await?;
    super::wake();
    tracing::info!(schedule_id = %record.id, tenant_id = %record.tenant_id, "schedule created");
    Ok(record)
}

/// Schedules visible to the principal (an admin key sees every tenant's unless it names one).
pub async fn list(
    services: &Services,
    principal: &Principal,
    tenant_id: Option<&str>,
    page: &Page,
) -> ServiceResult<Listed<ScheduleRecord>> {
    let tenant = match (principal, tenant_id) {
        (Principal::Tenant { .. }, _) | (_, Some(_)) => {
            Some(acting_tenant(services, principal, tenant_id).await?)
        }
        _ => None,
    };
    Ok(services
        .store
        .list_schedules(tenant.as_deref(), page)
        .await?)
}

/// One schedule, if visible to the principal.
pub async fn get(
    services: &Services,
    principal: &Principal,
    id: &str,
) -> ServiceResult<ScheduleRecord> {
    services
        .store
        .get_schedule(id)
        .await?
        .filter(|s| principal.can_access(&s.tenant_id))
        .ok_or_else(|| ServiceError::NotFound {
            kind: "schedule",
            id: id.to_string(),
        })
}

/// Changes a schedule. A change of timing, or a resume, sets the next fire time from now.
pub async fn update(
    services: &Services,
    handoff: &dyn Handoff,
    principal: &Principal,
    id: &str,
    patch: SchedulePatch,
) -> ServiceResult<ScheduleRecord> {
    let mut s = get(services, principal, id).await?;
    let before = s.clone();
    if let Some(name) = &patch.name {
        s.name = validate_name(name)?;
    }
    match (&patch.cron, &patch.every) {
        (Some(_), Some(_)) => return Err(invalid("every", "give either cron or every, not both")),
        (Some(cron), None) => {
            s.cron = Some(cron.trim().to_string());
            s.every = None;
        }
        (None, Some(every)) => {
            s.every = Some(every.trim().to_string());
            s.cron = None;
        }
        (None, None) => {}
    }
    if let Some(zone) = &patch.timezone {
        s.timezone = zone.trim().to_string();
    }
    if let Some(start) = &patch.start_at {
        s.start_at = start
            .as_deref()
            .map(|t| parse_time("start_at", t))
            .transpose()?;
    }
    if let Some(end) = &patch.end_at {
        s.end_at = end
            .as_deref()
            .map(|t| parse_time("end_at", t))
            .transpose()?;
    }
    if let Some(enabled) = patch.enabled {
        s.enabled = enabled;
    }
    if let Some(catch_up) = patch.catch_up {
        s.catch_up = catch_up;
    }
    if let Some(message) = &patch.message {
        s.message = serialize_message(message)?;
        handoff.validate(services, &s.tenant_id, message).await?;
    }
    let now = services.clock.now_millis();
    let timing_changed = s.cron != before.cron
        || s.every != before.every
        || s.timezone != before.timezone
        || s.start_at != before.start_at
        || s.end_at != before.end_at;
    if timing_changed && s.every.is_some() {
        // A new interval starts counting now (or at its start).
        s.anchor_at = s.start_at.unwrap_or(now);
    }
    if timing_changed || (s.enabled && !before.enabled) {
        reschedule(&mut s, now)?;
    }
    s.updated_at = now;
    if !services.store.update_schedule(&s).await? {
        return Err(ServiceError::NotFound {
            kind: "schedule",
            id: id.to_string(),
        });
    }
    super::wake();
    tracing::info!(schedule_id = %s.id, enabled = s.enabled, "schedule updated");
    Ok(s)
}

/// Deletes a schedule and its run history.
pub async fn delete(services: &Services, principal: &Principal, id: &str) -> ServiceResult<()> {
    get(services, principal, id).await?;
    services.store.delete_schedule(id).await?;
    tracing::info!(schedule_id = id, "schedule deleted");
    Ok(())
}

/// Fires a schedule now (whether enabled or not), outside its timing: the run is recorded
/// and handed over at once; the answer is the run as it ended.
pub async fn run_now(
    services: &Services,
    handoff: &dyn Handoff,
    principal: &Principal,
    id: &str,
) -> ServiceResult<RunRecord> {
    let s = get(services, principal, id).await?;
    let now = services.clock.now_millis();
    let run = RunRecord {
        id: new_id("run"),
        schedule_id: s.id.clone(),
        tenant_id: s.tenant_id.clone(),
        occurrence_at: now,
        kind: RunKind::Manual,
        state: RunState::Claimed,
        attempts: 0,
        lease_until: Some(now + super::worker::RUN_LEASE_MS),
        message_ids: Vec::new(),
        broadcast_id: None,
        error: None,
        claimed_at: now,
        finished_at: None,
    };
    services.store.insert_run(&run).await?;
    execute(services, handoff, &run, Some(s.message.clone())).await?;
    services
        .store
        .get_run(&run.id)
        .await?
        .ok_or_else(|| ServiceError::NotFound {
            kind: "run",
            id: run.id.clone(),
        })
}

/// A schedule's runs.
pub async fn list_runs(
    services: &Services,
    principal: &Principal,
    id: &str,
    page: &Page,
) -> ServiceResult<Listed<RunRecord>> {
    get(services, principal, id).await?;
    Ok(services.store.list_runs(id, page).await?)
}

/// Hands a claimed run's message to delivery and records the outcome. `message` is the
/// schedule's message when the caller has it (read again otherwise). A run that was already
/// attempted by a hand-off that cannot be repeated ends `unknown`.
pub async fn execute(
    services: &Services,
    handoff: &dyn Handoff,
    run: &RunRecord,
    message: Option<String>,
) -> ServiceResult<()> {
    execute_many(services, handoff, vec![(run.clone(), message)]).await
}

/// [`execute`] for many runs at once: their messages are handed over together
/// ([`Handoff::submit_many`]) and their outcomes recorded in one write. Runs whose hand-off
/// met a store error stay claimed, to be tried again when their lease ends; the error is
/// returned after the others are recorded.
pub async fn execute_many(
    services: &Services,
    handoff: &dyn Handoff,
    runs: Vec<(RunRecord, Option<String>)>,
) -> ServiceResult<()> {
    let store = &services.store;
    let mut finished: Vec<(String, RunOutcome)> = Vec::new();
    let mut ready: Vec<(RunRecord, Value)> = Vec::new();
    for (run, message) in runs {
        if run.attempts > 0 && !handoff.idempotent() {
            finished.push((
                run.id,
                RunOutcome::Unknown(
                    "interrupted while being handed over; it may or may not have been sent, \
                     so it is not sent again"
                        .into(),
                ),
            ));
            continue;
        }
        let message = match message {
            Some(m) => m,
            None => match store.get_schedule(&run.schedule_id).await? {
                Some(schedule) => schedule.message,
                // Deleted meanwhile: its runs went with it.
                None => continue,
            },
        };
        match serde_json::from_str(&message) {
            Ok(message) => ready.push((run, message)),
            Err(e) => finished.push((
                run.id,
                RunOutcome::Failed(format!("stored message is invalid: {e}")),
            )),
        }
    }
    // Only a hand-off that cannot be repeated needs to know it was started.
    if !handoff.idempotent() {
        let mut started = Vec::with_capacity(ready.len());
        for (run, message) in ready {
            if store.start_run_attempt(&run.id).await? {
                started.push((run, message));
            }
        }
        ready = started;
    }
    let messages: Vec<RunMessage> = ready
        .iter()
        .map(|(run, message)| RunMessage {
            tenant_id: run.tenant_id.clone(),
            message: message.clone(),
            origin: Origin {
                schedule_id: run.schedule_id.clone(),
                occurrence_ms: run.occurrence_at,
                run_id: run.id.clone(),
            },
        })
        .collect();
    let answers = if messages.is_empty() {
        Vec::new()
    } else {
        handoff.submit_many(services, &messages).await
    };
    let mut retry_later = None;
    for ((run, _), answer) in ready.iter().zip(answers) {
        match answer {
            Ok(handed) => {
                finished.push((
                    run.id.clone(),
                    RunOutcome::Submitted {
                        message_ids: handed.message_ids,
                        broadcast_id: handed.broadcast_id,
                        note: handed.note,
                    },
                ));
                metrics::counter!("relaygram_schedule_runs_total", "outcome" => "submitted")
                    .increment(1);
            }
            Err(ServiceError::Store(e)) if handoff.idempotent() => {
                // Left claimed: tried again when the lease ends.
                tracing::warn!(run_id = %run.id, error = %e, "schedule run hand-off failed; will retry");
                retry_later = Some(e);
            }
            Err(e) => {
                tracing::warn!(run_id = %run.id, error = %e, "schedule run failed");
                finished.push((run.id.clone(), RunOutcome::Failed(e.to_string())));
                metrics::counter!("relaygram_schedule_runs_total", "outcome" => "failed")
                    .increment(1);
            }
        }
    }
    store
        .finish_runs(&finished, services.clock.now_millis())
        .await?;
    match retry_later {
        Some(e) => Err(ServiceError::Store(e)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedules::occurrence::{CronExpr, Recurrence, Zone};

    fn hourly() -> Timing {
        Timing {
            recurrence: Recurrence::Cron(Box::new(CronExpr::parse("0 * * * *").unwrap())),
            zone: Zone::utc(),
            start_at: None,
            end_at: None,
            anchor: 0,
        }
    }

    const H: i64 = 3_600_000;

    #[test]
    fn an_occurrence_on_time_fires_and_the_next_follows_it() {
        let a = decide(&hourly(), CatchUp::Skip, 10 * H, 10 * H + 500);
        assert_eq!(a.run, Some((10 * H, RunKind::Scheduled)));
        assert_eq!(a.next_fire_at, Some(11 * H));
    }

    #[test]
    fn after_downtime_skip_fires_nothing_and_jumps_to_the_future() {
        let a = decide(&hourly(), CatchUp::Skip, 10 * H, 13 * H + 1);
        assert_eq!(a.run, None);
        assert_eq!(a.next_fire_at, Some(14 * H));
    }

    #[test]
    fn after_downtime_once_fires_one_run_for_all_missed() {
        let a = decide(&hourly(), CatchUp::Once, 10 * H, 13 * H + 1);
        assert_eq!(a.run, Some((10 * H, RunKind::CatchUp)));
        assert_eq!(a.next_fire_at, Some(14 * H));
        // A late (but not missed) occurrence still fires normally.
        let a = decide(
            &hourly(),
            CatchUp::Skip,
            10 * H,
            10 * H + MISFIRE_GRACE_MS - 1,
        );
        assert_eq!(a.run, Some((10 * H, RunKind::Scheduled)));
    }
}
