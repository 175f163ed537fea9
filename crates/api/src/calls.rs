//! Calls between services through the platform, by service name: `/v1/any/SERVICE/PATH`
//! reaches one member (load-aware, reissued when safe), `/v1/all/SERVICE/PATH` every
//! member once. The relay is the gateway's (`strata_gateway::relay`).

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use strata_gateway::relay::{self, tunnel, RelayPolicy};
use strata_gateway::trace;
use strata_manifest::CallMode;

use crate::server::Switch;
use crate::{ApiError, NodeParts};

pub(crate) fn routes() -> Router<Arc<NodeParts>> {
    Router::new()
        .route("/v1/any/{service}", any(call_any_root))
        // `STRATA_URL + "/v1/any/web/" + path` with an empty path: the member's `/`.
        .route("/v1/any/{service}/", any(call_any_root))
        .route("/v1/any/{service}/{*path}", any(call_any))
        .route("/v1/all/{service}", any(call_all_root))
        .route("/v1/all/{service}/", any(call_all_root))
        .route("/v1/all/{service}/{*path}", any(call_all))
}

async fn call_any_root(state: State<Arc<NodeParts>>, req: Request) -> Response {
    call_named(state, req, CallMode::Any).await
}

/// The path after the service is the member's, as sent: not decoded (an escape that is
/// no UTF-8, `%FF`, is the member's to judge, as through the gateway).
async fn call_any(state: State<Arc<NodeParts>>, req: Request) -> Response {
    call_named(state, req, CallMode::Any).await
}

async fn call_all_root(state: State<Arc<NodeParts>>, req: Request) -> Response {
    call_named(state, req, CallMode::All).await
}

async fn call_all(state: State<Arc<NodeParts>>, req: Request) -> Response {
    call_named(state, req, CallMode::All).await
}

async fn call_named(state: State<Arc<NodeParts>>, req: Request, mode: CallMode) -> Response {
    match service_in(req.uri().path()) {
        Some(service) => {
            let service = service.into_owned();
            call(state, service, req, mode).await
        }
        None => ApiError::bad(format!(
            "the service name in {:?} does not decode (a percent-escape must make UTF-8)",
            req.uri().path()
        ))
        .into_response(),
    }
}

/// The service of `/v1/MODE/SERVICE/...`, percent-decoded (as the access check reads
/// it), without decoding the member's path after it; None when its escapes make no
/// UTF-8.
pub(crate) fn service_in(raw: &str) -> Option<Cow<'_, str>> {
    let segment = raw.split('/').nth(3).unwrap_or("");
    if !segment.contains('%') {
        return Some(Cow::Borrowed(segment));
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

/// The member's path of a call: what follows `/v1/MODE/SERVICE/` in the request's path
/// as it was sent, percent-encoding kept. (The `{*path}` parameter is decoded: `a%20b`
/// would become `a b`, not a path, and `a%3Fb` would become a query.)
fn member_path(raw: &str) -> &str {
    raw.splitn(5, '/').nth(4).unwrap_or("")
}

/// Relays an instance's call to another service: `/v1/any/web/x?y` reaches `/x?y` on a
/// member of `web`, the path as it was sent.
async fn call(State(state): State<Arc<NodeParts>>, service: String, req: Request, mode: CallMode) -> Response {
    let Some(policy) = state.policies.get(&service).cloned() else {
        return ApiError::not_found(format!(
            "no service named {service:?} in app {:?} (services: {})",
            state.info.app,
            state.policies.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
        .into_response();
    };
    let pool = state.bus.pool(&service);
    let (mut parts, body) = req.into_parts();
    crate::access::strip_token(&mut parts.headers);
    let path = member_path(parts.uri.path());
    let target = match parts.uri.query() {
        Some(q) => format!("/{path}?{q}"),
        None => format!("/{path}"),
    };
    parts.uri = match target.parse() {
        Ok(uri) => uri,
        Err(e) => return ApiError::bad(format!("bad path {target:?}: {e}")).into_response(),
    };
    ensure_request_id(&mut parts.headers);
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // The call is a span of the caller's trace when it passes its `traceparent` on.
    let (started, start_us) = (std::time::Instant::now(), trace::now_us());
    let context = trace::Context::of(&parts.headers);
    let span_id = trace::random();
    if trace::enabled() {
        parts.headers.insert(trace::TRACEPARENT, context.header(span_id));
    }
    let (method, uri, request_id) = (
        parts.method.clone(),
        parts.uri.clone(),
        parts.headers.get(relay::REQUEST_ID).cloned(),
    );
    let req = http::Request::from_parts(parts, body);
    if tunnel::wants_upgrade(&req) {
        return switch(&pool, req, mode, &policy).await;
    }
    let (res, outcome) = strata_gateway::relay_client_request(&pool, req, declared, None, mode, &policy).await;
    if !trace::enabled() {
        return res.map(Body::new);
    }
    let span = trace::Span {
        context,
        span_id,
        kind: trace::Kind::Call,
        service: Arc::from(service.as_str()),
        method,
        path: uri,
        request_id,
        member: outcome.member,
        attempts: outcome.attempts,
        unanswered: outcome.unanswered,
        status: res.status().as_u16(),
        start_us,
        duration_us: started.elapsed().as_micros() as u64,
        reason: None,
    };
    state.traces.record_relay(span, &outcome.failed);
    res.map(Body::new)
}

/// A call asking to switch protocols (WebSocket): the handshake goes to one member; on
/// 101 the member's side of the tunnel waits in the connection's [`Switch`] until hyper
/// lets go of the socket; any other answer closes the connection after it.
async fn switch(pool: &strata_bus::Pool, req: http::Request<Body>, mode: CallMode, policy: &RelayPolicy) -> Response {
    let refused = |why: &str| {
        let mut res = ApiError::bad(why).into_response();
        res.headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        res
    };
    if mode == CallMode::All {
        return refused("a call to ALL members cannot switch protocols");
    }
    let Some(slot) = req.extensions().get::<Switch>().cloned() else {
        return refused("this connection cannot switch protocols");
    };
    let (res, _, tunnel) = tunnel::handshake(pool, req, policy).await;
    if let Some(tunnel) = tunnel {
        slot.put(tunnel);
    }
    tunnel::closing(res).map(Body::new)
}

/// Calls between instances (HTTP, WebSocket or gRPC through `$STRATA_URL`) keep the
/// caller's request id when it passes one on (if `acceptable`); others get one of their own.
pub(crate) fn ensure_request_id(headers: &mut http::HeaderMap) {
    if headers
        .get(relay::REQUEST_ID)
        .is_some_and(strata_gateway::request_id::acceptable)
    {
        return;
    }
    static CALLS: AtomicU64 = AtomicU64::new(1);
    let n = CALLS.fetch_add(1, Ordering::Relaxed);
    if let Ok(v) = HeaderValue::from_str(&format!("call-{}-{n:x}", std::process::id())) {
        headers.insert(relay::REQUEST_ID, v);
    }
}

#[cfg(test)]
mod tests {
    use super::{member_path, service_in};

    #[test]
    fn the_service_of_a_call_is_decoded_and_its_path_is_not() {
        assert_eq!(service_in("/v1/any/api").as_deref(), Some("api"));
        assert_eq!(service_in("/v1/any/api/x%FF/y").as_deref(), Some("api"));
        assert_eq!(service_in("/v1/all/%61pi/x").as_deref(), Some("api"));
        assert_eq!(service_in("/v1/any/%FF/x"), None);
        assert_eq!(service_in("/v1/any/a%2").as_deref(), Some("a%2"), "not an escape");
    }

    #[test]
    fn the_member_path_is_the_rest_of_the_path_as_sent() {
        assert_eq!(member_path("/v1/any/web"), "");
        assert_eq!(member_path("/v1/any/web/"), "");
        assert_eq!(member_path("/v1/all/web/a/b.html"), "a/b.html");
        assert_eq!(member_path("/v1/any/web/a%20b%3Fc/%2F"), "a%20b%3Fc/%2F");
        assert_eq!(member_path("/v1/any/w%65b/x"), "x");
    }
}
