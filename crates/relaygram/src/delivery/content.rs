//! Rendered content as stored once per request, and how it becomes Bot API calls.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::job::JobContent;
use crate::ids::new_id;
use crate::services::ServiceResult;
use crate::store::Callback;
use crate::templates::{self, Content, Limit, Rendered, RenderedButton};

/// Prefix of the short token Telegram gets for a callback button; the router looks the
/// full data up by the id after it.
pub const CALLBACK_PREFIX: &str = "rg:cb:";

/// What every message of a request sends.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StoredContent {
    /// Text parts in order (the caption first for media); each is one Telegram message.
    pub parts: Vec<String>,
    /// Telegram parse mode.
    pub parse_mode: Option<String>,
    /// `photo` or `document` with its URL or file id.
    pub media: Option<(String, String)>,
    /// The inline keyboard (on the last part), callback data already replaced by tokens.
    pub reply_markup: Option<Value>,
    /// Forum topic.
    pub message_thread_id: Option<i64>,
    /// Without sound.
    pub silent: bool,
    /// An edit or delete job's calls on a sent message, instead of sends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobContent>,
}

impl StoredContent {
    /// The stored content of an edit or delete job: one part per call, so the sender's
    /// per-part loop (and its pacing of each part) runs the calls.
    pub fn of_job(job: JobContent) -> StoredContent {
        StoredContent {
            parts: vec![String::new(); job.calls.len()],
            job: Some(job),
            ..StoredContent::default()
        }
    }

    /// The Bot API method and parameters of part `index` to `chat_id`.
    pub fn call_for(&self, index: usize, chat_id: i64) -> (&'static str, Value) {
        if let Some(call) = self.job.as_ref().and_then(|j| j.calls.get(index)) {
            let mut params = call.params.clone();
            if params.get("chat_id").is_none() {
                params["chat_id"] = json!(chat_id);
            }
            return (call.method.as_str(), params);
        }
        let last = index + 1 == self.parts.len().max(1);
        let text = self.parts.get(index).cloned().unwrap_or_default();
        let mut params = json!({"chat_id": chat_id});
        let method = match (&self.media, index) {
            (Some((kind, media)), 0) => {
                params[kind.as_str()] = json!(media);
                if !text.is_empty() {
                    params["caption"] = json!(text);
                }
                if kind == "photo" {
                    "sendPhoto"
                } else {
                    "sendDocument"
                }
            }
            _ => {
                params["text"] = json!(text);
                "sendMessage"
            }
        };
        if let Some(mode) = &self.parse_mode {
            params["parse_mode"] = json!(mode);
        }
        if let Some(thread) = self.message_thread_id {
            params["message_thread_id"] = json!(thread);
        }
        if self.silent {
            params["disable_notification"] = json!(true);
        }
        if last && let Some(markup) = &self.reply_markup {
            params["reply_markup"] = markup.clone();
        }
        (method, params)
    }
}

/// Callback data of one of relaygram's own buttons (`rg:…`, not a stored-data token), short
/// enough for Telegram's 64 bytes.
pub fn is_own_action(data: &str) -> bool {
    data.starts_with("rg:") && !data.starts_with(CALLBACK_PREFIX) && data.len() <= 64
}

/// Whether a request may carry relaygram's own `rg:` buttons: only the router's replies may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnButtons {
    /// The router's replies.
    Allowed,
    /// Everything the app sends.
    Refused,
}

/// The stored content of a request and the server-side data of its callback buttons
/// (id, data), rendered once per request (all its recipients share the same data).
pub fn render_content(
    content: &Content<'_>,
    media: Option<(String, String)>,
    message_thread_id: Option<i64>,
    silent: bool,
    own_buttons: OwnButtons,
) -> ServiceResult<(StoredContent, Vec<Callback>)> {
    // A caption is the first part (an empty one: media without a caption); when it is
    // over 1024 characters the renderer numbers its parts and the rest follow as texts.
    let limit = if media.is_some() {
        Limit::Caption
    } else {
        Limit::Text
    };
    let rendered: Rendered = templates::render(content, limit)?;
    if own_buttons == OwnButtons::Refused
        && rendered
            .buttons
            .iter()
            .flatten()
            .any(|b| matches!(b, RenderedButton::Callback { data, .. } if data.starts_with("rg:")))
    {
        // A press would be taken for one of relaygram's own (`/stop`, `/settings`).
        return Err(crate::services::ServiceError::Invalid {
            field: "buttons",
            message: "callback data starting with `rg:` is reserved for relaygram's own buttons"
                .into(),
        });
    }
    let mut callbacks = Vec::new();
    let keyboard: Vec<Value> = rendered
        .buttons
        .into_iter()
        .map(|row| {
            Value::Array(
                row.into_iter()
                    .map(|b| match b {
                        RenderedButton::Url { text, url } => json!({"text": text, "url": url}),
                        // relaygram's own buttons (`rg:stop:yes`, `rg:cat:<id>`, from the
                        // router's replies) are short and need no storage: sent as they
                        // are, they match the keyboards the router redraws directly.
                        RenderedButton::Callback { text, data, .. } if is_own_action(&data) => {
                            json!({"text": text, "callback_data": data})
                        }
                        RenderedButton::Callback { text, data, answer } => {
                            let id = new_id("cb");
                            let token = format!("{CALLBACK_PREFIX}{id}");
                            callbacks.push(Callback {
                                id,
                                data,
                                answer: answer
                                    .map(|a| serde_json::to_string(&a).unwrap_or_default()),
                            });
                            json!({"text": text, "callback_data": token})
                        }
                    })
                    .collect(),
            )
        })
        .collect();
    let stored = StoredContent {
        parts: rendered.parts,
        parse_mode: rendered.parse_mode.telegram().map(str::to_string),
        media,
        reply_markup: (!keyboard.is_empty()).then(|| json!({"inline_keyboard": keyboard})),
        message_thread_id,
        silent,
        job: None,
    };
    Ok((stored, callbacks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_puts_the_caption_first_and_buttons_last() {
        let c = StoredContent {
            parts: vec!["cap".into(), "more".into()],
            parse_mode: None,
            media: Some(("photo".into(), "https://e.x/p.png".into())),
            reply_markup: Some(json!({"inline_keyboard": []})),
            message_thread_id: Some(3),
            silent: true,
            job: None,
        };
        let (m0, p0) = c.call_for(0, 7);
        assert_eq!(m0, "sendPhoto");
        assert_eq!(p0["caption"], "cap");
        assert!(p0.get("reply_markup").is_none());
        let (m1, p1) = c.call_for(1, 7);
        assert_eq!(m1, "sendMessage");
        assert_eq!(p1["reply_markup"], json!({"inline_keyboard": []}));
        assert_eq!(p1["disable_notification"], true);
    }
}
