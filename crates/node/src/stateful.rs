//! The cache of a node and its read-through caches over the store: each declared cache
//! (`caches` in the manifest) loads what it misses from one namespace of the app. In a
//! cluster each node keeps its own read-through copies, and drops a copy when the
//! store's change feed says the key changed, whichever node wrote it
//! ([`invalidate_on_changes`]).

use std::sync::Arc;
use std::time::Duration;

use strata_api::ReadThroughCaches;
use strata_cache::{read_through_key, Cache, CacheConfig, LoadFuture, Loader, ReadThrough, ReadThroughConfig};
use strata_manifest::Manifest;
use strata_store::{app_namespace, ChangeKind, StoreBackend};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

/// The node's cache, bounded by `cache.max_memory_mb`.
pub(crate) fn cache(manifest: &Manifest) -> Arc<Cache> {
    Arc::new(Cache::new(CacheConfig {
        max_bytes: manifest.cache.max_memory_mb << 20,
        ..CacheConfig::default()
    }))
}

/// One read-through cache per declared cache, over `store`, all in a cache of their own
/// (bounded by `cache.max_memory_mb` too), apart from the raw keyspace.
pub(crate) fn read_through(manifest: &Manifest, store: &Arc<dyn StoreBackend>) -> ReadThroughCaches {
    let cache = self::cache(manifest);
    let caches = manifest
        .caches
        .iter()
        .map(|(name, spec)| {
            let loader = StoreLoader {
                store: store.clone(),
                ns: app_namespace(&manifest.app, &spec.namespace),
                prefix: read_through_key(name, ""),
            };
            let rt = ReadThrough::new(
                cache.clone(),
                Arc::new(loader),
                ReadThroughConfig {
                    ttl: Duration::from_millis(spec.ttl_ms),
                    stale: Duration::from_millis(spec.stale_ms),
                    ..ReadThroughConfig::default()
                },
            );
            (name.clone(), (spec.namespace.clone(), rt))
        })
        .collect();
    ReadThroughCaches { by_name: caches, cache }
}

/// Loads a read-through cache's misses from its store namespace.
struct StoreLoader {
    store: Arc<dyn StoreBackend>,
    /// The full store namespace.
    ns: String,
    /// The cache key prefix of this read-through cache (`rt:NAME:`).
    prefix: String,
}

impl Loader for StoreLoader {
    fn load<'a>(&'a self, key: &'a [u8]) -> LoadFuture<'a> {
        Box::pin(async move {
            let key = std::str::from_utf8(key).map_err(|_| "key is not UTF-8".to_string())?;
            let key = key.strip_prefix(&self.prefix).unwrap_or(key);
            match self.store.get(&self.ns, key).await {
                Ok(entry) => Ok(entry.map(|e| e.value)),
                Err(e) => Err(e.to_string()),
            }
        })
    }
}

/// Drops the read-through copies of every key `store`'s change feed reports changed
/// (every write, through any node), until `shutdown`; a feed that fell behind (changes
/// lost to this receiver) drops every copy. None when no cache is declared.
pub(crate) fn invalidate_on_changes(
    manifest: &Manifest,
    caches: &ReadThroughCaches,
    store: &Arc<dyn StoreBackend>,
    shutdown: &CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    if caches.by_name.is_empty() {
        return None;
    }
    // (full store namespace, cache name, its read-through cache)
    let over: Vec<(String, String, Arc<ReadThrough>)> = caches
        .by_name
        .iter()
        .map(|(name, (ns, rt))| (app_namespace(&manifest.app, ns), name.clone(), rt.clone()))
        .collect();
    let all = caches.cache.clone();
    let mut changes = store.subscribe();
    let shutdown = shutdown.clone();
    // Held: a store may end its feed when its last handle goes.
    let store = store.clone();
    Some(tokio::spawn(async move {
        let _store = store;
        loop {
            let change = tokio::select! {
                change = changes.recv() => change,
                _ = shutdown.cancelled() => return,
            };
            match change {
                Ok(c) if c.kind == ChangeKind::Value => {
                    for (ns, name, rt) in &over {
                        if *ns == c.ns {
                            rt.invalidate(read_through_key(name, &c.key).as_bytes());
                        }
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(
                        missed = n,
                        "the store's change feed fell behind: every read-through copy dropped"
                    );
                    all.flush();
                }
                Err(RecvError::Closed) => return,
            }
        }
    }))
}
