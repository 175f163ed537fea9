//! The cluster as one app's dashboard on this node shows it (a
//! [`strata_api::ClusterView`]): the nodes from this node's membership (each record as it
//! last arrived, and how long ago), the node holding the scheduler's lease as
//! [`follow_lease`] last read it, the app's placement as the reconcile loop last
//! applied it. Read from memory once a second per open dashboard: no call to NATS.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::kv;
use strata_api::cluster::{ClusterSnapshot, InstanceView, NodeState, NodeView, Unplaced};
use strata_cluster::membership::HEARTBEAT;
use strata_cluster::placement::AppPlacement;
use strata_cluster::{lease, Membership, NodeRecord, DEAD_AFTER};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often [`follow_lease`] reads who holds the lease when this node does not.
const READ_HOLDER_EVERY: Duration = Duration::from_secs(1);

/// What this node hears of the cluster, shared by every app's view: the nodes'
/// heartbeats and who holds the scheduler's lease.
#[derive(Clone)]
pub(super) struct Heard {
    pub membership: Membership,
    pub scheduler: watch::Receiver<Option<String>>,
    /// Why this node's last heartbeat did not reach the cluster; None: it did.
    pub heartbeat_error: Arc<Mutex<Option<String>>>,
}

/// Keeps `holder` naming the node that holds the scheduler's lease until `shutdown`:
/// this node while the lease task says it holds it (at once when that changes), else
/// what the lease bucket says, read once a second: one read per node, however many
/// dashboards are open. A read that gets no answer keeps the last name.
pub(super) async fn follow_lease(
    bucket: kv::Store,
    me: String,
    mut held: watch::Receiver<bool>,
    holder: watch::Sender<Option<String>>,
    shutdown: CancellationToken,
) {
    loop {
        let holds = *held.borrow_and_update();
        let now = match holds {
            true => Some(Some(me.clone())),
            false => tokio::time::timeout(READ_HOLDER_EVERY, lease::holder(&bucket))
                .await
                .ok(),
        };
        if let Some(now) = now {
            holder.send_if_modified(|h| std::mem::replace(h, now.clone()) != now);
        }
        tokio::select! {
            _ = tokio::time::sleep(READ_HOLDER_EVERY) => {}
            Ok(()) = held.changed() => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

pub(super) struct AppView {
    app: String,
    /// This node's name.
    me: String,
    heard: Heard,
    placement: Mutex<AppPlacement>,
}

impl AppView {
    pub(super) fn new(app: &str, me: &str, heard: Heard) -> AppView {
        AppView {
            app: app.to_string(),
            me: me.to_string(),
            heard,
            placement: Mutex::new(AppPlacement::default()),
        }
    }

    /// The placement the reconcile loop now applies.
    pub(super) fn placed(&self, placement: &AppPlacement) {
        *self.placement.lock().unwrap() = placement.clone();
    }
}

impl strata_api::ClusterView for AppView {
    fn snapshot(&self) -> ClusterSnapshot {
        let placement = self.placement.lock().unwrap().clone();
        ClusterSnapshot {
            node: self.me.clone(),
            scheduler: self.heard.scheduler.borrow().clone(),
            nodes: self
                .heard
                .membership
                .all()
                .iter()
                .map(|seen| node_view(&self.app, &seen.record, seen.at.elapsed()))
                .collect(),
            placement: placement.services,
            unplaced: placement
                .unplaced
                .into_iter()
                .map(|(service, u)| {
                    let unplaced = Unplaced {
                        count: u.count,
                        reason: u.reason,
                    };
                    (service, unplaced)
                })
                .collect(),
            heartbeat_error: self.heard.heartbeat_error.lock().unwrap().clone(),
        }
    }
}

/// A node's state from how long ago its last heartbeat arrived here: dead as the
/// placement judges it (silent for [`DEAD_AFTER`]), late after a missed heartbeat.
fn state_of(heard: Duration) -> NodeState {
    if heard >= DEAD_AFTER {
        NodeState::Dead
    } else if heard >= 2 * HEARTBEAT {
        NodeState::Late
    } else {
        NodeState::Live
    }
}

/// One node's record as `app`'s dashboard shows it: only that app's instances and load.
fn node_view(app: &str, r: &NodeRecord, heard: Duration) -> NodeView {
    let prefix = format!("{app}/");
    NodeView {
        name: r.name.clone(),
        addr: r.addr.clone(),
        state: state_of(heard),
        heard_ms: heard.as_millis() as u64,
        labels: r.labels.clone(),
        memory_mb: r.memory_mb,
        used_memory_mb: r.used_memory_mb,
        accelerators: r.accelerators,
        used_accelerators: r.used_accelerators,
        placed: r.instances,
        ready: r.ready,
        inflight: r
            .load
            .iter()
            .filter(|(service, _)| service.starts_with(&prefix))
            .map(|(_, load)| load.inflight)
            .sum(),
        started_ms: r.started_ms,
        instances: r
            .running
            .iter()
            .filter(|i| i.app == app)
            .map(|i| InstanceView {
                service: i.service.clone(),
                id: i.id.clone(),
                state: i.state.clone(),
                inflight: i.inflight,
                served: i.served,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use strata_cluster::membership::{RunningInstance, ServiceLoad};

    use super::*;

    #[test]
    fn a_node_is_late_after_a_missed_heartbeat_and_dead_as_the_placement_judges() {
        assert_eq!(state_of(Duration::ZERO), NodeState::Live);
        assert_eq!(state_of(Duration::from_millis(1999)), NodeState::Live);
        assert_eq!(state_of(2 * HEARTBEAT), NodeState::Late);
        assert_eq!(state_of(DEAD_AFTER - Duration::from_millis(1)), NodeState::Late);
        assert_eq!(state_of(DEAD_AFTER), NodeState::Dead);
    }

    #[test]
    fn a_node_shows_only_the_apps_own_instances_and_load() {
        let instance = |app: &str, id: &str| RunningInstance {
            app: app.into(),
            service: "web".into(),
            id: id.into(),
            state: "ready".into(),
            inflight: 2,
            served: 7,
            ..RunningInstance::default()
        };
        let load = |inflight| ServiceLoad {
            inflight,
            ..ServiceLoad::default()
        };
        let record = NodeRecord {
            name: "b".into(),
            addr: "10.0.0.2".into(),
            instances: 3,
            ready: 2,
            running: vec![
                instance("shop", "web-1"),
                instance("other", "web-1"),
                instance("shop", "web-2"),
            ],
            load: [
                ("shop/web".to_string(), load(3)),
                ("shop/api".to_string(), load(4)),
                ("shopping/web".to_string(), load(100)),
            ]
            .into(),
            ..NodeRecord::default()
        };
        let view = node_view("shop", &record, Duration::from_millis(3500));
        assert_eq!(view.state, NodeState::Dead);
        assert_eq!(view.heard_ms, 3500);
        assert_eq!((view.placed, view.ready, view.inflight), (3, 2, 7));
        let ids: Vec<&str> = view.instances.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["web-1", "web-2"]);
    }
}
