//! The Bot API's shape: tokens, methods, parameter encodings, getMe, commands, chats.

use serde_json::{Value, json};

use crate::Harness;

#[tokio::test]
async fn unknown_token_is_401_and_unknown_method_is_404() {
    let h = Harness::start().await;
    let (token, _) = h.bot("shape_bot").await;
    let (status, body) = h.api("123:nope", "getMe", json!({})).await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({"ok": false, "error_code": 401, "description": "Unauthorized"})
    );
    let (status, body) = h.api(&token, "sendTelepathy", json!({})).await;
    assert_eq!(status, 404);
    assert_eq!(body["description"], "Not Found");
    let r = h
        .http
        .get(format!("{}/nothing/here", h.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn get_me_answers_by_get_post_query_form_and_any_case() {
    let h = Harness::start().await;
    let (token, id) = h.bot("me_bot").await;
    let me = h.ok(&token, "getMe", json!({})).await;
    assert_eq!(me["id"], json!(id));
    assert_eq!(me["is_bot"], json!(true));
    assert_eq!(me["username"], "me_bot");
    let r: Value = h
        .http
        .get(format!("{}/bot{token}/getme", h.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        r["result"]["id"],
        json!(id),
        "method names are case-insensitive"
    );
    for m in ["logOut", "close"] {
        assert_eq!(h.ok(&token, m, json!({})).await, json!(true));
    }
}

#[tokio::test]
async fn parameters_arrive_as_query_form_and_multipart() {
    let h = Harness::start().await;
    let p = h.pair("enc_bot").await;
    let base = format!("{}/bot{}", h.url, p.token);
    let via_query: Value = h
        .http
        .get(format!(
            "{base}/sendMessage?chat_id={}&text=via%20query",
            p.user_id
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(via_query["result"]["text"], "via query");
    let markup = json!({"inline_keyboard": [[{"text": "Go", "callback_data": "go"}]]}).to_string();
    let via_form: Value = h
        .http
        .post(format!("{base}/sendMessage"))
        .form(&[
            ("chat_id", p.user_id.to_string()),
            ("text", "<b>via form</b>".into()),
            ("parse_mode", "HTML".into()),
            ("reply_markup", markup.clone()),
            ("some_future_parameter", "ignored".into()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(via_form["result"]["text"], "via form");
    assert_eq!(via_form["result"]["entities"][0]["type"], "bold");
    assert_eq!(
        via_form["result"]["reply_markup"]["inline_keyboard"][0][0]["callback_data"],
        "go"
    );
    let form = reqwest::multipart::Form::new()
        .text("chat_id", p.user_id.to_string())
        .text("caption", "a file")
        .part(
            "document",
            reqwest::multipart::Part::bytes(b"hello".to_vec())
                .file_name("hello.txt")
                .mime_str("text/plain")
                .unwrap(),
        );
    let via_multipart: Value = h
        .http
        .post(format!("{base}/sendDocument"))
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let doc = &via_multipart["result"]["document"];
    assert_eq!(doc["file_name"], "hello.txt");
    assert_eq!(doc["file_size"], json!(5));
    assert_eq!(via_multipart["result"]["caption"], "a file");
}

#[tokio::test]
async fn commands_are_kept_per_scope_and_checked() {
    let h = Harness::start().await;
    let (token, _) = h.bot("cmd_bot").await;
    let cmds = json!([{"command": "start", "description": "Start"}, {"command": "help", "description": "Help"}]);
    h.ok(&token, "setMyCommands", json!({"commands": cmds}))
        .await;
    let private = json!({"type": "all_private_chats"});
    h.ok(
        &token,
        "setMyCommands",
        json!({"commands": [{"command": "settings", "description": "Settings"}], "scope": private}),
    )
    .await;
    assert_eq!(h.ok(&token, "getMyCommands", json!({})).await, cmds);
    assert_eq!(
        h.ok(&token, "getMyCommands", json!({"scope": private}))
            .await[0]["command"],
        "settings"
    );
    assert_eq!(
        h.ok(&token, "getMyCommands", json!({"language_code": "de"}))
            .await,
        json!([])
    );
    for (bad, wording) in [
        (
            json!([{"command": "Bad-Name", "description": "x"}]),
            "Bad Request: BOT_COMMAND_INVALID",
        ),
        (
            json!([{"command": "a".repeat(33), "description": "x"}]),
            "Bad Request: BOT_COMMAND_INVALID",
        ),
        (
            json!([{"command": "ok", "description": ""}]),
            "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID",
        ),
        (
            json!([{"command": "ok", "description": "d".repeat(257)}]),
            "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID",
        ),
    ] {
        assert_eq!(
            h.err(&token, "setMyCommands", json!({"commands": bad}))
                .await,
            (400, wording.to_string())
        );
    }
    let many: Vec<Value> = (0..101)
        .map(|i| json!({"command": format!("c{i}"), "description": "d"}))
        .collect();
    assert_eq!(
        h.err(&token, "setMyCommands", json!({"commands": many}))
            .await
            .0,
        400
    );
    assert_eq!(
        h.ok(&token, "getMyCommands", json!({})).await,
        cmds,
        "failed calls change nothing"
    );
    h.ok(&token, "deleteMyCommands", json!({})).await;
    assert_eq!(h.ok(&token, "getMyCommands", json!({})).await, json!([]));
}

#[tokio::test]
async fn get_chat_and_get_chat_member() {
    let h = Harness::start().await;
    let p = h.pair("chat_bot").await;
    let chat = h
        .ok(&p.token, "getChat", json!({"chat_id": p.user_id}))
        .await;
    assert_eq!(chat["type"], "private");
    assert_eq!(chat["first_name"], "Alice");
    let stranger = h.user("Bob").await;
    assert_eq!(
        h.err(&p.token, "getChat", json!({"chat_id": stranger}))
            .await,
        (400, "Bad Request: chat not found".into())
    );
    let member = h
        .ok(
            &p.token,
            "getChatMember",
            json!({"chat_id": p.user_id, "user_id": p.user_id}),
        )
        .await;
    assert_eq!(member["status"], "member");

    let group = h
        .control(
            "/sandbox/groups",
            json!({"title": "Traders", "type": "supergroup", "owner": p.user_id, "members": [stranger]}),
        )
        .await;
    let gid = group["id"].as_i64().unwrap();
    assert_eq!(
        h.err(&p.token, "getChat", json!({"chat_id": gid})).await.0,
        400
    );
    h.control(
        &format!("/sandbox/groups/{gid}/bots"),
        json!({"bot": "chat_bot", "status": "administrator", "rights": {"can_invite_users": true, "can_restrict_members": true}}),
    )
    .await;
    let chat = h.ok(&p.token, "getChat", json!({"chat_id": gid})).await;
    assert_eq!(chat["title"], "Traders");
    assert_eq!(chat["type"], "supergroup");
    let me = h
        .ok(
            &p.token,
            "getChatMember",
            json!({"chat_id": gid, "user_id": p.bot_id}),
        )
        .await;
    assert_eq!(me["status"], "administrator");
    assert_eq!(me["can_invite_users"], json!(true));
    assert_eq!(me["can_delete_messages"], json!(false));
    let owner = h
        .ok(
            &p.token,
            "getChatMember",
            json!({"chat_id": gid, "user_id": p.user_id}),
        )
        .await;
    assert_eq!(owner["status"], "creator");
    // The bot learnt it was promoted through my_chat_member.
    let updates = h.ok(&p.token, "getUpdates", json!({})).await;
    let mcm = updates
        .as_array()
        .unwrap()
        .iter()
        .find_map(|u| u.get("my_chat_member"))
        .expect("my_chat_member update");
    assert_eq!(mcm["new_chat_member"]["status"], "administrator");
    assert_eq!(mcm["old_chat_member"]["status"], "left");
}

#[tokio::test]
async fn chat_actions_are_checked() {
    let h = Harness::start().await;
    let p = h.pair("typing_bot").await;
    assert_eq!(
        h.ok(
            &p.token,
            "sendChatAction",
            json!({"chat_id": p.user_id, "action": "typing"})
        )
        .await,
        json!(true)
    );
    assert_eq!(
        h.err(
            &p.token,
            "sendChatAction",
            json!({"chat_id": p.user_id, "action": "dancing"})
        )
        .await,
        (400, "Bad Request: wrong parameter action in request".into())
    );
}

#[tokio::test]
async fn control_api_rejects_bad_input_clearly() {
    let h = Harness::start().await;
    let (status, body) = h.post("/sandbox/bots", json!({"username": "no"})).await;
    assert_eq!(status, 422);
    assert!(body["error"].as_str().unwrap().contains("ending in"));
    h.bot("dup_bot").await;
    assert_eq!(
        h.post("/sandbox/bots", json!({"username": "dup_bot"}))
            .await
            .0,
        409
    );
    assert_eq!(h.post("/sandbox/users", json!({"name": "x"})).await.0, 400);
    assert_eq!(
        h.post(
            "/sandbox/users/1/messages",
            json!({"bot": "dup_bot", "text": "hi"})
        )
        .await
        .0,
        404
    );
    let r = h
        .http
        .post(format!("{}/sandbox/users", h.url))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON body")
    );
    assert_eq!(
        h.get("/sandbox/users").await["users"],
        json!([]),
        "nothing was created"
    );
}

#[tokio::test]
async fn reset_forgets_everything() {
    let h = Harness::start().await;
    let (token, _) = h.bot("gone_bot").await;
    h.user("Alice").await;
    assert_eq!(h.post("/sandbox/reset", json!({})).await.0, 204);
    assert_eq!(h.get("/sandbox/bots").await["bots"], json!([]));
    assert_eq!(h.get("/sandbox/users").await["users"], json!([]));
    assert_eq!(h.api(&token, "getMe", json!({})).await.0, 401);
}

/// The gateway reads Bot API answers with frankenstein's types: every shape the sandbox
/// answers with must parse into them.
#[tokio::test]
async fn answers_parse_into_frankenstein_types() {
    use frankenstein::types::{BotCommand, ChatFullInfo, ChatMember, Message, User};
    use frankenstein::updates::{Update, WebhookInfo};
    fn parse<T: serde::de::DeserializeOwned>(what: &str, v: Value) -> T {
        serde_json::from_value(v.clone())
            .unwrap_or_else(|e| panic!("{what} did not parse: {e}\n{v}"))
    }
    let h = Harness::start().await;
    let p = h.pair("fr_bot").await;
    let me: User = parse("getMe", h.ok(&p.token, "getMe", json!({})).await);
    assert_eq!(me.username.as_deref(), Some("fr_bot"));
    let sent: Message = parse(
        "sendMessage",
        h.ok(&p.token, "sendMessage", json!({"chat_id": p.user_id, "text": "<b>hi</b>", "parse_mode": "HTML",
            "reply_markup": {"inline_keyboard": [[{"text": "A", "callback_data": "a"}, {"text": "B", "url": "https://example.com"}]]}}))
            .await,
    );
    assert_eq!(sent.text.as_deref(), Some("hi"));
    let _: Message = parse(
        "sendPhoto",
        h.ok(
            &p.token,
            "sendPhoto",
            json!({"chat_id": p.user_id, "photo": "https://example.com/a.png", "caption": "c"}),
        )
        .await,
    );
    let _: Message = parse(
        "sendDocument",
        h.ok(
            &p.token,
            "sendDocument",
            json!({"chat_id": p.user_id, "document": "https://example.com/a.pdf"}),
        )
        .await,
    );
    h.control(
        &format!("/sandbox/users/{}/callback", p.user_id),
        json!({"bot": "fr_bot", "message_id": sent.message_id, "data": "a"}),
    )
    .await;
    let _: Message = parse(
        "editMessageText",
        h.ok(
            &p.token,
            "editMessageText",
            json!({"chat_id": p.user_id, "message_id": sent.message_id, "text": "edited"}),
        )
        .await,
    );
    h.control(
        &format!("/sandbox/users/{}/block", p.user_id),
        json!({"bot": "fr_bot"}),
    )
    .await;
    h.control(
        &format!("/sandbox/users/{}/unblock", p.user_id),
        json!({"bot": "fr_bot"}),
    )
    .await;
    h.say(p.user_id, "fr_bot", "/help@fr_bot now").await;
    let updates: Vec<Update> = parse("getUpdates", h.ok(&p.token, "getUpdates", json!({})).await);
    assert_eq!(updates.len(), 4);
    let _: WebhookInfo = parse(
        "getWebhookInfo",
        h.ok(&p.token, "getWebhookInfo", json!({})).await,
    );
    let _: ChatFullInfo = parse(
        "getChat",
        h.ok(&p.token, "getChat", json!({"chat_id": p.user_id}))
            .await,
    );
    let _: ChatMember = parse(
        "getChatMember",
        h.ok(
            &p.token,
            "getChatMember",
            json!({"chat_id": p.user_id, "user_id": p.user_id}),
        )
        .await,
    );
    h.ok(
        &p.token,
        "setMyCommands",
        json!({"commands": [{"command": "start", "description": "Start"}]}),
    )
    .await;
    let _: Vec<BotCommand> = parse(
        "getMyCommands",
        h.ok(&p.token, "getMyCommands", json!({})).await,
    );
    let owner = h.user("Olga").await;
    let g = h
        .control("/sandbox/groups", json!({"title": "G", "owner": owner}))
        .await;
    let gid = g["id"].as_i64().unwrap();
    h.control(
        &format!("/sandbox/groups/{gid}/bots"),
        json!({"bot": "fr_bot", "status": "administrator", "rights": {"can_invite_users": true}}),
    )
    .await;
    let _: ChatFullInfo = parse(
        "getChat group",
        h.ok(&p.token, "getChat", json!({"chat_id": gid})).await,
    );
    for user in [owner, p.bot_id] {
        let _: ChatMember = parse(
            "getChatMember group",
            h.ok(
                &p.token,
                "getChatMember",
                json!({"chat_id": gid, "user_id": user}),
            )
            .await,
        );
    }
    let _: Vec<Update> = parse(
        "getUpdates group",
        h.ok(&p.token, "getUpdates", json!({"offset": -1})).await,
    );
}
