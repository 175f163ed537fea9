//! Segment files: `{base offset:020}.log`, preallocated and zero-filled, records one after
//! another (see `record`). Opening a queue scans its segments: intact records are indexed,
//! a torn tail of the last segment is zeroed, corrupt records elsewhere are reported and
//! left out of the index so that they are never served.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use strata_os::disk::{Disk, DiskFile, Open};

use crate::record::{decode, Decoded, Record, FIXED, HEADER};

/// Where one offset's record is: position and length in its segment; length 0 marks an
/// offset whose record was found corrupt.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    pub pos: u32,
    pub len: u32,
}

pub(crate) struct Segment<D: Disk> {
    pub base: u64,
    pub file: Arc<D::File>,
    /// Entry `i` is offset `base + i`.
    pub index: Vec<Slot>,
    /// End of the written part.
    pub written: u64,
    /// The file's size (preallocated): what it takes on disk.
    pub size: u64,
    pub first_timestamp_ms: u64,
    pub last_timestamp_ms: u64,
}

impl<D: Disk> Segment<D> {
    pub fn next_offset(&self) -> u64 {
        self.base + self.index.len() as u64
    }
}

pub(crate) fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

const PREPARED: &str = "next-segment.tmp";

/// Writes a zero-filled file of `size` bytes next to the segments, synced, ready to be
/// renamed into place by [`install`]. Writing into preallocated zeros spares each later
/// append the metadata update that extending a file forces.
pub(crate) fn prepare<D: Disk>(disk: &D, dir: &Path, size: u64) -> io::Result<D::File> {
    let file = disk.open(&dir.join(PREPARED), Open::Truncate)?;
    zero_from(&file, 0, size)?;
    Ok(file)
}

/// Removes a prepared file that will not be installed (what a failed preparation left).
pub(crate) fn discard_prepared<D: Disk>(disk: &D, dir: &Path) {
    let _ = disk.remove_file(&dir.join(PREPARED));
}

/// Renames a prepared file of `size` bytes into place as the segment starting at `base`,
/// durably. When the directory cannot be synced, the new name is taken back (see
/// [`uninstall`]) before the error is returned.
pub(crate) fn install<D: Disk>(disk: &D, dir: &Path, file: D::File, base: u64, size: u64) -> io::Result<Segment<D>> {
    let path = segment_path(dir, base);
    disk.rename(&dir.join(PREPARED), &path)?;
    if let Err(e) = disk.sync_dir(dir) {
        return Err(match uninstall(disk, dir, &[base]) {
            Ok(()) => e,
            Err(undo) => io::Error::new(undo.kind(), format!("{e}, then taking the new segment back: {undo}")),
        });
    }
    Ok(Segment {
        base,
        file: Arc::new(file),
        index: Vec::new(),
        written: 0,
        size,
        first_timestamp_ms: 0,
        last_timestamp_ms: 0,
    })
}

/// Removes installed segments that never held a record, durably (the directory synced):
/// an empty segment left behind would make open restart the offsets at its base.
pub(crate) fn uninstall<D: Disk>(disk: &D, dir: &Path, bases: &[u64]) -> io::Result<()> {
    for &base in bases {
        match disk.remove_file(&segment_path(dir, base)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    disk.sync_dir(dir)
}

/// A stretch of offsets whose records could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    pub segment: PathBuf,
    pub position: u64,
    /// Offsets lost, `from..to`.
    pub from: u64,
    pub to: u64,
    pub reason: String,
}

pub(crate) struct Recovered<D: Disk> {
    pub segments: Vec<Segment<D>>,
    pub corrupt: Vec<Corruption>,
    /// Records of the recent past, for rebuilding the dedupe window.
    pub recent: Vec<(String, u64, u64)>,
    /// A torn tail that was cut off the last segment: (position, reason).
    pub truncated: Option<(u64, &'static str)>,
}

/// Opens and scans every segment of a queue directory.
///
/// Where a segment stops decoding (a zeroed or damaged header, a bad checksum, a record
/// out of order), the scan looks on for the next intact record before deciding what it
/// found. Only zeros after it: the end of the written part. An intact record later on:
/// the stretch in between is lost, reported as a [`Corruption`] and never served, and
/// every record after it is kept — no byte before an intact record is ever zeroed, since
/// it may hold acknowledged messages (a torn last commit may so keep messages whose
/// publisher was never answered: at least once, never lost). Garbage with no intact
/// record after it, at the end of the last segment, is a torn tail: it is zeroed and
/// reported as `truncated`. A record may be as long as its segment file: the current
/// `segment_bytes` setting plays no part.
pub(crate) fn recover<D: Disk>(disk: &D, dir: &Path, recent_since_ms: u64) -> io::Result<Recovered<D>> {
    let _ = disk.remove_file(&dir.join(PREPARED));
    let mut bases = Vec::new();
    for name in disk.list(dir)? {
        let Some(name) = name.to_str() else { continue };
        if let Some(base) = name.strip_suffix(".log").and_then(|b| b.parse::<u64>().ok()) {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    let mut out = Recovered {
        segments: Vec::new(),
        corrupt: Vec::new(),
        recent: Vec::new(),
        truncated: None,
    };
    for (i, &base) in bases.iter().enumerate() {
        let path = segment_path(dir, base);
        let file = disk.open(&path, Open::Existing)?;
        // What the disk holds, not pages a failed sync left in the cache.
        file.forget_cached()?;
        let buf = Bytes::from(read_whole(&file)?);
        let max_record = buf.len();
        let mut seg = Segment {
            base,
            file: Arc::new(file),
            index: Vec::new(),
            written: 0,
            size: buf.len() as u64,
            first_timestamp_ms: 0,
            last_timestamp_ms: 0,
        };
        let last = i + 1 == bases.len();
        let mut pos = 0usize;
        loop {
            let expected = seg.next_offset();
            let reason = match decode(&buf.slice(pos..), max_record) {
                Decoded::Record(r, used) if r.offset == expected => {
                    index_record(&mut seg, &r, pos, used, recent_since_ms, &mut out.recent);
                    pos += used;
                    continue;
                }
                Decoded::End if buf[pos..].iter().all(|&b| b == 0) => break,
                Decoded::End => "a zeroed record header",
                Decoded::Bad(reason) => reason,
                Decoded::Record(..) => "a record out of order",
            };
            match resync(&buf, pos + 1, expected, max_record) {
                Some((next_pos, next_offset)) => {
                    out.corrupt.push(Corruption {
                        segment: path.clone(),
                        position: pos as u64,
                        from: expected,
                        to: next_offset,
                        reason: reason.to_string(),
                    });
                    seg.index.extend((expected..next_offset).map(|_| Slot {
                        pos: pos as u32,
                        len: 0,
                    }));
                    pos = next_pos;
                }
                None if last => {
                    // A torn tail: zero it so that no stale byte after the next appends
                    // can ever look like a record.
                    zero_from(&*seg.file, pos as u64, buf.len() as u64)?;
                    out.truncated = Some((pos as u64, reason));
                    break;
                }
                None if bases[i + 1] <= expected => {
                    // Stray bytes after the end of a segment that was rolled: every offset
                    // of this segment was found.
                    break;
                }
                None => {
                    let next_base = bases[i + 1];
                    out.corrupt.push(Corruption {
                        segment: path.clone(),
                        position: pos as u64,
                        from: expected,
                        to: next_base,
                        reason: reason.to_string(),
                    });
                    seg.index.extend((expected..next_base).map(|_| Slot {
                        pos: pos as u32,
                        len: 0,
                    }));
                    break;
                }
            }
        }
        seg.written = pos as u64;
        out.segments.push(seg);
    }
    drop_stray_segments(disk, dir, &mut out.segments)?;
    Ok(out)
}

/// Drops empty segments whose base is below the end of the segment before them: a
/// segment installed for a roll that failed and was taken back, whose removal a crash
/// kept from the disk. Left in place it would make the queue restart its offsets at its
/// base, handing out offsets again.
fn drop_stray_segments<D: Disk>(disk: &D, dir: &Path, segments: &mut Vec<Segment<D>>) -> io::Result<()> {
    let mut end = 0;
    let mut stray = Vec::new();
    segments.retain(|s| {
        let keep = !(s.index.is_empty() && s.base < end);
        if keep {
            end = s.next_offset();
        } else {
            stray.push(s.base);
        }
        keep
    });
    if !stray.is_empty() {
        tracing::warn!(dir = %dir.display(), ?stray, "removing empty segments left by a roll that was taken back");
        uninstall(disk, dir, &stray)?;
    }
    Ok(())
}

fn index_record<D: Disk>(
    seg: &mut Segment<D>,
    r: &Record,
    pos: usize,
    used: usize,
    since: u64,
    recent: &mut Vec<(String, u64, u64)>,
) {
    if seg.index.is_empty() {
        seg.first_timestamp_ms = r.timestamp_ms;
    }
    seg.last_timestamp_ms = r.timestamp_ms;
    seg.index.push(Slot {
        pos: pos as u32,
        len: used as u32,
    });
    if let Some(id) = &r.dedupe_id {
        if r.timestamp_ms >= since {
            recent.push((id.clone(), r.offset, r.timestamp_ms));
        }
    }
}

/// The next position at or after `from` that holds an intact record of an offset after
/// `expected`, with that offset. Runs of zeros are skipped quickly: a record's first
/// non-zero byte is within its 8-byte header.
fn resync(buf: &Bytes, from: usize, expected: u64, max_record: usize) -> Option<(usize, u64)> {
    let end = buf.len().saturating_sub(HEADER);
    let mut pos = from;
    while pos < end {
        if buf[pos] == 0 {
            // Jump to 7 bytes before the next non-zero byte (a header may start with zeros).
            match buf[pos..].iter().position(|&b| b != 0) {
                Some(n) if n > HEADER => {
                    pos += n - (HEADER - 1);
                    continue;
                }
                Some(_) => {}
                None => return None,
            }
        }
        if plausible_offset(buf, pos, expected) {
            if let Decoded::Record(r, _) = decode(&buf.slice(pos..), max_record) {
                if r.offset > expected {
                    return Some((pos, r.offset));
                }
            }
        }
        pos += 1;
    }
    None
}

/// Whether a record at `pos` would hold an offset after `expected`, and no further past
/// it than records could fit in `buf`, read without checking the record: the scan passes
/// over payload bytes (offsets far off) without a CRC over a length read from them, which
/// inside a large payload made resynchronising take seconds.
fn plausible_offset(buf: &[u8], pos: usize, expected: u64) -> bool {
    /// A record's header and fixed fields: no record takes less.
    const LEAST_RECORD: u64 = (HEADER + FIXED) as u64;
    let Some(offset) = buf
        .get(pos + HEADER..pos + HEADER + 8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    else {
        return false;
    };
    offset > expected && offset - expected <= buf.len() as u64 / LEAST_RECORD
}

/// The whole of an open file.
fn read_whole<F: DiskFile>(file: &F) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; file.size()? as usize];
    file.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}

fn zero_from<F: DiskFile>(file: &F, from: u64, to: u64) -> io::Result<()> {
    let zeros = vec![0u8; 1 << 20];
    let mut at = from;
    while at < to {
        let n = (to - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    file.sync_data()
}

/// Reads `len` bytes at `pos` only if they are all in the page cache (`preadv2` with
/// `RWF_NOWAIT` never waits for the disk). `Ok(None)`: not (all) cached, read them on a
/// blocking thread instead. This is what lets a fetch of recent-enough data stay on its
/// runtime thread without breaking the rule that disk work never blocks the runtime.
pub(crate) fn read_cached<F: DiskFile>(file: &F, pos: u64, len: usize) -> io::Result<Option<Bytes>> {
    let mut buf = vec![0u8; len];
    Ok(file.read_cached(&mut buf, pos)?.then(|| Bytes::from(buf)))
}

/// Reads `len` bytes at `pos`.
pub(crate) fn read<F: DiskFile>(file: &F, pos: u64, len: usize) -> io::Result<Bytes> {
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, pos)?;
    Ok(Bytes::from(buf))
}
