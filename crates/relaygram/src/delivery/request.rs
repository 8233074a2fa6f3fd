//! What `POST /v1/messages` takes, and its validation into content and targets.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::services::{ServiceError, ServiceResult};
use crate::templates::ParseMode;

/// A send request: the same JSON `POST /v1/messages` takes (schedules store it too).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"to": {"chat_id": 100000001}, "text": "Your order <b>#42</b> shipped",
    "parse_mode": "HTML", "buttons": [[{"text": "Track", "url": "https://example.com/42"}]]}))]
pub struct SendRequest {
    /// The sending bot; optional when the tenant has one bot or the target implies it.
    #[serde(default)]
    pub bot_id: Option<String>,
    /// `{"chat_id": 123}`, `{"link_id": "link_…"}`, `{"external_id": "user-7"}` (every
    /// active link of that app user), `{"category": "alerts"}` (every opted-in link),
    /// `{"connect_code_id": "cc_…"}` (every active link made with that team code),
    /// `{"gated_chat_id": "gc_…"}` (the gated chat itself; with `"members": true`, each
    /// member with access in their private chat), or a
    /// list of up to 10,000 of these. Each target may carry its own `"data": {…}` (with
    /// `template`), merged over the request's `data` for its recipients. Targets that reach
    /// nobody are reported in `skipped`; when none reaches anyone the answer is 422
    /// `no-recipients` and nothing is stored.
    #[schema(schema_with = to_schema)]
    pub to: Value,
    /// Text (a caption with `photo` or `document`).
    #[serde(default)]
    pub text: Option<String>,
    /// `HTML` or `MarkdownV2`; plain text when omitted (Telegram's legacy `Markdown` is
    /// refused).
    #[serde(default)]
    #[schema(schema_with = parse_mode_schema)]
    pub parse_mode: Option<String>,
    /// A template key (instead of `text`).
    #[serde(default)]
    pub template: Option<String>,
    /// Template variables. A template that reads `link` also gets each recipient's link
    /// (`link.external_id`, `link.metadata.*`, `link.timezone`) and is rendered per recipient.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub data: Option<Value>,
    /// Inline keyboard rows: `{"text", "url"}` or `{"text", "callback_data"}` (any length:
    /// stored here, Telegram gets a short token, the app gets `callback.received`).
    #[serde(default)]
    pub buttons: Option<Vec<Vec<ButtonSpec>>>,
    /// A photo: URL or Telegram `file_id`.
    #[serde(default)]
    pub photo: Option<String>,
    /// A document: URL or Telegram `file_id`.
    #[serde(default)]
    pub document: Option<String>,
    /// Forum topic.
    #[serde(default)]
    pub message_thread_id: Option<i64>,
    /// Send without sound.
    #[serde(default)]
    pub silent: bool,
    /// A second message with this key within `throttle_seconds` is stored as `throttled`:
    /// per recipient (chat) by default, or across the tenant (`throttle_scope`).
    #[serde(default)]
    pub throttle_key: Option<String>,
    /// What one throttle window covers: `recipient` (the default: each chat has its own
    /// window, so one user's alert does not silence another's) or `tenant` (the first
    /// request with the key in the window goes, the next ones are throttled whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle_scope: Option<ThrottleScope>,
    /// The throttle window, 1 to 2678400 seconds (31 days; default 60).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 2678400)]
    pub throttle_seconds: Option<u32>,
    /// Not before this time (RFC 3339).
    #[serde(default)]
    pub send_at: Option<String>,
    /// Not before this wall-clock time in **each recipient's** time zone (the link's
    /// `timezone`): a naive local date-time, `2026-11-22T09:00` or `2026-11-22T09:00:00`.
    /// A time already past for a recipient sends at once. Not with `send_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = json!("2026-11-22T09:00"))]
    pub send_at_local: Option<String>,
    /// With `send_at_local`: the IANA time zone for recipients whose link has none (and
    /// `chat_id` targets); `UTC` when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = json!("Europe/Paris"))]
    pub default_timezone: Option<String>,
    /// Higher goes first (-100..=100, default 0); order per chat holds within a priority.
    /// `"urgent"` is 100: urgent messages (priority 100) ignore the link's quiet hours.
    #[serde(default, deserialize_with = "priority_or_urgent")]
    #[schema(schema_with = priority_schema)]
    pub priority: Option<i64>,
    /// The app's own JSON object (up to 4096 bytes), kept with the send and given back with a
    /// user's reply to one of its messages (`message.received`'s `reply_to.metadata`) and
    /// with a press of one of its buttons (`callback.received`'s `metadata`), so the app
    /// can thread a conversation without a lookup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>, example = json!({"ticket": "T-1042"}))]
    pub metadata: Option<Value>,
    /// Collect into a digest instead of sending now: `{"key", "window"}` or
    /// `{"key", "schedule_id"}` (see docs/delivery.md, Digests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<crate::digests::DigestSpec>,
}

pub use crate::templates::ButtonSpec;

/// A schema written as JSON (for shapes the derive cannot say: one-of-several forms).
pub(crate) fn json_schema(
    schema: Value,
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    serde_json::from_value(schema).expect("a valid schema")
}

/// One target of a send, as [`parse_target`] reads it.
pub(crate) fn target_schema() -> Value {
    let text = serde_json::json!({"type": "string", "minLength": 1, "maxLength": 200});
    // Each target may carry its own template variables (a personal message).
    let data = serde_json::json!({"type": "object",
        "description": "Template variables for this target's recipients, merged over the request's `data` (with `template`)"});
    let one = |key: &str, value: Value| {
        serde_json::json!({"type": "object", "required": [key],
                           "properties": {key: value, "data": data.clone()},
                           "additionalProperties": false})
    };
    serde_json::json!({"oneOf": [
        one("chat_id", serde_json::json!({"oneOf": [
            {"type": "integer", "format": "int64"},
            {"type": "string", "pattern": "^\\s*-?[0-9]+\\s*$"}
        ], "description": "A Telegram chat id (a string of digits is read as one)"})),
        one("link_id", text.clone()),
        one("external_id", text.clone()),
        one("category", text.clone()),
        one("connect_code_id", text.clone()),
        {"type": "object", "required": ["gated_chat_id"],
         "properties": {"gated_chat_id": text, "data": data,
            "members": {"type": "boolean", "description": "Each member with access, in their private chat, instead of the chat"}},
         "additionalProperties": false},
    ]})
}

fn to_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    json_schema(serde_json::json!({
        "description": "One target, or a list of 1 to 10,000",
        "oneOf": [
            target_schema(),
            {"type": "array", "items": target_schema(), "minItems": 1, "maxItems": MAX_TARGETS}
        ],
        "example": {"chat_id": 100000001}
    }))
}

fn parse_mode_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    json_schema(serde_json::json!({
        "type": ["string", "null"],
        "enum": ["HTML", "MarkdownV2", null],
        "description": "`HTML` or `MarkdownV2`; plain text when omitted"
    }))
}

fn priority_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    json_schema(serde_json::json!({
        "description": "Higher goes first (-100..=100, default 0); `\"urgent\"` is 100 and \
            ignores the link's quiet hours",
        "oneOf": [
            {"type": "integer", "format": "int64", "minimum": -100, "maximum": 100},
            {"type": "string", "enum": ["urgent"]},
            {"type": "null"}
        ],
        "example": "urgent"
    }))
}

/// `priority` as a number, or `"urgent"` ([`super::quiet::URGENT`]).
fn priority_or_urgent<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Given {
        Number(i64),
        Word(String),
    }
    match Option::<Given>::deserialize(d)? {
        None => Ok(None),
        Some(Given::Number(n)) => Ok(Some(n)),
        Some(Given::Word(w)) if w == "urgent" => Ok(Some(super::quiet::URGENT)),
        Some(Given::Word(w)) => Err(serde::de::Error::custom(format!(
            "priority must be a number from -100 to 100 or \"urgent\", not {w:?}"
        ))),
    }
}

pub use crate::store::ThrottleScope;

/// One target of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A Telegram chat id (needs a bot).
    Chat(i64),
    /// One link.
    Link(String),
    /// Every active link of an app user.
    ExternalId(String),
    /// Every opted-in link of a category.
    Category(String),
    /// Every active link made with a team connect code.
    ConnectCode(String),
    /// A gated chat itself (`members` false), or the private chat of each of its members
    /// with access (`members` true).
    GatedChat {
        /// The gated chat's id.
        id: String,
        /// Its members one by one instead of the chat.
        members: bool,
    },
}

impl Target {
    /// The target as the request gave it, for reports.
    pub fn to_json(&self) -> Value {
        match self {
            Target::Chat(id) => serde_json::json!({"chat_id": id}),
            Target::Link(id) => serde_json::json!({"link_id": id}),
            Target::ExternalId(id) => serde_json::json!({"external_id": id}),
            Target::Category(key) => serde_json::json!({"category": key}),
            Target::ConnectCode(id) => serde_json::json!({"connect_code_id": id}),
            Target::GatedChat { id, members: false } => serde_json::json!({"gated_chat_id": id}),
            Target::GatedChat { id, members: true } => {
                serde_json::json!({"gated_chat_id": id, "members": true})
            }
        }
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid {
        field,
        message: message.into(),
    }
}

/// Most targets one request may list.
pub const MAX_TARGETS: usize = 10_000;

/// Room for one listed target in a body: the longest form, `{"external_id": "…"}` (or
/// `link_id`, `category`) with 200 bytes of id (16 + 200 + 2 bytes), its comma and white
/// space, rounded up.
pub const MAX_TARGET_BYTES: usize = 256;

/// The body limit of `POST /v1/messages`: the longest list [`MAX_TARGETS`] ×
/// [`MAX_TARGET_BYTES`] (2,560,000 bytes) on top of `max_body_bytes` for the rest of the
/// request (text, buttons, data), so the documented maximum always fits.
pub fn send_body_limit(max_body_bytes: usize) -> usize {
    max_body_bytes.saturating_add(MAX_TARGETS * MAX_TARGET_BYTES)
}

/// One listed target, with the data its recipients get over the request's (`{"link_id":
/// "…", "data": {…}}`).
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    /// Who.
    pub target: Target,
    /// Template variables merged over the request's `data` for this target's recipients.
    pub data: Option<Value>,
}

/// Parses `to`.
pub fn parse_targets(to: &Value) -> ServiceResult<Vec<Listed>> {
    let items: Vec<&Value> = match to {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    if items.is_empty() {
        return Err(invalid("to", "names no recipient"));
    }
    if items.len() > MAX_TARGETS {
        return Err(invalid(
            "to",
            format!("lists more than {MAX_TARGETS} targets; use a category"),
        ));
    }
    items.into_iter().map(parse_listed).collect()
}

fn parse_listed(v: &Value) -> ServiceResult<Listed> {
    let Some(obj) = v.as_object() else {
        return Err(invalid("to", SHAPE));
    };
    let data = match obj.get("data") {
        None => None,
        Some(d @ Value::Object(_)) => Some(d.clone()),
        Some(_) => {
            return Err(invalid(
                "to",
                "a target's `data` must be a JSON object (its keys are template variables)",
            ));
        }
    };
    let mut rest = obj.clone();
    rest.remove("data");
    Ok(Listed {
        target: parse_target(&Value::Object(rest))?,
        data,
    })
}

const SHAPE: &str = "each target is {\"chat_id\": 123}, {\"link_id\": \"…\"}, \
                     {\"external_id\": \"…\"}, {\"category\": \"…\"}, \
                     {\"connect_code_id\": \"…\"} or {\"gated_chat_id\": \"…\"} (with \
                     \"members\": true for each member's private chat), with an optional \
                     \"data\": {…}";

fn parse_target(v: &Value) -> ServiceResult<Target> {
    if let Some(obj) = v.as_object()
        && let Some(id) = obj.get("gated_chat_id")
    {
        let members = match obj.get("members") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(invalid("to", "members must be true or false")),
        };
        if obj.keys().any(|k| k != "gated_chat_id" && k != "members") {
            return Err(invalid("to", SHAPE));
        }
        let id = id
            .as_str()
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= 200)
            .ok_or_else(|| {
                invalid(
                    "to",
                    "gated_chat_id must be a string of 1 to 200 characters",
                )
            })?;
        return Ok(Target::GatedChat {
            id: id.to_string(),
            members,
        });
    }
    let obj = v
        .as_object()
        .filter(|o| o.len() == 1)
        .ok_or_else(|| invalid("to", SHAPE))?;
    let (key, value) = obj.iter().next().ok_or_else(|| invalid("to", SHAPE))?;
    let text = |v: &Value| -> ServiceResult<String> {
        v.as_str()
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= 200)
            .map(str::to_string)
            .ok_or_else(|| {
                invalid(
                    "to",
                    format!("{key} must be a string of 1 to 200 characters"),
                )
            })
    };
    match key.as_str() {
        "chat_id" => value
            .as_i64()
            .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
            .filter(|id| *id != 0)
            .map(Target::Chat)
            .ok_or_else(|| invalid("to", "chat_id must be a Telegram chat id (an integer)")),
        "link_id" => text(value).map(Target::Link),
        "external_id" => text(value).map(Target::ExternalId),
        "category" => text(value).map(Target::Category),
        "connect_code_id" => text(value).map(Target::ConnectCode),
        _ => Err(invalid("to", SHAPE)),
    }
}

/// The request's `parse_mode` (Telegram's names, any case) for the renderer; plain text
/// when omitted. Legacy `Markdown` is refused: its rules cannot be checked before sending
/// (MarkdownV2 and HTML are, as Telegram parses them).
pub fn parse_mode(mode: Option<&str>) -> ServiceResult<ParseMode> {
    match mode.map(str::trim) {
        None | Some("") => Ok(ParseMode::Plain),
        Some(m) if m.eq_ignore_ascii_case("html") => Ok(ParseMode::Html),
        Some(m)
            if m.eq_ignore_ascii_case("markdownv2") || m.eq_ignore_ascii_case("markdown_v2") =>
        {
            Ok(ParseMode::MarkdownV2)
        }
        Some(m) if m.eq_ignore_ascii_case("plain") => Ok(ParseMode::Plain),
        Some(other) => Err(invalid(
            "parse_mode",
            format!("must be HTML or MarkdownV2 (or left out for plain text), got {other:?}"),
        )),
    }
}

/// A media reference: an http(s) URL or a Telegram `file_id`.
pub fn media_ref(field: &'static str, value: &str) -> ServiceResult<String> {
    let v = value.trim();
    let url_ok =
        (v.starts_with("https://") || v.starts_with("http://")) && reqwest::Url::parse(v).is_ok();
    let file_id_ok = !v.is_empty()
        && v.len() <= 256
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if url_ok || file_id_ok {
        Ok(v.to_string())
    } else {
        Err(invalid(
            field,
            "must be an http(s) URL or a Telegram file_id",
        ))
    }
}

/// Longest `metadata` of a send, serialized.
pub const MAX_METADATA_BYTES: usize = 4096;

/// Checks a send's `metadata` (a JSON object of at most [`MAX_METADATA_BYTES`]) and gives
/// what is stored.
pub fn metadata(value: Option<&Value>) -> ServiceResult<Option<String>> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) => {
            let text = v.to_string();
            if text.len() > MAX_METADATA_BYTES {
                return Err(invalid(
                    "metadata",
                    format!("is {} bytes; at most {MAX_METADATA_BYTES}", text.len()),
                ));
            }
            Ok(Some(text))
        }
        Some(_) => Err(invalid("metadata", "must be a JSON object")),
    }
}

/// Parses `send_at` (RFC 3339) into UTC ms.
pub fn send_at(value: Option<&str>) -> ServiceResult<Option<i64>> {
    value
        .map(|v| {
            v.trim()
                .parse::<jiff::Timestamp>()
                .map(|t| t.as_millisecond())
                .map_err(|e| invalid("send_at", format!("must be an RFC 3339 time: {e}")))
        })
        .transpose()
}

/// Parses `send_at_local` and `default_timezone` into the stored local time
/// (`2026-11-22T09:00:00`) and zone name, and the earliest instant (UTC ms) that time
/// occurs anywhere.
pub fn send_at_local(
    local: Option<&str>,
    default_timezone: Option<&str>,
) -> ServiceResult<Option<(String, String, i64)>> {
    let Some(text) = local else {
        if default_timezone.is_some() {
            return Err(invalid(
                "default_timezone",
                "is only used with send_at_local",
            ));
        }
        return Ok(None);
    };
    let at = super::local::parse_local(text).map_err(|m| invalid("send_at_local", m))?;
    let zone = match default_timezone {
        Some(name) => crate::schedules::occurrence::Zone::parse(name)
            .map_err(|e| invalid("default_timezone", e.message))?,
        None => crate::schedules::occurrence::Zone::utc(),
    };
    let earliest = super::local::earliest_instant(at)
        .ok_or_else(|| invalid("send_at_local", "is out of range"))?;
    Ok(Some((
        super::local::format_local(at),
        zone.name().to_string(),
        earliest,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn targets_parse_one_or_a_list() {
        let targets = |to| -> Vec<Target> {
            parse_targets(&to)
                .unwrap()
                .into_iter()
                .map(|l| l.target)
                .collect()
        };
        assert_eq!(targets(json!({"chat_id": 5})), vec![Target::Chat(5)]);
        assert_eq!(
            targets(json!([{"link_id": "l1"}, {"category": "alerts"}])),
            vec![Target::Link("l1".into()), Target::Category("alerts".into())]
        );
        let listed = parse_targets(&json!([{"link_id": "l1", "data": {"n": 1}}])).unwrap();
        assert_eq!(listed[0].data, Some(json!({"n": 1})));
        assert!(parse_targets(&json!({"link_id": "l1", "data": 5})).is_err());
        assert!(parse_targets(&json!({"data": {}})).is_err());
        assert!(parse_targets(&json!({"chat_id": 5, "link_id": "x"})).is_err());
        assert!(parse_targets(&json!([])).is_err());
        assert!(parse_targets(&json!({"phone": "1"})).is_err());
    }

    #[test]
    fn send_at_local_is_a_naive_time_with_an_optional_default_zone() {
        assert_eq!(send_at_local(None, None).unwrap(), None);
        let (at, zone, earliest) = send_at_local(Some("2026-11-22T09:00"), None)
            .unwrap()
            .unwrap();
        assert_eq!((at.as_str(), zone.as_str()), ("2026-11-22T09:00:00", "UTC"));
        assert_eq!(
            earliest,
            "2026-11-21T19:00:00Z"
                .parse::<jiff::Timestamp>()
                .unwrap()
                .as_millisecond()
        );
        let (_, zone, _) = send_at_local(Some("2026-11-22T09:00:00"), Some("Europe/Paris"))
            .unwrap()
            .unwrap();
        assert_eq!(zone, "Europe/Paris");
        let field = |r: ServiceResult<_>| match r {
            Err(ServiceError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(send_at_local(Some("2026-11-22T09:00Z"), None)),
            "send_at_local"
        );
        assert_eq!(
            field(send_at_local(Some("2026-11-22T09:00"), Some("Mars/Base"))),
            "default_timezone"
        );
        assert_eq!(
            field(send_at_local(None, Some("Europe/Paris"))),
            "default_timezone"
        );
    }

    #[test]
    fn media_is_a_url_or_a_file_id() {
        assert!(media_ref("photo", "https://example.com/a.png").is_ok());
        assert!(media_ref("photo", "AgACAgIAAxkBAAIB").is_ok());
        assert!(media_ref("photo", "not a file id").is_err());
    }
}
