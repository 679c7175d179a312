//! tlschat: a self-hosted, TLS-secured team chat with password-checked nicknames.
//!
//! A tour of the modules, from the wire inwards:
//!
//! - [`protocol`]: pure parsing and formatting of the line protocol, and the name rules.
//!   No I/O; everything the server sends is a typed [`protocol::ServerLine`].
//! - [`net`]: the bounded line codec, rustls configuration from PEM files, development
//!   certificates.
//! - [`server`]: the accept loop, the per-connection session (login, commands), the hub that
//!   owns rooms and presence and stores-then-delivers messages, and the outbox that writes.
//! - [`store`]: SQLite through sqlx — accounts, rooms, memberships, messages.
//! - [`auth`]: argon2id hashing off the async runtime, bounded.
//! - [`import`]: the account list `chat-admin import` reads, checked line by line.
//! - [`invite`]: one-time invite and reset codes.
//! - [`client`]: connecting and speaking the protocol, used by `chat` and the tests.
//! - [`config`]: limits and timeouts.
//! - [`report`]: error messages for people, each cause once.
//!
//! The binaries in `src/bin/` only parse flags, set up logging and call into these.

#![forbid(unsafe_code)]

pub mod auth;
pub mod client;
pub mod config;
pub mod import;
pub mod invite;
pub mod net;
pub mod protocol;
pub mod report;
pub mod server;
pub mod store;

pub use config::Config;
