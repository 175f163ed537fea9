//! `strata repair` for the store, with no node running on it: salvages what can be read
//! of a damaged `store.redb` and the write-ahead log into a new database file.
//!
//! 1. The old file is opened read-only (`readonly`: what redb writes while it repairs or
//!    checks the file stays in memory) and its integrity checked; a file redb cannot
//!    open at all (an error, or a panic inside redb, as on a truncated file) is left out.
//! 2. A new database file gets every value and blob reference redb can still read from
//!    the old one, then every intact batch of the log applied over them, each effect only
//!    over an older version (`salvage` says why that is safe). Blob bodies are checked
//!    against their size and SHA-256: a blob whose body is missing or differs is dropped
//!    (and reported), never served wrong.
//! 3. If anything was damaged, the new file takes the old one's name; the old file, the
//!    old log and every blob body no kept blob refers to (those of blobs whose metadata
//!    was lost among them) go to `DAMAGED/store/`, and the store starts a fresh log.
//!
//! What can be lost, and is reported: entries of the old file redb could not read (with
//! an unreadable file, every key whose newest write is older than the oldest batch left
//! in the log), batches of the log lost to damage, and blobs whose bodies are damaged.

mod readonly;
mod salvage;

use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};
use strata_os::disk::{Disk, DiskFile, Open, OsDisk};

use crate::record::{BlobRecord, BLOBS};
use crate::StoreError;

pub use salvage::OldFile;

/// How [`repair`] treats the store.
#[derive(Debug, Clone, Default)]
pub struct RepairOptions {
    /// Report what a repair would do, and change nothing.
    pub dry_run: bool,
    /// Where the damaged files go, under `DAMAGED/store/`.
    pub damaged_dir: PathBuf,
}

/// A blob dropped because its body is missing or damaged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlobLost {
    /// `NAMESPACE/NAME`.
    pub blob: String,
    pub why: String,
}

/// What repair did with the store, or in a dry run would do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Outcome {
    /// Nothing damaged: nothing changed.
    Intact,
    /// Damaged; a dry run changed nothing.
    WouldRepair,
    /// Rebuilt; the damaged files are in `moved_to`.
    Repaired { moved_to: PathBuf },
}

/// What [`repair`] found in the store and what it did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreRepair {
    /// The old database file as redb could open it.
    #[serde(serialize_with = "show")]
    pub file: OldFile,
    /// Values and blob references read from it.
    pub file_values: u64,
    pub file_blobs: u64,
    /// Tables, or the rest of a table, redb could not read: what they held is lost.
    pub unread: Vec<String>,
    /// Entries read but not decodable (their keys): lost.
    pub bad_entries: Vec<String>,
    /// Intact batches in the write-ahead log, and their first and last ids.
    pub log_batches: u64,
    pub log_ids: Option<(u64, u64)>,
    /// Batch ids lost to damage in the log after the last checkpoint (first lost, first
    /// after): acknowledged writes gone.
    pub lost_batches: Vec<(u64, u64)>,
    /// What the store holds after the repair.
    pub values: u64,
    pub blobs: u64,
    pub blobs_lost: Vec<BlobLost>,
    /// Body files no kept blob refers to, moved aside with the damaged files.
    pub stray_files: usize,
    pub outcome: Outcome,
}

fn show<S: serde::Serializer>(file: &OldFile, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&file.to_string())
}

impl StoreRepair {
    /// Whether acknowledged data was, or may have been, lost.
    pub fn lost_something(&self) -> bool {
        let file_lost = matches!(self.file, OldFile::Unreadable(_)) && !self.log_from_the_start();
        file_lost
            || !self.unread.is_empty()
            || !self.bad_entries.is_empty()
            || !self.lost_batches.is_empty()
            || !self.blobs_lost.is_empty()
    }

    /// Whether anything needed repair.
    pub fn damaged(&self) -> bool {
        self.outcome != Outcome::Intact
    }

    /// Whether the log still holds every batch from the store's first (so an unreadable
    /// file loses nothing).
    fn log_from_the_start(&self) -> bool {
        self.log_ids
            .is_some_and(|(first, last)| first == 1 && last - first + 1 == self.log_batches)
    }
}

impl fmt::Display for OldFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OldFile::Missing => f.write_str("missing"),
            OldFile::Intact => f.write_str("intact"),
            OldFile::Damaged(why) => write!(f, "damaged: {why}"),
            OldFile::Unreadable(why) => write!(f, "unreadable: {why}"),
        }
    }
}

/// Repairs the store in `store_dir` (see the module doc). Blocking: reads the whole
/// database, the log and every blob body. Refused while a node has the store open.
pub fn repair(store_dir: &Path, options: &RepairOptions) -> Result<StoreRepair, StoreError> {
    let db_path = store_dir.join("store.redb");
    let wal_dir = store_dir.join("wal");
    let blobs_dir = store_dir.join("blobs");
    let io = |what: &'static str| move |e: io::Error| StoreError::Io(format!("{what}: {e}"));
    let db_err = |e: String| StoreError::Io(format!("build the repaired database: {e}"));
    if !store_dir.is_dir() {
        return Err(StoreError::BadInput(format!("no store in {}", store_dir.display())));
    }
    // Held to the end: a node that starts meanwhile finds the store in use.
    let _lock = lock(&db_path)?;
    let (old, file) = salvage::open_old(&db_path);

    let scratch = if options.dry_run {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        std::env::temp_dir().join(format!("strata-repair-{}-{nanos:x}.redb", std::process::id()))
    } else {
        store_dir.join("store.redb.repair")
    };
    let _ = fs::remove_file(&scratch);
    let _scratch_left = Remove(options.dry_run.then(|| scratch.clone()));
    let new = redb::Builder::new()
        .set_cache_size(64 << 20)
        .create(&scratch)
        .map_err(|e| db_err(e.to_string()))?;
    let txn = new.begin_write().map_err(|e| db_err(e.to_string()))?;
    let copied = match &old {
        Some(db) => salvage::copy_old(db, &txn).map_err(db_err)?,
        None => salvage::Copied::default(),
    };
    drop(old);
    let log = salvage::read_log(&wal_dir, copied.checkpoint).map_err(io("read the write-ahead log"))?;
    salvage::apply_log(&txn, &log.batches).map_err(db_err)?;
    let (blobs_lost, referenced) = verify_blobs(&txn, &blobs_dir).map_err(db_err)?;
    let (values, blobs, top_version) = salvage::totals(&txn).map_err(db_err)?;
    let checkpoint = copied.checkpoint.unwrap_or_default();
    let seq = top_version.max(checkpoint.seq).max(
        log.batches
            .iter()
            .flat_map(|b| b.effects.iter().map(|e| e.version()))
            .max()
            .unwrap_or(0),
    );
    let applied = checkpoint.applied.max(log.batches.last().map_or(0, |b| b.id));
    salvage::write_checkpoint(&txn, seq, applied).map_err(db_err)?;
    txn.commit().map_err(|e| db_err(e.to_string()))?;
    drop(new);
    let stray = stray_files(&blobs_dir, &referenced).map_err(io("list the blobs directory"))?;

    let mut report = StoreRepair {
        file_values: copied.values,
        file_blobs: copied.blobs,
        unread: copied.unread,
        bad_entries: copied.bad_entries,
        log_batches: log.batches.len() as u64,
        log_ids: log.batches.first().zip(log.batches.last()).map(|(a, b)| (a.id, b.id)),
        lost_batches: log.lost,
        values,
        blobs,
        blobs_lost,
        stray_files: stray.len(),
        outcome: Outcome::Intact,
        file,
    };
    let damaged = match report.file {
        OldFile::Intact => false,
        OldFile::Missing => report.log_batches > 0,
        OldFile::Damaged(_) | OldFile::Unreadable(_) => true,
    } || report.lost_something();
    report.outcome = match (damaged, options.dry_run) {
        (false, _) => {
            let _ = fs::remove_file(&scratch);
            Outcome::Intact
        }
        (true, true) => Outcome::WouldRepair,
        (true, false) => Outcome::Repaired {
            moved_to: swap_in(store_dir, &scratch, &stray, options).map_err(io("put the repaired store in place"))?,
        },
    };
    if !damaged {
        report.stray_files = 0;
    }
    Ok(report)
}

/// Removes a file when dropped (the dry run's scratch database).
struct Remove(Option<PathBuf>);

impl Drop for Remove {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = fs::remove_file(path);
        }
    }
}

/// Takes the lock a running store holds on its database file; refused while a node has
/// it open.
fn lock(db_path: &Path) -> Result<Option<<OsDisk as Disk>::File>, StoreError> {
    let file = match OsDisk.open(db_path, Open::Existing) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::Io(format!("open {}: {e}", db_path.display()))),
    };
    match file.try_lock_exclusive() {
        Ok(()) => Ok(Some(file)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(StoreError::Io(format!(
            "{} is open in a running strata node; stop it (`strata down`) before repairing",
            db_path.display()
        ))),
        Err(e) => Err(StoreError::Io(format!("lock {}: {e}", db_path.display()))),
    }
}

/// Checks every blob's body against its size and digest; drops the blobs whose body is
/// missing or differs. Returns them, and the body files the kept blobs refer to.
fn verify_blobs(txn: &redb::WriteTransaction, blobs_dir: &Path) -> Result<(Vec<BlobLost>, Vec<String>), String> {
    use redb::ReadableTable;
    let mut table = txn.open_table(BLOBS).map_err(|e| e.to_string())?;
    let mut records = Vec::new();
    for entry in table.iter().map_err(|e| e.to_string())? {
        let (k, v) = entry.map_err(|e| e.to_string())?;
        let record = BlobRecord::decode(v.value()).map_err(|e| e.to_string())?;
        records.push((k.value().to_vec(), record));
    }
    let (mut lost, mut kept) = (Vec::new(), Vec::new());
    for (key, record) in records {
        let why = match check_body(blobs_dir, &record) {
            Ok(None) => {
                kept.push(record.file);
                continue;
            }
            Ok(Some(why)) => why,
            Err(e) => format!("its body file {} cannot be read: {e}", record.file),
        };
        table.remove(key.as_slice()).map_err(|e| e.to_string())?;
        lost.push(BlobLost {
            blob: salvage::show_key(&key),
            why,
        });
    }
    Ok((lost, kept))
}

/// Why the body of `record` is not the one its metadata describes; None when it is.
fn check_body(blobs_dir: &Path, record: &BlobRecord) -> io::Result<Option<String>> {
    if record.file.is_empty() || record.file.contains('/') || record.file.starts_with('.') {
        return Ok(Some(format!("its body file name {:?} is not one", record.file)));
    }
    let mut file = match fs::File::open(blobs_dir.join(&record.file)) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Some(format!("its body file {} is missing", record.file)))
        }
        Err(e) => return Err(e),
    };
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; crate::BLOB_CHUNK];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    let digest: [u8; 32] = hasher.finalize().into();
    Ok((size != record.size || digest != record.sha256).then(|| {
        format!(
            "its body file {} does not match its metadata ({size} bytes where {} were stored, or a different SHA-256)",
            record.file, record.size
        )
    }))
}

/// The files in `blobs_dir` that `referenced` does not name.
fn stray_files(blobs_dir: &Path, referenced: &[String]) -> io::Result<Vec<String>> {
    let referenced: std::collections::HashSet<&str> = referenced.iter().map(String::as_str).collect();
    let mut stray = Vec::new();
    let entries = match fs::read_dir(blobs_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(stray),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_file() && !referenced.contains(name.as_str()) {
            stray.push(name);
        }
    }
    stray.sort();
    Ok(stray)
}

/// Puts the repaired file in place and moves the damaged files aside, in an order that
/// leaves a store a node can open at every step: the old file is linked into
/// `DAMAGED/store/` first, the new one renamed over it, and the old log moved away only
/// after that (the new file's checkpoint is past every batch of it). Returns
/// `DAMAGED/store`.
fn swap_in(store_dir: &Path, scratch: &Path, stray: &[String], options: &RepairOptions) -> io::Result<PathBuf> {
    let parked = options.damaged_dir.join("store");
    fs::create_dir_all(&parked)?;
    let db_path = store_dir.join("store.redb");
    if db_path.exists() {
        fs::hard_link(&db_path, parked.join("store.redb"))?;
    }
    if !stray.is_empty() {
        let blobs = parked.join("blobs");
        fs::create_dir_all(&blobs)?;
        for name in stray {
            fs::rename(store_dir.join("blobs").join(name), blobs.join(name))?;
        }
        strata_os::fs::sync_dir(&blobs)?;
        strata_os::fs::sync_dir(&store_dir.join("blobs"))?;
    }
    strata_os::fs::sync_dir(&parked)?;
    fs::rename(scratch, &db_path)?;
    strata_os::fs::sync_dir(store_dir)?;
    let wal = store_dir.join("wal");
    if wal.exists() {
        fs::rename(&wal, parked.join("wal"))?;
    }
    strata_os::fs::sync_dir(store_dir)?;
    strata_os::fs::sync_dir(&parked)?;
    Ok(parked)
}

impl fmt::Display for StoreRepair {
    /// The report for a person: a line for the store, then one per finding.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.outcome {
            Outcome::Intact => "intact, nothing to repair".to_string(),
            Outcome::WouldRepair => "damaged (dry run: nothing changed)".to_string(),
            Outcome::Repaired { moved_to } => format!("repaired; the damaged files are in {}", moved_to.display()),
        };
        writeln!(f, "store: {state}")?;
        writeln!(
            f,
            "  store.redb: {} ({} values and {} blobs read)",
            self.file, self.file_values, self.file_blobs
        )?;
        match self.log_ids {
            Some((first, last)) => writeln!(
                f,
                "  write-ahead log: {} intact batches, ids {first}..={last}",
                self.log_batches
            )?,
            None => writeln!(f, "  write-ahead log: empty")?,
        }
        if matches!(self.file, OldFile::Unreadable(_)) {
            match self.log_ids {
                _ if self.log_from_the_start() => writeln!(
                    f,
                    "  rebuilt from the log alone, which holds every batch since the store began"
                )?,
                Some((first, _)) => writeln!(
                    f,
                    "  LOST: rebuilt from the log alone; every key whose newest write came before batch {first} \
                     was only in store.redb and is gone"
                )?,
                None => writeln!(f, "  LOST: the log is empty; everything store.redb held is gone")?,
            }
        }
        for what in &self.unread {
            writeln!(f, "  LOST: could not read {what}")?;
        }
        for key in &self.bad_entries {
            writeln!(f, "  LOST: {key} (its entry is damaged)")?;
        }
        for (from, to) in &self.lost_batches {
            writeln!(
                f,
                "  LOST: log batches {from}..{to} are damaged (their writes had been acknowledged)"
            )?;
        }
        for b in &self.blobs_lost {
            writeln!(f, "  LOST: blob {}: {}", b.blob, b.why)?;
        }
        if self.stray_files > 0 {
            writeln!(
                f,
                "  {} blob body files no kept blob refers to are moved aside with the damaged files",
                self.stray_files
            )?;
        }
        let now = if self.damaged() { "after repair" } else { "holds" };
        writeln!(f, "  {now}: {} values, {} blobs", self.values, self.blobs)
    }
}
