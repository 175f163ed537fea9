//! One group commit, done by the [`Writer`] (the writer state, which only the leader of
//! the moment holds; see `leader`): take a batch of writes, drop dedupe duplicates,
//! assign offsets, encode every message into one buffer per segment (a [`Plan`], in
//! memory only), install the new segments the plan needs (prepared in the background
//! when possible), write each buffer with one `pwrite`, append the batch's `groups.log`
//! operations, sync once under `fsync: always`, then take the plan's offsets and dedupe
//! ids for good, make the messages visible in the index, reclaim segments
//! (`retention`), answer every writer, and compact `groups.log` when it is due
//! (`compact`).
//!
//! A roll that cannot get its new segment (out of file descriptors, disk full, the
//! queues' disk bound) is transient: the plan is dropped before anything of it reached a
//! file, so no offset and no dedupe id of the batch was taken; its publishers get
//! [`QueueError::Unavailable`] and the next batch tries again. A failed write or sync of
//! data stays fatal (the queue refuses writes until restarted, see the crate's docs).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use serde::Serialize;
use strata_manifest::{FsyncPolicy, QueueSpec};
use strata_os::clock::now_ms;
use strata_os::disk::{Disk, DiskFile};
use tokio::sync::oneshot;

use crate::groups_log::Op;
use crate::index::QueueCore;
use crate::record::NewMessage;
use crate::segment::{self, Segment, Slot};
use crate::{compact, retention, QueueError};

/// The sender of one publish's answer.
type PublishDone = oneshot::Sender<Result<Vec<Published>, QueueError>>;

/// The answer to one published message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Published {
    pub offset: u64,
    /// The dedupe id was seen within the window: nothing was stored.
    pub duplicate: bool,
}

/// What the writer is given to write.
pub(crate) enum Write {
    Publish {
        messages: Vec<NewMessage>,
        done: PublishDone,
    },
    /// Operations for `groups.log`; with `done`, answered once synced.
    GroupsLog {
        ops: Vec<Op>,
        done: Option<oneshot::Sender<Result<(), QueueError>>>,
    },
}

/// The writer's own state: everything about where the next bytes go.
pub(crate) struct Writer<D: Disk> {
    active: Arc<D::File>,
    active_base: u64,
    pos: u64,
    next_offset: u64,
    prepared: Option<JoinHandle<io::Result<D::File>>>,
    groups_log: D::File,
    groups_log_len: u64,
    dedupe: HashMap<String, u64>,
    dedupe_order: VecDeque<(u64, String)>,
    dirty: bool,
    last_sync: Instant,
    /// Set when a write or sync failed: every later write is refused.
    failed: Option<String>,
    /// Size of the last snapshot of `groups.log`.
    snapshot_len: u64,
}

impl<D: Disk> Drop for Writer<D> {
    /// Waits for the segment being prepared, so that no thread of a closed queue still
    /// writes in its directory (a queue opened there next could be preparing the same
    /// file name).
    fn drop(&mut self) {
        if let Some(prepared) = self.prepared.take() {
            let _ = prepared.join();
        }
    }
}

/// What one group commit writes into one segment.
struct Written {
    base: u64,
    pos: u64,
    data: BytesMut,
    slots: Vec<Slot>,
    first_ts: u64,
}

/// A batch's publishes encoded, in memory only: nothing of it is on disk, and none of
/// its offsets or dedupe ids is taken, until [`Writer::commit`] makes it so.
struct Plan {
    /// One per segment written, in order; every chunk after one on the active segment
    /// starts a new segment at its `base`.
    chunks: Vec<Written>,
    /// The offset after the last message of the plan.
    next_offset: u64,
    /// Dedupe ids of the plan's messages, for the window once committed.
    ids: Vec<(String, u64)>,
    /// Each publish's answers, with its sender.
    answers: Vec<(Vec<Published>, PublishDone)>,
}

impl Plan {
    /// Bases of the new segments the plan writes into.
    fn new_bases(&self, active_base: u64) -> Vec<u64> {
        self.chunks
            .iter()
            .filter(|c| c.base != active_base)
            .map(|c| c.base)
            .collect()
    }
}

/// The groups.log part of a batch.
#[derive(Default)]
struct LogPart {
    buf: BytesMut,
    done: Vec<oneshot::Sender<Result<(), QueueError>>>,
    /// Deletes by group: done once durable.
    deletes: Vec<(String, Vec<u64>)>,
}

impl<D: Disk> Writer<D> {
    /// A writer appending to `active` (the last segment, recovered), from `next_offset`,
    /// and to `groups_log` (opened for appends, `groups_log_len` bytes long). `recent`:
    /// (dedupe id, offset, timestamp) of the records within the dedupe window.
    pub fn new(
        active: &Segment<D>,
        next_offset: u64,
        groups_log: D::File,
        groups_log_len: u64,
        recent: Vec<(String, u64, u64)>,
    ) -> Writer<D> {
        let mut writer = Writer {
            active: active.file.clone(),
            active_base: active.base,
            pos: active.written,
            next_offset,
            prepared: None,
            groups_log,
            groups_log_len,
            dedupe: HashMap::new(),
            dedupe_order: VecDeque::new(),
            dirty: false,
            last_sync: Instant::now(),
            failed: None,
            snapshot_len: 0,
        };
        for (id, offset, ts) in recent {
            writer.dedupe.insert(id.clone(), offset);
            writer.dedupe_order.push_back((ts, id));
        }
        writer
    }

    /// Whether something was written and not synced yet.
    pub fn dirty(&self) -> bool {
        self.dirty
    }

    /// Under `fsync: interval`, whether the interval since the last sync ran out with
    /// something unsynced.
    pub fn interval_sync_due(&self, spec: &QueueSpec) -> bool {
        spec.fsync == FsyncPolicy::Interval
            && self.dirty
            && self.last_sync.elapsed() >= Duration::from_millis(spec.fsync_interval_ms)
    }

    /// The sync of `fsync: interval` (and at close). A failure loses what it was to
    /// cover for good (a later sync would succeed without it): the queue refuses writes.
    pub fn sync_interval(&mut self, shared: &QueueCore<D>) {
        let started = Instant::now();
        let synced = self.active.sync_data().and_then(|_| self.groups_log.sync_data());
        shared.fsync_time.record(started.elapsed());
        if let Err(e) = synced {
            let reason = format!("sync: {e}; the queue refuses writes until strata restarts");
            tracing::error!(queue = %shared.name, "interval sync failed: {reason}");
            self.failed.get_or_insert(reason);
        }
        self.dirty = false;
        self.last_sync = Instant::now();
    }

    /// Waits for the segment being prepared in the background, so that no thread of a
    /// closed queue still writes in its directory.
    pub fn finish(&mut self) {
        if let Some(prepared) = self.prepared.take() {
            let _ = prepared.join();
        }
    }

    /// One group commit: encode, get the new segments, write, sync, publish, answer.
    pub fn commit(&mut self, shared: &QueueCore<D>, batch: Vec<Write>) -> io::Result<()> {
        if let Some(reason) = &self.failed {
            for w in batch {
                match w {
                    Write::Publish { done, .. } => drop(done.send(Err(QueueError::Io(reason.clone())))),
                    Write::GroupsLog { done: Some(done), .. } => drop(done.send(Err(QueueError::Io(reason.clone())))),
                    _ => {}
                }
            }
            return Ok(());
        }
        let spec = &shared.spec;
        let ts = now_ms();
        self.expire_dedupe(ts, spec.dedupe_window_ms);
        let mut publishes = Vec::new();
        let mut log = LogPart::default();
        for w in batch {
            match w {
                Write::Publish { messages, done } => publishes.push((messages, done)),
                Write::GroupsLog { ops, done } => {
                    for op in &ops {
                        op.encode(&mut log.buf);
                    }
                    if let Some(done) = done {
                        log.done.push(done);
                        for op in ops {
                            if let Op::Ack { group, offsets } = op {
                                log.deletes.push((group, offsets));
                            }
                        }
                    }
                }
            }
        }
        let mut plan = self.plan(spec, ts, publishes);
        let new_bases = plan.new_bases(self.active_base);
        if !new_bases.is_empty() {
            // Segments every group is done with go before new ones are asked for: under
            // the disk bound they are the room.
            let mut dropped = Vec::new();
            retention::reclaim(&mut shared.lock(), spec, &shared.dir, self.active_base, &mut dropped);
            retention::remove(shared, dropped);
        }
        let new_segments = match self.new_segments(shared, &new_bases) {
            Ok(segments) => segments,
            Err(reason) => {
                // Nothing of the plan reached a file and none of its offsets or dedupe ids
                // was taken: its publishers are refused, the rest of the batch goes on.
                let reason =
                    format!("could not roll to a new segment: {reason}; nothing of this publish was stored, try again");
                tracing::warn!(queue = %shared.name, "{reason}");
                for (_, done) in plan.answers.drain(..) {
                    let _ = done.send(Err(QueueError::Unavailable(reason.clone())));
                }
                plan = self.plan(spec, ts, Vec::new());
                Vec::new()
            }
        };
        let mut failure = None;
        let mut to_sync: Vec<Arc<D::File>> = Vec::new();
        for chunk in plan.chunks.iter().filter(|c| !c.data.is_empty()) {
            let file = match new_segments.iter().find(|s| s.base == chunk.base) {
                Some(seg) => seg.file.clone(),
                None => self.active.clone(),
            };
            if let Err(e) = file.write_all_at(&chunk.data, chunk.pos) {
                failure = Some(format!("write the segment: {e}"));
                break;
            }
            to_sync.push(file);
        }
        if failure.is_none() && !log.buf.is_empty() {
            match self.groups_log.write_all_at(&log.buf, self.groups_log_len) {
                Ok(()) => self.groups_log_len += log.buf.len() as u64,
                Err(e) => failure = Some(format!("write groups.log: {e}")),
            }
        }
        // Delivery counts ride along unsynced: losing one to a power cut only means one
        // delivery more before dead-lettering. Deletes are synced before they are answered.
        let log_waited = !log.done.is_empty();
        if failure.is_none() && (!to_sync.is_empty() || !log.buf.is_empty()) {
            match spec.fsync {
                FsyncPolicy::Always => {
                    let started = Instant::now();
                    let mut synced = to_sync.iter().try_for_each(|f| f.sync_data());
                    if synced.is_ok() && log_waited {
                        synced = self.groups_log.sync_data();
                    }
                    shared.fsync_time.record(started.elapsed());
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
            for (_, done) in plan.answers {
                let _ = done.send(Err(QueueError::Io(reason.clone())));
            }
            for done in log.done {
                let _ = done.send(Err(QueueError::Io(reason.clone())));
            }
            return Err(io::Error::other(reason));
        }
        // Durable: the plan's offsets and dedupe ids are taken, its messages visible, then
        // answered.
        self.next_offset = plan.next_offset;
        for (id, offset) in plan.ids {
            self.dedupe.insert(id.clone(), offset);
            self.dedupe_order.push_back((ts, id));
        }
        let rolled = !new_segments.is_empty();
        if let Some(last) = new_segments.last() {
            self.active = last.file.clone();
            self.active_base = last.base;
        }
        if let Some(last) = plan.chunks.last() {
            self.pos = last.pos + last.data.len() as u64;
        }
        let published = plan.chunks.iter().any(|w| !w.slots.is_empty());
        let mut dropped = Vec::new();
        {
            let mut inner = shared.lock();
            for seg in new_segments {
                inner.add_segment(seg.base, seg.file, seg.size);
            }
            for w in plan.chunks {
                inner.append(w.base, w.pos, &w.slots, w.data.freeze(), w.first_ts);
            }
            inner.trim_cache();
            inner.next_offset = self.next_offset;
            // Done here, not when the deleter wakes: a snapshot of the groups (`compact`,
            // below) must hold every delete logged before it.
            for (group, offsets) in &log.deletes {
                if let Some(g) = inner.groups.get_mut(group) {
                    g.settled(offsets);
                }
            }
            retention::reclaim(&mut inner, spec, &shared.dir, self.active_base, &mut dropped);
        }
        if published {
            shared.notify.notify_waiters();
        }
        for (answers, done) in plan.answers {
            let _ = done.send(Ok(answers));
        }
        for done in log.done {
            let _ = done.send(Ok(()));
        }
        retention::remove(shared, dropped);
        if rolled && self.prepared.is_none() {
            self.prepare_next(shared);
        }
        if compact::due(self.groups_log_len, self.snapshot_len, shared.compact_bytes) {
            self.compact_groups_log(shared);
        }
        Ok(())
    }

    /// Encodes `publishes` after what the writer holds: dedupe duplicates answered with
    /// the first offset, offsets assigned, one chunk per segment, a new segment wherever
    /// the next record does not fit. Changes nothing of the writer.
    fn plan(&self, spec: &QueueSpec, ts: u64, publishes: Vec<(Vec<NewMessage>, PublishDone)>) -> Plan {
        let mut plan = Plan {
            chunks: Vec::new(),
            next_offset: self.next_offset,
            ids: Vec::new(),
            answers: Vec::with_capacity(publishes.len()),
        };
        // Where the next record goes: (segment base, position).
        let (mut base, mut at) = (self.active_base, self.pos);
        let mut seen: HashMap<String, u64> = HashMap::new();
        for (messages, done) in publishes {
            let mut answers = Vec::with_capacity(messages.len());
            for m in &messages {
                if let Some(id) = &m.dedupe_id {
                    if let Some(&offset) = self.dedupe.get(id).or_else(|| seen.get(id)) {
                        answers.push(Published {
                            offset,
                            duplicate: true,
                        });
                        continue;
                    }
                }
                let len = m.encoded_len() as u64;
                if at + len > spec.segment_bytes && at > 0 {
                    // A new segment, starting at this record.
                    base = plan.next_offset;
                    at = 0;
                }
                if plan.chunks.last().is_none_or(|w| w.base != base) {
                    plan.chunks.push(Written {
                        base,
                        pos: at,
                        data: BytesMut::with_capacity(64 << 10),
                        slots: Vec::new(),
                        first_ts: ts,
                    });
                }
                let w = plan.chunks.last_mut().expect("a chunk");
                let offset = plan.next_offset;
                m.encode(offset, ts, &mut w.data);
                w.slots.push(Slot {
                    pos: at as u32,
                    len: len as u32,
                });
                at += len;
                plan.next_offset += 1;
                if let Some(id) = &m.dedupe_id {
                    seen.insert(id.clone(), offset);
                    plan.ids.push((id.clone(), offset));
                }
                answers.push(Published {
                    offset,
                    duplicate: false,
                });
            }
            plan.answers.push((answers, done));
        }
        plan
    }

    /// Installs a new segment at each of `bases`: the one prepared in the background,
    /// else one prepared now (within the disk budget). On a failure, what was installed
    /// is taken back and nothing is left: the reason, for the refused publishers.
    fn new_segments(&mut self, shared: &QueueCore<D>, bases: &[u64]) -> Result<Vec<Segment<D>>, String> {
        let mut installed: Vec<Segment<D>> = Vec::new();
        let size = shared.spec.segment_bytes;
        for &base in bases {
            let step = self.take_prepared(shared).and_then(|file| {
                segment::install(&shared.disk, &shared.dir, file, base, size).map_err(|e| {
                    segment::discard_prepared(&shared.disk, &shared.dir);
                    shared.release(size);
                    format!("install segment {base}: {e}")
                })
            });
            match step {
                Ok(seg) => installed.push(seg),
                Err(reason) => {
                    let bases: Vec<u64> = installed.iter().map(|s| s.base).collect();
                    drop(installed);
                    if !bases.is_empty() {
                        match segment::uninstall(&shared.disk, &shared.dir, &bases) {
                            Ok(()) => bases.iter().for_each(|_| shared.release(size)),
                            Err(e) => {
                                // An empty segment may stay on disk: open drops such
                                // strays, but this run cannot be sure of its directory.
                                let fatal = format!(
                                    "{reason}; taking back the segments installed before failed too ({e}); the \
                                     queue refuses writes until strata restarts"
                                );
                                self.failed = Some(fatal.clone());
                                return Err(fatal);
                            }
                        }
                    }
                    return Err(reason);
                }
            }
        }
        Ok(installed)
    }

    /// The next segment file, ready to be installed: the one prepared in the background
    /// if that worked, else one prepared now.
    fn take_prepared(&mut self, shared: &QueueCore<D>) -> Result<D::File, String> {
        let size = shared.spec.segment_bytes;
        if let Some(handle) = self.prepared.take() {
            match handle.join() {
                Ok(Ok(file)) => return Ok(file),
                Ok(Err(e)) => {
                    tracing::warn!(queue = %shared.name, "preparing the next segment failed, trying again: {e}")
                }
                Err(_) => tracing::warn!(queue = %shared.name, "preparing the next segment panicked, trying again"),
            }
            segment::discard_prepared(&shared.disk, &shared.dir);
            shared.release(size);
        }
        shared.reserve(size)?;
        segment::prepare(&shared.disk, &shared.dir, size).map_err(|e| {
            segment::discard_prepared(&shared.disk, &shared.dir);
            shared.release(size);
            format!("prepare a segment file: {e}")
        })
    }

    /// Prepares the segment after the active one in the background, when the disk budget
    /// has room for it (else the next roll prepares it itself, or says why it cannot).
    fn prepare_next(&mut self, shared: &QueueCore<D>) {
        let size = shared.spec.segment_bytes;
        if shared.reserve(size).is_err() {
            return;
        }
        let (disk, dir) = (shared.disk.clone(), shared.dir.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("queue-{}-prepare", shared.name))
            .spawn(move || segment::prepare(&disk, &dir, size));
        match spawned {
            Ok(handle) => self.prepared = Some(handle),
            Err(e) => {
                shared.release(size);
                tracing::warn!(queue = %shared.name, "could not start preparing the next segment: {e}");
            }
        }
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

    /// Rewrites `groups.log` as a snapshot of the groups, atomically. A failure before
    /// the rename leaves the log as it was (the next commit tries again); after it, the
    /// queue refuses writes.
    fn compact_groups_log(&mut self, shared: &QueueCore<D>) {
        let snapshot = compact::snapshot(&shared.lock().groups);
        let file = match compact::rewrite(&shared.disk, &shared.dir, &snapshot) {
            Ok(file) => file,
            Err(compact::Failed::Before(e)) => {
                tracing::error!(queue = %shared.name, "rewriting groups.log failed, the log goes on as it was: {e}");
                return;
            }
            Err(compact::Failed::Renamed(file, e)) => {
                let reason = format!(
                    "sync the queue directory after rewriting groups.log: {e}; the queue refuses writes until strata restarts"
                );
                tracing::error!(queue = %shared.name, "{reason}");
                self.failed = Some(reason);
                file
            }
        };
        self.groups_log = file;
        self.groups_log_len = snapshot.len() as u64;
        self.snapshot_len = self.groups_log_len;
    }
}
