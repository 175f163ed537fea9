//! The cluster commands: `strata node` (join a NATS cluster and run this node's share),
//! `strata nodes` (who is in it), `strata deploy` / `strata undeploy` (what it runs),
//! `strata ps --nats` and `strata cache stats --nats` (what runs where, each app's
//! cache ring).
//! They talk to NATS directly (`--nats`, or `$STRATA_NATS`), not to a node's API.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use strata_cluster::{settle, AppRecord, Nats};
use tokio_util::sync::CancellationToken;

use crate::out;

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Join a cluster: run this machine's share of every deployed app.
    ///
    /// The node announces its capacity and labels on a heartbeat (silent for 3 s: dead),
    /// schedules when it holds the lease, and runs a gateway for every app, so any node
    /// answers any route.
    Node {
        /// NATS server URLs, comma-separated (default: $STRATA_NATS).
        #[arg(long, env = "STRATA_NATS", value_name = "URLS")]
        nats: String,
        /// This node's name, unique in the cluster (default: the host name).
        #[arg(long)]
        name: Option<String>,
        /// Labels, KEY=VALUE,... (for placement.spread: power=A,zone=1).
        #[arg(long, value_name = "K=V,...", default_value = "")]
        labels: String,
        /// Memory offered to instances, in MB (default: the machine's).
        #[arg(long, value_name = "MB")]
        memory_mb: Option<u64>,
        /// Accelerators offered to instances.
        #[arg(long, default_value_t = 0, value_name = "N")]
        accelerators: u32,
        /// Where bundles and each app's state go.
        #[arg(long, default_value = ".strata-node", value_name = "DIR")]
        data: PathBuf,
        /// The address other nodes and clients reach this node at; with :0, gateways listen
        /// on any free port (several nodes on one address) instead of each app's
        /// gateway.listen port.
        #[arg(long, default_value = "127.0.0.1", value_name = "IP[:0]")]
        listen: String,
        /// Export every span over OTLP/HTTP (JSON) to this endpoint: the traces go to
        /// URL/v1/traces (default: $OTEL_EXPORTER_OTLP_ENDPOINT; docs/traces.md).
        #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL", value_parser = parse_otlp)]
        otlp: Option<strata_node::otlp::Endpoint>,
    },
    /// The nodes of a cluster: labels, capacity, load and last heartbeat.
    Nodes {
        #[arg(long, env = "STRATA_NATS", value_name = "URLS")]
        nats: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Ship an app to a cluster: its files by content digest, then its placement.
    ///
    /// Deploying a changed app again moves its instances to the new bundle.
    Deploy {
        /// The app manifest.
        #[arg(default_value = "strata.json")]
        file: PathBuf,
        #[arg(long, env = "STRATA_NATS", value_name = "URLS")]
        nats: String,
    },
    /// Stop an app everywhere in a cluster.
    Undeploy {
        app: String,
        #[arg(long, env = "STRATA_NATS", value_name = "URLS")]
        nats: String,
    },
}

pub async fn run(command: ClusterCommand) -> Result<()> {
    match command {
        ClusterCommand::Node {
            nats,
            name,
            labels,
            memory_mb,
            accelerators,
            data,
            listen,
            otlp,
        } => {
            let name = match name {
                Some(n) => n,
                None => std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().replace('.', "-"))
                    .context("no --name, and the host name is unreadable")?,
            };
            let (ip, any_port) = match listen.strip_suffix(":0") {
                Some(ip) => (ip, true),
                None => (listen.as_str(), false),
            };
            let listen: IpAddr = ip
                .parse()
                .with_context(|| format!("--listen {listen:?}: expected an IP address, optionally with :0"))?;
            let config = strata_node::cluster::ClusterConfig {
                nats,
                name: name.clone(),
                labels: parse_labels(&labels)?,
                memory_mb,
                accelerators,
                data_dir: std::path::absolute(data)?,
                listen,
                gateway_port: any_port.then_some(0),
                otlp,
                announce: Some(announce(&name)),
            };
            let shutdown = CancellationToken::new();
            let on_signal = shutdown.clone();
            tokio::spawn(async move {
                use tokio::signal::unix::{signal, SignalKind};
                let mut term = signal(SignalKind::terminate()).ok();
                let mut hup = signal(SignalKind::hangup()).ok();
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = crate::signals::recv(&mut term) => {}
                    _ = crate::signals::recv(&mut hup) => {}
                }
                on_signal.cancel();
            });
            eprintln!("strata node {}: joining the cluster at {}", config.name, config.nats);
            strata_node::cluster::run(config, shutdown).await
        }
        ClusterCommand::Nodes { nats, json } => {
            let nats = Nats::connect(&nats).await?;
            let nodes = read_nodes(&nats).await?;
            let scheduler = strata_cluster::lease::holder(&nats.lease).await;
            let apps = settle::read("read the placement", || async {
                let mut apps = BTreeMap::new();
                for key in strata_cluster::keys(&nats.placement).await? {
                    if let Some(v) = nats.placement.get(&key).await? {
                        if let Ok(p) = serde_json::from_slice::<strata_cluster::placement::AppPlacement>(&v) {
                            apps.insert(key, p);
                        }
                    }
                }
                Ok(apps)
            })
            .await?;
            if json {
                let body = serde_json::json!({ "nodes": nodes, "scheduler": scheduler, "apps": apps });
                return Ok(out::line(serde_json::to_string_pretty(&body)?)?);
            }
            let now = strata_cluster::now_ms();
            Ok(out::stdout(|o| {
                writeln!(
                    o,
                    "{:<12} {:<16} {:<22} {:>10} {:>10} {:>9} {:>6} {:>9}",
                    "NODE", "ADDR", "LABELS", "MEMORY", "FREE", "ACCEL", "INST", "HEARD"
                )?;
                for n in &nodes {
                    let labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    let age = now.saturating_sub(n.heartbeat_ms);
                    let dead = age >= strata_cluster::DEAD_AFTER.as_millis() as u64;
                    let heard = if !dead {
                        format!("{:.1}s ago", age as f64 / 1000.0)
                    } else {
                        format!("DEAD {}s", age / 1000)
                    };
                    // A dead node's last heartbeat counted instances it no longer runs.
                    let (ready, placed) = match dead {
                        false => (n.ready.to_string(), n.instances.to_string()),
                        true => ("-".to_string(), "-".to_string()),
                    };
                    let mark = if scheduler.as_deref() == Some(n.name.as_str()) {
                        "*"
                    } else {
                        ""
                    };
                    writeln!(
                        o,
                        "{:<12} {:<16} {:<22} {:>8}MB {:>8}MB {:>4}/{:<4} {:>3}/{:<2} {:>9}",
                        format!("{}{mark}", n.name),
                        n.addr,
                        labels.join(","),
                        n.memory_mb,
                        n.memory_mb.saturating_sub(n.used_memory_mb),
                        n.accelerators.saturating_sub(n.used_accelerators),
                        n.accelerators,
                        ready,
                        placed,
                        heard
                    )?;
                }
                if nodes.is_empty() {
                    writeln!(o, "(no node has joined)")?;
                } else {
                    writeln!(
                        o,
                        "* holds the scheduler's lease; INST is ready/placed (- for a dead node)"
                    )?;
                }
                for (app, p) in &apps {
                    for (service, nodes) in &p.services {
                        let on: Vec<String> = nodes
                            .iter()
                            .filter(|(_, n)| **n > 0)
                            .map(|(node, n)| format!("{node}:{n}"))
                            .collect();
                        writeln!(
                            o,
                            "{app}/{service}: {}",
                            if on.is_empty() {
                                "none".to_string()
                            } else {
                                on.join(" ")
                            }
                        )?;
                    }
                    for (service, u) in &p.unplaced {
                        writeln!(o, "{app}/{service}: {} unplaced: {}", u.count, u.reason)?;
                    }
                }
                // What a node said it cannot run gets none of its instances: why.
                for n in &nodes {
                    for (app, why) in &n.cannot_run {
                        writeln!(o, "{} cannot run {app} (placed elsewhere): {why}", n.name)?;
                    }
                }
                Ok(())
            })?)
        }
        ClusterCommand::Deploy { file, nats } => {
            let manifest = strata_manifest::load(&file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let text = std::fs::read_to_string(&file)?;
            let nats = Nats::connect(&nats).await?;
            if !strata_cluster::is_key_safe(&manifest.app) {
                bail!(
                    "app name {:?}: a cluster needs letters, digits, '-' and '_' only",
                    manifest.app
                );
            }
            let digest = strata_cluster::bundle::upload(&nats.bundles, &manifest.app, &file).await?;
            let record = AppRecord {
                app: manifest.app.clone(),
                digest: digest.clone(),
                manifest: text,
                deployed_ms: strata_cluster::now_ms(),
            };
            nats.apps
                .put(&manifest.app, serde_json::to_vec(&record)?.into())
                .await
                .context("record the deployment")?;
            out::line(format!("deployed {} as {digest}", manifest.app))?;
            Ok(())
        }
        ClusterCommand::Undeploy { app, nats } => {
            let nats = Nats::connect(&nats).await?;
            if nats.apps.get(&app).await?.is_none() {
                bail!("no app named {app:?} is deployed");
            }
            nats.apps.delete(&app).await.context("remove the deployment")?;
            out::line(format!("undeployed {app}: its instances stop on every node"))?;
            Ok(())
        }
    }
}

/// Prints each app that starts on this node: where its gateway is, and its dashboard's
/// address with the control token in the fragment, as `strata up` prints it
/// (docs/dashboard.md).
fn announce(node: &str) -> tokio::sync::mpsc::UnboundedSender<strata_node::cluster::AppStarted> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<strata_node::cluster::AppStarted>();
    let node = node.to_string();
    tokio::spawn(async move {
        while let Some(a) = rx.recv().await {
            eprintln!(
                "strata node {node}: {} (version {}) runs here: gateway http://{}  dashboard http://{}/ui#token={}",
                a.app, a.version, a.gateway, a.api, a.control_token
            );
        }
    });
    tx
}

fn parse_labels(text: &str) -> Result<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = part.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            bail!("--labels: expected KEY=VALUE,..., found {part:?}");
        };
        labels.insert(k.to_string(), v.to_string());
    }
    Ok(labels)
}

/// Every node record in the cluster, dead ones included, by name.
async fn read_nodes(nats: &Nats) -> Result<Vec<strata_cluster::NodeRecord>> {
    // Asked again while JetStream elects a leader (just after a NATS server died).
    settle::read("read the node records", || async {
        let mut nodes = Vec::new();
        for key in strata_cluster::keys(&nats.nodes).await? {
            if let Some(v) = nats.nodes.get(&key).await? {
                if let Ok(r) = serde_json::from_slice::<strata_cluster::NodeRecord>(&v) {
                    nodes.push(r);
                }
            }
        }
        Ok(nodes)
    })
    .await
}

/// `strata ps --nats URLS`: every instance on every live node, with its node, from the
/// nodes' heartbeats (at most a second old).
pub async fn ps(nats: &str, json: bool) -> Result<()> {
    let nats = Nats::connect(nats).await?;
    let now = strata_cluster::now_ms();
    let mut instances = Vec::new();
    // What other nodes' gateways had answered by each instance, to add to its own node's.
    let mut relayed: BTreeMap<String, u64> = BTreeMap::new();
    for node in read_nodes(&nats).await? {
        if now.saturating_sub(node.heartbeat_ms) >= strata_cluster::DEAD_AFTER.as_millis() as u64 {
            continue;
        }
        for (member, n) in node.relayed {
            *relayed.entry(member).or_default() += n;
        }
        for i in node.running {
            instances.push((node.name.clone(), i));
        }
    }
    for (node, i) in &mut instances {
        i.served += relayed
            .get(&format!("{}/{}/{node}/{}", i.app, i.service, i.id))
            .copied()
            .unwrap_or(0);
    }
    instances.sort_by(|(na, a), (nb, b)| (&a.app, &a.service, na, &a.id).cmp(&(&b.app, &b.service, nb, &b.id)));
    if json {
        let list: Vec<serde_json::Value> = instances
            .iter()
            .map(|(node, i)| {
                let mut v = serde_json::to_value(i).expect("serializable");
                v["node"] = serde_json::Value::String(node.clone());
                v
            })
            .collect();
        let body = serde_json::json!({ "instances": list });
        return Ok(out::line(serde_json::to_string_pretty(&body)?)?);
    }
    Ok(out::stdout(|o| {
        writeln!(
            o,
            "{:<12} {:<24} {:<12} {:<12} {:>7} {:>8} {:>8} {:>8}  DETAIL",
            "APP", "SERVICE/INSTANCE", "NODE", "STATE", "PID", "RESTARTS", "INFLIGHT", "SERVED"
        )?;
        for (node, i) in &instances {
            writeln!(
                o,
                "{:<12} {:<24} {:<12} {:<12} {:>7} {:>8} {:>8} {:>8}  {}",
                i.app,
                format!("{}/{}", i.service, i.id),
                node,
                i.state,
                i.pid.map_or("-".to_string(), |p| p.to_string()),
                i.restarts,
                i.inflight,
                i.served,
                i.detail.as_deref().unwrap_or("")
            )?;
        }
        Ok(())
    })?)
}

/// `--otlp URL`: an OTLP/HTTP endpoint.
pub(crate) fn parse_otlp(url: &str) -> Result<strata_node::otlp::Endpoint, String> {
    strata_node::otlp::Endpoint::parse(url)
}

/// `strata cache stats --nats URLS`: each app's cache ring, from the live nodes'
/// heartbeats: the nodes on it, each one's Redis port, share of the keys (by the same
/// ring the nodes compute), and keys per shard.
pub async fn cache_stats(nats: &str, json: bool) -> Result<()> {
    let nats = Nats::connect(nats).await?;
    let now = strata_cluster::now_ms();
    let mut rings: BTreeMap<String, Vec<(String, strata_cluster::CacheRecord)>> = BTreeMap::new();
    for node in read_nodes(&nats).await? {
        if now.saturating_sub(node.heartbeat_ms) >= strata_cluster::DEAD_AFTER.as_millis() as u64 {
            continue;
        }
        for (app, cache) in node.caches {
            rings.entry(app).or_default().push((node.name.clone(), cache));
        }
    }
    let mut apps = serde_json::Map::new();
    for (app, nodes) in &rings {
        let mut ring = strata_cache::Ring::new(strata_cache::DEFAULT_VNODES);
        for (name, _) in nodes {
            ring.add(name.clone());
        }
        let shares = ring.shares();
        let list: Vec<serde_json::Value> = nodes
            .iter()
            .map(|(name, c)| {
                let share = ring.nodes().iter().position(|n| n == name).map_or(0.0, |i| shares[i]);
                serde_json::json!({
                    "node": name, "addr": c.addr, "share": share,
                    "keys": c.shards.iter().sum::<u64>(), "bytes": c.bytes, "shards": c.shards,
                })
            })
            .collect();
        apps.insert(app.clone(), serde_json::json!({ "nodes": list }));
    }
    if json {
        let body = serde_json::json!({ "apps": apps });
        return Ok(out::line(serde_json::to_string_pretty(&body)?)?);
    }
    Ok(out::stdout(|o| {
        if apps.is_empty() {
            writeln!(
                o,
                "no live node runs a cache with a Redis port (cache.listen in strata.json)"
            )?;
        }
        for (app, ring) in &apps {
            let nodes = ring["nodes"].as_array().map(Vec::as_slice).unwrap_or_default();
            writeln!(o, "app {app}: a cache ring of {} node(s)", nodes.len())?;
            writeln!(
                o,
                "{:<12} {:<22} {:>6} {:>9} {:>12}  KEYS PER SHARD",
                "NODE", "REDIS PORT", "SHARE", "KEYS", "BYTES"
            )?;
            for n in nodes {
                let shards: Vec<String> = n["shards"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .enumerate()
                    .map(|(i, k)| format!("{i}:{k}"))
                    .collect();
                writeln!(
                    o,
                    "{:<12} {:<22} {:>5.1}% {:>9} {:>12}  {}",
                    n["node"].as_str().unwrap_or("?"),
                    n["addr"].as_str().unwrap_or("?"),
                    n["share"].as_f64().unwrap_or(0.0) * 100.0,
                    // A JSON value's Display takes no width: its text does.
                    n["keys"].to_string(),
                    n["bytes"].to_string(),
                    shards.join(" ")
                )?;
            }
        }
        writeln!(
            o,
            "SHARE: the part of the keys the node owns; any node's Redis port serves every key, forwarding to its owner"
        )?;
        Ok(())
    })?)
}
