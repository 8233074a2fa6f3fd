//! Flood limits: per private chat, per group and per bot, with retry_after and stats, in the
//! strict window model (the default) and the token-bucket model.

use futures_util::future::join_all;
use relaygram_sandbox::LimitModel;
use serde_json::{Value, json};

use crate::Harness;

/// Users who have started `bot`, so it may write to them.
async fn started_users(h: &Harness, bot: &str, n: usize) -> Vec<i64> {
    let mut users = Vec::new();
    for i in 0..n {
        let u = h.user(&format!("U{i}")).await;
        h.say(u, bot, "/start").await;
        users.push(u);
    }
    users
}

/// Sends one message to each chat at once; returns the answers.
async fn burst(h: &Harness, token: &str, chats: &[i64]) -> Vec<(u16, Value)> {
    join_all(chats.iter().enumerate().map(|(i, chat)| {
        h.api(
            token,
            "sendMessage",
            json!({"chat_id": chat, "text": format!("m{i}")}),
        )
    }))
    .await
}

/// Checks every refusal is Telegram's 429 and returns (accepted, refused).
fn tally(answers: &[(u16, Value)]) -> (u64, u64) {
    let mut counts = (0, 0);
    for (status, body) in answers {
        match status {
            200 => counts.0 += 1,
            429 => {
                counts.1 += 1;
                let retry_after = body["parameters"]["retry_after"].as_u64().unwrap();
                assert!(retry_after >= 1, "{body}");
                assert_eq!(
                    body["description"],
                    format!("Too Many Requests: retry after {retry_after}")
                );
                assert_eq!(body["error_code"], json!(429));
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    counts
}

#[tokio::test]
async fn window_a_burst_past_the_bot_limit_gets_429_counted_against_the_bot() {
    // A tenth of Telegram's counts: three sends a second per bot, one per private chat.
    let h = Harness::with_limits(0.1).await;
    let (token, _) = h.bot("burst_bot").await;
    let users = started_users(&h, "burst_bot", 10).await;
    let (accepted, refused) = tally(&burst(&h, &token, &users).await);
    assert!(accepted >= 3, "three fit in any second, got {accepted}");
    assert!(refused >= 1, "ten at once must not all pass");

    let stats = h.get("/sandbox/stats").await;
    assert_eq!(stats["limits"], json!("telegram"));
    assert_eq!(stats["limit_model"], json!("window"));
    assert_eq!(stats["time_scale"], json!(0.1));
    let bot = &stats["bots"][0];
    assert_eq!(bot["accepted"], json!(accepted));
    assert_eq!(bot["sends_accepted"], json!(accepted));
    assert_eq!(bot["too_many_requests"], json!(refused));
    assert_eq!(
        bot["too_many_requests_by_cause"],
        json!({"bot": refused, "chat": 0, "group": 0})
    );
    // Never more than the limit in any sliding second, however the burst was timed.
    let max = bot["max_bot_per_second"].as_u64().unwrap();
    assert!((1..=3).contains(&max), "max_bot_per_second {max}");
    assert_eq!(bot["max_private_chat_per_second"], json!(1));
    assert_eq!(bot["max_group_per_minute"], json!(0));
}

#[tokio::test]
async fn window_a_private_chat_takes_one_a_second_with_no_burst() {
    let h = Harness::with_limits(1.0).await;
    let p = h.pair("one_bot").await;
    let (accepted, refused) = tally(&burst(&h, &p.token, &[p.user_id; 5]).await);
    assert!(
        accepted >= 1 && refused >= 1,
        "{accepted} accepted, {refused} refused"
    );
    let bot = &h.get("/sandbox/stats").await["bots"][0];
    assert_eq!(
        bot["too_many_requests_by_cause"],
        json!({"bot": 0, "chat": refused, "group": 0})
    );
    assert_eq!(bot["max_private_chat_per_second"], json!(1));
    assert_eq!(bot["max_chat_per_second"], json!(1));
    // Only accepted sends reach the chat.
    let out = h
        .transcript(p.user_id, "one_bot")
        .await
        .into_iter()
        .filter(|m| m["direction"] == "out")
        .count();
    assert_eq!(out as u64, accepted);
}

#[tokio::test]
async fn reset_forgets_the_windows_and_the_counts_but_keeps_the_model() {
    let h = Harness::with_limits(1.0).await;
    let p = h.pair("again_bot").await;
    burst(&h, &p.token, &[p.user_id; 3]).await;
    assert!(h.get("/sandbox/stats").await["bots"][0]["too_many_requests"] != json!(0));
    let (status, _) = h.post("/sandbox/reset", json!({})).await;
    assert_eq!(status, 204);
    let stats = h.get("/sandbox/stats").await;
    assert_eq!(stats["bots"], json!([]));
    assert_eq!(stats["limit_model"], json!("window"));
    // Ids start over after a reset: the same bot and chat again, with nothing held against them.
    let q = h.pair("again_bot").await;
    assert_eq!((q.bot_id, q.user_id), (p.bot_id, p.user_id));
    h.ok(
        &q.token,
        "sendMessage",
        json!({"chat_id": q.user_id, "text": "fresh"}),
    )
    .await;
    let bot = &h.get("/sandbox/stats").await["bots"][0];
    assert_eq!(bot["accepted"], json!(1));
    assert_eq!(bot["too_many_requests"], json!(0));
    assert_eq!(
        bot["too_many_requests_by_cause"],
        json!({"bot": 0, "chat": 0, "group": 0})
    );
    assert_eq!(bot["max_bot_per_second"], json!(1));
}

#[tokio::test]
async fn bucket_model_still_lets_a_small_burst_through() {
    let h = Harness::with_model(LimitModel::Bucket, 1.0).await;
    let p = h.pair("burst_ok_bot").await;
    let mut accepted = 0;
    for i in 0..3 {
        let (status, _) = h
            .api(
                &p.token,
                "sendMessage",
                json!({"chat_id": p.user_id, "text": format!("m{i}")}),
            )
            .await;
        accepted += u64::from(status == 200);
    }
    assert_eq!(accepted, 3, "a full bucket takes a burst of three");
    let stats = h.get("/sandbox/stats").await;
    assert_eq!(stats["limit_model"], json!("bucket"));
    assert_eq!(stats["bots"][0]["accepted"], json!(3));
}

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
    let bot = &h.get("/sandbox/stats").await["bots"][0];
    assert_eq!(
        bot["too_many_requests_by_cause"],
        json!({"bot": 0, "chat": 0, "group": 1})
    );
    assert_eq!(bot["max_group_per_minute"], json!(20));
    assert_eq!(bot["max_private_chat_per_second"], json!(0));
}

#[tokio::test]
async fn a_bot_sends_about_thirty_a_second_across_chats() {
    // Buckets at a tenth of Telegram's speed: the burst of 30 is the same, but it refills at
    // 3/s, so the outcome does not depend on how fast this machine sends.
    let h = Harness::with_model(LimitModel::Bucket, 0.1).await;
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
    let bot = &h.get("/sandbox/stats").await["bots"][0];
    assert_eq!(
        bot["too_many_requests_by_cause"],
        json!({"bot": refused, "chat": 0, "group": 0})
    );
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
