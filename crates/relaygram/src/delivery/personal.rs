//! Personal messages: one request rendered for each recipient on its own.
//!
//! A request is personal when a listed target carries its own `data`, or when its template
//! reads `link` (the recipient's link: `link.external_id`, `link.metadata.*`,
//! `link.timezone`). Its fan-outs are then listed in memory (see
//! [`super::recipients::Resolution::Personal`]) and every message stores its own rendered
//! content. A recipient whose render fails (a missing variable, above all) is skipped with
//! the reason; the others still get theirs.

use serde_json::{Map, Value, json};

use super::content::{OwnButtons, StoredContent, render_content};
use super::recipients::{Personal, Recipients, SkipReason, Skipped};
use super::request::Target;
use crate::services::ServiceError;
use crate::store::Callback;
use crate::store::LinkRecord;
use crate::templates::{ButtonSpec, TemplateRecord};

/// The template variable that holds the recipient's link.
pub const LINK_VARIABLE: &str = "link";

/// What a personal request renders, once per recipient.
#[derive(Debug)]
pub struct PersonalTemplate {
    /// The tenant's template.
    pub template: TemplateRecord,
    /// The request's buttons instead of the template's, when it gave some.
    pub buttons: Option<Vec<Vec<ButtonSpec>>>,
    /// The request's `data`, under every target's own.
    pub data: Option<Value>,
    /// `photo` or `document`.
    pub media: Option<(String, String)>,
    /// Forum topic.
    pub message_thread_id: Option<i64>,
    /// Without sound.
    pub silent: bool,
}

/// Whether a request rendering `template` with `data` (and targets that carry their own
/// data or not) is rendered per recipient. An app's own `link` variable in `data` wins
/// over the recipient's link, so a request that sets it is not personal for that reason.
pub fn is_personal(template: &TemplateRecord, data: Option<&Value>, target_data: bool) -> bool {
    let own_link = data.and_then(|d| d.get(LINK_VARIABLE)).is_some();
    target_data || (!own_link && template.reads(LINK_VARIABLE))
}

/// The recipient's link as templates see it. Fields without a value are left out (so
/// `{{ link.timezone | default("UTC") }}` works, and a bare use is a missing variable);
/// `metadata` is always an object.
pub fn link_variables(link: &LinkRecord) -> Value {
    let mut v = Map::new();
    v.insert("id".into(), json!(link.id));
    v.insert("chat_id".into(), json!(link.chat_id));
    if let Some(external_id) = &link.external_id {
        v.insert("external_id".into(), json!(external_id));
    }
    if let Some(timezone) = &link.timezone {
        v.insert("timezone".into(), json!(timezone));
    }
    let metadata = link
        .metadata
        .as_deref()
        .and_then(|m| serde_json::from_str::<Value>(m).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    v.insert("metadata".into(), metadata);
    Value::Object(v)
}

/// `over` merged into `base`: objects key by key (recursively), anything else replaced.
pub fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

/// The data one recipient renders with: the request's, the target's over it, and the
/// recipient's `link` unless the data has its own.
fn recipient_data(request: Option<&Value>, personal: &Personal) -> Value {
    let mut data = request.cloned().unwrap_or_else(|| json!({}));
    if let Some(own) = &personal.data {
        merge(&mut data, own);
    }
    if let (Value::Object(map), Some(link)) = (&mut data, &personal.link)
        && !map.contains_key(LINK_VARIABLE)
    {
        map.insert(LINK_VARIABLE.into(), link_variables(link));
    }
    data
}

/// Renders `p` for every row of `recipients`, storing each one's content in its row, and
/// moves the rows whose render fails to `skipped`. Returns the first rendered content (the
/// request keeps it: edits take its media, topic and sound, which every recipient shares)
/// and every recipient's callback data.
pub fn render_each(
    p: &PersonalTemplate,
    recipients: &mut Recipients,
) -> (Option<StoredContent>, Vec<Callback>) {
    let mut first = None;
    let mut callbacks = Vec::new();
    let mut failed = std::collections::HashSet::new();
    let none = Personal::default();
    for row in &mut recipients.rows {
        let personal = recipients.personal.get(&row.id).unwrap_or(&none);
        let data = recipient_data(p.data.as_ref(), personal);
        let mut content = p.template.content(Some(&data));
        if let Some(buttons) = &p.buttons {
            content.buttons = buttons;
        }
        match render_content(
            &content,
            p.media.clone(),
            p.message_thread_id,
            p.silent,
            OwnButtons::Refused,
        ) {
            Ok((stored, own_callbacks)) => {
                row.content = Some(serde_json::to_string(&stored).unwrap_or_default());
                callbacks.extend(own_callbacks);
                first.get_or_insert(stored);
            }
            Err(e) => {
                let (field, message) = match e {
                    ServiceError::Invalid { field, message } => (field, message),
                    other => ("template", other.to_string()),
                };
                let reason = if field == "data" {
                    SkipReason::MissingVariable
                } else {
                    SkipReason::RenderFailed
                };
                let target = match &row.link_id {
                    Some(id) => Target::Link(id.clone()),
                    None => Target::Chat(row.chat_id),
                };
                let whom = match &row.link_id {
                    Some(id) => format!("link {id}"),
                    None => format!("chat {}", row.chat_id),
                };
                failed.insert(row.id.clone());
                recipients.skipped.push(Skipped::new(
                    &target,
                    reason,
                    format!("for {whom}, {field} {message}"),
                ));
            }
        }
    }
    recipients.rows.retain(|r| !failed.contains(&r.id));
    (first, callbacks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_data_merges_over_the_request_data() {
        let mut base = json!({"a": 1, "user": {"name": "x", "plan": "free"}});
        merge(&mut base, &json!({"user": {"name": "Ada"}, "b": [1]}));
        assert_eq!(
            base,
            json!({"a": 1, "user": {"name": "Ada", "plan": "free"}, "b": [1]})
        );
    }

    #[test]
    fn an_apps_own_link_variable_wins() {
        let link = LinkRecord {
            id: "link_1".into(),
            tenant_id: "t".into(),
            bot_id: "b".into(),
            external_id: Some("u-1".into()),
            chat_id: 5,
            chat_type: "private".into(),
            active: true,
            source: "token".into(),
            connect_code_id: None,
            link_token_id: None,
            telegram_user_id: None,
            metadata: Some(r#"{"name":"Ada"}"#.into()),
            timezone: None,
            quiet_start: None,
            quiet_end: None,
            created_at: 0,
            updated_at: 0,
        };
        let personal = Personal {
            data: None,
            link: Some(link),
        };
        let data = recipient_data(Some(&json!({"x": 1})), &personal);
        assert_eq!(data["link"]["metadata"]["name"], "Ada");
        assert_eq!(data["link"]["external_id"], "u-1");
        assert!(data["link"].get("timezone").is_none());
        let own = recipient_data(Some(&json!({"link": "https://e.x"})), &personal);
        assert_eq!(own["link"], "https://e.x");
    }
}
