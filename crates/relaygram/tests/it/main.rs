//! Integration tests: the real server on a random port, against the in-process Telegram
//! sandbox and a fresh store (SQLite always; PostgreSQL too when
//! `RELAYGRAM_TEST_DATABASE_URL` is set).

mod bad_input;
mod bots;
mod cli;
mod commands;
mod conformance;
mod consent;
mod crash;
mod delivery;
mod delivery_crash;
mod digests;
mod edits;
mod events;
mod fuzz;
mod helpers;
mod inbound;
mod linking;
mod local_time;
mod memberships;
mod memberships_crash;
mod openapi;
mod operations;
mod personal;
mod quiet;
mod recipients;
mod reporting;
mod schedules;
mod secrets;
mod telegram;
mod templates;
mod tenants;
mod texts;
mod threads;
