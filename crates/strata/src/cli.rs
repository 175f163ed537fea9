//! The `strata` commands: their flags and help ([`Cli`]), and what each one does
//! ([`run`]). Which node a command talks to is `locate`; the tables it prints, `tables`;
//! progress on a terminal, `progress`; output that survives a closed pipe, `out`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use http::{Method, StatusCode};
use serde_json::Value;
use strata_appservice::NodeResources;
use tokio_util::sync::CancellationToken;

use crate::app_dir::{load, logs_from_files, unimported_images, unset_references, validate};
use crate::control::ControlClient;
use crate::progress::{Narrator, Spinner};
use crate::{locate, out, tables};
use strata_node::{nodefile, Node, NodeConfig};

#[derive(Parser, Debug)]
#[command(
    name = "strata",
    version,
    about = "A cloud in one binary: gateway, bus, App Service.",
    long_about = "A cloud in one binary: gateway, bus, App Service, queues, store and cache, \
                  run from one strata.json.\n\n\
                  Start an app with `strata up` in its directory. The other commands find its node \
                  there (.strata/node.json), in -C DIR, or, run anywhere else, the one node running \
                  (`strata ls` lists them)."
)]
pub struct Cli {
    /// The node API to talk to, for example http://127.0.0.1:4000 (default: the node of the
    /// app in -C DIR or here, else the only node running).
    #[arg(long, global = true, value_name = "URL")]
    pub api: Option<String>,
    /// The app's directory, where its strata.json and .strata/ are (default: the current one).
    #[arg(long, short = 'C', global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Threads of strata's own async runtime, which runs the node API, the App Service,
    /// the queues' and the store's work and the cluster's NATS client; the gateway and the
    /// Redis port have threads of their own. Default: half the cores, at least one.
    #[arg(long, global = true, env = "STRATA_WORKERS", value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    #[command(flatten)]
    Cluster(crate::cluster::ClusterCommand),
    /// Run an app in the foreground until Ctrl-C or `strata down`.
    Up {
        /// The app manifest.
        #[arg(default_value = "strata.json")]
        file: PathBuf,
        /// Listen here instead of the manifest's gateway.listen, for example 127.0.0.1:9090.
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// Address of the node API (STRATA_URL of instances).
        #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
        api_listen: SocketAddr,
        /// Listen here for the cache's Redis protocol instead of the manifest's cache.listen.
        #[arg(long, value_name = "ADDR")]
        cache_listen: Option<SocketAddr>,
        /// A failure-domain label of this node, KEY=VALUE (for placement.spread).
        #[arg(long = "label", value_parser = parse_label, value_name = "KEY=VALUE")]
        labels: Vec<(String, String)>,
        /// Memory offered to instances, in MB (default: the machine's).
        #[arg(long, value_name = "MB")]
        memory_mb: Option<u64>,
        /// Accelerators offered to instances.
        #[arg(long, default_value_t = 0, value_name = "N")]
        accelerators: u32,
        /// Export every span over OTLP/HTTP (JSON) to this endpoint: the traces go to
        /// URL/v1/traces (default: $OTEL_EXPORTER_OTLP_ENDPOINT; docs/traces.md).
        #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL", value_parser = crate::cluster::parse_otlp)]
        otlp: Option<strata_node::otlp::Endpoint>,
    },
    /// Look at an app's folder and write a strata.json for it, explaining each guess.
    Init {
        /// The app's folder.
        #[arg(default_value = ".", value_name = "DIR")]
        path: PathBuf,
        /// Take every guess without asking (an existing strata.json is still kept unless --force).
        #[arg(long, short = 'y')]
        yes: bool,
        /// Replace an existing strata.json.
        #[arg(long)]
        force: bool,
        /// Print the manifest instead of writing it (the explanations go to stderr).
        #[arg(long)]
        stdout: bool,
    },
    /// Check a manifest and list every problem in it.
    ///
    /// Each problem names the field path, what was expected and what was found; the exit
    /// status is 1 when there is one.
    Validate {
        /// The app manifest.
        #[arg(default_value = "strata.json")]
        file: PathBuf,
    },
    /// The running nodes of this user: app, pid, addresses and directory.
    ///
    /// Commands run outside an app's directory use the only one, or say to pick one with
    /// -C DIR.
    Ls {
        /// Print the list as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Services and instances of the running app.
    ///
    /// Per instance: state, pid, port, restarts, requests in flight and served; per
    /// autoscaled service: current and target count, signal, reason, last cold start.
    Ps {
        /// Print the node API's JSON (GET /v1/ps) instead of the table.
        #[arg(long)]
        json: bool,
        /// A cluster's NATS URLs: every instance on every live node, with its node
        /// (from the nodes' heartbeats), instead of this app dir's node.
        #[arg(long, value_name = "URLS")]
        nats: Option<String>,
    },
    /// Output of a service's instances (or of its setup step).
    Logs {
        /// The service (or function) name.
        service: String,
        /// Keep printing as the logs grow.
        #[arg(short, long)]
        follow: bool,
        /// Only this instance (for example web-2).
        #[arg(long, value_name = "ID")]
        instance: Option<String>,
        /// The setup step's log.
        #[arg(long)]
        setup: bool,
    },
    /// Set the number of instances of a service.
    ///
    /// Within its instances.min..max. An autoscaled service is sized by its autoscaler and
    /// refuses this: change its instances.min and max (or autoscale) in strata.json instead.
    Scale {
        /// The service name.
        service: String,
        /// How many instances it should run.
        instances: u32,
    },
    /// Stop the running app, and wait until it has.
    ///
    /// Drain, SIGTERM, grace, SIGKILL: returns once the node and every instance have exited
    /// (or says which still run after --timeout).
    Down {
        /// How long to wait for every process to exit before saying which still run.
        #[arg(long, default_value_t = 60, value_name = "SECONDS")]
        timeout: u64,
    },
    /// What the App Service and the autoscalers did, and why.
    Events {
        /// Print the node API's JSON (GET /v1/events) instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// One request's trace: the gateway's relay and the calls it led to through the
    /// node API (services, queues, store, cache), as a tree (or the newest traces when
    /// no id is given). On a cluster node, from every node running the app.
    Trace {
        /// A request id (`X-Request-Id` of the answer) or a trace id (32 hex digits).
        id: Option<String>,
        /// Print the node API's JSON (GET /v1/traces) instead of the tree.
        #[arg(long)]
        json: bool,
    },
    /// The queues: messages stored, fsync policy, and each consumer group's backlog.
    Queues {
        /// Print the node API's JSON (GET /v1/queues) instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// The node's live picture: services (requests per second, latency percentiles, in
    /// flight, autoscaler target), instances, queues and events, every second.
    Top {
        /// Print one frame as text (after two samples a second apart) and exit.
        #[arg(long)]
        once: bool,
        /// Seconds between samples.
        #[arg(long, default_value_t = 1.0)]
        every: f64,
    },
    /// Container images in this machine's image store: import, list.
    Image {
        #[command(subcommand)]
        command: crate::images::ImageCommand,
    },
    /// The cache: figures per shard and per read-through cache, or a drill.
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
    /// Salvage what can be read of damaged queues and a damaged store (the node must be stopped).
    ///
    /// Checks every queue and the store (or only those named) and, where something is
    /// damaged, keeps every intact record (at its offset), key and blob, writes clean files,
    /// and moves the damaged ones to .strata/damaged/TIME/. The exit status is 1 when
    /// something was lost (with --dry-run: would be). See docs/repair.md.
    Repair {
        /// The state directory (default: .strata in -C DIR or in the current directory).
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
        /// Only this queue, with its dead-letter queue (repeat for more).
        #[arg(long = "queue", value_name = "NAME")]
        queues: Vec<String>,
        /// Only the store (with --queue: those queues and the store).
        #[arg(long)]
        store: bool,
        /// Report what a repair would do, and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum CacheCommand {
    /// The cache's figures, per shard and per read-through cache.
    ///
    /// Keys, bytes, hits, misses, evictions and expired keys per shard; loads, coalesced
    /// misses, stale reads, refreshes and load errors per read-through cache.
    Stats {
        /// Print the node API's JSON (GET /v1/cache) instead of the tables.
        #[arg(long)]
        json: bool,
        /// A cluster's NATS URLs: each app's cache ring instead, its live nodes with
        /// their Redis ports, share of the keys and keys per shard (from the nodes'
        /// heartbeats, at most a second old).
        #[arg(long, value_name = "URLS")]
        nats: Option<String>,
    },
    /// Empty one shard, as if it had lost its data (read-through caches refill from the store).
    DropShard {
        /// The shard's number, as `strata cache stats` lists them.
        shard: usize,
    },
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, found {s:?}"))
}

pub async fn run(cli: Cli) -> Result<()> {
    let dir = cli.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let connect = || connect(cli.api.as_deref(), cli.dir.as_deref());
    match cli.command {
        Command::Cluster(command) => crate::cluster::run(command).await,
        Command::Image { command } => crate::images::run(command).await,
        Command::Top { once, every } => {
            let (client, _) = connect()?;
            let every = std::time::Duration::try_from_secs_f64(every.clamp(0.1, 3600.0))?;
            crate::top::run(client, once, every).await
        }
        Command::Up {
            file,
            listen,
            api_listen,
            cache_listen,
            labels,
            memory_mb,
            accelerators,
            otlp,
        } => {
            let file = dir.join(file);
            let manifest = load(&file)?;
            let unimported = unimported_images(&manifest);
            if !unimported.is_empty() {
                let lines: Vec<String> = unimported.iter().map(|p| format!("\n  {p}")).collect();
                bail!("{} cannot run here:{}", file.display(), lines.concat());
            }
            let app_dir = file
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."));
            let mut node = NodeResources::detect();
            node.labels = labels.into_iter().collect();
            if let Some(mb) = memory_mb {
                node.memory_mb = mb;
            }
            node.accelerators = accelerators;
            let mut config = NodeConfig::new(manifest, app_dir);
            config.gateway_listen = listen;
            config.api_listen = api_listen;
            config.cache_listen = cache_listen;
            config.node = node;
            config.write_state_file = true;
            config.otlp = otlp.map(|e| (e, None));
            up(config).await
        }
        Command::Init {
            path,
            yes,
            force,
            stdout,
        } => {
            let options = crate::init::InitOptions {
                dir: dir.join(path),
                yes,
                force,
                stdout,
            };
            // It reads files and may ask on the terminal: off the async workers.
            tokio::task::spawn_blocking(move || crate::init::run(options))
                .await
                .context("run strata init")?
        }
        Command::Validate { file } => validate(&dir.join(file)),
        Command::Ls { json } => {
            let nodes = nodefile::registered();
            if json {
                out::line(serde_json::to_string_pretty(&nodes)?)?;
            } else {
                out::stdout(|out| tables::nodes(out, &nodes))?;
            }
            Ok(())
        }
        Command::Cache {
            command: CacheCommand::Stats { json, nats: Some(nats) },
        } => crate::cluster::cache_stats(&nats, json).await,
        Command::Cache { command } => {
            let (client, _) = connect()?;
            match command {
                CacheCommand::Stats { json, .. } => {
                    let body = expect_ok(client.call(Method::GET, "/v1/cache", None).await?)?;
                    print_json_or(json, &body, tables::cache_stats)?;
                }
                CacheCommand::DropShard { shard } => {
                    let path = format!("/v1/cache/shards/{shard}/drop");
                    let body = expect_ok(client.call(Method::POST, &path, None).await?)?;
                    let reply: Value = serde_json::from_slice(&body).context("read drop reply")?;
                    out::line(format!("shard {shard} dropped ({} keys)", reply["dropped_keys"]))?;
                }
            }
            Ok(())
        }
        Command::Queues { json } => {
            let (client, _) = connect()?;
            let body = expect_ok(client.call(Method::GET, "/v1/queues", None).await?)?;
            print_json_or(json, &body, tables::queues)
        }
        Command::Ps { json, nats: Some(nats) } => crate::cluster::ps(&nats, json).await,
        Command::Ps { json, nats: None } => {
            let (client, _) = connect()?;
            let body = expect_ok(client.call(Method::GET, "/v1/ps", None).await?)?;
            print_json_or(json, &body, tables::ps)
        }
        Command::Logs {
            service,
            follow,
            instance,
            setup,
        } => {
            let client = match connect() {
                Ok((client, _)) => client,
                // No node runs here: what the last run printed is still in its files.
                Err(e) if !follow && cli.api.is_none() => {
                    return match logs_from_files(&dir, &service, instance.as_deref(), setup)? {
                        true => Ok(()),
                        false => Err(e),
                    };
                }
                Err(e) => return Err(e),
            };
            let mut path = format!("/v1/services/{service}/logs?follow={follow}&setup={setup}");
            if let Some(id) = instance {
                path.push_str(&format!("&instance={id}"));
            }
            client.stream_to_stdout(&path).await
        }
        Command::Scale { service, instances } => {
            let (client, _) = connect()?;
            let body = serde_json::json!({ "instances": instances });
            expect_ok(
                client
                    .call(Method::POST, &format!("/v1/services/{service}/scale"), Some(body))
                    .await?,
            )?;
            out::line(format!("{service}: scaling to {instances} instance(s)"))?;
            Ok(())
        }
        Command::Down { timeout } => {
            let (client, pid) = connect()?;
            down(&client, pid, Duration::from_secs(timeout)).await
        }
        Command::Repair {
            state,
            queues,
            store,
            dry_run,
            json,
        } => {
            let args = crate::repair::RepairArgs {
                state: state.unwrap_or_else(|| dir.join(".strata")),
                queues,
                store,
                dry_run,
                json,
            };
            // It reads and writes files: off the async workers.
            tokio::task::spawn_blocking(move || crate::repair::run(args))
                .await
                .context("run strata repair")?
        }
        Command::Trace { id, json } => {
            let (client, _) = connect()?;
            let path = match &id {
                Some(id) => format!("/v1/traces?id={}", percent_encode(id)),
                None => "/v1/traces?limit=10".to_string(),
            };
            let body = expect_ok(client.call(Method::GET, &path, None).await?)?;
            print_json_or(json, &body, |out, traces: &Value| {
                tables::traces(out, traces.as_array().map(Vec::as_slice).unwrap_or_default())
            })
        }
        Command::Events { json } => {
            let (client, _) = connect()?;
            let body = expect_ok(client.call(Method::GET, "/v1/events", None).await?)?;
            print_json_or(json, &body, |out, events: &Value| {
                tables::events(out, events.as_array().map(Vec::as_slice).unwrap_or_default())
            })
        }
    }
}

/// The node API client of the node the command talks to (see `locate`), and the node's
/// pid when known.
fn connect(api: Option<&str>, dir: Option<&Path>) -> Result<(ControlClient, Option<u32>)> {
    let node = locate::node(api, dir)?;
    if let Some(note) = &node.note {
        if out::interactive_stderr() {
            eprintln!("{note}");
        }
    }
    Ok((ControlClient::new(&node.api)?, node.pid))
}

fn expect_ok((status, body): (StatusCode, bytes::Bytes)) -> Result<bytes::Bytes> {
    if status.is_success() {
        return Ok(body);
    }
    bail!("{}", crate::control::error_message(&body))
}

/// The node API's JSON as it came (`--json`), or the table `print` makes of it.
fn print_json_or(
    json: bool,
    body: &[u8],
    print: impl FnOnce(&mut dyn std::io::Write, &Value) -> std::io::Result<()>,
) -> Result<()> {
    if json {
        out::line(String::from_utf8_lossy(body).trim_end())?;
    } else {
        let reply: Value = serde_json::from_slice(body).context("read the node API reply")?;
        out::stdout(|out| print(out, &reply))?;
    }
    Ok(())
}

/// How often `strata down` looks whether the processes are gone.
const DOWN_POLL: Duration = Duration::from_millis(100);

/// `strata down`: asks the node to stop, then waits until the node's process and every
/// instance's have exited.
async fn down(client: &ControlClient, node_pid: Option<u32>, timeout: Duration) -> Result<()> {
    // Which processes must be gone: the node's and its instances', as ps lists them.
    let ps: Value = match client.call(Method::GET, "/v1/ps", None).await {
        Ok((status, body)) if status.is_success() => serde_json::from_slice(&body).unwrap_or_default(),
        _ => Value::Null,
    };
    let mut waiting: Vec<(u32, String)> = Vec::new();
    if let Some(pid) = node_pid.or_else(|| ps["pid"].as_u64().map(|p| p as u32)) {
        waiting.push((pid, "the node".to_string()));
    }
    for svc in ps["services"].as_array().into_iter().flatten() {
        for inst in svc["instances"].as_array().into_iter().flatten() {
            if let Some(pid) = inst["pid"].as_u64() {
                waiting.push((pid as u32, inst["id"].as_str().unwrap_or("an instance").to_string()));
            }
        }
    }
    expect_ok(client.call(Method::POST, "/v1/down", None).await?)?;
    out::line("stopping")?;
    let started = Instant::now();
    let spinner = Spinner::new(out::interactive_stderr(), "stopping");
    loop {
        waiting.retain(|(pid, _)| nodefile::alive(*pid));
        if waiting.is_empty() {
            spinner.done(format!("stopped in {:.1} s", started.elapsed().as_secs_f64()));
            return Ok(());
        }
        let left = waiting
            .iter()
            .map(|(pid, who)| format!("{who} (pid {pid})"))
            .collect::<Vec<_>>()
            .join(", ");
        if started.elapsed() >= timeout {
            spinner.clear();
            bail!(
                "the app has not stopped after {} s; still running: {left}. \
                 It may still be draining: `strata ps` shows it, `strata down --timeout SECONDS` waits longer, \
                 `kill PID` stops a process",
                timeout.as_secs()
            );
        }
        spinner.set(format!("stopping: waiting for {left}"));
        tokio::time::sleep(DOWN_POLL).await;
    }
}

/// `strata up`: runs the node in the foreground and narrates what the App Service does.
async fn up(config: NodeConfig) -> Result<()> {
    let app_name = config.manifest.app.clone();
    let state_dir = config.app_dir.join(".strata");
    if let Ok(running) = nodefile::read(&state_dir) {
        bail!(
            "app {} is already running here (pid {}, gateway {}); stop it with `strata down` first",
            running.app,
            running.pid,
            running.gateway
        );
    }
    let notes = unset_references(&config.manifest);
    let shutdown = CancellationToken::new();
    let node = Node::start(config, shutdown.clone()).await?;
    let mut narrator = Narrator::new(state_dir.clone(), out::interactive());
    for note in notes {
        narrator.say(&format!("strata: note: {note}"));
    }
    let mut events = node.app.subscribe();
    for e in node.app.recent_events() {
        narrator.event(&e).await;
    }
    let gateway = node.gateway_addr;
    let api = node.api_addr;
    let cache_note = node
        .cache_addr
        .map(|a| format!("; cache (Redis protocol) {a}"))
        .unwrap_or_default();
    // The dashboard's address carries the control token in its fragment, which the
    // browser keeps to itself (docs/dashboard.md).
    let dashboard = format!("http://{api}/ui#token={}", node.control_token());
    let app = node.app.clone();
    let (up_tx, mut up_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        app.ready().await;
        let _ = up_tx.send(());
    });
    // One task prints, so that "is up" comes after the events that made it so, and the
    // events of the shutdown after "stopping".
    let ready_shutdown = shutdown.clone();
    let stopped = CancellationToken::new();
    let narrated = stopped.clone();
    let waiting_app = node.app.clone();
    let narrate = tokio::spawn(async move {
        let (mut announced, mut stopping) = (false, false);
        // An app that is slow to come up (or never does: a crashing program, a failed
        // setup) is told where everything is all the same, when its user needs it most.
        let not_yet = tokio::time::sleep(NOT_UP_YET);
        tokio::pin!(not_yet);
        let mut told = false;
        loop {
            tokio::select! {
                biased;
                event = events.recv() => match event {
                    Ok(e) => narrator.event(&e).await,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => break,
                },
                up = &mut up_rx, if !announced => {
                    announced = true;
                    if up.is_ok() && !ready_shutdown.is_cancelled() {
                        narrator.say(&format!(
                            "strata: {app_name} is up: gateway http://{gateway}  (node API http://{api}{cache_note}; `strata ps`, Ctrl-C to stop)"
                        ));
                        if !told {
                            narrator.say(&format!("strata: dashboard {dashboard}"));
                        }
                    }
                }
                _ = &mut not_yet, if !announced && !told && !stopping && !ready_shutdown.is_cancelled() => {
                    told = true;
                    let waiting: Vec<String> = waiting_app
                        .snapshot()
                        .into_iter()
                        .filter(|s| s.ready == 0 && s.desired > 0)
                        .map(|s| s.name)
                        .collect();
                    let waiting = match waiting.is_empty() {
                        true => "its services are still starting".to_string(),
                        false => format!("no ready instance of: {}", waiting.join(", ")),
                    };
                    narrator.say(&format!(
                        "strata: {app_name} is not up yet after {} s, {waiting} (`strata ps`, `strata logs SERVICE`); gateway http://{gateway}  (node API http://{api}{cache_note})",
                        NOT_UP_YET.as_secs(),
                    ));
                    narrator.say(&format!("strata: dashboard {dashboard}"));
                }
                _ = ready_shutdown.cancelled(), if !stopping => {
                    stopping = true;
                    narrator.finish().await;
                    narrator.say("strata: stopping (draining requests, then SIGTERM to every instance; Ctrl-C again to stop at once)");
                }
                _ = narrated.cancelled() => break,
            }
        }
        narrator.finish().await;
    });
    let signal_shutdown = shutdown.clone();
    let forced_state = state_dir.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).ok();
        // The terminal closed (or the SSH session dropped): as Ctrl-C, not the default
        // action's death with every instance SIGKILLed by the orphan guard.
        let mut hup = signal(SignalKind::hangup()).ok();
        // The first Ctrl-C (or SIGTERM, SIGHUP) stops the app gracefully; one more, during
        // a drain that takes its time, stops it at once (docker compose's second Ctrl-C).
        let mut stopping = false;
        let mut first_at = std::time::Instant::now();
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = crate::signals::recv(&mut term) => {}
                _ = crate::signals::recv(&mut hup) => {}
                _ = signal_shutdown.cancelled(), if !stopping => {
                    // Stopping for another reason (`strata down`): a signal still forces.
                    stopping = true;
                    first_at = std::time::Instant::now() - Duration::from_secs(1);
                    continue;
                }
            }
            if !stopping {
                stopping = true;
                first_at = std::time::Instant::now();
                signal_shutdown.cancel();
                continue;
            }
            // One keypress can come as two signals (a terminal's SIGINT to the group and
            // a wrapper forwarding it as SIGTERM): a second one counts after a second.
            if first_at.elapsed() < Duration::from_secs(1) {
                continue;
            }
            let _ = out::line(
                "strata: stopping at once (a second signal): every instance is killed, requests in flight are cut off",
            );
            // The orphan guard kills every instance when this process ends (as after a
            // SIGKILL); acknowledged writes are durable already.
            strata_node::nodefile::remove(&forced_state.join("node.json"));
            let _ = std::fs::remove_file(forced_state.join(strata_node::nodefile::TOKEN_FILE));
            std::process::exit(130);
        }
    });
    node.wait().await;
    stopped.cancel();
    let _ = narrate.await;
    let _ = out::line("strata: stopped");
    Ok(())
}

/// How long `strata up` waits for the app to be up before saying where it is anyway.
const NOT_UP_YET: Duration = Duration::from_secs(15);

/// A query value with everything but unreserved characters percent-encoded.
fn percent_encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
