//! Time as the cache sees it: monotonic milliseconds for TTLs and recency, and the Unix
//! time for the absolute expiries of the Redis protocol (`EXAT`, `PXAT`, EXPIRETIME).
//!
//! Deadlines are kept on the monotonic clock. The Unix time is the monotonic time plus
//! an offset that changes only when the wall clock is stepped (by more than a second),
//! so that an absolute deadline converted in and out again is the same to the
//! millisecond (`PEXPIREAT k T` then `PEXPIRETIME k` answers `T`), which two clocks
//! read separately would not guarantee.
//!
//! Tests inject a [`ManualClock`] and move it forward by hand; nothing in the crate
//! sleeps to let a key expire.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A source of time for the cache.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since an arbitrary origin; never goes backwards.
    fn now_ms(&self) -> u64;
    /// Milliseconds since the Unix epoch (wall-clock time) at the monotonic time
    /// `now_ms`, which is now or a moment ago.
    fn unix_at(&self, now_ms: u64) -> u64;
    /// Milliseconds since the Unix epoch now.
    fn unix_ms(&self) -> u64 {
        self.unix_at(self.now_ms())
    }
}

/// The real clock: [`Instant`] for `now_ms`; `unix_ms` follows [`SystemTime`] through
/// an offset from it (see the module documentation).
#[derive(Debug)]
pub struct SystemClock {
    origin: Instant,
    /// Unix ms minus monotonic ms.
    offset: AtomicI64,
}

/// How far the wall clock may drift from the monotonic one before the offset follows.
const RESYNC_MS: i64 = 1_000;

impl SystemClock {
    pub fn new() -> SystemClock {
        let origin = Instant::now();
        SystemClock {
            origin,
            offset: AtomicI64::new(wall_ms() - origin.elapsed().as_millis() as i64),
        }
    }
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
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

    fn unix_at(&self, now_ms: u64) -> u64 {
        let mut offset = self.offset.load(Ordering::Relaxed);
        let wall = wall_ms();
        let drift = wall - (now_ms as i64 + offset);
        // `now_ms` may be a moment old: only a step of the wall clock moves the offset.
        if !(-RESYNC_MS..=RESYNC_MS).contains(&drift) {
            offset = wall - self.now_ms() as i64;
            self.offset.store(offset, Ordering::Relaxed);
        }
        (now_ms as i64 + offset).max(0) as u64
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

    fn unix_at(&self, now_ms: u64) -> u64 {
        self.unix_base + now_ms
    }
}
