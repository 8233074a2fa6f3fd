//! Linking end to end: sandbox users open deep links, send `/link`, join with team codes,
//! toggle `/settings`, block the bot, `/stop`, bind groups; the app sees links and events.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Options, TestApp, engines, outgoing, until};

const LINKED: &str = "Done! This chat is now linked to your account.";
const SUBSCRIBED: &str = "Done! This chat is now connected.";
const GROUP_LINKED: &str = "Done! This group is now linked.";
const USED: &str = "This link was already used.";
const EXPIRED: &str = "This link has expired.";
const FOREIGN: &str = "This link or code is not for this bot.";
const REVOKED: &str = "This code is no longer valid.";

/// A tenant with a tenant key, a bot added to relaygram, and three categories.
struct Shop {
    key: String,
    bot_id: String,
    bot: String,
    categories: Vec<Value>,
}

async fn shop(app: &TestApp, bot: &str) -> Shop {
    let tenant = app.tenant(bot).await;
    let (_, key) = app.tenant_key(&tenant).await;
    let (_, token) = app.sandbox_bot(bot).await;
    let a = app.post("/v1/bots", &key, json!({"token": token})).await;
    assert_eq!(a.status.as_u16(), 201, "{}", a.text);
    let bot_id = a.body["id"].as_str().unwrap().to_string();
    let mut categories = Vec::new();
    for body in [
        json!({"key": "alerts", "name": "Alerts"}),
        json!({"key": "reports", "name": "Reports", "default_enabled": false}),
        json!({"key": "critical", "name": "Critical", "mandatory": true}),
    ] {
        let a = app.post("/v1/categories", &key, body).await;
        assert_eq!(a.status.as_u16(), 201, "{}", a.text);
        categories.push(a.body);
    }
    Shop {
        key,
        bot_id,
        bot: bot.to_string(),
        categories,
    }
}

async fn user(app: &TestApp, name: &str) -> i64 {
    app.sandbox_post("/sandbox/users", json!({"first_name": name}))
        .await["id"]
        .as_i64()
        .unwrap()
}

/// Messages of a chat (a user's private chat with `bot`, or a group).
async fn transcript(app: &TestApp, chat: i64, bot: &str) -> Vec<Value> {
    app.transcript(chat, Some(bot)).await
}

/// Sends `text` as `user` in their private chat with the bot (or in `group`); returns the
/// bot's reply there.
async fn say_in(app: &TestApp, shop: &Shop, user: i64, group: Option<i64>, text: &str) -> Value {
    let chat = group.unwrap_or(user);
    let before = outgoing(transcript(app, chat, &shop.bot).await).len();
    let body = match group {
        Some(g) => json!({"chat_id": g, "text": text}),
        None => json!({"bot": shop.bot, "text": text}),
    };
    app.sandbox_post(&format!("/sandbox/users/{user}/messages"), body)
        .await;
    until("the bot's reply", || async {
        outgoing(transcript(app, chat, &shop.bot).await)
            .get(before)
            .cloned()
    })
    .await
}

async fn say(app: &TestApp, shop: &Shop, user: i64, text: &str) -> Value {
    say_in(app, shop, user, None, text).await
}

#[track_caller]
fn assert_starts(message: &Value, prefix: &str) {
    let text = message["text"].as_str().unwrap_or_default();
    assert!(
        text.starts_with(prefix),
        "expected {prefix:?}, got {text:?}"
    );
}

async fn link_token(app: &TestApp, shop: &Shop, external_id: &str, extra: Value) -> Value {
    let mut body = json!({"bot_id": shop.bot_id, "external_id": external_id});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let a = app.post("/v1/link-tokens", &shop.key, body).await;
    assert_eq!(a.status.as_u16(), 201, "{}", a.text);
    a.body
}

async fn links(app: &TestApp, shop: &Shop, query: &str) -> Vec<Value> {
    let a = app.get(&format!("/v1/links?{query}"), &shop.key).await;
    assert_eq!(a.status.as_u16(), 200, "{}", a.text);
    a.body["data"].as_array().unwrap().clone()
}

/// The tenant's events of one type, through the pull API, once there are `count`.
async fn events(app: &TestApp, shop: &Shop, kind: &str, count: usize) -> Vec<Value> {
    until(&format!("{count} {kind} events"), || async {
        let a = app
            .get(&format!("/v1/events?type={kind}&limit=200"), &shop.key)
            .await;
        let data = a.body["data"].as_array()?.clone();
        (data.len() >= count).then_some(data)
    })
    .await
}

/// Presses an inline button of a bot message; returns the callback answer.
async fn press(app: &TestApp, shop: &Shop, user: i64, message: &Value, data: &str) -> Value {
    app.press(&shop.bot, user, message, &json!(data)).await
}

fn category<'a>(link: &'a Value, key: &str) -> &'a Value {
    link["categories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["key"] == key)
        .unwrap()
}

#[tokio::test]
async fn deep_link_and_link_command_make_links_once() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let shop = shop(&app, "link_shop_bot").await;
        let alice = user(&app, "Alice").await;
        let bob = user(&app, "Bob").await;
        let carol = user(&app, "Carol").await;

        let t1 = link_token(
            &app,
            &shop,
            "user-42",
            json!({"categories": ["reports"], "metadata": {"plan": "pro"}}),
        )
        .await;
        let token = t1["token"].as_str().unwrap();
        assert!(token.len() <= 64);
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        );
        assert_eq!(
            t1["deep_link"],
            format!("https://t.me/link_shop_bot?start={token}")
        );
        assert_eq!(
            t1["group_link"],
            format!("https://t.me/link_shop_bot?startgroup={token}")
        );
        let id1 = t1["id"].as_str().unwrap();
        let state = app.get(&format!("/v1/link-tokens/{id1}"), &shop.key).await;
        assert_eq!(state.body["status"], "pending", "{}", state.text);
        assert!(
            !state.text.contains(token),
            "the token is never shown again"
        );
        let qr = app
            .send(
                app.http
                    .get(app.url(&format!("/v1/link-tokens/{id1}/qr.svg")))
                    .bearer_auth(&shop.key),
            )
            .await;
        assert_eq!(qr.status, 200);
        assert_eq!(qr.headers["content-type"], "image/svg+xml");
        assert!(qr.text.contains("<svg"));

        // The deep link: `/start <token>`.
        assert_starts(
            &say(&app, &shop, alice, &format!("/start {token}")).await,
            LINKED,
        );
        let state = app.get(&format!("/v1/link-tokens/{id1}"), &shop.key).await;
        assert_eq!(state.body["status"], "used", "{}", state.text);
        let link = &state.body["link"];
        assert_eq!(link["external_id"], "user-42");
        assert_eq!(link["chat_id"], json!(alice));
        assert_eq!(link["chat_type"], "private");
        assert_eq!(link["source"], "token");
        assert_eq!(link["active"], json!(true));
        assert_eq!(link["metadata"], json!({"plan": "pro"}));
        assert_eq!(category(link, "alerts")["enabled"], json!(true));
        assert_eq!(
            category(link, "reports")["enabled"],
            json!(true),
            "turned on by the token"
        );
        assert_eq!(category(link, "critical")["mandatory"], json!(true));
        app.get(&format!("/v1/link-tokens/{id1}/qr.svg"), &shop.key)
            .await
            .assert_problem(409, "conflict");

        // `/link <token>`; the same app user may have a second chat.
        let t2 = link_token(&app, &shop, "user-42", json!({})).await;
        assert_starts(
            &say(
                &app,
                &shop,
                bob,
                &format!("/link {}", t2["token"].as_str().unwrap()),
            )
            .await,
            LINKED,
        );
        assert_eq!(links(&app, &shop, "external_id=user-42").await.len(), 2);
        let bobs = links(&app, &shop, &format!("chat_id={bob}")).await;
        assert_eq!(
            category(&bobs[0], "reports")["enabled"],
            json!(false),
            "off by default"
        );

        // Reuse and unknown tokens change nothing.
        assert_starts(
            &say(&app, &shop, carol, &format!("/start {token}")).await,
            USED,
        );
        assert_starts(
            &say(&app, &shop, carol, "/start not_a_token_we_made").await,
            "Welcome to", // not a token or code relaygram knows: the app's payload
        );
        assert_eq!(links(&app, &shop, "").await.len(), 2);
        assert!(
            links(&app, &shop, &format!("chat_id={carol}"))
                .await
                .is_empty()
        );

        // Filters: by category (opt-in rule) and activity.
        assert_eq!(links(&app, &shop, "category=reports").await.len(), 1);
        assert_eq!(links(&app, &shop, "category=critical").await.len(), 2);
        assert_eq!(links(&app, &shop, "active=false").await.len(), 0);
        // A category the tenant does not have is a typo, not an empty audience.
        let typo = app.get("/v1/links?category=reportz", &shop.key).await;
        typo.assert_problem(400, "validation-failed");
        assert_eq!(typo.body["field"], "category", "{}", typo.text);
        let page = app.get("/v1/links?limit=1", &shop.key).await;
        let next = page.body["next_cursor"].as_str().unwrap();
        let rest = links(&app, &shop, &format!("limit=1&after={next}")).await;
        assert_eq!(rest.len(), 1);
        assert_ne!(rest[0]["id"], page.body["data"][0]["id"]);

        let created = events(&app, &shop, "link.created", 2).await;
        assert_eq!(created.len(), 2);
        assert_eq!(created[0]["data"]["link"]["chat_id"], json!(alice));
        assert_eq!(created[0]["data"]["link"]["external_id"], "user-42");
        assert_eq!(created[1]["data"]["link"]["chat_id"], json!(bob));
        app.stop().await;
    }
}

#[tokio::test]
async fn expired_tokens_change_nothing() {
    for engine in engines() {
        let app = TestApp::spawn_with(
            engine,
            Options {
                manual_clock: true,
                ..Options::default()
            },
        )
        .await;
        let shop = shop(&app, "expiry_bot").await;
        let alice = user(&app, "Alice").await;
        let t = link_token(&app, &shop, "user-1", json!({"ttl_seconds": 60})).await;
        app.clock().advance(Duration::from_secs(61));
        let id = t["id"].as_str().unwrap();
        let state = app.get(&format!("/v1/link-tokens/{id}"), &shop.key).await;
        assert_eq!(state.body["status"], "expired");
        let token = t["token"].as_str().unwrap();
        assert_starts(
            &say(&app, &shop, alice, &format!("/start {token}")).await,
            EXPIRED,
        );
        assert!(links(&app, &shop, "").await.is_empty());
        let state = app.get(&format!("/v1/link-tokens/{id}"), &shop.key).await;
        assert_eq!(state.body["status"], "expired");
        assert_eq!(state.body["used_at"], Value::Null);

        // Bad input is refused with the field named.
        for (body, field) in [
            (
                json!({"bot_id": shop.bot_id, "external_id": "u", "ttl_seconds": 5}),
                "ttl_seconds",
            ),
            (
                json!({"bot_id": shop.bot_id, "external_id": ""}),
                "external_id",
            ),
            (
                json!({"bot_id": shop.bot_id, "external_id": "u", "categories": ["nope"]}),
                "categories",
            ),
            (
                json!({"bot_id": shop.bot_id, "external_id": "u", "metadata": [1]}),
                "metadata",
            ),
        ] {
            let a = app.post("/v1/link-tokens", &shop.key, body).await;
            a.assert_problem(422, "validation-failed");
            assert_eq!(a.body["field"], field, "{}", a.text);
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn another_tenants_tokens_and_codes_are_refused() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let ours = shop(&app, "ours_bot").await;
        let theirs = shop(&app, "theirs_bot").await;
        let alice = user(&app, "Alice").await;
        let t = link_token(&app, &theirs, "their-user", json!({})).await;
        let token = t["token"].as_str().unwrap();
        assert_starts(
            &say(&app, &ours, alice, &format!("/start {token}")).await,
            FOREIGN,
        );
        let code = app
            .post(
                "/v1/connect-codes",
                &theirs.key,
                json!({"bot_id": theirs.bot_id}),
            )
            .await;
        assert_eq!(code.status.as_u16(), 201, "{}", code.text);
        let code_text = code.body["code"].as_str().unwrap();
        assert_starts(
            &say(&app, &ours, alice, &format!("/start {code_text}")).await,
            FOREIGN,
        );
        assert!(links(&app, &ours, "").await.is_empty());
        assert!(links(&app, &theirs, "").await.is_empty());
        let id = t["id"].as_str().unwrap();
        assert_eq!(
            app.get(&format!("/v1/link-tokens/{id}"), &theirs.key)
                .await
                .body["status"],
            "pending",
            "the token still works for its own bot"
        );

        // Across the API, another tenant's resources do not exist.
        app.get(&format!("/v1/link-tokens/{id}"), &ours.key)
            .await
            .assert_problem(404, "not-found");
        let cid = code.body["id"].as_str().unwrap();
        app.get(&format!("/v1/connect-codes/{cid}"), &ours.key)
            .await
            .assert_problem(404, "not-found");
        let cat = theirs.categories[0]["id"].as_str().unwrap();
        app.get(&format!("/v1/categories/{cat}"), &ours.key)
            .await
            .assert_problem(404, "not-found");
        app.post(
            "/v1/link-tokens",
            &ours.key,
            json!({"bot_id": theirs.bot_id, "external_id": "x"}),
        )
        .await
        .assert_problem(404, "not-found");
        assert_starts(
            &say(&app, &theirs, alice, &format!("/start {token}")).await,
            LINKED,
        );
        let theirs_links = links(&app, &theirs, "").await;
        let lid = theirs_links[0]["id"].as_str().unwrap();
        app.get(&format!("/v1/links/{lid}"), &ours.key)
            .await
            .assert_problem(404, "not-found");
        app.patch(
            &format!("/v1/links/{lid}"),
            &ours.key,
            json!({"categories": {"alerts": false}}),
        )
        .await
        .assert_problem(404, "not-found");
        app.delete(&format!("/v1/links/{lid}"), &ours.key)
            .await
            .assert_problem(404, "not-found");
        assert!(links(&app, &ours, "").await.is_empty());
        app.stop().await;
    }
}

#[tokio::test]
async fn a_connect_code_serves_a_team_until_rotated_or_revoked() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let shop = shop(&app, "team_bot").await;
        let a = app
            .post(
                "/v1/connect-codes",
                &shop.key,
                json!({"bot_id": shop.bot_id, "label": "Night shift", "categories": ["reports"]}),
            )
            .await;
        assert_eq!(a.status.as_u16(), 201, "{}", a.text);
        let id = a.body["id"].as_str().unwrap().to_string();
        let code = a.body["code"].as_str().unwrap().to_string();
        assert_eq!(
            a.body["deep_link"],
            format!("https://t.me/team_bot?start={code}")
        );
        let mut operators = Vec::new();
        for (i, name) in ["Ann", "Ben", "Cat"].into_iter().enumerate() {
            let op = user(&app, name).await;
            // Codes are not case-sensitive.
            let sent = if i == 1 {
                code.to_lowercase()
            } else {
                code.clone()
            };
            assert_starts(
                &say(&app, &shop, op, &format!("/start {sent}")).await,
                SUBSCRIBED,
            );
            operators.push(op);
        }
        assert_starts(
            &say(&app, &shop, operators[0], &format!("/start {code}")).await,
            "This chat is already connected with this code.",
        );
        let first = app
            .get(
                &format!("/v1/connect-codes/{id}/subscribers?limit=2"),
                &shop.key,
            )
            .await;
        assert_eq!(
            first.body["data"].as_array().unwrap().len(),
            2,
            "{}",
            first.text
        );
        let next = first.body["next_cursor"].as_str().unwrap();
        let rest = app
            .get(
                &format!("/v1/connect-codes/{id}/subscribers?limit=2&after={next}"),
                &shop.key,
            )
            .await;
        assert_eq!(rest.body["data"].as_array().unwrap().len(), 1);
        let subs = links(&app, &shop, &format!("connect_code_id={id}")).await;
        assert_eq!(subs.len(), 3);
        for s in &subs {
            assert_eq!(s["source"], "code");
            assert_eq!(s["external_id"], Value::Null);
            assert_eq!(category(s, "reports")["enabled"], json!(true));
        }

        // Rotating: the old code stops working, the subscribers stay.
        let rotated = app
            .post(
                &format!("/v1/connect-codes/{id}/rotate"),
                &shop.key,
                json!({}),
            )
            .await;
        assert_eq!(rotated.status.as_u16(), 200, "{}", rotated.text);
        let new_code = rotated.body["code"].as_str().unwrap().to_string();
        assert_ne!(new_code, code);
        let dan = user(&app, "Dan").await;
        assert_starts(
            &say(&app, &shop, dan, &format!("/start {code}")).await,
            "Welcome to", // not a token or code relaygram knows: the app's payload
        );
        assert_starts(
            &say(&app, &shop, dan, &format!("/start {new_code}")).await,
            SUBSCRIBED,
        );

        // Revoking: nobody new joins; existing links stay.
        let revoked = app
            .delete(&format!("/v1/connect-codes/{id}"), &shop.key)
            .await;
        assert_eq!(revoked.status.as_u16(), 200, "{}", revoked.text);
        assert_eq!(revoked.body["active"], json!(false));
        let eve = user(&app, "Eve").await;
        assert_starts(
            &say(&app, &shop, eve, &format!("/start {new_code}")).await,
            REVOKED,
        );
        assert_eq!(
            links(&app, &shop, &format!("connect_code_id={id}"))
                .await
                .len(),
            4
        );
        let listed = app.get("/v1/connect-codes", &shop.key).await;
        assert_eq!(listed.body["data"].as_array().unwrap().len(), 1);
        app.stop().await;
    }
}

#[tokio::test]
async fn settings_buttons_toggle_categories_but_not_mandatory_ones() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let shop = shop(&app, "prefs_bot").await;
        let alice = user(&app, "Alice").await;
        assert_starts(
            &say(&app, &shop, alice, "/settings").await,
            "This chat is not linked yet.",
        );
        let t = link_token(&app, &shop, "user-7", json!({})).await;
        say(
            &app,
            &shop,
            alice,
            &format!("/start {}", t["token"].as_str().unwrap()),
        )
        .await;
        let menu = say(&app, &shop, alice, "/settings").await;
        let rows = menu["reply_markup"]["inline_keyboard"]
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(rows.len(), 3, "{menu}");
        let labels: Vec<&str> = rows
            .iter()
            .map(|r| r[0]["text"].as_str().unwrap())
            .collect();
        assert_eq!(
            labels,
            ["✅ Alerts: on", "⬜ Reports: off", "🔒 Critical: always on"]
        );
        for r in &rows {
            let data = r[0]["callback_data"].as_str().unwrap();
            assert!(data.starts_with("rg:") && data.len() <= 64, "{data}");
        }
        let data = |i: usize| rows[i][0]["callback_data"].as_str().unwrap().to_string();

        let answer = press(&app, &shop, alice, &menu, &data(1)).await;
        assert_eq!(answer["text"], "Reports: on");
        let answer = press(&app, &shop, alice, &menu, &data(0)).await;
        assert_eq!(answer["text"], "Alerts: off");
        let answer = press(&app, &shop, alice, &menu, &data(2)).await;
        assert!(
            answer["text"]
                .as_str()
                .unwrap()
                .contains("cannot be turned off"),
            "{answer}"
        );
        let link = &links(&app, &shop, "").await[0];
        assert_eq!(category(link, "alerts")["enabled"], json!(false));
        assert_eq!(category(link, "reports")["enabled"], json!(true));
        assert_eq!(category(link, "critical")["enabled"], json!(true));
        // The settings message shows the new state.
        let edited = until("the keyboard to be redrawn", || async {
            transcript(&app, alice, &shop.bot)
                .await
                .into_iter()
                .find(|m| m["message_id"] == menu["message_id"])
                .filter(|m| m["reply_markup"]["inline_keyboard"][0][0]["text"] == "⬜ Alerts: off")
        })
        .await;
        assert_eq!(
            edited["reply_markup"]["inline_keyboard"][1][0]["text"],
            "✅ Reports: on"
        );

        // The app reads and sets the same preferences; mandatory ones stay on.
        let lid = link["id"].as_str().unwrap();
        let a = app
            .patch(
                &format!("/v1/links/{lid}"),
                &shop.key,
                json!({"categories": {"critical": false}}),
            )
            .await;
        a.assert_problem(422, "validation-failed");
        assert_eq!(a.body["field"], "categories");
        let a = app
            .patch(
                &format!("/v1/links/{lid}"),
                &shop.key,
                json!({"categories": {"alerts": true}, "timezone": "Europe/Berlin",
                       "quiet_start": "22:00", "quiet_end": "07:00"}),
            )
            .await;
        assert_eq!(a.status.as_u16(), 200, "{}", a.text);
        assert_eq!(category(&a.body, "alerts")["enabled"], json!(true));
        assert_eq!(a.body["quiet_start"], "22:00");
        assert_eq!(a.body["timezone"], "Europe/Berlin");
        for (body, field) in [
            (
                json!({"quiet_start": "25:00", "quiet_end": "07:00"}),
                "quiet_start",
            ),
            (json!({"quiet_start": null}), "quiet_end"),
            (json!({"timezone": "Not a zone"}), "timezone"),
            (json!({"categories": {"nope": true}}), "categories"),
        ] {
            let a = app
                .patch(&format!("/v1/links/{lid}"), &shop.key, body)
                .await;
            a.assert_problem(422, "validation-failed");
            assert_eq!(a.body["field"], field, "{}", a.text);
        }
        let a = app
            .patch(
                &format!("/v1/links/{lid}"),
                &shop.key,
                json!({"quiet_start": null, "quiet_end": null}),
            )
            .await;
        assert_eq!(a.body["quiet_start"], Value::Null, "{}", a.text);
        assert_eq!(a.body["timezone"], "Europe/Berlin");
        let updated = events(&app, &shop, "link.updated", 3).await;
        assert_eq!(updated[0]["data"]["reason"], "settings");
        app.stop().await;
    }
}

#[tokio::test]
async fn blocking_makes_links_inactive_and_stop_unlinks() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let shop = shop(&app, "life_bot").await;
        let alice = user(&app, "Alice").await;
        let t = link_token(&app, &shop, "user-9", json!({})).await;
        say(
            &app,
            &shop,
            alice,
            &format!("/start {}", t["token"].as_str().unwrap()),
        )
        .await;

        app.sandbox_post(
            &format!("/sandbox/users/{alice}/block"),
            json!({"bot": shop.bot}),
        )
        .await;
        until("the link to go inactive", || async {
            (links(&app, &shop, "active=false").await.len() == 1).then_some(())
        })
        .await;
        app.sandbox_post(
            &format!("/sandbox/users/{alice}/unblock"),
            json!({"bot": shop.bot}),
        )
        .await;
        until("the link to be active again", || async {
            (links(&app, &shop, "active=true").await.len() == 1).then_some(())
        })
        .await;
        // Blocked again, then back with /start.
        app.sandbox_post(
            &format!("/sandbox/users/{alice}/block"),
            json!({"bot": shop.bot}),
        )
        .await;
        until("the link to go inactive", || async {
            (links(&app, &shop, "active=false").await.len() == 1).then_some(())
        })
        .await;
        // A blocked chat cannot get a test message: 409, nothing sent.
        let lid = links(&app, &shop, "").await[0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        app.post(&format!("/v1/links/{lid}/test"), &shop.key, json!({}))
            .await
            .assert_problem(409, "conflict");
        app.sandbox_post(
            &format!("/sandbox/users/{alice}/unblock"),
            json!({"bot": shop.bot}),
        )
        .await;
        assert_starts(&say(&app, &shop, alice, "/start").await, "Welcome to Test!");
        assert_eq!(links(&app, &shop, "active=true").await.len(), 1);
        let updated = events(&app, &shop, "link.updated", 4).await;
        let reasons: Vec<&str> = updated
            .iter()
            .map(|e| e["data"]["reason"].as_str().unwrap())
            .collect();
        assert_eq!(reasons[..3], ["blocked", "unblocked", "blocked"]);
        assert_eq!(updated[0]["data"]["link"]["active"], json!(false));

        // The app's test message arrives.
        let a = app
            .post(&format!("/v1/links/{lid}/test"), &shop.key, json!({}))
            .await;
        assert_eq!(a.status.as_u16(), 200, "{}", a.text);
        let test = outgoing(transcript(&app, alice, &shop.bot).await)
            .pop()
            .unwrap();
        assert_starts(&test, "This is a test message from Test.");
        assert_eq!(test["message_id"], a.body["message_id"]);

        // /stop, confirmed: the link is gone and the app hears it.
        let ask = say(&app, &shop, alice, "/stop").await;
        let answer = press(&app, &shop, alice, &ask, "rg:stop:yes").await;
        assert_eq!(answer["text"], "Stopped. Send /start to come back.");
        until("the link to be removed", || async {
            links(&app, &shop, "").await.is_empty().then_some(())
        })
        .await;
        let removed = events(&app, &shop, "link.removed", 1).await;
        assert_eq!(removed[0]["data"]["reason"], "stop");
        assert_eq!(removed[0]["data"]["link"]["id"], json!(lid));
        app.stop().await;
    }
}

#[tokio::test]
async fn the_app_unlinks_and_the_user_is_told() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let shop = shop(&app, "unlink_bot").await;
        let alice = user(&app, "Alice").await;
        let t = link_token(&app, &shop, "user-5", json!({})).await;
        say(
            &app,
            &shop,
            alice,
            &format!("/start {}", t["token"].as_str().unwrap()),
        )
        .await;
        let lid = links(&app, &shop, "").await[0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let a = app.delete(&format!("/v1/links/{lid}"), &shop.key).await;
        assert_eq!(a.status.as_u16(), 204, "{}", a.text);
        let told = outgoing(transcript(&app, alice, &shop.bot).await)
            .pop()
            .unwrap();
        assert_starts(&told, "This chat was unlinked by the app.");
        app.get(&format!("/v1/links/{lid}"), &shop.key)
            .await
            .assert_problem(404, "not-found");
        let removed = events(&app, &shop, "link.removed", 1).await;
        assert_eq!(removed[0]["data"]["reason"], "api");
        // The token stays used.
        let id = t["id"].as_str().unwrap();
        let state = app.get(&format!("/v1/link-tokens/{id}"), &shop.key).await;
        assert_eq!(state.body["status"], "used");
        assert_eq!(state.body["link"], Value::Null);

        // Categories: CRUD with their rules.
        let dup = app
            .post(
                "/v1/categories",
                &shop.key,
                json!({"key": "alerts", "name": "Again"}),
            )
            .await;
        dup.assert_problem(409, "conflict");
        let bad = app
            .post(
                "/v1/categories",
                &shop.key,
                json!({"key": "Bad Key", "name": "X"}),
            )
            .await;
        bad.assert_problem(422, "validation-failed");
        assert_eq!(bad.body["field"], "key");
        let cid = shop.categories[1]["id"].as_str().unwrap();
        let a = app
            .patch(
                &format!("/v1/categories/{cid}"),
                &shop.key,
                json!({"name": "Weekly reports", "default_enabled": true}),
            )
            .await;
        assert_eq!(a.status.as_u16(), 200, "{}", a.text);
        assert_eq!(a.body["key"], "reports");
        assert_eq!(a.body["default_enabled"], json!(true));
        let listed = app.get("/v1/categories?limit=2", &shop.key).await;
        assert_eq!(listed.body["data"].as_array().unwrap().len(), 2);
        assert!(listed.body["next_cursor"].is_string());
        assert_eq!(
            app.delete(&format!("/v1/categories/{cid}"), &shop.key)
                .await
                .status
                .as_u16(),
            204
        );
        app.get(&format!("/v1/categories/{cid}"), &shop.key)
            .await
            .assert_problem(404, "not-found");
        app.stop().await;
    }
}

#[tokio::test]
async fn a_group_binds_only_when_the_bot_is_an_administrator() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let shop = shop(&app, "group_link_bot").await;
        let owner = user(&app, "Owner").await;
        let member = user(&app, "Member").await;
        let group = app
            .sandbox_post(
                "/sandbox/groups",
                json!({"title": "Ops", "type": "group", "owner": owner, "members": [member]}),
            )
            .await;
        let gid = group["id"].as_i64().unwrap();
        let t = link_token(&app, &shop, "team-ops", json!({})).await;
        let token = t["token"].as_str().unwrap();
        assert!(t["group_link"].as_str().unwrap().contains("startgroup="));

        // `startgroup`: Telegram adds the bot, then the user's client sends
        // `/start@<bot> <token>` in the group. As a plain member the bot cannot bind.
        app.sandbox_post(
            &format!("/sandbox/groups/{gid}/bots"),
            json!({"bot": shop.bot, "status": "member"}),
        )
        .await;
        let start = format!("/start@{} {token}", shop.bot);
        let reply = say_in(&app, &shop, owner, Some(gid), &start).await;
        assert_starts(&reply, "I need to be an administrator of this group");
        assert!(links(&app, &shop, "").await.is_empty());
        let id = t["id"].as_str().unwrap();
        assert_eq!(
            app.get(&format!("/v1/link-tokens/{id}"), &shop.key)
                .await
                .body["status"],
            "pending"
        );

        // Made an administrator, the same token binds the group.
        app.sandbox_post(&format!("/sandbox/groups/{gid}/bots"),
            json!({"bot": shop.bot, "status": "administrator", "rights": {"can_invite_users": true}}),
        )
        .await;
        assert_starts(
            &say_in(&app, &shop, owner, Some(gid), &start).await,
            GROUP_LINKED,
        );
        let bound = links(&app, &shop, "").await;
        assert_eq!(bound.len(), 1);
        assert_eq!(bound[0]["chat_id"], json!(gid));
        assert_eq!(bound[0]["chat_type"], "group");
        assert_eq!(bound[0]["external_id"], "team-ops");

        // A member who is not an administrator cannot /stop the group's link.
        let ask = say_in(
            &app,
            &shop,
            member,
            Some(gid),
            &format!("/stop@{}", shop.bot),
        )
        .await;
        let pressed = app.sandbox_post(&format!("/sandbox/users/{member}/callback"),
            json!({"bot": shop.bot, "chat_id": gid, "message_id": ask["message_id"], "data": "rg:stop:yes"}),
        )
        .await;
        let cq = pressed["callback_query_id"].as_str().unwrap().to_string();
        let answer = until("the answer", || async {
            let v = app.sandbox_get(&format!("/sandbox/callbacks/{cq}")).await;
            (v["answered"] == json!(true)).then_some(v["answer"].clone())
        })
        .await;
        assert_eq!(
            answer["text"],
            "Only the group's administrators can change this."
        );
        assert_eq!(links(&app, &shop, "").await.len(), 1);

        // The group becomes a supergroup: the link follows the new chat id.
        let migrated = app
            .sandbox_post(&format!("/sandbox/groups/{gid}/migrate"), json!({}))
            .await;
        let new_id = migrated["migrate_to_chat_id"].as_i64().unwrap();
        let moved = until("the link to follow the migration", || async {
            let l = links(&app, &shop, "").await;
            (l[0]["chat_id"] == json!(new_id)).then(|| l[0].clone())
        })
        .await;
        assert_eq!(moved["chat_type"], "supergroup");
        let updated = events(&app, &shop, "link.updated", 1).await;
        assert_eq!(updated[0]["data"]["reason"], "migrated");
        app.stop().await;
    }
}

/// Tokens and codes live in the store: a restart of the server on the same store keeps them.
#[tokio::test]
async fn tokens_and_codes_survive_a_restart() {
    use relaygram::config::Config;
    use relaygram::server;
    use relaygram::store::testing;
    use relaygram_sandbox::{Sandbox, SandboxConfig};
    use secrecy::SecretString;

    for engine in engines() {
        let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = testing::fresh(engine, dir.path()).await.unwrap();
        let config = Config {
            database_url: SecretString::from(db.url.clone()),
            bind: "127.0.0.1:0".parse().unwrap(),
            telegram_api_url: sandbox.url(),
            data_dir: dir.path().join("data"),
            admin_key: Some(SecretString::from("rg_restart_test_admin_key_0123456789")),
            ..Config::default()
        };
        let admin = "rg_restart_test_admin_key_0123456789";
        let http = reqwest::Client::new();
        let s = sandbox.url();
        let post = |base: String, path: &'static str, body: Value| {
            let http = http.clone();
            async move {
                let r = http
                    .post(format!("{base}{path}"))
                    .bearer_auth(admin)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success(), "{path}: {}", r.status());
                r.json::<Value>().await.unwrap()
            }
        };

        let first = server::spawn(&config, server::boot(&config).await.unwrap().services)
            .await
            .unwrap();
        let bot: Value = http
            .post(format!("{s}/sandbox/bots"))
            .json(&json!({"username": "restart_bot", "first_name": "Restart"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let tenant = post(first.url(), "/v1/tenants", json!({"name": "R"})).await;
        let added = post(
            first.url(),
            "/v1/bots",
            json!({"token": bot["token"], "tenant_id": tenant["id"]}),
        )
        .await;
        let token = post(
            first.url(),
            "/v1/link-tokens",
            json!({"bot_id": added["id"], "external_id": "survivor"}),
        )
        .await;
        let code = post(
            first.url(),
            "/v1/connect-codes",
            json!({"bot_id": added["id"]}),
        )
        .await;
        first.shutdown().await.unwrap();

        let second = server::spawn(&config, server::boot(&config).await.unwrap().services)
            .await
            .unwrap();
        let ann = post(s.clone(), "/sandbox/users", json!({"first_name": "Ann"})).await["id"]
            .as_i64()
            .unwrap();
        let ben = post(s.clone(), "/sandbox/users", json!({"first_name": "Ben"})).await["id"]
            .as_i64()
            .unwrap();
        for (u, payload) in [(ann, &token["token"]), (ben, &code["code"])] {
            http.post(format!("{s}/sandbox/users/{u}/messages"))
                .json(&json!({"bot": "restart_bot", "text": format!("/start {}", payload.as_str().unwrap())}))
                .send()
                .await
                .unwrap();
        }
        let base = second.url();
        let listed = until("both chats linked after the restart", || async {
            let v: Value = http
                .get(format!("{base}/v1/links"))
                .bearer_auth(admin)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let data = v["data"].as_array()?.clone();
            (data.len() == 2).then_some(data)
        })
        .await;
        let chats: Vec<i64> = listed
            .iter()
            .map(|l| l["chat_id"].as_i64().unwrap())
            .collect();
        assert!(chats.contains(&ann) && chats.contains(&ben), "{chats:?}");
        second.shutdown().await.unwrap();
        sandbox.shutdown().await;
        drop(db);
    }
}
