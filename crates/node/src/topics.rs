//! Topic delivery: for each subscription of a service (`subscribes` in the manifest), a
//! task takes the topic's messages from the cache's pub/sub registry
//! (`Cache::subscribe_topic`, where the Redis port's PUBLISH and the node API's
//! `POST /v1/topics/NAME` both publish) and POSTs each through the bus to the service's
//! `path`: to ANY one ready member (`relay::any`, load-aware, held while an instance
//! starts from zero) or to ALL of them (`relay::all`, once each). The body is the
//! message's bytes (`application/octet-stream`), with `X-Strata-Topic: NAME`.
//!
//! At most once, as Redis' pub/sub: a delivery that gets no 2xx (or finds no member) is
//! counted as failed and dropped, never retried. Bounded: at most [`IN_FLIGHT`]
//! deliveries of a subscription run at once; while they are all busy, messages wait in
//! the subscription's mailbox (`TopicBound`: 1024 messages, 8 MiB), and past that new
//! ones are dropped and counted. The figures (delivered, failed, dropped) are the
//! cache's (`Cache::topic_stats`), shown on `/v1/metrics`.
//!
//! Topics live in one node's cache: in a cluster, a message reaches the subscribers on
//! the node where it was published only.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request};
use http_body_util::BodyExt;
use strata_bus::Pool;
use strata_cache::{Cache, TopicBound, TopicSubscription};
use strata_gateway::relay;
use strata_gateway::{RelayPolicy, ReqBody};
use strata_manifest::{CallMode, SubscribesSpec};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Deliveries of one subscription in flight at once.
pub(crate) const IN_FLIGHT: usize = 64;

/// The header that names the topic on a delivered message.
const TOPIC_HEADER: &str = "x-strata-topic";

/// Most bytes of a member's answer read (and dropped) after a delivery.
const ANSWER_LIMIT: usize = 64 << 10;

/// Delivers `spec`'s topic to `service`'s pool until `token` is cancelled.
pub(crate) async fn run(
    cache: Arc<Cache>,
    pool: Arc<Pool>,
    service: String,
    spec: SubscribesSpec,
    policy: RelayPolicy,
    token: CancellationToken,
) {
    let subscription = Arc::new(cache.subscribe_topic(&spec.topic, &service, TopicBound::default()));
    let spec = Arc::new(spec);
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tasks = JoinSet::new();
    loop {
        while tasks.try_join_next().is_some() {}
        // A slot first: while every delivery is busy, messages wait in the mailbox,
        // which bounds them.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("never closed"),
            _ = token.cancelled() => break,
        };
        let message = tokio::select! {
            m = subscription.next() => m,
            _ = token.cancelled() => break,
        };
        let (pool, spec, subscription) = (pool.clone(), spec.clone(), subscription.clone());
        tasks.spawn(async move {
            let _slot = slot;
            deliver(&pool, &spec, &subscription, message, &policy).await;
        });
    }
    // Deliveries in flight get a second; the subscription ends when the last goes.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
}

/// One message to the pool: counted delivered per 2xx, failed otherwise.
async fn deliver(
    pool: &Pool,
    spec: &SubscribesSpec,
    subscription: &TopicSubscription,
    message: Bytes,
    policy: &RelayPolicy,
) {
    let req = request(spec, message);
    match spec.mode {
        CallMode::Any => {
            let (res, _) = relay::any(pool, req, policy).await;
            let ok = res.status().is_success();
            // Read whole, so that the connection goes back to the idle list.
            let _ = http_body_util::Limited::new(res.into_body(), ANSWER_LIMIT)
                .collect()
                .await;
            if ok {
                subscription.delivered(1);
            } else {
                subscription.failed(1);
            }
        }
        CallMode::All => {
            let (res, _) = relay::all(pool, req, policy).await;
            let ok = res.status().is_success();
            let body = http_body_util::Limited::new(res.into_body(), 16 << 20).collect().await;
            let (delivered, failed) = match body.map(|b| b.to_bytes()) {
                Ok(body) if ok => tally(&body),
                _ => (0, 1),
            };
            subscription.delivered(delivered);
            subscription.failed(failed);
        }
    }
}

/// The POST of one message.
fn request(spec: &SubscribesSpec, message: Bytes) -> Request<ReqBody> {
    let mut req = Request::new(ReqBody::Full(Some(message.clone())));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = spec.path.parse().unwrap_or_else(|_| http::Uri::from_static("/"));
    let headers = req.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(message.len()));
    if let Ok(topic) = HeaderValue::from_bytes(spec.topic.as_bytes()) {
        headers.insert(TOPIC_HEADER, topic);
    }
    req
}

/// The members that took a broadcast (a 2xx) and those that did not, from
/// `relay::all`'s answer: `[{"instance", "status" | "error", ...}]`.
fn tally(answer: &[u8]) -> (u64, u64) {
    let Ok(serde_json::Value::Array(replies)) = serde_json::from_slice(answer) else {
        return (0, 1);
    };
    let taken = replies
        .iter()
        .filter(|r| r["status"].as_u64().is_some_and(|s| (200..300).contains(&s)))
        .count() as u64;
    (taken, replies.len() as u64 - taken)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broadcast_is_tallied_per_member() {
        let answer = br#"[{"instance":"a","status":200,"body":""},{"instance":"b","status":500,"body":"x"},{"instance":"c","error":"no answer in time"},{"instance":"d","status":204,"body":""}]"#;
        assert_eq!(tally(answer), (2, 2));
        assert_eq!(tally(b"[]"), (0, 0));
        assert_eq!(tally(b"not json"), (0, 1));
    }

    #[test]
    fn a_message_is_posted_as_bytes_with_its_topic() {
        let spec = SubscribesSpec {
            topic: "prices".into(),
            path: "/in?x=1".into(),
            mode: CallMode::All,
        };
        let req = request(&spec, Bytes::from_static(b"\x00\xff"));
        assert_eq!(req.method(), Method::POST);
        assert_eq!(req.uri(), "/in?x=1");
        assert_eq!(req.headers()[TOPIC_HEADER], "prices");
        assert_eq!(req.headers()[header::CONTENT_LENGTH], "2");
        assert_eq!(req.headers()[header::CONTENT_TYPE], "application/octet-stream");
    }
}
