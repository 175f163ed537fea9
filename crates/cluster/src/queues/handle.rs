//! [`JsQueue`]: one queue on JetStream, the [`QueueHandle`] the node API and push
//! delivery use; here its state (the group consumers made, the figures behind `stats()`,
//! `changed()`), and in:
//! - `publish`: a batch pipelined (every message sent, then every ack awaited);
//! - `fetch`: pulls from the group's durable consumer, moving a message delivered once
//!   too often to the dead-letter queue;
//! - `settle`: ack and nack by offset through the delivery's ack subject, waiting for the
//!   server's answer (an ack's comes once a quorum of replicas has it).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::{self, PullConsumer};
use async_nats::jetstream::response::Response;
use async_nats::jetstream::{self, ErrorCode};
use async_nats::Client;
use async_trait::async_trait;
use strata_manifest::QueueSpec;
use strata_queue::{
    Changed, FetchOptions, GroupStats, Message, NewMessage, Placed, Published, QueueError, QueueHandle, QueueStats,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

mod fetch;
mod publish;
mod settle;

use settle::{settle_one, Settle};

use super::leases::Leases;
use super::names::{self, Names};

const STREAM_NOT_FOUND: ErrorCode = ErrorCode(10059);

/// What every queue of a backend shares: the connection, the names, the leases handed
/// out here, and the backend's end.
pub(crate) struct Core {
    pub js: jetstream::Context,
    pub client: Client,
    pub names: Names,
    pub leases: Leases,
    /// Cancelled by `close()`: every call answers [`QueueError::Closed`].
    pub closed: CancellationToken,
}

/// A queue's figures as last seen (the refresh task reads them every second; this node's
/// own calls update them in between).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Figures {
    pub first_offset: u64,
    pub next_offset: u64,
    pub messages: u64,
    pub bytes: u64,
    pub groups: BTreeMap<String, GroupFigures>,
    /// Where the stream's copies are, at the last refresh.
    pub replicas: Option<strata_queue::Replicas>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct GroupFigures {
    pub floor: u64,
    pub unread: u64,
    pub leased: u64,
    pub dead_lettered: u64,
}

impl GroupFigures {
    /// A group's figures from its consumer (offsets are stream sequences less one).
    pub fn from_consumer(info: &consumer::Info, first_offset: u64, dead_lettered: u64) -> GroupFigures {
        GroupFigures {
            floor: info.ack_floor.stream_sequence.max(first_offset),
            unread: info.num_pending,
            leased: info.num_ack_pending as u64,
            dead_lettered,
        }
    }
}

/// One queue on JetStream: a stream, its groups durable pull consumers.
pub(crate) struct JsQueue {
    pub name: String,
    pub spec: QueueSpec,
    pub stream: String,
    subject: String,
    /// Where messages go after `max_deliveries` (None for a dead-letter queue).
    pub dlq: Option<Arc<JsQueue>>,
    core: Arc<Core>,
    consumers: Mutex<HashMap<String, PullConsumer>>,
    pub figures: Mutex<Figures>,
    /// Bumped by every change this node makes to the figures: a refresh that read the
    /// server before one does not overwrite it (the next refresh reads after it).
    local: AtomicU64,
    /// The dead-letter queue's (first, last) sequence when its dead letters were last
    /// counted.
    dead_seen: Mutex<Option<(u64, u64)>>,
    /// Messages acked per group through this node, since it opened the queue.
    acked: Mutex<HashMap<String, u64>>,
    notify: Notify,
    /// Cancelled when the queue is deleted (here or seen gone from JetStream): its waiting
    /// fetches end.
    pub gone: CancellationToken,
}

impl JsQueue {
    /// Counts `n` messages acked for `group` through this node.
    pub(super) fn count_acked(&self, group: &str, n: usize) {
        let mut acked = self.acked.lock().unwrap_or_else(|e| e.into_inner());
        *acked.entry(group.to_string()).or_default() += n as u64;
    }

    pub fn new(core: Arc<Core>, name: &str, spec: QueueSpec, dlq: Option<Arc<JsQueue>>) -> JsQueue {
        JsQueue {
            name: name.to_string(),
            stream: core.names.stream(name),
            subject: core.names.subject(name),
            spec,
            dlq,
            core,
            consumers: Mutex::new(HashMap::new()),
            figures: Mutex::new(Figures::default()),
            local: AtomicU64::new(0),
            dead_seen: Mutex::new(None),
            acked: Mutex::new(HashMap::new()),
            notify: Notify::new(),
            gone: CancellationToken::new(),
        }
    }

    pub fn figures(&self) -> std::sync::MutexGuard<'_, Figures> {
        self.figures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The figures, to change them here (what a refresh that began earlier must not undo).
    fn figures_mut(&self) -> std::sync::MutexGuard<'_, Figures> {
        let f = self.figures();
        self.local.fetch_add(1, Ordering::SeqCst);
        f
    }

    /// Where this node's own changes to the figures stand, for [`JsQueue::set_figures`].
    pub fn local_changes(&self) -> u64 {
        self.local.load(Ordering::SeqCst)
    }

    /// Replaces the figures with what was read from the server since `local` (from
    /// [`JsQueue::local_changes`]); if this node changed them since, only the tail moves
    /// (never back). Wakes `changed()` when anything moved.
    pub fn set_figures(&self, mut figures: Figures, local: u64) {
        let mut f = self.figures();
        figures.next_offset = figures.next_offset.max(f.next_offset);
        if self.local.load(Ordering::SeqCst) != local {
            figures = Figures {
                next_offset: figures.next_offset,
                replicas: figures.replicas,
                ..f.clone()
            };
        }
        if *f != figures {
            *f = figures;
            drop(f);
            self.notify.notify_waiters();
        }
    }

    pub fn dead_seen(&self) -> Option<(u64, u64)> {
        *self.dead_seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_dead_seen(&self, seen: (u64, u64)) {
        *self.dead_seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(seen);
    }

    /// Wakes `changed()` (a publish seen on another node).
    pub fn wake(&self) {
        self.notify.notify_waiters();
    }

    fn check_open(&self) -> Result<(), QueueError> {
        if self.core.closed.is_cancelled() {
            return Err(QueueError::Closed);
        }
        if self.gone.is_cancelled() {
            return Err(QueueError::UnknownQueue(self.name.clone()));
        }
        Ok(())
    }

    fn lease_of_queue(&self) -> Duration {
        Duration::from_millis(self.spec.lease_ms)
    }

    /// The group's consumer, made on its first use.
    async fn consumer(&self, group: &str) -> Result<PullConsumer, QueueError> {
        if let Some(c) = self.consumers.lock().unwrap_or_else(|e| e.into_inner()).get(group) {
            return Ok(c.clone());
        }
        let config = names::consumer_config(group, &self.spec);
        let made = self
            .core
            .js
            .create_consumer_on_stream(config, &self.stream)
            .await
            .map_err(|e| self.js_error("create the group's consumer", &e))?;
        let info = made.cached_info().clone();
        {
            let mut f = self.figures_mut();
            let first = f.first_offset;
            f.groups
                .entry(group.to_string())
                .or_insert_with(|| GroupFigures::from_consumer(&info, first, 0));
        }
        self.consumers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(group.to_string(), made.clone());
        Ok(made)
    }

    /// The group's consumer as the server has it now ([`QueueError::UnknownGroup`] if
    /// there is none).
    async fn consumer_info(&self, group: &str) -> Result<consumer::Info, QueueError> {
        let subject = format!("CONSUMER.INFO.{}.{group}", self.stream);
        let response: Response<consumer::Info> = self
            .core
            .js
            .request(subject, &serde_json::json!({}))
            .await
            .map_err(|e| QueueError::Unavailable(format!("ask JetStream about group {group:?}: {e}")))?;
        match response {
            Response::Ok(info) => Ok(info),
            Response::Err { error } if error.error_code() == ErrorCode::CONSUMER_NOT_FOUND => {
                Err(QueueError::UnknownGroup(group.to_string()))
            }
            Response::Err { error } if error.error_code() == STREAM_NOT_FOUND => {
                Err(QueueError::UnknownQueue(self.name.clone()))
            }
            Response::Err { error } => Err(QueueError::Unavailable(format!(
                "ask JetStream about group {group:?}: {error}"
            ))),
        }
    }

    /// A JetStream error while doing `what`, as the caller should see it.
    fn js_error(&self, what: &str, e: &(dyn std::error::Error + 'static)) -> QueueError {
        if error_code(e) == Some(STREAM_NOT_FOUND) {
            return QueueError::UnknownQueue(self.name.clone());
        }
        QueueError::Unavailable(format!("{what} on JetStream (queue {:?}): {e}", self.name))
    }
}

/// The JetStream error code somewhere in `e`'s chain of sources (some of async-nats'
/// errors keep only its text: "... (code 404, error code 10059)").
pub(crate) fn error_code(e: &(dyn std::error::Error + 'static)) -> Option<ErrorCode> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(js) = err.downcast_ref::<jetstream::Error>() {
            return Some(js.error_code());
        }
        let text = err.to_string();
        if let Some((_, after)) = text.rsplit_once("error code ") {
            let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(code) = digits.parse() {
                return Some(ErrorCode(code));
            }
        }
        current = err.source();
    }
    None
}

#[async_trait]
impl QueueHandle for JsQueue {
    fn name(&self) -> &str {
        &self.name
    }

    fn spec(&self) -> &QueueSpec {
        &self.spec
    }

    async fn publish(&self, messages: Vec<NewMessage>) -> Result<Vec<Published>, QueueError> {
        self.publish_batch(messages, Placed::nobody()).await
    }

    async fn publish_placed(&self, messages: Vec<NewMessage>, placed: Placed) -> Result<Vec<Published>, QueueError> {
        self.publish_batch(messages, placed).await
    }

    async fn fetch(&self, group: &str, opts: FetchOptions) -> Result<Vec<Message>, QueueError> {
        self.fetch_messages(group, opts).await
    }

    async fn ack(&self, group: &str, offsets: &[u64]) -> Result<(usize, usize), QueueError> {
        self.settle(group, offsets, Settle::Ack).await
    }

    async fn nack(&self, group: &str, offsets: &[u64]) -> Result<(usize, usize), QueueError> {
        self.settle(group, offsets, Settle::Nak).await
    }

    fn stats(&self) -> QueueStats {
        let f = self.figures().clone();
        let acked = self.acked.lock().unwrap_or_else(|e| e.into_inner()).clone();
        QueueStats {
            name: self.name.clone(),
            fsync: "jetstream",
            first_offset: f.first_offset,
            next_offset: f.next_offset,
            messages: f.messages,
            bytes: f.bytes,
            disk_bytes: f.bytes,
            segments: 0,
            corrupt: 0,
            repairs: Vec::new(),
            groups: f
                .groups
                .iter()
                .map(|(name, g)| GroupStats {
                    name: name.clone(),
                    floor: g.floor,
                    unread: g.unread,
                    leased: g.leased,
                    backlog: g.unread + g.leased,
                    dead_lettered: g.dead_lettered,
                    acked: acked.get(name).copied().unwrap_or(0),
                    lease_expiries: None,
                })
                .collect(),
            replicas: f.replicas.clone(),
            fsync_time: Default::default(),
        }
    }

    fn changed(&self) -> Changed<'_> {
        let mut notified = Box::pin(self.notify.notified());
        notified.as_mut().enable();
        notified
    }
}
