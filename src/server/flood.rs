//! Flood control: a token bucket per session. Every line costs a token (empty ones too);
//! a line without a token is refused with `ERR rate-limited`. Refusals draw on a second
//! bucket, so a client that keeps sending too fast is eventually told `BYE flooding`, while
//! one that pastes a long text once only gets errors for the excess.

use tokio::time::Instant;

/// `capacity` tokens, refilled continuously at `per_second`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: f64,
    per_second: f64,
    tokens: f64,
    refilled_at: Instant,
}

impl TokenBucket {
    pub fn new(capacity: u32, per_second: f64, now: Instant) -> Self {
        Self {
            capacity: f64::from(capacity),
            per_second,
            tokens: f64::from(capacity),
            refilled_at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        self.refilled_at = now;
    }

    /// True when the bucket is full at `now`.
    pub fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.capacity
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What to do with a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// Refuse it with `ERR rate-limited`.
    Reject,
    /// Refused too often: `BYE flooding` and close.
    Disconnect,
}

/// The flood limits of one session.
#[derive(Debug, Clone)]
pub struct FloodGuard {
    lines: TokenBucket,
    refusals: TokenBucket,
}

impl FloodGuard {
    /// `burst` lines at once, then `per_second`; up to `tolerated` refused lines (refilled at
    /// the same rate) before the session is ended.
    pub fn new(burst: u32, per_second: f64, tolerated: u32, now: Instant) -> Self {
        Self {
            lines: TokenBucket::new(burst, per_second, now),
            refusals: TokenBucket::new(tolerated, per_second, now),
        }
    }

    pub fn check(&mut self, now: Instant) -> Verdict {
        if self.lines.try_take(now) {
            Verdict::Accept
        } else if self.refusals.try_take(now) {
            Verdict::Reject
        } else {
            Verdict::Disconnect
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, 5.0, start);
        assert_eq!((0..15).filter(|_| bucket.try_take(start)).count(), 10);
        // 5 per second: one token every 200 ms.
        assert!(!bucket.try_take(start + Duration::from_millis(150)));
        assert!(bucket.try_take(start + Duration::from_millis(201)));
        assert!(!bucket.try_take(start + Duration::from_millis(202)));
        // Refill never exceeds the burst.
        let later = start + Duration::from_secs(3600);
        assert_eq!((0..15).filter(|_| bucket.try_take(later)).count(), 10);
    }

    #[test]
    fn a_paste_gets_errors_and_a_sustained_flood_gets_disconnected() {
        let start = Instant::now();
        let mut guard = FloodGuard::new(10, 5.0, 20, start);
        let verdicts: Vec<Verdict> = (0..40).map(|_| guard.check(start)).collect();
        assert!(verdicts[..10].iter().all(|v| *v == Verdict::Accept));
        assert!(verdicts[10..30].iter().all(|v| *v == Verdict::Reject));
        assert!(verdicts[30..].iter().all(|v| *v == Verdict::Disconnect));

        let mut guard = FloodGuard::new(10, 5.0, 20, start);
        // Exactly at the rate, forever: never refused.
        for i in 0..1000 {
            let now = start + Duration::from_millis(200 * i);
            assert_eq!(guard.check(now), Verdict::Accept, "line {i}");
        }
    }
}
