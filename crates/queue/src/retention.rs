//! Retention: after each commit, segments below every group's floor, and segments past
//! the queue's retention limits (`max_bytes`, `max_age_s`), leave the index; their files
//! are deleted once the commit is answered. The active segment always stays.

use std::path::{Path, PathBuf};

use strata_manifest::QueueSpec;
use strata_os::clock::now_ms;
use strata_os::disk::Disk;

use crate::index::{Inner, QueueCore};
use crate::segment;

/// Drops segments every group is done with, and segments past the retention limits, from
/// the index; their paths and sizes go to `dropped`, for [`remove`].
pub(crate) fn reclaim<D: Disk>(
    inner: &mut Inner<D>,
    spec: &QueueSpec,
    dir: &Path,
    active_base: u64,
    dropped: &mut Vec<(PathBuf, u64)>,
) {
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
            .is_some_and(|age| s.last_timestamp_ms.saturating_add(age.saturating_mul(1000)) < now);
        if !(consumed || too_big || too_old) {
            break;
        }
        let s = inner.segments.pop_front().expect("front exists");
        total -= s.written;
        dropped.push((segment::segment_path(dir, s.base), s.size));
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

/// Deletes the files of segments [`reclaim`] dropped; what they took of the disk budget
/// goes back.
pub(crate) fn remove<D: Disk>(shared: &QueueCore<D>, dropped: Vec<(PathBuf, u64)>) {
    for (path, size) in dropped {
        match shared.disk.remove_file(&path) {
            Ok(()) => shared.release(size),
            Err(e) => tracing::warn!(queue = %shared.name, "remove {}: {e}", path.display()),
        }
    }
}
