//! Time as the cache sees it: monotonic milliseconds for TTLs and recency, and the Unix
//! time for the absolute expiries of the Redis protocol (`EXAT`, `PXAT`).
//!
//! Tests inject a [`ManualClock`] and move it forward by hand; nothing in the crate
//! sleeps to let a key expire.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A source of time for the cache.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since an arbitrary origin; never goes backwards.
    fn now_ms(&self) -> u64;
    /// Milliseconds since the Unix epoch (wall-clock time).
    fn unix_ms(&self) -> u64;
}

/// The real clock: [`Instant`] for `now_ms`, [`SystemTime`] for `unix_ms`.
#[derive(Debug)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    pub fn new() -> SystemClock {
        SystemClock { origin: Instant::now() }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    fn unix_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to, for tests. Starts at `now_ms() == 0` and at a
/// fixed Unix time (2024-01-01T00:00:00Z) unless built with [`ManualClock::at_unix_ms`].
#[derive(Debug)]
pub struct ManualClock {
    now: AtomicU64,
    unix_base: u64,
}

impl ManualClock {
    pub fn new() -> ManualClock {
        ManualClock::at_unix_ms(1_704_067_200_000)
    }

    pub fn at_unix_ms(unix_ms: u64) -> ManualClock {
        ManualClock {
            now: AtomicU64::new(0),
            unix_base: unix_ms,
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.now.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }

    /// Sets the monotonic time to `ms` (must not be earlier than now).
    pub fn set_ms(&self, ms: u64) {
        self.now.fetch_max(ms, Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }

    fn unix_ms(&self) -> u64 {
        self.unix_base + self.now_ms()
    }
}
