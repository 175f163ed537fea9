//! The applier thread: the only code that writes redb while the store is open.
//!
//! It takes the batches the writer logged (effects already decided), applies what arrives
//! within a few milliseconds in one redb write transaction and commits it non-durably (`Durability::None`:
//! no sync; on disk at the next checkpoint), then drops those effects from the overlay
//! (redb has them now) and removes the blob bodies those batches replaced or deleted.
//!
//! A checkpoint is a durable redb commit (one `fdatasync` of the database file) recording
//! the last version, the last batch applied and where the log goes on. It runs every
//! [`CHECKPOINT_BATCHES`] batches, after [`CHECKPOINT_INTERVAL`], when the writer moves the
//! log to its other file, and at close. [`recover`] re-applies at open what the log holds
//! after the last checkpoint.

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use redb::{Database, Durability};
use strata_os::disk::Disk;

use crate::blob;
use crate::overlay::Overlay;
use crate::record::{db_err, encode_value, value_len, APPLIED, BLOBS, META, SEQ, VALUES, WAL_FILE, WAL_POS};
use crate::wal::{Effect, Wal};
use crate::StoreError;

/// Batches between checkpoints, at most.
pub const CHECKPOINT_BATCHES: u64 = 1024;
/// Time between checkpoints while anything is unchecked, at most.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// How long the applier gathers logged batches into one redb commit.
const APPLY_DELAY: Duration = Duration::from_millis(5);
/// Most logged batches in one redb commit.
const APPLY_MAX_BATCHES: usize = 256;
/// Size of a log file before the log moves to the other one (the default of
/// [`crate::StoreConfig::wal_file_bytes`]).
pub(crate) const WAL_FILE_BYTES: u64 = 64 << 20;

/// Value bytes the writer may hand to the applier before it waits for the applier to
/// catch up (the overlay holds them meanwhile).
pub(crate) const APPLIER_BYTES: usize = 64 << 20;

/// The hand-off from the writer to the applier: value bytes in flight between them, and
/// the failure that stops every later write.
#[derive(Default)]
pub(crate) struct Handoff {
    /// Set when a write failed: every later write is refused until the store reopens.
    pub failed: Mutex<Option<String>>,
    /// Value bytes handed to the applier and not applied yet.
    in_flight: Mutex<usize>,
    applied: Condvar,
}

impl Handoff {
    /// The writer: waits until `bytes` more fit under [`APPLIER_BYTES`] (or nothing is in
    /// flight, or the applier is gone), then counts them in.
    pub fn reserve(&self, bytes: usize, applier_alive: impl Fn() -> bool) {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        while *in_flight > 0 && *in_flight + bytes > APPLIER_BYTES && self.failed().is_none() && applier_alive() {
            (in_flight, _) = self
                .applied
                .wait_timeout(in_flight, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner());
        }
        *in_flight += bytes;
    }

    /// The applier: `bytes` are applied (or dropped).
    pub fn release(&self, bytes: usize) {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        *in_flight = in_flight.saturating_sub(bytes);
        self.applied.notify_all();
    }

    pub fn failed(&self) -> Option<String> {
        self.failed.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn fail(&self, what: &str, e: &StoreError) {
        tracing::error!("store write failed, refusing writes until reopened: {what}: {e}");
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        failed.get_or_insert_with(|| format!("{what} ({e})"));
        drop(failed);
        // A writer waiting for room must not wait for an applier that stopped applying.
        let _guard = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        self.applied.notify_all();
    }
}

/// A batch the writer logged, for the applier.
pub(crate) struct Logged {
    pub id: u64,
    pub effects: Vec<Effect>,
    /// Where the log goes on after this batch.
    pub wal_end: (usize, u64),
    /// Blob bodies nothing refers to once the batch is applied.
    pub unused_files: Vec<String>,
}

pub(crate) enum ToApplier {
    Batch(Logged),
    /// Checkpoint everything sent before, recording that the log goes on at `to`.
    Switch {
        to: (usize, u64),
        done: mpsc::Sender<Result<(), StoreError>>,
    },
    Close,
}

pub(crate) struct Applier {
    pub db: Arc<Database>,
    pub blobs: PathBuf,
    pub shared: Arc<Handoff>,
    pub overlay: Arc<Overlay>,
    /// The highest version applied.
    pub seq: u64,
    /// The last batch applied.
    pub batch: u64,
    /// Where the log goes on after that batch.
    pub wal_end: (usize, u64),
    pub unchecked: u64,
    pub last_checkpoint: Instant,
}

impl Applier {
    pub fn run(mut self, rx: mpsc::Receiver<ToApplier>) {
        loop {
            let first = if self.unchecked > 0 {
                let left = CHECKPOINT_INTERVAL.saturating_sub(self.last_checkpoint.elapsed());
                match rx.recv_timeout(left) {
                    Ok(m) => m,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        self.checkpoint_or_fail(self.wal_end);
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => ToApplier::Close,
                }
            } else {
                rx.recv().unwrap_or(ToApplier::Close)
            };
            // Everything that arrives within APPLY_DELAY of the first batch goes into one
            // redb commit: a commit's fixed cost (the table roots, the freed tree, the
            // header, a write per dirty page) is shared by more writes. Reads do not wait
            // for it (the overlay has the batches).
            let mut batches = Vec::new();
            let started = Instant::now();
            let mut next = Some(first);
            while let Some(m) = next.take() {
                match m {
                    ToApplier::Batch(logged) => {
                        batches.push(logged);
                        if batches.len() < APPLY_MAX_BATCHES {
                            let left = APPLY_DELAY.saturating_sub(started.elapsed());
                            next = rx.recv_timeout(left).ok();
                        }
                    }
                    ToApplier::Switch { to, done } => {
                        self.apply(std::mem::take(&mut batches));
                        let r = match self.shared.failed() {
                            Some(reason) => Err(StoreError::Io(reason)),
                            None => self.checkpoint(to),
                        };
                        if let Err(e) = &r {
                            self.shared.fail("a checkpoint failed", e);
                        }
                        let _ = done.send(r);
                    }
                    ToApplier::Close => {
                        self.apply(std::mem::take(&mut batches));
                        if self.unchecked > 0 {
                            self.checkpoint_or_fail(self.wal_end);
                        }
                        return;
                    }
                }
            }
            self.apply(batches);
            if self.unchecked >= CHECKPOINT_BATCHES || self.last_checkpoint.elapsed() >= CHECKPOINT_INTERVAL {
                self.checkpoint_or_fail(self.wal_end);
            }
        }
    }

    fn apply(&mut self, batches: Vec<Logged>) {
        let bytes: usize = batches.iter().flat_map(|b| &b.effects).map(Effect::value_bytes).sum();
        let _released = Release(&self.shared, bytes);
        let Some(last) = batches.last() else {
            return;
        };
        if self.shared.failed().is_some() {
            return;
        }
        let (id, wal_end) = (last.id, last.wal_end);
        let seq = batches
            .iter()
            .flat_map(|b| b.effects.iter().map(Effect::version))
            .max()
            .unwrap_or(self.seq);
        let effects = batches.iter().flat_map(|b| &b.effects);
        if let Err(e) = apply_effects(&self.db, effects, Durability::None) {
            self.shared.fail("applying logged writes to the database failed", &e);
            return;
        }
        self.seq = self.seq.max(seq);
        self.batch = id;
        self.wal_end = wal_end;
        self.unchecked += batches.len() as u64;
        // Readers that miss the overlay from now on begin their read after this commit.
        self.overlay.write().trim(self.seq);
        for f in batches.iter().flat_map(|b| &b.unused_files) {
            blob::remove(&self.blobs.join(f));
        }
    }

    /// A durable redb commit recording the version counter, the last batch applied and
    /// that the log goes on at `wal_pos`.
    fn checkpoint(&mut self, wal_pos: (usize, u64)) -> Result<(), StoreError> {
        write_checkpoint(&self.db, self.seq, self.batch, wal_pos, std::iter::empty())?;
        self.wal_end = wal_pos;
        self.unchecked = 0;
        self.last_checkpoint = Instant::now();
        Ok(())
    }

    fn checkpoint_or_fail(&mut self, wal_pos: (usize, u64)) {
        if self.shared.failed().is_none() {
            if let Err(e) = self.checkpoint(wal_pos) {
                self.shared.fail("a checkpoint failed", &e);
            }
        }
        // Do not retry at once after a failure.
        self.last_checkpoint = Instant::now();
        self.unchecked = 0;
    }
}

/// Gives the applied bytes back to the writer when dropped.
struct Release<'a>(&'a Handoff, usize);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.0.release(self.1);
    }
}

/// Applies effects in order in one redb commit.
fn apply_effects<'a>(
    db: &Database,
    effects: impl Iterator<Item = &'a Effect>,
    durability: Durability,
) -> Result<(), StoreError> {
    let mut txn = db.begin_write().map_err(db_err)?;
    txn.set_durability(durability);
    put_effects(&txn, effects)?;
    txn.commit().map_err(db_err)
}

fn put_effects<'a>(txn: &redb::WriteTransaction, effects: impl Iterator<Item = &'a Effect>) -> Result<(), StoreError> {
    let mut values = txn.open_table(VALUES).map_err(db_err)?;
    let mut blobs = txn.open_table(BLOBS).map_err(db_err)?;
    for e in effects {
        match e {
            Effect::Value {
                key,
                version,
                updated_ms,
                value: Some(value),
            } => {
                let mut slot = values
                    .insert_reserve(key.as_slice(), value_len(value) as u32)
                    .map_err(db_err)?;
                encode_value(slot.as_mut(), *version, *updated_ms, value);
            }
            Effect::Value { key, value: None, .. } => {
                values.remove(key.as_slice()).map_err(db_err)?;
            }
            Effect::Blob {
                key,
                record: Some(record),
                ..
            } => {
                blobs
                    .insert(key.as_slice(), record.encode().as_slice())
                    .map_err(db_err)?;
            }
            Effect::Blob { key, record: None, .. } => {
                blobs.remove(key.as_slice()).map_err(db_err)?;
            }
        }
    }
    Ok(())
}

/// A durable commit of `effects` (possibly none) and the checkpoint record.
fn write_checkpoint<'a>(
    db: &Database,
    seq: u64,
    batch: u64,
    wal_pos: (usize, u64),
    effects: impl Iterator<Item = &'a Effect>,
) -> Result<(), StoreError> {
    let mut txn = db.begin_write().map_err(db_err)?;
    txn.set_durability(Durability::Immediate);
    put_effects(&txn, effects)?;
    {
        let mut meta = txn.open_table(META).map_err(db_err)?;
        for (k, v) in [
            (SEQ, seq),
            (APPLIED, batch),
            (WAL_FILE, wal_pos.0 as u64),
            (WAL_POS, wal_pos.1),
        ] {
            meta.insert(k, v).map_err(db_err)?;
        }
    }
    txn.commit().map_err(db_err)
}

/// What open found in the log.
pub(crate) struct Recovered<D: Disk> {
    pub wal: Wal<D>,
    /// The last version handed out.
    pub seq: u64,
    /// The last batch logged.
    pub batch: u64,
    /// Batches re-applied.
    pub replayed: usize,
    /// Batch ids lost to damage in the log: (first lost, first after).
    pub lost: Vec<(u64, u64)>,
    /// The log ended in a record that is not intact.
    pub torn: bool,
}

/// Opens the log in `wal_dir` (files of `wal_file_bytes`) and re-applies what it holds
/// after the last checkpoint, in one durable commit that is also the new checkpoint.
/// Blocking.
pub(crate) fn recover<D: Disk>(
    db: &Database,
    disk: &D,
    wal_dir: &Path,
    wal_file_bytes: u64,
) -> Result<Recovered<D>, StoreError> {
    let (seq, applied, file, pos) = {
        let txn = db.begin_read().map_err(db_err)?;
        let meta = txn.open_table(META).map_err(db_err)?;
        let get = |k: &str| -> Result<u64, StoreError> { Ok(meta.get(k).map_err(db_err)?.map_or(0, |g| g.value())) };
        (get(SEQ)?, get(APPLIED)?, get(WAL_FILE)? as usize, get(WAL_POS)?)
    };
    let mut wal = Wal::open(disk, wal_dir, file, pos, wal_file_bytes)
        .map_err(|e| StoreError::Io(format!("open the write-ahead log: {e}")))?;
    let read = wal
        .read_after(file, pos, applied)
        .map_err(|e| StoreError::Io(format!("read the write-ahead log: {e}")))?;
    for (from, to, at) in &read.lost {
        tracing::error!(
            wal_file = file,
            position = at,
            "the write-ahead log is damaged: batches {from}..{to} are lost (their writes were acknowledged); the batches after them are re-applied"
        );
    }
    if let Some(at) = read.torn_at {
        tracing::warn!(
            wal_file = file,
            position = at,
            "the write-ahead log ends in a damaged record: a write cut short by a crash (never acknowledged), or damage to the last batch (whose writes were acknowledged and are lost)"
        );
    }
    let lost: Vec<(u64, u64)> = read.lost.iter().map(|&(from, to, _)| (from, to)).collect();
    let torn = read.torn_at.is_some();
    let batches = read.batches;
    let Some(last) = batches.last() else {
        return Ok(Recovered {
            wal,
            seq,
            batch: applied,
            replayed: 0,
            lost,
            torn,
        });
    };
    let batch = last.id;
    let seq = batches
        .iter()
        .flat_map(|b| b.effects.iter().map(Effect::version))
        .fold(seq, u64::max);
    let effects = batches.iter().flat_map(|b| b.effects.iter());
    write_checkpoint(db, seq, batch, wal.position(), effects)?;
    tracing::info!(
        batches = batches.len(),
        "re-applied logged writes after an unclean shutdown"
    );
    Ok(Recovered {
        wal,
        seq,
        batch,
        replayed: batches.len(),
        lost,
        torn,
    })
}
