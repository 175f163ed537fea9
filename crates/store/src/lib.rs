//! The store: a durable key-value store with a version per key, compare-and-set and
//! prefix listing, and blobs streamed in and out, both namespaced (one namespace per app,
//! or any name). No HTTP in here; the node API maps it to routes.
//!
//! Layout, bottom-up: each module uses only the ones above it (named in parentheses).
//! - This file, the crate root: the public vocabulary ([`StoreError`], [`Cond`],
//!   [`Entry`], [`Page`], [`Change`], ...), the limits and the name checks. Every module
//!   uses it; it uses no module (it only re-exports [`Store`] and its settings).
//! - `record`: the tables in the database file, their encodings, database errors.
//! - `overlay` (record): logged effects not yet in redb, so reads see a write once it is
//!   answered.
//! - `db_file` (record): `store.redb` on the store's disk: redb's storage backend over a
//!   [`strata_os::disk::DiskFile`], locked against a second opener.
//! - `wal` (record): the write-ahead log: two files taking turns, one record per batch,
//!   holding the batch's effects.
//! - `blob` (record): blob body files (streaming in under a temporary name, the rename
//!   into place, cleaning up after a crash).
//! - `listing` (record, overlay): a listing page, merged from redb's table and the
//!   overlay.
//! - `applier` (record, overlay, wal, blob): the applier thread, the only writer of redb:
//!   applies logged batches in non-durable commits, checkpoints, and re-applies the log at
//!   open (`recover`).
//! - `writer` (record, overlay, wal, blob, applier): the writer thread. It decides every
//!   write (conditions, versions), makes each batch durable in the write-ahead log (group
//!   commit), publishes it, answers.
//! - [`Store`] (`store`; all of the above): open (with recovery), close, and the async
//!   calls below.
//!
//! On disk: `DIR/store.redb` is a [redb](https://docs.rs/redb) database (values, blob
//! metadata, the checkpoint), `DIR/wal/{0,1}.log` the write-ahead log, `DIR/blobs/` one
//! file per blob body. The database and the log go through a [`strata_os::disk::Disk`]
//! ([`Store::open_on`]): the real file system by default, or in tests one that cuts the
//! power and fails syncs (`tests/power_cut.rs`); blob bodies are always real files.
//!
//! # Why a log in front of redb
//!
//! A durable redb commit (`Durability::Immediate`, one-phase with checksums) costs one
//! `fdatasync`, but of five or six pages written all over the file (the leaf, the table
//! tree, the freed tree, the header...), plus some 30 us of CPU: measured at 1.8-2.1x a
//! raw `fdatasync` of a small append (`bench/store.sh`), against a target of 1.5x. So a
//! batch is made durable by one `pwrite` + `fdatasync` of a record appended to a log file
//! zero-filled ahead of it (what a raw `fdatasync` costs), and redb gets the batch
//! afterwards from the applier thread in a non-durable commit; a durable redb commit
//! (checkpoint) every [`CHECKPOINT_BATCHES`] batches or [`CHECKPOINT_INTERVAL`] bounds
//! what open has to re-apply. redb stays the store of record: the log only ever holds
//! what came after its last checkpoint.
//!
//! # Calls
//!
//! | call | blocks on | answered when |
//! |---|---|---|
//! | [`Store::open`] (and `open_with`, `open_on`), [`Store::close`] | the calling thread (disk) | opened and recovered / closed and checkpointed |
//! | [`Store::get`], [`Store::list`], [`Store::head_blob`], [`Store::list_blobs`] | blocking pool | read |
//! | [`Store::put`], [`Store::delete`], [`Store::delete_blob`] | writer thread | durable (or refused: conflict) |
//! | [`Store::put_blob`] | reads the body on the caller's task, writes it on the blocking pool | body and metadata durable |
//! | [`Store::get_blob`] | blocking pool | metadata read and body file opened |
//! | [`Store::subscribe`] | nothing | a receiver of every durable change from now on |
//!
//! # Guarantees
//!
//! - **Acknowledged means durable.** `put`, `delete`, `put_blob` and `delete_blob` answer
//!   `Ok` only after the write's batch is in the write-ahead log and synced
//!   (`fdatasync`), and, for a blob, after its body file and the directory entry were
//!   synced before that. After a crash (`kill -9`, or a power cut on a disk that honours
//!   flushes) open re-applies the log: every acknowledged write is there. A write that was
//!   not acknowledged may or may not be there, but never half of it: a batch is atomic.
//! - **Group commit.** Every write goes to one writer thread, which takes everything
//!   waiting (up to [`MAX_BATCH_WRITES`] writes or [`MAX_BATCH_BYTES`] of values) as one
//!   batch with one log record and one sync. Conditions are checked in the order the
//!   writes reached the writer, each against what the writes before it left, so a failed
//!   condition fails only its own write (and a batch of failed conditions syncs nothing).
//!   One task's writes (each awaited before the next) are applied in its order.
//! - **Versions.** Every successful write (value, blob, or delete) takes the next number
//!   of one store-wide counter as its version. So a key's versions strictly increase and
//!   are never reused, even across a delete and a re-create (a stale `Cond::Version` can
//!   never match a newer value), but they are not consecutive per key.
//! - **Reads** see every write acknowledged before the read started (and possibly later
//!   ones), and never one that is not durable yet. A `get` or a listing page is one
//!   consistent snapshot; successive pages are not one snapshot.
//! - **Change feed.** [`Store::subscribe`] hands out every change once it is durable, in
//!   version order. It is in memory only: a subscriber that falls behind by more than
//!   [`StoreConfig::change_capacity`] changes gets `RecvError::Lagged` and must re-read;
//!   nothing is replayed after a restart.
//! - **Blobs** stream in and out without holding a whole body in memory (chunks of
//!   [`BLOB_CHUNK`] bytes, a few in flight), up to [`StoreConfig::max_blob_bytes`] (5 GiB
//!   by default; a longer body is refused while it streams and leaves nothing). The ETag
//!   is the hex SHA-256 of the body. A reader that opened a blob keeps reading the body it
//!   opened even if the blob is replaced or deleted meanwhile.
//! - **Async runtime.** No call does disk work or long CPU work on the async runtime:
//!   writes wait on the writer thread; reads (`get`, `list`, `get_blob`, ...) run on
//!   tokio's blocking pool (a read is usually a lookup in the overlay or redb's page
//!   cache, but a cache miss is a `pread`, so it is not done in place); a blob body is
//!   hashed and written on the blocking pool.
//! - **Crash cleanup.** On open, redb repairs its file after an unclean shutdown (it walks
//!   the whole database checking checksums: time in proportion to its size), the log is
//!   re-applied from the last checkpoint ([`Store::recovery`] says how much), and blob
//!   files no committed metadata refers to (the temporary file of an upload cut short, a
//!   body renamed into place whose metadata never committed) are removed.
//! - **Failures.** After a failed log write or sync, or database commit, the store
//!   answers [`StoreError::Io`] to every later write until it is reopened (reads go on,
//!   and never show the failed write). It never retries a failed `fdatasync`: one that
//!   failed may have dropped the data it was to cover, and a second would succeed
//!   without it.
//! - **Versions after a crash.** A version answered for a write is never handed out
//!   again, even after a power cut; one handed out for a write that was not answered may
//!   be.
//! - **Damage.** A damaged batch of the log is skipped and reported
//!   ([`Recovery::lost_batches`]); a damaged last batch cannot be told from a write cut
//!   short by a crash, and is reported as [`Recovery::torn_tail`].

mod applier;
mod backend;
mod blob;
mod counted;
mod db_file;
mod figures;
mod listing;
mod overlay;
mod record;
pub mod repair;
mod store;
mod wal;
mod writer;

use bytes::Bytes;
use serde::Serialize;

pub use applier::{CHECKPOINT_BATCHES, CHECKPOINT_INTERVAL};
pub use backend::{app_namespace, BlobBody, FailedStore, StoreBackend};
pub use counted::Counted;
pub use figures::{StoreFigures, READ_KINDS, WRITE_KINDS};
pub use store::{Recovery, Store, StoreConfig, MAX_VALUE_LIMIT};

/// Longest namespace, in bytes.
pub const MAX_NAMESPACE: usize = 128;
/// Longest key or blob name, in bytes.
pub const MAX_KEY: usize = 1024;
/// Most items in one listing page.
pub const MAX_LIST: usize = 1000;
/// Longest blob content type, in bytes.
pub const MAX_CONTENT_TYPE: usize = 256;
/// Most writes one group commit takes.
pub const MAX_BATCH_WRITES: usize = 1024;
/// Most value bytes one group commit takes (a single larger write still goes alone).
pub const MAX_BATCH_BYTES: usize = 32 << 20;
/// A blob body is read, hashed and written in chunks of this size.
pub const BLOB_CHUNK: usize = 256 << 10;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// The write's condition did not hold; nothing was written. `current` is the version
    /// found (None: no such key).
    #[error("the condition failed: the current version is {}", match current { Some(v) => v.to_string(), None => "none (no such key)".into() })]
    Conflict { current: Option<u64> },
    #[error("the value is {size} bytes, over the limit of {limit}")]
    TooLarge { size: u64, limit: u64 },
    /// A blob body went past the store's limit while it streamed in; nothing of it was
    /// kept.
    #[error("the blob is over the store's limit of {limit} bytes (store.max_blob_bytes in the manifest); nothing of it was kept")]
    BlobTooLarge { limit: u64 },
    /// A namespace, key, name, prefix, content type or limit that is not allowed.
    #[error("{0}")]
    BadInput(String),
    /// Reading the blob body from the caller failed; nothing was written.
    #[error("reading the blob body failed: {0}")]
    Body(String),
    #[error("the store is closed")]
    Closed,
    /// The store's files could not be opened at start: it serves nothing until repaired;
    /// the rest of the node works.
    #[error(
        "the store is out of service: {0} (the node's log has the details; stop the node and run `strata repair --store` to salvage what can be read)"
    )]
    Failed(String),
    /// The disk or the database failed. After a failed log write or database commit the
    /// store refuses every later write until it is reopened.
    #[error("disk: {0}")]
    Io(String),
    /// The cluster's store did not answer (its servers being lost or elected): retry. A
    /// write that got no answer may or may not have been applied; a conditional write
    /// (`If-Match`) retried is applied at most once.
    #[error("the cluster's store did not answer: {0}; retry (a write without an answer may have been applied)")]
    Unavailable(String),
}

/// The condition of a write, checked inside the write's transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cond {
    /// Always write.
    #[default]
    Any,
    /// Only if the key does not exist (create).
    Absent,
    /// Only if the key exists with this version (compare-and-set).
    Version(u64),
}

/// A stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub value: Bytes,
    pub version: u64,
    /// Wall-clock time of the commit that wrote it, in ms since the Unix epoch.
    pub updated_ms: u64,
}

/// One key of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListItem {
    pub key: String,
    pub version: u64,
    /// Value size in bytes.
    pub size: u64,
    pub updated_ms: u64,
}

/// A blob's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlobMeta {
    pub size: u64,
    /// Hex SHA-256 of the body.
    pub etag: String,
    pub content_type: String,
    pub version: u64,
    pub updated_ms: u64,
}

/// One blob of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlobItem {
    pub name: String,
    #[serde(flatten)]
    pub meta: BlobMeta,
}

/// One page of a listing, in byte order of the keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Set when more may follow: pass it as `after` to get the next page.
    pub next: Option<String>,
}

/// What a change touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Value,
    Blob,
}

/// One committed change, as sent to [`Store::subscribe`] receivers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub ns: String,
    /// The key, or the blob name.
    pub key: String,
    pub kind: ChangeKind,
    /// The version the write took (for a delete, the delete's own version).
    pub version: u64,
    pub deleted: bool,
}

/// Checks a namespace: 1 to [`MAX_NAMESPACE`] bytes, no NUL.
pub fn check_namespace(ns: &str) -> Result<(), StoreError> {
    if ns.is_empty() || ns.len() > MAX_NAMESPACE || ns.contains('\0') {
        return Err(StoreError::BadInput(format!(
            "a namespace must be 1 to {MAX_NAMESPACE} bytes without NUL, not {:?}",
            truncated(ns)
        )));
    }
    Ok(())
}

/// Checks a key or blob name: 1 to [`MAX_KEY`] bytes.
pub fn check_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(StoreError::BadInput(format!(
            "a key must be 1 to {MAX_KEY} bytes, not {}",
            key.len()
        )));
    }
    Ok(())
}

fn truncated(s: &str) -> &str {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
