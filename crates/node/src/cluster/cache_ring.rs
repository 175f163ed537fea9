//! An app's cache ring on this node: follows the membership and sets the app's
//! [`NodeRing`] to the live nodes whose heartbeat lists a Redis port for the app, so
//! that the port forwards each key to its owner (`strata_cache::resp`). At every change
//! the ring applies the amnesia rule to this node's cache (see `strata_cache::NodeRing`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use strata_cache::{Cache, NodeRing};
use strata_cluster::{Membership, NodeRecord};
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

/// Keeps `ring` (of `cache`, `app`'s on this node) set to the live nodes running the
/// app's cache, until `stop`.
pub(super) async fn follow(
    membership: Membership,
    app: String,
    ring: Arc<NodeRing>,
    cache: Arc<Cache>,
    stop: CancellationToken,
) {
    let mut changed = membership.changed();
    let mut tick = tokio::time::interval(RECHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = None;
    loop {
        let nodes = cache_nodes(&membership.live(), &app);
        if last.as_ref() != Some(&nodes) {
            // Dropping the keys of a change walks the whole cache: off the async workers.
            let (ring, cache, set) = (ring.clone(), cache.clone(), nodes.clone());
            let _ = tokio::task::spawn_blocking(move || ring.set(&set, &cache)).await;
            last = Some(nodes);
        }
        tokio::select! {
            _ = changed.changed() => {}
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
    }
}
