//! The app's words for its bot: what relaygram's own replies say (the `/start` welcome, the
//! `/help` header, the unknown-command reply, the `/stop` confirmation, the linking answers…),
//! per bot and per language, as minijinja templates with a built-in default
//! (`/v1/bots/{id}/texts`, [`service`]).
//!
//! A reply is chosen by the Telegram user's `language_code`: the text stored for exactly that
//! language (`pt-br`), else for its base language (`pt`), else the bot's own default, else
//! relaygram's. Replies are plain text, so variables are not escaped. Templates are checked
//! when stored, by rendering them with sample values (with and without a link); should one
//! still fail on a real update, the built-in default is sent instead.

pub mod api;
pub mod service;

use serde_json::{Value, json};

use crate::services::ServiceError;
use crate::templates::{Content, Limit, ParseMode, render};

pub use crate::store::{BotTextRecord, TextKey};

/// Longest template source, in bytes.
pub const MAX_SOURCE_LEN: usize = 16_384;
/// Longest tag we accept (`zh-hant-tw` is 10; BCP 47 allows more, Telegram sends short ones).
pub const MAX_LANGUAGE_LEN: usize = 35;

/// Variables every text has.
pub const COMMON_VARIABLES: &[&str] = &[
    "bot.username",
    "bot.first_name",
    "user.first_name",
    "user.last_name",
    "user.username",
    "user.language_code",
    "link.id",
    "link.external_id",
];

/// Where a text is shown, which bounds its length and shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// A message: up to 4096 characters.
    Message,
    /// A button press's answer (`answerCallbackQuery`): up to 200 characters.
    Answer,
    /// A button label: one line, up to 64 characters.
    Button,
}

impl TextKey {
    /// relaygram's own text (a template).
    pub fn default_text(self) -> &'static str {
        match self {
            TextKey::Welcome => "Welcome to {{ bot.first_name }}! Send /help to see what I can do.",
            TextKey::Help => "Here is what I can do:",
            TextKey::UnknownCommand => "Sorry, I don't know /{{ command }}.",
            TextKey::SlowDown => {
                "You are sending commands a little fast. Please wait a minute and try again."
            }
            TextKey::StopConfirm => {
                "Stop notifications in this chat? The app will no longer reach you here."
            }
            TextKey::StopYesButton => "Yes, stop",
            TextKey::StopNoButton => "Cancel",
            TextKey::Stopped => "Stopped. Send /start to come back.",
            TextKey::StopCancelled => "Nothing changed.",
            TextKey::LinkUsage => "Send /link followed by the code the app gave you.",
            TextKey::Linked => {
                "Done! This chat is now linked to your account. Send /settings to choose your \
                 notifications, or /stop to unlink."
            }
            TextKey::GroupLinked => {
                "Done! This group is now linked. Its administrators can send /settings to \
                 choose notifications, or /stop to unlink it."
            }
            TextKey::CodeConnected => {
                "Done! This chat is now connected. Send /settings to choose your \
                 notifications, or /stop to unlink."
            }
            TextKey::CodeAlreadyConnected => {
                "This chat is already connected with this code. Nothing changed."
            }
            TextKey::CodeRevoked => {
                "This code is no longer valid. Please ask your team for the current one."
            }
            TextKey::LinkUsed => {
                "This link was already used. If you want to link another chat, ask the app \
                 for a new link."
            }
            TextKey::LinkExpired => "This link has expired. Please ask the app for a new one.",
            TextKey::LinkNotForThisBot => {
                "This link or code is not for this bot. Open it from the app again, or ask \
                 for one made for this bot."
            }
            TextKey::LinkUnknown => {
                "I don't recognise this link or code. Please ask the app for a new one."
            }
            TextKey::ChatLinkedToAnother => {
                "This chat is already linked to another account. Send /stop to unlink it \
                 first, then open your link again."
            }
            TextKey::BotNotAdmin => {
                "I need to be an administrator of this group to send notifications here. Make \
                 me an administrator, then send /start@{{ bot.username }} {{ payload }} here \
                 again."
            }
            TextKey::MembershipInvite => {
                "Your access to {{ gated_chat.name }} is ready. Join here: {{ invite_link }}"
            }
            TextKey::MembershipReminder => {
                "Your access to {{ gated_chat.name }} ends on {{ ends_at }}.\
                 {% if access_url %} Renew: {{ access_url }}{% endif %}"
            }
            TextKey::MembershipRemoved => {
                "Your access to {{ gated_chat.name }} has ended, so you were removed. You can \
                 come back any time you renew{% if access_url %}: {{ access_url }}{% else %}.{% endif %}"
            }
            TextKey::GateBound => {
                "Done! {{ gated_chat.name }} is now for members only: I let in whoever has \
                 access and remove them when it ends."
            }
            TextKey::GateRefused => "I can't gate this chat: {{ reason }}.",
            TextKey::JoinDeclined => {
                "{{ gated_chat.name }} is for members only.{% if access_url %} Get access: \
                 {{ access_url }}{% else %} Send /start to {{ bot.username }} to see how to get \
                 access.{% endif %}"
            }
        }
    }

    /// Variables this text has besides [`COMMON_VARIABLES`].
    pub fn extra_variables(self) -> &'static [&'static str] {
        match self {
            TextKey::Welcome => &["payload"],
            TextKey::UnknownCommand => &["command"],
            TextKey::BotNotAdmin => &["payload"],
            TextKey::MembershipInvite => &["gated_chat.name", "invite_link", "ends_at"],
            TextKey::MembershipReminder | TextKey::MembershipRemoved => {
                &["gated_chat.name", "ends_at", "access_url"]
            }
            TextKey::JoinDeclined => &["gated_chat.name", "access_url"],
            TextKey::GateBound => &["gated_chat.name"],
            TextKey::GateRefused => &["reason"],
            _ => &[],
        }
    }

    fn shape(self) -> Shape {
        match self {
            TextKey::Stopped | TextKey::StopCancelled => Shape::Answer,
            TextKey::StopYesButton | TextKey::StopNoButton => Shape::Button,
            _ => Shape::Message,
        }
    }
}

/// The values a text is rendered with.
#[derive(Debug, Clone, Default)]
pub struct TextVars {
    /// `bot`: `{username, first_name}`.
    pub bot: Value,
    /// `user`: Telegram's `from` (`first_name`, `last_name`, `username`, `language_code`;
    /// null when Telegram does not send one).
    pub user: Value,
    /// `link`: `{id, external_id}` of the chat's first active link, or null.
    pub link: Value,
    /// `command` (unknown_command).
    pub command: Option<String>,
    /// `payload` (welcome: the app's `/start` payload or null; bot_not_admin: the token).
    pub payload: Option<String>,
    /// A gated chat's texts: `gated_chat` (`{name}`), `invite_link`, `ends_at`,
    /// `access_url`, as an object.
    pub membership: Value,
}

impl TextVars {
    /// The bot's and user's variables (`from` as Telegram sends it).
    pub fn new(username: &str, first_name: &str, from: &Value) -> TextVars {
        let field = |k: &str| from.get(k).cloned().unwrap_or(Value::Null);
        TextVars {
            bot: json!({"username": username, "first_name": first_name}),
            user: json!({"first_name": field("first_name"), "last_name": field("last_name"),
                         "username": field("username"), "language_code": field("language_code")}),
            link: Value::Null,
            command: None,
            payload: None,
            membership: Value::Null,
        }
    }

    fn context(&self, key: TextKey) -> Value {
        let mut data = json!({"bot": self.bot, "user": self.user, "link": self.link});
        for name in key.extra_variables() {
            match *name {
                "command" => data["command"] = json!(self.command),
                "payload" => data["payload"] = json!(self.payload),
                // `gated_chat.name` → `gated_chat`, and the others as they are.
                other => {
                    let top = other.split('.').next().unwrap_or(other);
                    data[top] = self.membership.get(top).cloned().unwrap_or(Value::Null);
                }
            }
        }
        data
    }
}

/// Parses a language tag the way Telegram sends `language_code` (`de`, `pt-br`, `zh-hans`):
/// 2 or 3 letters, then parts of 1 to 8 letters or digits after `-` (`_` is read as `-`);
/// stored lower-case.
pub fn parse_language(raw: &str) -> Result<String, ServiceError> {
    let tag = raw.trim().to_ascii_lowercase().replace('_', "-");
    let mut parts = tag.split('-');
    let base_ok = parts
        .next()
        .is_some_and(|b| (2..=3).contains(&b.len()) && b.bytes().all(|c| c.is_ascii_lowercase()));
    let rest_ok =
        parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|c| c.is_ascii_alphanumeric()));
    if !base_ok || !rest_ok || tag.len() > MAX_LANGUAGE_LEN {
        return Err(ServiceError::Invalid {
            field: "language",
            message: format!(
                "{raw:?} is not a language tag like Telegram's language_code (`de`, `pt-br`): \
                 2 or 3 letters, then optional `-` parts of letters or digits"
            ),
        });
    }
    Ok(tag)
}

/// The stored text a user of `language_code` gets: exactly that language, else its base
/// language, else the bot's default; `None` when the built-in default applies.
pub fn pick<'a>(
    stored: &'a [BotTextRecord],
    key: TextKey,
    language_code: Option<&str>,
) -> Option<&'a BotTextRecord> {
    let of_key = || stored.iter().filter(move |t| t.key == key);
    let language = language_code.and_then(|l| parse_language(l).ok());
    let exact = language
        .as_deref()
        .and_then(|l| of_key().find(|t| t.language.as_deref() == Some(l)));
    let base = || {
        let base = language.as_deref()?.split('-').next()?;
        of_key().find(|t| t.language.as_deref() == Some(base))
    };
    exact
        .or_else(base)
        .or_else(|| of_key().find(|t| t.language.is_none()))
}

/// Renders `source` for `key` with `vars`; the error says what is wrong.
pub fn render_text(key: TextKey, source: &str, vars: &TextVars) -> Result<String, String> {
    let data = vars.context(key);
    let rendered = render(
        &Content {
            source,
            parse_mode: ParseMode::Plain,
            buttons: &[],
            data: Some(&data),
            templated: true,
        },
        Limit::Text,
    )
    .map_err(|e| e.message)?;
    let [text] = rendered.parts.as_slice() else {
        return Err("is longer than one Telegram message (4096 characters)".into());
    };
    let chars = text.chars().count();
    match key.shape() {
        Shape::Message => {}
        Shape::Answer if chars > 200 => {
            return Err(format!(
                "is {chars} characters; a button's answer holds at most 200 (Telegram's limit)"
            ));
        }
        Shape::Button if chars > 64 || text.contains('\n') => {
            return Err("a button label must be one line of at most 64 characters".into());
        }
        _ => {}
    }
    Ok(text.clone())
}

/// Checks a template for `key` before it is stored: it must render with sample values, for
/// a chat with a link and one without (so `link.external_id` needs `{% if link %}`).
pub fn check(key: TextKey, source: &str) -> Result<(), ServiceError> {
    let invalid = |message: String| ServiceError::Invalid {
        field: "text",
        message,
    };
    if source.trim().is_empty() || source.len() > MAX_SOURCE_LEN {
        return Err(invalid(format!(
            "must be 1 to {MAX_SOURCE_LEN} bytes and not only spaces"
        )));
    }
    let sample = |linked: bool| TextVars {
        link: if linked {
            json!({"id": "link_sample", "external_id": "user-42"})
        } else {
            Value::Null
        },
        command: Some("unknown".into()),
        payload: Some("ref_42".into()),
        membership: json!({"gated_chat": {"name": "Premium signals"},
            "invite_link": "https://t.me/+AbCdEf123", "ends_at": "2026-12-31 09:00 UTC",
            "access_url": "https://example.com/renew",
            "reason": "make the bot an administrator with can_restrict_members"}),
        ..TextVars::new(
            "sample_bot",
            "Sample",
            &json!({"id": 1, "first_name": "Ann", "language_code": "en"}),
        )
    };
    for linked in [true, false] {
        render_text(key, source, &sample(linked)).map_err(|m| {
            let when = if linked {
                ""
            } else {
                " (in a chat without a link: use {% if link %})"
            };
            invalid(format!("{m}{when}"))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(key: TextKey, language: Option<&str>, text: &str) -> BotTextRecord {
        BotTextRecord {
            bot_id: "bot_1".into(),
            key,
            language: language.map(str::to_string),
            text: text.into(),
            created_at: 1,
            updated_at: 1,
        }
    }

    #[test]
    fn languages_are_tags() {
        assert_eq!(parse_language("de").unwrap(), "de");
        assert_eq!(parse_language("pt-BR").unwrap(), "pt-br");
        assert_eq!(parse_language("pt_BR").unwrap(), "pt-br");
        assert_eq!(parse_language("zh-hans").unwrap(), "zh-hans");
        for bad in [
            "",
            "d",
            "german",
            "de-",
            "-de",
            "de--x",
            "12",
            "de-toolongpart",
            "dé",
        ] {
            assert!(parse_language(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_closest_language_wins() {
        let stored = [
            text(TextKey::Welcome, None, "default"),
            text(TextKey::Welcome, Some("pt"), "pt"),
            text(TextKey::Welcome, Some("pt-br"), "pt-br"),
            text(TextKey::Help, Some("de"), "help de"),
        ];
        let got = |l: Option<&str>| pick(&stored, TextKey::Welcome, l).map(|t| t.text.as_str());
        assert_eq!(got(Some("pt-br")), Some("pt-br"));
        assert_eq!(got(Some("PT-BR")), Some("pt-br"));
        assert_eq!(got(Some("pt-pt")), Some("pt"));
        assert_eq!(got(Some("pt")), Some("pt"));
        assert_eq!(got(Some("de")), Some("default"));
        assert_eq!(got(None), Some("default"));
        assert_eq!(got(Some("not a tag")), Some("default"));
        // No default of its own: the built-in one.
        assert!(pick(&stored, TextKey::Help, Some("en")).is_none());
        assert_eq!(
            pick(&stored, TextKey::Help, Some("de-at")).unwrap().text,
            "help de"
        );
    }

    #[test]
    fn defaults_render_and_check() {
        let vars = TextVars::new("shop_bot", "Shop", &json!({"first_name": "Ann"}));
        for key in TextKey::ALL {
            check(key, key.default_text()).unwrap_or_else(|e| panic!("{key:?}: {e}"));
            let mut vars = vars.clone();
            vars.command = Some("x".into());
            vars.payload = Some("p".into());
            vars.membership = json!({"gated_chat": {"name": "VIP"}, "invite_link": "https://t.me/+x",
                "ends_at": "2026-12-31 09:00 UTC", "access_url": null, "reason": "no rights"});
            assert!(
                render_text(key, key.default_text(), &vars).is_ok(),
                "{key:?}"
            );
        }
        assert_eq!(
            render_text(TextKey::Welcome, TextKey::Welcome.default_text(), &vars).unwrap(),
            "Welcome to Shop! Send /help to see what I can do."
        );
    }

    #[test]
    fn bad_templates_are_refused() {
        fn err(key: TextKey, s: &str) -> String {
            check(key, s).unwrap_err().to_string()
        }
        assert!(err(TextKey::Welcome, "Hi {{ user.first_name }").contains("text:"));
        assert!(err(TextKey::Welcome, "Hi {{ nobody }}").contains("nobody"));
        // `command` is the unknown-command reply's only.
        assert!(err(TextKey::Welcome, "{{ command }}").contains("command"));
        assert!(check(TextKey::UnknownCommand, "No /{{ command }}").is_ok());
        // A link may be missing.
        assert!(err(TextKey::Welcome, "Hi {{ link.external_id }}").contains("{% if link %}"));
        assert!(
            check(
                TextKey::Welcome,
                "Hi{% if link %} {{ link.external_id }}{% endif %}"
            )
            .is_ok()
        );
        assert!(err(TextKey::StopYesButton, "two\nlines").contains("one line"));
        assert!(err(TextKey::Stopped, &"x".repeat(201)).contains("200"));
        assert!(err(TextKey::Welcome, "  ").contains("not only spaces"));
        assert!(err(TextKey::Welcome, &"x".repeat(5000)).contains("4096"));
        // Missing fields of Telegram's user print nothing.
        assert!(check(TextKey::Welcome, "Hi {{ user.username }}").is_ok());
    }
}
