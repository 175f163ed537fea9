//! Acks and nacks by offset: through the ack subject of a delivery handed out here, or
//! one rebuilt from the consumer for a delivery another node handed out; each waits for
//! the server's answer.

use std::collections::BTreeSet;
use std::time::Duration;

use async_nats::{Client, RequestErrorKind};
use bytes::Bytes;
use strata_queue::QueueError;
use tokio::time::Instant;

use super::JsQueue;
use crate::queues::leases::{Key, Known};
use crate::queues::names;

/// How long one ack, nack or term waits for the server's answer, and how many times it
/// is sent (a consumer whose leader moved answers the next one).
const ACK_TIMEOUT: Duration = Duration::from_secs(2);
const ACK_ATTEMPTS: usize = 3;

/// What a settle sends.
#[derive(Debug, Clone, Copy)]
pub(super) enum Settle {
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
    /// Acks or naks `offsets` for `group`: (done, ignored).
    pub(super) async fn settle(&self, group: &str, offsets: &[u64], how: Settle) -> Result<(usize, usize), QueueError> {
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
            // The figures move here, as a fetch moves them, rather than by asking the
            // consumer (a round trip more per ack); the next refresh reads the server's.
            let mut f = self.figures_mut();
            if let Some(g) = f.groups.get_mut(group) {
                let n = done as u64;
                g.leased = g.leased.saturating_sub(n);
                if matches!(how, Settle::Nak) {
                    g.unread += n;
                }
            }
            drop(f);
            match how {
                Settle::Ack => self.count_acked(group, done),
                Settle::Nak => self.notify.notify_waiters(),
            }
        }
        Ok((done, ignored))
    }
}

/// Sends `word` to an ack subject and waits for the server's answer (tried again when
/// the consumer's leader does not answer).
pub(super) async fn settle_one(client: &Client, subject: &str, word: Bytes) -> Result<(), String> {
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
