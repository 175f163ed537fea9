//! A cluster node (`strata node --nats URLS`): joins the NATS cluster, says who it is on
//! a heartbeat, takes its turn at scheduling when it holds the lease, and runs its own
//! share of every deployed app. Each app runs as a [`Node`] (gateway, node API, App
//! Service, embedded queues and store under this node's data dir) whose instance counts
//! come from the placement (`ScaleBy::Placement`), with the app's members on other nodes
//! joined into its pools (`strata_cluster::members`), so any node's gateway answers any
//! route of any app.
//!
//! Reconcile: the placement bucket is watched; on every change and every second this
//! node starts the apps it lacks (fetching their bundle once per digest), sets each
//! service to its share, and stops the apps no longer deployed. A node cut off from
//! NATS keeps serving its local members and says so; when it is back it reconciles to
//! the placement it then reads, which stops what was moved away while it was gone.
//!
//! A new version of a running app (another bundle digest) rolls over on each node: the
//! new version starts beside the old one (its own state dir, its members published
//! under their own keys) on the same gateway workers, and once its share here is ready
//! and each of its pools has a member somewhere, its gateway is put in the workers'
//! slot and the old version stops; requests already under way finish on the old one.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Result};
use futures_util::StreamExt;
use strata_appservice::{EventKind, NodeResources, ScaleBy};
use strata_cluster::membership::Seen;
use strata_cluster::placement::AppPlacement;
use strata_cluster::{
    lease, members, membership,
    membership::{RunningInstance, ServiceLoad},
    Membership, Nats, NodeRecord,
};
use strata_manifest::Manifest;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Node;

mod app;
mod cache_ring;
mod data_dir;
mod placed;
mod rollover;
mod scale;
mod schedule;
mod shed;
mod topics;
mod traces;
mod view;
mod zero;

use app::{start_app, stop_app, stop_version};
use placed::{describe, why_moved};
use rollover::{roll_over, AppGateway};

/// The buckets of the cluster's store: `strata_state_kv`, `_blobmeta`, `_blobs`.
const STATE_PREFIX: &str = "strata_state";

/// How a cluster node is started.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// NATS server URLs, comma-separated.
    pub nats: String,
    /// This node's name: letters, digits, `-`, `_`; unique in the cluster.
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Memory offered to instances, MB (default: the machine's).
    pub memory_mb: Option<u64>,
    pub accelerators: u32,
    /// Bundles, each app's state (logs, queues, store) and scratch dirs go here.
    pub data_dir: PathBuf,
    /// The address other nodes and clients reach this node at: gateways, Redis ports and
    /// the forwarders to its members listen here.
    pub listen: IpAddr,
    /// The gateways' port: None, each app's `gateway.listen` port; Some(0), any free one
    /// (several nodes on one address, as in tests).
    pub gateway_port: Option<u16>,
    /// Export every app's spans over OTLP/HTTP to this endpoint (`--otlp`).
    pub otlp: Option<strata_gateway::otlp::Endpoint>,
    /// Told of every app (and every new version of one) that starts here, with where
    /// its gateway and dashboard are: the CLI prints them.
    pub announce: Option<tokio::sync::mpsc::UnboundedSender<AppStarted>>,
}

/// An app (or a new version of it) now running on this node.
#[derive(Debug, Clone)]
pub struct AppStarted {
    pub app: String,
    /// The bundle digest's first 12 hex digits.
    pub version: String,
    pub gateway: SocketAddr,
    /// This node's API for the app, on loopback: its dashboard is `/ui` there.
    pub api: SocketAddr,
    /// The API's control token (also in the version's state dir, `control.token`).
    pub control_token: String,
}

/// One app running here.
struct Running {
    digest: String,
    /// The manifest as this node runs it (functions expanded, counts from the placement).
    manifest: Manifest,
    node: Node,
    stop: CancellationToken,
    placement: AppPlacement,
    /// The gateway workers, shared with the next version while the app rolls over.
    gateway: Arc<AppGateway>,
    /// This version's own state dir (`DATA/apps/APP/VERSION`).
    state_dir: PathBuf,
    /// What this version's dashboard shows of the cluster.
    view: Arc<view::AppView>,
}

impl Running {
    /// The placement this version now applies (its dashboard shows it too).
    fn placed(&mut self, placement: &AppPlacement) {
        self.view.placed(placement);
        self.placement = placement.clone();
    }
}

/// What the heartbeat reports: kept by the reconcile loop.
#[derive(Default)]
struct Status {
    gateways: BTreeMap<String, String>,
    /// Each app's node API here.
    apis: BTreeMap<String, String>,
    instances: u32,
    used_memory_mb: u64,
    used_accelerators: u32,
    apps: BTreeMap<String, Arc<strata_appservice::AppService>>,
    /// Each app's bus and services, for the load in the heartbeat.
    buses: BTreeMap<String, (Arc<strata_bus::Bus>, Vec<LoadSource>)>,
    /// Each app's cache with a Redis port here, for its ring and its figures.
    caches: BTreeMap<String, (SocketAddr, Arc<strata_cache::Cache>)>,
    /// Puts the heartbeat at once (a request held for a service at zero).
    beat_now: Arc<tokio::sync::Notify>,
    /// Apps placed here that failed to start, and why: in the heartbeat, so that the
    /// scheduler places them elsewhere and `strata nodes` says why.
    cannot_run: BTreeMap<String, String>,
}

/// An instance as the heartbeat lists it.
fn listed(app: &str, service: &str, i: &strata_appservice::InstanceStatus) -> RunningInstance {
    let state = serde_json::to_value(i.state)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    RunningInstance {
        app: app.to_string(),
        service: service.to_string(),
        id: i.id.clone(),
        state,
        pid: i.pid,
        restarts: i.restarts,
        inflight: i.inflight as u64,
        served: i.served,
        detail: i.detail.clone(),
    }
}

/// A service whose load the heartbeat reports, with the queue group it drains.
struct LoadSource {
    service: String,
    consumes: Option<(Arc<dyn strata_queue::QueueHandle>, String)>,
    /// For a service the scheduler may leave at zero: what this node holds for it.
    held_at_zero: Option<Arc<strata_autoscale::Admission>>,
}

impl Status {
    /// Shows `r` as what runs of `app` here.
    fn show(&mut self, app: &str, r: &Running) {
        self.gateways.insert(app.to_string(), r.node.gateway_addr.to_string());
        self.apis.insert(app.to_string(), format!("http://{}", r.node.api_addr));
        self.apps.insert(app.to_string(), r.node.app.clone());
        let services = r
            .manifest
            .services
            .iter()
            .map(|(service, spec)| LoadSource {
                service: service.clone(),
                consumes: spec.consumes.as_ref().and_then(|c| {
                    let queue = r.node.backends.queues.get(&c.queue).ok()?;
                    Some((queue, c.group.clone()))
                }),
                held_at_zero: r.node.held_at_zero.get(service).cloned(),
            })
            .collect();
        self.buses.insert(app.to_string(), (r.node.bus.clone(), services));
        match r.node.cache_addr {
            Some(addr) => self.caches.insert(app.to_string(), (addr, r.node.cache.clone())),
            None => self.caches.remove(app),
        };
    }

    fn forget(&mut self, app: &str) {
        self.gateways.remove(app);
        self.apis.remove(app);
        self.apps.remove(app);
        self.buses.remove(app);
        self.caches.remove(app);
    }

    /// Each app's cache here: its Redis port and what its shards hold.
    fn caches(&self) -> BTreeMap<String, strata_cluster::CacheRecord> {
        let record = |(addr, cache): &(SocketAddr, Arc<strata_cache::Cache>)| {
            let stats = cache.stats();
            strata_cluster::CacheRecord {
                addr: addr.to_string(),
                shards: stats.shards.iter().map(|s| s.keys).collect(),
                bytes: stats.total.bytes,
            }
        };
        self.caches.iter().map(|(app, c)| (app.clone(), record(c))).collect()
    }

    /// Replies had here from other nodes' instances, by `APP/SERVICE/NODE/INSTANCE`.
    fn relayed(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for (app, (bus, services)) in &self.buses {
            for source in services {
                for m in bus.pool(&source.service).members().iter().filter(|m| m.is_remote()) {
                    let served = m.served();
                    if served > 0 {
                        // `NODE/INSTANCE-VERSION` (members.rs): counted under the
                        // instance, as `ps --nats` lists it.
                        let instance = strata_cluster::members::strip_version(&m.id);
                        let key = format!("{app}/{}/{instance}", source.service);
                        // Bounded as the instances listed are.
                        if out.len() < membership::MAX_LISTED || out.contains_key(&key) {
                            *out.entry(key).or_default() += served;
                        }
                    }
                }
            }
        }
        out
    }

    /// Per `APP/SERVICE`: in flight, answered, ready here, held at zero.
    fn load(&self) -> BTreeMap<String, ServiceLoad> {
        let mut out = BTreeMap::new();
        for (app, (bus, services)) in &self.buses {
            for source in services {
                let pool = bus.pool(&source.service);
                let members = pool.members();
                let mut load = ServiceLoad {
                    inflight: members.iter().map(|m| m.inflight() as u64).sum(),
                    served: pool.served_total(),
                    ready: members.iter().filter(|m| !m.is_remote()).count() as u32,
                    held: source.held_at_zero.as_ref().map_or(0, |a| a.held() as u64),
                    launches_failed: pool.launches_failed(),
                    relaunch_at_ms: pool
                        .relaunch_in()
                        .map_or(0, |d| strata_cluster::now_ms() + d.as_millis() as u64),
                    ..ServiceLoad::default()
                };
                if let Some((queue, group)) = &source.consumes {
                    let stats = queue.stats();
                    // A group not made yet (its first fetch makes it) starts at the oldest.
                    let backlog = stats
                        .groups
                        .iter()
                        .find(|g| &g.name == group)
                        .map_or(stats.messages, |g| g.backlog);
                    load.backlog = Some(backlog);
                    load.published = stats.next_offset;
                }
                out.insert(format!("{app}/{}", source.service), load);
            }
        }
        out
    }
}

/// Runs a cluster node until `shutdown`.
pub async fn run(config: ClusterConfig, shutdown: CancellationToken) -> Result<()> {
    if !strata_cluster::is_key_safe(&config.name) {
        bail!(
            "node name {:?}: use letters, digits, '-' and '_' only (it is part of keys in the cluster's buckets)",
            config.name
        );
    }
    // One node per data dir: a second one would overwrite the first's control tokens
    // and share its logs. Held until this node stops.
    let _data_lock = data_dir::lock(&config.data_dir)?;
    // A node may be started beside its NATS servers: it waits for them longer than a
    // command does.
    // A stop asked for meanwhile (SIGTERM) ends the wait: nothing runs yet.
    let nats = tokio::select! {
        nats = Nats::connect_within(&config.nats, Duration::from_secs(30)) => nats?,
        _ = shutdown.cancelled() => return Ok(()),
    };
    if let Ok(Some(_)) = nats.nodes.get(&config.name).await {
        // A record younger than the dead-after time means a live node of that name.
        let other = nats.nodes.get(&config.name).await.ok().flatten();
        if let Some(r) = other.and_then(|v| serde_json::from_slice::<NodeRecord>(&v).ok()) {
            let age = strata_cluster::now_ms().saturating_sub(r.heartbeat_ms);
            if age < strata_cluster::DEAD_AFTER.as_millis() as u64 {
                bail!(
                    "a node named {:?} is already in the cluster (heartbeat {age} ms ago from {}); give this one another --name",
                    config.name,
                    r.addr
                );
            }
        }
    }
    members::clear_own(&nats, &config.name).await;
    let resources = NodeResources::detect();
    let memory_mb = config.memory_mb.unwrap_or(resources.memory_mb);
    let mut tasks = Vec::new();
    let membership = Membership::default();
    tasks.push(tokio::spawn(
        membership.clone().watch(nats.clone(), shutdown.child_token()),
    ));

    let status = Arc::new(Mutex::new(Status::default()));
    let beat_now = status.lock().unwrap().beat_now.clone();
    let connected = Arc::new(Mutex::new(None));
    let started_ms = strata_cluster::now_ms();
    let record = {
        let (config, status) = (config.clone(), status.clone());
        move || {
            let s = status.lock().unwrap();
            let mut running = Vec::new();
            let mut ready = 0;
            for (app, a) in &s.apps {
                for svc in a.snapshot() {
                    for i in svc.instances {
                        if i.state == strata_appservice::InstanceState::Ready {
                            ready += 1;
                        }
                        // A stopped slot is history (`strata events` has it), not an instance.
                        let stopped = i.state == strata_appservice::InstanceState::Stopped;
                        if !stopped && running.len() < membership::MAX_LISTED {
                            running.push(listed(app, &svc.name, &i));
                        }
                    }
                }
            }
            NodeRecord {
                name: config.name.clone(),
                labels: config.labels.clone(),
                memory_mb,
                accelerators: config.accelerators,
                used_memory_mb: s.used_memory_mb,
                used_accelerators: s.used_accelerators,
                instances: s.instances,
                ready,
                addr: config.listen.to_string(),
                gateways: s.gateways.clone(),
                heartbeat_ms: 0,
                started_ms,
                load: s.load(),
                relayed: s.relayed(),
                running,
                caches: s.caches(),
                apis: s.apis.clone(),
                cannot_run: s.cannot_run.clone(),
            }
        }
    };
    tasks.push(tokio::spawn(membership::heartbeat(
        nats.clone(),
        record,
        connected.clone(),
        beat_now,
        shutdown.child_token(),
    )));
    let (held_tx, held) = watch::channel(false);
    tasks.push(tokio::spawn(lease::run(
        nats.lease.clone(),
        config.name.clone(),
        held_tx,
        shutdown.child_token(),
    )));
    let (holder_tx, scheduler) = watch::channel(None);
    tasks.push(tokio::spawn(view::follow_lease(
        nats.lease.clone(),
        config.name.clone(),
        held.clone(),
        holder_tx,
        shutdown.child_token(),
    )));
    let heard = view::Heard {
        membership: membership.clone(),
        scheduler,
        heartbeat_error: connected.clone(),
    };
    tasks.push(tokio::spawn(schedule::schedule(
        nats.clone(),
        membership.clone(),
        config.name.clone(),
        held,
        shutdown.child_token(),
    )));

    let result = reconcile_loop(&config, &nats, &heard, &status, &connected, &shutdown).await;
    shutdown.cancel();
    for task in tasks {
        let _ = task.await;
    }
    result
}

async fn reconcile_loop(
    config: &ClusterConfig,
    nats: &Nats,
    heard: &view::Heard,
    status: &Arc<Mutex<Status>>,
    connected: &Arc<Mutex<Option<String>>>,
    shutdown: &CancellationToken,
) -> Result<()> {
    let mut desired: BTreeMap<String, AppPlacement> = BTreeMap::new();
    let mut running: BTreeMap<String, Running> = BTreeMap::new();
    let mut watch = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut resync = 0u64;
    // The newest placement revision applied here, by the watch or a full read.
    let mut seen = 0u64;
    loop {
        if watch.is_none() {
            match nats.placement.watch_all().await {
                Ok(w) => watch = Some(w),
                Err(e) => tracing::warn!("watch the placement: {e}"),
            }
        }
        tokio::select! {
            entry = async { watch.as_mut().expect("set").next().await }, if watch.is_some() => {
                match entry {
                    Some(Ok(entry)) => {
                        seen = seen.max(entry.revision);
                        if entry.operation == async_nats::jetstream::kv::Operation::Put {
                            match serde_json::from_slice::<AppPlacement>(&entry.value) {
                                Ok(p) => { desired.insert(entry.key.clone(), p); }
                                Err(e) => tracing::warn!(app = entry.key, "unreadable placement: {e}"),
                            }
                        } else {
                            desired.remove(&entry.key);
                        }
                    }
                    _ => watch = None,
                }
            }
            _ = tick.tick() => {
                // The watch is the fast path; the safety net (a watch made while JetStream
                // was still electing can stay silent) checks every few seconds whether the
                // bucket holds a revision the watch has not delivered, and only then reads
                // it whole: one request per check instead of one per app (bench/sim.sh:
                // every node reading every app every 5 s was 2,000-5,000 gets/s at 100-300
                // nodes).
                resync += 1;
                if resync % 5 == 1 {
                    let last = strata_cluster::last_revision(&nats.placement).await.ok();
                    if last.is_none_or(|last| last > seen) {
                        match read_placement(nats).await {
                            Ok(all) => {
                                desired = all;
                                seen = seen.max(last.unwrap_or(0));
                            }
                            Err(e) => tracing::debug!("read the placement: {e:#}"),
                        }
                    }
                }
            }
            _ = shutdown.cancelled() => break,
        }
        if let Some(why) = connected.lock().unwrap().clone() {
            // Cut off: keep serving what runs here; reconcile again once back.
            tracing::debug!("not reconciling while cut off from the cluster: {why}");
            continue;
        }
        reconcile(config, nats, heard, &desired, &mut running, status, shutdown).await;
    }
    for (app, r) in running {
        stop_app(&app, r).await;
    }
    Ok(())
}

/// Every app's placement, read whole.
pub(super) async fn read_placement(nats: &Nats) -> Result<BTreeMap<String, AppPlacement>> {
    let mut out = BTreeMap::new();
    for key in strata_cluster::keys(&nats.placement).await? {
        if let Some(v) = nats.placement.get(&key).await? {
            match serde_json::from_slice::<AppPlacement>(&v) {
                Ok(p) => {
                    out.insert(key, p);
                }
                Err(e) => tracing::warn!(app = key, "unreadable placement: {e}"),
            }
        }
    }
    Ok(out)
}

async fn reconcile(
    config: &ClusterConfig,
    nats: &Nats,
    heard: &view::Heard,
    desired: &BTreeMap<String, AppPlacement>,
    running: &mut BTreeMap<String, Running>,
    status: &Arc<Mutex<Status>>,
    shutdown: &CancellationToken,
) {
    status
        .lock()
        .unwrap()
        .cannot_run
        .retain(|app, _| desired.contains_key(app));
    let gone: Vec<String> = running
        .keys()
        .filter(|app| !desired.contains_key(*app))
        .cloned()
        .collect();
    let beat_now = status.lock().unwrap().beat_now.clone();
    for app in gone {
        let r = running.remove(&app).expect("listed");
        status.lock().unwrap().forget(&app);
        stop_app(&app, r).await;
    }
    for (app, placement) in desired {
        let rolled = match running.get(app) {
            None => None,
            Some(r) if r.digest == placement.digest => None,
            Some(r) => Some(r.gateway.clone()),
        };
        if let Some(gateway) = rolled {
            // A new version: it starts beside the old one, on the same gateway workers,
            // and takes over once ready (a rolling update: no request refused).
            match start_app(config, nats, heard, app, placement, Some(gateway), shutdown).await {
                Ok(new) => {
                    zero::watch(app, &new.node, &heard.membership, &beat_now, &new.stop);
                    let old = running.remove(app).expect("running");
                    roll_over(app, old, new, placement, &config.name, running, status, shutdown).await;
                }
                Err(e) => {
                    tracing::error!(app, "cannot run the new version here, the old one keeps running: {e:#}");
                    continue;
                }
            }
        }
        if !running.contains_key(app) {
            match start_app(config, nats, heard, app, placement, None, shutdown).await {
                Ok(r) => {
                    zero::watch(app, &r.node, &heard.membership, &beat_now, &r.stop);
                    let mut s = status.lock().unwrap();
                    s.show(app, &r);
                    s.cannot_run.remove(app);
                    drop(s);
                    running.insert(app.clone(), r);
                }
                Err(e) => {
                    // Tried again every second: said when it starts failing or the
                    // reason changes, not every time.
                    let reason = format!("{e:#}");
                    let before = status.lock().unwrap().cannot_run.insert(app.clone(), reason.clone());
                    if before.as_ref() != Some(&reason) {
                        tracing::error!(app, "cannot run app here (tried again every second): {reason}");
                        beat_now.notify_one();
                    }
                    continue;
                }
            }
        }
        let r = running.get_mut(app).expect("running");
        let seen: BTreeMap<String, Seen> = heard
            .membership
            .all()
            .into_iter()
            .map(|s| (s.record.name.clone(), s))
            .collect();
        for service in placement.services.keys() {
            if r.manifest.functions.contains_key(service) {
                // Placed at zero; each node's autoscaler starts it when its events come.
                continue;
            }
            let share = placement.share(service, &config.name);
            let before = r.placement.share(service, &config.name);
            if r.node.app.desired(service) != Some(share) {
                if let Err(e) = r.node.app.scale(service, share, ScaleBy::Placement) {
                    tracing::warn!(app, service, "apply the placement: {e}");
                }
            }
            if share != before || r.placement.services.get(service) != placement.services.get(service) {
                let why = why_moved(app, &r.placement, placement, service, &seen);
                r.node.app.record(
                    service,
                    EventKind::Placed,
                    format!(
                        "{} here (was {before}); cluster-wide {}{why}",
                        share,
                        describe(placement, service)
                    ),
                );
            }
            if let Some(why) = placement.autoscaled.get(service) {
                if r.placement.autoscaled.get(service) != Some(why) {
                    r.node
                        .app
                        .record(service, EventKind::Autoscaled, format!("cluster-wide {why}"));
                }
            }
            if let Some(u) = placement.unplaced.get(service) {
                if r.placement.unplaced.get(service) != Some(u) {
                    r.node.app.record(
                        service,
                        EventKind::Unschedulable,
                        format!("{} instance(s) fit on no node: {}", u.count, u.reason),
                    );
                }
            }
        }
        r.placed(placement);
    }
    let mut s = status.lock().unwrap();
    s.gateways.retain(|app, _| running.contains_key(app));
    s.apis.retain(|app, _| running.contains_key(app));
    s.instances = running
        .values()
        .flat_map(|r| r.placement.services.values())
        .map(|nodes| nodes.get(&config.name).copied().unwrap_or(0))
        .sum();
    let (mut memory, mut accelerators) = (0, 0);
    for r in running.values() {
        for (service, spec) in &r.manifest.services {
            let n = r.placement.share(service, &config.name) as u64;
            memory += n * spec.resources.memory_mb.unwrap_or(0);
            accelerators += n as u32 * spec.resources.accelerators;
        }
    }
    s.used_memory_mb = memory;
    s.used_accelerators = accelerators;
}
