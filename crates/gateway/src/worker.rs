//! Which gateway worker thread the code is running on. Each worker has a slot of its own
//! in the tables kept per thread (a member's idle connections, the access-log buffers),
//! so workers never wait on each other and a request never touches a socket registered
//! with another thread's runtime.

use std::cell::Cell;

/// Most gateway worker threads (the manifest's bound on `gateway.workers`): each needs
/// an idle list of its own, because a socket belongs to the runtime (thread) that
/// registered it.
pub const MAX_WORKERS: usize = strata_manifest::MAX_GATEWAY_WORKERS;
/// Slots in each table kept per thread; gateway worker threads use 1.., everything else 0.
pub(crate) const SLOTS: usize = MAX_WORKERS + 1;

thread_local! {
    static SLOT: Cell<usize> = const { Cell::new(0) };
}

/// Marks the current thread as gateway worker `n` (from 0).
pub fn set_worker(n: usize) {
    assert!(n < MAX_WORKERS, "at most {MAX_WORKERS} gateway workers");
    SLOT.with(|s| s.set(1 + n));
}

pub(crate) fn slot() -> usize {
    SLOT.with(|s| s.get())
}
