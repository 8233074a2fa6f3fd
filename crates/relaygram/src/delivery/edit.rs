//! Editing and deleting what was sent: `PATCH /v1/messages/{id}` and
//! `DELETE /v1/messages/{id}`.
//!
//! A sent message is changed in Telegram by a job of its own in the outbox (a row of kind
//! `edit` or `delete` in the message's chat lane, so after the send, paced like sends, with
//! its own attempts and state). A message not sent yet is changed in place: an edit
//! replaces its content, a delete cancels it (`deleted_by_app`). Telegram's rules are
//! checked before anything is queued, so the app gets a 422 at once instead of a failed job.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::content::{OwnButtons, StoredContent, render_content};
use super::job::{BotCall, BotMethod, JobContent};
use super::personal::{LINK_VARIABLE, is_personal, link_variables};
use super::request::{ButtonSpec, parse_mode};
use crate::ids::new_id;
use crate::services::{ServiceError, ServiceResult, Services};
use crate::store::Callback;
use crate::store::{
    CancelReason, JobKind, LinkRecord, MessageRecord, NewJob, NewRequest, StoreError,
};
use crate::templates::Content;

/// How long after sending a message can still be edited or deleted. Telegram documents 48
/// hours for deleting; relaygram keeps edits to the same window, so an app's "update the
/// live message" never depends on how old Telegram lets a bot's edit be.
pub const EDIT_WINDOW_MS: i64 = 48 * 3600 * 1000;

/// `PATCH /v1/messages/{id}`: new text (or template data), and/or new buttons. What is left
/// out stays as it was.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"text": "Revenue today: <b>€1,240</b>", "parse_mode": "HTML",
    "buttons": [[{"text": "Open dashboard", "url": "https://example.com/d"}]]}))]
pub struct EditRequest {
    /// The new text (the caption of a photo or document).
    #[serde(default)]
    pub text: Option<String>,
    /// `HTML`, `MarkdownV2` or `Markdown` for `text`; plain text when omitted.
    #[serde(default)]
    pub parse_mode: Option<String>,
    /// A template key to render the new text with (instead of `text`).
    #[serde(default)]
    pub template: Option<String>,
    /// Template variables.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
    /// New inline keyboard rows (`[]` removes the keyboard); the message's own when omitted.
    #[serde(default)]
    pub buttons: Option<Vec<Vec<ButtonSpec>>>,
}

/// What an edit or delete did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[schema(example = json!({"message_id": "msg_01jd8y3k7q9x4m2n5p6r7s8t9w", "action": "edit",
    "status": "queued", "job_id": "msg_01jd8y3k7q9x4m2n5p6r7s8t9z"}))]
pub struct EditAccepted {
    /// The message edited or deleted.
    pub message_id: String,
    /// `edit` or `delete`.
    pub action: String,
    /// `queued`: a job will change the sent message in Telegram (follow it with
    /// `GET /v1/messages/{job_id}`); `replaced`: the message was not sent yet and will be
    /// sent with the new content; `cancelled`: it was not sent yet and never will be.
    pub status: String,
    /// The edit or delete job, when one was queued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
}

/// Why an edit or delete is refused before anything is queued (422).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditRefusal {
    /// Sent more than 48 hours ago.
    WindowPassed,
    /// It never reached Telegram (`failed`, `dead`, `cancelled`, `throttled`, `unknown`).
    NotDelivered(String),
    /// The app deleted it already.
    Deleted,
    /// What cannot be edited: a job, or the text of a message sent in several parts.
    NotEditable(&'static str),
}

impl EditRefusal {
    /// A sentence for the problem's detail.
    pub fn detail(&self) -> String {
        match self {
            EditRefusal::WindowPassed => {
                "the message was sent more than 48 hours ago: Telegram no longer lets the bot change it"
                    .into()
            }
            EditRefusal::NotDelivered(status) => {
                format!("the message is {status}: it never reached Telegram, there is nothing to change")
            }
            EditRefusal::Deleted => "the message was deleted".into(),
            EditRefusal::NotEditable(why) => (*why).into(),
        }
    }
}

/// Where a message stands for an edit or delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Not sent yet and not being sent: changed in place.
    Waiting,
    /// Being sent right now: neither in place nor in Telegram yet.
    Sending,
    /// In Telegram: changed by a job.
    Sent,
    /// Never reached Telegram.
    Undelivered,
}

fn stage(m: &MessageRecord) -> Stage {
    match m.status.as_str() {
        "queued" | "paused" if m.parts_sent == 0 => Stage::Waiting,
        "queued" | "paused" | "sending" => Stage::Sending,
        "sent" => Stage::Sent,
        _ => Stage::Undelivered,
    }
}

/// Telegram's rules for a sent message at `now`.
fn check_sent(m: &MessageRecord, now: i64) -> Result<(), EditRefusal> {
    if m.deleted_at.is_some() {
        return Err(EditRefusal::Deleted);
    }
    let sent_at = m.finished_at.unwrap_or(m.updated_at);
    if now - sent_at >= EDIT_WINDOW_MS {
        return Err(EditRefusal::WindowPassed);
    }
    Ok(())
}

fn invalid(field: &'static str, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid {
        field,
        message: message.into(),
    }
}

fn refused(r: EditRefusal) -> ServiceError {
    use crate::http::problem::types;
    let (type_uri, title) = match &r {
        EditRefusal::WindowPassed => (types::EDIT_WINDOW_PASSED, "Edit window passed"),
        EditRefusal::NotDelivered(_) => (types::NOT_DELIVERED, "Not delivered"),
        EditRefusal::Deleted => (types::MESSAGE_DELETED, "Message deleted"),
        EditRefusal::NotEditable(_) => (types::NOT_EDITABLE, "Not editable"),
    };
    ServiceError::Refused {
        type_uri,
        title,
        detail: r.detail(),
    }
}

fn busy(id: &str) -> ServiceError {
    ServiceError::Conflict(format!(
        "message {id} is being sent right now; try again once it is sent"
    ))
}

impl Services {
    /// The app's message `id` of `tenant_id` that an edit or delete may act on (404 for
    /// another tenant's; jobs themselves are not edited).
    async fn editable_message(&self, tenant_id: &str, id: &str) -> ServiceResult<MessageRecord> {
        let m = self.get_message(tenant_id, id).await?;
        if JobKind::parse(&m.kind) != JobKind::Send {
            return Err(refused(EditRefusal::NotEditable(
                "this is an edit or delete job, not a message: edit the message it acts on",
            )));
        }
        Ok(m)
    }

    /// What message `id` sends now: its own rendering (a personal message) or its request's.
    async fn stored_content(&self, id: &str) -> ServiceResult<StoredContent> {
        let text = self
            .store
            .message_content(id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("message {id} has no content")))?;
        serde_json::from_str(&text)
            .map_err(|e| StoreError::Corrupt(format!("message {id}: {e}")).into())
    }

    /// The new content of an edit over the message's `original` (its media, topic and sound
    /// kept), and the server-side data of new callback buttons. `None` when only the
    /// buttons change.
    async fn edited_content(
        &self,
        tenant_id: &str,
        req: &EditRequest,
        original: &StoredContent,
        link: Option<&LinkRecord>,
    ) -> ServiceResult<(Option<StoredContent>, Option<Value>, Vec<Callback>)> {
        let buttons = req.buttons.clone().unwrap_or_default();
        let rendered = match (&req.text, &req.template) {
            (Some(_), Some(_)) => {
                return Err(invalid("template", "give text or template, not both"));
            }
            (None, None) => {
                if req.data.is_some() {
                    return Err(invalid("data", "is only used with `template`"));
                }
                if req.parse_mode.is_some() {
                    return Err(invalid("parse_mode", "is only used with `text`"));
                }
                None
            }
            (None, Some(key)) => {
                if req.parse_mode.is_some() {
                    return Err(invalid(
                        "parse_mode",
                        "comes from the template; leave it out with `template`",
                    ));
                }
                let template = self
                    .template_for(tenant_id, key)
                    .await
                    .map_err(|e| match e {
                        ServiceError::NotFound { .. } => {
                            invalid("template", format!("no template {key:?} in this tenant"))
                        }
                        other => other,
                    })?;
                // A template that reads `link` renders with the message's recipient, as
                // its send did.
                let data = match link {
                    Some(link) if is_personal(&template, req.data.as_ref(), false) => {
                        let mut data = req.data.clone().unwrap_or_else(|| json!({}));
                        if let Value::Object(map) = &mut data {
                            map.insert(LINK_VARIABLE.into(), link_variables(link));
                        }
                        Some(data)
                    }
                    _ => req.data.clone(),
                };
                let mut content = template.content(data.as_ref());
                if req.buttons.is_some() {
                    content.buttons = &buttons;
                }
                Some(render_content(
                    &content,
                    original.media.clone(),
                    original.message_thread_id,
                    original.silent,
                    OwnButtons::Refused,
                )?)
            }
            (Some(text), None) => {
                if req.data.is_some() {
                    return Err(invalid("data", "is only used with `template`"));
                }
                let content = Content {
                    source: text,
                    parse_mode: parse_mode(req.parse_mode.as_deref())?,
                    buttons: &buttons,
                    data: None,
                    templated: false,
                };
                Some(render_content(
                    &content,
                    original.media.clone(),
                    original.message_thread_id,
                    original.silent,
                    OwnButtons::Refused,
                )?)
            }
        };
        if let Some((mut content, callbacks)) = rendered {
            if req.buttons.is_none() && req.template.is_none() {
                // Buttons left out stay as they were.
                content.reply_markup = original.reply_markup.clone();
            }
            let markup = content.reply_markup.clone();
            return Ok((Some(content), markup, callbacks));
        }
        let Some(_) = &req.buttons else {
            return Err(invalid("text", "give text, template or buttons to change"));
        };
        // Buttons alone: rendered as an empty caption's keyboard (a caption may be empty,
        // a text may not), of which only the keyboard is kept.
        let content = Content {
            source: "",
            parse_mode: crate::templates::ParseMode::Plain,
            buttons: &buttons,
            data: None,
            templated: false,
        };
        let (rendered, callbacks) = render_content(
            &content,
            Some(("photo".into(), String::new())),
            None,
            false,
            OwnButtons::Refused,
        )?;
        Ok((None, rendered.reply_markup, callbacks))
    }

    /// Edits message `id`: a sent one in Telegram through an edit job, a waiting one by
    /// replacing its content.
    pub async fn edit_message(
        &self,
        tenant_id: &str,
        id: &str,
        req: &EditRequest,
    ) -> ServiceResult<EditAccepted> {
        let m = self.editable_message(tenant_id, id).await?;
        let now = self.clock.now_millis();
        match stage(&m) {
            Stage::Undelivered => return Err(refused(EditRefusal::NotDelivered(m.status))),
            Stage::Sending => return Err(busy(id)),
            Stage::Sent => check_sent(&m, now).map_err(refused)?,
            Stage::Waiting => {}
        }
        let original = self.stored_content(&m.id).await?;
        let link = match &m.link_id {
            Some(link_id) => self.store.get_tenant_link(tenant_id, link_id).await?,
            None => None,
        };
        let (content, markup, callbacks) = self
            .edited_content(tenant_id, req, &original, link.as_ref())
            .await?;
        if stage(&m) == Stage::Waiting {
            // Not sent yet: it will be sent with the new content instead.
            let mut content = content.unwrap_or_else(|| original.clone());
            content.reply_markup = markup;
            let content = serde_json::to_string(&content).unwrap_or_default();
            if !self
                .store
                .replace_content(id, &content, &callbacks, now)
                .await?
            {
                return Err(busy(id));
            }
            return Ok(EditAccepted {
                message_id: id.to_string(),
                action: "edit".into(),
                status: "replaced".into(),
                job_id: None,
            });
        }
        let ids: Vec<i64> = serde_json::from_str(&m.telegram_message_ids).unwrap_or_default();
        let (Some(first), Some(last)) = (ids.first().copied(), ids.last().copied()) else {
            return Err(refused(EditRefusal::NotDelivered(m.status)));
        };
        let call = match content {
            Some(c) => {
                if ids.len() > 1 {
                    return Err(refused(EditRefusal::NotEditable(
                        "the message was sent as several Telegram messages (a long text): only its buttons can be edited",
                    )));
                }
                if c.parts.len() > 1 {
                    return Err(invalid(
                        "text",
                        "is too long to edit into one Telegram message (4096 characters, 1024 for a caption)",
                    ));
                }
                let text = c.parts.first().cloned().unwrap_or_default();
                let mut params = json!({"message_id": first});
                let method = if original.media.is_some() {
                    params["caption"] = json!(text);
                    BotMethod::EditCaption
                } else {
                    params["text"] = json!(text);
                    BotMethod::EditText
                };
                if let Some(mode) = &c.parse_mode {
                    params["parse_mode"] = json!(mode);
                }
                // Telegram drops the keyboard of an edit that does not repeat it.
                if let Some(k) = &markup {
                    params["reply_markup"] = k.clone();
                }
                BotCall { method, params }
            }
            None => {
                let mut params = json!({"message_id": last});
                if let Some(k) = &markup {
                    params["reply_markup"] = k.clone();
                }
                BotCall {
                    method: BotMethod::EditReplyMarkup,
                    params,
                }
            }
        };
        let job = JobContent {
            delete: false,
            edit_of: m.id.clone(),
            calls: vec![call],
            membership_id: None,
        };
        let job_id = self.queue_job(&m, job, callbacks, now).await?;
        Ok(EditAccepted {
            message_id: id.to_string(),
            action: "edit".into(),
            status: "queued".into(),
            job_id: Some(job_id),
        })
    }

    /// Deletes message `id`: a sent one in Telegram through a delete job, a waiting one by
    /// cancelling it (`deleted_by_app`) so nothing of it reaches Telegram.
    pub async fn delete_message(&self, tenant_id: &str, id: &str) -> ServiceResult<EditAccepted> {
        let m = self.editable_message(tenant_id, id).await?;
        let now = self.clock.now_millis();
        match stage(&m) {
            Stage::Undelivered => Err(refused(EditRefusal::NotDelivered(m.status))),
            Stage::Sending => Err(busy(id)),
            Stage::Waiting => {
                let cancelled = self
                    .store
                    .cancel_message(&m.bot_id, m.chat_id, id, CancelReason::DeletedByApp, now)
                    .await?;
                crate::events::notify(cancelled.deliveries);
                if cancelled.messages == 0 {
                    return Err(busy(id));
                }
                Ok(EditAccepted {
                    message_id: id.to_string(),
                    action: "delete".into(),
                    status: "cancelled".into(),
                    job_id: None,
                })
            }
            Stage::Sent => {
                check_sent(&m, now).map_err(refused)?;
                let ids: Vec<i64> =
                    serde_json::from_str(&m.telegram_message_ids).unwrap_or_default();
                let job = JobContent {
                    delete: true,
                    edit_of: m.id.clone(),
                    calls: ids
                        .into_iter()
                        .map(|message_id| BotCall {
                            method: BotMethod::Delete,
                            params: json!({"message_id": message_id}),
                        })
                        .collect(),
                    membership_id: None,
                };
                let job_id = self.queue_job(&m, job, vec![], now).await?;
                Ok(EditAccepted {
                    message_id: id.to_string(),
                    action: "delete".into(),
                    status: "queued".into(),
                    job_id: Some(job_id),
                })
            }
        }
    }

    fn job_request(&self, tenant_id: &str, content: &StoredContent, now: i64) -> NewRequest {
        NewRequest {
            id: new_id("req"),
            tenant_id: tenant_id.to_string(),
            origin: "api".into(),
            content: serde_json::to_string(content).unwrap_or_default(),
            metadata: None,
            skipped: None,
            created_at: now,
        }
    }

    /// Queues a job on the sent message `m`, in its chat lane, and wakes its sender.
    async fn queue_job(
        &self,
        m: &MessageRecord,
        job: JobContent,
        callbacks: Vec<Callback>,
        now: i64,
    ) -> ServiceResult<String> {
        let kind = job.kind();
        let request = self.job_request(&m.tenant_id, &StoredContent::of_job(job), now);
        let id = new_id("msg");
        self.store
            .queue_job(&NewJob {
                request,
                id: id.clone(),
                kind,
                edit_of: Some(m.id.clone()),
                priority: 0,
                bot_id: m.bot_id.clone(),
                chat_id: m.chat_id,
                callbacks,
            })
            .await?;
        super::sender::wake_bot(&m.bot_id);
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::super::job::is_done_anyway;
    use super::*;
    use crate::telegram::TelegramError;

    fn sent(finished_at: i64) -> MessageRecord {
        MessageRecord {
            id: "msg_1".into(),
            request_id: "req_1".into(),
            tenant_id: "ten_1".into(),
            bot_id: "bot_1".into(),
            chat_id: 7,
            link_id: None,
            broadcast_id: None,
            status: "sent".into(),
            priority: 0,
            send_at: 0,
            next_attempt_at: 0,
            attempts: 1,
            retries: 0,
            rate_limited: 0,
            parts_sent: 1,
            telegram_message_ids: "[5]".into(),
            error_class: None,
            last_error: None,
            errors: "[]".into(),
            created_at: 0,
            updated_at: finished_at,
            finished_at: Some(finished_at),
            local_at: None,
            local_zone: None,
            category: None,
            held: None,
            kind: "send".into(),
            edit_of: None,
            edited_at: None,
            deleted_at: None,
        }
    }

    #[test]
    fn a_sent_message_can_be_changed_for_48_hours() {
        let m = sent(1_000);
        assert_eq!(check_sent(&m, 1_000 + EDIT_WINDOW_MS - 1), Ok(()));
        assert_eq!(
            check_sent(&m, 1_000 + EDIT_WINDOW_MS),
            Err(EditRefusal::WindowPassed)
        );
        let mut deleted = sent(1_000);
        deleted.deleted_at = Some(2_000);
        assert_eq!(check_sent(&deleted, 2_000), Err(EditRefusal::Deleted));
    }

    #[test]
    fn stages_follow_the_state() {
        let mut m = sent(0);
        assert_eq!(stage(&m), Stage::Sent);
        m.status = "queued".into();
        m.parts_sent = 0;
        assert_eq!(stage(&m), Stage::Waiting);
        m.parts_sent = 1;
        assert_eq!(stage(&m), Stage::Sending, "a long text half sent");
        m.status = "failed".into();
        assert_eq!(stage(&m), Stage::Undelivered);
    }

    #[test]
    fn not_modified_is_done() {
        assert!(is_done_anyway(&TelegramError::BadRequest(
            "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message".into()
        )));
        assert!(!is_done_anyway(&TelegramError::BadRequest(
            "Bad Request: message to edit not found".into()
        )));
    }

    #[test]
    fn job_calls_carry_the_lane_chat() {
        let c = StoredContent::of_job(JobContent {
            delete: true,
            edit_of: "msg_1".into(),
            calls: vec![
                BotCall {
                    method: BotMethod::Delete,
                    params: json!({"message_id": 5}),
                },
                BotCall {
                    method: BotMethod::Delete,
                    params: json!({"message_id": 6}),
                },
            ],
            membership_id: None,
        });
        assert_eq!(c.parts.len(), 2);
        let (method, params) = c.call_for(1, 42);
        assert_eq!(method, "deleteMessage");
        assert_eq!(params, json!({"message_id": 6, "chat_id": 42}));
        let back: StoredContent =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }
}
