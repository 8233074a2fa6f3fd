//! Quiet hours per link, end to end with the manual clock: a non-urgent message to a link
//! in its quiet window waits for the window's end (read in the link's zone); an urgent one
//! goes at once; messages to chats without quiet hours are not held.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Options, TestApp, engines, until};

async fn send(app: &TestApp, key: &str, body: Value) -> String {
    let a = app.post("/v1/messages", key, body).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    a.body["messages"][0]["id"].as_str().unwrap().to_string()
}

async fn message(app: &TestApp, key: &str, id: &str) -> Value {
    let a = app.get(&format!("/v1/messages/{id}"), key).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    a.body
}

async fn sent(app: &TestApp, key: &str, id: &str) -> Value {
    until(&format!("message {id} to be sent"), || async {
        let m = message(app, key, id).await;
        (m["status"] == "sent").then_some(m)
    })
    .await
}

fn ms(text: &str) -> i64 {
    text.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

#[tokio::test]
async fn quiet_hours_hold_messages_until_the_window_ends_and_urgent_ones_go_at_once() {
    for engine in engines() {
        let app = TestApp::spawn_with(
            engine,
            Options {
                manual_clock: true,
                ..Options::default()
            },
        )
        .await;
        // 23:30 in Berlin (CET) on a winter night; quiet hours there are 22:00–08:00.
        app.clock().set_millis(ms("2027-01-15T22:30:00Z"));
        let tenant = app.tenant("quiet").await;
        let (_, key) = app.tenant_key(&tenant).await;
        let (_, token) = app.sandbox_bot("quiet_bot").await;
        let bot = app.post("/v1/bots", &key, json!({"token": token})).await;
        assert_eq!(bot.status, StatusCode::CREATED, "{}", bot.text);
        let bot_id = bot.body["id"].as_str().unwrap().to_string();

        // Alice links her chat and sets quiet hours; Bob just writes to the bot.
        let t = app
            .post(
                "/v1/link-tokens",
                &key,
                json!({"bot_id": bot_id, "external_id": "alice"}),
            )
            .await;
        assert_eq!(t.status, StatusCode::CREATED, "{}", t.text);
        let alice = app
            .sandbox_post("/sandbox/users", json!({"first_name": "Alice"}))
            .await["id"]
            .as_i64()
            .unwrap();
        app.sandbox_post(&format!("/sandbox/users/{alice}/messages"),
            json!({"bot": "quiet_bot", "text": format!("/start {}", t.body["token"].as_str().unwrap())}),
        )
        .await;
        let link = until("the link", || async {
            let l = app.get("/v1/links?external_id=alice", &key).await;
            l.body["data"][0]["id"].as_str().map(str::to_string)
        })
        .await;
        let p = app
            .patch(
                &format!("/v1/links/{link}"),
                &key,
                json!({"timezone": "Europe/Berlin", "quiet_start": "22:00", "quiet_end": "08:00"}),
            )
            .await;
        assert_eq!(p.status, StatusCode::OK, "{}", p.text);
        let bob = app
            .sandbox_post("/sandbox/users", json!({"first_name": "Bob"}))
            .await["id"]
            .as_i64()
            .unwrap();
        app.sandbox_post(
            &format!("/sandbox/users/{bob}/messages"),
            json!({"bot": "quiet_bot", "text": "hello"}),
        )
        .await;
        // The link's confirmation is an outbox reply too: count from after it arrived.
        let welcome = until("the link's confirmation", || async {
            let n = app.bot_texts(alice, "quiet_bot").await.len();
            (n > 0).then_some(n)
        })
        .await;

        // A normal message to Alice's link waits; one to Bob, accepted after it, goes. The
        // sender takes lanes in acceptance order, so once Bob's is sent Alice's was decided.
        let held = send(
            &app,
            &key,
            json!({"to": {"link_id": link}, "text": "good night news"}),
        )
        .await;
        let to_bob = send(
            &app,
            &key,
            json!({"bot_id": bot_id, "to": {"chat_id": bob}, "text": "for bob"}),
        )
        .await;
        sent(&app, &key, &to_bob).await;
        // The pipelined sender may claim Alice's lane in a later batch than Bob's: wait
        // until it has looked at her message and held it.
        let m = until("the quiet-hours hold", || async {
            let m = message(&app, &key, &held).await;
            m["next_attempt_at"].is_string().then_some(m)
        })
        .await;
        assert_eq!(m["status"], "queued", "{m}");
        assert_eq!(m["attempts"], 0, "a hold is not an attempt: {m}");
        assert_eq!(
            m["next_attempt_at"], "2027-01-16T07:00:00Z",
            "08:00 CET: {m}"
        );
        assert_eq!(app.bot_texts(alice, "quiet_bot").await.len(), welcome);

        // An urgent message to the same link goes at once (and "urgent" is priority 100).
        let urgent = send(
            &app,
            &key,
            json!({"to": {"link_id": link}, "text": "server down", "priority": "urgent"}),
        )
        .await;
        let u = sent(&app, &key, &urgent).await;
        assert_eq!(u["priority"], 100);
        assert_eq!(
            app.bot_texts(alice, "quiet_bot").await[welcome..],
            ["server down".to_string()]
        );
        assert_eq!(message(&app, &key, &held).await["status"], "queued");

        // Not yet at 07:59 local; at 08:00 the held message goes.
        app.clock().set_millis(ms("2027-01-16T06:59:00Z"));
        let to_bob = send(
            &app,
            &key,
            json!({"bot_id": bot_id, "to": {"chat_id": bob}, "text": "still night"}),
        )
        .await;
        sent(&app, &key, &to_bob).await;
        assert_eq!(message(&app, &key, &held).await["status"], "queued");
        app.clock().set_millis(ms("2027-01-16T07:00:01Z"));
        let m = sent(&app, &key, &held).await;
        assert_eq!(m["attempts"], 1, "{m}");
        assert_eq!(
            app.bot_texts(alice, "quiet_bot").await[welcome..],
            ["server down".to_string(), "good night news".to_string()]
        );

        // By day nothing waits.
        let day = send(
            &app,
            &key,
            json!({"to": {"link_id": link}, "text": "lunch"}),
        )
        .await;
        sent(&app, &key, &day).await;

        // A priority that is neither a number nor "urgent" is refused.
        app.post(
            "/v1/messages",
            &key,
            json!({"to": {"link_id": link}, "text": "x", "priority": "soon"}),
        )
        .await
        .assert_problem(422, "validation-failed");
        app.stop().await;
    }
}

/// A tenant with one bot and Alice's link (Berlin, quiet 22:00–08:00) at 23:30 Berlin.
struct Night {
    app: TestApp,
    key: String,
    bot_id: String,
    link: String,
    alice: i64,
    welcome: usize,
}

async fn night(engine: &'static str) -> Night {
    let app = TestApp::spawn_with(
        engine,
        Options {
            manual_clock: true,
            ..Options::default()
        },
    )
    .await;
    app.clock().set_millis(ms("2027-01-15T22:30:00Z"));
    let tenant = app.tenant("replan").await;
    let (_, key) = app.tenant_key(&tenant).await;
    let (_, token) = app.sandbox_bot("replan_bot").await;
    let bot = app.post("/v1/bots", &key, json!({"token": token})).await;
    assert_eq!(bot.status, StatusCode::CREATED, "{}", bot.text);
    let bot_id = bot.body["id"].as_str().unwrap().to_string();
    let t = app
        .post(
            "/v1/link-tokens",
            &key,
            json!({"bot_id": bot_id, "external_id": "alice"}),
        )
        .await;
    assert_eq!(t.status, StatusCode::CREATED, "{}", t.text);
    let alice = app
        .sandbox_post("/sandbox/users", json!({"first_name": "Alice"}))
        .await["id"]
        .as_i64()
        .unwrap();
    app.sandbox_post(
        &format!("/sandbox/users/{alice}/messages"),
        json!({"bot": "replan_bot", "text": format!("/start {}", t.body["token"].as_str().unwrap())}),
    )
    .await;
    let link = until("the link", || async {
        let l = app.get("/v1/links?external_id=alice", &key).await;
        l.body["data"][0]["id"].as_str().map(str::to_string)
    })
    .await;
    let welcome = until("the link's confirmation", || async {
        let n = app.bot_texts(alice, "replan_bot").await.len();
        (n > 0).then_some(n)
    })
    .await;
    let p = app
        .patch(
            &format!("/v1/links/{link}"),
            &key,
            json!({"timezone": "Europe/Berlin", "quiet_start": "22:00", "quiet_end": "08:00"}),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    Night {
        app,
        key,
        bot_id,
        link,
        alice,
        welcome,
    }
}

impl Night {
    /// Sends `body` and waits until the sender has held it (`held` = `kind`).
    async fn held(&self, body: Value, kind: &str) -> Value {
        let id = send(&self.app, &self.key, body).await;
        until(&format!("message {id} to be held"), || async {
            let m = message(&self.app, &self.key, &id).await;
            (m["held"] == kind).then_some(m)
        })
        .await
    }

    async fn patch_link(&self, body: Value) {
        let p = self
            .app
            .patch(&format!("/v1/links/{}", self.link), &self.key, body)
            .await;
        assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    }

    /// The message as the store has it right after the PATCH (re-planned in its transaction).
    async fn now(&self, m: &Value) -> Value {
        message(&self.app, &self.key, m["id"].as_str().unwrap()).await
    }

    async fn texts(&self) -> Vec<String> {
        self.app.bot_texts(self.alice, "replan_bot").await[self.welcome..].to_vec()
    }
}

#[tokio::test]
async fn clearing_quiet_hours_releases_held_messages_at_once() {
    for engine in engines() {
        let n = night(engine).await;
        let m = n
            .held(json!({"to": {"link_id": n.link}, "text": "held"}), "quiet")
            .await;
        assert_eq!(m["next_attempt_at"], "2027-01-16T07:00:00Z", "{m}");
        // Cleared: due now, no longer held, and sent without moving the clock.
        n.patch_link(json!({"quiet_start": null, "quiet_end": null}))
            .await;
        let now = n.now(&m).await;
        assert!(now["held"].is_null(), "{now}");
        assert!(now["next_attempt_at"].is_null(), "due now: {now}");
        sent(&n.app, &n.key, m["id"].as_str().unwrap()).await;
        assert_eq!(n.texts().await, ["held".to_string()]);
        n.app.stop().await;
    }
}

#[tokio::test]
async fn a_paused_broadcasts_held_messages_are_re_planned_too() {
    for engine in engines() {
        let n = night(engine).await;
        // A fan-out is a broadcast; its message is held for the night, then paused.
        let m = n
            .held(
                json!({"to": {"external_id": "alice"}, "text": "held"}),
                "quiet",
            )
            .await;
        let bc = m["broadcast_id"].as_str().unwrap().to_string();
        let p = n
            .app
            .post(&format!("/v1/broadcasts/{bc}/pause"), &n.key, json!({}))
            .await;
        assert!(p.status.is_success(), "{}", p.text);
        assert_eq!(n.now(&m).await["status"], "paused");
        // Quiet hours cleared while paused: no longer held, so a resume sends it at once.
        n.patch_link(json!({"quiet_start": null, "quiet_end": null}))
            .await;
        let now = n.now(&m).await;
        assert!(now["held"].is_null(), "{now}");
        assert_eq!(now["status"], "paused");
        let r = n
            .app
            .post(&format!("/v1/broadcasts/{bc}/resume"), &n.key, json!({}))
            .await;
        assert!(r.status.is_success(), "{}", r.text);
        sent(&n.app, &n.key, m["id"].as_str().unwrap()).await;
        assert_eq!(n.texts().await, ["held".to_string()]);
        n.app.stop().await;
    }
}

#[tokio::test]
async fn changing_quiet_hours_re_plans_held_messages_for_the_new_window() {
    for engine in engines() {
        let n = night(engine).await;
        let m = n
            .held(json!({"to": {"link_id": n.link}, "text": "held"}), "quiet")
            .await;
        // A shorter night: the message now waits until 06:00 Berlin.
        n.patch_link(json!({"quiet_start": "23:00", "quiet_end": "06:00"}))
            .await;
        let now = n.now(&m).await;
        assert_eq!(now["next_attempt_at"], "2027-01-16T05:00:00Z", "{now}");
        assert_eq!(now["held"], "quiet");
        assert_eq!(now["status"], "queued");
        // A window that is not on now (00:00–06:00; it is 23:30): released at once.
        n.patch_link(json!({"quiet_start": "00:00", "quiet_end": "06:00"}))
            .await;
        assert!(n.now(&m).await["held"].is_null());
        sent(&n.app, &n.key, m["id"].as_str().unwrap()).await;
        assert_eq!(n.texts().await, ["held".to_string()]);
        n.app.stop().await;
    }
}

#[tokio::test]
async fn changing_the_time_zone_re_plans_quiet_hours_and_local_times() {
    for engine in engines() {
        let n = night(engine).await;
        let quiet = n
            .held(json!({"to": {"link_id": n.link}, "text": "quiet"}), "quiet")
            .await;
        // 09:00 on the 16th in Berlin is 08:00 UTC: held for its local time.
        let local = n
            .held(
                json!({"to": {"link_id": n.link}, "text": "local", "send_at_local": "2027-01-16T09:00"}),
                "local",
            )
            .await;
        assert_eq!(local["send_at"], "2027-01-16T08:00:00Z", "{local}");
        // Tokyo: it is 07:30 there, quiet until 08:00 Tokyo (23:00 UTC); 09:00 Tokyo is
        // 00:00 UTC.
        n.patch_link(json!({"timezone": "Asia/Tokyo"})).await;
        let q = n.now(&quiet).await;
        assert_eq!(q["next_attempt_at"], "2027-01-15T23:00:00Z", "{q}");
        assert_eq!(q["held"], "quiet");
        let l = n.now(&local).await;
        assert_eq!(l["send_at"], "2027-01-16T00:00:00Z", "{l}");
        assert_eq!(l["held"], "local");
        // New York: 17:30 there, no quiet hours now: the quiet-held one goes; 09:00 New
        // York is 14:00 UTC.
        n.patch_link(json!({"timezone": "America/New_York"})).await;
        sent(&n.app, &n.key, quiet["id"].as_str().unwrap()).await;
        let l = n.now(&local).await;
        assert_eq!(l["send_at"], "2027-01-16T14:00:00Z", "{l}");
        assert_eq!(l["status"], "queued");
        assert_eq!(n.texts().await, ["quiet".to_string()]);
        // Its time comes in New York (no quiet hours at 09:00 there): it goes.
        n.app.clock().set_millis(ms("2027-01-16T14:00:01Z"));
        sent(&n.app, &n.key, local["id"].as_str().unwrap()).await;
        assert_eq!(n.texts().await, ["quiet".to_string(), "local".to_string()]);
        n.app.stop().await;
    }
}

#[tokio::test]
async fn a_held_message_does_not_delay_a_later_one_to_the_same_chat() {
    for engine in engines() {
        let n = night(engine).await;
        let held = n
            .held(json!({"to": {"link_id": n.link}, "text": "held"}), "quiet")
            .await;
        // The same chat by chat_id has no quiet hours: it goes past the held message.
        let by_chat = send(
            &n.app,
            &n.key,
            json!({"bot_id": n.bot_id, "to": {"chat_id": n.alice}, "text": "by chat"}),
        )
        .await;
        sent(&n.app, &n.key, &by_chat).await;
        assert_eq!(n.texts().await, ["by chat".to_string()]);
        // Two more by chat_id keep their order among themselves.
        let first = send(
            &n.app,
            &n.key,
            json!({"bot_id": n.bot_id, "to": {"chat_id": n.alice}, "text": "first"}),
        )
        .await;
        let second = send(
            &n.app,
            &n.key,
            json!({"bot_id": n.bot_id, "to": {"chat_id": n.alice}, "text": "second"}),
        )
        .await;
        sent(&n.app, &n.key, &second).await;
        sent(&n.app, &n.key, &first).await;
        assert_eq!(
            n.texts().await,
            [
                "by chat".to_string(),
                "first".to_string(),
                "second".to_string()
            ]
        );
        let still = n.now(&held).await;
        assert_eq!(still["status"], "queued", "{still}");
        assert_eq!(still["held"], "quiet");
        // At the window's end the held one goes too.
        n.app.clock().set_millis(ms("2027-01-16T07:00:01Z"));
        sent(&n.app, &n.key, held["id"].as_str().unwrap()).await;
        assert_eq!(n.texts().await.last().unwrap(), "held");
        n.app.stop().await;
    }
}
