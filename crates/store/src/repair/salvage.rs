//! What repair can read of a store, merged into a new database file: every entry redb can
//! still read from the old file (opened read-only: `readonly`), then every intact batch of
//! the write-ahead log, in batch order, each effect applied only over an older version.
//!
//! Why every batch of the log, not only those after the last checkpoint: the old file
//! may have lost what a checkpoint put there. The two log files take turns, so every
//! record a later lap overwrote is older than every record still there: a key's newest
//! write that is still in the log is applied last, and one whose newest write was
//! overwritten has no older write left in the log to bring back. Versions only grow, so
//! the version check also keeps a value read from the file over an older logged one.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use redb::{Database, ReadableTable, ReadableTableMetadata, WriteTransaction};
use strata_os::disk::OsDisk;

use super::readonly::ReadOnlyFile;
use crate::applier::WAL_FILE_BYTES;
use crate::record::{
    encode_value, value_header, value_len, BlobRecord, APPLIED, BLOBS, META, SEQ, VALUES, WAL_FILE, WAL_POS,
};
use crate::wal::{self, Batch, Effect, Wal, RECORD_HEADER};
use crate::MAX_BATCH_WRITES;

/// redb's page cache while repairing.
const CACHE_BYTES: usize = 64 << 20;

/// The old database file, as redb could open it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OldFile {
    Missing,
    /// Opened; its integrity check passed.
    Intact,
    /// Opened, but the integrity check found damage and redb repaired it (rolling back
    /// to an earlier commit where it must): what it reads now is checked.
    Damaged(String),
    /// redb could not open it at all, or it failed the integrity check past repair (the
    /// reason). redb 2 checks page checksums only while repairing a file, so one damaged
    /// page in use leaves the whole file unreadable to it.
    Unreadable(String),
}

/// Opens the database file at `path` read-only (`readonly`), then checks its integrity.
/// A panic inside redb (seen on a truncated file) is taken as a reason like an error.
pub(crate) fn open_old(path: &Path) -> (Option<Database>, OldFile) {
    let file = match ReadOnlyFile::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (None, OldFile::Missing),
        Err(e) => return (None, OldFile::Unreadable(format!("open it: {e}"))),
    };
    if std::fs::metadata(path).map_or(true, |m| m.len() == 0) {
        return (None, OldFile::Unreadable("the file is empty".into()));
    }
    let opened = catch_unwind(AssertUnwindSafe(|| {
        redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create_with_backend(file)
    }));
    let mut db = match opened {
        Ok(Ok(db)) => db,
        Ok(Err(e)) => return (None, OldFile::Unreadable(e.to_string())),
        Err(panic) => return (None, OldFile::Unreadable(panicked(&*panic))),
    };
    // A file that fails the check is not read: redb checks page checksums only here and
    // while repairing, so reads past a failed check could hand out damaged entries.
    match catch_unwind(AssertUnwindSafe(|| db.check_integrity())) {
        Ok(Ok(true)) => (Some(db), OldFile::Intact),
        Ok(Ok(false)) => (
            Some(db),
            OldFile::Damaged("redb's integrity check found damage and repaired it (in memory)".into()),
        ),
        Ok(Err(e)) => (None, OldFile::Unreadable(format!("redb's integrity check failed: {e}"))),
        Err(panic) => (
            None,
            OldFile::Unreadable(format!("redb's integrity check failed: {}", panicked(&*panic))),
        ),
    }
}

/// What a panic said.
fn panicked(panic: &(dyn Any + Send)) -> String {
    let what = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "no message".into());
    format!("redb panicked: {what}")
}

/// The checkpoint recorded in the old file: last version, last batch applied, and where
/// the log goes on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub seq: u64,
    pub applied: u64,
    pub wal_file: usize,
    pub wal_pos: u64,
}

/// What was copied from the old file.
#[derive(Debug, Default)]
pub(crate) struct Copied {
    pub values: u64,
    pub blobs: u64,
    /// Entries that could not be decoded: their keys.
    pub bad_entries: Vec<String>,
    /// Tables, or the rest of a table, that could not be read.
    pub unread: Vec<String>,
    pub checkpoint: Option<Checkpoint>,
}

/// Copies every entry of the old file that redb can read into `txn`.
pub(crate) fn copy_old(old: &Database, txn: &WriteTransaction) -> Result<Copied, String> {
    let mut copied = Copied::default();
    let read = match old.begin_read() {
        Ok(read) => read,
        Err(e) => {
            copied.unread.push(format!("every table (no read transaction: {e})"));
            return Ok(copied);
        }
    };
    let mut values = txn.open_table(VALUES).map_err(|e| e.to_string())?;
    let mut blobs = txn.open_table(BLOBS).map_err(|e| e.to_string())?;
    // Each table on its own: a damaged one does not keep the others from being read.
    let outcome = catch_unwind(AssertUnwindSafe(|| -> Result<(), String> {
        let table = read.open_table(VALUES).map_err(|e| format!("the values table: {e}"))?;
        let mut last = None;
        for entry in table.iter().map_err(|e| format!("the values table: {e}"))? {
            let (k, v) = entry.map_err(|e| after("the values table", last.as_deref(), e))?;
            let key = k.value().to_vec();
            if value_header(v.value()).is_ok() {
                values.insert(key.as_slice(), v.value()).map_err(|e| e.to_string())?;
                copied.values += 1;
            } else {
                copied.bad_entries.push(show_key(&key));
            }
            last = Some(key);
        }
        Ok(())
    }));
    note(outcome, &mut copied.unread);
    let outcome = catch_unwind(AssertUnwindSafe(|| -> Result<(), String> {
        let table = read.open_table(BLOBS).map_err(|e| format!("the blobs table: {e}"))?;
        let mut last = None;
        for entry in table.iter().map_err(|e| format!("the blobs table: {e}"))? {
            let (k, v) = entry.map_err(|e| after("the blobs table", last.as_deref(), e))?;
            let key = k.value().to_vec();
            if BlobRecord::decode(v.value()).is_ok() {
                blobs.insert(key.as_slice(), v.value()).map_err(|e| e.to_string())?;
                copied.blobs += 1;
            } else {
                copied.bad_entries.push(show_key(&key));
            }
            last = Some(key);
        }
        Ok(())
    }));
    note(outcome, &mut copied.unread);
    let outcome = catch_unwind(AssertUnwindSafe(|| -> Result<Checkpoint, String> {
        let meta = read.open_table(META).map_err(|e| format!("the checkpoint: {e}"))?;
        let get = |k: &str| -> Result<u64, String> {
            let v = meta.get(k).map_err(|e| format!("the checkpoint: {e}"))?;
            Ok(v.map_or(0, |g| g.value()))
        };
        Ok(Checkpoint {
            seq: get(SEQ)?,
            applied: get(APPLIED)?,
            wal_file: get(WAL_FILE)? as usize,
            wal_pos: get(WAL_POS)?,
        })
    }));
    match outcome {
        Ok(Ok(c)) => copied.checkpoint = Some(c),
        Ok(Err(e)) => copied.unread.push(e),
        Err(panic) => copied.unread.push(format!("the checkpoint ({})", panicked(&*panic))),
    }
    Ok(copied)
}

fn after(table: &str, last: Option<&[u8]>, e: impl std::fmt::Display) -> String {
    match last {
        Some(k) => format!("{table} after key {} ({e})", show_key(k)),
        None => format!("{table} ({e})"),
    }
}

fn note(outcome: Result<Result<(), String>, Box<dyn Any + Send>>, unread: &mut Vec<String>) {
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => unread.push(e),
        Err(panic) => unread.push(panicked(&*panic)),
    }
}

/// A table key (`NAMESPACE \0 KEY`) as a person reads it: `NAMESPACE/KEY`.
pub(crate) fn show_key(key: &[u8]) -> String {
    String::from_utf8_lossy(key).replacen('\0', "/", 1)
}

/// What the write-ahead log holds.
#[derive(Default)]
pub(crate) struct LogRead {
    /// Every intact batch of both files, in batch order.
    pub batches: Vec<Batch>,
    /// Batch ids lost to damage after the checkpoint, as the store's own recovery reads
    /// the log (first lost, first after): acknowledged writes gone. Known only with the
    /// checkpoint.
    pub lost: Vec<(u64, u64)>,
}

/// Reads both log files in `wal_dir`: every intact batch, and, when the old file's
/// checkpoint is known, the batches lost after it as the store's recovery finds them.
pub(crate) fn read_log(wal_dir: &Path, checkpoint: Option<Checkpoint>) -> std::io::Result<LogRead> {
    let mut out = LogRead::default();
    let files = [wal_dir.join("0.log"), wal_dir.join("1.log")];
    for path in &files {
        match std::fs::read(path) {
            Ok(data) => out.batches.extend(batches_in(&data)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    out.batches.sort_by_key(|b| b.id);
    out.batches.dedup_by_key(|b| b.id);
    if let Some(c) = checkpoint.filter(|_| files.iter().all(|f| f.exists())) {
        // The store's own reading (nothing is written: both files exist).
        let mut log = Wal::open(&OsDisk, wal_dir, c.wal_file, c.wal_pos, WAL_FILE_BYTES)?;
        let read = log.read_after(c.wal_file, c.wal_pos, c.applied)?;
        out.lost = read.lost.iter().map(|&(from, to, _)| (from, to)).collect();
    }
    Ok(out)
}

/// Every intact batch record in one log file, wherever it lies (older laps included).
fn batches_in(data: &[u8]) -> Vec<Batch> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + RECORD_HEADER <= data.len() {
        if data[at] == 0 {
            // Runs of zeros quickly: a record's first non-zero byte is in its header.
            match data[at..].iter().position(|&b| b != 0) {
                Some(n) if n > RECORD_HEADER => {
                    at += n - (RECORD_HEADER - 1);
                    continue;
                }
                Some(_) => {}
                None => break,
            }
        }
        if plausible(data, at) {
            if let Some(batch) = wal::record_at(data, at).and_then(|(body, len)| Some((wal::decode_batch(body)?, len)))
            {
                out.push(batch.0);
                at += batch.1;
                continue;
            }
        }
        at += 1;
    }
    out
}

/// Whether a record at `at` could hold a batch, read without its checksum (so a scan
/// over damaged bytes does not checksum lengths read from them): its body fits in the
/// file and holds a batch id and a count of 1 to [`MAX_BATCH_WRITES`] effects.
fn plausible(data: &[u8], at: usize) -> bool {
    let u32_at = |i: usize| {
        data.get(i..i + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    };
    let (Some(len), Some(count)) = (u32_at(at), u32_at(at + RECORD_HEADER + 8)) else {
        return false;
    };
    len >= 12 && at + RECORD_HEADER + len as usize <= data.len() && (1..=MAX_BATCH_WRITES as u32).contains(&count)
}

/// Applies `batches` in order into `txn`, each effect only over an older version (or
/// none). Returns how many effects changed something.
pub(crate) fn apply_log(txn: &WriteTransaction, batches: &[Batch]) -> Result<u64, String> {
    let mut values = txn.open_table(VALUES).map_err(|e| e.to_string())?;
    let mut blobs = txn.open_table(BLOBS).map_err(|e| e.to_string())?;
    let mut applied = 0;
    for effect in batches.iter().flat_map(|b| &b.effects) {
        match effect {
            Effect::Value {
                key,
                version,
                updated_ms,
                value,
            } => {
                let current = values
                    .get(key.as_slice())
                    .map_err(|e| e.to_string())?
                    .and_then(|g| value_header(g.value()).ok())
                    .map(|(v, _)| v);
                if current.is_some_and(|c| c >= *version) || (current.is_none() && value.is_none()) {
                    continue;
                }
                match value {
                    Some(value) => {
                        let mut slot = values
                            .insert_reserve(key.as_slice(), value_len(value) as u32)
                            .map_err(|e| e.to_string())?;
                        encode_value(slot.as_mut(), *version, *updated_ms, value);
                    }
                    None => {
                        values.remove(key.as_slice()).map_err(|e| e.to_string())?;
                    }
                }
            }
            Effect::Blob { key, version, record } => {
                let current = blobs
                    .get(key.as_slice())
                    .map_err(|e| e.to_string())?
                    .and_then(|g| BlobRecord::decode(g.value()).ok())
                    .map(|r| r.version);
                if current.is_some_and(|c| c >= *version) || (current.is_none() && record.is_none()) {
                    continue;
                }
                match record {
                    Some(r) => {
                        blobs
                            .insert(key.as_slice(), r.encode().as_slice())
                            .map_err(|e| e.to_string())?;
                    }
                    None => {
                        blobs.remove(key.as_slice()).map_err(|e| e.to_string())?;
                    }
                }
            }
        }
        applied += 1;
    }
    Ok(applied)
}

/// Counts what `txn` holds: (values, blobs, highest version).
pub(crate) fn totals(txn: &WriteTransaction) -> Result<(u64, u64, u64), String> {
    let values = txn.open_table(VALUES).map_err(|e| e.to_string())?;
    let blobs = txn.open_table(BLOBS).map_err(|e| e.to_string())?;
    let mut top = 0;
    for entry in values.iter().map_err(|e| e.to_string())? {
        let (_, v) = entry.map_err(|e| e.to_string())?;
        top = top.max(value_header(v.value()).map_or(0, |(v, _)| v));
    }
    for entry in blobs.iter().map_err(|e| e.to_string())? {
        let (_, v) = entry.map_err(|e| e.to_string())?;
        top = top.max(BlobRecord::decode(v.value()).map_or(0, |r| r.version));
    }
    Ok((
        values.len().map_err(|e| e.to_string())?,
        blobs.len().map_err(|e| e.to_string())?,
        top,
    ))
}

/// Writes the checkpoint of a repaired file: versions go on after `seq`, batches after
/// `applied`, and the log starts over at the start of file 0 (repair moves the old log
/// away).
pub(crate) fn write_checkpoint(txn: &WriteTransaction, seq: u64, applied: u64) -> Result<(), String> {
    let mut meta = txn.open_table(META).map_err(|e| e.to_string())?;
    for (k, v) in [(SEQ, seq), (APPLIED, applied), (WAL_FILE, 0), (WAL_POS, 0)] {
        meta.insert(k, v).map_err(|e| e.to_string())?;
    }
    Ok(())
}
