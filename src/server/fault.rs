//! Faults the tests inject into the server's own tasks. Compiled only with the
//! `fault-injection` feature, which only this package's own dev-dependency turns on: a
//! `cargo build` or `cargo install` never contains it, and neither may a deployed server.

/// A room message with exactly this text makes the hub panic when it takes it.
pub const HUB_PANIC: &str = "fault-injection: make the hub panic";
