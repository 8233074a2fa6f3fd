//! `relaygram send` and `relaygram broadcast`: accept a message through the same service as
//! `POST /v1/messages`, then follow its delivery (done by the senders of the running
//! server) with a progress bar on a terminal, or plain progress lines otherwise.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{Value, json};

use super::{Origin, SendRequest};
use crate::services::{ServiceError, Services};

/// What `send` and `broadcast` take.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// The tenant that sends.
    #[arg(long)]
    pub tenant: String,
    /// The sending bot (optional when the tenant has one bot or a link implies it).
    #[arg(long)]
    pub bot: Option<String>,
    /// A Telegram chat id (repeatable).
    #[arg(long = "chat-id", allow_negative_numbers = true)]
    pub chat_ids: Vec<i64>,
    /// A link id (repeatable).
    #[arg(long = "link")]
    pub links: Vec<String>,
    /// Every active link of this app user (repeatable).
    #[arg(long = "external-id")]
    pub external_ids: Vec<String>,
    /// Every link opted in to this category (repeatable).
    #[arg(long = "category")]
    pub categories: Vec<String>,
    /// Every active link made with this team connect code (repeatable).
    #[arg(long = "connect-code")]
    pub connect_codes: Vec<String>,
    /// Targets as JSON, as the API's `to` takes them: one target or a list, each of which may
    /// carry its own template `data` (`[{"link_id": "link_…", "data": {"name": "Ada"}}]`).
    #[arg(long = "to")]
    pub to: Option<String>,
    /// The text (a caption with --photo or --document).
    #[arg(long)]
    pub text: Option<String>,
    /// `HTML` or `MarkdownV2` for --text; plain text when left out.
    #[arg(long)]
    pub parse_mode: Option<String>,
    /// A stored template key, instead of --text.
    #[arg(long)]
    pub template: Option<String>,
    /// The template's variables, a JSON object.
    #[arg(long)]
    pub data: Option<String>,
    /// A photo (URL or file_id).
    #[arg(long)]
    pub photo: Option<String>,
    /// A document (URL or file_id).
    #[arg(long)]
    pub document: Option<String>,
    /// Send without sound.
    #[arg(long)]
    pub silent: bool,
    /// The app's own JSON object, given back with replies to and presses on this message.
    #[arg(long)]
    pub metadata: Option<String>,
    /// Not before this time (RFC 3339).
    #[arg(long)]
    pub send_at: Option<String>,
    /// Not before this wall-clock time in each recipient's zone (`2026-11-22T09:00`).
    #[arg(long)]
    pub send_at_local: Option<String>,
    /// With --send-at-local: the zone of recipients whose link has none (default UTC).
    #[arg(long)]
    pub default_timezone: Option<String>,
    /// The same key within 24 h sends nothing new.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Return once the message is queued instead of following its delivery.
    #[arg(long)]
    pub detach: bool,
    /// Stop following after this many seconds (0 = until every message is final).
    #[arg(long, default_value_t = 0)]
    pub timeout: u64,
}

/// `relaygram broadcast`: the same as `send`, or `--follow` an existing broadcast.
#[derive(Debug, Args)]
pub struct BroadcastArgs {
    /// Follow this broadcast (`bc_…`) instead of starting one.
    #[arg(long, requires = "tenant")]
    pub follow: Option<String>,
    /// What to send.
    #[command(flatten)]
    pub send: SendArgs,
}

impl SendArgs {
    fn request(&self) -> anyhow::Result<SendRequest> {
        let mut to: Vec<Value> = Vec::new();
        to.extend(self.chat_ids.iter().map(|c| json!({"chat_id": c})));
        to.extend(self.links.iter().map(|l| json!({"link_id": l})));
        to.extend(self.external_ids.iter().map(|x| json!({"external_id": x})));
        to.extend(self.categories.iter().map(|c| json!({"category": c})));
        to.extend(
            self.connect_codes
                .iter()
                .map(|c| json!({"connect_code_id": c})),
        );
        if let Some(json) = &self.to {
            match serde_json::from_str::<Value>(json)
                .map_err(|e| anyhow::anyhow!("--to is not JSON: {e}"))?
            {
                Value::Array(items) => to.extend(items),
                one => to.push(one),
            }
        }
        if to.is_empty() {
            anyhow::bail!(
                "name a recipient: --chat-id, --link, --external-id, --category, --connect-code or --to"
            );
        }
        let data = self
            .data
            .as_deref()
            .map(|d| {
                serde_json::from_str::<Value>(d)
                    .map_err(|e| anyhow::anyhow!("--data is not JSON: {e}"))
            })
            .transpose()?;
        let metadata = self
            .metadata
            .as_deref()
            .map(|d| {
                serde_json::from_str::<Value>(d)
                    .map_err(|e| anyhow::anyhow!("--metadata is not JSON: {e}"))
            })
            .transpose()?;
        Ok(SendRequest {
            bot_id: self.bot.clone(),
            to: Value::Array(to),
            text: self.text.clone(),
            parse_mode: self.parse_mode.clone(),
            template: self.template.clone(),
            data,
            buttons: None,
            photo: self.photo.clone(),
            document: self.document.clone(),
            message_thread_id: None,
            silent: self.silent,
            throttle_key: None,
            throttle_seconds: None,
            throttle_scope: None,
            send_at: self.send_at.clone(),
            send_at_local: self.send_at_local.clone(),
            default_timezone: self.default_timezone.clone(),
            priority: None,
            metadata,
            digest: None,
        })
    }
}

fn explain(e: ServiceError) -> anyhow::Error {
    match e {
        ServiceError::Invalid { field, message } => anyhow::anyhow!("{field} {message}"),
        ServiceError::NoRecipients { skipped } => {
            let why: Vec<&str> = skipped
                .iter()
                .filter_map(|s| s["detail"].as_str())
                .collect();
            anyhow::anyhow!("nothing was queued: {}", why.join("; "))
        }
        other => anyhow::anyhow!("{other}"),
    }
}

/// Progress of a request or broadcast.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Progress {
    total: i64,
    sent: i64,
    failed: i64,
    remaining: i64,
    eta_seconds: Option<f64>,
}

impl Progress {
    fn done(&self) -> bool {
        self.remaining == 0
    }

    fn line(&self) -> String {
        let eta = match self.eta_seconds {
            Some(s) if self.remaining > 0 => format!(" eta {}s", s.ceil() as i64),
            _ => String::new(),
        };
        format!(
            "sent {} failed {} remaining {} of {}{eta}",
            self.sent, self.failed, self.remaining, self.total
        )
    }

    fn bar(&self, width: usize) -> String {
        let finished = (self.total - self.remaining).max(0);
        let filled = if self.total > 0 {
            (finished as usize * width) / self.total as usize
        } else {
            width
        };
        format!(
            "[{}{}] {:>3}% {}",
            "#".repeat(filled.min(width)),
            "-".repeat(width - filled.min(width)),
            if self.total > 0 {
                finished * 100 / self.total
            } else {
                100
            },
            self.line()
        )
    }
}

async fn progress_of(
    services: &Services,
    tenant: &str,
    broadcast: Option<&str>,
    request_id: &str,
) -> anyhow::Result<Progress> {
    if let Some(id) = broadcast {
        let b = services
            .get_broadcast(tenant, id, &super::default_limits())
            .await
            .map_err(explain)?;
        let remaining = if matches!(b.status.as_str(), "cancelled") {
            0
        } else {
            b.remaining
        };
        return Ok(Progress {
            total: b.total,
            sent: b.sent,
            failed: b.failed,
            remaining,
            eta_seconds: b.eta_seconds,
        });
    }
    let messages = services
        .store
        .request_messages(request_id)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let count = |f: &dyn Fn(&str) -> bool| messages.iter().filter(|m| f(&m.status)).count() as i64;
    Ok(Progress {
        total: messages.len() as i64,
        sent: count(&|s| s == "sent"),
        failed: count(&|s| matches!(s, "failed" | "dead" | "unknown")),
        remaining: count(&|s| matches!(s, "queued" | "sending" | "paused")),
        eta_seconds: None,
    })
}

/// Follows until every message is final: a redrawn bar on a terminal, a line per change
/// (at most one a second) otherwise.
async fn follow(
    services: &Services,
    tenant: &str,
    broadcast: Option<&str>,
    request_id: &str,
    timeout: u64,
) -> anyhow::Result<Progress> {
    let tty = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut last: Option<Progress> = None;
    let mut printed = Instant::now() - Duration::from_secs(10);
    loop {
        let p = progress_of(services, tenant, broadcast, request_id).await?;
        let changed = last != Some(p);
        let mut err = std::io::stderr().lock();
        if tty {
            let _ = write!(err, "\r\x1b[2K{}", p.bar(30));
            let _ = err.flush();
        } else if changed && (p.done() || printed.elapsed() >= Duration::from_secs(1)) {
            let _ = writeln!(err, "progress: {}", p.line());
            printed = Instant::now();
        }
        drop(err);
        last = Some(p);
        if p.done() {
            if tty {
                eprintln!();
            }
            return Ok(p);
        }
        if timeout > 0 && started.elapsed() >= Duration::from_secs(timeout) {
            if tty {
                eprintln!();
            }
            anyhow::bail!(
                "still not delivered after {timeout}s ({}); is `relaygram serve` running?",
                p.line()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `relaygram send` / `relaygram broadcast`.
pub async fn run(
    services: &Services,
    args: &SendArgs,
    follow_broadcast: Option<&str>,
) -> anyhow::Result<()> {
    let tenant = args.tenant.as_str();
    if let Some(id) = follow_broadcast {
        let b = services
            .get_broadcast(tenant, id, &super::default_limits())
            .await
            .map_err(explain)?;
        let p = follow(services, tenant, Some(id), &b.request_id, args.timeout).await?;
        println!("{id}\t{}", p.line());
        return finish(p);
    }
    services
        .visible_tenant(&crate::services::Principal::Operator, tenant)
        .await
        .map_err(explain)?;
    let req = args.request()?;
    let accepted = services
        .accept_message(
            tenant,
            req,
            Origin::Api {
                idempotency_key: args.idempotency_key.clone(),
            },
        )
        .await
        .map_err(explain)?;
    match &accepted.broadcast_id {
        Some(bc) => println!(
            "{}\t{}\t{} messages\tbroadcast {bc}",
            accepted.request_id, accepted.status, accepted.count
        ),
        None => {
            println!(
                "{}\t{}\t{} messages",
                accepted.request_id, accepted.status, accepted.count
            );
            for m in &accepted.messages {
                println!("{}\t{}\t{}", m.id, m.bot_id, m.chat_id);
            }
        }
    }
    for s in &accepted.skipped {
        eprintln!("skipped {}: {}", s.target, s.detail);
    }
    if args.detach || accepted.status == "throttled" {
        return Ok(());
    }
    let p = follow(
        services,
        tenant,
        accepted.broadcast_id.as_deref(),
        &accepted.request_id,
        args.timeout,
    )
    .await?;
    println!("done: {}", p.line());
    finish(p)
}

fn finish(p: Progress) -> anyhow::Result<()> {
    if p.failed > 0 {
        anyhow::bail!(
            "{} of {} messages were not delivered (see GET /v1/messages?status=failed)",
            p.failed,
            p.total
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_fills_with_progress() {
        let p = Progress {
            total: 200,
            sent: 100,
            failed: 0,
            remaining: 100,
            eta_seconds: Some(3.2),
        };
        assert_eq!(
            p.bar(10),
            "[#####-----]  50% sent 100 failed 0 remaining 100 of 200 eta 4s"
        );
    }
}
