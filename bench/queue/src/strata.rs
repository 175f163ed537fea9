//! The strata half: the node API through `strata-client`.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use strata_client::{Client, FetchOptions, OutgoingMessage, ProducerConfig, Receipt};
use tokio::sync::mpsc;

use crate::run::{Phases, RunConfig, RunResult, Until};

const GROUP: &str = "bench";
/// Messages per fetch when draining what the timed part of (c) left.
const DRAIN_BATCH: usize = 1000;

pub async fn run(api: &str, queue: &str, cfg: &RunConfig) -> Result<RunResult> {
    let client = Client::new(api)?;
    let body = Bytes::from(vec![b'x'; cfg.size]);
    let one = OutgoingMessage::new(body.clone());
    let mut result = RunResult::default();
    let mut published = 0u64;

    // Warm-up: connections open, code paths hot.
    for _ in 0..50 {
        client.publish(queue, &one).await.context("publish to strata")?;
        published += 1;
    }

    // (a) one publisher, each publish waited for.
    let secs = if cfg.phases == Phases::B { 0.0 } else { cfg.secs };
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < deadline {
        let t = Instant::now();
        client.publish(queue, &one).await.context("publish to strata")?;
        result.latencies.push(t.elapsed());
        published += 1;
    }

    if cfg.phases == Phases::A {
        consume(&client, queue, DRAIN_BATCH, u64::MAX, cfg.size).await?;
        return Ok(result);
    }

    // (b) one publisher, `unacked` messages outstanding, batched by the Producer.
    let (n, time) = pipelined(
        &client,
        queue,
        &body,
        cfg,
        Until::Elapsed(Duration::from_secs_f64(cfg.secs)),
    )
    .await?;
    result.published = n;
    result.publish_time = time;
    published += n;
    if cfg.phases == Phases::B {
        consume(&client, queue, DRAIN_BATCH, u64::MAX, cfg.size).await?;
        return Ok(result);
    }
    if published < cfg.consume {
        pipelined(&client, queue, &body, cfg, Until::Count(cfg.consume - published)).await?;
    }

    // (c) `consume` messages fetched `batch` at a time (compact) and acked; then the rest
    // of the backlog, untimed, so that the next run starts from an empty queue.
    let start = Instant::now();
    result.consumed = consume(&client, queue, cfg.batch, cfg.consume, cfg.size).await?;
    result.consume_time = start.elapsed();
    consume(&client, queue, DRAIN_BATCH, u64::MAX, cfg.size).await?;
    Ok(result)
}

/// Fetches up to `limit` messages, `batch` at a time, acking each batch while the next
/// ones are fetched (up to `ACKS_AHEAD` acks outstanding, each durable when it answers,
/// all awaited before the time stops; JetStream's acks are fire-and-forget); stops early
/// when the group has nothing left. Returns how many were consumed.
async fn consume(client: &Client, queue: &str, batch: usize, limit: u64, size: usize) -> Result<u64> {
    let mut consumed = 0u64;
    const ACKS_AHEAD: usize = 4;
    let mut acking: std::collections::VecDeque<tokio::task::JoinHandle<Result<u64, strata_client::Error>>> =
        std::collections::VecDeque::new();
    while consumed < limit {
        let max = (limit - consumed).min(batch as u64) as u32;
        let messages = client
            .fetch_compact(queue, GROUP, &FetchOptions::max(max))
            .await
            .context("fetch from strata")?;
        while acking.len() >= ACKS_AHEAD {
            let ack = acking.pop_front().expect("an ack");
            ack.await?.context("ack to strata")?;
        }
        if messages.is_empty() {
            break;
        }
        if let Some(m) = messages.iter().find(|m| m.body.len() != size) {
            bail!(
                "strata handed out offset {} with {} bytes, {size} were published",
                m.offset,
                m.body.len()
            );
        }
        consumed += messages.len() as u64;
        let offsets: Vec<u64> = messages.iter().map(|m| m.offset).collect();
        let (client, queue) = (client.clone(), queue.to_string());
        acking.push_back(tokio::spawn(async move {
            let settled = client.ack(&queue, GROUP, &offsets).await?;
            Ok(settled.count)
        }));
    }
    for ack in acking {
        ack.await?.context("ack to strata")?;
    }
    Ok(consumed)
}

/// Sends through a [`strata_client::Producer`] until `until`, then waits for every
/// acknowledgement; the count acknowledged and the time from first send to last ack.
async fn pipelined(
    client: &Client,
    queue: &str,
    body: &Bytes,
    cfg: &RunConfig,
    until: Until,
) -> Result<(u64, Duration)> {
    let config = ProducerConfig {
        max_unacked: cfg.unacked,
        max_batch_messages: cfg.publish_batch,
        max_in_flight: cfg.in_flight,
        ..ProducerConfig::default()
    };
    let producer = client.producer(queue, config)?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Receipt>();
    let acks = tokio::spawn(async move {
        let mut n = 0u64;
        while let Some(receipt) = rx.recv().await {
            receipt.await?;
            n += 1;
        }
        Ok::<u64, strata_client::Error>(n)
    });
    let start = Instant::now();
    let mut sent = 0u64;
    while !until.done(sent, start.elapsed()) {
        let receipt = producer.send(body.clone()).await?;
        if tx.send(receipt).is_err() {
            break; // the ack task ended early: its error is reported below
        }
        sent += 1;
    }
    drop(tx);
    let n = acks.await?.context("publish to strata through the Producer")?;
    let time = start.elapsed();
    producer.close().await;
    Ok((n, time))
}
