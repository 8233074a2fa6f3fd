//! Paid access, end to end against the sandbox, on both engines with a manual clock: a
//! grant gives a personal link, the entitled requester is approved and a stranger using
//! that link declined (the link revoked), an unentitled join is removed after the grace,
//! reminders and removal at expiry, renewal and rejoin, cancel and revoke, a degraded chat.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Options, TestApp, engines, outgoing, until};

struct Setup {
    key: String,
    bot: String,
    group: i64,
    gated: String,
}

async fn user(app: &TestApp, name: &str) -> i64 {
    app.sandbox_post("/sandbox/users", json!({"first_name": name}))
        .await["id"]
        .as_i64()
        .unwrap()
}

async fn setup(app: &TestApp, bot: &str, settings: Value) -> Setup {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("relaygram=warn")
        .try_init();
    let tenant = app.tenant(bot).await;
    let (_, key) = app.tenant_key(&tenant).await;
    let (_, token) = app.sandbox_bot(bot).await;
    let a = app.post("/v1/bots", &key, json!({"token": token})).await;
    assert_eq!(a.status.as_u16(), 201, "{}", a.text);
    let owner = user(app, "Owner").await;
    let group = app
        .sandbox_post(
            "/sandbox/groups",
            json!({"title": "VIP", "type": "supergroup", "owner": owner}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    // A plain member cannot gate: the answer names the rights and why.
    app.sandbox_post(
        &format!("/sandbox/groups/{group}/bots"),
        json!({"bot": bot, "status": "member"}),
    )
    .await;
    let mut body = json!({"chat_id": group, "name": "VIP"});
    for (k, v) in settings.as_object().unwrap() {
        body[k] = v.clone();
    }
    let refused = app.post("/v1/gated-chats", &key, body.clone()).await;
    refused.assert_problem(422, "validation-failed");
    assert!(
        refused.text.contains("can_restrict_members"),
        "{}",
        refused.text
    );
    app.sandbox_post(
        &format!("/sandbox/groups/{group}/bots"),
        json!({"bot": bot, "status": "administrator",
               "rights": {"can_invite_users": true, "can_restrict_members": true}}),
    )
    .await;
    let a = app.post("/v1/gated-chats", &key, body.clone()).await;
    assert_eq!(a.status.as_u16(), 201, "{}", a.text);
    assert_eq!(a.body["status"], "active");
    let again = app.post("/v1/gated-chats", &key, body).await;
    again.assert_problem(409, "conflict");
    Setup {
        key,
        bot: bot.to_string(),
        group,
        gated: a.body["id"].as_str().unwrap().to_string(),
    }
}

/// A tenant with a bot that administers a new `kind` chat (`group`, `supergroup`,
/// `channel`) with both rights: (tenant key, the bot's Telegram id, its token, the chat).
async fn administered(app: &TestApp, bot: &str, kind: &str) -> (String, i64, String, i64) {
    let tenant = app.tenant(bot).await;
    let (_, key) = app.tenant_key(&tenant).await;
    let (bot_tg, token) = app.sandbox_bot(bot).await;
    app.post("/v1/bots", &key, json!({"token": token})).await;
    let owner = user(app, "Owner").await;
    let chat = app
        .sandbox_post(
            "/sandbox/groups",
            json!({"title": "Club", "type": kind, "owner": owner}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    app.sandbox_post(
        &format!("/sandbox/groups/{chat}/bots"),
        json!({"bot": bot, "status": "administrator",
               "rights": {"can_invite_users": true, "can_restrict_members": true}}),
    )
    .await;
    (key, bot_tg, token, chat)
}

async fn membership(app: &TestApp, s: &Setup, user: i64) -> Value {
    let a = app
        .get(
            &format!("/v1/memberships?gated_chat_id={}", s.gated),
            &s.key,
        )
        .await;
    assert_eq!(a.status.as_u16(), 200, "{}", a.text);
    a.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["telegram_user_id"] == json!(user))
        .cloned()
        .unwrap_or(Value::Null)
}

async fn wait_state(app: &TestApp, s: &Setup, user: i64, state: &str) -> Value {
    until(&format!("membership of {user} {state}"), || async {
        let m = membership(app, s, user).await;
        (m["state"] == state && m["job_id"].is_null()).then_some(m)
    })
    .await
}

/// Whether the sandbox has `user` in the group now.
async fn in_group(app: &TestApp, group: i64, user: i64) -> bool {
    let groups = app.sandbox_get("/sandbox/groups").await;
    let g = groups
        .as_array()
        .or_else(|| groups["groups"].as_array())
        .unwrap()
        .iter()
        .find(|g| g["id"] == json!(group))
        .cloned()
        .unwrap();
    matches!(
        g["members"][user.to_string()].as_str(),
        Some("member" | "administrator" | "creator")
    )
}

async fn texts_to(app: &TestApp, user: i64, bot: &str) -> Vec<String> {
    outgoing(app.transcript(user, Some(bot)).await)
        .iter()
        .filter_map(|m| m["text"].as_str().map(str::to_string))
        .collect()
}

async fn wait_text(app: &TestApp, user: i64, bot: &str, needle: &str) -> String {
    until(&format!("a message with {needle:?}"), || async {
        texts_to(app, user, bot)
            .await
            .into_iter()
            .find(|t| t.contains(needle))
    })
    .await
}

#[tokio::test]
async fn paid_access_from_grant_to_removal_and_back() {
    for engine in engines() {
        let app = TestApp::spawn_with(
            engine,
            Options {
                manual_clock: true,
                ..Options::default()
            },
        )
        .await;
        let s = setup(
            &app,
            "vip_gate_bot",
            json!({"reminders": ["1d"], "remove_unentitled": true, "unentitled_grace_seconds": 60}),
        )
        .await;
        let alice = user(&app, "Alice").await;
        // Alice started the bot, so relaygram can write to her.
        app.sandbox_post(
            &format!("/sandbox/users/{alice}/messages"),
            json!({"bot": s.bot, "text": "/start"}),
        )
        .await;
        until("alice's chat known", || async {
            let t = texts_to(&app, alice, &s.bot).await;
            (!t.is_empty()).then_some(())
        })
        .await;

        // The same grant posted many times makes one entitlement.
        let grant = json!({"telegram_user_id": alice, "gated_chat_ids": [s.gated],
                           "duration": "2d", "source_key": "order-1"});
        let first = app.post("/v1/entitlements", &s.key, grant.clone()).await;
        assert_eq!(first.status.as_u16(), 201, "{}", first.text);
        let ent = first.body["id"].as_str().unwrap().to_string();
        let link = first.body["chats"][0]["invite_link"]
            .as_str()
            .expect("a personal link in the answer")
            .to_string();
        assert_eq!(first.body["chats"][0]["membership_state"], "invited");
        for _ in 0..99 {
            // Time passes between retries: a duration is still the same grant.
            app.clock().advance(Duration::from_millis(10));
            let again = app.post("/v1/entitlements", &s.key, grant.clone()).await;
            assert_eq!(again.status.as_u16(), 200, "{}", again.text);
            assert_eq!(again.body["id"], json!(ent));
            assert_eq!(again.body["replayed"], true);
        }
        let mut other = grant.clone();
        other["duration"] = json!("3d");
        app.post("/v1/entitlements", &s.key, other)
            .await
            .assert_problem(409, "conflict");
        let listed = app
            .get(
                &format!("/v1/entitlements?gated_chat_id={}", s.gated),
                &s.key,
            )
            .await;
        assert_eq!(listed.body["data"].as_array().unwrap().len(), 1);
        // The link reached her private chat.
        wait_text(&app, alice, &s.bot, &link).await;

        // Alice asks to join through her link: approved, a member.
        let joined = app
            .sandbox_post(
                &format!("/sandbox/users/{alice}/join"),
                json!({"invite_link": link}),
            )
            .await;
        assert_eq!(joined["result"], "requested");
        wait_state(&app, &s, alice, "member").await;
        until("alice in the group", || async {
            in_group(&app, s.group, alice).await.then_some(())
        })
        .await;

        // Bob uses Alice's link: declined (told how to get access), the link revoked.
        let bob = user(&app, "Bob").await;
        let asked = app
            .sandbox_post(
                &format!("/sandbox/users/{bob}/join"),
                json!({"invite_link": link}),
            )
            .await;
        assert_eq!(asked["result"], "requested");
        wait_state(&app, &s, bob, "declined").await;
        assert!(!in_group(&app, s.group, bob).await);
        until("alice's link revoked", || async {
            let groups = app.sandbox_get("/sandbox/groups").await;
            let text = groups.to_string();
            let g = groups
                .as_array()
                .or_else(|| groups["groups"].as_array())
                .unwrap()
                .iter()
                .find(|g| g["id"] == json!(s.group))
                .cloned()
                .unwrap();
            g["invite_links"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["invite_link"] == json!(link))
                .filter(|l| l["is_revoked"] == true)
                .map(|_| ())
                .or_else(|| (!text.contains(&link)).then_some(()))
        })
        .await;

        // Carol joins through an administrator's own link without an entitlement: removed
        // after the chat's 60 s grace, and free to come back.
        let carol = user(&app, "Carol").await;
        let admin_link = app
            .sandbox_post(
                &format!("/sandbox/groups/{}/invite-links", s.group),
                json!({"name": "friends"}),
            )
            .await["invite_link"]
            .as_str()
            .unwrap()
            .to_string();
        let r = app
            .sandbox_post(
                &format!("/sandbox/users/{carol}/join"),
                json!({"invite_link": admin_link}),
            )
            .await;
        assert_eq!(r["result"], "joined");
        let m = wait_state(&app, &s, carol, "member").await;
        assert_eq!(m["unentitled"], true);
        app.clock().advance(Duration::from_secs(61));
        wait_state(&app, &s, carol, "removed").await;
        assert!(!in_group(&app, s.group, carol).await);

        // A day before the end: the reminder. At the end: removed, told how to renew.
        app.clock().advance(Duration::from_secs(86_400 + 60));
        wait_text(&app, alice, &s.bot, "ends on").await;
        assert_eq!(membership(&app, &s, alice).await["state"], "member");
        app.clock().advance(Duration::from_secs(86_400));
        wait_state(&app, &s, alice, "removed").await;
        assert!(!in_group(&app, s.group, alice).await);
        wait_text(&app, alice, &s.bot, "you were removed").await;
        let e = app.get(&format!("/v1/entitlements/{ent}"), &s.key).await;
        assert_eq!(e.body["state"], "expired", "{}", e.text);

        // Renewed: a new personal link, and she is let in again (not left banned).
        let renewed = app
            .post(
                "/v1/entitlements",
                &s.key,
                json!({"telegram_user_id": alice, "gated_chat_ids": [s.gated],
                       "duration": "30d", "source_key": "order-2"}),
            )
            .await;
        assert_eq!(renewed.status.as_u16(), 201, "{}", renewed.text);
        let link2 = renewed.body["chats"][0]["invite_link"]
            .as_str()
            .unwrap()
            .to_string();
        assert_ne!(link2, link);
        app.sandbox_post(
            &format!("/sandbox/users/{alice}/join"),
            json!({"invite_link": link2}),
        )
        .await;
        wait_state(&app, &s, alice, "member").await;

        // An extension retried later with its key is the same extension.
        let id2 = renewed.body["id"].as_str().unwrap();
        let ext = json!({"duration": "10d", "source_key": "renewal-1"});
        let first = app
            .post(
                &format!("/v1/entitlements/{id2}/extend"),
                &s.key,
                ext.clone(),
            )
            .await;
        assert_eq!(first.status.as_u16(), 200, "{}", first.text);
        assert_eq!(first.body["replayed"], false);
        app.clock().advance(Duration::from_secs(1));
        let again = app
            .post(&format!("/v1/entitlements/{id2}/extend"), &s.key, ext)
            .await;
        assert_eq!(again.body["replayed"], true, "{}", again.text);
        assert_eq!(again.body["ends_at"], first.body["ends_at"]);
        assert_eq!(again.body["entries"].as_array().unwrap().len(), 2);

        // Cancel at period end keeps her in; revoke removes her at once.
        let c = app
            .post(
                &format!("/v1/entitlements/{id2}/cancel"),
                &s.key,
                json!({"at_period_end": true}),
            )
            .await;
        assert_eq!(c.status.as_u16(), 200, "{}", c.text);
        assert_eq!(c.body["cancel_at_period_end"], true);
        app.clock().advance(Duration::from_secs(5));
        assert_eq!(membership(&app, &s, alice).await["state"], "member");
        let r = app
            .post(
                &format!("/v1/entitlements/{id2}/revoke"),
                &s.key,
                json!({"reason": "chargeback"}),
            )
            .await;
        assert_eq!(r.status.as_u16(), 200, "{}", r.text);
        assert_eq!(r.body["state"], "revoked");
        wait_state(&app, &s, alice, "removed").await;
        app.post(&format!("/v1/entitlements/{id2}/revoke"), &s.key, json!({}))
            .await
            .assert_problem(422, "entitlement-ended");
        // Every change was an event, once: two grants (the replays made none), the expiry,
        // the extension, the cancellation, the revocation; Alice invited twice, removed twice.
        let events = app.get("/v1/events?limit=200", &s.key).await;
        let count = |t: &str| {
            events.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| {
                    e["type"] == t
                        && (t.starts_with("entitlement")
                            || e["data"]["telegram_user_id"] == json!(alice))
                })
                .count()
        };
        assert_eq!(count("entitlement.granted"), 2, "{}", events.text);
        for t in [
            "entitlement.expired",
            "entitlement.extended",
            "entitlement.cancelled",
            "entitlement.revoked",
        ] {
            assert_eq!(count(t), 1, "{t}");
        }
        assert_eq!(count("membership.invited"), 2);
        assert_eq!(count("membership.removed"), 2);
        app.stop().await;
    }
}

#[tokio::test]
async fn a_demoted_bot_degrades_the_gate_and_nothing_is_removed_until_it_is_back() {
    for engine in engines() {
        let app = TestApp::spawn_with(
            engine,
            Options {
                manual_clock: true,
                ..Options::default()
            },
        )
        .await;
        let s = setup(&app, "degrade_gate_bot", json!({})).await;
        let dan = user(&app, "Dan").await;
        let g = app
            .post(
                "/v1/entitlements",
                &s.key,
                json!({"telegram_user_id": dan, "gated_chat_ids": [s.gated], "duration": "1h"}),
            )
            .await;
        assert_eq!(g.status.as_u16(), 201, "{}", g.text);
        let link = g.body["chats"][0]["invite_link"]
            .as_str()
            .unwrap()
            .to_string();
        app.sandbox_post(
            &format!("/sandbox/users/{dan}/join"),
            json!({"invite_link": link}),
        )
        .await;
        wait_state(&app, &s, dan, "member").await;

        // Demoted: the chat is degraded and the expiry removes nobody.
        app.sandbox_post(
            &format!("/sandbox/groups/{}/bots/{}/rights", s.group, s.bot),
            json!({"rights": {"can_invite_users": true, "can_restrict_members": false}}),
        )
        .await;
        until("degraded", || async {
            let c = app
                .get(&format!("/v1/gated-chats/{}", s.gated), &s.key)
                .await;
            (c.body["status"] == "degraded").then_some(())
        })
        .await;
        app.clock().advance(Duration::from_secs(3_700));
        tokio::task::yield_now().await;
        let synced = app
            .post(
                &format!("/v1/gated-chats/{}/sync", s.gated),
                &s.key,
                json!({}),
            )
            .await;
        assert_eq!(synced.status.as_u16(), 200, "{}", synced.text);
        assert_eq!(membership(&app, &s, dan).await["state"], "member");
        assert!(in_group(&app, s.group, dan).await);

        // Promoted again: the sync catches up and removes him.
        app.sandbox_post(
            &format!("/sandbox/groups/{}/bots/{}/rights", s.group, s.bot),
            json!({"rights": {"can_invite_users": true, "can_restrict_members": true}}),
        )
        .await;
        until("active again", || async {
            let c = app
                .get(&format!("/v1/gated-chats/{}", s.gated), &s.key)
                .await;
            (c.body["status"] == "active").then_some(())
        })
        .await;
        wait_state(&app, &s, dan, "removed").await;
        assert!(!in_group(&app, s.group, dan).await);
        app.stop().await;
    }
}

/// Calls the sandbox's Bot API as the bot (what an operator's own tool would do).
async fn bot_call(app: &TestApp, token: &str, method: &str, params: Value) -> Value {
    let v: Value = app
        .http
        .post(format!("{}/bot{token}/{method}", app.sandbox.url()))
        .json(&params)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["ok"], true, "{method}: {v}");
    v["result"].clone()
}

#[tokio::test]
async fn cancelling_at_period_end_waits_for_the_end_and_cancelling_now_does_not() {
    for engine in engines() {
        let app = TestApp::spawn_with(
            engine,
            Options {
                manual_clock: true,
                ..Options::default()
            },
        )
        .await;
        let s = setup(&app, "cancel_gate_bot", json!({"grace_seconds": 3600})).await;
        let (eve, fay) = (user(&app, "Eve").await, user(&app, "Fay").await);
        let mut ids = Vec::new();
        for u in [eve, fay] {
            let g = app
                .post(
                    "/v1/entitlements",
                    &s.key,
                    json!({"telegram_user_id": u, "gated_chat_ids": [s.gated], "duration": "1d"}),
                )
                .await;
            assert_eq!(g.status.as_u16(), 201, "{}", g.text);
            let link = g.body["chats"][0]["invite_link"]
                .as_str()
                .unwrap()
                .to_string();
            app.sandbox_post(
                &format!("/sandbox/users/{u}/join"),
                json!({"invite_link": link}),
            )
            .await;
            wait_state(&app, &s, u, "member").await;
            ids.push(g.body["id"].as_str().unwrap().to_string());
        }
        // Eve cancels at period end, Fay now: Fay goes at once (no grace), Eve stays.
        let c = app
            .post(
                &format!("/v1/entitlements/{}/cancel", ids[0]),
                &s.key,
                json!({"at_period_end": true}),
            )
            .await;
        assert_eq!(c.status.as_u16(), 200, "{}", c.text);
        let c = app
            .post(
                &format!("/v1/entitlements/{}/cancel", ids[1]),
                &s.key,
                json!({}),
            )
            .await;
        assert_eq!(c.status.as_u16(), 200, "{}", c.text);
        assert_eq!(c.body["state"], "cancelled");
        wait_state(&app, &s, fay, "removed").await;
        assert!(!in_group(&app, s.group, fay).await);
        assert_eq!(membership(&app, &s, eve).await["state"], "member");
        // Past the end, inside the chat's hour of grace: still in. After it: removed.
        app.clock().advance(Duration::from_secs(86_400 + 60));
        let e = app
            .get(&format!("/v1/entitlements/{}", ids[0]), &s.key)
            .await;
        assert_eq!(e.body["chats"][0]["state"], "grace", "{}", e.text);
        app.post(
            &format!("/v1/gated-chats/{}/sync", s.gated),
            &s.key,
            json!({}),
        )
        .await;
        assert_eq!(membership(&app, &s, eve).await["state"], "member");
        app.clock().advance(Duration::from_secs(3_600));
        wait_state(&app, &s, eve, "removed").await;
        let e = app
            .get(&format!("/v1/entitlements/{}", ids[0]), &s.key)
            .await;
        assert_eq!(e.body["state"], "cancelled", "{}", e.text);
        // Removed, never left banned: Telegram's two updates (kicked, then left).
        let updates = app.get("/v1/updates?limit=200", &app.admin_key).await;
        let about_eve: Vec<&Value> = updates.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| u["type"] == "chat_member" && u.to_string().contains(&eve.to_string()))
            .collect();
        assert!(about_eve.len() >= 3, "join, kicked and left: {about_eve:?}");
        app.stop().await;
    }
}

#[tokio::test]
async fn alerts_go_to_the_gated_chat_or_to_each_member_with_access() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let s = setup(&app, "alerts_gate_bot", json!({})).await;
        let gus = user(&app, "Gus").await;
        app.sandbox_post(
            &format!("/sandbox/users/{gus}/messages"),
            json!({"bot": s.bot, "text": "/start"}),
        )
        .await;
        let g = app
            .post(
                "/v1/entitlements",
                &s.key,
                json!({"telegram_user_id": gus, "gated_chat_ids": [s.gated]}),
            )
            .await;
        assert_eq!(g.body["chats"][0]["access_until"], "forever", "{}", g.text);
        let link = g.body["chats"][0]["invite_link"]
            .as_str()
            .unwrap()
            .to_string();
        app.sandbox_post(
            &format!("/sandbox/users/{gus}/join"),
            json!({"invite_link": link}),
        )
        .await;
        wait_state(&app, &s, gus, "member").await;
        let a = app
            .post(
                "/v1/messages",
                &s.key,
                json!({"to": {"gated_chat_id": s.gated}, "text": "Signal: BUY"}),
            )
            .await;
        assert_eq!(a.status.as_u16(), 202, "{}", a.text);
        until("the alert in the group", || async {
            let t = app.transcript(s.group, None).await;
            t.iter().any(|m| m["text"] == "Signal: BUY").then_some(())
        })
        .await;
        let a = app
            .post(
                "/v1/messages",
                &s.key,
                json!({"to": {"gated_chat_id": s.gated, "members": true}, "text": "Just for you"}),
            )
            .await;
        assert_eq!(a.status.as_u16(), 202, "{}", a.text);
        wait_text(&app, gus, &s.bot, "Just for you").await;
        app.post(
            "/v1/messages",
            &s.key,
            json!({"to": {"gated_chat_id": "gc_nope"}, "text": "x"}),
        )
        .await
        .assert_problem(422, "validation-failed");
        app.post(
            "/v1/messages",
            &s.key,
            json!({"to": {"gated_chat_id": s.gated, "members": "yes"}, "text": "x"}),
        )
        .await
        .assert_problem(422, "validation-failed");
        app.stop().await;
    }
}

#[tokio::test]
async fn a_basic_group_is_gated_once_it_becomes_a_supergroup() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let (key, _, _, group) = administered(&app, "basic_gate_bot", "group").await;
        let a = app
            .post("/v1/gated-chats", &key, json!({"chat_id": group}))
            .await;
        assert_eq!(a.status.as_u16(), 201, "{}", a.text);
        assert_eq!(a.body["status"], "degraded");
        assert!(a.text.contains("basic group"), "{}", a.text);
        let gated = a.body["id"].as_str().unwrap().to_string();
        let to = app
            .sandbox_post(&format!("/sandbox/groups/{group}/migrate"), json!({}))
            .await["migrate_to_chat_id"]
            .as_i64()
            .unwrap();
        until("the gate follows the migration", || async {
            let c = app.get(&format!("/v1/gated-chats/{gated}"), &key).await;
            (c.body["chat_id"] == json!(to) && c.body["status"] == "active").then_some(())
        })
        .await;
        let hal = user(&app, "Hal").await;
        let g = app
            .post(
                "/v1/entitlements",
                &key,
                json!({"telegram_user_id": hal, "gated_chat_ids": [gated]}),
            )
            .await;
        let link = g.body["chats"][0]["invite_link"]
            .as_str()
            .expect("a link")
            .to_string();
        app.sandbox_post(
            &format!("/sandbox/users/{hal}/join"),
            json!({"invite_link": link}),
        )
        .await;
        let s = Setup {
            key: key.clone(),
            bot: "basic_gate_bot".into(),
            group: to,
            gated: gated.clone(),
        };
        wait_state(&app, &s, hal, "member").await;
        assert!(in_group(&app, to, hal).await);
        app.stop().await;
    }
}

#[tokio::test]
async fn a_star_subscription_join_and_its_lapse_are_mirrored() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let (key, bot_tg, token, channel) = administered(&app, "stars_gate_bot", "channel").await;
        let a = app
            .post(
                "/v1/gated-chats",
                &key,
                json!({"chat_id": channel, "join_mode": "stars_subscription"}),
            )
            .await;
        assert_eq!(a.status.as_u16(), 201, "{}", a.text);
        let gated = a.body["id"].as_str().unwrap().to_string();
        let link = bot_call(
            &app,
            &token,
            "createChatSubscriptionInviteLink",
            json!({"chat_id": channel, "subscription_period": 2592000, "subscription_price": 50}),
        )
        .await["invite_link"]
            .as_str()
            .unwrap()
            .to_string();
        // Telegram sends chat_member only once the bot asked for it (its first getUpdates
        // with allowed_updates): a join before that would go unseen.
        until("chat_member asked for", || async {
            let state = app.sandbox_bot_state(bot_tg).await;
            state["allowed_updates"]
                .as_array()
                .is_some_and(|a| a.iter().any(|t| t == "chat_member"))
                .then_some(())
        })
        .await;
        let ivy = user(&app, "Ivy").await;
        app.sandbox_post(
            &format!("/sandbox/users/{ivy}/join"),
            json!({"invite_link": link}),
        )
        .await;
        let s = Setup {
            key: key.clone(),
            bot: "stars_gate_bot".into(),
            group: channel,
            gated: gated.clone(),
        };
        let m = wait_state(&app, &s, ivy, "member").await;
        assert_eq!(m["unentitled"], false, "{m}");
        let ents = app
            .get(&format!("/v1/entitlements?gated_chat_id={gated}"), &key)
            .await;
        let e = &ents.body["data"][0];
        assert_eq!(e["source"], "telegram", "{}", ents.text);
        assert_eq!(e["telegram_user_id"], json!(ivy));
        assert!(e["ends_at"].is_string());
        app.sandbox_post(
            &format!("/sandbox/users/{ivy}/subscriptions/{channel}/lapse"),
            json!({}),
        )
        .await;
        wait_state(&app, &s, ivy, "left").await;
        app.stop().await;
    }
}

#[tokio::test]
async fn a_group_is_bound_through_the_bots_startgroup_link() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let tenant = app.tenant("bind_gate_bot").await;
        let (_, key) = app.tenant_key(&tenant).await;
        let (_, token) = app.sandbox_bot("bind_gate_bot").await;
        app.post("/v1/bots", &key, json!({"token": token})).await;
        let t = app
            .post(
                "/v1/gated-chat-tokens",
                &key,
                json!({"name": "Club", "reminders": ["1d"]}),
            )
            .await;
        assert_eq!(t.status.as_u16(), 201, "{}", t.text);
        let link = t.body["startgroup_link"].as_str().unwrap();
        assert!(
            link.contains("startgroup=") && link.contains("admin=invite_users+restrict_members"),
            "{link}"
        );
        let secret = t.body["token"].as_str().unwrap().to_string();
        let id = t.body["id"].as_str().unwrap().to_string();
        let owner = user(&app, "Owner").await;
        let group = app
            .sandbox_post(
                "/sandbox/groups",
                json!({"title": "Club", "type": "supergroup", "owner": owner}),
            )
            .await["id"]
            .as_i64()
            .unwrap();
        // Added as a plain member: refused, with the rights it lacks; the token still works.
        app.sandbox_post(
            &format!("/sandbox/groups/{group}/bots"),
            json!({"bot": "bind_gate_bot", "status": "member"}),
        )
        .await;
        let say = async |text: String| {
            let before = outgoing(app.transcript(group, None).await).len();
            app.sandbox_post(
                &format!("/sandbox/users/{owner}/messages"),
                json!({"chat_id": group, "text": text}),
            )
            .await;
            until("the bot's answer in the group", || async {
                let out = outgoing(app.transcript(group, None).await);
                (out.len() > before)
                    .then(|| out[before]["text"].as_str().unwrap_or_default().to_string())
            })
            .await
        };
        let start = format!("/start@bind_gate_bot {secret}");
        let refused = say(start.clone()).await;
        assert!(refused.contains("can_restrict_members"), "{refused}");
        let got = app.get(&format!("/v1/gated-chat-tokens/{id}"), &key).await;
        assert_eq!(got.body["status"], "pending", "{}", got.text);
        assert!(got.body["token"].is_null());
        app.sandbox_post(
            &format!("/sandbox/groups/{group}/bots"),
            json!({"bot": "bind_gate_bot", "status": "administrator",
                   "rights": {"can_invite_users": true, "can_restrict_members": true}}),
        )
        .await;
        let bound = say(start.clone()).await;
        assert!(
            bound.starts_with("Done! Club is now for members only"),
            "{bound}"
        );
        let got = app.get(&format!("/v1/gated-chat-tokens/{id}"), &key).await;
        assert_eq!(got.body["status"], "used");
        let gated = got.body["gated_chat_id"].as_str().unwrap();
        let chat = app.get(&format!("/v1/gated-chats/{gated}"), &key).await;
        assert_eq!(chat.body["chat_id"], json!(group));
        assert_eq!(chat.body["reminders"], json!(["1d"]));
        let again = say(start).await;
        assert!(again.contains("used already"), "{again}");
        app.post("/v1/gated-chat-tokens", &key, json!({"ttl_seconds": 5}))
            .await
            .assert_problem(422, "validation-failed");
        app.stop().await;
    }
}

#[tokio::test]
async fn an_app_users_grant_reaches_their_linked_chat() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let s = setup(&app, "linked_gate_bot", json!({})).await;
        let bots = app.get("/v1/bots", &s.key).await;
        let bot_id = bots.body["data"][0]["id"].as_str().unwrap().to_string();
        let t = app
            .post(
                "/v1/link-tokens",
                &s.key,
                json!({"bot_id": bot_id, "external_id": "me"}),
            )
            .await;
        let token = t.body["token"].as_str().unwrap();
        let me = user(&app, "Me").await;
        app.sandbox_post(
            &format!("/sandbox/users/{me}/messages"),
            json!({"bot": s.bot, "text": format!("/start {token}")}),
        )
        .await;
        wait_text(&app, me, &s.bot, "linked").await;
        let g = app
            .post(
                "/v1/entitlements",
                &s.key,
                json!({"external_id": "me", "gated_chat_ids": [s.gated], "duration": "30d"}),
            )
            .await;
        assert_eq!(g.status.as_u16(), 201, "{}", g.text);
        let chat = &g.body["chats"][0];
        let link = chat["invite_link"]
            .as_str()
            .expect("the link in the answer")
            .to_string();
        assert_eq!(chat["membership_state"], "invited", "{}", g.text);
        wait_text(&app, me, &s.bot, &link).await;
        app.sandbox_post(
            &format!("/sandbox/users/{me}/join"),
            json!({"invite_link": link}),
        )
        .await;
        let m = wait_state(&app, &s, me, "member").await;
        assert_eq!(m["external_id"], "me");
        let listed = app
            .get("/v1/memberships?external_id=me&state=member", &s.key)
            .await;
        assert_eq!(
            listed.body["data"].as_array().unwrap().len(),
            1,
            "{}",
            listed.text
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn bad_input_is_refused_and_changes_nothing() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let s = setup(&app, "bad_gate_bot", json!({})).await;
        let bad = [
            (
                "/v1/gated-chats",
                json!({"chat_id": s.group, "grace_seconds": -1}),
                422,
            ),
            (
                "/v1/gated-chats",
                json!({"chat_id": s.group, "reminders": ["soon"]}),
                422,
            ),
            (
                "/v1/gated-chats",
                json!({"chat_id": s.group, "access_url": "ftp://x"}),
                422,
            ),
            ("/v1/gated-chats", json!({"chat_id": 424242}), 422),
            (
                "/v1/gated-chats",
                json!({"chat_id": s.group, "join_mode": "stars_subscription"}),
                422,
            ),
            (
                "/v1/gated-chats",
                json!({"chat_id": s.group, "colour": "red"}),
                422,
            ),
            (
                "/v1/entitlements",
                json!({"gated_chat_ids": [s.gated]}),
                422,
            ),
            (
                "/v1/entitlements",
                json!({"telegram_user_id": 5, "gated_chat_ids": []}),
                422,
            ),
            (
                "/v1/entitlements",
                json!({"telegram_user_id": 5, "gated_chat_ids": ["gc_nope"]}),
                422,
            ),
            (
                "/v1/entitlements",
                json!({"telegram_user_id": -5, "gated_chat_ids": [s.gated]}),
                422,
            ),
            (
                "/v1/entitlements",
                json!({"telegram_user_id": 5, "gated_chat_ids": [s.gated], "duration": "3x"}),
                422,
            ),
            (
                "/v1/entitlements",
                json!({"telegram_user_id": 5, "gated_chat_ids": [s.gated],
                "duration": "3d", "ends_at": "2030-01-01T00:00:00Z"}),
                422,
            ),
            (
                "/v1/entitlements",
                json!({"telegram_user_id": 5, "gated_chat_ids": [s.gated],
                "starts_at": "2030-01-02T00:00:00Z", "ends_at": "2030-01-01T00:00:00Z"}),
                422,
            ),
            (
                "/v1/gated-chat-tokens",
                json!({"join_mode": "stars_subscription"}),
                422,
            ),
        ];
        for (path, body, status) in bad {
            let a = app.post(path, &s.key, body.clone()).await;
            assert_eq!(a.status.as_u16(), status, "{path} {body}: {}", a.text);
        }
        // Nothing was stored: still one gated chat, no entitlement.
        let chats = app.get("/v1/gated-chats", &s.key).await;
        assert_eq!(chats.body["data"].as_array().unwrap().len(), 1);
        let ents = app.get("/v1/entitlements", &s.key).await;
        assert!(ents.body["data"].as_array().unwrap().is_empty());
        // A change that changes nothing says so; unknown ids and filters are refused.
        app.patch(
            &format!("/v1/gated-chats/{}", s.gated),
            &s.key,
            json!({"name": "VIP"}),
        )
        .await
        .assert_problem(422, "validation-failed");
        app.get("/v1/memberships?state=inside", &s.key)
            .await
            .assert_problem(400, "validation-failed");
        app.get("/v1/gated-chats/gc_nope", &s.key)
            .await
            .assert_problem(404, "not-found");
        app.get("/v1/entitlements/ent_nope", &s.key)
            .await
            .assert_problem(404, "not-found");
        app.get("/v1/memberships/mem_nope", &s.key)
            .await
            .assert_problem(404, "not-found");
        app.post("/v1/entitlements/ent_nope/revoke", &s.key, json!({}))
            .await
            .assert_problem(404, "not-found");
        let g = app
            .post(
                "/v1/entitlements",
                &s.key,
                json!({"telegram_user_id": 5, "gated_chat_ids": [s.gated]}),
            )
            .await;
        let id = g.body["id"].as_str().unwrap();
        app.post(
            &format!("/v1/entitlements/{id}/cancel"),
            &s.key,
            json!({"at_period_end": true}),
        )
        .await
        .assert_problem(422, "validation-failed");
        app.post(&format!("/v1/entitlements/{id}/extend"), &s.key, json!({}))
            .await
            .assert_problem(422, "validation-failed");
        app.stop().await;
    }
}
