//! [`JsQueue`]: one queue on JetStream, the [`QueueHandle`] the node API and push
//! delivery use. Publish pipelines a batch (every message sent, then every ack awaited);
//! fetch pulls from the group's durable consumer, moving a message delivered once too
//! often to the dead-letter queue; ack and nack go to the delivery's ack subject and wait
//! for the server's answer (an ack's comes once a quorum of replicas has it).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::{self, PullConsumer};
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::response::Response;
use async_nats::jetstream::{self, ErrorCode};
use async_nats::{Client, HeaderMap, RequestErrorKind};
use async_trait::async_trait;
use bytes::Bytes;
use strata_manifest::QueueSpec;
use strata_queue::{
    Changed, FetchOptions, GroupStats, Message, NewMessage, Published, QueueError, QueueHandle, QueueStats, MAX_ATTR,
};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::leases::{Keep, Key, Known, Leases};
use super::names::{self, Names, CORRELATION_ID, REPLY_TO};
use super::pull::{pull, Ended, PullError};

/// Most messages asked for in one pull request.
const PULL_BATCH: usize = 1000;
/// How long one ack, nack or term waits for the server's answer, and how many times it
/// is sent (a consumer whose leader moved answers the next one).
const ACK_TIMEOUT: Duration = Duration::from_secs(2);
const ACK_ATTEMPTS: usize = 3;
/// How long a publish whose dedupe id is still being stored by another publish is tried
/// again before the queue answers unavailable.
const IN_PROCESS_RETRIES: usize = 100;

/// JetStream's "duplicate message id is in process": the first publish of that id is not
/// stored yet.
const DUPLICATE_IN_PROCESS: ErrorCode = ErrorCode(10158);
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
    notify: Notify,
    /// Cancelled when the queue is deleted (here or seen gone from JetStream): its waiting
    /// fetches end.
    pub gone: CancellationToken,
}

/// What a settle sends.
#[derive(Debug, Clone, Copy)]
enum Settle {
    Ack,
    Nak,
}

impl Settle {
    fn word(self) -> Bytes {
        match self {
            Settle::Ack => Bytes::from_static(b"+ACK"),
            Settle::Nak => Bytes::from_static(b"-NAK"),
        }
    }
}

impl JsQueue {
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

    /// Publishes one message and waits for its ack; a dedupe id another publish is still
    /// storing is tried again until that one is stored.
    async fn publish_one(
        &self,
        subject: &str,
        payload: Bytes,
        headers: Option<HeaderMap>,
    ) -> Result<jetstream::publish::PublishAck, jetstream::context::PublishError> {
        let mut tries = 0;
        loop {
            let mut message = PublishMessage::build().payload(payload.clone());
            if let Some(h) = &headers {
                message = message.headers(h.clone());
            }
            let result = match self.core.js.send_publish(subject.to_string(), message).await {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match result {
                Err(e) if error_code(&e) == Some(DUPLICATE_IN_PROCESS) && tries < IN_PROCESS_RETRIES => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => return other,
            }
        }
    }

    fn publish_error(&self, index: usize, size: usize, e: &jetstream::context::PublishError) -> QueueError {
        match e.kind() {
            PublishErrorKind::StreamNotFound => QueueError::UnknownQueue(self.name.clone()),
            PublishErrorKind::MaxPayloadExceeded => QueueError::TooLarge {
                index,
                size: size as u64,
                limit: self.spec.max_message_bytes,
            },
            _ if error_code(e) == Some(ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM) => QueueError::TooLarge {
                index,
                size: size as u64,
                limit: self.spec.max_message_bytes,
            },
            _ => QueueError::Unavailable(format!(
                "publish to queue {:?} on JetStream: {e} (messages of the batch before it may be stored: \
                 publish again with dedupe ids to store each once)",
                self.name
            )),
        }
    }

    /// Notes what a publish stored in the figures and tells every node.
    async fn published(&self, stored: &[(u64, usize)]) {
        if stored.is_empty() {
            return;
        }
        {
            let mut f = self.figures_mut();
            for &(offset, bytes) in stored {
                f.next_offset = f.next_offset.max(offset + 1);
                f.messages += 1;
                f.bytes += bytes as u64;
            }
        }
        self.notify.notify_waiters();
        if let Err(e) = self
            .core
            .client
            .publish(self.core.names.wake(&self.name), Bytes::new())
            .await
        {
            tracing::debug!(queue = %self.name, "announce a publish: {e}");
        }
    }

    /// One pull for `group`: the messages handed out (leased here for `lease`), how many
    /// were moved to the dead-letter queue instead, and how the pull ended.
    async fn take(
        &self,
        consumer: &PullConsumer,
        group: &str,
        batch: usize,
        max_bytes: usize,
        wait: Option<Duration>,
        lease: Duration,
    ) -> Result<(Vec<Message>, usize, Ended), QueueError> {
        let (raw, ended) = match pull(&self.core.client, consumer, batch, max_bytes, wait, &self.gone).await {
            Ok(got) => got,
            Err(PullError::Gone) => return Err(QueueError::UnknownQueue(self.name.clone())),
            Err(PullError::Unavailable(why)) => {
                return Err(QueueError::Unavailable(format!(
                    "fetch from queue {:?} on JetStream: {why}",
                    self.name
                )))
            }
        };
        let now = Instant::now();
        let keep = match lease.cmp(&self.lease_of_queue()) {
            std::cmp::Ordering::Equal => Keep::Server,
            std::cmp::Ordering::Less => Keep::GiveBack,
            std::cmp::Ordering::Greater => Keep::Extend {
                every: self.lease_of_queue() / 2,
            },
        };
        let mut out = Vec::with_capacity(raw.len());
        let mut dead = 0;
        for m in raw {
            let Some(ack_subject) = m.reply.as_ref().map(|s| s.to_string()) else {
                continue;
            };
            let Some(d) = names::parse_ack_subject(&ack_subject) else {
                tracing::warn!(queue = %self.name, subject = ack_subject, "a delivery without a readable ack subject");
                continue;
            };
            let offset = d.stream_seq.saturating_sub(1);
            let max = u64::from(self.spec.max_deliveries);
            if max > 0 && d.deliveries > max {
                if self.dead_letter(group, &m, d.stream_seq, &ack_subject).await {
                    dead += 1;
                }
                continue;
            }
            self.core.leases.insert(
                Key {
                    queue: self.name.clone(),
                    group: group.to_string(),
                    offset,
                },
                ack_subject,
                now + lease,
                keep,
            );
            let headers = m.headers.as_ref();
            out.push(Message {
                offset,
                deliveries: u32::try_from(d.deliveries).unwrap_or(u32::MAX),
                timestamp_ms: d.timestamp_ns / 1_000_000,
                reply_to: names::header(headers, REPLY_TO),
                correlation_id: names::header(headers, CORRELATION_ID),
                payload: m.payload,
            });
        }
        Ok((out, dead, ended))
    }

    /// Moves a message delivered once too often to the dead-letter queue, then ends its
    /// delivery (`+TERM`). True when moved. Anything that fails leaves it leased: it comes
    /// back after the lease and is moved then (the copy's id, `dead-GROUP-SEQ`, keeps
    /// the dead-letter queue from storing it twice within its dedupe window).
    async fn dead_letter(&self, group: &str, m: &async_nats::Message, seq: u64, ack_subject: &str) -> bool {
        let Some(dlq) = &self.dlq else { return false };
        let mut headers = HeaderMap::new();
        headers.insert(names::MSG_ID, format!("dead-{group}-{seq}").as_str());
        for name in [REPLY_TO, CORRELATION_ID] {
            if let Some(v) = names::header(m.headers.as_ref(), name) {
                headers.insert(name, v.as_str());
            }
        }
        let subject = self.core.names.dead_letter_subject(&self.name, group);
        let ack = match self.publish_one(&subject, m.payload.clone(), Some(headers)).await {
            Ok(ack) => ack,
            Err(e) => {
                tracing::error!(queue = %self.name, group, offset = seq - 1, "dead-lettering failed: {e}");
                return false;
            }
        };
        if let Err(e) = settle_one(&self.core.client, ack_subject, Bytes::from_static(b"+TERM")).await {
            tracing::error!(queue = %self.name, group, offset = seq - 1, "ending a dead letter's delivery failed: {e}");
        }
        if !ack.duplicate {
            dlq.published(&[(ack.sequence.saturating_sub(1), m.payload.len())])
                .await;
        }
        if let Some(g) = self.figures_mut().groups.get_mut(group) {
            g.dead_lettered += 1;
        }
        tracing::warn!(queue = %self.name, group, offset = seq - 1, "moved to {}", dlq.name);
        true
    }

    /// Acks or naks `offsets` for `group`: (done, ignored).
    async fn settle(&self, group: &str, offsets: &[u64], how: Settle) -> Result<(usize, usize), QueueError> {
        self.check_open()?;
        if !strata_manifest::is_queue_name(group) {
            return Err(QueueError::UnknownGroup(group.to_string()));
        }
        let unique: BTreeSet<u64> = offsets.iter().copied().collect();
        let mut ignored = offsets.len() - unique.len();
        // (key, ack subject, leased here until)
        let mut send: Vec<(Key, String, Option<Instant>)> = Vec::new();
        let mut unknown = Vec::new();
        for offset in unique {
            let key = Key {
                queue: self.name.clone(),
                group: group.to_string(),
                offset,
            };
            match self.core.leases.settle(&key) {
                Known::Leased(subject) => send.push((key, subject, Some(Instant::now() + self.lease_of_queue()))),
                Known::Settled => ignored += 1,
                Known::Unknown => unknown.push(key),
            }
        }
        let known_group = self
            .consumers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(group);
        if !unknown.is_empty() || !known_group {
            let info = match self.consumer_info(group).await {
                Ok(info) => info,
                Err(e) => {
                    for (key, subject, until) in send {
                        self.core
                            .leases
                            .unsettle(key, subject, until.unwrap_or_else(Instant::now));
                    }
                    return Err(e);
                }
            };
            // Not handed out here: leased to the group through another node, as far as
            // the consumer tells (delivered, above its ack floor, something pending).
            for key in unknown {
                let seq = key.offset + 1;
                let pending = info.num_ack_pending > 0
                    && seq > info.ack_floor.stream_sequence
                    && seq <= info.delivered.stream_sequence;
                if pending {
                    let subject =
                        names::rebuilt_ack_subject(&self.stream, group, seq, info.delivered.consumer_sequence);
                    send.push((key, subject, None));
                } else {
                    ignored += 1;
                }
            }
        }
        let answers = futures_util::future::join_all(
            send.iter()
                .map(|(_, s, _)| settle_one(&self.core.client, s, how.word())),
        )
        .await;
        let mut done = 0;
        let mut failed = None;
        for ((key, subject, until), answer) in send.into_iter().zip(answers) {
            match answer {
                Ok(()) => done += 1,
                Err(e) => {
                    if let Some(until) = until {
                        self.core.leases.unsettle(key, subject, until);
                    }
                    failed.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failed {
            return Err(QueueError::Unavailable(format!(
                "{} on queue {:?} (group {group:?}) got no answer from JetStream: {e}; {done} went through, send the rest again",
                match how {
                    Settle::Ack => "an ack",
                    Settle::Nak => "a nack",
                },
                self.name
            )));
        }
        if done > 0 {
            self.refresh_group(group).await;
            if matches!(how, Settle::Nak) {
                self.notify.notify_waiters();
            }
        }
        Ok((done, ignored))
    }

    /// Reads `group`'s figures from its consumer now (after an ack, so that the backlog a
    /// caller reads next is current).
    async fn refresh_group(&self, group: &str) {
        if let Ok(info) = self.consumer_info(group).await {
            let mut f = self.figures_mut();
            let first = f.first_offset;
            let dead = f.groups.get(group).map_or(0, |g| g.dead_lettered);
            f.groups
                .insert(group.to_string(), GroupFigures::from_consumer(&info, first, dead));
        }
    }
}

/// Sends `word` to an ack subject and waits for the server's answer (tried again when
/// the consumer's leader does not answer).
pub(crate) async fn settle_one(client: &Client, subject: &str, word: Bytes) -> Result<(), String> {
    let mut last = String::new();
    for attempt in 0..ACK_ATTEMPTS {
        let request = async_nats::Request::new()
            .payload(word.clone())
            .timeout(Some(ACK_TIMEOUT));
        match client.send_request(subject.to_string(), request).await {
            Ok(_) => return Ok(()),
            Err(e) => {
                last = e.to_string();
                if e.kind() == RequestErrorKind::NoResponders && attempt + 1 < ACK_ATTEMPTS {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
    Err(last)
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
        self.check_open()?;
        let limit = self.spec.max_message_bytes;
        let max_payload = self.core.client.server_info().max_payload;
        let dedupe = self.spec.dedupe_window_ms > 0;
        let mut headers = Vec::with_capacity(messages.len());
        for (i, m) in messages.iter().enumerate() {
            if m.payload.len() as u64 > limit {
                return Err(QueueError::TooLarge {
                    index: i,
                    size: m.payload.len() as u64,
                    limit,
                });
            }
            for (what, attr) in [
                ("dedupe_id", &m.dedupe_id),
                ("reply_to", &m.reply_to),
                ("correlation_id", &m.correlation_id),
            ] {
                if attr.as_ref().is_some_and(|a| a.len() > MAX_ATTR || a.is_empty()) {
                    return Err(QueueError::BadInput(format!(
                        "message {i}: {what} must be 1 to {MAX_ATTR} bytes"
                    )));
                }
            }
            let (h, len) = names::headers(m, dedupe);
            // The servers' max_payload bounds a message with its headers, whatever the
            // queue allows.
            if max_payload > 0 && m.payload.len() + len > max_payload {
                return Err(QueueError::TooLarge {
                    index: i,
                    size: m.payload.len() as u64,
                    limit: max_payload.saturating_sub(len) as u64,
                });
            }
            headers.push(h);
        }
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        // A dedupe id seen earlier in the batch stores nothing (even with no window).
        let mut first_with: HashMap<&str, usize> = HashMap::new();
        let mut same_as: Vec<Option<usize>> = vec![None; messages.len()];
        let mut acks = Vec::with_capacity(messages.len());
        let mut failed: Option<QueueError> = None;
        for (i, (m, h)) in messages.iter().zip(headers).enumerate() {
            if let Some(id) = m.dedupe_id.as_deref() {
                if let Some(&j) = first_with.get(id) {
                    same_as[i] = Some(j);
                    continue;
                }
                first_with.insert(id, i);
            }
            let mut message = PublishMessage::build().payload(m.payload.clone());
            if let Some(h) = &h {
                message = message.headers(h.clone());
            }
            // Sent now, acks awaited below: the batch is pipelined, in order.
            match self.core.js.send_publish(self.subject.clone(), message).await {
                Ok(ack) => acks.push((i, h, ack)),
                Err(e) => {
                    failed = Some(self.publish_error(i, m.payload.len(), &e));
                    break;
                }
            }
        }
        let mut published: Vec<Option<Published>> = vec![None; messages.len()];
        let mut stored = Vec::new();
        for (i, h, ack) in acks {
            let mut answer = ack.await;
            if matches!(&answer, Err(e) if error_code(e) == Some(DUPLICATE_IN_PROCESS)) {
                answer = self.publish_one(&self.subject, messages[i].payload.clone(), h).await;
            }
            match answer {
                Ok(ack) => {
                    let offset = ack.sequence.saturating_sub(1);
                    if !ack.duplicate {
                        stored.push((offset, messages[i].payload.len()));
                    }
                    published[i] = Some(Published {
                        offset,
                        duplicate: ack.duplicate,
                    });
                }
                Err(e) => {
                    failed.get_or_insert_with(|| self.publish_error(i, messages[i].payload.len(), &e));
                }
            }
        }
        self.published(&stored).await;
        if let Some(e) = failed {
            return Err(e);
        }
        let mut out = Vec::with_capacity(messages.len());
        for i in 0..messages.len() {
            let p = match same_as[i] {
                Some(j) => Published {
                    offset: out.get(j).map_or(0, |p: &Published| p.offset),
                    duplicate: true,
                },
                None => published[i].expect("every message sent was answered"),
            };
            out.push(p);
        }
        Ok(out)
    }

    async fn fetch(&self, group: &str, opts: FetchOptions) -> Result<Vec<Message>, QueueError> {
        if opts.max == 0 {
            return Err(QueueError::BadInput("max must be at least 1".into()));
        }
        if !strata_manifest::is_queue_name(group) {
            return Err(QueueError::BadInput(format!(
                "group {group:?} is not a group name (at most 64 lowercase letters, digits, - and _)"
            )));
        }
        self.check_open()?;
        let consumer = self.consumer(group).await?;
        let lease = opts.lease.unwrap_or_else(|| self.lease_of_queue());
        let end = Instant::now() + opts.wait;
        // The server counts subject and headers in a pull's bytes; 0 is no bound.
        let bound = |bytes: usize| if bytes >= i64::MAX as usize { 0 } else { bytes.max(1) };
        let mut out: Vec<Message> = Vec::new();
        let mut bytes = 0usize;
        loop {
            let want = opts.max - out.len();
            if want == 0 || (!out.is_empty() && bytes >= opts.max_bytes) {
                break;
            }
            let now = Instant::now();
            // Nothing yet and time left: a long poll (the first message to come and what
            // is there with it); else what is there now.
            let wait = (out.is_empty() && now < end).then(|| end - now);
            let room = opts.max_bytes.saturating_sub(bytes);
            let (got, dead, ended) = self
                .take(&consumer, group, want.min(PULL_BATCH), bound(room), wait, lease)
                .await?;
            let n = got.len();
            for m in got {
                bytes += m.payload.len();
                out.push(m);
            }
            match ended {
                Ended::Full => {}
                // At least one message is always handed out, whatever its size.
                Ended::TooLarge if out.is_empty() => {
                    let (got, _, _) = self.take(&consumer, group, 1, 0, None, lease).await?;
                    out.extend(got);
                    if out.is_empty() {
                        break;
                    }
                }
                Ended::TooLarge => break,
                // Moved to the dead-letter queue: look again.
                Ended::Dry if dead > 0 && n == 0 => {}
                Ended::Dry if !out.is_empty() || Instant::now() >= end => break,
                // The request ended early (a leader changed, other requests of the group
                // claim what is there): again, after a breath.
                Ended::Dry => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        if !out.is_empty() {
            let mut f = self.figures_mut();
            if let Some(g) = f.groups.get_mut(group) {
                let n = out.len() as u64;
                g.leased += n;
                g.unread = g.unread.saturating_sub(n);
            }
        }
        Ok(out)
    }

    async fn ack(&self, group: &str, offsets: &[u64]) -> Result<(usize, usize), QueueError> {
        self.settle(group, offsets, Settle::Ack).await
    }

    async fn nack(&self, group: &str, offsets: &[u64]) -> Result<(usize, usize), QueueError> {
        self.settle(group, offsets, Settle::Nak).await
    }

    fn stats(&self) -> QueueStats {
        let f = self.figures().clone();
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
                })
                .collect(),
        }
    }

    fn changed(&self) -> Changed<'_> {
        let mut notified = Box::pin(self.notify.notified());
        notified.as_mut().enable();
        notified
    }
}
