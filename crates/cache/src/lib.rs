//! strata's cache: an in-memory key-value cache of byte strings (and, through the Redis
//! port, Redis hashes, sets, lists and sorted sets), sharded by consistent
//! hashing, with per-key TTLs, a memory bound with eviction, read-through in front of a
//! store namespace, and a Redis protocol server. No HTTP in here: the node wires the
//! cache to its API, manifest and CLI.
//!
//! # Layout
//!
//! Bottom-up: each module uses only the ones above it (named in parentheses).
//!
//! - [`Clock`] (`clock`): monotonic and Unix time; [`SystemClock`], and [`ManualClock`]
//!   for tests.
//! - [`Ring`] (`ring`): the consistent-hash ring with virtual nodes mapping a key to its
//!   [`ShardId`] (node name + shard number), so shards of other nodes can join later.
//! - `stored`: keys and values as held in a shard (inline up to 23 bytes, else shared).
//! - `hash` (stored): a Redis hash as a shard holds it (fields in Redis' listpack
//!   order while Redis would keep a listpack).
//! - `set` (stored; and `cache`'s integer parsing, as `shard` uses it): a Redis set as
//!   a shard holds it (sorted while Redis would keep an intset).
//! - `score`: a sorted set's scores parsed and printed as Redis does (`strtod`'s forms,
//!   `%.17g`).
//! - `zset` (stored, score): a Redis sorted set as a shard holds it (a tree ordered by
//!   score and member beside a member → score map; listpack or skiplist as Redis 7.0
//!   would report).
//! - `glob`: Redis' glob patterns (KEYS, SCAN's MATCH, CONFIG GET, pub/sub patterns).
//! - `pubsub` (glob): the channel and pattern subscriptions across worker threads (one
//!   registry per [`Cache`]), and each subscriber's mailbox (bounded: past 32 MiB a
//!   Redis connection is closed; a platform subscriber drops past its own bound); a
//!   publisher never waits for a subscriber.
//! - `topics` (pubsub, cache): the platform's topics on the same registry:
//!   [`Cache::publish`], [`Cache::subscribe_topic`] ([`TopicSubscription`]) and
//!   [`Cache::topic_stats`].
//! - `long_double`: the x87 extended precision INCRBYFLOAT computes in.
//! - `list` (stored): a Redis list as a shard holds it (a deque, its charge kept exact;
//!   OBJECT ENCODING `quicklist`, as Redis 7.0 answers for every list).
//! - `value` (stored, hash, set, list, zset): a key's value, a string, a hash, a set, a
//!   list or a sorted set, and its charge.
//! - `blocking` (stored): the Redis port's clients blocked on list and sorted set keys
//!   (BLPOP, BZPOPMIN & co.),
//!   by key in each shard, first blocked first served, across worker threads; its
//!   header says why no wake-up and no element is lost.
//! - `shard` (stored, value, blocking): one shard (a `Mutex<HashMap>`), its memory
//!   accounting, lazy and sampled expiry, eviction by sampling (approximate LRU: sample
//!   [`CacheConfig::eviction_samples`] keys, evict the least recently used), the
//!   connections WATCHing its keys, and SCAN's walk over it.
//! - `keyspace` (clock, ring, stored, hash, set, list, zset, value, blocking, glob,
//!   long_double, shard): every operation on keys, locking one shard per operation or
//!   holding several at once (multi-key commands and transactions are atomic: its
//!   header says how).
//! - [`Cache`] (`cache`; keyspace and the above): the shards of one node and the public
//!   operations on them (get, set with conditions and expiry, delete,
//!   expire/persist/ttl, incr, append, flush, [`Cache::drop_shard`], [`Cache::stats`]).
//! - [`NodeRing`] (`node_ring`; cache, ring): in a cluster, the ring over the nodes
//!   that decides which node owns a key, and the amnesia rule at each of its changes.
//! - [`ReadThrough`] (`read_through`; cache): a cache in front of a [`Loader`], with
//!   request coalescing and serve-stale-while-refresh.
//! - [`resp`] (cache, ring, node_ring): the Redis protocol server ([`spawn_resp`]); its own modules
//!   are ordered in its header.
//!
//! # Using it
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use bytes::Bytes;
//! use strata_cache::{Cache, CacheConfig, Expiry, ReadThrough, ReadThroughConfig, Loader, LoadFuture};
//! use tokio_util::sync::CancellationToken;
//!
//! # async fn demo() -> std::io::Result<()> {
//! let cache = Arc::new(Cache::new(CacheConfig { max_bytes: 64 << 20, ..CacheConfig::default() }));
//! cache.set(b"greeting", Bytes::from_static(b"hello"), Expiry::After(Duration::from_secs(30)));
//! assert_eq!(cache.get(b"greeting").as_deref(), Some(&b"hello"[..]));
//!
//! // Read-through in front of a store namespace.
//! struct Users;
//! impl Loader for Users {
//!     fn load<'a>(&'a self, key: &'a [u8]) -> LoadFuture<'a> {
//!         Box::pin(async move { Ok(Some(Bytes::copy_from_slice(key))) })
//!     }
//! }
//! let users = ReadThrough::new(
//!     cache.clone(),
//!     Arc::new(Users),
//!     ReadThroughConfig { ttl: Duration::from_secs(60), stale: Duration::from_secs(30), ..Default::default() },
//! );
//! let _alice = users.get(b"user:alice").await;
//!
//! // The Redis protocol on its own port, one worker per core; expiry sweeping.
//! let token = CancellationToken::new();
//! let workers = strata_cache::spawn_resp("127.0.0.1:6380".parse().unwrap(), 0, cache.clone(), token.clone())?;
//! tokio::spawn(strata_cache::run_sweeper(cache.clone(), Duration::from_millis(100), token.clone()));
//! token.cancel();
//! workers.join().await;
//! # Ok(()) }
//! ```
//!
//! # What the node wires
//!
//! - One [`Cache`] per node (or per declared cache), built from the manifest's settings
//!   ([`CacheConfig`]: shards, memory bound, ...), and a task running [`run_sweeper`]
//!   (expired keys are otherwise removed only when touched or sampled by writes).
//! - For a cache declared in front of a store namespace, a [`ReadThrough`] with a
//!   [`Loader`] reading that namespace; call [`ReadThrough::invalidate`] after writes to
//!   the store so a stale value is not served past the write.
//! - `strata cache drop-shard N` → [`Cache::drop_shard`]; stats → [`Cache::stats`] (and
//!   [`ReadThrough::stats`]).
//! - The Redis port → [`spawn_resp`] / [`spawn_resp_with`]; [`RespWorkers::join`] after
//!   cancelling the token. The RESP server serves the cache as Redis strings, hashes,
//!   sets, lists and sorted sets (no read-through on that path); the string operations
//!   here see any of the others as no string. Its bounds come from [`RespConfig`]:
//!   connections (`maxclients`), idle and slow-command timeouts, each query buffer and
//!   all of them together; the defaults hold without any setting. Its password
//!   ([`RespConfig::password`], Redis' `requirepass`) is the node's to choose: the node
//!   keeps a port without one on loopback.
//! - In a cluster, a [`NodeRing`] per cache ([`RespConfig::ring`]), set by the node to
//!   the live nodes running the cache ([`NodeRing::set`], which applies the amnesia
//!   rule); the Redis port then forwards each command to its keys' owner, and
//!   [`call_peer`] does it for other callers (the node API's raw keys).
//!
//! # Invariants
//!
//! - A shard's lock is held only for map work: time is read and values are allocated
//!   before it is taken; nothing awaits while holding it.
//! - Shard locks are taken one at a time, or several in ascending shard order and held
//!   together (a multi-key command, EXEC): never out of order, so never a deadlock.
//! - Memory accounting (`bytes`) is key + value + [`ENTRY_OVERHEAD`] per entry (a hash's
//!   value: its fields and values + a fixed overhead per field; a set's: its members +
//!   a fixed overhead per member, by encoding; a list's: its elements and a fixed
//!   overhead per element; a sorted set's: its members + a fixed overhead per member),
//!   exact for what the cache holds; each
//!   shard evicts to stay within `max_bytes / shards`.
//! - Keys and values are copied out of request buffers, so a cached value never pins a
//!   connection's buffer.
//! - Every connection to the Redis port is bounded in count, in time (idle, and a
//!   command being received) and in the bytes it holds unrun, and so are all of them
//!   together; none of it costs a timer or a clock read per command.
//! - A blocked client (BLPOP & co.) is registered on its keys in their shards while it
//!   holds them, and every write adding list elements signals under the key's shard
//!   lock: no wake-up is lost, and no other lock is taken. A write to a shard nobody
//!   waits on pays one test of an empty map for it.
//! - A PUBLISH never waits for a subscriber: it appends to each receiver's mailbox under
//!   that mailbox's own lock and wakes it. Each mailbox is bounded, so a slow subscriber
//!   costs at most 32 MiB before it is closed.
//! - Forwarding is one hop: a connection from a peer (named `strata-peer:NODE`) runs
//!   everything where it arrives. A single node (no [`RespConfig::ring`]) pays one
//!   `Option` test per batch of commands and one per command for the cluster's
//!   existence.

mod blocking;
mod cache;
mod clock;
mod glob;
mod hash;
mod keyspace;
mod list;
mod long_double;
mod node_ring;
mod pubsub;
mod read_through;
pub mod resp;
mod ring;
mod score;
mod set;
mod shard;
mod stored;
mod topics;
mod value;
mod zset;

pub use cache::{
    run_sweeper, Cache, CacheConfig, CacheError, CacheStats, Condition, ExpireCondition, Expiry, SetOptions,
    SetOutcome, Ttl, DEFAULT_MAX_BYTES, EMPTY_SWEEP_EVERY,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use node_ring::{NodeRing, Owner, RingNode, RingView};
pub use pubsub::Bridge as TopicBridge;
pub use read_through::{
    read_through_key, LoadError, LoadFuture, Loader, ReadThrough, ReadThroughConfig, ReadThroughStats,
};
pub use resp::{
    call_peer, spawn_resp, spawn_resp_figures, spawn_resp_with, RespConfig, RespFigures, RespStats, RespWorkers,
};
pub use ring::{key_hash, Ring, ShardId, StableHasher, DEFAULT_VNODES};
pub use shard::{ShardStats, ENTRY_OVERHEAD};
pub use topics::{TopicBound, TopicStats, TopicSubscription};
