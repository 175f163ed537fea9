//! [`JetStreamStore`]: the store ([`StoreBackend`]) of a cluster node, kept in
//! JetStream so that it survives losing a machine. Same contract as the embedded store
//! (`docs/state.md`, `strata_store`): versions, compare-and-set, listing pages, blobs
//! streamed in and out, the change feed; the store conformance suite runs against it
//! (`tests/conformance_store.rs`).
//!
//! Layout: this file (opening, the calls, the trait), `buckets` (creating or opening
//! the buckets), `keys` (namespaces and keys as KV keys), `cas` (conditional writes on
//! one key), `scan` (a namespace's keys for listing; a whole bucket for the sweep),
//! `blobs` (blob bodies in the object store, their reader, the sweep), `feed` (the
//! background task: change feed, deferred body removal).
//!
//! # Where the data is
//!
//! Three buckets named from a prefix (`strata_state` in production), each a stream
//! with file storage, `replicas` replicas and history 1:
//! - `PREFIX_kv`: the values; the KV key of `key` in namespace `ns` is
//!   `enc(ns).enc(key)` (`keys`: a byte-wise escape, so that a namespace is one subject
//!   token and `enc(ns).*` filters exactly one namespace).
//! - `PREFIX_blobmeta`: per blob name, a JSON record (the body's object, size, ETag,
//!   content type, time); the same keys.
//! - `PREFIX_blobs`: an object store bucket; each body is one object named by a fresh
//!   nuid, never overwritten.
//!
//! A version is the entry's KV revision (its stream sequence): it strictly increases
//! within a bucket and is never reused, so a stale `Cond::Version` never matches. A
//! value's and a blob's versions come from two counters.
//!
//! # Calls
//!
//! | call | costs | answered when |
//! |---|---|---|
//! | `get` | one message get, answered by the stream leader | read |
//! | `get_blob` | a get of the metadata and of the body's first chunk; then a get per chunk as the body is read | metadata and first chunk read |
//! | `put` (`Cond::Any`) | one publish | stored on a quorum of replicas |
//! | `put` (`Absent`) | a publish expecting no message for the key; when there is one (a delete marker, say), as below | stored on a quorum |
//! | `put` (`Version`), `delete`, `delete_blob` | a get, then a publish expecting the revision read (again while another writer slips in) | stored on a quorum |
//! | `put_blob` | the body's chunks (four unacknowledged at a time), the object's info, then a compare-and-set of the metadata as above | all stored on a quorum |
//! | `list`, `list_blobs` | **a key scan of the namespace** (a stream info request listing every key of the namespace, whatever the prefix and limit), then a get of each key from the cursor on, 16 at a time, until the page is full (deleted keys in that range included: a delete leaves a marker) | read |
//! | `subscribe` | nothing | a receiver of every change from now on |
//! | `close` | nothing (the background task is stopped) | at once |
//!
//! # Guarantees
//!
//! - **Acknowledged means stored on a quorum.** A write is answered once JetStream
//!   acknowledged it: the stream's leader has it and a majority of the replicas have
//!   stored it, so it survives losing any minority of the servers (one of three). What
//!   "stored" means on each server is its `sync_interval`: by default a server writes to
//!   the OS and fsyncs every two minutes, so an acknowledged write survives the kill of
//!   any process and the loss of one machine, but a power cut that takes a majority of
//!   the machines at once may lose the last two minutes; with `sync_interval: always`
//!   every server fsyncs before it acknowledges, and an acknowledged write is on disk on
//!   a majority (on these machines that took a single publish from p50 84 µs to 306 µs,
//!   DESIGN.md). The test clusters run with `always`.
//! - **Compare-and-set** is JetStream's expected-last-subject-sequence check, decided
//!   by the stream leader. A `Cond::Version` write first reads the key (a delete's
//!   marker holds a revision too, and must not match); a failed condition answers the
//!   version read after the failed write.
//! - **Reads** see every write acknowledged before they started: the buckets are
//!   created with direct gets off, so a `get` is answered by the stream leader, never by
//!   a follower that may lag (JetStream's default for KV, direct gets, may answer from
//!   any replica). The exception is JetStream's own: an old leader that does not know
//!   yet it was replaced may answer for a moment.
//! - **Listing** takes the namespace's keys from the stream leader, then reads the
//!   entries as `get` does: it sees every write acknowledged before it started, but a
//!   page is not one snapshot if writes land while it is read. Past 100,000 keys in a
//!   namespace the key scan comes in pages that keys added meanwhile can shift.
//! - **Blobs** stream in (chunks of at most 128 KiB, four unacknowledged at a time) and
//!   out (a chunk at a time, each got from the stream leader, so a read takes no
//!   consumer; the SHA-256 is checked against the ETag at the end); the ETag is the hex
//!   SHA-256, counted while streaming, as is the size, capped at `max_blob_bytes` (past
//!   it: `BlobTooLarge`, and the partial object is removed once its chunks in flight
//!   are acknowledged). The metadata is written only after the whole body is stored,
//!   as a compare-and-set with the blob's `Cond`; a failed condition removes the new
//!   body (a metadata write that fails otherwise, a timeout, may have been stored: its
//!   body stays, for the sweep if no metadata refers to it). A replaced or deleted body
//!   is removed [`JetStreamStoreConfig::reader_grace`] later, so that a reader that
//!   opened it keeps reading it for that long; a reader still going then fails with an
//!   error (never a wrong body).
//! - **Orphans.** A body whose metadata write never happened (the node died between the
//!   two writes, or the upload was dropped) is never served: no metadata points at it.
//!   [`JetStreamStore::open`] sweeps such objects: every object no metadata refers to
//!   whose info was last written more than [`JetStreamStoreConfig::sweep_age`] ago (an
//!   upload in progress rewrites its info every minute). The same sweep takes the
//!   bodies whose deferred removal was lost with the node that deferred it, and so may
//!   also end, early, the grace of a body replaced on another node a moment before.
//! - **Change feed.** One task per store watches both KV buckets from the open on and
//!   hands each change (a value or a blob, its revision, deleted or not) to every
//!   subscriber, in revision order per bucket. In memory only, like the embedded
//!   store's: a subscriber more than `change_capacity` behind gets `Lagged`. With
//!   [`JetStreamStoreConfig::shared_feed`] the stores opened with one name share a
//!   durable pull consumer per bucket instead: each change reaches one of them (the
//!   others never see it), acknowledged once handed to the subscribers, and changes
//!   made while none was open wait for the next (a cluster's store triggers).
//! - **Limits** are the embedded store's: namespaces, keys and content types are checked
//!   by the same rules; a value is at most `max_value_bytes` and at most what a NATS
//!   message may carry (the servers' `max_payload`, 1 MiB by default, less room for
//!   headers): raise `max_payload` (up to 64 MB) to take the embedded store's 16 MiB.
//! - **Failures.** A write that times out may or may not have been stored (as with any
//!   replicated store); it answers `StoreError::Unavailable` (503: retry), as does any
//!   other JetStream failure. While the node is cut off from every server, `failure()`
//!   says so.
//! - **Delete markers** stay: a deleted key keeps one marker message (KV history 1), so
//!   the stream and a listing's key scan grow with every key ever deleted. Purging old
//!   markers (as the Go client's `PurgeDeletes` does) is not done yet.

mod blobs;
mod buckets;
mod cas;
mod feed;
mod keys;
mod scan;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _};
use async_nats::jetstream;
use async_nats::jetstream::kv;
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use strata_store::{
    check_key, check_namespace, BlobBody, BlobItem, BlobMeta, Change, ChangeKind, Cond, Entry, ListItem, Page,
    StoreBackend, StoreConfig, StoreError, MAX_CONTENT_TYPE, MAX_KEY, MAX_LIST, MAX_VALUE_LIMIT,
};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use blobs::{BlobRecord, Objects};
use buckets::{ensure_kv, ensure_stream};
use cas::{check, delete, heard, read, refused, write, Found};

/// Content type of a blob stored without one (as in the embedded store).
const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";
/// Bytes of a blob chunk message (the object store's default), at most.
const CHUNK_BYTES: usize = 128 << 10;
/// Room left in a NATS message for the headers of a KV write.
const HEADER_ROOM: usize = 1024;
/// Entries a listing page reads at once.
const READ_AHEAD: usize = 16;

/// The durable consumer `name` on `store`'s stream, from the changes made after it was
/// first created on; its messages.
async fn shared_consumer(
    store: &kv::Store,
    name: &str,
) -> anyhow::Result<async_nats::jetstream::consumer::pull::Stream> {
    use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
    let consumer = store
        .stream
        .get_or_create_consumer(
            name,
            pull::Config {
                durable_name: Some(name.to_string()),
                deliver_policy: DeliverPolicy::New,
                ack_policy: AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                filter_subject: format!("{}>", store.prefix),
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("the shared change feed {name}"))?;
    consumer
        .messages()
        .await
        .with_context(|| format!("read the shared change feed {name}"))
}

/// Settings of a [`JetStreamStore`]; `Default` gives the values in the field docs.
#[derive(Debug, Clone)]
pub struct JetStreamStoreConfig {
    /// Largest value of `put` (16 MiB, as the embedded store; at most
    /// `strata_store::MAX_VALUE_LIMIT`, and at most what the servers' `max_payload`
    /// lets a message carry).
    pub max_value_bytes: usize,
    /// Largest blob body (5 GiB; `store.max_blob_bytes` in the manifest).
    pub max_blob_bytes: u64,
    /// Changes a `subscribe` receiver may fall behind before it lags (4096).
    pub change_capacity: usize,
    /// How long a replaced or deleted blob's body is kept for readers that opened it
    /// (60 s).
    pub reader_grace: Duration,
    /// How old an object no metadata refers to must be for the sweep at open to remove
    /// it (10 min).
    pub sweep_age: Duration,
    /// None: the change feed hands every change to every store (a watch each). A name:
    /// every store opened with that name shares one durable feed, and each change goes
    /// to one of them (how a cluster fires a store trigger once, on one node, and keeps
    /// the changes made while no node was listening). Letters, digits, `-`, `_`.
    pub shared_feed: Option<String>,
}

impl Default for JetStreamStoreConfig {
    fn default() -> Self {
        let embedded = StoreConfig::default();
        JetStreamStoreConfig {
            max_value_bytes: embedded.max_value_bytes,
            max_blob_bytes: embedded.max_blob_bytes,
            change_capacity: embedded.change_capacity,
            reader_grace: Duration::from_secs(60),
            sweep_age: Duration::from_secs(600),
            shared_feed: None,
        }
    }
}

/// The store in JetStream KV and object store buckets. Share it behind an `Arc`;
/// dropping it (or [`StoreBackend::close`]) stops its background task.
pub struct JetStreamStore {
    client: async_nats::Client,
    js: jetstream::Context,
    values: kv::Store,
    metas: kv::Store,
    objects: Objects,
    max_value_bytes: usize,
    max_blob_bytes: u64,
    changes: broadcast::Sender<Change>,
    doomed: mpsc::UnboundedSender<String>,
    closed: AtomicBool,
    cancel: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
    /// Each bucket's copies in words, refreshed every [`PLACEMENT_EVERY`].
    placement: Arc<Mutex<Vec<String>>>,
}

/// How often a store reads where its buckets' copies are (for `ps`).
const PLACEMENT_EVERY: Duration = Duration::from_secs(5);

impl JetStreamStore {
    /// Opens (creating them if need be) the buckets `{prefix}_kv`, `{prefix}_blobmeta`
    /// and `{prefix}_blobs` with `replicas` replicas, sweeps the blob objects left by
    /// interrupted uploads, and starts the change feed. `prefix` is letters, digits, `-`
    /// and `_`. Fails when JetStream does not answer (a caller starting with the cluster
    /// retries).
    pub async fn open(
        js: &jetstream::Context,
        prefix: &str,
        replicas: usize,
        config: JetStreamStoreConfig,
    ) -> anyhow::Result<JetStreamStore> {
        if !crate::is_key_safe(prefix) {
            bail!("a store prefix is letters, digits, '-' and '_', not {prefix:?}");
        }
        if config.max_value_bytes > MAX_VALUE_LIMIT {
            bail!("max_value_bytes is at most {MAX_VALUE_LIMIT}");
        }
        let replicas = replicas.max(1);
        let client = js.client();
        let max_payload = match client.server_info().max_payload {
            0 => 1 << 20,
            n => n,
        };
        let values = ensure_kv(js, &format!("{prefix}_kv"), replicas).await?;
        let metas = ensure_kv(js, &format!("{prefix}_blobmeta"), replicas).await?;
        let objects_bucket = format!("{prefix}_blobs");
        let objects_stream = ensure_stream(js, blobs::stream_config(&objects_bucket, replicas)).await?;
        let objects = Objects::new(
            objects_bucket.clone(),
            js.clone(),
            blobs::object_store(js, &objects_bucket).await?,
            objects_stream,
            CHUNK_BYTES.min(max_payload.saturating_sub(HEADER_ROOM)).max(1),
        );
        if let Some(name) = &config.shared_feed {
            if !crate::is_key_safe(name) {
                bail!("a shared feed's name is letters, digits, '-' and '_', not {name:?}");
            }
        }
        // The watches start here: every change from now on reaches the feed.
        let watched = |store: &kv::Store, kind| {
            let store = store.clone();
            async move {
                let last = store.stream.cached_info().state.last_sequence;
                let watch = store.watch_all().await.context("watch the store's changes")?;
                anyhow::Ok(feed::Watched {
                    store,
                    watch,
                    kind,
                    last,
                })
            }
        };
        let source = match &config.shared_feed {
            None => feed::Source::Watch {
                values: Box::new(watched(&values, ChangeKind::Value).await?),
                metas: Box::new(watched(&metas, ChangeKind::Blob).await?),
            },
            Some(name) => feed::Source::Shared(Box::new(feed::Shared {
                values: shared_consumer(&values, &format!("{name}_values")).await?,
                metas: shared_consumer(&metas, &format!("{name}_blobs")).await?,
                values_prefix: values.prefix.clone(),
                metas_prefix: metas.prefix.clone(),
            })),
        };
        let (changes, _) = broadcast::channel(config.change_capacity.max(1));
        let (doomed, doomed_rx) = mpsc::unbounded_channel();
        let store = JetStreamStore {
            client,
            js: js.clone(),
            values,
            metas,
            objects: objects.clone(),
            max_value_bytes: config.max_value_bytes.min(max_payload.saturating_sub(HEADER_ROOM)),
            max_blob_bytes: config.max_blob_bytes,
            changes: changes.clone(),
            doomed,
            closed: AtomicBool::new(false),
            cancel: CancellationToken::new(),
            task: Mutex::new(None),
            placement: Arc::new(Mutex::new(Vec::new())),
        };
        match store.sweep(config.sweep_age).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(prefix, removed, "removed blob objects left by interrupted uploads"),
            Err(e) => tracing::warn!(
                prefix,
                "could not sweep the blob objects left by interrupted uploads: {e}"
            ),
        }
        let feed = feed::Feed {
            source,
            changes,
            objects,
            doomed: doomed_rx,
            grace: config.reader_grace,
            cancel: store.cancel.clone(),
        };
        *store.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(tokio::spawn(feed.run()));
        let streams = [
            store.values.stream_name.clone(),
            store.metas.stream_name.clone(),
            format!("OBJ_{objects_bucket}"),
        ];
        tokio::spawn(follow_placement(
            js.clone(),
            streams,
            store.placement.clone(),
            store.cancel.clone(),
        ));
        Ok(store)
    }

    /// Removes the objects no metadata refers to that are older than `older_than`.
    async fn sweep(&self, older_than: Duration) -> Result<usize, StoreError> {
        // The metadata first: an object written after this read is younger than the
        // cutoff, so it is not taken.
        let mut referenced = HashSet::new();
        scan::scan(&self.js, &self.metas.stream, format!("{}>", self.metas.prefix), |s| {
            if let Ok(record) = serde_json::from_slice::<BlobRecord>(&s.value) {
                referenced.insert(record.object);
            }
        })
        .await?;
        self.objects.sweep(&referenced, older_than).await
    }

    fn check_open(&self) -> Result<(), StoreError> {
        match self.closed.load(Ordering::Acquire) {
            true => Err(StoreError::Closed),
            false => Ok(()),
        }
    }

    /// Hands a replaced body to the background task, to remove after the reader grace.
    fn doom(&self, old: &kv::Entry) {
        if let Ok(record) = serde_json::from_slice::<BlobRecord>(&old.value) {
            let _ = self.doomed.send(record.object);
        }
    }

    /// A page of `bucket`'s keys in `ns`: the namespace's keys from the stream leader,
    /// then the entries of the first `limit` live ones after the cursor, read
    /// [`READ_AHEAD`] at a time.
    async fn list_in<T>(
        &self,
        bucket: &kv::Store,
        ns: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        item: impl Fn(String, kv::Entry) -> Option<T>,
    ) -> Result<Page<T>, StoreError> {
        check_list_args(ns, prefix, after, limit)?;
        self.check_open()?;
        let limit = limit.min(MAX_LIST);
        let filter = format!("{}{}.*", bucket.prefix, keys::encode(ns));
        let kv_keys = scan::subjects(&self.js, &bucket.stream, &bucket.prefix, &filter).await?;
        let mut entries = futures_util::stream::iter(scan::candidates(kv_keys, prefix, after))
            .map(|(key, kv_key)| async move { (key, read(bucket, &kv_key).await) })
            .buffered(READ_AHEAD);
        let mut items = Vec::new();
        let mut last: Option<String> = None;
        let mut next = None;
        while let Some((key, found)) = entries.next().await {
            let Found::Live(entry) = found? else {
                continue;
            };
            if items.len() == limit {
                next = last.take();
                break;
            }
            if let Some(item) = item(key.clone(), entry) {
                items.push(item);
                last = Some(key);
            }
        }
        Ok(Page { items, next })
    }
}

/// A JetStream failure as the store's error.
/// JetStream's failures are the cluster's (no answer, no responders, a leader being
/// elected), never this node's disk: 503, retry.
fn nats_err(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("JetStream: {what}: {e}"))
}

/// A JetStream time in ms since the Unix epoch.
fn millis(t: async_nats::datetime::DateTime) -> u64 {
    (t.unix_timestamp_nanos() / 1_000_000).max(0) as u64
}

fn check_list_args(ns: &str, prefix: &str, after: Option<&str>, limit: usize) -> Result<(), StoreError> {
    check_namespace(ns)?;
    if prefix.len() > MAX_KEY || after.is_some_and(|a| a.len() > MAX_KEY) {
        return Err(StoreError::BadInput(format!(
            "a prefix or cursor must be at most {MAX_KEY} bytes"
        )));
    }
    if limit == 0 {
        return Err(StoreError::BadInput("limit must be at least 1".into()));
    }
    Ok(())
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

fn blob_meta(record: BlobRecord, version: u64) -> BlobMeta {
    BlobMeta {
        size: record.size,
        etag: record.etag,
        content_type: record.content_type,
        version,
        updated_ms: record.updated_ms,
    }
}

fn parse_record(value: &[u8]) -> Result<BlobRecord, StoreError> {
    serde_json::from_slice(value).map_err(|e| StoreError::Io(format!("JetStream: an unreadable blob record: {e}")))
}

#[async_trait]
impl StoreBackend for JetStreamStore {
    fn kind(&self) -> &'static str {
        "jetstream"
    }

    async fn get(&self, ns: &str, key: &str) -> Result<Option<Entry>, StoreError> {
        check_namespace(ns)?;
        check_key(key)?;
        self.check_open()?;
        Ok(match read(&self.values, &keys::kv_key(ns, key)).await? {
            Found::Live(e) => Some(Entry {
                value: e.value,
                version: e.revision,
                updated_ms: millis(e.created),
            }),
            _ => None,
        })
    }

    async fn put(&self, ns: &str, key: &str, value: Bytes, cond: Cond) -> Result<u64, StoreError> {
        check_namespace(ns)?;
        check_key(key)?;
        if value.len() > self.max_value_bytes {
            return Err(StoreError::TooLarge {
                size: value.len() as u64,
                limit: self.max_value_bytes as u64,
            });
        }
        self.check_open()?;
        let key = keys::kv_key(ns, key);
        match cond {
            Cond::Any => heard(|| self.values.put(&key, value.clone()))
                .await
                .map_err(|e| nats_err("write", e)),
            // Most creates are of keys that never existed: try that first.
            Cond::Absent => match self.values.update(&key, value.clone(), 0).await {
                Ok(revision) => Ok(revision),
                Err(e) => {
                    refused(e, "write").await?;
                    Ok(write(&self.values, &key, value, cond).await?.0)
                }
            },
            Cond::Version(_) => Ok(write(&self.values, &key, value, cond).await?.0),
        }
    }

    async fn delete(&self, ns: &str, key: &str, cond: Cond) -> Result<bool, StoreError> {
        check_namespace(ns)?;
        check_key(key)?;
        self.check_open()?;
        Ok(delete(&self.values, &keys::kv_key(ns, key), cond).await?.is_some())
    }

    async fn list(
        &self,
        ns: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<ListItem>, StoreError> {
        self.list_in(&self.values, ns, prefix, after, limit, |key, entry| {
            Some(ListItem {
                key,
                version: entry.revision,
                size: entry.value.len() as u64,
                updated_ms: millis(entry.created),
            })
        })
        .await
    }

    async fn put_blob(
        &self,
        ns: &str,
        name: &str,
        content_type: &str,
        mut body: BlobBody,
        cond: Cond,
    ) -> Result<BlobMeta, StoreError> {
        check_namespace(ns)?;
        check_key(name)?;
        let content_type = check_content_type(content_type)?;
        self.check_open()?;
        let key = keys::kv_key(ns, name);
        if cond != Cond::Any {
            // Fail early, before the body; checked for good by the metadata write.
            check(cond, read(&self.metas, &key).await?.version())?;
        }
        let body = self.objects.upload(&mut body, self.max_blob_bytes).await?;
        let record = BlobRecord {
            object: body.object.clone(),
            size: body.size,
            etag: body.etag,
            content_type,
            updated_ms: crate::now_ms(),
        };
        let json = serde_json::to_vec(&record).map_err(|e| StoreError::Io(format!("encode a blob record: {e}")))?;
        match write(&self.metas, &key, Bytes::from(json), cond).await {
            Ok((version, replaced)) => {
                if let Found::Live(old) = replaced {
                    self.doom(&old);
                }
                Ok(blob_meta(record, version))
            }
            // Refused: the metadata was not written, the body is nobody's.
            Err(e @ StoreError::Conflict { .. }) => {
                if let Err(cleanup) = self.objects.remove(&body.object).await {
                    tracing::warn!(
                        object = body.object,
                        "could not remove the body of a refused blob write (the sweep at open will): {cleanup}"
                    );
                }
                Err(e)
            }
            // A failed metadata write may have been stored all the same (a timeout):
            // the body stays, and the sweep takes it if no metadata points at it.
            Err(e) => Err(e),
        }
    }

    async fn get_blob(&self, ns: &str, name: &str) -> Result<Option<(BlobMeta, BlobBody)>, StoreError> {
        check_namespace(ns)?;
        check_key(name)?;
        self.check_open()?;
        let key = keys::kv_key(ns, name);
        // The body may be removed between the two reads (replaced, and the reader grace
        // passed): the metadata read again names the new one.
        for _ in 0..2 {
            let Found::Live(entry) = read(&self.metas, &key).await? else {
                return Ok(None);
            };
            let record = parse_record(&entry.value)?;
            if let Some(body) = self.objects.open(&record).await? {
                return Ok(Some((blob_meta(record, entry.revision), body)));
            }
        }
        Err(StoreError::Unavailable(
            "JetStream: the blob was replaced again and again while being opened".into(),
        ))
    }

    async fn delete_blob(&self, ns: &str, name: &str, cond: Cond) -> Result<bool, StoreError> {
        check_namespace(ns)?;
        check_key(name)?;
        self.check_open()?;
        let deleted = delete(&self.metas, &keys::kv_key(ns, name), cond).await?;
        if let Some(old) = &deleted {
            self.doom(old);
        }
        Ok(deleted.is_some())
    }

    async fn list_blobs(
        &self,
        ns: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<BlobItem>, StoreError> {
        self.list_in(&self.metas, ns, prefix, after, limit, |name, entry| {
            let record = serde_json::from_slice::<BlobRecord>(&entry.value).ok()?;
            Some(BlobItem {
                name,
                meta: blob_meta(record, entry.revision),
            })
        })
        .await
    }

    fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// Stops the background task; later calls answer [`StoreError::Closed`]. Every
    /// acknowledged write is already in JetStream. Bodies waiting out their reader grace
    /// are left to the next open's sweep.
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.cancel.cancel();
        if let Some(task) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
    }

    fn placement(&self) -> Vec<String> {
        self.placement.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn failure(&self) -> Option<String> {
        match self.client.connection_state() {
            async_nats::connection::State::Connected => None,
            _ => {
                Some("NATS is unreachable: this node is connected to no server of the cluster (it keeps trying)".into())
            }
        }
    }
}

/// Keeps `placement` set to where each of `streams`' copies are, until `cancel`.
async fn follow_placement(
    js: jetstream::Context,
    streams: [String; 3],
    placement: Arc<Mutex<Vec<String>>>,
    cancel: CancellationToken,
) {
    loop {
        let mut lines = Vec::new();
        for name in &streams {
            let line = match js.get_stream(name).await {
                Ok(stream) => crate::nats::replicas_of(stream.cached_info()).describe(),
                Err(e) => format!("unknown ({e})"),
            };
            lines.push(format!("store bucket {name}: {line}"));
        }
        *placement.lock().unwrap_or_else(|e| e.into_inner()) = lines;
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(PLACEMENT_EVERY) => {}
        }
    }
}

impl Drop for JetStreamStore {
    fn drop(&mut self) {
        self.close();
    }
}
