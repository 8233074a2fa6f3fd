//! Broadcasts (large sends as jobs: progress, ETA, pause, resume, cancel), per-bot
//! statistics and per-bot limits.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::pacing::Limits;
use crate::config::SendLimits;
use crate::ids::rfc3339;
use crate::services::{ServiceError, ServiceResult, Services};
use crate::store::{BotLimitsRecord, BroadcastRecord, Listed, MessageFilter, Page};

/// A broadcast and its progress.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "bc_01jd8y3k7q9x4m2n5p6r7s8t9v", "bot_id": "bot_01jd8y3k7q9x4m2n5p6r7s8t9x",
    "request_id": "req_01jd8y3k7q9x4m2n5p6r7s8t9w", "status": "running", "total": 1000, "sent": 400,
    "failed": 3, "remaining": 597, "counts": {"sent": 400, "failed": 3, "queued": 597}, "eta_seconds": 19.9,
    "created_at": "2026-11-21T05:00:00Z", "updated_at": "2026-11-21T05:00:00Z"}))]
pub struct BroadcastView {
    /// Broadcast id.
    pub id: String,
    /// Sending bot.
    pub bot_id: String,
    /// The request (its content).
    pub request_id: String,
    /// `running`, `paused` or `cancelled` (a running broadcast with nothing remaining is done).
    pub status: String,
    /// Messages in it.
    pub total: i64,
    /// Delivered.
    pub sent: i64,
    /// Failed, dead or unknown.
    pub failed: i64,
    /// Still to go (queued, paused or in flight).
    pub remaining: i64,
    /// Messages per state.
    pub counts: std::collections::BTreeMap<String, i64>,
    /// Seconds until done at the bot's limit (none when paused, done or unlimited).
    pub eta_seconds: Option<f64>,
    /// Creation time.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
}

/// A page of broadcasts (progress only on `GET /v1/broadcasts/{id}`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BroadcastList {
    /// Broadcasts, oldest first.
    pub data: Vec<BroadcastView>,
    /// Cursor for the next page.
    pub next_cursor: Option<String>,
}

/// Delivery counters: messages per state, 429s and retries.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
pub struct CountsView {
    /// Waiting to be sent (including `send_at` in the future and retries).
    pub queued: i64,
    /// In flight.
    pub sending: i64,
    /// Delivered.
    pub sent: i64,
    /// Skipped by a throttle key.
    pub throttled: i64,
    /// Refused by Telegram (blocked, bad request…).
    pub failed: i64,
    /// Out of retries.
    pub dead: i64,
    /// Outcome unknown (response lost).
    pub unknown: i64,
    /// Paused (broadcasts).
    pub paused: i64,
    /// Cancelled (broadcasts).
    pub cancelled: i64,
    /// 429s received.
    pub rate_limited: i64,
    /// Retries scheduled after transient failures.
    pub retries: i64,
}

impl CountsView {
    fn add(&mut self, other: &CountsView) {
        for (mine, theirs) in [
            (&mut self.queued, other.queued),
            (&mut self.sending, other.sending),
            (&mut self.sent, other.sent),
            (&mut self.throttled, other.throttled),
            (&mut self.failed, other.failed),
            (&mut self.dead, other.dead),
            (&mut self.unknown, other.unknown),
            (&mut self.paused, other.paused),
            (&mut self.cancelled, other.cancelled),
            (&mut self.rate_limited, other.rate_limited),
            (&mut self.retries, other.retries),
        ] {
            *mine += theirs;
        }
    }
}

/// One bot's counters.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
pub struct BotStatsView {
    /// The bot.
    pub bot_id: String,
    /// Its counters.
    #[serde(flatten)]
    pub counts: CountsView,
}

/// `GET /v1/stats`: counters of the matching messages accepted in the window.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"tenant_id": "ten_01jd8y3k7q9x4m2n5p6r7s8t9v", "since": "2026-11-21T00:00:00Z",
    "until": "2026-11-22T00:00:00Z", "totals": {"queued": 0, "sending": 0, "sent": 41, "throttled": 3,
    "failed": 1, "dead": 0, "unknown": 0, "paused": 0, "cancelled": 0, "rate_limited": 0, "retries": 2},
    "bots": [{"bot_id": "bot_01jd8y3k7q9x4m2n5p6r7s8t9x", "queued": 0, "sending": 0, "sent": 41,
    "throttled": 3, "failed": 1, "dead": 0, "unknown": 0, "paused": 0, "cancelled": 0,
    "rate_limited": 0, "retries": 2}]}))]
pub struct StatsView {
    /// The tenant counted (none: every tenant, for an admin key without `tenant_id`).
    pub tenant_id: Option<String>,
    /// Window start (accepted at or after), when given.
    pub since: Option<String>,
    /// Window end (accepted before), when given.
    pub until: Option<String>,
    /// The sum over every bot.
    pub totals: CountsView,
    /// One entry per bot that has matching messages.
    pub bots: Vec<BotStatsView>,
}

/// A bot's limits: its own (null = the deployment's default) and the effective ones.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct BotLimitsBody {
    /// Messages per second for the bot (0 = no limit; up to 1000 with paid broadcasts).
    #[serde(default)]
    pub per_bot_per_second: Option<f64>,
    /// Messages per second to one private chat.
    #[serde(default)]
    pub per_chat_per_second: Option<f64>,
    /// Messages per minute to one group.
    #[serde(default)]
    pub per_group_per_minute: Option<f64>,
}

/// A bot's limits.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BotLimitsView {
    /// The bot.
    pub bot_id: String,
    /// Its own settings (null = default).
    pub own: BotLimitsBody,
    /// What its sender keeps to.
    pub effective: BotLimitsBody,
}

fn view(b: BroadcastRecord, limits: Option<Limits>) -> BroadcastView {
    let counts: std::collections::BTreeMap<String, i64> = b.counts.into_iter().collect();
    let get = |k: &str| counts.get(k).copied().unwrap_or(0);
    let sent = get("sent");
    let failed = get("failed") + get("dead") + get("unknown");
    let remaining = get("queued") + get("paused") + get("sending");
    let eta_seconds = match (b.status.as_str(), limits) {
        ("running", Some(l)) if remaining > 0 => l.seconds_for(remaining),
        _ => None,
    };
    BroadcastView {
        id: b.id,
        bot_id: b.bot_id,
        request_id: b.request_id,
        status: b.status,
        total: b.total,
        sent,
        failed,
        remaining,
        counts,
        eta_seconds,
        created_at: rfc3339(b.created_at),
        updated_at: rfc3339(b.updated_at),
    }
}

impl Services {
    async fn effective_limits(&self, defaults: &SendLimits, bot_id: &str) -> ServiceResult<Limits> {
        let own = self.store.get_bot_limits(bot_id).await?;
        Ok(Limits::resolve(defaults, &own))
    }

    /// One broadcast with its progress and ETA.
    pub async fn get_broadcast(
        &self,
        tenant_id: &str,
        id: &str,
        defaults: &SendLimits,
    ) -> ServiceResult<BroadcastView> {
        let b = self
            .store
            .get_broadcast(tenant_id, id)
            .await?
            .ok_or_else(|| ServiceError::NotFound {
                kind: "broadcast",
                id: id.to_string(),
            })?;
        let limits = self.effective_limits(defaults, &b.bot_id).await?;
        Ok(view(b, Some(limits)))
    }

    /// A tenant's broadcasts.
    pub async fn list_broadcasts(
        &self,
        tenant_id: &str,
        page: &Page,
    ) -> ServiceResult<BroadcastList> {
        let Listed { items, next_cursor } = self.store.list_broadcasts(tenant_id, page).await?;
        Ok(BroadcastList {
            data: items.into_iter().map(|b| view(b, None)).collect(),
            next_cursor,
        })
    }

    /// Pauses (`paused`), resumes (`running`) or cancels (`cancelled`) a broadcast.
    pub async fn control_broadcast(
        &self,
        tenant_id: &str,
        id: &str,
        to: &str,
        defaults: &SendLimits,
    ) -> ServiceResult<BroadcastView> {
        let current = self.get_broadcast(tenant_id, id, defaults).await?;
        if !self
            .store
            .set_broadcast_status(id, to, self.clock.now_millis())
            .await?
        {
            return Err(ServiceError::Conflict(format!(
                "broadcast {id} is {}; it cannot become {to}",
                current.status
            )));
        }
        super::sender::wake();
        self.get_broadcast(tenant_id, id, defaults).await
    }

    /// Counters of the messages matching `filter`, in total and per bot (every tenant's
    /// with `every_tenant`).
    pub async fn delivery_stats(
        &self,
        filter: &MessageFilter,
        every_tenant: bool,
    ) -> ServiceResult<StatsView> {
        let stats = self.store.delivery_stats(filter, every_tenant).await?;
        let bots: Vec<BotStatsView> = stats
            .into_iter()
            .map(|s| {
                let mut v = CountsView {
                    rate_limited: s.rate_limited,
                    retries: s.retries,
                    ..CountsView::default()
                };
                for (status, n) in s.counts {
                    let slot = match status.as_str() {
                        "queued" => &mut v.queued,
                        "sending" => &mut v.sending,
                        "sent" => &mut v.sent,
                        "throttled" => &mut v.throttled,
                        "failed" => &mut v.failed,
                        "dead" => &mut v.dead,
                        "unknown" => &mut v.unknown,
                        "paused" => &mut v.paused,
                        _ => &mut v.cancelled,
                    };
                    *slot += n;
                }
                BotStatsView {
                    bot_id: s.bot_id,
                    counts: v,
                }
            })
            .collect();
        let mut totals = CountsView::default();
        for b in &bots {
            totals.add(&b.counts);
        }
        Ok(StatsView {
            tenant_id: (!every_tenant).then(|| filter.tenant_id.clone()),
            since: filter.since.map(rfc3339),
            until: filter.until.map(rfc3339),
            totals,
            bots,
        })
    }

    /// The per-bot counters of [`Self::delivery_stats`] (every tenant) in Prometheus text,
    /// read from the store at scrape time so they match `GET /v1/stats` exactly and hold
    /// across restarts and instances. Empty (logged) when the store cannot answer.
    pub async fn delivery_metrics(&self) -> String {
        use std::fmt::Write;
        let stats = match self.delivery_stats(&MessageFilter::default(), true).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "delivery metrics unavailable");
                return String::new();
            }
        };
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP relaygram_bot_messages Messages of a bot in each state (as GET /v1/stats).\n\
             # TYPE relaygram_bot_messages gauge"
        );
        for b in &stats.bots {
            for (status, n) in [
                ("queued", b.counts.queued),
                ("sending", b.counts.sending),
                ("sent", b.counts.sent),
                ("throttled", b.counts.throttled),
                ("failed", b.counts.failed),
                ("dead", b.counts.dead),
                ("unknown", b.counts.unknown),
                ("paused", b.counts.paused),
                ("cancelled", b.counts.cancelled),
            ] {
                let _ = writeln!(
                    out,
                    "relaygram_bot_messages{{bot_id=\"{}\",status=\"{status}\"}} {n}",
                    b.bot_id
                );
            }
        }
        for (name, help, get) in [
            (
                "relaygram_bot_rate_limited_total",
                "429 answers Telegram gave a bot.",
                (|b: &BotStatsView| b.counts.rate_limited) as fn(&BotStatsView) -> i64,
            ),
            (
                "relaygram_bot_retries_total",
                "Retries scheduled after transient failures.",
                |b: &BotStatsView| b.counts.retries,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for b in &stats.bots {
                let _ = writeln!(out, "{name}{{bot_id=\"{}\"}} {}", b.bot_id, get(b));
            }
        }
        out
    }

    /// A bot's limits (own and effective).
    pub async fn bot_limits(
        &self,
        principal: &crate::services::Principal,
        bot_id: &str,
        defaults: &SendLimits,
    ) -> ServiceResult<BotLimitsView> {
        let bot = self.get_bot_record(principal, bot_id).await?;
        let own = self.store.get_bot_limits(&bot.id).await?;
        let eff = Limits::resolve(defaults, &own);
        Ok(BotLimitsView {
            bot_id: bot.id,
            own: BotLimitsBody {
                per_bot_per_second: own.per_bot_per_second,
                per_chat_per_second: own.per_chat_per_second,
                per_group_per_minute: own.per_group_per_minute,
            },
            effective: BotLimitsBody {
                per_bot_per_second: Some(eff.per_bot_per_second),
                per_chat_per_second: Some(eff.per_chat_per_second),
                per_group_per_minute: Some(eff.per_group_per_minute),
            },
        })
    }

    /// Sets a bot's own limits (null fields fall back to the deployment's).
    pub async fn set_bot_limits(
        &self,
        principal: &crate::services::Principal,
        bot_id: &str,
        body: &BotLimitsBody,
        defaults: &SendLimits,
    ) -> ServiceResult<BotLimitsView> {
        let bot = self.get_bot_record(principal, bot_id).await?;
        for (field, v, max) in [
            ("per_bot_per_second", body.per_bot_per_second, 1000.0),
            ("per_chat_per_second", body.per_chat_per_second, 1000.0),
            ("per_group_per_minute", body.per_group_per_minute, 60_000.0),
        ] {
            if v.is_some_and(|v| !v.is_finite() || !(0.0..=max).contains(&v)) {
                return Err(ServiceError::Invalid {
                    field,
                    message: format!("must be between 0 (no limit) and {max}"),
                });
            }
        }
        self.store
            .set_bot_limits(
                &bot.id,
                &BotLimitsRecord {
                    per_bot_per_second: body.per_bot_per_second,
                    per_chat_per_second: body.per_chat_per_second,
                    per_group_per_minute: body.per_group_per_minute,
                },
                self.clock.now_millis(),
            )
            .await?;
        self.bot_limits(principal, bot_id, defaults).await
    }
}
