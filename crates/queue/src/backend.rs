//! The queue contract as a trait, so that the node API, push delivery and the
//! autoscaler work the same over any backend: the embedded engine of this crate
//! ([`Queues`] and [`Queue`]) is the first implementation; a JetStream one is the
//! second. The contract is `docs/queues.md`; what each call waits for:
//!
//! | call | answered when |
//! |---|---|
//! | [`QueueBackend::create`] | the queue (and its dead-letter queue) exists durably |
//! | [`QueueBackend::delete`] | the queue and its dead-letter queue are gone durably (their waiters ended) |
//! | [`QueueBackend::get`], [`QueueBackend::list`] | looked up |
//! | [`QueueHandle::publish`] | every message is durable under the queue's fsync policy and visible |
//! | [`QueueHandle::fetch`] | messages are leased to the group (or the long poll ran out) |
//! | [`QueueHandle::ack`] | the deletes are durable (the group's floor may move) |
//! | [`QueueHandle::nack`] | the messages are given back for redelivery (not synced) |
//! | [`QueueBackend::request`] | the message is durable and a reply came, or the deadline passed |
//! | [`QueueBackend::reply`] | handed to the waiting publisher, or durable in the named queue |
//!
//! Guarantees every implementation keeps: at-least-once delivery to each group; a
//! message is never visible before it is durable; a lease that runs out puts its
//! messages back with their delivery count; after `max_deliveries` a message goes to
//! `NAME.dlq`; a dedupe id seen within the window stores nothing. A publish refused for
//! now ([`QueueError::Unavailable`]: no new segment could be made, a node bound reached)
//! stored nothing and took no offset; the queue stays in service. A queue the manifest
//! declares is never deleted through the backend ([`QueueError::Declared`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use strata_manifest::QueueSpec;
use strata_os::disk::Disk;

use crate::{FetchOptions, Message, NewMessage, Published, Queue, QueueError, QueueStats, Queues, Replied, Reply};

/// Resolves after the next publish to a queue (or a redelivery becoming due).
pub type Changed<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// A node's queues, whatever keeps them.
#[async_trait]
pub trait QueueBackend: Send + Sync + 'static {
    /// What keeps the queues, for `ps` and `strata queues` (`embedded`, `jetstream`).
    fn kind(&self) -> &'static str;

    /// Creates a queue with its dead-letter queue, or returns the existing one; `true`
    /// when it was created.
    async fn create(&self, name: &str, spec: QueueSpec) -> Result<(Arc<dyn QueueHandle>, bool), QueueError>;

    /// The queue called `name` ([`QueueError::UnknownQueue`] if there is none).
    fn get(&self, name: &str) -> Result<Arc<dyn QueueHandle>, QueueError>;

    /// Every queue, dead-letter queues included, by name.
    fn list(&self) -> Vec<Arc<dyn QueueHandle>>;

    /// Queues that could not be opened and are out of service, with the reason.
    fn failures(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Deletes queue `name` with its dead-letter queue and every message, durably: later
    /// calls on it get [`QueueError::UnknownQueue`], and so do fetches waiting on it. A
    /// queue out of service is deleted too. Refused: a queue the manifest declares
    /// ([`QueueError::Declared`]; it is the manifest's), a dead-letter queue on its own
    /// ([`QueueError::BadInput`]). A backend that cannot delete says so
    /// ([`QueueError::Unavailable`]).
    async fn delete(&self, name: &str) -> Result<(), QueueError> {
        Err(QueueError::Unavailable(format!(
            "the {} queue backend cannot delete queue {name:?}",
            self.kind()
        )))
    }

    /// Publishes `message` with a fresh inbox as its reply-to and waits up to `deadline`
    /// for the reply. The message stays published if no reply comes.
    async fn request(
        &self,
        queue: &str,
        message: NewMessage,
        deadline: Duration,
    ) -> Result<(Published, Reply), QueueError>;

    /// Sends a reply to `reply_to`: `inbox:ID` (a waiting publisher) or `queue:NAME`.
    async fn reply(&self, reply_to: &str, reply: Reply) -> Result<Replied, QueueError>;

    /// Stops every queue after what it was given is durable. Blocking.
    fn close(&self);
}

/// Told once a publish's place in its queue is fixed: a publish started after that is
/// stored after every message of the first (see [`QueueHandle::publish_placed`]). It
/// tells by being dropped, so a publish refused early tells too.
pub struct Placed(Option<Box<dyn FnOnce() + Send>>);

impl Placed {
    /// Runs `told` when the place is fixed.
    pub fn new(told: impl FnOnce() + Send + 'static) -> Placed {
        Placed(Some(Box::new(told)))
    }

    /// Nobody to tell.
    pub fn nobody() -> Placed {
        Placed(None)
    }

    /// Whether somebody waits to be told: a producer's next batch, which must be stored
    /// after every message of this one.
    pub fn tells(&self) -> bool {
        self.0.is_some()
    }
}

impl Drop for Placed {
    fn drop(&mut self) {
        if let Some(told) = self.0.take() {
            told();
        }
    }
}

/// One named queue of a backend.
#[async_trait]
pub trait QueueHandle: Send + Sync + 'static {
    fn name(&self) -> &str;
    fn spec(&self) -> &QueueSpec;
    async fn publish(&self, messages: Vec<NewMessage>) -> Result<Vec<Published>, QueueError>;
    /// [`publish`](Self::publish), dropping `placed` as soon as the batch's place in the
    /// queue is fixed, which may be long before it is durable: so that a publisher's
    /// batches in flight at once are stored in the order it sent them (the node API's
    /// `producer` and `sequence`). By default, once the publish has ended.
    async fn publish_placed(&self, messages: Vec<NewMessage>, placed: Placed) -> Result<Vec<Published>, QueueError> {
        let published = self.publish(messages).await;
        drop(placed);
        published
    }
    async fn fetch(&self, group: &str, opts: FetchOptions) -> Result<Vec<Message>, QueueError>;
    /// Deletes `offsets` for `group`: (deleted, ignored as not leased to it).
    async fn ack(&self, group: &str, offsets: &[u64]) -> Result<(usize, usize), QueueError>;
    /// Gives `offsets` back for redelivery: (given back, ignored).
    async fn nack(&self, group: &str, offsets: &[u64]) -> Result<(usize, usize), QueueError>;
    fn stats(&self) -> QueueStats;
    /// A future registered now (a publish after this call wakes it even before it is
    /// first polled) that resolves on the next change.
    fn changed(&self) -> Changed<'_>;
}

#[async_trait]
impl<D: Disk> QueueBackend for Queues<D> {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    async fn create(&self, name: &str, spec: QueueSpec) -> Result<(Arc<dyn QueueHandle>, bool), QueueError> {
        // Creating files is disk work: the runtime thread is handed over while it runs
        // (a current-thread runtime, as in tests, just waits).
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let (queue, created) = if multi_thread {
            tokio::task::block_in_place(|| Queues::create(self, name, spec))?
        } else {
            Queues::create(self, name, spec)?
        };
        Ok((queue as Arc<dyn QueueHandle>, created))
    }

    async fn delete(&self, name: &str) -> Result<(), QueueError> {
        // Disk work and joining writer threads: the runtime thread is handed over.
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi_thread {
            tokio::task::block_in_place(|| Queues::delete(self, name))
        } else {
            Queues::delete(self, name)
        }
    }

    fn get(&self, name: &str) -> Result<Arc<dyn QueueHandle>, QueueError> {
        Queues::get(self, name).map(|q| q as Arc<dyn QueueHandle>)
    }

    fn failures(&self) -> Vec<(String, String)> {
        Queues::failures(self)
    }

    fn list(&self) -> Vec<Arc<dyn QueueHandle>> {
        Queues::list(self)
            .into_iter()
            .map(|q| q as Arc<dyn QueueHandle>)
            .collect()
    }

    async fn request(
        &self,
        queue: &str,
        message: NewMessage,
        deadline: Duration,
    ) -> Result<(Published, Reply), QueueError> {
        Queues::request(self, queue, message, deadline).await
    }

    async fn reply(&self, reply_to: &str, reply: Reply) -> Result<Replied, QueueError> {
        Queues::reply(self, reply_to, reply).await
    }

    fn close(&self) {
        Queues::close(self)
    }
}

#[async_trait]
impl<D: Disk> QueueHandle for Queue<D> {
    fn name(&self) -> &str {
        Queue::name(self)
    }

    fn spec(&self) -> &QueueSpec {
        Queue::spec(self)
    }

    async fn publish(&self, messages: Vec<NewMessage>) -> Result<Vec<Published>, QueueError> {
        Queue::publish(self, messages).await
    }

    async fn publish_placed(&self, messages: Vec<NewMessage>, placed: Placed) -> Result<Vec<Published>, QueueError> {
        Queue::publish_placed(self, messages, placed).await
    }

    async fn fetch(&self, group: &str, opts: FetchOptions) -> Result<Vec<Message>, QueueError> {
        Queue::fetch(self, group, opts).await
    }

    async fn ack(&self, group: &str, offsets: &[u64]) -> Result<(usize, usize), QueueError> {
        Queue::ack(self, group, offsets).await
    }

    async fn nack(&self, group: &str, offsets: &[u64]) -> Result<(usize, usize), QueueError> {
        Queue::nack(self, group, offsets)
    }

    fn stats(&self) -> QueueStats {
        Queue::stats(self)
    }

    fn changed(&self) -> Changed<'_> {
        let mut notified = Box::pin(Queue::notified(self));
        notified.as_mut().enable();
        notified
    }
}
