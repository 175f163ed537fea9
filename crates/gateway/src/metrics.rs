//! Figures of the requests relayed to a pool: replies by status class, failures with no
//! answer by reason, and a latency histogram. Kept in the pool's transport slot, found
//! with the pool each request already holds; recorded with relaxed atomic additions (no
//! lock, no allocation, no lookup by name) and read by the node API's `/v1/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::StatusCode;
use strata_bus::Pool;

/// Upper bounds of the latency buckets, in seconds (Prometheus `le`), beside `+Inf`.
pub const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// The same bounds in microseconds, compared on the request path.
const BUCKETS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
    10_000_000,
];

/// Why no member's reply head came back to a relayed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoAnswer {
    /// No ready member (503).
    NoMember,
    /// Shed at `instances.max` (503).
    Shed,
    /// The request's deadline passed (504).
    Deadline,
    /// The member failed before or while handling it, and it was not reissued (502).
    Failed,
    /// The member did not answer within the attempt timeout (504).
    Timeout,
    /// The client's body broke off or ran over the limit (400, 413).
    ClientBody,
}

impl NoAnswer {
    pub const ALL: [NoAnswer; 6] = [
        NoAnswer::NoMember,
        NoAnswer::Shed,
        NoAnswer::Deadline,
        NoAnswer::Failed,
        NoAnswer::Timeout,
        NoAnswer::ClientBody,
    ];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            NoAnswer::NoMember => "no_member",
            NoAnswer::Shed => "shed",
            NoAnswer::Deadline => "deadline",
            NoAnswer::Failed => "failed",
            NoAnswer::Timeout => "timeout",
            NoAnswer::ClientBody => "client_body",
        }
    }
}

/// Status classes 1xx to 5xx, then one slot per [`NoAnswer`].
const CLASSES: usize = 5;

/// One pool's figures.
#[derive(Default)]
pub struct RelayStats {
    replies: [AtomicU64; CLASSES + NoAnswer::ALL.len()],
    /// Requests per latency bucket (not cumulative), the last past every bound (`+Inf`).
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_us: AtomicU64,
}

impl RelayStats {
    /// The figures of `pool`, made on first use.
    #[inline]
    pub fn of(pool: &Pool) -> &RelayStats {
        pool.transport(RelayStats::default)
    }

    /// Counts one relayed request: the member's status (`None`: why none came back)
    /// and the time from its arrival until the reply head was back.
    #[inline]
    pub fn record(&self, status: StatusCode, unanswered: Option<NoAnswer>, took: Duration) {
        let slot = match unanswered {
            Some(why) => CLASSES + why as usize,
            None => (status.as_u16() / 100).clamp(1, 5) as usize - 1,
        };
        self.replies[slot].fetch_add(1, Ordering::Relaxed);
        let us = took.as_micros().min(u64::MAX as u128) as u64;
        let bucket = BUCKETS_US.iter().position(|&le| us <= le).unwrap_or(BUCKETS_US.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// A copy of the figures, for reading.
    pub fn snapshot(&self) -> RelaySnapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut cumulative = [0u64; BUCKETS.len() + 1];
        let mut total = 0;
        for (c, b) in cumulative.iter_mut().zip(&self.buckets) {
            total += load(b);
            *c = total;
        }
        RelaySnapshot {
            classes: std::array::from_fn(|i| load(&self.replies[i])),
            unanswered: std::array::from_fn(|i| load(&self.replies[CLASSES + i])),
            cumulative,
            sum_seconds: load(&self.sum_us) as f64 / 1e6,
        }
    }
}

/// One pool's figures at one moment.
#[derive(Debug, Clone)]
pub struct RelaySnapshot {
    /// Replies of status class 1xx, 2xx, 3xx, 4xx, 5xx.
    pub classes: [u64; CLASSES],
    /// Requests that got no reply, in the order of [`NoAnswer::ALL`].
    pub unanswered: [u64; NoAnswer::ALL.len()],
    /// Requests at or under each of [`BUCKETS`], then all of them (`+Inf`, the count).
    pub cumulative: [u64; BUCKETS.len() + 1],
    pub sum_seconds: f64,
}

impl RelaySnapshot {
    pub fn count(&self) -> u64 {
        self.cumulative[BUCKETS.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_reasons_and_cumulative_buckets() {
        let stats = RelayStats::default();
        stats.record(StatusCode::OK, None, Duration::from_micros(300));
        stats.record(StatusCode::NOT_FOUND, None, Duration::from_micros(1_000));
        stats.record(StatusCode::BAD_GATEWAY, Some(NoAnswer::Failed), Duration::from_secs(11));
        let s = stats.snapshot();
        assert_eq!(s.classes, [0, 1, 0, 1, 0]);
        assert_eq!(s.unanswered[NoAnswer::Failed as usize], 1);
        assert_eq!(s.cumulative[0], 1);
        assert_eq!(s.cumulative[1], 2, "a bound is inclusive");
        assert_eq!(s.cumulative[BUCKETS.len() - 1], 2);
        assert_eq!(s.count(), 3);
        assert!((s.sum_seconds - 11.0013).abs() < 1e-9);
    }
}
