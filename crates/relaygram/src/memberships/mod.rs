//! Paid access to Telegram groups and channels: gated chats (a supergroup or channel the
//! bot administers), an append-only entitlement ledger per app user, and memberships (one
//! user in one gated chat) kept in line with it — a personal link when access begins, the
//! join request approved only for the entitled, removal (never a lasting ban) when access
//! ends, reminders before. See docs/memberships.md.
//!
//! Reads top-down: [`api`] and [`cli`] (the edges) → the rules: [`service`] (gated chats),
//! [`binding`] (through the bot's startgroup link), [`ledger`] (entitlements), [`sync`]
//! (a holder's membership in line with their access) with [`access`] (the ledger's meaning,
//! pure) and [`notices`], [`gate`] (what a gated chat's updates mean) and [`sweep`] (the
//! worker that makes it exact after downtime, woken by [`wakeup`]) → the store's
//! `MembershipStore`.

pub mod access;
pub mod api;
pub mod binding;
pub mod cli;
pub mod gate;
pub mod ledger;
pub mod notices;
pub mod service;
pub mod sweep;
pub mod sync;
pub mod wakeup;
