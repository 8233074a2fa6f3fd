//! Reporting an app can build on, end to end on both engines with the manual clock:
//! `GET /v1/messages` newest first (or oldest first) with its filters and cursor pages in
//! both orders, `GET /v1/stats` per tenant with filters and a time window, `broadcast_id`
//! in fan-out answers, and the body limit of `POST /v1/messages`.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::delivery::{linked, send, settled, setup, user};
use crate::helpers::{Options, TestApp, engines, until};

fn ms(text: &str) -> i64 {
    text.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

fn ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

async fn listed(app: &TestApp, key: &str, query: &str) -> Vec<String> {
    let a = app.get(&format!("/v1/messages?{query}"), key).await;
    assert_eq!(a.status, StatusCode::OK, "{query}: {}", a.text);
    ids(&a.body)
}

/// Every page of `query` with `limit=2`, following `next_cursor`.
async fn paged(app: &TestApp, key: &str, query: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut after = String::new();
    loop {
        let a = app
            .get(&format!("/v1/messages?{query}&limit=2{after}"), key)
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        out.extend(ids(&a.body));
        match a.body["next_cursor"].as_str() {
            Some(c) => after = format!("&after={c}"),
            None => return out,
        }
    }
}

fn manual() -> Options {
    Options {
        manual_clock: true,
        ..Options::default()
    }
}

#[tokio::test]
async fn messages_list_newest_first_with_filters_and_pages_in_both_orders() {
    for engine in engines() {
        let app = TestApp::spawn_with(engine, manual()).await;
        app.clock().set_millis(ms("2027-03-01T10:00:00Z"));
        let s = setup(&app, "listing").await;
        let c = app
            .post(
                "/v1/categories",
                &s.key,
                json!({"key": "alerts", "name": "Alerts", "default_enabled": true}),
            )
            .await;
        assert_eq!(c.status, StatusCode::CREATED, "{}", c.text);
        let (alice, alice_link) = linked(&app, &s, "Alice", "user-1").await;
        let (bob, _) = linked(&app, &s, "Bob", "user-2").await;
        // Both links' confirmations are outbox replies: delivered (so stored) before the
        // clock moves on.
        until("both confirmations", || async {
            let (a, b) = (
                app.bot_texts(alice, &s.username).await,
                app.bot_texts(bob, &s.username).await,
            );
            (!a.is_empty() && !b.is_empty()).then_some(())
        })
        .await;

        // From 11:00 on, one message a minute (the links' confirmations came before).
        let t1 = "2027-03-01T11:00:00Z";
        app.clock().set_millis(ms(t1));
        let a = send(
            &app,
            &s.key,
            json!({"to": {"link_id": alice_link}, "text": "one"}),
        )
        .await;
        app.clock().set_millis(ms("2027-03-01T11:01:00Z"));
        let b = send(
            &app,
            &s.key,
            json!({"bot_id": s.bot_id, "to": {"chat_id": bob}, "text": "two"}),
        )
        .await;
        app.clock().set_millis(ms("2027-03-01T11:02:00Z"));
        let c = send(
            &app,
            &s.key,
            json!({"to": {"category": "alerts"}, "text": "three"}),
        )
        .await;
        app.clock().set_millis(ms("2027-03-01T11:03:00Z"));
        let d = send(
            &app,
            &s.key,
            json!({"to": {"external_id": "user-1"}, "text": "four"}),
        )
        .await;

        // Fan-outs are broadcasts and, small, list their messages too.
        for fanout in [&c, &d] {
            let bc = fanout["broadcast_id"]
                .as_str()
                .unwrap_or_else(|| panic!("{fanout}"));
            let got = app.get(&format!("/v1/broadcasts/{bc}"), &s.key).await;
            assert_eq!(got.status, StatusCode::OK, "{}", got.text);
            assert_eq!(got.body["total"], fanout["count"]);
        }
        assert_eq!(c["count"], 2, "{c}");
        assert_eq!(c["messages"].as_array().unwrap().len(), 2, "{c}");
        assert_eq!(d["messages"].as_array().unwrap().len(), 1, "{d}");
        assert!(a["broadcast_id"].is_null() && b["broadcast_id"].is_null());

        let id = |v: &Value, i: usize| v["messages"][i]["id"].as_str().unwrap().to_string();
        let c_alice = c["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["link_id"] == alice_link.as_str())
            .map(|m| m["id"].as_str().unwrap().to_string())
            .unwrap();
        let mut oldest_first = vec![id(&a, 0), id(&b, 0), id(&c, 0), id(&c, 1), id(&d, 0)];
        oldest_first[2..4].sort();
        let newest_first: Vec<String> = oldest_first.iter().rev().cloned().collect();

        // Newest first by default, oldest first with order=asc; pages agree in both.
        let since = format!("since={t1}");
        assert_eq!(listed(&app, &s.key, &since).await, newest_first);
        assert_eq!(
            listed(&app, &s.key, &format!("{since}&order=desc")).await,
            newest_first
        );
        assert_eq!(
            listed(&app, &s.key, &format!("{since}&order=asc")).await,
            oldest_first
        );
        assert_eq!(paged(&app, &s.key, &since).await, newest_first);
        assert_eq!(
            paged(&app, &s.key, &format!("{since}&order=asc")).await,
            oldest_first
        );
        // Without a window, the newest five are these.
        assert_eq!(listed(&app, &s.key, "limit=5").await, newest_first);

        // By link and by app user: Alice's own message, her copy of the category, and the
        // one to user-1.
        let alices = vec![id(&d, 0), c_alice.clone(), id(&a, 0)];
        assert_eq!(
            listed(&app, &s.key, &format!("{since}&link_id={alice_link}")).await,
            alices
        );
        assert_eq!(
            listed(&app, &s.key, &format!("{since}&external_id=user-1")).await,
            alices
        );
        assert_eq!(
            listed(
                &app,
                &s.key,
                &format!("{since}&external_id=user-1&order=asc")
            )
            .await,
            alices.iter().rev().cloned().collect::<Vec<_>>()
        );
        assert!(listed(&app, &s.key, "external_id=nobody").await.is_empty());
        // By category (each message says so) and by request.
        let cat = app.get("/v1/messages?category=alerts", &s.key).await;
        assert_eq!(ids(&cat.body), newest_first[1..3].to_vec(), "{}", cat.text);
        assert!(
            cat.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .all(|m| m["category"] == "alerts")
        );
        assert_eq!(
            listed(
                &app,
                &s.key,
                &format!("request_id={}", c["request_id"].as_str().unwrap())
            )
            .await,
            newest_first[1..3].to_vec()
        );
        // The window: since inclusive, until exclusive.
        assert_eq!(
            listed(&app, &s.key, &format!("{since}&until=2027-03-01T11:01:00Z")).await,
            vec![id(&a, 0)]
        );
        assert_eq!(
            listed(
                &app,
                &s.key,
                "since=2027-03-01T11:01:00Z&until=2027-03-01T11:03:00Z&order=asc"
            )
            .await,
            oldest_first[1..4].to_vec()
        );
        // Filters combine.
        assert_eq!(
            listed(
                &app,
                &s.key,
                &format!("category=alerts&link_id={alice_link}")
            )
            .await,
            vec![c_alice]
        );

        // A bad order or window is refused, naming the field.
        for (query, field) in [
            ("order=sideways", "order"),
            ("until=yesterday", "until"),
            (
                "since=2027-03-01T11:00:00Z&until=2027-03-01T11:00:00Z",
                "until",
            ),
        ] {
            let r = app.get(&format!("/v1/messages?{query}"), &s.key).await;
            r.assert_problem(400, "validation-failed");
            assert!(r.text.contains(field), "{query}: {}", r.text);
        }
        app.stop().await;
    }
}

fn totals(stats: &Value) -> (i64, i64, i64) {
    let t = &stats["totals"];
    (
        t["sent"].as_i64().unwrap(),
        t["throttled"].as_i64().unwrap(),
        t["failed"].as_i64().unwrap(),
    )
}

async fn stats(app: &TestApp, key: &str, query: &str) -> Value {
    let a = app.get(&format!("/v1/stats?{query}"), key).await;
    assert_eq!(a.status, StatusCode::OK, "{query}: {}", a.text);
    a.body
}

#[tokio::test]
async fn stats_count_each_state_per_tenant_with_filters_and_a_window() {
    for engine in engines() {
        let app = TestApp::spawn_with(engine, manual()).await;
        app.clock().set_millis(ms("2027-03-01T10:00:00Z"));
        let a = setup(&app, "stats_a").await;
        let b = setup(&app, "stats_b").await;
        let alice = user(&app, "Alice", &a.username).await;
        let carol = user(&app, "Carol", &b.username).await;

        // In the first hour tenant A sends one message, two with one throttle key (the
        // second is throttled) and one to a chat Telegram does not know (failed); tenant B
        // sends one.
        let t1 = "2027-03-01T11:00:00Z";
        app.clock().set_millis(ms(t1));
        let to = |chat: i64, text: &str| json!({"to": {"chat_id": chat}, "text": text});
        let mut first_hour = Vec::new();
        for body in [
            to(alice, "plain"),
            json!({"to": {"chat_id": alice}, "text": "alert", "throttle_key": "disk"}),
            json!({"to": {"chat_id": alice}, "text": "alert again", "throttle_key": "disk"}),
            to(777_000_001, "nobody"),
        ] {
            first_hour.push(send(&app, &a.key, body).await);
        }
        let failed_request = first_hour[3]["request_id"].as_str().unwrap().to_string();
        let b_sent = send(&app, &b.key, to(carol, "hello carol")).await;
        app.clock().set_millis(ms("2027-03-01T12:30:00Z"));
        let later = send(&app, &a.key, to(alice, "later")).await;
        for (key, accepted, status) in [
            (&a.key, &first_hour[0], "sent"),
            (&a.key, &first_hour[1], "sent"),
            (&a.key, &first_hour[2], "throttled"),
            (&a.key, &first_hour[3], "failed"),
            (&b.key, &b_sent, "sent"),
            (&a.key, &later, "sent"),
        ] {
            settled(
                &app,
                key,
                accepted["messages"][0]["id"].as_str().unwrap(),
                status,
            )
            .await;
        }

        // The first hour of tenant A: its counts only, in total and per bot.
        let hour = format!("since={t1}&until=2027-03-01T12:00:00Z");
        let s = stats(&app, &a.key, &hour).await;
        assert_eq!(totals(&s), (2, 1, 1), "{s}");
        assert_eq!(s["tenant_id"], a.tenant.as_str());
        assert_eq!(s["since"], t1);
        assert_eq!(s["until"], "2027-03-01T12:00:00Z");
        for state in [
            "queued",
            "sending",
            "dead",
            "unknown",
            "paused",
            "cancelled",
        ] {
            assert_eq!(s["totals"][state], 0, "{state}: {s}");
        }
        assert_eq!(s["bots"].as_array().unwrap().len(), 1, "{s}");
        assert_eq!(s["bots"][0]["bot_id"], a.bot_id.as_str());
        assert_eq!(s["bots"][0]["sent"], 2);
        assert_eq!(s["bots"][0]["throttled"], 1);
        // All time and after the first hour.
        assert_eq!(totals(&stats(&app, &a.key, "").await), (3, 1, 1));
        assert_eq!(
            totals(&stats(&app, &a.key, "since=2027-03-01T12:00:00Z").await),
            (1, 0, 0)
        );
        // With filters: a chat, a request, a state.
        assert_eq!(
            totals(&stats(&app, &a.key, &format!("{hour}&chat_id={alice}")).await),
            (2, 1, 0)
        );
        assert_eq!(
            totals(&stats(&app, &a.key, &format!("request_id={failed_request}")).await),
            (0, 0, 1)
        );
        assert_eq!(
            totals(&stats(&app, &a.key, "status=throttled").await),
            (0, 1, 0)
        );
        // Tenant B's, by its key and by the admin's; every tenant's for the admin alone.
        assert_eq!(totals(&stats(&app, &b.key, &hour).await), (1, 0, 0));
        let admin_b = stats(
            &app,
            &app.admin_key,
            &format!("{hour}&tenant_id={}", b.tenant),
        )
        .await;
        assert_eq!(totals(&admin_b), (1, 0, 0));
        assert_eq!(admin_b["tenant_id"], b.tenant.as_str());
        let every = stats(&app, &app.admin_key, &hour).await;
        assert_eq!(totals(&every), (3, 1, 1), "{every}");
        assert!(every["tenant_id"].is_null());
        assert_eq!(every["bots"].as_array().unwrap().len(), 2);
        // A tenant key cannot count another tenant; a reversed window is refused.
        app.get(&format!("/v1/stats?tenant_id={}", b.tenant), &a.key)
            .await
            .assert_problem(404, "not-found");
        app.get(
            "/v1/stats?since=2027-03-01T12:00:00Z&until=2027-03-01T11:00:00Z",
            &a.key,
        )
        .await
        .assert_problem(400, "validation-failed");
        app.stop().await;
    }
}

#[tokio::test]
async fn the_send_body_limit_fits_the_longest_list_of_targets() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let s = setup(&app, "biglist").await;
        let limit = relaygram::delivery::request::send_body_limit(
            relaygram::config::DEFAULT_MAX_BODY_BYTES,
        );
        // The longest target, 10,000 times, fits with room to spare.
        let longest = format!("{{\"external_id\": \"{}\"}}, ", "x".repeat(200));
        assert!(
            longest.len() * relaygram::delivery::request::MAX_TARGETS
                + relaygram::config::DEFAULT_MAX_BODY_BYTES
                <= limit
        );
        // A body of exactly the limit, listing the documented maximum of targets (not
        // due for a day, so nothing is sent), is accepted; one target more is a 422.
        let body = |targets: usize, size: Option<usize>| {
            let to: Vec<String> = (0..targets)
                .map(|i| format!("{{\"chat_id\": {}}}", 500_000_000 + i))
                .collect();
            let head = format!(
                "{{\"bot_id\": \"{}\", \"text\": \"big\", \"send_at\": \"2099-01-01T00:00:00Z\", \"to\": [{}]",
                s.bot_id,
                to.join(", ")
            );
            let pad = size.map(|n| n - head.len() - 1).unwrap_or(0);
            format!("{head}{}}}", " ".repeat(pad)).into_bytes()
        };
        let max = body(relaygram::delivery::request::MAX_TARGETS, Some(limit));
        assert_eq!(max.len(), limit);
        let a = app
            .raw(
                Method::POST,
                "/v1/messages",
                Some(&s.key),
                "application/json",
                max,
            )
            .await;
        assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
        assert_eq!(a.body["count"], 10_000);
        assert!(a.body["broadcast_id"].is_string(), "{}", a.text);
        let over = body(relaygram::delivery::request::MAX_TARGETS + 1, None);
        let r = app
            .raw(
                Method::POST,
                "/v1/messages",
                Some(&s.key),
                "application/json",
                over,
            )
            .await;
        r.assert_problem(422, "validation-failed");
        assert_eq!(r.body["field"], "to", "{}", r.text);
        assert!(r.text.contains("more than 10000 targets"), "{}", r.text);
        // One byte over the limit: a 413 problem, and nothing stored.
        let too_big = body(10, Some(limit + 1));
        app.raw(
            Method::POST,
            "/v1/messages",
            Some(&s.key),
            "application/json",
            too_big,
        )
        .await
        .assert_problem(413, "payload-too-large");
        // Other routes keep the server's limit.
        let big_name = json!({"name": "x".repeat(relaygram::config::DEFAULT_MAX_BODY_BYTES)});
        app.post("/v1/tenants", &app.admin_key, big_name)
            .await
            .assert_problem(413, "payload-too-large");
        let all = app.get("/v1/stats", &s.key).await;
        assert_eq!(all.body["totals"]["queued"], 10_000, "{}", all.text);
        app.stop().await;
    }
}
