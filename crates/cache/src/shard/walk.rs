//! What looks at a shard's keys beyond one key: the connections WATCHing them, and the
//! walks over all of them (SCAN's cursor, KEYS, RANDOMKEY).

use std::sync::Arc;

use super::{Cause, ShardState, Watcher};
use crate::stored::Stored;

impl ShardState {
    /// WATCH `key` for `watcher`: from now on any change to it marks `watcher` dirty.
    /// An expired entry is removed first (it is already gone, as far as WATCH goes);
    /// answers whether the key is live, so that EXEC can tell that it expired since.
    pub fn watch(&mut self, key: &[u8], now: u64, watcher: &Arc<Watcher>) -> bool {
        let live = self.peek(key, now, |_| ()).is_some();
        match self.watched.get_mut(key) {
            Some(list) => list.push(watcher.clone()),
            None => {
                self.watched.insert(Stored::copy_from(key), vec![watcher.clone()]);
            }
        }
        live
    }

    /// Stops `watcher` watching `key`.
    pub fn unwatch(&mut self, key: &[u8], watcher: &Arc<Watcher>) {
        if let Some(list) = self.watched.get_mut(key) {
            list.retain(|w| !Arc::ptr_eq(w, watcher));
            if list.is_empty() {
                self.watched.remove(key);
            }
        }
    }

    /// Keys of this shard being watched, counted once per watcher.
    pub fn watched_keys(&self) -> usize {
        self.watched.values().map(Vec::len).sum()
    }

    /// Whether `key` is held but past its deadline (a watched key that was live at
    /// WATCH and has expired since, without being removed yet).
    pub fn is_expired(&self, key: &[u8], now: u64) -> bool {
        self.map.get(key).is_some_and(|e| e.expires_at <= now)
    }

    /// One step of SCAN in this shard: visits the slots of the dense key list below
    /// `end`, downwards, at most `budget` of them, calling `f` with each live key
    /// (expired ones met are removed). Returns where the next step goes on from (0: the
    /// shard is done) and how many slots were visited.
    ///
    /// Why a key present for a whole scan is seen at least once, whatever happens
    /// between the steps: a scan starts a shard at the length of its list, so such a
    /// key then sits below the cursor; keys only ever move down the list (a removal
    /// moves the last key into the hole, a new key goes to the end), so it stays below
    /// the cursor until a step passes over it and reports it. A key moved down from
    /// above the cursor may be reported twice, and keys added during the scan may or may
    /// not be: both are allowed, as in Redis.
    pub fn scan(&mut self, end: usize, budget: usize, now: u64, mut f: impl FnMut(&[u8])) -> (usize, usize) {
        let hi = end.min(self.keys.len());
        let lo = hi.saturating_sub(budget);
        let mut i = hi;
        while i > lo {
            i -= 1;
            let k = &self.keys[i];
            if self.map.get(k).is_some_and(|e| e.expires_at <= now) {
                // The last key moves into slot i: it comes from above, already visited.
                let k = k.clone();
                self.remove_with(k.as_slice(), Cause::Expired);
            } else {
                f(self.keys[i].as_slice());
            }
        }
        (lo, hi - lo)
    }

    /// Calls `f` with every live key (KEYS).
    pub fn live_keys(&self, now: u64, mut f: impl FnMut(&[u8])) {
        for k in &self.keys {
            if self.map.get(k).is_some_and(|e| e.expires_at > now) {
                f(k.as_slice());
            }
        }
    }

    /// A random live key (RANDOMKEY), removing the expired keys drawn on the way.
    pub fn random_live(&mut self, now: u64) -> Option<Stored> {
        while !self.keys.is_empty() {
            let i = self.random_slot();
            let k = self.keys[i].clone();
            if self.map.get(&k).is_some_and(|e| e.expires_at > now) {
                return Some(k);
            }
            self.remove_with(k.as_slice(), Cause::Expired);
        }
        None
    }
}
