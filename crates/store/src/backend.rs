//! The store contract as a trait, so that the node API and the function server's store
//! trigger work the same over any backend: the embedded [`Store`] (redb behind a
//! write-ahead log) is the first implementation; a JetStream key-value and object store
//! one is the second. The contract is `docs/state.md` and the table of calls in this
//! crate's root; every implementation keeps these guarantees:
//!
//! - an acknowledged write (`put`, `delete`, `put_blob`, `delete_blob`) is durable;
//! - a key's versions strictly increase and are never reused, so a stale
//!   [`Cond::Version`] never matches a newer value;
//! - a read sees every write acknowledged before it started;
//! - blobs stream in and out without being held whole; the ETag is the hex SHA-256;
//! - the change feed hands out each durable change once, in version order, to every
//!   subscriber that keeps up.

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::AsyncRead;
use tokio::sync::broadcast;

use crate::{BlobItem, BlobMeta, Change, Cond, Entry, ListItem, Page, Store, StoreError};

/// A blob body being read or written, chunk by chunk.
pub type BlobBody = Box<dyn AsyncRead + Send + Unpin>;

/// A durable key-value and blob store, whatever keeps it.
#[async_trait]
pub trait StoreBackend: Send + Sync + 'static {
    /// What keeps the data, for `ps` (`embedded`, `jetstream`).
    fn kind(&self) -> &'static str;
    async fn get(&self, ns: &str, key: &str) -> Result<Option<Entry>, StoreError>;
    /// Writes if `cond` holds; answers the new version once durable.
    async fn put(&self, ns: &str, key: &str, value: Bytes, cond: Cond) -> Result<u64, StoreError>;
    /// Deletes if `cond` holds; `false` when there was no such key.
    async fn delete(&self, ns: &str, key: &str, cond: Cond) -> Result<bool, StoreError>;
    async fn list(
        &self,
        ns: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<ListItem>, StoreError>;
    async fn put_blob(
        &self,
        ns: &str,
        name: &str,
        content_type: &str,
        body: BlobBody,
        cond: Cond,
    ) -> Result<BlobMeta, StoreError>;
    async fn get_blob(&self, ns: &str, name: &str) -> Result<Option<(BlobMeta, BlobBody)>, StoreError>;
    async fn delete_blob(&self, ns: &str, name: &str, cond: Cond) -> Result<bool, StoreError>;
    async fn list_blobs(
        &self,
        ns: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<BlobItem>, StoreError>;
    /// Every durable change from now on.
    fn subscribe(&self) -> broadcast::Receiver<Change>;
    /// Stops after every acknowledged write is where a reopen finds it. Blocking.
    fn close(&self);

    /// Why the store is out of service, if it is.
    fn failure(&self) -> Option<String> {
        None
    }

    /// Its operations and commit times, where it keeps them (the embedded store does;
    /// a JetStream store is wrapped in [`crate::Counted`] for them).
    fn figures(&self) -> Option<crate::StoreFigures> {
        None
    }

    /// What the store lost and repaired when it opened, in words (empty when nothing):
    /// shown by `ps` while the node runs, beside the warning in its log.
    fn repairs(&self) -> Vec<String> {
        Vec::new()
    }

    /// Where its data is, a line per part in words, for `ps` (the embedded store: this
    /// node's files; JetStream's: each bucket's copies on the NATS servers).
    fn placement(&self) -> Vec<String> {
        Vec::new()
    }
}

/// A store that could not be opened: every call answers [`StoreError::Failed`] with the
/// reason, so that the node starts and everything else serves.
pub struct FailedStore {
    reason: String,
    changes: broadcast::Sender<Change>,
}

impl FailedStore {
    pub fn new(reason: impl Into<String>) -> FailedStore {
        FailedStore {
            reason: reason.into(),
            changes: broadcast::channel(1).0,
        }
    }

    fn err(&self) -> StoreError {
        StoreError::Failed(self.reason.clone())
    }
}

#[async_trait]
impl StoreBackend for FailedStore {
    fn kind(&self) -> &'static str {
        "failed"
    }
    async fn get(&self, _: &str, _: &str) -> Result<Option<Entry>, StoreError> {
        Err(self.err())
    }
    async fn put(&self, _: &str, _: &str, _: Bytes, _: Cond) -> Result<u64, StoreError> {
        Err(self.err())
    }
    async fn delete(&self, _: &str, _: &str, _: Cond) -> Result<bool, StoreError> {
        Err(self.err())
    }
    async fn list(&self, _: &str, _: &str, _: Option<&str>, _: usize) -> Result<Page<ListItem>, StoreError> {
        Err(self.err())
    }
    async fn put_blob(&self, _: &str, _: &str, _: &str, _: BlobBody, _: Cond) -> Result<BlobMeta, StoreError> {
        Err(self.err())
    }
    async fn get_blob(&self, _: &str, _: &str) -> Result<Option<(BlobMeta, BlobBody)>, StoreError> {
        Err(self.err())
    }
    async fn delete_blob(&self, _: &str, _: &str, _: Cond) -> Result<bool, StoreError> {
        Err(self.err())
    }
    async fn list_blobs(&self, _: &str, _: &str, _: Option<&str>, _: usize) -> Result<Page<BlobItem>, StoreError> {
        Err(self.err())
    }
    fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }
    fn close(&self) {}
    fn failure(&self) -> Option<String> {
        Some(self.reason.clone())
    }
}

#[async_trait]
impl StoreBackend for Store {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    async fn get(&self, ns: &str, key: &str) -> Result<Option<Entry>, StoreError> {
        Store::get(self, ns, key).await
    }

    async fn put(&self, ns: &str, key: &str, value: Bytes, cond: Cond) -> Result<u64, StoreError> {
        Store::put(self, ns, key, value, cond).await
    }

    async fn delete(&self, ns: &str, key: &str, cond: Cond) -> Result<bool, StoreError> {
        Store::delete(self, ns, key, cond).await
    }

    async fn list(
        &self,
        ns: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<ListItem>, StoreError> {
        Store::list(self, ns, prefix, after, limit).await
    }

    async fn put_blob(
        &self,
        ns: &str,
        name: &str,
        content_type: &str,
        body: BlobBody,
        cond: Cond,
    ) -> Result<BlobMeta, StoreError> {
        Store::put_blob(self, ns, name, content_type, body, cond).await
    }

    async fn get_blob(&self, ns: &str, name: &str) -> Result<Option<(BlobMeta, BlobBody)>, StoreError> {
        Ok(Store::get_blob(self, ns, name)
            .await?
            .map(|(meta, file)| (meta, Box::new(file) as BlobBody)))
    }

    async fn delete_blob(&self, ns: &str, name: &str, cond: Cond) -> Result<bool, StoreError> {
        Store::delete_blob(self, ns, name, cond).await
    }

    async fn list_blobs(
        &self,
        ns: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<BlobItem>, StoreError> {
        Store::list_blobs(self, ns, prefix, after, limit).await
    }

    fn subscribe(&self) -> broadcast::Receiver<Change> {
        Store::subscribe(self)
    }

    fn close(&self) {
        Store::close(self)
    }

    fn repairs(&self) -> Vec<String> {
        self.recovery().describe()
    }

    fn figures(&self) -> Option<crate::StoreFigures> {
        Some(Store::figures(self))
    }
}

/// The store namespace of an app's namespace `ns`: apps never see each other's keys.
pub fn app_namespace(app: &str, ns: &str) -> String {
    format!("{app}/{ns}")
}
