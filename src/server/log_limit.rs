//! A budget for log lines that anyone on the internet can cause (failed logins, wrong old
//! passwords, busy hashing): without one, a guesser writes the operator's disk full and
//! buries everything else. Lines over the budget are counted, and the next line written
//! says how many were left out.

use std::sync::Mutex;

use tokio::time::Instant;

use super::flood::TokenBucket;

/// Lines written at once before the budget applies...
const BURST: u32 = 20;
/// ...and per second after that.
const PER_SECOND: f64 = 2.0;

#[derive(Debug)]
pub(crate) struct LogLimit {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    budget: TokenBucket,
    suppressed: u64,
}

impl LogLimit {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(State {
                budget: TokenBucket::new(BURST, PER_SECOND, Instant::now()),
                suppressed: 0,
            }),
        }
    }

    /// `Some(n)` when a line may be written now, `n` being the lines left out since the
    /// last one written; `None` when this one is to be left out.
    pub(crate) fn admit(&self) -> Option<u64> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if state.budget.try_take(Instant::now()) {
            Some(std::mem::take(&mut state.suppressed))
        } else {
            state.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rest_is_counted_for_the_next_line() {
        let limit = LogLimit::new();
        let admitted = (0..100).filter_map(|_| limit.admit()).count();
        // The bucket refills while the loop runs, by a line at most.
        assert!((20..=21).contains(&admitted), "{admitted}");
        let state = limit.state.lock().unwrap();
        assert_eq!(state.suppressed as usize, 100 - admitted);
    }
}
