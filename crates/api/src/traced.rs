//! Spans of the platform's own calls: a fetch, ack or nack (and the delete of one
//! message), a reply, a key-value or blob call, and a cache read or write through the
//! node API are each a span of the caller's trace when the caller passes a well-formed
//! `traceparent` ([`trace::Context::passed`]), as a publish is (`queues::publish`).
//! An untraced call records nothing: the middleware looks the header up and goes on.
//!
//! The span says the route's queue, namespace or cache (`service`), the method and
//! path, the caller's request id, the status, and the time until the answer's head (a
//! blob read's body streams on after it). Calls and publishes are not traced here:
//! they record their own spans, since they hand a `traceparent` on.

use std::sync::Arc;

use axum::extract::{MatchedPath, RawPathParams, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use axum::RequestExt;
use strata_gateway::{relay, trace};

use crate::NodeParts;

/// What a handler names as the span's `service` when its route's path does not (a reply:
/// the queue it went into), as an extension of its response.
#[derive(Clone)]
pub(crate) struct Service(pub Arc<str>);

/// The `traceparent` naming the call's span as the parent, for what the call hands on (a
/// reply's message), as an extension of a traced call's request.
#[derive(Clone)]
pub(crate) struct Continued(pub http::HeaderValue);

/// The kind and `service` of a route's span, by its template; None: not traced here.
fn kind_of<'a>(template: &str, method: &Method, params: &[(&'a str, &'a str)]) -> Option<(trace::Kind, &'a str)> {
    use trace::Kind;
    let param = |name: &str| params.iter().find(|(k, _)| *k == name).map_or("", |(_, v)| *v);
    Some(match template {
        "/v1/queues/{queue}/groups/{group}/fetch" => (Kind::Fetch, param("queue")),
        "/v1/queues/{queue}/groups/{group}/ack" => (Kind::Ack, param("queue")),
        "/v1/queues/{queue}/groups/{group}/messages/{offset}" if method == Method::DELETE => {
            (Kind::Ack, param("queue"))
        }
        "/v1/queues/{queue}/groups/{group}/nack" => (Kind::Nack, param("queue")),
        "/v1/reply" => (Kind::Reply, "reply"),
        "/v1/kv/{ns}" | "/v1/kv/{ns}/{*key}" | "/v1/blobs/{ns}" | "/v1/blobs/{ns}/{*name}" => {
            (Kind::Store, param("ns"))
        }
        "/v1/caches/{name}/{*key}" => (Kind::Cache, param("name")),
        "/v1/cache/keys/{*key}" => (Kind::Cache, "keys"),
        _ => return None,
    })
}

/// The middleware (on the queue, store and cache routes only): the route's span, when
/// the caller passed a `traceparent`. An untraced call costs the header lookup.
pub(crate) async fn span(State(state): State<Arc<NodeParts>>, mut req: Request, next: Next) -> Response {
    let passed = trace::enabled()
        .then(|| req.headers().get(trace::TRACEPARENT))
        .flatten()
        .and_then(|v| trace::Context::passed(v.as_bytes()));
    let Some(context) = passed else {
        return next.run(req).await;
    };
    let params = req.extract_parts::<RawPathParams>().await.ok();
    let template = req.extensions().get::<MatchedPath>().map(MatchedPath::as_str);
    let params: Vec<(&str, &str)> = params.as_ref().map_or_else(Vec::new, |p| p.iter().collect());
    let Some((kind, service)) = template.and_then(|t| kind_of(t, req.method(), &params)) else {
        return next.run(req).await;
    };
    let mut span = trace::Span::of(
        kind,
        context,
        trace::random(),
        service,
        req.method().clone(),
        req.uri().clone(),
    );
    span.request_id = req.headers().get(relay::REQUEST_ID).cloned();
    req.extensions_mut().insert(Continued(context.header(span.span_id)));
    let started = std::time::Instant::now();
    let res = next.run(req).await;
    span.duration_us = started.elapsed().as_micros() as u64;
    span.status = res.status().as_u16();
    if let Some(Service(named)) = res.extensions().get::<Service>() {
        span.service = named.clone();
    }
    state.traces.record(span);
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use trace::Kind;

    #[test]
    fn each_state_route_has_its_kind_and_names_its_queue_namespace_or_cache() {
        let params = [("queue", "jobs"), ("ns", "data"), ("name", "users")];
        let of = |t: &str, m: Method| kind_of(t, &m, &params);
        assert_eq!(
            of("/v1/queues/{queue}/groups/{group}/fetch", Method::POST),
            Some((Kind::Fetch, "jobs"))
        );
        assert_eq!(
            of("/v1/queues/{queue}/groups/{group}/ack", Method::POST),
            Some((Kind::Ack, "jobs"))
        );
        assert_eq!(
            of("/v1/queues/{queue}/groups/{group}/messages/{offset}", Method::DELETE),
            Some((Kind::Ack, "jobs"))
        );
        assert_eq!(
            of("/v1/queues/{queue}/groups/{group}/nack", Method::POST),
            Some((Kind::Nack, "jobs"))
        );
        assert_eq!(of("/v1/reply", Method::POST), Some((Kind::Reply, "reply")));
        assert_eq!(of("/v1/kv/{ns}/{*key}", Method::PUT), Some((Kind::Store, "data")));
        assert_eq!(of("/v1/blobs/{ns}/{*name}", Method::GET), Some((Kind::Store, "data")));
        assert_eq!(
            of("/v1/caches/{name}/{*key}", Method::GET),
            Some((Kind::Cache, "users"))
        );
        // Publishes and calls record their own spans; control routes none.
        assert_eq!(of("/v1/queues/{queue}/messages", Method::POST), None);
        assert_eq!(of("/v1/any/{service}/{*path}", Method::GET), None);
        assert_eq!(of("/v1/ps", Method::GET), None);
    }
}
