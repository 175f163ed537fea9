//! What a store has done since it opened, for `/v1/metrics`: its durable writes by kind,
//! its reads, and the time of each group commit (the log's write and `fdatasync`).
//! Relaxed atomics, one add per operation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use strata_os::histogram::{Histogram, HistogramSnapshot};

/// The kinds of write, in the order of [`StoreFigures::writes`].
pub const WRITE_KINDS: [&str; 4] = ["put", "delete", "put_blob", "delete_blob"];

/// The kinds of read, in the order of [`StoreFigures::reads`].
pub const READ_KINDS: [&str; 4] = ["get", "list", "get_blob", "list_blobs"];

/// A store's figures as read at one moment.
#[derive(Debug, Clone, Default)]
pub struct StoreFigures {
    /// Writes made durable (a failed condition counts too: it was decided), by
    /// [`WRITE_KINDS`].
    pub writes: [u64; 4],
    /// Reads answered, by [`READ_KINDS`].
    pub reads: [u64; 4],
    /// Group commits: batches appended to the log and synced.
    pub commits: u64,
    /// Time of each group commit's append and sync.
    pub commit_time: HistogramSnapshot,
}

#[derive(Default)]
pub(crate) struct Figures {
    writes: [AtomicU64; 4],
    reads: [AtomicU64; 4],
    commit_time: Histogram,
}

impl Figures {
    pub fn wrote(&self, kind: usize) {
        self.writes[kind].fetch_add(1, Ordering::Relaxed);
    }

    pub fn read(&self, kind: usize) {
        self.reads[kind].fetch_add(1, Ordering::Relaxed);
    }

    pub fn committed(&self, took: Duration) {
        self.commit_time.record(took);
    }

    pub fn snapshot(&self) -> StoreFigures {
        let commit_time = self.commit_time.snapshot();
        StoreFigures {
            writes: self.writes.each_ref().map(|n| n.load(Ordering::Relaxed)),
            reads: self.reads.each_ref().map(|n| n.load(Ordering::Relaxed)),
            commits: commit_time.count(),
            commit_time,
        }
    }
}
