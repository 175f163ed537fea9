//! Starting one app's version on this node ([`start_app`]: its bundle, its [`Node`] with
//! the cluster's store, queues and timer claims, and the tasks that tie it to the other
//! nodes: members, traces, topics, the cache ring, demand at zero, shedding at the
//! maximum) and stopping it.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use strata_appservice::NodeResources;
use strata_cluster::firings::Firings;
use strata_cluster::placement::AppPlacement;
use strata_cluster::{members, JetStreamQueues, JetStreamStore, JetStreamStoreConfig, Nats};
use tokio_util::sync::CancellationToken;

use super::rollover::{version_of, AppGateway};
use super::{cache_ring, scale, shed, topics, traces, view, AppStarted, ClusterConfig, Running, STATE_PREFIX};
use crate::{Backends, FiringClaims, Node, NodeConfig};

pub(super) async fn start_app(
    config: &ClusterConfig,
    nats: &Nats,
    heard: &view::Heard,
    app: &str,
    placement: &AppPlacement,
    gateway: Option<Arc<AppGateway>>,
    shutdown: &CancellationToken,
) -> Result<Running> {
    let membership = &heard.membership;
    let cache = config.data_dir.join("bundles");
    std::fs::create_dir_all(&cache)?;
    let (dir, index) = strata_cluster::bundle::fetch(&nats.bundles, &placement.digest, &cache).await?;
    let mut manifest = strata_manifest::load(&dir.join(&index.manifest))
        .map_err(|e| anyhow::anyhow!("the manifest of bundle {}: {e}", placement.digest))?
        .expanded();
    // Before the counts become this node's share: which services the scheduler may
    // leave at zero on every node (requests for them are held while it starts one).
    let zero_in_cluster = manifest
        .services
        .iter()
        .filter(|(service, spec)| {
            spec.instances.min == 0 && scale::is_autoscaled(spec, manifest.functions.contains_key(*service))
        })
        .map(|(service, _)| service.clone())
        .collect();
    // And which shed at the cluster's `instances.max` (the counts are still the cluster's).
    let shed_limits = shed::limits(&manifest);
    for (service, spec) in manifest.services.iter_mut() {
        let share = placement.share(service, &config.name);
        spec.instances.initial = Some(share);
        spec.instances.min = spec.instances.min.min(share);
        spec.instances.max = spec.instances.max.max(share);
    }
    let gateway_port = match config.gateway_port {
        Some(port) => port,
        None => manifest
            .gateway
            .listen
            .parse::<SocketAddr>()
            .context("gateway.listen is not an address")?
            .port(),
    };
    // The gateway workers of the version running now, if they listen where this one
    // should (a new version that moves the gateway's port gets workers of its own).
    let shared = gateway.filter(|g| config.gateway_port.is_some() || g.addr.port() == gateway_port);
    let mut node_config = NodeConfig::new(manifest.clone(), dir);
    node_config.otlp = config.otlp.clone().map(|e| (e, Some(config.name.clone())));
    node_config.cluster_node = Some(config.name.clone());
    node_config.cache_listen = manifest
        .cache
        .listen
        .as_ref()
        .map(|_| SocketAddr::new(config.listen, 0));
    // Its keys spread over every node running the app's cache (`cache_ring`).
    let ring = node_config
        .cache_listen
        .map(|_| strata_cache::NodeRing::new(&config.name));
    node_config.cache_ring = ring.clone();
    // A directory per version: while a node rolls over, two versions of the app run
    // side by side, each with its instances' logs, scratch dirs and container ids.
    let version = version_of(&placement.digest);
    let state_dir = config.data_dir.join("apps").join(app).join(&version);
    node_config.state_dir = Some(state_dir.clone());
    node_config.placed = true;
    node_config.zero_in_cluster = zero_in_cluster;
    node_config.sheds_in_cluster = shed_limits.keys().cloned().collect();
    // The store is the cluster's (JetStream), shared by every node; a store trigger's
    // changes are shared too, so that each fires once, on one node of the app.
    let store_triggers = manifest.functions.values().any(|f| f.trigger.store.is_some());
    let store_config = JetStreamStoreConfig {
        max_blob_bytes: manifest.store.max_blob_bytes,
        shared_feed: store_triggers.then(|| format!("triggers-{app}")),
        ..JetStreamStoreConfig::default()
    };
    let store: Arc<dyn strata_store::StoreBackend> = Arc::new(strata_store::Counted::new(
        JetStreamStore::open(&nats.js, STATE_PREFIX, nats.replicas, store_config)
            .await
            .context("open the cluster's store")?,
    ));
    node_config.store_changes = cache_ring::store_changes(nats, &manifest, &store, store_triggers).await?;
    // So are the queues: a stream per queue (`strata_APP_q_NAME`), groups as durable
    // consumers, so that a message published through one node is fetched through any.
    let queues = JetStreamQueues::open(
        nats.js.clone(),
        &format!("strata_{app}"),
        nats.replicas,
        &manifest.queues,
    )
    .await
    .context("open the cluster's queues")?;
    node_config.backends = Some(Backends {
        queues: Arc::new(queues),
        store,
    });
    // Every node runs the app's timers; each firing is claimed in the cluster first, so
    // that one node fires it.
    let timers = manifest.functions.values().any(|f| f.trigger.timer.is_some());
    if timers {
        let firings = Firings::new(nats.firings.clone(), app, &config.name);
        node_config.firing_claims = Some(Arc::new(firings));
    }
    node_config.node = NodeResources {
        memory_mb: config.memory_mb.unwrap_or(NodeResources::detect().memory_mb),
        accelerators: config.accelerators,
        labels: config.labels.clone(),
    };
    let gateway = match shared {
        Some(g) => g,
        None => AppGateway::spawn(
            SocketAddr::new(config.listen, gateway_port),
            crate::node::gateway_workers(&manifest.gateway),
            shutdown,
        )?,
    };
    // `/v1/traces?id=` here gathers the trace's spans from the other nodes too.
    node_config.trace_peers = Some(Arc::new(traces::Peers {
        nats: nats.clone(),
        app: app.to_string(),
        me: config.name.clone(),
        membership: membership.clone(),
    }));
    node_config.gateway_listen = Some(gateway.addr);
    node_config.gateway_slot = Some(gateway.slot.clone());
    let view = Arc::new(view::AppView::new(app, &config.name, heard.clone()));
    node_config.cluster_view = Some(view.clone());
    let stop = shutdown.child_token();
    let node = match Node::start(node_config, stop.clone()).await {
        Ok(node) => node,
        Err(e) => {
            if gateway.slot.current().is_none() {
                // Workers made for this version alone, with nothing to serve.
                gateway.stop().await;
            }
            return Err(e);
        }
    };
    let services: Vec<String> = manifest.services.keys().cloned().collect();
    let publisher = members::Publisher {
        app: app.to_string(),
        node: config.name.clone(),
        version,
        ip: config.listen,
        services,
    };
    tokio::spawn(members::publish(
        nats.clone(),
        publisher,
        node.bus.clone(),
        stop.child_token(),
    ));
    tokio::spawn(traces::answer(
        nats.clone(),
        app.to_string(),
        config.name.clone(),
        node.gateway.traces(),
        stop.child_token(),
    ));
    tokio::spawn(members::join_remote(
        nats.clone(),
        app.to_string(),
        config.name.clone(),
        node.bus.clone(),
        membership.clone(),
        stop.child_token(),
    ));
    tokio::spawn(topics::bridge(
        nats.clone(),
        app.to_string(),
        node.cache.clone(),
        stop.child_token(),
    ));
    shed::watch(
        app,
        &config.name,
        &node,
        &shed_limits,
        membership.clone(),
        stop.child_token(),
    );
    if let Some(ring) = ring {
        let caches = cache_ring::Caches {
            keys: node.cache.clone(),
            read_through: node.read_through_cache.clone(),
        };
        tokio::spawn(cache_ring::follow(
            membership.clone(),
            app.to_string(),
            ring,
            caches,
            stop.child_token(),
        ));
    }
    tracing::info!(app, digest = placement.digest, gateway = %node.gateway_addr, api = %node.api_addr, "running app");
    if let Some(announce) = &config.announce {
        let _ = announce.send(AppStarted {
            app: app.to_string(),
            version: version_of(&placement.digest),
            gateway: node.gateway_addr,
            api: node.api_addr,
            control_token: node.control_token().to_string(),
        });
    }
    Ok(Running {
        digest: placement.digest.clone(),
        manifest,
        node,
        stop,
        placement: AppPlacement::default(),
        gateway,
        state_dir,
        view,
    })
}

impl FiringClaims for Firings {
    fn claim<'a>(
        &'a self,
        function: &'a str,
        scheduled_ms: u64,
    ) -> futures_util::future::BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            Firings::claim(self, function, scheduled_ms)
                .await
                .map_err(|e| format!("{e:#}"))
        })
    }
}

/// Stops an app that no longer runs here: its version, then its gateway workers.
pub(super) async fn stop_app(app: &str, r: Running) {
    let gateway = r.gateway.clone();
    stop_version(app, r).await;
    gateway.stop().await;
}

/// Stops one version of an app (instances, node API, tasks); not the gateway workers.
pub(super) async fn stop_version(app: &str, r: Running) {
    tracing::info!(app, digest = r.digest, "stopping app");
    r.stop.cancel();
    r.node.wait().await;
}
