//! Blob bodies in the object store bucket, one object per body, named by a fresh nuid;
//! what a blob name points at lives in the `blobmeta` KV bucket ([`BlobRecord`]).
//!
//! The objects are in the object store's own layout (chunks on `$O.BUCKET.C.NUID`, the
//! object's info on `$O.BUCKET.M.BASE64(NAME)`), so `nats object` tools list and read
//! them and `ObjectStore::list` finds them for the sweep; but strata writes and reads
//! them itself: to pipeline the chunks, to cap the size while streaming, to know the
//! chunks' subject if it must drop them, and to read them from the stream leader
//! without a consumer per read. An upload first writes a placeholder info (refreshed
//! every [`REFRESH`] while it streams) so that an object cut short by a crash is
//! visible to the [`Objects::sweep`] at open.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::header::NATS_ROLLUP;
use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::object_store::{ObjectInfo, ObjectOptions, ObjectStore};
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::jetstream::{self, stream::Stream};
use async_nats::HeaderMap;
use base64::engine::general_purpose::URL_SAFE;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use strata_store::{BlobBody, StoreError};
use tokio::io::AsyncReadExt;
use tokio_util::io::StreamReader;

use super::{millis, nats_err};

/// Chunks published and not yet acknowledged, per upload.
const CHUNKS_IN_FLIGHT: usize = 4;
/// How often an upload in progress refreshes its placeholder, so that no sweep takes it
/// for the leftover of a crash.
pub(crate) const REFRESH: Duration = Duration::from_secs(60);
/// How long the sweep waits for the next object of the listing.
const LIST_STALL: Duration = Duration::from_secs(10);

/// What `blobmeta` holds for a blob, as JSON; the entry's revision is its version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct BlobRecord {
    /// The object holding the body.
    pub object: String,
    pub size: u64,
    /// Hex SHA-256 of the body.
    pub etag: String,
    pub content_type: String,
    pub updated_ms: u64,
}

/// A body streamed into an object whose blob metadata is still to be written.
pub(crate) struct Uploaded {
    pub object: String,
    pub size: u64,
    pub etag: String,
}

/// The object store bucket of blob bodies.
#[derive(Clone)]
pub(crate) struct Objects {
    bucket: String,
    js: jetstream::Context,
    store: ObjectStore,
    stream: Stream,
    /// Bytes per chunk message.
    chunk_bytes: usize,
}

impl Objects {
    pub fn new(
        bucket: String,
        js: jetstream::Context,
        store: ObjectStore,
        stream: Stream,
        chunk_bytes: usize,
    ) -> Objects {
        Objects {
            bucket,
            js,
            store,
            stream,
            chunk_bytes,
        }
    }

    fn chunk_subject(&self, object: &str) -> String {
        format!("$O.{}.C.{object}", self.bucket)
    }

    fn info_subject(&self, object: &str) -> String {
        format!("$O.{}.M.{}", self.bucket, URL_SAFE.encode(object))
    }

    /// Streams `body` into a new object, hashing and counting it; more than `limit`
    /// bytes is [`StoreError::BlobTooLarge`]. On any error the object is removed before
    /// the answer; if the future is dropped midway, what was written is left for the
    /// sweep.
    pub async fn upload(&self, body: &mut BlobBody, limit: u64) -> Result<Uploaded, StoreError> {
        let object = nuid::next().to_string();
        self.put_info(&object, None).await?;
        let mut acks = VecDeque::new();
        match self.stream_chunks(&object, body, limit, &mut acks).await {
            Ok(done) => Ok(done),
            Err(e) => {
                // Chunks still on their way could land after the removal: wait for them.
                for ack in acks {
                    let _ = ack.await;
                }
                if let Err(cleanup) = self.remove(&object).await {
                    tracing::warn!(
                        object,
                        "could not remove the object of a failed upload (the sweep at open will): {cleanup}"
                    );
                }
                Err(e)
            }
        }
    }

    async fn stream_chunks(
        &self,
        object: &str,
        body: &mut BlobBody,
        limit: u64,
        acks: &mut VecDeque<PublishAckFuture>,
    ) -> Result<Uploaded, StoreError> {
        let subject = self.chunk_subject(object);
        let mut hasher = Sha256::new();
        let (mut size, mut chunks) = (0u64, 0usize);
        let mut buf = BytesMut::new();
        let mut refresh = tokio::time::interval_at(tokio::time::Instant::now() + REFRESH, REFRESH);
        let mut ended = false;
        while !ended {
            buf.reserve(self.chunk_bytes.saturating_sub(buf.len()));
            while buf.len() < self.chunk_bytes {
                let n = tokio::select! {
                    n = body.read_buf(&mut buf) => n.map_err(|e| StoreError::Body(e.to_string()))?,
                    _ = refresh.tick() => {
                        self.put_info(object, None).await?;
                        continue;
                    }
                };
                if n == 0 {
                    ended = true;
                    break;
                }
                size += n as u64;
                if size > limit {
                    return Err(StoreError::BlobTooLarge { limit });
                }
            }
            while !buf.is_empty() && (ended || buf.len() >= self.chunk_bytes) {
                let chunk = buf.split_to(buf.len().min(self.chunk_bytes)).freeze();
                hasher.update(&chunk);
                chunks += 1;
                let ack = self
                    .js
                    .publish(subject.clone(), chunk)
                    .await
                    .map_err(|e| nats_err("write a blob chunk", e))?;
                acks.push_back(ack);
                if acks.len() >= CHUNKS_IN_FLIGHT {
                    let ack = acks.pop_front().expect("not empty");
                    ack.await.map_err(|e| nats_err("write a blob chunk", e))?;
                }
            }
        }
        while let Some(ack) = acks.pop_front() {
            ack.await.map_err(|e| nats_err("write a blob chunk", e))?;
        }
        let sha256: [u8; 32] = hasher.finalize().into();
        self.put_info(object, Some((size, chunks, &sha256))).await?;
        Ok(Uploaded {
            object: object.to_string(),
            size,
            etag: hex(&sha256),
        })
    }

    /// Writes the object's info: the placeholder of an upload in progress (`None`), or
    /// the finished body's size, chunk count and digest.
    async fn put_info(&self, object: &str, done: Option<(u64, usize, &[u8; 32])>) -> Result<(), StoreError> {
        let (size, chunks, digest) = match done {
            Some((size, chunks, sha256)) => (
                size as usize,
                chunks,
                Some(format!("SHA-256={}", URL_SAFE.encode(sha256))),
            ),
            None => (0, 0, None),
        };
        let info = ObjectInfo {
            name: object.to_string(),
            description: done.is_none().then(|| "strata: upload in progress".to_string()),
            metadata: HashMap::new(),
            headers: None,
            options: Some(ObjectOptions {
                link: None,
                max_chunk_size: Some(self.chunk_bytes),
            }),
            bucket: self.bucket.clone(),
            nuid: object.to_string(),
            size,
            chunks,
            modified: now_datetime(),
            digest,
            deleted: false,
        };
        let json = serde_json::to_vec(&info).map_err(|e| StoreError::Io(format!("encode an object's info: {e}")))?;
        let json = Bytes::from(json);
        // The first write of an upload: the chunks that follow go to the same stream.
        super::cas::heard(|| async {
            let mut headers = HeaderMap::new();
            headers.insert(NATS_ROLLUP, "sub");
            self.js
                .publish_with_headers(self.info_subject(object), headers, json.clone())
                .await?
                .await
        })
        .await
        .map_err(|e| nats_err("write an object's info", e))?;
        Ok(())
    }

    /// Opens the body `record` points at, reading its first chunk; None when the
    /// object is gone. The reader gets each chunk from the stream's leader (a message
    /// get by subject, from the sequence after the last one read), so a read takes no
    /// consumer, and checks the body's SHA-256 against the ETag at the end.
    pub async fn open(&self, record: &BlobRecord) -> Result<Option<BlobBody>, StoreError> {
        let mut body = BodyReader {
            stream: self.stream.clone(),
            subject: self.chunk_subject(&record.object),
            next_seq: 1,
            left: record.size,
            hasher: Sha256::new(),
            etag: record.etag.clone(),
        };
        let first = match body.left {
            0 => None,
            _ => match body.next_chunk().await {
                Ok(chunk) => Some(chunk),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(StoreError::Unavailable(format!("JetStream: open a blob body: {e}"))),
            },
        };
        let chunks = futures_util::stream::unfold((Some(body), first), |(body, first)| async move {
            if let Some(chunk) = first {
                return Some((Ok(chunk), (body, None)));
            }
            let mut body = body?;
            match body.left {
                0 => body.check().err().map(|e| (Err(e), (None, None))),
                _ => match body.next_chunk().await {
                    Ok(chunk) => Some((Ok(chunk), (Some(body), None))),
                    Err(e) => Some((Err(e), (None, None))),
                },
            }
        });
        Ok(Some(Box::new(StreamReader::new(Box::pin(chunks)))))
    }

    /// Removes `object`: its chunks, then its info (so a crash in between leaves an
    /// object the sweep still sees). Removing one that is gone is fine.
    pub async fn remove(&self, object: &str) -> Result<(), StoreError> {
        for subject in [self.chunk_subject(object), self.info_subject(object)] {
            self.stream
                .purge()
                .filter(subject)
                .await
                .map_err(|e| nats_err("remove a blob body", e))?;
        }
        Ok(())
    }

    /// Removes every object not in `referenced` whose info was last written more than
    /// `older_than` ago: bodies whose metadata was never written (a crash or a dropped
    /// upload between the two writes), and replaced bodies whose deferred removal died
    /// with their node. Answers how many.
    pub async fn sweep(&self, referenced: &HashSet<String>, older_than: Duration) -> Result<usize, StoreError> {
        let cutoff = now_ms().saturating_sub(older_than.as_millis() as u64);
        let mut list = self
            .store
            .list()
            .await
            .map_err(|e| nats_err("list the blob objects", e))?;
        let mut doomed = Vec::new();
        loop {
            let info = match tokio::time::timeout(LIST_STALL, list.next()).await {
                Err(_) => {
                    return Err(StoreError::Unavailable(
                        "JetStream: listing the blob objects stalled".into(),
                    ))
                }
                Ok(None) => break,
                Ok(Some(info)) => info.map_err(|e| nats_err("list the blob objects", e))?,
            };
            let written = info.modified.map(millis).unwrap_or(0);
            if !referenced.contains(&info.name) && written < cutoff {
                doomed.push(info.name);
            }
        }
        for object in &doomed {
            self.remove(object).await?;
        }
        Ok(doomed.len())
    }
}

/// The bucket's stream config, as `create_object_store` makes it but with direct gets
/// off, so that an object's info is read from the stream leader (see the parent module).
pub(crate) fn stream_config(bucket: &str, replicas: usize) -> jetstream::stream::Config {
    jetstream::stream::Config {
        name: format!("OBJ_{bucket}"),
        description: Some("strata store: blob bodies".into()),
        subjects: vec![format!("$O.{bucket}.C.>"), format!("$O.{bucket}.M.>")],
        storage: jetstream::stream::StorageType::File,
        num_replicas: replicas,
        discard: jetstream::stream::DiscardPolicy::New,
        allow_rollup: true,
        allow_direct: false,
        ..Default::default()
    }
}

/// Opens the object store handle on an existing bucket (retried while a server still
/// says it is not there: `settle`).
pub(crate) async fn object_store(js: &jetstream::Context, bucket: &str) -> anyhow::Result<ObjectStore> {
    crate::settle::settled(js, bucket, |_| async move {
        js.get_object_store(bucket)
            .await
            .map_err(|e| anyhow::anyhow!("open object store {bucket}: {e}"))
    })
    .await
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn now_datetime() -> Option<async_nats::datetime::DateTime> {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_nanos();
    async_nats::datetime::from_nanos(nanos as i128).ok()
}

/// Where a body read got to.
struct BodyReader {
    stream: Stream,
    subject: String,
    /// The stream sequence to look for the next chunk from.
    next_seq: u64,
    /// Bytes still to come.
    left: u64,
    hasher: Sha256,
    etag: String,
}

impl BodyReader {
    async fn next_chunk(&mut self) -> std::io::Result<Bytes> {
        let message = self
            .stream
            .raw_message_builder()
            .sequence(self.next_seq)
            .next_by_subject(self.subject.clone())
            .send()
            .await
            .map_err(|e| match e.kind() {
                LastRawMessageErrorKind::NoMessageFound => std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the blob body was removed while being read (replaced or deleted, and the reader grace is over)",
                ),
                _ => std::io::Error::other(format!("JetStream: read a blob chunk: {e}")),
            })?;
        let chunk = message.payload;
        if chunk.len() as u64 > self.left {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the blob body is longer than its metadata says",
            ));
        }
        self.next_seq = message.sequence + 1;
        self.left -= chunk.len() as u64;
        self.hasher.update(&chunk);
        Ok(chunk)
    }

    /// At the end: the body read is the one the ETag names.
    fn check(&mut self) -> std::io::Result<()> {
        let sha256: [u8; 32] = std::mem::take(&mut self.hasher).finalize().into();
        match hex(&sha256) == self.etag {
            true => Ok(()),
            false => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the blob body does not match its ETag",
            )),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
