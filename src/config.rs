//! Server settings that are not about where to listen or which files to use.

use std::time::Duration;

use crate::protocol::{DEFAULT_MAX_LINE, REPLAY_PER_ROOM};

/// Limits and timeouts of a running server. `Default` is what `chat-server` uses.
#[derive(Debug, Clone)]
pub struct Config {
    /// Longest client line in bytes, without its line ending.
    pub max_line: usize,
    /// A TLS handshake that takes longer is dropped.
    pub handshake_timeout: Duration,
    /// A connection that has not logged in by then gets `BYE login-timeout`.
    pub login_timeout: Duration,
    /// A write to a peer that takes longer (it stopped reading) ends its session.
    pub write_timeout: Duration,
    /// Outgoing lines queued for one connection before it is dropped with `BYE too-slow`.
    pub outbox_max_lines: usize,
    /// Outgoing bytes queued for one connection before it is dropped with `BYE too-slow`.
    pub outbox_max_bytes: usize,
    /// Concurrent connections, logged in or not; more are closed before their handshake.
    pub max_connections: usize,
    /// Concurrent connections from one address (an IPv4 address or an IPv6 /64).
    pub max_per_address: u32,
    /// Concurrent logged-in connections of one account; one more gets `BYE
    /// too-many-sessions`, so a stolen or hostile account cannot fill the server.
    pub max_per_account: usize,
    /// New connections one address may open at once...
    pub new_per_address_burst: u32,
    /// ...and per second after that.
    pub new_per_address_per_second: f64,
    /// Idle time before TCP keepalive probes start, so a peer that vanished (a sleeping
    /// laptop, an expired NAT mapping) is noticed.
    pub keepalive_idle: Duration,
    /// How long sent data may stay unacknowledged before the kernel gives up on the peer
    /// (`TCP_USER_TIMEOUT`, Linux).
    pub dead_peer_timeout: Duration,
    /// TLS handshakes computed at once; more connections wait their turn (within the
    /// handshake timeout), so a connection storm cannot crowd out the chat.
    pub max_handshakes: usize,
    /// Password hashes computed at once (each takes 19 MiB and one core for tens of ms).
    pub hash_concurrency: usize,
    /// How long a login waits for a hashing slot before `ERR server-busy`.
    pub hash_wait: Duration,
    /// The wait before answering after one failed login; it doubles with each further
    /// failure from the same address or for the same nickname.
    pub login_failure_delay: Duration,
    /// The longest wait an address's failures cause; also how long an address that failed
    /// `login_refuse_after` times is refused after its last failure.
    pub login_max_address_delay: Duration,
    /// The longest wait a nickname's failures cause (a nickname is never refused, so its
    /// owner is never locked out).
    pub login_max_account_delay: Duration,
    /// Failed logins from one address before it is refused with `ERR rate-limited`.
    pub login_refuse_after: u32,
    /// Failed logins older than this no longer count.
    pub login_forget_after: Duration,
    /// Stored messages replayed per room on login and `/join`.
    pub replay_per_room: u32,
    /// Messages older than this many days are deleted in the background; 0 keeps them all.
    pub history_days: u32,
    /// Private messages kept for an account with no connection, from everyone together;
    /// past it a sender gets `ERR limit-reached` and the message is not stored.
    pub kept_dms_per_recipient: u32,
    /// Private messages one sender may have kept for one account with no connection.
    pub kept_dms_from_one_sender: u32,
    /// Rooms an account may have created that still exist (a room goes when its last
    /// member leaves).
    pub rooms_created_per_account: u32,
    /// Rooms an account may be a member of.
    pub rooms_joined_per_account: u32,
    /// On shutdown, how long sessions get to receive their last lines.
    pub shutdown_grace: Duration,
    /// Lines a connection may send at once before flood control refuses them.
    pub flood_burst: u32,
    /// Lines per second a connection may send after its burst.
    pub flood_per_second: f64,
    /// Refused lines tolerated (refilled at the same rate) before `BYE flooding`.
    pub flood_tolerated: u32,
}

/// Room for the fields in front of a message's text in `MSG` and `HIST` lines.
const LINE_OVERHEAD: usize = 256;

impl Config {
    /// The smallest outgoing queue, in bytes, that holds two of the longest lines
    /// `max_line` allows, with what goes in front of a message's text.
    pub fn smallest_outbox_bytes(max_line: usize) -> usize {
        2 * (max_line + LINE_OVERHEAD)
    }

    /// Checks that the limits work and fit together; the message names the field to change.
    /// (`chat-server` checks its settings first, to name them as its users wrote them.)
    pub fn validate(&self) -> Result<(), String> {
        let smallest_outbox = Self::smallest_outbox_bytes(self.max_line);
        if self.outbox_max_bytes < smallest_outbox {
            return Err(format!(
                "outbox_max_bytes ({} bytes, the outgoing queue) must hold at least two of the \
                 longest lines ({smallest_outbox} bytes together); raise it or lower max_line",
                self.outbox_max_bytes
            ));
        }
        let at_least_one = [
            ("max_line", self.max_line),
            ("outbox_max_lines", self.outbox_max_lines),
            ("max_connections", self.max_connections),
            ("hash_concurrency", self.hash_concurrency),
            ("max_handshakes", self.max_handshakes),
            ("flood_burst", self.flood_burst as usize),
            ("max_per_address", self.max_per_address as usize),
            ("max_per_account", self.max_per_account),
            ("new_per_address_burst", self.new_per_address_burst as usize),
            (
                "kept_dms_per_recipient",
                self.kept_dms_per_recipient as usize,
            ),
            (
                "kept_dms_from_one_sender",
                self.kept_dms_from_one_sender as usize,
            ),
            (
                "rooms_joined_per_account",
                self.rooms_joined_per_account as usize,
            ),
        ];
        for (name, value) in at_least_one {
            if value == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        let durations = [
            ("handshake_timeout", self.handshake_timeout),
            ("login_timeout", self.login_timeout),
            ("write_timeout", self.write_timeout),
            ("keepalive_idle", self.keepalive_idle),
            ("dead_peer_timeout", self.dead_peer_timeout),
            ("hash_wait", self.hash_wait),
            ("login_forget_after", self.login_forget_after),
        ];
        for (name, duration) in durations {
            if duration.is_zero() {
                return Err(format!(
                    "{name} must be a positive, finite number of seconds"
                ));
            }
        }
        let rates = [
            ("flood_per_second", self.flood_per_second),
            (
                "new_per_address_per_second",
                self.new_per_address_per_second,
            ),
        ];
        for (name, rate) in rates {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(format!("{name} must be a positive number"));
            }
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_line: DEFAULT_MAX_LINE,
            handshake_timeout: Duration::from_secs(10),
            login_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            outbox_max_lines: 1024,
            outbox_max_bytes: 256 * 1024,
            max_connections: 10_000,
            max_per_address: 64,
            max_per_account: 20,
            new_per_address_burst: 32,
            new_per_address_per_second: 2.0,
            keepalive_idle: Duration::from_secs(60),
            dead_peer_timeout: Duration::from_secs(90),
            max_handshakes: 8 * std::thread::available_parallelism().map_or(2, |n| n.get()),
            hash_concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
            hash_wait: Duration::from_secs(2),
            login_failure_delay: Duration::from_millis(250),
            login_max_address_delay: Duration::from_secs(60),
            login_max_account_delay: Duration::from_secs(8),
            login_refuse_after: 10,
            login_forget_after: Duration::from_secs(15 * 60),
            replay_per_room: REPLAY_PER_ROOM,
            history_days: 0,
            kept_dms_per_recipient: 1000,
            kept_dms_from_one_sender: 200,
            rooms_created_per_account: 20,
            rooms_joined_per_account: 100,
            shutdown_grace: Duration::from_secs(10),
            flood_burst: 10,
            flood_per_second: 5.0,
            flood_tolerated: 20,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_mismatched_limits_are_not() {
        Config::default().validate().unwrap();
        let tiny_queue = Config {
            outbox_max_bytes: 4096,
            ..Config::default()
        };
        assert!(tiny_queue
            .validate()
            .unwrap_err()
            .contains("outbox_max_bytes"));
        let no_connections = Config {
            max_connections: 0,
            ..Config::default()
        };
        assert!(no_connections
            .validate()
            .unwrap_err()
            .contains("max_connections"));
        let no_keepalive = Config {
            keepalive_idle: Duration::ZERO,
            ..Config::default()
        };
        assert!(no_keepalive
            .validate()
            .unwrap_err()
            .contains("keepalive_idle"));
    }
}
