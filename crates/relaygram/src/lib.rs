//! relaygram: a self-hosted Telegram gateway.
//!
//! Modules by capability: [`config`], [`store`] (SQLite and PostgreSQL behind one trait),
//! [`crypto`] (secrets at rest), [`telegram`] (Bot API client), [`services`] (the rules),
//! [`api`] (HTTP edge), [`server`] (wiring and lifecycle), [`cli`] (operator commands).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// mimalloc for the whole program (the binary, its examples and tests): see Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod api;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod crypto;
pub mod delivery;
pub mod digests;
pub mod events;
pub mod http;
pub mod ids;
pub mod inbound;
pub mod linking;
pub mod logging;
pub mod memberships;
pub mod schedules;
pub mod server;
pub mod services;
pub mod shutdown;
pub mod store;
pub mod telegram;
pub mod templates;
pub mod texts;
pub mod workers;
