//! Compaction of `groups.log`: past [`COMPACT_BYTES`] (the default of
//! [`crate::QueuesConfig::compact_bytes`]) and twice its last snapshot, the
//! writer rewrites the log as a snapshot of the groups — per group, its floor, its done
//! offsets and its delivery counts — written beside it, synced, and renamed over it.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use bytes::BytesMut;
use strata_os::disk::{Disk, DiskFile, Open};

use crate::group::Group;
use crate::groups_log::{self, Op};

/// `groups.log` is rewritten as a snapshot past this size (and twice the last snapshot).
pub(crate) const COMPACT_BYTES: u64 = 4 << 20;

/// Whether a log of `len` bytes, whose last snapshot was `snapshot_len`, is due, with
/// `limit` as the size past which it is.
pub(crate) fn due(len: u64, snapshot_len: u64, limit: u64) -> bool {
    len > limit.max(2 * snapshot_len)
}

/// The operations that replay to `groups`, encoded.
pub(crate) fn snapshot(groups: &BTreeMap<String, Group>) -> BytesMut {
    let mut buf = BytesMut::new();
    for (name, g) in groups {
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
    buf
}

/// How a rewrite failed.
pub(crate) enum Failed<F> {
    /// Before the rename: `groups.log` is as it was, and appends go on there.
    Before(io::Error),
    /// The name is the snapshot's (`F`, the file to append to from now on), but syncing
    /// the directory failed: a crash may bring back either file, so no later append can
    /// be promised durable.
    Renamed(F, io::Error),
}

/// Replaces the `groups.log` in `dir` with `snapshot`, atomically; returns it opened, to
/// be appended to at `snapshot.len()`.
pub(crate) fn rewrite<D: Disk>(disk: &D, dir: &Path, snapshot: &[u8]) -> Result<D::File, Failed<D::File>> {
    let tmp = dir.join(format!("{}.tmp", groups_log::FILE_NAME));
    let file = (|| {
        let file = disk.open(&tmp, Open::Truncate)?;
        file.write_all_at(snapshot, 0)?;
        file.sync_data()?;
        disk.rename(&tmp, &groups_log::path(dir))?;
        Ok(file)
    })()
    .map_err(Failed::Before)?;
    match disk.sync_dir(dir) {
        Ok(()) => Ok(file),
        Err(e) => Err(Failed::Renamed(file, e)),
    }
}
