//! The node-wide bounds on queues (`queue_limits` in the manifest): how many queues,
//! how large a segment a queue created through the node API may have, and the
//! [`DiskBudget`]: the bytes every queue's segment files take together, each counted at
//! its preallocated size from the moment it is asked for, so that a bound can refuse a
//! new segment before it is written.
//!
//! A segment file is charged when it is prepared (or found at open), and released when
//! it is deleted (retention, a failed roll undone, the queue deleted). Opening what is
//! already stored never fails for the bound (acknowledged messages are never dropped to
//! make room); only new segments are refused, and a refused publish stores nothing.

use std::sync::atomic::{AtomicU64, Ordering};

/// The bytes the queues' segment files take, against the bound
/// (`queue_limits.max_total_bytes`; none: only counted).
#[derive(Debug)]
pub(crate) struct DiskBudget {
    limit: Option<u64>,
    used: AtomicU64,
}

impl DiskBudget {
    pub fn new(limit: Option<u64>) -> DiskBudget {
        DiskBudget {
            limit,
            used: AtomicU64::new(0),
        }
    }

    /// Takes `bytes` if they fit under the bound; otherwise takes nothing and says why,
    /// naming the bound.
    pub fn reserve(&self, bytes: u64) -> Result<(), String> {
        let Some(limit) = self.limit else {
            self.used.fetch_add(bytes, Ordering::Relaxed);
            return Ok(());
        };
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|after| *after <= limit)
            })
            .map(drop)
            .map_err(|used| {
                format!(
                    "the queues' segment files take {used} bytes and {bytes} more would pass their bound, \
                     queue_limits.max_total_bytes ({limit} bytes): consumers deleting messages free whole \
                     segments; or delete a queue, or raise the bound in the manifest"
                )
            })
    }

    /// Counts `bytes` already on disk, whatever the bound.
    pub fn charge(&self, bytes: u64) {
        self.used.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn release(&self, bytes: u64) {
        let _ = self.used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
            Some(used.saturating_sub(bytes))
        });
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::DiskBudget;

    #[test]
    fn a_reservation_past_the_bound_takes_nothing_and_names_the_bound() {
        let budget = DiskBudget::new(Some(100));
        budget.reserve(60).unwrap();
        let e = budget.reserve(41).unwrap_err();
        assert!(e.contains("queue_limits.max_total_bytes (100 bytes)"), "{e}");
        assert!(e.contains("take 60 bytes and 41 more"), "{e}");
        assert_eq!(budget.used(), 60);
        budget.reserve(40).unwrap();
        budget.release(50);
        assert_eq!(budget.used(), 50);
        // What is on disk is counted even past the bound; nothing goes below zero.
        budget.charge(500);
        assert_eq!(budget.used(), 550);
        assert!(budget.reserve(1).is_err());
        budget.release(10_000);
        assert_eq!(budget.used(), 0);
        let unbounded = DiskBudget::new(None);
        unbounded.reserve(u64::MAX / 2).unwrap();
        assert_eq!(unbounded.used(), u64::MAX / 2);
    }
}
