//! Sending, formatting, keyboards, edits, deletes, media, callbacks and transcripts.

use serde_json::json;

use crate::Harness;

#[tokio::test]
async fn html_becomes_entities_and_lands_in_the_transcript() {
    let h = Harness::start().await;
    let p = h.pair("fmt_bot").await;
    let sent = h
        .ok(
            &p.token,
            "sendMessage",
            json!({"chat_id": p.user_id, "text": "<b>Order</b> #42 &amp; <a href=\"https://example.com\">details</a> 🎉 <i>ok</i>",
                   "parse_mode": "HTML", "disable_notification": true, "message_thread_id": 7,
                   "link_preview_options": {"is_disabled": true}}),
        )
        .await;
    assert_eq!(sent["text"], "Order #42 & details 🎉 ok");
    assert_eq!(
        sent["entities"][0],
        json!({"type": "bold", "offset": 0, "length": 5})
    );
    assert_eq!(sent["entities"][1]["type"], "text_link");
    // Telegram normalises link URLs, adding the root path.
    assert_eq!(sent["entities"][1]["url"], "https://example.com/");
    // The emoji counts two UTF-16 units.
    assert_eq!(
        sent["entities"][2],
        json!({"type": "italic", "offset": 23, "length": 2})
    );
    assert_eq!(sent["chat"]["id"], json!(p.user_id));
    assert_eq!(sent["from"]["id"], json!(p.bot_id));
    assert_eq!(sent["message_thread_id"], json!(7));
    assert_eq!(sent["link_preview_options"]["is_disabled"], json!(true));

    let t = h.transcript(p.user_id, "fmt_bot").await;
    assert_eq!(t.len(), 2);
    assert_eq!(t[0]["direction"], "in");
    assert_eq!(t[0]["text"], "/start");
    assert_eq!(t[0]["entities"][0]["type"], "bot_command");
    assert_eq!(t[1]["direction"], "out");
    assert_eq!(t[1]["silent"], json!(true));
    assert_eq!(t[1]["entities"], sent["entities"]);
}

#[tokio::test]
async fn bad_messages_answer_in_telegrams_words_and_send_nothing() {
    let h = Harness::start().await;
    let p = h.pair("strict_bot").await;
    let chat = p.user_id;
    let cases = [
        (
            json!({"chat_id": chat}),
            "Bad Request: message text is empty",
        ),
        (
            json!({"chat_id": chat, "text": "  "}),
            "Bad Request: message text is empty",
        ),
        (json!({"text": "hi"}), "Bad Request: chat_id is empty"),
        (
            json!({"chat_id": 999, "text": "hi"}),
            "Bad Request: chat not found",
        ),
        (
            json!({"chat_id": "@nobody", "text": "hi"}),
            "Bad Request: chat not found",
        ),
        (
            json!({"chat_id": chat, "text": "x".repeat(4097)}),
            "Bad Request: message is too long",
        ),
        (
            json!({"chat_id": chat, "text": "<b>open", "parse_mode": "HTML"}),
            "Bad Request: can't parse entities: Can't find end tag corresponding to start tag \"b\"",
        ),
        (
            json!({"chat_id": chat, "text": "<blink>x</blink>", "parse_mode": "HTML"}),
            "Bad Request: can't parse entities: Unsupported start tag \"blink\" at byte offset 0",
        ),
        (
            json!({"chat_id": chat, "text": "hi", "parse_mode": "BBCode"}),
            "Bad Request: unsupported parse_mode",
        ),
        (
            json!({"chat_id": chat, "text": "hi", "reply_markup": {"inline_keyboard": [[{"text": "x", "callback_data": "d".repeat(65)}]]}}),
            "Bad Request: BUTTON_DATA_INVALID",
        ),
        (
            json!({"chat_id": chat, "text": "hi", "reply_markup": {"inline_keyboard": [[{"text": "x", "url": "not a url"}]]}}),
            "Bad Request: BUTTON_URL_INVALID",
        ),
        (
            json!({"chat_id": chat, "text": "hi", "reply_markup": {"inline_keyboard": [[{"text": "x"}]]}}),
            "Bad Request: can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard",
        ),
        (
            json!({"chat_id": chat, "text": "hi", "reply_markup": "{oops"}),
            "Bad Request: can't parse reply keyboard markup JSON object",
        ),
        (
            json!({"chat_id": chat, "text": "hi", "reply_parameters": {"message_id": 999}}),
            "Bad Request: message to be replied not found",
        ),
    ];
    for (params, wording) in cases {
        assert_eq!(
            h.err(&p.token, "sendMessage", params.clone()).await,
            (400, wording.to_string()),
            "for {params}"
        );
    }
    // 4096 characters fit, counted as Telegram counts them.
    h.ok(
        &p.token,
        "sendMessage",
        json!({"chat_id": chat, "text": "é".repeat(4096)}),
    )
    .await;
    assert_eq!(
        h.transcript(chat, "strict_bot").await.len(),
        2,
        "only /start and the valid one"
    );

    let stranger = h.user("Bob").await;
    assert_eq!(
        h.err(
            &p.token,
            "sendMessage",
            json!({"chat_id": stranger, "text": "hi"})
        )
        .await,
        (
            403,
            "Forbidden: bot can't initiate conversation with a user".into()
        )
    );
    assert_eq!(
        h.err(
            &p.token,
            "sendMessage",
            json!({"chat_id": p.bot_id, "text": "hi"})
        )
        .await,
        (403, "Forbidden: bot can't send messages to bots".into())
    );
}

#[tokio::test]
async fn edits_deletes_and_replies() {
    let h = Harness::start().await;
    let p = h.pair("edit_bot").await;
    let kb = json!({"inline_keyboard": [[{"text": "Yes", "callback_data": "y"}, {"text": "Docs", "url": "https://example.com/docs"}]]});
    let m = h
        .ok(
            &p.token,
            "sendMessage",
            json!({"chat_id": p.user_id, "text": "Pick", "reply_markup": kb}),
        )
        .await;
    let id = m["message_id"].as_i64().unwrap();
    let edited = h
        .ok(
            &p.token,
            "editMessageText",
            json!({"chat_id": p.user_id, "message_id": id, "text": "<i>Picked</i>", "parse_mode": "HTML"}),
        )
        .await;
    assert_eq!(edited["text"], "Picked");
    assert!(edited["edit_date"].is_i64());
    assert!(
        edited.get("reply_markup").is_none(),
        "no reply_markup given removes the keyboard"
    );
    assert_eq!(
        h.err(
            &p.token,
            "editMessageText",
            json!({"chat_id": p.user_id, "message_id": id, "text": "<i>Picked</i>", "parse_mode": "HTML"})
        )
        .await
        .1,
        "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message"
    );
    let with_kb = h
        .ok(
            &p.token,
            "editMessageReplyMarkup",
            json!({"chat_id": p.user_id, "message_id": id, "reply_markup": kb}),
        )
        .await;
    assert_eq!(with_kb["reply_markup"], kb);
    assert_eq!(
        h.err(
            &p.token,
            "editMessageText",
            json!({"chat_id": p.user_id, "message_id": 999, "text": "x"})
        )
        .await,
        (400, "Bad Request: message to edit not found".into())
    );
    assert_eq!(
        h.err(
            &p.token,
            "editMessageText",
            json!({"chat_id": p.user_id, "message_id": 1, "text": "x"})
        )
        .await,
        (400, "Bad Request: message can't be edited".into()),
        "message 1 is the user's /start"
    );
    let reply = h
        .ok(
            &p.token,
            "sendMessage",
            json!({"chat_id": p.user_id, "text": "re", "reply_parameters": {"message_id": id}}),
        )
        .await;
    assert_eq!(reply["reply_to_message"]["message_id"], json!(id));
    assert_eq!(
        h.ok(
            &p.token,
            "deleteMessage",
            json!({"chat_id": p.user_id, "message_id": id})
        )
        .await,
        json!(true)
    );
    assert_eq!(
        h.err(
            &p.token,
            "deleteMessage",
            json!({"chat_id": p.user_id, "message_id": id})
        )
        .await,
        (400, "Bad Request: message to delete not found".into())
    );
    let t = h.transcript(p.user_id, "edit_bot").await;
    assert_eq!(t[1]["deleted"], json!(true));
}

#[tokio::test]
async fn photos_and_documents_by_upload_url_and_file_id() {
    let h = Harness::start().await;
    let p = h.pair("media_bot").await;
    let photo = h
        .ok(&p.token, "sendPhoto", json!({"chat_id": p.user_id, "photo": "https://example.com/cat.jpg", "caption": "<b>cat</b>", "parse_mode": "HTML"}))
        .await;
    assert_eq!(photo["caption"], "cat");
    assert_eq!(photo["caption_entities"][0]["type"], "bold");
    let sizes = photo["photo"].as_array().unwrap();
    let file_id = sizes.last().unwrap()["file_id"]
        .as_str()
        .unwrap()
        .to_string();
    let again = h
        .ok(
            &p.token,
            "sendPhoto",
            json!({"chat_id": p.user_id, "photo": file_id}),
        )
        .await;
    assert_eq!(
        again["photo"].as_array().unwrap().last().unwrap()["file_id"],
        json!(file_id)
    );
    assert_eq!(
        h.err(
            &p.token,
            "sendPhoto",
            json!({"chat_id": p.user_id, "photo": "made-up"})
        )
        .await,
        (
            400,
            "Bad Request: wrong file identifier/HTTP URL specified".into()
        )
    );
    assert_eq!(
        h.err(
            &p.token,
            "sendDocument",
            json!({"chat_id": p.user_id, "document": file_id})
        )
        .await
        .0,
        400,
        "a photo's file_id is not a document"
    );
    assert_eq!(
        h.err(&p.token, "sendPhoto", json!({"chat_id": p.user_id, "photo": "https://example.com/a.jpg", "caption": "c".repeat(1025)})).await,
        (400, "Bad Request: message caption is too long".into())
    );
    assert_eq!(
        h.err(&p.token, "sendDocument", json!({"chat_id": p.user_id}))
            .await,
        (
            400,
            "Bad Request: there is no document in the request".into()
        )
    );
    let doc = h
        .ok(
            &p.token,
            "sendDocument",
            json!({"chat_id": p.user_id, "document": "https://example.com/report.pdf"}),
        )
        .await;
    assert_eq!(doc["document"]["file_name"], "report.pdf");
}

#[tokio::test]
async fn pressing_a_button_sends_a_callback_query_the_bot_answers_once() {
    let h = Harness::start().await;
    let p = h.pair("cb_bot").await;
    let m = h
        .ok(
            &p.token,
            "sendMessage",
            json!({"chat_id": p.user_id, "text": "Pick",
            "reply_markup": {"inline_keyboard": [[{"text": "Yes", "callback_data": "pick:yes"}]]}}),
        )
        .await;
    let id = m["message_id"].as_i64().unwrap();
    let (status, _) = h
        .post(
            &format!("/sandbox/users/{}/callback", p.user_id),
            json!({"bot": "cb_bot", "message_id": id, "data": "nope"}),
        )
        .await;
    assert_eq!(status, 404, "only buttons that exist can be pressed");
    let press = h
        .control(
            &format!("/sandbox/users/{}/callback", p.user_id),
            json!({"bot": "cb_bot", "message_id": id, "data": "pick:yes"}),
        )
        .await;
    let cq_id = press["callback_query_id"].as_str().unwrap().to_string();
    let updates = h.ok(&p.token, "getUpdates", json!({})).await;
    let cq = &updates[0]["callback_query"];
    assert_eq!(cq["id"], json!(cq_id));
    assert_eq!(cq["data"], "pick:yes");
    assert_eq!(cq["from"]["id"], json!(p.user_id));
    assert_eq!(cq["message"]["message_id"], json!(id));
    assert_eq!(
        h.ok(
            &p.token,
            "answerCallbackQuery",
            json!({"callback_query_id": cq_id, "text": "Done"})
        )
        .await,
        json!(true)
    );
    assert_eq!(
        h.err(
            &p.token,
            "answerCallbackQuery",
            json!({"callback_query_id": cq_id})
        )
        .await
        .1,
        "Bad Request: query is too old and response timeout expired or query ID is invalid"
    );
    let seen = h.get(&format!("/sandbox/callbacks/{cq_id}")).await;
    assert_eq!(seen["answer"]["text"], "Done");
}

#[tokio::test]
async fn blocking_the_bot_sends_my_chat_member_and_forbids_sends() {
    let h = Harness::start().await;
    let p = h.pair("block_bot").await;
    let path = format!("/sandbox/users/{}/block", p.user_id);
    h.control(&path, json!({"bot": "block_bot"})).await;
    let updates = h.ok(&p.token, "getUpdates", json!({})).await;
    let mcm = &updates[0]["my_chat_member"];
    assert_eq!(mcm["new_chat_member"]["status"], "kicked");
    assert_eq!(mcm["old_chat_member"]["status"], "member");
    assert_eq!(
        h.err(
            &p.token,
            "sendMessage",
            json!({"chat_id": p.user_id, "text": "hi"})
        )
        .await,
        (403, "Forbidden: bot was blocked by the user".into())
    );
    assert_eq!(h.post(&path, json!({"bot": "block_bot"})).await.0, 409);
    h.control(
        &format!("/sandbox/users/{}/unblock", p.user_id),
        json!({"bot": "block_bot"}),
    )
    .await;
    h.ok(
        &p.token,
        "sendMessage",
        json!({"chat_id": p.user_id, "text": "welcome back"}),
    )
    .await;
}

#[tokio::test]
async fn groups_join_leave_and_migrate() {
    let h = Harness::start().await;
    let (token, _) = h.bot("group_bot").await;
    let owner = h.user("Olga").await;
    let joiner = h.user("Jim").await;
    let g = h
        .control(
            "/sandbox/groups",
            json!({"title": "Club", "type": "group", "owner": owner}),
        )
        .await;
    let gid = g["id"].as_i64().unwrap();
    assert_eq!(
        h.err(&token, "sendMessage", json!({"chat_id": gid, "text": "hi"}))
            .await,
        (
            403,
            "Forbidden: bot is not a member of the group chat".into()
        )
    );
    h.control(
        &format!("/sandbox/groups/{gid}/bots"),
        json!({"bot": "group_bot"}),
    )
    .await;
    h.ok(
        &token,
        "sendMessage",
        json!({"chat_id": gid, "text": "hello group"}),
    )
    .await;
    h.control(
        &format!("/sandbox/groups/{gid}/members"),
        json!({"user_id": joiner}),
    )
    .await;
    h.control(
        &format!("/sandbox/users/{joiner}/messages"),
        json!({"chat_id": gid, "text": "/help@group_bot"}),
    )
    .await;
    let (status, _) = h
        .http
        .delete(format!("{}/sandbox/groups/{gid}/members/{joiner}", h.url))
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(status, 200);
    let updates = h.ok(&token, "getUpdates", json!({})).await;
    let kinds: Vec<String> = updates
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            let m = &u["message"];
            if m.get("new_chat_members").is_some() {
                "joined".into()
            } else if m.get("left_chat_member").is_some() {
                "left".into()
            } else if let Some(t) = m["text"].as_str() {
                t.to_string()
            } else {
                "my_chat_member".into()
            }
        })
        .collect();
    assert_eq!(
        kinds,
        ["my_chat_member", "joined", "/help@group_bot", "left"]
    );

    let migrated = h
        .control(&format!("/sandbox/groups/{gid}/migrate"), json!({}))
        .await;
    let new_id = migrated["migrate_to_chat_id"].as_i64().unwrap();
    assert!(new_id.to_string().starts_with("-100"));
    let (status, body) = h
        .api(&token, "sendMessage", json!({"chat_id": gid, "text": "hi"}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["description"],
        "Bad Request: group chat was upgraded to a supergroup chat"
    );
    assert_eq!(body["parameters"]["migrate_to_chat_id"], json!(new_id));
    h.ok(
        &token,
        "sendMessage",
        json!({"chat_id": new_id, "text": "moved"}),
    )
    .await;
}

#[tokio::test]
async fn captions_are_edited_only_on_media_and_texts_only_on_texts() {
    let h = Harness::start().await;
    let p = h.pair("caption_bot").await;
    let photo = h
        .ok(
            &p.token,
            "sendPhoto",
            json!({"chat_id": p.user_id, "photo": "https://example.com/a.png", "caption": "Before"}),
        )
        .await;
    let photo_id = photo["message_id"].as_i64().unwrap();
    let text = h
        .ok(
            &p.token,
            "sendMessage",
            json!({"chat_id": p.user_id, "text": "Plain"}),
        )
        .await;
    let text_id = text["message_id"].as_i64().unwrap();
    let edited = h
        .ok(
            &p.token,
            "editMessageCaption",
            json!({"chat_id": p.user_id, "message_id": photo_id, "caption": "<b>After</b>", "parse_mode": "HTML"}),
        )
        .await;
    assert_eq!(edited["caption"], "After");
    assert_eq!(edited["caption_entities"][0]["type"], "bold");
    assert!(edited["edit_date"].is_i64());
    assert_eq!(
        h.err(
            &p.token,
            "editMessageCaption",
            json!({"chat_id": p.user_id, "message_id": photo_id, "caption": "<b>After</b>", "parse_mode": "HTML"})
        )
        .await
        .1,
        "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message"
    );
    assert_eq!(
        h.err(
            &p.token,
            "editMessageCaption",
            json!({"chat_id": p.user_id, "message_id": text_id, "caption": "x"})
        )
        .await,
        (
            400,
            "Bad Request: there is no caption in the message to edit".into()
        )
    );
    assert_eq!(
        h.err(
            &p.token,
            "editMessageText",
            json!({"chat_id": p.user_id, "message_id": photo_id, "text": "x"})
        )
        .await,
        (
            400,
            "Bad Request: there is no text in the message to edit".into()
        )
    );
    // The transcript shows the current caption and that it was edited.
    let t = h.transcript(p.user_id, "caption_bot").await;
    let shown = t
        .iter()
        .find(|m| m["message_id"] == json!(photo_id))
        .unwrap();
    assert_eq!(shown["caption"], "After");
    assert!(shown["edit_date"].is_i64());
    let stats = h.get("/sandbox/stats").await;
    assert_eq!(stats["bots"][0]["edits_accepted"], json!(1));
}

#[tokio::test]
async fn messages_are_deleted_for_everyone_only_within_48_hours() {
    // At 86 400× the sandbox's 48 hours are two seconds.
    let h = Harness::with(relaygram_sandbox::SandboxConfig {
        time_scale: 86_400.0,
        ..relaygram_sandbox::SandboxConfig::default()
    })
    .await;
    let p = h.pair("old_bot").await;
    let m = h
        .ok(
            &p.token,
            "sendMessage",
            json!({"chat_id": p.user_id, "text": "soon old"}),
        )
        .await;
    let id = m["message_id"].as_i64().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    assert_eq!(
        h.err(
            &p.token,
            "deleteMessage",
            json!({"chat_id": p.user_id, "message_id": id})
        )
        .await,
        (
            400,
            "Bad Request: message can't be deleted for everyone".into()
        )
    );
    let fresh = h
        .ok(
            &p.token,
            "sendMessage",
            json!({"chat_id": p.user_id, "text": "fresh"}),
        )
        .await;
    let fresh_id = fresh["message_id"].as_i64().unwrap();
    assert_eq!(
        h.ok(
            &p.token,
            "deleteMessage",
            json!({"chat_id": p.user_id, "message_id": fresh_id})
        )
        .await,
        json!(true)
    );
    let t = h.transcript(p.user_id, "old_bot").await;
    let gone = t
        .iter()
        .find(|m| m["message_id"] == json!(fresh_id))
        .unwrap();
    assert_eq!(gone["deleted"], json!(true));
    assert!(gone["deleted_date"].is_i64());
    let kept = t.iter().find(|m| m["message_id"] == json!(id)).unwrap();
    assert_eq!(kept["deleted"], json!(false));
}

#[tokio::test]
async fn edits_take_flood_limit_slots_like_sends() {
    let h = Harness::with_limits(1.0).await;
    let p = h.pair("edit_limit_bot").await;
    let m = h
        .ok(
            &p.token,
            "sendMessage",
            json!({"chat_id": p.user_id, "text": "v0"}),
        )
        .await;
    let id = m["message_id"].as_i64().unwrap();
    // One a second per private chat: an edit right after the send is refused.
    let (code, description) = h
        .err(
            &p.token,
            "editMessageText",
            json!({"chat_id": p.user_id, "message_id": id, "text": "v1"}),
        )
        .await;
    assert_eq!(code, 429, "{description}");
}
