//! The JetStream half: a file-storage work-queue stream on one subject and a durable
//! pull consumer, through async-nats.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures::StreamExt;

use crate::run::{Phases, RunConfig, RunResult, Until};

const STREAM: &str = "BENCH";
const SUBJECT: &str = "bench";
const CONSUMER: &str = "bench";
/// Messages per fetch when draining what the timed part of (c) left.
const DRAIN_BATCH: usize = 1000;

/// `replicas`: None, a stream of one replica with work-queue retention (bench/queue.sh,
/// against one nats-server); Some(n), the settings strata's queues on JetStream use
/// (`strata_cluster::queues`: limits retention, discard old, n replicas, a durable pull
/// consumer with no limit on deliveries or unacknowledged messages), for
/// bench/queue_cluster.sh against the 3-server cluster.
/// `leader`: the server that should lead the stream (moved there before the run), so
/// that the direct publishes take the same path through the cluster as strata's.
pub async fn run(
    url: &str,
    cfg: &RunConfig,
    replicas: Option<usize>,
    acks: Acks,
    leader: Option<&str>,
) -> Result<RunResult> {
    let client = async_nats::connect(url)
        .await
        .with_context(|| format!("connect to nats-server at {url}"))?;
    let js = jetstream::new(client.clone());
    let mut stream_config = stream::Config {
        name: STREAM.to_string(),
        subjects: vec![SUBJECT.to_string()],
        storage: stream::StorageType::File,
        // Deleted once acknowledged, as a strata queue with one group.
        retention: stream::RetentionPolicy::WorkQueue,
        ..Default::default()
    };
    let mut consumer_config = consumer::pull::Config {
        durable_name: Some(CONSUMER.to_string()),
        ack_policy: consumer::AckPolicy::Explicit,
        ..Default::default()
    };
    if let Some(n) = replicas {
        stream_config.retention = stream::RetentionPolicy::Limits;
        stream_config.discard = stream::DiscardPolicy::Old;
        stream_config.num_replicas = n;
        consumer_config.deliver_policy = consumer::DeliverPolicy::All;
        consumer_config.ack_wait = Duration::from_secs(30);
        consumer_config.max_deliver = -1;
        consumer_config.max_ack_pending = -1;
    }
    let stream = js
        .get_or_create_stream(stream_config)
        .await
        .context("create the JetStream stream")?;
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(CONSUMER, consumer_config)
        .await
        .context("create the durable pull consumer")?;
    if let Some(name) = leader {
        lead_on(&js, STREAM, name).await?;
    }
    eprintln!(
        "[queue-bench] jetstream: connected to server {}, stream {STREAM} led by {}",
        client.server_info().server_name,
        stream_leader(&js, STREAM).await?.as_deref().unwrap_or("none")
    );

    let body = Bytes::from(vec![b'x'; cfg.size]);
    let mut result = RunResult::default();
    let mut published = 0u64;

    for _ in 0..50 {
        js.publish(SUBJECT, body.clone())
            .await?
            .await
            .context("publish to JetStream")?;
        published += 1;
    }

    // (a) one publisher, each publish waited for.
    let secs = if cfg.phases == Phases::B { 0.0 } else { cfg.secs };
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < deadline {
        let t = Instant::now();
        js.publish(SUBJECT, body.clone())
            .await?
            .await
            .context("publish to JetStream")?;
        result.latencies.push(t.elapsed());
        published += 1;
    }

    if cfg.phases == Phases::A {
        consume(&consumer, DRAIN_BATCH, u64::MAX, cfg.size, Acks::Sent).await?;
        client.flush().await.context("flush the acks to nats-server")?;
        return Ok(result);
    }

    // (b) async publish, `unacked` acks outstanding on the one connection.
    let (n, time) = pipelined(
        &js,
        &body,
        cfg.unacked,
        Until::Elapsed(Duration::from_secs_f64(cfg.secs)),
    )
    .await?;
    result.published = n;
    result.publish_time = time;
    published += n;
    if cfg.phases == Phases::B {
        consume(&consumer, DRAIN_BATCH, u64::MAX, cfg.size, Acks::Sent).await?;
        client.flush().await.context("flush the acks to nats-server")?;
        return Ok(result);
    }
    if published < cfg.consume {
        pipelined(&js, &body, cfg.unacked, Until::Count(cfg.consume - published)).await?;
    }

    // (c) `consume` messages fetched `batch` at a time (no wait), each acked as `acks`
    // says; then the rest of the backlog, untimed.
    let start = Instant::now();
    result.consumed = consume(&consumer, cfg.batch, cfg.consume, cfg.size, acks).await?;
    client.flush().await.context("flush the acks to nats-server")?;
    result.consume_time = start.elapsed();
    consume(&consumer, DRAIN_BATCH, u64::MAX, cfg.size, Acks::Sent).await?;
    client.flush().await.context("flush the acks to nats-server")?;
    Ok(result)
}

/// The server leading `stream` (None: not replicated, or no leader just now).
pub async fn stream_leader(js: &jetstream::Context, stream: &str) -> Result<Option<String>> {
    let mut stream = js
        .get_stream(stream)
        .await
        .with_context(|| format!("look up stream {stream}"))?;
    let info = stream.info().await.context("read the stream's info")?;
    Ok(info.cluster.as_ref().and_then(|c| c.leader.clone()))
}

/// Moves the leadership of `stream` to server `name`: a step-down that prefers it
/// (nats-server 2.11 and later), repeated until that server leads.
async fn lead_on(js: &jetstream::Context, stream: &str, name: &str) -> Result<()> {
    for _ in 0..20 {
        if stream_leader(js, stream).await?.as_deref() == Some(name) {
            return Ok(());
        }
        let request = serde_json::json!({ "placement": { "preferred": name } });
        let answer: jetstream::response::Response<serde_json::Value> = js
            .request(format!("STREAM.LEADER.STEPDOWN.{stream}"), &request)
            .await
            .context("ask the stream's leader to step down")?;
        if let jetstream::response::Response::Err { error } = answer {
            eprintln!("[queue-bench] step-down of {stream} towards {name}: {error}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("stream {stream}: server {name} did not become its leader in 10 s")
}

/// How phase (c) acks what it fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// Fire-and-forget (`ack()`): nothing waits for the server.
    Sent,
    /// Each batch's acks confirmed by the server (`double_ack`, concurrently) before the
    /// next fetch.
    Confirmed,
    /// Confirmed, but each batch's confirmations awaited while the next batches are
    /// fetched, up to [`ACKS_AHEAD`] batches outstanding and all awaited before the time
    /// stops: what strata's side of the bench does with its ack requests, each of which
    /// answers once JetStream confirmed its acks.
    Pipelined,
}

/// Batches whose acks may be unconfirmed at once with [`Acks::Pipelined`] (as
/// `ACKS_AHEAD` in strata.rs).
const ACKS_AHEAD: usize = 4;

/// Fetches up to `limit` messages, `batch` at a time, acking each as `acks` says; stops
/// early when the consumer has nothing left. Returns how many were consumed.
async fn consume(consumer: &consumer::PullConsumer, batch: usize, limit: u64, size: usize, acks: Acks) -> Result<u64> {
    type Confirming = tokio::task::JoinHandle<Result<()>>;
    let mut consumed = 0u64;
    let mut confirming: VecDeque<Confirming> = VecDeque::new();
    while consumed < limit {
        let max = (limit - consumed).min(batch as u64) as usize;
        let mut messages = consumer
            .fetch()
            .max_messages(max)
            .messages()
            .await
            .context("fetch from JetStream")?;
        let mut got = 0u64;
        let mut to_confirm = Vec::new();
        while let Some(message) = messages.next().await {
            let message = message.map_err(|e| anyhow::anyhow!("fetch from JetStream: {e}"))?;
            if message.payload.len() != size {
                bail!(
                    "JetStream handed out {} bytes, {size} were published",
                    message.payload.len()
                );
            }
            if acks == Acks::Sent {
                message
                    .ack()
                    .await
                    .map_err(|e| anyhow::anyhow!("ack to JetStream: {e}"))?;
            } else {
                to_confirm.push(message);
            }
            got += 1;
        }
        let confirm = async move {
            for confirmed in futures::future::join_all(to_confirm.iter().map(|m| m.double_ack())).await {
                confirmed.map_err(|e| anyhow::anyhow!("confirmed ack to JetStream: {e}"))?;
            }
            Ok(())
        };
        match acks {
            Acks::Sent => {}
            Acks::Confirmed => confirm.await?,
            Acks::Pipelined => {
                while confirming.len() >= ACKS_AHEAD {
                    confirming.pop_front().expect("not empty").await??;
                }
                confirming.push_back(tokio::spawn(confirm));
            }
        }
        if got == 0 {
            break;
        }
        consumed += got;
    }
    for confirm in confirming {
        confirm.await??;
    }
    Ok(consumed)
}

async fn pipelined(js: &jetstream::Context, body: &Bytes, unacked: usize, until: Until) -> Result<(u64, Duration)> {
    let mut outstanding = VecDeque::with_capacity(unacked);
    let start = Instant::now();
    let (mut sent, mut acked) = (0u64, 0u64);
    while !until.done(sent, start.elapsed()) {
        if outstanding.len() >= unacked {
            let ack: jetstream::context::PublishAckFuture = outstanding.pop_front().expect("not empty");
            ack.await.context("publish to JetStream")?;
            acked += 1;
        }
        outstanding.push_back(
            js.publish(SUBJECT, body.clone())
                .await
                .context("publish to JetStream")?,
        );
        sent += 1;
    }
    for ack in outstanding {
        ack.await.context("publish to JetStream")?;
        acked += 1;
    }
    Ok((acked, start.elapsed()))
}
