//! Compaction of `groups.log`: past [`COMPACT_BYTES`] (and twice its last snapshot) the
//! writer rewrites the log as a snapshot of the groups — per group, its floor, its done
//! offsets and its delivery counts — written beside it, synced, and renamed over it.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::Path;

use bytes::BytesMut;

use crate::group::Group;
use crate::groups_log::{self, Op};

/// `groups.log` is rewritten as a snapshot past this size (and twice the last snapshot).
const COMPACT_BYTES: u64 = 4 << 20;

/// Whether a log of `len` bytes, whose last snapshot was `snapshot_len`, is due.
pub(crate) fn due(len: u64, snapshot_len: u64) -> bool {
    len > COMPACT_BYTES.max(2 * snapshot_len)
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

/// Replaces the `groups.log` in `dir` with `snapshot`, atomically; returns it opened for
/// appends.
pub(crate) fn rewrite(dir: &Path, snapshot: &[u8]) -> io::Result<File> {
    let tmp = dir.join(format!("{}.tmp", groups_log::FILE_NAME));
    let mut file = OpenOptions::new().create(true).write(true).truncate(true).open(&tmp)?;
    file.write_all(snapshot)?;
    file.sync_all()?;
    fs::rename(&tmp, groups_log::path(dir))?;
    strata_os::fs::sync_dir(dir)?;
    OpenOptions::new().append(true).open(groups_log::path(dir))
}
