//! HTTP handlers and bodies for `/v1/schedules`. Registered (with their OpenAPI
//! documentation) in [`crate::api`]'s route list.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::handoff::default_handoff;
use super::service::{self, NewSchedule, SchedulePatch};
use crate::http::problem::Problem;
use crate::http::views::{PageSize, page};
use crate::http::{ApiJson, ApiQuery, AppError, AppState, Auth};
use crate::ids::rfc3339;
use crate::store::{CatchUp, RunKind, RunRecord, RunState, ScheduleRecord};

const PROBLEM: &str = "application/problem+json";

type ApiResult<T> = Result<T, AppError>;

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// `POST /v1/schedules`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Morning report", "cron": "0 9 * * MON-FRI",
    "timezone": "Europe/Berlin", "catch_up": "once",
    "message": {"bot_id": "bot_01jd8y3k7q9x4m2n5p6r7s8t9v", "to": {"chat_id": 123456789},
        "text": "Good morning! Here is today's report."}}))]
pub struct CreateScheduleRequest {
    /// Display name, 1 to 200 characters.
    pub name: String,
    /// Cron expression: 5 fields (`minute hour day month weekday`), 6 with seconds
    /// first, or a nickname (`@daily`). Give `cron` or `every`.
    pub cron: Option<String>,
    /// Interval: `15m`, `1h`, `1d` (1 minute to 366 days; days keep the local time of
    /// day). Counted from `start_at`, or from creation.
    pub every: Option<String>,
    /// IANA time zone the schedule is read in (default `UTC`); with `recipient_timezone`,
    /// the zone of recipients whose link has none.
    pub timezone: Option<String>,
    /// Read the cron's wall-clock times in **each recipient's** time zone (the link's
    /// `timezone`): `0 9 * * *` is 9 AM for everyone, wherever they are. Only with `cron`;
    /// the message may not have `send_at` or `send_at_local` then. Default false.
    pub recipient_timezone: Option<bool>,
    /// The message, exactly as `POST /v1/messages` takes it.
    #[schema(value_type = Object)]
    pub message: Value,
    /// Whether it fires (default true).
    pub enabled: Option<bool>,
    /// Occurrences missed while relaygram was down: `skip` (default) or `once`.
    pub catch_up: Option<CatchUp>,
    /// No occurrence before this time (RFC 3339).
    pub start_at: Option<String>,
    /// No occurrence after this time (RFC 3339).
    pub end_at: Option<String>,
    /// Owning tenant: required with an admin key, implied by a tenant key.
    pub tenant_id: Option<String>,
}

/// `PATCH /v1/schedules/{id}`: any of the fields. Setting `cron` clears `every` and the
/// other way round; `null` clears `start_at` / `end_at`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"enabled": false}))]
pub struct UpdateScheduleRequest {
    /// New name.
    pub name: Option<String>,
    /// New cron expression.
    pub cron: Option<String>,
    /// New interval.
    pub every: Option<String>,
    /// New time zone.
    pub timezone: Option<String>,
    /// Read the cron in each recipient's time zone, or not.
    pub recipient_timezone: Option<bool>,
    /// New message.
    #[schema(value_type = Option<Object>)]
    pub message: Option<Value>,
    /// Pause (false) or resume (true). Occurrences while paused are not caught up.
    pub enabled: Option<bool>,
    /// New catch-up rule.
    pub catch_up: Option<CatchUp>,
    /// New start (RFC 3339), or null to clear.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub start_at: Option<Option<String>>,
    /// New end (RFC 3339), or null to clear.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub end_at: Option<Option<String>>,
}

/// A schedule.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "sch_01jd8y3k7q9x4m2n5p6r7s8t9v", "tenant_id": "ten_01jd8y3k7q9x4m2n5p6r7s8t9v",
    "name": "Morning report", "cron": "0 9 * * MON-FRI", "every": null, "timezone": "Europe/Berlin",
    "recipient_timezone": false, "message": {"bot_id": "bot_01jd8y3k7q9x4m2n5p6r7s8t9v", "to": {"chat_id": 123456789}, "text": "Good morning!"},
    "enabled": true, "catch_up": "once", "start_at": null, "end_at": null,
    "next_fire_times": ["2026-11-23T08:00:00Z", "2026-11-24T08:00:00Z", "2026-11-25T08:00:00Z",
        "2026-11-26T08:00:00Z", "2026-11-27T08:00:00Z"],
    "last_fire_at": null, "created_at": "2026-11-21T05:00:00Z", "updated_at": "2026-11-21T05:00:00Z"}))]
pub struct ScheduleView {
    /// Opaque id.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Display name.
    pub name: String,
    /// Cron expression, or null.
    pub cron: Option<String>,
    /// Interval, or null.
    pub every: Option<String>,
    /// IANA time zone (with `recipient_timezone`, the default for recipients without one).
    pub timezone: String,
    /// The cron's wall-clock times are read in each recipient's time zone.
    pub recipient_timezone: bool,
    /// The message.
    #[schema(value_type = Object)]
    pub message: Value,
    /// Whether it fires.
    pub enabled: bool,
    /// Missed occurrences: `skip` or `once`.
    pub catch_up: CatchUp,
    /// No occurrence before (RFC 3339).
    pub start_at: Option<String>,
    /// No occurrence after (RFC 3339).
    pub end_at: Option<String>,
    /// The next five fire times (RFC 3339, UTC); empty while paused or after the last. With
    /// `recipient_timezone`, when the runs are made: the wall-clock time read at UTC+14,
    /// where it happens first.
    pub next_fire_times: Vec<String>,
    /// With `recipient_timezone`: the wall-clock times of the next fire times
    /// (`2026-11-22T09:00:00`), which each recipient gets in its own zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_local_times: Option<Vec<String>>,
    /// The last occurrence fired (RFC 3339).
    pub last_fire_at: Option<String>,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
}

impl From<ScheduleRecord> for ScheduleView {
    fn from(s: ScheduleRecord) -> Self {
        ScheduleView {
            next_fire_times: service::next_fire_times(&s)
                .into_iter()
                .map(rfc3339)
                .collect(),
            next_local_times: service::next_local_times(&s),
            message: serde_json::from_str(&s.message).unwrap_or(Value::Null),
            id: s.id,
            tenant_id: s.tenant_id,
            name: s.name,
            cron: s.cron,
            every: s.every,
            timezone: s.timezone,
            recipient_timezone: s.recipient_timezone,
            enabled: s.enabled,
            catch_up: s.catch_up,
            start_at: s.start_at.map(rfc3339),
            end_at: s.end_at.map(rfc3339),
            last_fire_at: s.last_fire_at.map(rfc3339),
            created_at: rfc3339(s.created_at),
            updated_at: rfc3339(s.updated_at),
        }
    }
}

/// A page of schedules.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ScheduleList {
    /// Schedules in id (creation) order.
    pub data: Vec<ScheduleView>,
    /// Pass as `after` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// List parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ScheduleListParams {
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<PageSize>,
    /// Cursor: `next_cursor` of the previous page.
    pub after: Option<String>,
    /// Only this tenant's (admin keys; tenant keys always see their own).
    pub tenant_id: Option<String>,
}

/// Run list parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RunListParams {
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<PageSize>,
    /// Cursor: `next_cursor` of the previous page.
    pub after: Option<String>,
}

/// One run of a schedule: an occurrence (or a manual run) and what it made.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "run_01jd8y3k7q9x4m2n5p6r7s8t9v", "schedule_id": "sch_01jd8y3k7q9x4m2n5p6r7s8t9v",
    "occurrence_at": "2026-11-23T08:00:00Z", "kind": "scheduled", "state": "submitted",
    "message_ids": ["msg_01jd8y3k7q9x4m2n5p6r7s8t9v"], "broadcast_id": null, "error": null,
    "claimed_at": "2026-11-23T08:00:00.012Z", "finished_at": "2026-11-23T08:00:00.020Z"}))]
pub struct RunView {
    /// Opaque id.
    pub id: String,
    /// The schedule.
    pub schedule_id: String,
    /// The occurrence it fired (RFC 3339); for a manual run, when it was asked for.
    pub occurrence_at: String,
    /// `scheduled`, `catch_up` (one run for occurrences missed during downtime) or
    /// `manual`.
    pub kind: RunKind,
    /// `claimed` (being handed over), `submitted`, `failed` or `unknown`.
    pub state: RunState,
    /// The messages delivery made.
    pub message_ids: Vec<String>,
    /// The broadcast delivery made, for a large fan-out.
    pub broadcast_id: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// When it was claimed (RFC 3339).
    pub claimed_at: String,
    /// When it was submitted or failed (RFC 3339).
    pub finished_at: Option<String>,
}

impl From<RunRecord> for RunView {
    fn from(r: RunRecord) -> Self {
        RunView {
            id: r.id,
            schedule_id: r.schedule_id,
            occurrence_at: rfc3339(r.occurrence_at),
            kind: r.kind,
            state: r.state,
            message_ids: r.message_ids,
            broadcast_id: r.broadcast_id,
            error: r.error,
            claimed_at: rfc3339(r.claimed_at),
            finished_at: r.finished_at.map(rfc3339),
        }
    }
}

/// A page of runs.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RunList {
    /// Runs in claiming order.
    pub data: Vec<RunView>,
    /// Pass as `after` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Create a schedule. The answer includes its next five fire times.
#[utoipa::path(
    post, path = "/v1/schedules", tag = "schedules",
    request_body = CreateScheduleRequest,
    responses(
        (status = 201, description = "Created", body = ScheduleView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "tenant_id names another tenant", body = Problem, content_type = PROBLEM),
        (status = 422, description = "A field is invalid (named in `field`: cron, every, timezone, start_at, end_at, message.…)", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn create_schedule(
    State(state): State<AppState>,
    Auth(principal): Auth,
    ApiJson(body): ApiJson<CreateScheduleRequest>,
) -> ApiResult<(StatusCode, Json<ScheduleView>)> {
    let created = service::create(
        &state.services,
        default_handoff().as_ref(),
        &principal,
        NewSchedule {
            tenant_id: body.tenant_id,
            name: body.name,
            cron: body.cron,
            every: body.every,
            timezone: body.timezone,
            recipient_timezone: body.recipient_timezone,
            message: body.message,
            enabled: body.enabled,
            catch_up: body.catch_up,
            start_at: body.start_at,
            end_at: body.end_at,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(created.into())))
}

/// List schedules (a tenant key sees its own; an admin key all, or `tenant_id`'s).
#[utoipa::path(
    get, path = "/v1/schedules", tag = "schedules",
    params(ScheduleListParams),
    responses(
        (status = 400, description = "Unknown query parameter or bad value (`field` names it)", body = Problem, content_type = PROBLEM),
        (status = 200, description = "A page of schedules", body = ScheduleList),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid limit or tenant_id", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn list_schedules(
    State(state): State<AppState>,
    Auth(principal): Auth,
    ApiQuery(params): ApiQuery<ScheduleListParams>,
) -> ApiResult<Json<ScheduleList>> {
    let page = page(params.limit, params.after);
    let listed = service::list(
        &state.services,
        &principal,
        params.tenant_id.as_deref(),
        &page,
    )
    .await?;
    Ok(Json(ScheduleList {
        data: listed.items.into_iter().map(Into::into).collect(),
        next_cursor: listed.next_cursor,
    }))
}

/// Get a schedule with its next five fire times.
#[utoipa::path(
    get, path = "/v1/schedules/{id}", tag = "schedules",
    params(("id" = String, Path, description = "Schedule id")),
    responses(
        (status = 200, description = "The schedule", body = ScheduleView),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such schedule (or another tenant's)", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn get_schedule(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<ScheduleView>> {
    Ok(Json(
        service::get(&state.services, &principal, &id).await?.into(),
    ))
}

/// Change a schedule: pause or resume it (`enabled`), or change its timing, message or
/// catch-up rule. A new timing, or a resume, counts from now.
#[utoipa::path(
    patch, path = "/v1/schedules/{id}", tag = "schedules",
    params(("id" = String, Path, description = "Schedule id")),
    request_body = UpdateScheduleRequest,
    responses(
        (status = 200, description = "Changed", body = ScheduleView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such schedule (or another tenant's)", body = Problem, content_type = PROBLEM),
        (status = 422, description = "A field is invalid (named in `field`)", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn update_schedule(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateScheduleRequest>,
) -> ApiResult<Json<ScheduleView>> {
    let updated = service::update(
        &state.services,
        default_handoff().as_ref(),
        &principal,
        &id,
        SchedulePatch {
            name: body.name,
            cron: body.cron,
            every: body.every,
            timezone: body.timezone,
            recipient_timezone: body.recipient_timezone,
            message: body.message,
            enabled: body.enabled,
            catch_up: body.catch_up,
            start_at: body.start_at,
            end_at: body.end_at,
        },
    )
    .await?;
    Ok(Json(updated.into()))
}

/// Delete a schedule and its run history (messages already handed over stay).
#[utoipa::path(
    delete, path = "/v1/schedules/{id}", tag = "schedules",
    params(("id" = String, Path, description = "Schedule id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such schedule (or another tenant's)", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn delete_schedule(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    service::delete(&state.services, &principal, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Fire a schedule once now (paused or not), outside its timing. The answer is the run.
#[utoipa::path(
    post, path = "/v1/schedules/{id}/run", tag = "schedules",
    params(("id" = String, Path, description = "Schedule id")),
    responses(
        (status = 201, description = "Run recorded; `state` says whether delivery took the message", body = RunView),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such schedule (or another tenant's)", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn run_schedule(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<RunView>)> {
    let run =
        service::run_now(&state.services, default_handoff().as_ref(), &principal, &id).await?;
    Ok((StatusCode::CREATED, Json(run.into())))
}

/// A schedule's runs, oldest first, each with the messages or broadcast it made or its
/// error.
#[utoipa::path(
    get, path = "/v1/schedules/{id}/runs", tag = "schedules",
    params(("id" = String, Path, description = "Schedule id"), RunListParams),
    responses(
        (status = 400, description = "Unknown query parameter or bad value (`field` names it)", body = Problem, content_type = PROBLEM),
        (status = 200, description = "A page of runs", body = RunList),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such schedule (or another tenant's)", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid limit", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn list_schedule_runs(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<RunListParams>,
) -> ApiResult<Json<RunList>> {
    let page = page(params.limit, params.after);
    let listed = service::list_runs(&state.services, &principal, &id, &page).await?;
    Ok(Json(RunList {
        data: listed.items.into_iter().map(Into::into).collect(),
        next_cursor: listed.next_cursor,
    }))
}
