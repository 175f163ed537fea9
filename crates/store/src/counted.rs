//! [`Counted`]: any [`StoreBackend`] with its operations counted and each write timed,
//! for a backend that keeps no figures of its own (JetStream's: its servers count for
//! themselves, not per app). A write's time runs from the call until it is acknowledged
//! durable, which on JetStream is the stream's replicas' acknowledgement: it stands in
//! for the embedded store's group commit in `strata_store_commit_duration_seconds`.

use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::broadcast;

use crate::figures::Figures;
use crate::{
    BlobBody, BlobItem, BlobMeta, Change, Cond, Entry, ListItem, Page, StoreBackend, StoreError, StoreFigures,
};

/// `inner`, counted.
pub struct Counted<B> {
    inner: B,
    figures: Figures,
}

impl<B: StoreBackend> Counted<B> {
    pub fn new(inner: B) -> Counted<B> {
        Counted {
            inner,
            figures: Figures::default(),
        }
    }

    /// Counts a write of `kind` that was decided (done, or refused by its condition).
    fn wrote<T>(&self, kind: usize, started: Instant, result: &Result<T, StoreError>) {
        if matches!(result, Ok(_) | Err(StoreError::Conflict { .. })) {
            self.figures.wrote(kind);
            self.figures.committed(started.elapsed());
        }
    }
}

#[async_trait]
impl<B: StoreBackend> StoreBackend for Counted<B> {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    async fn get(&self, ns: &str, key: &str) -> Result<Option<Entry>, StoreError> {
        self.figures.read(0);
        self.inner.get(ns, key).await
    }

    async fn put(&self, ns: &str, key: &str, value: Bytes, cond: Cond) -> Result<u64, StoreError> {
        let started = Instant::now();
        let result = self.inner.put(ns, key, value, cond).await;
        self.wrote(0, started, &result);
        result
    }

    async fn delete(&self, ns: &str, key: &str, cond: Cond) -> Result<bool, StoreError> {
        let started = Instant::now();
        let result = self.inner.delete(ns, key, cond).await;
        self.wrote(1, started, &result);
        result
    }

    async fn list(
        &self,
        ns: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<ListItem>, StoreError> {
        self.figures.read(1);
        self.inner.list(ns, prefix, after, limit).await
    }

    async fn put_blob(
        &self,
        ns: &str,
        name: &str,
        content_type: &str,
        body: BlobBody,
        cond: Cond,
    ) -> Result<BlobMeta, StoreError> {
        let started = Instant::now();
        let result = self.inner.put_blob(ns, name, content_type, body, cond).await;
        self.wrote(2, started, &result);
        result
    }

    async fn get_blob(&self, ns: &str, name: &str) -> Result<Option<(BlobMeta, BlobBody)>, StoreError> {
        self.figures.read(2);
        self.inner.get_blob(ns, name).await
    }

    async fn delete_blob(&self, ns: &str, name: &str, cond: Cond) -> Result<bool, StoreError> {
        let started = Instant::now();
        let result = self.inner.delete_blob(ns, name, cond).await;
        self.wrote(3, started, &result);
        result
    }

    async fn list_blobs(
        &self,
        ns: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<BlobItem>, StoreError> {
        self.figures.read(3);
        self.inner.list_blobs(ns, prefix, after, limit).await
    }

    fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.inner.subscribe()
    }

    fn close(&self) {
        self.inner.close()
    }

    fn failure(&self) -> Option<String> {
        self.inner.failure()
    }

    fn figures(&self) -> Option<StoreFigures> {
        Some(self.figures.snapshot())
    }

    fn repairs(&self) -> Vec<String> {
        self.inner.repairs()
    }

    fn placement(&self) -> Vec<String> {
        self.inner.placement()
    }
}
