//! Linking: app users and groups to Telegram chats.
//!
//! - **Link tokens** (`POST /v1/link-tokens`): random, single-use, expiring; the user opens
//!   `t.me/<bot>?start=<token>` (or sends `/link <token>`, or adds the bot to a group with
//!   `?startgroup=<token>`). Stored as a SHA-256 hash (the lookup key) and sealed with the
//!   server's key (only to draw the QR code again), never in clear.
//! - **Connect codes** (`POST /v1/connect-codes`): short team codes any number of chats join
//!   with `/start <code>`; rotated or revoked by the app.
//! - **Links**: the result, with per-category preferences and quiet-hours fields.
//! - **Categories**: kinds of notification. The opt-in rule: a link receives category K iff
//!   the link is active and (K is mandatory, or its preference row for K says enabled, or
//!   there is no row and K.default_enabled).
//!
//! [`service`] holds the rules (for the API and for the Telegram side, which the inbound
//! router calls), [`api`] the HTTP handlers.

pub mod api;
pub mod service;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::ids::{hex, rfc3339};
use crate::services::ServiceError;
use crate::store::{CategoryRecord, LinkRecord};

/// Length of a link token (Telegram allows up to 64 of `A-Za-z0-9_-` in a start parameter).
pub const TOKEN_LEN: usize = 32;
/// Length of a connect code.
pub const CODE_LEN: usize = 8;
/// Token lifetime when the app asks for none: 15 minutes.
pub const DEFAULT_TTL_SECONDS: u64 = 900;
/// Shortest token lifetime.
pub const MIN_TTL_SECONDS: u64 = 60;
/// Longest token lifetime: 7 days.
pub const MAX_TTL_SECONDS: u64 = 7 * 86_400;
/// Largest metadata object, as JSON text.
pub const MAX_METADATA_BYTES: usize = 4096;

/// Letters of connect codes: upper-case, without the look-alikes 0/O and 1/I/L.
const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";

/// The lookup key of a link token.
pub fn hash_token(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// A fresh connect code.
pub fn new_code() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; CODE_LEN];
    rand::rng().fill_bytes(&mut bytes);
    bytes
        .iter()
        .map(|b| char::from(CODE_ALPHABET[usize::from(*b) % CODE_ALPHABET.len()]))
        .collect()
}

/// Whether a `/start` payload has the shape of a connect code (checked after tokens).
pub fn looks_like_code(payload: &str) -> bool {
    payload.len() == CODE_LEN && payload.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// `https://t.me/<bot>?start=<token>`.
pub fn deep_link(bot_username: &str, payload: &str) -> String {
    format!("https://t.me/{bot_username}?start={payload}")
}

/// `https://t.me/<bot>?startgroup=<token>`: adds the bot to a group the user picks.
pub fn group_link(bot_username: &str, payload: &str) -> String {
    format!("https://t.me/{bot_username}?startgroup={payload}")
}

/// Where a link token stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenStatus {
    /// Not used yet and not expired.
    Pending,
    /// Used: it made a link.
    Used,
    /// Not used before it expired.
    Expired,
}

/// Checks a category key: 1 to 32 of `a-z`, `0-9`, `_`, `-`, `.`, starting with a letter
/// or digit.
pub fn parse_category_key(field: &'static str, key: &str) -> Result<String, ServiceError> {
    let ok = !key.is_empty()
        && key.len() <= 32
        && key.as_bytes()[0].is_ascii_alphanumeric()
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.".contains(&b));
    if ok {
        Ok(key.to_string())
    } else {
        Err(ServiceError::Invalid {
            field,
            message: format!(
                "{key:?} is not a category key: use 1 to 32 of a-z, 0-9, _, - and ., starting with a letter or digit"
            ),
        })
    }
}

/// Checks a quiet-hours time: `HH:MM`, 24-hour clock.
pub fn parse_clock_time(field: &'static str, text: &str) -> Result<String, ServiceError> {
    let b = text.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let ok = b.len() == 5
        && b[2] == b':'
        && digits(0..2)
        && digits(3..5)
        && text[..2].parse::<u8>().is_ok_and(|h| h < 24)
        && text[3..].parse::<u8>().is_ok_and(|m| m < 60);
    if ok {
        Ok(text.to_string())
    } else {
        Err(ServiceError::Invalid {
            field,
            message: format!("{text:?} is not a time: use HH:MM (00:00 to 23:59)"),
        })
    }
}

/// Checks an IANA time zone name (`Europe/Berlin`, `UTC`). With a time zone database
/// available the name must be in it; otherwise its shape is checked.
pub fn parse_timezone(text: &str) -> Result<String, ServiceError> {
    let invalid = || ServiceError::Invalid {
        field: "timezone",
        message: format!("{text:?} is not an IANA time zone such as Europe/Berlin"),
    };
    let shaped = !text.is_empty()
        && text.len() <= 64
        && text.split('/').all(|part| {
            !part.is_empty()
                && part.as_bytes()[0].is_ascii_alphabetic()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_+-".contains(&b))
        });
    if !shaped {
        return Err(invalid());
    }
    let db = jiff::tz::db();
    if db.is_definitively_empty() || jiff::tz::TimeZone::get(text).is_ok() {
        Ok(text.to_string())
    } else {
        Err(invalid())
    }
}

/// A category as a link sees it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LinkCategoryView {
    /// Category key.
    pub key: String,
    /// Display name.
    pub name: String,
    /// Whether the link receives it (by the opt-in rule, ignoring `active`).
    pub enabled: bool,
    /// Whether the user may turn it off.
    pub mandatory: bool,
}

/// A link.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "link_01jd8y3k7q9x4m2n5p6r7s8t9v", "tenant_id": "ten_01jd8y3k7q9x4m2n5p6r7s8t9v",
    "bot_id": "bot_01jd8y3k7q9x4m2n5p6r7s8t9v", "external_id": "user-42", "chat_id": 100000001,
    "chat_type": "private", "active": true, "source": "token", "connect_code_id": null,
    "link_token_id": "ltk_01jd8y3k7q9x4m2n5p6r7s8t9v", "telegram_user_id": 100000001,
    "metadata": {"plan": "pro"}, "timezone": "Europe/Berlin", "quiet_start": "22:00", "quiet_end": "07:00",
    "categories": [{"key": "alerts", "name": "Alerts", "enabled": true, "mandatory": false}],
    "created_at": "2026-11-21T05:00:00Z", "updated_at": "2026-11-21T05:00:00Z"}))]
pub struct LinkView {
    /// Opaque id (`link_…`).
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// The bot that reaches the chat.
    pub bot_id: String,
    /// The app's user id; `null` for links made with a connect code.
    pub external_id: Option<String>,
    /// Telegram chat id (follows group migrations).
    pub chat_id: i64,
    /// `private`, `group`, `supergroup` or `channel`.
    pub chat_type: String,
    /// `false` while the user blocks the bot (or the bot is out of the group).
    pub active: bool,
    /// `token` or `code`.
    pub source: String,
    /// The connect code that made it.
    pub connect_code_id: Option<String>,
    /// The link token that made it.
    pub link_token_id: Option<String>,
    /// The Telegram user who linked the chat.
    pub telegram_user_id: Option<i64>,
    /// The app's metadata (from the token, or set with PATCH).
    pub metadata: Option<serde_json::Value>,
    /// IANA time zone for quiet hours.
    pub timezone: Option<String>,
    /// Quiet hours start, `HH:MM` in `timezone`.
    pub quiet_start: Option<String>,
    /// Quiet hours end, `HH:MM` in `timezone`.
    pub quiet_end: Option<String>,
    /// Every category of the tenant and whether this link receives it.
    pub categories: Vec<LinkCategoryView>,
    /// Creation time (RFC 3339, UTC).
    pub created_at: String,
    /// Last change (RFC 3339, UTC).
    pub updated_at: String,
}

/// Whether a link with these preference rows receives `category` (ignoring `active`).
pub fn opted_in(category: &CategoryRecord, prefs: &BTreeMap<String, bool>) -> bool {
    category.mandatory
        || prefs
            .get(&category.key)
            .copied()
            .unwrap_or(category.default_enabled)
}

impl LinkView {
    /// The view of a link, given the tenant's categories and the link's preference rows.
    pub fn new(
        link: LinkRecord,
        categories: &[CategoryRecord],
        prefs: &BTreeMap<String, bool>,
    ) -> LinkView {
        LinkView {
            categories: categories
                .iter()
                .map(|c| LinkCategoryView {
                    key: c.key.clone(),
                    name: c.name.clone(),
                    enabled: opted_in(c, prefs),
                    mandatory: c.mandatory,
                })
                .collect(),
            id: link.id,
            tenant_id: link.tenant_id,
            bot_id: link.bot_id,
            external_id: link.external_id,
            chat_id: link.chat_id,
            chat_type: link.chat_type,
            active: link.active,
            source: link.source,
            connect_code_id: link.connect_code_id,
            link_token_id: link.link_token_id,
            telegram_user_id: link.telegram_user_id,
            metadata: link
                .metadata
                .as_deref()
                .and_then(|m| serde_json::from_str(m).ok()),
            timezone: link.timezone,
            quiet_start: link.quiet_start,
            quiet_end: link.quiet_end,
            created_at: rfc3339(link.created_at),
            updated_at: rfc3339(link.updated_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_tokens_have_the_promised_shape() {
        for _ in 0..50 {
            let code = new_code();
            assert!(looks_like_code(&code), "{code}");
            assert!(!code.contains(['0', 'O', '1', 'I', 'L']));
        }
        let token = crate::ids::random_token(TOKEN_LEN);
        assert!(!looks_like_code(&token));
        assert_eq!(hash_token("abc").len(), 64);
    }

    #[test]
    fn clock_times_and_keys_are_checked() {
        assert!(parse_clock_time("f", "22:00").is_ok());
        assert!(parse_clock_time("f", "00:59").is_ok());
        for bad in ["24:00", "7:00", "12:60", "ab:cd", "12-00", ""] {
            assert!(parse_clock_time("f", bad).is_err(), "{bad}");
        }
        assert!(parse_category_key("f", "alerts").is_ok());
        assert!(parse_category_key("f", "device.events").is_ok());
        for bad in ["", "Alerts", "_x", "with space", &"a".repeat(33)] {
            assert!(parse_category_key("f", bad).is_err(), "{bad}");
        }
        assert!(parse_timezone("Europe/Berlin").is_ok());
        assert!(parse_timezone("UTC").is_ok());
        assert!(parse_timezone("../etc/passwd").is_err());
        assert!(parse_timezone("").is_err());
    }
}
