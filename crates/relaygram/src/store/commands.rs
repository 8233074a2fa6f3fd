//! Storage for commands: Custom bot commands.

use async_trait::async_trait;

use super::sql::{PgStore, SqliteStore};

/// Custom bot commands.
#[async_trait]
pub trait CommandStore: Send + Sync {}

macro_rules! commands_store {
    ($store:ty) => {
        #[async_trait]
        impl CommandStore for $store {}
    };
}

commands_store!(SqliteStore);
commands_store!(PgStore);
