//! Who commits, and when. A write is queued in the [`Pipe`]; whoever holds the
//! [`Writer`] (the leader) takes everything waiting and commits it as one batch (see
//! `commit`). On a multi-thread runtime the publisher that finds the writer free leads
//! itself, inside `block_in_place` (so its runtime thread is handed to other tasks while
//! it waits for the disk): a lone publisher pays no thread hop. Others wait for the
//! leader. The queue's own thread leads on a current-thread runtime, syncs for
//! `fsync: interval`, and flushes at close.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use strata_manifest::FsyncPolicy;
use strata_os::disk::Disk;

use crate::backend::Placed;
use crate::commit::{Write, Writer};
use crate::index::QueueCore;
use crate::QueueError;

/// Most bytes one group commit takes from the pipe.
const BATCH_BYTES: usize = 8 << 20;
/// Batches one publisher commits for others before it hands leading to the queue's
/// thread, so that its own answer is not held back without bound.
const LEADER_ROUNDS: usize = 8;
/// Fire-and-forget writes (delivery counts) wait for the next commit; past this many
/// waiting, the caller commits them itself.
const LOOSE_WRITES: usize = 64;
/// And when no commit comes, the queue's thread writes them this long after the first
/// at most: a delivery count must reach the OS (safe from kill -9) before a consumer
/// dying on the message, or the node killed with it, brings the message back, else a
/// poison message is delivered again and again instead of dead-lettered.
const LOOSE_WAIT: Duration = Duration::from_millis(50);

/// Writes waiting for a leader, and the writer state the leader holds.
pub(crate) struct Pipe<D: Disk> {
    pending: Mutex<Pending>,
    /// Wakes the queue's thread (current-thread runtimes, interval syncs, close).
    wake: Condvar,
    writer: Mutex<Writer<D>>,
}

#[derive(Default)]
struct Pending {
    items: Vec<Write>,
    closing: bool,
    /// Every write waiting is loose, the first since then: the queue's thread commits
    /// them [`LOOSE_WAIT`] after (None: what waits is to be committed now).
    loose_since: Option<Instant>,
}

/// Who commits: a publisher (which hands off after [`LEADER_ROUNDS`]) or the queue's
/// own thread (which keeps going).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Leader {
    Publisher,
    QueueThread,
}

impl<D: Disk> Pipe<D> {
    pub fn new(writer: Writer<D>) -> Pipe<D> {
        Pipe {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            writer: Mutex::new(writer),
        }
    }

    /// Queues a write; with `lead`, commits it (and whatever else waits) right here when
    /// no other leader is at work and the runtime allows blocking in place.
    /// `placed` is dropped once the write is queued (its place in the log is fixed),
    /// before this call may lead a commit.
    pub fn submit_placed(
        &self,
        shared: &QueueCore<D>,
        write: Write,
        lead: bool,
        placed: Placed,
    ) -> Result<(), QueueError> {
        let waiting = {
            let mut pending = lock(&self.pending);
            if pending.closing {
                return Err(QueueError::Closed);
            }
            pending.items.push(write);
            let waiting = pending.items.len();
            pending.loose_since = match (lead, waiting) {
                (false, 1) => Some(Instant::now()),
                (false, n) if n <= LOOSE_WRITES => pending.loose_since,
                _ => None,
            };
            waiting
        };
        drop(placed);
        if !lead && waiting <= LOOSE_WRITES {
            if waiting == 1 {
                // The queue's thread counts the loose writes' while from now.
                self.wake.notify_one();
            }
            return Ok(());
        }
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if !multi_thread {
            self.wake.notify_one();
            return Ok(());
        }
        // Busy writer: its leader takes this write before it lets go.
        if let Some(writer) = try_lock(&self.writer) {
            tokio::task::block_in_place(|| lead_commits(shared, self, writer, Leader::Publisher));
        }
        Ok(())
    }

    /// Refuses later writes and wakes the queue's thread, which commits what waits, syncs
    /// and ends.
    pub fn close(&self) {
        lock(&self.pending).closing = true;
        self.wake.notify_one();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn try_lock<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(g) => Some(g),
        Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

/// Takes up to a group commit's worth of waiting writes.
fn take_pending<D: Disk>(pipe: &Pipe<D>) -> Vec<Write> {
    let mut pending = lock(&pipe.pending);
    let mut bytes = 0;
    let n = pending
        .items
        .iter()
        .take_while(|w| {
            let fits = bytes < BATCH_BYTES;
            if let Write::Publish { messages, .. } = w {
                bytes += messages.iter().map(|m| m.payload.len()).sum::<usize>();
            }
            fits
        })
        .count();
    // What is left is committed by this leader's next round.
    pending.loose_since = None;
    pending.items.drain(..n).collect()
}

/// Commits whatever waits, batch after batch, while holding the writer; after letting
/// go, looks once more, so that a write queued while the writer was busy is never left
/// behind.
fn lead_commits<'a, D: Disk>(
    shared: &QueueCore<D>,
    pipe: &'a Pipe<D>,
    mut writer: MutexGuard<'a, Writer<D>>,
    leader: Leader,
) {
    let mut rounds = 0;
    loop {
        loop {
            if leader == Leader::Publisher && rounds >= LEADER_ROUNDS {
                // Enough done for others: the queue's thread takes over.
                drop(writer);
                pipe.wake.notify_one();
                return;
            }
            rounds += 1;
            let batch = take_pending(pipe);
            if batch.is_empty() {
                break;
            }
            if let Err(e) = writer.commit(shared, batch) {
                tracing::error!(queue = %shared.name, "write failed: {e}");
            }
        }
        if writer.interval_sync_due(&shared.spec) {
            writer.sync_interval(shared);
        }
        drop(writer);
        if lock(&pipe.pending).items.is_empty() {
            return;
        }
        writer = match try_lock(&pipe.writer) {
            Some(w) => w,
            // Another leader took over; it looks again before it lets go.
            None => return,
        };
    }
}

/// The queue's own thread: leads when woken (current-thread runtimes), commits loose
/// writes no leader took within [`LOOSE_WAIT`], syncs every `fsync_interval_ms` under
/// `fsync: interval`, and at close commits what is left and syncs.
pub(crate) fn run_thread<D: Disk>(shared: &QueueCore<D>, pipe: &Pipe<D>) {
    let interval = Duration::from_millis(shared.spec.fsync_interval_ms);
    loop {
        let closing = {
            let mut pending = lock(&pipe.pending);
            loop {
                if pending.closing {
                    break;
                }
                if !pending.items.is_empty() {
                    // Loose writes alone wait out their while (a lead write, or too many
                    // loose ones, clear it and wake this thread); anything else now.
                    match pending
                        .loose_since
                        .and_then(|since| LOOSE_WAIT.checked_sub(since.elapsed()))
                    {
                        Some(left) => {
                            pending = pipe
                                .wake
                                .wait_timeout(pending, left)
                                .unwrap_or_else(|e| e.into_inner())
                                .0;
                            continue;
                        }
                        None => break,
                    }
                }
                if shared.spec.fsync == FsyncPolicy::Interval {
                    let (p, timeout) = pipe
                        .wake
                        .wait_timeout(pending, interval)
                        .unwrap_or_else(|e| e.into_inner());
                    pending = p;
                    if timeout.timed_out() {
                        break;
                    }
                } else {
                    pending = pipe.wake.wait(pending).unwrap_or_else(|e| e.into_inner());
                }
            }
            pending.closing
        };
        lead_commits(shared, pipe, lock(&pipe.writer), Leader::QueueThread);
        if closing {
            let mut writer = lock(&pipe.writer);
            let batch = take_pending(pipe);
            if !batch.is_empty() {
                let _ = writer.commit(shared, batch);
            }
            if writer.dirty() {
                writer.sync_interval(shared);
            }
            writer.finish();
            // Whatever is still queued is answered `Closed` when dropped.
            lock(&pipe.pending).items.clear();
            return;
        }
    }
}
