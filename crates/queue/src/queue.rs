//! One queue: open (recovering its segments and `groups.log`), publish, ack, nack, stats
//! and close. The read path ([`Queue::fetch`]) is `fetch`; the index the calls share is
//! `index`; the writes go through `leader` to the writer (`commit`).

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;
use strata_os::histogram::HistogramSnapshot;

use serde::Serialize;
use strata_manifest::QueueSpec;
use strata_os::clock::now_ms;
use strata_os::disk::{Disk, OsDisk};
use tokio::sync::oneshot;

use crate::backend::Placed;
use crate::commit::{Published, Write, Writer};
use crate::group::{Group, GroupStats};
use crate::groups_log::{self, Op};
use crate::index::{missing_fn, slot_of, Inner, QueueCore, SegMeta};
use crate::leader::{self, Pipe};
use crate::limits::DiskBudget;
use crate::record::{NewMessage, MAX_ATTR};
use crate::segment::{self, Segment};
use crate::{QueueError, QueuesConfig};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct QueueStats {
    pub name: String,
    pub fsync: &'static str,
    pub first_offset: u64,
    pub next_offset: u64,
    pub messages: u64,
    pub bytes: u64,
    /// What its segment files take on disk (preallocated, the next one included when it
    /// is prepared ahead): what counts against `queue_limits.max_total_bytes`.
    pub disk_bytes: u64,
    pub segments: usize,
    /// Offsets whose records were found corrupt and are never served.
    pub corrupt: u64,
    /// What opening the queue found damaged and repaired, in words; empty normally.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub repairs: Vec<String>,
    pub groups: Vec<GroupStats>,
    /// Where its copies are (JetStream: the servers holding its stream); none for an
    /// embedded queue, held in this node's files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<crate::Replicas>,
    /// How long its syncs took (for `/v1/metrics`); empty where the backend syncs
    /// elsewhere (JetStream).
    #[serde(skip)]
    pub fsync_time: HistogramSnapshot,
}

/// One queue, on the disk `D` (the real file system unless a test gives another).
pub struct Queue<D: Disk = OsDisk> {
    pub(crate) shared: Arc<QueueCore<D>>,
    pipe: Arc<Pipe<D>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Where messages go after `max_deliveries`; None for a dead-letter queue itself.
    pub(crate) dlq: Option<Arc<Queue<D>>>,
}

impl<D: Disk> Queue<D> {
    /// Opens (recovering) or creates the queue stored in `dir`, a directory that exists
    /// durably. Its segment files are counted in `budget`, whatever its bound: what is
    /// stored is never refused. Blocking: disk work.
    pub(crate) fn open(
        name: &str,
        spec: QueueSpec,
        dir: &Path,
        dlq: Option<Arc<Queue<D>>>,
        config: &QueuesConfig<D>,
        budget: &Arc<DiskBudget>,
    ) -> Result<Queue<D>, QueueError> {
        let disk = &config.disk;
        // Records written under a larger max_message_bytes or segment_bytes stay readable:
        // only the segment file a record is in bounds it.
        let recent_since = now_ms().saturating_sub(spec.dedupe_window_ms);
        let recovered =
            segment::recover(disk, dir, recent_since).map_err(|e| QueueError::io("read the segments", e))?;
        let mut repairs = Vec::new();
        for c in &recovered.corrupt {
            let what = format!(
                "{} at byte {}: {}; offsets {}..{} are lost and never served",
                c.segment.file_name().unwrap_or_default().to_string_lossy(),
                c.position,
                c.reason,
                c.from,
                c.to
            );
            tracing::error!(queue = name, "corrupt record: {what}");
            repairs.push(what);
        }
        if let Some((pos, reason)) = recovered.truncated {
            let what = format!("a torn tail ({reason}) cut off the last segment at byte {pos} (a write cut short by a crash, never acknowledged, or damage to the last record)");
            tracing::warn!(queue = name, "{what}");
            repairs.push(what);
        }
        let mut segments = recovered.segments;
        if segments.is_empty() {
            let file = segment::prepare(disk, dir, spec.segment_bytes)
                .map_err(|e| QueueError::io("preallocate a segment", e))?;
            segments.push(
                segment::install(disk, dir, file, 0, spec.segment_bytes)
                    .map_err(|e| QueueError::io("install a segment", e))?,
            );
        }
        let charged: u64 = segments.iter().map(|s| s.size).sum();
        let corrupt: u64 = recovered.corrupt.iter().map(|c| c.to - c.from).sum();
        let first_offset = segments[0].base;
        let next_offset = segments.last().map_or(0, Segment::next_offset);

        let (groups_log, replay) = groups_log::open(disk, dir, name, &mut repairs)?;
        let writer = Writer::new(
            segments.last().expect("a segment"),
            next_offset,
            groups_log,
            replay.valid_len as u64,
            recovered.recent,
        );
        let segments: VecDeque<SegMeta<D>> = segments.into_iter().map(SegMeta::from).collect();
        let mut groups = BTreeMap::new();
        let missing = |o: u64| slot_of(&segments, o).is_some_and(|s| s.len == 0);
        for (gname, mut r) in replay.groups {
            // A power cut may keep group records of offsets the segments lost (fsync
            // interval or none): offsets at the tail are reused and must not look done.
            r.floor = r.floor.min(next_offset);
            r.done.retain(|o| *o < next_offset);
            r.deliveries.retain(|o, _| *o < next_offset);
            let mut g = Group::from_replay(r, first_offset);
            g.advance(&missing);
            groups.insert(gname, g);
        }

        let inner = Inner {
            segments,
            first_offset,
            next_offset,
            groups,
            corrupt,
            repairs,
            cache: VecDeque::new(),
            cache_bytes: 0,
        };
        budget.charge(charged);
        let shared = Arc::new(QueueCore::new(name, spec, dir, config, inner, budget.clone(), charged));
        let pipe = Arc::new(Pipe::new(writer));
        let (thread_shared, thread_pipe) = (shared.clone(), pipe.clone());
        let handle = std::thread::Builder::new()
            .name(format!("queue-{name}"))
            .spawn(move || leader::run_thread(&thread_shared, &thread_pipe))
            .map_err(|e| {
                // What it took of the budget goes back.
                shared.release_all();
                QueueError::io("start the writer thread", e)
            })?;
        Ok(Queue {
            shared,
            pipe,
            thread: Mutex::new(Some(handle)),
            dlq,
        })
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    pub fn spec(&self) -> &QueueSpec {
        &self.shared.spec
    }

    /// Appends messages; answers once they are durable under the queue's fsync policy.
    /// A batch is written and synced together, in order.
    pub async fn publish(&self, messages: Vec<NewMessage>) -> Result<Vec<Published>, QueueError> {
        self.publish_placed(messages, Placed::nobody()).await
    }

    /// [`publish`](Self::publish), dropping `placed` once the batch is queued for the
    /// writer, whose order is the log's (before this call may lead the commit).
    pub async fn publish_placed(
        &self,
        messages: Vec<NewMessage>,
        placed: Placed,
    ) -> Result<Vec<Published>, QueueError> {
        let limit = self.shared.spec.max_message_bytes;
        for (i, m) in messages.iter().enumerate() {
            if m.payload.len() as u64 > limit {
                return Err(QueueError::TooLarge {
                    index: i,
                    size: m.payload.len() as u64,
                    limit,
                });
            }
            for (what, attr) in [
                ("dedupe_id", &m.dedupe_id),
                ("reply_to", &m.reply_to),
                ("correlation_id", &m.correlation_id),
                ("traceparent", &m.traceparent),
            ] {
                if attr.as_ref().is_some_and(|a| a.len() > MAX_ATTR || a.is_empty()) {
                    return Err(QueueError::BadInput(format!(
                        "message {i}: {what} must be 1 to {MAX_ATTR} bytes"
                    )));
                }
            }
        }
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let (done, rx) = oneshot::channel();
        // Placed once queued, before this publisher may lead the commit: the next batch
        // in its producer's order can join that commit.
        self.submit_placed(Write::Publish { messages, done }, true, placed)?;
        rx.await.map_err(|_| QueueError::Closed)?
    }

    /// Queues a write; with `lead`, commits it (and whatever else waits) right here when
    /// no other leader is at work and the runtime allows blocking in place.
    pub(crate) fn submit(&self, write: Write, lead: bool) -> Result<(), QueueError> {
        self.submit_placed(write, lead, Placed::nobody())
    }

    /// [`submit`](Self::submit), dropping `placed` once the write is queued.
    fn submit_placed(&self, write: Write, lead: bool, placed: Placed) -> Result<(), QueueError> {
        if self.shared.is_deleted() {
            return Err(QueueError::UnknownQueue(self.shared.name.clone()));
        }
        self.pipe.submit_placed(&self.shared, write, lead, placed)
    }

    /// Deletes messages leased to `group` (or waiting to be delivered to it again).
    /// Returns (deleted, ignored); answers once the delete is durable.
    pub async fn ack(&self, group: &str, offsets: &[u64]) -> Result<(usize, usize), QueueError> {
        let acked: Vec<u64> = {
            let mut inner = self.shared.lock();
            let inner = &mut *inner;
            let g = inner
                .groups
                .get_mut(group)
                .ok_or_else(|| QueueError::UnknownGroup(group.to_string()))?;
            offsets.iter().copied().filter(|&o| g.settle(o)).collect()
        };
        let ignored = offsets.len() - acked.len();
        if acked.is_empty() {
            return Ok((0, ignored));
        }
        let n = acked.len();
        self.log_groups(vec![Op::Ack {
            group: group.to_string(),
            offsets: acked.clone(),
        }])
        .await?;
        // Durable now, and done (the writer marked them): the floor may move over them
        // (and segments below it go).
        let mut inner = self.shared.lock();
        let inner = &mut *inner;
        let missing = missing_fn(&inner.segments);
        if let Some(g) = inner.groups.get_mut(group) {
            g.acked += n as u64;
            g.advance(&missing);
        }
        Ok((n, ignored))
    }

    /// Gives leased messages back for immediate redelivery. Returns (nacked, ignored).
    pub fn nack(&self, group: &str, offsets: &[u64]) -> Result<(usize, usize), QueueError> {
        let n = {
            let mut inner = self.shared.lock();
            let g = inner
                .groups
                .get_mut(group)
                .ok_or_else(|| QueueError::UnknownGroup(group.to_string()))?;
            let mut n = 0;
            for &o in offsets {
                // One whose lease just ran out is already given back: counted too.
                if g.unlease(o) | g.redeliver.contains(&o) {
                    g.redeliver.insert(o);
                    n += 1;
                }
            }
            n
        };
        if n > 0 {
            self.shared.notify.notify_waiters();
        }
        Ok((n, offsets.len() - n))
    }

    /// Appends `ops` to `groups.log`; answers once they are synced.
    pub(crate) async fn log_groups(&self, ops: Vec<Op>) -> Result<(), QueueError> {
        let (done, rx) = oneshot::channel();
        self.submit(Write::GroupsLog { ops, done: Some(done) }, true)?;
        rx.await.map_err(|_| QueueError::Closed)?
    }

    /// Resolves at the next publish, nack or lease expiry (what wakes long-polling fetches).
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.shared.notify.notified()
    }

    pub fn stats(&self) -> QueueStats {
        let mut inner = self.shared.lock();
        let now = Instant::now();
        let tail = inner.next_offset;
        for g in inner.groups.values_mut() {
            g.expire(now);
        }
        QueueStats {
            name: self.shared.name.clone(),
            fsync: self.shared.spec.fsync.as_str(),
            first_offset: inner.first_offset,
            next_offset: tail,
            messages: tail - inner.first_offset,
            bytes: inner.segments.iter().map(|s| s.written).sum(),
            disk_bytes: self.shared.charged(),
            segments: inner.segments.len(),
            corrupt: inner.corrupt,
            repairs: inner.repairs.clone(),
            groups: inner.groups.iter().map(|(n, g)| g.stats(n, tail)).collect(),
            replicas: None,
            fsync_time: self.shared.fsync_time.snapshot(),
        }
    }

    /// Stops the writer after it has written and synced everything sent before.
    pub fn close(&self) {
        self.pipe.close();
        // Held while joining, so that a second close returns only once the writer is done.
        let mut thread = self.thread.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(handle) = thread.take() {
            let _ = handle.join();
        }
    }
}

impl<D: Disk> Drop for Queue<D> {
    fn drop(&mut self) {
        self.close();
    }
}
