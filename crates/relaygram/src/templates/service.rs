//! The rules for stored templates: keys, checks at save time (syntax with the line, button
//! shape, and the markup of templates that need no data), tenant scoping, previews.

use super::{
    ButtonSpec, Content, Limit, MAX_BUTTONS, MAX_BUTTONS_PER_ROW, ParseMode, Rendered,
    TemplateError, TemplateRecord, check_syntax, render,
};
use crate::events::acting_tenant;
use crate::services::{Principal, ServiceError, ServiceResult, Services};
use crate::store::{Listed, Page, StoreError};

/// Longest template key.
pub const MAX_KEY_LEN: usize = 64;
/// Longest template source, in bytes.
pub const MAX_SOURCE_LEN: usize = 65_536;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_LEN: usize = 500;

/// A template as the app sends it (not yet checked).
#[derive(Debug, Clone)]
pub struct TemplateInput {
    /// The minijinja source of the text.
    pub text: String,
    /// Markup of the text (HTML when omitted).
    pub parse_mode: ParseMode,
    /// Rows of (templated) buttons.
    pub buttons: Vec<Vec<ButtonSpec>>,
    /// Free text for people.
    pub description: Option<String>,
}

fn invalid(field: &'static str, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid {
        field,
        message: message.into(),
    }
}

fn not_found(key: &str) -> ServiceError {
    ServiceError::NotFound {
        kind: "template",
        id: key.to_string(),
    }
}

/// Checks a key: 1 to 64 of `A-Z a-z 0-9 _ . : -` (it goes in URLs and in `POST /v1/messages`).
pub fn parse_key(raw: &str) -> ServiceResult<String> {
    let key = raw.trim();
    if key.is_empty()
        || key.len() > MAX_KEY_LEN
        || !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
    {
        return Err(invalid(
            "key",
            format!("must be 1 to {MAX_KEY_LEN} of A-Z, a-z, 0-9, `_`, `.`, `:` and `-`"),
        ));
    }
    Ok(key.to_string())
}

fn syntax(source: &str, field: &'static str, what: &str) -> ServiceResult<()> {
    check_syntax(source).map_err(|e| match e {
        TemplateError::Syntax(m) | TemplateError::Render(m) | TemplateError::Missing(_, m) => {
            invalid(field, format!("{what} is not a valid template: {m}"))
        }
    })
}

/// Checks what can be checked without data: syntax (naming the line), sizes, button shape,
/// and, for a template whose text renders without data, that Telegram accepts the markup.
fn check(input: TemplateInput) -> ServiceResult<TemplateInput> {
    if input.text.trim().is_empty() || input.text.len() > MAX_SOURCE_LEN {
        return Err(invalid(
            "text",
            format!("must be 1 to {MAX_SOURCE_LEN} bytes and not only spaces"),
        ));
    }
    syntax(&input.text, "text", "the text")?;
    let total: usize = input.buttons.iter().map(Vec::len).sum();
    if total > MAX_BUTTONS {
        return Err(invalid(
            "buttons",
            format!("at most {MAX_BUTTONS} buttons (Telegram's limit), got {total}"),
        ));
    }
    for (r, row) in input.buttons.iter().enumerate() {
        if row.is_empty() || row.len() > MAX_BUTTONS_PER_ROW {
            return Err(invalid(
                "buttons",
                format!(
                    "buttons[{r}] must hold 1 to {MAX_BUTTONS_PER_ROW} buttons (Telegram's limit)"
                ),
            ));
        }
        for (c, b) in row.iter().enumerate() {
            let at = format!("buttons[{r}][{c}]");
            if b.text.trim().is_empty() {
                return Err(invalid("buttons", format!("{at}.text is empty")));
            }
            syntax(&b.text, "buttons", &format!("{at}.text"))?;
            match (&b.url, &b.callback_data) {
                (Some(v), None) => syntax(v, "buttons", &format!("{at}.url"))?,
                (None, Some(v)) => syntax(v, "buttons", &format!("{at}.callback_data"))?,
                _ => {
                    return Err(invalid(
                        "buttons",
                        format!("{at} needs exactly one of `url` and `callback_data`"),
                    ));
                }
            }
        }
    }
    let description = match input.description.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(d) if d.chars().count() > MAX_DESCRIPTION_LEN || d.chars().any(char::is_control) => {
            return Err(invalid(
                "description",
                format!(
                    "must be at most {MAX_DESCRIPTION_LEN} characters without control characters"
                ),
            ));
        }
        Some(d) => Some(d.to_string()),
    };
    // A text that needs no data can be checked whole now; one that needs data is checked
    // at each send (and by the preview).
    let dry = render(
        &Content {
            source: &input.text,
            parse_mode: input.parse_mode,
            buttons: &input.buttons,
            data: None,
            templated: true,
        },
        Limit::Text,
    );
    if let Err(e) = dry
        && e.field != "data"
    {
        return Err(invalid(
            if e.field == "buttons" {
                "buttons"
            } else {
                "text"
            },
            e.message,
        ));
    }
    Ok(TemplateInput {
        description,
        ..input
    })
}

impl Services {
    /// The template `key` of `tenant_id` (for sending); [`ServiceError::NotFound`] with kind
    /// `template` when there is none.
    pub async fn template_for(&self, tenant_id: &str, key: &str) -> ServiceResult<TemplateRecord> {
        self.store
            .get_template(tenant_id, key)
            .await?
            .ok_or_else(|| not_found(key))
    }

    /// Stores a new template after checking it; 409 when the key is taken.
    pub async fn create_template(
        &self,
        principal: &Principal,
        tenant_id: Option<&str>,
        key: &str,
        input: TemplateInput,
    ) -> ServiceResult<TemplateRecord> {
        let tenant_id = acting_tenant(self, principal, tenant_id).await?;
        let key = parse_key(key)?;
        let input = check(input)?;
        let now = self.clock.now_millis();
        let record = TemplateRecord {
            tenant_id,
            key,
            text: input.text,
            parse_mode: input.parse_mode,
            buttons: input.buttons,
            description: input.description,
            created_at: now,
            updated_at: now,
        };
        self.store
            .insert_template(&record)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(m) => ServiceError::Conflict(m),
                other => other.into(),
            })?;
        tracing::info!(tenant_id = %record.tenant_id, key = %record.key, "template created");
        Ok(record)
    }

    /// A tenant's templates in key order.
    pub async fn list_templates(
        &self,
        principal: &Principal,
        tenant_id: Option<&str>,
        page: &Page,
    ) -> ServiceResult<Listed<TemplateRecord>> {
        let tenant_id = acting_tenant(self, principal, tenant_id).await?;
        Ok(self.store.list_templates(&tenant_id, page).await?)
    }

    /// One template.
    pub async fn get_template(
        &self,
        principal: &Principal,
        tenant_id: Option<&str>,
        key: &str,
    ) -> ServiceResult<TemplateRecord> {
        let tenant_id = acting_tenant(self, principal, tenant_id).await?;
        self.template_for(&tenant_id, key).await
    }

    /// Replaces a template's text, parse mode, buttons and description after checking them.
    pub async fn update_template(
        &self,
        principal: &Principal,
        tenant_id: Option<&str>,
        key: &str,
        input: TemplateInput,
    ) -> ServiceResult<TemplateRecord> {
        let tenant_id = acting_tenant(self, principal, tenant_id).await?;
        let mut record = self.template_for(&tenant_id, key).await?;
        let input = check(input)?;
        record.text = input.text;
        record.parse_mode = input.parse_mode;
        record.buttons = input.buttons;
        record.description = input.description;
        record.updated_at = self.clock.now_millis();
        if !self.store.update_template(&record).await? {
            return Err(not_found(key));
        }
        tracing::info!(tenant_id = %record.tenant_id, key = %record.key, "template updated");
        Ok(record)
    }

    /// Deletes a template.
    pub async fn delete_template(
        &self,
        principal: &Principal,
        tenant_id: Option<&str>,
        key: &str,
    ) -> ServiceResult<()> {
        let tenant_id = acting_tenant(self, principal, tenant_id).await?;
        if !self.store.delete_template(&tenant_id, key).await? {
            return Err(not_found(key));
        }
        tracing::info!(tenant_id, key, "template deleted");
        Ok(())
    }

    /// Renders a stored template with `data` exactly as a send would (message limit).
    pub async fn preview_template(
        &self,
        principal: &Principal,
        tenant_id: Option<&str>,
        key: &str,
        data: Option<&serde_json::Value>,
    ) -> ServiceResult<Rendered> {
        let record = self.get_template(principal, tenant_id, key).await?;
        Ok(render(&record.content(data), Limit::Text)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(text: &str) -> TemplateInput {
        TemplateInput {
            text: text.into(),
            parse_mode: ParseMode::Html,
            buttons: vec![],
            description: None,
        }
    }

    #[test]
    fn keys_are_url_safe() {
        assert_eq!(parse_key(" order.paid ").unwrap(), "order.paid");
        assert!(parse_key("a:b-c_D9").is_ok());
        for bad in ["", "a b", "a/b", "é", &"k".repeat(65)] {
            assert!(parse_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn templates_are_checked_when_saved() {
        assert!(check(input("Hi {{ name }}")).is_ok());
        let err = check(input("one\ntwo {{ name }")).unwrap_err().to_string();
        assert!(err.starts_with("text:") && err.contains("line 2"), "{err}");
        // No data needed: the markup is checked now.
        let err = check(input("<b>static</i>")).unwrap_err().to_string();
        assert!(err.contains("can't parse entities"), "{err}");
        // Needs data: checked at send time.
        assert!(check(input("<b>{{ x }}</b>")).is_ok());
        let mut with_buttons = input("hi");
        with_buttons.buttons = vec![vec![ButtonSpec {
            text: "Go".into(),
            url: Some("{{ url ".into()),
            callback_data: None,
            ..ButtonSpec::default()
        }]];
        let err = check(with_buttons).unwrap_err().to_string();
        assert!(err.contains("buttons[0][0].url"), "{err}");
        let mut described = input("hi");
        described.description = Some("  ".into());
        assert_eq!(check(described).unwrap().description, None);
    }
}
