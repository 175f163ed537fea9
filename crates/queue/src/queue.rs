//! One queue: the shared index and groups (behind a mutex, never held across an await or
//! a disk operation), and the writer thread that owns every write to its files.
//!
//! A publish is queued in `Pipe`; whoever holds the `Writer` (the leader) takes
//! everything waiting, encodes it into one buffer, writes it with one `pwrite` into the
//! preallocated segment, syncs once (group commit), then makes the messages visible and
//! answers every publisher. On a multi-thread runtime the publisher that finds the writer
//! free leads itself, inside `block_in_place` (so its runtime thread is handed to other
//! tasks while it waits for the disk): a lone publisher pays no thread hop. Others wait
//! for the leader. The queue's thread leads on a current-thread runtime, syncs for
//! `fsync: interval`, and flushes at close. Reads of recent messages come from the writer's buffers kept in memory;
//! older ones are read from the segment files on tokio's blocking pool.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use strata_manifest::{FsyncPolicy, QueueSpec};
use tokio::sync::{oneshot, Notify};

use crate::group::{Group, GroupStats};
use crate::record::{decode, Decoded, NewMessage, MAX_ATTR};
use crate::segment::{self, Segment, Slot};
use crate::state::{self, Op};
use crate::QueueError;

/// Recent writes kept in memory for reads, per queue.
const CACHE_BYTES: usize = 32 << 20;
/// Most bytes one group commit takes from the channel.
const BATCH_BYTES: usize = 8 << 20;
/// `groups.log` is rewritten as a snapshot past this size (and twice the last snapshot).
const STATE_COMPACT_BYTES: u64 = 4 << 20;
/// How long a message on its way to the dead-letter queue is held from other fetches.
const DEAD_LETTER_LEASE: Duration = Duration::from_secs(60);
/// Batches one publisher commits for others before it hands leading to the queue's
/// thread, so that its own answer is not held back without bound.
const LEADER_ROUNDS: usize = 8;

/// A message handed to a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub offset: u64,
    /// 1 on the first delivery to this group.
    pub deliveries: u32,
    pub timestamp_ms: u64,
    pub reply_to: Option<String>,
    pub correlation_id: Option<String>,
    pub payload: Bytes,
}

/// The answer to one published message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Published {
    pub offset: u64,
    /// The dedupe id was seen within the window: nothing was stored.
    pub duplicate: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct FetchOptions {
    /// Most messages; `usize::MAX` for all pending.
    pub max: usize,
    /// Most payload bytes (at least one message is always handed out).
    pub max_bytes: usize,
    /// Long poll: how long to wait when nothing is pending.
    pub wait: Duration,
    /// The lease of this fetch; None: the queue's.
    pub lease: Option<Duration>,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            max: 1,
            max_bytes: 1 << 20,
            wait: Duration::ZERO,
            lease: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct QueueStats {
    pub name: String,
    pub fsync: &'static str,
    pub first_offset: u64,
    pub next_offset: u64,
    pub messages: u64,
    pub bytes: u64,
    pub segments: usize,
    /// Offsets whose records were found corrupt and are never served.
    pub corrupt: u64,
    pub groups: Vec<GroupStats>,
}

pub struct Queue {
    pub(crate) shared: Arc<Shared>,
    pipe: Arc<Pipe>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Where messages go after `max_deliveries`; None for a dead-letter queue itself.
    pub(crate) dlq: Option<Arc<Queue>>,
}

pub(crate) struct Shared {
    pub name: String,
    pub spec: QueueSpec,
    pub dir: PathBuf,
    inner: Mutex<Inner>,
    /// Woken when messages become visible or are given back.
    notify: Notify,
}

struct Inner {
    segments: VecDeque<SegMeta>,
    first_offset: u64,
    next_offset: u64,
    groups: BTreeMap<String, Group>,
    corrupt: u64,
    cache: VecDeque<Chunk>,
    cache_bytes: usize,
}

struct SegMeta {
    base: u64,
    file: Arc<File>,
    index: Vec<Slot>,
    written: u64,
    last_timestamp_ms: u64,
}

/// Bytes the writer wrote at `pos` of segment `base`.
struct Chunk {
    base: u64,
    pos: u64,
    data: Bytes,
}

/// Writes waiting for a leader, and the writer state the leader holds.
struct Pipe {
    pending: Mutex<Pending>,
    /// Wakes the queue's thread (current-thread runtimes, interval syncs, close).
    wake: Condvar,
    writer: Mutex<Writer>,
}

#[derive(Default)]
struct Pending {
    items: Vec<Write>,
    closing: bool,
}

/// Fire-and-forget writes (delivery counts) wait for the next commit; past this many
/// waiting, the caller commits them itself.
const LOOSE_WRITES: usize = 64;

enum Write {
    Publish {
        messages: Vec<NewMessage>,
        done: oneshot::Sender<Result<Vec<Published>, QueueError>>,
    },
    State {
        ops: Vec<Op>,
        done: Option<oneshot::Sender<Result<(), QueueError>>>,
    },
}

/// A leased message still to be read.
struct Lease {
    offset: u64,
    deliveries: u32,
    at: Located,
}

#[derive(Clone)]
enum Located {
    Memory(Bytes),
    Disk { file: Arc<File>, pos: u64, len: u32 },
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn io_err(what: &str, e: io::Error) -> QueueError {
    QueueError::Io(format!("{what}: {e}"))
}

impl Queue {
    /// Opens (recovering) or creates the queue stored in `dir`. Blocking: disk work.
    pub(crate) fn open(name: &str, spec: QueueSpec, dir: &Path, dlq: Option<Arc<Queue>>) -> Result<Queue, QueueError> {
        fs::create_dir_all(dir).map_err(|e| io_err("create the queue directory", e))?;
        // Records written under a larger max_message_bytes stay readable: only the segment
        // bounds a record.
        let max_record = spec.segment_bytes as usize;
        let recent_since = now_ms().saturating_sub(spec.dedupe_window_ms);
        let recovered = segment::recover(dir, max_record, recent_since).map_err(|e| io_err("read the segments", e))?;
        for c in &recovered.corrupt {
            tracing::error!(
                queue = name,
                segment = %c.segment.display(),
                position = c.position,
                "corrupt record ({}): offsets {}..{} are lost and will not be served",
                c.reason,
                c.from,
                c.to
            );
        }
        if let Some((pos, reason)) = recovered.truncated {
            tracing::warn!(
                queue = name,
                position = pos,
                "torn tail ({reason}) cut off the last segment"
            );
        }
        let mut segments = recovered.segments;
        if segments.is_empty() {
            let file = segment::prepare(dir, spec.segment_bytes).map_err(|e| io_err("preallocate a segment", e))?;
            segments.push(segment::install(dir, file, 0).map_err(|e| io_err("install a segment", e))?);
        }
        let corrupt: u64 = recovered.corrupt.iter().map(|c| c.to - c.from).sum();
        let first_offset = segments[0].base;
        let next_offset = segments.last().map_or(0, Segment::next_offset);

        // Groups.
        let state_path = dir.join("groups.log");
        let state_bytes = match fs::read(&state_path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err("read groups.log", e)),
        };
        let replay = state::replay(&state_bytes);
        if replay.corrupt > 0 {
            tracing::error!(
                queue = name,
                "{} corrupt records in groups.log were skipped: their deletes are lost and those messages will be delivered again",
                replay.corrupt
            );
        }
        // Append mode: every write lands at the end, whatever was there at open.
        let state_file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&state_path)
            .map_err(|e| io_err("open groups.log", e))?;
        if replay.valid_len < state_bytes.len() {
            state_file
                .set_len(replay.valid_len as u64)
                .and_then(|_| state_file.sync_all())
                .map_err(|e| io_err("truncate groups.log", e))?;
        }
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

        let active = segments.last().expect("a segment");
        let writer = Writer {
            active: active.file.clone(),
            active_base: active.base,
            pos: active.written,
            next_offset,
            prepared: None,
            state_file,
            state_len: replay.valid_len as u64,
            dedupe: HashMap::new(),
            dedupe_order: VecDeque::new(),
            dirty: false,
            last_sync: Instant::now(),
            failed: None,
            snapshot_len: 0,
        };
        let mut writer = writer;
        for (id, offset, ts) in recovered.recent {
            writer.dedupe.insert(id.clone(), offset);
            writer.dedupe_order.push_back((ts, id));
        }
        let metas = segments
            .into_iter()
            .map(|s| SegMeta {
                base: s.base,
                file: s.file,
                index: s.index,
                written: s.written,
                last_timestamp_ms: s.last_timestamp_ms,
            })
            .collect();
        let shared = Arc::new(Shared {
            name: name.to_string(),
            spec,
            dir: dir.to_path_buf(),
            inner: Mutex::new(Inner {
                segments: metas,
                first_offset,
                next_offset,
                groups,
                corrupt,
                cache: VecDeque::new(),
                cache_bytes: 0,
            }),
            notify: Notify::new(),
        });
        let pipe = Arc::new(Pipe {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            writer: Mutex::new(writer),
        });
        let (thread_shared, thread_pipe) = (shared.clone(), pipe.clone());
        let handle = std::thread::Builder::new()
            .name(format!("queue-{name}"))
            .spawn(move || run_thread(&thread_shared, &thread_pipe))
            .map_err(|e| io_err("start the writer thread", e))?;
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
        self.submit(Write::Publish { messages, done }, true)?;
        rx.await.map_err(|_| QueueError::Closed)?
    }

    /// Queues a write; with `lead`, commits it (and whatever else waits) right here when
    /// no other leader is at work and the runtime allows blocking in place.
    fn submit(&self, write: Write, lead: bool) -> Result<(), QueueError> {
        let waiting = {
            let mut pending = lock(&self.pipe.pending);
            if pending.closing {
                return Err(QueueError::Closed);
            }
            pending.items.push(write);
            pending.items.len()
        };
        if !lead && waiting <= LOOSE_WRITES {
            return Ok(());
        }
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if !multi_thread {
            self.pipe.wake.notify_one();
            return Ok(());
        }
        // Busy writer: its leader takes this write before it lets go.
        if let Some(writer) = try_lock(&self.pipe.writer) {
            tokio::task::block_in_place(|| lead_commits(&self.shared, &self.pipe, writer, Leader::Publisher));
        }
        Ok(())
    }

    /// Leases the next messages to `group` (created at the oldest stored message on its
    /// first fetch), waiting up to `opts.wait` for one.
    pub async fn fetch(&self, group: &str, opts: FetchOptions) -> Result<Vec<Message>, QueueError> {
        if opts.max == 0 {
            return Err(QueueError::BadInput("max must be at least 1".into()));
        }
        let lease = opts.lease.unwrap_or(Duration::from_millis(self.shared.spec.lease_ms));
        let end = tokio::time::Instant::now() + opts.wait;
        loop {
            let notified = self.shared.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (leases, dead, next_expiry) = self.take(group, &opts, lease);
            if !dead.is_empty() {
                self.dead_letter(group, dead).await;
            }
            if !leases.is_empty() {
                return self.read_leases(group, leases).await;
            }
            let now = tokio::time::Instant::now();
            if now >= end {
                return Ok(Vec::new());
            }
            let wake = next_expiry
                .map(|at| tokio::time::Instant::from_std(at).min(end))
                .unwrap_or(end);
            let _ = tokio::time::timeout_at(wake, notified).await;
        }
    }

    /// The synchronous part of a fetch: lease what is pending, under the lock.
    fn take(&self, group: &str, opts: &FetchOptions, lease: Duration) -> (Vec<Lease>, Vec<u64>, Option<Instant>) {
        let max_deliveries = self.shared.spec.max_deliveries;
        let mut ops = Vec::new();
        let mut guard = self.shared.lock();
        let inner = &mut *guard;
        let now = Instant::now();
        let until = now + lease;
        if !inner.groups.contains_key(group) {
            let start = inner.first_offset;
            inner.groups.insert(group.to_string(), Group::new(start));
            ops.push(Op::Create {
                group: group.to_string(),
                start,
            });
        }
        let g = inner.groups.get_mut(group).expect("group exists");
        g.expire(now);
        let mut leases = Vec::new();
        let mut dead = Vec::new();
        let mut bytes = 0usize;
        let tail = inner.next_offset;
        loop {
            if leases.len() >= opts.max {
                break;
            }
            let offset = match g.redeliver.first() {
                Some(&o) => o,
                None => {
                    while g.next < tail && g.is_done(g.next) {
                        g.next += 1;
                    }
                    if g.next >= tail {
                        break;
                    }
                    g.next += 1;
                    g.next - 1
                }
            };
            let Some(slot) = slot_of_meta(&inner.segments, offset).filter(|s| s.len > 0) else {
                // Corrupt or dropped: done for every group.
                g.redeliver.remove(&offset);
                g.done.insert(offset);
                continue;
            };
            let size = slot.len as usize;
            if !leases.is_empty() && bytes + size > opts.max_bytes {
                if g.redeliver.first() != Some(&offset) {
                    g.next -= 1;
                }
                break;
            }
            g.redeliver.remove(&offset);
            if max_deliveries > 0 && g.deliveries.get(&offset).copied().unwrap_or(0) >= max_deliveries {
                // Held by a lease while it moves to the dead-letter queue, so that a
                // cancelled fetch leaves it to be retried; not the fetch's own lease, which a
                // client may set short enough for a second fetch to move it again.
                g.lease(offset, now + lease.max(DEAD_LETTER_LEASE));
                dead.push(offset);
                continue;
            }
            let deliveries = g.lease(offset, until);
            bytes += size;
            let at = locate(&inner.segments, &inner.cache, offset, slot);
            leases.push(Lease { offset, deliveries, at });
        }
        let next_expiry = g.next_expiry();
        drop(guard);
        if !leases.is_empty() {
            ops.push(Op::Deliver {
                group: group.to_string(),
                offsets: leases.iter().map(|l| l.offset).collect(),
            });
        }
        if !ops.is_empty() {
            let _ = self.submit(Write::State { ops, done: None }, false);
        }
        (leases, dead, next_expiry)
    }

    async fn read_leases(&self, group: &str, leases: Vec<Lease>) -> Result<Vec<Message>, QueueError> {
        let max_record = self.max_record();
        let needs_disk = leases.iter().any(|l| matches!(l.at, Located::Disk { .. }));
        let raw: Vec<(u64, u32, io::Result<Bytes>)> = if needs_disk {
            match read_all(&leases, true) {
                Some(raw) => raw,
                None => tokio::task::spawn_blocking(move || read_all(&leases, false).expect("blocking reads complete"))
                    .await
                    .map_err(|e| QueueError::Io(format!("read task failed: {e}")))?,
            }
        } else {
            read_all(&leases, true).expect("memory reads complete")
        };
        let mut out = Vec::with_capacity(raw.len());
        let mut bad = Vec::new();
        // A record the disk fails to give back goes back to its group (to be tried again,
        // and dead-lettered after max_deliveries); the rest of the batch is served.
        let mut unreadable = Vec::new();
        let mut last_error = None;
        for (offset, deliveries, bytes) in raw {
            let bytes = match bytes {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(queue = %self.shared.name, offset, "reading a record failed: {e}");
                    unreadable.push(offset);
                    last_error = Some(e);
                    continue;
                }
            };
            match decode(&bytes, max_record) {
                Decoded::Record(r, _) if r.offset == offset => out.push(Message {
                    offset,
                    deliveries,
                    timestamp_ms: r.timestamp_ms,
                    reply_to: r.reply_to,
                    correlation_id: r.correlation_id,
                    payload: r.payload,
                }),
                other => {
                    let reason = match other {
                        Decoded::Bad(reason) => reason,
                        _ => "a record of another offset",
                    };
                    tracing::error!(
                        queue = %self.shared.name,
                        offset,
                        "corrupt record ({reason}) found on read: not served, skipped for every group"
                    );
                    bad.push(offset);
                }
            }
        }
        if !unreadable.is_empty() {
            let mut inner = self.shared.lock();
            if let Some(g) = inner.groups.get_mut(group) {
                for &o in &unreadable {
                    if g.unlease(o) {
                        g.redeliver.insert(o);
                    }
                }
            }
            drop(inner);
            if out.is_empty() && bad.is_empty() {
                if let Some(e) = last_error {
                    return Err(io_err("read a segment", e));
                }
            }
        }
        if !bad.is_empty() {
            let mut inner = self.shared.lock();
            for &o in &bad {
                if let Some(slot) = slot_mut(&mut inner.segments, o) {
                    slot.len = 0;
                }
                inner.corrupt += 1;
            }
            if let Some(g) = inner.groups.get_mut(group) {
                for &o in &bad {
                    g.finish(o);
                }
            }
        }
        Ok(out)
    }

    fn max_record(&self) -> usize {
        self.shared.spec.segment_bytes as usize
    }

    /// Moves messages that reached `max_deliveries` to the dead-letter queue, then marks
    /// them done for the group. A failure leaves them leased, to be retried on expiry.
    async fn dead_letter(&self, group: &str, offsets: Vec<u64>) {
        let Some(dlq) = &self.dlq else { return };
        let leases: Vec<Lease> = {
            let inner = self.shared.lock();
            offsets
                .iter()
                .filter_map(|&o| {
                    let slot = slot_of_meta(&inner.segments, o)?;
                    Some(Lease {
                        offset: o,
                        deliveries: 0,
                        at: locate(&inner.segments, &inner.cache, o, slot),
                    })
                })
                .collect()
        };
        let messages = match self.read_leases(group, leases).await {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(queue = %self.shared.name, "dead-lettering failed: {e}");
                return;
            }
        };
        let moved: Vec<u64> = messages.iter().map(|m| m.offset).collect();
        let copies = messages
            .into_iter()
            .map(|m| NewMessage {
                payload: m.payload,
                dedupe_id: None,
                reply_to: m.reply_to,
                correlation_id: m.correlation_id,
            })
            .collect();
        if let Err(e) = dlq.publish(copies).await {
            tracing::error!(queue = %self.shared.name, "dead-lettering failed: {e}");
            return;
        }
        {
            let mut inner = self.shared.lock();
            let inner = &mut *inner;
            let missing = missing_fn(&inner.segments);
            if let Some(g) = inner.groups.get_mut(group) {
                for &o in &moved {
                    if g.finish(o) {
                        g.dead_lettered += 1;
                    }
                }
                g.advance(&missing);
            }
        }
        tracing::warn!(queue = %self.shared.name, group, offsets = ?moved, "moved to {}", dlq.name());
        let _ = self
            .state(vec![Op::Dead {
                group: group.to_string(),
                offsets: moved,
            }])
            .await;
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
        self.state(vec![Op::Ack {
            group: group.to_string(),
            offsets: acked.clone(),
        }])
        .await?;
        // Durable now: the floor may move over them (and segments below it go).
        let mut inner = self.shared.lock();
        let inner = &mut *inner;
        let missing = missing_fn(&inner.segments);
        if let Some(g) = inner.groups.get_mut(group) {
            g.settled(&acked);
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

    async fn state(&self, ops: Vec<Op>) -> Result<(), QueueError> {
        let (done, rx) = oneshot::channel();
        self.submit(Write::State { ops, done: Some(done) }, true)?;
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
            segments: inner.segments.len(),
            corrupt: inner.corrupt,
            groups: inner.groups.iter().map(|(n, g)| g.stats(n, tail)).collect(),
        }
    }

    /// Stops the writer after it has written and synced everything sent before.
    pub fn close(&self) {
        lock(&self.pipe.pending).closing = true;
        self.pipe.wake.notify_one();
        if let Some(handle) = lock(&self.thread).take() {
            let _ = handle.join();
        }
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.close();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn slot_of(segments: &[Segment], offset: u64) -> Option<Slot> {
    let i = segments.partition_point(|s| s.base <= offset).checked_sub(1)?;
    segments[i].index.get((offset - segments[i].base) as usize).copied()
}

fn seg_index(segments: &VecDeque<SegMeta>, offset: u64) -> Option<usize> {
    let i = segments.partition_point(|s| s.base <= offset).checked_sub(1)?;
    let s = &segments[i];
    ((offset - s.base) < s.index.len() as u64).then_some(i)
}

fn slot_of_meta(segments: &VecDeque<SegMeta>, offset: u64) -> Option<Slot> {
    let i = seg_index(segments, offset)?;
    Some(segments[i].index[(offset - segments[i].base) as usize])
}

fn slot_mut(segments: &mut VecDeque<SegMeta>, offset: u64) -> Option<&mut Slot> {
    let i = seg_index(segments, offset)?;
    let base = segments[i].base;
    segments[i].index.get_mut((offset - base) as usize)
}

/// Offsets below the first segment or with a corrupt record.
fn missing_fn(segments: &VecDeque<SegMeta>) -> impl Fn(u64) -> bool + '_ {
    move |o| match segments.front() {
        Some(first) if o < first.base => true,
        _ => slot_of_meta(segments, o).is_some_and(|s| s.len == 0),
    }
}

fn locate(segments: &VecDeque<SegMeta>, cache: &VecDeque<Chunk>, offset: u64, slot: Slot) -> Located {
    let i = seg_index(segments, offset).expect("located offset is indexed");
    let base = segments[i].base;
    let pos = u64::from(slot.pos);
    let c = cache.partition_point(|c| (c.base, c.pos) <= (base, pos));
    if let Some(chunk) = c.checked_sub(1).map(|c| &cache[c]) {
        if chunk.base == base && pos + u64::from(slot.len) <= chunk.pos + chunk.data.len() as u64 {
            let at = (pos - chunk.pos) as usize;
            return Located::Memory(chunk.data.slice(at..at + slot.len as usize));
        }
    }
    Located::Disk {
        file: segments[i].file.clone(),
        pos,
        len: slot.len,
    }
}

/// Reads leased records: from memory, or from disk with one read per run of records
/// that lie back to back in one segment. With `cached_only`, `None` when some record is
/// not in the page cache (nothing waited for the disk).
fn read_all(leases: &[Lease], cached_only: bool) -> Option<Vec<(u64, u32, io::Result<Bytes>)>> {
    let mut out = Vec::with_capacity(leases.len());
    let mut i = 0;
    while i < leases.len() {
        let Located::Disk { file, pos, len } = &leases[i].at else {
            let Located::Memory(b) = &leases[i].at else {
                unreachable!()
            };
            out.push((leases[i].offset, leases[i].deliveries, Ok(b.clone())));
            i += 1;
            continue;
        };
        // Extend the run while the next record starts where this one ends.
        let (start, mut end, mut j) = (*pos, *pos + u64::from(*len), i + 1);
        while let Some(Located::Disk {
            file: f,
            pos: p,
            len: l,
        }) = leases.get(j).map(|l| &l.at)
        {
            if !Arc::ptr_eq(f, file) || *p != end || end - start > 4 << 20 {
                break;
            }
            end += u64::from(*l);
            j += 1;
        }
        let read = if cached_only {
            segment::read_cached(file, start, (end - start) as usize).transpose()?
        } else {
            segment::read(file, start, (end - start) as usize)
        };
        match read {
            Ok(run) => {
                for l in &leases[i..j] {
                    let Located::Disk { pos, len, .. } = &l.at else {
                        unreachable!()
                    };
                    let at = (pos - start) as usize;
                    out.push((l.offset, l.deliveries, Ok(run.slice(at..at + *len as usize))));
                }
            }
            Err(e) if j - i == 1 => {
                let l = &leases[i];
                out.push((l.offset, l.deliveries, Err(e)));
            }
            Err(_) => {
                // One bad spot should not cost the whole run: read its records one by one.
                for l in &leases[i..j] {
                    let Located::Disk { pos, len, .. } = &l.at else {
                        unreachable!()
                    };
                    out.push((l.offset, l.deliveries, segment::read(file, *pos, *len as usize)));
                }
            }
        }
        i = j;
    }
    Some(out)
}

/// The writer thread's own state: everything about where the next bytes go.
struct Writer {
    active: Arc<File>,
    active_base: u64,
    pos: u64,
    next_offset: u64,
    prepared: Option<JoinHandle<io::Result<File>>>,
    state_file: File,
    state_len: u64,
    dedupe: HashMap<String, u64>,
    dedupe_order: VecDeque<(u64, String)>,
    dirty: bool,
    last_sync: Instant,
    /// Set when a write or sync failed: every later write is refused.
    failed: Option<String>,
    /// Size of the last snapshot of `groups.log`.
    snapshot_len: u64,
}

/// What one group commit wrote into one segment.
struct Written {
    base: u64,
    pos: u64,
    data: BytesMut,
    slots: Vec<Slot>,
    first_ts: u64,
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
fn take_pending(pipe: &Pipe) -> Vec<Write> {
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
    pending.items.drain(..n).collect()
}

/// Commits whatever waits, batch after batch, while holding the writer; after letting
/// go, looks once more, so that a write queued while the writer was busy is never left
/// behind.
/// Who commits: a publisher (which hands off after [`LEADER_ROUNDS`]) or the queue's
/// own thread (which keeps going).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Leader {
    Publisher,
    QueueThread,
}

fn lead_commits<'a>(shared: &Shared, pipe: &'a Pipe, mut writer: MutexGuard<'a, Writer>, leader: Leader) {
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
        if shared.spec.fsync == FsyncPolicy::Interval
            && writer.dirty
            && writer.last_sync.elapsed() >= Duration::from_millis(shared.spec.fsync_interval_ms)
        {
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

/// The queue's own thread: leads when woken (current-thread runtimes), syncs every
/// `fsync_interval_ms` under `fsync: interval`, and at close commits what is left and
/// syncs.
fn run_thread(shared: &Shared, pipe: &Pipe) {
    let interval = Duration::from_millis(shared.spec.fsync_interval_ms);
    loop {
        let closing = {
            let mut pending = lock(&pipe.pending);
            while pending.items.is_empty() && !pending.closing {
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
            if writer.dirty {
                writer.sync_interval(shared);
            }
            // Whatever is still queued is answered `Closed` when dropped.
            lock(&pipe.pending).items.clear();
            return;
        }
    }
}

impl Writer {
    fn sync_interval(&mut self, shared: &Shared) {
        if let Err(e) = self.active.sync_data().and_then(|_| self.state_file.sync_data()) {
            tracing::error!(queue = %shared.name, "interval sync failed: {e}");
        }
        self.dirty = false;
        self.last_sync = Instant::now();
    }

    /// One group commit: encode, write, sync, publish, answer.
    fn commit(&mut self, shared: &Shared, batch: Vec<Write>) -> io::Result<()> {
        if let Some(reason) = &self.failed {
            for w in batch {
                match w {
                    Write::Publish { done, .. } => drop(done.send(Err(QueueError::Io(reason.clone())))),
                    Write::State { done: Some(done), .. } => drop(done.send(Err(QueueError::Io(reason.clone())))),
                    _ => {}
                }
            }
            return Ok(());
        }
        let spec = &shared.spec;
        let ts = now_ms();
        self.expire_dedupe(ts, spec.dedupe_window_ms);
        let mut written: Vec<Written> = Vec::new();
        let mut to_sync: Vec<Arc<File>> = Vec::new();
        let mut state_buf = BytesMut::new();
        let mut publish_done = Vec::new();
        let mut state_done = Vec::new();
        let mut failure: Option<String> = None;
        for w in batch {
            match w {
                Write::Publish { messages, done } => {
                    let mut answers = Vec::with_capacity(messages.len());
                    let mut batch_ids: HashMap<&str, u64> = HashMap::new();
                    for m in &messages {
                        if let Some(id) = &m.dedupe_id {
                            if let Some(&offset) = self.dedupe.get(id).or_else(|| batch_ids.get(id.as_str())) {
                                answers.push(Published {
                                    offset,
                                    duplicate: true,
                                });
                                continue;
                            }
                        }
                        let len = m.encoded_len() as u64;
                        let pending = written.last().map_or(0, |w| w.data.len() as u64);
                        if self.pos + pending + len > spec.segment_bytes {
                            if let Err(e) = self.roll(shared, &mut written, &mut to_sync) {
                                failure = Some(format!("roll to a new segment: {e}"));
                                break;
                            }
                        }
                        if written.last().is_none_or(|w| w.base != self.active_base) {
                            written.push(Written {
                                base: self.active_base,
                                pos: self.pos,
                                data: BytesMut::with_capacity(64 << 10),
                                slots: Vec::new(),
                                first_ts: ts,
                            });
                        }
                        let w = written.last_mut().expect("a written chunk");
                        let at = w.pos + w.data.len() as u64;
                        let offset = self.next_offset;
                        m.encode(offset, ts, &mut w.data);
                        w.slots.push(Slot {
                            pos: at as u32,
                            len: len as u32,
                        });
                        self.next_offset += 1;
                        if let Some(id) = &m.dedupe_id {
                            batch_ids.insert(id, offset);
                        }
                        answers.push(Published {
                            offset,
                            duplicate: false,
                        });
                    }
                    for (id, offset) in batch_ids {
                        self.dedupe.insert(id.to_string(), offset);
                        self.dedupe_order.push_back((ts, id.to_string()));
                    }
                    publish_done.push((answers, done));
                }
                Write::State { ops, done } => {
                    for op in &ops {
                        op.encode(&mut state_buf);
                    }
                    if let Some(done) = done {
                        state_done.push(done);
                    }
                }
            }
        }
        // Write the active segment's bytes (rolled ones were written in `roll`).
        if failure.is_none() {
            if let Some(w) = written.last() {
                if w.base == self.active_base && !w.data.is_empty() {
                    match self.active.write_all_at(&w.data, w.pos) {
                        Ok(()) => {
                            self.pos = w.pos + w.data.len() as u64;
                            to_sync.push(self.active.clone());
                        }
                        Err(e) => failure = Some(format!("write the segment: {e}")),
                    }
                }
            }
        }
        if failure.is_none() && !state_buf.is_empty() {
            match self.state_file.write_all(&state_buf) {
                Ok(()) => self.state_len += state_buf.len() as u64,
                Err(e) => failure = Some(format!("write groups.log: {e}")),
            }
        }
        // Delivery counts ride along unsynced: losing one to a power cut only means one
        // delivery more before dead-lettering. Deletes are synced before they are answered.
        let state_waited = !state_done.is_empty();
        if failure.is_none() && (!to_sync.is_empty() || !state_buf.is_empty()) {
            match spec.fsync {
                FsyncPolicy::Always => {
                    let mut synced = to_sync.iter().try_for_each(|f| f.sync_data());
                    if synced.is_ok() && state_waited {
                        synced = self.state_file.sync_data();
                    }
                    if let Err(e) = synced {
                        failure = Some(format!("sync: {e}"));
                    }
                }
                FsyncPolicy::Interval | FsyncPolicy::None => self.dirty = true,
            }
        }
        if let Some(reason) = failure {
            // Nothing of this batch is visible. What reached the file is unknown, so the
            // queue takes no more writes; a restart recovers it from the segments.
            let reason = format!("{reason}; the queue refuses writes until strata restarts");
            self.failed = Some(reason.clone());
            for (_, done) in publish_done {
                let _ = done.send(Err(QueueError::Io(reason.clone())));
            }
            for done in state_done {
                let _ = done.send(Err(QueueError::Io(reason.clone())));
            }
            return Err(io::Error::other(reason));
        }
        // Durable: make visible, then answer.
        let published = written.iter().any(|w| !w.slots.is_empty());
        let mut dropped = Vec::new();
        {
            let mut inner = shared.inner.lock().unwrap_or_else(|e| e.into_inner());
            for w in written {
                let Some(seg) = inner.segments.iter_mut().find(|s| s.base == w.base) else {
                    continue;
                };
                seg.index.extend_from_slice(&w.slots);
                seg.written = w.pos + w.data.len() as u64;
                seg.last_timestamp_ms = w.first_ts;
                let data = w.data.freeze();
                inner.cache_bytes += data.len();
                inner.cache.push_back(Chunk {
                    base: w.base,
                    pos: w.pos,
                    data,
                });
            }
            while inner.cache_bytes > CACHE_BYTES {
                let Some(c) = inner.cache.pop_front() else { break };
                inner.cache_bytes -= c.data.len();
            }
            inner.next_offset = self.next_offset;
            reclaim(&mut inner, spec, &shared.dir, self.active_base, &mut dropped);
        }
        if published {
            shared.notify.notify_waiters();
        }
        for (answers, done) in publish_done {
            let _ = done.send(Ok(answers));
        }
        for done in state_done {
            let _ = done.send(Ok(()));
        }
        for path in dropped {
            if let Err(e) = fs::remove_file(&path) {
                tracing::warn!(queue = %shared.name, "remove {}: {e}", path.display());
            }
        }
        if self.state_len > STATE_COMPACT_BYTES.max(2 * self.snapshot_len) {
            if let Err(e) = self.compact_state(shared) {
                tracing::error!(queue = %shared.name, "rewriting groups.log failed: {e}");
            }
        }
        Ok(())
    }

    /// Writes what is pending for the active segment, then switches to a fresh one.
    fn roll(&mut self, shared: &Shared, written: &mut [Written], to_sync: &mut Vec<Arc<File>>) -> io::Result<()> {
        if let Some(w) = written.last() {
            if w.base == self.active_base && !w.data.is_empty() {
                self.active.write_all_at(&w.data, w.pos)?;
                self.pos = w.pos + w.data.len() as u64;
                to_sync.push(self.active.clone());
            }
        }
        let file = match self.prepared.take() {
            Some(handle) => handle
                .join()
                .map_err(|_| io::Error::other("segment preparation panicked"))??,
            None => segment::prepare(&shared.dir, shared.spec.segment_bytes)?,
        };
        let seg = segment::install(&shared.dir, file, self.next_offset)?;
        self.active = seg.file.clone();
        self.active_base = seg.base;
        self.pos = 0;
        {
            let mut inner = shared.inner.lock().unwrap_or_else(|e| e.into_inner());
            inner.segments.push_back(SegMeta {
                base: seg.base,
                file: seg.file,
                index: Vec::new(),
                written: 0,
                last_timestamp_ms: 0,
            });
        }
        // Prepare the one after in the background.
        let dir = shared.dir.clone();
        let size = shared.spec.segment_bytes;
        self.prepared = Some(std::thread::spawn(move || segment::prepare(&dir, size)));
        Ok(())
    }

    fn expire_dedupe(&mut self, now: u64, window: u64) {
        while let Some((ts, _)) = self.dedupe_order.front() {
            if now.saturating_sub(*ts) <= window {
                break;
            }
            let (_, id) = self.dedupe_order.pop_front().expect("front exists");
            self.dedupe.remove(&id);
        }
    }

    /// Rewrites `groups.log` as a snapshot of the groups, atomically.
    fn compact_state(&mut self, shared: &Shared) -> io::Result<()> {
        let mut buf = BytesMut::new();
        {
            let inner = shared.inner.lock().unwrap_or_else(|e| e.into_inner());
            for (name, g) in &inner.groups {
                let group = || name.clone();
                Op::Create {
                    group: group(),
                    start: g.floor,
                }
                .encode(&mut buf);
                Op::Floor {
                    group: group(),
                    floor: g.floor,
                }
                .encode(&mut buf);
                let done: Vec<u64> = g.done.iter().copied().collect();
                for part in done.chunks(8192) {
                    Op::Ack {
                        group: group(),
                        offsets: part.to_vec(),
                    }
                    .encode(&mut buf);
                }
                let most = g.deliveries.values().copied().max().unwrap_or(0);
                for round in 1..=most {
                    let offsets: Vec<u64> = g
                        .deliveries
                        .iter()
                        .filter(|(_, &d)| d >= round)
                        .map(|(&o, _)| o)
                        .collect();
                    Op::Deliver {
                        group: group(),
                        offsets,
                    }
                    .encode(&mut buf);
                }
            }
        }
        let tmp = shared.dir.join("groups.log.tmp");
        let mut file = OpenOptions::new().create(true).write(true).truncate(true).open(&tmp)?;
        file.write_all(&buf)?;
        file.sync_all()?;
        fs::rename(&tmp, shared.dir.join("groups.log"))?;
        segment::sync_dir(&shared.dir)?;
        self.state_file = OpenOptions::new().append(true).open(shared.dir.join("groups.log"))?;
        self.state_len = buf.len() as u64;
        self.snapshot_len = self.state_len;
        Ok(())
    }
}

/// Drops segments every group is done with, and segments past the retention limits.
fn reclaim(inner: &mut Inner, spec: &QueueSpec, dir: &Path, active_base: u64, dropped: &mut Vec<PathBuf>) {
    let min_floor = inner.groups.values().map(|g| g.floor).min();
    let now = now_ms();
    let mut total: u64 = inner.segments.iter().map(|s| s.written).sum();
    let mut first_changed = false;
    while inner.segments.len() > 1 {
        let s = &inner.segments[0];
        if s.base == active_base {
            break;
        }
        let end = s.base + s.index.len() as u64;
        let consumed = min_floor.is_some_and(|f| end <= f);
        let too_big = spec.retention.max_bytes.is_some_and(|max| total > max);
        let too_old = spec
            .retention
            .max_age_s
            .is_some_and(|age| s.last_timestamp_ms + age * 1000 < now);
        if !(consumed || too_big || too_old) {
            break;
        }
        let s = inner.segments.pop_front().expect("front exists");
        total -= s.written;
        dropped.push(segment::segment_path(dir, s.base));
        inner.cache.retain(|c| c.base != s.base);
        inner.cache_bytes = inner.cache.iter().map(|c| c.data.len()).sum();
        first_changed = true;
    }
    if first_changed {
        let first = inner.segments.front().map_or(inner.next_offset, |s| s.base);
        inner.first_offset = first;
        for g in inner.groups.values_mut() {
            g.clamp(first);
        }
    }
}
