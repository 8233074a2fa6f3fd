//! Local-time delivery, end to end with the manual clock: three linked users (Asia/Tokyo,
//! America/New_York, and one without a zone) get a daily `0 9 * * *` schedule read in each
//! recipient's zone at their own 9 AM, once, across New York's fall-back night; and a
//! one-off `send_at_local` message waits for each recipient's wall-clock time (or goes at
//! once where it has passed), with bad input refused before anything is queued.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Options, TestApp, engines, until};

fn ms(text: &str) -> i64 {
    text.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

/// Texts the bot sent to a chat.
async fn texts(app: &TestApp, chat: i64) -> Vec<String> {
    app.bot_texts(chat, "local_bot").await
}

async fn count(app: &TestApp, chat: i64, text: &str) -> usize {
    texts(app, chat).await.iter().filter(|t| *t == text).count()
}

async fn message(app: &TestApp, key: &str, id: &str) -> Value {
    let a = app.get(&format!("/v1/messages/{id}"), key).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    a.body
}

async fn all_messages(app: &TestApp, key: &str) -> usize {
    let a = app.get("/v1/messages?limit=200", key).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    a.body["data"].as_array().unwrap().len()
}

/// Waits until the sender has looked at a message and holds it until `at`.
async fn held_until(app: &TestApp, key: &str, id: &str, at: &str) -> Value {
    until(&format!("message {id} held until {at}"), || async {
        let m = message(app, key, id).await;
        (m["status"] == "queued" && m["send_at"] == at).then_some(m)
    })
    .await
}

async fn sent(app: &TestApp, key: &str, id: &str) -> Value {
    until(&format!("message {id} to be sent"), || async {
        let m = message(app, key, id).await;
        (m["status"] == "sent").then_some(m)
    })
    .await
}

/// A recipient: a sandbox user linked to the tenant's bot.
struct User {
    chat: i64,
    link: String,
}

struct Setup {
    key: String,
    bot_id: String,
    tokyo: User,
    new_york: User,
    nowhere: User,
}

/// Links a new sandbox user as `external_id`, with `timezone` on the link when given, and
/// waits for the link's confirmation (an outbox reply) to arrive.
async fn linked(
    app: &TestApp,
    key: &str,
    bot_id: &str,
    external_id: &str,
    timezone: Option<&str>,
) -> User {
    let t = app
        .post(
            "/v1/link-tokens",
            key,
            json!({"bot_id": bot_id, "external_id": external_id}),
        )
        .await;
    assert_eq!(t.status, StatusCode::CREATED, "{}", t.text);
    let chat = app
        .sandbox_post("/sandbox/users", json!({"first_name": external_id}))
        .await["id"]
        .as_i64()
        .unwrap();
    app.sandbox_post(&format!("/sandbox/users/{chat}/messages"),
        json!({"bot": "local_bot", "text": format!("/start {}", t.body["token"].as_str().unwrap())}),
    )
    .await;
    let link = until("the link", || async {
        let l = app
            .get(&format!("/v1/links?external_id={external_id}"), key)
            .await;
        l.body["data"][0]["id"].as_str().map(str::to_string)
    })
    .await;
    if let Some(zone) = timezone {
        let p = app
            .patch(&format!("/v1/links/{link}"), key, json!({"timezone": zone}))
            .await;
        assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    }
    until("the link's confirmation", || async {
        (!texts(app, chat).await.is_empty()).then_some(())
    })
    .await;
    User { chat, link }
}

async fn setup(app: &TestApp) -> Setup {
    let tenant = app.tenant("local").await;
    let (_, key) = app.tenant_key(&tenant).await;
    let (_, token) = app.sandbox_bot("local_bot").await;
    let bot = app.post("/v1/bots", &key, json!({"token": token})).await;
    assert_eq!(bot.status, StatusCode::CREATED, "{}", bot.text);
    let bot_id = bot.body["id"].as_str().unwrap().to_string();
    let tokyo = linked(app, &key, &bot_id, "tokyo", Some("Asia/Tokyo")).await;
    let new_york = linked(app, &key, &bot_id, "new-york", Some("America/New_York")).await;
    let nowhere = linked(app, &key, &bot_id, "nowhere", None).await;
    Setup {
        key,
        bot_id,
        tokyo,
        new_york,
        nowhere,
    }
}

async fn manual(engine: &'static str) -> TestApp {
    TestApp::spawn_with(
        engine,
        Options {
            manual_clock: true,
            ..Options::default()
        },
    )
    .await
}

#[tokio::test]
async fn a_daily_schedule_reaches_each_recipient_at_its_own_nine_once_across_dst() {
    for engine in engines() {
        let app = manual(engine).await;
        app.clock().set_millis(ms("2027-11-05T12:00:00Z"));
        let s = setup(&app).await;
        let to = json!([
            {"link_id": s.tokyo.link},
            {"link_id": s.new_york.link},
            {"link_id": s.nowhere.link},
        ]);

        // Bad input first: 422 naming the field, nothing stored.
        let base = json!({"name": "nine", "cron": "0 9 * * *", "timezone": "Europe/Paris",
                          "recipient_timezone": true, "message": {"to": to, "text": "x"}});
        for (change, field) in [
            (json!({"cron": null, "every": "1d"}), "recipient_timezone"),
            (
                json!({"message": {"to": to, "text": "x", "send_at": "2027-11-06T00:00:00Z"}}),
                "message.send_at",
            ),
            (
                json!({"message": {"to": to, "text": "x", "send_at_local": "2027-11-06T09:00"}}),
                "message.send_at_local",
            ),
            (
                json!({"message": {"to": to, "text": "x", "digest": {"key": "d", "window": "1h"}}}),
                "message.digest",
            ),
            (json!({"recipient_timezone": "yes"}), ""),
        ] {
            let mut body = base.clone();
            for (k, v) in change.as_object().unwrap() {
                if v.is_null() {
                    body.as_object_mut().unwrap().remove(k);
                } else {
                    body[k] = v.clone();
                }
            }
            let a = app.post("/v1/schedules", &s.key, body.clone()).await;
            if field.is_empty() {
                assert!(a.status.is_client_error(), "{body}: {}", a.text);
            } else {
                a.assert_problem(422, "validation-failed");
                assert_eq!(a.body["field"], field, "{engine} {body}: {}", a.text);
            }
        }
        let list = app.get("/v1/schedules", &s.key).await;
        assert_eq!(list.body["data"], json!([]), "{engine}");

        let created = app
            .post(
                "/v1/schedules",
                &s.key,
                json!({"name": "good morning", "cron": "0 9 * * *", "timezone": "Europe/Paris",
                       "recipient_timezone": true,
                       "message": {"to": to, "text": "good morning"}}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let id = created.body["id"].as_str().unwrap().to_string();
        assert_eq!(created.body["recipient_timezone"], true);
        // Runs are made when 09:00 first happens anywhere (UTC+14): 19:00 UTC the day before.
        assert_eq!(
            created.body["next_fire_times"].as_array().unwrap()[..2],
            [json!("2027-11-05T19:00:00Z"), json!("2027-11-06T19:00:00Z")]
        );
        assert_eq!(
            created.body["next_local_times"].as_array().unwrap()[..2],
            [json!("2027-11-06T09:00:00"), json!("2027-11-07T09:00:00")]
        );
        // PATCH keeps the rules: no `every` with it.
        let a = app
            .patch(
                &format!("/v1/schedules/{id}"),
                &s.key,
                json!({"every": "1d"}),
            )
            .await;
        a.assert_problem(422, "validation-failed");
        assert_eq!(a.body["field"], "recipient_timezone");

        // Each day: Tokyo at 00:00Z (09:00 JST), the user without a zone at the schedule's
        // zone's 09:00 (08:00Z, CET), New York at 09:00 EDT (13:00Z) on the 6th and at
        // 09:00 EST (14:00Z) on the 7th, after the clocks went back.
        let days = [
            (
                "2027-11-05T19:00:00Z",
                "2027-11-06T09:00:00",
                [
                    ("2027-11-06T00:00:00Z", &s.tokyo),
                    ("2027-11-06T08:00:00Z", &s.nowhere),
                    ("2027-11-06T13:00:00Z", &s.new_york),
                ],
            ),
            (
                "2027-11-06T19:00:00Z",
                "2027-11-07T09:00:00",
                [
                    ("2027-11-07T00:00:00Z", &s.tokyo),
                    ("2027-11-07T08:00:00Z", &s.nowhere),
                    ("2027-11-07T14:00:00Z", &s.new_york),
                ],
            ),
        ];
        for (day, (fire_at, local, recipients)) in days.iter().enumerate() {
            // Not a minute early: no run, nothing queued.
            app.clock().set_millis(ms(fire_at) - 60_000);
            let runs = app
                .get(&format!("/v1/schedules/{id}/runs"), &s.key)
                .await
                .body["data"]
                .as_array()
                .unwrap()
                .len();
            assert_eq!(runs, day, "{engine}");
            app.clock().set_millis(ms(fire_at));
            let run = until("the day's run", || async {
                let r = app
                    .get(&format!("/v1/schedules/{id}/runs"), &s.key)
                    .await
                    .body["data"]
                    .clone();
                let r = r.as_array().unwrap();
                (r.len() == day + 1 && r[day]["state"] == "submitted").then(|| r[day].clone())
            })
            .await;
            assert_eq!(run["occurrence_at"], *fire_at, "{run}");
            assert_eq!(run["kind"], "scheduled");
            let ids: Vec<String> = run["message_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect();
            assert_eq!(ids.len(), 3, "{run}");
            // Each copy waits for its recipient's 09:00.
            let mut mine = Vec::new();
            for (at, user) in recipients {
                let mut found = None;
                for m in &ids {
                    if message(&app, &s.key, m).await["link_id"] == user.link.as_str() {
                        found = Some(m.clone());
                    }
                }
                let m = found.expect("a message per recipient");
                let held = held_until(&app, &s.key, &m, at).await;
                assert_eq!(held["send_at_local"], *local, "{held}");
                assert_eq!(held["default_timezone"], "Europe/Paris", "{held}");
                assert_eq!(held["attempts"], 0, "a hold is not an attempt: {held}");
                mine.push((*at, *user, m));
            }
            for (i, (at, user, m)) in mine.iter().enumerate() {
                // A second before its 09:00 nothing has come; at 09:00 it comes, and the
                // later recipients still wait.
                app.clock().set_millis(ms(at) - 1_000);
                assert_eq!(message(&app, &s.key, m).await["status"], "queued");
                assert_eq!(count(&app, user.chat, "good morning").await, day);
                app.clock().set_millis(ms(at));
                sent(&app, &s.key, m).await;
                assert_eq!(count(&app, user.chat, "good morning").await, day + 1);
                for (later_at, _, later) in &mine[i + 1..] {
                    let l = message(&app, &s.key, later).await;
                    assert_eq!(l["status"], "queued", "{l}");
                    assert_eq!(l["send_at"], *later_at, "{l}");
                }
            }
        }
        // Once each: two days, two messages per recipient.
        for user in [&s.tokyo, &s.new_york, &s.nowhere] {
            assert_eq!(count(&app, user.chat, "good morning").await, 2, "{engine}");
        }
        assert_eq!(
            app.get(&format!("/v1/schedules/{id}/runs"), &s.key)
                .await
                .body["data"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn a_send_at_local_message_waits_for_each_recipients_wall_clock_time() {
    for engine in engines() {
        let app = manual(engine).await;
        // 12:00 UTC: 21:00 in Tokyo, 13:00 in Paris, 07:00 in New York.
        app.clock().set_millis(ms("2027-11-10T12:00:00Z"));
        let s = setup(&app).await;
        let bob = app
            .sandbox_post("/sandbox/users", json!({"first_name": "Bob"}))
            .await["id"]
            .as_i64()
            .unwrap();
        app.sandbox_post(
            &format!("/sandbox/users/{bob}/messages"),
            json!({"bot": "local_bot", "text": "hello"}),
        )
        .await;
        let to = json!([
            {"link_id": s.tokyo.link},
            {"link_id": s.new_york.link},
            {"link_id": s.nowhere.link},
            {"chat_id": bob},
        ]);

        // Bad input: 422 naming the field, nothing queued.
        let before = all_messages(&app, &s.key).await;
        for (extra, field) in [
            (
                json!({"send_at_local": "2027-11-10 09:00"}),
                "send_at_local",
            ),
            (
                json!({"send_at_local": "2027-11-10T09:00Z"}),
                "send_at_local",
            ),
            (
                json!({"send_at_local": "2027-11-31T09:00"}),
                "send_at_local",
            ),
            (
                json!({"send_at_local": "2027-11-10T09:00", "default_timezone": "Mars/Olympus"}),
                "default_timezone",
            ),
            (
                json!({"default_timezone": "Europe/Paris"}),
                "default_timezone",
            ),
            (
                json!({"send_at_local": "2027-11-10T09:00", "send_at": "2027-11-10T09:00:00Z"}),
                "send_at_local",
            ),
        ] {
            let mut body = json!({"bot_id": s.bot_id, "to": to, "text": "local hello"});
            for (k, v) in extra.as_object().unwrap() {
                body[k] = v.clone();
            }
            let a = app.post("/v1/messages", &s.key, body.clone()).await;
            a.assert_problem(422, "validation-failed");
            assert_eq!(a.body["field"], field, "{engine} {body}: {}", a.text);
        }
        assert_eq!(all_messages(&app, &s.key).await, before, "{engine}");

        // 09:00 on the 10th: already past in Tokyo, in Paris (the default zone, for the
        // link without one and for the plain chat), still ahead in New York (14:00Z).
        let a = app
            .post(
                "/v1/messages",
                &s.key,
                json!({"bot_id": s.bot_id, "to": to, "text": "local hello",
                       "send_at_local": "2027-11-10T09:00", "default_timezone": "Europe/Paris"}),
            )
            .await;
        assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
        let ids: Vec<(i64, String)> = a.body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["chat_id"].as_i64().unwrap(),
                    m["id"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(ids.len(), 4, "{}", a.text);
        let id_of = |chat: i64| ids.iter().find(|(c, _)| *c == chat).unwrap().1.clone();
        for chat in [s.tokyo.chat, s.nowhere.chat, bob] {
            let m = sent(&app, &s.key, &id_of(chat)).await;
            assert_eq!(m["send_at_local"], "2027-11-10T09:00:00", "{m}");
            assert_eq!(m["default_timezone"], "Europe/Paris", "{m}");
            assert_eq!(count(&app, chat, "local hello").await, 1);
        }
        let ny = id_of(s.new_york.chat);
        held_until(&app, &s.key, &ny, "2027-11-10T14:00:00Z").await;
        assert_eq!(count(&app, s.new_york.chat, "local hello").await, 0);
        app.clock().set_millis(ms("2027-11-10T13:59:00Z"));
        assert_eq!(message(&app, &s.key, &ny).await["status"], "queued");
        app.clock().set_millis(ms("2027-11-10T14:00:00Z"));
        let m = sent(&app, &s.key, &ny).await;
        assert_eq!(m["attempts"], 1, "{m}");
        assert_eq!(count(&app, s.new_york.chat, "local hello").await, 1);

        // A message waiting for its local time does not hold up the chat's others.
        let later = app
            .post(
                "/v1/messages",
                &s.key,
                json!({"to": {"link_id": s.new_york.link}, "text": "tomorrow",
                       "send_at_local": "2027-11-11T09:00"}),
            )
            .await;
        assert_eq!(later.status, StatusCode::ACCEPTED, "{}", later.text);
        let later = later.body["messages"][0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        // Not looked at before 09:00 first happens anywhere (UTC+14); then held for New
        // York's 09:00 EST.
        let m = message(&app, &s.key, &later).await;
        assert_eq!(m["send_at"], "2027-11-10T19:00:00Z", "{m}");
        assert_eq!(m["default_timezone"], "UTC", "{m}");
        app.clock().set_millis(ms("2027-11-10T19:00:00Z"));
        held_until(&app, &s.key, &later, "2027-11-11T14:00:00Z").await;
        let now = app
            .post(
                "/v1/messages",
                &s.key,
                json!({"to": {"link_id": s.new_york.link}, "text": "right now"}),
            )
            .await;
        sent(
            &app,
            &s.key,
            now.body["messages"][0]["id"].as_str().unwrap(),
        )
        .await;
        assert_eq!(message(&app, &s.key, &later).await["status"], "queued");
        app.stop().await;
    }
}
