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
