//! The overlay: effects that are durable in the write-ahead log but not yet applied to
//! redb, so that a write is visible to every read from the moment it is acknowledged.
//!
//! The writer inserts a batch's effects once they are durable; the applier drops effects
//! once it has committed them to redb. A read (the writer's own included) takes the lock,
//! looks in the overlay and begins its redb read transaction before letting go: an effect
//! missing from the overlay was either not there yet or was dropped after its redb
//! commit, which that transaction then sees.

use std::collections::BTreeMap;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;

use crate::record::BlobRecord;

/// One key's newest durable effect; `item` None: deleted.
#[derive(Debug, Clone)]
pub(crate) struct Pending<T> {
    pub version: u64,
    pub item: Option<T>,
}

/// A value as held in the overlay.
#[derive(Debug, Clone)]
pub(crate) struct PendingValue {
    pub updated_ms: u64,
    pub value: Bytes,
}

#[derive(Default)]
pub(crate) struct Maps {
    /// By table key.
    pub values: BTreeMap<Vec<u8>, Pending<PendingValue>>,
    pub blobs: BTreeMap<Vec<u8>, Pending<BlobRecord>>,
}

#[derive(Default)]
pub(crate) struct Overlay {
    maps: RwLock<Maps>,
}

impl Overlay {
    pub fn read(&self) -> RwLockReadGuard<'_, Maps> {
        self.maps.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, Maps> {
        self.maps.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl Maps {
    /// Drops what redb has: every effect up to version `applied` (effects reach redb in
    /// version order).
    pub fn trim(&mut self, applied: u64) {
        self.values.retain(|_, p| p.version > applied);
        self.blobs.retain(|_, p| p.version > applied);
    }

    /// The overlay's entries of `table` from `start` on whose key starts with `prefix`.
    pub fn range<'a, T: Clone>(
        table: &'a BTreeMap<Vec<u8>, Pending<T>>,
        start: &[u8],
        prefix: &'a [u8],
    ) -> impl Iterator<Item = (Vec<u8>, Pending<T>)> + 'a {
        table
            .range(start.to_vec()..)
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, p)| (k.clone(), p.clone()))
    }
}
