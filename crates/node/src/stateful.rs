//! The cache of a node and its read-through caches over the store: each declared cache
//! (`caches` in the manifest) loads what it misses from one namespace of the app.

use std::sync::Arc;
use std::time::Duration;

use strata_api::ReadThroughCaches;
use strata_cache::{read_through_key, Cache, CacheConfig, LoadFuture, Loader, ReadThrough, ReadThroughConfig};
use strata_manifest::Manifest;
use strata_store::{app_namespace, StoreBackend};

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
