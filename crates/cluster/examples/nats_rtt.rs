//! One NATS request/reply round trip, measured: a responder and a requester on one
//! connection each, `N` sequential requests of `SIZE` bytes; prints the median and p99 in
//! microseconds. `bench/cluster.sh` runs it beside the cross-node hop so that the two are
//! compared in one run.
//!
//!     cargo run --release -p strata-cluster --example nats_rtt -- nats://127.0.0.1:4222 [N] [SIZE]

use std::time::{Duration, Instant};

use futures_util::StreamExt;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    let n: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(5000);
    let size: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(5);
    let responder = async_nats::connect(url.as_str()).await?;
    let requester = async_nats::connect(url.as_str()).await?;
    let mut sub = responder.subscribe("strata.bench.rtt").await?;
    responder.flush().await?;
    tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            if let Some(reply) = msg.reply {
                let _ = responder.publish(reply, msg.payload).await;
            }
        }
    });
    let payload = bytes::Bytes::from(vec![b'x'; size]);
    // The responder's interest reaches the server a moment after its flush on a busy
    // machine: wait until a request is answered before timing any.
    let ready = Instant::now();
    while requester.request("strata.bench.rtt", payload.clone()).await.is_err() {
        anyhow::ensure!(ready.elapsed() < Duration::from_secs(10), "no responder after 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut times: Vec<Duration> = Vec::with_capacity(n);
    for i in 0..n + 200 {
        let start = Instant::now();
        requester.request("strata.bench.rtt", payload.clone()).await?;
        if i >= 200 {
            times.push(start.elapsed());
        }
    }
    times.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "p50_us={:.0} p99_us={:.0} n={n}",
        us(times[n / 2]),
        us(times[n * 99 / 100])
    );
    Ok(())
}
