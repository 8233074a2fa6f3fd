//! Storage for inbound: Inbound updates and the chats they reveal.

use async_trait::async_trait;

use super::sql::{PgStore, SqliteStore};

/// Inbound updates and the chats they reveal.
#[async_trait]
pub trait InboundStore: Send + Sync {}

macro_rules! inbound_store {
    ($store:ty) => {
        #[async_trait]
        impl InboundStore for $store {}
    };
}

inbound_store!(SqliteStore);
inbound_store!(PgStore);
