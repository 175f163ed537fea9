//! [`Cache`]: the shards of one node behind a consistent-hash ring, and its public
//! operations (each one a [`Keyspace`] operation locking one shard, or all of them for
//! the whole-cache ones).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::blocking::Waiters;
use crate::clock::{Clock, SystemClock};
use crate::keyspace::{Access, ExpireFlags, Keyspace};
use crate::pubsub::PubSub;
use crate::ring::{key_hash, Ring, ShardId, DEFAULT_VNODES};
use crate::shard::{Shard, ShardStats};
use crate::stored::Stored;

/// Default memory bound of a cache (all shards together).
pub const DEFAULT_MAX_BYTES: u64 = 256 << 20;

/// How a cache is built.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Number of shards (0: one per core).
    pub shards: usize,
    /// Memory bound in bytes over all shards, split evenly between them (0: none).
    pub max_bytes: u64,
    /// Virtual nodes per shard on the ring.
    pub vnodes: u32,
    /// Keys sampled per eviction (Redis' `maxmemory-samples`).
    pub eviction_samples: usize,
    /// This node's name on the ring.
    pub node: String,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            shards: 0,
            max_bytes: DEFAULT_MAX_BYTES,
            vnodes: DEFAULT_VNODES,
            eviction_samples: 5,
            node: "local".to_string(),
        }
    }
}

/// Errors a caller branches on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    #[error("no shard {shard}: this cache has shards 0 to {last}")]
    NoSuchShard { shard: usize, last: usize },
    #[error("value is not an integer or out of range")]
    NotAnInteger,
    #[error("increment or decrement would overflow")]
    Overflow,
    /// The key holds a hash, a set or a list (written through the Redis port), not a
    /// string.
    #[error("the key holds a hash, a set or a list, not a string")]
    WrongType,
}

/// When a written value expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Never (any previous deadline is cleared).
    Never,
    /// Keep the key's current deadline (`KEEPTTL`).
    Keep,
    /// After this long.
    After(Duration),
    /// After this long without a read or write: each access restarts the countdown.
    Sliding(Duration),
    /// At this Unix time, in milliseconds (`EXAT`, `PXAT`).
    AtUnixMs(u64),
}

/// Which existing state a write requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Condition {
    #[default]
    Always,
    /// Only if the key does not exist (`NX`).
    IfAbsent,
    /// Only if the key exists (`XX`).
    IfPresent,
}

/// Options of [`Cache::set_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetOptions {
    pub expiry: Expiry,
    pub condition: Condition,
}

impl Default for SetOptions {
    fn default() -> Self {
        SetOptions {
            expiry: Expiry::Never,
            condition: Condition::Always,
        }
    }
}

/// What [`Cache::set_with`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetOutcome {
    /// Whether the value was written (false when the condition did not hold).
    pub stored: bool,
    /// The key's value before the call, if it had one.
    pub previous: Option<Bytes>,
}

/// Conditions of [`Cache::expire_with`] (Redis 7's `EXPIRE ... NX|XX|GT|LT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExpireCondition {
    #[default]
    Always,
    /// Only if the key has no deadline.
    IfNone,
    /// Only if the key has a deadline.
    IfSome,
    /// Only if the new deadline is later than the current one (none counts as infinite).
    IfLater,
    /// Only if the new deadline is earlier than the current one (none counts as infinite).
    IfEarlier,
}

/// A key's remaining time to live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// No such key.
    Missing,
    /// The key has no deadline.
    Persistent,
    /// The key expires after this long.
    Remaining(Duration),
}

/// [`Cache::stats`]: every shard's figures and their sum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheStats {
    pub shards: Vec<ShardStats>,
    pub total: ShardStats,
}

/// What a read-through lookup found.
#[derive(Debug)]
pub(crate) enum Lookup {
    Fresh(Bytes),
    Stale(Bytes),
    Miss,
}

/// An in-memory cache of byte strings: sharded, with TTLs, a memory bound and counters.
pub struct Cache {
    shards: Box<[Shard]>,
    ring: Ring<ShardId>,
    clock: Arc<dyn Clock>,
    config: CacheConfig,
    /// The Redis port's clients blocked on list and sorted set keys.
    waiters: Waiters,
    /// Every channel and pattern subscription: the Redis port's connections' and the
    /// platform's subscribers (`topics`).
    pubsub: PubSub,
    /// The platform's subscribers, for their figures.
    pub(crate) topic_subscribers: std::sync::Mutex<Vec<Arc<crate::topics::Registered>>>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("shards", &self.shards.len())
            .field("config", &self.config)
            .finish()
    }
}

impl Cache {
    /// A cache on the real clock.
    pub fn new(config: CacheConfig) -> Cache {
        Cache::with_clock(config, Arc::new(SystemClock::new()))
    }

    /// A cache on the given clock (tests pass a [`crate::ManualClock`]).
    pub fn with_clock(mut config: CacheConfig, clock: Arc<dyn Clock>) -> Cache {
        if config.shards == 0 {
            config.shards = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        }
        let n = config.shards;
        let per_shard = if config.max_bytes == 0 {
            0
        } else {
            (config.max_bytes / n as u64).max(1)
        };
        let node: Arc<str> = config.node.as_str().into();
        let mut ring = Ring::new(config.vnodes);
        let shards = (0..n)
            .map(|i| {
                ring.add(ShardId {
                    node: node.clone(),
                    shard: i as u32,
                });
                Shard::new(
                    per_shard,
                    config.eviction_samples,
                    0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1),
                )
            })
            .collect();
        Cache {
            shards,
            ring,
            clock,
            config,
            waiters: Waiters::default(),
            pubsub: PubSub::default(),
            topic_subscribers: Default::default(),
        }
    }

    /// Every channel and pattern subscription of the Redis port and the platform.
    pub(crate) fn pubsub(&self) -> &PubSub {
        &self.pubsub
    }

    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The ring mapping keys to shards. Every shard is on this node for now; the ring's
    /// nodes are [`ShardId`]s so that shards of other nodes can be added to it later.
    pub fn ring(&self) -> &Ring<ShardId> {
        &self.ring
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The number of the shard that owns `key`.
    pub fn shard_of(&self, key: &[u8]) -> usize {
        if self.shards.len() == 1 {
            return 0;
        }
        let node = self
            .ring
            .owner_of_hash(key_hash(key))
            .expect("the ring has every shard");
        self.ring.nodes()[node].shard as usize
    }

    pub(crate) fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// The clients blocked on list keys.
    pub(crate) fn waiters(&self) -> &Waiters {
        &self.waiters
    }

    /// A keyspace whose operations each lock their own shard.
    pub(crate) fn keyspace(&self) -> Keyspace<'_> {
        Keyspace::new(self)
    }

    /// The value of `key`, if it is live (counts a hit or a miss). A key holding a hash
    /// (written through the Redis port) is no string: `None`, as a missing key; the
    /// writes here replace it, and the in-place changes refuse it.
    pub fn get(&self, key: &[u8]) -> Option<Bytes> {
        self.keyspace().get(key)
    }

    /// Calls `f` with the value of `key` while the shard is locked, to copy it out without
    /// touching its reference count (counts a hit or a miss). `f` must be quick.
    pub fn get_with<R>(&self, key: &[u8], f: impl FnOnce(Option<&[u8]>) -> R) -> R {
        self.keyspace().get_with(key, f)
    }

    /// Stores `value` under `key`.
    pub fn set(&self, key: &[u8], value: Bytes, expiry: Expiry) {
        self.set_with(
            key,
            value,
            SetOptions {
                expiry,
                condition: Condition::Always,
            },
        );
    }

    /// Stores `value` under `key` if `options.condition` holds.
    pub fn set_with(&self, key: &[u8], value: Bytes, options: SetOptions) -> SetOutcome {
        self.keyspace().set(key, Stored::from_bytes(value), options)
    }

    /// Removes `key`; true if it existed.
    pub fn delete(&self, key: &[u8]) -> bool {
        self.keyspace().delete(key)
    }

    /// Removes `key` and returns its value (counts a hit or a miss); a hash stays.
    pub fn get_del(&self, key: &[u8]) -> Option<Bytes> {
        self.keyspace().get_del(key).unwrap_or_default()
    }

    /// Whether `key` exists (does not count as a read for recency).
    pub fn exists(&self, key: &[u8]) -> bool {
        self.keyspace().exists(key, Access::Check)
    }

    /// Length of the value of `key` (0 when missing).
    pub fn strlen(&self, key: &[u8]) -> usize {
        self.keyspace().get_with(key, |v| v.map_or(0, <[u8]>::len))
    }

    /// Sets `key` to expire after `ttl` (a zero `ttl` deletes it); false if no such key.
    pub fn expire(&self, key: &[u8], ttl: Duration) -> bool {
        self.expire_with(key, Expiry::After(ttl), ExpireCondition::Always)
    }

    /// Sets `key`'s deadline if `condition` holds; false if no such key or the condition
    /// failed. `expiry` may be `After`, `Sliding` or `AtUnixMs`; a deadline not in the
    /// future deletes the key (and counts as set). `Never` is [`Cache::persist`].
    pub fn expire_with(&self, key: &[u8], expiry: Expiry, condition: ExpireCondition) -> bool {
        let flags = match condition {
            ExpireCondition::Always => ExpireFlags::default(),
            ExpireCondition::IfNone => ExpireFlags {
                nx: true,
                ..ExpireFlags::default()
            },
            ExpireCondition::IfSome => ExpireFlags {
                xx: true,
                ..ExpireFlags::default()
            },
            ExpireCondition::IfLater => ExpireFlags {
                gt: true,
                ..ExpireFlags::default()
            },
            ExpireCondition::IfEarlier => ExpireFlags {
                lt: true,
                ..ExpireFlags::default()
            },
        };
        self.keyspace().expire_with(key, expiry, flags)
    }

    /// Clears `key`'s deadline; true if it had one.
    pub fn persist(&self, key: &[u8]) -> bool {
        self.keyspace().persist(key)
    }

    /// `key`'s remaining time to live.
    pub fn ttl(&self, key: &[u8]) -> Ttl {
        self.keyspace().ttl(key, Access::Check)
    }

    /// Adds `delta` to the integer in `key` (missing counts as 0); keeps its deadline.
    pub fn incr_by(&self, key: &[u8], delta: i64) -> Result<i64, CacheError> {
        self.keyspace().incr_by(key, delta)
    }

    /// Appends `data` to `key`'s value (creating it); returns the new length, or
    /// [`CacheError::WrongType`] if the key holds a hash or a set.
    pub fn append(&self, key: &[u8], data: &[u8]) -> Result<usize, CacheError> {
        self.keyspace()
            .append(key, data, usize::MAX)
            .map_err(|_| CacheError::WrongType)
    }

    /// Keys held (including expired ones not yet removed, as Redis' DBSIZE).
    pub fn len(&self) -> usize {
        self.keyspace().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys WATCHed by the Redis port's connections (each key counted once per
    /// connection watching it).
    pub fn watched_keys(&self) -> usize {
        self.shards.iter().map(|s| s.lock().watched_keys()).sum()
    }

    /// Removes every key of every shard, all at once.
    pub fn flush(&self) {
        self.keyspace().flush();
    }

    /// Empties shard `n` as if its memory were lost (for tests and drills); returns how
    /// many keys it held. Read-through caches refill it from the store on demand.
    pub fn drop_shard(&self, n: usize) -> Result<usize, CacheError> {
        let shard = self.shards.get(n).ok_or(CacheError::NoSuchShard {
            shard: n,
            last: self.shards.len() - 1,
        })?;
        let mut s = shard.lock();
        s.count_drop();
        let dropped = s.clear();
        tracing::info!(shard = n, keys = dropped, "cache shard dropped");
        Ok(dropped)
    }

    /// Removes every key `keep` refuses, one shard at a time (each held only for its
    /// own walk); returns how many were removed. A ring change drops with it the keys
    /// this node no longer owns, or did not own before (`NodeRing`).
    pub fn retain(&self, keep: impl Fn(&[u8]) -> bool) -> usize {
        self.shards.iter().map(|s| s.lock().retain(&keep)).sum()
    }

    /// Removes expired keys found among `samples` random keys of each shard, repeating a
    /// shard while more than a quarter of its sample had expired (Redis' active expiry).
    /// Returns how many keys were removed.
    pub fn sweep_expired(&self, samples: usize) -> usize {
        let now = self.clock.now_ms();
        let mut removed = 0;
        for s in self.shards.iter() {
            for _ in 0..16 {
                let n = s.lock().expire_sample(samples, now);
                removed += n;
                if n * 4 <= samples {
                    break;
                }
            }
        }
        removed
    }

    /// Per-shard and total counters.
    pub fn stats(&self) -> CacheStats {
        CacheStats::from_shards(self.keyspace().stats())
    }

    /// Read-through lookup: the value and whether it is still fresh (counts hit/miss).
    pub(crate) fn lookup(&self, key: &[u8]) -> Lookup {
        match self.keyspace().get_fresh(key) {
            Some((v, true)) => Lookup::Fresh(v),
            Some((v, false)) => Lookup::Stale(v),
            None => Lookup::Miss,
        }
    }

    /// Stores a loaded value, fresh for `ttl` and then servable stale for `stale` more.
    pub(crate) fn put_loaded(&self, key: &[u8], value: Bytes, ttl: Duration, stale: Duration) {
        self.keyspace().put_loaded(key, value, ttl, stale);
    }
}

impl CacheStats {
    pub(crate) fn from_shards(shards: Vec<ShardStats>) -> CacheStats {
        let mut total = ShardStats::default();
        for s in &shards {
            total.add(s);
        }
        CacheStats { shards, total }
    }
}

/// How often [`run_sweeper`] looks at a cache that holds no key: it has nothing to
/// expire, and an idle node need not wake ten times a second for each of its caches.
pub const EMPTY_SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Runs [`Cache::sweep_expired`] every `every` until `token` is cancelled; while the
/// cache holds no key, every [`EMPTY_SWEEP_EVERY`] (or `every` if longer) instead. An
/// expired key is never served either way (a read checks its expiry); the sweep gives
/// back the memory of those nobody reads.
pub async fn run_sweeper(cache: Arc<Cache>, every: Duration, token: tokio_util::sync::CancellationToken) {
    loop {
        let wait = if cache.is_empty() {
            every.max(EMPTY_SWEEP_EVERY)
        } else {
            cache.sweep_expired(20);
            every
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = token.cancelled() => return,
        }
    }
}

/// Parses a Redis integer: optional '-', digits, no spaces or '+', no leading zeros.
pub(crate) fn parse_i64(b: &[u8]) -> Option<i64> {
    if b.is_empty() || b.len() > 20 {
        return None;
    }
    let (neg, digits) = if b[0] == b'-' { (true, &b[1..]) } else { (false, b) };
    if digits.is_empty() || (digits[0] == b'0' && (digits.len() > 1 || neg)) {
        return None;
    }
    let mut n: i64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        let d = (c - b'0') as i64;
        n = if neg {
            n.checked_mul(10)?.checked_sub(d)?
        } else {
            n.checked_mul(10)?.checked_add(d)?
        };
    }
    Some(n)
}
