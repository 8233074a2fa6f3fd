//! Handing a run's message to delivery.
//!
//! The scheduler decides *when*; delivery decides *how* a message reaches Telegram. The
//! [`Handoff`] trait is the seam between them. [`Outbox`] (the default) gives the message
//! to the delivery engine's acceptance with the run's origin (schedule, occurrence), which
//! is idempotent: handing the same occurrence over again returns the first answer and
//! stores nothing new, so a run interrupted by a crash is simply handed over again.
//!
//! A hand-off that cannot be repeated safely (one that talks to Telegram itself) says so
//! with `idempotent() == false`; a run interrupted in the middle of one ends `unknown`
//! instead of being sent again.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::delivery::Submission;
use crate::services::{ServiceError, ServiceResult, Services};

/// Which occurrence a message comes from: delivery de-duplicates on it, so a repeated
/// hand-off of the same run cannot send twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The schedule.
    pub schedule_id: String,
    /// The occurrence (UTC ms).
    pub occurrence_ms: i64,
    /// The run.
    pub run_id: String,
    /// For an occurrence of a schedule read in each recipient's zone: the schedule's time
    /// zone (the default for recipients without one). The message then goes at the
    /// occurrence's wall-clock time in each recipient's zone.
    pub recipient_timezone: Option<String>,
}

/// One run's message to hand over.
#[derive(Debug, Clone, PartialEq)]
pub struct RunMessage {
    /// The schedule's tenant.
    pub tenant_id: String,
    /// The message body, as `POST /v1/messages` takes it.
    pub message: Value,
    /// The occurrence it comes from.
    pub origin: Origin,
}

/// What delivery made of a run's message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Handed {
    /// Message ids.
    pub message_ids: Vec<String>,
    /// The broadcast, for a large fan-out.
    pub broadcast_id: Option<String>,
    /// Something the run should say about it (kept in the run's `error` field).
    pub note: Option<String>,
}

/// What delivery answers when a request with this origin was stored but its answer was
/// not (the process died between the two writes).
const ANSWER_PENDING: &str = "a request with this Idempotency-Key is being accepted";

/// The seam to delivery.
#[async_trait]
pub trait Handoff: Send + Sync + fmt::Debug {
    /// Whether `submit` may be repeated for one origin without sending twice.
    fn idempotent(&self) -> bool;
    /// Checks a message body as `POST /v1/messages` would (errors name the field under
    /// `message.`).
    async fn validate(
        &self,
        services: &Services,
        tenant_id: &str,
        message: &Value,
    ) -> ServiceResult<()>;
    /// Hands the message over. A [`ServiceError::Store`] error is taken as passing: the
    /// run stays claimed and is tried again when its lease ends (idempotent hand-offs
    /// only); any other error fails the run.
    async fn submit(
        &self,
        services: &Services,
        tenant_id: &str,
        message: &Value,
        origin: &Origin,
    ) -> ServiceResult<Handed>;
    /// Hands several runs' messages over (a burst of occurrences); the answers are in the
    /// same order, with `submit`'s meaning each. One at a time unless the hand-off knows
    /// better.
    async fn submit_many(
        &self,
        services: &Services,
        runs: &[RunMessage],
    ) -> Vec<ServiceResult<Handed>> {
        let mut answers = Vec::with_capacity(runs.len());
        for run in runs {
            answers.push(
                self.submit(services, &run.tenant_id, &run.message, &run.origin)
                    .await,
            );
        }
        answers
    }
}

/// The hand-off this build uses: the delivery engine's outbox.
pub fn default_handoff() -> Arc<dyn Handoff> {
    Arc::new(Outbox)
}

/// Hands messages to the delivery engine ([`Services::accept_message`]) with
/// [`crate::delivery::Origin::Schedule`]: accepted at most once per occurrence.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outbox;

/// The request's fields, as `message.<field>` (problem `field`s are static strings).
fn message_field(field: &str) -> &'static str {
    match field {
        "bot_id" => "message.bot_id",
        "to" => "message.to",
        "text" => "message.text",
        "parse_mode" => "message.parse_mode",
        "template" => "message.template",
        "data" => "message.data",
        "buttons" => "message.buttons",
        "photo" => "message.photo",
        "document" => "message.document",
        "message_thread_id" => "message.message_thread_id",
        "silent" => "message.silent",
        "throttle_key" => "message.throttle_key",
        "throttle_seconds" => "message.throttle_seconds",
        "send_at" => "message.send_at",
        "send_at_local" => "message.send_at_local",
        "default_timezone" => "message.default_timezone",
        "digest" => "message.digest",
        "priority" => "message.priority",
        _ => "message",
    }
}

/// Names delivery's complaints about the message under `message.`.
fn under_message(e: ServiceError) -> ServiceError {
    match e {
        ServiceError::Invalid { field, message } => ServiceError::Invalid {
            field: message_field(field),
            message,
        },
        other => other,
    }
}

fn send_request(message: &Value) -> ServiceResult<crate::delivery::SendRequest> {
    serde_path_to_error::deserialize(message).map_err(|e| {
        let path = e.path().to_string();
        let first = path.split(['.', '[']).next().unwrap_or("");
        ServiceError::Invalid {
            field: message_field(first),
            message: if path == "." {
                e.inner().to_string()
            } else {
                format!("{path}: {}", e.inner())
            },
        }
    })
}

#[async_trait]
impl Handoff for Outbox {
    fn idempotent(&self) -> bool {
        true
    }

    async fn validate(
        &self,
        services: &Services,
        tenant_id: &str,
        message: &Value,
    ) -> ServiceResult<()> {
        let request = send_request(message)?;
        services
            .validate_message(tenant_id, &request)
            .await
            .map_err(under_message)
    }

    async fn submit(
        &self,
        services: &Services,
        tenant_id: &str,
        message: &Value,
        origin: &Origin,
    ) -> ServiceResult<Handed> {
        let run = RunMessage {
            tenant_id: tenant_id.to_string(),
            message: message.clone(),
            origin: origin.clone(),
        };
        self.submit_many(services, std::slice::from_ref(&run))
            .await
            .pop()
            .unwrap_or_else(|| Err(ServiceError::Conflict("no answer".into())))
    }

    /// Accepted together, in one store transaction.
    async fn submit_many(
        &self,
        services: &Services,
        runs: &[RunMessage],
    ) -> Vec<ServiceResult<Handed>> {
        let mut answers: Vec<Option<ServiceResult<Handed>>> = runs.iter().map(|_| None).collect();
        let mut submissions = Vec::new();
        let mut positions = Vec::new();
        for (i, run) in runs.iter().enumerate() {
            match request_for(run) {
                Ok(request) => {
                    positions.push(i);
                    submissions.push(Submission {
                        tenant_id: run.tenant_id.clone(),
                        request,
                        origin: crate::delivery::Origin::Schedule {
                            schedule_id: run.origin.schedule_id.clone(),
                            occurrence_ms: run.origin.occurrence_ms,
                        },
                    });
                }
                Err(e) => answers[i] = Some(Err(e)),
            }
        }
        let accepted = services.accept_messages(submissions).await;
        for (i, accepted) in positions.into_iter().zip(accepted) {
            answers[i] = Some(handed(accepted));
        }
        answers
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Err(ServiceError::Conflict("no answer".into()))))
            .collect()
    }
}

/// The request a run's message makes: for an occurrence read in each recipient's zone,
/// the occurrence's wall-clock time in each recipient's zone.
fn request_for(run: &RunMessage) -> ServiceResult<crate::delivery::SendRequest> {
    let mut request = send_request(&run.message)?;
    if let Some(zone) = &run.origin.recipient_timezone {
        // The occurrence was read at UTC+14, where its wall-clock time happens first.
        let wall = crate::delivery::local::wall_time_at_earliest(run.origin.occurrence_ms)
            .ok_or_else(|| ServiceError::Invalid {
                field: "message",
                message: "the occurrence is out of range".into(),
            })?;
        request.send_at_local = Some(crate::delivery::local::format_local(wall));
        request.default_timezone = Some(zone.clone());
    }
    Ok(request)
}

/// What a run's acceptance means for the run.
fn handed(accepted: ServiceResult<crate::delivery::Accepted>) -> ServiceResult<Handed> {
    match accepted {
        Ok(accepted) => Ok(Handed {
            message_ids: accepted.messages.into_iter().map(|m| m.id).collect(),
            broadcast_id: accepted.broadcast_id,
            note: None,
        }),
        // The origin's request is stored (its key is written in the same transaction as
        // its messages), only its answer is missing: the messages exist and will be
        // sent; handing over again would only get this answer again.
        Err(ServiceError::Conflict(text)) if text.starts_with(ANSWER_PENDING) => Ok(Handed {
            message_ids: Vec::new(),
            broadcast_id: None,
            note: Some(
                "accepted by delivery before a restart; its message ids were not recorded \
                 (see GET /v1/messages)"
                    .into(),
            ),
        }),
        Err(e) => Err(under_message(e)),
    }
}
