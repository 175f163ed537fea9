//! What a queue's publishers, fetchers and writer share: the in-memory index behind one
//! mutex (never held across an await or a disk operation) — which segment holds each
//! offset's record and where, the writer's recent buffers kept for reads, the offsets
//! stored, the consumer groups — and the `Notify` that wakes long-polling fetches.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use strata_os::histogram::Histogram;

use bytes::Bytes;
use strata_manifest::QueueSpec;
use strata_os::disk::Disk;
use tokio::sync::Notify;

use crate::group::Group;
use crate::limits::DiskBudget;
use crate::segment::{Segment, Slot};
use crate::QueuesConfig;

/// Recent writes kept in memory for reads, per queue.
const CACHE_BYTES: usize = 32 << 20;

/// One queue's name, settings, directory, disk and index: what its publishers, fetchers
/// and writer share.
pub(crate) struct QueueCore<D: Disk> {
    pub name: String,
    pub spec: QueueSpec,
    pub dir: PathBuf,
    pub disk: D,
    /// `groups.log` is rewritten as a snapshot past this size (see `compact`).
    pub compact_bytes: u64,
    inner: Mutex<Inner<D>>,
    /// Woken when messages become visible or are given back, and when the queue is
    /// deleted.
    pub notify: Notify,
    /// The node's count of segment bytes on disk, against its bound.
    budget: Arc<DiskBudget>,
    /// What this queue's segment files take of it.
    charged: AtomicU64,
    /// Set when the queue is deleted: waiting fetches end.
    deleted: AtomicBool,
    /// How long each sync of a committed batch (or of an interval) took.
    pub fsync_time: Histogram,
}

pub(crate) struct Inner<D: Disk> {
    pub segments: VecDeque<SegMeta<D>>,
    pub first_offset: u64,
    pub next_offset: u64,
    pub groups: BTreeMap<String, Group>,
    pub corrupt: u64,
    /// What opening the queue found damaged and repaired, in words (for `queues`/stats).
    pub repairs: Vec<String>,
    pub cache: VecDeque<Chunk>,
    pub cache_bytes: usize,
}

/// One segment as the index knows it.
pub(crate) struct SegMeta<D: Disk> {
    pub base: u64,
    pub file: Arc<D::File>,
    pub index: Vec<Slot>,
    pub written: u64,
    /// The file's size: what it takes on disk.
    pub size: u64,
    pub last_timestamp_ms: u64,
}

/// Bytes the writer wrote at `pos` of segment `base`.
pub(crate) struct Chunk {
    pub base: u64,
    pub pos: u64,
    pub data: Bytes,
}

/// Where a record can be read from.
pub(crate) enum Located<D: Disk> {
    Memory(Bytes),
    Disk { file: Arc<D::File>, pos: u64, len: u32 },
}

impl<D: Disk> QueueCore<D> {
    /// A queue whose segment files, `charged` bytes, are already counted in `budget`.
    pub fn new(
        name: &str,
        spec: QueueSpec,
        dir: &Path,
        config: &QueuesConfig<D>,
        inner: Inner<D>,
        budget: Arc<DiskBudget>,
        charged: u64,
    ) -> QueueCore<D> {
        QueueCore {
            name: name.to_string(),
            spec,
            dir: dir.to_path_buf(),
            disk: config.disk.clone(),
            compact_bytes: config.compact_bytes,
            inner: Mutex::new(inner),
            notify: Notify::new(),
            budget,
            charged: AtomicU64::new(charged),
            deleted: AtomicBool::new(false),
            fsync_time: Histogram::default(),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Inner<D>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes `bytes` of the node's segment budget for a new segment file, or says why not.
    pub fn reserve(&self, bytes: u64) -> Result<(), String> {
        self.budget.reserve(bytes)?;
        self.charged.fetch_add(bytes, Ordering::Relaxed);
        Ok(())
    }

    /// Gives back what a segment file took, once it is deleted (or was never made).
    pub fn release(&self, bytes: u64) {
        let _ = self
            .charged
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| Some(c.saturating_sub(bytes)));
        self.budget.release(bytes);
    }

    /// The queue is being deleted: later writes are refused, and waiting fetches are
    /// woken to end.
    pub fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Gives back everything this queue's files took of the budget: they are gone (or
    /// the queue never started).
    pub fn release_all(&self) {
        self.budget.release(self.charged.swap(0, Ordering::AcqRel));
    }

    /// What this queue's segment files take of the budget.
    pub fn charged(&self) -> u64 {
        self.charged.load(Ordering::Relaxed)
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }
}

impl<D: Disk> From<Segment<D>> for SegMeta<D> {
    fn from(s: Segment<D>) -> SegMeta<D> {
        SegMeta {
            base: s.base,
            file: s.file,
            index: s.index,
            written: s.written,
            size: s.size,
            last_timestamp_ms: s.last_timestamp_ms,
        }
    }
}

impl<D: Disk> Inner<D> {
    /// Makes `data`, which the writer wrote at `pos` of segment `base`, visible: indexes
    /// `slots` (its records) and keeps the bytes for reads. Call [`Inner::trim_cache`]
    /// after.
    pub fn append(&mut self, base: u64, pos: u64, slots: &[Slot], data: Bytes, last_timestamp_ms: u64) {
        let Some(seg) = self.segments.iter_mut().find(|s| s.base == base) else {
            return;
        };
        seg.index.extend_from_slice(slots);
        seg.written = pos + data.len() as u64;
        seg.last_timestamp_ms = last_timestamp_ms;
        self.cache_bytes += data.len();
        self.cache.push_back(Chunk { base, pos, data });
    }

    /// Forgets the oldest kept writes past [`CACHE_BYTES`].
    pub fn trim_cache(&mut self) {
        while self.cache_bytes > CACHE_BYTES {
            let Some(c) = self.cache.pop_front() else { break };
            self.cache_bytes -= c.data.len();
        }
    }

    /// Adds a fresh, empty segment file of `size` bytes starting at `base`.
    pub fn add_segment(&mut self, base: u64, file: Arc<D::File>, size: u64) {
        self.segments.push_back(SegMeta {
            base,
            file,
            index: Vec::new(),
            written: 0,
            size,
            last_timestamp_ms: 0,
        });
    }
}

fn seg_index<D: Disk>(segments: &VecDeque<SegMeta<D>>, offset: u64) -> Option<usize> {
    let i = segments.partition_point(|s| s.base <= offset).checked_sub(1)?;
    let s = &segments[i];
    ((offset - s.base) < s.index.len() as u64).then_some(i)
}

/// Where `offset`'s record is; None when it is not stored.
pub(crate) fn slot_of<D: Disk>(segments: &VecDeque<SegMeta<D>>, offset: u64) -> Option<Slot> {
    let i = seg_index(segments, offset)?;
    Some(segments[i].index[(offset - segments[i].base) as usize])
}

pub(crate) fn slot_mut<D: Disk>(segments: &mut VecDeque<SegMeta<D>>, offset: u64) -> Option<&mut Slot> {
    let i = seg_index(segments, offset)?;
    let base = segments[i].base;
    segments[i].index.get_mut((offset - base) as usize)
}

/// Offsets below the first segment or with a corrupt record.
pub(crate) fn missing_fn<D: Disk>(segments: &VecDeque<SegMeta<D>>) -> impl Fn(u64) -> bool + '_ {
    move |o| match segments.front() {
        Some(first) if o < first.base => true,
        _ => slot_of(segments, o).is_some_and(|s| s.len == 0),
    }
}

/// Where `offset`'s record is in its segment file: (file, position, length); None when
/// it is not stored or was found corrupt.
pub(crate) fn on_disk<D: Disk>(segments: &VecDeque<SegMeta<D>>, offset: u64) -> Option<(Arc<D::File>, u64, u32)> {
    let i = seg_index(segments, offset)?;
    let slot = segments[i].index[(offset - segments[i].base) as usize];
    (slot.len > 0).then(|| (segments[i].file.clone(), u64::from(slot.pos), slot.len))
}

/// Where to read `offset`'s record (at `slot`) from: the kept writes if they hold all of
/// it, else its segment.
pub(crate) fn locate<D: Disk>(
    segments: &VecDeque<SegMeta<D>>,
    cache: &VecDeque<Chunk>,
    offset: u64,
    slot: Slot,
) -> Located<D> {
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
