//! What one receiving connection saw, and the merged report.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies are kept in microseconds, up to a minute, to three significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// Error lines kept as samples for the report, per connection and in all.
const ERROR_SAMPLES: usize = 5;

/// One connection's view of the traffic.
#[derive(Debug)]
pub struct ReceiverStats {
    /// Payload lines received inside the measurement window.
    pub deliveries: u64,
    /// Payload lines received at any time, duplicates included.
    pub received: u64,
    /// Highest sequence number seen per sender (0: none yet).
    pub last_seq: Vec<u64>,
    /// Times a sender's sequence jumped forward by more than one.
    pub gaps: u64,
    /// Payload lines whose sequence number was not above the last one seen.
    pub duplicates: u64,
    /// Error lines from the server (`ERR`, `BYE`, IRC `ERROR` and error numerics) and
    /// unexpected ends of the stream.
    pub errors: u64,
    pub error_samples: Vec<String>,
    pub latency_us: Histogram<u64>,
}

impl ReceiverStats {
    pub fn new(senders: usize) -> Self {
        Self {
            deliveries: 0,
            received: 0,
            last_seq: vec![0; senders],
            gaps: 0,
            duplicates: 0,
            errors: 0,
            error_samples: Vec::new(),
            latency_us: new_histogram(),
        }
    }

    /// Records one payload; returns false for a duplicate.
    pub fn record_sequence(&mut self, sender: usize, seq: u64) -> bool {
        self.received += 1;
        let Some(last) = self.last_seq.get_mut(sender) else {
            self.error("payload from an unknown sender".into());
            return false;
        };
        if seq <= *last {
            self.duplicates += 1;
            return false;
        }
        if seq > *last + 1 {
            self.gaps += 1;
        }
        *last = seq;
        true
    }

    pub fn error(&mut self, line: String) {
        self.errors += 1;
        if self.error_samples.len() < ERROR_SAMPLES {
            self.error_samples.push(line);
        }
    }

    /// Distinct payloads received.
    pub fn unique(&self) -> u64 {
        self.received - self.duplicates
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub samples: u64,
}

impl Latency {
    pub fn of(histogram: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p90_ms: ms(histogram.value_at_quantile(0.90)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            max_ms: ms(histogram.max()),
            samples: histogram.len(),
        }
    }
}

/// The traffic part of a report, merged over every receiving connection.
#[derive(Debug, Default, Serialize)]
pub struct Traffic {
    pub sent: u64,
    pub deliveries: u64,
    pub deliveries_per_second: f64,
    pub messages_per_second: f64,
    pub expected: u64,
    pub lost: u64,
    pub gaps: u64,
    pub duplicates: u64,
    pub errors: u64,
    pub error_samples: Vec<String>,
    pub latency: Latency,
}

impl Traffic {
    /// Merges receivers; `expected[i]` is how many payloads receiver `i` should have got.
    pub fn merge(
        receivers: &[ReceiverStats],
        expected: &[u64],
        sent: u64,
        sent_in_window: u64,
        seconds: f64,
    ) -> Self {
        let mut latency = new_histogram();
        let mut traffic = Traffic {
            sent,
            ..Traffic::default()
        };
        for (stats, &expected) in receivers.iter().zip(expected) {
            traffic.deliveries += stats.deliveries;
            traffic.expected += expected;
            traffic.lost += expected.saturating_sub(stats.unique());
            traffic.gaps += stats.gaps;
            traffic.duplicates += stats.duplicates;
            traffic.errors += stats.errors;
            for sample in &stats.error_samples {
                if traffic.error_samples.len() < ERROR_SAMPLES {
                    traffic.error_samples.push(sample.clone());
                }
            }
            latency
                .add(&stats.latency_us)
                .expect("histograms share bounds");
        }
        traffic.deliveries_per_second = traffic.deliveries as f64 / seconds;
        traffic.messages_per_second = sent_in_window as f64 / seconds;
        traffic.latency = Latency::of(&latency);
        traffic
    }

    /// Counts errors found outside the receivers (failed sends), with their samples.
    pub fn add_errors(&mut self, errors: &[String]) {
        self.errors += errors.len() as u64;
        for error in errors {
            if self.error_samples.len() < ERROR_SAMPLES {
                self.error_samples.push(error.clone());
            }
        }
    }

    /// Something was sent and delivered, with zero loss, gaps, duplicates and errors.
    pub fn is_clean(&self) -> bool {
        self.sent > 0
            && self.expected > 0
            && self.lost == 0
            && self.gaps == 0
            && self.duplicates == 0
            && self.errors == 0
    }
}

/// Resident memory of a process in KiB, from `/proc` (Linux).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// CPU time (user and system) a process has used, in seconds, from `/proc` (Linux, where
/// the clock tick is 1/100 s).
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after it are plain numbers.
    let (_, fields) = stat.rsplit_once(')')?;
    let mut fields = fields.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((user + system) as f64 / 100.0)
}

/// `1234567.8` as `1.23M`, for the table.
pub fn human(value: f64) -> String {
    match value {
        v if v >= 1e6 => format!("{:.2}M", v / 1e6),
        v if v >= 1e3 => format!("{:.1}k", v / 1e3),
        v => format!("{v:.0}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_count_gaps_and_duplicates() {
        let mut stats = ReceiverStats::new(2);
        for seq in [1, 2, 4, 4, 3, 5] {
            stats.record_sequence(0, seq);
        }
        stats.record_sequence(1, 1);
        assert_eq!(stats.received, 7);
        assert_eq!(stats.gaps, 1);
        assert_eq!(stats.duplicates, 2);
        assert_eq!(stats.unique(), 5);
        let traffic = Traffic::merge(&[stats], &[6], 6, 6, 1.0);
        assert_eq!(
            traffic.lost, 1,
            "sender 0's message 3 came late and counted as duplicate"
        );
        assert!(!traffic.is_clean());
    }

    #[test]
    fn human_numbers() {
        assert_eq!(human(2_345_678.0), "2.35M");
        assert_eq!(human(12_345.0), "12.3k");
        assert_eq!(human(12.0), "12");
    }
}
