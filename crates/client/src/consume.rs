//! Consuming as a group: fetch (JSON or compact), ack, nack, delete one.

use bytes::Bytes;
use http::Method;
use serde::{Deserialize, Serialize};

use crate::client::{parse, segment};
use crate::compact::{self, CompactMessage};
use crate::conn::Outgoing;
use crate::{Client, Error, TraceContext};
use strata_wire::JsonBody;

/// A message leased to a group by a fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub offset: u64,
    /// How many times it has been handed out, this time included.
    pub deliveries: u32,
    /// When it was published, Unix milliseconds.
    pub timestamp_ms: u64,
    pub body: Bytes,
    pub reply_to: Option<String>,
    pub correlation_id: Option<String>,
    /// The W3C `traceparent` to continue the publisher's trace with (the publish span),
    /// when the publish was traced; see [`Message::trace`].
    pub traceparent: Option<String>,
    /// In a dead-letter queue (`NAME.dlq`): where the message came from.
    pub dead_letter: Option<DeadLetter>,
}

/// Where a dead letter came from: the group of queue `NAME` that gave up on it, its
/// offset and publish time (Unix milliseconds) there, and how often that group had it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DeadLetter {
    pub group: String,
    pub offset: u64,
    pub timestamp_ms: u64,
    pub deliveries: u32,
}

impl Message {
    /// The trace to continue, for [`Client::traced`]: a reply, ack or publish made on
    /// `client.traced(message.trace())` is a span of the publisher's trace. None when the
    /// message carries no (well-formed) `traceparent`.
    pub fn trace(&self) -> Option<TraceContext> {
        TraceContext::new(self.traceparent.as_deref()?, None).ok()
    }
}

/// How many messages a fetch may hand out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchMax {
    /// Up to this many (at least 1).
    Count(u32),
    /// Every pending message (still bounded by `max_bytes`).
    All,
}

/// The query of a fetch; `None` leaves the node's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchOptions {
    /// Default 1.
    pub max: FetchMax,
    /// Long poll: with nothing to hand out, wait up to this long. Node default 0.
    pub wait_ms: Option<u64>,
    /// Payload bytes in the answer (one message is always returned). Node default 1 MiB.
    pub max_bytes: Option<u64>,
    /// This fetch's lease. Node default: the queue's `lease_ms`.
    pub lease_ms: Option<u64>,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            max: FetchMax::Count(1),
            wait_ms: None,
            max_bytes: None,
            lease_ms: None,
        }
    }
}

impl FetchOptions {
    /// Up to `n` messages, the node's defaults otherwise.
    pub fn max(n: u32) -> FetchOptions {
        FetchOptions {
            max: FetchMax::Count(n),
            ..FetchOptions::default()
        }
    }

    pub fn wait_ms(mut self, ms: u64) -> FetchOptions {
        self.wait_ms = Some(ms);
        self
    }

    fn query(&self) -> Result<String, Error> {
        let mut q = match self.max {
            FetchMax::Count(0) => return Err(Error::Invalid("a fetch must ask for at least 1 message".into())),
            FetchMax::Count(n) => format!("max={n}"),
            FetchMax::All => "max=all".to_string(),
        };
        for (key, value) in [
            ("wait_ms", self.wait_ms),
            ("max_bytes", self.max_bytes),
            ("lease_ms", self.lease_ms),
        ] {
            if let Some(v) = value {
                q.push_str(&format!("&{key}={v}"));
            }
        }
        Ok(q)
    }
}

/// What an ack or nack did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Settled {
    /// Deleted (ack) or given back (nack).
    pub count: u64,
    /// Offsets not leased to the group (already deleted, never fetched, unknown).
    pub ignored: u64,
}

impl Client {
    /// Leases the next unread messages to `group` (created on its first fetch).
    pub async fn fetch(&self, queue: &str, group: &str, options: &FetchOptions) -> Result<Vec<Message>, Error> {
        #[derive(Deserialize)]
        struct WireMessage {
            offset: u64,
            deliveries: u32,
            timestamp_ms: u64,
            #[serde(flatten)]
            body: JsonBody,
            reply_to: Option<String>,
            correlation_id: Option<String>,
            traceparent: Option<String>,
            dead_letter: Option<DeadLetter>,
        }
        #[derive(Deserialize)]
        struct Answer {
            messages: Vec<WireMessage>,
        }
        let path = fetch_path(queue, group, options)?;
        let out = Outgoing {
            accept: Some("application/json"),
            ..Outgoing::default()
        };
        let answer = self.call(Method::POST, &path, out).await?;
        let Answer { messages } = parse(&Method::POST, &path, &answer.body)?;
        messages
            .into_iter()
            .map(|m| {
                Ok(Message {
                    offset: m.offset,
                    deliveries: m.deliveries,
                    timestamp_ms: m.timestamp_ms,
                    body: m.body.into_bytes()?,
                    reply_to: m.reply_to,
                    correlation_id: m.correlation_id,
                    traceparent: m.traceparent,
                    dead_letter: m.dead_letter,
                })
            })
            .collect()
    }

    /// [`fetch`](Client::fetch) in the compact form: offsets, delivery counts and
    /// payloads only (no `traceparent` either), no JSON to parse. Payloads are slices of one buffer.
    pub async fn fetch_compact(
        &self,
        queue: &str,
        group: &str,
        options: &FetchOptions,
    ) -> Result<Vec<CompactMessage>, Error> {
        let path = fetch_path(queue, group, options)?;
        let out = Outgoing {
            accept: Some(compact::MEDIA_TYPE),
            ..Outgoing::default()
        };
        let answer = self.call(Method::POST, &path, out).await?;
        if let Some(ct) = &answer.content_type {
            if ct.as_bytes().starts_with(b"application/json") {
                return Err(Error::Protocol(format!(
                    "POST {path} asked for {} but the node answered JSON",
                    compact::MEDIA_TYPE
                )));
            }
        }
        compact::decode_fetch(&answer.body).map_err(Error::from)
    }

    /// Deletes messages leased to `group` (any order).
    pub async fn ack(&self, queue: &str, group: &str, offsets: &[u64]) -> Result<Settled, Error> {
        self.settle(queue, group, "ack", offsets).await
    }

    /// Gives messages back for immediate redelivery.
    pub async fn nack(&self, queue: &str, group: &str, offsets: &[u64]) -> Result<Settled, Error> {
        self.settle(queue, group, "nack", offsets).await
    }

    /// `DELETE .../messages/OFFSET`: deletes one message. An offset not leased to the
    /// group is [`Error::Api`] 404 ([`Error::is_not_found`]).
    pub async fn delete(&self, queue: &str, group: &str, offset: u64) -> Result<(), Error> {
        let path = format!(
            "/v1/queues/{}/groups/{}/messages/{offset}",
            segment(queue)?,
            segment(group)?
        );
        self.call(Method::DELETE, &path, Outgoing::default()).await.map(drop)
    }

    async fn settle(&self, queue: &str, group: &str, verb: &str, offsets: &[u64]) -> Result<Settled, Error> {
        #[derive(Serialize)]
        struct Offsets<'a> {
            offsets: &'a [u64],
        }
        #[derive(Deserialize)]
        struct Answer {
            acked: Option<u64>,
            nacked: Option<u64>,
            #[serde(default)]
            ignored: u64,
        }
        if offsets.is_empty() {
            return Ok(Settled::default());
        }
        let path = format!("/v1/queues/{}/groups/{}/{verb}", segment(queue)?, segment(group)?);
        let (_, a): (_, Answer) = self.call_json(Method::POST, &path, Some(&Offsets { offsets })).await?;
        let count = a.acked.or(a.nacked).ok_or_else(|| {
            Error::Protocol(format!(
                "the answer to POST {path} has no \"acked\" or \"nacked\" count"
            ))
        })?;
        Ok(Settled {
            count,
            ignored: a.ignored,
        })
    }
}

fn fetch_path(queue: &str, group: &str, options: &FetchOptions) -> Result<String, Error> {
    Ok(format!(
        "/v1/queues/{}/groups/{}/fetch?{}",
        segment(queue)?,
        segment(group)?,
        options.query()?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_query() {
        assert_eq!(FetchOptions::default().query().unwrap(), "max=1");
        let o = FetchOptions {
            max: FetchMax::All,
            wait_ms: Some(1000),
            max_bytes: None,
            lease_ms: Some(5),
        };
        assert_eq!(o.query().unwrap(), "max=all&wait_ms=1000&lease_ms=5");
        assert!(matches!(FetchOptions::max(0).query(), Err(Error::Invalid(_))));
        assert_eq!(
            fetch_path("orders", "bill ing", &FetchOptions::max(100).wait_ms(5)).unwrap(),
            "/v1/queues/orders/groups/bill%20ing/fetch?max=100&wait_ms=5"
        );
    }
}
