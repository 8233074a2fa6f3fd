//! Events to tenant apps: signed webhooks (Standard Webhooks) and a pull API.
//!
//! Any part of relaygram reports something to a tenant's app with [`emit`]: the event is
//! stored with one pending delivery per matching endpoint, in one transaction, and
//! in-process long-polls and dispatchers are woken. The [`Dispatcher`] POSTs deliveries
//! signed per [`signing`], retrying on a schedule for about a day; apps without a public
//! URL pull with `GET /v1/events?after=<cursor>&wait=30` instead.

pub mod dispatcher;
pub(crate) mod http;
pub mod signing;

use std::sync::LazyLock;
use std::time::Duration;

use tokio::sync::watch;

pub use dispatcher::{DispatchConfig, Dispatcher, StepReport};

use crate::ids::{new_id, now_millis};
use crate::services::{Principal, ServiceError, ServiceResult, Services};
use crate::store::{
    AttemptRecord, DeliveryRecord, EndpointRecord, EventQuery, EventRecord, Listed, NewEvent, Page,
    Store, StoreResult,
};

/// Longest wait a pull may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(30);
/// How often a waiting pull looks at the store itself (events stored by another
/// instance do not wake it).
const PULL_RECHECK: Duration = Duration::from_secs(1);
/// Most endpoints per tenant.
pub const MAX_ENDPOINTS_PER_TENANT: usize = 50;

static CHANGES: LazyLock<watch::Sender<u64>> = LazyLock::new(|| watch::channel(0).0);
static DELIVERIES: LazyLock<watch::Sender<u64>> = LazyLock::new(|| watch::channel(0).0);

/// A receiver that sees a change after every [`emit`] or replay in this process.
pub fn subscribe() -> watch::Receiver<u64> {
    CHANGES.subscribe()
}

/// A receiver that sees a change whenever deliveries were created in this process (the
/// dispatcher's wake-up: most events of a tenant without endpoints create none, and need
/// no look for due deliveries).
pub fn subscribe_deliveries() -> watch::Receiver<u64> {
    DELIVERIES.subscribe()
}

/// Wakes pulls waiting for events and, when `deliveries` were created, the dispatcher.
pub(crate) fn notify(deliveries: usize) {
    CHANGES.send_modify(|n| *n = n.wrapping_add(1));
    if deliveries > 0 {
        DELIVERIES.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Stores an event for `tenant_id` and one pending delivery per enabled endpoint whose
/// filter matches `event_type`, in one transaction; wakes long-polls and the dispatcher.
/// Returns the event id (`evt_…`, also the `webhook-id` of its deliveries).
///
/// ```no_run
/// # async fn example(store: &dyn relaygram::store::Store) -> relaygram::store::StoreResult<()> {
/// let id = relaygram::events::emit(
///     store,
///     "ten_01jd8y3k7q9x4m2n5p6r7s8t9v",
///     "command.received",
///     serde_json::json!({"command": "/order", "args": "42"}),
/// )
/// .await?;
/// # let _ = id; Ok(()) }
/// ```
pub async fn emit(
    store: &dyn Store,
    tenant_id: &str,
    event_type: &str,
    data: serde_json::Value,
) -> StoreResult<String> {
    let event = new_event(tenant_id, event_type, &data);
    let stored = store.insert_event(&event).await?;
    metrics::counter!("relaygram_events_emitted_total").increment(1);
    tracing::debug!(event_id = %event.id, tenant_id, event_type, "event emitted");
    notify(stored.deliveries);
    Ok(event.id)
}

/// An event of `event_type` for `tenant_id`, happening now, not stored yet (the inbound
/// processor stores its updates' events with their outcomes; others call [`emit`]).
pub fn new_event(tenant_id: &str, event_type: &str, data: &serde_json::Value) -> NewEvent {
    NewEvent {
        id: new_id("evt"),
        tenant_id: tenant_id.to_string(),
        event_type: event_type.to_string(),
        data: data.to_string(),
        created_at: now_millis(),
    }
}

/// A new endpoint, as asked for.
#[derive(Debug, Clone, Default)]
pub struct NewEndpoint {
    /// http(s) URL.
    pub url: String,
    /// Free text.
    pub description: Option<String>,
    /// Type patterns; `None` = every type.
    pub event_types: Option<Vec<String>>,
    /// Owning tenant: required for admin keys, implied by tenant keys.
    pub tenant_id: Option<String>,
}

/// A created endpoint and its secret (shown once).
#[derive(Debug)]
pub struct CreatedEndpoint {
    /// Stored record.
    pub endpoint: EndpointRecord,
    /// The `whsec_…` secret in clear.
    pub secret: secrecy::SecretString,
}

/// An event with its deliveries and their attempts.
#[derive(Debug, Clone)]
pub struct EventDetail {
    /// The event.
    pub event: EventRecord,
    /// Its deliveries.
    pub deliveries: Vec<DeliveryRecord>,
    /// Every attempt, oldest first.
    pub attempts: Vec<AttemptRecord>,
}

/// A pull request.
#[derive(Debug, Clone, Default)]
pub struct Pull {
    /// Tenant: required for admin keys, implied by tenant keys.
    pub tenant_id: Option<String>,
    /// Cursor (`next_cursor` of the previous pull); `None` = from the start.
    pub after: Option<String>,
    /// How long to wait when nothing is there yet.
    pub wait: Duration,
    /// Most events to return.
    pub limit: u32,
    /// Only this type, or a `prefix.*` pattern.
    pub event_type: Option<String>,
}

/// What a pull returns.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// Events in order.
    pub events: Vec<EventRecord>,
    /// Pass as `after` next time.
    pub next_cursor: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid {
        field,
        message: message.into(),
    }
}

/// Checks an event type pattern: dotted lower-case words, optionally ending in `*`.
pub fn validate_type_pattern(field: &'static str, pattern: &str) -> ServiceResult<()> {
    let body = pattern.strip_suffix('*').unwrap_or(pattern);
    let ok = !pattern.is_empty()
        && pattern.len() <= 100
        && body
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && (body.is_empty() || body.ends_with('.') || !pattern.ends_with('*'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!(
                "{pattern:?} is not an event type or pattern (e.g. `link.created`, `message.*`, `*`)"
            ),
        ))
    }
}

fn validate_url(url: &str) -> ServiceResult<String> {
    let url = url.trim();
    if url.len() > 2048 {
        return Err(invalid("url", "must be at most 2048 characters"));
    }
    let parsed =
        reqwest::Url::parse(url).map_err(|e| invalid("url", format!("is not a valid URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(invalid(
            "url",
            "must be an http:// or https:// URL with a host",
        ));
    }
    if parsed.fragment().is_some() {
        return Err(invalid("url", "must not have a #fragment"));
    }
    Ok(url.to_string())
}

fn parse_cursor(after: Option<&str>) -> ServiceResult<i64> {
    match after.map(str::trim).filter(|a| !a.is_empty()) {
        None => Ok(0),
        Some(a) => {
            a.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| ServiceError::InvalidQuery {
                    field: "after",
                    message: "must be a cursor returned by this API".into(),
                })
        }
    }
}

/// The tenant a call acts on: a tenant key's own, or the one an admin key names.
pub(crate) async fn acting_tenant(
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

/// Creates an endpoint with a fresh `whsec_` secret (returned this once, stored sealed).
pub async fn create_endpoint(
    services: &Services,
    principal: &Principal,
    new: NewEndpoint,
) -> ServiceResult<CreatedEndpoint> {
    let url = validate_url(&new.url)?;
    let description = new.description.unwrap_or_default().trim().to_string();
    if description.chars().count() > 500 || description.chars().any(char::is_control) {
        return Err(invalid(
            "description",
            "must be at most 500 characters without control characters",
        ));
    }
    if let Some(types) = &new.event_types {
        if types.is_empty() || types.len() > 50 {
            return Err(invalid(
                "event_types",
                "must list 1 to 50 types or patterns (omit it for every type)",
            ));
        }
        for t in types {
            validate_type_pattern("event_types", t)?;
        }
    }
    let tenant_id = acting_tenant(services, principal, new.tenant_id.as_deref()).await?;
    let existing = services
        .store
        .list_event_endpoints(Some(&tenant_id), &Page::first(crate::store::MAX_PAGE_SIZE))
        .await?;
    if existing.items.len() >= MAX_ENDPOINTS_PER_TENANT {
        return Err(ServiceError::Conflict(format!(
            "a tenant may have at most {MAX_ENDPOINTS_PER_TENANT} event endpoints"
        )));
    }
    let secret = signing::new_secret();
    let endpoint = EndpointRecord {
        id: new_id("ep"),
        tenant_id,
        url,
        secret_sealed: services.secrets.seal(&secret),
        description,
        enabled: true,
        event_types: new.event_types,
        created_at: now_millis(),
    };
    services.store.insert_event_endpoint(&endpoint).await?;
    tracing::info!(endpoint_id = %endpoint.id, tenant_id = %endpoint.tenant_id, "event endpoint created");
    Ok(CreatedEndpoint {
        endpoint,
        secret: secret.into(),
    })
}

/// Endpoints visible to the principal (an admin key sees every tenant's unless it names one).
pub async fn list_endpoints(
    services: &Services,
    principal: &Principal,
    tenant_id: Option<&str>,
    page: &Page,
) -> ServiceResult<Listed<EndpointRecord>> {
    let tenant = match (principal, tenant_id) {
        (Principal::Tenant { .. }, _) | (_, Some(_)) => {
            Some(acting_tenant(services, principal, tenant_id).await?)
        }
        _ => None,
    };
    Ok(services
        .store
        .list_event_endpoints(tenant.as_deref(), page)
        .await?)
}

/// One endpoint, if visible to the principal.
pub async fn get_endpoint(
    services: &Services,
    principal: &Principal,
    id: &str,
) -> ServiceResult<EndpointRecord> {
    services
        .store
        .get_event_endpoint(id)
        .await?
        .filter(|e| principal.can_access(&e.tenant_id))
        .ok_or_else(|| ServiceError::NotFound {
            kind: "event endpoint",
            id: id.to_string(),
        })
}

/// Deletes an endpoint and its deliveries (the events stay).
pub async fn delete_endpoint(
    services: &Services,
    principal: &Principal,
    id: &str,
) -> ServiceResult<()> {
    get_endpoint(services, principal, id).await?;
    services.store.delete_event_endpoint(id).await?;
    tracing::info!(endpoint_id = id, "event endpoint deleted");
    Ok(())
}

/// Events after a cursor; when there are none yet, waits up to `wait` for one.
pub async fn pull(services: &Services, principal: &Principal, pull: Pull) -> ServiceResult<Pulled> {
    let after_seq = parse_cursor(pull.after.as_deref())?;
    if pull.wait > MAX_WAIT {
        return Err(invalid("wait", "must be 0 to 30 seconds"));
    }
    if let Some(t) = &pull.event_type {
        validate_type_pattern("type", t)?;
    }
    let tenant_id = acting_tenant(services, principal, pull.tenant_id.as_deref()).await?;
    let query = EventQuery {
        tenant_id,
        after_seq,
        event_type: pull.event_type.filter(|t| t != "*"),
        limit: pull.limit,
    };
    let deadline = tokio::time::Instant::now() + pull.wait;
    let mut changes = subscribe();
    loop {
        // Subscribed before reading, so an event stored after the read still wakes us.
        changes.mark_unchanged();
        let events = services.store.list_events(&query).await?;
        let now = tokio::time::Instant::now();
        if !events.is_empty() || now >= deadline {
            let next_cursor = events.last().map_or(after_seq, |e| e.seq).to_string();
            return Ok(Pulled {
                events,
                next_cursor,
            });
        }
        let nap = (deadline - now).min(PULL_RECHECK);
        let _ = tokio::time::timeout(nap, changes.changed()).await;
    }
}

/// One event with its deliveries and attempts, if visible to the principal.
pub async fn event_detail(
    services: &Services,
    principal: &Principal,
    id: &str,
) -> ServiceResult<EventDetail> {
    let event = services
        .store
        .get_event(id)
        .await?
        .filter(|e| principal.can_access(&e.tenant_id))
        .ok_or_else(|| ServiceError::NotFound {
            kind: "event",
            id: id.to_string(),
        })?;
    let deliveries = services.store.list_event_deliveries(id).await?;
    let attempts = services.store.list_event_attempts(id).await?;
    Ok(EventDetail {
        event,
        deliveries,
        attempts,
    })
}

/// Delivers an event again now: to one endpoint of its tenant, or to every enabled
/// endpoint that wants its type. Returns the delivery ids scheduled.
pub async fn replay(
    services: &Services,
    principal: &Principal,
    event_id: &str,
    endpoint_id: Option<&str>,
) -> ServiceResult<Vec<String>> {
    let detail = event_detail(services, principal, event_id).await?;
    let event = detail.event;
    let targets: Vec<String> = match endpoint_id {
        Some(id) => {
            let endpoint = services
                .store
                .get_event_endpoint(id)
                .await?
                .filter(|e| e.tenant_id == event.tenant_id)
                .ok_or_else(|| {
                    invalid(
                        "endpoint_id",
                        format!("no endpoint {id} in this event's tenant"),
                    )
                })?;
            vec![endpoint.id]
        }
        None => {
            let mut all = Vec::new();
            let mut page = Page::first(crate::store::MAX_PAGE_SIZE);
            loop {
                let listed = services
                    .store
                    .list_event_endpoints(Some(&event.tenant_id), &page)
                    .await?;
                all.extend(
                    listed
                        .items
                        .into_iter()
                        .filter(|e| e.enabled && e.wants(&event.event_type))
                        .map(|e| e.id),
                );
                match listed.next_cursor {
                    Some(next) => page.after = Some(next),
                    None => break,
                }
            }
            all
        }
    };
    let now = now_millis();
    let mut scheduled = Vec::new();
    for endpoint in &targets {
        if let Some(id) = services
            .store
            .schedule_delivery(&event.id, endpoint, now)
            .await?
        {
            scheduled.push(id);
        }
    }
    tracing::info!(event_id, deliveries = scheduled.len(), "event replayed");
    notify(scheduled.len());
    Ok(scheduled)
}
