//! One group commit, done by the [`Writer`] (the writer state, which only the leader of
//! the moment holds; see `leader`): take a batch of writes, drop dedupe duplicates,
//! assign offsets, encode every message into one buffer, write it with one `pwrite` into
//! the preallocated segment (rolling to a segment prepared in the background when full),
//! append the batch's `groups.log` operations, sync once under `fsync: always`, then
//! make the messages visible in the index, reclaim segments (`retention`), answer every
//! writer, and compact `groups.log` when it is due (`compact`).

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
        done: oneshot::Sender<Result<Vec<Published>, QueueError>>,
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

/// What one group commit wrote into one segment.
struct Written {
    base: u64,
    pos: u64,
    data: BytesMut,
    slots: Vec<Slot>,
    first_ts: u64,
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
        if let Err(e) = self.active.sync_data().and_then(|_| self.groups_log.sync_data()) {
            let reason = format!("sync: {e}; the queue refuses writes until strata restarts");
            tracing::error!(queue = %shared.name, "interval sync failed: {reason}");
            self.failed.get_or_insert(reason);
        }
        self.dirty = false;
        self.last_sync = Instant::now();
    }

    /// One group commit: encode, write, sync, publish, answer.
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
        let mut written: Vec<Written> = Vec::new();
        let mut to_sync: Vec<Arc<D::File>> = Vec::new();
        let mut log_buf = BytesMut::new();
        let mut publish_done = Vec::new();
        let mut log_done = Vec::new();
        // Deletes in this batch, by group: done once durable.
        let mut deletes: Vec<(String, Vec<u64>)> = Vec::new();
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
                Write::GroupsLog { ops, done } => {
                    for op in &ops {
                        op.encode(&mut log_buf);
                    }
                    if let Some(done) = done {
                        log_done.push(done);
                        for op in ops {
                            if let Op::Ack { group, offsets } = op {
                                deletes.push((group, offsets));
                            }
                        }
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
        if failure.is_none() && !log_buf.is_empty() {
            match self.groups_log.write_all_at(&log_buf, self.groups_log_len) {
                Ok(()) => self.groups_log_len += log_buf.len() as u64,
                Err(e) => failure = Some(format!("write groups.log: {e}")),
            }
        }
        // Delivery counts ride along unsynced: losing one to a power cut only means one
        // delivery more before dead-lettering. Deletes are synced before they are answered.
        let log_waited = !log_done.is_empty();
        if failure.is_none() && (!to_sync.is_empty() || !log_buf.is_empty()) {
            match spec.fsync {
                FsyncPolicy::Always => {
                    let mut synced = to_sync.iter().try_for_each(|f| f.sync_data());
                    if synced.is_ok() && log_waited {
                        synced = self.groups_log.sync_data();
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
            for done in log_done {
                let _ = done.send(Err(QueueError::Io(reason.clone())));
            }
            return Err(io::Error::other(reason));
        }
        // Durable: make visible, then answer.
        let published = written.iter().any(|w| !w.slots.is_empty());
        let mut dropped = Vec::new();
        {
            let mut inner = shared.lock();
            for w in written {
                inner.append(w.base, w.pos, &w.slots, w.data.freeze(), w.first_ts);
            }
            inner.trim_cache();
            inner.next_offset = self.next_offset;
            // Done here, not when the deleter wakes: a snapshot of the groups (`compact`,
            // below) must hold every delete logged before it.
            for (group, offsets) in &deletes {
                if let Some(g) = inner.groups.get_mut(group) {
                    g.settled(offsets);
                }
            }
            retention::reclaim(&mut inner, spec, &shared.dir, self.active_base, &mut dropped);
        }
        if published {
            shared.notify.notify_waiters();
        }
        for (answers, done) in publish_done {
            let _ = done.send(Ok(answers));
        }
        for done in log_done {
            let _ = done.send(Ok(()));
        }
        retention::remove(&shared.disk, &shared.name, dropped);
        if compact::due(self.groups_log_len, self.snapshot_len, shared.compact_bytes) {
            self.compact_groups_log(shared);
        }
        Ok(())
    }

    /// Writes what is pending for the active segment, then switches to a fresh one.
    fn roll(
        &mut self,
        shared: &QueueCore<D>,
        written: &mut [Written],
        to_sync: &mut Vec<Arc<D::File>>,
    ) -> io::Result<()> {
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
            None => segment::prepare(&shared.disk, &shared.dir, shared.spec.segment_bytes)?,
        };
        let seg = segment::install(&shared.disk, &shared.dir, file, self.next_offset)?;
        self.active = seg.file.clone();
        self.active_base = seg.base;
        self.pos = 0;
        shared.lock().add_segment(seg.base, seg.file);
        // Prepare the one after in the background.
        let (disk, dir) = (shared.disk.clone(), shared.dir.clone());
        let size = shared.spec.segment_bytes;
        self.prepared = Some(std::thread::spawn(move || segment::prepare(&disk, &dir, size)));
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
