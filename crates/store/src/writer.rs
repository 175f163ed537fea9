//! The writer thread: decides every write and makes it durable (group commit).
//!
//! It takes everything waiting on its channel (up to [`MAX_BATCH_WRITES`] writes or
//! [`MAX_BATCH_BYTES`] of values) as one batch and:
//! 1. syncs the blobs directory once if the batch renamed blob bodies into it;
//! 2. decides each write in order: its condition against the state the writes before it
//!    left (the batch so far, the overlay, redb), then its version from the store-wide
//!    counter; a failed condition fails only its own write;
//! 3. appends the effects of the batch to the write-ahead log and syncs it: one `pwrite`
//!    and one `fdatasync` for the batch. From here the batch is durable;
//! 4. puts the effects in the overlay (visible to reads), publishes the changes, answers
//!    each caller, and hands the batch to the applier, which writes redb.
//!
//! A batch whose writes all failed their conditions writes nothing and syncs nothing.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use bytes::Bytes;
use redb::{Database, ReadOnlyTable};
use strata_os::clock::now_ms;
use strata_os::disk::Disk;
use tokio::sync::{broadcast, oneshot};

use crate::applier::{Handoff, Logged, ToApplier};
use crate::blob;
use crate::figures::Figures;
use crate::overlay::{Maps, Overlay, Pending, PendingValue};
use crate::record::{db_err, table_key, value_header, BlobRecord, BLOBS, VALUES};
use crate::wal::{self, Effect, Wal};
use crate::{BlobMeta, Change, ChangeKind, Cond, StoreError, MAX_BATCH_BYTES, MAX_BATCH_WRITES};

/// One write as asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Write {
    Put {
        ns: String,
        key: String,
        value: Bytes,
        cond: Cond,
    },
    Delete {
        ns: String,
        key: String,
        cond: Cond,
    },
    /// The body is already synced and renamed to `file` in the blobs directory.
    PutBlob {
        ns: String,
        name: String,
        cond: Cond,
        content_type: String,
        size: u64,
        sha256: [u8; 32],
        file: String,
    },
    DeleteBlob {
        ns: String,
        name: String,
        cond: Cond,
    },
}

/// Where a write's answer goes.
pub(crate) enum Done {
    Version(oneshot::Sender<Result<u64, StoreError>>),
    Deleted(oneshot::Sender<Result<bool, StoreError>>),
    Blob(oneshot::Sender<Result<BlobMeta, StoreError>>),
}

pub(crate) enum Op {
    Write(Write, Done),
    Close,
}

/// What a write did.
enum Outcome {
    Version(u64),
    Deleted(bool),
    Blob(BlobMeta),
}

impl Done {
    fn send(self, r: Result<Outcome, StoreError>) {
        // A caller that went away does not want its answer.
        let _ = match self {
            Done::Version(tx) => tx
                .send(r.map(|o| match o {
                    Outcome::Version(v) => v,
                    _ => unreachable!("a put answers a version"),
                }))
                .map_err(drop),
            Done::Deleted(tx) => tx.send(r.map(|o| matches!(o, Outcome::Deleted(true)))).map_err(drop),
            Done::Blob(tx) => tx
                .send(r.map(|o| match o {
                    Outcome::Blob(m) => m,
                    _ => unreachable!("a blob put answers metadata"),
                }))
                .map_err(drop),
        };
    }
}

impl Write {
    fn value_bytes(&self) -> usize {
        match self {
            Write::Put { value, .. } => value.len(),
            _ => 0,
        }
    }

    /// Its index in [`crate::WRITE_KINDS`].
    fn kind(&self) -> usize {
        match self {
            Write::Put { .. } => 0,
            Write::Delete { .. } => 1,
            Write::PutBlob { .. } => 2,
            Write::DeleteBlob { .. } => 3,
        }
    }

    fn blob_file(&self) -> Option<&str> {
        match self {
            Write::PutBlob { file, .. } => Some(file),
            _ => None,
        }
    }
}

/// A decided batch.
#[derive(Default)]
struct Decided {
    results: Vec<Result<Outcome, StoreError>>,
    effects: Vec<Effect>,
    changes: Vec<Change>,
    /// New bodies whose condition failed: nothing ever refers to them.
    rejected_files: Vec<String>,
    /// Bodies the batch replaces or deletes: removed once it is applied to redb.
    replaced_files: Vec<String>,
}

pub(crate) struct Writer<D: Disk> {
    pub db: Arc<Database>,
    pub blobs: PathBuf,
    pub wal: Wal<D>,
    pub overlay: Arc<Overlay>,
    pub shared: Arc<Handoff>,
    pub applier: mpsc::SyncSender<ToApplier>,
    pub applier_thread: Option<JoinHandle<()>>,
    /// The last version handed out.
    pub seq: u64,
    /// The id of the next batch.
    pub next_batch: u64,
    pub changes: broadcast::Sender<Change>,
    pub figures: Arc<Figures>,
}

impl<D: Disk> Writer<D> {
    pub fn run(mut self, rx: mpsc::Receiver<Op>) {
        let mut carried: Option<Op> = None;
        loop {
            let first = match carried.take() {
                Some(op) => op,
                None => rx.recv().unwrap_or(Op::Close),
            };
            let mut bytes = op_bytes(&first);
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH_WRITES {
                match rx.try_recv() {
                    Ok(op) if bytes + op_bytes(&op) > MAX_BATCH_BYTES => {
                        carried = Some(op);
                        break;
                    }
                    Ok(op) => {
                        bytes += op_bytes(&op);
                        batch.push(op);
                    }
                    Err(_) => break,
                }
            }
            let closing = batch.iter().any(|op| matches!(op, Op::Close));
            self.commit(batch);
            if closing {
                let _ = self.applier.send(ToApplier::Close);
                if let Some(t) = self.applier_thread.take() {
                    let _ = t.join();
                }
                return;
            }
        }
    }

    /// One group commit: decide, log and sync, publish, answer, hand to the applier.
    fn commit(&mut self, batch: Vec<Op>) {
        let mut writes = Vec::with_capacity(batch.len());
        let mut dones = Vec::with_capacity(batch.len());
        for op in batch {
            if let Op::Write(w, done) = op {
                writes.push(w);
                dones.push(done);
            }
        }
        if writes.is_empty() {
            return;
        }
        if let Some(reason) = self.shared.failed() {
            let e = StoreError::Io(format!("{reason}; reopen the store"));
            return self.refuse(writes, dones, e, true);
        }
        // Make the renames of this batch's bodies durable before they are logged.
        if writes.iter().any(|w| w.blob_file().is_some()) {
            if let Err(e) = strata_os::fs::sync_dir(&self.blobs) {
                let e = StoreError::Io(format!("sync the blobs directory: {e}"));
                let (mut kept, mut kept_dones) = (Vec::new(), Vec::new());
                for (w, done) in writes.into_iter().zip(dones) {
                    match w.blob_file() {
                        Some(file) => {
                            blob::remove(&self.blobs.join(file));
                            done.send(Err(e.clone()));
                        }
                        None => {
                            kept.push(w);
                            kept_dones.push(done);
                        }
                    }
                }
                if kept.is_empty() {
                    return;
                }
                (writes, dones) = (kept, kept_dones);
            }
        }
        let mut seq = self.seq;
        let decided = match self.decide(&writes, &mut seq) {
            Ok(d) => d,
            Err(e) => {
                self.shared.fail("reading the database failed", &e);
                return self.refuse(writes, dones, e, true);
            }
        };
        for f in &decided.rejected_files {
            blob::remove(&self.blobs.join(f));
        }
        if decided.effects.is_empty() {
            for (done, r) in dones.into_iter().zip(decided.results) {
                done.send(r);
            }
            return;
        }
        let record = wal::encode_batch(self.next_batch, &decided.effects);
        if !self.wal.fits(record.len()) {
            if let Err(e) = self.switch_log() {
                self.shared.fail("moving the log to its other file failed", &e);
                return self.refuse(writes, dones, e, true);
            }
        }
        let appending = std::time::Instant::now();
        if let Err(e) = self.wal.append(&record) {
            let e = StoreError::Io(format!("write the write-ahead log: {e}"));
            self.shared.fail("writing the log failed", &e);
            // The record may have reached the disk anyway: its bodies stay until the
            // next open decides.
            return self.refuse(writes, dones, e, false);
        }
        // Durable.
        self.figures.committed(appending.elapsed());
        for w in &writes {
            self.figures.wrote(w.kind());
        }
        self.seq = seq;
        let id = self.next_batch;
        self.next_batch += 1;
        {
            let mut maps = self.overlay.write();
            for e in &decided.effects {
                publish(&mut maps, e);
            }
        }
        for change in decided.changes {
            // No receiver is fine.
            let _ = self.changes.send(change);
        }
        for (done, r) in dones.into_iter().zip(decided.results) {
            done.send(r);
        }
        let alive = || self.applier_thread.as_ref().is_some_and(|t| !t.is_finished());
        self.shared
            .reserve(decided.effects.iter().map(Effect::value_bytes).sum(), alive);
        let sent = self.applier.send(ToApplier::Batch(Logged {
            id,
            effects: decided.effects,
            wal_end: self.wal.position(),
            unused_files: decided.replaced_files,
        }));
        if sent.is_err() {
            self.shared.fail("the applier stopped", &StoreError::Closed);
        }
    }

    /// Decides each write in order against the batch so far, the overlay and redb.
    fn decide(&self, writes: &[Write], seq: &mut u64) -> Result<Decided, StoreError> {
        // Hold the overlay while the read transaction begins (see `overlay`).
        let maps = self.overlay.read();
        let txn = self.db.begin_read().map_err(db_err)?;
        let values = txn.open_table(VALUES).map_err(db_err)?;
        let blobs = txn.open_table(BLOBS).map_err(db_err)?;
        let state = State {
            maps: &maps,
            values: &values,
            blobs: &blobs,
        };
        let clock_ms = now_ms();
        let mut d = Decided::default();
        // The batch so far: table key -> version (None: absent) / blob record.
        let mut batch_values: HashMap<Vec<u8>, Option<u64>> = HashMap::new();
        let mut batch_blobs: HashMap<Vec<u8>, Option<BlobRecord>> = HashMap::new();
        for w in writes {
            let result = match w.clone() {
                Write::Put { ns, key, value, cond } => {
                    let k = table_key(&ns, &key);
                    let current = match (cond, batch_values.get(&k)) {
                        // An unconditional put needs no lookup.
                        (Cond::Any, _) => None,
                        (_, Some(v)) => *v,
                        (_, None) => state.version(&k)?,
                    };
                    check(cond, current).map(|()| {
                        *seq += 1;
                        batch_values.insert(k.clone(), Some(*seq));
                        d.effects.push(Effect::Value {
                            key: k,
                            version: *seq,
                            updated_ms: clock_ms,
                            value: Some(value),
                        });
                        d.changes.push(change(ns, key, ChangeKind::Value, *seq, false));
                        Outcome::Version(*seq)
                    })
                }
                Write::Delete { ns, key, cond } => {
                    let k = table_key(&ns, &key);
                    let current = match batch_values.get(&k) {
                        Some(v) => *v,
                        None => state.version(&k)?,
                    };
                    check(cond, current).map(|()| {
                        if current.is_none() {
                            return Outcome::Deleted(false);
                        }
                        *seq += 1;
                        batch_values.insert(k.clone(), None);
                        d.effects.push(Effect::Value {
                            key: k,
                            version: *seq,
                            updated_ms: clock_ms,
                            value: None,
                        });
                        d.changes.push(change(ns, key, ChangeKind::Value, *seq, true));
                        Outcome::Deleted(true)
                    })
                }
                Write::PutBlob {
                    ns,
                    name,
                    cond,
                    content_type,
                    size,
                    sha256,
                    file,
                } => {
                    let k = table_key(&ns, &name);
                    let current = match batch_blobs.get(&k) {
                        Some(r) => r.clone(),
                        None => state.blob(&k)?,
                    };
                    match check(cond, current.as_ref().map(|r| r.version)) {
                        Err(e) => {
                            d.rejected_files.push(file);
                            Err(e)
                        }
                        Ok(()) => {
                            *seq += 1;
                            let record = BlobRecord {
                                version: *seq,
                                updated_ms: clock_ms,
                                size,
                                sha256,
                                content_type,
                                file,
                            };
                            if let Some(old) = current {
                                d.replaced_files.push(old.file);
                            }
                            batch_blobs.insert(k.clone(), Some(record.clone()));
                            let meta = record.meta();
                            d.effects.push(Effect::Blob {
                                key: k,
                                version: *seq,
                                record: Some(record),
                            });
                            d.changes.push(change(ns, name, ChangeKind::Blob, *seq, false));
                            Ok(Outcome::Blob(meta))
                        }
                    }
                }
                Write::DeleteBlob { ns, name, cond } => {
                    let k = table_key(&ns, &name);
                    let current = match batch_blobs.get(&k) {
                        Some(r) => r.clone(),
                        None => state.blob(&k)?,
                    };
                    check(cond, current.as_ref().map(|r| r.version)).map(|()| {
                        let Some(old) = current else {
                            return Outcome::Deleted(false);
                        };
                        *seq += 1;
                        d.replaced_files.push(old.file);
                        batch_blobs.insert(k.clone(), None);
                        d.effects.push(Effect::Blob {
                            key: k,
                            version: *seq,
                            record: None,
                        });
                        d.changes.push(change(ns, name, ChangeKind::Blob, *seq, true));
                        Outcome::Deleted(true)
                    })
                }
            };
            d.results.push(result);
        }
        Ok(d)
    }

    /// Moves the log to the start of its other file, after the applier checkpointed
    /// everything logged so far.
    fn switch_log(&mut self) -> Result<(), StoreError> {
        let (done, answer) = mpsc::channel();
        self.applier
            .send(ToApplier::Switch {
                to: self.wal.next_start(),
                done,
            })
            .map_err(|_| StoreError::Closed)?;
        answer.recv().map_err(|_| StoreError::Closed)??;
        self.wal.switch();
        Ok(())
    }

    fn refuse(&self, writes: Vec<Write>, dones: Vec<Done>, e: StoreError, remove_bodies: bool) {
        for (w, done) in writes.into_iter().zip(dones) {
            if let (true, Some(file)) = (remove_bodies, w.blob_file()) {
                blob::remove(&self.blobs.join(file));
            }
            done.send(Err(e.clone()));
        }
    }
}

/// Where a batch's writes look up the current state: overlay first, then redb.
struct State<'a> {
    maps: &'a Maps,
    values: &'a ReadOnlyTable<&'static [u8], &'static [u8]>,
    blobs: &'a ReadOnlyTable<&'static [u8], &'static [u8]>,
}

impl State<'_> {
    fn version(&self, k: &[u8]) -> Result<Option<u64>, StoreError> {
        if let Some(p) = self.maps.values.get(k) {
            return Ok(p.item.as_ref().map(|_| p.version));
        }
        match self.values.get(k).map_err(db_err)? {
            Some(g) => Ok(Some(value_header(g.value())?.0)),
            None => Ok(None),
        }
    }

    fn blob(&self, k: &[u8]) -> Result<Option<BlobRecord>, StoreError> {
        if let Some(p) = self.maps.blobs.get(k) {
            return Ok(p.item.clone());
        }
        match self.blobs.get(k).map_err(db_err)? {
            Some(g) => Ok(Some(BlobRecord::decode(g.value())?)),
            None => Ok(None),
        }
    }
}

/// Puts a durable effect in the overlay.
fn publish(maps: &mut Maps, e: &Effect) {
    match e {
        Effect::Value {
            key,
            version,
            updated_ms,
            value,
        } => {
            let item = value.as_ref().map(|v| PendingValue {
                updated_ms: *updated_ms,
                value: v.clone(),
            });
            maps.values.insert(
                key.clone(),
                Pending {
                    version: *version,
                    item,
                },
            );
        }
        Effect::Blob { key, version, record } => {
            maps.blobs.insert(
                key.clone(),
                Pending {
                    version: *version,
                    item: record.clone(),
                },
            );
        }
    }
}

fn op_bytes(op: &Op) -> usize {
    match op {
        Op::Write(w, _) => w.value_bytes(),
        Op::Close => 0,
    }
}

fn change(ns: String, key: String, kind: ChangeKind, version: u64, deleted: bool) -> Change {
    Change {
        ns,
        key,
        kind,
        version,
        deleted,
    }
}

/// Whether a write with `cond` may go ahead over `current` (the key's version, if any).
pub(crate) fn check(cond: Cond, current: Option<u64>) -> Result<(), StoreError> {
    let ok = match cond {
        Cond::Any => true,
        Cond::Absent => current.is_none(),
        Cond::Version(v) => current == Some(v),
    };
    match ok {
        true => Ok(()),
        false => Err(StoreError::Conflict { current }),
    }
}
