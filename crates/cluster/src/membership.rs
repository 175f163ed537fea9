//! Who is in the cluster: each node puts its [`NodeRecord`] in the nodes bucket every
//! [`HEARTBEAT`]; every node watches the bucket and takes a node silent for
//! [`DEAD_AFTER`] for dead.
//!
//! Why 3 s: a heartbeat a second, so death is three missed heartbeats. A put takes well
//! under a millisecond on a healthy cluster, so a live node misses three only when it is
//! stalled for seconds (on a loaded 2-core machine a scheduling stall of a second has been
//! seen; three is the margin), and 3 s of detection leaves 2 s of the 5 s re-placement
//! target for placing and starting. Liveness is judged by when a record *arrived here*,
//! not by the clock of the node that wrote it, so clock skew between machines does not
//! matter.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Nats;

pub const HEARTBEAT: Duration = Duration::from_secs(1);
pub const DEAD_AFTER: Duration = Duration::from_secs(3);
/// A node that has not heard its own heartbeat for this long is deaf (see
/// [`Membership::hears_itself`]): sooner than [`DEAD_AFTER`] by more than a heartbeat, so
/// that a node cut off knows it before it takes the others, whose last heartbeat may
/// have come up to [`HEARTBEAT`] before its own, for dead.
pub const DEAF_AFTER: Duration = Duration::from_millis(1500);

/// What a node says about itself on every heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub name: String,
    /// Failure-domain and other labels (`power=A`), for `placement.spread`.
    pub labels: BTreeMap<String, String>,
    /// Memory offered to instances, MB.
    pub memory_mb: u64,
    pub accelerators: u32,
    /// Memory and accelerators reserved by the instances placed here.
    pub used_memory_mb: u64,
    pub used_accelerators: u32,
    /// Instances placed here and instances ready here.
    pub instances: u32,
    pub ready: u32,
    /// The address other nodes reach this node's forwarders on.
    pub addr: String,
    /// Each app's gateway on this node: app -> address.
    pub gateways: BTreeMap<String, String>,
    /// Wall-clock time of this heartbeat (shown, never used to judge liveness).
    pub heartbeat_ms: u64,
    pub started_ms: u64,
    /// Per `APP/SERVICE`: what this node's gateway has in flight to the service and has
    /// had answered; the scheduler sizes autoscaled services from the sum over the live
    /// nodes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub load: BTreeMap<String, ServiceLoad>,
    /// Every instance running here (`strata ps --nats`), at most [`MAX_LISTED`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub running: Vec<RunningInstance>,
    /// Replies this node's gateway and node API have had from other nodes' instances:
    /// `APP/SERVICE/NODE/INSTANCE` -> count (`strata ps --nats` adds them to each
    /// instance's own node's count).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub relayed: BTreeMap<String, u64>,
    /// Each app's cache on this node (an app with a Redis port, `cache.listen`): app ->
    /// its Redis port and what its shards hold. The live nodes listed for an app make
    /// its cache ring (`strata cache stats --nats`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub caches: BTreeMap<String, CacheRecord>,
    /// Each app's node API on this node: app -> URL (on loopback: for the operator of
    /// this machine, with the app's control token; `/v1/traces` there gathers a trace
    /// from every node).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub apis: BTreeMap<String, String>,
    /// The apps placed here that this node cannot run, and why (its gateway port taken,
    /// a bundle that does not unpack): the scheduler places them elsewhere.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cannot_run: BTreeMap<String, String>,
}

/// One app's cache on one node, as its heartbeat reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheRecord {
    /// Its Redis port, where the other nodes forward the keys this one owns.
    pub addr: String,
    /// Keys held, per shard of this node.
    pub shards: Vec<u64>,
    /// Bytes held (keys, values and overhead), all shards.
    pub bytes: u64,
}

/// The most instances one heartbeat lists (a heartbeat stays a few tens of kB).
pub const MAX_LISTED: usize = 500;

/// An instance as `strata ps --nats` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningInstance {
    pub app: String,
    pub service: String,
    pub id: String,
    /// `starting`, `ready`, `unhealthy`, `backoff`, ... (the node's `ps` states).
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    pub restarts: u32,
    pub inflight: u64,
    pub served: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// One node's load on one service, as its heartbeat reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceLoad {
    /// Requests this node's gateway (and node API) has in flight to the service's
    /// members, on any node.
    pub inflight: u64,
    /// Replies this node has had from the service since the app started here (a count
    /// that only grows, while the app runs).
    pub served: u64,
    /// The service's ready members on this node.
    pub ready: u32,
    /// Requests this node's gateway (and node API) holds for the service while it has
    /// no member on any node (a service the scheduler may scale to zero): the demand
    /// that makes the scheduler start one.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub held: u64,
    /// For a service that consumes a queue: its group's messages unread or leased (the
    /// queue is the cluster's, so every node reports the same figure, a moment apart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog: Option<u64>,
    /// For a service that consumes a queue: the queue's next offset (publishes so far).
    #[serde(default)]
    pub published: u64,
    /// Instances of the service on this node that ended before they were ever ready
    /// while no other was starting here, since the app started here (a count that only
    /// grows): a node holding requests for the service at zero answers them when it
    /// grows and no instance is starting on another node.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub launches_failed: u64,
    /// When the last of them launches again (Unix ms; 0: none is waiting to): until
    /// then a node holding requests for the service answers them at once.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub relaunch_at_ms: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A record and when it last arrived here.
#[derive(Debug, Clone)]
pub struct Seen {
    pub record: NodeRecord,
    pub at: Instant,
}

impl Seen {
    pub fn is_live(&self) -> bool {
        self.at.elapsed() < DEAD_AFTER
    }
}

/// The nodes as seen from here, kept up to date by [`Membership::watch`].
#[derive(Clone)]
pub struct Membership {
    seen: Arc<watch::Sender<BTreeMap<String, Seen>>>,
}

impl Default for Membership {
    fn default() -> Self {
        Membership {
            seen: Arc::new(watch::channel(BTreeMap::new()).0),
        }
    }
}

impl Membership {
    /// Nodes heard from within [`DEAD_AFTER`].
    pub fn live(&self) -> Vec<NodeRecord> {
        self.seen
            .borrow()
            .values()
            .filter(|s| s.is_live())
            .map(|s| s.record.clone())
            .collect()
    }

    /// Every node heard from since this node started, live or not.
    pub fn all(&self) -> Vec<Seen> {
        self.seen.borrow().values().cloned().collect()
    }

    pub fn is_live(&self, node: &str) -> bool {
        self.seen.borrow().get(node).is_some_and(Seen::is_live)
    }

    /// Whether this node (`me`) heard its own heartbeat within [`DEAF_AFTER`]: if not,
    /// its NATS server is lost or it is cut off, and the others' silence says nothing
    /// of them.
    pub fn hears_itself(&self, me: &str) -> bool {
        self.seen.borrow().get(me).is_some_and(|s| s.at.elapsed() < DEAF_AFTER)
    }

    /// Changes whenever a record arrives.
    pub fn changed(&self) -> watch::Receiver<BTreeMap<String, Seen>> {
        self.seen.subscribe()
    }

    /// Follows the nodes bucket until `shutdown`, resubscribing after a lost connection.
    /// Every node, this one included, puts its record every [`HEARTBEAT`], so a working
    /// watch is never silent for a whole one: after a second without an entry (and at
    /// the start: a watch brings only changes) the bucket is read whole, and after three
    /// the watch is made again (a watch made while JetStream was still electing can stay
    /// silent). While the watch delivers, no node reads every other node's record each
    /// second (N x N reads a second across the cluster, and a consumer made by every
    /// listing of the keys).
    pub async fn watch(self, nats: Nats, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(HEARTBEAT);
        let mut watch = None;
        // When the watch last delivered an entry; None: never (read whole).
        let mut last_entry: Option<Instant> = None;
        // When the watch was made or last delivered: silent for three heartbeats, made again.
        let mut last_sign = Instant::now();
        loop {
            if watch.is_none() {
                match nats.nodes.watch_all().await {
                    Ok(w) => {
                        watch = Some(w);
                        last_sign = Instant::now();
                    }
                    Err(e) => tracing::warn!("watch the node records: {e}"),
                }
            }
            tokio::select! {
                entry = async { watch.as_mut().expect("set").next().await }, if watch.is_some() => {
                    match entry {
                        Some(Ok(entry)) => {
                            last_entry = Some(Instant::now());
                            last_sign = Instant::now();
                            if entry.operation == async_nats::jetstream::kv::Operation::Put {
                                self.heard(&entry.key, &entry.value);
                            } else {
                                self.seen.send_modify(|m| {
                                    m.remove(&entry.key);
                                });
                            }
                        }
                        _ => watch = None,
                    }
                }
                _ = tick.tick() => {
                    if last_entry.is_some_and(|at| at.elapsed() < HEARTBEAT) {
                        continue;
                    }
                    if watch.is_some() && last_sign.elapsed() >= 3 * HEARTBEAT {
                        tracing::debug!("the node records' watch is silent: watching again");
                        watch = None;
                    }
                    if let Ok(keys) = crate::nats::keys(&nats.nodes).await {
                        for key in keys {
                            if let Ok(Some(value)) = nats.nodes.get(&key).await {
                                self.heard(&key, &value);
                            }
                        }
                    }
                }
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// Takes node `name` as last heard at `at` (tests).
    #[cfg(test)]
    pub(crate) fn heard_at(&self, name: &str, at: Instant) {
        self.seen.send_modify(|m| {
            let record = NodeRecord {
                name: name.into(),
                ..NodeRecord::default()
            };
            m.insert(name.into(), Seen { record, at });
        });
    }

    /// A record read from the bucket. A heartbeat newer than the last one seen counts
    /// as heard now (arrival, whatever the writer's clock says); the first record seen
    /// of a node is aged by its own timestamp (a record from before this node started
    /// says nothing of now); the same heartbeat read again changes nothing. Public for
    /// the scheduler, which reads a node's record itself before it takes it for dead.
    pub fn heard(&self, key: &str, value: &[u8]) {
        let record = match serde_json::from_slice::<NodeRecord>(value) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(node = key, "unreadable node record: {e}");
                return;
            }
        };
        self.seen.send_if_modified(|m| match m.get_mut(key) {
            Some(seen) if seen.record.heartbeat_ms == record.heartbeat_ms => false,
            Some(seen) => {
                *seen = Seen {
                    at: Instant::now(),
                    record,
                };
                true
            }
            None => {
                let age = Duration::from_millis(crate::now_ms().saturating_sub(record.heartbeat_ms));
                let at = Instant::now()
                    .checked_sub(age.min(DEAD_AFTER * 2))
                    .unwrap_or_else(Instant::now);
                m.insert(key.to_string(), Seen { record, at });
                true
            }
        });
    }
}

/// Puts `record()` every [`HEARTBEAT`] until `shutdown`, then deletes it, and at once
/// when `now` is notified (a request held at zero: the scheduler should know without
/// waiting for the next second). `connected` says whether the last put reached the
/// cluster.
pub async fn heartbeat(
    nats: Nats,
    record: impl Fn() -> NodeRecord,
    connected: Arc<Mutex<Option<String>>>,
    now: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) {
    let name = record().name;
    // At a fixed rate, not a second after each put: a put's own time would otherwise
    // widen the gaps between heartbeats, which this node judges its own hearing by
    // ([`DEAF_AFTER`]).
    let mut every = tokio::time::interval(HEARTBEAT);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        let mut r = record();
        r.heartbeat_ms = crate::now_ms();
        let outcome = put(&nats, &r).await;
        *connected.lock().unwrap() = outcome.err().map(|e| format!("{e:#}"));
        tokio::select! {
            _ = every.tick() => {}
            _ = now.notified() => {}
            _ = shutdown.cancelled() => break,
        }
    }
    if let Err(e) = nats.nodes.delete(&name).await {
        tracing::debug!("remove this node's record: {e}");
    }
}

async fn put(nats: &Nats, record: &NodeRecord) -> Result<()> {
    let body = serde_json::to_vec(record)?;
    tokio::time::timeout(HEARTBEAT, nats.nodes.put(&record.name, body.into())).await??;
    Ok(())
}
