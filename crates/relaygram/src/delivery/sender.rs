//! The senders: one per bot (held through a lease in the store, so a bot's limits hold
//! across instances), each a public [`BotSender::step`] — claim a batch of lane heads the
//! pacer allows, send them (outside any transaction), record every outcome in one — inside a
//! thin loop. A supervisor starts a sender for every bot with queued messages.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::content::StoredContent;
use super::pacing::{Limits, SharedPacer};
use crate::config::SendLimits;
use crate::ids::new_id;
use crate::services::{ServiceError, ServiceResult, Services};
use crate::shutdown::Shutdown;
use crate::store::{Claimed, JobKind, Outcome, StoreError};
use crate::telegram::{BotToken, TelegramError};

static WAKE: Notify = Notify::const_new();

/// What was woken since the supervisor last looked.
#[derive(Debug, Default)]
struct Woken {
    /// Any bot (the caller did not say which).
    any: bool,
    bots: HashSet<String>,
}

static WOKEN: Mutex<Option<Woken>> = Mutex::new(None);

fn woken() -> std::sync::MutexGuard<'static, Option<Woken>> {
    WOKEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Wakes the senders (new messages were queued, for any bots).
pub fn wake() {
    woken().get_or_insert_default().any = true;
    WAKE.notify_waiters();
}

/// Wakes the senders: new messages were queued for `bot_id`. The supervisor looks for bots
/// to start only when one woken this way has no sender (a reply to every update would
/// otherwise make it read the store for every update).
pub fn wake_bot(bot_id: &str) {
    woken()
        .get_or_insert_default()
        .bots
        .insert(bot_id.to_string());
    WAKE.notify_waiters();
}

/// How senders behave.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// The deployment's limits (each bot may override them).
    pub defaults: SendLimits,
    /// How long a bot's sender lease lasts without renewal.
    pub lease: Duration,
    /// Attempts before a message failing transiently is `dead`.
    pub max_attempts: i64,
    /// First retry delay; doubles per attempt, with jitter.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
}

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig {
            defaults: SendLimits::default(),
            lease: Duration::from_secs(10),
            max_attempts: 5,
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(300),
        }
    }
}

/// What one step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Step {
    /// Attempts finished and recorded in this step.
    pub attempted: usize,
    /// When ready messages were held back by pacing, the earliest time one may go.
    pub paced_until: Option<Instant>,
}

/// One bot's sender.
#[derive(Debug)]
pub struct BotSender {
    services: Services,
    config: SenderConfig,
    bot_id: String,
    token: BotToken,
    pacer: SharedPacer,
    contents: HashMap<String, Arc<StoredContent>>,
    /// Sends under way (claimed, not yet recorded): the sender claims more while they run.
    inflight: JoinSet<Attempt>,
    /// Edit and delete jobs under way: their kind and the message they act on.
    jobs: HashMap<String, (JobKind, String)>,
    /// Member jobs under way (a gated chat's approvals, removals…).
    member_jobs: HashSet<String>,
}

/// A finished attempt: the message and what happened.
type Attempt = (Claimed, Result<(i64, Vec<i64>), Failed>);

/// A part could not be sent.
struct Failed {
    parts_sent: i64,
    message_ids: Vec<i64>,
    error: TelegramError,
}

/// Whether a transport failure may have happened after Telegram acted (the request left,
/// the answer never came): such a send must not be repeated blindly.
fn is_ambiguous(e: &TelegramError) -> bool {
    matches!(e, TelegramError::Unanswered(_))
}

impl BotSender {
    /// A sender for `bot_id` (its token and limits loaded from the store).
    pub async fn new(
        services: Services,
        bot_id: &str,
        config: SenderConfig,
    ) -> ServiceResult<BotSender> {
        let bot = services
            .store
            .get_bot(bot_id)
            .await?
            .ok_or_else(|| ServiceError::NotFound {
                kind: "bot",
                id: bot_id.to_string(),
            })?;
        let token = services.token_of(&bot)?;
        let own = services.store.get_bot_limits(bot_id).await?;
        let limits = Limits::resolve(&config.defaults, &own);
        Ok(BotSender {
            services,
            config,
            bot_id: bot_id.to_string(),
            token,
            pacer: SharedPacer::new(limits),
            contents: HashMap::new(),
            inflight: JoinSet::new(),
            jobs: HashMap::new(),
            member_jobs: HashSet::new(),
        })
    }

    /// Reloads the bot's own limits.
    pub async fn reload_limits(&mut self) -> ServiceResult<()> {
        let own = self.services.store.get_bot_limits(&self.bot_id).await?;
        let limits = Limits::resolve(&self.config.defaults, &own);
        self.pacer.lock().set_limits(limits);
        Ok(())
    }

    async fn content(&mut self, request_id: &str) -> ServiceResult<Arc<StoredContent>> {
        if let Some(c) = self.contents.get(request_id) {
            return Ok(c.clone());
        }
        let text = self
            .services
            .store
            .request_content(request_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("request {request_id} has no content")))?;
        let content: StoredContent = serde_json::from_str(&text)
            .map_err(|e| StoreError::Corrupt(format!("request {request_id}: {e}")))?;
        if self.contents.len() > 256 {
            self.contents.clear();
        }
        let content = Arc::new(content);
        self.contents
            .insert(request_id.to_string(), content.clone());
        Ok(content)
    }

    /// Claims what the pacer allows in the next 100 ms (as far as sends under way leave
    /// room), starts sending it, then records the outcomes of the sends that finish next.
    ///
    /// Sends are pipelined: the next claim does not wait for the slowest send of the
    /// previous one. A chat's next message is never claimed while one of its messages is
    /// `sending`, so order per chat holds.
    pub async fn step(&mut self) -> ServiceResult<Step> {
        const WINDOW: Duration = Duration::from_millis(100);
        let now = Instant::now();
        let horizon = now + WINDOW;
        let limits = self.pacer.lock().limits();
        let budget: usize = if limits.per_bot_per_second <= 0.0 {
            512
        } else {
            ((limits.per_bot_per_second * WINDOW.as_secs_f64()).ceil() as usize + 5).min(512)
        };
        let room = budget.saturating_sub(self.inflight.len());
        let bot_ready = self.pacer.lock().bot_ready_at(now);
        let mut paced_until = (bot_ready > horizon).then_some(bot_ready);
        // Claim when the pacer allows and a good share of the budget is free (not for every
        // finished send: each claim is a transaction).
        if paced_until.is_none() && (self.inflight.is_empty() || room >= budget.div_ceil(4)) {
            paced_until = self.claim_and_send(now, horizon, room).await?;
        }
        if self.inflight.is_empty() {
            return Ok(Step {
                attempted: 0,
                paced_until,
            });
        }
        let attempted = self.record_finished(budget).await?;
        Ok(Step {
            attempted,
            paced_until: None,
        })
    }

    /// Claims up to `room` lane heads the pacer allows before `horizon` and starts their
    /// sends; returns when ready messages were held back by pacing.
    async fn claim_and_send(
        &mut self,
        now: Instant,
        horizon: Instant,
        room: usize,
    ) -> ServiceResult<Option<Instant>> {
        let budget = room;
        let now_ms = self.services.clock.now_millis();
        let mut slots: HashMap<String, Instant> = HashMap::new();
        let mut paced_until: Option<Instant> = None;
        let pacer = self.pacer.clone();
        let claimed = {
            let mut pick = |c: &Claimed| {
                if slots.len() >= budget {
                    return false;
                }
                let mut p = pacer.lock();
                let ready = p.chat_ready_at(c.chat_id, now).max(p.bot_ready_at(now));
                if ready > horizon {
                    paced_until = Some(paced_until.map_or(ready, |t: Instant| t.min(ready)));
                    return false;
                }
                let slot = p.reserve(c.chat_id, now);
                slots.insert(c.id.clone(), slot);
                true
            };
            // Candidates: the budget, plus as many as the pick can pass over for their
            // chat's pace, plus a few for chats with two heads (a later message of higher
            // priority). Rounded up, so the store sees few sizes. Each candidate costs the
            // claim a lane check while it holds the store (on SQLite, everyone's).
            let passed_over = pacer.lock().chats_paced_past(now, horizon);
            let limit = (budget + passed_over + 8).next_power_of_two() as i64;
            self.services
                .store
                .claim(&self.bot_id, now_ms, limit, &mut pick)
                .await?
        };
        self.pacer.lock().prune(now);
        // Messages whose local send time has not come, or meeting a link's quiet hours, go
        // back to their lane until then; their pacing slots are given back.
        let before: Vec<(String, i64)> =
            claimed.iter().map(|c| (c.id.clone(), c.chat_id)).collect();
        let claimed = super::hold::hold_claimed(&self.services, claimed).await;
        if claimed.len() < before.len() {
            let kept: std::collections::HashSet<&str> =
                claimed.iter().map(|c| c.id.as_str()).collect();
            let mut p = self.pacer.lock();
            for (id, chat_id) in &before {
                if !kept.contains(id.as_str()) {
                    p.release(*chat_id);
                    slots.remove(id);
                }
            }
        }
        let mut contents = Vec::with_capacity(claimed.len());
        for c in &claimed {
            contents.push(match &c.content {
                // A personal message carries its own rendering.
                Some(own) => serde_json::from_str(own)
                    .map(Arc::new)
                    .map_err(|e| StoreError::Corrupt(format!("message {}: {e}", c.id)).into()),
                None => self.content(&c.request_id).await,
            });
        }
        for (c, content) in claimed.iter().zip(&contents) {
            if let Ok(content) = content
                && let Some(job) = &content.job
            {
                if job.kind() == JobKind::Member {
                    self.member_jobs.insert(c.id.clone());
                } else {
                    self.jobs
                        .insert(c.id.clone(), (job.kind(), job.edit_of.clone()));
                }
            }
        }
        let tasks = &mut self.inflight;
        for (c, content) in claimed.iter().zip(contents) {
            let content = match content {
                Ok(content) => content,
                Err(e) => {
                    tracing::error!(message_id = %c.id, error = %e, "message content unreadable");
                    let failed = Failed {
                        parts_sent: c.parts_sent,
                        message_ids: vec![],
                        error: TelegramError::BadRequest("the stored content is unreadable".into()),
                    };
                    tasks.spawn({
                        let c = c.clone();
                        async move { (c, Err(failed)) }
                    });
                    continue;
                }
            };
            let slot = slots.get(&c.id).copied().unwrap_or(now);
            let telegram = self.services.telegram.clone();
            let token = self.token.clone();
            let pacer = self.pacer.clone();
            let c = c.clone();
            tasks.spawn(async move {
                let mut ids: Vec<i64> =
                    serde_json::from_str(&c.telegram_message_ids).unwrap_or_default();
                let mut sent = c.parts_sent;
                let total = content.parts.len().max(1) as i64;
                let mut at = slot;
                while sent < total {
                    if sent > c.parts_sent {
                        at = pacer.lock().reserve(c.chat_id, Instant::now());
                    }
                    tokio::time::sleep_until(at).await;
                    let (method, params) = content.call_for(sent as usize, c.chat_id);
                    // Counted from right before it leaves until its answer is in.
                    let permit = pacer.admit(c.chat_id).await;
                    let answer = telegram.call::<_, Value>(&token, method, &params).await;
                    drop(permit);
                    match answer {
                        Ok(message) => {
                            if let Some(id) = message["message_id"].as_i64() {
                                ids.push(id);
                            }
                            sent += 1;
                        }
                        // An edit that changes nothing is done: the message says what the
                        // app asked for.
                        Err(error) if super::job::is_done_anyway(&error) => sent += 1,
                        Err(error) => {
                            return (
                                c,
                                Err(Failed {
                                    parts_sent: sent,
                                    message_ids: ids,
                                    error,
                                }),
                            );
                        }
                    }
                }
                (c, Ok((sent, ids)))
            });
        }
        Ok(paced_until)
    }

    /// Waits for the next send under way to finish, gathers those finishing soon after it
    /// (up to `budget`), and records their outcomes in one transaction.
    async fn record_finished(&mut self, budget: usize) -> ServiceResult<usize> {
        // Sends finishing close together are recorded together. Unpaced, they finish in
        // bursts a few milliseconds wide; paced, one every few milliseconds, so a longer
        // window keeps it to a few transactions per 100 ms (a chat's next message waits
        // for its recording, far less than a chat's own interval).
        let paced = self.pacer.lock().limits().per_bot_per_second > 0.0;
        let gather = Duration::from_millis(if paced { 25 } else { 3 });
        let mut finished = Vec::new();
        if let Some(first) = self.inflight.join_next().await {
            finished.push(first);
        }
        let until = Instant::now() + gather;
        while !self.inflight.is_empty() && finished.len() < budget {
            match tokio::time::timeout_at(until, self.inflight.join_next()).await {
                Ok(Some(done)) => finished.push(done),
                _ => break,
            }
        }
        let joined = finished.len();
        let mut outcomes = Vec::with_capacity(joined);
        let mut events: Vec<(String, &'static str, Value)> = Vec::new();
        let mut jobs_done: Vec<(JobKind, String)> = Vec::new();
        for done in finished {
            let Ok((c, result)) = done else { continue };
            let job = self.jobs.remove(&c.id);
            let member = self.member_jobs.remove(&c.id);
            let (outcome, event) = self.outcome(&c, result, member).await;
            if let Some((kind, edit_of)) = job
                && outcome.status == "sent"
            {
                let kind_name = match kind {
                    JobKind::Delete => "message.deleted",
                    _ => "message.edited",
                };
                events.push((
                    c.tenant_id.clone(),
                    kind_name,
                    json!({"message_id": edit_of, "job_id": c.id, "bot_id": self.bot_id,
                        "chat_id": c.chat_id}),
                ));
                jobs_done.push((kind, edit_of));
            }
            outcomes.push(outcome);
            if let Some(e) = event {
                events.push(e);
            }
        }
        let now = self.services.clock.now_millis();
        self.services.store.record(&outcomes, now).await?;
        for (kind, edit_of) in jobs_done {
            self.services.store.mark_edited(&edit_of, kind, now).await?;
        }
        for o in &outcomes {
            metrics::counter!(
                "relaygram_messages_total",
                "bot_id" => self.bot_id.clone(),
                "outcome" => match (o.status, o.rate_limited, o.retried) {
                    ("queued", 1, _) => "rate_limited",
                    ("queued", _, 1) => "retried",
                    (s, _, _) => s,
                }
            )
            .increment(1);
        }
        for (tenant, kind, data) in events {
            if let Err(e) =
                crate::events::emit(self.services.store.as_ref(), &tenant, kind, data).await
            {
                tracing::error!(error = %e, "could not emit {kind}");
            }
        }
        Ok(joined)
    }

    /// Records every send still under way (on shutdown: nothing is left `sending`).
    async fn finish_inflight(&mut self) -> ServiceResult<()> {
        while !self.inflight.is_empty() {
            self.record_finished(usize::MAX).await?;
        }
        Ok(())
    }

    fn backoff(&self, attempts: i64) -> Duration {
        let exp = self
            .config
            .backoff_base
            .saturating_mul(1u32 << attempts.clamp(1, 20).saturating_sub(1) as u32)
            .min(self.config.backoff_max);
        // Jitter: somewhere in the upper half, so retries of a burst spread out.
        let half = exp / 2;
        half + Duration::from_millis(rand::random_range(0..=half.as_millis().max(1) as u64))
    }

    async fn outcome(
        &self,
        c: &Claimed,
        result: Result<(i64, Vec<i64>), Failed>,
        member: bool,
    ) -> (Outcome, Option<(String, &'static str, Value)>) {
        let now = self.services.clock.now_millis();
        let mut o = Outcome {
            id: c.id.clone(),
            status: "sent",
            next_attempt_at: None,
            parts_sent: c.parts_sent,
            telegram_message_ids: c.telegram_message_ids.clone(),
            error_class: None,
            error: None,
            errors: c.errors.clone(),
            retried: 0,
            rate_limited: 0,
            chat_id: None,
        };
        let mut f = match result {
            Ok((sent, ids)) => {
                o.parts_sent = sent;
                o.telegram_message_ids = json!(ids).to_string();
                return (o, None);
            }
            Err(f) => f,
        };
        if member {
            // A member call names the gated chat, not its lane (the user's chat): what
            // Telegram says about that chat must not end the user's chat. Repeating one is
            // harmless, so an unanswered call is tried again. The membership's owner reads
            // the job's outcome.
            f.error = match f.error {
                TelegramError::Unanswered(d) => TelegramError::Transient(d),
                TelegramError::ChatGone(d) => TelegramError::BadRequest(d),
                TelegramError::Migrated { new_chat_id } => TelegramError::BadRequest(format!(
                    "Bad Request: group chat was upgraded to a supergroup chat ({new_chat_id})"
                )),
                other => other,
            };
        }
        o.parts_sent = f.parts_sent;
        o.telegram_message_ids = json!(f.message_ids).to_string();
        let description = f.error.description();
        let class = if is_ambiguous(&f.error) {
            "ambiguous"
        } else {
            f.error.class()
        };
        o.error_class = Some(class.to_string());
        o.error = Some(description.clone());
        let mut errors: Vec<Value> = serde_json::from_str(&c.errors).unwrap_or_default();
        errors.push(json!({"at": crate::ids::rfc3339(now), "attempt": c.attempts, "class": class, "error": description}));
        if errors.len() > 20 {
            errors.drain(..errors.len() - 20);
        }
        o.errors = Value::Array(errors).to_string();
        let event = |kind: &'static str, status: &str| {
            Some((
                c.tenant_id.clone(),
                kind,
                json!({"message_id": c.id, "bot_id": self.bot_id, "chat_id": c.chat_id,
                    "link_id": c.link_id, "broadcast_id": c.broadcast_id, "status": status,
                    "error_class": class, "error": description, "attempts": c.attempts}),
            ))
        };
        match &f.error {
            TelegramError::RetryAfter { seconds } => {
                // Only this chat's lane waits: its head is not due before then.
                o.status = "queued";
                o.rate_limited = 1;
                o.next_attempt_at = Some(now + (*seconds as i64).max(1) * 1000);
                tracing::warn!(bot_id = %self.bot_id, chat_id = c.chat_id, seconds, "429 from Telegram");
                (o, None)
            }
            TelegramError::Migrated { new_chat_id } => {
                if let Err(e) = self
                    .services
                    .store
                    .migrate_chat(&self.bot_id, c.chat_id, *new_chat_id, now)
                    .await
                {
                    tracing::error!(error = %e, "could not record a chat migration");
                }
                o.status = "queued";
                o.chat_id = Some(*new_chat_id);
                o.next_attempt_at = Some(now);
                (o, None)
            }
            TelegramError::ChatGone(d) => {
                // The chat's state, its links and everything else waiting for it end in
                // one transaction: the rest of its lane is cancelled, not tried.
                let state = crate::store::ChatState::gone(d);
                if let Err(e) = self
                    .services
                    .chat_gone(&self.bot_id, c.chat_id, state, "unreachable")
                    .await
                {
                    tracing::error!(error = %e, "could not mark a chat gone");
                }
                o.status = "failed";
                (o, event("message.failed", "failed"))
            }
            TelegramError::Unanswered(_) => {
                o.status = "unknown";
                (o, event("message.failed", "unknown"))
            }
            TelegramError::Transient(_) => {
                if c.attempts >= self.config.max_attempts {
                    o.status = "dead";
                    (o, event("message.dead", "dead"))
                } else {
                    o.status = "queued";
                    o.retried = 1;
                    o.next_attempt_at = Some(now + self.backoff(c.attempts).as_millis() as i64);
                    (o, None)
                }
            }
            TelegramError::BadRequest(_) | TelegramError::Unauthorized(_) => {
                o.status = "failed";
                (o, event("message.failed", "failed"))
            }
        }
    }

    /// Sends until there is nothing to send, then waits for work; stops on shutdown or when
    /// the lease is lost.
    pub async fn run(mut self, holder: String, mut shutdown: Shutdown) {
        let lease_ms = self.config.lease.as_millis() as i64;
        let mut renewed = Instant::now();
        let mut idle_since: Option<Instant> = None;
        loop {
            if *shutdown.borrow() {
                break;
            }
            if renewed.elapsed() > self.config.lease / 4 {
                let now = self.services.clock.now_millis();
                match self
                    .services
                    .store
                    .acquire_sender_lease(&self.bot_id, &holder, now, now + lease_ms)
                    .await
                {
                    Ok(true) => renewed = Instant::now(),
                    Ok(false) => {
                        tracing::warn!(bot_id = %self.bot_id, "sender lease lost");
                        // Record what is already under way (only rows still `sending`
                        // change); releasing below deletes only a lease this holder has.
                        break;
                    }
                    Err(e) => tracing::warn!(error = %e, "could not renew a sender lease"),
                }
                if let Err(e) = self.reload_limits().await {
                    tracing::warn!(error = %e, "could not reload bot limits");
                }
            }
            match self.step().await {
                Ok(step) if step.attempted > 0 => idle_since = None,
                Ok(step) => {
                    let wait_real = step
                        .paced_until
                        .map(|t| t.max(Instant::now() + Duration::from_millis(2)));
                    let due = self
                        .services
                        .store
                        .next_due(&self.bot_id)
                        .await
                        .ok()
                        .flatten();
                    if due.is_none() && step.paced_until.is_none() {
                        let since = *idle_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > Duration::from_secs(5) {
                            break;
                        }
                    } else {
                        idle_since = None;
                    }
                    let clock = self.services.clock.clone();
                    let until = due.unwrap_or(i64::MAX);
                    tokio::select! {
                        _ = WAKE.notified() => {}
                        _ = shutdown.changed() => {}
                        _ = clock.sleep_until(until, Duration::from_millis(500)), if wait_real.is_none() => {}
                        _ = tokio::time::sleep_until(wait_real.unwrap_or_else(Instant::now)), if wait_real.is_some() => {}
                    }
                }
                Err(e) => {
                    tracing::error!(bot_id = %self.bot_id, error = %e, "sender step failed");
                    tokio::select! {
                        _ = shutdown.changed() => {}
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
        if let Err(e) = self.finish_inflight().await {
            tracing::error!(bot_id = %self.bot_id, error = %e, "could not record the last sends");
        }
        if let Err(e) = self
            .services
            .store
            .release_sender_lease(&self.bot_id, &holder)
            .await
        {
            tracing::warn!(error = %e, "could not release a sender lease");
        }
    }
}

/// Takes the lease of `bot_id` and settles what a stopped holder left in flight.
async fn take_bot(
    services: &Services,
    bot_id: &str,
    holder: &str,
    lease: Duration,
) -> ServiceResult<bool> {
    let now = services.clock.now_millis();
    if !services
        .store
        .acquire_sender_lease(bot_id, holder, now, now + lease.as_millis() as i64)
        .await?
    {
        return Ok(false);
    }
    // Only the lease holder sends for a bot, so whatever is still `sending` was in the
    // hands of a holder that stopped: it may have reached Telegram.
    for (id, tenant) in services.store.recover_interrupted(bot_id, now).await? {
        tracing::warn!(message_id = %id, "message interrupted mid-attempt: unknown");
        crate::events::emit(
            services.store.as_ref(),
            &tenant,
            "message.failed",
            json!({"message_id": id, "bot_id": bot_id, "status": "unknown", "error_class": "interrupted"}),
        )
        .await?;
    }
    Ok(true)
}

/// Starts a sender for every bot with queued messages, as long as the process runs.
pub async fn supervise(services: Services, config: SenderConfig, mut shutdown: Shutdown) {
    let holder = new_id("snd");
    let mut running: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    // Look at start and on every tick; on a wake only for a bot without a sender. (A wake
    // missed while looking keeps its bots in `WOKEN` for the next wake or tick.)
    let mut look = true;
    loop {
        if *shutdown.borrow() {
            break;
        }
        running.retain(|_, h| !h.is_finished());
        let woken = woken().take().unwrap_or_default();
        look |= woken.any || woken.bots.iter().any(|b| !running.contains_key(b));
        let bots = if std::mem::take(&mut look) {
            services.store.bots_with_queued().await
        } else {
            Ok(Vec::new())
        };
        match bots {
            Ok(bots) => {
                for bot_id in bots {
                    if running.contains_key(&bot_id) {
                        continue;
                    }
                    match take_bot(&services, &bot_id, &holder, config.lease).await {
                        Ok(true) => {}
                        Ok(false) => continue,
                        Err(e) => {
                            tracing::warn!(bot_id, error = %e, "could not take a bot's sender");
                            continue;
                        }
                    }
                    match BotSender::new(services.clone(), &bot_id, config.clone()).await {
                        Ok(sender) => {
                            let task = tokio::spawn(sender.run(holder.clone(), shutdown.clone()));
                            running.insert(bot_id, task);
                        }
                        Err(e) => tracing::warn!(bot_id, error = %e, "could not start a sender"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not list bots with queued messages"),
        }
        let clock = services.clock.clone();
        tokio::select! {
            _ = WAKE.notified() => {}
            _ = shutdown.changed() => {}
            // A manual clock wakes this when a test moves time (send_at, retries).
            _ = clock.sleep_until(i64::MAX, Duration::from_secs(1)) => look = true,
        }
    }
    for (_, h) in running {
        let _ = h.await;
    }
}
