//! [`Store`]: opening (with recovery and crash cleanup), closing, and the async calls.
//! Writes go to the writer thread (`writer`); reads look in the overlay, then in a redb
//! read transaction, on tokio's blocking pool.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use redb::{Database, ReadTransaction, ReadableTable};
use strata_os::disk::{Disk, OsDisk};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{broadcast, oneshot};

use crate::applier::{self, Applier, Handoff, WAL_FILE_BYTES};
use crate::blob::{self, Chunk, Tokens, Upload};
use crate::db_file;
use crate::figures::{Figures, StoreFigures};
use crate::listing::{self, list_bounds};
use crate::overlay::{Maps, Overlay};
use crate::record::{db_err, table_key, value_body, value_header, BlobRecord, BLOBS, META, VALUES};
use crate::writer::{self, Done, Op, Write, Writer};
use crate::{
    check_key, check_namespace, BlobItem, BlobMeta, Change, Cond, Entry, ListItem, Page, StoreError, BLOB_CHUNK,
    MAX_CONTENT_TYPE, MAX_KEY, MAX_LIST,
};

/// Chunks of one upload queued between reading the body and writing the file.
const CHUNKS_IN_FLIGHT: usize = 4;
/// The largest `max_value_bytes` a store takes (64 MiB).
pub const MAX_VALUE_LIMIT: usize = 64 << 20;
/// Logged batches the applier may be behind the writer before the writer waits.
const APPLIER_QUEUE: usize = 64;
/// Content type of a blob stored without one.
const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// Settings of a store; `Default` gives the values in the field docs.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Largest value of `put` (16 MiB; at most [`MAX_VALUE_LIMIT`]).
    pub max_value_bytes: usize,
    /// redb's page cache (64 MiB), filled as pages are read.
    pub cache_bytes: usize,
    /// Changes a `subscribe` receiver may fall behind before it lags (4096).
    pub change_capacity: usize,
    /// Size of a write-ahead log file before the log moves to the other one, after a
    /// checkpoint (64 MiB).
    pub wal_file_bytes: u64,
    /// Largest blob body `put_blob` takes (5 GiB; `store.max_blob_bytes` in the
    /// manifest). An upload going past it is refused while it streams
    /// ([`StoreError::BlobTooLarge`]) and nothing of it is kept.
    pub max_blob_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            max_value_bytes: 16 << 20,
            cache_bytes: 64 << 20,
            change_capacity: 4096,
            wal_file_bytes: WAL_FILE_BYTES,
            max_blob_bytes: 5 << 30,
        }
    }
}

/// What [`Store::open`] found and repaired.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recovery {
    /// Batches of the write-ahead log re-applied to the database (0 after a clean close).
    pub replayed_batches: usize,
    /// Blob files removed: temporary files of cut-short uploads, bodies never committed.
    pub removed_files: usize,
    /// Batch ids of the write-ahead log lost to damage, (first lost, first after): their
    /// writes had been acknowledged. Empty unless the log was damaged.
    pub lost_batches: Vec<(u64, u64)>,
    /// The log ended in a record that is not intact: a write cut short by a crash (never
    /// acknowledged), or damage to the last batch (whose writes were acknowledged and are
    /// lost); the two cannot be told apart.
    pub torn_tail: bool,
}

impl Recovery {
    /// What was lost and repaired at open, one sentence each (empty when nothing was).
    pub fn describe(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .lost_batches
            .iter()
            .map(|(first, after)| {
                format!(
                    "the store's write-ahead log was damaged: batches {first}..{} (acknowledged writes) were lost at open",
                    after.saturating_sub(1)
                )
            })
            .collect();
        if self.torn_tail {
            out.push(
                "the store's write-ahead log ended in a torn batch at open: a write cut short by a crash, or damage to the last acknowledged one"
                    .to_string(),
            );
        }
        out
    }
}

/// A store in one directory. Share it behind an `Arc`; dropping it (or [`Store::close`])
/// stops its threads after everything sent before is durable and checkpointed.
pub struct Store {
    db: Arc<Database>,
    overlay: Arc<Overlay>,
    recovery: Recovery,
    blobs: PathBuf,
    config: StoreConfig,
    tx: mpsc::Sender<Op>,
    writer: Mutex<Option<JoinHandle<()>>>,
    closed: AtomicBool,
    changes: broadcast::Sender<Change>,
    tokens: Tokens,
    figures: Arc<Figures>,
}

fn io_err(what: &str, e: std::io::Error) -> StoreError {
    StoreError::Io(format!("{what}: {e}"))
}

impl Store {
    /// Opens (after a crash: repairs) or creates the store in `dir` with the default
    /// settings. Blocking: disk work, call it from `spawn_blocking` or before the runtime.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_with(dir, StoreConfig::default())
    }

    /// [`Store::open`] with settings.
    pub fn open_with(dir: &Path, config: StoreConfig) -> Result<Store, StoreError> {
        Store::open_on(dir, config, OsDisk)
    }

    /// [`Store::open_with`] with the database and the write-ahead log on `disk` (a test's
    /// fault-injecting disk). Blob bodies are always files of the real file system, under
    /// `dir/blobs`.
    pub fn open_on<D: Disk>(dir: &Path, config: StoreConfig, disk: D) -> Result<Store, StoreError> {
        if config.max_value_bytes > MAX_VALUE_LIMIT {
            return Err(StoreError::BadInput(format!(
                "max_value_bytes is at most {MAX_VALUE_LIMIT}"
            )));
        }
        let blobs = dir.join("blobs");
        disk.create_dir_all(dir)
            .and_then(|()| fs::create_dir_all(&blobs))
            .map_err(|e| io_err("create the store directory", e))?;
        let db = db_file::open(&disk, &dir.join("store.redb"), config.cache_bytes)?;
        let db = Arc::new(db);
        // Create the tables on first open.
        (|| -> Result<(), StoreError> {
            let txn = db.begin_write().map_err(db_err)?;
            txn.open_table(VALUES).map_err(db_err)?;
            txn.open_table(BLOBS).map_err(db_err)?;
            txn.open_table(META).map_err(db_err)?;
            txn.commit().map_err(db_err)
        })()?;
        let recovered = applier::recover(&db, &disk, &dir.join("wal"), config.wal_file_bytes)?;
        // The body files in use, once the log is re-applied.
        let referenced = (|| -> Result<HashSet<String>, StoreError> {
            let txn = db.begin_read().map_err(db_err)?;
            let table = txn.open_table(BLOBS).map_err(db_err)?;
            let mut referenced = HashSet::new();
            for entry in table.iter().map_err(db_err)? {
                let (_, v) = entry.map_err(db_err)?;
                referenced.insert(BlobRecord::decode(v.value())?.file);
            }
            Ok(referenced)
        })()?;
        let removed = blob::clean(&blobs, &referenced).map_err(|e| io_err("clean the blobs directory", e))?;
        if removed > 0 {
            tracing::info!(dir = %dir.display(), removed, "removed blob files left by an interrupted write");
        }
        // Make the directory entries (database file, log and blobs dirs, the store's own)
        // durable: on every open, not only the first, since a first open may have been
        // cut short by a crash after creating them.
        for d in [dir, dir.parent().unwrap_or(dir)] {
            disk.sync_dir(d).map_err(|e| io_err("sync the store directory", e))?;
        }
        let shared = Arc::new(Handoff::default());
        let overlay = Arc::new(Overlay::default());
        let (to_applier, applier_rx) = mpsc::sync_channel(APPLIER_QUEUE);
        let applier = Applier {
            db: db.clone(),
            blobs: blobs.clone(),
            shared: shared.clone(),
            overlay: overlay.clone(),
            seq: recovered.seq,
            batch: recovered.batch,
            wal_end: recovered.wal.position(),
            unchecked: 0,
            last_checkpoint: Instant::now(),
        };
        let applier_thread = std::thread::Builder::new()
            .name("store-applier".into())
            .spawn(move || applier.run(applier_rx))
            .map_err(|e| io_err("start the applier thread", e))?;
        let (changes, _) = broadcast::channel(config.change_capacity.max(1));
        let figures = Arc::new(Figures::default());
        let writer = Writer {
            db: db.clone(),
            blobs: blobs.clone(),
            wal: recovered.wal,
            overlay: overlay.clone(),
            shared,
            applier: to_applier,
            applier_thread: Some(applier_thread),
            seq: recovered.seq,
            next_batch: recovered.batch + 1,
            changes: changes.clone(),
            figures: figures.clone(),
        };
        let (tx, rx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| io_err("start the writer thread", e))?;
        Ok(Store {
            db,
            overlay,
            recovery: Recovery {
                replayed_batches: recovered.replayed,
                removed_files: removed,
                lost_batches: recovered.lost.clone(),
                torn_tail: recovered.torn,
            },
            blobs,
            config,
            tx,
            writer: Mutex::new(Some(handle)),
            closed: AtomicBool::new(false),
            changes,
            tokens: Tokens::new(),
            figures,
        })
    }

    /// Its writes, reads and commit times since it opened.
    pub fn figures(&self) -> StoreFigures {
        self.figures.snapshot()
    }

    /// What opening found and repaired.
    pub fn recovery(&self) -> Recovery {
        self.recovery.clone()
    }

    /// Stops the writer after it committed everything sent before, and the applier after
    /// a last checkpoint; later calls answer [`StoreError::Closed`]. Blocking: waits for
    /// both threads.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let _ = self.tx.send(Op::Close);
        if let Some(handle) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = handle.join();
        }
    }

    /// Every change from now on, once it is durable, in version order. In memory only; a
    /// receiver more than `change_capacity` behind gets `Lagged`.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    // ---------------------------------------------------------------- values

    /// The value of `key` in `ns`, if any.
    pub async fn get(&self, ns: &str, key: &str) -> Result<Option<Entry>, StoreError> {
        check_namespace(ns)?;
        check_key(key)?;
        self.figures.read(0);
        let k = table_key(ns, key);
        self.read(
            move |maps| maps.values.get(&k).cloned().ok_or(k),
            |found, txn| {
                let k = match found {
                    Ok(p) => {
                        return Ok(p.item.map(|v| Entry {
                            value: v.value,
                            version: p.version,
                            updated_ms: v.updated_ms,
                        }))
                    }
                    Err(k) => k,
                };
                let table = txn.open_table(VALUES).map_err(db_err)?;
                let Some(g) = table.get(k.as_slice()).map_err(db_err)? else {
                    return Ok(None);
                };
                let stored = g.value();
                let (version, updated_ms) = value_header(stored)?;
                Ok(Some(Entry {
                    value: Bytes::copy_from_slice(value_body(stored)),
                    version,
                    updated_ms,
                }))
            },
        )
        .await
    }

    /// Writes `value` under `key` if `cond` holds; answers the new version once durable.
    /// A failed condition is [`StoreError::Conflict`] and writes nothing.
    pub async fn put(&self, ns: &str, key: &str, value: Bytes, cond: Cond) -> Result<u64, StoreError> {
        check_namespace(ns)?;
        check_key(key)?;
        if value.len() > self.config.max_value_bytes {
            return Err(StoreError::TooLarge {
                size: value.len() as u64,
                limit: self.config.max_value_bytes as u64,
            });
        }
        self.write(
            Done::Version,
            Write::Put {
                ns: ns.to_string(),
                key: key.to_string(),
                value,
                cond,
            },
        )
        .await
    }

    /// Deletes `key` if `cond` holds; answers whether it existed, once durable.
    /// `Cond::Version` on a missing key is a conflict; `Cond::Any` on one is `Ok(false)`.
    pub async fn delete(&self, ns: &str, key: &str, cond: Cond) -> Result<bool, StoreError> {
        check_namespace(ns)?;
        check_key(key)?;
        self.write(
            Done::Deleted,
            Write::Delete {
                ns: ns.to_string(),
                key: key.to_string(),
                cond,
            },
        )
        .await
    }

    /// Up to `limit` (1 to [`MAX_LIST`]; more is taken as `MAX_LIST`) keys of `ns` that
    /// start with `prefix` and sort after `after`, in byte order, from one snapshot.
    pub async fn list(
        &self,
        ns: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<ListItem>, StoreError> {
        let (ns, prefix, after, limit) = list_args(ns, prefix, after, limit)?;
        self.figures.read(1);
        let (start, _, prefix_key) = list_bounds(&ns, &prefix, after.as_deref());
        self.read(
            move |maps| Maps::range(&maps.values, &start, &prefix_key).collect::<Vec<_>>(),
            move |pending, txn| {
                let table = txn.open_table(VALUES).map_err(db_err)?;
                listing::list_values(&table, &ns, &prefix, after.as_deref(), limit, pending)
            },
        )
        .await
    }

    // ---------------------------------------------------------------- blobs

    /// Streams `body` into blob `name` if `cond` holds (checked once before reading the
    /// body, to fail early, and for good by the writer); answers its metadata once the
    /// body and the metadata are durable. Memory stays bounded (a few chunks of
    /// [`BLOB_CHUNK`] bytes) whatever the size. An empty `content_type` is stored as
    /// `application/octet-stream`. A body longer than [`StoreConfig::max_blob_bytes`] is
    /// refused as soon as it passes it ([`StoreError::BlobTooLarge`]): nothing of it is
    /// kept, and the temporary file is gone when the error is returned.
    ///
    /// Dropping the future before the body ended writes nothing (the temporary file is
    /// removed); once the body ended, the write goes ahead even if the future is dropped.
    pub async fn put_blob<R>(
        &self,
        ns: &str,
        name: &str,
        content_type: &str,
        mut body: R,
        cond: Cond,
    ) -> Result<BlobMeta, StoreError>
    where
        R: AsyncRead + Unpin + Send,
    {
        check_namespace(ns)?;
        check_key(name)?;
        let content_type = check_content_type(content_type)?;
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        if cond != Cond::Any {
            let current = self.head_blob(ns, name).await?.map(|m| m.version);
            writer::check(cond, current)?;
        }
        let (chunks, rx) = tokio::sync::mpsc::channel(CHUNKS_IN_FLIGHT);
        let (done, answer) = oneshot::channel();
        let upload = Upload {
            dir: self.blobs.clone(),
            ns: ns.to_string(),
            name: name.to_string(),
            token: self.tokens.next(),
        };
        let writer = self.tx.clone();
        tokio::task::spawn_blocking(move || ingest_and_commit(upload, rx, content_type, cond, writer, done));
        let limit = self.config.max_blob_bytes;
        let mut total = 0u64;
        let mut buf = BytesMut::new();
        loop {
            buf.reserve(BLOB_CHUNK);
            let mut ended = false;
            while buf.len() < BLOB_CHUNK {
                // On an error `chunks` is dropped without `End`: the upload is abandoned.
                let n = body
                    .read_buf(&mut buf)
                    .await
                    .map_err(|e| StoreError::Body(e.to_string()))?;
                if n == 0 {
                    ended = true;
                    break;
                }
                total += n as u64;
                if total > limit {
                    // Abandoned: the blocking side removes what it wrote, then drops its
                    // answer, which is what is waited for here.
                    drop(chunks);
                    let _ = answer.await;
                    return Err(StoreError::BlobTooLarge { limit });
                }
            }
            // A failed send means the blocking side stopped on a disk error: its answer
            // says which.
            if !buf.is_empty() && chunks.send(Chunk::Data(buf.split().freeze())).await.is_err() {
                break;
            }
            if ended {
                let _ = chunks.send(Chunk::End).await;
                break;
            }
        }
        drop(chunks);
        answer
            .await
            .map_err(|_| StoreError::Io("the blob upload stopped unexpectedly".into()))?
    }

    /// The metadata of blob `name` and its body, opened for reading: the file keeps
    /// this body even if the blob is replaced or deleted while it is read.
    pub async fn get_blob(&self, ns: &str, name: &str) -> Result<Option<(BlobMeta, tokio::fs::File)>, StoreError> {
        check_namespace(ns)?;
        check_key(name)?;
        self.figures.read(2);
        let k = table_key(ns, name);
        // The read snapshot keeps the metadata, not the file: a writer that replaced or
        // deleted the blob after the snapshot may have removed that body already. Another
        // try reads the newer metadata.
        for _ in 0..8 {
            let (k, blobs) = (k.clone(), self.blobs.clone());
            let opened = self
                .read(
                    move |maps| maps.blobs.get(&k).map(|p| p.item.clone()).ok_or(k),
                    move |found, txn| {
                        let Some(rec) = blob_record(found, txn)? else {
                            return Ok(Opened::Missing);
                        };
                        match fs::File::open(blobs.join(&rec.file)) {
                            Ok(f) => Ok(Opened::Found(rec.meta(), f)),
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Opened::Replaced),
                            Err(e) => Err(io_err("open the blob body", e)),
                        }
                    },
                )
                .await?;
            match opened {
                Opened::Missing => return Ok(None),
                Opened::Found(meta, f) => return Ok(Some((meta, tokio::fs::File::from_std(f)))),
                Opened::Replaced => continue,
            }
        }
        Err(StoreError::Io(
            "the blob was replaced again and again while being opened; try again".into(),
        ))
    }

    /// The metadata of blob `name`, without opening its body.
    pub async fn head_blob(&self, ns: &str, name: &str) -> Result<Option<BlobMeta>, StoreError> {
        check_namespace(ns)?;
        check_key(name)?;
        let k = table_key(ns, name);
        self.read(
            move |maps| maps.blobs.get(&k).map(|p| p.item.clone()).ok_or(k),
            |found, txn| Ok(blob_record(found, txn)?.map(|r| r.meta())),
        )
        .await
    }

    /// Deletes blob `name` if `cond` holds; answers whether it existed, once durable. The
    /// body file is removed once the database has the delete (readers that opened it
    /// keep reading).
    pub async fn delete_blob(&self, ns: &str, name: &str, cond: Cond) -> Result<bool, StoreError> {
        check_namespace(ns)?;
        check_key(name)?;
        self.write(
            Done::Deleted,
            Write::DeleteBlob {
                ns: ns.to_string(),
                name: name.to_string(),
                cond,
            },
        )
        .await
    }

    /// Like [`Store::list`], for blobs.
    pub async fn list_blobs(
        &self,
        ns: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<BlobItem>, StoreError> {
        let (ns, prefix, after, limit) = list_args(ns, prefix, after, limit)?;
        self.figures.read(3);
        let (start, _, prefix_key) = list_bounds(&ns, &prefix, after.as_deref());
        self.read(
            move |maps| Maps::range(&maps.blobs, &start, &prefix_key).collect::<Vec<_>>(),
            move |pending, txn| {
                let table = txn.open_table(BLOBS).map_err(db_err)?;
                listing::list_blobs(&table, &ns, &prefix, after.as_deref(), limit, pending)
            },
        )
        .await
    }

    // ---------------------------------------------------------------- plumbing

    /// Sends a write to the writer and waits for its answer (given once it is durable).
    async fn write<T>(
        &self,
        done: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Done,
        write: Write,
    ) -> Result<T, StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let (tx, answer) = oneshot::channel();
        self.tx
            .send(Op::Write(write, done(tx)))
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// On tokio's blocking pool: takes what `pick` finds in the overlay, and begins a
    /// read transaction before letting the overlay go (see `overlay`); then runs `f`.
    async fn read<P: Send + 'static, T: Send + 'static>(
        &self,
        pick: impl FnOnce(&Maps) -> P + Send + 'static,
        f: impl FnOnce(P, &ReadTransaction) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let (db, overlay) = (self.db.clone(), self.overlay.clone());
        tokio::task::spawn_blocking(move || {
            let (picked, txn) = {
                let maps = overlay.read();
                let picked = pick(&maps);
                (picked, db.begin_read().map_err(db_err)?)
            };
            f(picked, &txn)
        })
        .await
        .map_err(|e| StoreError::Io(format!("a read task failed: {e}")))?
    }
}

/// The blocking side of [`Store::put_blob`]: writes the body into its file
/// ([`blob::ingest`]), then hands its metadata to the writer, which answers `done`. A body
/// cut short answers nobody (the caller is gone or saw its own body fail).
fn ingest_and_commit(
    upload: Upload,
    chunks: tokio::sync::mpsc::Receiver<Chunk>,
    content_type: String,
    cond: Cond,
    writer: mpsc::Sender<Op>,
    done: oneshot::Sender<Result<BlobMeta, StoreError>>,
) {
    let body = match blob::ingest(&upload, chunks) {
        Ok(Some(body)) => body,
        Ok(None) => return,
        Err(e) => {
            let _ = done.send(Err(e));
            return;
        }
    };
    let path = upload.dir.join(&body.file);
    let write = Write::PutBlob {
        ns: upload.ns,
        name: upload.name,
        cond,
        content_type,
        size: body.size,
        sha256: body.sha256,
        file: body.file,
    };
    if let Err(mpsc::SendError(Op::Write(_, Done::Blob(done)))) = writer.send(Op::Write(write, Done::Blob(done))) {
        blob::remove(&path);
        let _ = done.send(Err(StoreError::Closed));
    }
}

/// A blob's record: the overlay's (`Ok`, None: deleted), or else redb's.
fn blob_record(
    found: Result<Option<BlobRecord>, Vec<u8>>,
    txn: &ReadTransaction,
) -> Result<Option<BlobRecord>, StoreError> {
    let k = match found {
        Ok(pending) => return Ok(pending),
        Err(k) => k,
    };
    let table = txn.open_table(BLOBS).map_err(db_err)?;
    let found = table.get(k.as_slice()).map_err(db_err)?;
    found.map(|g| BlobRecord::decode(g.value())).transpose()
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}

enum Opened {
    Missing,
    Found(BlobMeta, fs::File),
    /// The body named by the metadata is gone: the blob changed meanwhile.
    Replaced,
}

type ListArgs = (String, String, Option<String>, usize);

fn list_args(ns: &str, prefix: &str, after: Option<&str>, limit: usize) -> Result<ListArgs, StoreError> {
    check_namespace(ns)?;
    if prefix.len() > MAX_KEY || after.is_some_and(|a| a.len() > MAX_KEY) {
        return Err(StoreError::BadInput(format!(
            "a prefix or cursor must be at most {MAX_KEY} bytes"
        )));
    }
    if limit == 0 {
        return Err(StoreError::BadInput("limit must be at least 1".into()));
    }
    Ok((
        ns.to_string(),
        prefix.to_string(),
        after.map(str::to_string),
        limit.min(MAX_LIST),
    ))
}

fn check_content_type(ct: &str) -> Result<String, StoreError> {
    if ct.is_empty() {
        return Ok(DEFAULT_CONTENT_TYPE.to_string());
    }
    if ct.len() > MAX_CONTENT_TYPE || !ct.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(StoreError::BadInput(format!(
            "a content type must be at most {MAX_CONTENT_TYPE} printable ASCII characters"
        )));
    }
    Ok(ct.to_string())
}
