//! strata: a cloud in one binary. This crate wires one node and holds the CLI.
//!
//! Layout:
//! - [`start`] / [`serve`]: wire a node from a [`NodeConfig`]: the bus, the App
//!   Service, the queues, the gateway and the node API. Integration tests call `start` too.
//! - `client`: the CLI's side of the node API (`ps`, `scale`, `logs`, `down`).
//! - `cli`: the commands and their output.
//! - `statefile`: `.strata/node.json`, how CLI commands find a running node.
//! - `push`: delivers queue batches to the pools of services that `consumes` a queue.
//! - `autoscale`: the autoscaler task of each autoscaled service (and of those that may
//!   run none: scale from and to zero).
//! - `functions`: the store and timer triggers of functions (a function runs as a service
//!   with `instances.min` 0; its queue and HTTP triggers are push delivery and routes).

mod autoscale;
pub mod cli;
pub mod client;
mod functions;
mod push;
pub mod statefile;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use strata_api::{ApiState, NodeInfo};
use strata_appservice::{AppConfig, AppService, NodeResources};
use strata_bus::Bus;
use strata_gateway::{AccessLog, Gateway, GatewayConfig, RelayPolicy, Route};
use strata_manifest::Manifest;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

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
        }
    }
}

/// A running node.
pub struct Node {
    pub gateway_addr: SocketAddr,
    pub api_addr: SocketAddr,
    pub app: Arc<AppService>,
    pub bus: Arc<Bus>,
    pub queues: Arc<strata_queue::Queues>,
    pub store: Arc<strata_store::Store>,
    pub cache: Arc<strata_cache::Cache>,
    /// Where the cache speaks the Redis protocol, if anywhere.
    pub cache_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    state_file: Option<PathBuf>,
    /// A node dropped without `stop` still stops: its gateway threads end with it.
    _stop_on_drop: tokio_util::sync::DropGuard,
}

/// Wires a node and starts it; returns once its listeners are bound.
pub async fn start(config: NodeConfig, shutdown: CancellationToken) -> Result<Node> {
    // Functions run as services of their own (instances.min 0, autoscaled).
    let manifest = config.manifest.expanded();
    let app_dir = std::path::absolute(&config.app_dir).context("resolve the app dir")?;
    let state_dir = match config.state_dir {
        Some(dir) => std::path::absolute(dir).context("resolve the state dir")?,
        None => app_dir.join(".strata"),
    };
    std::fs::create_dir_all(&state_dir).with_context(|| format!("create state dir {}", state_dir.display()))?;
    let gateway_listen: SocketAddr = match config.gateway_listen {
        Some(addr) => addr,
        None => manifest
            .gateway
            .listen
            .parse()
            .context("gateway.listen is not an address")?,
    };
    let api_listener = TcpListener::bind(config.api_listen)
        .await
        .with_context(|| format!("listen on {} for the node API", config.api_listen))?;
    let api_addr = api_listener.local_addr()?;
    let api_url = format!("http://{api_addr}");

    let queue_dir = state_dir.join("queues");
    let declared = manifest.queues.clone();
    let queues = tokio::task::spawn_blocking(move || strata_queue::Queues::open(&queue_dir, &declared))
        .await
        .context("open the queues")?
        .context("open the queues")?;
    let queues = Arc::new(queues);

    let store_dir = state_dir.join("store");
    let store = tokio::task::spawn_blocking(move || strata_store::Store::open(&store_dir))
        .await
        .context("open the store")?
        .context("open the store")?;
    let store = Arc::new(store);
    let cache = Arc::new(strata_cache::Cache::new(strata_cache::CacheConfig {
        max_bytes: manifest.cache.max_memory_mb << 20,
        ..strata_cache::CacheConfig::default()
    }));
    let read_through = manifest
        .caches
        .iter()
        .map(|(name, spec)| {
            let loader = strata_api::state::StoreLoader {
                store: store.clone(),
                ns: strata_api::state::StateTier::store_ns(&manifest.app, &spec.namespace),
                prefix: strata_api::state::StateTier::read_through_key(name, ""),
            };
            let rt = strata_cache::ReadThrough::new(
                cache.clone(),
                Arc::new(loader),
                strata_cache::ReadThroughConfig {
                    ttl: Duration::from_millis(spec.ttl_ms),
                    stale: Duration::from_millis(spec.stale_ms),
                    ..strata_cache::ReadThroughConfig::default()
                },
            );
            (name.clone(), (spec.namespace.clone(), rt))
        })
        .collect();
    let cache_listen = match config.cache_listen {
        Some(addr) => Some(addr),
        None => match &manifest.cache.listen {
            Some(listen) => Some(listen.parse::<SocketAddr>().context("cache.listen is not an address")?),
            None => None,
        },
    };

    let bus = Bus::new();
    let policies: HashMap<String, RelayPolicy> = manifest
        .services
        .iter()
        .map(|(name, spec)| {
            let policy = RelayPolicy {
                deadline: Duration::from_millis(spec.relay.timeout_ms),
                attempt_timeout: Duration::from_millis(spec.relay.attempt_timeout_ms),
                retries: spec.relay.retries,
            };
            (name.clone(), policy)
        })
        .collect();
    let routes = manifest
        .services
        .iter()
        .flat_map(|(name, spec)| {
            let policy = policies[name];
            spec.routes.iter().map(move |r| Route {
                host: r.host().map(str::to_string),
                prefix: r.path().to_string(),
                service: name.clone(),
                mode: r.mode(),
                policy,
            })
        })
        .collect();
    let access = AccessLog::open(&state_dir.join("logs").join("access.log"))?;
    let gateway = Gateway::new(
        GatewayConfig {
            routes,
            max_header_bytes: manifest.gateway.max_header_bytes,
            max_body_bytes: manifest.gateway.max_body_bytes,
            header_read_timeout: Duration::from_millis(manifest.gateway.header_read_timeout_ms),
        },
        &bus,
        Some(access),
    );
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(strata_gateway::MAX_WORKERS);
    let workers = strata_gateway::spawn(gateway_listen, threads, gateway, shutdown.clone()).with_context(|| {
        format!("listen on {gateway_listen} for the gateway (is another strata or server using it?)")
    })?;
    let gateway_addr = workers.addr;
    let resp = match cache_listen {
        Some(addr) => Some(
            strata_cache::spawn_resp(addr, manifest.cache.threads as usize, cache.clone(), shutdown.clone()).with_context(|| {
                format!("listen on {addr} for the cache's Redis protocol (is a Redis server using it? set cache.listen)")
            })?,
        ),
        None => None,
    };
    let cache_addr = resp.as_ref().map(|r| r.addr);
    let app_name = manifest.app.clone();
    let specs = manifest.services.clone();
    let functions = manifest.functions.clone();
    let consumers: Vec<(String, strata_manifest::ConsumesSpec)> = manifest
        .services
        .iter()
        .filter_map(|(name, spec)| spec.consumes.clone().map(|c| (name.clone(), c)))
        .collect();
    let app = Arc::new(AppService::start(
        AppConfig {
            manifest,
            app_dir: app_dir.clone(),
            state_dir: state_dir.clone(),
            api_url: api_url.clone(),
            node: config.node,
        },
        bus.clone(),
        shutdown.child_token(),
    )?);
    let info = NodeInfo {
        app: app_name.clone(),
        gateway: gateway_addr.to_string(),
        api: api_url,
        cache: cache_addr.map(|a| a.to_string()),
        pid: std::process::id(),
    };
    let state = Arc::new(ApiState {
        info: info.clone(),
        app: app.clone(),
        bus: bus.clone(),
        policies: policies.clone(),
        queues: queues.clone(),
        consumers: consumers
            .iter()
            .map(|(s, c)| (s.clone(), (c.queue.clone(), c.group.clone())))
            .collect(),
        state: strata_api::state::StateTier {
            app: app_name.clone(),
            store: store.clone(),
            cache: cache.clone(),
            read_through,
        },
        shutdown: shutdown.clone(),
    });
    let mut tasks = Vec::new();
    if let Some(resp) = resp {
        tasks.push(tokio::spawn(resp.join()));
    }
    tasks.push(tokio::spawn(strata_cache::run_sweeper(
        cache.clone(),
        Duration::from_millis(100),
        shutdown.clone(),
    )));
    for (service, spec) in &specs {
        let queue = match &spec.consumes {
            Some(c) => Some(queues.get(&c.queue).context("a consumed queue")?),
            None => None,
        };
        if let Some(scaled) = autoscale::Scaled::of(service, spec, queue) {
            tasks.push(tokio::spawn(autoscale::run(
                app.clone(),
                bus.pool(service),
                scaled,
                shutdown.clone(),
            )));
        }
    }
    for (service, consumes) in consumers {
        let queue = queues.get(&consumes.queue).context("a consumed queue")?;
        // A function takes `concurrency` batches per instance; a service one.
        let per_member = functions.get(&service).map_or(1, |f| f.concurrency as usize);
        tasks.push(tokio::spawn(push::run(
            queue,
            bus.pool(&service),
            consumes,
            policies[&service],
            per_member,
            shutdown.clone(),
        )));
    }
    for (name, f) in &functions {
        let target = functions::Target {
            app: app.clone(),
            function: name.clone(),
            pool: bus.pool(name),
            path: f.path.clone(),
            policy: policies[name],
            parallel: (f.max_instances as usize).saturating_mul(f.concurrency as usize),
        };
        if let Some(trigger) = &f.trigger.store {
            let ns = strata_api::state::StateTier::store_ns(&app_name, &trigger.namespace);
            tasks.push(tokio::spawn(functions::store(
                target,
                store.clone(),
                trigger.clone(),
                ns,
                shutdown.clone(),
            )));
        } else if let Some(trigger) = &f.trigger.timer {
            tasks.push(tokio::spawn(functions::timer(
                target,
                trigger.clone(),
                shutdown.clone(),
            )));
        }
    }
    tasks.push(tokio::spawn(workers.join()));
    let api_shutdown = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        let router = strata_api::router(state);
        if let Err(e) = axum::serve(api_listener, router)
            .with_graceful_shutdown(api_shutdown.cancelled_owned())
            .await
        {
            tracing::error!(error = %e, "node API stopped");
        }
    }));
    let state_file = if config.write_state_file {
        let path = state_dir.join("node.json");
        statefile::write(&path, &info)?;
        Some(path)
    } else {
        None
    };
    Ok(Node {
        gateway_addr,
        api_addr,
        app,
        bus,
        queues,
        store,
        cache,
        cache_addr,
        _stop_on_drop: shutdown.clone().drop_guard(),
        shutdown,
        tasks,
        state_file,
    })
}

impl Node {
    /// Asks the node to stop.
    pub fn stop(&self) {
        self.shutdown.cancel();
    }

    /// Waits for shutdown, then stops every instance and listener.
    pub async fn wait(self) {
        self.shutdown.cancelled().await;
        // Instances drain while the gateway finishes the requests it has open.
        self.app.stop().await;
        for task in self.tasks {
            let _ = task.await;
        }
        // Every writer syncs what it was given, then stops.
        let (queues, store) = (self.queues.clone(), self.store.clone());
        let _ = tokio::task::spawn_blocking(move || {
            queues.close();
            store.close();
        })
        .await;
        if let Some(path) = self.state_file {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Runs a node until `shutdown`.
pub async fn serve(config: NodeConfig, shutdown: CancellationToken) -> Result<()> {
    let node = start(config, shutdown).await?;
    node.wait().await;
    Ok(())
}
