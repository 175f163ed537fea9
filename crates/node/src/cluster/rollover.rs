//! Rolling an app over to a new version on this node: the app's gateway workers
//! ([`AppGateway`]) outlive its versions; a new version's `Node` starts beside the old
//! one on them and takes the workers' slot once ready ([`roll_over`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use strata_appservice::EventKind;
use strata_cluster::placement::AppPlacement;
use strata_gateway::GatewaySlot;
use tokio_util::sync::CancellationToken;

use super::{stop_app, stop_version, Running, Status};

/// How long a new version may take to be ready before it takes over anyway (its
/// instances keep starting under the usual restart policy; an event says so).
const ROLL_READY_WITHIN: Duration = Duration::from_secs(60);

/// Rolls `app` over from `old` to `new` (started beside it on the same gateway
/// workers): waits until every service of the new version has its share of this node
/// ready and a member to send to (here or on another node), puts the new gateway in
/// the workers' slot, then stops the old version, whose open requests finish on its
/// own gateway while its instances drain.
#[allow(clippy::too_many_arguments)]
pub(super) async fn roll_over(
    app: &str,
    old: Running,
    mut new: Running,
    placement: &AppPlacement,
    me: &str,
    running: &mut BTreeMap<String, Running>,
    status: &Arc<Mutex<Status>>,
    shutdown: &CancellationToken,
) {
    let started = tokio::time::Instant::now();
    let waited = tokio::select! {
        ready = tokio::time::timeout(ROLL_READY_WITHIN, ready_to_serve(&new, placement, me)) => ready.is_ok(),
        _ = shutdown.cancelled() => false,
    };
    for service in placement
        .services
        .keys()
        .filter(|s| !new.manifest.functions.contains_key(*s))
    {
        let message = if waited {
            format!(
                "rolled over to bundle {} here: the new version served after {} ms, the old one stops",
                placement.digest,
                started.elapsed().as_millis()
            )
        } else {
            format!(
                "rolled over to bundle {} here: the new version was not all ready within {} s; it serves anyway",
                placement.digest,
                ROLL_READY_WITHIN.as_secs()
            )
        };
        new.node.app.record(service, EventKind::Placed, message);
    }
    let shared = Arc::ptr_eq(&old.gateway, &new.gateway);
    if shared {
        old.gateway.slot.set(new.node.gateway.clone());
    }
    new.placed(placement);
    status.lock().unwrap().show(app, &new);
    running.insert(app.to_string(), new);
    let old_dir = old.state_dir.clone();
    if shared {
        // The workers now belong to the new version; the old one must not stop them.
        stop_version(app, old).await;
    } else {
        stop_app(app, old).await;
    }
    if let Err(e) = std::fs::remove_dir_all(&old_dir) {
        tracing::debug!(app, dir = %old_dir.display(), "remove the old version's state dir: {e}");
    }
}

/// True once every (non-function) service of `r` has its share of this node ready and
/// its pool a member somewhere, checked every 100 ms.
async fn ready_to_serve(r: &Running, placement: &AppPlacement, me: &str) {
    loop {
        let snapshot = r.node.app.snapshot();
        let ready = placement
            .services
            .keys()
            .filter(|s| !r.manifest.functions.contains_key(*s))
            .all(|service| {
                let share = placement.share(service, me) as usize;
                let here = snapshot
                    .iter()
                    .filter(|svc| &svc.name == service)
                    .flat_map(|svc| &svc.instances)
                    .filter(|i| i.state == strata_appservice::InstanceState::Ready)
                    .count();
                let placed: u32 = placement.services.get(service).map_or(0, |n| n.values().sum());
                here >= share && (placed == 0 || !r.node.bus.pool(service).members().is_empty())
            });
        if ready {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The short form of a bundle digest that names a version's state dir and its
/// members' keys: the first 12 hex digits.
pub(super) fn version_of(digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.chars().take(12).collect()
}

/// An app's gateway workers on this node, kept across the app's versions.
pub(super) struct AppGateway {
    pub addr: SocketAddr,
    pub slot: Arc<GatewaySlot>,
    stop: CancellationToken,
    workers: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl AppGateway {
    /// Binds `addr` with `threads` workers and nothing to serve yet; the workers stay
    /// as they are across the app's versions.
    pub fn spawn(addr: SocketAddr, threads: usize, shutdown: &CancellationToken) -> Result<Arc<AppGateway>> {
        let slot = GatewaySlot::empty();
        let stop = shutdown.child_token();
        let workers = strata_gateway::spawn_slot(addr, threads, slot.clone(), stop.clone())
            .with_context(|| format!("listen on {addr} for the app's gateway"))?;
        Ok(Arc::new(AppGateway {
            addr: workers.addr,
            slot,
            stop,
            workers: Mutex::new(Some(tokio::spawn(workers.join()))),
        }))
    }

    /// Stops the workers once their open requests are done.
    pub async fn stop(&self) {
        self.stop.cancel();
        let workers = self.workers.lock().unwrap().take();
        if let Some(workers) = workers {
            let _ = workers.await;
        }
    }
}
