//! The chat page in headless Chromium: a user opens it, sends /start, sees the bot's reply and
//! presses its button. scripts/test installs Debian's chromium and chromedriver.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use thirtyfour::prelude::*;

use crate::Harness;

/// A tiny bot: answers /start with a button, and a press with a callback answer and a message.
async fn run_bot(http: reqwest::Client, api: String) {
    let mut offset = 0;
    loop {
        let Ok(r) = http
            .post(format!("{api}/getUpdates"))
            .json(&json!({"offset": offset, "timeout": 1}))
            .send()
            .await
        else {
            return;
        };
        let Ok(body) = r.json::<Value>().await else {
            return;
        };
        for u in body["result"].as_array().cloned().unwrap_or_default() {
            offset = u["update_id"].as_i64().unwrap() + 1;
            if let Some(m) = u.get("message")
                && m["text"] == "/start"
            {
                let _ = http
                        .post(format!("{api}/sendMessage"))
                        .json(&json!({"chat_id": m["chat"]["id"], "text": "<b>Welcome!</b> Pick one:", "parse_mode": "HTML",
                            "reply_markup": {"inline_keyboard": [[{"text": "Yes please", "callback_data": "yes"}]]}}))
                        .send()
                        .await;
            }
            if let Some(cq) = u.get("callback_query") {
                let _ = http
                    .post(format!("{api}/answerCallbackQuery"))
                    .json(&json!({"callback_query_id": cq["id"], "text": "Thanks!"}))
                    .send()
                    .await;
                let _ = http
                    .post(format!("{api}/sendMessage"))
                    .json(&json!({"chat_id": cq["from"]["id"], "text": format!("You pressed {}", cq["data"].as_str().unwrap())}))
                    .send()
                    .await;
            }
        }
    }
}

/// Keeps chromedriver alive; it is killed when dropped.
struct Driver {
    _child: tokio::process::Child,
}

impl Driver {
    async fn start() -> (Driver, String) {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = tokio::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver is installed (scripts/test installs Debian's chromium-driver)");
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        crate::eventually("chromedriver to listen", || async {
            http.get(format!("{url}/status"))
                .send()
                .await
                .ok()
                .map(|_| ())
        })
        .await;
        (Driver { _child: child }, url)
    }
}

/// The page refreshes the conversation as the bot answers, which can replace an element
/// between finding and using it: try again then.
async fn retry_stale<T, F, Fut>(mut action: F) -> WebDriverResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = WebDriverResult<T>>,
{
    let mut tries = 0;
    loop {
        match action().await {
            Err(e)
                if tries < 20
                    && matches!(
                        e.as_inner(),
                        thirtyfour::error::WebDriverErrorInner::StaleElementReference(_)
                    ) =>
            {
                tries += 1
            }
            other => return other,
        }
    }
}

async fn wait_text(driver: &WebDriver, text: &str) -> WebDriverResult<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut poll = tokio::time::interval(Duration::from_millis(100));
    loop {
        poll.tick().await;
        // Sending submits a form: while the page reloads the transcript is not there yet.
        let body =
            match retry_stale(|| async { driver.find(By::Id("transcript")).await?.text().await })
                .await
            {
                Err(e)
                    if matches!(
                        e.as_inner(),
                        thirtyfour::error::WebDriverErrorInner::NoSuchElement(_)
                    ) && tokio::time::Instant::now() < deadline =>
                {
                    continue;
                }
                other => other?,
            };
        if body.contains(text) {
            return Ok(());
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the page never showed {text:?}; it shows:\n{body}"
        );
    }
}

#[tokio::test]
async fn a_user_chats_with_a_bot_in_the_browser() -> WebDriverResult<()> {
    let h = Harness::start().await;
    let (token, bot_id) = h.bot("page_bot").await;
    let user = h.user("Alice").await;
    let bot = tokio::spawn(run_bot(h.http.clone(), format!("{}/bot{token}", h.url)));
    let (_driver, driver_url) = Driver::start().await;

    let mut caps = DesiredCapabilities::chrome();
    caps.set_binary("/usr/bin/chromium")?;
    for arg in [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ] {
        caps.add_arg(arg)?;
    }
    let driver = WebDriver::new(&driver_url, caps).await?;
    let result = async {
        driver
            .goto(format!("{}/?user={user}&bot={bot_id}", h.url))
            .await?;
        let input = driver.find(By::Id("text")).await?;
        input.send_keys("/start").await?;
        driver.find(By::Id("send")).await?.click().await?;
        wait_text(&driver, "Welcome! Pick one:").await?;
        // Formatting is rendered, not shown as tags.
        let bold = driver.find(By::Css(".msg.out b")).await?;
        assert_eq!(bold.text().await?, "Welcome!");
        driver
            .find(By::Css("button.callback"))
            .await?
            .click()
            .await?;
        wait_text(&driver, "You pressed yes").await?;
        wait_text(&driver, "The bot answered: Thanks!").await?;
        WebDriverResult::Ok(())
    }
    .await;
    driver.quit().await?;
    bot.abort();
    result?;
    let t = h.transcript(user, "page_bot").await;
    let texts: Vec<&str> = t.iter().filter_map(|m| m["text"].as_str()).collect();
    assert_eq!(texts, ["/start", "Welcome! Pick one:", "You pressed yes"]);
    Ok(())
}
