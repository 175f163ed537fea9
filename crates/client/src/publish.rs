//! Publishing: one JSON message, a JSON batch, a compact batch, publish-and-wait for a
//! reply, and replying to a message's sender.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use crate::client::{parse, segment};
use crate::conn::Outgoing;
use crate::{compact, Client, Error, TraceContext};
use strata_wire::JsonBody;

/// A message to publish with its optional attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub body: Bytes,
    /// Within the queue's dedupe window, a second message with this id stores nothing.
    pub dedupe_id: Option<String>,
    /// Where a consumer's reply goes: `queue:NAME` (or an `inbox:` the node made).
    pub reply_to: Option<String>,
    pub correlation_id: Option<String>,
}

impl OutgoingMessage {
    pub fn new(body: impl Into<Bytes>) -> OutgoingMessage {
        OutgoingMessage {
            body: body.into(),
            ..OutgoingMessage::default()
        }
    }

    pub fn dedupe_id(mut self, id: impl Into<String>) -> OutgoingMessage {
        self.dedupe_id = Some(id.into());
        self
    }

    pub fn reply_to(mut self, to: impl Into<String>) -> OutgoingMessage {
        self.reply_to = Some(to.into());
        self
    }

    pub fn correlation_id(mut self, id: impl Into<String>) -> OutgoingMessage {
        self.correlation_id = Some(id.into());
        self
    }

    fn wire(&self) -> WireMessage<'_> {
        WireMessage {
            body: JsonBody::from_bytes(&self.body),
            dedupe_id: self.dedupe_id.as_deref(),
            reply_to: self.reply_to.as_deref(),
            correlation_id: self.correlation_id.as_deref(),
        }
    }
}

#[derive(Serialize)]
struct WireMessage<'a> {
    #[serde(flatten)]
    body: JsonBody,
    #[serde(skip_serializing_if = "Option::is_none")]
    dedupe_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_to: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    correlation_id: Option<&'a str>,
}

/// Where a published message landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Published {
    pub offset: u64,
    /// The dedupe id was seen within the window: nothing was stored, `offset` is the
    /// original's.
    #[serde(default)]
    pub duplicate: bool,
}

/// Where a JSON batch landed, in the batch's order.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PublishedBatch {
    pub offsets: Vec<u64>,
    /// How many were dropped as duplicates (their offsets are the originals').
    #[serde(default)]
    pub duplicates: u64,
}

/// The answer a consumer gave to [`Client::request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Where the request was published.
    pub offset: u64,
    pub body: Bytes,
    pub correlation_id: Option<String>,
    /// The reply's span when the consumer replied within the trace (a traced request,
    /// replied to on `client.traced(message.trace())`), to continue it with; None when
    /// the reply was not traced.
    pub traceparent: Option<String>,
}

impl Reply {
    /// The trace to continue, for [`Client::traced`]; None when the reply was not traced.
    pub fn trace(&self) -> Option<TraceContext> {
        TraceContext::new(self.traceparent.as_deref()?, None).ok()
    }
}

/// What became of a [`Client::reply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyOutcome {
    /// `inbox:` target: handed to the publisher waiting on it (202).
    Delivered,
    /// `queue:` target: published durably there (201).
    Published { offset: u64 },
}

impl Client {
    /// `POST /v1/queues/QUEUE/messages` with one JSON message; answers once it is durable.
    pub async fn publish(&self, queue: &str, message: &OutgoingMessage) -> Result<Published, Error> {
        let path = format!("/v1/queues/{}/messages", segment(queue)?);
        let (_, published) = self.call_json(Method::POST, &path, Some(&message.wire())).await?;
        Ok(published)
    }

    /// A JSON batch `{"messages": [...]}`, written and synced together, in order.
    pub async fn publish_json_batch(&self, queue: &str, messages: &[OutgoingMessage]) -> Result<PublishedBatch, Error> {
        #[derive(Serialize)]
        struct Batch<'a> {
            messages: Vec<WireMessage<'a>>,
        }
        let path = format!("/v1/queues/{}/messages", segment(queue)?);
        let batch = Batch {
            messages: messages.iter().map(OutgoingMessage::wire).collect(),
        };
        let (_, published): (_, PublishedBatch) = self.call_json(Method::POST, &path, Some(&batch)).await?;
        check_count(&path, published.offsets.len(), messages.len())?;
        Ok(published)
    }

    /// A compact batch (`application/x-strata-batch`: payloads only, no attributes).
    /// Answers each message's offset, in the batch's order. An empty batch sends nothing.
    pub async fn publish_batch<B: AsRef<[u8]>>(&self, queue: &str, bodies: &[B]) -> Result<Vec<u64>, Error> {
        self.publish_batch_in_turn(queue, bodies, None).await
    }

    /// [`publish_batch`](Self::publish_batch) as batch `sequence` of `producer`, stored
    /// after that producer's earlier batches however they arrive (the node waits a
    /// little for a missing one).
    pub(crate) async fn publish_batch_in_turn<B: AsRef<[u8]>>(
        &self,
        queue: &str,
        bodies: &[B],
        turn: Option<(&str, u64)>,
    ) -> Result<Vec<u64>, Error> {
        if bodies.is_empty() {
            return Ok(Vec::new());
        }
        let mut path = format!("/v1/queues/{}/messages", segment(queue)?);
        if let Some((producer, sequence)) = turn {
            path.push_str(&format!("?producer={producer}&sequence={sequence}"));
        }
        let out = Outgoing {
            content_type: Some(compact::MEDIA_TYPE),
            accept: Some("application/json"),
            body: compact::encode_batch(bodies).map_err(|e| Error::Invalid(e.0))?,
        };
        let answer = self.call(Method::POST, &path, out).await?;
        #[derive(Deserialize)]
        struct Offsets {
            offsets: Vec<u64>,
        }
        let Offsets { offsets } = parse(&Method::POST, &path, &answer.body)?;
        batch_offsets(&path, offsets, bodies.len())
    }

    /// Publish-and-wait (`?wait_reply_ms=`): the node points `reply_to` at a fresh inbox
    /// (and sets a correlation id when `message` has none), publishes, and answers with
    /// the first reply. No reply within `wait` is [`Error::Api`] with status 504
    /// ([`Error::is_timeout`]); the message stays published. A `dedupe_id` already seen
    /// within the window is [`Error::Api`] with status 409 at once (the first publisher
    /// got the reply).
    pub async fn request(&self, queue: &str, message: &OutgoingMessage, wait: Duration) -> Result<Reply, Error> {
        let path = format!(
            "/v1/queues/{}/messages?wait_reply_ms={}",
            segment(queue)?,
            wait.as_millis().max(1)
        );
        #[derive(Deserialize)]
        struct WireReply {
            #[serde(flatten)]
            body: JsonBody,
            correlation_id: Option<String>,
            traceparent: Option<String>,
        }
        #[derive(Deserialize)]
        struct Answer {
            offset: u64,
            reply: WireReply,
        }
        let (_, answer): (_, Answer) = self.call_json(Method::POST, &path, Some(&message.wire())).await?;
        Ok(Reply {
            offset: answer.offset,
            body: answer.reply.body.into_bytes()?,
            correlation_id: answer.reply.correlation_id,
            traceparent: answer.reply.traceparent,
        })
    }

    /// `POST /v1/reply`: answers a message's sender through its `reply_to`. To continue
    /// the message's trace (its publisher's answer then names the reply's span), reply on
    /// `client.traced(message.trace())`.
    pub async fn reply(
        &self,
        reply_to: &str,
        correlation_id: Option<&str>,
        body: &[u8],
    ) -> Result<ReplyOutcome, Error> {
        #[derive(Serialize)]
        struct WireReply<'a> {
            reply_to: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            correlation_id: Option<&'a str>,
            #[serde(flatten)]
            body: JsonBody,
        }
        #[derive(Deserialize)]
        struct Answer {
            offset: Option<u64>,
        }
        let reply = WireReply {
            reply_to,
            correlation_id,
            body: JsonBody::from_bytes(body),
        };
        let path = "/v1/reply";
        let answer = self
            .call(
                Method::POST,
                path,
                Outgoing {
                    content_type: Some("application/json"),
                    body: Bytes::from(serde_json::to_vec(&reply).expect("a reply encodes as JSON")),
                    ..Outgoing::default()
                },
            )
            .await?;
        if answer.status == StatusCode::CREATED {
            let a: Answer = parse(&Method::POST, path, &answer.body)?;
            let offset = a
                .offset
                .ok_or_else(|| Error::Protocol("a reply published to a queue came back without its offset".into()))?;
            return Ok(ReplyOutcome::Published { offset });
        }
        Ok(ReplyOutcome::Delivered)
    }
}

/// The offsets of a compact batch: one per message, or `[first, last]` of a run written
/// together, which is expanded.
fn batch_offsets(path: &str, offsets: Vec<u64>, sent: usize) -> Result<Vec<u64>, Error> {
    if offsets.len() == sent {
        return Ok(offsets);
    }
    if let [first, last] = offsets[..] {
        if last.checked_sub(first).and_then(|d| d.checked_add(1)) == Some(sent as u64) {
            return Ok((first..=last).collect());
        }
    }
    check_count(path, offsets.len(), sent)?;
    Ok(offsets)
}

fn check_count(path: &str, got: usize, sent: usize) -> Result<(), Error> {
    if got != sent {
        return Err(Error::Protocol(format!(
            "POST {path} published {sent} messages but the answer lists {got} offsets"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_message_carries_only_the_set_attributes() {
        let m = OutgoingMessage::new("text").dedupe_id("order-17");
        assert_eq!(
            serde_json::to_string(&m.wire()).unwrap(),
            r#"{"body":"text","dedupe_id":"order-17"}"#
        );
        let m = OutgoingMessage::new(vec![0xffu8])
            .reply_to("queue:results")
            .correlation_id("c-1");
        assert_eq!(
            serde_json::to_string(&m.wire()).unwrap(),
            r#"{"body_base64":"/w==","reply_to":"queue:results","correlation_id":"c-1"}"#
        );
    }

    #[test]
    fn compact_batch_offsets_list_or_range() {
        assert_eq!(batch_offsets("p", vec![4, 5, 6], 3).unwrap(), vec![4, 5, 6]);
        assert_eq!(batch_offsets("p", vec![4, 7], 4).unwrap(), vec![4, 5, 6, 7]);
        assert_eq!(batch_offsets("p", vec![9], 1).unwrap(), vec![9]);
        assert!(matches!(batch_offsets("p", vec![4, 5], 3), Err(Error::Protocol(_))));
        assert!(matches!(batch_offsets("p", vec![7, 4], 4), Err(Error::Protocol(_))));
        assert!(matches!(
            batch_offsets("p", vec![0, u64::MAX], 3),
            Err(Error::Protocol(_))
        ));
    }
}
