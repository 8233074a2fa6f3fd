//! Rendered content as stored once per request, and how it becomes Bot API calls.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::request::{CAPTION_LIMIT, TEXT_LIMIT};
use crate::services::{ServiceError, ServiceResult};

/// Prefix of the short token Telegram gets for a callback button; the router looks the
/// full data up by the id after it.
pub const CALLBACK_PREFIX: &str = "rg:cb:";

/// What every message of a request sends.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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
}

impl StoredContent {
    /// The Bot API method and parameters of part `index` to `chat_id`.
    pub fn call_for(&self, index: usize, chat_id: i64) -> (&'static str, Value) {
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

/// Splits a literal text into parts Telegram accepts: at a paragraph, then a line, then a
/// word boundary, never inside a character. (Template rendering with HTML-aware splitting
/// replaces this when the templates module lands.)
pub fn split_literal(text: &str, limit: usize) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = text;
    while rest.chars().count() > limit {
        let cut_byte = rest
            .char_indices()
            .nth(limit)
            .map_or(rest.len(), |(i, _)| i);
        let window = &rest[..cut_byte];
        let at = ["\n\n", "\n", " "]
            .iter()
            .find_map(|sep| window.rfind(sep).filter(|i| *i > 0).map(|i| i + sep.len()))
            .unwrap_or(cut_byte);
        parts.push(rest[..at].trim_end().to_string());
        rest = rest[at..].trim_start();
    }
    if parts.is_empty() {
        parts.push(rest.to_string());
    } else if !rest.trim().is_empty() {
        parts.push(rest.trim_end().to_string());
    }
    parts
}

/// Renders the request's text (literally for now) into parts: a media caption is the first
/// part (up to 1024 characters), the rest follow as text messages.
pub fn render_parts(text: Option<&str>, with_media: bool) -> ServiceResult<Vec<String>> {
    let text = text.unwrap_or("");
    if !with_media && text.trim().is_empty() {
        return Err(ServiceError::Invalid {
            field: "text",
            message: "is empty".into(),
        });
    }
    if with_media {
        if text.chars().count() <= CAPTION_LIMIT {
            return Ok(vec![text.to_string()]);
        }
        let mut caption = split_literal(text, CAPTION_LIMIT);
        let first = caption.remove(0);
        let rest = caption.join("\n");
        let mut parts = vec![first];
        parts.extend(split_literal(&rest, TEXT_LIMIT));
        return Ok(parts);
    }
    Ok(split_literal(text, TEXT_LIMIT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_split_at_paragraphs_then_words() {
        let text = format!("{}\n\n{}", "a".repeat(3000), "b ".repeat(1000));
        let parts = split_literal(&text, 4096);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], "a".repeat(3000));
        let words = "word ".repeat(2000);
        let parts = split_literal(&words, 4096);
        assert!(
            parts
                .iter()
                .all(|p| p.chars().count() <= 4096 && p.ends_with("word"))
        );
    }

    #[test]
    fn media_puts_the_caption_first_and_buttons_last() {
        let c = StoredContent {
            parts: vec!["cap".into(), "more".into()],
            parse_mode: None,
            media: Some(("photo".into(), "https://e.x/p.png".into())),
            reply_markup: Some(json!({"inline_keyboard": []})),
            message_thread_id: Some(3),
            silent: true,
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
