//! The first tier: HTTP/1.1 and h2c ingress that relays requests to service pools.
//!
//! # Layout
//!
//! Bottom-up: each module uses only the ones above it (named in parentheses).
//! - `worker`: which gateway worker thread the code runs on, each with a slot of its own
//!   in the tables kept per thread; at most [`MAX_WORKERS`].
//! - `digits`: numbers as decimal text, without the formatting machinery.
//! - [`coarse`]: attempt timeouts without a timer operation per request.
//! - [`framing`]: follows HTTP/1.1 framing ahead of hyper: refuses ambiguous lengths and
//!   oversized heads, answers 408 to slow heads, closes idle connections.
//! - `access` (worker): the access log ([`AccessLog`]), buffered per worker thread and
//!   written off the request path.
//! - [`request_body`]: [`ReqBody`], a request body on its way to a member, held whole
//!   (so that it can be sent again) or streamed.
//! - `upstream` (worker, digits, coarse, request_body): our HTTP/1.1 client to members:
//!   keep-alive connections kept per member and thread, the request written and the
//!   reply head read inline, the reply body streamed; its own modules are ordered in its
//!   header.
//! - [`response_body`] (upstream): [`ResBody`], a member's reply streaming to the client,
//!   or one the gateway wrote itself.
//! - [`metrics`]: [`RelayStats`], the figures of a pool's relayed requests (replies by
//!   status class, failures by reason, a latency histogram), kept in the pool's slot.
//! - [`relay`] (metrics, request_body, upstream, response_body): ANY and ALL calls to a pool,
//!   reissue rules, deadlines; also used by the platform API for instance-to-instance
//!   calls.
//! - `config` (relay): the manifest read into each service's [`RelayPolicy`]
//!   ([`relay_policies`]) and into the crate root's [`GatewayConfig`] and [`Route`]s.
//! - `slot`: [`GatewaySlot`], the gateway a set of workers serves, replaceable while
//!   they run (a cluster node's rolling update), and each connection's view of it.
//! - This file, above them all: [`Gateway`] (routes by path prefix and optional host to
//!   pools, limits, the access-log line); [`relay_client_request`] (a client's request
//!   relayed to a pool, for the gateway and the node API alike); [`serve`] (the accept
//!   loop, with the connection cap of `strata_os::cap` (past `max_connections`: 503,
//!   `Retry-After: 1`, closed lingering) and graceful shutdown, each client socket
//!   wrapped in [`framing::Guarded`]);
//!   [`spawn`] (one worker thread per core, each with its own `SO_REUSEPORT` socket,
//!   through strata-os's `listen::spawn`), which returns [`Workers`], re-exported from
//!   strata-os.
//!
//! Invariant: the gateway keeps no state of its own between requests beyond idle
//! connections, route caches and counters (the request figures are kept in each pool's
//! transport slot); membership lives in the bus.

mod access;
mod answers;
pub mod client_body;
pub mod coarse;
mod config;
mod digits;
mod dots;
pub mod fallback;
pub mod framing;
pub mod health;
pub mod metrics;
pub mod otlp;
pub mod relay;
pub mod request_body;
pub mod request_id;
pub mod response_body;
mod serve;
mod serve_h2;
mod slot;
pub mod trace;
mod upstream;
mod worker;

use answers::{close, grpc_kin, no_grpc_route, no_route, not_grpc, with_request_id};

pub use access::AccessLog;
pub use config::relay_policies;
pub use metrics::{AttemptFailure, NoAnswer, Protocol, RelayStats};
pub use relay::{Outcome, RelayPolicy};
pub use request_body::ReqBody;
pub use response_body::ResBody;
pub use serve::{serve, serve_slot, spawn, spawn_slot};
pub use slot::GatewaySlot;
pub use worker::MAX_WORKERS;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use client_body::ClientBody;
use fallback::{Fallback, FallbackStats, Lookup};
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use request_id::RequestIds;
use strata_bus::{Bus, Pool};
use strata_manifest::CallMode;
use strata_os::cap::ConnCap;
pub use strata_os::listen::Workers;
use strata_wire::ErrorCode;

/// A kept-alive client connection with no request under way is closed after this long.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// Request bodies up to this size are held whole, so the request can be reissued.
pub const REPLAYABLE_BODY: u64 = 64 * 1024;
/// Largest body a broadcast (ALL) request may carry.
pub const BROADCAST_BODY: usize = 1024 * 1024;

/// One route of the first tier.
#[derive(Debug, Clone)]
pub struct Route {
    /// Only requests whose Host, without port, is this; None matches any host.
    pub host: Option<String>,
    /// Path prefix, matched on segment boundaries (`/api` matches `/api/x`, not `/apix`).
    pub prefix: String,
    pub service: String,
    pub mode: CallMode,
    pub policy: RelayPolicy,
    /// What the route answers when its service cannot (`fallback`).
    pub fallback: Option<Arc<Fallback>>,
    /// Made from one of the service's `grpc` names: only gRPC calls and their kin
    /// (gRPC-Web, Connect, CORS preflights) take it; any other request is answered 415
    /// by the gateway.
    pub grpc: bool,
}

impl std::fmt::Debug for Fallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fallback").field("stats", &self.stats()).finish()
    }
}

impl Route {
    fn matches(&self, host: Option<&str>, path: &str) -> bool {
        if let Some(want) = &self.host {
            if host != Some(want.as_str()) {
                return false;
            }
        }
        match path.strip_prefix(self.prefix.as_str()) {
            Some(rest) => {
                rest.is_empty() || self.prefix.ends_with('/') || rest.starts_with('/') || rest.starts_with('?')
            }
            None => false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub routes: Vec<Route>,
    /// Where the gateway's spans are kept (shared with the node API's).
    pub traces: Arc<trace::Traces>,
    pub max_header_bytes: usize,
    pub max_body_bytes: Option<u64>,
    pub header_read_timeout: Duration,
    /// Client connections open at once over all workers; past it, 503 and closed.
    pub max_connections: usize,
}

struct RoutePool {
    route: Route,
    pool: Arc<Pool>,
    /// The route's service, for its spans without an allocation.
    service: Arc<str>,
    /// What the route's clients got: status classes and time from arrival to the answer.
    stats: metrics::Family,
}

/// The first tier of one node.
pub struct Gateway {
    routes: Vec<RoutePool>,
    config: GatewayConfig,
    access: Option<AccessLog>,
    ids: RequestIds,
    /// The connection cap, shared by every worker.
    cap: Arc<ConnCap>,
    /// The answer past the cap, written once.
    refusal: Bytes,
}

impl Gateway {
    pub fn new(config: GatewayConfig, bus: &Bus, access: Option<AccessLog>) -> Arc<Gateway> {
        let mut routes: Vec<RoutePool> = config
            .routes
            .iter()
            .map(|route| RoutePool {
                route: route.clone(),
                pool: bus.pool(&route.service),
                service: Arc::from(route.service.as_str()),
                stats: Default::default(),
            })
            .collect();
        // Host-specific routes first, then the longest prefix.
        routes.sort_by_key(|r| (r.route.host.is_none(), std::cmp::Reverse(r.route.prefix.len())));
        let limit = config.max_connections;
        let body = strata_wire::ErrorBody::new(
            503,
            ErrorCode::Unavailable,
            format!("the gateway has {limit} connections open, its limit (gateway.max_connections); try again"),
        )
        .with("limit", limit)
        .to_json();
        let refusal = format!(
            "HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\nretry-after: 1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        Arc::new(Gateway {
            routes,
            cap: ConnCap::new("gateway", config.max_connections),
            config,
            access,
            ids: RequestIds::new(),
            refusal: Bytes::from(refusal),
        })
    }

    /// The spans this gateway (and the node API beside it) keeps.
    pub fn traces(&self) -> Arc<trace::Traces> {
        self.config.traces.clone()
    }

    /// The figures of every route with a fallback: (service, path prefix, figures).
    pub fn fallback_stats(&self) -> Vec<(String, String, FallbackStats)> {
        self.routes
            .iter()
            .filter_map(|r| {
                let fallback = r.route.fallback.as_ref()?;
                Some((r.route.service.clone(), r.route.prefix.clone(), fallback.stats()))
            })
            .collect()
    }

    /// Each route's figures: (service, route as `[host]/prefix`, figures), in the order
    /// routes are matched.
    pub fn route_stats(&self) -> Vec<(String, String, metrics::RelaySnapshot)> {
        self.routes
            .iter()
            .map(|r| {
                let route = format!("{}{}", r.route.host.as_deref().unwrap_or(""), r.route.prefix);
                (r.route.service.clone(), route, r.stats.snapshot())
            })
            .collect()
    }

    fn route(&self, req: &Request<ClientBody>) -> Option<&RoutePool> {
        let host = req
            .uri()
            .host()
            .or_else(|| req.headers().get(header::HOST).and_then(|h| h.to_str().ok()))
            .map(|h| h.rsplit_once(':').map_or(h, |(name, _)| name));
        let path = req.uri().path();
        self.routes.iter().find(|r| r.route.matches(host, path))
    }

    /// Answers one request from a client (over HTTP/1: the future is kept inline in the
    /// connection's task, so it costs no allocation).
    pub async fn handle(&self, req: Request<Incoming>, client: &str) -> Response<ResBody> {
        let mut req = req.map(ClientBody::Http);
        let begun = self.begin(&mut req);
        let (res, route, outcome) = if let Some(refused) = dots::refused(&req, &begun.request_id) {
            // An upgrade's client may already be sending the new protocol: closed after.
            let refused = match relay::tunnel::wants_upgrade(&req) {
                true => relay::tunnel::closing(refused),
                false => refused,
            };
            (refused, None, Outcome::default())
        } else if relay::grpc::is_grpc(&req) {
            self.call_grpc(req, &begun.request_id).await
        } else if relay::tunnel::wants_upgrade(&req) {
            let (res, route, outcome) = self.switch(req, &begun.request_id).await;
            (relay::tunnel::closing(res), route, outcome)
        } else {
            self.dispatch(req, &begun.request_id).await
        };
        self.finish(begun, res, route, outcome, client)
    }

    /// [`handle`] for a request over HTTP/2 (`serve_h2`): each stream's future is moved
    /// into its connection's set of streams, so the branches are boxed and this future
    /// stays small (a few hundred bytes, where [`handle`]'s is several KiB).
    ///
    /// [`handle`]: Gateway::handle
    pub async fn handle_h2(self: Arc<Self>, mut req: Request<ClientBody>, client: Arc<str>) -> Response<ResBody> {
        // h2 takes heads up to four times the limit (`serve_h2`), so that one over it is
        // answered here, on its own stream, in gRPC's terms for a call.
        let head_size = answers::h2_head_size(&req);
        let begun = self.begin(&mut req);
        let (res, route, outcome) = if head_size > self.config.max_header_bytes {
            let max = self.config.max_header_bytes;
            (
                answers::head_too_large(&req, head_size, max, &begun.request_id),
                None,
                Outcome::default(),
            )
        } else if let Some(refused) = dots::refused(&req, &begun.request_id) {
            (refused, None, Outcome::default())
        } else if !relay::grpc::is_grpc(&req) {
            Box::pin(self.dispatch(req, &begun.request_id)).await
        } else if let Some(target) = self.route(&req) {
            let (res, outcome) = Box::pin(relay::grpc::relay(&target.pool, req, &target.route.policy)).await;
            (res, Some(target), outcome)
        } else {
            (no_grpc_route(&req, &self.routes), None, Outcome::default())
        };
        self.finish(begun, res, route, outcome, &client)
    }

    /// What every request gets before it is relayed: its id, and its trace context.
    fn begin(&self, req: &mut Request<ClientBody>) -> Begun {
        let started = Instant::now();
        let request_id = match req.headers().get(relay::REQUEST_ID) {
            Some(id) if request_id::acceptable(id) => id.clone(),
            _ => {
                let id = self.ids.next();
                req.headers_mut().insert(relay::REQUEST_ID, id.clone());
                id
            }
        };
        let method = req.method().clone();
        let uri = req.uri().clone();
        let traced = trace::enabled().then(|| {
            let context = trace::Context::of(req.headers());
            let span_id = trace::random();
            req.headers_mut().insert(trace::TRACEPARENT, context.header(span_id));
            (context, span_id)
        });
        Begun {
            started,
            request_id,
            method,
            uri,
            traced,
        }
    }

    /// What every request gets after: its access log line and its span. The clocks are
    /// read once each here (and `started` once in `begin`): the span's start is the
    /// wall clock now less the request's time.
    fn finish(
        &self,
        begun: Begun,
        res: Response<ResBody>,
        route: Option<&RoutePool>,
        outcome: Outcome,
        client: &str,
    ) -> Response<ResBody> {
        let Begun {
            started,
            request_id,
            method,
            uri,
            traced,
        } = begun;
        let elapsed = started.elapsed();
        let wall = std::time::SystemTime::now();
        if let Some(r) = route {
            r.stats.record(res.status(), outcome.unanswered, elapsed);
        }
        if let Some(log) = &self.access {
            let service = route.map_or("-", |r| r.route.service.as_str());
            let mut reached = [0u8; 20];
            // One member's id, or `all:N` for a broadcast that reached N members.
            let (member_prefix, member): (&[u8], &[u8]) = match (&outcome.member, outcome.broadcast) {
                (_, Some(n)) => (b"all:", digits::decimal(n as u64, &mut reached)),
                (Some(m), None) => (b"", m.name.as_bytes()),
                (None, None) => (b"", b"-"),
            };
            let (mut micros, mut attempts, mut now) = ([0u8; 20], [0u8; 20], [0u8; 24]);
            log.line(&[
                access::timestamp(wall, &mut now),
                b" ",
                client.as_bytes(),
                b" ",
                method.as_str().as_bytes(),
                b" ",
                uri.path().as_bytes(),
                b" ",
                res.status().as_str().as_bytes(),
                b" ",
                digits::decimal(elapsed.as_micros() as u64, &mut micros),
                b"us service=",
                service.as_bytes(),
                b" member=",
                member_prefix,
                member,
                b" attempts=",
                digits::decimal(outcome.attempts as u64, &mut attempts),
                b" rid=",
                request_id.as_bytes(),
            ]);
        }
        if let Some((context, span_id)) = traced {
            let duration_us = elapsed.as_micros() as u64;
            let start_us = trace::micros_since_epoch(wall).saturating_sub(duration_us);
            let span = trace::Span {
                context,
                span_id,
                kind: trace::Kind::Gateway,
                service: route.map_or_else(|| Arc::from("-"), |r| r.service.clone()),
                method,
                path: uri,
                status: res.status().as_u16(),
                request_id: Some(request_id),
                member: outcome.member,
                attempts: outcome.attempts,
                unanswered: outcome.unanswered,
                start_us,
                duration_us,
                reason: None,
            };
            self.config.traces.record_relay(span, &outcome.failed);
        }
        res
    }

    /// A gRPC call: to one member over HTTP/2 (`relay::grpc`); strata's own failures as
    /// gRPC statuses.
    async fn call_grpc(
        &self,
        req: Request<ClientBody>,
        _rid: &HeaderValue,
    ) -> (Response<ResBody>, Option<&RoutePool>, Outcome) {
        let Some(target) = self.route(&req) else {
            return (no_grpc_route(&req, &self.routes), None, Outcome::default());
        };
        // Boxed: the relay's state would otherwise be inline in every request's future.
        let (res, outcome) = Box::pin(relay::grpc::relay(&target.pool, req, &target.route.policy)).await;
        (res, Some(target), outcome)
    }

    /// A request to switch protocols (WebSocket): relayed to one member, joined to it
    /// on 101 (`relay::tunnel`).
    async fn switch(
        &self,
        req: Request<ClientBody>,
        rid: &HeaderValue,
    ) -> (Response<ResBody>, Option<&RoutePool>, Outcome) {
        let Some(target) = self.route(&req) else {
            let res = no_route(&req, rid);
            return (res, None, Outcome::default());
        };
        if target.route.grpc && !grpc_kin(&req) {
            return (not_grpc(&req, target, rid), Some(target), Outcome::default());
        }
        if target.route.mode == CallMode::All {
            let res = relay::error_response(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                &target.route.service,
                "a route that calls ALL members cannot switch protocols",
                Some(rid),
            );
            return (res, Some(target), Outcome::default());
        }
        let (res, outcome) = relay::tunnel::relay(&target.pool, req, &target.route.policy).await;
        // A handshake no member could answer gets the route's fixed answer, as any
        // other request does (a switched one is a 101: never replaced).
        let res = match &target.route.fallback {
            Some(fallback) => with_request_id(fallback.after_uncached(res), rid),
            None => res,
        };
        (res, Some(target), outcome)
    }

    async fn dispatch(
        &self,
        req: Request<ClientBody>,
        rid: &HeaderValue,
    ) -> (Response<ResBody>, Option<&RoutePool>, Outcome) {
        let none = Outcome::default();
        let headers = req.headers();
        if headers.contains_key(header::TRANSFER_ENCODING) && headers.contains_key(header::CONTENT_LENGTH) {
            let res = relay::error_response(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                "",
                "a request may not carry both Content-Length and Transfer-Encoding",
                Some(rid),
            );
            return (close(res), None, none);
        }
        let declared = match content_length(headers) {
            Ok(n) => n,
            Err(()) => {
                let res = relay::error_response(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::BadRequest,
                    "",
                    "Content-Length is not a number",
                    Some(rid),
                );
                return (close(res), None, none);
            }
        };
        if let (Some(limit), Some(len)) = (self.config.max_body_bytes, declared) {
            if len > limit {
                let res = relay::error_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    ErrorCode::PayloadTooLarge,
                    "",
                    &format!("request body of {len} bytes is over the limit of {limit} bytes"),
                    Some(rid),
                );
                return (close(res), None, none);
            }
        }
        let Some(target) = self.route(&req) else {
            let res = no_route(&req, rid);
            return (res, None, none);
        };
        if target.route.grpc && !grpc_kin(&req) {
            return (not_grpc(&req, target, rid), Some(target), none);
        }
        let Some(fallback) = &target.route.fallback else {
            let (res, outcome) = relay_client_request(
                &target.pool,
                req,
                declared,
                self.config.max_body_bytes,
                target.route.mode,
                &target.route.policy,
            )
            .await;
            return (res, Some(target), outcome);
        };
        let (key, revalidating) = match fallback.lookup(&req) {
            Lookup::Fresh(res) => return (with_request_id(res, rid), Some(target), none),
            Lookup::Relay { key, revalidate } => (Some(key), revalidate),
            Lookup::Bypass => (None, None),
        };
        let invalidates = fallback.unsafe_target(&req);
        let mut req = req;
        let asked = req.headers().clone();
        let head = req.method() == http::Method::HEAD;
        if let Some(etag) = &revalidating {
            req.headers_mut().insert(header::IF_NONE_MATCH, etag.clone());
        }
        let (res, outcome) = relay_client_request(
            &target.pool,
            req,
            declared,
            self.config.max_body_bytes,
            target.route.mode,
            &target.route.policy,
        )
        .await;
        let res = match (key, invalidates) {
            (Some(key), _) => fallback.after(&asked, key, revalidating.is_some(), head, res),
            (None, Some(target)) => fallback.after_unsafe(target, res),
            (None, None) => fallback.after_uncached(res),
        };
        // A stored or fixed answer is this request's too.
        (with_request_id(res, rid), Some(target), outcome)
    }
}

/// A request's id, method, path and trace context, taken before it is relayed.
struct Begun {
    started: Instant,
    request_id: HeaderValue,
    method: http::Method,
    uri: http::Uri,
    traced: Option<(trace::Context, u64)>,
}

fn content_length(headers: &http::HeaderMap) -> Result<Option<u64>, ()> {
    match headers.get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v.to_str().ok().and_then(|s| s.trim().parse().ok()).map(Some).ok_or(()),
    }
}

/// Relays a client's request to `pool` in `mode`, for the gateway and for calls between
/// instances through the node API alike. A body that is absent, declared small
/// (`declared` at most [`REPLAYABLE_BODY`]) or broadcast is held whole so that it can be
/// sent again; a larger one streams through within `limit`. Counted in the pool's
/// [`RelayStats`]: its status class, and the time from here until the reply head is back.
pub async fn relay_client_request<B>(
    pool: &Pool,
    req: Request<B>,
    declared: Option<u64>,
    limit: Option<u64>,
    mode: CallMode,
    policy: &RelayPolicy,
) -> (Response<ResBody>, Outcome)
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<request_body::BoxError>,
{
    let arrived = Instant::now();
    let stats = RelayStats::of(pool);
    let (res, outcome) = relay_to_pool(pool, req, declared, limit, mode, policy).await;
    stats.record(res.status(), outcome.unanswered, arrived.elapsed());
    stats.record_reissues(Protocol::Http, outcome.attempts, &outcome.failed);
    (res, outcome)
}

async fn relay_to_pool<B>(
    pool: &Pool,
    req: Request<B>,
    declared: Option<u64>,
    limit: Option<u64>,
    mode: CallMode,
    policy: &RelayPolicy,
) -> (Response<ResBody>, Outcome)
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<request_body::BoxError>,
{
    let (parts, incoming) = req.into_parts();
    let body = if incoming.is_end_stream() {
        ReqBody::empty()
    } else {
        let hold_whole = matches!(mode, CallMode::All) || declared.is_some_and(|n| n <= REPLAYABLE_BODY);
        // Boxed: reading a body is the less common path, and its state would otherwise
        // make every request's future larger.
        match Box::pin(body_for_relay(incoming, hold_whole, limit, mode)).await {
            Ok(body) => body,
            Err(res) => return (res, Outcome::default().unanswered(NoAnswer::ClientBody)),
        }
    };
    let req = Request::from_parts(parts, body);
    match mode {
        CallMode::Any => relay::any(pool, req, policy).await,
        CallMode::All => Box::pin(relay::all(pool, req, policy)).await,
    }
}

/// Turns the client's body into the relay's: held whole, or streamed within the limit.
async fn body_for_relay<B>(
    incoming: B,
    hold_whole: bool,
    limit: Option<u64>,
    mode: CallMode,
) -> Result<ReqBody, Response<ResBody>>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<request_body::BoxError>,
{
    if incoming.is_end_stream() {
        return Ok(ReqBody::empty());
    }
    if hold_whole {
        let cap = match mode {
            CallMode::All => BROADCAST_BODY,
            CallMode::Any => limit.unwrap_or(u64::MAX).min(REPLAYABLE_BODY) as usize,
        };
        return match Limited::new(incoming, cap).collect().await {
            Ok(collected) => Ok(ReqBody::Full(Some(collected.to_bytes()))),
            Err(e) => {
                let too_big = e.downcast_ref::<http_body_util::LengthLimitError>().is_some();
                let (status, code, msg) = if too_big {
                    (
                        StatusCode::PAYLOAD_TOO_LARGE,
                        ErrorCode::PayloadTooLarge,
                        format!("request body is over the limit of {cap} bytes"),
                    )
                } else {
                    (
                        StatusCode::BAD_REQUEST,
                        ErrorCode::ClientBody,
                        format!("could not read the request body: {e}"),
                    )
                };
                Err(close(relay::error_response(status, code, "", &msg, None)))
            }
        };
    }
    let stream = match limit {
        Some(limit) => Limited::new(incoming, limit as usize).boxed_unsync(),
        None => incoming.map_err(Into::into).boxed_unsync(),
    };
    Ok(ReqBody::Stream(stream))
}
