//! Message templates and Telegram-aware rendering.
//!
//! [`render`] turns a message's content (a literal text, or a minijinja template and its
//! data) into what the senders send: the text in one or more parts that Telegram will
//! accept, and the inline keyboard. Variables are escaped for the text's `parse_mode`
//! (Telegram HTML by default), a missing variable is an error naming it, the final text is
//! parsed with the same rules as Telegram (so "can't parse entities" becomes a 422 before
//! anything is queued), and a text over the limit is split at safe boundaries into
//! numbered parts (see [`split`]).
//!
//! Templates are stored per tenant (`/v1/templates`, [`service`]) and checked when saved.

pub mod api;
mod engine;
pub mod service;
pub mod split;

use relaygram_sandbox::markup::{parse_html, parse_markdown_v2, utf16_len};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use engine::{TemplateError, check_syntax, escape_html, escape_markdown_v2, reads};

use crate::services::ServiceError;

/// How Telegram reads a text's markup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ParseMode {
    /// Telegram HTML (`<b>`, `<a href>`...); variables are HTML-escaped.
    #[default]
    Html,
    /// Telegram MarkdownV2; variables get MarkdownV2's `\` escapes.
    MarkdownV2,
    /// No markup: the text is shown as it is.
    Plain,
}

impl ParseMode {
    /// `"html"`, `"markdown_v2"` or `"plain"` (as stored and in the API).
    pub fn as_str(self) -> &'static str {
        match self {
            ParseMode::Html => "html",
            ParseMode::MarkdownV2 => "markdown_v2",
            ParseMode::Plain => "plain",
        }
    }

    /// The Bot API's `parse_mode` value; `None` for plain text.
    pub fn telegram(self) -> Option<&'static str> {
        match self {
            ParseMode::Html => Some("HTML"),
            ParseMode::MarkdownV2 => Some("MarkdownV2"),
            ParseMode::Plain => None,
        }
    }
}

impl std::str::FromStr for ParseMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "html" => Ok(ParseMode::Html),
            "markdown_v2" => Ok(ParseMode::MarkdownV2),
            "plain" => Ok(ParseMode::Plain),
            other => Err(format!("unknown parse mode {other:?}")),
        }
    }
}

/// An inline button as the app writes it: exactly one of `url` and `callback_data`.
/// Every string may be a template (rendered with the message's data, without escaping).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"text": "Open order {{ order.id }}", "url": "https://shop.example.com/orders/{{ order.id }}"}))]
pub struct ButtonSpec {
    /// The label.
    pub text: String,
    /// Opens this `http(s)://` or `tg://` URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Sent back to the app as an event when pressed; any length (relaygram stores it and
    /// gives Telegram a short reference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_data: Option<String>,
    /// With `callback_data`: what Telegram shows the user who presses it (a toast, 1 to 200
    /// characters after rendering); a press is answered silently without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// With `answer`: show it as an alert the user closes, not a toast.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub show_alert: bool,
}

/// What a press of a callback button answers (`answerCallbackQuery`'s `text` and
/// `show_alert`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CallbackAnswer {
    /// Shown to the user who pressed.
    pub text: String,
    /// An alert to close instead of a toast.
    #[serde(default)]
    pub show_alert: bool,
}

/// Longest answer to a press, in characters (Telegram's limit).
pub const MAX_ANSWER_CHARS: usize = 200;

/// A button ready to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RenderedButton {
    /// Opens a URL.
    Url {
        /// The label.
        text: String,
        /// The URL.
        url: String,
    },
    /// Comes back to the app when pressed.
    Callback {
        /// The label.
        text: String,
        /// The app's full data, any length (the sender stores it server-side).
        data: String,
        /// What a press answers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        answer: Option<CallbackAnswer>,
    },
}

/// A rendered message: its text parts, in order, and the keyboard (which belongs under the
/// whole text: with several parts, send it with the last one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// One part, or several numbered `[i/n]` when the text was over the limit. Each one
    /// parses in `parse_mode` and fits the limit. A caption may be one empty part.
    pub parts: Vec<String>,
    /// How to send the parts: the content's parse mode, except that split HTML and
    /// MarkdownV2 texts are written back as HTML.
    pub parse_mode: ParseMode,
    /// Rows of buttons.
    pub buttons: Vec<Vec<RenderedButton>>,
}

/// What to render.
#[derive(Debug, Clone, Copy)]
pub struct Content<'a> {
    /// The text, or the template source when `templated`.
    pub source: &'a str,
    /// Markup of the text.
    pub parse_mode: ParseMode,
    /// Rows of buttons (templates too when `templated`).
    pub buttons: &'a [Vec<ButtonSpec>],
    /// Template data (an object); `None` is `{}`.
    pub data: Option<&'a serde_json::Value>,
    /// Render `source` and the buttons with minijinja; otherwise they are taken literally.
    pub templated: bool,
}

/// Telegram's length limits, counted as Telegram counts: UTF-16 code units of the text
/// after entity parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// A message text: 4096.
    Text,
    /// A media caption: 1024.
    Caption,
}

impl Limit {
    /// The limit in UTF-16 code units.
    pub fn units(self) -> usize {
        match self {
            Limit::Text => 4096,
            Limit::Caption => 1024,
        }
    }
}

/// Most parts one message may be split into.
pub const MAX_PARTS: usize = 50;
/// Longest text after rendering, in bytes (far more than [`MAX_PARTS`] messages hold; a
/// cheap stop before parsing and splitting).
pub const MAX_RENDERED_BYTES: usize = 1 << 20;
/// Most buttons in a row (Telegram's limit).
pub const MAX_BUTTONS_PER_ROW: usize = 8;
/// Most buttons in a keyboard (Telegram's limit).
pub const MAX_BUTTONS: usize = 100;
/// Longest callback data kept for a button, in bytes.
pub const MAX_CALLBACK_DATA: usize = 65_536;

/// Why content cannot be rendered. Becomes a 422 naming `field`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RenderError {
    /// `"text"`, `"template"`, `"data"` or `"buttons"`.
    pub field: &'static str,
    /// What is wrong (the missing variable, Telegram's parse error, the line...).
    pub message: String,
}

impl From<RenderError> for ServiceError {
    fn from(e: RenderError) -> Self {
        ServiceError::Invalid {
            field: e.field,
            message: e.message,
        }
    }
}

fn template_error(e: TemplateError, field: &str) -> RenderError {
    match e {
        TemplateError::Syntax(m) => RenderError {
            field: "template",
            message: format!("is not a valid template: {m}"),
        },
        TemplateError::Missing(names, m) if names.is_empty() => RenderError {
            field: "data",
            message: format!("a template variable is missing ({m}, in the {field})"),
        },
        TemplateError::Missing(names, _) => RenderError {
            field: "data",
            message: format!(
                "missing template variable{} {} (used by the {field})",
                if names.len() == 1 { "" } else { "s" },
                names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
        TemplateError::Render(m) => RenderError {
            field: "template",
            message: format!("could not be rendered: {m}"),
        },
    }
}

/// Renders (minijinja when `templated`, literal otherwise), validates the markup parses
/// for `parse_mode`, splits when too long.
pub fn render(content: &Content<'_>, limit: Limit) -> Result<Rendered, RenderError> {
    let empty = serde_json::Value::Object(Default::default());
    let data = content.data.unwrap_or(&empty);
    if content.templated && !data.is_object() {
        return Err(RenderError {
            field: "data",
            message: "must be a JSON object (its keys are the template's variables)".into(),
        });
    }
    let text_field = if content.templated {
        "template"
    } else {
        "text"
    };
    let text = if content.templated {
        engine::render(content.source, Some(content.parse_mode), data)
            .map_err(|e| template_error(e, "text"))?
    } else {
        content.source.to_string()
    };
    let parts = text_parts(text, content.parse_mode, limit, text_field)?;
    let buttons = render_buttons(content.buttons, content.templated.then_some(data))?;
    Ok(Rendered {
        parse_mode: if parts.len() > 1 && content.parse_mode != ParseMode::Plain {
            ParseMode::Html
        } else {
            content.parse_mode
        },
        parts,
        buttons,
    })
}

fn text_parts(
    text: String,
    parse_mode: ParseMode,
    limit: Limit,
    field: &'static str,
) -> Result<Vec<String>, RenderError> {
    let invalid = |message: String| RenderError { field, message };
    if text.len() > MAX_RENDERED_BYTES {
        return Err(invalid(format!(
            "is too long: {} bytes after rendering (at most {MAX_RENDERED_BYTES})",
            text.len()
        )));
    }
    let parsed = match parse_mode {
        ParseMode::Html => parse_html(&text),
        ParseMode::MarkdownV2 => parse_markdown_v2(&text),
        ParseMode::Plain => Ok((text.clone(), Vec::new())),
    };
    let (plain, entities) = parsed.map_err(|e| {
        invalid(format!(
            "Telegram would reject this {} text (can't parse entities: {e})",
            match parse_mode {
                ParseMode::Html => "HTML",
                _ => "MarkdownV2",
            }
        ))
    })?;
    if plain.trim().is_empty() {
        return match limit {
            Limit::Caption => Ok(vec![String::new()]),
            Limit::Text => Err(invalid(
                "is empty (after rendering and removing markup); Telegram rejects empty messages"
                    .into(),
            )),
        };
    }
    if utf16_len(&plain) <= limit.units() {
        return Ok(vec![text]);
    }
    let parts = match parse_mode {
        ParseMode::Plain => split::split_plain(&plain, limit.units()),
        _ => split::split_html(&plain, &entities, limit.units()),
    }
    .map_err(|e| invalid(format!("could not be split into parts: {e}")))?;
    if parts.len() > MAX_PARTS {
        return Err(invalid(format!(
            "is too long: {} characters would make {} messages (at most {MAX_PARTS})",
            utf16_len(&plain),
            parts.len()
        )));
    }
    Ok(parts)
}

fn render_buttons(
    rows: &[Vec<ButtonSpec>],
    data: Option<&serde_json::Value>,
) -> Result<Vec<Vec<RenderedButton>>, RenderError> {
    let invalid = |message: String| RenderError {
        field: "buttons",
        message,
    };
    let total: usize = rows.iter().map(Vec::len).sum();
    if total > MAX_BUTTONS {
        return Err(invalid(format!(
            "at most {MAX_BUTTONS} buttons (Telegram's limit), got {total}"
        )));
    }
    let field = |value: &str, path: &str| -> Result<String, RenderError> {
        match data {
            Some(data) => engine::render(value, None, data).map_err(|e| {
                let mut e = template_error(e, path);
                if e.field == "template" {
                    e.field = "buttons";
                    e.message = format!("{path} {}", e.message);
                }
                e
            }),
            None => Ok(value.to_string()),
        }
    };
    rows.iter()
        .enumerate()
        .map(|(r, row)| {
            if row.is_empty() || row.len() > MAX_BUTTONS_PER_ROW {
                return Err(invalid(format!(
                    "buttons[{r}] must hold 1 to {MAX_BUTTONS_PER_ROW} buttons (Telegram's limit)"
                )));
            }
            row.iter()
                .enumerate()
                .map(|(c, b)| {
                    let at = format!("buttons[{r}][{c}]");
                    let text = field(&b.text, &format!("{at}.text"))?;
                    if text.trim().is_empty() {
                        return Err(invalid(format!("{at}.text is empty")));
                    }
                    match (&b.url, &b.callback_data) {
                        (Some(_), None) if b.answer.is_some() || b.show_alert => Err(invalid(
                            format!("{at}.answer and show_alert are for callback buttons, not URL buttons"),
                        )),
                        (Some(url), None) => {
                            let url = field(url, &format!("{at}.url"))?;
                            check_url(&url).map_err(|m| invalid(format!("{at}.url {m}")))?;
                            Ok(RenderedButton::Url { text, url })
                        }
                        (None, Some(data)) => {
                            let data = field(data, &format!("{at}.callback_data"))?;
                            if data.is_empty() || data.len() > MAX_CALLBACK_DATA {
                                return Err(invalid(format!(
                                    "{at}.callback_data must be 1 to {MAX_CALLBACK_DATA} bytes"
                                )));
                            }
                            let answer = match &b.answer {
                                Some(answer) => {
                                    let text = field(answer, &format!("{at}.answer"))?;
                                    let n = text.encode_utf16().count();
                                    if n == 0 || n > MAX_ANSWER_CHARS {
                                        return Err(invalid(format!(
                                            "{at}.answer must be 1 to {MAX_ANSWER_CHARS} characters (UTF-16 units, Telegram's limit), got {n}"
                                        )));
                                    }
                                    Some(CallbackAnswer {
                                        text,
                                        show_alert: b.show_alert,
                                    })
                                }
                                None if b.show_alert => {
                                    return Err(invalid(format!(
                                        "{at}.show_alert needs an `answer` to show"
                                    )));
                                }
                                None => None,
                            };
                            Ok(RenderedButton::Callback { text, data, answer })
                        }
                        _ => Err(invalid(format!(
                            "{at} needs exactly one of `url` and `callback_data`"
                        ))),
                    }
                })
                .collect()
        })
        .collect()
}

fn check_url(url: &str) -> Result<(), String> {
    let parsed =
        reqwest::Url::parse(url.trim()).map_err(|e| format!("is not a valid URL ({e})"))?;
    match parsed.scheme() {
        "http" | "https" if parsed.host_str().is_some() => Ok(()),
        "tg" => Ok(()),
        _ => Err("must be an http(s):// or tg:// URL".into()),
    }
}

/// A stored template of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRecord {
    /// Owning tenant.
    pub tenant_id: String,
    /// The key the app names it by, unique in the tenant.
    pub key: String,
    /// The minijinja source of the text.
    pub text: String,
    /// Markup of the text.
    pub parse_mode: ParseMode,
    /// Rows of (templated) buttons.
    pub buttons: Vec<Vec<ButtonSpec>>,
    /// Free text for people.
    pub description: Option<String>,
    /// Creation time (UTC ms).
    pub created_at: i64,
    /// Last change (UTC ms).
    pub updated_at: i64,
}

impl TemplateRecord {
    /// What to [`render`] to send this template with `data`.
    pub fn content<'a>(&'a self, data: Option<&'a serde_json::Value>) -> Content<'a> {
        Content {
            source: &self.text,
            parse_mode: self.parse_mode,
            buttons: &self.buttons,
            data,
            templated: true,
        }
    }

    /// Whether the text or a button reads the top-level variable `name`.
    pub fn reads(&self, name: &str) -> bool {
        reads(&self.text, name)
            || self.buttons.iter().flatten().any(|b| {
                [Some(&b.text), b.url.as_ref(), b.callback_data.as_ref()]
                    .into_iter()
                    .flatten()
                    .any(|field| reads(field, name))
            })
    }
}

#[cfg(test)]
mod tests;
