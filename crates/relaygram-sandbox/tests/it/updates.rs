//! getUpdates: offsets, long polling, allowed_updates, conflicts, injected updates.

use std::time::Duration;

use serde_json::json;

use crate::Harness;

#[tokio::test]
async fn updates_wait_for_get_updates_and_are_confirmed_by_offset() {
    let h = Harness::start().await;
    let (token, _) = h.bot("poll_bot").await;
    let user = h.user("Alice").await;
    let first = h.say(user, "poll_bot", "/start lk_abc").await;
    h.say(user, "poll_bot", "hello").await;
    let updates = h.ok(&token, "getUpdates", json!({})).await;
    let list = updates.as_array().unwrap();
    assert_eq!(list.len(), 2);
    let id0 = list[0]["update_id"].as_i64().unwrap();
    assert_eq!(id0, first["update_id"].as_i64().unwrap());
    assert_eq!(
        list[1]["update_id"].as_i64().unwrap(),
        id0 + 1,
        "ids increase by one"
    );
    let msg = &list[0]["message"];
    assert_eq!(msg["text"], "/start lk_abc");
    assert_eq!(
        msg["entities"][0],
        json!({"type": "bot_command", "offset": 0, "length": 6})
    );
    assert_eq!(msg["chat"]["type"], "private");
    assert_eq!(msg["from"]["first_name"], "Alice");
    // Without an offset nothing is confirmed.
    assert_eq!(
        h.ok(&token, "getUpdates", json!({"limit": 1}))
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let rest = h.ok(&token, "getUpdates", json!({"offset": id0 + 1})).await;
    assert_eq!(rest.as_array().unwrap().len(), 1);
    assert_eq!(
        h.ok(&token, "getUpdates", json!({"offset": id0 + 2})).await,
        json!([])
    );
    let info = h.ok(&token, "getWebhookInfo", json!({})).await;
    assert_eq!(info["pending_update_count"], json!(0));
}

#[tokio::test]
async fn a_long_poll_returns_as_soon_as_an_update_arrives() {
    let h = Harness::start().await;
    let (token, _) = h.bot("long_bot").await;
    let user = h.user("Alice").await;
    let poll = {
        let http = h.http.clone();
        let url = format!("{}/bot{token}/getUpdates", h.url);
        tokio::spawn(async move {
            http.post(url)
                .json(&json!({"timeout": 30}))
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        })
    };
    // Wait until the poll is parked in the sandbox, then send.
    crate::eventually("the long poll to start", || async {
        let calls = h.get("/sandbox/stats").await;
        (calls["bots"][0]["calls"].as_u64() == Some(1)).then_some(())
    })
    .await;
    h.say(user, "long_bot", "ping").await;
    let got = tokio::time::timeout(Duration::from_secs(10), poll)
        .await
        .expect("the poll returned before its timeout")
        .unwrap();
    assert_eq!(got["result"][0]["message"]["text"], "ping");
}

#[tokio::test]
async fn a_second_poller_ends_the_first_with_409() {
    let h = Harness::start().await;
    let (token, _) = h.bot("twin_bot").await;
    let first = {
        let http = h.http.clone();
        let url = format!("{}/bot{token}/getUpdates", h.url);
        tokio::spawn(async move {
            let r = http
                .post(url)
                .json(&json!({"timeout": 30}))
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap(),
            )
        })
    };
    crate::eventually("the first poll to start", || async {
        let s = h.get("/sandbox/stats").await;
        (s["bots"][0]["calls"].as_u64() == Some(1)).then_some(())
    })
    .await;
    assert_eq!(h.ok(&token, "getUpdates", json!({})).await, json!([]));
    let (status, body) = first.await.unwrap();
    assert_eq!(status, 409);
    assert_eq!(
        body["description"],
        "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
    );
}

#[tokio::test]
async fn allowed_updates_filter_what_is_queued() {
    let h = Harness::start().await;
    let (token, _) = h.bot("filter_bot").await;
    let user = h.user("Alice").await;
    h.ok(
        &token,
        "getUpdates",
        json!({"allowed_updates": ["callback_query"]}),
    )
    .await;
    h.say(user, "filter_bot", "ignored").await;
    assert_eq!(h.ok(&token, "getUpdates", json!({})).await, json!([]));
    h.ok(&token, "getUpdates", json!({"allowed_updates": []}))
        .await;
    h.say(user, "filter_bot", "kept").await;
    assert_eq!(
        h.ok(&token, "getUpdates", json!({})).await[0]["message"]["text"],
        "kept"
    );
}

#[tokio::test]
async fn raw_updates_are_queued_as_given_and_replays_keep_their_id() {
    let h = Harness::start().await;
    let (token, _) = h.bot("raw_bot").await;
    let update = json!({"update_id": 5000, "pre_checkout_query": {"id": "pc1", "from": {"id": 1, "is_bot": false, "first_name": "A"},
        "currency": "XTR", "total_amount": 50, "invoice_payload": "p"}, "some_future_field": 1});
    let r = h
        .control("/sandbox/bots/raw_bot/updates", update.clone())
        .await;
    assert_eq!(r["update_id"], json!(5000));
    h.control("/sandbox/bots/raw_bot/updates", update.clone())
        .await;
    let got = h.ok(&token, "getUpdates", json!({})).await;
    assert_eq!(
        got.as_array().unwrap().len(),
        2,
        "a replay is delivered again, as Telegram would"
    );
    assert_eq!(got[0], update);
    assert_eq!(got[1]["update_id"], json!(5000));
    let next = h
        .control(
            "/sandbox/bots/raw_bot/updates",
            json!({"message": {"message_id": 1, "date": 0, "chat": {"id": 1, "type": "private"}}}),
        )
        .await;
    let after = h
        .control("/sandbox/bots/raw_bot/updates", json!({"update_id": 9_000_000, "message": {"message_id": 2, "date": 0, "chat": {"id": 1, "type": "private"}}}))
        .await;
    let next_after = h
        .control(
            "/sandbox/bots/raw_bot/updates",
            json!({"message": {"message_id": 3, "date": 0, "chat": {"id": 1, "type": "private"}}}),
        )
        .await;
    assert!(next["update_id"].as_i64().unwrap() > 0);
    assert_eq!(after["update_id"], json!(9_000_000));
    assert_eq!(
        next_after["update_id"],
        json!(9_000_001),
        "new ids continue after the highest seen"
    );
    assert_eq!(
        h.post("/sandbox/bots/raw_bot/updates", json!({"update_id": 1}))
            .await
            .0,
        422
    );
}
