//! Serves only the cache over the Redis protocol, for `bench/cache.sh` and for poking at
//! it with redis-cli.
//!
//!     cargo run --release -p strata-cache --example resp_server -- --port 6390 [--threads N] [--max-bytes N] [--shards N]
//!
//! With `--ring NAME=PORT,NAME=PORT,... --name NAME` it is node NAME of a cache ring
//! over those nodes (each one this example on its port, on loopback), forwarding the
//! keys the others own: what a cluster's Redis port does, without the cluster.
//!
//! Stops on Ctrl-C or SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use strata_cache::{run_sweeper, spawn_resp_with, Cache, CacheConfig, NodeRing, RespConfig};
use tokio_util::sync::CancellationToken;

/// The allocator the strata binary serves its Redis port with, so that this bench server
/// measures the same thing.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

extern "C" {
    /// mimalloc's own: frees the calling thread's empty pages and, with `force`, gives
    /// them back to the system.
    fn mi_collect(force: bool);
}

/// What a quiet worker runs, as in the strata binary (`strata_os::listen::on_idle`).
fn give_back_idle_memory() {
    // SAFETY: mi_collect takes no pointer and may be called on any thread at any time.
    unsafe { mi_collect(true) }
}

fn main() {
    strata_os::listen::on_idle(give_back_idle_memory);
    let mut port: u16 = 6390;
    let mut threads = 0usize;
    let mut config = CacheConfig::default();
    let mut ring_nodes: BTreeMap<String, SocketAddr> = BTreeMap::new();
    let mut name = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        let number = || {
            value
                .parse::<u64>()
                .unwrap_or_else(|_| usage(&format!("{flag} takes a number, not {value:?}")))
        };
        match flag.as_str() {
            "--port" => port = number() as u16,
            "--threads" => threads = number() as usize,
            "--shards" => config.shards = number() as usize,
            "--max-bytes" => config.max_bytes = number(),
            "--name" => name = Some(value.clone()),
            "--ring" => {
                for node in value.split(',') {
                    let Some((n, p)) = node.split_once('=') else {
                        usage(&format!("--ring takes NAME=PORT,..., not {value:?}"));
                    };
                    let p: u16 = p
                        .parse()
                        .unwrap_or_else(|_| usage(&format!("--ring: {p:?} is no port")));
                    ring_nodes.insert(n.to_string(), SocketAddr::from(([127, 0, 0, 1], p)));
                }
            }
            _ => usage(&format!("unknown flag {flag}")),
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async move {
        let cache = Arc::new(Cache::new(config));
        let token = CancellationToken::new();
        let addr = ([0, 0, 0, 0], port).into();
        let ring = (!ring_nodes.is_empty()).then(|| {
            let name = name.unwrap_or_else(|| usage("--ring needs --name"));
            NodeRing::new(&name)
        });
        if let Some(ring) = &ring {
            ring.set(&ring_nodes, &cache);
        }
        let resp = RespConfig {
            threads,
            ring,
            ..RespConfig::default()
        };
        let workers = match spawn_resp_with(addr, resp, cache.clone(), token.clone()) {
            Ok(w) => w,
            Err(e) => {
                eprintln!("resp_server: cannot listen on port {port}: {e}");
                std::process::exit(1);
            }
        };
        println!(
            "resp_server: listening on {} with {} shards",
            workers.addr,
            cache.shard_count()
        );
        let sweeper = tokio::spawn(run_sweeper(cache, Duration::from_millis(100), token.clone()));
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        token.cancel();
        let _ = sweeper.await;
        workers.join().await;
    });
}

fn usage(problem: &str) -> ! {
    eprintln!("resp_server: {problem}\nusage: resp_server [--port 6390] [--threads N (0: one per core)] [--shards N] [--max-bytes N] [--ring NAME=PORT,... --name NAME]");
    std::process::exit(2);
}
