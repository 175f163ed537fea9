//! The `strata` commands.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use http::{Method, StatusCode};
use strata_appservice::{Event, NodeResources};
use tokio_util::sync::CancellationToken;

use crate::control::ControlClient;
use strata_node::{nodefile, Node, NodeConfig};

#[derive(Parser, Debug)]
#[command(
    name = "strata",
    version,
    about = "A cloud in one binary: gateway, bus, App Service."
)]
pub struct Cli {
    /// The node API to talk to (default: the one `strata up` wrote into ./.strata/node.json).
    #[arg(long, global = true)]
    pub api: Option<String>,
    /// The app's directory, where its strata.json and .strata/ are (default: the current one).
    #[arg(long, short = 'C', global = true)]
    pub dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run an app in the foreground until Ctrl-C or `strata down`.
    Up {
        /// The app manifest.
        #[arg(default_value = "strata.json")]
        file: PathBuf,
        /// Listen here instead of the manifest's gateway.listen.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Address of the node API (STRATA_URL of instances).
        #[arg(long, default_value = "127.0.0.1:0")]
        api_listen: SocketAddr,
        /// Listen here for the cache's Redis protocol instead of the manifest's cache.listen.
        #[arg(long)]
        cache_listen: Option<SocketAddr>,
        /// A failure-domain label of this node, KEY=VALUE (for placement.spread).
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Memory offered to instances, in MB (default: the machine's).
        #[arg(long)]
        memory_mb: Option<u64>,
        /// Accelerators offered to instances.
        #[arg(long, default_value_t = 0)]
        accelerators: u32,
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
    /// Check a manifest and say exactly what is wrong with it.
    Validate {
        #[arg(default_value = "strata.json")]
        file: PathBuf,
    },
    /// Services and instances of the running app.
    Ps {
        #[arg(long)]
        json: bool,
    },
    /// Output of a service's instances.
    Logs {
        service: String,
        /// Keep printing as the logs grow.
        #[arg(short, long)]
        follow: bool,
        /// Only this instance (for example web-2).
        #[arg(long)]
        instance: Option<String>,
        /// The setup step's log.
        #[arg(long)]
        setup: bool,
    },
    /// Set the number of instances of a service.
    Scale { service: String, instances: u32 },
    /// Stop the running app.
    Down,
    /// What the App Service did and why.
    Events {
        #[arg(long)]
        json: bool,
    },
    /// The queues: messages, fsync policy, and each consumer group's backlog.
    Queues {
        #[arg(long)]
        json: bool,
    },
    /// The cache: figures per shard, or a drill.
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum CacheCommand {
    /// Hits, misses, evictions, bytes and keys per shard; loads per read-through cache.
    Stats,
    /// Empty one shard, as if it had lost its data (read-through caches refill from the store).
    DropShard { shard: usize },
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, found {s:?}"))
}

pub async fn run(cli: Cli) -> Result<()> {
    let dir = cli.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    match cli.command {
        Command::Up {
            file,
            listen,
            api_listen,
            cache_listen,
            labels,
            memory_mb,
            accelerators,
        } => {
            let file = dir.join(file);
            let manifest = strata_manifest::load(&file)?;
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
        Command::Validate { file } => {
            let file = dir.join(file);
            let manifest = strata_manifest::load(&file)?;
            let mut what = format!(
                "{} service(s): {}",
                manifest.services.len(),
                manifest.services.keys().cloned().collect::<Vec<_>>().join(", ")
            );
            if !manifest.functions.is_empty() {
                what.push_str(&format!(
                    "; {} function(s): {}",
                    manifest.functions.len(),
                    manifest.functions.keys().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
            println!("{}: app {:?} is valid ({what})", file.display(), manifest.app);
            Ok(())
        }
        Command::Cache { command } => {
            let client = connect(&cli.api, &dir)?;
            match command {
                CacheCommand::Stats => {
                    let body = expect_ok(client.call(Method::GET, "/v1/cache", None).await?)?;
                    println!("{}", String::from_utf8_lossy(&body).trim_end());
                }
                CacheCommand::DropShard { shard } => {
                    let path = format!("/v1/cache/shards/{shard}/drop");
                    let body = expect_ok(client.call(Method::POST, &path, None).await?)?;
                    let reply: serde_json::Value = serde_json::from_slice(&body).context("read drop reply")?;
                    println!("shard {shard} dropped ({} keys)", reply["dropped_keys"]);
                }
            }
            Ok(())
        }
        Command::Queues { json } => {
            let client = connect(&cli.api, &dir)?;
            let body = expect_ok(client.call(Method::GET, "/v1/queues", None).await?)?;
            if json {
                println!("{}", String::from_utf8_lossy(&body).trim_end());
            } else {
                print_queues(&serde_json::from_slice(&body).context("read queues reply")?);
            }
            Ok(())
        }
        Command::Ps { json } => {
            let client = connect(&cli.api, &dir)?;
            let body = expect_ok(client.call(Method::GET, "/v1/ps", None).await?)?;
            if json {
                println!("{}", String::from_utf8_lossy(&body).trim_end());
            } else {
                print_ps(&serde_json::from_slice(&body).context("read ps reply")?);
            }
            Ok(())
        }
        Command::Logs {
            service,
            follow,
            instance,
            setup,
        } => {
            let client = connect(&cli.api, &dir)?;
            let mut path = format!("/v1/services/{service}/logs?follow={follow}&setup={setup}");
            if let Some(id) = instance {
                path.push_str(&format!("&instance={id}"));
            }
            let status = client.stream_to_stdout(&path).await?;
            if !status.is_success() {
                bail!("strata logs failed ({status})");
            }
            Ok(())
        }
        Command::Scale { service, instances } => {
            let client = connect(&cli.api, &dir)?;
            let body = serde_json::json!({ "instances": instances });
            expect_ok(
                client
                    .call(Method::POST, &format!("/v1/services/{service}/scale"), Some(body))
                    .await?,
            )?;
            println!("{service}: scaling to {instances} instance(s)");
            Ok(())
        }
        Command::Down => {
            let client = connect(&cli.api, &dir)?;
            expect_ok(client.call(Method::POST, "/v1/down", None).await?)?;
            println!("stopping");
            Ok(())
        }
        Command::Events { json } => {
            let client = connect(&cli.api, &dir)?;
            let body = expect_ok(client.call(Method::GET, "/v1/events", None).await?)?;
            if json {
                println!("{}", String::from_utf8_lossy(&body).trim_end());
            } else {
                let events: Vec<serde_json::Value> = serde_json::from_slice(&body)?;
                for e in events {
                    println!(
                        "{} {:<12} {:<20} {}",
                        time_of_day(e["at"].as_u64().unwrap_or(0)),
                        e["instance"].as_str().or(e["service"].as_str()).unwrap_or("-"),
                        e["kind"].as_str().unwrap_or("-"),
                        e["message"].as_str().unwrap_or("")
                    );
                }
            }
            Ok(())
        }
    }
}

fn connect(api: &Option<String>, dir: &Path) -> Result<ControlClient> {
    match api {
        Some(url) => ControlClient::new(url),
        None => ControlClient::new(&nodefile::read(&dir.join(".strata"))?.api),
    }
}

fn expect_ok((status, body): (StatusCode, bytes::Bytes)) -> Result<bytes::Bytes> {
    if status.is_success() {
        return Ok(body);
    }
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    bail!("{message}")
}

fn print_queues(reply: &serde_json::Value) {
    println!(
        "{:<24} {:<9} {:>10} {:>12} {:>9} {:>8}",
        "QUEUE", "FSYNC", "MESSAGES", "BYTES", "SEGMENTS", "CORRUPT"
    );
    for f in reply["failed"].as_array().into_iter().flatten() {
        println!(
            "{:<24} OUT OF SERVICE: {}",
            f["name"].as_str().unwrap_or("?"),
            f["reason"].as_str().unwrap_or("?")
        );
    }
    for q in reply["queues"].as_array().into_iter().flatten() {
        println!(
            "{:<24} {:<9} {:>10} {:>12} {:>9} {:>8}",
            q["name"].as_str().unwrap_or("?"),
            q["fsync"].as_str().unwrap_or("?"),
            // serde_json's Display ignores widths: format the numbers as strings.
            q["messages"].to_string(),
            q["bytes"].to_string(),
            q["segments"].to_string(),
            q["corrupt"].to_string()
        );
        for repair in q["repairs"].as_array().into_iter().flatten() {
            println!("  repaired at open: {}", repair.as_str().unwrap_or("?"));
        }
        for g in q["groups"].as_array().into_iter().flatten() {
            println!(
                "  group {:<16} backlog {} (unread {}, leased {}), dead-lettered {}, next to delete {}",
                g["name"].as_str().unwrap_or("?"),
                g["backlog"],
                g["unread"],
                g["leased"],
                g["dead_lettered"],
                g["floor"]
            );
        }
    }
}

fn print_ps(ps: &serde_json::Value) {
    let cache = ps["cache"]
        .as_str()
        .map(|c| format!("  cache redis://{c}"))
        .unwrap_or_default();
    println!(
        "app {}  gateway http://{}  api {}{cache}",
        ps["app"].as_str().unwrap_or("?"),
        ps["gateway"].as_str().unwrap_or("?"),
        ps["api"].as_str().unwrap_or("?")
    );
    for failure in ps["failures"].as_array().into_iter().flatten() {
        println!("OUT OF SERVICE: {}", failure.as_str().unwrap_or("?"));
    }
    println!(
        "{:<20} {:<12} {:>7} {:>6} {:>8} {:>8} {:>8}  DETAIL",
        "INSTANCE", "STATE", "PID", "PORT", "RESTARTS", "INFLIGHT", "SERVED"
    );
    for svc in ps["services"].as_array().into_iter().flatten() {
        println!(
            "{} ({}; {} of {} ready; min {} max {})",
            svc["name"].as_str().unwrap_or("?"),
            svc["state"].as_str().unwrap_or("?"),
            svc["ready"],
            svc["desired"],
            svc["min"],
            svc["max"]
        );
        if let Some(f) = svc["function"].as_str() {
            println!("  function, triggered by {f}");
        }
        let scale = &svc["autoscale"];
        if scale.is_object() {
            let mut figures = format!("in flight {}", scale["inflight"]);
            if let Some(b) = scale["backlog"].as_u64() {
                figures.push_str(&format!(", backlog {b}"));
                if let Some(d) = scale["drain_s"].as_f64() {
                    figures.push_str(&format!(" (drained in ~{d} s)"));
                }
            }
            if let Some(l) = scale["latency_ms"].as_f64() {
                figures.push_str(&format!(", latency {l:.1} ms"));
            }
            if let Some(c) = scale["cold_start_ms"].as_u64() {
                figures.push_str(&format!(", last cold start {c} ms"));
            }
            if scale["shed"].as_u64().unwrap_or(0) > 0 {
                figures.push_str(&format!(", shed {}", scale["shed"]));
            }
            println!(
                "  autoscale: current {} target {} by {} ({figures}): {}",
                svc["desired"],
                scale["target"],
                scale["signal"].as_str().unwrap_or("?"),
                scale["reason"].as_str().unwrap_or("")
            );
        }
        let consumer = ps["consumers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["service"] == svc["name"]);
        if let Some(c) = consumer {
            println!(
                "  consumes {}/{}: backlog {} (unread {}, leased {})",
                c["queue"].as_str().unwrap_or("?"),
                c["group"].as_str().unwrap_or("?"),
                c["backlog"],
                c["unread"],
                c["leased"]
            );
        }
        for inst in svc["instances"].as_array().into_iter().flatten() {
            let opt = |v: &serde_json::Value| if v.is_null() { "-".to_string() } else { v.to_string() };
            let num = |v: &serde_json::Value| v.to_string();
            let detail = inst["detail"].as_str().or(inst["last_exit"].as_str()).unwrap_or("");
            println!(
                "  {:<18} {:<12} {:>7} {:>6} {:>8} {:>8} {:>8}  {}",
                inst["id"].as_str().unwrap_or("?"),
                inst["state"].as_str().unwrap_or("?"),
                opt(&inst["pid"]),
                opt(&inst["port"]),
                num(&inst["restarts"]),
                num(&inst["inflight"]),
                num(&inst["served"]),
                detail
            );
        }
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
    let shutdown = CancellationToken::new();
    let node = Node::start(config, shutdown.clone()).await?;
    let mut events = node.app.subscribe();
    for e in node.app.recent_events() {
        print_event(&e);
    }
    let gateway = node.gateway_addr;
    let api = node.api_addr;
    let cache_note = node
        .cache_addr
        .map(|a| format!("; cache (Redis protocol) {a}"))
        .unwrap_or_default();
    let app = node.app.clone();
    let (up_tx, mut up_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        app.ready().await;
        let _ = up_tx.send(());
    });
    // One task prints, so that "is up" comes after the events that made it so.
    let ready_shutdown = shutdown.clone();
    let narrate = tokio::spawn(async move {
        let mut announced = false;
        loop {
            tokio::select! {
                biased;
                event = events.recv() => match event {
                    Ok(e) => print_event(&e),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => break,
                },
                up = &mut up_rx, if !announced => {
                    announced = true;
                    if up.is_ok() && !ready_shutdown.is_cancelled() {
                        println!(
                            "strata: {app_name} is up: gateway http://{gateway}  (node API http://{api}{cache_note}; `strata ps`, Ctrl-C to stop)"
                        );
                    }
                }
            }
        }
    });
    let signal_shutdown = shutdown.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
            _ = signal_shutdown.cancelled() => return,
        }
        signal_shutdown.cancel();
    });
    shutdown.cancelled().await;
    println!("strata: stopping (draining requests, then SIGTERM to every instance)");
    node.wait().await;
    narrate.abort();
    println!("strata: stopped");
    Ok(())
}

/// `HH:MM:SS.mmm` (UTC) of a Unix time in milliseconds.
fn time_of_day(ms: u64) -> String {
    let secs = ms / 1000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60,
        ms % 1000
    )
}

fn print_event(e: &Event) {
    let who = e.instance.as_deref().unwrap_or(&e.service);
    for (i, line) in e.message.lines().enumerate() {
        if i == 0 {
            println!("[{who}] {line}");
        } else {
            println!("[{who}]   {line}");
        }
    }
}
