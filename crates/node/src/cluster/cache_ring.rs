//! An app's cache ring on this node: follows the membership and sets the app's
//! [`NodeRing`] to the live nodes whose heartbeat lists a Redis port for the app, so
//! that the port forwards each key to its owner (`strata_cache::resp`). At every change
//! the ring applies the amnesia rule to this node's cache (see `strata_cache::NodeRing`);
//! a node coming (back) onto the ring also forgets its read-through copies, whose
//! invalidations it may have missed while it was away.
//!
//! The read-through caches stay each node's own copies of the store: a hit costs no
//! hop. They are kept coherent by the store's change feed ([`store_changes`]): every
//! node drops its copy of a key that any node wrote.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use strata_cache::{Cache, NodeRing};
use strata_cluster::{JetStreamStore, JetStreamStoreConfig, Membership, Nats, NodeRecord};
use strata_manifest::Manifest;
use strata_store::StoreBackend;
use tokio_util::sync::CancellationToken;

/// How often the ring is recomputed without a new heartbeat: a dead node sends none,
/// so its death is seen by the clock (within [`strata_cluster::DEAD_AFTER`] and this).
const RECHECK: Duration = Duration::from_millis(250);

/// The live nodes running `app`'s cache, with their Redis ports.
pub(super) fn cache_nodes(live: &[NodeRecord], app: &str) -> BTreeMap<String, SocketAddr> {
    live.iter()
        .filter_map(|r| {
            let addr = r.caches.get(app)?.addr.parse().ok()?;
            Some((r.name.clone(), addr))
        })
        .collect()
}

/// The store whose change feed brings this node every write to the app's store, for
/// its read-through caches: `store` itself, unless its feed is shared with the other
/// nodes (a store trigger's: each change to one node), then a second handle on the
/// same buckets with a feed of its own. None when the app declares no cache.
pub(super) async fn store_changes(
    nats: &Nats,
    manifest: &Manifest,
    store: &Arc<dyn StoreBackend>,
    shared_feed: bool,
) -> Result<Option<Arc<dyn StoreBackend>>> {
    if manifest.caches.is_empty() {
        return Ok(None);
    }
    if !shared_feed {
        return Ok(Some(store.clone()));
    }
    let config = JetStreamStoreConfig {
        max_blob_bytes: manifest.store.max_blob_bytes,
        ..JetStreamStoreConfig::default()
    };
    let own = JetStreamStore::open(&nats.js, super::STATE_PREFIX, nats.replicas, config)
        .await
        .context("open the cluster's store for its change feed")?;
    Ok(Some(Arc::new(own)))
}

/// An app's caches on this node.
pub(super) struct Caches {
    /// The Redis port's keys: the ring's.
    pub keys: Arc<Cache>,
    /// The read-through copies.
    pub read_through: Arc<Cache>,
}

/// Keeps `ring` (of `app`'s `caches` on this node) set to the live nodes running the
/// app's cache, until `stop`.
pub(super) async fn follow(
    membership: Membership,
    app: String,
    ring: Arc<NodeRing>,
    caches: Caches,
    stop: CancellationToken,
) {
    let mut changed = membership.changed();
    let mut tick = tokio::time::interval(RECHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = None;
    loop {
        // Not kept as it was while this node's own heartbeat is not arriving (as the
        // pools are, `members::sync`): the other nodes take this one out of their rings
        // meanwhile and serve its keys, so keeping them here would serve stale values
        // once it hears again. Its keys are dropped instead (a cache may lose them).
        let nodes = cache_nodes(&membership.live(), &app);
        if last.as_ref() != Some(&nodes) {
            // Dropping the keys of a change walks the whole cache: off the async workers.
            let (ring, cache, set) = (ring.clone(), caches.keys.clone(), nodes.clone());
            let was_member = ring.view().is_member();
            let joined = tokio::task::spawn_blocking(move || {
                ring.set(&set, &cache);
                !was_member && ring.view().is_member()
            })
            .await
            .unwrap_or(false);
            if joined {
                caches.read_through.flush();
            }
            last = Some(nodes);
        }
        tokio::select! {
            heard = changed.changed() => {
                if heard.is_err() {
                    // The membership is gone: the node is stopping.
                    return;
                }
            }
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
    }
}
