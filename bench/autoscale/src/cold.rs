//! `cold`: one request to a service scaled to zero, timed from send to full reply.
//! `own-start`: the handler started directly, timed from spawn to its first healthy reply.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::http::Conn;
use crate::ps::Ps;
use crate::stats::fmt_ms;

pub struct ColdConfig {
    pub gateway: String,
    pub api: String,
    pub service: String,
    pub path: String,
    pub sleep_ms: f64,
    pub timeout_s: f64,
    pub settle_ms: u64,
    pub round: u32,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub async fn cold(cfg: &ColdConfig) -> Result<Value> {
    let mut ps = Ps::new(&cfg.api, &cfg.service);
    let waited = Instant::now();
    let deadline = waited + Duration::from_secs_f64(cfg.timeout_s);
    loop {
        let pool = ps.get().await?;
        if pool.ready == 0 && pool.live == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "{} still has {} ready / {} running instance(s) after {} s: is instances.min 0?",
                cfg.service,
                pool.ready,
                pool.live,
                cfg.timeout_s
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let zero_wait = ms(waited.elapsed());
    tokio::time::sleep(Duration::from_millis(cfg.settle_ms)).await;

    // connected beforehand: the figure is send to full reply
    let mut conn = Conn::new(&cfg.gateway);
    conn.connect().await?;
    let sent = Instant::now();
    let reply = conn.get(&cfg.path).await.context("the cold request")?;
    let cold_ms = ms(sent.elapsed());
    // the same request once the instance is up: the warm latency, for reference
    let sent = Instant::now();
    let warm = conn.get(&cfg.path).await.context("the warm request")?;
    let warm_ms = ms(sent.elapsed());

    // the node's own account of the cold start, when it gives one
    let mut cold_start = None;
    for _ in 0..5 {
        if let Ok(pool) = ps.get().await {
            if pool.cold_start.is_some() {
                cold_start = pool.cold_start;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = json!({
        "kind": "cold",
        "round": cfg.round,
        "cold_ms": cold_ms,
        "sleep_ms": cfg.sleep_ms,
        "cold_minus_sleep_ms": cold_ms - cfg.sleep_ms,
        "status": reply.status,
        "instance": reply.instance,
        "warm_ms": warm_ms,
        "warm_status": warm.status,
        "zero_wait_ms": zero_wait,
        "cold_start_ms": cold_start,
    });
    eprintln!(
        "[autoscale-bench] round {}: cold request {} (status {}, {}), minus the {} sleep: {}; warm {}; node's cold_start_ms {}",
        cfg.round,
        fmt_ms(&r["cold_ms"]),
        reply.status,
        r["instance"].as_str().unwrap_or("no x-strata-instance"),
        fmt_ms(&r["sleep_ms"]),
        fmt_ms(&r["cold_minus_sleep_ms"]),
        fmt_ms(&r["warm_ms"]),
        r["cold_start_ms"]
    );
    if !(200..300).contains(&reply.status) {
        bail!("the cold request answered {}", reply.status);
    }
    Ok(r)
}

pub struct OwnStartConfig {
    pub cmd: String,
    pub dir: Option<String>,
    pub timeout_s: f64,
    pub round: u32,
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("find a free port")?;
    Ok(l.local_addr()?.port())
}

/// Spawn to the first `GET /healthz` that answers 200, polling every millisecond.
pub async fn own_start(cfg: &OwnStartConfig) -> Result<Value> {
    let argv: Vec<&str> = cfg.cmd.split_whitespace().collect();
    let Some((prog, args)) = argv.split_first() else {
        bail!("--cmd is empty");
    };
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let mut command = tokio::process::Command::new(prog);
    command
        .args(args)
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true);
    if let Some(dir) = &cfg.dir {
        command.current_dir(dir);
    }
    let spawned = Instant::now();
    let mut child = command.spawn().with_context(|| format!("spawn {}", cfg.cmd))?;
    let deadline = spawned + Duration::from_secs_f64(cfg.timeout_s);
    let mut attempts = 0u64;
    let up = loop {
        attempts += 1;
        let mut conn = Conn::new(&addr);
        if let Ok(reply) = conn.get("/healthz").await {
            if reply.status == 200 {
                break spawned.elapsed();
            }
        }
        if let Some(status) = child.try_wait()? {
            bail!("{} exited ({status}) before answering GET /healthz", cfg.cmd);
        }
        if Instant::now() > deadline {
            let _ = child.kill().await;
            bail!("{} did not answer GET /healthz within {} s", cfg.cmd, cfg.timeout_s);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    child.kill().await.ok();
    let r = json!({
        "kind": "own_start",
        "round": cfg.round,
        "own_start_ms": ms(up),
        "cmd": cfg.cmd,
        "attempts": attempts,
    });
    eprintln!(
        "[autoscale-bench] round {}: own start of `{}`: {} ({} health attempts)",
        cfg.round,
        cfg.cmd,
        fmt_ms(&r["own_start_ms"]),
        attempts
    );
    Ok(r)
}
