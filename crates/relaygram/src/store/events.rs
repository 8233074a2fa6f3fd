//! Storage for events: Events for tenant apps: endpoints, deliveries, attempts.

use async_trait::async_trait;

use super::sql::{PgStore, SqliteStore};

/// Events for tenant apps: endpoints, deliveries, attempts.
#[async_trait]
pub trait EventStore: Send + Sync {}

macro_rules! events_store {
    ($store:ty) => {
        #[async_trait]
        impl EventStore for $store {}
    };
}

events_store!(SqliteStore);
events_store!(PgStore);
