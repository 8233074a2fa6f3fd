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

/// Headless Chromium through chromedriver (keep the [`Driver`] alive while using it).
async fn browser() -> WebDriverResult<(Driver, WebDriver)> {
    let (child, driver_url) = Driver::start().await;
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
    Ok((child, WebDriver::new(&driver_url, caps).await?))
}

#[tokio::test]
async fn a_user_chats_with_a_bot_in_the_browser() -> WebDriverResult<()> {
    let h = Harness::start().await;
    let (token, bot_id) = h.bot("page_bot").await;
    let user = h.user("Alice").await;
    let bot = tokio::spawn(run_bot(h.http.clone(), format!("{}/bot{token}", h.url)));
    let (_driver, driver) = browser().await?;
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

/// A bot in a group and a channel: answers "hello" in the group with worded-state buttons,
/// a press with a toast or an alert, and a channel post with a message in the channel.
async fn run_group_bot(http: reqwest::Client, api: String) {
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
                && m["text"] == "hello"
            {
                let _ = http
                    .post(format!("{api}/sendMessage"))
                    .json(
                        &json!({"chat_id": m["chat"]["id"], "text": "Pick a state: ✅ is set",
                        "reply_markup": {"inline_keyboard": [
                            [{"text": "✅ Alerts", "callback_data": "toast"}],
                            [{"text": "🔒 Vault", "callback_data": "alert"}]]}}),
                    )
                    .send()
                    .await;
            }
            if let Some(p) = u.get("channel_post") {
                let _ = http
                    .post(format!("{api}/sendMessage"))
                    .json(&json!({"chat_id": p["chat"]["id"], "text": format!("Seen: {}", p["text"].as_str().unwrap_or(""))}))
                    .send()
                    .await;
            }
            if let Some(cq) = u.get("callback_query") {
                let answer = if cq["data"] == "alert" {
                    json!({"callback_query_id": cq["id"], "text": "The vault is locked", "show_alert": true})
                } else {
                    json!({"callback_query_id": cq["id"], "text": "Saved"})
                };
                let _ = http
                    .post(format!("{api}/answerCallbackQuery"))
                    .json(&answer)
                    .send()
                    .await;
            }
        }
    }
}

/// Clicks the inline button whose label contains `label`.
async fn press(driver: &WebDriver, label: &str) -> WebDriverResult<()> {
    retry_stale(|| async {
        for b in driver.find_all(By::Css("button.callback")).await? {
            if b.text().await?.contains(label) {
                return b.click().await;
            }
        }
        panic!("no button labelled {label:?}");
    })
    .await
}

/// Waits for an element by id and returns its text.
async fn wait_element(driver: &WebDriver, id: &str) -> WebDriverResult<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut poll = tokio::time::interval(Duration::from_millis(100));
    loop {
        poll.tick().await;
        match retry_stale(|| async { driver.find(By::Id(id)).await?.text().await }).await {
            Ok(text) => return Ok(text),
            Err(e)
                if matches!(
                    e.as_inner(),
                    thirtyfour::error::WebDriverErrorInner::NoSuchElement(_)
                ) =>
            {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no #{id} on the page"
                );
            }
            Err(e) => return Err(e),
        }
    }
}

#[tokio::test]
async fn groups_channels_button_answers_and_worded_states_in_the_browser() -> WebDriverResult<()> {
    let h = Harness::start().await;
    let (token, bot_id) = h.bot("team_bot").await;
    let user = h.user("Alice").await;
    let group = h
        .control(
            "/sandbox/groups",
            json!({"title": "Team", "type": "supergroup", "owner": user}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let channel = h
        .control(
            "/sandbox/groups",
            json!({"title": "News", "type": "channel", "owner": user}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    h.control(
        &format!("/sandbox/groups/{group}/bots"),
        json!({"bot": "team_bot"}),
    )
    .await;
    h.control(
        &format!("/sandbox/groups/{channel}/bots"),
        json!({"bot": "team_bot", "status": "administrator"}),
    )
    .await;
    // A group Alice is not in yet, with its owner's invite link.
    let owen = h.user("Owen").await;
    let club = h
        .control(
            "/sandbox/groups",
            json!({"title": "Club", "type": "supergroup", "owner": owen}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let club_link = h
        .control(
            &format!("/sandbox/groups/{club}/invite-links"),
            json!({"name": "door"}),
        )
        .await["invite_link"]
        .as_str()
        .unwrap()
        .to_string();
    let bot = tokio::spawn(run_group_bot(
        h.http.clone(),
        format!("{}/bot{token}", h.url),
    ));
    let (_driver, driver) = browser().await?;
    let result = async {
        driver
            .goto(format!("{}/?user={user}&bot={bot_id}", h.url))
            .await?;
        // Every group is shown with its members and links; Alice opens Club's link.
        let overview = driver.find(By::Id("groups")).await?.text().await?;
        assert!(
            overview.contains("Club") && overview.contains("door"),
            "{overview}"
        );
        assert!(overview.contains("Owen creator"), "{overview}");
        driver
            .find(By::Id("invite-link"))
            .await?
            .send_keys(&club_link)
            .await?;
        driver.find(By::Id("join")).await?.click().await?;
        assert!(wait_element(&driver, "chat-title").await?.contains("Club"));
        let card = driver
            .find(By::Id(format!("group-{}", club.unsigned_abs())))
            .await?
            .text()
            .await?;
        assert!(card.contains("Alice member"), "{card}");
        // The user's groups and channels are listed beside the private chats.
        let chats = driver.find(By::Id("chats")).await?.text().await?;
        assert!(chats.contains("@team_bot"), "{chats}");
        assert!(chats.contains("Team") && chats.contains("News"), "{chats}");
        driver
            .find(By::Id(format!("chat-{}", group.unsigned_abs())))
            .await?
            .click()
            .await?;
        assert!(wait_element(&driver, "chat-title").await?.contains("Team"));
        driver
            .find(By::Id("text"))
            .await?
            .send_keys("hello")
            .await?;
        driver.find(By::Id("send")).await?.click().await?;
        // The states are in words as well as marks.
        wait_text(&driver, "Pick a state: ✅ (on) is set").await?;
        wait_text(&driver, "✅ (on) Alerts").await?;
        wait_text(&driver, "🔒 (locked) Vault").await?;
        // A press answered with text shows a toast.
        press(&driver, "Alerts").await?;
        wait_text(&driver, "The bot answered: Saved").await?;
        let toast = driver.find(By::Css(".toast")).await?.text().await?;
        assert_eq!(toast, "The bot answered: Saved");
        // One answered with show_alert shows a dialog to dismiss.
        press(&driver, "Vault").await?;
        let alert = wait_element(&driver, "callback-alert").await?;
        assert!(alert.contains("The vault is locked"), "{alert}");
        driver.find(By::Id("alert-ok")).await?.click().await?;
        wait_text(&driver, "Pick a state").await?;
        assert!(driver.find_all(By::Id("callback-alert")).await?.is_empty());
        // The channel: its admin posts, the bot sees a channel post and answers there.
        driver
            .find(By::Id(format!("chat-{}", channel.unsigned_abs())))
            .await?
            .click()
            .await?;
        assert!(wait_element(&driver, "chat-title").await?.contains("News"));
        driver
            .find(By::Id("text"))
            .await?
            .send_keys("big news")
            .await?;
        driver.find(By::Id("send")).await?.click().await?;
        wait_text(&driver, "Seen: big news").await?;
        WebDriverResult::Ok(())
    }
    .await;
    driver.quit().await?;
    bot.abort();
    result?;
    let t = h.get(&format!("/sandbox/chats/{group}/messages")).await;
    let hello = t["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["text"] == "hello")
        .cloned()
        .expect("the group has the user's message");
    assert_eq!(hello["from"]["id"], user);
    let t = h.get(&format!("/sandbox/chats/{channel}/messages")).await;
    let post = &t["messages"][0];
    assert_eq!(post["text"], "big news");
    assert_eq!(post["sender_chat"]["id"], channel);
    assert!(post.get("from").is_none(), "{post}");
    Ok(())
}
