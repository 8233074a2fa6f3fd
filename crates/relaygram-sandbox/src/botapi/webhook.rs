//! setWebhook, deleteWebhook and getWebhookInfo.

use serde_json::{Value, json};

use super::Answer;
use crate::params::Params;
use crate::reply::ApiError;
use crate::world::{Webhook, World};

const PORTS: [u16; 4] = [80, 88, 443, 8443];

fn bad_webhook(detail: &str) -> ApiError {
    ApiError::bad_request(format!("bad webhook: {detail}"))
}

/// Telegram insists on HTTPS on a few ports. Loopback addresses are let through on any
/// scheme and port, since that is where a sandbox's webhooks live.
fn check_url(raw: &str) -> Result<(), ApiError> {
    let url = reqwest::Url::parse(raw).map_err(|_| bad_webhook("invalid webhook URL specified"))?;
    let host = url
        .host_str()
        .ok_or_else(|| bad_webhook("invalid webhook URL specified"))?;
    let loopback = host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback && matches!(url.scheme(), "http" | "https") {
        return Ok(());
    }
    if url.scheme() != "https" {
        return Err(bad_webhook("An HTTPS URL must be provided for webhook"));
    }
    if !PORTS.contains(&url.port_or_known_default().unwrap_or(0)) {
        return Err(bad_webhook(
            "Webhook can be set up only on ports 80, 88, 443 or 8443",
        ));
    }
    Ok(())
}

fn allowed_updates(params: &Params) -> Result<Option<Vec<String>>, ApiError> {
    match params.json("allowed_updates", "allowed updates")? {
        None => Ok(None),
        Some(Value::Array(items)) => Ok(Some(
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
        )),
        Some(_) => Err(ApiError::bad_request(
            "can't parse allowed updates JSON object",
        )),
    }
}

pub fn set_webhook(w: &mut World, bot_id: i64, params: &Params) -> Result<Answer, ApiError> {
    let url = params.str("url").unwrap_or_default();
    if url.is_empty() {
        return delete_webhook(w, bot_id, params);
    }
    check_url(&url)?;
    let secret = params.str("secret_token").filter(|s| !s.is_empty());
    if let Some(s) = &secret {
        let ok = s.len() <= 256
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !ok {
            return Err(ApiError::bad_request(
                "secret token contains unallowed characters",
            ));
        }
    }
    let max_connections = params.i64("max_connections")?.unwrap_or(40);
    if !(1..=100).contains(&max_connections) {
        return Err(bad_webhook("max_connections must be between 1 and 100"));
    }
    let allowed = allowed_updates(params)?;
    let bot = w.bots.get_mut(&bot_id).expect("caller checked the bot");
    if let Some(a) = allowed {
        bot.allowed_updates = Some(a);
    }
    if params.bool("drop_pending_updates") {
        bot.updates.clear();
    }
    let unchanged = bot.webhook.as_ref().is_some_and(|h| {
        h.url == url && h.secret_token == secret && h.max_connections == max_connections as u32
    });
    let (last_error_date, last_error_message) = match bot.webhook.take() {
        Some(h) if h.url == url => (h.last_error_date, h.last_error_message),
        _ => (None, None),
    };
    bot.webhook = Some(Webhook {
        url,
        secret_token: secret,
        max_connections: max_connections as u32,
        last_error_date,
        last_error_message,
    });
    // A webhook ends any long poll in progress.
    bot.poll_generation += 1;
    bot.poll_notify.notify_waiters();
    for u in bot.updates.iter_mut() {
        u.next_attempt = std::time::Instant::now();
    }
    Ok(Answer {
        result: json!(true),
        description: Some(if unchanged {
            "Webhook is already set"
        } else {
            "Webhook was set"
        }),
    })
}

pub fn delete_webhook(w: &mut World, bot_id: i64, params: &Params) -> Result<Answer, ApiError> {
    let bot = w.bots.get_mut(&bot_id).expect("caller checked the bot");
    if params.bool("drop_pending_updates") {
        bot.updates.clear();
    }
    let was_set = bot.webhook.take().is_some();
    for u in bot.updates.iter_mut() {
        u.in_flight = false;
    }
    Ok(Answer {
        result: json!(true),
        description: Some(if was_set {
            "Webhook was deleted"
        } else {
            "Webhook is already deleted"
        }),
    })
}

pub fn get_webhook_info(w: &World, bot_id: i64) -> Result<Value, ApiError> {
    let bot = &w.bots[&bot_id];
    let mut info = json!({
        "url": "",
        "has_custom_certificate": false,
        "pending_update_count": bot.pending_count(),
    });
    if let Some(h) = &bot.webhook {
        info["url"] = json!(h.url);
        info["max_connections"] = json!(h.max_connections);
        info["ip_address"] = json!("127.0.0.1");
        if let Some(d) = h.last_error_date {
            info["last_error_date"] = json!(d);
        }
        if let Some(m) = &h.last_error_message {
            info["last_error_message"] = json!(m);
        }
    }
    if let Some(a) = &bot.allowed_updates {
        info["allowed_updates"] = json!(a);
    }
    Ok(info)
}
