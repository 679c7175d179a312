//! The pace of what the client sends: under the server's flood limit (by default 10 lines
//! at once, then 5 a second), so that a paste, a catch-up after a reconnect and the
//! person's typing together never get a line refused.

use std::time::Instant;

/// Lines that may go out at once.
const BURST: f64 = 8.0;
/// Lines per second after the burst.
const PER_SECOND: f64 = 4.0;

#[derive(Debug)]
pub struct Pacer {
    tokens: f64,
    last: Instant,
}

impl Pacer {
    pub fn new(now: Instant) -> Self {
        Self {
            tokens: BURST,
            last: now,
        }
    }

    /// Whether a line may go now; if so, it is counted.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * PER_SECOND).min(BURST);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_a_steady_pace_under_the_servers_limit() {
        let start = Instant::now();
        let mut pacer = Pacer::new(start);
        let sent_at_once = (0..30).filter(|_| pacer.try_take(start)).count();
        assert_eq!(sent_at_once, 8);
        assert!(!pacer.try_take(start + Duration::from_millis(100)));
        // Over ten seconds at most 8 + 40 lines: the server allows 10 + 50.
        let mut sent = sent_at_once;
        for ms in (0..10_000).step_by(10) {
            if pacer.try_take(start + Duration::from_millis(ms)) {
                sent += 1;
            }
        }
        assert!((45..=48).contains(&sent), "{sent}");
    }
}
