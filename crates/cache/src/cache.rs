//! [`Cache`]: the shards of one node behind a consistent-hash ring, and the operations
//! on them (the Redis string commands' semantics, in Rust types).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::clock::{Clock, SystemClock};
use crate::ring::{key_hash, Ring, ShardId, DEFAULT_VNODES};
use crate::shard::{Deadlines, Shard, ShardStats, NEVER};
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
        }
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

    fn shard(&self, key: &[u8]) -> &Shard {
        &self.shards[self.shard_of(key)]
    }

    fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    /// The value of `key`, if it is live (counts a hit or a miss).
    pub fn get(&self, key: &[u8]) -> Option<Bytes> {
        let now = self.now();
        let mut s = self.shard(key).lock();
        let v = s.with_live(key, now, |e| e.value.to_bytes());
        s.count_read(v.is_some());
        v
    }

    /// Calls `f` with the value of `key` while the shard is locked, to copy it out without
    /// touching its reference count (counts a hit or a miss). `f` must be quick.
    pub fn get_with<R>(&self, key: &[u8], f: impl FnOnce(Option<&[u8]>) -> R) -> R {
        let now = self.now();
        let mut s = self.shard(key).lock();
        let mut f = Some(f);
        let r = s.with_live(key, now, |e| (f.take().expect("called once"))(Some(e.value.as_slice())));
        s.count_read(r.is_some());
        match r {
            Some(r) => r,
            None => (f.take().expect("not called yet"))(None),
        }
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
        self.store(key, Stored::from_bytes(value), options)
    }

    /// [`Cache::set_with`] copying the value from a slice (the RESP server's path: one
    /// copy, none at all for short values, which are kept inline).
    pub(crate) fn set_slice(&self, key: &[u8], value: &[u8], options: SetOptions) -> SetOutcome {
        self.store(key, Stored::copy_from(value), options)
    }

    fn store(&self, key: &[u8], value: Stored, options: SetOptions) -> SetOutcome {
        let now = self.now();
        let unix_now = match options.expiry {
            Expiry::AtUnixMs(_) => self.clock.unix_ms(),
            _ => 0,
        };
        let fixed = |expiry: Expiry| match expiry {
            Expiry::Never | Expiry::Keep => Deadlines::NONE,
            Expiry::After(ttl) => Deadlines {
                expires_at: deadline(now, ttl),
                ..Deadlines::NONE
            },
            Expiry::Sliding(ttl) => Deadlines {
                expires_at: deadline(now, ttl),
                idle_ttl: ms(ttl).max(1),
                ..Deadlines::NONE
            },
            Expiry::AtUnixMs(at) => Deadlines {
                expires_at: now.saturating_add(at.saturating_sub(unix_now)),
                ..Deadlines::NONE
            },
        };
        let mut s = self.shard(key).lock();
        if options.condition == Condition::Always && options.expiry != Expiry::Keep {
            // The common SET: one map lookup (two for a new key).
            let previous = s.insert(key, value, fixed(options.expiry), now);
            // Freed after the lock is released.
            drop(s);
            return SetOutcome {
                stored: true,
                previous: previous.map(|p| p.to_bytes()),
            };
        }
        let current = s.peek(key, now, |e| (e.value.to_bytes(), e.expires_at, e.idle_ttl));
        let allowed = match options.condition {
            Condition::Always => true,
            Condition::IfAbsent => current.is_none(),
            Condition::IfPresent => current.is_some(),
        };
        let previous = current.as_ref().map(|c| c.0.clone());
        if !allowed {
            return SetOutcome {
                stored: false,
                previous,
            };
        }
        let d = match (options.expiry, current) {
            (Expiry::Keep, Some((_, expires_at, idle_ttl))) => Deadlines {
                expires_at,
                idle_ttl,
                ..Deadlines::NONE
            },
            (expiry, _) => fixed(expiry),
        };
        s.insert(key, value, d, now);
        SetOutcome { stored: true, previous }
    }

    /// Removes `key`; true if it existed.
    pub fn delete(&self, key: &[u8]) -> bool {
        let now = self.now();
        self.shard(key).lock().remove(key, now).is_some()
    }

    /// Removes `key` and returns its value (counts a hit or a miss).
    pub fn get_del(&self, key: &[u8]) -> Option<Bytes> {
        let now = self.now();
        let mut s = self.shard(key).lock();
        let v = s.remove(key, now);
        s.count_read(v.is_some());
        v.map(|v| v.to_bytes())
    }

    /// Whether `key` exists (does not count as a read for recency).
    pub fn exists(&self, key: &[u8]) -> bool {
        let now = self.now();
        self.shard(key).lock().peek(key, now, |_| ()).is_some()
    }

    /// Length of the value of `key` (0 when missing).
    pub fn strlen(&self, key: &[u8]) -> usize {
        let now = self.now();
        self.shard(key)
            .lock()
            .with_live(key, now, |e| e.value.len())
            .unwrap_or(0)
    }

    /// Sets `key` to expire after `ttl` (a zero `ttl` deletes it); false if no such key.
    pub fn expire(&self, key: &[u8], ttl: Duration) -> bool {
        self.expire_with(key, Expiry::After(ttl), ExpireCondition::Always)
    }

    /// Sets `key`'s deadline if `condition` holds; false if no such key or the condition
    /// failed. `expiry` may be `After`, `Sliding` or `AtUnixMs`; a deadline not in the
    /// future deletes the key (and counts as set). `Never` is [`Cache::persist`].
    pub fn expire_with(&self, key: &[u8], expiry: Expiry, condition: ExpireCondition) -> bool {
        let now = self.now();
        let (at, idle) = match expiry {
            Expiry::Never => return self.persist(key),
            Expiry::Keep => return self.exists(key),
            Expiry::After(ttl) => (deadline(now, ttl), 0),
            Expiry::Sliding(ttl) => (deadline(now, ttl), ms(ttl).max(1)),
            Expiry::AtUnixMs(at) => {
                let unix_now = self.clock.unix_ms();
                (
                    if at <= unix_now {
                        now
                    } else {
                        now.saturating_add(at - unix_now)
                    },
                    0,
                )
            }
        };
        let mut s = self.shard(key).lock();
        let Some(current) = s.peek(key, now, |e| e.expires_at) else {
            return false;
        };
        let ok = match condition {
            ExpireCondition::Always => true,
            ExpireCondition::IfNone => current == NEVER,
            ExpireCondition::IfSome => current != NEVER,
            ExpireCondition::IfLater => current != NEVER && at > current,
            ExpireCondition::IfEarlier => at < current,
        };
        if !ok {
            return false;
        }
        if at <= now {
            s.remove(key, now);
            return true;
        }
        s.set_deadline(key, now, at, idle)
    }

    /// Clears `key`'s deadline; true if it had one.
    pub fn persist(&self, key: &[u8]) -> bool {
        let now = self.now();
        let mut s = self.shard(key).lock();
        match s.peek(key, now, |e| e.expires_at) {
            Some(at) if at != NEVER => s.set_deadline(key, now, NEVER, 0),
            _ => false,
        }
    }

    /// `key`'s remaining time to live.
    pub fn ttl(&self, key: &[u8]) -> Ttl {
        let now = self.now();
        match self.shard(key).lock().peek(key, now, |e| e.expires_at) {
            None => Ttl::Missing,
            Some(NEVER) => Ttl::Persistent,
            Some(at) => Ttl::Remaining(Duration::from_millis(at - now)),
        }
    }

    /// Adds `delta` to the integer in `key` (missing counts as 0); keeps its deadline.
    pub fn incr_by(&self, key: &[u8], delta: i64) -> Result<i64, CacheError> {
        let now = self.now();
        let mut s = self.shard(key).lock();
        let r = s.with_live(key, now, |e| {
            let n = parse_i64(e.value.as_slice()).ok_or(CacheError::NotAnInteger)?;
            let n = n.checked_add(delta).ok_or(CacheError::Overflow)?;
            e.value = Stored::from_i64(n);
            Ok(n)
        });
        match r {
            Some(r) => r,
            None => {
                s.insert(key, Stored::from_i64(delta), Deadlines::NONE, now);
                Ok(delta)
            }
        }
    }

    /// Appends `data` to `key`'s value (creating it); returns the new length.
    pub fn append(&self, key: &[u8], data: &[u8]) -> usize {
        let now = self.now();
        let mut s = self.shard(key).lock();
        let r = s.with_live(key, now, |e| {
            let mut v = BytesMut::with_capacity(e.value.len() + data.len());
            v.extend_from_slice(e.value.as_slice());
            v.extend_from_slice(data);
            e.value = Stored::from_bytes(v.freeze());
            e.value.len()
        });
        match r {
            Some(n) => n,
            None => {
                s.insert(key, Stored::copy_from(data), Deadlines::NONE, now);
                data.len()
            }
        }
    }

    /// Keys held (including expired ones not yet removed, as Redis' DBSIZE).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every key of every shard.
    pub fn flush(&self) {
        for s in self.shards.iter() {
            s.lock().clear();
        }
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

    /// Removes expired keys found among `samples` random keys of each shard, repeating a
    /// shard while more than a quarter of its sample had expired (Redis' active expiry).
    /// Returns how many keys were removed.
    pub fn sweep_expired(&self, samples: usize) -> usize {
        let now = self.now();
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
        let shards: Vec<ShardStats> = self.shards.iter().map(|s| s.lock().stats()).collect();
        let mut total = ShardStats::default();
        for s in &shards {
            total.add(s);
        }
        CacheStats { shards, total }
    }

    /// Read-through lookup: the value and whether it is still fresh (counts hit/miss).
    pub(crate) fn lookup(&self, key: &[u8]) -> Lookup {
        let now = self.now();
        let mut s = self.shard(key).lock();
        let r = s.with_live(key, now, |e| (e.value.to_bytes(), e.fresh_until > now));
        s.count_read(r.is_some());
        match r {
            Some((v, true)) => Lookup::Fresh(v),
            Some((v, false)) => Lookup::Stale(v),
            None => Lookup::Miss,
        }
    }

    /// Stores a loaded value, fresh for `ttl` and then servable stale for `stale` more.
    pub(crate) fn put_loaded(&self, key: &[u8], value: Bytes, ttl: Duration, stale: Duration) {
        let now = self.now();
        let fresh_until = deadline(now, ttl);
        let d = Deadlines {
            expires_at: deadline(fresh_until, stale),
            fresh_until,
            idle_ttl: 0,
        };
        self.shard(key).lock().insert(key, Stored::from_bytes(value), d, now);
    }
}

/// Runs [`Cache::sweep_expired`] every `every` until `token` is cancelled.
pub async fn run_sweeper(cache: Arc<Cache>, every: Duration, token: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => { cache.sweep_expired(20); }
            _ = token.cancelled() => return,
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX - 1)
}

fn deadline(now: u64, ttl: Duration) -> u64 {
    // NEVER is reserved for "no deadline".
    now.saturating_add(ms(ttl)).min(NEVER - 1)
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
