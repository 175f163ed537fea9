//! Who may call what on the node API: one middleware ([`check`]) in front of every route
//! (docs/access.md). Per request, in this order:
//!
//! 1. the `Host` header must name the node itself (its listen address, or `127.0.0.1`,
//!    `localhost`, `[::1]` with its port): 421 otherwise. A web page that rebinds its
//!    own domain to 127.0.0.1 sends its domain here, so DNS rebinding ends at this step;
//! 2. a token (`Authorization: Bearer TOKEN`, or `X-Strata-Token: TOKEN` when a call
//!    carries an `Authorization` of the app's own) that the node gave out: 401 otherwise.
//!    The control token (the CLI's, `.strata/control.token`) may do everything; a
//!    service's (`$STRATA_TOKEN` of its instances) what its manifest entry reaches
//!    ([`strata_manifest::Reach`]). Two need none: `GET /v1/openapi.json`, the
//!    description of the API, the same for every node, and the dashboard's page
//!    (`GET /ui`, `GET /ui/FILE`), which holds no data;
//! 3. the route's right ([`Need`], from the route's template and its path parameters):
//!    403 when the token lacks it. A route without a rule here is the control token's;
//! 4. a body sent to a JSON endpoint must say so (`application/json`, or the compact
//!    batch type where a publish takes it): 415 otherwise. A web page can send a
//!    `text/plain` POST without asking the browser's permission; a JSON one it cannot.
//!
//! The caller ([`Caller`]) goes on the request for handlers whose right depends on the
//! body: a reply sent to `queue:NAME` is a publish to NAME (`queues::reply`).
//!
//! Cost per request: a few string compares for the host, one `HashMap` lookup for the
//! token, a match on the route template and a set lookup for the name.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{MatchedPath, RawPathParams, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use strata_gateway::relay::grpc::GrpcStatus;
use strata_manifest::{Manifest, Reach};
use strata_wire::{compact, ErrorCode};

use crate::hosts::Hosts;
use crate::{ApiError, NodeParts};

/// The header that carries the token when `Authorization` is the app's own.
pub const TOKEN_HEADER: &str = "x-strata-token";

/// Who may call the node API, and where it may be reached: built once at start.
pub struct Access {
    /// Every token the node gave out, and whose it is.
    tokens: HashMap<String, Caller>,
    hosts: Hosts,
}

/// Whose token a request carries.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The control token (the CLI, the operator): every route.
    Control,
    /// A service's token, held by each of its instances.
    Service(Arc<Grant>),
}

/// What one service's token reaches.
#[derive(Debug)]
pub struct Grant {
    pub service: String,
    /// Where its entry is in the manifest (`services.web`, `functions.resize`), for the
    /// messages that say what to add.
    pub field: String,
    pub reach: Reach,
}

impl Access {
    /// The control token, one token per service of `manifest` (functions included), and
    /// the address the API listens on (its port resolved).
    pub fn new<'a>(
        control_token: &str,
        service_tokens: impl IntoIterator<Item = (&'a String, &'a String)>,
        manifest: &Manifest,
        listen: SocketAddr,
    ) -> Access {
        let mut tokens = HashMap::new();
        for (service, token) in service_tokens {
            let Some(reach) = manifest.reach(service) else {
                continue;
            };
            let field = if manifest.functions.contains_key(service) {
                format!("functions.{service}")
            } else {
                format!("services.{service}")
            };
            let grant = Grant {
                service: service.clone(),
                field,
                reach,
            };
            tokens.insert(token.clone(), Caller::Service(Arc::new(grant)));
        }
        tokens.insert(control_token.to_string(), Caller::Control);
        Access {
            tokens,
            hosts: Hosts::of(listen),
        }
    }

    fn caller(&self, token: &str) -> Option<&Caller> {
        self.tokens.get(token)
    }

    /// The caller of a gRPC call on the node API (`grpc`): the `:authority` must name
    /// the node and the metadata carry a token it gave out, as for HTTP.
    pub(crate) fn grpc_caller<B>(&self, req: &http::Request<B>) -> Result<Caller, (GrpcStatus, String)> {
        let authority = req
            .uri()
            .authority()
            .map(|a| a.as_str())
            .or_else(|| req.headers().get(header::HOST).and_then(|v| v.to_str().ok()));
        if !authority.is_some_and(|a| self.hosts.allows(a)) {
            return Err((
                GrpcStatus::PermissionDenied,
                format!("{authority:?} is not this node's address (the node API answers only to its own names)"),
            ));
        }
        let Some(token) = token_of(req.headers()) else {
            return Err((
                GrpcStatus::Unauthenticated,
                "no token: send the metadata authorization: Bearer $STRATA_TOKEN".to_string(),
            ));
        };
        match self.caller(token) {
            Some(caller) => Ok(caller.clone()),
            None => Err((
                GrpcStatus::Unauthenticated,
                "the token is not one this node gave out (tokens are made anew at each start of a node)".to_string(),
            )),
        }
    }
}

impl Caller {
    /// May this caller publish to `queue` (a reply to `queue:NAME` included)? 403 if not.
    pub fn may_publish(&self, queue: &str) -> Result<(), ApiError> {
        self.allows(&Need::Publish(queue))
    }

    pub(crate) fn allows(&self, need: &Need<'_>) -> Result<(), ApiError> {
        let grant = match self {
            Caller::Control => return Ok(()),
            Caller::Service(grant) => grant,
        };
        let reach = &grant.reach;
        let f = &grant.field;
        let function = f.starts_with("functions.");
        let (ok, add) = match need {
            Need::Token => return Ok(()),
            Need::Control => {
                return Err(forbidden(format!(
                    "{} is the control API, for the CLI's token (.strata/control.token), not a service's",
                    need.describe()
                )))
            }
            // A service cannot bind to itself (a binding waits for the other's
            // instances), and a function has no bindings: only access.calls then.
            Need::Call(s) if *s == grant.service || function => {
                (reach.may_call(s), format!("add {s:?} to {f}.access.calls"))
            }
            Need::Call(s) => (
                reach.may_call(s),
                format!("add {s:?} to {f}.bindings or to {f}.access.calls"),
            ),
            Need::Publish(q) => (reach.may_publish(q), format!("add {q:?} to {f}.access.publishes")),
            // A function's queue comes from its trigger; a service may consume by push.
            Need::Fetch(q) if function => (reach.may_fetch(q), format!("add {q:?} to {f}.access.fetches")),
            Need::Fetch(q) => (
                reach.may_fetch(q),
                format!("add {q:?} to {f}.access.fetches (or consume it by push: {f}.consumes)"),
            ),
            Need::Stats(q) => (
                reach.may_publish(q) || reach.may_fetch(q),
                format!("add {q:?} to {f}.access.publishes or to {f}.access.fetches"),
            ),
            Need::Namespace(ns) => (
                reach.may_use_namespace(ns),
                format!("add {ns:?} to {f}.access.namespaces"),
            ),
            Need::Cache(c) => (reach.may_read_cache(c), format!("add {c:?} to {f}.access.caches")),
            Need::CacheKeys => (reach.may_use_cache_keys(), format!("set {f}.access.cache_keys (true)")),
            Need::Topic(t) => (reach.may_publish_topic(t), format!("add {t:?} to {f}.access.topics")),
        };
        if ok {
            return Ok(());
        }
        Err(forbidden(format!(
            "{} {:?} may not {}: {add} in strata.json (see docs/access.md)",
            if function { "function" } else { "service" },
            grant.service,
            need.describe()
        ))
        .with("service", grant.service.clone()))
    }
}

fn forbidden(message: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, message)
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
}

/// The right a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need<'a> {
    /// Any token of this node.
    Token,
    /// The control token.
    Control,
    Call(&'a str),
    Publish(&'a str),
    Fetch(&'a str),
    /// A queue's stats: a publisher's or a consumer's.
    Stats(&'a str),
    Namespace(&'a str),
    Cache(&'a str),
    CacheKeys,
    /// Publishing on a topic: open unless a service claims it (`access.topics`).
    Topic(&'a str),
}

impl Need<'_> {
    fn describe(&self) -> String {
        match self {
            Need::Token => "call the node API".to_string(),
            Need::Control => "this route".to_string(),
            Need::Call(s) => format!("call service {s:?}"),
            Need::Publish(q) => format!("publish to queue {q:?}"),
            Need::Fetch(q) => format!("consume queue {q:?}"),
            Need::Stats(q) => format!("read the stats of queue {q:?}"),
            Need::Namespace(ns) => format!("use store namespace {ns:?}"),
            Need::Cache(c) => format!("read cache {c:?}"),
            Need::CacheKeys => "use the raw cache keys (/v1/cache/keys)".to_string(),
            Need::Topic(t) => format!("publish on topic {t:?}, which other services claim"),
        }
    }
}

/// What a route's body must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// Anything: bytes stored or relayed as they are.
    Any,
    Json,
    /// JSON, or the compact batch form (`application/x-strata-batch`).
    JsonOrCompact,
}

/// The right and body rule of a route, by its template (as written in the routers) and
/// its path parameters. Unknown templates are the control token's: a route added
/// without a rule is closed, not open.
fn route<'a>(template: Option<&str>, method: &Method, params: &'a [(&'a str, &'a str)]) -> (Need<'a>, Body) {
    let param = |name: &str| params.iter().find(|(k, _)| *k == name).map_or("", |(_, v)| *v);
    match template {
        // No route: a known caller gets the 404 that says which routes there are.
        None | Some("/v1/health") => (Need::Token, Body::Any),
        Some(
            "/v1/any/{service}"
            | "/v1/any/{service}/"
            | "/v1/any/{service}/{*path}"
            | "/v1/all/{service}"
            | "/v1/all/{service}/"
            | "/v1/all/{service}/{*path}",
        ) => (Need::Call(param("service")), Body::Any),
        Some("/v1/queues/{queue}") if method != Method::PUT && method != Method::DELETE => {
            (Need::Stats(param("queue")), Body::Json)
        }
        Some("/v1/queues/{queue}/messages") => (Need::Publish(param("queue")), Body::JsonOrCompact),
        Some(
            "/v1/queues/{queue}/groups/{group}/fetch"
            | "/v1/queues/{queue}/groups/{group}/ack"
            | "/v1/queues/{queue}/groups/{group}/nack"
            | "/v1/queues/{queue}/groups/{group}/messages/{offset}",
        ) => (Need::Fetch(param("queue")), Body::Json),
        // Into an inbox with a token; into a queue, the handler asks for a publish right.
        Some("/v1/reply") => (Need::Token, Body::Json),
        Some("/v1/kv/{ns}" | "/v1/kv/{ns}/{*key}" | "/v1/blobs/{ns}" | "/v1/blobs/{ns}/{*name}") => {
            (Need::Namespace(param("ns")), Body::Any)
        }
        Some("/v1/cache/keys/{*key}") => (Need::CacheKeys, Body::Any),
        Some("/v1/caches/{name}/{*key}") => (Need::Cache(param("name")), Body::Any),
        // A topic takes any token, as the Redis port's PUBLISH takes any client, unless
        // services claim it (`access.topics`).
        Some("/v1/topics/{topic}") => (Need::Topic(param("topic")), Body::Any),
        // ps, events, metrics, down, scale, logs, queue list, create and delete, cache
        // stats and drills, and whatever route comes next.
        Some(_) => (Need::Control, Body::Json),
    }
}

/// The middleware: host, token, right, media type; then the route, with the [`Caller`]
/// among the request's extensions.
pub(crate) async fn check(
    State(state): State<Arc<NodeParts>>,
    params: Result<RawPathParams, RawPathParamsRejection>,
    mut req: Request,
    next: Next,
) -> Response {
    let access = &state.access;
    if let Err(e) = access.hosts.check(&req) {
        return e.into_response();
    }
    let template = req.extensions().get::<MatchedPath>().map(MatchedPath::as_str);
    if template == Some(crate::openapi::PATH) || crate::dashboard::is_page(template) {
        // The description of the API and the dashboard's page: the same for every node,
        // no secret in them (the page calls the API with the token of its URL fragment).
        return next.run(req).await;
    }
    let caller = match token_of(req.headers()) {
        None => {
            return unauthorized(
                "no token: the node API wants Authorization: Bearer TOKEN ($STRATA_TOKEN in an instance; \
                 the CLI's is in the app's .strata/control.token)",
            )
            .into_response()
        }
        Some(token) => match access.caller(token) {
            Some(caller) => caller.clone(),
            None => {
                return unauthorized(
                    "the token is not one this node gave out (tokens are made anew at each start of a node)",
                )
                .into_response()
            }
        },
    };
    let raw_path = req.uri().path();
    let call = template.is_some_and(|t| t.starts_with("/v1/any/") || t.starts_with("/v1/all/"));
    // A call's path after the service is the member's, relayed as sent: only the service
    // is decoded.
    let service = match (&params, call) {
        (Err(_), true) => crate::calls::service_in(raw_path),
        _ => None,
    };
    let params: Vec<(&str, &str)> = match &params {
        Ok(p) => p.iter().collect(),
        Err(_) if service.is_some() => vec![("service", service.as_deref().unwrap_or(""))],
        Err(e) => {
            return ApiError::bad(format!(
                "the path {raw_path:?} does not decode: {} (a percent-escape must make UTF-8)",
                e.body_text()
            ))
            .into_response()
        }
    };
    let (need, body) = route(template, req.method(), &params);
    // A service or cache the app does not have is the route's 404 (which names those it
    // has), not a refusal whose advice would not validate.
    let unknown = match need {
        Need::Call(s) => !state.policies.contains_key(s),
        Need::Cache(c) => !state.read_through.by_name.contains_key(c),
        _ => false,
    };
    if !unknown {
        if let Err(e) = caller.allows(&need) {
            return e.into_response();
        }
    }
    if let Err(e) = check_media_type(req.headers(), body) {
        return e.into_response();
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// The token of a request: `X-Strata-Token`, else `Authorization: Bearer`.
fn token_of(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(TOKEN_HEADER) {
        return v.to_str().ok().map(str::trim);
    }
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Removes the header that carried the caller's token from a request relayed to a
/// service (`/v1/any|all`): a called service never sees its caller's token. An
/// `Authorization` that did not carry it (the token came in `X-Strata-Token`) is the
/// app's own and goes on.
pub(crate) fn strip_token(headers: &mut HeaderMap) {
    if headers.remove(TOKEN_HEADER).is_none() {
        headers.remove(header::AUTHORIZATION);
    }
}

fn check_media_type(headers: &HeaderMap, body: Body) -> Result<(), ApiError> {
    if body == Body::Any {
        return Ok(());
    }
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0");
    if !has_body {
        return Ok(());
    }
    let given = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let media = given
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .unwrap_or_default();
    let json = media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"));
    if json || (body == Body::JsonOrCompact && media == compact::MEDIA_TYPE) {
        return Ok(());
    }
    let takes = match body {
        Body::JsonOrCompact => format!("application/json or {}", compact::MEDIA_TYPE),
        _ => "application/json".to_string(),
    };
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorCode::UnsupportedMediaType,
        match given {
            Some(given) => format!("this endpoint takes {takes}, not {given:?}: say Content-Type: {takes}"),
            None => format!("a body without a Content-Type: this endpoint takes {takes}"),
        },
    ))
}

#[cfg(test)]
mod tests;
