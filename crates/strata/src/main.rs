//! strata: a cloud in one binary. This crate is the command line and nothing else: a
//! node is `strata-node`, its HTTP API `strata-api`.
//!
//! Layout:
//! - `cli`: the commands and their output; `strata up` starts a [`strata_node::Node`].
//! - `cluster`: `strata node`, `nodes`, `deploy`, `undeploy`: a cluster over NATS.
//! - `control`: the CLI's side of the node's control API (`ps`, `scale`, `logs`, `down`).
//! - `init`: `strata init`, a first strata.json guessed from an app's folder, each guess explained.
//! - `locate`: which node a command talks to (`--api`, `-C DIR`, the current directory,
//!   or the user's registry of running nodes that `strata ls` lists).
//! - `tables`: what `ps`, `queues`, `cache stats`, `events` and `ls` print for a person.
//! - `progress`: spinners and streamed setup output on a terminal, plain lines elsewhere.
//! - `repair`: `strata repair`, damaged queues and store salvaged, with no node running.
//! - `out`: output that ends quietly, with status 0, when its reader goes away.

mod app_dir;
mod cli;
mod cluster;
mod control;
mod images;
mod init;
mod locate;
mod out;
mod progress;
mod repair;
mod signals;
mod tables;
mod top;

use clap::Parser;

/// mimalloc, not glibc's malloc: the gateway allocates per call (its futures, header maps,
/// HTTP/2 frames) and glibc spent 10 % of a worker's time on it, the larger blocks (a
/// relayed call's future is 2-3 KB) merging its free lists on every call
/// (`malloc_consolidate`). Measured in bench/README.md ("mimalloc").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

extern "C" {
    /// mimalloc's own (in the library the `mimalloc` crate builds and links): frees the
    /// calling thread's empty pages and, with `force`, gives them back to the system.
    fn mi_collect(force: bool);
}

/// What a gateway worker does once its connections have all closed
/// (`strata_os::listen::on_idle`): mimalloc keeps the pages a thread freed until that
/// thread allocates again, which an idle worker does not, so after 4,000 WebSockets
/// closed the node kept their 43 MB (bench/README.md, websocket.sh).
fn give_back_idle_memory() {
    // SAFETY: mi_collect takes no pointer and may be called on any thread at any time.
    unsafe { mi_collect(true) }
}

/// A runtime thread's record for [`runtime_thread_parks`]: whether it has woken since it
/// last gave memory back, and when that was.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Parks {
    woken: bool,
    last_collect: Option<std::time::Instant>,
}

impl Parks {
    /// The thread woke.
    fn unparked(self) -> Parks {
        Parks { woken: true, ..self }
    }

    /// The thread goes idle at `now`: whether it collects, and the record after.
    fn parking(self, now: std::time::Instant) -> (bool, Parks) {
        let recent = self
            .last_collect
            .is_some_and(|last| now.duration_since(last) < strata_os::listen::IDLE_AFTER);
        if !self.woken || recent {
            return (false, self);
        }
        (
            true,
            Parks {
                woken: false,
                last_collect: Some(now),
            },
        )
    }
}

thread_local! {
    static PARKS: std::cell::Cell<Parks> = const {
        std::cell::Cell::new(Parks { woken: false, last_collect: None })
    };
}

/// A thread of the runtime (the node API, the App Service, the queues and the store)
/// has woken.
fn runtime_thread_unparks() {
    PARKS.with(|p| p.set(p.get().unparked()));
}

/// A thread of the runtime is going idle: it gives its freed memory back
/// ([`give_back_idle_memory`]) if it has woken since it last did and that was a second
/// ago or more ([`Parks::parking`]). Unlike the gateway's and the Redis port's workers,
/// these threads have no connection count or work marks to go by; they park between
/// any two pieces of work, and an idle node still wakes them (health checks, sweeps), so
/// the memory a burst of node API calls left goes back at the first park a second after
/// the last collection, and a busy thread collects at most once a second. Measured in
/// bench/README.md ("Memory given back when idle").
fn runtime_thread_parks() {
    PARKS.with(|p| {
        let (collect, after) = p.get().parking(std::time::Instant::now());
        p.set(after);
        if collect {
            give_back_idle_memory();
        }
    });
}

/// The runtime's threads by default: half the cores, at least one. The gateway already
/// runs a thread per core beside it, and a request through the node API is a chain of
/// wake-ups (client, handler, the NATS client's task, the disk writer): with a second
/// worker idle, tokio wakes it to steal each link, a futex and a thread hop per step.
/// Measured on two cores (bench/README.md, "The node's runtime: one worker on two
/// cores"): one worker publishes faster and with a lower p50 than two, embedded queue
/// and JetStream alike.
fn default_workers() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / 2).max(1)
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        // Colours for a person at a terminal; plain text in a file or a pipe.
        .with_ansi(out::interactive_stderr())
        .init();
    strata_os::listen::on_idle(give_back_idle_memory);
    let cli = cli::Cli::parse();
    let workers = cli.workers.map_or_else(default_workers, usize::from);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .on_thread_unpark(runtime_thread_unparks)
        .on_thread_park(runtime_thread_parks)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("strata: could not start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // `strata ps --json | head -1`: the reader has what it wanted.
        Err(e) if out::is_closed_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata: {}", error_text(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, a cause that its parent already quotes left
/// out (async-nats' errors repeat their source), with a hint for JetStream's "temporarily
/// unavailable" (what a user sees when most NATS servers are down).
fn error_text(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if parts.last().is_some_and(|last| last.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    let mut out = parts.join(": ");
    if out.contains("JetStream system temporarily unavailable") {
        out.push_str(
            " (JetStream cannot answer: a majority of the NATS servers is down or cut off, or its leaders are being elected)",
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::Parks;

    #[test]
    fn an_error_line_says_each_cause_once_and_what_jetstream_unavailable_means() {
        let inner = anyhow::anyhow!("JetStream error: JetStream system temporarily unavailable (code 503)");
        let e = inner
            .context("watch failed: JetStream error: JetStream system temporarily unavailable (code 503)")
            .context("list keys");
        let text = super::error_text(&e);
        assert_eq!(text.matches("temporarily unavailable").count(), 1, "said once: {text}");
        assert!(text.starts_with("list keys: watch failed: JetStream error:"), "{text}");
        assert!(text.ends_with("or its leaders are being elected)"), "{text}");
        let plain = anyhow::anyhow!("no such file").context("read strata.json");
        assert_eq!(super::error_text(&plain), "read strata.json: no such file");
    }

    #[test]
    fn a_runtime_thread_collects_at_a_park_after_waking_at_most_once_a_second() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // Never woken: nothing to give back.
        let (collect, parks) = Parks::default().parking(at(0));
        assert!(!collect);
        // Woken once: the first park collects.
        let (collect, parks) = parks.unparked().parking(at(0));
        assert!(collect);
        // Parked again without waking: nothing.
        let (collect, parks) = parks.parking(at(2_000));
        assert!(!collect);
        // Woken again within the second: not yet, and the wake is kept for later.
        let (collect, parks) = parks.unparked().parking(at(999));
        assert!(!collect);
        // The first park a second after the last collection collects that kept wake.
        let (collect, parks) = parks.parking(at(1_000));
        assert!(collect);
        assert_eq!(
            parks,
            Parks {
                woken: false,
                last_collect: Some(at(1_000))
            }
        );
    }
}
