//! Reading the parts of an Update that routing needs, while the raw JSON is kept whole:
//! Telegram adds fields every month and we must store and pass on what we do not know.

use serde_json::Value;

/// Why an update body cannot be accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UpdateError {
    /// Not a JSON object.
    #[error("an update must be a JSON object")]
    NotAnObject,
    /// `update_id` is missing or not an integer.
    #[error("update_id must be an integer")]
    MissingId,
}

/// The routing-relevant facts of one update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateSummary {
    /// Telegram's id, unique per bot (within Telegram's retention window).
    pub update_id: i64,
    /// The update's type: the name of its one field besides `update_id` (`message`,
    /// `callback_query`, …), or `unknown` when it has none.
    pub kind: String,
    /// The chat it belongs to, which orders its processing.
    pub chat_id: Option<i64>,
    /// The Telegram user who caused it.
    pub user_id: Option<i64>,
    /// The message text or caption, for messages.
    pub text: Option<String>,
}

impl UpdateSummary {
    /// Reads a raw update. Anything beyond `update_id` may be missing or unknown.
    pub fn read(update: &Value) -> Result<UpdateSummary, UpdateError> {
        let obj = update.as_object().ok_or(UpdateError::NotAnObject)?;
        let update_id = obj
            .get("update_id")
            .and_then(Value::as_i64)
            .ok_or(UpdateError::MissingId)?;
        let (kind, payload) = obj
            .iter()
            .find(|(k, _)| k.as_str() != "update_id")
            .map(|(k, v)| (k.clone(), Some(v)))
            .unwrap_or_else(|| ("unknown".to_string(), None));
        let payload = payload.filter(|p| p.is_object());
        let chat = payload.and_then(|p| {
            p.get("chat")
                .or_else(|| p.get("message").and_then(|m| m.get("chat")))
        });
        let chat_id = chat.and_then(|c| c.get("id")).and_then(Value::as_i64);
        let user_id = payload
            .and_then(|p| p.get("from").or_else(|| p.get("user")))
            .and_then(|u| u.get("id"))
            .and_then(Value::as_i64);
        let text = payload
            .and_then(|p| p.get("text").or_else(|| p.get("caption")))
            .and_then(Value::as_str)
            .map(str::to_string);
        Ok(UpdateSummary {
            update_id,
            kind,
            chat_id: chat_id.or(user_id),
            user_id,
            text,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_a_message() {
        let u = json!({"update_id": 7, "message": {"message_id": 1, "date": 0, "text": "/start abc",
            "chat": {"id": 42, "type": "private"}, "from": {"id": 42, "is_bot": false, "first_name": "A"}}});
        let s = UpdateSummary::read(&u).unwrap();
        assert_eq!(s.update_id, 7);
        assert_eq!(s.kind, "message");
        assert_eq!(s.chat_id, Some(42));
        assert_eq!(s.user_id, Some(42));
        assert_eq!(s.text.as_deref(), Some("/start abc"));
    }

    #[test]
    fn reads_a_callback_query_by_its_message_chat() {
        let u = json!({"update_id": 8, "callback_query": {"id": "x", "data": "d",
            "from": {"id": 5}, "message": {"chat": {"id": -100}}}});
        let s = UpdateSummary::read(&u).unwrap();
        assert_eq!(
            (s.kind.as_str(), s.chat_id, s.user_id),
            ("callback_query", Some(-100), Some(5))
        );
    }

    #[test]
    fn unknown_types_are_accepted() {
        let u = json!({"update_id": 9, "brand_new_thing": {"whatever": [1, 2]}});
        let s = UpdateSummary::read(&u).unwrap();
        assert_eq!(s.kind, "brand_new_thing");
        assert_eq!(s.chat_id, None);
        let bare = UpdateSummary::read(&json!({"update_id": 10})).unwrap();
        assert_eq!(bare.kind, "unknown");
    }

    #[test]
    fn rejects_what_is_not_an_update() {
        assert_eq!(
            UpdateSummary::read(&json!([1])),
            Err(UpdateError::NotAnObject)
        );
        assert_eq!(
            UpdateSummary::read(&json!({"message": {}})),
            Err(UpdateError::MissingId)
        );
        assert_eq!(
            UpdateSummary::read(&json!({"update_id": "7"})),
            Err(UpdateError::MissingId)
        );
    }
}
