//! queue-bench: strata queues against NATS JetStream, one measurement per invocation;
//! `bench/queue.sh` runs it in rounds and asks it for the report. See README.md.
//!
//! Layout:
//! - `run`: the settings and result of one run of one target.
//! - `strata`, `jetstream`: phases (a), (b), (c) against each target.
//! - `floor`: the floors under (a): one fdatasync, one HTTP round trip.
//! - `measure`: percentiles, `RESULT` lines, the report (medians and ratios).

mod floor;
mod jetstream;
mod measure;
mod run;
mod strata;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::measure::result_line;
use crate::run::{Phases, RunConfig};

const USAGE: &str = "usage:
  queue-bench strata    --api http://HOST:PORT [--queue bench] [RUN OPTIONS]
  queue-bench jetstream --nats nats://HOST:PORT [--replicas N] [--acks sent|confirmed|pipelined]
                        [--leader SERVER] [RUN OPTIONS]
                        (--replicas: strata's stream settings, N replicas; see jetstream.rs;
                        --leader: move the stream's leadership to that server (its name) first;
                        --acks confirmed: each fetched batch's acks confirmed by the server
                        before the next fetch, as strata's ack answers only once they are;
                        pipelined: confirmed, up to 4 batches' confirmations awaited while
                        the next are fetched, as strata's side of the bench acks;
                        sent, the default: fire-and-forget acks)
  queue-bench leader    --nats nats://HOST:PORT --stream NAME
                        (prints the name of the server leading the stream)
  queue-bench fsync     --dir DIR [--secs 1] [--size 128] [--round N]
  queue-bench health    --api http://HOST:PORT [--secs 1] [--wait 30] [--gap-us 0] [--round N]
                        (--gap-us: sleep that long before each call, so it starts from idle)
  queue-bench report    RESULTS_FILE
RUN OPTIONS: --round N --secs 3 --size 128 --unacked 256 --batch 100 --consume 200000
             --phases abc (a or b: that phase only, its messages drained untimed)
             --in-flight N (strata's Producer only; default: the Producer's)
             --publish-batch N (strata's Producer only: messages per batch; default --unacked)
Each measuring command prints one `RESULT TARGET ROUND key=value...` line on stdout.";

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

    fn num<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T> {
        match self.options.get(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| anyhow::anyhow!("--{key} {v:?} is not a number")),
        }
    }

    fn run_config(&self) -> Result<RunConfig> {
        Ok(RunConfig {
            secs: self.num("secs", 3.0)?,
            size: self.num("size", 128)?,
            unacked: self.num("unacked", 256)?,
            in_flight: self.num("in-flight", strata_client::ProducerConfig::default().max_in_flight)?,
            publish_batch: self.num("publish-batch", self.num("unacked", 256)?)?,
            batch: self.num("batch", 100)?,
            consume: self.num("consume", 200_000)?,
            phases: match self.options.get("phases").map(String::as_str) {
                None | Some("abc") => Phases::All,
                Some("a") => Phases::A,
                Some("b") => Phases::B,
                Some(other) => bail!("--phases is abc, a or b, not {other:?}\n{USAGE}"),
            },
        })
    }
}

#[tokio::main]
async fn main() {
    if let Err(e) = real_main().await {
        eprintln!("queue-bench: {e:#}");
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
        "strata" => {
            let cfg = args.run_config()?;
            let queue = args.options.get("queue").map_or("bench", String::as_str);
            let mut r = strata::run(&args.string("api")?, queue, &cfg).await?;
            eprintln!("[queue-bench] {}", r.summary("strata"));
            println!("{}", r.line("strata", round));
        }
        "jetstream" => {
            let cfg = args.run_config()?;
            let replicas = args
                .options
                .get("replicas")
                .map(|_| args.num("replicas", 1))
                .transpose()?;
            let acks = match args.options.get("acks").map(String::as_str) {
                None | Some("sent") => jetstream::Acks::Sent,
                Some("confirmed") => jetstream::Acks::Confirmed,
                Some("pipelined") => jetstream::Acks::Pipelined,
                Some(other) => bail!("--acks is sent, confirmed or pipelined, not {other:?}\n{USAGE}"),
            };
            let leader = args.options.get("leader").map(String::as_str);
            let mut r = jetstream::run(&args.string("nats")?, &cfg, replicas, acks, leader).await?;
            eprintln!("[queue-bench] {}", r.summary("jetstream"));
            println!("{}", r.line("jetstream", round));
        }
        "leader" => {
            let url = args.string("nats")?;
            let client = async_nats::connect(url.as_str())
                .await
                .with_context(|| format!("connect to nats-server at {url}"))?;
            let js = async_nats::jetstream::new(client);
            let stream = args.string("stream")?;
            let leader = jetstream::stream_leader(&js, &stream).await?;
            println!("{}", leader.context("the stream has no leader just now")?);
        }
        "fsync" => {
            let dir = PathBuf::from(args.string("dir")?);
            let (secs, size) = (args.num("secs", 1.0)?, args.num("size", 128)?);
            let mut lat = tokio::task::spawn_blocking(move || floor::fsync(&dir, size, secs)).await??;
            let fields = [
                ("p50_us", lat.percentile_us(50.0)),
                ("p99_us", lat.percentile_us(99.0)),
                ("n", lat.len() as f64),
            ];
            println!("{}", result_line("fsync", round, &fields));
        }
        "health" => {
            let client = strata_client::Client::new(&args.string("api")?)?;
            let wait = Duration::from_secs_f64(args.num("wait", 30.0)?);
            let gap = Duration::from_micros(args.num("gap-us", 0)?);
            let mut lat = floor::health(&client, args.num("secs", 1.0)?, wait, gap).await?;
            let target = if gap.is_zero() { "health" } else { "health_idle" };
            let fields = [
                ("p50_us", lat.percentile_us(50.0)),
                ("p99_us", lat.percentile_us(99.0)),
                ("n", lat.len() as f64),
            ];
            println!("{}", result_line(target, round, &fields));
        }
        "report" => {
            let file = args
                .positional
                .get(1)
                .with_context(|| format!("report needs a file\n{USAGE}"))?;
            measure::report(file)?;
        }
        other => bail!("unknown command {other:?}\n{USAGE}"),
    }
    Ok(())
}
