//! `relaygram gated-chats …` and `relaygram entitlements …`: the operator's view of paid
//! access (works on the store directly, with admin rights, like every operator command).
//! Output is tab-separated lines; `--json` prints what the API answers instead.

use std::collections::BTreeMap;

use clap::{ArgGroup, Subcommand};
use serde::Serialize;

use super::api::{
    EntitlementList, EntitlementView, GatedChatList, GatedChatView, entitlement_view,
};
use super::ledger::{Change, GrantInput};
use super::service::GatedChatInput;
use super::sweep::Swept;
use crate::cli::page::PageArgs;
use crate::schedules::occurrence::Interval;
use crate::services::{Principal, ServiceError, Services};
use crate::store::{
    EntitlementFilter, GateStatus, GatedChatRecord, JoinMode, Listed, MembershipFilter,
    MembershipState, Page,
};

/// `relaygram gated-chats …`
#[derive(Debug, Subcommand)]
pub enum GatedChatsCommand {
    /// Bind a supergroup or channel the bot administers (with can_invite_users and
    /// can_restrict_members), as `POST /v1/gated-chats`.
    Add {
        /// The Telegram chat id (`-100…`).
        #[arg(long, allow_hyphen_values = true)]
        chat_id: i64,
        /// The administering bot (`bot_…`); optional when the tenant has one.
        #[arg(long)]
        bot: Option<String>,
        /// Owning tenant; default: the bot's, or the only tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Name (default: the chat's title).
        #[arg(long)]
        name: Option<String>,
        /// How people get in.
        #[arg(long, default_value = "request", value_parser = ["request", "invite", "stars_subscription"])]
        join_mode: String,
        /// Access kept after an entitlement ends (`1d`, `12h`; default none).
        #[arg(long)]
        grace: Option<String>,
        /// Reminders before the end, comma-separated (`3d,1d`).
        #[arg(long)]
        reminders: Option<String>,
        /// Remove members who hold no entitlement.
        #[arg(long)]
        remove_unentitled: bool,
        /// Where people get access (said when a request is declined).
        #[arg(long)]
        access_url: Option<String>,
        /// Print the gated chat as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List gated chats (every tenant's, without --tenant).
    List {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
        /// Print the page as JSON (as `GET /v1/gated-chats`).
        #[arg(long)]
        json: bool,
        /// Paging.
        #[command(flatten)]
        page: PageArgs,
    },
    /// One gated chat: its settings and how many memberships are in each state.
    Show {
        /// Gated chat id (`gc_…`).
        id: String,
        /// Print it as JSON (the API's gated chat with `memberships`: counts per state).
        #[arg(long)]
        json: bool,
    },
    /// Bring a gated chat in line now (as `POST /v1/gated-chats/{id}/sync`) and print what
    /// that did.
    Sync {
        /// Gated chat id (`gc_…`).
        id: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `relaygram entitlements …`
#[derive(Debug, Subcommand)]
pub enum EntitlementsCommand {
    /// Grant access to gated chats (as `POST /v1/entitlements`) and print the entitlement
    /// with each chat's personal invite link.
    #[command(group(ArgGroup::new("holder").required(true).multiple(true).args(["external_id", "telegram_user_id"])))]
    Grant {
        /// A gated chat it opens (`gc_…`); repeat for several.
        #[arg(long = "gated-chat", value_name = "ID", required = true)]
        gated_chats: Vec<String>,
        /// The app user.
        #[arg(long)]
        external_id: Option<String>,
        /// The Telegram user.
        #[arg(long)]
        telegram_user_id: Option<i64>,
        /// How long, from now: `30d`, `12h`. Without it and --ends-at: forever.
        #[arg(long, conflicts_with = "ends_at")]
        duration: Option<String>,
        /// Until (RFC 3339).
        #[arg(long)]
        ends_at: Option<String>,
        /// Makes the grant apply once (your order id): the same grant again changes nothing.
        #[arg(long)]
        source_key: Option<String>,
        /// Why (kept in the ledger).
        #[arg(long)]
        reason: Option<String>,
        /// The tenant; default: the gated chat's.
        #[arg(long)]
        tenant: Option<String>,
        /// Print the entitlement as JSON (as the API answers).
        #[arg(long)]
        json: bool,
    },
    /// List entitlements.
    List {
        /// One app user's.
        #[arg(long)]
        external_id: Option<String>,
        /// Those opening this gated chat.
        #[arg(long = "gated-chat", value_name = "ID")]
        gated_chat: Option<String>,
        /// Only those in force now (`true`) or not (`false`), grace aside.
        #[arg(long)]
        active: Option<bool>,
        /// The tenant; default: the gated chat's, or the only tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Print the page as JSON (as `GET /v1/entitlements`).
        #[arg(long)]
        json: bool,
        /// Paging.
        #[command(flatten)]
        page: PageArgs,
    },
    /// One entitlement with its chats and ledger.
    Show {
        /// Entitlement id (`ent_…`).
        id: String,
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an entitlement: access ends now, members are removed at once.
    Revoke {
        /// Entitlement id (`ent_…`).
        id: String,
        /// Why (kept in the ledger).
        #[arg(long)]
        reason: Option<String>,
        /// Makes the revocation apply once.
        #[arg(long)]
        source_key: Option<String>,
        /// Print the entitlement as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn explain(e: ServiceError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// `30d`, `12h`, `30m` as seconds, the error naming the option.
fn span_seconds(option: &str, text: &str) -> anyhow::Result<i64> {
    Interval::parse(text.trim())
        .map(|i| i.approx_millis() / 1000)
        .map_err(|_| {
            anyhow::anyhow!("{option}: {text:?} is not a duration such as 30d, 12h or 30m")
        })
}

fn parse_time(option: &str, text: &str) -> anyhow::Result<i64> {
    text.trim()
        .parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|_| {
            anyhow::anyhow!(
                "{option}: {text:?} is not an RFC 3339 time such as 2026-12-31T09:00:00Z"
            )
        })
}

fn span_text(seconds: i64) -> String {
    match seconds {
        0 => "0".into(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// The tenant a command acts for: the one asked for (checked), else `inferred` (a gated
/// chat's or bot's), else the only tenant there is.
async fn tenant_for(
    services: &Services,
    asked: Option<&str>,
    inferred: Option<String>,
) -> anyhow::Result<String> {
    let me = Principal::Operator;
    if let Some(t) = asked {
        return services
            .acting_tenant(&me, Some(t))
            .await
            .map_err(|e| match e {
                ServiceError::NotFound { .. } => anyhow::anyhow!("--tenant: no tenant {t}"),
                e => explain(e),
            });
    }
    if let Some(t) = inferred {
        return Ok(t);
    }
    let tenants = services
        .store
        .list_tenants(None, &Page::first(2))
        .await
        .map_err(|e| explain(e.into()))?
        .items;
    match tenants.as_slice() {
        [only] => Ok(only.id.clone()),
        [] => anyhow::bail!("there is no tenant yet: relaygram tenants create --name …"),
        _ => anyhow::bail!("there are several tenants: say which with --tenant"),
    }
}

async fn gated_chat(services: &Services, id: &str) -> anyhow::Result<GatedChatRecord> {
    services
        .gated_chat(&Principal::Operator, id)
        .await
        .map_err(explain)
}

fn status_text(g: &GatedChatRecord) -> String {
    match (g.status, g.status_reason.as_deref()) {
        (GateStatus::Degraded, Some(reason)) => format!("degraded ({reason})"),
        (status, _) => status.as_str().to_string(),
    }
}

/// `id  tenant  name  chat_id  type  join_mode  status`.
fn print_gated_chat(g: &GatedChatRecord) {
    println!(
        "{}\t{}\t{}\t{}\t{}\t{}\t{}",
        g.id,
        g.tenant_id,
        g.name,
        g.chat_id,
        g.chat_type.as_str(),
        g.join_mode.as_str(),
        status_text(g)
    );
}

/// Memberships of a gated chat per state (every state, zero included).
async fn membership_counts(
    services: &Services,
    g: &GatedChatRecord,
) -> anyhow::Result<BTreeMap<&'static str, u64>> {
    use MembershipState::*;
    let mut counts: BTreeMap<&'static str, u64> = [
        Invited, Requested, Member, Removing, Removed, Left, Declined,
    ]
    .into_iter()
    .map(|s| (s.as_str(), 0))
    .collect();
    let filter = MembershipFilter {
        gated_chat_id: Some(g.id.clone()),
        ..MembershipFilter::default()
    };
    let mut page = Page::first(200);
    loop {
        let listed = services
            .store
            .list_memberships(&g.tenant_id, &filter, &page)
            .await
            .map_err(|e| explain(e.into()))?;
        for m in &listed.items {
            *counts.entry(m.state.as_str()).or_default() += 1;
        }
        match listed.next_cursor {
            Some(next) => page.after = Some(next),
            None => break,
        }
    }
    Ok(counts)
}

fn holder_text(e: &EntitlementView) -> String {
    match (&e.external_id, e.telegram_user_id) {
        (Some(x), Some(u)) => format!("{x} (telegram {u})"),
        (Some(x), None) => x.clone(),
        (None, Some(u)) => format!("telegram {u}"),
        (None, None) => "-".into(),
    }
}

fn snake(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "-".into(),
    }
}

/// `id  holder  state  starts_at  ends_at|forever  chats  source`, and with `chats`, one
/// indented line per chat: `gated_chat_id  state  membership_state  invite_link`.
fn print_entitlement(e: &EntitlementView, chats: bool) {
    let mut state = snake(&e.state);
    if e.cancel_at_period_end && e.cancelled_at.is_none() && e.revoked_at.is_none() {
        state.push_str(" (cancels at period end)");
    }
    println!(
        "{}\t{}\t{state}\t{}\t{}\t{}\t{}",
        e.id,
        holder_text(e),
        e.starts_at,
        e.ends_at.as_deref().unwrap_or("forever"),
        e.gated_chat_ids.join(","),
        e.source
    );
    if chats {
        for c in &e.chats {
            println!(
                "  {}\t{}\t{}\t{}",
                c.gated_chat_id,
                snake(&c.state),
                c.membership_state.map_or("-", |m| m.as_str()),
                c.invite_link.as_deref().unwrap_or("-")
            );
        }
    }
}

fn print_cursor(next: Option<&str>) {
    if let Some(next) = next {
        eprintln!("more: --after {next}");
    }
}

fn print_swept(g: &GatedChatRecord, s: &Swept) {
    println!(
        "synced {}: {} entitlements brought in line, {} members re-checked, {} removals queued, {} reminders queued, {} expired, {} member jobs settled",
        g.id, s.synced, s.rechecked, s.removals_queued, s.reminded, s.expired, s.jobs_settled
    );
}

/// Every gated chat of every tenant, paged by id like a store list.
async fn all_gated_chats(
    services: &Services,
    page: &Page,
) -> anyhow::Result<Listed<GatedChatRecord>> {
    let mut all = services
        .store
        .all_gated_chats()
        .await
        .map_err(|e| explain(e.into()))?;
    all.sort_by(|a, b| a.id.cmp(&b.id));
    let limit = page.limit.clamp(1, 200) as usize;
    let mut items: Vec<GatedChatRecord> = all
        .into_iter()
        .filter(|g| {
            page.after
                .as_deref()
                .is_none_or(|after| g.id.as_str() > after)
        })
        .take(limit + 1)
        .collect();
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|g| g.id.clone())
    } else {
        None
    };
    Ok(Listed { items, next_cursor })
}

/// Runs a `gated-chats` subcommand.
pub async fn run_gated_chats(
    services: &Services,
    command: GatedChatsCommand,
) -> anyhow::Result<()> {
    let me = Principal::Operator;
    match command {
        GatedChatsCommand::Add {
            chat_id,
            bot,
            tenant,
            name,
            join_mode,
            grace,
            reminders,
            remove_unentitled,
            access_url,
            json,
        } => {
            let join_mode: JoinMode = join_mode
                .parse()
                .map_err(|_| anyhow::anyhow!("--join-mode: unknown mode {join_mode:?}"))?;
            let grace_seconds = grace
                .as_deref()
                .map(|g| span_seconds("--grace", g))
                .transpose()?
                .unwrap_or(0);
            let reminders = reminders
                .as_deref()
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(|r| span_seconds("--reminders", r))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let bot_tenant = match &bot {
                Some(id) if tenant.is_none() => Some(
                    services
                        .store
                        .get_bot(id)
                        .await
                        .map_err(|e| explain(e.into()))?
                        .ok_or_else(|| anyhow::anyhow!("--bot: bot {id} not found"))?
                        .tenant_id,
                ),
                _ => None,
            };
            let tenant = tenant_for(services, tenant.as_deref(), bot_tenant).await?;
            let g = services
                .create_gated_chat(
                    &tenant,
                    GatedChatInput {
                        bot_id: bot,
                        chat_id,
                        name,
                        join_mode,
                        grace_seconds,
                        reminders,
                        remove_unentitled,
                        unentitled_grace_seconds: 0,
                        access_url: access_url.filter(|u| !u.is_empty()),
                    },
                )
                .await
                .map_err(explain)?;
            if json {
                print_json(&GatedChatView::from(g))?;
            } else {
                print_gated_chat(&g);
            }
        }
        GatedChatsCommand::List { tenant, json, page } => {
            let listed = match tenant {
                Some(t) => {
                    let t = tenant_for(services, Some(&t), None).await?;
                    services
                        .store
                        .list_gated_chats(&t, &page.page())
                        .await
                        .map_err(|e| explain(e.into()))?
                }
                None => all_gated_chats(services, &page.page()).await?,
            };
            if json {
                print_json(&GatedChatList {
                    data: listed.items.into_iter().map(Into::into).collect(),
                    next_cursor: listed.next_cursor,
                })?;
            } else {
                for g in &listed.items {
                    print_gated_chat(g);
                }
                print_cursor(listed.next_cursor.as_deref());
            }
        }
        GatedChatsCommand::Show { id, json } => {
            let g = gated_chat(services, &id).await?;
            let counts = membership_counts(services, &g).await?;
            if json {
                let mut value = serde_json::to_value(GatedChatView::from(g))?;
                value["memberships"] = serde_json::to_value(&counts)?;
                print_json(&value)?;
            } else {
                print_gated_chat(&g);
                println!("bot\t{}", g.bot_id);
                println!("title\t{}", g.title.as_deref().unwrap_or("-"));
                println!("grace\t{}", span_text(g.grace_seconds));
                let reminders: Vec<String> = g.reminders.iter().map(|r| span_text(*r)).collect();
                println!(
                    "reminders\t{}",
                    if reminders.is_empty() {
                        "none".into()
                    } else {
                        reminders.join(",")
                    }
                );
                println!(
                    "remove unentitled\t{}",
                    if g.remove_unentitled {
                        format!("yes, after {}", span_text(g.unentitled_grace_seconds))
                    } else {
                        "no".into()
                    }
                );
                println!("access url\t{}", g.access_url.as_deref().unwrap_or("-"));
                let total: u64 = counts.values().sum();
                let by_state: Vec<String> = counts
                    .iter()
                    .filter(|(_, n)| **n > 0)
                    .map(|(s, n)| format!("{s} {n}"))
                    .collect();
                println!(
                    "memberships\t{total}{}",
                    if by_state.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", by_state.join(", "))
                    }
                );
            }
        }
        GatedChatsCommand::Sync { id, json } => {
            let swept = services.sync_gated_chat(&me, &id).await.map_err(explain)?;
            let g = gated_chat(services, &id).await?;
            if json {
                print_json(&swept)?;
            } else {
                print_swept(&g, &swept);
                print_gated_chat(&g);
            }
        }
    }
    Ok(())
}

/// Runs an `entitlements` subcommand.
pub async fn run_entitlements(
    services: &Services,
    command: EntitlementsCommand,
) -> anyhow::Result<()> {
    let me = Principal::Operator;
    match command {
        EntitlementsCommand::Grant {
            gated_chats,
            external_id,
            telegram_user_id,
            duration,
            ends_at,
            source_key,
            reason,
            tenant,
            json,
        } => {
            // Everything the command line can check is checked before anything is stored.
            let span = duration
                .as_deref()
                .map(|d| span_seconds("--duration", d))
                .transpose()?;
            let until = ends_at
                .as_deref()
                .map(|t| parse_time("--ends-at", t))
                .transpose()?;
            if let Some(k) = &source_key
                && (k.is_empty() || k.len() > 200)
            {
                anyhow::bail!("--source-key: must be 1 to 200 characters");
            }
            let mut chats = Vec::new();
            for id in &gated_chats {
                chats.push(gated_chat(services, id).await?);
            }
            let inferred = chats.first().map(|g| g.tenant_id.clone());
            if tenant.is_none()
                && let Some(other) = chats
                    .iter()
                    .find(|g| Some(&g.tenant_id) != inferred.as_ref())
            {
                anyhow::bail!(
                    "--gated-chat: {} belongs to another tenant than {}",
                    other.id,
                    gated_chats[0]
                );
            }
            let tenant = tenant_for(services, tenant.as_deref(), inferred).await?;
            let input = GrantInput {
                external_id,
                telegram_user_id,
                gated_chat_ids: gated_chats,
                starts_at: None,
                ends_at: until,
                // A duration stays a duration in the ledger: the same command run again
                // later is the same grant.
                duration_ms: span.map(|s| s * 1000),
                source: "api".into(),
                source_key,
                reason,
            };
            let (entitlement, replayed) = match services.grant_entitlement(&tenant, input).await {
                Ok(out) => (out.entitlement, out.replayed),
                Err(e) => return Err(explain(e)),
            };
            let view = entitlement_view(services, entitlement, replayed, true)
                .await
                .map_err(explain)?;
            if json {
                print_json(&view)?;
            } else {
                if replayed {
                    eprintln!("granted before with this source key: nothing changed");
                }
                print_entitlement(&view, true);
            }
        }
        EntitlementsCommand::List {
            external_id,
            gated_chat: chat,
            active,
            tenant,
            json,
            page,
        } => {
            let inferred = match &chat {
                Some(id) if tenant.is_none() => Some(gated_chat(services, id).await?.tenant_id),
                _ => None,
            };
            let tenant = tenant_for(services, tenant.as_deref(), inferred).await?;
            let filter = EntitlementFilter {
                external_id,
                gated_chat_id: chat,
                active,
                now: services.clock.now_millis(),
            };
            let listed = services
                .store
                .list_entitlements(&tenant, &filter, &page.page())
                .await
                .map_err(|e| explain(e.into()))?;
            let mut data = Vec::new();
            for e in listed.items {
                data.push(
                    entitlement_view(services, e, false, false)
                        .await
                        .map_err(explain)?,
                );
            }
            if json {
                print_json(&EntitlementList {
                    data,
                    next_cursor: listed.next_cursor,
                })?;
            } else {
                for e in &data {
                    print_entitlement(e, false);
                }
                print_cursor(listed.next_cursor.as_deref());
            }
        }
        EntitlementsCommand::Show { id, json } => {
            let e = services.entitlement(&me, &id).await.map_err(explain)?;
            let view = entitlement_view(services, e, false, true)
                .await
                .map_err(explain)?;
            if json {
                print_json(&view)?;
            } else {
                print_entitlement(&view, true);
                for x in &view.entries {
                    println!(
                        "  {}\t{}\t{}\t{}\t{}\t{}",
                        x.created_at,
                        snake(&x.kind),
                        x.source,
                        x.source_key,
                        x.ends_at.as_deref().unwrap_or("-"),
                        x.reason.as_deref().unwrap_or("")
                    );
                }
            }
        }
        EntitlementsCommand::Revoke {
            id,
            reason,
            source_key,
            json,
        } => {
            let out = services
                .change_entitlement(&me, &id, Change::Revoke, source_key, reason)
                .await
                .map_err(explain)?;
            let replayed = out.replayed;
            let view = entitlement_view(services, out.entitlement, replayed, true)
                .await
                .map_err(explain)?;
            if json {
                print_json(&view)?;
            } else {
                if replayed {
                    eprintln!("revoked before with this source key: nothing changed");
                }
                println!("revoked {}", view.id);
                print_entitlement(&view, true);
            }
        }
    }
    Ok(())
}
