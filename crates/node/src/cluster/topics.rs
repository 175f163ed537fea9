//! Topics across the nodes of a cluster. Each node's pub/sub registry
//! (`strata_cache::Cache`) holds the subscriptions of its own Redis port and of its
//! services' `subscribes`; without this, a message reached the subscribers of the node
//! where it was published only. Now every publish made on a node (PUBLISH on its Redis
//! port, `POST /v1/topics/NAME` through its node API) is also sent on the core NATS
//! subject `strata.topics.APP` ([`bridge`]), and every other node running the app hands
//! it to its Redis subscribers (`Cache::publish_from_peer`).
//!
//! - **The platform's subscriptions are the publishing node's to serve:** its delivery
//!   task POSTs through the bus, which reaches the service's members on every node (ANY:
//!   one of them; ALL: each once). The other nodes pass them over, so no message is
//!   delivered twice.
//! - **At most once, as Redis' pub/sub**: core NATS, nothing stored; a message waits in a
//!   bounded queue ([`OUTBOX`] messages) on its way to NATS, and one past it is dropped
//!   and counted (said in the log).
//! - PUBLISH answers the receivers on its own node, as in Redis Cluster; PUBSUB CHANNELS
//!   and NUMSUB see this node's subscriptions.
//! - A message is framed as the channel's length (4 bytes, big-endian), the channel and
//!   the payload; the header `Strata-Bridge` names the bridge that sent it (random per
//!   app version on a node), so a node never takes back its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use strata_cache::Cache;
use strata_cluster::Nats;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Messages waiting for NATS before new ones are dropped.
pub const OUTBOX: usize = 8192;

const ORIGIN: &str = "Strata-Bridge";

fn subject(app: &str) -> String {
    format!("strata.topics.{app}")
}

fn frame(channel: &[u8], payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(4 + channel.len() + payload.len());
    b.put_u32(channel.len() as u32);
    b.put_slice(channel);
    b.put_slice(payload);
    b.freeze()
}

/// The channel and payload of a framed message, if it is one.
fn unframe(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_be_bytes(b.get(..4)?.try_into().ok()?) as usize;
    let rest = &b[4..];
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// Bridges `cache`'s topics of `app` to the other nodes, until `stop`.
pub(super) async fn bridge(nats: Nats, app: String, cache: Arc<Cache>, stop: CancellationToken) {
    let subject = subject(&app);
    let me = format!("{:016x}", strata_gateway::trace::random());
    let mut incoming = match nats.client.subscribe(subject.clone()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(
                app,
                "topics reach this node's subscribers only: subscribe to {subject}: {e}"
            );
            return;
        }
    };
    let (tx, mut outbox) = mpsc::channel::<Bytes>(OUTBOX);
    let dropped = Arc::new(AtomicU64::new(0));
    let counted = dropped.clone();
    cache.bridge_topics(Box::new(move |channel, payload| {
        if tx.try_send(frame(channel, payload)).is_err() {
            counted.fetch_add(1, Ordering::Relaxed);
        }
    }));
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(ORIGIN, me.as_str());
    let mut reported = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            out = outbox.recv() => {
                let Some(message) = out else { return };
                if let Err(e) = nats.client.publish_with_headers(subject.clone(), headers.clone(), message).await {
                    tracing::debug!(app, "a topic's message did not reach NATS: {e}");
                }
                let now = dropped.load(Ordering::Relaxed);
                if now > reported {
                    tracing::warn!(app, dropped = now, "topic messages dropped on their way to the other nodes (more than {OUTBOX} waiting)");
                    reported = now;
                }
            }
            message = incoming.next() => {
                let Some(message) = message else { return };
                let own = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(ORIGIN))
                    .is_some_and(|origin| origin.as_str() == me);
                if own {
                    continue;
                }
                match unframe(&message.payload) {
                    Some((channel, payload)) => {
                        cache.publish_from_peer(channel, payload);
                    }
                    None => tracing::debug!(app, "a topic message from another node was not framed"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_short_ones_are_refused() {
        let b = frame(b"news", b"hello");
        assert_eq!(unframe(&b), Some((&b"news"[..], &b"hello"[..])));
        assert_eq!(unframe(&frame(b"", b"")), Some((&b""[..], &b""[..])));
        assert_eq!(unframe(&b[..6]), None, "the channel cut short");
        assert_eq!(unframe(b"\0\0"), None);
    }
}
