//! Connection limits, checked right after `accept()` and before any TLS work: a global cap,
//! and per address (an IPv4 address, or an IPv6 /64, which one subscriber usually holds) a
//! cap on concurrent connections and a token bucket for new ones.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use super::flood::TokenBucket;

/// Groups addresses the way they are handed out: IPv4 by address, IPv6 by /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressKey {
    V4(u32),
    V6Prefix(u64),
}

impl From<IpAddr> for AddressKey {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(u32::from(v4)),
                None => Self::V6Prefix((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// The limits, from [`crate::Config`].
#[derive(Debug, Clone, Copy)]
pub struct AddressLimitSettings {
    pub max_connections: usize,
    pub max_per_address: u32,
    pub new_per_address_burst: u32,
    pub new_per_address_per_second: f64,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    ServerFull,
    TooManyFromAddress,
    TooFastFromAddress,
}

#[derive(Debug)]
struct AddressState {
    active: u32,
    new_connections: TokenBucket,
}

#[derive(Debug, Default)]
struct Table {
    total: usize,
    by_address: HashMap<AddressKey, AddressState>,
    /// Size at which idle entries are swept next; keeps the table proportional to the
    /// addresses that are actually connected or recently active.
    sweep_at: usize,
}

/// Shared by the accept loop (admits) and the connection tasks (their permits release).
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    settings: AddressLimitSettings,
    /// Held only to count; never across an `.await`, never with another lock.
    table: Arc<Mutex<Table>>,
}

/// Held by a connection for its lifetime; dropping it frees its place.
#[derive(Debug)]
pub struct ConnectionPermit {
    limits: ConnectionLimits,
    key: AddressKey,
}

impl ConnectionLimits {
    pub fn new(settings: AddressLimitSettings) -> Self {
        Self {
            settings,
            table: Arc::new(Mutex::new(Table {
                sweep_at: 1024,
                ..Table::default()
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn admit(&self, ip: IpAddr, now: Instant) -> Result<ConnectionPermit, Refusal> {
        let key = AddressKey::from(ip);
        let settings = self.settings;
        let mut table = self.lock();
        if table.total >= settings.max_connections {
            return Err(Refusal::ServerFull);
        }
        if table.by_address.len() >= table.sweep_at {
            table.by_address.retain(|_, state| {
                // A full bucket and no connection: the entry says nothing worth keeping.
                state.active > 0 || !state.new_connections.is_full(now)
            });
            table.sweep_at = (table.by_address.len() * 2).max(1024);
        }
        let state = table.by_address.entry(key).or_insert_with(|| AddressState {
            active: 0,
            new_connections: TokenBucket::new(
                settings.new_per_address_burst,
                settings.new_per_address_per_second,
                now,
            ),
        });
        if state.active >= settings.max_per_address {
            return Err(Refusal::TooManyFromAddress);
        }
        if !state.new_connections.try_take(now) {
            return Err(Refusal::TooFastFromAddress);
        }
        state.active += 1;
        table.total += 1;
        Ok(ConnectionPermit {
            limits: self.clone(),
            key,
        })
    }

    /// Connections currently admitted.
    pub fn active(&self) -> usize {
        self.lock().total
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut table = self.limits.lock();
        table.total = table.total.saturating_sub(1);
        if let Some(state) = table.by_address.get_mut(&self.key) {
            state.active = state.active.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits(max: usize, per_address: u32, burst: u32) -> ConnectionLimits {
        ConnectionLimits::new(AddressLimitSettings {
            max_connections: max,
            max_per_address: per_address,
            new_per_address_burst: burst,
            new_per_address_per_second: 1.0,
        })
    }

    #[test]
    fn ipv6_is_grouped_by_64_and_mapped_v4_by_address() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(AddressKey::from(a), AddressKey::from(b));
        assert_ne!(AddressKey::from(a), AddressKey::from(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(AddressKey::from(mapped), AddressKey::from(v4));
    }

    #[test]
    fn per_address_and_global_caps() {
        let now = Instant::now();
        let limits = limits(3, 2, 100);
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        let two: IpAddr = "192.0.2.2".parse().unwrap();
        let a = limits.admit(one, now).unwrap();
        let _b = limits.admit(one, now).unwrap();
        assert_eq!(
            limits.admit(one, now).unwrap_err(),
            Refusal::TooManyFromAddress
        );
        let _c = limits.admit(two, now).unwrap();
        assert_eq!(limits.admit(two, now).unwrap_err(), Refusal::ServerFull);
        drop(a);
        assert_eq!(limits.active(), 2);
        assert!(limits.admit(one, now).is_ok());
    }

    #[test]
    fn new_connection_rate_per_address() {
        let now = Instant::now();
        let limits = limits(100, 100, 3);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            drop(limits.admit(ip, now).unwrap());
        }
        assert_eq!(
            limits.admit(ip, now).unwrap_err(),
            Refusal::TooFastFromAddress
        );
        assert!(limits.admit(ip, now + Duration::from_millis(1100)).is_ok());
        let other: IpAddr = "192.0.2.9".parse().unwrap();
        assert!(
            limits.admit(other, now).is_ok(),
            "other addresses are unaffected"
        );
    }
}
