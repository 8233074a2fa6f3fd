//! Flood limits: per private chat, per group and per bot, with retry_after and stats.

use serde_json::json;

use crate::Harness;

#[tokio::test]
async fn flooding_a_private_chat_answers_429_with_retry_after() {
    let h = Harness::with_limits(1.0).await;
    let p = h.pair("flood_bot").await;
    let mut accepted = 0;
    let mut refusal = None;
    for i in 0..10 {
        let (status, body) = h
            .api(
                &p.token,
                "sendMessage",
                json!({"chat_id": p.user_id, "text": format!("m{i}")}),
            )
            .await;
        match status {
            200 => accepted += 1,
            429 => {
                refusal = Some(body);
                break;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    let body = refusal.expect("a 429 within ten quick sends");
    assert!(
        (1..=5).contains(&accepted),
        "a small burst is allowed, got {accepted}"
    );
    let retry_after = body["parameters"]["retry_after"].as_i64().unwrap();
    assert!(retry_after >= 1);
    assert_eq!(
        body["description"],
        format!("Too Many Requests: retry after {retry_after}")
    );
    let stats = h.get("/sandbox/stats").await;
    let bot = &stats["bots"][0];
    assert_eq!(bot["too_many_requests"], json!(1));
    assert_eq!(bot["sends_accepted"], json!(accepted));
    assert_eq!(bot["max_chat_per_second"], json!(accepted));
}

#[tokio::test]
async fn a_group_takes_twenty_messages_a_minute() {
    let h = Harness::with_limits(1.0).await;
    let (token, _) = h.bot("grp_bot").await;
    let owner = h.user("Olga").await;
    let g = h
        .control("/sandbox/groups", json!({"title": "G", "owner": owner}))
        .await;
    let gid = g["id"].as_i64().unwrap();
    h.control(
        &format!("/sandbox/groups/{gid}/bots"),
        json!({"bot": "grp_bot"}),
    )
    .await;
    for i in 0..20 {
        h.ok(
            &token,
            "sendMessage",
            json!({"chat_id": gid, "text": format!("m{i}")}),
        )
        .await;
    }
    let (code, description) = h
        .err(
            &token,
            "sendMessage",
            json!({"chat_id": gid, "text": "one more"}),
        )
        .await;
    assert_eq!(code, 429);
    assert!(description.starts_with("Too Many Requests: retry after "));
}

#[tokio::test]
async fn a_bot_sends_about_thirty_a_second_across_chats() {
    // A tenth of Telegram's speed: the burst of 30 is the same, but it refills at 3/s, so the
    // outcome does not depend on how fast this machine sends.
    let h = Harness::with_limits(0.1).await;
    let (token, _) = h.bot("wide_bot").await;
    let mut users = Vec::new();
    for i in 0..40 {
        let u = h.user(&format!("U{i}")).await;
        h.say(u, "wide_bot", "/start").await;
        users.push(u);
    }
    let mut accepted = 0;
    let mut refused = 0;
    for u in &users {
        let (status, _) = h
            .api(&token, "sendMessage", json!({"chat_id": u, "text": "news"}))
            .await;
        match status {
            200 => accepted += 1,
            429 => refused += 1,
            other => panic!("unexpected {other}"),
        }
    }
    // 40 sends in well under a second: the first ~30 pass, the rest are refused.
    assert!(
        refused >= 1,
        "the bot-wide limit refused nothing ({accepted} accepted)"
    );
    assert!(accepted >= 30, "only {accepted} accepted");
}

#[tokio::test]
async fn limits_off_accepts_everything() {
    let h = Harness::start().await;
    let p = h.pair("free_bot").await;
    for i in 0..50 {
        h.ok(
            &p.token,
            "sendMessage",
            json!({"chat_id": p.user_id, "text": format!("m{i}")}),
        )
        .await;
    }
    assert_eq!(
        h.get("/sandbox/stats").await["bots"][0]["too_many_requests"],
        json!(0)
    );
}
