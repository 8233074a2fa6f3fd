//! The `digest` field of a send request.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Collect this message into a digest instead of sending it now.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"key": "daily-report", "window": "1h"}))]
pub struct DigestSpec {
    /// The app's name for the digest (1 to 200 characters): items with the same key and
    /// recipient collect together.
    pub key: String,
    /// How long a digest collects from its first item: `15m`, `1h`, `1d`. Give `window`
    /// or `schedule_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// A schedule of the tenant: the digest closes at its next occurrence after the first
    /// item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_id: Option<String>,
    /// A stored template that renders the digest (variables `key`, `count`, `items`,
    /// `first`, `last`); the built-in list when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
}
