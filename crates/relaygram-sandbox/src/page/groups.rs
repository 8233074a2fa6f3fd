//! The page's overview of every group and channel: who is in it with which status, its
//! invite links and pending join requests, and a form for the chosen user to open a link
//! (as tapping it in a Telegram app would).

use serde_json::Value;

use super::esc;
use crate::membership::link_json;
use crate::world::{Group, InviteLink, MemberStatus, RequestState, World};

/// The section below the chat; `user` is who would open links.
pub fn panel(w: &World, user: Option<i64>, bot: Option<i64>) -> String {
    let mut out = String::from("<section id=\"groups\"><h2>Groups and channels</h2>");
    if let Some(u) = user {
        let bot_field = bot
            .map(|b| format!("<input type=\"hidden\" name=\"bot\" value=\"{b}\">"))
            .unwrap_or_default();
        out.push_str(&format!(
            "<form method=\"post\" action=\"/ui/join\" id=\"join-form\" class=\"join\">\
             <input type=\"hidden\" name=\"user\" value=\"{u}\">{bot_field}\
             <input id=\"invite-link\" name=\"invite_link\" placeholder=\"https://t.me/+…\" required>\
             <button id=\"join\" type=\"submit\">Open invite link</button></form>"
        ));
    }
    let live: Vec<&Group> = w
        .groups
        .values()
        .filter(|g| g.migrated_to.is_none())
        .collect();
    if live.is_empty() {
        out.push_str(
            "<p class=\"meta\">None yet: <code>POST /sandbox/groups</code> makes one.</p>",
        );
    }
    for g in live {
        out.push_str(&group_card(w, g, user, bot));
    }
    out.push_str("</section>");
    out
}

fn name_of(w: &World, id: i64) -> String {
    w.users
        .get(&id)
        .map(|u| u.first_name.clone())
        .or_else(|| w.bots.get(&id).map(|b| format!("@{}", b.username)))
        .unwrap_or_else(|| id.to_string())
}

/// A status in words, with what qualifies it.
fn status_words(s: &MemberStatus) -> String {
    match s {
        MemberStatus::Member { until } if *until != 0 => {
            format!("member, subscribed until {until}")
        }
        MemberStatus::Restricted {
            is_member, until, ..
        } => {
            let mut words = String::from("restricted");
            if !is_member {
                words.push_str(", not in the chat");
            }
            if *until != 0 {
                words.push_str(&format!(", until {until}"));
            }
            words
        }
        MemberStatus::Kicked { until } if *until != 0 => format!("banned until {until}"),
        MemberStatus::Kicked { .. } => "banned".into(),
        other => other.as_str().into(),
    }
}

fn group_card(w: &World, g: &Group, user: Option<i64>, bot: Option<i64>) -> String {
    let mut out = format!(
        "<div class=\"group-card\" id=\"group-{}\"><h3>{} <span class=\"meta\">{} · {}</span></h3><ul class=\"members\">",
        g.id.unsigned_abs(),
        esc(&g.title),
        g.kind.as_str(),
        g.id
    );
    for (id, s) in &g.members {
        out.push_str(&format!(
            "<li>{} <span class=\"status\">{}</span></li>",
            esc(&name_of(w, *id)),
            esc(&status_words(s))
        ));
    }
    for (id, m) in &g.bots {
        out.push_str(&format!(
            "<li>{} <span class=\"status\">{}</span></li>",
            esc(&name_of(w, *id)),
            esc(&m.status)
        ));
    }
    out.push_str("</ul>");
    if !g.invite_links.is_empty() {
        out.push_str("<h4>Invite links</h4><ul class=\"links\">");
        for l in &g.invite_links {
            out.push_str(&link_item(w, g, l, user, bot));
        }
        out.push_str("</ul>");
    }
    let pending: Vec<_> = g
        .join_requests
        .iter()
        .filter(|(_, r)| r.state == RequestState::Pending)
        .collect();
    if !pending.is_empty() {
        out.push_str("<h4>Pending join requests</h4><ul class=\"requests\">");
        for (id, r) in pending {
            out.push_str(&format!(
                "<li>{} <span class=\"meta\">since {} via {}</span></li>",
                esc(&name_of(w, *id)),
                r.date,
                esc(&r.link)
            ));
        }
        out.push_str("</ul>");
    }
    out.push_str("</div>");
    out
}

fn link_item(w: &World, g: &Group, l: &InviteLink, user: Option<i64>, bot: Option<i64>) -> String {
    // The ChatInviteLink as its creator sees it: the whole URL and every field.
    let v = link_json(w, g, l, l.creator);
    let mut notes = vec![format!("by {}", name_of(w, l.creator))];
    if let Some(n) = v["name"].as_str() {
        notes.push(format!("“{n}”"));
    }
    for (field, word) in [
        ("is_primary", "primary"),
        ("creates_join_request", "needs approval"),
        ("is_revoked", "revoked"),
    ] {
        if v[field] == Value::Bool(true) {
            notes.push(word.into());
        }
    }
    if l.expired(w.now()) && !l.is_revoked {
        notes.push("expired".into());
    }
    if let Some(limit) = v["member_limit"].as_i64() {
        notes.push(format!("up to {limit} members"));
    }
    if let Some(sub) = l.subscription {
        notes.push(format!(
            "{} Stars every {} days",
            sub.price,
            sub.period / 86400
        ));
    }
    let open = match user {
        Some(u) if !l.expired(w.now()) => {
            let bot_field = bot
                .map(|b| format!("<input type=\"hidden\" name=\"bot\" value=\"{b}\">"))
                .unwrap_or_default();
            format!(
                " <form method=\"post\" action=\"/ui/join\" class=\"inline\">\
                 <input type=\"hidden\" name=\"user\" value=\"{u}\">{bot_field}\
                 <input type=\"hidden\" name=\"invite_link\" value=\"{}\">\
                 <button type=\"submit\">Open</button></form>",
                esc(&l.url)
            )
        }
        _ => String::new(),
    };
    format!(
        "<li><code>{}</code> <span class=\"meta\">{}</span>{open}</li>",
        esc(&l.url),
        esc(&notes.join(" · "))
    )
}
