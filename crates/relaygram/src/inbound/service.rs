//! The audit log of inbound updates, as the API offers it.

use crate::services::{Principal, ServiceError, ServiceResult, Services};
use crate::store::{UpdateCursor, UpdateFilter, UpdateRecord};

/// One page of updates.
#[derive(Debug)]
pub struct UpdatePage {
    /// Newest first.
    pub items: Vec<UpdateRecord>,
    /// Pass as `after` for the next page.
    pub next_cursor: Option<String>,
}

impl Services {
    /// Updates visible to `principal`, newest first.
    pub async fn list_updates(
        &self,
        principal: &Principal,
        mut filter: UpdateFilter,
        after: Option<&str>,
        limit: u32,
    ) -> ServiceResult<UpdatePage> {
        if let Some(own) = principal.tenant() {
            if filter.tenant_id.as_deref().is_some_and(|t| t != own) {
                return Ok(UpdatePage {
                    items: Vec::new(),
                    next_cursor: None,
                });
            }
            filter.tenant_id = Some(own.to_string());
        }
        if let Some(bot_id) = &filter.bot_id {
            // Another tenant's bot answers 404, as if it did not exist.
            self.get_bot_record(principal, bot_id).await?;
        }
        let cursor = after
            .map(|a| {
                a.parse::<UpdateCursor>()
                    .map_err(|()| ServiceError::InvalidQuery {
                        field: "after",
                        message: "is not a cursor this API returned".into(),
                    })
            })
            .transpose()?;
        let (items, next) = self
            .store
            .list_updates(&filter, cursor.as_ref(), limit)
            .await?;
        Ok(UpdatePage {
            items,
            next_cursor: next.map(|c| c.to_string()),
        })
    }
}
