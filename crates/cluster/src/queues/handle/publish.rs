//! Publishing: a batch pipelined (every message sent, then every ack awaited), dedupe
//! ids repeated within a batch answered from it, a duplicate still being stored by
//! another publish tried again until it is, and a failed tail sent again while that is
//! safe (no leader took it, or a dedupe id keeps it from being stored twice).

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::ErrorCode;
use async_nats::HeaderMap;
use bytes::Bytes;
use strata_queue::{NewMessage, Placed, Published, QueueError, MAX_ATTR};
use tokio::time::Instant;

use super::{error_code, JsQueue};
use crate::queues::names;

/// How long a publish whose dedupe id is still being stored by another publish is tried
/// again before the queue answers unavailable.
const IN_PROCESS_RETRIES: usize = 100;

/// How long the failed tail of a batch is sent again, when that is safe (see
/// [`JsQueue::send_again`]), before the queue answers unavailable: a stream leader's
/// election, or the node's connection moving to another NATS server, takes seconds.
const RESEND_FOR: Duration = Duration::from_secs(30);

/// A message sent again by its dedupe id must reach the stream this long before the
/// stream forgets the id.
const RESEND_MARGIN: Duration = Duration::from_secs(1);

/// A batch's answers, in the order they were sent: the message's index, its headers, and
/// its ack or the last error.
type Answers = Vec<(usize, Option<HeaderMap>, Result<PublishAck, PublishError>)>;

/// JetStream's "duplicate message id is in process": the first publish of that id is not
/// stored yet.
const DUPLICATE_IN_PROCESS: ErrorCode = ErrorCode(10158);

impl JsQueue {
    /// [`strata_queue::QueueHandle::publish_placed`]: placed once every message is sent
    /// (one connection keeps their order to the stream).
    pub(super) async fn publish_batch(
        &self,
        messages: Vec<NewMessage>,
        placed: Placed,
    ) -> Result<Vec<Published>, QueueError> {
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
                ("traceparent", &m.traceparent),
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
        let sent_at = Instant::now();
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
                    failed = Some(self.publish_error(i, m.payload.len(), &e).await);
                    break;
                }
            }
        }
        // A producer's next batch waits for this one's place, not its acks: sending this
        // one's failed tail again later could store it after that batch.
        let may_resend = !placed.tells();
        drop(placed);
        let mut answers: Answers = Vec::with_capacity(acks.len());
        for (i, h, ack) in acks {
            let mut answer = ack.await;
            if matches!(&answer, Err(e) if error_code(e) == Some(DUPLICATE_IN_PROCESS)) {
                answer = self
                    .publish_one(&self.subject, messages[i].payload.clone(), h.clone())
                    .await;
            }
            answers.push((i, h, answer));
        }
        if failed.is_none() && may_resend {
            self.send_again(&messages, &mut answers, sent_at).await;
        }
        let mut published: Vec<Option<Published>> = vec![None; messages.len()];
        let mut stored = Vec::new();
        for (i, _, answer) in answers {
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
                    if failed.is_none() {
                        failed = Some(self.publish_error(i, messages[i].payload.len(), &e).await);
                    }
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

    /// Publishes one message and waits for its ack; a dedupe id another publish is still
    /// storing is tried again until that one is stored.
    pub(super) async fn publish_one(
        &self,
        subject: &str,
        payload: Bytes,
        headers: Option<HeaderMap>,
    ) -> Result<PublishAck, PublishError> {
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

    /// Sends the failed tail of a batch again, in order, until each is stored or
    /// [`RESEND_FOR`] has passed since the batch was sent, when that can store nothing
    /// twice nor out of order: the tail is one message (the batch's last), or none of it
    /// was stored (every failure is no responders); and each send of a message that may
    /// be stored already is safe to repeat ([`JsQueue::safe_to_resend`]). A stream
    /// leader's loss then costs the publisher the election's seconds instead of a 503.
    /// A message whose first send was stored after all answers as JetStream finds it:
    /// `duplicate`, at the offset that send took.
    async fn send_again(&self, messages: &[NewMessage], answers: &mut Answers, sent_at: Instant) {
        let Some(first) = answers.iter().position(|(_, _, a)| a.is_err()) else {
            return;
        };
        let tail = &mut answers[first..];
        let no_leader =
            |a: &Result<PublishAck, PublishError>| matches!(a, Err(e) if e.kind() == PublishErrorKind::StreamNotFound);
        if tail.len() > 1 && !tail.iter().all(|(_, _, a)| no_leader(a)) {
            return;
        }
        // Whether an earlier send of each may have been stored.
        let mut unknown: Vec<bool> = tail.iter().map(|(_, _, a)| !no_leader(a)).collect();
        let safe = |i: usize, e: &PublishError, unknown: bool| self.safe_to_resend(e, &messages[i], unknown, sent_at);
        if !tail
            .iter()
            .zip(&unknown)
            .all(|((i, _, a), &u)| matches!(a, Err(e) if safe(*i, e, u)))
        {
            return;
        }
        // No responders also answers a publish to a queue deleted meanwhile.
        if tail.iter().any(|(_, _, a)| no_leader(a)) {
            let exists = tokio::time::timeout(
                Duration::from_secs(1),
                crate::queues::stream_exists(&self.core, &self.name),
            );
            if matches!(exists.await, Ok(Ok(false))) {
                return;
            }
        }
        let give_up = sent_at + RESEND_FOR;
        let mut pause = Duration::from_millis(50);
        for ((i, headers, answer), unknown) in tail.iter_mut().zip(&mut unknown) {
            loop {
                if self.gone.is_cancelled() {
                    return;
                }
                match self
                    .publish_one(&self.subject, messages[*i].payload.clone(), headers.clone())
                    .await
                {
                    Ok(ack) => {
                        *answer = Ok(ack);
                        break;
                    }
                    Err(e) => {
                        *unknown |= e.kind() != PublishErrorKind::StreamNotFound;
                        let again = safe(*i, &e, *unknown) && Instant::now() + pause < give_up;
                        tracing::debug!(queue = %self.name, "publish sent again: {e}");
                        *answer = Err(e);
                        if !again {
                            return;
                        }
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(1));
                    }
                }
            }
        }
    }

    /// Whether a publish of `m` that failed with `e` may be sent again without storing
    /// it twice. When no earlier send of it may have been stored (`unknown` false: each
    /// found no responders), yes. Else only by its dedupe id, while the stream still
    /// remembers it (sent within the queue's dedupe window), and only after a failure
    /// that says nothing of the store (no responders, no ack in time, the connection
    /// broke).
    fn safe_to_resend(&self, e: &PublishError, m: &NewMessage, unknown: bool, sent_at: Instant) -> bool {
        let transient = matches!(
            e.kind(),
            PublishErrorKind::StreamNotFound | PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe
        );
        if !transient {
            return false;
        }
        !unknown
            || (m.dedupe_id.is_some()
                && self.spec.dedupe_window_ms > 0
                && sent_at.elapsed() + RESEND_MARGIN < names::dedupe_window(&self.spec))
    }

    /// What a failed publish tells the caller. No responders means no stream leader
    /// answered: deleted (then the queue is gone here too) or being elected.
    async fn publish_error(&self, index: usize, size: usize, e: &PublishError) -> QueueError {
        if e.kind() == PublishErrorKind::StreamNotFound {
            if matches!(crate::queues::stream_exists(&self.core, &self.name).await, Ok(false)) {
                self.gone.cancel();
                return QueueError::UnknownQueue(self.name.clone());
            }
            return QueueError::Unavailable(format!(
                "no JetStream server stores queue {:?} just now (its stream is electing a leader): publish again",
                self.name
            ));
        }
        match e.kind() {
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
    pub(super) async fn published(&self, stored: &[(u64, usize)]) {
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
}
