//! What the ledger took in, for the gateway's `/metrics`: how long appends waited to become
//! durable (a histogram), and how many events and bytes were recorded. Counted with relaxed
//! atomics on the append path: a few nanoseconds per event.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the append latency histogram's buckets; a last bucket takes the rest.
pub const APPEND_LATENCY_BOUNDS: [f64; 12] = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5];

/// Counters shared by every session of one ledger.
#[derive(Default)]
pub struct LedgerStats {
    /// Per bucket (not cumulative); the last one counts appends slower than every bound.
    buckets: [AtomicU64; APPEND_LATENCY_BOUNDS.len() + 1],
    latency_sum_ns: AtomicU64,
    events: AtomicU64,
    bytes: AtomicU64,
}

/// The counters at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatsSnapshot {
    /// (upper bound in seconds, appends at most that slow), cumulative as Prometheus wants;
    /// the last entry's bound is infinite.
    pub latency_buckets: Vec<(f64, u64)>,
    pub latency_sum_seconds: f64,
    /// Events recorded (appends that became durable).
    pub events: u64,
    /// Bytes of those events' records (frames), payloads included.
    pub bytes: u64,
}

impl LedgerStats {
    /// Counts one durable append of `bytes` that waited `latency` from submission.
    pub(crate) fn record(&self, latency: Duration, bytes: u64) {
        let seconds = latency.as_secs_f64();
        let bucket = APPEND_LATENCY_BOUNDS.iter().position(|bound| seconds <= *bound).unwrap_or(APPEND_LATENCY_BOUNDS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_ns.fetch_add(latency.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
        self.events.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let mut cumulative = 0;
        let latency_buckets = self
            .buckets
            .iter()
            .enumerate()
            .map(|(i, count)| {
                cumulative += count.load(Ordering::Relaxed);
                (APPEND_LATENCY_BOUNDS.get(i).copied().unwrap_or(f64::INFINITY), cumulative)
            })
            .collect();
        StatsSnapshot {
            latency_buckets,
            latency_sum_seconds: self.latency_sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
            events: self.events.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_fall_into_cumulative_buckets() {
        let stats = LedgerStats::default();
        stats.record(Duration::from_micros(30), 100);
        stats.record(Duration::from_micros(700), 50);
        stats.record(Duration::from_secs(2), 1);
        let s = stats.snapshot();
        assert_eq!((s.events, s.bytes), (3, 151));
        assert_eq!(s.latency_buckets[0], (0.00005, 1));
        assert_eq!(s.latency_buckets[4], (0.001, 2), "0.7 ms is under 1 ms, with the 30 µs one");
        assert_eq!(*s.latency_buckets.last().unwrap(), (f64::INFINITY, 3));
        assert!((s.latency_sum_seconds - 2.00073).abs() < 1e-9);
    }
}
