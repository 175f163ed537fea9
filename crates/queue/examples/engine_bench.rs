//! The queue engine alone, no HTTP: how fast it takes and hands out 128-byte messages.
//!
//! `cargo run --release -p strata-queue --example engine_bench [MESSAGES] [ROUNDS]`
//!
//! Per round, in a fresh temp dir (on the same file system as `$TMPDIR`):
//! - publish: 256 publishers each with one message in flight, fsync always (group commit);
//! - publish batched: batches of 256 from one publisher, fsync always;
//! - consume: fetch 100 + ack 100 (acks pipelined, each durable), until MESSAGES are
//!   consumed (messages/s).
//!
//! Prints each round and the medians.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_manifest::QueueSpec;
use strata_queue::{FetchOptions, NewMessage, Queues};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn open(dir: &std::path::Path) -> Arc<Queues> {
    let spec = QueueSpec {
        segment_bytes: 64 << 20,
        ..QueueSpec::default()
    };
    Arc::new(Queues::open(dir, &[("bench".to_string(), spec)].into_iter().collect()).expect("open"))
}

async fn concurrent_publish(queues: &Arc<Queues>, publishers: usize, per: usize) -> f64 {
    let body = Bytes::from(vec![b'x'; 128]);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..publishers {
        let q = queues.get("bench").unwrap();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..per {
                q.publish(vec![NewMessage::new(body.clone())]).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (publishers * per) as f64 / started.elapsed().as_secs_f64()
}

async fn batched_publish(queues: &Arc<Queues>, messages: usize) -> f64 {
    let q = queues.get("bench").unwrap();
    let body = Bytes::from(vec![b'y'; 128]);
    let started = Instant::now();
    let mut left = messages;
    while left > 0 {
        let n = left.min(256);
        q.publish((0..n).map(|_| NewMessage::new(body.clone())).collect())
            .await
            .unwrap();
        left -= n;
    }
    messages as f64 / started.elapsed().as_secs_f64()
}

async fn consume(queues: &Arc<Queues>, messages: usize) -> f64 {
    let q = queues.get("bench").unwrap();
    let opts = FetchOptions {
        max: 100,
        max_bytes: usize::MAX,
        wait: Duration::ZERO,
        lease: None,
    };
    let started = Instant::now();
    let mut got = 0;
    // Acks are pipelined, as a consumer that does not wait for each delete to be durable
    // before fetching the next batch: concurrent acks share one sync (group commit).
    let mut acks = tokio::task::JoinSet::new();
    while got < messages {
        let batch = q.fetch("bench", opts).await.unwrap();
        assert!(!batch.is_empty(), "ran dry at {got}");
        let offsets: Vec<u64> = batch.iter().map(|m| m.offset).collect();
        let q = q.clone();
        acks.spawn(async move { q.ack("bench", &offsets).await.unwrap() });
        got += batch.len();
        while acks.len() > 64 {
            acks.join_next().await;
        }
    }
    while acks.join_next().await.is_some() {}
    got as f64 / started.elapsed().as_secs_f64()
}

/// p50 of one publish waited for at a time, and of a raw fdatasync of a small write
/// into a preallocated file beside it, in microseconds.
async fn sequential_latency(queues: &Arc<Queues>, dir: &std::path::Path, n: usize) -> (f64, f64) {
    use std::os::unix::fs::FileExt;
    let q = queues.get("bench").unwrap();
    let body = Bytes::from(vec![b'z'; 128]);
    let mut publish = Vec::with_capacity(n);
    let mut sync = Vec::with_capacity(n);
    let file = std::fs::File::create(dir.join("floor")).unwrap();
    file.set_len(0).unwrap();
    file.write_all_at(&vec![0u8; n * 256 + 4096], 0).unwrap();
    file.sync_all().unwrap();
    for i in 0..n {
        let t = Instant::now();
        q.publish(vec![NewMessage::new(body.clone())]).await.unwrap();
        publish.push(t.elapsed().as_secs_f64() * 1e6);
        let t = Instant::now();
        file.write_all_at(&[1u8; 153], (i * 256) as u64).unwrap();
        file.sync_data().unwrap();
        sync.push(t.elapsed().as_secs_f64() * 1e6);
    }
    (median(publish), median(sync))
}

/// `MULTI_THREAD=1` runs on a multi-thread runtime (as the node does), where publishers
/// lead their own commits; by default a current-thread runtime, where the queue's thread does.
fn main() {
    let runtime = if std::env::var("MULTI_THREAD").is_ok_and(|v| v == "1") {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    };
    runtime.expect("a runtime").block_on(run());
}

async fn run() {
    let mut args = std::env::args().skip(1);
    let messages: usize = args.next().map_or(1_000_000, |a| a.parse().expect("MESSAGES"));
    let rounds: usize = args.next().map_or(5, |a| a.parse().expect("ROUNDS"));
    let (mut conc, mut batched, mut cons) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        let dir = tempfile::tempdir().expect("temp dir");
        let queues = open(dir.path());
        let (lat, floor) = sequential_latency(&queues, dir.path(), 2000).await;
        println!("round {round}: one publish at a time p50 {lat:.0} us; raw fdatasync p50 {floor:.0} us");
        let c = concurrent_publish(&queues, 256, 40).await;
        let b = batched_publish(&queues, messages).await;
        let r = consume(&queues, messages).await;
        println!(
            "round {round}: publish 256 concurrent {c:>10.0} msg/s | publish batches of 256 {b:>10.0} msg/s | consume fetch 100 + ack {r:>10.0} msg/s"
        );
        conc.push(c);
        batched.push(b);
        cons.push(r);
        queues.close();
    }
    println!(
        "median: publish 256 concurrent {:.0} msg/s | publish batches of 256 {:.0} msg/s | consume fetch 100 + ack {:.0} msg/s (128-byte messages, fsync always)",
        median(conc),
        median(batched),
        median(cons)
    );
}
