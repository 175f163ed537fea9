//! The load client: `conns` h2c connections (one tonic channel each), `streams` closed
//! loops on each, for `duration`. A unary loop calls `/test.Echo/Unary` and waits for
//! the answer before the next call; a bidi loop opens one `/test.Echo/Bidi` call and
//! sends a message, waits for its echo, sends the next (one message in flight per
//! stream). Latency is per call (unary) or per message round trip (bidi).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http::uri::PathAndQuery;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::Request;

use crate::codec::BytesCodec;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Unary,
    Bidi,
}

impl Mode {
    pub fn parse(s: &str) -> anyhow::Result<Mode> {
        match s {
            "unary" => Ok(Mode::Unary),
            "bidi" => Ok(Mode::Bidi),
            _ => anyhow::bail!("mode {s:?}: expected unary or bidi"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Unary => "unary",
            Mode::Bidi => "bidi",
        }
    }
}

#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// host:port of the target (h2c)
    pub target: String,
    pub mode: Mode,
    pub conns: usize,
    /// concurrent calls (unary) or open streams (bidi) per connection
    pub streams: usize,
    pub duration: Duration,
    /// bytes per message
    pub size: usize,
}

/// What one loop saw: latencies in microseconds of what completed before the end.
#[derive(Default)]
struct LoopResult {
    latencies_us: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
}

/// Runs the load and returns its summary as one JSON line.
pub async fn run(cfg: LoadConfig) -> anyhow::Result<String> {
    let endpoint = Endpoint::from_shared(format!("http://{}", cfg.target))
        .context("parse the target address")?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5));
    let mut channels = Vec::with_capacity(cfg.conns);
    for _ in 0..cfg.conns {
        let ch = endpoint
            .connect()
            .await
            .with_context(|| format!("connect to {}", cfg.target))?;
        channels.push(ch);
    }
    let payload = Bytes::from(vec![b'x'; cfg.size]);
    let cpu_before = cpu_time();
    let start = Instant::now();
    let end = start + cfg.duration;
    let mut tasks = Vec::new();
    for ch in &channels {
        for _ in 0..cfg.streams {
            let (ch, payload) = (ch.clone(), payload.clone());
            tasks.push(tokio::spawn(async move {
                match cfg.mode {
                    Mode::Unary => unary_loop(ch, payload, end).await,
                    Mode::Bidi => bidi_loop(ch, payload, end).await,
                }
            }));
        }
    }
    let mut all = Vec::new();
    let (mut errors, mut first_error) = (0u64, None);
    for t in tasks {
        let r = t.await.context("join a load loop")?;
        all.extend_from_slice(&r.latencies_us);
        errors += r.errors;
        first_error = first_error.or(r.first_error);
    }
    // The client's own CPU: on a machine whose cores it shares with the proxy and the
    // member, it is part of what the run measures (bench/README.md, grpc.sh).
    let client_cpu = cpu_time().saturating_sub(cpu_before);
    all.sort_unstable();
    let secs = cfg.duration.as_secs_f64();
    let count = all.len();
    let pct = |p: f64| -> u32 {
        if all.is_empty() {
            return 0;
        }
        let rank = ((p / 100.0) * count as f64).ceil() as usize;
        all[rank.clamp(1, count) - 1]
    };
    let first_error = first_error
        .map(|e| format!(", \"first_error\": {:?}", e))
        .unwrap_or_default();
    Ok(format!(
        "{{\"target\": \"{}\", \"mode\": \"{}\", \"conns\": {}, \"streams\": {}, \"size\": {}, \
         \"seconds\": {:.1}, \"messages\": {}, \"per_s\": {:.0}, \"p50_us\": {}, \"p90_us\": {}, \
         \"p99_us\": {}, \"max_us\": {}, \"client_cpu_us\": {}, \"errors\": {}{}}}",
        cfg.target,
        cfg.mode.name(),
        cfg.conns,
        cfg.streams,
        cfg.size,
        secs,
        count,
        count as f64 / secs,
        pct(50.0),
        pct(90.0),
        pct(99.0),
        all.last().copied().unwrap_or(0),
        client_cpu.as_micros(),
        errors,
        first_error
    ))
}

/// The CPU time (user and system, all threads) this process has used so far.
fn cpu_time() -> Duration {
    // SAFETY: `usage` is a plain C struct that getrusage fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage; RUSAGE_SELF cannot fail.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

impl LoopResult {
    fn error(&mut self, e: impl ToString) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e.to_string());
        }
    }
}

async fn unary_loop(ch: Channel, payload: Bytes, end: Instant) -> LoopResult {
    let mut client = tonic::client::Grpc::new(ch);
    let path = PathAndQuery::from_static("/test.Echo/Unary");
    let mut r = LoopResult::default();
    loop {
        if let Err(e) = client.ready().await {
            r.error(e);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let t0 = Instant::now();
        if t0 >= end {
            break;
        }
        let res = client
            .unary::<Bytes, Bytes, _>(Request::new(payload.clone()), path.clone(), BytesCodec)
            .await;
        let t1 = Instant::now();
        match res {
            // the grpcio member prefixes its instance name: only the tail is the echo
            Ok(resp) if resp.get_ref().ends_with(&payload) => {
                if t1 <= end {
                    r.latencies_us.push(micros(t1 - t0));
                }
            }
            Ok(resp) => r.error(format!("unexpected answer of {} bytes", resp.get_ref().len())),
            Err(status) => {
                r.error(status);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    r
}

async fn bidi_loop(ch: Channel, payload: Bytes, end: Instant) -> LoopResult {
    let mut client = tonic::client::Grpc::new(ch);
    let path = PathAndQuery::from_static("/test.Echo/Bidi");
    let mut r = LoopResult::default();
    while Instant::now() < end {
        if let Err(e) = client.ready().await {
            r.error(e);
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        // the first message goes with the call: some servers send the reply head only
        // with their first message
        let (tx, rx) = mpsc::channel::<Bytes>(1);
        let mut t0 = Instant::now();
        let _ = tx.try_send(payload.clone());
        let mut replies = match client
            .streaming(Request::new(ReceiverStream::new(rx)), path.clone(), BytesCodec)
            .await
        {
            Ok(resp) => resp.into_inner(),
            Err(status) => {
                r.error(status);
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
        };
        loop {
            match replies.message().await {
                Ok(Some(m)) => {
                    let t1 = Instant::now();
                    if m != payload {
                        r.error(format!("echo of {} bytes differs", m.len()));
                    } else if t1 <= end {
                        r.latencies_us.push(micros(t1 - t0));
                    }
                    if t1 >= end {
                        break;
                    }
                    t0 = Instant::now();
                    if tx.send(payload.clone()).await.is_err() {
                        r.error("the request stream closed");
                        break;
                    }
                }
                Ok(None) => {
                    r.error("the reply stream ended before the client's");
                    break;
                }
                Err(status) => {
                    r.error(status);
                    break;
                }
            }
        }
        // half-close and wait (briefly) for the trailers
        drop(tx);
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Ok(Some(_)) = replies.message().await {}
        })
        .await;
    }
    r
}
