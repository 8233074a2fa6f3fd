//! Storage for commands: Custom bot commands.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;

pub use super::records::{CommandAction, CustomCommand, StoredCommand};
use super::sql::{PgStore, SqliteStore};
use super::{StoreError, StoreResult};

/// Custom bot commands, kept in menu order per bot.
#[async_trait]
pub trait CommandStore: Send + Sync {
    /// A bot's custom commands in menu order (what the command router needs).
    async fn list_bot_commands(&self, bot_id: &str) -> StoreResult<Vec<CustomCommand>>;
    /// A bot's custom commands in menu order, with their times.
    async fn list_stored_commands(&self, bot_id: &str) -> StoreResult<Vec<StoredCommand>>;
    /// One custom command of a bot.
    async fn get_bot_command(
        &self,
        bot_id: &str,
        command: &str,
    ) -> StoreResult<Option<StoredCommand>>;
    /// Stores a new command; [`StoreError::Conflict`] when the bot already has one with
    /// this name. With `order` (all of the bot's command names, the new one included, in
    /// menu order) the positions are set from it; without, the command goes last.
    async fn insert_bot_command(
        &self,
        command: &StoredCommand,
        order: Option<&[String]>,
    ) -> StoreResult<()>;
    /// Changes a command's description, action and `updated_at`; with `order`, sets every
    /// position from it. `false` when the command does not exist.
    async fn update_bot_command(
        &self,
        command: &StoredCommand,
        order: Option<&[String]>,
    ) -> StoreResult<bool>;
    /// Deletes a command; `false` when it did not exist.
    async fn delete_bot_command(&self, bot_id: &str, command: &str) -> StoreResult<bool>;
}

const COMMAND_COLS: &str =
    "bot_id, command, description, action, reply_text, created_at, updated_at";

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

fn action_of(kind: &str, reply_text: Option<String>) -> StoreResult<CommandAction> {
    match (kind, reply_text) {
        ("reply", Some(text)) => Ok(CommandAction::Reply { text }),
        ("forward", _) => Ok(CommandAction::Forward),
        (other, _) => Err(StoreError::Corrupt(format!(
            "unknown command action {other:?}"
        ))),
    }
}

macro_rules! commands_store {
    ($store:ty, $row:ty) => {
        impl $store {
            fn stored_command(row: &$row) -> StoreResult<StoredCommand> {
                Ok(StoredCommand {
                    bot_id: row.try_get("bot_id")?,
                    command: CustomCommand {
                        command: row.try_get("command")?,
                        description: row.try_get("description")?,
                        action: action_of(
                            row.try_get::<&str, _>("action")?,
                            row.try_get("reply_text")?,
                        )?,
                    },
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                })
            }
        }

        #[async_trait]
        impl CommandStore for $store {
            async fn list_bot_commands(&self, bot_id: &str) -> StoreResult<Vec<CustomCommand>> {
                // Read for every command a user sends: cached briefly (see cache.rs).
                if let Some(commands) = self.hot.commands.get(bot_id) {
                    return Ok(commands);
                }
                let ticket = self.hot.commands.ticket();
                let commands: Vec<CustomCommand> = self
                    .list_stored_commands(bot_id)
                    .await?
                    .into_iter()
                    .map(|c| c.command)
                    .collect();
                self.hot.commands.put(ticket, bot_id, commands.clone());
                Ok(commands)
            }

            async fn list_stored_commands(&self, bot_id: &str) -> StoreResult<Vec<StoredCommand>> {
                let sql = format!(
                    "SELECT {COMMAND_COLS} FROM bot_commands WHERE bot_id = $1 \
                     ORDER BY position, created_at, command"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(bot_id)
                    .fetch_all(&self.db)
                    .await?
                    .iter()
                    .map(Self::stored_command)
                    .collect()
            }

            async fn get_bot_command(
                &self,
                bot_id: &str,
                command: &str,
            ) -> StoreResult<Option<StoredCommand>> {
                let sql = format!(
                    "SELECT {COMMAND_COLS} FROM bot_commands WHERE bot_id = $1 AND command = $2"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(bot_id)
                    .bind(command)
                    .fetch_optional(&self.db)
                    .await?
                    .as_ref()
                    .map(Self::stored_command)
                    .transpose()
            }

            async fn insert_bot_command(
                &self,
                c: &StoredCommand,
                order: Option<&[String]>,
            ) -> StoreResult<()> {
                let mut tx = self.db.begin().await?;
                let result = sqlx::query(
                    "INSERT INTO bot_commands \
                     (bot_id, command, description, action, reply_text, position, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, \
                     (SELECT COALESCE(MAX(position), -1) + 1 FROM bot_commands WHERE bot_id = $1), \
                     $6, $7)",
                )
                .bind(&c.bot_id)
                .bind(&c.command.command)
                .bind(&c.command.description)
                .bind(c.command.action.kind())
                .bind(c.command.action.reply_text())
                .bind(c.created_at)
                .bind(c.updated_at)
                .execute(&mut *tx)
                .await;
                match result {
                    Ok(_) => {}
                    Err(e) if is_unique_violation(&e) => {
                        return Err(StoreError::Conflict(format!(
                            "command /{} already exists",
                            c.command.command
                        )));
                    }
                    Err(e) => return Err(e.into()),
                }
                if let Some(order) = order {
                    for (position, name) in order.iter().enumerate() {
                        sqlx::query(
                            "UPDATE bot_commands SET position = $3 WHERE bot_id = $1 AND command = $2",
                        )
                        .bind(&c.bot_id)
                        .bind(name)
                        .bind(position as i64)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                let done = tx.commit().await;
                self.hot.commands.forget(&c.bot_id);
                done?;
                Ok(())
            }

            async fn update_bot_command(
                &self,
                c: &StoredCommand,
                order: Option<&[String]>,
            ) -> StoreResult<bool> {
                let mut tx = self.db.begin().await?;
                let done = sqlx::query(
                    "UPDATE bot_commands SET description = $3, action = $4, reply_text = $5, \
                     updated_at = $6 WHERE bot_id = $1 AND command = $2",
                )
                .bind(&c.bot_id)
                .bind(&c.command.command)
                .bind(&c.command.description)
                .bind(c.command.action.kind())
                .bind(c.command.action.reply_text())
                .bind(c.updated_at)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Ok(false);
                }
                if let Some(order) = order {
                    for (position, name) in order.iter().enumerate() {
                        sqlx::query(
                            "UPDATE bot_commands SET position = $3 WHERE bot_id = $1 AND command = $2",
                        )
                        .bind(&c.bot_id)
                        .bind(name)
                        .bind(position as i64)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                let done = tx.commit().await;
                self.hot.commands.forget(&c.bot_id);
                done?;
                Ok(true)
            }

            async fn delete_bot_command(&self, bot_id: &str, command: &str) -> StoreResult<bool> {
                let done =
                    sqlx::query("DELETE FROM bot_commands WHERE bot_id = $1 AND command = $2")
                        .bind(bot_id)
                        .bind(command)
                        .execute(&self.db)
                        .await;
                self.hot.commands.forget(bot_id);
                Ok(done?.rows_affected() == 1)
            }
        }
    };
}

commands_store!(SqliteStore, SqliteRow);
commands_store!(PgStore, PgRow);
