//! Caches: the node's cache with its Redis-protocol listener (`cache`), and the
//! read-through caches in front of store namespaces (`caches.NAME`).

use serde::{Deserialize, Serialize};

/// Every field may be left out; [`Default`] holds the values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSpec {
    /// Address of the Redis-protocol listener; None (the default): no Redis port. Opt-in,
    /// so that two apps on one machine never share a cache by default: a fixed default
    /// port would make the second app's node take the first's (each node claims its
    /// addresses, so it would refuse to start instead). The cache is reachable through
    /// the node API either way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Memory the cache may hold (keys and values) before it evicts.
    pub max_memory_mb: u64,
    /// Threads serving the Redis protocol; 0: one per core. One by default: on a machine
    /// whose cores the clients share, a second thread measured worse p99 at no gain.
    pub threads: u32,
    /// A Redis connection with no command under way for this long is closed (Redis'
    /// `timeout`); 0: never.
    pub idle_timeout_ms: u64,
    /// A command must arrive whole within this long of its first bytes (plus a second
    /// per MiB received), else the client gets an error and is closed; 0: never.
    pub command_timeout_ms: u64,
    /// Most Redis connections open at once (Redis' `maxclients`); one more gets an
    /// error and is closed.
    pub max_clients: u32,
    /// Most bytes one connection may have sent and not yet had run (Redis'
    /// `client-query-buffer-limit`); past it the connection gets an error and is closed.
    /// A value (one argument) may be up to half of it.
    pub max_query_buffer_mb: u64,
    /// Most bytes the query buffers of all connections may hold together (as Redis'
    /// `maxmemory-clients`); a connection that would take them past it is closed.
    pub max_query_buffers_total_mb: u64,
    /// The password Redis clients give (`AUTH password`, Redis' `requirepass`), at least
    /// 16 characters; `$STRATA_CACHE_PASSWORD` overrides it (keep it out of the file
    /// that way). None (the default): no password, and then `listen` must be a loopback
    /// address: the node refuses to start otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// The shortest password the Redis port accepts (`cache.password`).
pub const MIN_CACHE_PASSWORD_CHARS: usize = 16;

impl Default for CacheSpec {
    fn default() -> Self {
        CacheSpec {
            listen: None,
            max_memory_mb: 256,
            threads: 1,
            idle_timeout_ms: 300_000,
            command_timeout_ms: 10_000,
            max_clients: 10_000,
            max_query_buffer_mb: 64,
            max_query_buffers_total_mb: 256,
            password: None,
        }
    }
}

/// A cache in front of a store namespace: a miss loads from the store (one load per key
/// however many ask), a value is fresh for `ttl_ms`, then served stale for up to
/// `stale_ms` more while it is refreshed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadThroughSpec {
    /// The store namespace (within the app) it reads.
    pub namespace: String,
    #[serde(default = "default_ttl_ms")]
    pub ttl_ms: u64,
    #[serde(default)]
    pub stale_ms: u64,
}

fn default_ttl_ms() -> u64 {
    60_000
}
