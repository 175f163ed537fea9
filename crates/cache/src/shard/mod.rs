//! One shard: a map from key to entry under one mutex, its memory accounting, lazy and
//! sampled expiry, eviction by sampling (approximate LRU, as Redis does it), and the
//! connections WATCHing its keys.
//!
//! Every operation takes the current time from the caller (read before the lock) so the
//! critical section is only map work. Keys are also kept in a dense list (`keys`, each
//! entry knows its slot) so that a random key can be drawn in O(1) for eviction, expiry
//! sampling and RANDOMKEY, and so that SCAN can walk the shard with a cursor (see
//! [`ShardState::scan`]).
//!
//! Every change to a key goes through [`ShardState::insert_as`], [`ShardState::modify`],
//! [`ShardState::set_deadline`], `remove_with` (deletion, expiry, eviction) or
//! [`ShardState::clear`]; each of them marks the key's watchers dirty. While nobody
//! watches a key of the shard that costs one test of an empty map.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::blocking::ShardWaiters;
use crate::stored::Stored;
use crate::value::Value;

mod walk;

/// No deadline.
pub(crate) const NEVER: u64 = u64::MAX;

/// Bytes charged per entry on top of its key and value: the map slot (key handle and
/// entry), the key's handle in the dense list, and two heap allocation headers.
pub const ENTRY_OVERHEAD: u64 = 112;

/// Counters and gauges of one shard (or, summed, of a cache).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardStats {
    /// Keys held now (including expired ones not yet removed).
    pub keys: u64,
    /// Of those, keys with a deadline.
    pub expires: u64,
    /// Bytes charged: keys + values + [`ENTRY_OVERHEAD`] per entry.
    pub bytes: u64,
    /// The shard's memory bound (0: none).
    pub max_bytes: u64,
    /// Reads that found a live key.
    pub hits: u64,
    /// Reads that found none.
    pub misses: u64,
    /// Keys removed to stay under the memory bound.
    pub evictions: u64,
    /// Keys removed because their deadline passed.
    pub expired: u64,
    /// Times the shard was emptied by `drop_shard`.
    pub drops: u64,
}

impl ShardStats {
    pub(crate) fn add(&mut self, o: &ShardStats) {
        self.keys += o.keys;
        self.expires += o.expires;
        self.bytes += o.bytes;
        self.max_bytes += o.max_bytes;
        self.hits += o.hits;
        self.misses += o.misses;
        self.evictions += o.evictions;
        self.expired += o.expired;
        self.drops += o.drops;
    }
}

#[derive(Debug)]
pub(crate) struct Entry {
    pub value: Value,
    /// How Redis would hold the value if a string (OBJECT ENCODING).
    pub encoding: Encoding,
    /// Monotonic ms after which the entry is gone ([`NEVER`]: no deadline).
    pub expires_at: u64,
    /// Read-through: monotonic ms after which the value is stale ([`NEVER`]: always fresh).
    pub fresh_until: u64,
    /// Sliding expiry: each read moves `expires_at` to now + this (0: not sliding).
    pub idle_ttl: u64,
    /// Monotonic ms of the last read or write, for eviction (and OBJECT IDLETIME).
    pub last_access: u64,
    /// Index of the key in `ShardState::keys`.
    slot: u32,
}

/// How Redis would hold a value, for OBJECT ENCODING: Redis decides it when a value is
/// written whole and keeps it while the value changes in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// Written whole (SET, MSET, INCR, APPEND to a new key, ...): `int`, `embstr` or
    /// `raw` by its bytes, as Redis' `tryObjectEncoding` decides.
    Whole,
    /// Written whole by INCRBYFLOAT: `embstr` or `raw` by its length, never `int`.
    Float,
    /// Changed in place (APPEND, SETRANGE, SETBIT): `raw`.
    Raw,
}

impl Encoding {
    /// The name OBJECT ENCODING gives a value held so.
    pub fn name(self, value: &[u8]) -> &'static str {
        /// Redis' `OBJ_ENCODING_EMBSTR_SIZE_LIMIT`.
        const EMBSTR_MAX: usize = 44;
        match self {
            Encoding::Raw => "raw",
            Encoding::Whole if value.len() <= 20 && crate::cache::parse_i64(value).is_some() => "int",
            _ if value.len() <= EMBSTR_MAX => "embstr",
            _ => "raw",
        }
    }
}

/// One connection's WATCH: marked dirty when any key it watches changes (written,
/// deleted, expired, evicted or flushed), so that its EXEC runs nothing.
#[derive(Debug, Default)]
pub(crate) struct Watcher {
    dirty: AtomicBool,
}

impl Watcher {
    pub fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::Acquire)
    }
}

/// The deadlines of a value being written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadlines {
    pub expires_at: u64,
    pub fresh_until: u64,
    pub idle_ttl: u64,
}

impl Deadlines {
    pub const NONE: Deadlines = Deadlines {
        expires_at: NEVER,
        fresh_until: NEVER,
        idle_ttl: 0,
    };
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cause {
    Deleted,
    Expired,
    Evicted,
}

fn charge(key: usize, value: usize) -> u64 {
    key as u64 + value as u64 + ENTRY_OVERHEAD
}

/// A shard, padded to its own cache lines so two shards' locks never share one.
#[repr(align(128))]
pub(crate) struct Shard {
    state: Mutex<ShardState>,
}

impl Shard {
    pub fn new(max_bytes: u64, samples: usize, seed: u64) -> Shard {
        Shard {
            state: Mutex::new(ShardState {
                map: HashMap::new(),
                keys: Vec::new(),
                max_bytes,
                samples: samples.max(1),
                rng: seed | 1,
                stats: ShardStats {
                    max_bytes,
                    ..ShardStats::default()
                },
                watched: HashMap::new(),
                blocked: ShardWaiters::default(),
            }),
        }
    }

    /// Locks the shard. A panic while it was held cannot leave the map half-updated in a
    /// way that matters more than a lost entry, so poisoning is ignored.
    pub fn lock(&self) -> MutexGuard<'_, ShardState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) struct ShardState {
    map: HashMap<Stored, Entry>,
    keys: Vec<Stored>,
    max_bytes: u64,
    samples: usize,
    rng: u64,
    stats: ShardStats,
    /// The connections watching keys of this shard (present or not), by key.
    watched: HashMap<Stored, Vec<Arc<Watcher>>>,
    /// The clients blocked on keys of this shard (`blocking`).
    pub blocked: ShardWaiters,
}

impl ShardState {
    pub fn stats(&self) -> ShardStats {
        ShardStats {
            keys: self.map.len() as u64,
            ..self.stats
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Counts a read's outcome.
    pub fn count_read(&mut self, hit: bool) {
        if hit {
            self.stats.hits += 1;
        } else {
            self.stats.misses += 1;
        }
    }

    /// Runs `f` on the live entry for `key` (removing it first if it has expired), after
    /// marking it used and sliding its deadline.
    pub fn with_live<R>(&mut self, key: &[u8], now: u64, f: impl FnOnce(&Entry) -> R) -> Option<R> {
        match self.map.get_mut(key) {
            None => return None,
            Some(e) if e.expires_at > now => {
                e.last_access = now;
                if e.idle_ttl > 0 {
                    e.expires_at = now.saturating_add(e.idle_ttl);
                }
                return Some(f(e));
            }
            Some(_) => {}
        }
        self.remove_with(key, Cause::Expired);
        None
    }

    /// Like [`ShardState::with_live`], for `f` to change the entry: `f` answers its
    /// result and whether it changed anything (then the key's watchers are marked).
    /// Accounting follows any change to the value's charge, and a value that grew may
    /// evict other keys; a deadline `f` sets or clears must be set with
    /// [`ShardState::set_deadline`] instead.
    pub fn modify<R>(&mut self, key: &[u8], now: u64, f: impl FnOnce(&mut Entry) -> (R, bool)) -> Option<R> {
        match self.map.get_mut(key) {
            None => return None,
            Some(e) if e.expires_at > now => {
                e.last_access = now;
                if e.idle_ttl > 0 {
                    e.expires_at = now.saturating_add(e.idle_ttl);
                }
                let before = e.value.charge();
                let (r, changed) = f(e);
                let after = e.value.charge();
                if after != before {
                    self.stats.bytes = self.stats.bytes + after as u64 - before as u64;
                }
                if changed {
                    self.touch(key);
                }
                if after > before {
                    // A value grown in place (APPEND, HSET, ...) counts against the
                    // bound as a new one does.
                    self.evict(now, key);
                }
                return Some(r);
            }
            Some(_) => {}
        }
        self.remove_with(key, Cause::Expired);
        None
    }

    /// Like [`ShardState::with_live`] without touching recency or sliding deadlines
    /// (TTL, EXISTS).
    pub fn peek<R>(&mut self, key: &[u8], now: u64, f: impl FnOnce(&Entry) -> R) -> Option<R> {
        match self.map.get(key) {
            None => return None,
            Some(e) if e.expires_at > now => return Some(f(e)),
            Some(_) => {}
        }
        self.remove_with(key, Cause::Expired);
        None
    }

    /// Sets a live entry's hard deadline (keeping the `expires` gauge right).
    pub fn set_deadline(&mut self, key: &[u8], now: u64, expires_at: u64, idle_ttl: u64) -> bool {
        let mut had = false;
        let r = self.modify(key, now, |e| {
            had = e.expires_at != NEVER;
            e.expires_at = expires_at;
            e.idle_ttl = idle_ttl;
            ((), true)
        });
        if r.is_some() {
            let has = expires_at != NEVER;
            if had && !has {
                self.stats.expires -= 1;
            } else if has && !had {
                self.stats.expires += 1;
            }
        }
        r.is_some()
    }

    /// Stores `value` under `key`, replacing any entry; returns the previous live value.
    /// Evicts other keys afterwards if the shard is over its bound.
    pub fn insert(&mut self, key: &[u8], value: Stored, d: Deadlines, now: u64) -> Option<Value> {
        self.insert_as(key, Value::Str(value), d, now, Encoding::Whole)
    }

    /// [`ShardState::insert`] with the encoding OBJECT ENCODING is to report.
    pub fn insert_as(&mut self, key: &[u8], value: Value, d: Deadlines, now: u64, encoding: Encoding) -> Option<Value> {
        let new_len = value.charge();
        self.touch(key);
        let previous = if let Some(e) = self.map.get_mut(key) {
            let was_live = e.expires_at > now;
            let old_len = e.value.charge();
            let had_deadline = e.expires_at != NEVER;
            let old = std::mem::replace(&mut e.value, value);
            e.encoding = encoding;
            e.expires_at = d.expires_at;
            e.fresh_until = d.fresh_until;
            e.idle_ttl = d.idle_ttl;
            e.last_access = now;
            self.stats.bytes = self.stats.bytes + new_len as u64 - old_len as u64;
            match (had_deadline, d.expires_at != NEVER) {
                (true, false) => self.stats.expires -= 1,
                (false, true) => self.stats.expires += 1,
                _ => {}
            }
            if !was_live {
                self.stats.expired += 1;
            }
            was_live.then_some(old)
        } else {
            let k = Stored::copy_from(key);
            let slot = self.keys.len() as u32;
            self.keys.push(k.clone());
            self.map.insert(
                k,
                Entry {
                    value,
                    encoding,
                    expires_at: d.expires_at,
                    fresh_until: d.fresh_until,
                    idle_ttl: d.idle_ttl,
                    last_access: now,
                    slot,
                },
            );
            self.stats.bytes += charge(key.len(), new_len);
            if d.expires_at != NEVER {
                self.stats.expires += 1;
            }
            // Amortised active expiry: each new key pays for a look at one random key.
            self.expire_sample(1, now);
            None
        };
        self.evict(now, key);
        previous
    }

    /// Removes `key` if live; returns its value.
    pub fn remove(&mut self, key: &[u8], now: u64) -> Option<Value> {
        let live = match self.map.get(key) {
            None => return None,
            Some(e) => e.expires_at > now,
        };
        if live {
            self.remove_with(key, Cause::Deleted)
        } else {
            self.remove_with(key, Cause::Expired);
            None
        }
    }

    /// Drops every entry; returns how many there were.
    pub fn clear(&mut self) -> usize {
        for (key, watchers) in &self.watched {
            if self.map.contains_key(key) {
                watchers.iter().for_each(|w| w.dirty.store(true, Ordering::Release));
            }
        }
        let n = self.map.len();
        self.map = HashMap::new();
        self.keys = Vec::new();
        self.stats.bytes = 0;
        self.stats.expires = 0;
        n
    }

    /// Removes every key `keep` refuses (as deleted, its watchers told); returns how
    /// many were removed.
    pub fn retain(&mut self, mut keep: impl FnMut(&[u8]) -> bool) -> usize {
        let mut removed = 0;
        // From the end: removing slot i moves the last key, already looked at, into it.
        for i in (0..self.keys.len()).rev() {
            if !keep(self.keys[i].as_slice()) {
                let k = self.keys[i].clone();
                self.remove_with(k.as_slice(), Cause::Deleted);
                removed += 1;
            }
        }
        removed
    }

    pub fn count_drop(&mut self) {
        self.stats.drops += 1;
    }

    /// Looks at up to `samples` random keys and removes the expired ones; returns how
    /// many were removed.
    pub fn expire_sample(&mut self, samples: usize, now: u64) -> usize {
        let mut removed = 0;
        for _ in 0..samples {
            if self.keys.is_empty() {
                break;
            }
            let i = self.random_slot();
            let expired = self.map.get(&self.keys[i]).is_some_and(|e| e.expires_at <= now);
            if expired {
                let k = self.keys[i].clone();
                self.remove_with(k.as_slice(), Cause::Expired);
                removed += 1;
            }
        }
        removed
    }

    /// Evicts sampled least-recently-used keys (never `protect`) until the shard is
    /// within its bound; expired keys met on the way are removed first.
    fn evict(&mut self, now: u64, protect: &[u8]) {
        if self.max_bytes == 0 {
            return;
        }
        while self.stats.bytes > self.max_bytes && !self.keys.is_empty() {
            let mut victim: Option<(usize, u64)> = None;
            let mut expired: Option<usize> = None;
            for _ in 0..self.samples {
                let i = self.random_slot();
                let k = &self.keys[i];
                if k.as_slice() == protect {
                    continue;
                }
                let e = &self.map[k];
                if e.expires_at <= now {
                    expired = Some(i);
                    break;
                }
                if victim.is_none_or(|(_, at)| e.last_access < at) {
                    victim = Some((i, e.last_access));
                }
            }
            if let Some(i) = expired {
                let k = self.keys[i].clone();
                self.remove_with(k.as_slice(), Cause::Expired);
            } else if let Some((i, _)) = victim {
                let k = self.keys[i].clone();
                self.remove_with(k.as_slice(), Cause::Evicted);
            } else if self.keys.len() == 1 {
                // Only the protected key is left: it stays, over the bound.
                break;
            }
        }
    }

    fn remove_with(&mut self, key: &[u8], cause: Cause) -> Option<Value> {
        let e = self.map.remove(key)?;
        self.touch(key);
        let slot = e.slot as usize;
        let k = self.keys.swap_remove(slot);
        if let Some(moved) = self.keys.get(slot) {
            if let Some(m) = self.map.get_mut(moved) {
                m.slot = slot as u32;
            }
        }
        self.stats.bytes -= charge(k.len(), e.value.charge());
        if e.expires_at != NEVER {
            self.stats.expires -= 1;
        }
        match cause {
            Cause::Deleted => {}
            Cause::Expired => self.stats.expired += 1,
            Cause::Evicted => self.stats.evictions += 1,
        }
        Some(e.value)
    }

    /// Marks the watchers of `key` dirty.
    fn touch(&self, key: &[u8]) {
        if self.watched.is_empty() {
            return;
        }
        if let Some(watchers) = self.watched.get(key) {
            watchers.iter().for_each(|w| w.dirty.store(true, Ordering::Release));
        }
    }

    /// A random number (for choosing a shard by its size).
    pub fn random(&mut self) -> u64 {
        self.next_random()
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: plenty for sampling.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn random_slot(&mut self) -> usize {
        (self.next_random() >> 32) as usize % self.keys.len()
    }
}

#[cfg(test)]
mod tests;
