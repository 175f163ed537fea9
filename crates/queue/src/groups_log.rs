//! `groups.log`: the consumer groups' durable state, as an append-only log of operations
//! beside the segments, rewritten as a snapshot when it grows.
//!
//! ```text
//! u32 len, u32 crc (CRC-32 of the body), body: u8 op, u8 group name length, name, then
//!   Create:  u64 start offset
//!   Floor:   u64 floor (everything below is done)
//!   Ack, Dead, Deliver: u32 count, count x u64 offset
//! ```
//! Replay is idempotent except `Deliver`, which counts a delivery; a torn tail is cut off,
//! a corrupt record is skipped and reported (its acks are lost: those messages are
//! delivered again, which at-least-once allows).
//!
//! This module is the file: its format, its replay, and opening it at queue open.
//! Appends are the writer's (`commit`); the snapshot rewrite is `compact`'s.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use bytes::{BufMut, BytesMut};
use strata_os::disk::{Disk, DiskFile, Open};

use crate::QueueError;

/// The file's name in the queue's directory.
pub(crate) const FILE_NAME: &str = "groups.log";

pub(crate) fn path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// Reads and replays the `groups.log` of the queue in `dir`, cuts a torn tail off, and
/// opens it for appends (at [`Replay::valid_len`]). Every repair is logged as a warning
/// and listed in `repairs`.
pub(crate) fn open<D: Disk>(
    disk: &D,
    dir: &Path,
    queue: &str,
    repairs: &mut Vec<String>,
) -> Result<(D::File, Replay), QueueError> {
    let path = path(dir);
    let file = disk
        .open(&path, Open::Create)
        .map_err(|e| QueueError::io("open groups.log", e))?;
    // What the disk holds, not pages a failed sync left in the cache.
    let bytes = file
        .forget_cached()
        .and_then(|()| {
            let mut bytes = vec![0u8; file.size()? as usize];
            file.read_exact_at(&mut bytes, 0)?;
            Ok(bytes)
        })
        .map_err(|e| QueueError::io("read groups.log", e))?;
    let replay = replay(&bytes);
    if replay.corrupt > 0 {
        let what = format!(
            "groups.log: {} corrupt records skipped; their deletes are lost and those messages will be delivered again",
            replay.corrupt
        );
        tracing::error!(queue, "{what}");
        repairs.push(what);
    }
    if replay.valid_len < bytes.len() {
        let what = format!(
            "groups.log: a torn tail of {} bytes cut at byte {}; the group operations in it (deletes, delivery counts) were never synced, so those messages may be delivered again",
            bytes.len() - replay.valid_len,
            replay.valid_len
        );
        tracing::warn!(queue, "{what}");
        repairs.push(what);
    }
    if bytes.is_empty() {
        // A new file: its name must be durable before any delete logged in it is answered.
        disk.sync_dir(dir).map_err(|e| QueueError::io("create groups.log", e))?;
    }
    if replay.valid_len < bytes.len() {
        file.set_len(replay.valid_len as u64)
            .and_then(|_| file.sync_data())
            .map_err(|e| QueueError::io("truncate groups.log", e))?;
    }
    Ok((file, replay))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    Create { group: String, start: u64 },
    Floor { group: String, floor: u64 },
    Ack { group: String, offsets: Vec<u64> },
    Dead { group: String, offsets: Vec<u64> },
    Deliver { group: String, offsets: Vec<u64> },
}

const CREATE: u8 = 1;
const FLOOR: u8 = 2;
const ACK: u8 = 3;
const DEAD: u8 = 4;
const DELIVER: u8 = 5;

impl Op {
    pub fn encode(&self, out: &mut BytesMut) {
        let start = out.len();
        out.put_u64_le(0);
        let (code, group) = match self {
            Op::Create { group, .. } => (CREATE, group),
            Op::Floor { group, .. } => (FLOOR, group),
            Op::Ack { group, .. } => (ACK, group),
            Op::Dead { group, .. } => (DEAD, group),
            Op::Deliver { group, .. } => (DELIVER, group),
        };
        out.put_u8(code);
        out.put_u8(group.len() as u8);
        out.put_slice(group.as_bytes());
        match self {
            Op::Create { start: n, .. } | Op::Floor { floor: n, .. } => out.put_u64_le(*n),
            Op::Ack { offsets, .. } | Op::Dead { offsets, .. } | Op::Deliver { offsets, .. } => {
                out.put_u32_le(offsets.len() as u32);
                for o in offsets {
                    out.put_u64_le(*o);
                }
            }
        }
        let len = (out.len() - start - 8) as u32;
        let crc = crc32fast::hash(&out[start + 8..]);
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    fn decode(body: &[u8]) -> Option<Op> {
        let code = *body.first()?;
        let name_len = *body.get(1)? as usize;
        let group = std::str::from_utf8(body.get(2..2 + name_len)?).ok()?.to_string();
        let rest = &body[2 + name_len..];
        let u64_at =
            |b: &[u8], at: usize| -> Option<u64> { Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?)) };
        let list = |rest: &[u8]| -> Option<Vec<u64>> {
            let n = u32::from_le_bytes(rest.get(0..4)?.try_into().ok()?) as usize;
            if rest.len() != 4 + 8 * n {
                return None;
            }
            (0..n).map(|i| u64_at(rest, 4 + 8 * i)).collect()
        };
        let op = match code {
            CREATE if rest.len() == 8 => Op::Create {
                group,
                start: u64_at(rest, 0)?,
            },
            FLOOR if rest.len() == 8 => Op::Floor {
                group,
                floor: u64_at(rest, 0)?,
            },
            ACK => Op::Ack {
                group,
                offsets: list(rest)?,
            },
            DEAD => Op::Dead {
                group,
                offsets: list(rest)?,
            },
            DELIVER => Op::Deliver {
                group,
                offsets: list(rest)?,
            },
            _ => return None,
        };
        Some(op)
    }
}

/// One group's state as replayed from the log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ReplayedGroup {
    pub floor: u64,
    /// Done (acked or dead-lettered) at or above the floor.
    pub done: BTreeSet<u64>,
    pub dead: BTreeSet<u64>,
    pub deliveries: HashMap<u64, u32>,
    pub dead_lettered: u64,
}

pub(crate) struct Replay {
    pub groups: BTreeMap<String, ReplayedGroup>,
    /// Bytes of intact records: where the next append goes.
    pub valid_len: usize,
    pub corrupt: usize,
}

/// Replays `groups.log`. A bad record followed by intact ones is skipped and counted; a
/// bad record with nothing intact after it is a torn tail, and `valid_len` ends before it.
pub(crate) fn replay(buf: &[u8]) -> Replay {
    let mut out = Replay {
        groups: BTreeMap::new(),
        valid_len: 0,
        corrupt: 0,
    };
    let mut pos = 0;
    let mut pending_bad = 0;
    while pos + 8 <= buf.len() {
        let len = u32::from_le_bytes(buf[pos..pos + 4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(buf[pos + 4..pos + 8].try_into().unwrap());
        let body = buf.get(pos + 8..pos + 8 + len);
        let op = body.filter(|b| crc32fast::hash(b) == crc).and_then(Op::decode);
        match op {
            Some(op) => {
                apply(&mut out.groups, op);
                pos += 8 + len;
                out.corrupt += pending_bad;
                pending_bad = 0;
                out.valid_len = pos;
            }
            None => {
                // Skip to the next position that holds an intact record, if any.
                pending_bad += 1;
                match (pos + 1..buf.len().saturating_sub(8)).find(|&p| intact(buf, p)) {
                    Some(p) => pos = p,
                    None => break,
                }
            }
        }
    }
    out
}

fn intact(buf: &[u8], pos: usize) -> bool {
    let len = u32::from_le_bytes(buf[pos..pos + 4].try_into().unwrap()) as usize;
    let crc = u32::from_le_bytes(buf[pos + 4..pos + 8].try_into().unwrap());
    len >= 2
        && buf
            .get(pos + 8..pos + 8 + len)
            .is_some_and(|b| crc32fast::hash(b) == crc && Op::decode(b).is_some())
}

fn apply(groups: &mut BTreeMap<String, ReplayedGroup>, op: Op) {
    match op {
        Op::Create { group, start } => {
            groups.entry(group).or_insert_with(|| ReplayedGroup {
                floor: start,
                ..ReplayedGroup::default()
            });
        }
        Op::Floor { group, floor } => {
            let g = groups.entry(group).or_default();
            g.floor = g.floor.max(floor);
            let floor = g.floor;
            g.done = g.done.split_off(&floor);
            g.deliveries.retain(|o, _| *o >= floor);
        }
        Op::Ack { group, offsets } => {
            let g = groups.entry(group).or_default();
            for o in offsets {
                if o >= g.floor {
                    g.done.insert(o);
                    g.deliveries.remove(&o);
                }
            }
        }
        Op::Dead { group, offsets } => {
            let g = groups.entry(group).or_default();
            for o in offsets {
                if o >= g.floor && g.done.insert(o) {
                    g.dead_lettered += 1;
                    g.deliveries.remove(&o);
                }
            }
        }
        Op::Deliver { group, offsets } => {
            let g = groups.entry(group).or_default();
            for o in offsets {
                if o >= g.floor && !g.done.contains(&o) {
                    *g.deliveries.entry(o).or_default() += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(ops: &[Op]) -> Vec<u8> {
        let mut out = BytesMut::new();
        for op in ops {
            op.encode(&mut out);
        }
        out.to_vec()
    }

    fn ops() -> Vec<Op> {
        let g = || "billing".to_string();
        vec![
            Op::Create { group: g(), start: 10 },
            Op::Deliver {
                group: g(),
                offsets: vec![10, 11, 12],
            },
            Op::Ack {
                group: g(),
                offsets: vec![12, 10],
            },
            Op::Deliver {
                group: g(),
                offsets: vec![11],
            },
            Op::Floor { group: g(), floor: 11 },
            Op::Dead {
                group: g(),
                offsets: vec![11],
            },
        ]
    }

    #[test]
    fn replays_groups() {
        let r = replay(&log(&ops()));
        assert_eq!(r.corrupt, 0);
        let g = &r.groups["billing"];
        assert_eq!(g.floor, 11);
        assert_eq!(g.done, BTreeSet::from([11, 12]));
        assert_eq!(g.dead_lettered, 1);
        assert!(g.deliveries.is_empty());
    }

    #[test]
    fn torn_tail_is_cut_and_corrupt_middle_skipped() {
        let full = log(&ops());
        let whole = replay(&full).groups;
        for cut in 0..full.len() {
            let r = replay(&full[..cut]);
            assert!(r.valid_len <= cut);
            assert_eq!(r.corrupt, 0, "cut at {cut}");
        }
        // Flip a byte inside the third record (the ack): it is skipped, the rest applies.
        let first_two = log(&ops()[..2]).len();
        let mut flipped = full.clone();
        flipped[first_two + 10] ^= 0x40;
        let r = replay(&flipped);
        assert_eq!(r.corrupt, 1);
        assert_eq!(r.valid_len, full.len());
        assert_ne!(r.groups, whole);
        assert_eq!(r.groups["billing"].floor, 11);
    }
}
