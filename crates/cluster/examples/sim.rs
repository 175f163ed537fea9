//! Issue 15's simulation: the scheduler and membership driven with many simulated nodes
//! against a real NATS cluster (`bench/sim.sh` starts one and runs this).
//!
//! What is real: the NATS cluster and the buckets (`Nats::connect`), every node's
//! heartbeat (`membership::heartbeat`, a `NodeRecord` shaped as a real node's: its
//! gateways and per-service load for every app it runs, its running instances up to
//! `MAX_LISTED`), the scheduler's lease (`lease::run`), the scheduler's and
//! `MEMBERSHIP_WATCHERS` nodes' view of who is live (`Membership::watch`), the deployed
//! apps (`AppRecord`s in `strata_apps`, read with `Nats::apps` and parsed with
//! `strata_manifest`), the placement (`placement::place`) and its values in
//! `strata_placement`.
//!
//! What is simulated: a node is a heartbeat task plus a reconcile task that watches the
//! placement and (with `FULL_READ=1`) reads it whole every 5 s, as
//! `strata-node`'s `reconcile_loop` does, but starts no app and no instance; nodes share
//! `CONNS` NATS connections instead of one each; the scheduler loop is `strata-node`'s
//! without the autoscaler: every 250 ms it runs the same `strata_cluster::schedule::round`
//! (reads every app, parses the manifests, places off the async workers, writes every
//! changed placement at once). Killing a node aborts its tasks (no record delete, as kill -9).
//!
//!     sim NATS_URLS        settings from the environment, see `Settings::from_env`
//!     PLACE_ONLY=1 sim     placement::place alone, no NATS: its time against the node count

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use strata_cluster::membership::{self, RunningInstance, ServiceLoad};
use strata_cluster::placement::{self, AppPlacement, Want};
use strata_cluster::{lease, schedule, AppRecord, Membership, Nats, NodeRecord};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Memory each simulated instance declares.
const INSTANCE_MB: u64 = 64;

struct Settings {
    nodes: usize,
    instances: u64,
    apps: usize,
    /// Services per app.
    services: usize,
    /// NATS connections the simulated nodes share.
    conns: usize,
    /// Values of the `power` label (0: no spread).
    spread: usize,
    /// Simulated nodes (besides the scheduler's) that follow membership as real nodes do.
    watchers: usize,
    full_read: bool,
    steady_s: u64,
    timeout_s: u64,
    probe: bool,
    /// When set, the nodes' and placement buckets' streams get this `max_consumers`
    /// (nats-server 2.15 gives a stream 1000 unless it sets one; strata sets none).
    consumer_limit: i32,
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

impl Settings {
    fn from_env() -> Settings {
        Settings {
            nodes: env("NODES", 1000),
            instances: env("INSTANCES", 100_000),
            apps: env("APPS", 100),
            services: env("SERVICES", 1),
            conns: env("CONNS", 50),
            spread: env("SPREAD", 0),
            watchers: env("MEMBERSHIP_WATCHERS", 10),
            full_read: env("FULL_READ", 1) == 1,
            steady_s: env("STEADY_S", 10),
            timeout_s: env("TIMEOUT_S", 300),
            probe: env("PROBE", 1) == 1,
            consumer_limit: env("CONSUMER_LIMIT", 0),
        }
    }

    fn per_service(&self) -> u32 {
        (self.instances / (self.apps * self.services) as u64) as u32
    }
}

/// Operations the simulated nodes and the scheduler make, counted.
#[derive(Default)]
struct Counters {
    heartbeats: AtomicU64,
    watch_msgs: AtomicU64,
    watch_bytes: AtomicU64,
    full_reads: AtomicU64,
    /// The reconcile side's checks of the placement's newest revision.
    placement_checks: AtomicU64,
    full_read_gets: AtomicU64,
    full_read_bytes: AtomicU64,
    sched_ticks: AtomicU64,
    sched_gets: AtomicU64,
    sched_puts: AtomicU64,
    sched_put_bytes: AtomicU64,
}

static COUNT: std::sync::LazyLock<Counters> = std::sync::LazyLock::new(Counters::default);

fn app_name(i: usize) -> String {
    format!("app-{i:04}")
}
fn service_name(i: usize) -> String {
    format!("svc-{i:02}")
}
fn node_name(i: usize) -> String {
    format!("sim-{i:04}")
}

/// What a simulated node has read of the placement.
#[derive(Default)]
struct View {
    /// app -> revision of the last value read.
    rev: HashMap<String, u64>,
    /// app -> service -> instances here.
    share: HashMap<String, BTreeMap<String, u32>>,
    /// Bytes of placement values read by watch and by the full reads.
    watch_bytes: u64,
    full_read_bytes: u64,
}

struct SimNode {
    name: String,
    power: Option<String>,
    memory_mb: u64,
    view: Mutex<View>,
    started_ms: u64,
}

impl SimNode {
    fn read(&self, app: &str, revision: u64, value: &[u8], by_watch: bool) {
        let p: AppPlacement = match serde_json::from_slice(value) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("{}: unreadable placement of {app}: {e}", self.name);
                return;
            }
        };
        let mine: BTreeMap<String, u32> = p
            .services
            .iter()
            .map(|(s, nodes)| (s.clone(), nodes.get(&self.name).copied().unwrap_or(0)))
            .collect();
        let mut v = self.view.lock().unwrap();
        if by_watch {
            v.watch_bytes += value.len() as u64;
        } else {
            v.full_read_bytes += value.len() as u64;
        }
        let r = v.rev.entry(app.to_string()).or_default();
        if revision >= *r {
            *r = revision;
            v.share.insert(app.to_string(), mine);
        }
    }

    fn total(&self) -> u32 {
        self.view.lock().unwrap().share.values().flat_map(|s| s.values()).sum()
    }

    /// The record a real node with this share would put: every app it runs has a gateway
    /// and a load entry per service; its instances are listed up to `MAX_LISTED`.
    fn record(&self) -> NodeRecord {
        COUNT.heartbeats.fetch_add(1, Relaxed);
        let v = self.view.lock().unwrap();
        let mut gateways = BTreeMap::new();
        let mut load = BTreeMap::new();
        let mut running = Vec::new();
        let mut instances = 0;
        let mut apps: Vec<_> = v.share.iter().collect();
        apps.sort();
        for (port, (app, services)) in apps.into_iter().enumerate() {
            gateways.insert(app.clone(), format!("127.0.0.1:{}", 20000 + port));
            for (service, &n) in services {
                instances += n;
                load.insert(
                    format!("{app}/{service}"),
                    ServiceLoad {
                        inflight: 0,
                        served: 1000,
                        ready: n,
                        ..ServiceLoad::default()
                    },
                );
                for i in 0..n {
                    if running.len() >= membership::MAX_LISTED {
                        break;
                    }
                    running.push(RunningInstance {
                        app: app.clone(),
                        service: service.clone(),
                        id: format!("{service}-{i}"),
                        state: "ready".into(),
                        pid: Some(100_000 + i),
                        restarts: 0,
                        inflight: 0,
                        served: 1000,
                        detail: None,
                    });
                }
            }
        }
        NodeRecord {
            name: self.name.clone(),
            labels: self.power.iter().map(|p| ("power".to_string(), p.clone())).collect(),
            memory_mb: self.memory_mb,
            accelerators: 0,
            used_memory_mb: instances as u64 * INSTANCE_MB,
            used_accelerators: 0,
            instances,
            ready: instances,
            addr: "127.0.0.1".into(),
            gateways,
            heartbeat_ms: 0,
            started_ms: self.started_ms,
            load,
            running,
            relayed: BTreeMap::new(),
            // The simulated apps declare no cache (`cache.listen`).
            caches: BTreeMap::new(),
            apis: BTreeMap::new(),
            cannot_run: BTreeMap::new(),
        }
    }
}

/// The reconcile side of a node: the placement watched, and read whole when a check
/// every 5 s finds the watch behind.
async fn reconcile(nats: Nats, node: Arc<SimNode>, full_read: bool, stagger: Duration, stop: CancellationToken) {
    let mut watch = None;
    tokio::time::sleep(stagger).await;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut resync = 0u64;
    let mut seen = 0u64;
    loop {
        if watch.is_none() {
            match nats.placement.watch_all().await {
                Ok(w) => watch = Some(w),
                Err(e) => {
                    eprintln!("{}: watch the placement: {e}", node.name);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
        }
        tokio::select! {
            entry = async { watch.as_mut().expect("set").next().await } => match entry {
                Some(Ok(e)) => {
                    seen = seen.max(e.revision);
                    if e.operation == async_nats::jetstream::kv::Operation::Put {
                        COUNT.watch_msgs.fetch_add(1, Relaxed);
                        COUNT.watch_bytes.fetch_add(e.value.len() as u64, Relaxed);
                        node.read(&e.key, e.revision, &e.value, true);
                    }
                }
                _ => watch = None,
            },
            _ = tick.tick() => {
                resync += 1;
                if full_read && resync % 5 == 1 {
                    // As reconcile_loop: read whole only when the watch is behind.
                    COUNT.placement_checks.fetch_add(1, Relaxed);
                    let last = strata_cluster::last_revision(&nats.placement).await.ok();
                    if last.is_none_or(|last| last > seen) {
                        match read_whole(&nats, &node).await {
                            Ok(()) => seen = seen.max(last.unwrap_or(0)),
                            Err(e) => eprintln!("{}: read the placement: {e:#}", node.name),
                        }
                    }
                }
            }
            _ = stop.cancelled() => return,
        }
    }
}

/// `reconcile_loop`'s safety net: every key, then every value.
async fn read_whole(nats: &Nats, node: &SimNode) -> Result<()> {
    COUNT.full_reads.fetch_add(1, Relaxed);
    for key in strata_cluster::keys(&nats.placement).await? {
        if let Some(e) = nats.placement.entry(key.as_str()).await? {
            COUNT.full_read_gets.fetch_add(1, Relaxed);
            COUNT.full_read_bytes.fetch_add(e.value.len() as u64, Relaxed);
            node.read(&key, e.revision, &e.value, false);
        }
    }
    Ok(())
}

/// What the scheduler wrote, for the coordinator to compare the nodes' views with.
#[derive(Default)]
struct Written {
    placement: BTreeMap<String, AppPlacement>,
    rev: BTreeMap<String, u64>,
    last_error: Option<String>,
    /// Per tick: (read apps, parse, place, write) in ms.
    ticks: Vec<[f64; 4]>,
}

/// The scheduler loop of `strata-node` (`schedule::schedule`), without the autoscaler.
async fn schedule(
    nats: Nats,
    membership: Membership,
    me: String,
    mut held: watch::Receiver<bool>,
    written: Arc<Mutex<Written>>,
    stop: CancellationToken,
) {
    let mut last: Option<BTreeMap<String, AppPlacement>> = None;
    loop {
        if !*held.borrow() {
            last = None;
            tokio::select! {
                _ = held.changed() => continue,
                _ = stop.cancelled() => return,
            }
        }
        if membership.is_live(&me) {
            if let Err(e) = schedule_once(&nats, &membership, &mut last, &written).await {
                written.lock().unwrap().last_error = Some(format!("{e:#}"));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = stop.cancelled() => return,
        }
    }
}

async fn schedule_once(
    nats: &Nats,
    membership: &Membership,
    last: &mut Option<BTreeMap<String, AppPlacement>>,
    written: &Mutex<Written>,
) -> Result<()> {
    COUNT.sched_ticks.fetch_add(1, Relaxed);
    let previous = last.get_or_insert_with(BTreeMap::new);
    let live = membership.live();
    // The round strata-node's scheduler runs (the simulated apps have no autoscaler).
    let round = schedule::round(nats, &live, previous, &mut schedule::ManifestCounts).await?;
    COUNT.sched_gets.fetch_add(round.apps_read as u64, Relaxed);
    let mut w = written.lock().unwrap();
    for (app, rev, len) in &round.written {
        COUNT.sched_puts.fetch_add(1, Relaxed);
        COUNT.sched_put_bytes.fetch_add(*len as u64, Relaxed);
        w.rev.insert(app.clone(), *rev);
        w.placement.insert(app.clone(), previous[app].clone());
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    w.ticks.push(round.took.map(ms));
    Ok(())
}

fn manifest(s: &Settings, app: &str) -> String {
    let mut services = serde_json::Map::new();
    for j in 0..s.services {
        let mut spec = serde_json::json!({
            "run": ["true"],
            "instances": { "min": s.per_service(), "max": s.per_service() },
            "resources": { "memory_mb": INSTANCE_MB },
        });
        if s.spread > 0 {
            spec["placement"] = serde_json::json!({ "spread": "power" });
        }
        services.insert(service_name(j), spec);
    }
    serde_json::json!({ "strata": 1, "app": app, "services": services }).to_string()
}

fn wants(s: &Settings) -> Vec<Want> {
    let mut out = Vec::new();
    for i in 0..s.apps {
        for j in 0..s.services {
            out.push(Want {
                app: app_name(i),
                service: service_name(j),
                count: s.per_service(),
                memory_mb: INSTANCE_MB,
                accelerators: 0,
                spread: (s.spread > 0).then(|| "power".to_string()),
            });
        }
    }
    out
}

fn node_memory(s: &Settings) -> u64 {
    INSTANCE_MB * (2 * s.instances / s.nodes as u64 + 16)
}

fn power(s: &Settings, i: usize) -> Option<String> {
    (s.spread > 0).then(|| ((b'A' + (i % s.spread) as u8) as char).to_string())
}

/// placement::place alone: from nothing, then again with the result as the previous one
/// (the scheduler's steady tick), then with one node gone.
fn place_only(s: &Settings) {
    let nodes: Vec<NodeRecord> = (0..s.nodes)
        .map(|i| NodeRecord {
            name: node_name(i),
            labels: power(s, i).map(|p| ("power".to_string(), p)).into_iter().collect(),
            memory_mb: node_memory(s),
            ..Default::default()
        })
        .collect();
    let wants = wants(s);
    let t = Instant::now();
    let first = placement::place(&nodes, &wants, &BTreeMap::new());
    let from_nothing = t.elapsed().as_secs_f64() * 1000.0;
    let t = Instant::now();
    let again = placement::place(&nodes, &wants, &first);
    let steady = t.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(again, first);
    let live: Vec<NodeRecord> = nodes
        .iter()
        .filter(|n| n.name != node_name(s.nodes / 2))
        .cloned()
        .collect();
    let t = Instant::now();
    let _ = placement::place(&live, &wants, &first);
    let one_dead = t.elapsed().as_secs_f64() * 1000.0;
    println!(
        "RESULT {}",
        serde_json::json!({
            "mode": "place_only", "nodes": s.nodes, "instances": s.instances, "apps": s.apps,
            "services": s.services, "spread": s.spread,
            "place_from_nothing_ms": from_nothing, "place_steady_ms": steady, "place_one_dead_ms": one_dead,
        })
    );
}

/// The largest placement value that fits in one NATS message: one app whose services
/// each have instances on every one of `nodes` nodes, doubling the services until the
/// put is refused, then halving the gap.
async fn probe(nats: &Nats, nodes: usize) -> serde_json::Value {
    let value = |services: usize| {
        let per: BTreeMap<String, u32> = (0..nodes).map(|i| (node_name(i), 100)).collect();
        let p = AppPlacement {
            digest: format!("sha256:{}", "0".repeat(64)),
            services: (0..services)
                .map(|j| (format!("service-{j:04}"), per.clone()))
                .collect(),
            ..Default::default()
        };
        serde_json::to_vec(&p).expect("serialize")
    };
    let fits = |services: usize| {
        let body = value(services);
        let store = nats.placement.clone();
        async move { store.put("sim-probe", body.into()).await.is_ok() }
    };
    let mut sizes = Vec::new();
    let (mut ok, mut bad) = (0usize, 0usize);
    let mut n = 1usize;
    loop {
        let len = value(n).len();
        let fit = fits(n).await;
        sizes.push(serde_json::json!({ "services": n, "bytes": len, "fits": fit }));
        if fit {
            ok = n;
            n *= 2;
        } else {
            bad = n;
            break;
        }
        if n > 1 << 16 {
            break;
        }
    }
    while bad > ok + 1 {
        let mid = (ok + bad) / 2;
        if fits(mid).await {
            ok = mid
        } else {
            bad = mid
        }
    }
    let largest = value(ok).len();
    let error = match nats.placement.put("sim-probe", value(bad).into()).await {
        Err(e) => e.to_string(),
        Ok(_) => "accepted".into(),
    };
    let _ = nats.placement.purge("sim-probe").await;
    serde_json::json!({
        "nodes_per_service": nodes, "largest_services": ok, "largest_pairs": ok * nodes,
        "largest_bytes": largest, "bytes_per_pair": largest as f64 / (ok * nodes) as f64,
        "refused_error": error, "sizes": sizes,
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let s = Settings::from_env();
    if env("PLACE_ONLY", 0) == 1 {
        place_only(&s);
        return Ok(());
    }
    let urls = std::env::args().nth(1).context("usage: sim NATS_URLS")?;
    if s.per_service() as u64 * (s.apps * s.services) as u64 != s.instances {
        bail!("INSTANCES must be a multiple of APPS x SERVICES");
    }
    let started = Instant::now();
    let secs = |t: Instant| t.elapsed().as_secs_f64();
    let stop = CancellationToken::new();
    let mut conns = Vec::new();
    for _ in 0..s.conns.max(1) {
        conns.push(Nats::connect(&urls).await?);
    }
    let mut result = serde_json::json!({
        "mode": "cluster", "nodes": s.nodes, "instances": s.instances, "apps": s.apps,
        "services": s.services, "conns": s.conns, "spread": s.spread,
        "membership_watchers": s.watchers, "full_read": s.full_read,
    });
    if s.consumer_limit > 0 {
        for stream in ["KV_strata_nodes", "KV_strata_placement"] {
            let mut info = conns[0].js.get_stream(stream).await?.info().await?.config.clone();
            info.max_consumers = s.consumer_limit;
            conns[0].js.update_stream(info).await.context("raise max_consumers")?;
        }
    }
    result["consumers_at_start"] = consumers(&conns[0]).await;
    if s.probe {
        result["probe"] = probe(&conns[0], s.nodes).await;
        eprintln!("[sim] probe: {}", result["probe"]);
    }

    // The nodes: sim-0000 is also the scheduler (it holds the lease).
    let started_ms = strata_cluster::now_ms();
    let mut nodes = Vec::new();
    let mut tasks: Vec<Vec<JoinHandle<()>>> = Vec::new();
    let mut connected = Vec::new();
    let scheduler_view = Membership::default();
    for i in 0..s.nodes {
        let nats = conns[i % conns.len()].clone();
        let node = Arc::new(SimNode {
            name: node_name(i),
            power: power(&s, i),
            memory_mb: node_memory(&s),
            view: Mutex::new(View::default()),
            started_ms,
        });
        let up = Arc::new(Mutex::new(None));
        let record = {
            let node = node.clone();
            move || node.record()
        };
        let mut own = vec![tokio::spawn(membership::heartbeat(
            nats.clone(),
            record,
            up.clone(),
            Arc::new(tokio::sync::Notify::new()),
            stop.child_token(),
        ))];
        let stagger = Duration::from_millis((i as u64 * 5000) / s.nodes as u64);
        own.push(tokio::spawn(reconcile(
            nats.clone(),
            node.clone(),
            s.full_read,
            stagger,
            stop.child_token(),
        )));
        if i == 0 {
            own.push(tokio::spawn(
                scheduler_view.clone().watch(nats.clone(), stop.child_token()),
            ));
        } else if i <= s.watchers {
            own.push(tokio::spawn(
                Membership::default().watch(nats.clone(), stop.child_token()),
            ));
        }
        nodes.push(node);
        tasks.push(own);
        connected.push(up);
    }
    let written = Arc::new(Mutex::new(Written::default()));
    let (held_tx, held) = watch::channel(false);
    tokio::spawn(lease::run(
        conns[0].lease.clone(),
        node_name(0),
        held_tx,
        stop.child_token(),
    ));
    tokio::spawn(schedule(
        conns[0].clone(),
        scheduler_view.clone(),
        node_name(0),
        held,
        written.clone(),
        stop.child_token(),
    ));
    let deadline = Instant::now() + Duration::from_secs(s.timeout_s);
    while scheduler_view.live().len() < s.nodes {
        if Instant::now() > deadline {
            bail!(
                "only {} of {} nodes live after {} s",
                scheduler_view.live().len(),
                s.nodes,
                s.timeout_s
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("[sim] {} nodes live after {:.1} s", s.nodes, secs(started));
    result["all_live_s"] = secs(started).into();
    tokio::time::sleep(Duration::from_secs(6)).await; // every reconcile task has started

    // Deploy every app, as `strata deploy` writes them.
    let t0 = Instant::now();
    for i in 0..s.apps {
        let app = app_name(i);
        let record = AppRecord {
            app: app.clone(),
            digest: format!("sha256:{:064}", i),
            manifest: manifest(&s, &app),
            deployed_ms: strata_cluster::now_ms(),
        };
        conns[0].apps.put(&app, serde_json::to_vec(&record)?.into()).await?;
    }
    result["deploy_writes_s"] = secs(t0).into();
    let (written_s, read_s, behind) = wait_placed(&s, &nodes, &written, None, t0, deadline).await?;
    eprintln!("[sim] placed: all written {written_s:.2} s, read by every node {read_s:.2} s after the deploy began");
    result["place_written_s"] = written_s.into();
    result["place_read_s"] = read_s.into();
    result["place_nodes_behind"] = behind.into();
    {
        let w = written.lock().unwrap();
        let sizes: Vec<usize> = w
            .placement
            .values()
            .map(|p| serde_json::to_vec(p).map(|b| b.len()).unwrap_or(0))
            .collect();
        result["placement_value_max_bytes"] = sizes.iter().max().copied().unwrap_or(0).into();
        result["placement_total_bytes"] = sizes.iter().sum::<usize>().into();
        let first = w.ticks.iter().map(|t| t[2]).fold(0.0, f64::max);
        result["place_ms_max_during_deploy"] = first.into();
        let write = w.ticks.iter().map(|t| t[3]).fold(0.0, f64::max);
        result["write_ms_max_during_deploy"] = write.into();
    }

    // Steady state.
    let snap = |w: &Written| w.ticks.len();
    let tick0 = snap(&written.lock().unwrap());
    let before = counts();
    let mut min_live = s.nodes;
    let mut failing = 0usize;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(s.steady_s) {
        min_live = min_live.min(scheduler_view.live().len());
        failing = failing.max(connected.iter().filter(|c| c.lock().unwrap().is_some()).count());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = t.elapsed().as_secs_f64();
    let after = counts();
    let rate = |k: &str| (after[k] - before[k]) as f64 / elapsed;
    let record_bytes: Vec<usize> = nodes
        .iter()
        .map(|n| serde_json::to_vec(&n.record()).map(|b| b.len()).unwrap_or(0))
        .collect();
    let mean_record = record_bytes.iter().sum::<usize>() as f64 / record_bytes.len() as f64;
    let watchers = 1 + s.watchers.min(s.nodes - 1);
    let hb = rate("heartbeats");
    // A membership watcher reads every record as it is put (watch) and again every
    // second (its full read: a key listing and one get per node).
    let membership_reads = watchers as f64 * (hb + s.nodes as f64);
    let ticks: Vec<[f64; 4]> = written.lock().unwrap().ticks[tick0..].to_vec();
    let median = |k: usize| {
        let mut v: Vec<f64> = ticks.iter().map(|t| t[k]).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    // Time one node's full read of membership, as `Membership::watch` does every second.
    let t = Instant::now();
    let mut read_bytes = 0;
    for key in strata_cluster::keys(&conns[0].nodes).await? {
        if let Some(v) = conns[0].nodes.get(&key).await? {
            read_bytes += v.len();
        }
    }
    let full_membership_read_ms = t.elapsed().as_secs_f64() * 1000.0;
    result["steady"] = serde_json::json!({
        "seconds": elapsed,
        "heartbeat_puts_per_s": hb,
        "heartbeat_record_mean_bytes": mean_record,
        "heartbeat_bytes_per_s": hb * mean_record,
        "placement_watch_msgs_per_s": rate("watch_msgs"),
        "placement_full_read_gets_per_s": rate("full_read_gets"),
        "placement_full_read_bytes_per_s": rate("full_read_bytes"),
        "placement_key_listings_per_s": rate("full_reads"),
        "placement_checks_per_s": rate("placement_checks"),
        "scheduler_ticks_per_s": rate("sched_ticks"),
        "scheduler_app_gets_per_s": rate("sched_gets"),
        "scheduler_puts_per_s": rate("sched_puts"),
        "membership_watchers": watchers,
        "membership_record_reads_per_s": membership_reads,
        "membership_key_listings_per_s": watchers,
        "kv_ops_per_s": hb + rate("watch_msgs") + rate("full_read_gets") + rate("full_reads") + rate("placement_checks")
            + rate("sched_gets") + rate("sched_puts") + membership_reads + watchers as f64,
        "one_full_membership_read_ms": full_membership_read_ms,
        "one_full_membership_read_bytes": read_bytes,
        "scheduler_tick_ms_median": { "read_apps": median(0), "parse": median(1), "place": median(2), "write": median(3) },
        "min_live_seen_by_scheduler": min_live,
        "max_nodes_with_failing_heartbeat": failing,
        "consumers": consumers(&conns[0]).await,
    });
    eprintln!("[sim] steady: {}", result["steady"]);

    // A node dies: its tasks end without a word (kill -9).
    let victim = s.nodes / 2;
    let victim_name = node_name(victim);
    let victim_share = nodes[victim].total();
    let bytes = |n: &SimNode| {
        let v = n.view.lock().unwrap();
        (v.watch_bytes, v.full_read_bytes)
    };
    let bytes_before: Vec<(u64, u64)> = nodes.iter().map(|n| bytes(n)).collect();
    let (revs_before, tick0) = {
        let w = written.lock().unwrap();
        (w.rev.clone(), w.ticks.len())
    };
    let t0 = Instant::now();
    for task in &tasks[victim] {
        task.abort();
    }
    let deadline = Instant::now() + Duration::from_secs(s.timeout_s);
    while scheduler_view.is_live(&victim_name) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let detect_s = secs(t0);
    let (written_s, read_s, behind) = wait_placed(&s, &nodes, &written, Some(victim), t0, deadline).await?;
    let failover_behind = behind;
    let read_per_node: Vec<(u64, u64)> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(i, n)| {
            let (w, f) = bytes(n);
            (w - bytes_before[i].0, f - bytes_before[i].1)
        })
        .collect();
    let live_n = read_per_node.len() as f64;
    let (changed_apps, changed_bytes, write_ms_max, place_ms_max) = {
        let w = written.lock().unwrap();
        let changed: Vec<&String> = w
            .rev
            .iter()
            .filter(|(a, r)| revs_before.get(*a) != Some(r))
            .map(|(a, _)| a)
            .collect();
        let changed_bytes: usize = changed
            .iter()
            .map(|a| serde_json::to_vec(&w.placement[*a]).map(|b| b.len()).unwrap_or(0))
            .sum();
        let ticks = &w.ticks[tick0..];
        (
            changed.len(),
            changed_bytes,
            ticks.iter().map(|t| t[3]).fold(0.0, f64::max),
            ticks.iter().map(|t| t[2]).fold(0.0, f64::max),
        )
    };
    result["failover"] = serde_json::json!({
        "victim_instances": victim_share,
        "dead_seen_s": detect_s,
        "replaced_written_s": written_s,
        "replaced_read_by_all_s": read_s,
        "nodes_behind": failover_behind,
        "apps_changed": changed_apps,
        "changed_values_bytes": changed_bytes,
        "scheduler_write_ms_max": write_ms_max,
        "scheduler_place_ms_max": place_ms_max,
        "watch_bytes_read_per_node_mean": read_per_node.iter().map(|b| b.0).sum::<u64>() as f64 / live_n,
        "full_read_bytes_per_node_mean": read_per_node.iter().map(|b| b.1).sum::<u64>() as f64 / live_n,
    });
    eprintln!("[sim] failover: {}", result["failover"]);
    println!("RESULT {result}");
    stop.cancel();
    Ok(())
}

fn counts() -> BTreeMap<&'static str, u64> {
    let c = &*COUNT;
    [
        ("heartbeats", &c.heartbeats),
        ("watch_msgs", &c.watch_msgs),
        ("watch_bytes", &c.watch_bytes),
        ("full_reads", &c.full_reads),
        ("full_read_gets", &c.full_read_gets),
        ("full_read_bytes", &c.full_read_bytes),
        ("placement_checks", &c.placement_checks),
        ("sched_ticks", &c.sched_ticks),
        ("sched_gets", &c.sched_gets),
        ("sched_puts", &c.sched_puts),
        ("sched_put_bytes", &c.sched_put_bytes),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.load(Relaxed)))
    .collect()
}

/// Per bucket stream: its `max_consumers` and the consumers it has now.
async fn consumers(nats: &Nats) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for stream in ["KV_strata_nodes", "KV_strata_placement"] {
        if let Ok(mut st) = nats.js.get_stream(stream).await {
            if let Ok(info) = st.info().await {
                out.insert(
                    stream.into(),
                    serde_json::json!({ "max_consumers": info.config.max_consumers, "consumers": info.state.consumer_count }),
                );
            }
        }
    }
    out.into()
}

/// Waits until the scheduler has written every app with all its instances placed (and,
/// after a death, none on the dead node), and every live node has read those values
/// (or later ones).
/// Returns both times, in seconds since `t0`, and how many nodes had not read them
/// when `deadline` came (then the second time is the deadline's).
async fn wait_placed(
    s: &Settings,
    nodes: &[Arc<SimNode>],
    written: &Mutex<Written>,
    dead: Option<usize>,
    t0: Instant,
    deadline: Instant,
) -> Result<(f64, f64, usize)> {
    let dead_name = dead.map(node_name);
    let mut written_s = None;
    let mut target: Option<BTreeMap<String, u64>> = None;
    loop {
        if Instant::now() > deadline && written_s.is_none() {
            let w = written.lock().unwrap();
            bail!(
                "timed out: {} of {} apps written; the scheduler's last error: {}",
                w.placement.len(),
                s.apps,
                w.last_error.as_deref().unwrap_or("none")
            );
        }
        // The revisions of the first complete placement: nodes flapping under load make
        // the scheduler write again and again, and a node that has read this one has
        // its share (later revisions are other changes).
        if target.is_none() {
            let w = written.lock().unwrap();
            let complete = w.placement.len() == s.apps
                && w.placement.values().all(|p| {
                    let placed: u32 = p.services.values().flat_map(|n| n.values()).sum();
                    let on_dead = dead_name
                        .as_ref()
                        .is_some_and(|d| p.services.values().any(|n| n.contains_key(d)));
                    placed as u64 == s.instances / s.apps as u64 && !on_dead
                });
            target = complete.then(|| w.rev.clone());
        }
        if let Some(target) = &target {
            let w = *written_s.get_or_insert_with(|| t0.elapsed().as_secs_f64());
            let behind = nodes
                .iter()
                .enumerate()
                .filter(|(i, _)| Some(*i) != dead)
                .filter(|(_, n)| {
                    let v = n.view.lock().unwrap();
                    target
                        .iter()
                        .any(|(app, rev)| v.rev.get(app).copied().unwrap_or(0) < *rev)
                })
                .count();
            if behind == 0 || Instant::now() > deadline {
                return Ok((w, t0.elapsed().as_secs_f64(), behind));
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
