//! Inbound: what Telegram sends us. Updates are stored once per `(bot, update_id)`, then
//! processed in order per chat; commands are routed to built-in handlers, static replies or
//! the tenant's app.

pub mod command;
pub mod intake;
pub mod poller;
pub mod processor;
pub mod retention;
pub mod router;
pub mod service;
pub mod update;
