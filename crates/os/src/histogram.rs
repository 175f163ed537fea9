//! A histogram of durations kept in relaxed atomics: one `fetch_add` into a fixed bucket
//! and one into the sum per observation, no lock, no allocation; read as cumulative
//! counts (Prometheus `_bucket{le}`, `_sum`, `_count`). Shared by the gateway (relayed
//! requests) and the queue (fsyncs).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds (Prometheus `le`), beside `+Inf`.
pub const BOUNDS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// The same bounds in microseconds, compared when recording.
const BOUNDS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000,
];

/// Observations per bucket (not cumulative; the last is past every bound) and their sum.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BOUNDS.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    #[inline]
    pub fn record(&self, took: Duration) {
        let us = took.as_micros().min(u128::from(u64::MAX)) as u64;
        let bucket = BOUNDS_US.iter().position(|&le| us <= le).unwrap_or(BOUNDS_US.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// The counts now, cumulative (monotone by construction, whatever races the read).
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = [0u64; BOUNDS.len() + 1];
        let mut total = 0;
        for (c, b) in cumulative.iter_mut().zip(&self.buckets) {
            total += b.load(Ordering::Relaxed);
            *c = total;
        }
        HistogramSnapshot {
            cumulative,
            sum_us: self.sum_us.load(Ordering::Relaxed),
        }
    }
}

/// A [`Histogram`] at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Observations at or under each of [`BOUNDS`], then all of them (`+Inf`).
    pub cumulative: [u64; BOUNDS.len() + 1],
    pub sum_us: u64,
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.cumulative[BOUNDS.len()]
    }

    pub fn sum_seconds(&self) -> f64 {
        self.sum_us as f64 / 1e6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_inclusive_and_read_cumulative() {
        let h = Histogram::default();
        h.record(Duration::from_micros(80));
        h.record(Duration::from_micros(100));
        h.record(Duration::from_micros(1_000));
        h.record(Duration::from_secs(11));
        let s = h.snapshot();
        assert_eq!(s.cumulative[0], 2, "a bound is inclusive");
        assert_eq!(s.cumulative[3], 3);
        assert_eq!(s.cumulative[BOUNDS.len() - 1], 3);
        assert_eq!(s.count(), 4);
        assert_eq!(s.sum_us, 11_001_180);
    }
}
