//! When to try again after the connection drops: exponential, capped, with jitter so that a
//! whole team whose server restarted does not come back in one synchronized wave.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    attempt: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(30))
    }
}

impl Backoff {
    pub fn new(first: Duration, cap: Duration) -> Self {
        Self {
            first,
            cap,
            attempt: 0,
        }
    }

    /// Attempts made since the last success.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The wait before the next attempt: `first x 2^n` capped at `cap`, of which a random
    /// half is taken off ("equal jitter"), so waits still grow but never line up. `random`
    /// is any uniformly random number.
    pub fn next_delay(&mut self, random: u32) -> Duration {
        let doubling = self.first.saturating_mul(1 << self.attempt.min(16));
        self.attempt = self.attempt.saturating_add(1);
        let full = doubling.min(self.cap);
        let half = full / 2;
        half + half.mul_f64(f64::from(random) / f64::from(u32::MAX))
    }

    /// Connected and logged in again: the next drop starts from the first wait.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A random number from the operating system (for jitter; not a secret).
pub fn random_u32() -> u32 {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 4];
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    u32::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_within_their_jitter() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let fulls = [1, 2, 4, 8, 16, 30, 30, 30];
        for full in fulls {
            let full = Duration::from_secs(full);
            let lowest = Backoff {
                attempt: backoff.attempt,
                ..backoff.clone()
            }
            .next_delay(0);
            let highest = backoff.next_delay(u32::MAX);
            assert_eq!(lowest, full / 2);
            assert_eq!(highest, full);
        }
        assert_eq!(backoff.attempt(), 8);
    }

    #[test]
    fn a_success_starts_over_and_huge_attempt_counts_do_not_overflow() {
        let mut backoff = Backoff::default();
        for _ in 0..100 {
            assert!(backoff.next_delay(random_u32()) <= Duration::from_secs(30));
        }
        backoff.reset();
        assert_eq!(backoff.attempt(), 0);
        assert!(backoff.next_delay(u32::MAX) <= Duration::from_secs(1));
    }

    #[test]
    fn jitter_spreads_clients() {
        let waits: std::collections::HashSet<_> = (0..20)
            .map(|_| Backoff::default().next_delay(random_u32()))
            .collect();
        assert!(waits.len() > 1, "twenty clients all chose the same wait");
    }
}
