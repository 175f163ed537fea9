//! The keyspace operations on every shard (DBSIZE, FLUSHDB, INFO's figures, KEYS,
//! RANDOMKEY, SCAN's steps) and WATCH's registrations. Those that need every shard at
//! once say so: the command holds them all.

use std::sync::Arc;

use super::Keyspace;
use crate::shard::{ShardStats, Watcher};
use crate::stored::Stored;

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

    /// Every live key matching `pattern` (KEYS), shard after shard. The keyspace must
    /// hold every shard.
    pub fn keys_matching(&mut self, pattern: &[u8]) -> Vec<Vec<u8>> {
        let now = self.now;
        let all = pattern == b"*";
        let mut out = Vec::new();
        for i in 0..self.cache.shard_count() {
            self.shard_at(i).live_keys(now, |k| {
                if all || crate::glob::matches(pattern, k, false) {
                    out.push(k.to_vec());
                }
            });
        }
        out
    }

    /// A random live key. The keyspace must hold every shard.
    pub fn random_key(&mut self) -> Option<Stored> {
        let now = self.now;
        let n = self.cache.shard_count();
        loop {
            let sizes: Vec<usize> = (0..n).map(|i| self.shard_at(i).len()).collect();
            let total: usize = sizes.iter().sum();
            if total == 0 {
                return None;
            }
            let mut pick = (self.shard_at(0).random() % total as u64) as usize;
            let shard = sizes
                .iter()
                .position(|&len| {
                    if pick < len {
                        true
                    } else {
                        pick -= len;
                        false
                    }
                })
                .expect("pick < total");
            if let Some(k) = self.shard_at(shard).random_live(now) {
                return Some(k);
            }
        }
    }

    /// One step of SCAN (see [`ShardState::scan`]): visits up to `budget` slots of
    /// shard `shard` below `end` (`None`: from the top), calling `f` with each live key.
    /// Returns where the shard's next step starts (0: done) and the slots visited.
    pub fn scan_shard(
        &mut self,
        shard: usize,
        end: Option<usize>,
        budget: usize,
        f: impl FnMut(&[u8]),
    ) -> (usize, usize) {
        let now = self.now;
        let mut s = self.shard_at(shard);
        let end = end.unwrap_or_else(|| s.len());
        s.scan(end, budget, now, f)
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
