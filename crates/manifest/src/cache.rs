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
}

impl Default for CacheSpec {
    fn default() -> Self {
        CacheSpec {
            listen: None,
            max_memory_mb: 256,
            threads: 1,
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
