//! [`Producer`]: many messages unacknowledged at once, batched on the wire the way
//! Kafka's producer does it.
//!
//! `send` queues a message and returns at once with a [`Receipt`], unless
//! `max_unacked` messages are already outstanding, in which case it waits for room. One
//! driver task takes whatever is queued and sends it as one compact batch on a free
//! connection; while `max_in_flight` batches are on the wire, the next batch grows
//! instead. So a slow or loaded node gets fewer, larger batches, and an idle one gets each
//! message as soon as it is sent (no linger timer). With several batches in flight, the
//! next one goes out once it holds `max_unacked / max_in_flight` messages, or when
//! nothing else is in flight, so that the batches on the wire stay even. A receipt
//! resolves to its message's offset when its batch is answered, or to the batch's error;
//! nothing is resent (a compact batch has no dedupe ids, so a resend could store it
//! twice).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use crate::client::segment;
use crate::{Client, Error};

/// How a [`Producer`] batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerConfig {
    /// Messages sent and not yet acknowledged; `send` waits while this many are. Default 256.
    pub max_unacked: usize,
    /// Batches on the wire at once, each on its own kept-alive connection. Default 2.
    /// With more than one, each batch names this producer and its sequence number, and
    /// the node stores the batches in that order however they arrive (`docs/queues.md`,
    /// "Order across batches in flight"). Measured on the queue benchmark (bench/README,
    /// stop 33), 256 unacknowledged: 2 in flight against 1 stored 0.90 and 0.90 of
    /// JetStream's rate on a 3-server NATS cluster against 0.84 and 0.80, and 382,507 and
    /// 439,406 msgs/s on one node against 356,849 and 342,298.
    pub max_in_flight: usize,
    /// Messages in one batch. Default 256.
    pub max_batch_messages: usize,
    /// A batch is closed once its payloads reach this many bytes. Default 1 MiB.
    pub max_batch_bytes: usize,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            max_unacked: 256,
            max_in_flight: 2,
            max_batch_messages: 256,
            max_batch_bytes: 1 << 20,
        }
    }
}

/// A publisher to one queue that keeps many messages unacknowledged and batches them.
/// Dropping it stops taking messages; those already sent are still delivered and their
/// receipts still resolve. [`close`](Producer::close) also waits for them.
pub struct Producer {
    queue: Arc<str>,
    tx: mpsc::UnboundedSender<Pending>,
    room: Arc<Semaphore>,
    max_unacked: usize,
    driver: JoinHandle<()>,
}

/// Resolves to the message's offset once its batch is durable on the node.
#[must_use = "a receipt is the only way to learn whether the message was stored"]
pub struct Receipt {
    rx: oneshot::Receiver<Result<u64, Error>>,
}

struct Pending {
    body: Bytes,
    done: oneshot::Sender<Result<u64, Error>>,
    /// One unit of `max_unacked`, given back when the receipt is resolved.
    _room: OwnedSemaphorePermit,
}

impl Producer {
    /// Starts the producer's driver task on the current tokio runtime.
    pub fn new(client: Client, queue: &str, config: ProducerConfig) -> Result<Producer, Error> {
        segment(queue)?;
        let config = ProducerConfig {
            max_unacked: config.max_unacked.clamp(1, Semaphore::MAX_PERMITS),
            max_in_flight: config.max_in_flight.max(1),
            max_batch_messages: config.max_batch_messages.max(1),
            max_batch_bytes: config.max_batch_bytes.max(1),
        };
        let queue: Arc<str> = queue.into();
        let (tx, rx) = mpsc::unbounded_channel();
        // One batch at a time is stored in order anyway: no producer id needed.
        let id = (config.max_in_flight > 1).then(producer_id);
        let driver = tokio::spawn(drive(client, queue.clone(), rx, config, id));
        Ok(Producer {
            queue,
            tx,
            room: Arc::new(Semaphore::new(config.max_unacked)),
            max_unacked: config.max_unacked,
            driver,
        })
    }

    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Queues one message; waits only while `max_unacked` messages are outstanding.
    pub async fn send(&self, body: impl Into<Bytes>) -> Result<Receipt, Error> {
        let room = self.room.clone().acquire_owned().await.map_err(|_| Error::Closed)?;
        let (done, rx) = oneshot::channel();
        let pending = Pending {
            body: body.into(),
            done,
            _room: room,
        };
        self.tx.send(pending).map_err(|_| Error::Closed)?;
        Ok(Receipt { rx })
    }

    /// Sends one message and waits for its offset. Useful from many tasks at once; one
    /// task publishing in a loop should use [`send`](Producer::send) and keep receipts.
    pub async fn publish(&self, body: impl Into<Bytes>) -> Result<u64, Error> {
        self.send(body).await?.await
    }

    /// Waits until every message sent so far is answered (stored or failed: the
    /// receipts tell which). Sends made meanwhile wait for it.
    pub async fn flush(&self) -> Result<(), Error> {
        let all = u32::try_from(self.max_unacked).unwrap_or(u32::MAX);
        let _all = self.room.acquire_many(all).await.map_err(|_| Error::Closed)?;
        Ok(())
    }

    /// Stops taking messages and waits until every one already sent is answered.
    pub async fn close(self) {
        drop(self.tx);
        let _ = self.driver.await;
    }
}

impl Future for Receipt {
    type Output = Result<u64, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx).poll(cx).map(|r| r.unwrap_or(Err(Error::Closed)))
    }
}

/// The driver: moves queued messages into the next batch and sends it once a slot among
/// `max_in_flight` is free and the batch is ready (see the loop).
/// `id`: this producer's, sent with each batch's sequence number (from 0) so that the
/// node keeps the batches' order.
async fn drive(
    client: Client,
    queue: Arc<str>,
    mut rx: mpsc::UnboundedReceiver<Pending>,
    config: ProducerConfig,
    id: Option<Arc<str>>,
) {
    let mut in_flight = JoinSet::new();
    let mut next = Batch::default();
    let mut open = true;
    let mut sequence = 0u64;
    let share = (config.max_unacked / config.max_in_flight).max(1);
    loop {
        while open && !next.full(&config) {
            match rx.try_recv() {
                Ok(p) => next.push(p),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => open = false,
            }
        }
        // A free slot takes the next batch once it holds its share of `max_unacked`, or
        // at once with nothing else in flight (an idle node gets each message as soon
        // as it is sent) or nothing more to come. Else a slot freed while the publisher
        // is between two sends would go to the one or two messages queued that instant,
        // and the batches in flight would shrink to slivers (Kafka's linger, by count).
        let ready = next.full(&config) || next.messages.len() >= share || in_flight.is_empty() || !open;
        if !next.messages.is_empty() && in_flight.len() < config.max_in_flight && ready {
            let batch = std::mem::take(&mut next);
            let turn = id.clone().map(|id| (id, sequence));
            sequence += 1;
            in_flight.spawn(send_batch(client.clone(), queue.clone(), batch.messages, turn));
            continue;
        }
        if !open && next.messages.is_empty() && in_flight.is_empty() {
            return;
        }
        // Not both disabled: with nothing in flight, `next` is empty (else it was sent
        // above), so the channel is open (else we returned) and `next` is not full.
        // With batches in flight and `next` short of its share, whichever comes first:
        // more messages, or a batch answered (its receipts free room for more).
        tokio::select! {
            p = rx.recv(), if open && !next.full(&config) => match p {
                Some(p) => next.push(p),
                None => open = false,
            },
            _ = in_flight.join_next(), if !in_flight.is_empty() => {}
        }
    }
}

#[derive(Default)]
struct Batch {
    messages: Vec<Pending>,
    bytes: usize,
}

impl Batch {
    fn push(&mut self, p: Pending) {
        self.bytes += p.body.len();
        self.messages.push(p);
    }

    fn full(&self, config: &ProducerConfig) -> bool {
        self.messages.len() >= config.max_batch_messages || self.bytes >= config.max_batch_bytes
    }
}

/// A name no other producer of any process is likely to have (64 random bits, the
/// process id and a count).
fn producer_id() -> Arc<str> {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static MADE: AtomicU64 = AtomicU64::new(0);
    let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
    let made = MADE.fetch_add(1, Ordering::Relaxed);
    format!("{random:016x}-{:x}-{made:x}", std::process::id()).into()
}

async fn send_batch(client: Client, queue: Arc<str>, batch: Vec<Pending>, turn: Option<(Arc<str>, u64)>) {
    let bodies: Vec<&Bytes> = batch.iter().map(|p| &p.body).collect();
    let turn = turn.as_ref().map(|(id, sequence)| (&**id, *sequence));
    match client.publish_batch_in_turn(&queue, &bodies, turn).await {
        Ok(offsets) => {
            for (p, offset) in batch.into_iter().zip(offsets) {
                let _ = p.done.send(Ok(offset));
            }
        }
        Err(e) => {
            for p in batch {
                let _ = p.done.send(Err(e.clone()));
            }
        }
    }
}
