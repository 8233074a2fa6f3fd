//! Consent stops the queue, end to end on the manual clock: each way a link ends (`/stop`,
//! `DELETE /v1/links/{id}`, a 403 "blocked" answer, `my_chat_member` blocked, the bot
//! removed from a group) cancels what was waiting for it — held for quiet hours, due later,
//! fanned out — with one `message.cancelled` per request, and nothing of it reaches the
//! sandbox; a gone chat's `chat_id` sends are refused without a Telegram call; a user who
//! comes back gets only what is sent after.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Options, TestApp, engines, outgoing, until};

fn ms(text: &str) -> i64 {
    text.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

/// Noon UTC; the link's quiet hours are 11:00–13:00 UTC, so a non-urgent message is held.
const NOON: &str = "2027-01-15T12:00:00Z";
/// Later than every `send_at` and the quiet window's end.
const EVENING: &str = "2027-01-15T18:00:00Z";
const LATER: &str = "2027-01-15T14:00:00Z";

struct World {
    app: TestApp,
    key: String,
    bot_id: String,
    bot: String,
    alice: i64,
    bob: i64,
}

async fn world(engine: &'static str, bot: &str) -> World {
    let app = TestApp::spawn_with(
        engine,
        Options {
            manual_clock: true,
            ..Options::default()
        },
    )
    .await;
    app.clock().set_millis(ms(NOON));
    let tenant = app.tenant(bot).await;
    let (_, key) = app.tenant_key(&tenant).await;
    let (_, token) = app.sandbox_bot(bot).await;
    let a = app.post("/v1/bots", &key, json!({"token": token})).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let bot_id = a.body["id"].as_str().unwrap().to_string();
    let user = |name: &'static str| {
        let app = &app;
        async move {
            app.sandbox_post("/sandbox/users", json!({"first_name": name}))
                .await["id"]
                .as_i64()
                .unwrap()
        }
    };
    let (alice, bob) = (user("Alice").await, user("Bob").await);
    let w = World {
        app,
        key,
        bot_id,
        bot: bot.to_string(),
        alice,
        bob,
    };
    // Bob writes to the bot, so chat_id sends to him go (the probe that the sender ran).
    w.app
        .sandbox_post(
            &format!("/sandbox/users/{bob}/messages"),
            json!({"bot": w.bot, "text": "hi"}),
        )
        .await;
    w
}

impl World {
    /// Alice links her chat as `alice` (with `/start <token>`); returns the link id once
    /// the confirmation arrived.
    async fn link_alice(&self) -> String {
        let before = self.texts(self.alice).await.len();
        let t = self
            .app
            .post(
                "/v1/link-tokens",
                &self.key,
                json!({"bot_id": self.bot_id, "external_id": "alice"}),
            )
            .await;
        assert_eq!(t.status, StatusCode::CREATED, "{}", t.text);
        self.app
            .sandbox_post(
                &format!("/sandbox/users/{}/messages", self.alice),
                json!({"bot": self.bot, "text": format!("/start {}", t.body["token"].as_str().unwrap())}),
            )
            .await;
        until("the link's confirmation", || async {
            (self.texts(self.alice).await.len() > before).then_some(())
        })
        .await;
        let l = self
            .app
            .get("/v1/links?external_id=alice&active=true", &self.key)
            .await;
        l.body["data"][0]["id"].as_str().unwrap().to_string()
    }

    async fn texts(&self, chat: i64) -> Vec<String> {
        self.app.bot_texts(chat, &self.bot).await
    }

    async fn send(&self, body: Value) -> Value {
        let a = self.app.post("/v1/messages", &self.key, body).await;
        assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
        a.body
    }

    async fn message(&self, id: &str) -> Value {
        let a = self.app.get(&format!("/v1/messages/{id}"), &self.key).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        a.body
    }

    async fn status_of(&self, id: &str, status: &str) -> Value {
        until(&format!("message {id} to be {status}"), || async {
            let m = self.message(id).await;
            (m["status"] == status).then_some(m)
        })
        .await
    }

    /// Queues what must wait for Alice's chat: one held for quiet hours (through the link),
    /// one due later (through the link), a fan-out to her app user due later, and one to
    /// her chat by `chat_id` due later. Returns each request's id and message id.
    async fn queue_for_alice(&self, link: &str) -> Vec<(String, String)> {
        let p = self
            .app
            .patch(
                &format!("/v1/links/{link}"),
                &self.key,
                json!({"quiet_start": "11:00", "quiet_end": "13:00"}),
            )
            .await;
        assert_eq!(p.status, StatusCode::OK, "{}", p.text);
        let held = self
            .send(json!({"to": {"link_id": link}, "text": "held for quiet hours"}))
            .await;
        let held_id = held["messages"][0]["id"].as_str().unwrap().to_string();
        until("the quiet-hours hold", || async {
            self.message(&held_id).await["next_attempt_at"]
                .is_string()
                .then_some(())
        })
        .await;
        let later = self
            .send(json!({"to": {"link_id": link}, "text": "due later", "send_at": LATER}))
            .await;
        let fan = self
            .send(json!({"to": {"external_id": "alice"}, "text": "fanned out", "send_at": LATER}))
            .await;
        // A fan-out's answer lists no messages: find it among the chat's.
        let fan_id = self
            .app
            .get(
                &format!("/v1/messages?chat_id={}&limit=200", self.alice),
                &self.key,
            )
            .await
            .body["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["request_id"] == fan["request_id"])
            .map(|m| m["id"].as_str().unwrap().to_string())
            .expect("the fan-out reached Alice's link");
        let direct = self
            .send(json!({"bot_id": self.bot_id, "to": {"chat_id": self.alice}, "text": "by chat id", "send_at": LATER}))
            .await;
        let one = |b: &Value| b["messages"][0]["id"].as_str().unwrap().to_string();
        let mut out = vec![
            (held["request_id"].as_str().unwrap().to_string(), held_id),
            (
                later["request_id"].as_str().unwrap().to_string(),
                one(&later),
            ),
            (fan["request_id"].as_str().unwrap().to_string(), fan_id),
            (
                direct["request_id"].as_str().unwrap().to_string(),
                one(&direct),
            ),
        ];
        out.sort();
        out
    }

    /// Every message of `queued` ends `cancelled` with `reason`, and the app got one
    /// `message.cancelled` per request naming it.
    async fn assert_cancelled(&self, queued: &[(String, String)], reason: &str) {
        for (_, id) in queued {
            let m = self.status_of(id, "cancelled").await;
            assert_eq!(m["error_class"], reason, "{m}");
            assert_eq!(m["attempts"], 0, "never tried: {m}");
        }
        let events = until("the message.cancelled events", || async {
            let a = self
                .app
                .get("/v1/events?type=message.cancelled&limit=200", &self.key)
                .await;
            let data = a.body["data"].as_array()?.clone();
            (data.len() >= queued.len()).then_some(data)
        })
        .await;
        assert_eq!(events.len(), queued.len(), "one per request: {events:?}");
        let mut named: Vec<(String, String)> = events
            .iter()
            .map(|e| {
                let d = &e["data"];
                assert_eq!(d["reason"], reason, "{d}");
                assert_eq!(d["count"], 1, "{d}");
                (
                    d["request_id"].as_str().unwrap().to_string(),
                    d["message_ids"][0].as_str().unwrap().to_string(),
                )
            })
            .collect();
        named.sort();
        assert_eq!(named, queued);
    }

    /// Moves past every `send_at` and the quiet window, proves the sender ran (a message to
    /// Bob accepted afterwards is sent) and that none of the cancelled texts reached Alice.
    async fn assert_nothing_arrives(&self) {
        self.app.clock().set_millis(ms(EVENING));
        let probe = self
            .send(json!({"bot_id": self.bot_id, "to": {"chat_id": self.bob}, "text": "probe"}))
            .await;
        self.status_of(probe["messages"][0]["id"].as_str().unwrap(), "sent")
            .await;
        let texts = self.texts(self.alice).await;
        for t in [
            "held for quiet hours",
            "due later",
            "fanned out",
            "by chat id",
        ] {
            assert!(
                !texts.iter().any(|x| x == t),
                "{t:?} reached Alice: {texts:?}"
            );
        }
    }

    /// Sends to Alice's chat that the sandbox saw.
    async fn calls_to(&self, chat: i64) -> usize {
        let v: Value = self
            .app
            .http
            .get(format!(
                "{}/sandbox/calls?bot={}&method=sendMessage&limit=10000",
                self.app.sandbox.url(),
                self.bot
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["calls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| {
                let id = &c["params"]["chat_id"];
                id.as_i64() == Some(chat) || id.as_str() == Some(chat.to_string().as_str())
            })
            .count()
    }

    /// A `chat_id` send to a gone chat is refused, and Telegram is not called.
    async fn assert_chat_refused(&self, chat: i64, state: &str) {
        let calls = self.calls_to(chat).await;
        let a = self
            .app
            .post(
                "/v1/messages",
                &self.key,
                json!({"bot_id": self.bot_id, "to": {"chat_id": chat}, "text": "after the end"}),
            )
            .await;
        a.assert_problem(422, "no-recipients");
        assert_eq!(a.body["field"], "to");
        let skipped = &a.body["skipped"][0];
        assert_eq!(skipped["target"], json!({"chat_id": chat}), "{}", a.text);
        assert!(
            skipped["detail"].as_str().unwrap().contains(state),
            "{}",
            a.text
        );
        assert_eq!(self.calls_to(chat).await, calls, "no Telegram call");
    }

    /// Alice comes back (a new token) and gets what is sent now, nothing of before.
    async fn assert_comeback(&self, queued: &[(String, String)]) {
        let link = self.link_alice().await;
        let now = self
            .send(json!({"to": {"link_id": link}, "text": "welcome back news"}))
            .await;
        self.status_of(now["messages"][0]["id"].as_str().unwrap(), "sent")
            .await;
        let texts = self.texts(self.alice).await;
        assert_eq!(texts.last().unwrap(), "welcome back news");
        for t in [
            "held for quiet hours",
            "due later",
            "fanned out",
            "by chat id",
        ] {
            assert!(
                !texts.iter().any(|x| x == t),
                "{t:?} was revived: {texts:?}"
            );
        }
        for (_, id) in queued {
            assert_eq!(self.message(id).await["status"], "cancelled");
        }
    }

    /// Sends `/stop` and returns the question (asked before anything is held: a held
    /// message would keep the chat's later replies behind it until quiet hours end).
    async fn ask_stop(&self) -> Value {
        let before = outgoing(self.app.transcript(self.alice, Some(&self.bot)).await).len();
        self.app
            .sandbox_post(
                &format!("/sandbox/users/{}/messages", self.alice),
                json!({"bot": self.bot, "text": "/stop"}),
            )
            .await;
        until("the /stop question", || async {
            outgoing(self.app.transcript(self.alice, Some(&self.bot)).await)
                .get(before)
                .cloned()
        })
        .await
    }

    /// Confirms the `/stop` question.
    async fn confirm_stop(&self, ask: &Value) {
        self.app
            .sandbox_post(
                &format!("/sandbox/users/{}/callback", self.alice),
                json!({"bot": self.bot, "message_id": ask["message_id"], "data": "rg:stop:yes"}),
            )
            .await;
    }
}

#[tokio::test]
async fn stop_cancels_what_waited_and_a_schedule_after_it_does_not_reach_the_chat() {
    for engine in engines() {
        let w = world(engine, "consent_stop_bot").await;
        let link = w.link_alice().await;
        let schedule = w
            .app
            .post(
                "/v1/schedules",
                &w.key,
                json!({"name": "daily", "cron": "0 9 1 1 *", "timezone": "UTC",
                       "message": {"to": {"external_id": "alice"}, "text": "from the schedule"}}),
            )
            .await;
        assert_eq!(schedule.status, StatusCode::CREATED, "{}", schedule.text);
        let ask = w.ask_stop().await;
        let queued = w.queue_for_alice(&link).await;
        w.confirm_stop(&ask).await;
        w.assert_cancelled(&queued, "stopped_by_user").await;
        // The schedule resolves its targets when it fires: the stopped link is not one.
        let before = w
            .app
            .get(
                &format!("/v1/messages?chat_id={}&limit=200", w.alice),
                &w.key,
            )
            .await
            .body["data"]
            .as_array()
            .unwrap()
            .len();
        let run = w
            .app
            .post(
                &format!(
                    "/v1/schedules/{}/run",
                    schedule.body["id"].as_str().unwrap()
                ),
                &w.key,
                json!({}),
            )
            .await;
        assert!(run.status.is_success(), "{}", run.text);
        w.assert_nothing_arrives().await;
        let after = w
            .app
            .get(
                &format!("/v1/messages?chat_id={}&limit=200", w.alice),
                &w.key,
            )
            .await
            .body["data"]
            .as_array()
            .unwrap()
            .len();
        assert_eq!(
            after, before,
            "the schedule queued nothing for the stopped chat"
        );
        assert!(
            !w.texts(w.alice)
                .await
                .iter()
                .any(|t| t == "from the schedule")
        );
        w.assert_comeback(&queued).await;
        w.app.stop().await;
    }
}

#[tokio::test]
async fn deleting_the_link_cancels_what_waited_for_it() {
    for engine in engines() {
        let w = world(engine, "consent_delete_bot").await;
        let link = w.link_alice().await;
        let queued = w.queue_for_alice(&link).await;
        let d = w.app.delete(&format!("/v1/links/{link}"), &w.key).await;
        assert_eq!(d.status, StatusCode::NO_CONTENT, "{}", d.text);
        // At once: the answer came after the transaction that cancelled them.
        for (_, id) in &queued {
            assert_eq!(w.message(id).await["status"], "cancelled");
        }
        w.assert_cancelled(&queued, "link_deleted").await;
        w.assert_nothing_arrives().await;
        w.assert_comeback(&queued).await;
        w.app.stop().await;
    }
}

#[tokio::test]
async fn a_blocked_answer_cancels_the_rest_of_the_chat_and_refuses_chat_id_sends() {
    for engine in engines() {
        let w = world(engine, "consent_403_bot").await;
        let link = w.link_alice().await;
        let queued = w.queue_for_alice(&link).await;
        // Telegram answers the next send to Alice with 403 blocked.
        w.app
            .fault(json!({"kind": "blocked", "user_id": w.alice, "count": 1}))
            .await;
        let urgent = w
            .send(json!({"to": {"link_id": link}, "text": "urgent", "priority": "urgent"}))
            .await;
        let failed = w
            .status_of(urgent["messages"][0]["id"].as_str().unwrap(), "failed")
            .await;
        assert_eq!(failed["error_class"], "chat_gone", "{failed}");
        w.assert_cancelled(&queued, "chat_blocked").await;
        w.assert_chat_refused(w.alice, "blocked").await;
        w.assert_nothing_arrives().await;
        w.app.stop().await;
    }
}

#[tokio::test]
async fn blocking_the_bot_cancels_what_waited_and_unblocking_gets_only_what_follows() {
    for engine in engines() {
        let w = world(engine, "consent_block_bot").await;
        let link = w.link_alice().await;
        let queued = w.queue_for_alice(&link).await;
        w.app
            .sandbox_post(
                &format!("/sandbox/users/{}/block", w.alice),
                json!({"bot": w.bot}),
            )
            .await;
        w.assert_cancelled(&queued, "chat_blocked").await;
        w.assert_chat_refused(w.alice, "blocked").await;
        w.assert_nothing_arrives().await;
        w.app
            .sandbox_post(
                &format!("/sandbox/users/{}/unblock", w.alice),
                json!({"bot": w.bot}),
            )
            .await;
        until("the link to be active again", || async {
            let l = w.app.get(&format!("/v1/links/{link}"), &w.key).await;
            (l.body["active"] == true).then_some(())
        })
        .await;
        let now = w
            .send(
                json!({"bot_id": w.bot_id, "to": {"chat_id": w.alice}, "text": "after unblocking"}),
            )
            .await;
        w.status_of(now["messages"][0]["id"].as_str().unwrap(), "sent")
            .await;
        let texts = w.texts(w.alice).await;
        assert_eq!(texts.last().unwrap(), "after unblocking");
        for (_, id) in &queued {
            assert_eq!(w.message(id).await["status"], "cancelled");
        }
        w.app.stop().await;
    }
}

#[tokio::test]
async fn the_bot_removed_from_a_group_cancels_what_waited_for_it() {
    for engine in engines() {
        let w = world(engine, "consent_group_bot").await;
        let group = w
            .app
            .sandbox_post(
                "/sandbox/groups",
                json!({"title": "Ops", "type": "supergroup", "owner": w.alice}),
            )
            .await;
        let gid = group["id"].as_i64().unwrap();
        w.app
            .sandbox_post(
                &format!("/sandbox/groups/{gid}/bots"),
                json!({"bot": w.bot, "status": "administrator", "rights": {"can_invite_users": true}}),
            )
            .await;
        let t = w
            .app
            .post(
                "/v1/link-tokens",
                &w.key,
                json!({"bot_id": w.bot_id, "external_id": "ops"}),
            )
            .await;
        w.app
            .sandbox_post(
                &format!("/sandbox/users/{}/messages", w.alice),
                json!({"chat_id": gid, "text": format!("/start@{} {}", w.bot, t.body["token"].as_str().unwrap())}),
            )
            .await;
        let link = until("the group's link", || async {
            let l = w.app.get("/v1/links?external_id=ops", &w.key).await;
            l.body["data"][0]["id"].as_str().map(str::to_string)
        })
        .await;
        until("the group's confirmation", || async {
            (!outgoing(w.app.transcript(gid, None).await).is_empty()).then_some(())
        })
        .await;
        let mut queued = Vec::new();
        for body in [
            json!({"to": {"link_id": link}, "text": "to the group's link", "send_at": LATER}),
            json!({"bot_id": w.bot_id, "to": {"chat_id": gid}, "text": "to the group", "send_at": LATER}),
        ] {
            let a = w.send(body).await;
            queued.push((
                a["request_id"].as_str().unwrap().to_string(),
                a["messages"][0]["id"].as_str().unwrap().to_string(),
            ));
        }
        queued.sort();
        w.app
            .sandbox_post(
                &format!("/sandbox/groups/{gid}/bots"),
                json!({"bot": w.bot, "status": "kicked"}),
            )
            .await;
        w.assert_cancelled(&queued, "bot_removed").await;
        w.assert_chat_refused(gid, "kicked").await;
        w.app.clock().set_millis(ms(EVENING));
        let probe = w
            .send(json!({"bot_id": w.bot_id, "to": {"chat_id": w.bob}, "text": "probe"}))
            .await;
        w.status_of(probe["messages"][0]["id"].as_str().unwrap(), "sent")
            .await;
        let group_texts: Vec<Value> = outgoing(w.app.transcript(gid, None).await);
        assert!(
            !group_texts
                .iter()
                .any(|m| m["text"] == "to the group" || m["text"] == "to the group's link"),
            "{group_texts:?}"
        );
        w.app.stop().await;
    }
}
