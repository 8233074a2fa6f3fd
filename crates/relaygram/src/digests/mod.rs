//! Digests: a message with `digest: {"key", "window"}` (or `{"key", "schedule_id"}`) is not
//! sent; it becomes an item of the open digest of its key and recipient. When the digest
//! closes (its window ends, or its schedule's next occurrence comes), its items go out as
//! one message rendered by a digest template. Items that arrive after a digest closed start
//! the next one.
//!
//! - [`spec`]: the `digest` field and its checks;
//! - [`service`]: collecting items, closing digests and rendering them;
//! - [`worker`]: the loop that closes due digests;
//! - [`api`]: `GET /v1/digests`, `GET /v1/digests/{id}`.

pub mod api;
pub mod service;
pub mod spec;
pub mod worker;

pub use spec::DigestSpec;
pub use worker::Digester;
