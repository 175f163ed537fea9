//! Topics on the node API: `POST /v1/topics/{topic}` publishes the body's bytes on the
//! topic, as PUBLISH on the Redis port does (the same registry: `strata_cache::topics`),
//! and answers how many subscribers received it, `{"receivers": N}`: Redis connections
//! subscribed to the channel or a matching pattern, and services that `subscribes` to
//! it (one per subscription, whatever its mode and its number of instances). At most
//! once; nothing is stored. Any token of the node may publish, as any client with the
//! cache's password may PUBLISH, unless services claim the topic (`access.topics`:
//! then only they may, `access.rs`).
//!
//! The other way, [`deliver`]: one message POSTed through the bus to a subscribing
//! service (the body the message's bytes, `application/octet-stream`, with
//! `X-Strata-Topic: NAME`), to ANY one ready member (`relay::any`, load-aware, held while
//! an instance starts from zero) or to ALL of them (`relay::all`, once each). The task
//! that calls it for each message is the node's (`strata_node`'s `topics`): the HTTP of
//! it is here, at the edge, so that the node crate speaks none.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request};
use http_body_util::BodyExt;
use strata_bus::Pool;
use strata_gateway::relay::{self, RelayPolicy};
use strata_gateway::ReqBody;
use strata_manifest::{CallMode, SubscribesSpec};

use crate::extract::Path;
use crate::{ApiError, NodeParts};

/// The header that names the topic on a delivered message.
pub const TOPIC_HEADER: &str = "x-strata-topic";

/// Most bytes of a member's answer read (and dropped) after an ANY delivery.
const ANSWER_LIMIT: usize = 64 << 10;

/// The largest message: 1 MiB, what a broadcast through `/v1/all` holds too.
pub const MESSAGE_LIMIT: usize = 1 << 20;

pub(crate) fn routes() -> Router<Arc<NodeParts>> {
    Router::new().route("/v1/topics/{topic}", post(publish))
}

async fn publish(
    State(state): State<Arc<NodeParts>>,
    Path(topic): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let message = crate::body::read(&headers, body, MESSAGE_LIMIT, "a topic message").await?;
    let receivers = state.cache.publish(topic.as_bytes(), &message);
    Ok(Json(json!({ "receivers": receivers })).into_response())
}

/// What became of one message delivered to a service: members that took it (a 2xx)
/// and deliveries that failed (no 2xx, or no member).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Delivery {
    pub delivered: u64,
    pub failed: u64,
}

/// POSTs `message` to `spec.path` on ANY one or ALL of `pool`'s ready members, once
/// (a POST is never reissued once sent: at most once).
pub async fn deliver(pool: &Pool, spec: &SubscribesSpec, message: Bytes, policy: &RelayPolicy) -> Delivery {
    let req = request(spec, message);
    match spec.mode {
        CallMode::Any => {
            // Counted in the service's request figures, as push deliveries are.
            let arrived = std::time::Instant::now();
            let (res, outcome) = relay::any(pool, req, policy).await;
            strata_gateway::RelayStats::of(pool).record(res.status(), outcome.unanswered, arrived.elapsed());
            let ok = res.status().is_success();
            // Read whole, so that the connection goes back to the idle list.
            let _ = http_body_util::Limited::new(res.into_body(), ANSWER_LIMIT)
                .collect()
                .await;
            Delivery {
                delivered: ok as u64,
                failed: !ok as u64,
            }
        }
        CallMode::All => {
            let (res, _) = relay::all(pool, req, policy).await;
            let ok = res.status().is_success();
            let body = http_body_util::Limited::new(res.into_body(), 16 << 20).collect().await;
            match body.map(|b| b.to_bytes()) {
                Ok(body) if ok => tally(&body),
                _ => Delivery {
                    delivered: 0,
                    failed: 1,
                },
            }
        }
    }
}

/// The POST of one message.
fn request(spec: &SubscribesSpec, message: Bytes) -> Request<ReqBody> {
    let length = message.len();
    let mut req = Request::new(ReqBody::Full(Some(message)));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = spec.path.parse().unwrap_or_else(|_| http::Uri::from_static("/"));
    let headers = req.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if let Ok(topic) = HeaderValue::from_bytes(spec.topic.as_bytes()) {
        headers.insert(TOPIC_HEADER, topic);
    }
    req
}

/// The members that took a broadcast (a 2xx) and those that did not, from
/// `relay::all`'s answer: `[{"instance", "status" | "error", ...}]`.
fn tally(answer: &[u8]) -> Delivery {
    let Ok(serde_json::Value::Array(replies)) = serde_json::from_slice(answer) else {
        return Delivery {
            delivered: 0,
            failed: 1,
        };
    };
    let taken = replies
        .iter()
        .filter(|r| r["status"].as_u64().is_some_and(|s| (200..300).contains(&s)))
        .count() as u64;
    Delivery {
        delivered: taken,
        failed: replies.len() as u64 - taken,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broadcast_is_tallied_per_member() {
        let answer = br#"[{"instance":"a","status":200,"body":""},{"instance":"b","status":500,"body":"x"},{"instance":"c","error":"no answer in time"},{"instance":"d","status":204,"body":""}]"#;
        let d = |delivered, failed| Delivery { delivered, failed };
        assert_eq!(tally(answer), d(2, 2));
        assert_eq!(tally(b"[]"), d(0, 0));
        assert_eq!(tally(b"not json"), d(0, 1));
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
