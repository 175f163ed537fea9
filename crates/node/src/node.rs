//! [`Node`]: one running node, built by [`Node::start`] from small constructors, one
//! per subsystem, in the order they depend on each other: state dir, backends (queues,
//! store), cache, bus and gateway, App Service, the tasks that are neither (autoscalers,
//! push delivery, triggers), and last the node API.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use strata_api::{NodeInfo, NodeParts};
use strata_appservice::{AppConfig, AppService, NodeResources};
use strata_bus::Bus;
use strata_gateway::{AccessLog, Gateway, GatewayConfig, GatewaySlot};
use strata_manifest::Manifest;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::secrets::{cache_password, control_token, random_token, state_dir};
use crate::{dead_letters, nodefile, push, stateful, topics, triggers, Backends, FiringClaims};

/// Everything a node needs to run one app.
pub struct NodeConfig {
    pub manifest: Manifest,
    /// The manifest's directory; relative paths in the manifest start here.
    pub app_dir: PathBuf,
    /// Overrides `gateway.listen` (tests use port 0).
    pub gateway_listen: Option<SocketAddr>,
    pub api_listen: SocketAddr,
    /// Overrides `cache.listen`, the Redis-protocol port (tests use port 0).
    pub cache_listen: Option<SocketAddr>,
    /// Where logs and scratch dirs go; default `app_dir/.strata`.
    pub state_dir: Option<PathBuf>,
    pub node: NodeResources,
    /// Write `.strata/node.json` so CLI commands in the app dir find this node.
    pub write_state_file: bool,
    /// The queues and the store; None: the embedded engines under the state dir.
    pub backends: Option<Backends>,
    /// The node API's control token (the CLI's: every route), written to
    /// `.strata/control.token`; None: a random one. Required to listen on an address
    /// other than loopback. `new` takes it from `$STRATA_CONTROL_TOKEN`.
    pub control_token: Option<String>,
    /// The Redis port's password, overriding the manifest's `cache.password`. `new`
    /// takes it from `$STRATA_CACHE_PASSWORD`.
    pub cache_password: Option<String>,
    /// The node API's connection cap and head and idle timers.
    pub api_server: strata_api::ServerConfig,
    /// The cluster's placement sets the instance counts (`ScaleBy::Placement`): no
    /// autoscaler runs on this node.
    pub placed: bool,
    /// With `placed`: the services the cluster's scheduler may scale to zero. A request
    /// that finds no member of one on any node is held here (as on one node) while the
    /// scheduler places an instance; [`Node::held_at_zero`] has their admissions.
    pub zero_in_cluster: BTreeSet<String>,
    /// With `placed`: the autoscaled services that shed at `instances.max` cluster-wide;
    /// the cluster node sets when ([`Node::shed_in_cluster`] has their admissions).
    pub sheds_in_cluster: BTreeSet<String>,
    /// Other nodes run this app too: each timer firing is claimed here first and fired
    /// only if won, on a schedule aligned on the Unix epoch. None: fire every firing.
    pub firing_claims: Option<Arc<dyn FiringClaims>>,
    /// A store whose change feed brings every write, whichever node made it: the
    /// read-through copies of changed keys are dropped from it (a cluster's; None: only
    /// the writes through this node's API drop them).
    pub store_changes: Option<Arc<dyn strata_store::StoreBackend>>,
    /// In a cluster, the cache ring over the nodes running this app: the Redis port
    /// forwards a command whose keys another node owns. None: every key is served here.
    pub cache_ring: Option<Arc<strata_cache::NodeRing>>,
    /// Gateway workers that outlive this node (a cluster node's, kept across versions
    /// of the app), already listening on `gateway_listen`: the node makes its gateway
    /// and puts it in the slot only if the slot is empty; whoever owns the workers swaps
    /// it in otherwise ([`Node::gateway`]). None: the node runs its own workers.
    pub gateway_slot: Option<Arc<GatewaySlot>>,
    /// Export every span over OTLP/HTTP to this endpoint (`--otlp`), and the resource's
    /// `service.instance.id` (a cluster node's name).
    pub otlp: Option<(strata_gateway::otlp::Endpoint, Option<String>)>,
    /// In a cluster, this node's name (the instances' `STRATA_NODE`). None: one node.
    pub cluster_node: Option<String>,
    /// In a cluster, the other nodes running this app: `/v1/traces?id=` gathers their
    /// spans of the trace too. None: this node's spans only.
    pub trace_peers: Option<Arc<dyn strata_api::TracePeers>>,
    /// In a cluster, the nodes and what runs where, for the dashboard. None: one node.
    pub cluster_view: Option<Arc<dyn strata_api::ClusterView>>,
}

impl NodeConfig {
    pub fn new(manifest: Manifest, app_dir: PathBuf) -> NodeConfig {
        NodeConfig {
            manifest,
            app_dir,
            gateway_listen: None,
            api_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            cache_listen: None,
            state_dir: None,
            node: NodeResources::detect(),
            write_state_file: false,
            backends: None,
            control_token: std::env::var("STRATA_CONTROL_TOKEN").ok().filter(|t| !t.is_empty()),
            cache_password: std::env::var("STRATA_CACHE_PASSWORD").ok().filter(|p| !p.is_empty()),
            api_server: strata_api::ServerConfig::default(),
            placed: false,
            zero_in_cluster: BTreeSet::new(),
            sheds_in_cluster: BTreeSet::new(),
            firing_claims: None,
            cache_ring: None,
            store_changes: None,
            gateway_slot: None,
            otlp: None,
            cluster_node: None,
            trace_peers: None,
            cluster_view: None,
        }
    }
}

/// A running node.
pub struct Node {
    pub gateway_addr: SocketAddr,
    /// The first tier's routes and limits for this app, as its workers serve them.
    pub gateway: Arc<Gateway>,
    pub api_addr: SocketAddr,
    pub app: Arc<AppService>,
    pub bus: Arc<Bus>,
    pub backends: Backends,
    pub cache: Arc<strata_cache::Cache>,
    /// The read-through caches' entries (a cluster node forgets them on rejoining).
    pub read_through_cache: Arc<strata_cache::Cache>,
    /// Where the cache speaks the Redis protocol, if anywhere.
    pub cache_addr: Option<SocketAddr>,
    /// In a cluster, the admission of each service the scheduler may scale to zero
    /// ([`NodeConfig::zero_in_cluster`]): its held requests, and the signal when one is held.
    pub held_at_zero: BTreeMap<String, Arc<strata_autoscale::Admission>>,
    /// In a cluster, the admission of each service that sheds at the cluster's
    /// `instances.max` ([`NodeConfig::sheds_in_cluster`]).
    pub shed_in_cluster: BTreeMap<String, Arc<strata_autoscale::Admission>>,
    control_token: String,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    state_file: Option<PathBuf>,
    token_file: PathBuf,
    /// A node dropped without `stop` still stops: its gateway threads end with it.
    _stop_on_drop: tokio_util::sync::DropGuard,
    /// Stops the node API when dropped: after the instances stopped, in `wait`.
    api_stop: tokio_util::sync::DropGuard,
}

impl Node {
    /// Wires a node and starts it; returns once its listeners are bound.
    pub async fn start(config: NodeConfig, shutdown: CancellationToken) -> Result<Node> {
        // A start that fails half way stops what it already started (gateway threads,
        // instances, tasks): otherwise they keep the process from exiting.
        let started = Self::start_parts(config, shutdown.clone()).await;
        if started.is_err() {
            shutdown.cancel();
        }
        started
    }

    async fn start_parts(config: NodeConfig, shutdown: CancellationToken) -> Result<Node> {
        // Sockets and files run out at the default soft limit long before the machine does.
        match strata_os::limits::raise_open_files() {
            Ok((before, after)) if after > before => tracing::debug!(before, after, "raised the open-files limit"),
            Ok(_) => {}
            Err(e) => tracing::warn!("could not raise the open-files limit: {e}"),
        }
        // Functions run as services of their own (instances.min 0, autoscaled).
        let manifest = config.manifest.expanded();
        let app_dir = std::path::absolute(&config.app_dir).context("resolve the app dir")?;
        let control_token = control_token(config.control_token, config.api_listen)?;
        let state_dir = state_dir(&app_dir, config.state_dir)?;
        let api_listener = TcpListener::bind(config.api_listen)
            .await
            .with_context(|| format!("listen on {} for the node API", config.api_listen))?;
        let api_addr = api_listener.local_addr()?;
        // Cancelled by `Node::wait` once the instances stopped, or when this is dropped.
        let api_stop = CancellationToken::new();
        let api_stop_on_drop = api_stop.clone().drop_guard();
        let api_url = format!("http://{api_addr}");

        let backends = open_backends(config.backends, &state_dir, &manifest).await?;
        let cache = stateful::cache(&manifest);
        let read_through = stateful::read_through(&manifest, &backends.store);
        let read_through_cache = read_through.cache.clone();

        let mut tasks = Vec::new();
        if let Some(store) = &config.store_changes {
            tasks.extend(stateful::invalidate_on_changes(
                &manifest,
                &read_through,
                store,
                &shutdown,
            ));
        }
        let bus = Bus::new();
        let (gateway_addr, gateway) = start_gateway(
            &manifest,
            config.gateway_listen,
            config.gateway_slot,
            &state_dir,
            &bus,
            &shutdown,
            &mut tasks,
        )?;
        let redis = start_cache(
            &manifest,
            config.cache_listen,
            config.cache_password.clone(),
            config.cache_ring.clone(),
            &cache,
            &shutdown,
            &mut tasks,
        )?;
        if let Some((endpoint, node)) = config.otlp.clone() {
            let resource = strata_gateway::otlp::Resource {
                app: manifest.app.clone(),
                node,
            };
            tasks.push(tokio::spawn(strata_gateway::otlp::run(
                gateway.traces(),
                endpoint,
                resource,
                shutdown.clone(),
            )));
        }
        tasks.push(tokio::spawn(strata_cache::run_sweeper(
            read_through.cache.clone(),
            Duration::from_millis(100),
            shutdown.clone(),
        )));
        // One token per service (a function is one), handed to its instances.
        let tokens = manifest
            .services
            .keys()
            .map(|s| Ok((s.clone(), random_token()?)))
            .collect::<Result<BTreeMap<String, String>>>()?;
        let app = Arc::new(AppService::start(
            AppConfig {
                manifest: manifest.clone(),
                app_dir,
                state_dir: state_dir.clone(),
                api_url: api_url.clone(),
                tokens: tokens.clone(),
                node: config.node,
                cluster_node: config.cluster_node.clone(),
                grpc_probe: Some(grpc_probe()),
            },
            bus.clone(),
            shutdown.child_token(),
        )?);
        let role = ClusterRole {
            placed: config.placed,
            zero_in_cluster: config.zero_in_cluster,
            sheds_in_cluster: config.sheds_in_cluster,
            firing_claims: config.firing_claims,
            traces: gateway.traces(),
        };
        let placed = start_tasks(&manifest, &role, &app, &bus, &backends, &shutdown, &mut tasks)?;
        start_topics(&manifest, &bus, &cache, &shutdown, &mut tasks);

        let cache_addr = redis.as_ref().map(|(addr, _)| *addr);
        let info = NodeInfo {
            app: manifest.app.clone(),
            gateway: gateway_addr.to_string(),
            api: api_url,
            cache: cache_addr.map(|a| a.to_string()),
            pid: std::process::id(),
        };
        let parts = Arc::new(NodeParts {
            info: info.clone(),
            app: app.clone(),
            bus: bus.clone(),
            policies: strata_gateway::relay_policies(&manifest),
            grpc: manifest
                .services
                .iter()
                .flat_map(|(s, spec)| spec.grpc.iter().map(move |g| (g.clone(), s.clone())))
                .collect(),
            queues: backends.queues.clone(),
            turns: Arc::default(),
            consumers: manifest
                .services
                .iter()
                .filter_map(|(s, spec)| {
                    spec.consumes
                        .as_ref()
                        .map(|c| (s.clone(), (c.queue.clone(), c.group.clone())))
                })
                .collect(),
            store: backends.store.clone(),
            cache: cache.clone(),
            redis: redis.map(|(_, figures)| figures),
            cache_ring: config.cache_ring,
            read_through,
            access: strata_api::Access::new(&control_token, &tokens, &manifest, api_addr),
            shutdown: shutdown.clone(),
            gateway: Some(gateway.clone()),
            traces: gateway.traces(),
            trace_peers: config.trace_peers,
            cluster: config.cluster_view,
        });
        // The node API stays up until every instance has stopped (`Node::wait`): one
        // draining its last requests may still call other services, queues and the store.
        tasks.push(tokio::spawn(strata_api::serve(
            api_listener,
            parts,
            config.api_server,
            api_stop.clone(),
        )));
        let token_file = nodefile::write_token(&state_dir, &control_token)?;
        let state_file = if config.write_state_file {
            let path = state_dir.join("node.json");
            nodefile::write(&path, &info)?;
            Some(path)
        } else {
            None
        };
        Ok(Node {
            gateway_addr,
            gateway,
            api_addr,
            app,
            bus,
            backends,
            cache,
            read_through_cache,
            cache_addr,
            held_at_zero: placed.held_at_zero,
            shed_in_cluster: placed.shed_in_cluster,
            control_token,
            token_file,
            _stop_on_drop: shutdown.clone().drop_guard(),
            api_stop: api_stop_on_drop,
            shutdown,
            tasks,
            state_file,
        })
    }

    /// The node API's control token (also in `.strata/control.token`).
    pub fn control_token(&self) -> &str {
        &self.control_token
    }

    /// Asks the node to stop.
    pub fn stop(&self) {
        self.shutdown.cancel();
    }

    /// Waits for shutdown, then stops every instance, task and listener, and closes the
    /// backends after what they were given is durable.
    pub async fn wait(self) {
        self.shutdown.cancelled().await;
        // Instances drain while the gateway finishes the requests it has open; the node
        // API serves them until the last has stopped.
        self.app.stop().await;
        drop(self.api_stop);
        for task in self.tasks {
            let _ = task.await;
        }
        let backends = self.backends.clone();
        let _ = tokio::task::spawn_blocking(move || backends.close()).await;
        if let Some(path) = self.state_file {
            nodefile::remove(&path);
        }
        let _ = std::fs::remove_file(self.token_file);
    }

    /// Runs a node until `shutdown`.
    pub async fn serve(config: NodeConfig, shutdown: CancellationToken) -> Result<()> {
        let node = Node::start(config, shutdown).await?;
        node.wait().await;
        Ok(())
    }
}

/// The given backends with the manifest's queues declared, or the embedded ones.
async fn open_backends(given: Option<Backends>, state_dir: &Path, manifest: &Manifest) -> Result<Backends> {
    match given {
        Some(backends) => {
            backends.declare(manifest).await?;
            Ok(backends)
        }
        None => {
            let (dir, manifest) = (state_dir.to_path_buf(), manifest.clone());
            tokio::task::spawn_blocking(move || Backends::embedded(&dir, &manifest))
                .await
                .context("open the queues and the store")?
        }
    }
}

/// The gateway's worker threads: `gateway.workers`, or one per core this process may
/// run on (`available_parallelism` follows the CPU affinity and quota, so a node under
/// `taskset -c 1` runs one).
pub(crate) fn gateway_workers(spec: &strata_manifest::GatewaySpec) -> usize {
    spec.workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .min(strata_gateway::MAX_WORKERS)
}

/// The first tier: its worker threads on the gateway address, or the workers of a
/// given slot.
fn start_gateway(
    manifest: &Manifest,
    listen: Option<SocketAddr>,
    slot: Option<Arc<GatewaySlot>>,
    state_dir: &Path,
    bus: &Arc<Bus>,
    shutdown: &CancellationToken,
    tasks: &mut Vec<JoinHandle<()>>,
) -> Result<(SocketAddr, Arc<Gateway>)> {
    let listen: SocketAddr = match listen {
        Some(addr) => addr,
        None => manifest
            .gateway
            .listen
            .parse()
            .context("gateway.listen is not an address")?,
    };
    let access = if manifest.gateway.access_log {
        Some(AccessLog::open(&state_dir.join("logs").join("access.log"))?)
    } else {
        None
    };
    let gateway = Gateway::new(GatewayConfig::from(manifest), bus, access);
    if let Some(slot) = slot {
        slot.set_if_empty(gateway.clone());
        return Ok((listen, gateway));
    }
    let threads = gateway_workers(&manifest.gateway);
    let workers = strata_gateway::spawn(listen, threads, gateway.clone(), shutdown.clone()).map_err(|e| {
        cannot_listen(
            e,
            "the gateway",
            listen,
            "gateway.listen in the manifest, or `strata up --listen ADDR`",
        )
    })?;
    let addr = workers.addr;
    tasks.push(tokio::spawn(workers.join()));
    Ok((addr, gateway))
}

/// The cache's Redis-protocol port (when one is configured) and its expiry sweeper.
fn start_cache(
    manifest: &Manifest,
    listen: Option<SocketAddr>,
    password: Option<String>,
    ring: Option<Arc<strata_cache::NodeRing>>,
    cache: &Arc<strata_cache::Cache>,
    shutdown: &CancellationToken,
    tasks: &mut Vec<JoinHandle<()>>,
) -> Result<Option<(SocketAddr, strata_cache::RespFigures)>> {
    tasks.push(tokio::spawn(strata_cache::run_sweeper(
        cache.clone(),
        Duration::from_millis(100),
        shutdown.clone(),
    )));
    let listen = match (listen, &manifest.cache.listen) {
        (Some(addr), _) => addr,
        (None, Some(listen)) => listen.parse::<SocketAddr>().context("cache.listen is not an address")?,
        (None, None) => return Ok(None),
    };
    let spec = &manifest.cache;
    let password = cache_password(spec.password.as_deref(), password, listen)?;
    let ms = |ms: u64| (ms > 0).then(|| Duration::from_millis(ms));
    let query_buffer = usize::try_from(spec.max_query_buffer_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
    let config = strata_cache::RespConfig {
        threads: spec.threads as usize,
        limits: strata_cache::resp::Limits {
            max_bulk: query_buffer / 2,
            ..Default::default()
        },
        max_query_bytes: query_buffer,
        max_query_bytes_total: usize::try_from(spec.max_query_buffers_total_mb.saturating_mul(1 << 20))
            .unwrap_or(usize::MAX),
        max_clients: spec.max_clients as usize,
        idle_timeout: ms(spec.idle_timeout_ms),
        command_timeout: ms(spec.command_timeout_ms),
        password,
        ring,
    };
    let (resp, figures) =
        strata_cache::spawn_resp_figures(listen, config, cache.clone(), shutdown.clone()).map_err(|e| {
            cannot_listen(
                e,
                "the cache's Redis protocol",
                listen,
                "cache.listen in the manifest (or leave it out: no Redis port), or `strata up --cache-listen ADDR`",
            )
        })?;
    let addr = resp.addr;
    tasks.push(tokio::spawn(resp.join()));
    Ok(Some((addr, figures)))
}

/// Why `what` could not listen on `addr`, and what to do: an address in use names its
/// holder (the node's listeners claim their address: `strata_os::claim`).
fn cannot_listen(e: std::io::Error, what: &str, addr: SocketAddr, setting: &str) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::AddrInUse {
        anyhow::anyhow!("{what} cannot listen: {e}; stop that process, or choose another address ({setting})")
    } else {
        anyhow::Error::new(e).context(format!("listen on {addr} for {what} ({setting})"))
    }
}

/// What a cluster node's share of an app does differently (see [`NodeConfig`]), and the
/// spans its tasks record.
struct ClusterRole {
    placed: bool,
    zero_in_cluster: BTreeSet<String>,
    sheds_in_cluster: BTreeSet<String>,
    firing_claims: Option<Arc<dyn FiringClaims>>,
    /// The gateway's spans, where push deliveries and triggers record theirs.
    traces: Arc<strata_gateway::trace::Traces>,
}

/// The tasks that are neither the first tier nor the App Service: an autoscaler per
/// autoscaled service, push delivery per consuming service, a trigger per function
/// with a store or timer trigger, and the watch that tells dead letters as events. In a
/// cluster, a holding admission on each service the scheduler may scale to zero
/// (returned: the cluster node reports what they hold).
fn start_tasks(
    manifest: &Manifest,
    role: &ClusterRole,
    app: &Arc<AppService>,
    bus: &Arc<Bus>,
    backends: &Backends,
    shutdown: &CancellationToken,
    tasks: &mut Vec<JoinHandle<()>>,
) -> Result<PlacedAdmissions> {
    let policies = strata_gateway::relay_policies(manifest);
    let mut placed = PlacedAdmissions::default();
    for (service, spec) in &manifest.services {
        let queue = match &spec.consumes {
            Some(c) => Some(backends.queues.get(&c.queue).context("a consumed queue")?),
            None => None,
        };
        // A placed service's count is its share of the placement; a function's (placed
        // at zero) follows its events on each node, started from zero where they arrive.
        let is_function = manifest.functions.contains_key(service);
        let scaled = strata_autoscale::Scaled::of(service, spec, queue.clone()).filter(|_| !role.placed || is_function);
        if let Some(scaled) = scaled {
            // The admission goes on the pool before the first request can come.
            let pool = bus.pool(service);
            let admission = Arc::new(strata_autoscale::Admission::new(&scaled));
            if pool.set_admission(admission.clone()).is_err() {
                anyhow::bail!("service {service} has two autoscalers");
            }
            tasks.push(tokio::spawn(strata_autoscale::run(
                app.clone(),
                pool,
                admission,
                scaled,
                shutdown.clone(),
            )));
        } else if role.placed && (role.zero_in_cluster.contains(service) || role.sheds_in_cluster.contains(service)) {
            // Sized by the cluster's scheduler, which may leave it no instance anywhere:
            // a request then waits here for one, as at zero on one node. At the
            // cluster's maximum the cluster node turns shedding on.
            let holds = role.zero_in_cluster.contains(service);
            let admission = Arc::new(strata_autoscale::Admission::placed(holds));
            if bus.pool(service).set_admission(admission.clone()).is_err() {
                anyhow::bail!("service {service} has two admissions");
            }
            if holds {
                placed.held_at_zero.insert(service.clone(), admission.clone());
            }
            if role.sheds_in_cluster.contains(service) {
                placed.shed_in_cluster.insert(service.clone(), admission);
            }
        }
        if let (Some(queue), Some(consumes)) = (queue, &spec.consumes) {
            // A function takes `concurrency` batches per instance; a service one.
            let per_member = manifest.functions.get(service).map_or(1, |f| f.concurrency as usize);
            let push = push::Push {
                queue,
                service: Arc::from(service.as_str()),
                pool: bus.pool(service),
                consumes: consumes.clone(),
                policy: policies[service].clone(),
                per_member,
                traces: role.traces.clone(),
            };
            tasks.push(tokio::spawn(push::run(push, shutdown.clone())));
        }
    }
    let consumers = manifest
        .services
        .iter()
        .filter_map(|(service, spec)| {
            let c = spec.consumes.as_ref()?;
            Some(((c.queue.clone(), c.group.clone()), service.clone()))
        })
        .collect();
    tasks.push(tokio::spawn(dead_letters::watch(
        backends.queues.clone(),
        app.clone(),
        consumers,
        shutdown.clone(),
    )));
    for (name, f) in &manifest.functions {
        let target = triggers::Target {
            app: app.clone(),
            function: name.clone(),
            pool: bus.pool(name),
            path: f.path.clone(),
            policy: policies[name].clone(),
            parallel: (f.max_instances as usize).saturating_mul(f.concurrency as usize),
            traces: role.traces.clone(),
        };
        if let Some(trigger) = &f.trigger.store {
            let ns = strata_store::app_namespace(&manifest.app, &trigger.namespace);
            tasks.push(tokio::spawn(triggers::store(
                target,
                backends.store.clone(),
                trigger.clone(),
                ns,
                shutdown.clone(),
            )));
        } else if let Some(trigger) = &f.trigger.timer {
            tasks.push(tokio::spawn(triggers::timer(
                target,
                trigger.clone(),
                role.firing_claims.clone(),
                shutdown.clone(),
            )));
        }
    }
    Ok(placed)
}

/// The admissions of a cluster node's placed services ([`Node::held_at_zero`],
/// [`Node::shed_in_cluster`]).
#[derive(Default)]
struct PlacedAdmissions {
    held_at_zero: BTreeMap<String, Arc<strata_autoscale::Admission>>,
    shed_in_cluster: BTreeMap<String, Arc<strata_autoscale::Admission>>,
}

/// The gRPC health check of `health.grpc` (the gateway's HTTP/2 client), in the App
/// Service's terms.
fn grpc_probe() -> strata_appservice::GrpcProbe {
    use strata_appservice::ProbeOutcome;
    use strata_gateway::health::{check_grpc, GrpcHealth};
    Arc::new(|addr, service| {
        Box::pin(async move {
            match check_grpc(addr, &service).await {
                GrpcHealth::Serving => ProbeOutcome::Passed,
                GrpcHealth::Refused => ProbeOutcome::Refused,
                GrpcHealth::NoReply => ProbeOutcome::NoReply,
                GrpcHealth::Status(code) => ProbeOutcome::Status(code),
                GrpcHealth::Answered(what) => ProbeOutcome::Grpc(what),
            }
        })
    })
}

/// A delivery task per subscription of a service to a topic (`subscribes`).
fn start_topics(
    manifest: &Manifest,
    bus: &Arc<Bus>,
    cache: &Arc<strata_cache::Cache>,
    shutdown: &CancellationToken,
    tasks: &mut Vec<JoinHandle<()>>,
) {
    let policies = strata_gateway::relay_policies(manifest);
    for (service, spec) in &manifest.services {
        for subscription in &spec.subscribes {
            tasks.push(tokio::spawn(topics::run(
                cache.clone(),
                bus.pool(service),
                service.clone(),
                subscription.clone(),
                policies[service].clone(),
                shutdown.clone(),
            )));
        }
    }
}
