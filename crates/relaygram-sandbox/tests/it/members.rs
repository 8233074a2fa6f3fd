//! Members, invite links and join requests: the methods, their errors, the updates they
//! cause, and users opening links through the control API.

use serde_json::{Value, json};

use crate::Harness;

const ALL: &[&str] = &[
    "message",
    "chat_member",
    "chat_join_request",
    "my_chat_member",
];

struct Chat {
    token: String,
    bot: String,
    chat_id: i64,
    owner: i64,
}

/// A supergroup (or `kind`) owned by a user, with the bot as an administrator holding `rights`.
async fn chat(h: &Harness, kind: &str, rights: Value) -> Chat {
    let bot = format!("m{}_bot", rand_suffix());
    let (token, _) = h.bot(&bot).await;
    let owner = h.user("Owner").await;
    let g = h
        .control(
            "/sandbox/groups",
            json!({"title": "Paid", "type": kind, "owner": owner}),
        )
        .await;
    let chat_id = g["id"].as_i64().unwrap();
    h.control(
        &format!("/sandbox/groups/{chat_id}/bots"),
        json!({"bot": bot, "status": "administrator", "rights": rights}),
    )
    .await;
    // Opt in to every type, and drop the my_chat_member of being added.
    drain(h, &token).await;
    Chat {
        token,
        bot,
        chat_id,
        owner,
    }
}

fn rand_suffix() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn full_rights() -> Value {
    json!({"can_invite_users": true, "can_restrict_members": true, "can_manage_chat": true})
}

/// Every pending update, confirmed; asks for all types the tests look at.
async fn drain(h: &Harness, token: &str) -> Vec<Value> {
    let got = h
        .ok(token, "getUpdates", json!({"allowed_updates": ALL}))
        .await;
    let list = got.as_array().unwrap().clone();
    if let Some(last) = list.last() {
        let next = last["update_id"].as_i64().unwrap() + 1;
        h.ok(token, "getUpdates", json!({"offset": next})).await;
    }
    list
}

fn of_kind<'a>(updates: &'a [Value], kind: &str) -> Vec<&'a Value> {
    updates.iter().filter_map(|u| u.get(kind)).collect()
}

async fn open(h: &Harness, user: i64, link: &str) -> (u16, Value) {
    h.post(
        &format!("/sandbox/users/{user}/join"),
        json!({"invite_link": link}),
    )
    .await
}

async fn status(h: &Harness, c: &Chat, user: i64) -> String {
    h.ok(
        &c.token,
        "getChatMember",
        json!({"chat_id": c.chat_id, "user_id": user}),
    )
    .await["status"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn invite_links_are_created_edited_revoked_and_exported() {
    let h = Harness::start().await;
    let c = chat(&h, "supergroup", full_rights()).await;
    let link = h
        .ok(
            &c.token,
            "createChatInviteLink",
            json!({"chat_id": c.chat_id, "name": "x".repeat(40), "member_limit": -5}),
        )
        .await;
    let url = link["invite_link"].as_str().unwrap().to_string();
    assert!(url.starts_with("https://t.me/+"), "{url}");
    assert_eq!(link["name"], json!("x".repeat(32)), "names are cut to 32");
    assert!(
        link.get("member_limit").is_none(),
        "a negative limit is clamped to none"
    );
    // The Bot API server clamps to 100000, which Telegram then refuses (1-99999).
    assert_eq!(
        h.err(
            &c.token,
            "createChatInviteLink",
            json!({"chat_id": c.chat_id, "member_limit": 1_000_000})
        )
        .await,
        (400, "Bad Request: USAGE_LIMIT_INVALID".into())
    );
    let most = h
        .ok(
            &c.token,
            "createChatInviteLink",
            json!({"chat_id": c.chat_id, "member_limit": 99_999}),
        )
        .await;
    assert_eq!(most["member_limit"], json!(99_999));
    assert_eq!(
        h.err(
            &c.token,
            "createChatInviteLink",
            json!({"chat_id": c.chat_id, "expire_date": 1_000_000})
        )
        .await,
        (400, "Bad Request: EXPIRE_DATE_INVALID".into()),
        "an expiry in the past"
    );
    assert_eq!(link["creator"]["username"], json!(c.bot));
    assert_eq!(link["creates_join_request"], json!(false));
    assert_eq!(link["is_primary"], json!(false));
    assert_eq!(link["is_revoked"], json!(false));
    assert!(link.get("expire_date").is_none());

    let (code, d) = h
        .err(
            &c.token,
            "createChatInviteLink",
            json!({"chat_id": c.chat_id, "member_limit": 1, "creates_join_request": true}),
        )
        .await;
    assert_eq!(code, 400);
    assert_eq!(
        d,
        "Bad Request: member limit can't be specified for links requiring administrator approval"
    );

    // An edit sets every field: those left out return to their defaults.
    let edited = h
        .ok(
            &c.token,
            "editChatInviteLink",
            json!({"chat_id": c.chat_id, "invite_link": url, "creates_join_request": true, "expire_date": 4_000_000_000i64}),
        )
        .await;
    assert_eq!(edited["invite_link"], json!(url));
    assert_eq!(edited["creates_join_request"], json!(true));
    assert_eq!(edited["expire_date"], json!(4_000_000_000i64));
    assert!(edited.get("member_limit").is_none());
    assert!(edited.get("name").is_none());

    let revoked = h
        .ok(
            &c.token,
            "revokeChatInviteLink",
            json!({"chat_id": c.chat_id, "invite_link": url}),
        )
        .await;
    assert_eq!(revoked["is_revoked"], json!(true));
    let (_, d) = h
        .err(
            &c.token,
            "editChatInviteLink",
            json!({"chat_id": c.chat_id, "invite_link": url}),
        )
        .await;
    assert_eq!(d, "Bad Request: INVITE_HASH_EXPIRED");
    let (_, d) = h
        .err(
            &c.token,
            "editChatInviteLink",
            json!({"chat_id": c.chat_id, "invite_link": "https://t.me/+nope"}),
        )
        .await;
    assert_eq!(d, "Bad Request: INVITE_HASH_EXPIRED");
    let (_, d) = h
        .err(
            &c.token,
            "revokeChatInviteLink",
            json!({"chat_id": c.chat_id}),
        )
        .await;
    assert_eq!(d, "Bad Request: invite link must be non-empty");
    let user = h.user("Late").await;
    assert_eq!(
        open(&h, user, &url).await,
        (409, json!({"error": "INVITE_HASH_EXPIRED"}))
    );

    let primary = h
        .ok(
            &c.token,
            "exportChatInviteLink",
            json!({"chat_id": c.chat_id}),
        )
        .await;
    let primary = primary.as_str().unwrap().to_string();
    let again = h
        .ok(
            &c.token,
            "exportChatInviteLink",
            json!({"chat_id": c.chat_id}),
        )
        .await;
    assert_ne!(
        again.as_str().unwrap(),
        primary,
        "a new primary link each time"
    );
    assert_eq!(
        open(&h, user, &primary).await.0,
        409,
        "the old one is revoked"
    );
    let r = h
        .ok(
            &c.token,
            "revokeChatInviteLink",
            json!({"chat_id": c.chat_id, "invite_link": again}),
        )
        .await;
    assert_eq!(r["is_revoked"], json!(true));
    assert_eq!(r["is_primary"], json!(true));
}

#[tokio::test]
async fn rights_are_checked_with_telegrams_errors() {
    let h = Harness::start().await;
    let c = chat(&h, "supergroup", json!({"can_manage_chat": true})).await;
    let user = h.user("Bob").await;
    h.control(
        &format!("/sandbox/groups/{}/members", c.chat_id),
        json!({"user_id": user}),
    )
    .await;
    let rights = "Bad Request: not enough rights to manage chat invite link";
    for (method, params) in [
        ("createChatInviteLink", json!({"chat_id": c.chat_id})),
        ("exportChatInviteLink", json!({"chat_id": c.chat_id})),
        (
            "createChatSubscriptionInviteLink",
            json!({"chat_id": c.chat_id, "subscription_period": 2592000, "subscription_price": 5}),
        ),
    ] {
        assert_eq!(h.err(&c.token, method, params).await, (400, rights.into()));
    }
    for method in ["approveChatJoinRequest", "declineChatJoinRequest"] {
        assert_eq!(
            h.err(
                &c.token,
                method,
                json!({"chat_id": c.chat_id, "user_id": user})
            )
            .await,
            (
                400,
                "Bad Request: not enough rights to manage chat join requests".into()
            )
        );
    }
    let restrict = "Bad Request: not enough rights to restrict/unrestrict chat member";
    for method in ["banChatMember", "unbanChatMember", "restrictChatMember"] {
        assert_eq!(
            h.err(
                &c.token,
                method,
                json!({"chat_id": c.chat_id, "user_id": user, "permissions": {}})
            )
            .await,
            (400, restrict.into()),
            "{method}"
        );
    }
    // Promoted with the rights, the same calls succeed; demoted, they fail again.
    let r = h
        .control(
            &format!("/sandbox/groups/{}/bots/{}/rights", c.chat_id, c.bot),
            json!({"rights": full_rights()}),
        )
        .await;
    assert!(r["update_id"].is_i64());
    let mine = of_kind(&drain(&h, &c.token).await, "my_chat_member")
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["old_chat_member"]["can_invite_users"], json!(false));
    assert_eq!(mine[0]["new_chat_member"]["can_invite_users"], json!(true));
    assert_eq!(mine[0]["from"]["id"], json!(c.owner));
    h.ok(
        &c.token,
        "createChatInviteLink",
        json!({"chat_id": c.chat_id}),
    )
    .await;
    h.control(
        &format!("/sandbox/groups/{}/bots/{}/rights", c.chat_id, c.bot),
        json!({"status": "member"}),
    )
    .await;
    let mine = drain(&h, &c.token).await;
    assert_eq!(
        mine[0]["my_chat_member"]["new_chat_member"]["status"],
        json!("member")
    );
    assert_eq!(
        h.err(
            &c.token,
            "createChatInviteLink",
            json!({"chat_id": c.chat_id})
        )
        .await,
        (400, rights.into())
    );

    // Owners and administrators cannot be removed; private chats have no members to ban.
    let c = chat(&h, "supergroup", full_rights()).await;
    assert_eq!(
        h.err(
            &c.token,
            "banChatMember",
            json!({"chat_id": c.chat_id, "user_id": c.owner})
        )
        .await,
        (400, "Bad Request: can't remove chat owner".into())
    );
    assert_eq!(
        h.err(
            &c.token,
            "banChatMember",
            json!({"chat_id": c.chat_id, "user_id": 0})
        )
        .await,
        (400, "Bad Request: invalid user_id specified".into())
    );
    let p = h.pair(&format!("p{}_bot", rand_suffix())).await;
    assert_eq!(
        h.err(
            &p.token,
            "banChatMember",
            json!({"chat_id": p.user_id, "user_id": p.user_id})
        )
        .await,
        (
            400,
            "Bad Request: can't ban members in private chats".into()
        )
    );
    assert_eq!(
        h.err(
            &p.token,
            "createChatInviteLink",
            json!({"chat_id": p.user_id})
        )
        .await,
        (
            400,
            "Bad Request: can't invite members to a private chat".into()
        )
    );
    assert_eq!(
        h.err(
            &p.token,
            "approveChatJoinRequest",
            json!({"chat_id": p.user_id, "user_id": p.user_id})
        )
        .await,
        (400, "Bad Request: the chat can't have join requests".into())
    );
    assert_eq!(
        h.err(
            &p.token,
            "getChatAdministrators",
            json!({"chat_id": p.user_id})
        )
        .await,
        (
            400,
            "Bad Request: there are no administrators in the private chat".into()
        )
    );
}

#[tokio::test]
async fn a_link_lets_users_in_up_to_its_member_limit_of_current_members() {
    let h = Harness::start().await;
    let c = chat(&h, "supergroup", full_rights()).await;
    let link = h
        .ok(
            &c.token,
            "createChatInviteLink",
            json!({"chat_id": c.chat_id, "member_limit": 1}),
        )
        .await["invite_link"]
        .as_str()
        .unwrap()
        .to_string();
    let (a, b) = (h.user("Ann").await, h.user("Ben").await);
    let (code, joined) = open(&h, a, &link).await;
    assert_eq!(code, 200);
    assert_eq!(joined["result"], json!("joined"));
    assert_eq!(
        open(&h, a, &link).await.1["error"],
        "USER_ALREADY_PARTICIPANT"
    );
    assert_eq!(open(&h, b, &link).await.1["error"], "USERS_TOO_MUCH");
    let updates = drain(&h, &c.token).await;
    let cm = of_kind(&updates, "chat_member");
    assert_eq!(cm.len(), 1);
    assert_eq!(cm[0]["old_chat_member"]["status"], json!("left"));
    assert_eq!(cm[0]["new_chat_member"]["status"], json!("member"));
    assert_eq!(cm[0]["invite_link"]["invite_link"], json!(link));
    assert_eq!(cm[0]["from"]["id"], json!(a));
    assert_eq!(
        of_kind(&updates, "message")[0]["new_chat_members"][0]["id"],
        json!(a)
    );
    // The limit counts members, not uses: once Ann leaves, Ben may come in.
    let left = h
        .control(
            &format!("/sandbox/users/{a}/leave"),
            json!({"chat_id": c.chat_id}),
        )
        .await;
    assert_eq!(left["result"], json!("left"));
    assert_eq!(open(&h, b, &link).await.0, 200);
    assert_eq!(
        h.ok(
            &c.token,
            "getChatMemberCount",
            json!({"chat_id": c.chat_id})
        )
        .await,
        json!(3),
        "owner, Ben and the bot"
    );
    let admins = h
        .ok(
            &c.token,
            "getChatAdministrators",
            json!({"chat_id": c.chat_id}),
        )
        .await;
    let statuses: Vec<&str> = admins
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["creator", "administrator"]);
    assert_eq!(admins[1]["can_restrict_members"], json!(true));
    assert_eq!(admins[1]["user"]["is_bot"], json!(true));
}

#[tokio::test]
async fn join_requests_are_approved_or_declined_once() {
    let h = Harness::start().await;
    let c = chat(&h, "supergroup", full_rights()).await;
    let link = h
        .ok(
            &c.token,
            "createChatInviteLink",
            json!({"chat_id": c.chat_id, "creates_join_request": true, "name": "vip"}),
        )
        .await["invite_link"]
        .as_str()
        .unwrap()
        .to_string();
    let (a, b) = (h.user("Ann").await, h.user("Ben").await);
    let (code, r) = open(&h, a, &link).await;
    assert_eq!((code, &r["result"]), (200, &json!("requested")));
    assert_eq!(open(&h, a, &link).await.1["error"], "INVITE_REQUEST_SENT");
    open(&h, b, &link).await;
    let updates = drain(&h, &c.token).await;
    let reqs = of_kind(&updates, "chat_join_request");
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0]["from"]["id"], json!(a));
    assert_eq!(reqs[0]["user_chat_id"], json!(a));
    assert_eq!(reqs[0]["chat"]["id"], json!(c.chat_id));
    assert_eq!(reqs[0]["invite_link"]["invite_link"], json!(link));
    assert_eq!(reqs[0]["invite_link"]["name"], json!("vip"));
    assert_eq!(
        status(&h, &c, a).await,
        "left",
        "a request is not membership"
    );

    h.ok(
        &c.token,
        "approveChatJoinRequest",
        json!({"chat_id": c.chat_id, "user_id": a}),
    )
    .await;
    assert_eq!(status(&h, &c, a).await, "member");
    let cm = drain(&h, &c.token).await;
    let cm = of_kind(&cm, "chat_member");
    assert_eq!(cm.len(), 1);
    assert_eq!(cm[0]["via_join_request"], json!(true));
    assert_eq!(cm[0]["invite_link"]["invite_link"], json!(link));
    assert_eq!(
        h.err(
            &c.token,
            "approveChatJoinRequest",
            json!({"chat_id": c.chat_id, "user_id": a})
        )
        .await,
        (400, "Bad Request: USER_ALREADY_PARTICIPANT".into())
    );
    h.ok(
        &c.token,
        "declineChatJoinRequest",
        json!({"chat_id": c.chat_id, "user_id": b}),
    )
    .await;
    assert_eq!(status(&h, &c, b).await, "left");
    for method in ["declineChatJoinRequest", "approveChatJoinRequest"] {
        assert_eq!(
            h.err(
                &c.token,
                method,
                json!({"chat_id": c.chat_id, "user_id": b})
            )
            .await,
            (400, "Bad Request: HIDE_REQUESTER_MISSING".into())
        );
    }
    let groups = h.get("/sandbox/groups").await;
    let g = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == json!(c.chat_id))
        .unwrap()
        .clone();
    assert_eq!(g["join_requests"][1]["state"], json!("declined"));
}

#[tokio::test]
async fn unban_removes_a_member_with_two_chat_member_updates() {
    let h = Harness::start().await;
    let c = chat(&h, "supergroup", full_rights()).await;
    let user = h.user("Lapsed").await;
    h.control(
        &format!("/sandbox/groups/{}/members", c.chat_id),
        json!({"user_id": user}),
    )
    .await;
    drain(&h, &c.token).await;
    let target = json!({"chat_id": c.chat_id, "user_id": user});

    // only_if_banned leaves a member alone.
    let mut only = target.clone();
    only["only_if_banned"] = json!(true);
    assert_eq!(
        h.ok(&c.token, "unbanChatMember", only.clone()).await,
        json!(true)
    );
    assert_eq!(status(&h, &c, user).await, "member");
    assert!(of_kind(&drain(&h, &c.token).await, "chat_member").is_empty());

    assert_eq!(
        h.ok(&c.token, "unbanChatMember", target.clone()).await,
        json!(true)
    );
    assert_eq!(status(&h, &c, user).await, "left");
    let updates = drain(&h, &c.token).await;
    let cm = of_kind(&updates, "chat_member");
    let moves: Vec<(&str, &str)> = cm
        .iter()
        .map(|u| {
            (
                u["old_chat_member"]["status"].as_str().unwrap(),
                u["new_chat_member"]["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(moves, [("member", "kicked"), ("kicked", "left")]);
    assert_eq!(
        of_kind(&updates, "message")[0]["left_chat_member"]["id"],
        json!(user)
    );

    // A ban keeps them out until lifted; then a link works again.
    let link = h
        .ok(
            &c.token,
            "createChatInviteLink",
            json!({"chat_id": c.chat_id}),
        )
        .await["invite_link"]
        .as_str()
        .unwrap()
        .to_string();
    open(&h, user, &link).await;
    h.ok(&c.token, "banChatMember", target.clone()).await;
    let banned = h.ok(&c.token, "getChatMember", target.clone()).await;
    assert_eq!(banned["status"], json!("kicked"));
    assert_eq!(banned["until_date"], json!(0));
    assert_eq!(
        open(&h, user, &link).await.1["error"],
        "USER_BANNED_IN_CHANNEL"
    );
    drain(&h, &c.token).await;
    h.ok(&c.token, "unbanChatMember", only).await;
    let cm = drain(&h, &c.token).await;
    let cm = of_kind(&cm, "chat_member");
    assert_eq!(cm.len(), 1, "a banned user is only unbanned");
    assert_eq!(cm[0]["new_chat_member"]["status"], json!("left"));
    assert_eq!(open(&h, user, &link).await.0, 200);
}

#[tokio::test]
async fn chat_member_updates_come_only_when_asked_for() {
    let h = Harness::start().await;
    let c = chat(&h, "supergroup", full_rights()).await;
    // Back to the default: every type but chat_member and the reactions.
    h.ok(&c.token, "getUpdates", json!({"allowed_updates": []}))
        .await;
    let user = h.user("Quiet").await;
    let link = h
        .ok(
            &c.token,
            "createChatInviteLink",
            json!({"chat_id": c.chat_id}),
        )
        .await["invite_link"]
        .as_str()
        .unwrap()
        .to_string();
    open(&h, user, &link).await;
    let got = h.ok(&c.token, "getUpdates", json!({})).await;
    let got = got.as_array().unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].get("message").is_some());
}

#[tokio::test]
async fn a_basic_group_cannot_keep_a_removed_user_out() {
    let h = Harness::start().await;
    let c = chat(&h, "group", full_rights()).await;
    let user = h.user("Gone").await;
    h.control(
        &format!("/sandbox/groups/{}/members", c.chat_id),
        json!({"user_id": user}),
    )
    .await;
    let target = json!({"chat_id": c.chat_id, "user_id": user});
    h.ok(&c.token, "banChatMember", target.clone()).await;
    assert_eq!(status(&h, &c, user).await, "left");
    assert_eq!(
        h.err(&c.token, "unbanChatMember", target).await,
        (
            400,
            "Bad Request: method is available for supergroup and channel chats only".into()
        )
    );
    // Any admin's link lets them back in.
    let admin_link = h
        .control(
            &format!("/sandbox/groups/{}/invite-links", c.chat_id),
            json!({}),
        )
        .await;
    assert_eq!(admin_link["creator"]["id"], json!(c.owner));
    let url = admin_link["invite_link"].as_str().unwrap().to_string();
    assert_eq!(open(&h, user, &url).await.0, 200);
    // The bot sees an administrator's link with its tail hidden.
    let cm = drain(&h, &c.token).await;
    let cm = of_kind(&cm, "chat_member");
    let seen = cm.last().unwrap()["invite_link"]["invite_link"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(seen.ends_with("...") && url.starts_with(seen.trim_end_matches("...")));
}

/// The gateway reads these answers and updates with frankenstein's types.
#[tokio::test]
async fn links_members_and_their_updates_parse_into_frankenstein_types() {
    use frankenstein::types::ChatInviteLink;
    use frankenstein::types::ChatMember;
    use frankenstein::updates::Update;
    fn parse<T: serde::de::DeserializeOwned>(what: &str, v: Value) -> T {
        serde_json::from_value(v.clone())
            .unwrap_or_else(|e| panic!("{what} did not parse: {e}\n{v}"))
    }
    let h = Harness::start().await;
    let c = chat(&h, "supergroup", full_rights()).await;
    let link: ChatInviteLink = parse(
        "createChatInviteLink",
        h.ok(
            &c.token,
            "createChatInviteLink",
            json!({"chat_id": c.chat_id, "creates_join_request": true, "expire_date": 4_000_000_000i64}),
        )
        .await,
    );
    let (a, b) = (h.user("Ann").await, h.user("Ben").await);
    open(&h, a, &link.invite_link).await;
    h.ok(
        &c.token,
        "approveChatJoinRequest",
        json!({"chat_id": c.chat_id, "user_id": a}),
    )
    .await;
    let admin = h
        .control(
            &format!("/sandbox/groups/{}/invite-links", c.chat_id),
            json!({"member_limit": 5}),
        )
        .await;
    open(&h, b, admin["invite_link"].as_str().unwrap()).await;
    h.ok(
        &c.token,
        "unbanChatMember",
        json!({"chat_id": c.chat_id, "user_id": b}),
    )
    .await;
    h.control(
        &format!("/sandbox/groups/{}/bots/{}/rights", c.chat_id, c.bot),
        json!({"status": "member"}),
    )
    .await;
    let raw = h.ok(&c.token, "getUpdates", json!({})).await;
    let updates: Vec<Update> = parse("getUpdates", raw.clone());
    let kinds: Vec<&str> = raw
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            [
                "chat_join_request",
                "chat_member",
                "my_chat_member",
                "message",
            ]
            .into_iter()
            .find(|k| u.get(*k).is_some())
            .unwrap()
        })
        .collect();
    assert_eq!(updates.len(), kinds.len());
    // Approval: the service message and chat_member; the admin-link join likewise; the
    // removal: its service message, member -> kicked, kicked -> left; then the demotion.
    let expected = [
        "chat_join_request",
        "message",
        "chat_member",
        "message",
        "chat_member",
        "message",
        "chat_member",
        "chat_member",
        "my_chat_member",
    ];
    assert_eq!(kinds, expected);
    let _: Vec<ChatMember> = parse(
        "getChatAdministrators",
        h.ok(
            &c.token,
            "getChatAdministrators",
            json!({"chat_id": c.chat_id}),
        )
        .await,
    );
    let _: ChatMember = parse(
        "getChatMember",
        h.ok(
            &c.token,
            "getChatMember",
            json!({"chat_id": c.chat_id, "user_id": a}),
        )
        .await,
    );
}

#[tokio::test]
async fn a_ban_keeps_its_until_date_and_a_short_one_is_forever() {
    let h = Harness::start().await;
    let c = chat(&h, "supergroup", full_rights()).await;
    let user = h.user("Timed").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let target = json!({"chat_id": c.chat_id, "user_id": user});
    let mut ban = target.clone();
    ban["until_date"] = json!(now + 3600);
    h.ok(&c.token, "banChatMember", ban.clone()).await;
    let m = h.ok(&c.token, "getChatMember", target.clone()).await;
    assert_eq!(
        (m["status"].clone(), m["until_date"].clone()),
        (json!("kicked"), json!(now + 3600))
    );
    // A non-member can be banned in advance; banning again only moves the date.
    let got = drain(&h, &c.token).await;
    assert_eq!(of_kind(&got, "chat_member").len(), 1);
    ban["until_date"] = json!(now + 10);
    h.ok(&c.token, "banChatMember", ban).await;
    let m = h.ok(&c.token, "getChatMember", target).await;
    assert_eq!(m["until_date"], json!(0), "under 30 s away means forever");
    assert!(drain(&h, &c.token).await.is_empty());
}

/// The sandbox's calendar (the real clock moved by POST /sandbox/clock).
async fn sandbox_now(h: &Harness) -> i64 {
    h.get("/sandbox/clock").await["now"].as_i64().unwrap()
}

async fn advance(h: &Harness, seconds: i64) {
    h.control("/sandbox/clock", json!({"advance": seconds}))
        .await;
}

const MONTH: i64 = 2_592_000;

#[tokio::test]
async fn subscription_links_sell_channel_membership_until_it_lapses() {
    let h = Harness::start().await;
    let c = chat(&h, "channel", full_rights()).await;
    let sub = |period: i64, price: i64| json!({"chat_id": c.chat_id, "subscription_period": period, "subscription_price": price});
    for (params, error) in [
        (sub(MONTH, 0), "invalid subscription pricing specified"),
        (sub(0, 5), "invalid subscription pricing specified"),
        (sub(86_400, 5), "SUBSCRIPTION_PERIOD_INVALID"),
        (sub(MONTH, 10_001), "PRICING_CHAT_INVALID"),
    ] {
        assert_eq!(
            h.err(&c.token, "createChatSubscriptionInviteLink", params)
                .await,
            (400, format!("Bad Request: {error}"))
        );
    }
    let mut params = sub(MONTH, 250);
    params["name"] = json!("y".repeat(40));
    let link = h
        .ok(&c.token, "createChatSubscriptionInviteLink", params)
        .await;
    assert_eq!(link["subscription_period"], json!(MONTH));
    assert_eq!(link["subscription_price"], json!(250));
    assert_eq!(link["name"], json!("y".repeat(32)));
    assert_eq!(link["creates_join_request"], json!(false));
    let url = link["invite_link"].as_str().unwrap().to_string();
    // Only the name of a subscription link changes.
    let edited = h
        .ok(
            &c.token,
            "editChatSubscriptionInviteLink",
            json!({"chat_id": c.chat_id, "invite_link": url, "name": "monthly"}),
        )
        .await;
    assert_eq!(edited["name"], json!("monthly"));
    assert_eq!(edited["subscription_price"], json!(250));

    // Paying (opening the link) makes a member until the period ends.
    let fan = h.user("Fan").await;
    let before = sandbox_now(&h).await;
    let (code, joined) = open(&h, fan, &url).await;
    assert_eq!((code, &joined["result"]), (200, &json!("joined")));
    let until = joined["until_date"].as_i64().unwrap();
    assert!((before + MONTH..=before + MONTH + 5).contains(&until));
    let updates = drain(&h, &c.token).await;
    assert!(
        of_kind(&updates, "message").is_empty(),
        "channels show no joins"
    );
    let cm = of_kind(&updates, "chat_member");
    assert_eq!(cm.len(), 1);
    assert_eq!(cm[0]["new_chat_member"]["status"], json!("member"));
    assert_eq!(cm[0]["new_chat_member"]["until_date"], json!(until));
    assert_eq!(cm[0]["invite_link"]["invite_link"], json!(url));
    assert_eq!(cm[0]["invite_link"]["subscription_price"], json!(250));
    let m = h
        .ok(
            &c.token,
            "getChatMember",
            json!({"chat_id": c.chat_id, "user_id": fan}),
        )
        .await;
    assert_eq!(m["until_date"], json!(until));

    // Lapsing removes the member: chat_member member -> left.
    let lapse = format!("/sandbox/users/{fan}/subscriptions/{}/lapse", c.chat_id);
    assert_eq!(
        h.control(&lapse, json!({})).await["result"],
        json!("lapsed")
    );
    assert_eq!(status(&h, &c, fan).await, "left");
    let cm = drain(&h, &c.token).await;
    let cm = of_kind(&cm, "chat_member");
    assert_eq!(cm.len(), 1);
    assert_eq!(cm[0]["old_chat_member"]["until_date"], json!(until));
    assert_eq!(cm[0]["new_chat_member"]["status"], json!("left"));
    assert_eq!(h.post(&lapse, json!({})).await.0, 409);

    // Coming back pays again; the calendar passing the end lapses it too.
    assert_eq!(open(&h, fan, &url).await.0, 200);
    drain(&h, &c.token).await;
    advance(&h, MONTH + 10).await;
    assert_eq!(status(&h, &c, fan).await, "left");
    let cm = drain(&h, &c.token).await;
    assert_eq!(
        of_kind(&cm, "chat_member")[0]["new_chat_member"]["status"],
        json!("left")
    );

    // Only channels sell subscriptions.
    let g = chat(&h, "supergroup", full_rights()).await;
    assert_eq!(
        h.err(
            &g.token,
            "createChatSubscriptionInviteLink",
            json!({"chat_id": g.chat_id, "subscription_period": MONTH, "subscription_price": 5})
        )
        .await,
        (400, "Bad Request: PRICING_CHAT_INVALID".into())
    );
}

fn restrict(c: &Chat, user: i64, permissions: Value) -> Value {
    json!({"chat_id": c.chat_id, "user_id": user, "permissions": permissions})
}

#[tokio::test]
async fn restrict_chat_member_mutes_and_a_full_grant_lifts_it() {
    let h = Harness::start().await;
    let c = chat(&h, "supergroup", full_rights()).await;
    let user = h.user("Loud").await;
    h.control(
        &format!("/sandbox/groups/{}/members", c.chat_id),
        json!({"user_id": user}),
    )
    .await;
    drain(&h, &c.token).await;
    h.ok(
        &c.token,
        "restrictChatMember",
        restrict(&c, user, json!({"can_send_polls": true})),
    )
    .await;
    let m = h
        .ok(
            &c.token,
            "getChatMember",
            json!({"chat_id": c.chat_id, "user_id": user}),
        )
        .await;
    assert_eq!(m["status"], json!("restricted"));
    assert_eq!(m["is_member"], json!(true));
    assert_eq!(m["until_date"], json!(0));
    assert_eq!(
        m["can_send_messages"],
        json!(true),
        "polls imply text unless use_independent_chat_permissions"
    );
    assert_eq!(m["can_send_photos"], json!(false));
    assert_eq!(m["can_react_to_messages"], json!(false));
    let cm = drain(&h, &c.token).await;
    let cm = of_kind(&cm, "chat_member");
    assert_eq!(cm.len(), 1);
    assert_eq!(cm[0]["old_chat_member"]["status"], json!("member"));
    assert_eq!(cm[0]["new_chat_member"]["status"], json!("restricted"));
    assert_eq!(cm[0]["new_chat_member"]["can_send_polls"], json!(true));

    // Muted for an hour, independently: no text, so the user cannot write.
    let now = sandbox_now(&h).await;
    let mut mute = restrict(&c, user, json!({"can_send_polls": true}));
    mute["use_independent_chat_permissions"] = json!(true);
    mute["until_date"] = json!(now + 3600);
    h.ok(&c.token, "restrictChatMember", mute).await;
    let m = h
        .ok(
            &c.token,
            "getChatMember",
            json!({"chat_id": c.chat_id, "user_id": user}),
        )
        .await;
    assert_eq!(m["can_send_messages"], json!(false));
    assert_eq!(m["until_date"], json!(now + 3600));
    let (code, _) = h
        .post(
            &format!("/sandbox/users/{user}/messages"),
            json!({"chat_id": c.chat_id, "text": "hello"}),
        )
        .await;
    assert_eq!(code, 409, "a muted user cannot write");
    // When until_date passes the restriction is gone, without an update.
    drain(&h, &c.token).await;
    advance(&h, 3601).await;
    assert_eq!(status(&h, &c, user).await, "member");
    assert!(drain(&h, &c.token).await.is_empty());

    // Restricting again and then granting everything makes a plain member.
    h.ok(
        &c.token,
        "restrictChatMember",
        restrict(&c, user, json!({})),
    )
    .await;
    let all = json!({
        "can_send_messages": true, "can_send_audios": true, "can_send_documents": true,
        "can_send_photos": true, "can_send_videos": true, "can_send_video_notes": true,
        "can_send_voice_notes": true, "can_send_polls": true, "can_send_other_messages": true,
        "can_add_web_page_previews": true, "can_react_to_messages": true, "can_edit_tag": true,
        "can_change_info": true, "can_invite_users": true, "can_pin_messages": true,
        "can_manage_topics": true
    });
    h.ok(&c.token, "restrictChatMember", restrict(&c, user, all))
        .await;
    assert_eq!(status(&h, &c, user).await, "member");
    let cm = drain(&h, &c.token).await;
    let moves: Vec<(&str, &str)> = of_kind(&cm, "chat_member")
        .iter()
        .map(|u| {
            (
                u["old_chat_member"]["status"].as_str().unwrap(),
                u["new_chat_member"]["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(moves, [("member", "restricted"), ("restricted", "member")]);

    // Someone restricted while out comes in restricted.
    let outsider = h.user("Outsider").await;
    h.ok(
        &c.token,
        "restrictChatMember",
        restrict(&c, outsider, json!({})),
    )
    .await;
    let m = h
        .ok(
            &c.token,
            "getChatMember",
            json!({"chat_id": c.chat_id, "user_id": outsider}),
        )
        .await;
    assert_eq!(
        (&m["status"], &m["is_member"]),
        (&json!("restricted"), &json!(false))
    );
    let link = h
        .ok(
            &c.token,
            "createChatInviteLink",
            json!({"chat_id": c.chat_id}),
        )
        .await["invite_link"]
        .as_str()
        .unwrap()
        .to_string();
    open(&h, outsider, &link).await;
    let m = h
        .ok(
            &c.token,
            "getChatMember",
            json!({"chat_id": c.chat_id, "user_id": outsider}),
        )
        .await;
    assert_eq!(
        (&m["status"], &m["is_member"]),
        (&json!("restricted"), &json!(true))
    );
    let _: frankenstein::types::ChatMember = serde_json::from_value(m).unwrap();
}

#[tokio::test]
async fn restrict_chat_member_refusals_are_telegrams() {
    let h = Harness::start().await;
    let c = chat(&h, "supergroup", full_rights()).await;
    let admin = h.user("Admin").await;
    let g = h
        .control(
            "/sandbox/groups",
            json!({"title": "Staffed", "owner": c.owner, "admins": [admin]}),
        )
        .await;
    let staffed = g["id"].as_i64().unwrap();
    h.control(
        &format!("/sandbox/groups/{staffed}/bots"),
        json!({"bot": c.bot, "status": "administrator", "rights": full_rights()}),
    )
    .await;
    let on = |chat: i64, user: i64| json!({"chat_id": chat, "user_id": user, "permissions": {}});
    for (params, error) in [
        (on(staffed, c.owner), "can't remove chat owner"),
        (on(staffed, admin), "user is an administrator of the chat"),
        (
            json!({"chat_id": staffed, "user_id": admin, "permissions": {"can_send_messages": 1}}),
            "can't parse chat permissions: Field \"can_send_messages\" must be of type Boolean",
        ),
        (
            json!({"chat_id": staffed, "user_id": admin, "permissions": "[1]"}),
            "object expected as permissions",
        ),
        (on(staffed, 0), "invalid user_id specified"),
    ] {
        assert_eq!(
            h.err(&c.token, "restrictChatMember", params).await,
            (400, format!("Bad Request: {error}"))
        );
    }
    // Banning follows the same order: the owner, then rights, then administrators.
    assert_eq!(
        h.err(
            &c.token,
            "banChatMember",
            json!({"chat_id": staffed, "user_id": admin})
        )
        .await,
        (
            400,
            "Bad Request: user is an administrator of the chat".into()
        )
    );
    for kind in ["group", "channel"] {
        let other = chat(&h, kind, full_rights()).await;
        let user = h.user("Someone").await;
        assert_eq!(
            h.err(&other.token, "restrictChatMember", on(other.chat_id, user))
                .await,
            (
                400,
                "Bad Request: method is available only for supergroups".into()
            ),
            "{kind}"
        );
    }
}

#[tokio::test]
async fn timed_bans_end_and_unanswered_join_requests_expire() {
    let h = Harness::start().await;
    let c = chat(&h, "supergroup", full_rights()).await;
    let user = h.user("Timed").await;
    let now = sandbox_now(&h).await;
    h.ok(
        &c.token,
        "banChatMember",
        json!({"chat_id": c.chat_id, "user_id": user, "until_date": now + 600}),
    )
    .await;
    assert_eq!(status(&h, &c, user).await, "kicked");
    advance(&h, 601).await;
    assert_eq!(status(&h, &c, user).await, "left", "the ban ran out");
    // A year and more is forever too.
    h.ok(
        &c.token,
        "banChatMember",
        json!({"chat_id": c.chat_id, "user_id": user, "until_date": now + 601 + 367 * 86400}),
    )
    .await;
    let m = h
        .ok(
            &c.token,
            "getChatMember",
            json!({"chat_id": c.chat_id, "user_id": user}),
        )
        .await;
    assert_eq!(m["until_date"], json!(0));

    let link = h
        .ok(
            &c.token,
            "createChatInviteLink",
            json!({"chat_id": c.chat_id, "creates_join_request": true}),
        )
        .await["invite_link"]
        .as_str()
        .unwrap()
        .to_string();
    let asker = h.user("Patient").await;
    assert_eq!(open(&h, asker, &link).await.1["result"], json!("requested"));
    advance(&h, 24 * 3600).await;
    let pending = h
        .ok(
            &c.token,
            "editChatInviteLink",
            json!({"chat_id": c.chat_id, "invite_link": link, "creates_join_request": true}),
        )
        .await;
    assert!(pending.get("pending_join_request_count").is_none());
    assert_eq!(
        h.err(
            &c.token,
            "approveChatJoinRequest",
            json!({"chat_id": c.chat_id, "user_id": asker})
        )
        .await,
        (400, "Bad Request: HIDE_REQUESTER_MISSING".into())
    );
    let groups = h.get("/sandbox/groups").await;
    let g = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == json!(c.chat_id))
        .unwrap()
        .clone();
    assert_eq!(g["join_requests"][0]["state"], json!("expired"));
    assert_eq!(
        open(&h, asker, &link).await.1["result"],
        json!("requested"),
        "an expired request can be sent again"
    );
}

#[tokio::test]
async fn link_edits_refused_by_telegram() {
    let h = Harness::start().await;
    let c = chat(&h, "supergroup", full_rights()).await;
    let primary = h
        .ok(
            &c.token,
            "exportChatInviteLink",
            json!({"chat_id": c.chat_id}),
        )
        .await;
    assert_eq!(
        h.err(
            &c.token,
            "editChatInviteLink",
            json!({"chat_id": c.chat_id, "invite_link": primary, "member_limit": 5})
        )
        .await,
        (400, "Bad Request: CHAT_INVITE_PERMANENT".into())
    );
    let theirs = h
        .control(
            &format!("/sandbox/groups/{}/invite-links", c.chat_id),
            json!({}),
        )
        .await["invite_link"]
        .as_str()
        .unwrap()
        .to_string();
    for method in ["editChatInviteLink", "revokeChatInviteLink"] {
        assert_eq!(
            h.err(
                &c.token,
                method,
                json!({"chat_id": c.chat_id, "invite_link": theirs})
            )
            .await,
            (400, "Bad Request: CHAT_ADMIN_REQUIRED".into())
        );
    }
}

#[tokio::test]
async fn basic_groups_take_join_requests_and_refuse_to_ban_outsiders() {
    let h = Harness::start().await;
    let c = chat(&h, "group", full_rights()).await;
    let stranger = h.user("Stranger").await;
    assert_eq!(
        h.err(
            &c.token,
            "banChatMember",
            json!({"chat_id": c.chat_id, "user_id": stranger})
        )
        .await,
        (400, "Bad Request: USER_NOT_PARTICIPANT".into())
    );
    assert_eq!(
        h.err(
            &c.token,
            "banChatMember",
            json!({"chat_id": c.chat_id, "user_id": c.owner})
        )
        .await,
        (400, "Bad Request: CHAT_ADMIN_REQUIRED".into())
    );
    let link = h
        .ok(
            &c.token,
            "createChatInviteLink",
            json!({"chat_id": c.chat_id, "creates_join_request": true}),
        )
        .await["invite_link"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        open(&h, stranger, &link).await.1["result"],
        json!("requested")
    );
    let reqs = drain(&h, &c.token).await;
    let reqs = of_kind(&reqs, "chat_join_request");
    assert_eq!(reqs[0]["chat"]["type"], json!("group"));
}

#[tokio::test]
async fn a_migrated_group_keeps_its_links_members_and_requests() {
    let h = Harness::start().await;
    let c = chat(&h, "group", full_rights()).await;
    let (member, asker, late) = (
        h.user("Member").await,
        h.user("Asker").await,
        h.user("Late").await,
    );
    h.control(
        &format!("/sandbox/groups/{}/members", c.chat_id),
        json!({"user_id": member}),
    )
    .await;
    let plain = h
        .ok(
            &c.token,
            "createChatInviteLink",
            json!({"chat_id": c.chat_id, "name": "plain"}),
        )
        .await["invite_link"]
        .as_str()
        .unwrap()
        .to_string();
    let approval = h
        .ok(
            &c.token,
            "createChatInviteLink",
            json!({"chat_id": c.chat_id, "creates_join_request": true}),
        )
        .await["invite_link"]
        .as_str()
        .unwrap()
        .to_string();
    open(&h, asker, &approval).await;
    let to = h
        .control(&format!("/sandbox/groups/{}/migrate", c.chat_id), json!({}))
        .await["migrate_to_chat_id"]
        .as_i64()
        .unwrap();
    let sg = Chat {
        token: c.token.clone(),
        bot: c.bot.clone(),
        chat_id: to,
        owner: c.owner,
    };
    assert_eq!(status(&h, &sg, member).await, "member");
    let (code, joined) = open(&h, late, &plain).await;
    assert_eq!(code, 200);
    assert_eq!(
        joined["chat_id"],
        json!(to),
        "the old link leads to the supergroup"
    );
    h.ok(
        &c.token,
        "approveChatJoinRequest",
        json!({"chat_id": to, "user_id": asker}),
    )
    .await;
    assert_eq!(status(&h, &sg, asker).await, "member");
    let edited = h
        .ok(
            &c.token,
            "editChatInviteLink",
            json!({"chat_id": to, "invite_link": plain, "name": "kept"}),
        )
        .await;
    assert_eq!(edited["name"], json!("kept"));
}

/// The chat page's overview and its form: what a user sees and does without a browser.
#[tokio::test]
async fn the_page_shows_links_and_requests_and_opens_links() {
    let h = Harness::start().await;
    let c = chat(&h, "supergroup", full_rights()).await;
    let link = h
        .ok(
            &c.token,
            "createChatInviteLink",
            json!({"chat_id": c.chat_id, "creates_join_request": true, "name": "gate"}),
        )
        .await["invite_link"]
        .as_str()
        .unwrap()
        .to_string();
    let user = h.user("Knocker").await;
    let submit = |invite: String| {
        let body =
            serde_urlencoded::to_string([("user", user.to_string()), ("invite_link", invite)])
                .unwrap();
        h.http
            .post(format!("{}/ui/join", h.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let page = submit(link.clone()).await.unwrap().text().await.unwrap();
    assert!(page.contains("Join request sent"), "{page}");
    assert!(page.contains("Pending join requests") && page.contains("Knocker"));
    assert!(page.contains("gate") && page.contains("needs approval"));
    assert!(page.contains("Owner <span class=\"status\">creator</span>"));
    let page = submit("https://t.me/+missing".into())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("no such invite link"), "{page}");
}
