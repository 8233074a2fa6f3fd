//! Integration tests: the sandbox started in-process on a random port, driven over real HTTP.

mod api;
mod browser;
mod faults;
mod limits;
mod members;
mod messages;
mod ptb;
mod updates;
mod webhooks;

use std::time::Duration;

use relaygram_sandbox::{LimitModel, Limits, Sandbox, SandboxConfig};
use serde_json::{Value, json};

pub struct Harness {
    pub sandbox: Sandbox,
    pub http: reqwest::Client,
    pub url: String,
}

/// A bot and a user who has started it.
pub struct Pair {
    pub token: String,
    pub bot_id: i64,
    pub username: String,
    pub user_id: i64,
}

impl Harness {
    pub async fn start() -> Harness {
        Self::with(SandboxConfig::default()).await
    }

    pub async fn with_limits(time_scale: f64) -> Harness {
        Self::with(SandboxConfig {
            limits: Limits::Telegram,
            time_scale,
            ..SandboxConfig::default()
        })
        .await
    }

    pub async fn with_model(limit_model: LimitModel, time_scale: f64) -> Harness {
        Self::with(SandboxConfig {
            limits: Limits::Telegram,
            limit_model,
            time_scale,
            ..SandboxConfig::default()
        })
        .await
    }

    pub async fn with(config: SandboxConfig) -> Harness {
        let sandbox = Sandbox::start(config).await.expect("sandbox starts");
        let url = sandbox.url();
        Harness {
            sandbox,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            url,
        }
    }

    /// Calls a Bot API method with a JSON body; returns the HTTP status and the body.
    pub async fn api(&self, token: &str, method: &str, params: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/bot{token}/{method}", self.url))
            .json(&params)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.expect("json body"))
    }

    /// Calls a method that must succeed and returns its result.
    pub async fn ok(&self, token: &str, method: &str, params: Value) -> Value {
        let (status, body) = self.api(token, method, params).await;
        assert_eq!(status, 200, "{method} failed: {body}");
        assert_eq!(body["ok"], json!(true));
        body["result"].clone()
    }

    /// Calls a method that must fail; returns (error_code, description).
    pub async fn err(&self, token: &str, method: &str, params: Value) -> (i64, String) {
        let (status, body) = self.api(token, method, params).await;
        assert_eq!(body["ok"], json!(false), "{method} should fail: {body}");
        assert_eq!(body["error_code"].as_i64(), Some(status as i64));
        (
            status as i64,
            body["description"].as_str().unwrap().to_string(),
        )
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn control(&self, path: &str, body: Value) -> Value {
        let (status, v) = self.post(path, body).await;
        assert!(
            (200..300).contains(&status),
            "POST {path} answered {status}: {v}"
        );
        v
    }

    pub async fn get(&self, path: &str) -> Value {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("request");
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.unwrap()
    }

    pub async fn bot(&self, username: &str) -> (String, i64) {
        let v = self
            .control(
                "/sandbox/bots",
                json!({"username": username, "first_name": "Test"}),
            )
            .await;
        (
            v["token"].as_str().unwrap().to_string(),
            v["id"].as_i64().unwrap(),
        )
    }

    pub async fn user(&self, first_name: &str) -> i64 {
        self.control("/sandbox/users", json!({"first_name": first_name}))
            .await["id"]
            .as_i64()
            .unwrap()
    }

    pub async fn say(&self, user: i64, bot: &str, text: &str) -> Value {
        self.control(
            &format!("/sandbox/users/{user}/messages"),
            json!({"bot": bot, "text": text}),
        )
        .await
    }

    /// A bot, a user who has sent it /start, and the pending update drained.
    pub async fn pair(&self, username: &str) -> Pair {
        let (token, bot_id) = self.bot(username).await;
        let user_id = self.user("Alice").await;
        self.say(user_id, username, "/start").await;
        let pending = self.ok(&token, "getUpdates", json!({})).await;
        let id = pending[0]["update_id"].as_i64().unwrap();
        self.ok(&token, "getUpdates", json!({"offset": id + 1}))
            .await;
        Pair {
            token,
            bot_id,
            username: username.to_string(),
            user_id,
        }
    }

    pub async fn transcript(&self, chat_id: i64, bot: &str) -> Vec<Value> {
        self.get(&format!("/sandbox/chats/{chat_id}/messages?bot={bot}"))
            .await["messages"]
            .as_array()
            .unwrap()
            .clone()
    }
}

/// Polls until `check` returns Some, or panics after the deadline.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    loop {
        poll.tick().await;
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
    }
}
