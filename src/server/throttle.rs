//! Login throttling. Failed logins are counted per address (IPv4 address, IPv6 /64) and per
//! nickname typed (whether or not the account exists, so answers never tell which do).
//! Each failure doubles the wait before the next answer, up to a cap. An address that keeps
//! failing is refused outright (`ERR rate-limited`) for a while; a nickname never is, so an
//! attacker elsewhere can slow the rightful user down but never lock them out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::limits::AddressKey;

/// The throttling settings, from [`crate::Config`].
#[derive(Debug, Clone, Copy)]
pub struct ThrottleSettings {
    /// The wait after the first failure; it doubles with each further one.
    pub base_delay: Duration,
    /// The longest wait an address's failures cause.
    pub max_address_delay: Duration,
    /// The longest wait a nickname's failures cause.
    pub max_account_delay: Duration,
    /// Failures from one address after which it is refused until `max_address_delay` has
    /// passed since its last failure.
    pub refuse_after: u32,
    /// Failures older than this are forgotten.
    pub forget_after: Duration,
}

/// What to do with a login attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Wait this long, then check the password.
    Check { wait: Duration },
    /// Refuse without checking: this address failed too often, too recently.
    Refuse,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Address(AddressKey),
    Nick(String),
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Shared by every connection's login.
#[derive(Debug)]
pub struct LoginThrottle {
    settings: ThrottleSettings,
    /// Held only to read or update counters; never across an `.await`.
    table: Mutex<Table>,
}

#[derive(Debug)]
struct Table {
    failures: HashMap<Key, Failures>,
    sweep_at: usize,
}

/// Nicknames are at most 32 characters; anything longer is cut so keys stay small.
fn nick_key(nick: &str) -> Key {
    Key::Nick(
        nick.chars()
            .take(64)
            .collect::<String>()
            .to_ascii_lowercase(),
    )
}

impl LoginThrottle {
    pub fn new(settings: ThrottleSettings) -> Self {
        Self {
            settings,
            table: Mutex::new(Table {
                failures: HashMap::new(),
                sweep_at: 1024,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn recent(&self, table: &Table, key: &Key, now: Instant) -> Option<Failures> {
        table
            .failures
            .get(key)
            .copied()
            .filter(|f| now.saturating_duration_since(f.last) < self.settings.forget_after)
    }

    fn delay(&self, failures: Option<Failures>, cap: Duration) -> Duration {
        let Some(failures) = failures else {
            return Duration::ZERO;
        };
        let doublings = failures.count.saturating_sub(1).min(20);
        self.settings
            .base_delay
            .saturating_mul(1 << doublings)
            .min(cap)
    }

    pub fn decide(&self, ip: IpAddr, nick: &str, now: Instant) -> Decision {
        let table = self.lock();
        let address = self.recent(&table, &Key::Address(ip.into()), now);
        let account = self.recent(&table, &nick_key(nick), now);
        if let Some(address) = address {
            let refused_until = address.last + self.settings.max_address_delay;
            if address.count >= self.settings.refuse_after && now < refused_until {
                return Decision::Refuse;
            }
        }
        let wait = self
            .delay(address, self.settings.max_address_delay)
            .max(self.delay(account, self.settings.max_account_delay));
        Decision::Check { wait }
    }

    pub fn record_failure(&self, ip: IpAddr, nick: &str, now: Instant) {
        let forget_after = self.settings.forget_after;
        let mut table = self.lock();
        if table.failures.len() >= table.sweep_at {
            table
                .failures
                .retain(|_, f| now.saturating_duration_since(f.last) < forget_after);
            table.sweep_at = (table.failures.len() * 2).max(1024);
        }
        for key in [Key::Address(ip.into()), nick_key(nick)] {
            let entry = table.failures.entry(key).or_insert(Failures {
                count: 0,
                last: now,
            });
            if now.saturating_duration_since(entry.last) >= forget_after {
                entry.count = 0;
            }
            entry.count = entry.count.saturating_add(1);
            entry.last = now;
        }
    }

    /// A successful login clears the nickname's failures and the address's.
    pub fn record_success(&self, ip: IpAddr, nick: &str) {
        let mut table = self.lock();
        table.failures.remove(&Key::Address(ip.into()));
        table.failures.remove(&nick_key(nick));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> LoginThrottle {
        LoginThrottle::new(ThrottleSettings {
            base_delay: Duration::from_millis(100),
            max_address_delay: Duration::from_secs(10),
            max_account_delay: Duration::from_secs(2),
            refuse_after: 5,
            forget_after: Duration::from_secs(600),
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn waits_double_per_failure_up_to_the_cap() {
        let t = throttle();
        let now = Instant::now();
        let attacker = ip("192.0.2.1");
        assert_eq!(
            t.decide(attacker, "alice", now),
            Decision::Check {
                wait: Duration::ZERO
            }
        );
        let mut waits = Vec::new();
        for _ in 0..4 {
            t.record_failure(attacker, "alice", now);
            let Decision::Check { wait } = t.decide(attacker, "alice", now) else {
                panic!()
            };
            waits.push(wait.as_millis());
        }
        assert_eq!(waits, [100, 200, 400, 800]);
    }

    #[test]
    fn an_address_is_refused_for_a_while_but_a_nickname_never_is() {
        let t = throttle();
        let now = Instant::now();
        let attacker = ip("192.0.2.1");
        for _ in 0..8 {
            t.record_failure(attacker, "Alice", now);
        }
        assert_eq!(t.decide(attacker, "bob", now), Decision::Refuse);
        // The rightful alice, elsewhere: slowed down (100 ms x 2^7, capped at 2 s), not
        // refused.
        let rightful = ip("198.51.100.7");
        assert_eq!(
            t.decide(rightful, "alice", now),
            Decision::Check {
                wait: Duration::from_secs(2)
            }
        );
        // The refusal ends once the cap has passed since the last failure.
        let later = now + Duration::from_secs(11);
        assert!(matches!(
            t.decide(attacker, "bob", later),
            Decision::Check { .. }
        ));
        t.record_success(rightful, "alice");
        assert_eq!(
            t.decide(rightful, "alice", now),
            Decision::Check {
                wait: Duration::ZERO
            }
        );
    }

    #[test]
    fn old_failures_are_forgotten() {
        let t = throttle();
        let now = Instant::now();
        let attacker = ip("2001:db8::1");
        for _ in 0..5 {
            t.record_failure(attacker, "x", now);
        }
        let much_later = now + Duration::from_secs(601);
        assert_eq!(
            t.decide(attacker, "x", much_later),
            Decision::Check {
                wait: Duration::ZERO
            }
        );
        // A neighbour in the same /64 shares the address's record.
        assert_eq!(t.decide(ip("2001:db8::2"), "y", now), Decision::Refuse);
    }
}
