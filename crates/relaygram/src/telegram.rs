//! A thin, typed Telegram Bot API client against a configurable base URL.
//!
//! Request and identity types come from `frankenstein` (types only, no client). Every
//! failure is classified into a [`TelegramError`] so callers can decide what to do:
//! wait, retry, mark the chat gone, follow a migration, or give up.

use std::fmt;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use frankenstein::methods::SetMyCommandsParams;
pub use frankenstein::methods::{DeleteWebhookParams, SetWebhookParams};
pub use frankenstein::response::ResponseParameters;
pub use frankenstein::types::BotCommand;
pub use frankenstein::types::{AllowedUpdate, User};

/// Every update type Telegram sends (the fields of the Bot API's `Update` object). Bots ask
/// for all of them unless their `allowed_updates` setting narrows the list: Telegram sends
/// `chat_member`, `message_reaction` and `message_reaction_count` only when asked by name.
pub const UPDATE_TYPES: &[&str] = &[
    "message",
    "edited_message",
    "channel_post",
    "edited_channel_post",
    "business_connection",
    "business_message",
    "edited_business_message",
    "deleted_business_messages",
    "message_reaction",
    "message_reaction_count",
    "inline_query",
    "chosen_inline_result",
    "callback_query",
    "shipping_query",
    "pre_checkout_query",
    "purchased_paid_media",
    "poll",
    "poll_answer",
    "my_chat_member",
    "chat_member",
    "chat_join_request",
    "chat_boost",
    "removed_chat_boost",
];

/// The update types to ask Telegram for: the bot's own list, or every type.
pub fn allowed_updates(setting: Option<&[String]>) -> Vec<String> {
    match setting {
        Some(list) => list.to_vec(),
        None => UPDATE_TYPES.iter().map(|t| t.to_string()).collect(),
    }
}

/// A syntactically valid bot token (`<bot id>:<secret>`). Never printed.
#[derive(Clone)]
pub struct BotToken {
    secret: SecretString,
    bot_id: i64,
}

/// The token does not look like a Telegram bot token.
#[derive(Debug, thiserror::Error)]
#[error("token must look like `123456789:AA…` (digits, a colon, then letters, digits, `-` or `_`)")]
pub struct InvalidBotToken;

impl BotToken {
    /// Parses a token without contacting Telegram.
    pub fn parse(text: &str) -> Result<BotToken, InvalidBotToken> {
        let text = text.trim();
        let (id, secret) = text.split_once(':').ok_or(InvalidBotToken)?;
        let valid_id = !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit());
        let valid_secret = !secret.is_empty()
            && secret.len() <= 200
            && secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid_id || !valid_secret {
            return Err(InvalidBotToken);
        }
        let bot_id = id.parse::<i64>().map_err(|_| InvalidBotToken)?;
        Ok(BotToken {
            secret: SecretString::from(text.to_string()),
            bot_id,
        })
    }

    /// The bot's Telegram user id (the part before the colon; not secret).
    pub fn bot_id(&self) -> i64 {
        self.bot_id
    }

    /// The whole token. Only for building requests and for encryption at rest.
    pub fn expose(&self) -> &str {
        self.secret.expose_secret()
    }
}

impl fmt::Debug for BotToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BotToken({}:****)", self.bot_id)
    }
}

/// A classified Bot API failure. Display output never contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TelegramError {
    /// Flood control: wait this many seconds before calling again.
    #[error("rate limited by Telegram: retry after {seconds}s")]
    RetryAfter {
        /// Seconds to wait.
        seconds: u64,
    },
    /// 5xx or no connection: Telegram did not act on the call, which may be retried.
    #[error("Telegram is unreachable or failing: {0}")]
    Transient(String),
    /// The request left but no answer came (timeout, connection lost, unreadable answer):
    /// Telegram may have acted on it, so repeating it may do it twice.
    #[error("no answer from Telegram: {0}")]
    Unanswered(String),
    /// The chat cannot be written to any more (blocked, deactivated, kicked, not found).
    #[error("chat is gone: {0}")]
    ChatGone(String),
    /// The group became a supergroup with a new id.
    #[error("chat migrated to {new_chat_id}")]
    Migrated {
        /// The supergroup's id.
        new_chat_id: i64,
    },
    /// Telegram rejected the request; retrying will not help.
    #[error("Telegram rejected the request: {0}")]
    BadRequest(String),
    /// The token is not valid (revoked, or never existed).
    #[error("Telegram refused the bot token: {0}")]
    Unauthorized(String),
}

impl TelegramError {
    /// Telegram's own description where there is one.
    pub fn description(&self) -> String {
        match self {
            TelegramError::RetryAfter { seconds } => {
                format!("Too Many Requests: retry after {seconds}")
            }
            TelegramError::Migrated { new_chat_id } => {
                format!("Bad Request: group chat was upgraded to a supergroup chat ({new_chat_id})")
            }
            TelegramError::Transient(d)
            | TelegramError::Unanswered(d)
            | TelegramError::ChatGone(d)
            | TelegramError::BadRequest(d)
            | TelegramError::Unauthorized(d) => d.clone(),
        }
    }

    /// A short, stable name of the class (for metrics and logs).
    pub fn class(&self) -> &'static str {
        match self {
            TelegramError::RetryAfter { .. } => "retry_after",
            TelegramError::Transient(_) => "transient",
            TelegramError::Unanswered(_) => "unanswered",
            TelegramError::ChatGone(_) => "chat_gone",
            TelegramError::Migrated { .. } => "migrated",
            TelegramError::BadRequest(_) => "bad_request",
            TelegramError::Unauthorized(_) => "unauthorized",
        }
    }

    /// Maps a Bot API error answer to its class.
    pub fn classify(
        error_code: u16,
        description: &str,
        parameters: Option<&ResponseParameters>,
    ) -> TelegramError {
        if let Some(p) = parameters {
            if let Some(seconds) = p.retry_after {
                return TelegramError::RetryAfter {
                    seconds: u64::from(seconds),
                };
            }
            if let Some(new_chat_id) = p.migrate_to_chat_id {
                return TelegramError::Migrated { new_chat_id };
            }
        }
        let d = description.to_string();
        let lower = description.to_ascii_lowercase();
        match error_code {
            401 | 404 => TelegramError::Unauthorized(d),
            403 => TelegramError::ChatGone(d),
            429 => TelegramError::RetryAfter { seconds: 1 },
            500..=599 => TelegramError::Transient(d),
            _ if [
                "chat not found",
                "user is deactivated",
                "bot was kicked",
                "bot was blocked",
                "user not found",
                "have no rights to send",
                "not enough rights to send",
            ]
            .iter()
            .any(|needle| lower.contains(needle)) =>
            {
                TelegramError::ChatGone(d)
            }
            _ => TelegramError::BadRequest(d),
        }
    }
}

/// `getWebhookInfo`'s answer. Our own type (not frankenstein's) so that an update type
/// Telegram adds tomorrow in `allowed_updates` cannot break parsing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookInfo {
    /// Webhook URL, empty when none is set.
    #[serde(default)]
    pub url: String,
    /// Whether a custom certificate was provided.
    #[serde(default)]
    pub has_custom_certificate: bool,
    /// Updates waiting to be delivered.
    #[serde(default)]
    pub pending_update_count: u64,
    /// Unix time of the most recent delivery error.
    #[serde(default)]
    pub last_error_date: Option<i64>,
    /// Description of the most recent delivery error.
    #[serde(default)]
    pub last_error_message: Option<String>,
    /// Maximum simultaneous connections.
    #[serde(default)]
    pub max_connections: Option<u32>,
    /// Update types subscribed to.
    #[serde(default)]
    pub allowed_updates: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct Envelope<T> {
    ok: bool,
    result: Option<T>,
    #[serde(default)]
    error_code: Option<u16>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<ResponseParameters>,
}

/// Bot API client. Cheap to clone (one shared connection pool).
#[derive(Clone, Debug)]
pub struct TelegramClient {
    http: reqwest::Client,
    base_url: String,
}

impl TelegramClient {
    /// A client for `base_url` (e.g. `https://api.telegram.org` or the sandbox's URL).
    pub fn new(base_url: &str, timeout: Duration) -> TelegramClient {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5).min(timeout))
            .user_agent(concat!("relaygram/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the TLS backend is compiled in");
        TelegramClient {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
        }
    }

    /// The configured base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The base URL and the setting it comes from, for error messages.
    fn where_from(&self) -> String {
        format!(
            "{} (set by telegram_api_url / RELAYGRAM_TELEGRAM_API_URL)",
            crate::config::mask_database_url(&self.base_url)
        )
    }

    /// Calls `method` with JSON `params` and decodes `result`.
    pub async fn call<P, T>(
        &self,
        token: &BotToken,
        method: &str,
        params: &P,
    ) -> Result<T, TelegramError>
    where
        P: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        let started = Instant::now();
        let result = self.send(token, method, params).await;
        let outcome = result.as_ref().map_or_else(TelegramError::class, |_| "ok");
        metrics::counter!(
            "relaygram_telegram_requests_total",
            "method" => method.to_string(),
            "outcome" => outcome
        )
        .increment(1);
        tracing::debug!(
            bot = token.bot_id(),
            method,
            outcome,
            elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "telegram call"
        );
        result
    }

    async fn send<P, T>(
        &self,
        token: &BotToken,
        method: &str,
        params: &P,
    ) -> Result<T, TelegramError>
    where
        P: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        let url = format!("{}/bot{}/{}", self.base_url, token.expose(), method);
        let response = match self.http.post(url).json(params).send().await {
            Ok(r) => r,
            Err(e) => {
                // Never keep reqwest's URL: it contains the token.
                // Name the base URL and the setting instead, so the operator can fix it.
                let e = e.without_url();
                let at = self.where_from();
                return Err(if e.is_connect() {
                    // No connection: the request never reached Telegram.
                    TelegramError::Transient(format!("cannot connect to {at}: {e}"))
                } else if e.is_timeout() {
                    TelegramError::Unanswered(format!("timeout from {at}: {e}"))
                } else {
                    TelegramError::Unanswered(format!("connection to {at} lost: {e}"))
                });
            }
        };
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|e| {
            TelegramError::Unanswered(format!("reading the answer failed: {}", e.without_url()))
        })?;
        decode(status, &body)
    }

    /// `getMe`.
    pub async fn get_me(&self, token: &BotToken) -> Result<User, TelegramError> {
        self.call(token, "getMe", &serde_json::json!({})).await
    }

    /// `setWebhook`.
    pub async fn set_webhook(
        &self,
        token: &BotToken,
        params: &SetWebhookParams,
    ) -> Result<bool, TelegramError> {
        self.call(token, "setWebhook", params).await
    }

    /// `deleteWebhook`.
    pub async fn delete_webhook(
        &self,
        token: &BotToken,
        drop_pending_updates: bool,
    ) -> Result<bool, TelegramError> {
        let params = DeleteWebhookParams {
            drop_pending_updates: Some(drop_pending_updates),
        };
        self.call(token, "deleteWebhook", &params).await
    }

    /// `setMyCommands` for the default scope and every language: the menu users see.
    pub async fn set_my_commands(
        &self,
        token: &BotToken,
        commands: Vec<BotCommand>,
    ) -> Result<bool, TelegramError> {
        let params = SetMyCommandsParams {
            commands,
            scope: None,
            language_code: None,
        };
        self.call(token, "setMyCommands", &params).await
    }

    /// `getWebhookInfo`.
    pub async fn get_webhook_info(&self, token: &BotToken) -> Result<WebhookInfo, TelegramError> {
        self.call(token, "getWebhookInfo", &serde_json::json!({}))
            .await
    }
}

fn decode<T: DeserializeOwned>(status: u16, body: &[u8]) -> Result<T, TelegramError> {
    match serde_json::from_slice::<Envelope<T>>(body) {
        Ok(Envelope {
            ok: true,
            result: Some(result),
            ..
        }) => Ok(result),
        Ok(env) if !env.ok => Err(TelegramError::classify(
            env.error_code.unwrap_or(status),
            env.description.as_deref().unwrap_or("no description"),
            env.parameters.as_ref(),
        )),
        Ok(_) => Err(TelegramError::Transient(format!(
            "HTTP {status}: answer without a result"
        ))),
        Err(e) if (200..300).contains(&status) => Err(TelegramError::Transient(format!(
            "HTTP {status}: unexpected answer: {e}"
        ))),
        Err(_) => Err(if status >= 500 || status == 429 {
            TelegramError::Transient(format!("HTTP {status}"))
        } else {
            TelegramError::classify(status, &format!("HTTP {status}"), None)
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_and_never_print() {
        let t = BotToken::parse(" 123456:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw ").unwrap();
        assert_eq!(t.bot_id(), 123456);
        assert_eq!(t.expose(), "123456:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw");
        assert!(!format!("{t:?}").contains("AAHdq"));
        for bad in [
            "", "abc", "123", ":abc", "12a:abc", "123:", "123:a b", "123:a/b",
        ] {
            assert!(BotToken::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn classifies_errors() {
        use TelegramError::*;
        let p = |retry_after, migrate_to_chat_id| ResponseParameters {
            retry_after,
            migrate_to_chat_id,
        };
        assert_eq!(
            TelegramError::classify(
                429,
                "Too Many Requests: retry after 7",
                Some(&p(Some(7), None))
            ),
            RetryAfter { seconds: 7 }
        );
        assert_eq!(
            TelegramError::classify(
                400,
                "group chat was upgraded",
                Some(&p(None, Some(-100123)))
            ),
            Migrated {
                new_chat_id: -100123
            }
        );
        assert!(matches!(
            TelegramError::classify(401, "Unauthorized", None),
            Unauthorized(_)
        ));
        assert!(matches!(
            TelegramError::classify(404, "Not Found", None),
            Unauthorized(_)
        ));
        assert!(matches!(
            TelegramError::classify(403, "Forbidden: bot was blocked by the user", None),
            ChatGone(_)
        ));
        assert!(matches!(
            TelegramError::classify(400, "Bad Request: chat not found", None),
            ChatGone(_)
        ));
        assert!(matches!(
            TelegramError::classify(400, "Bad Request: message text is empty", None),
            BadRequest(_)
        ));
        assert!(matches!(
            TelegramError::classify(502, "Bad Gateway", None),
            Transient(_)
        ));
    }

    #[test]
    fn decodes_answers_and_tolerates_unknown_fields() {
        let body = br#"{"ok":true,"result":{"id":42,"is_bot":true,"first_name":"Shop",
            "username":"shop_bot","a_field_from_bot_api_99":{"x":1}},"new_top_level":1}"#;
        let user: User = decode(200, body).unwrap();
        assert_eq!(user.id, 42);
        assert_eq!(user.username.as_deref(), Some("shop_bot"));

        let info: WebhookInfo = decode(
            200,
            br#"{"ok":true,"result":{"url":"","pending_update_count":3,
                "allowed_updates":["message","update_from_the_future"]}}"#,
        )
        .unwrap();
        assert_eq!(info.pending_update_count, 3);

        let err = decode::<User>(
            401,
            br#"{"ok":false,"error_code":401,"description":"Unauthorized"}"#,
        )
        .unwrap_err();
        assert_eq!(err, TelegramError::Unauthorized("Unauthorized".into()));
        assert!(matches!(
            decode::<User>(502, b"<html>bad gateway</html>"),
            Err(TelegramError::Transient(_))
        ));
        assert!(matches!(
            decode::<User>(200, b"not json"),
            Err(TelegramError::Transient(_))
        ));
    }

    #[tokio::test]
    async fn network_errors_are_transient_and_hide_the_token() {
        // A port that was just free: connecting is refused.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let client = TelegramClient::new(&format!("http://{addr}"), Duration::from_secs(2));
        let token = BotToken::parse("777:SECRETSECRETSECRET").unwrap();
        let err = client.get_me(&token).await.unwrap_err();
        assert!(matches!(err, TelegramError::Transient(_)), "{err:?}");
        assert!(!err.to_string().contains("SECRETSECRETSECRET"), "{err}");
    }
}
