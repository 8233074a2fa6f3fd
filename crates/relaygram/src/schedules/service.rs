//! The rules for schedules: what a valid schedule is, who may see it, when it fires next,
//! what happens to occurrences missed during downtime, and running one now.

use serde_json::Value;

use super::handoff::{Handoff, Origin, RunMessage};
use super::occurrence::{
    CronExpr, Interval, LOCAL_SPREAD_MS, Recurrence, Timing, TimingError, Zone,
};
use crate::ids::new_id;
use crate::services::{Principal, ServiceError, ServiceResult, Services};
use crate::store::{
    Advance, CatchUp, Listed, Page, RunKind, RunOutcome, RunRecord, RunState, ScheduleRecord,
};

/// How many fire times answers show.
pub const SHOWN_FIRE_TIMES: usize = 5;
/// An occurrence found this late (or later) was missed, not merely slow: `catch_up`
/// decides about it. Below this, it fires. (A schedule in each recipient's zone adds
/// [`LOCAL_SPREAD_MS`]: see [`misfire_grace`].)
pub const MISFIRE_GRACE_MS: i64 = 60_000;
/// How long a claimer holds a run before another may complete it (UTC ms on the
/// services' clock).
pub const RUN_LEASE_MS: i64 = 15_000;
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
    /// Read the cron in each recipient's zone (`timezone` is then the default).
    pub recipient_timezone: Option<bool>,
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
    /// Read the cron in each recipient's zone, or not.
    pub recipient_timezone: Option<bool>,
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

/// The timing rules of a stored schedule. A schedule in each recipient's zone is read in
/// the fixed zone UTC+14, the earliest on Earth: it fires when its wall-clock time first
/// occurs anywhere, and delivery holds each copy until the recipient's own (its `timezone`
/// must still be a zone: it is the default for recipients without one).
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
    let zone = Zone::parse(&s.timezone)?;
    Ok(Timing {
        recurrence,
        zone: if s.recipient_timezone {
            Zone::earliest()
        } else {
            zone
        },
        start_at: s.start_at,
        end_at: s.end_at,
        anchor: s.anchor_at,
    })
}

/// How late an occurrence may be found and still fire: [`MISFIRE_GRACE_MS`]; for a
/// schedule in each recipient's zone [`LOCAL_SPREAD_MS`] (26 h) more, since its wall-clock
/// time still lies ahead for some zone until then.
pub fn misfire_grace(recipient_timezone: bool) -> i64 {
    if recipient_timezone {
        LOCAL_SPREAD_MS + MISFIRE_GRACE_MS
    } else {
        MISFIRE_GRACE_MS
    }
}

/// What to do with a due schedule at `now` (pure: the claimer calls it inside its
/// transaction). An occurrence found less than `grace_ms` ([`misfire_grace`]) late fires;
/// one found later was missed (the service was down or stopped): `skip` drops it and every
/// other missed one, `once` fires one run for all of them. Either way the schedule then
/// waits for its first occurrence not missed yet, the first less than `grace_ms` before
/// `now` (one that is already due fires, late, at the next step).
pub fn decide(timing: &Timing, catch_up: CatchUp, due: i64, now: i64, grace_ms: i64) -> Advance {
    if now - due < grace_ms {
        return Advance {
            next_fire_at: timing.next_after(due),
            run: Some((due, RunKind::Scheduled)),
        };
    }
    Advance {
        next_fire_at: timing.next_after(now - grace_ms),
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

/// For a schedule in each recipient's zone: the wall-clock times of its next fire times
/// (`2026-11-22T09:00:00`, read at UTC+14), which each recipient gets in its own zone.
pub fn next_local_times(s: &ScheduleRecord) -> Option<Vec<String>> {
    s.recipient_timezone.then(|| {
        next_fire_times(s)
            .into_iter()
            .filter_map(crate::delivery::local::wall_time_at_earliest)
            .map(crate::delivery::local::format_local)
            .collect()
    })
}

/// The rules of `recipient_timezone`: only with `cron` (an `every` interval counts real
/// time, not wall-clock times), and the message's time comes from the schedule (no
/// `send_at`, `send_at_local`, `default_timezone`; no `digest`, whose items cannot wait).
fn check_recipient_timezone(s: &ScheduleRecord, message: &Value) -> ServiceResult<()> {
    if !s.recipient_timezone {
        return Ok(());
    }
    if s.cron.is_none() {
        return Err(invalid(
            "recipient_timezone",
            "needs cron: an `every` interval counts real time, not wall-clock times",
        ));
    }
    for (key, field) in [
        ("send_at", "message.send_at"),
        ("send_at_local", "message.send_at_local"),
        ("default_timezone", "message.default_timezone"),
    ] {
        if message.get(key).is_some_and(|v| !v.is_null()) {
            return Err(invalid(
                field,
                "must be left out with recipient_timezone: each run goes at its wall-clock \
                 time in each recipient's zone (the schedule's timezone for those without one)",
            ));
        }
    }
    if message.get("digest").is_some_and(|v| !v.is_null()) {
        return Err(invalid(
            "message.digest",
            "cannot be used with recipient_timezone: digest items do not wait for a local time",
        ));
    }
    Ok(())
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
        recipient_timezone: new.recipient_timezone.unwrap_or(false),
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
    check_recipient_timezone(&record, &new.message)?;
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
    if let Some(recipient_timezone) = patch.recipient_timezone {
        s.recipient_timezone = recipient_timezone;
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
    }
    if s.recipient_timezone {
        let message: Value = serde_json::from_str(&s.message).unwrap_or(Value::Null);
        check_recipient_timezone(&s, &message)?;
    }
    if let Some(message) = &patch.message {
        handoff.validate(services, &s.tenant_id, message).await?;
    }
    let now = services.clock.now_millis();
    let timing_changed = s.cron != before.cron
        || s.every != before.every
        || s.timezone != before.timezone
        || s.recipient_timezone != before.recipient_timezone
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
        lease_until: Some(now + RUN_LEASE_MS),
        message_ids: Vec::new(),
        broadcast_id: None,
        error: None,
        claimed_at: now,
        finished_at: None,
    };
    services.store.insert_run(&run).await?;
    execute(services, handoff, &run, Some(s)).await?;
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

/// Hands a claimed run's message to delivery and records the outcome. `schedule` is the
/// run's schedule when the caller has it (read again otherwise). A run that was already
/// attempted by a hand-off that cannot be repeated ends `unknown`.
pub async fn execute(
    services: &Services,
    handoff: &dyn Handoff,
    run: &RunRecord,
    schedule: Option<ScheduleRecord>,
) -> ServiceResult<()> {
    execute_many(services, handoff, vec![(run.clone(), schedule)]).await
}

/// [`execute`] for many runs at once: their messages are handed over together
/// ([`Handoff::submit_many`]) and their outcomes recorded in one write. Runs whose hand-off
/// met a store error stay claimed, to be tried again when their lease ends; the error is
/// returned after the others are recorded.
pub async fn execute_many(
    services: &Services,
    handoff: &dyn Handoff,
    runs: Vec<(RunRecord, Option<ScheduleRecord>)>,
) -> ServiceResult<()> {
    let store = &services.store;
    let mut finished: Vec<(String, RunOutcome)> = Vec::new();
    let mut ready: Vec<RunMessage> = Vec::new();
    for (run, schedule) in runs {
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
        let schedule = match schedule {
            Some(s) => s,
            None => match store.get_schedule(&run.schedule_id).await? {
                Some(schedule) => schedule,
                // Deleted meanwhile: its runs went with it.
                None => continue,
            },
        };
        let message: Value = match serde_json::from_str(&schedule.message) {
            Ok(m) => m,
            Err(e) => {
                finished.push((
                    run.id,
                    RunOutcome::Failed(format!("stored message is invalid: {e}")),
                ));
                continue;
            }
        };
        // An occurrence of a schedule in each recipient's zone goes at its wall-clock time
        // in each recipient's zone; a manual run goes now, to everyone.
        let recipient_timezone = (schedule.recipient_timezone && run.kind != RunKind::Manual)
            .then(|| schedule.timezone.clone());
        ready.push(RunMessage {
            tenant_id: run.tenant_id.clone(),
            message,
            origin: Origin {
                schedule_id: run.schedule_id.clone(),
                occurrence_ms: run.occurrence_at,
                run_id: run.id.clone(),
                recipient_timezone,
            },
        });
    }
    // Only a hand-off that cannot be repeated needs to know it was started.
    if !handoff.idempotent() {
        let mut started = Vec::with_capacity(ready.len());
        for message in ready {
            if store.start_run_attempt(&message.origin.run_id).await? {
                started.push(message);
            }
        }
        ready = started;
    }
    let answers = if ready.is_empty() {
        Vec::new()
    } else {
        handoff.submit_many(services, &ready).await
    };
    let mut retry_later = None;
    for (message, answer) in ready.iter().zip(answers) {
        let run_id = &message.origin.run_id;
        match answer {
            Ok(handed) => {
                finished.push((
                    run_id.clone(),
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
                tracing::warn!(run_id = %run_id, error = %e, "schedule run hand-off failed; will retry");
                retry_later = Some(e);
            }
            Err(e) => {
                tracing::warn!(run_id = %run_id, error = %e, "schedule run failed");
                finished.push((run_id.clone(), RunOutcome::Failed(e.to_string())));
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
    use crate::clock::test_times::{iso, ms};
    use crate::schedules::occurrence::{CronExpr, Recurrence, Zone};

    const G: i64 = MISFIRE_GRACE_MS;

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
        let a = decide(&hourly(), CatchUp::Skip, 10 * H, 10 * H + 500, G);
        assert_eq!(a.run, Some((10 * H, RunKind::Scheduled)));
        assert_eq!(a.next_fire_at, Some(11 * H));
    }

    #[test]
    fn after_downtime_skip_fires_nothing_and_jumps_to_the_first_not_missed() {
        let a = decide(&hourly(), CatchUp::Skip, 10 * H, 13 * H + 120_000, G);
        assert_eq!(a.run, None);
        assert_eq!(a.next_fire_at, Some(14 * H));
        // An occurrence less than the grace ago was not missed: it is next (and due).
        let a = decide(&hourly(), CatchUp::Skip, 10 * H, 13 * H + 1, G);
        assert_eq!(a.run, None);
        assert_eq!(a.next_fire_at, Some(13 * H));
    }

    #[test]
    fn after_downtime_once_fires_one_run_for_all_missed() {
        let a = decide(&hourly(), CatchUp::Once, 10 * H, 13 * H + 120_000, G);
        assert_eq!(a.run, Some((10 * H, RunKind::CatchUp)));
        assert_eq!(a.next_fire_at, Some(14 * H));
        // A late (but not missed) occurrence still fires normally.
        let a = decide(
            &hourly(),
            CatchUp::Skip,
            10 * H,
            10 * H + MISFIRE_GRACE_MS - 1,
            G,
        );
        assert_eq!(a.run, Some((10 * H, RunKind::Scheduled)));
    }

    fn daily_at_nine_in_each_zone() -> ScheduleRecord {
        ScheduleRecord {
            id: "sch_1".into(),
            tenant_id: "ten_1".into(),
            name: "n".into(),
            cron: Some("0 9 * * *".into()),
            every: None,
            timezone: "Europe/Paris".into(),
            recipient_timezone: true,
            message: "{}".into(),
            enabled: true,
            catch_up: CatchUp::Skip,
            start_at: None,
            end_at: None,
            anchor_at: 0,
            next_fire_at: None,
            last_fire_at: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn a_schedule_in_each_recipients_zone_fires_when_its_time_first_occurs() {
        let mut s = daily_at_nine_in_each_zone();
        let t = timing_of(&s).unwrap();
        let first = t.next_after(ms("2027-11-05T12:00:00Z")).unwrap();
        assert_eq!(
            iso(first),
            "2027-11-05T19:00:00Z",
            "09:00 on the 6th at UTC+14"
        );
        s.next_fire_at = Some(first);
        assert_eq!(iso(next_fire_times(&s)[1]), "2027-11-06T19:00:00Z");
        assert_eq!(
            next_local_times(&s).unwrap()[..2],
            ["2027-11-06T09:00:00", "2027-11-07T09:00:00"]
        );
        // Its timezone is still checked: it is the default zone.
        s.timezone = "Mars/Base".into();
        assert_eq!(timing_of(&s).unwrap_err().field, "timezone");
        s.timezone = "Europe/Paris".into();
        s.recipient_timezone = false;
        assert_eq!(next_local_times(&s), None);
        assert_eq!(
            iso(timing_of(&s).unwrap().next_after(first).unwrap()),
            "2027-11-06T08:00:00Z"
        );
    }

    #[test]
    fn its_occurrences_are_missed_only_after_26_hours() {
        let t = timing_of(&daily_at_nine_in_each_zone()).unwrap();
        let grace = misfire_grace(true);
        assert_eq!(grace, 26 * H + G);
        assert_eq!(misfire_grace(false), G);
        let due = ms("2027-11-05T19:00:00Z");
        // 20 hours late: 09:00 is still ahead in the Americas, so it fires.
        let a = decide(&t, CatchUp::Skip, due, due + 20 * H, grace);
        assert_eq!(a.run, Some((due, RunKind::Scheduled)));
        assert_eq!(a.next_fire_at, Some(due + 24 * H));
        let a = decide(&t, CatchUp::Skip, due, due + 26 * H + G - 1, grace);
        assert_eq!(a.run, Some((due, RunKind::Scheduled)));
        // 26 hours and a minute late: missed. The schedule goes on with the first
        // occurrence not missed yet (the next day's, late but still ahead in the west).
        let a = decide(&t, CatchUp::Skip, due, due + 26 * H + G, grace);
        assert_eq!(a.run, None);
        assert_eq!(a.next_fire_at, Some(due + 24 * H));
        let a = decide(&t, CatchUp::Once, due, due + 72 * H, grace);
        assert_eq!(a.run, Some((due, RunKind::CatchUp)));
        assert_eq!(a.next_fire_at, Some(due + 48 * H));
    }
}
