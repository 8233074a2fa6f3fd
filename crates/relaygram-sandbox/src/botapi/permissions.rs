//! The `permissions` parameter of restrictChatMember, read the way the Bot API server reads
//! it: absent fields are false, a few imply others unless `use_independent_chat_permissions`
//! is set, and a non-boolean field is refused.

use serde_json::{Map, Value};

use crate::params::Params;
use crate::reply::ApiError;

/// The media rights that `can_send_media_messages` stands for.
const MEDIA: &[&str] = &[
    "can_send_audios",
    "can_send_documents",
    "can_send_photos",
    "can_send_videos",
    "can_send_video_notes",
    "can_send_voice_notes",
];

/// Every right a ChatMemberRestricted object lists, in the server's order.
const ALL: &[&str] = &[
    "can_send_messages",
    "can_send_media_messages",
    "can_send_audios",
    "can_send_documents",
    "can_send_photos",
    "can_send_videos",
    "can_send_video_notes",
    "can_send_voice_notes",
    "can_send_polls",
    "can_send_other_messages",
    "can_add_web_page_previews",
    "can_react_to_messages",
    "can_edit_tag",
    "can_change_info",
    "can_invite_users",
    "can_pin_messages",
    "can_manage_topics",
];

/// The permissions a restriction grants, every field present.
pub fn parse(params: &Params) -> Result<Map<String, Value>, ApiError> {
    let independent = params.bool("use_independent_chat_permissions");
    let object = match params.raw("permissions") {
        None => Map::new(),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(o)) => o,
            Ok(_) => return Err(ApiError::bad_request("object expected as permissions")),
            Err(_) => {
                return Err(ApiError::bad_request("can't parse permissions JSON object"));
            }
        },
        Some(Value::Object(o)) => o.clone(),
        Some(_) => return Err(ApiError::bad_request("object expected as permissions")),
    };
    let field = |name: &str| -> Result<Option<bool>, ApiError> {
        match object.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(ApiError::bad_request(format!(
                "can't parse chat permissions: Field \"{name}\" must be of type Boolean"
            ))),
        }
    };
    let mut p = std::collections::HashMap::new();
    for name in [
        "can_send_messages",
        "can_send_polls",
        "can_send_other_messages",
        "can_add_web_page_previews",
        "can_change_info",
        "can_invite_users",
        "can_pin_messages",
    ] {
        p.insert(name, field(name)?.unwrap_or(false));
    }
    let pin = p["can_pin_messages"];
    p.insert(
        "can_manage_topics",
        field("can_manage_topics")?.unwrap_or(pin),
    );
    if MEDIA.iter().any(|m| object.contains_key(*m)) {
        for m in MEDIA {
            p.insert(*m, field(m)?.unwrap_or(false));
        }
    } else {
        // The legacy field sets all six; sending media implies sending text.
        let media = field("can_send_media_messages")?.unwrap_or(false);
        for m in MEDIA {
            p.insert(*m, media);
        }
        if media && !independent {
            p.insert("can_send_messages", true);
        }
    }
    p.insert("can_edit_tag", field("can_edit_tag")?.unwrap_or(pin));
    let text = p["can_send_messages"];
    p.insert(
        "can_react_to_messages",
        field("can_react_to_messages")?.unwrap_or(text),
    );
    if !independent {
        if p["can_send_other_messages"] || p["can_add_web_page_previews"] {
            for m in MEDIA.iter().chain(&["can_send_messages"]) {
                p.insert(*m, true);
            }
        }
        if p["can_send_polls"] {
            p.insert("can_send_messages", true);
        }
    }
    let media = MEDIA.iter().any(|m| p[m]);
    p.insert("can_send_media_messages", media);
    Ok(ALL
        .iter()
        .map(|k| (k.to_string(), Value::Bool(p[k])))
        .collect())
}

/// Whether nothing is taken away: such a "restriction" makes a plain member.
pub fn grants_everything(permissions: &Map<String, Value>) -> bool {
    permissions.values().all(|v| v == &Value::Bool(true))
}
