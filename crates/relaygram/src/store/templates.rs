//! Storage for message templates, per tenant and key.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;

use super::sql::{PgStore, SqliteStore};
use super::{Listed, Page, StoreError, StoreResult};
use crate::templates::TemplateRecord;

/// Message templates of tenants.
#[async_trait]
pub trait TemplateStore: Send + Sync {
    /// Stores a new template; [`StoreError::Conflict`] when the tenant has one with this key.
    async fn insert_template(&self, template: &TemplateRecord) -> StoreResult<()>;
    /// One template of a tenant.
    async fn get_template(&self, tenant_id: &str, key: &str)
    -> StoreResult<Option<TemplateRecord>>;
    /// A tenant's templates in key order, keys after `page.after`.
    async fn list_templates(
        &self,
        tenant_id: &str,
        page: &Page,
    ) -> StoreResult<Listed<TemplateRecord>>;
    /// Replaces a template's text, parse mode, buttons, description and `updated_at`;
    /// `false` when it does not exist.
    async fn update_template(&self, template: &TemplateRecord) -> StoreResult<bool>;
    /// Deletes a template; `false` when it did not exist.
    async fn delete_template(&self, tenant_id: &str, key: &str) -> StoreResult<bool>;
}

const TEMPLATE_COLS: &str =
    "tenant_id, key, text, parse_mode, buttons, description, created_at, updated_at";

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

fn buttons_json(t: &TemplateRecord) -> StoreResult<String> {
    serde_json::to_string(&t.buttons)
        .map_err(|e| StoreError::Corrupt(format!("template buttons: {e}")))
}

macro_rules! templates_store {
    ($store:ty, $row:ty) => {
        impl $store {
            fn template(row: &$row) -> StoreResult<TemplateRecord> {
                let buttons: String = row.try_get("buttons")?;
                Ok(TemplateRecord {
                    tenant_id: row.try_get("tenant_id")?,
                    key: row.try_get("key")?,
                    text: row.try_get("text")?,
                    parse_mode: row
                        .try_get::<&str, _>("parse_mode")?
                        .parse()
                        .map_err(StoreError::Corrupt)?,
                    buttons: serde_json::from_str(&buttons)
                        .map_err(|e| StoreError::Corrupt(format!("template buttons: {e}")))?,
                    description: row.try_get("description")?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                })
            }
        }

        #[async_trait]
        impl TemplateStore for $store {
            async fn insert_template(&self, t: &TemplateRecord) -> StoreResult<()> {
                let result = sqlx::query(
                    "INSERT INTO templates \
                     (tenant_id, key, text, parse_mode, buttons, description, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&t.tenant_id)
                .bind(&t.key)
                .bind(&t.text)
                .bind(t.parse_mode.as_str())
                .bind(buttons_json(t)?)
                .bind(t.description.as_deref())
                .bind(t.created_at)
                .bind(t.updated_at)
                .execute(&self.db)
                .await;
                match result {
                    Ok(_) => Ok(()),
                    Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                        "a template with key {:?} already exists",
                        t.key
                    ))),
                    Err(e) => Err(e.into()),
                }
            }

            async fn get_template(
                &self,
                tenant_id: &str,
                key: &str,
            ) -> StoreResult<Option<TemplateRecord>> {
                let sql = format!(
                    "SELECT {TEMPLATE_COLS} FROM templates WHERE tenant_id = $1 AND key = $2"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(tenant_id)
                    .bind(key)
                    .fetch_optional(&self.db)
                    .await?
                    .as_ref()
                    .map(Self::template)
                    .transpose()
            }

            async fn list_templates(
                &self,
                tenant_id: &str,
                page: &Page,
            ) -> StoreResult<Listed<TemplateRecord>> {
                let sql = format!(
                    "SELECT {TEMPLATE_COLS} FROM templates \
                     WHERE tenant_id = $1 AND ($2 IS NULL OR key > $2) \
                     ORDER BY key LIMIT $3"
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(tenant_id)
                    .bind(page.after.as_deref())
                    .bind(i64::from(page.size()) + 1)
                    .fetch_all(&self.db)
                    .await?;
                let items = rows
                    .iter()
                    .map(Self::template)
                    .collect::<StoreResult<Vec<_>>>()?;
                Ok(Listed::from_overfetch(items, page, |t| &t.key))
            }

            async fn update_template(&self, t: &TemplateRecord) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE templates SET text = $3, parse_mode = $4, buttons = $5, \
                     description = $6, updated_at = $7 WHERE tenant_id = $1 AND key = $2",
                )
                .bind(&t.tenant_id)
                .bind(&t.key)
                .bind(&t.text)
                .bind(t.parse_mode.as_str())
                .bind(buttons_json(t)?)
                .bind(t.description.as_deref())
                .bind(t.updated_at)
                .execute(&self.db)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn delete_template(&self, tenant_id: &str, key: &str) -> StoreResult<bool> {
                let done = sqlx::query("DELETE FROM templates WHERE tenant_id = $1 AND key = $2")
                    .bind(tenant_id)
                    .bind(key)
                    .execute(&self.db)
                    .await?;
                Ok(done.rows_affected() == 1)
            }
        }
    };
}

templates_store!(SqliteStore, SqliteRow);
templates_store!(PgStore, PgRow);
