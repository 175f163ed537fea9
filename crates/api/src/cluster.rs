//! What the dashboard shows of the cluster a node belongs to (docs/dashboard.md): the
//! nodes as this node's membership sees them (state, last heartbeat, capacity and
//! load), the node holding the scheduler's lease, the scheduler's placement of the app, and the app's instances on each node.
//!
//! The API knows no NATS: a cluster node hands it a [`ClusterView`], which the
//! dashboard's stream reads once a second per open page (a read of what the node holds
//! in memory, no call to the cluster); a single node (`strata up`) has none.

use std::collections::BTreeMap;

use serde::Serialize;

/// The cluster as one node sees it, for the dashboard.
pub trait ClusterView: Send + Sync {
    /// Read from memory: called on the async runtime, it must not block.
    fn snapshot(&self) -> ClusterSnapshot;
}

/// The cluster at one moment, as this node sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ClusterSnapshot {
    /// This node's name.
    pub node: String,
    /// The node holding the scheduler's lease (it places every app and runs the
    /// cluster's autoscaler), as this node last read it, at most a second ago; None while
    /// no node holds it (a holder that died leaves it free for up to 3 s).
    pub scheduler: Option<String>,
    /// Every node heard from since this one started, by name, dead ones included until
    /// their record ages out of the cluster.
    pub nodes: Vec<NodeView>,
    /// The scheduler's last placement of this app: service -> node -> instances.
    pub placement: BTreeMap<String, BTreeMap<String, u32>>,
    /// Per service, the instances that fit on no node and why.
    pub unplaced: BTreeMap<String, Unplaced>,
    /// Why this node's last heartbeat did not reach the cluster (its NATS connection
    /// lost, JetStream without a leader); None: it did.
    pub heartbeat_error: Option<String>,
}

/// Whether a node is heard from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Its last heartbeat arrived less than two heartbeats ago.
    Live,
    /// At least one heartbeat missed, not yet silent long enough to be dead: the
    /// placement still counts it.
    Late,
    /// Silent for the cluster's dead-after time: the placement moves its share away.
    Dead,
}

/// One node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeView {
    pub name: String,
    /// Where the other nodes reach its gateways and forwarders.
    pub addr: String,
    pub state: NodeState,
    /// Milliseconds since its last heartbeat arrived here.
    pub heard_ms: u64,
    pub labels: BTreeMap<String, String>,
    /// Memory offered to instances and reserved by those placed there, MB.
    pub memory_mb: u64,
    pub used_memory_mb: u64,
    pub accelerators: u32,
    pub used_accelerators: u32,
    /// Instances placed on it and ready there, every app's.
    pub placed: u32,
    pub ready: u32,
    /// Requests its gateway has in flight to this app's services.
    pub inflight: u64,
    /// When it started, ms since the Unix epoch (its own clock).
    pub started_ms: u64,
    /// This app's instances there, as its last heartbeat listed them.
    pub instances: Vec<InstanceView>,
}

/// One instance of this app on some node (instance ids are a node's own: `web-1` may
/// run on every node).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceView {
    pub service: String,
    pub id: String,
    /// `starting`, `ready`, `backoff`, ... (the node's `ps` states).
    pub state: String,
    pub inflight: u64,
    pub served: u64,
}

/// Instances of a service that fit on no node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unplaced {
    pub count: u32,
    pub reason: String,
}
