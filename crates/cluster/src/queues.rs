//! The queues of a cluster, on JetStream: [`JetStreamQueues`] implements
//! [`QueueBackend`] with the embedded engine's contract (`docs/queues.md`, "In a cluster:
//! queues on JetStream"), as far as JetStream allows, so that every node of the cluster
//! sees the same queues and an acknowledged message survives losing a machine.
//!
//! | call | answered when |
//! |---|---|
//! | [`QueueBackend::create`] | both streams (the queue's and its dead-letter queue's) exist, replicated |
//! | [`QueueBackend::delete`] | both streams are deleted (this node's waiting fetches ended) |
//! | [`QueueBackend::get`], [`QueueBackend::list`] | looked up in this node's table (a queue made on another node appears within about a second) |
//! | [`QueueHandle::publish`] | every message is acknowledged by JetStream: stored by a quorum of the stream's replicas (on disk per the servers' `sync_interval`) |
//! | [`QueueHandle::fetch`] | messages are delivered to the group's consumer (or the long poll ran out) |
//! | [`QueueHandle::ack`] | the consumer's leader answered each ack, after a quorum of its replicas has it |
//! | [`QueueHandle::nack`] | the consumer's leader answered each nak (redelivery at once) |
//! | [`QueueBackend::request`] | the message is acknowledged and a reply came (from any node), or the deadline passed |
//! | [`QueueBackend::reply`] | the waiting publisher (on any node) took it, or it is acknowledged in the named queue |
//!
//! Layout:
//! - [`JetStreamQueues`] (here): the table of queues, create and delete, request and
//!   reply over core NATS inboxes, the background tasks.
//! - `handle`: one queue ([`QueueHandle`]) and the figures behind `stats()`; its
//!   `publish`, `fetch` (with dead-lettering) and `settle` (ack and nack by offset).
//! - `pull`: one pull request, giving back what arrives after its fetch was cancelled.
//! - `leases`: what this node handed out (ack subjects by offset, leases of a fetch's
//!   own length), and the task that keeps those leases.
//! - `refresh`: the table and the figures read again every second; space every group is
//!   done with reclaimed.
//! - `names`: streams, subjects, configurations, headers, ack subjects.

mod handle;
mod leases;
mod names;
mod pull;
mod refresh;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::{bail, Context as _};
use async_nats::jetstream::{self, ErrorCode};
use async_nats::{HeaderMap, RequestErrorKind};
use async_trait::async_trait;
use futures_util::StreamExt;
use strata_manifest::QueueSpec;
use strata_queue::{NewMessage, Published, QueueBackend, QueueError, QueueHandle, Replied, Reply, DLQ_SUFFIX};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::settle::settled_if;
use handle::{error_code, Core, JsQueue};
use leases::Leases;
use names::{Names, CORRELATION_ID};

const STREAM_NOT_FOUND: ErrorCode = ErrorCode(10059);
const STREAM_NAME_IN_USE: ErrorCode = ErrorCode(10058);

/// How often a reply to an inbox nobody seems to wait on is tried again (the waiting
/// publisher's interest may still be on its way through the cluster's routes).
const INBOX_ATTEMPTS: usize = 3;
/// How long a reply waits for the publisher to take it.
const INBOX_TIMEOUT: Duration = Duration::from_secs(5);

/// A node's view of the cluster's queues, kept in JetStream under one prefix.
pub struct JetStreamQueues {
    shared: Arc<Shared>,
    stop: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// What the backend and its tasks share.
pub(crate) struct Shared {
    core: Arc<Core>,
    replicas: usize,
    declared: BTreeSet<String>,
    table: RwLock<BTreeMap<String, Arc<JsQueue>>>,
    failed: RwLock<BTreeMap<String, String>>,
    /// Bumped by every create and delete here, so that a listing older than one is not
    /// applied (`refresh`).
    version: AtomicU64,
    /// Held across "exists?" and making the streams, and across a delete.
    creating: tokio::sync::Mutex<()>,
    /// Makes inbox ids unique across nodes and restarts.
    inbox_prefix: String,
    next_inbox: AtomicU64,
}

impl Shared {
    pub(crate) fn table(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<JsQueue>>> {
        self.table.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn table_mut(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<JsQueue>>> {
        self.table.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn failed_mut(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, String>> {
        self.failed.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The handles of queue `name` and its dead-letter queue.
    pub(crate) fn handles(&self, name: &str, spec: QueueSpec, dlq_spec: QueueSpec) -> (Arc<JsQueue>, Arc<JsQueue>) {
        let dlq = Arc::new(JsQueue::new(
            self.core.clone(),
            &format!("{name}{DLQ_SUFFIX}"),
            dlq_spec,
            None,
        ));
        let queue = Arc::new(JsQueue::new(self.core.clone(), name, spec, Some(dlq.clone())));
        (queue, dlq)
    }

    /// Makes (or with `replace`, updates to `spec`) the two streams of queue `name`,
    /// asking through `js` (the backend's context, or one with a shorter timeout).
    /// Answers the spec the queue has and whether this call made it.
    async fn make_streams(
        &self,
        js: &jetstream::Context,
        name: &str,
        spec: &QueueSpec,
        replace: bool,
    ) -> Result<(QueueSpec, bool), QueueError> {
        let names = &self.core.names;
        let dlq_name = format!("{name}{DLQ_SUFFIX}");
        let config = names.stream_config(name, spec, self.replicas);
        let dlq_config = names.stream_config(&dlq_name, &names::dlq_spec(spec), self.replicas);
        let unavailable = |what: &str, e: &dyn std::fmt::Display| {
            QueueError::Unavailable(format!("could not {what} queue {name:?} on JetStream: {e}"))
        };
        if replace {
            js.create_or_update_stream(dlq_config)
                .await
                .map_err(|e| unavailable("make the dead-letter queue of", &e))?;
            js.create_or_update_stream(config)
                .await
                .map_err(|e| unavailable("make", &e))?;
            return Ok((spec.clone(), true));
        }
        if let Some(existing) = self.existing(js, name).await? {
            return Ok((existing, false));
        }
        // The dead-letter queue first: a queue's stream never exists without it.
        if let Err(e) = js.create_stream(dlq_config).await {
            if error_code(&e) != Some(STREAM_NAME_IN_USE) {
                return Err(unavailable("make the dead-letter queue of", &e));
            }
        }
        match js.create_stream(config).await {
            Ok(_) => Ok((spec.clone(), true)),
            // Made by another node meanwhile, with other settings: that one stands.
            Err(e) if error_code(&e) == Some(STREAM_NAME_IN_USE) => match self.existing(js, name).await? {
                Some(existing) => Ok((existing, false)),
                None => Err(unavailable("make", &e)),
            },
            Err(e) => Err(unavailable("make", &e)),
        }
    }

    /// The spec of queue `name` if its stream exists.
    async fn existing(&self, js: &jetstream::Context, name: &str) -> Result<Option<QueueSpec>, QueueError> {
        let stream = self.core.names.stream(name);
        match js.get_stream(&stream).await {
            Ok(mut s) => {
                let info = s
                    .info()
                    .await
                    .map_err(|e| QueueError::Unavailable(format!("read queue {name:?} on JetStream: {e}")))?;
                refresh::spec_of(info).map(Some).map_err(|reason| QueueError::Failed {
                    queue: name.to_string(),
                    reason,
                })
            }
            Err(e) if error_code(&e) == Some(STREAM_NOT_FOUND) => Ok(None),
            Err(e) => Err(QueueError::Unavailable(format!(
                "look up queue {name:?} on JetStream: {e}"
            ))),
        }
    }

    /// Whether the stream of queue `name` (or dead-letter queue) exists: false only when
    /// JetStream says it is not there.
    pub(crate) async fn stream_exists(&self, name: &str) -> Result<bool, QueueError> {
        stream_exists(&self.core, name).await
    }

    /// Puts the handles of a queue just made into the table (or finds those a refresh put
    /// there meanwhile).
    fn install(&self, name: &str, spec: QueueSpec) -> Arc<JsQueue> {
        let mut table = self.table_mut();
        if let Some(q) = table.get(name) {
            return q.clone();
        }
        let (queue, dlq) = self.handles(name, spec.clone(), names::dlq_spec(&spec));
        table.insert(format!("{name}{DLQ_SUFFIX}"), dlq);
        table.insert(name.to_string(), queue.clone());
        self.failed_mut().remove(name);
        self.version.fetch_add(1, Ordering::SeqCst);
        queue
    }
}

/// Whether the stream of queue `name` exists: false only when JetStream says so.
pub(crate) async fn stream_exists(core: &Core, name: &str) -> Result<bool, QueueError> {
    let subject = format!("STREAM.INFO.{}", core.names.stream(name));
    let response: Result<jetstream::response::Response<serde_json::Value>, _> =
        core.js.request(subject, &serde_json::json!({})).await;
    match response {
        Ok(jetstream::response::Response::Ok(_)) => Ok(true),
        Ok(jetstream::response::Response::Err { error }) if error.error_code() == STREAM_NOT_FOUND => Ok(false),
        Ok(jetstream::response::Response::Err { error }) => Err(QueueError::Unavailable(error.to_string())),
        Err(e) => Err(QueueError::Unavailable(e.to_string())),
    }
}

impl JetStreamQueues {
    /// Opens the queues kept in JetStream under `prefix` (one subject token: letters,
    /// digits, `-`, `_`), each stream replicated `replicas` times, and makes or updates
    /// the `declared` ones (a declared spec replaces a stored one). A declared queue that
    /// cannot be made is reported by [`QueueBackend::failures`]; every other one works.
    /// Starts the tasks that keep the table and the figures current, until
    /// [`QueueBackend::close`] or drop.
    pub async fn open(
        js: jetstream::Context,
        prefix: &str,
        replicas: usize,
        declared: &BTreeMap<String, QueueSpec>,
    ) -> anyhow::Result<JetStreamQueues> {
        if !crate::is_key_safe(prefix) {
            bail!(
                "the queues' prefix {prefix:?} must be letters, digits, - and _ (it starts subjects and stream names)"
            );
        }
        let client = js.client();
        let pid = std::process::id();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let core = Arc::new(Core {
            js,
            client: client.clone(),
            names: Names {
                prefix: prefix.to_string(),
            },
            leases: Leases::default(),
            closed: CancellationToken::new(),
        });
        let shared = Arc::new(Shared {
            core: core.clone(),
            replicas: replicas.max(1),
            declared: declared.keys().cloned().collect(),
            table: RwLock::new(BTreeMap::new()),
            failed: RwLock::new(BTreeMap::new()),
            version: AtomicU64::new(0),
            creating: tokio::sync::Mutex::new(()),
            inbox_prefix: format!("{pid:x}{nanos:x}"),
            next_inbox: AtomicU64::new(1),
        });
        for (name, spec) in declared {
            strata_manifest::check_queue(name, spec).with_context(|| format!("declared queue {name:?}"))?;
            // Every node running the app makes them at once: retried while another
            // node's new stream elects its leader (`settle`).
            let made = settled_if(
                &core.js,
                name,
                |e| matches!(e, QueueError::Unavailable(_)),
                |js| {
                    let shared = shared.clone();
                    async move { shared.make_streams(&js, name, spec, true).await }
                },
            )
            .await;
            match made {
                Ok(_) => {
                    shared.install(name, spec.clone());
                }
                Err(e) => {
                    tracing::error!(queue = %name, "the declared queue could not be made on JetStream: {e}");
                    shared.failed_mut().insert(name.clone(), e.to_string());
                }
            }
        }
        // Listening before the first listing, so that no publish goes unseen.
        let wakes = client
            .subscribe(core.names.all_wakes())
            .await
            .context("subscribe to the queues' wake-ups")?;
        refresh::tick(&shared).await.context("list the queues on JetStream")?;
        let stop = CancellationToken::new();
        let tasks = vec![
            tokio::spawn(refresh::run(shared.clone(), stop.clone())),
            tokio::spawn({
                let core = core.clone();
                let stop = stop.clone();
                async move { core.leases.keep(core.client.clone(), stop).await }
            }),
            tokio::spawn(wake(shared.clone(), wakes, stop.clone())),
        ];
        Ok(JetStreamQueues {
            shared,
            stop,
            tasks: Mutex::new(tasks),
        })
    }

    /// Waits for the background tasks after [`QueueBackend::close`].
    pub async fn closed(&self) {
        let tasks: Vec<JoinHandle<()>> = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
    }

    /// Deliveries this node remembers (handed out, not yet settled, lease not over).
    pub fn leases_held(&self) -> usize {
        self.shared.core.leases.len()
    }
}

impl Drop for JetStreamQueues {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Wakes a queue's `changed()` when any node announces a publish to it.
async fn wake(shared: Arc<Shared>, mut wakes: async_nats::Subscriber, stop: CancellationToken) {
    loop {
        let m = tokio::select! {
            _ = stop.cancelled() => return,
            m = wakes.next() => m,
        };
        let Some(m) = m else { return };
        if let Some(name) = shared.core.names.woken(&m.subject) {
            if let Some(q) = shared.table().get(name) {
                q.wake();
            }
        }
    }
}

#[async_trait]
impl QueueBackend for JetStreamQueues {
    fn kind(&self) -> &'static str {
        "jetstream"
    }

    async fn create(&self, name: &str, spec: QueueSpec) -> Result<(Arc<dyn QueueHandle>, bool), QueueError> {
        strata_manifest::check_queue(name, &spec).map_err(|e| QueueError::BadInput(e.to_string()))?;
        if self.shared.core.closed.is_cancelled() {
            return Err(QueueError::Closed);
        }
        if let Some(q) = self.shared.table().get(name) {
            return Ok((q.clone() as Arc<dyn QueueHandle>, false));
        }
        let _creating = self.shared.creating.lock().await;
        if let Some(q) = self.shared.table().get(name) {
            return Ok((q.clone() as Arc<dyn QueueHandle>, false));
        }
        let replace = self.shared.declared.contains(name);
        let (spec, created) = self
            .shared
            .make_streams(&self.shared.core.js, name, &spec, replace)
            .await?;
        let queue = self.shared.install(name, spec);
        Ok((queue as Arc<dyn QueueHandle>, created))
    }

    fn get(&self, name: &str) -> Result<Arc<dyn QueueHandle>, QueueError> {
        if let Some(q) = self.shared.table().get(name) {
            return Ok(q.clone() as Arc<dyn QueueHandle>);
        }
        match self.shared.failed.read().unwrap_or_else(|e| e.into_inner()).get(name) {
            Some(reason) => Err(QueueError::Failed {
                queue: name.to_string(),
                reason: reason.clone(),
            }),
            None => Err(QueueError::UnknownQueue(name.to_string())),
        }
    }

    fn list(&self) -> Vec<Arc<dyn QueueHandle>> {
        self.shared
            .table()
            .values()
            .map(|q| q.clone() as Arc<dyn QueueHandle>)
            .collect()
    }

    fn failures(&self) -> Vec<(String, String)> {
        let failed = self.shared.failed.read().unwrap_or_else(|e| e.into_inner());
        failed.iter().map(|(n, r)| (n.clone(), r.clone())).collect()
    }

    async fn delete(&self, name: &str) -> Result<(), QueueError> {
        if let Some(owner) = name.strip_suffix(DLQ_SUFFIX) {
            return Err(QueueError::BadInput(format!(
                "{name:?} is the dead-letter queue of {owner:?}: it is deleted with {owner:?}, not on its own"
            )));
        }
        if !strata_manifest::is_queue_name(name) {
            return Err(QueueError::UnknownQueue(name.to_string()));
        }
        if self.shared.declared.contains(name) {
            return Err(QueueError::Declared(name.to_string()));
        }
        let _creating = self.shared.creating.lock().await;
        let core = &self.shared.core;
        let dlq_name = format!("{name}{DLQ_SUFFIX}");
        let mut found = false;
        for n in [name, dlq_name.as_str()] {
            match core.js.delete_stream(core.names.stream(n)).await {
                Ok(_) => found = true,
                Err(e) if error_code(&e) == Some(STREAM_NOT_FOUND) => {}
                Err(e) => {
                    return Err(QueueError::Unavailable(format!(
                        "delete queue {name:?} on JetStream: {e} (delete it again)"
                    )))
                }
            }
        }
        // Out of the table once gone from JetStream (a listing from before is not applied).
        let removed: Vec<Arc<JsQueue>> = {
            let mut table = self.shared.table_mut();
            let removed = [name, dlq_name.as_str()]
                .into_iter()
                .filter_map(|n| table.remove(n))
                .collect();
            self.shared.version.fetch_add(1, Ordering::SeqCst);
            removed
        };
        let was_failed = self.shared.failed_mut().remove(name).is_some();
        if !found && removed.is_empty() && !was_failed {
            return Err(QueueError::UnknownQueue(name.to_string()));
        }
        for q in &removed {
            q.gone.cancel();
            core.leases.forget_queue(&q.name);
        }
        tracing::info!(queue = %name, "queue deleted");
        Ok(())
    }

    async fn request(
        &self,
        queue: &str,
        mut message: NewMessage,
        deadline: Duration,
    ) -> Result<(Published, Reply), QueueError> {
        let q = QueueBackend::get(self, queue)?;
        let n = self.shared.next_inbox.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{n}", self.shared.inbox_prefix);
        if message.correlation_id.is_none() {
            message.correlation_id = Some(id.clone());
        }
        message.reply_to = Some(format!("inbox:{id}"));
        let core = &self.shared.core;
        // Listening before the message can be seen, on whichever node it is consumed.
        let mut inbox = core
            .client
            .subscribe(core.names.inbox(&id))
            .await
            .map_err(|e| QueueError::Unavailable(format!("open a reply inbox: {e}")))?;
        let published = q.publish(vec![message]).await?.remove(0);
        if published.duplicate {
            return Err(QueueError::Duplicate(published.offset));
        }
        match tokio::time::timeout(deadline, inbox.next()).await {
            Ok(Some(m)) => {
                // Gone before the replier hears it was taken: a second reply finds nobody.
                let _ = inbox.unsubscribe().await;
                if let Some(to) = m.reply {
                    let _ = core.client.publish(to, bytes::Bytes::new()).await;
                }
                Ok((
                    published,
                    Reply {
                        correlation_id: names::header(m.headers.as_ref(), CORRELATION_ID),
                        payload: m.payload,
                        traceparent: names::header(m.headers.as_ref(), names::TRACEPARENT),
                    },
                ))
            }
            _ => Err(QueueError::NoReply(deadline.as_millis() as u64)),
        }
    }

    async fn reply(&self, reply_to: &str, reply: Reply) -> Result<Replied, QueueError> {
        if let Some(id) = reply_to.strip_prefix("inbox:") {
            if !crate::is_key_safe(id) {
                return Err(QueueError::NoInbox(reply_to.to_string()));
            }
            let core = &self.shared.core;
            let mut headers = HeaderMap::new();
            if let Some(c) = &reply.correlation_id {
                headers.insert(CORRELATION_ID, names::encode_value(c).as_str());
            }
            if let Some(t) = &reply.traceparent {
                headers.insert(names::TRACEPARENT, names::encode_value(t).as_str());
            }
            for attempt in 0..INBOX_ATTEMPTS {
                let request = async_nats::Request::new()
                    .payload(reply.payload.clone())
                    .headers(headers.clone())
                    .timeout(Some(INBOX_TIMEOUT));
                match core.client.send_request(core.names.inbox(id), request).await {
                    Ok(_) => return Ok(Replied::Inbox),
                    Err(e) if e.kind() == RequestErrorKind::NoResponders => {
                        if attempt + 1 < INBOX_ATTEMPTS {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                    Err(e) if e.kind() == RequestErrorKind::TimedOut => break,
                    Err(e) if e.kind() == RequestErrorKind::MaxPayloadExceeded => {
                        let max_payload = core.client.server_info().max_payload as u64;
                        return Err(QueueError::TooLarge {
                            index: 0,
                            size: reply.payload.len() as u64,
                            limit: max_payload.saturating_sub(1024),
                        });
                    }
                    Err(e) => return Err(QueueError::Unavailable(format!("send a reply: {e}"))),
                }
            }
            return Err(QueueError::NoInbox(reply_to.to_string()));
        }
        if let Some(name) = reply_to.strip_prefix("queue:") {
            let q = QueueBackend::get(self, name)?;
            let published = q
                .publish(vec![NewMessage {
                    payload: reply.payload,
                    dedupe_id: None,
                    reply_to: None,
                    correlation_id: reply.correlation_id,
                    traceparent: reply.traceparent,
                    dead_letter: None,
                }])
                .await?;
            return Ok(Replied::Queue(published[0].offset));
        }
        Err(QueueError::BadInput(format!(
            "reply_to {reply_to:?} is neither inbox:ID nor queue:NAME"
        )))
    }

    fn close(&self) {
        self.stop.cancel();
        self.shared.core.closed.cancel();
    }
}

impl std::fmt::Debug for JetStreamQueues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamQueues")
            .field("prefix", &self.shared.core.names.prefix)
            .field("queues", &self.shared.table().len())
            .finish()
    }
}
