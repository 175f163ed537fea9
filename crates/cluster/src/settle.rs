//! JetStream calls that make or look up a stream, each attempt bounded and the call
//! retried ([`settled`]).
//!
//! nats-server leaves some of these calls unanswered instead of refusing them: while a
//! new NATS cluster elects its meta leader, and while a stream that another node has
//! just made elects its own leader (only a stream's leader answers `STREAM.INFO`, and a
//! create of a stream that exists is answered as an info). With the client's request
//! timeout (10 s) each such call held a starting node for 10 s: three nodes started
//! together on a fresh NATS cluster took 20 to 31 s before every one of them served
//! (bench/cluster_startup.sh). Here an attempt waits [`FIRST_ATTEMPT`], doubling up to
//! [`MAX_ATTEMPT`], and the call is made again until [`DEADLINE`]; each attempt is
//! made through a copy of the context with that timeout, so the handles a caller keeps
//! are opened afterwards on its own context (and keep its timeouts).

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

use async_nats::jetstream::Context;

/// The first attempt's wait for an answer (an answer on a healthy cluster takes a few
/// milliseconds; making a replicated stream with `sync_interval: always`, about 100 ms).
pub const FIRST_ATTEMPT: Duration = Duration::from_millis(250);
/// The longest wait of one attempt.
pub const MAX_ATTEMPT: Duration = Duration::from_secs(2);
/// How long a call is tried in all before its last error is returned.
pub const DEADLINE: Duration = Duration::from_secs(30);
/// The pause after an attempt that was answered with an error (a refusal comes at once:
/// no reason to ask again at once).
const PAUSE: Duration = Duration::from_millis(50);

/// Runs `call` with a context whose requests wait at most the attempt's timeout, again
/// after each error, until it succeeds or [`DEADLINE`] has passed.
pub async fn settled<T, E, F, Fut>(js: &Context, what: &str, call: F) -> Result<T, E>
where
    E: Display,
    F: FnMut(Context) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    settled_if(js, what, |_| true, call).await
}

/// As [`settled`], retrying only the errors `transient` accepts.
pub async fn settled_if<T, E, F, Fut>(
    js: &Context,
    what: &str,
    transient: impl Fn(&E) -> bool,
    mut call: F,
) -> Result<T, E>
where
    E: Display,
    F: FnMut(Context) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let start = Instant::now();
    let mut wait = FIRST_ATTEMPT;
    loop {
        let mut bounded = js.clone();
        bounded.set_timeout(wait);
        let began = Instant::now();
        match call(bounded).await {
            Ok(value) => return Ok(value),
            Err(e) if transient(&e) && start.elapsed() < DEADLINE => {
                tracing::debug!(what, attempt_ms = wait.as_millis() as u64, "JetStream not ready: {e}");
                if began.elapsed() < wait {
                    tokio::time::sleep(PAUSE).await;
                }
                wait = (wait * 2).min(MAX_ATTEMPT);
            }
            Err(e) => return Err(e),
        }
    }
}

/// The first attempt's wait in [`read`] (a listing of a large bucket takes a while).
const FIRST_READ: Duration = Duration::from_secs(2);
/// The longest wait of one attempt in [`read`].
const MAX_READ: Duration = Duration::from_secs(8);

/// Runs the read-only `call` with each attempt cut off after its wait (2 s, doubling to
/// 8 s), again after each error or cut-off, until it succeeds or [`DEADLINE`] has
/// passed. For reads whose requests go unanswered while JetStream elects a leader (a
/// listing of a bucket's keys makes a consumer, which needs the meta leader: a CLI call
/// made just after a NATS server died waited its 10 s timeout and failed). Only for
/// reads: an attempt cut off is dropped midway.
pub async fn read<T, F, Fut>(what: &str, mut call: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let start = Instant::now();
    let mut wait = FIRST_READ;
    loop {
        let began = Instant::now();
        let outcome = match tokio::time::timeout(wait, call()).await {
            Ok(outcome) => outcome,
            Err(_) => Err(anyhow::anyhow!("{what}: no answer within {wait:?}")),
        };
        match outcome {
            Ok(value) => return Ok(value),
            Err(e) if start.elapsed() < DEADLINE => {
                tracing::debug!(what, attempt_ms = wait.as_millis() as u64, "JetStream not ready: {e:#}");
                if began.elapsed() < wait {
                    tokio::time::sleep(PAUSE).await;
                }
                wait = (wait * 2).min(MAX_READ);
            }
            Err(e) => return Err(e),
        }
    }
}
