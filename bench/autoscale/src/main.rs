//! autoscale-bench: strata's autoscaler under a step in load, and scale from zero; one
//! measurement per invocation, one JSON line on stdout (a summary on stderr).
//! `bench/autoscale.sh` runs it in rounds and asks it for the report. See bench/README.md.
//!
//! Layout:
//! - `http`: a minimal HTTP/1.1 keep-alive client (GET only).
//! - `ps`: one service's pool from `GET /v1/ps`.
//! - `ramp`: closed-loop clients stepping from `--from` to `--to`, with ps polled alongside.
//! - `cold`: one request to a service at zero; the handler's own start time.
//! - `report`: medians of the rounds against the targets.

#![recursion_limit = "256"]

mod cold;
mod http;
mod ps;
mod ramp;
mod report;
mod stats;

use std::collections::HashMap;

use anyhow::{bail, Context, Result};

const USAGE: &str = "usage:
  autoscale-bench ramp --gateway HOST:PORT --api http://HOST:PORT [--service sleepy] [--path /work]
                       [--from 1] [--to 64] [--warm-s 3] [--hold-s 12] [--needed 16]
                       [--steady-s 5] [--poll-ms 20] [--round N]
  autoscale-bench cold --gateway HOST:PORT --api http://HOST:PORT [--service cold] [--path /cold/x]
                       [--sleep-ms 50] [--timeout-s 60] [--settle-ms 100] [--round N]
  autoscale-bench own-start --cmd \"python3 handler.py\" [--dir DIR] [--timeout-s 30] [--round N]
  autoscale-bench report RESULTS_FILE [--first-target-ms 1000] [--cold-slack-ms 10]
  autoscale-bench wait --api http://HOST:PORT [--service sleepy] [--ready 1] [--timeout-s 120]
                       (until exactly that many instances run, all ready)
  autoscale-bench get --gateway HOST:PORT [--path /] [--n 1]   (prints status, instance, ms)
Each measuring command prints one JSON line on stdout and a summary on stderr.";

struct Args {
    positional: Vec<String>,
    options: HashMap<String, String>,
}

impl Args {
    fn parse(args: impl Iterator<Item = String>) -> Result<Args> {
        let mut positional = Vec::new();
        let mut options = HashMap::new();
        let mut args = args.peekable();
        while let Some(a) = args.next() {
            if let Some(key) = a.strip_prefix("--") {
                let value = args.next().with_context(|| format!("--{key} needs a value\n{USAGE}"))?;
                options.insert(key.to_string(), value);
            } else {
                positional.push(a);
            }
        }
        Ok(Args { positional, options })
    }

    fn string(&self, key: &str) -> Result<String> {
        self.options
            .get(key)
            .cloned()
            .with_context(|| format!("--{key} is required\n{USAGE}"))
    }

    fn or(&self, key: &str, default: &str) -> String {
        self.options.get(key).cloned().unwrap_or_else(|| default.to_string())
    }

    fn num<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T> {
        match self.options.get(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| anyhow::anyhow!("--{key} {v:?} is not a number")),
        }
    }
}

#[tokio::main]
async fn main() {
    if let Err(e) = real_main().await {
        eprintln!("autoscale-bench: {e:#}");
        std::process::exit(1);
    }
}

async fn real_main() -> Result<()> {
    let args = Args::parse(std::env::args().skip(1))?;
    let Some(command) = args.positional.first() else {
        bail!("{USAGE}");
    };
    let round: u32 = args.num("round", 0)?;
    match command.as_str() {
        "ramp" => {
            let cfg = ramp::RampConfig {
                gateway: args.string("gateway")?,
                api: args.string("api")?,
                service: args.or("service", "sleepy"),
                path: args.or("path", "/work"),
                from: args.num("from", 1)?,
                to: args.num("to", 64)?,
                warm_s: args.num("warm-s", 3.0)?,
                hold_s: args.num("hold-s", 12.0)?,
                needed: args.num("needed", 16)?,
                poll_ms: args.num("poll-ms", 20)?,
                steady_s: args.num("steady-s", 5.0)?,
                round,
            };
            println!("{}", ramp::run(&cfg).await?);
        }
        "cold" => {
            let cfg = cold::ColdConfig {
                gateway: args.string("gateway")?,
                api: args.string("api")?,
                service: args.or("service", "cold"),
                path: args.or("path", "/cold/x"),
                sleep_ms: args.num("sleep-ms", 50.0)?,
                timeout_s: args.num("timeout-s", 60.0)?,
                settle_ms: args.num("settle-ms", 100)?,
                round,
            };
            println!("{}", cold::cold(&cfg).await?);
        }
        "own-start" => {
            let cfg = cold::OwnStartConfig {
                cmd: args.or("cmd", "python3 handler.py"),
                dir: args.options.get("dir").cloned(),
                timeout_s: args.num("timeout-s", 30.0)?,
                round,
            };
            println!("{}", cold::own_start(&cfg).await?);
        }
        "report" => {
            let file = args
                .positional
                .get(1)
                .with_context(|| format!("report needs a file\n{USAGE}"))?;
            let targets = report::Targets {
                first_ms: args.num("first-target-ms", 1000.0)?,
                cold_slack_ms: args.num("cold-slack-ms", 10.0)?,
            };
            report::report(file, &targets)?;
        }
        "wait" => {
            let service = args.or("service", "sleepy");
            let want: usize = args.num("ready", 1)?;
            let timeout = std::time::Duration::from_secs_f64(args.num("timeout-s", 120.0)?);
            let started = std::time::Instant::now();
            let mut ps = ps::Ps::new(&args.string("api")?, &service);
            loop {
                let last = match ps.get().await {
                    Ok(pool) if pool.ready == want && pool.live == want => break,
                    Ok(pool) => format!("{} ready, {} running, desired {}", pool.ready, pool.live, pool.desired),
                    Err(e) => format!("{e:#}"),
                };
                if started.elapsed() > timeout {
                    bail!("{service}: not at {want} ready instance(s) after {timeout:?} (last: {last})");
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            eprintln!(
                "[autoscale-bench] {service}: {want} ready after {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
        "get" => {
            let mut conn = http::Conn::new(&args.string("gateway")?);
            let path = args.or("path", "/");
            for _ in 0..args.num("n", 1u32)? {
                let t = std::time::Instant::now();
                let reply = conn.get(&path).await?;
                println!(
                    "{} {} {:.2} ms {}",
                    reply.status,
                    reply.instance.as_deref().unwrap_or("-"),
                    t.elapsed().as_secs_f64() * 1e3,
                    String::from_utf8_lossy(&reply.body).trim_end()
                );
            }
        }
        other => bail!("unknown command {other:?}\n{USAGE}"),
    }
    Ok(())
}
