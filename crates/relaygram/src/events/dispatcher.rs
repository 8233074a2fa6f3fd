//! The event dispatcher: a public [`Dispatcher::step`] (claim one due delivery, POST it,
//! record the attempt) inside a thin cancellable loop. No transaction is open during the
//! HTTP call; a process that dies mid-attempt leaves a lease that runs out, and the
//! delivery is claimed again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use serde::Serialize;
use tokio::task::JoinSet;

use super::signing::{self, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use crate::crypto::SecretBox;
use crate::ids::{new_id, now_millis, rfc3339};
use crate::shutdown::Shutdown;
use crate::store::{
    AttemptRecord, ClaimedDelivery, DeliveryOutcome, EventRecord, Store, StoreResult,
};

/// The default retry schedule: waits after each failed attempt. Eleven attempts over
/// about 23.5 hours, then the delivery is `failed`.
pub const DEFAULT_SCHEDULE: &[Duration] = &[
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(2 * 60),
    Duration::from_secs(10 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(60 * 60),
    Duration::from_secs(2 * 60 * 60),
    Duration::from_secs(4 * 60 * 60),
    Duration::from_secs(8 * 60 * 60),
    Duration::from_secs(8 * 60 * 60),
];

/// How the dispatcher works. Tests shorten the schedule to milliseconds.
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// Waits after the 1st, 2nd, … failed attempt; when exhausted, the delivery fails.
    pub schedule: Vec<Duration>,
    /// Timeout of one HTTP attempt.
    pub timeout: Duration,
    /// Extra lease time beyond the timeout before a claimed delivery is claimed again.
    pub lease_margin: Duration,
    /// Deliveries attempted at the same time by one process.
    pub concurrency: usize,
    /// How often an idle dispatcher looks for due retries.
    pub poll_interval: Duration,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            schedule: DEFAULT_SCHEDULE.to_vec(),
            timeout: Duration::from_secs(15),
            lease_margin: Duration::from_secs(30),
            concurrency: 4,
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// The JSON body POSTed to endpoints.
#[derive(Debug, Serialize)]
pub struct Payload<'a> {
    /// Event id (also `webhook-id`).
    pub id: &'a str,
    /// Event type.
    #[serde(rename = "type")]
    pub event_type: &'a str,
    /// When the event happened (RFC 3339, UTC).
    pub timestamp: String,
    /// The tenant.
    pub tenant_id: &'a str,
    /// The event's data.
    pub data: serde_json::Value,
}

/// The body sent for an event.
pub fn payload_body(event: &EventRecord) -> Vec<u8> {
    let data = serde_json::from_str(&event.data).unwrap_or(serde_json::Value::Null);
    serde_json::to_vec(&Payload {
        id: &event.id,
        event_type: &event.event_type,
        timestamp: rfc3339(event.created_at),
        tenant_id: &event.tenant_id,
        data,
    })
    .unwrap_or_default()
}

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepReport {
    /// The delivery attempted.
    pub delivery_id: String,
    /// Its event.
    pub event_id: String,
    /// The HTTP status, when the endpoint answered.
    pub status_code: Option<u16>,
    /// What became of it.
    pub outcome: DeliveryOutcome,
}

/// Delivers events to endpoints.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    store: Arc<dyn Store>,
    secrets: SecretBox,
    http: reqwest::Client,
    config: Arc<DispatchConfig>,
}

impl Dispatcher {
    /// A dispatcher over `store`, opening endpoint secrets with `secrets`.
    pub fn new(store: Arc<dyn Store>, secrets: SecretBox, config: DispatchConfig) -> Dispatcher {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("relaygram/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Dispatcher {
            store,
            secrets,
            http,
            config: Arc::new(config),
        }
    }

    /// Claims one due delivery, attempts it and records the attempt. `None` when nothing
    /// is due.
    pub async fn step(&self) -> StoreResult<Option<StepReport>> {
        let lease = self.config.timeout + self.config.lease_margin;
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        let Some(claimed) = self.store.claim_delivery(now_millis(), lease_ms).await? else {
            return Ok(None);
        };
        let attempted_at = now_millis();
        let started = Instant::now();
        let result = self.send(&claimed).await;
        let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let (status_code, error) = match result {
            Ok(status) if (200..300).contains(&status) => (Some(status), None),
            Ok(status) => (
                Some(status),
                Some(format!("endpoint answered HTTP {status}")),
            ),
            Err(e) => (None, Some(e)),
        };
        let outcome = if error.is_none() {
            DeliveryOutcome::Delivered
        } else {
            let done = usize::try_from(claimed.delivery.attempts).unwrap_or(usize::MAX);
            match self.config.schedule.get(done.saturating_sub(1)) {
                Some(wait) => DeliveryOutcome::RetryAt(
                    now_millis()
                        .saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)),
                ),
                None => DeliveryOutcome::Failed,
            }
        };
        let attempt = AttemptRecord {
            id: new_id("att"),
            delivery_id: claimed.delivery.id.clone(),
            event_id: claimed.event.id.clone(),
            attempted_at,
            status_code: status_code.map(i64::from),
            error: error.clone(),
            duration_ms,
        };
        self.store
            .finish_delivery(&claimed, &attempt, outcome)
            .await?;
        match outcome {
            DeliveryOutcome::Delivered => tracing::debug!(
                delivery_id = %claimed.delivery.id, event_id = %claimed.event.id, "event delivered"
            ),
            DeliveryOutcome::RetryAt(_) => tracing::info!(
                delivery_id = %claimed.delivery.id, event_id = %claimed.event.id,
                attempt = claimed.delivery.attempts, error = error.as_deref().unwrap_or(""),
                "event delivery failed; will retry"
            ),
            DeliveryOutcome::Failed => tracing::warn!(
                delivery_id = %claimed.delivery.id, event_id = %claimed.event.id,
                attempts = claimed.delivery.attempts, error = error.as_deref().unwrap_or(""),
                "event delivery failed for good"
            ),
        }
        metrics::counter!(
            "relaygram_event_attempts_total",
            "outcome" => match outcome {
                DeliveryOutcome::Delivered => "delivered",
                DeliveryOutcome::RetryAt(_) => "retry",
                DeliveryOutcome::Failed => "failed",
            }
        )
        .increment(1);
        Ok(Some(StepReport {
            delivery_id: claimed.delivery.id,
            event_id: claimed.event.id,
            status_code: status_code.map(|s| u16::try_from(s).unwrap_or(0)),
            outcome,
        }))
    }

    /// One signed POST; the HTTP status, or why there is none.
    async fn send(&self, claimed: &ClaimedDelivery) -> Result<u32, String> {
        let secret = self
            .secrets
            .open(&claimed.secret_sealed)
            .map_err(|e| format!("endpoint secret: {e}"))?;
        let body = payload_body(&claimed.event);
        let timestamp = now_millis() / 1000;
        let signature = signing::sign(secret.expose_secret(), &claimed.event.id, timestamp, &body)
            .map_err(|e| e.to_string())?;
        let response = self
            .http
            .post(&claimed.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(HEADER_ID, &claimed.event.id)
            .header(HEADER_TIMESTAMP, timestamp.to_string())
            .header(HEADER_SIGNATURE, signature)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    format!("timed out after {:?}", self.config.timeout)
                } else if e.is_connect() {
                    "could not connect to the endpoint".to_string()
                } else {
                    format!("request failed: {e}")
                }
            })?;
        Ok(u32::from(response.status().as_u16()))
    }

    /// Steps until nothing is due or `shutdown` flips, then waits for new deliveries (an
    /// event an endpoint wants, a replay), the poll interval or `shutdown`; repeats until
    /// `shutdown`.
    pub async fn run(self, mut shutdown: Shutdown) {
        let mut changes = super::subscribe_deliveries();
        loop {
            if *shutdown.borrow() {
                return;
            }
            let stepped = tokio::select! {
                r = self.step() => r,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            match stepped {
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "event dispatcher step failed"),
            }
            tokio::select! {
                _ = changes.changed() => {}
                _ = tokio::time::sleep(self.config.poll_interval) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }

    /// Runs `concurrency` loops until `shutdown`.
    pub fn spawn(self, shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut loops = JoinSet::new();
            for _ in 0..self.config.concurrency.max(1) {
                loops.spawn(self.clone().run(shutdown.clone()));
            }
            while loops.join_next().await.is_some() {}
        })
    }
}
