//! The rules for custom commands: validation, the per-bot limit, and keeping Telegram's
//! menu and the store in step.
//!
//! A change is computed in memory from the stored list, sent to Telegram with
//! `setMyCommands`, and stored only after Telegram accepted it: a Telegram failure leaves
//! the store untouched. Changes to one bot are serialized inside this process (one lock
//! per bot, striped), so two concurrent changes cannot leave the menu showing an older
//! list than the store holds. Should storing fail after Telegram accepted, the menu is set
//! back from the store.

use std::hash::{BuildHasher, RandomState};
use std::sync::LazyLock;

use tokio::sync::{Mutex, MutexGuard};

use super::{
    BUILT_IN, CommandAction, CustomCommand, MAX_COMMANDS_PER_BOT, StoredCommand, is_built_in, menu,
    parse_action, parse_description, parse_name,
};
use crate::ids::now_millis;
use crate::services::{Principal, ServiceError, ServiceResult, Services};
use crate::store::{BotRecord, StoreError};
use crate::telegram::BotToken;

/// A new command as the app sends it (not yet validated).
#[derive(Debug, Clone)]
pub struct NewCommand {
    /// Name, with or without a leading `/`.
    pub command: String,
    /// Menu description.
    pub description: String,
    /// Reply or forward.
    pub action: CommandAction,
    /// 0-based place among the bot's custom commands; last when `None`.
    pub position: Option<usize>,
}

/// Changes to a command; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct CommandPatch {
    /// New menu description.
    pub description: Option<String>,
    /// New action.
    pub action: Option<CommandAction>,
    /// New 0-based place among the bot's custom commands.
    pub position: Option<usize>,
}

/// A stored command and its 0-based place among the bot's custom commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedCommand {
    /// The command.
    pub stored: StoredCommand,
    /// Its place in the menu after the built-ins.
    pub position: usize,
}

const LOCK_STRIPES: usize = 64;

struct MenuLocks {
    hasher: RandomState,
    stripes: Vec<Mutex<()>>,
}

static MENU_LOCKS: LazyLock<MenuLocks> = LazyLock::new(|| MenuLocks {
    hasher: RandomState::new(),
    stripes: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
});

async fn lock_menu(bot_id: &str) -> MutexGuard<'static, ()> {
    let locks = &*MENU_LOCKS;
    let stripe = (locks.hasher.hash_one(bot_id) as usize) % LOCK_STRIPES;
    locks.stripes[stripe].lock().await
}

fn not_found(bot_id: &str, name: &str) -> ServiceError {
    ServiceError::NotFound {
        kind: "command",
        id: format!("/{name} of bot {bot_id}"),
    }
}

fn check_position(position: Option<usize>, len: usize) -> ServiceResult<()> {
    match position {
        Some(p) if p >= len => Err(ServiceError::Invalid {
            field: "position",
            message: format!(
                "must be between 0 and {} (the bot's custom commands are numbered from 0)",
                len.saturating_sub(1)
            ),
        }),
        _ => Ok(()),
    }
}

impl Services {
    async fn command_bot(
        &self,
        principal: &Principal,
        bot_id: &str,
    ) -> ServiceResult<(BotRecord, BotToken)> {
        let bot = self.get_bot_record(principal, bot_id).await?;
        let token = self.token_of(&bot)?;
        Ok((bot, token))
    }

    /// Sets the bot's menu to the built-ins and `custom`, in order.
    async fn push_menu(&self, token: &BotToken, custom: &[CustomCommand]) -> ServiceResult<()> {
        self.telegram.set_my_commands(token, menu(custom)).await?;
        Ok(())
    }

    /// After Telegram accepted a menu that could not be stored: set the menu back from the
    /// store (best effort) and pass the storage error on.
    async fn restore_menu(
        &self,
        bot_id: &str,
        token: &BotToken,
        cause: StoreError,
    ) -> ServiceError {
        match self.store.list_bot_commands(bot_id).await {
            Ok(stored) => {
                if let Err(e) = self.push_menu(token, &stored).await {
                    tracing::error!(bot_id, error = %e, "could not set the menu back after a failed store");
                }
            }
            Err(e) => {
                tracing::error!(bot_id, error = %e, "could not read commands to set the menu back");
            }
        }
        match cause {
            StoreError::Conflict(d) => ServiceError::Conflict(d),
            other => other.into(),
        }
    }

    /// Syncs a bot's menu from the store (built-ins first, then its custom commands).
    pub async fn sync_command_menu(&self, bot: &BotRecord, token: &BotToken) -> ServiceResult<()> {
        let _guard = lock_menu(&bot.id).await;
        let custom = self.store.list_bot_commands(&bot.id).await?;
        self.push_menu(token, &custom).await
    }

    /// Adds a custom command to a bot and its menu.
    pub async fn create_command(
        &self,
        principal: &Principal,
        bot_id: &str,
        new: NewCommand,
    ) -> ServiceResult<PlacedCommand> {
        let (bot, token) = self.command_bot(principal, bot_id).await?;
        let name = parse_name(&new.command)?;
        let description = parse_description(&new.description)?;
        let action = parse_action(new.action)?;
        if is_built_in(&name) {
            return Err(ServiceError::Conflict(format!(
                "/{name} is a built-in command and cannot be redefined"
            )));
        }
        let _guard = lock_menu(&bot.id).await;
        let mut list = self.store.list_stored_commands(&bot.id).await?;
        if list.iter().any(|c| c.command.command == name) {
            return Err(ServiceError::Conflict(format!(
                "bot {} already has a command /{name}",
                bot.id
            )));
        }
        if BUILT_IN.len() + list.len() >= MAX_COMMANDS_PER_BOT {
            return Err(ServiceError::Invalid {
                field: "command",
                message: format!(
                    "a bot has at most {MAX_COMMANDS_PER_BOT} commands including the {} built-ins (Telegram's limit); delete one first",
                    BUILT_IN.len()
                ),
            });
        }
        check_position(new.position, list.len() + 1)?;
        let now = now_millis();
        let stored = StoredCommand {
            bot_id: bot.id.clone(),
            command: CustomCommand {
                command: name,
                description,
                action,
            },
            created_at: now,
            updated_at: now,
        };
        let position = new.position.unwrap_or(list.len());
        list.insert(position, stored.clone());
        let custom: Vec<CustomCommand> = list.iter().map(|c| c.command.clone()).collect();
        self.push_menu(&token, &custom).await?;
        let order: Vec<String> = custom.into_iter().map(|c| c.command).collect();
        let order = new.position.map(|_| order.as_slice());
        if let Err(e) = self.store.insert_bot_command(&stored, order).await {
            return Err(self.restore_menu(&bot.id, &token, e).await);
        }
        tracing::info!(bot_id = %bot.id, command = %stored.command.command, "custom command added");
        Ok(PlacedCommand { stored, position })
    }

    /// A bot's custom commands in menu order.
    pub async fn list_commands(
        &self,
        principal: &Principal,
        bot_id: &str,
    ) -> ServiceResult<Vec<StoredCommand>> {
        let bot = self.get_bot_record(principal, bot_id).await?;
        Ok(self.store.list_stored_commands(&bot.id).await?)
    }

    /// One custom command and its place.
    pub async fn get_command(
        &self,
        principal: &Principal,
        bot_id: &str,
        name: &str,
    ) -> ServiceResult<PlacedCommand> {
        let bot = self.get_bot_record(principal, bot_id).await?;
        let name = name.strip_prefix('/').unwrap_or(name);
        self.store
            .list_stored_commands(&bot.id)
            .await?
            .into_iter()
            .enumerate()
            .find(|(_, c)| c.command.command == name)
            .map(|(position, stored)| PlacedCommand { stored, position })
            .ok_or_else(|| not_found(&bot.id, name))
    }

    /// Changes a custom command's description, action or place, and the menu.
    pub async fn update_command(
        &self,
        principal: &Principal,
        bot_id: &str,
        name: &str,
        patch: CommandPatch,
    ) -> ServiceResult<PlacedCommand> {
        let (bot, token) = self.command_bot(principal, bot_id).await?;
        let name = name.strip_prefix('/').unwrap_or(name).to_string();
        let description = patch
            .description
            .as_deref()
            .map(parse_description)
            .transpose()?;
        let action = patch.action.map(parse_action).transpose()?;
        let _guard = lock_menu(&bot.id).await;
        let mut list = self.store.list_stored_commands(&bot.id).await?;
        let index = list
            .iter()
            .position(|c| c.command.command == name)
            .ok_or_else(|| not_found(&bot.id, &name))?;
        check_position(patch.position, list.len())?;
        let mut stored = list.remove(index);
        if let Some(description) = description {
            stored.command.description = description;
        }
        if let Some(action) = action {
            stored.command.action = action;
        }
        stored.updated_at = now_millis();
        let position = patch.position.unwrap_or(index);
        list.insert(position, stored.clone());
        let custom: Vec<CustomCommand> = list.iter().map(|c| c.command.clone()).collect();
        self.push_menu(&token, &custom).await?;
        let order: Vec<String> = custom.into_iter().map(|c| c.command).collect();
        let order = patch.position.map(|_| order.as_slice());
        match self.store.update_bot_command(&stored, order).await {
            Ok(true) => {}
            Ok(false) => {
                let gone = StoreError::Conflict(format!("command /{name} was deleted meanwhile"));
                return Err(self.restore_menu(&bot.id, &token, gone).await);
            }
            Err(e) => return Err(self.restore_menu(&bot.id, &token, e).await),
        }
        tracing::info!(bot_id = %bot.id, command = %name, "custom command updated");
        Ok(PlacedCommand { stored, position })
    }

    /// Removes a custom command from a bot and its menu.
    pub async fn delete_command(
        &self,
        principal: &Principal,
        bot_id: &str,
        name: &str,
    ) -> ServiceResult<()> {
        let (bot, token) = self.command_bot(principal, bot_id).await?;
        let name = name.strip_prefix('/').unwrap_or(name).to_string();
        let _guard = lock_menu(&bot.id).await;
        let mut list = self.store.list_bot_commands(&bot.id).await?;
        let index = list
            .iter()
            .position(|c| c.command == name)
            .ok_or_else(|| not_found(&bot.id, &name))?;
        list.remove(index);
        self.push_menu(&token, &list).await?;
        if let Err(e) = self.store.delete_bot_command(&bot.id, &name).await {
            return Err(self.restore_menu(&bot.id, &token, e).await);
        }
        tracing::info!(bot_id = %bot.id, command = %name, "custom command removed");
        Ok(())
    }
}
