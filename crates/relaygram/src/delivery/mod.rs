//! Delivery: the durable outbox and its senders.
//!
//! - [`request`]: what `POST /v1/messages` takes, and its parsing;
//! - [`content`]: rendered content (stored once per request) and the Bot API calls it makes;
//! - [`recipients`]: targets to recipients, and the targets that reach nobody;
//! - [`personal`]: requests rendered for each recipient (per-target data, `link`);
//! - [`edit`]: editing and deleting what was sent (`PATCH`/`DELETE /v1/messages/{id}`);
//! - [`job`]: the Bot API calls of an edit or delete job;
//! - [`service`]: acceptance ([`crate::services::Services::accept_message`]), status, re-drive;
//! - [`jobs`]: broadcasts (progress, ETA, pause/resume/cancel), statistics, bot limits;
//! - [`pacing`]: the limiter that keeps every bot under Telegram's limits;
//! - [`local`]: local-time delivery (`send_at_local`: each recipient's own wall-clock time);
//! - [`quiet`]: quiet hours per link (held messages wait for the window's end);
//! - [`hold`]: the sender's hook that holds claimed messages for both;
//! - [`reply`]: the inbound router's replies, queued by a fast path;
//! - [`sender`]: one sender per bot, claiming lanes from the store;
//! - [`api`]: the HTTP handlers;
//! - [`command`]: `relaygram send` and `relaygram broadcast`.

pub mod api;
pub mod command;
pub mod content;
pub mod edit;
pub mod hold;
pub mod job;
pub mod jobs;
pub mod local;
pub mod pacing;
pub mod personal;
pub mod quiet;
pub mod recipients;
pub mod reply;
pub mod request;
pub mod sender;
pub mod service;

pub use recipients::{SkipReason, Skipped};
pub use request::{ButtonSpec, SendRequest, Target};
pub use sender::{BotSender, SenderConfig, Step};
pub use service::{Accepted, AcceptedMessage, Origin, Submission};

use crate::services::{Principal, ServiceError, ServiceResult, Services};

impl Services {
    /// The tenant a call acts on: a tenant key's own, or `asked` for an admin key (required).
    pub async fn acting_tenant(
        &self,
        principal: &Principal,
        asked: Option<&str>,
    ) -> ServiceResult<String> {
        match (principal.tenant(), asked) {
            (Some(own), None) => Ok(own.to_string()),
            (_, Some(asked)) => Ok(self.visible_tenant(principal, asked).await?.id),
            (None, None) => Err(ServiceError::Invalid {
                field: "tenant_id",
                message: "is required with an admin key".into(),
            }),
        }
    }
}

static DEFAULT_LIMITS: std::sync::RwLock<crate::config::SendLimits> =
    std::sync::RwLock::new(crate::config::SendLimits {
        per_bot_per_second: 30.0,
        per_chat_per_second: 1.0,
        per_group_per_minute: 20.0,
    });

/// Records the deployment's limits (set once when the workers start) for the API's views.
pub fn set_default_limits(limits: crate::config::SendLimits) {
    *DEFAULT_LIMITS
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = limits;
}

/// The deployment's limits.
pub fn default_limits() -> crate::config::SendLimits {
    *DEFAULT_LIMITS
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
