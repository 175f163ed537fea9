//! The keyspace operations on every shard (DBSIZE, FLUSHDB, INFO's figures) and
//! WATCH's registrations. Those that need every shard at
//! once say so: the command holds them all.

use std::sync::Arc;

use super::Keyspace;
use crate::shard::{ShardStats, Watcher};

impl Keyspace<'_> {
    /// Keys held (including expired ones not yet removed, as Redis' DBSIZE).
    pub fn len(&mut self) -> usize {
        (0..self.cache.shard_count()).map(|i| self.shard_at(i).len()).sum()
    }

    /// Removes every key.
    pub fn flush(&mut self) {
        self.hold_all();
        for i in 0..self.cache.shard_count() {
            self.shard_at(i).clear();
        }
    }

    /// Every shard's figures.
    pub fn stats(&mut self) -> Vec<ShardStats> {
        (0..self.cache.shard_count())
            .map(|i| self.shard_at(i).stats())
            .collect()
    }

    // ------------------------------------------------------------------ WATCH

    /// Starts `watcher` watching `key`: answers the key's shard and whether it is live.
    pub fn watch(&mut self, key: &[u8], watcher: &Arc<Watcher>) -> (usize, bool) {
        let now = self.now;
        let i = self.cache.shard_of(key);
        (i, self.shard_at(i).watch(key, now, watcher))
    }

    /// Stops `watcher` watching `key` (in shard `shard`).
    pub fn unwatch(&mut self, shard: usize, key: &[u8], watcher: &Arc<Watcher>) {
        self.shard_at(shard).unwatch(key, watcher);
    }

    /// Whether `key`, live when watched, has expired since without being removed.
    pub fn has_expired(&mut self, key: &[u8]) -> bool {
        let now = self.now;
        self.shard(key).is_expired(key, now)
    }
}
