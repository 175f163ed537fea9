//! How a pool follows its load ([`AutoscaleSpec`]); the policy itself runs elsewhere.

use serde::{Deserialize, Serialize};

/// How a pool follows its load. The autoscaler is driven by events (a member reaching
/// its concurrency target, a request held at zero, a publish to a consumed queue) and
/// samples every 100 ms while a pool has work. Its recommendation is the largest of
/// in-flight / `concurrency`, backlog / `backlog` and (with `latency_ms`) the pool
/// scaled by mean latency / `latency_ms`. A higher count is taken once recommended for
/// the whole `up_window_ms`, a lower one once nothing higher was recommended for
/// `down_window_ms`; a recommendation of at least twice the current count, or a backlog
/// growing faster than the pool drains it, is overload and is taken at once.
///
/// Every field may be left out; [`Default`] holds the values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AutoscaleSpec {
    /// Requests in flight per instance the pool is sized for.
    pub concurrency: u32,
    /// For a service that consumes a queue: unprocessed messages per instance.
    pub backlog: u64,
    /// Mean request latency above which the pool grows; None: latency is not a signal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    pub up_window_ms: u64,
    pub down_window_ms: u64,
    /// Most instances one decision adds; 0: no bound.
    pub max_step_up: u32,
    /// Most instances one decision removes; 0: no bound.
    pub max_step_down: u32,
    /// Once the pool is at instances.max, requests in flight per instance past which more
    /// are shed (503 with Retry-After). None: 4 x concurrency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_inflight: Option<u32>,
}

impl Default for AutoscaleSpec {
    fn default() -> Self {
        AutoscaleSpec {
            concurrency: 10,
            backlog: 100,
            latency_ms: None,
            up_window_ms: 1_000,
            down_window_ms: 30_000,
            max_step_up: 0,
            max_step_down: 0,
            max_inflight: None,
        }
    }
}

impl AutoscaleSpec {
    /// In-flight requests per instance past which a pool at its max sheds.
    pub fn shed_at(&self) -> u32 {
        self.max_inflight.unwrap_or(self.concurrency.saturating_mul(4))
    }
}
