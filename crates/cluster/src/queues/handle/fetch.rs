//! Fetching: pull requests to the group's consumer (a long poll when nothing is there),
//! each delivery leased here, a message delivered once too often moved to the
//! dead-letter queue instead.

use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::HeaderMap;
use bytes::Bytes;
use strata_queue::{DeadLetter, FetchOptions, Message, QueueError};
use tokio::time::Instant;

use super::{settle_one, JsQueue};
use crate::queues::leases::{Keep, Key};
use crate::queues::names::{self, CORRELATION_ID, DEAD_LETTER, REPLY_TO, TRACEPARENT};
use crate::queues::pull::{pull, Ended, PullError};

/// How long a fetch asks again while no server serves its group's consumer.
const LEADER_PATIENCE: Duration = Duration::from_secs(5);

/// Most messages asked for in one pull request.
const PULL_BATCH: usize = 1000;

impl JsQueue {
    /// [`strata_queue::QueueHandle::fetch`].
    pub(super) async fn fetch_messages(&self, group: &str, opts: FetchOptions) -> Result<Vec<Message>, QueueError> {
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
        // A consumer just made (a group's first fetch), or one whose server just died,
        // has no leader for a moment: no server answers its pulls. Asked again for a few
        // seconds before the fetch is refused.
        let patience = tokio::time::Instant::now() + LEADER_PATIENCE;
        let (raw, ended) = loop {
            match pull(&self.core.client, consumer, batch, max_bytes, wait, &self.gone).await {
                Ok(got) => break got,
                Err(PullError::Gone) => return Err(QueueError::UnknownQueue(self.name.clone())),
                Err(PullError::Unavailable(_)) if tokio::time::Instant::now() < patience => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(PullError::Unavailable(why)) => {
                    return Err(QueueError::Unavailable(format!(
                        "fetch from queue {:?} on JetStream: {why}",
                        self.name
                    )))
                }
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
                let origin = DeadLetter {
                    group: group.to_string(),
                    offset,
                    timestamp_ms: d.timestamp_ns / 1_000_000,
                    deliveries: u32::try_from(d.deliveries - 1).unwrap_or(u32::MAX),
                };
                if self.dead_letter(group, &m, d.stream_seq, &ack_subject, origin).await {
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
                traceparent: names::header(headers, TRACEPARENT),
                dead_letter: names::header(headers, DEAD_LETTER).and_then(|t| DeadLetter::parse(&t)),
                payload: m.payload,
            });
        }
        Ok((out, dead, ended))
    }

    /// Moves a message delivered once too often to the dead-letter queue, then ends its
    /// delivery (`+TERM`). True when moved. Anything that fails leaves it leased: it comes
    /// back after the lease and is moved then (the copy's id, `dead-GROUP-SEQ`, keeps
    /// the dead-letter queue from storing it twice within its dedupe window).
    async fn dead_letter(
        &self,
        group: &str,
        m: &async_nats::Message,
        seq: u64,
        ack_subject: &str,
        origin: DeadLetter,
    ) -> bool {
        let Some(dlq) = &self.dlq else { return false };
        let mut headers = HeaderMap::new();
        headers.insert(names::MSG_ID, format!("dead-{group}-{seq}").as_str());
        headers.insert(DEAD_LETTER, names::encode_value(&origin.text()).as_str());
        for name in [REPLY_TO, CORRELATION_ID, TRACEPARENT] {
            // Copied as stored (encoded).
            if let Some(v) = m.headers.as_ref().and_then(|h| h.get(name)) {
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
            // Taken from the group's pending messages and never leased: done for it.
            g.dead_lettered += 1;
            g.unread = g.unread.saturating_sub(1);
        }
        tracing::warn!(queue = %self.name, group, offset = seq - 1, "moved to {}", dlq.name);
        true
    }
}
