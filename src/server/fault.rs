//! Faults the tests inject into the server's own tasks. Compiled only with the
//! `fault-injection` feature, which only this package's own dev-dependency turns on: a
//! `cargo build` or `cargo install` never contains it, and neither may a deployed server.
//!
//! Even where it is compiled in (the `chat-server` that `cargo test` leaves in
//! `target/debug/`), a chat line alone cannot set it off: the process must also have been
//! armed, by a test calling [`arm`] or by `chat-server` started with [`ARM_VARIABLE`]`=1`.

use std::sync::atomic::{AtomicBool, Ordering};

/// A room message with exactly this text makes an armed hub panic when it takes it.
pub const HUB_PANIC: &str = "fault-injection: make the hub panic";

/// The environment variable that arms a `chat-server` built with the feature.
pub const ARM_VARIABLE: &str = "TLSCHAT_FAULT_INJECTION";

static ARMED: AtomicBool = AtomicBool::new(false);

/// Lets [`HUB_PANIC`] work in this process.
pub fn arm() {
    ARMED.store(true, Ordering::Relaxed);
}

/// Whether [`arm`] was called.
pub fn armed() -> bool {
    ARMED.load(Ordering::Relaxed)
}
