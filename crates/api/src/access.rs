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
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        strata_manifest::parse(
            r#"{"strata": 1, "app": "a", "queues": {"orders": {}, "audit": {}},
                "services": {
                  "web": {"run": ["w"], "bindings": ["api"], "access": {"publishes": ["orders"], "namespaces": ["carts"]}},
                  "api": {"run": ["a"], "access": {"topics": ["prices"]}},
                  "worker": {"run": ["k"], "consumes": {"queue": "orders", "group": "g", "path": "/"}}},
                "functions": {"hook": {"run": ["h"], "trigger": {"http": "/hooks"}}}}"#,
        )
        .unwrap()
    }

    fn access() -> Access {
        let tokens: HashMap<String, String> = ["web", "api", "worker", "hook"]
            .into_iter()
            .map(|s| (s.to_string(), format!("token-of-{s}")))
            .collect();
        Access::new("control", &tokens, &manifest(), "127.0.0.1:4000".parse().unwrap())
    }

    fn allowed(access: &Access, token: &str, template: &str, method: Method, params: &[(&str, &str)]) -> bool {
        let (need, _) = route(Some(template), &method, params);
        access.caller(token).expect("a known token").allows(&need).is_ok()
    }

    #[test]
    fn each_route_needs_its_right() {
        let a = access();
        let web = "token-of-web";
        // A topic is open to any token, its body any bytes; one a service claims, to
        // that service (and the control token) only.
        for token in [web, "token-of-api", "control"] {
            assert!(allowed(
                &a,
                token,
                "/v1/topics/{topic}",
                Method::POST,
                &[("topic", "news")]
            ));
        }
        for (token, may) in [
            (web, false),
            ("token-of-worker", false),
            ("token-of-api", true),
            ("control", true),
        ] {
            let got = allowed(&a, token, "/v1/topics/{topic}", Method::POST, &[("topic", "prices")]);
            assert_eq!(got, may, "{token} on a claimed topic");
        }
        let (need, _) = route(Some("/v1/topics/{topic}"), &Method::POST, &[("topic", "prices")]);
        let refused = a.caller(web).unwrap().allows(&need).unwrap_err();
        assert!(
            refused
                .message()
                .contains("add \"prices\" to services.web.access.topics"),
            "{refused:?}"
        );
        assert_eq!(
            route(Some("/v1/topics/{topic}"), &Method::POST, &[("topic", "news")]).1,
            Body::Any
        );
        assert!(allowed(
            &a,
            web,
            "/v1/any/{service}/{*path}",
            Method::GET,
            &[("service", "api"), ("path", "x")]
        ));
        assert!(!allowed(
            &a,
            web,
            "/v1/all/{service}",
            Method::GET,
            &[("service", "worker")]
        ));
        let refused = |service: &str| {
            let params = [("service", service), ("path", "x")];
            let (need, _) = route(Some("/v1/any/{service}/{*path}"), &Method::GET, &params);
            a.caller(web).unwrap().allows(&need).unwrap_err().message().to_string()
        };
        assert!(
            refused("worker").contains("add \"worker\" to services.web.bindings or to services.web.access.calls"),
            "{}",
            refused("worker")
        );
        // Itself: a binding to itself is refused by validation, so only access.calls.
        assert!(
            refused("web").contains("add \"web\" to services.web.access.calls in strata.json"),
            "{}",
            refused("web")
        );
        assert!(allowed(
            &a,
            web,
            "/v1/any/{service}/",
            Method::GET,
            &[("service", "api")]
        ));
        assert!(!allowed(
            &a,
            web,
            "/v1/all/{service}/",
            Method::GET,
            &[("service", "worker")]
        ));
        assert!(allowed(
            &a,
            web,
            "/v1/queues/{queue}/messages",
            Method::POST,
            &[("queue", "orders")]
        ));
        assert!(!allowed(
            &a,
            web,
            "/v1/queues/{queue}/messages",
            Method::POST,
            &[("queue", "audit")]
        ));
        assert!(!allowed(
            &a,
            web,
            "/v1/queues/{queue}/groups/{group}/fetch",
            Method::POST,
            &[("queue", "orders"), ("group", "g")]
        ));
        assert!(allowed(
            &a,
            web,
            "/v1/queues/{queue}",
            Method::GET,
            &[("queue", "orders")]
        ));
        assert!(!allowed(
            &a,
            web,
            "/v1/queues/{queue}",
            Method::PUT,
            &[("queue", "orders")]
        ));
        // Deleting a queue is the control token's, even for the queue's own publisher.
        let orders = [("queue", "orders")];
        assert!(!allowed(&a, web, "/v1/queues/{queue}", Method::DELETE, &orders));
        assert!(allowed(&a, "control", "/v1/queues/{queue}", Method::DELETE, &orders));
        assert!(allowed(
            &a,
            web,
            "/v1/kv/{ns}/{*key}",
            Method::PUT,
            &[("ns", "carts"), ("key", "k")]
        ));
        assert!(!allowed(&a, web, "/v1/blobs/{ns}", Method::GET, &[("ns", "images")]));
        assert!(!allowed(&a, web, "/v1/cache/keys/{*key}", Method::GET, &[("key", "k")]));
        assert!(allowed(&a, web, "/v1/reply", Method::POST, &[]));
        for control in [
            "/v1/ps",
            "/v1/down",
            "/v1/metrics",
            "/v1/queues",
            "/v1/cache",
            "/v1/some/new/route",
        ] {
            assert!(!allowed(&a, web, control, Method::GET, &[]), "{control}");
            assert!(allowed(&a, "control", control, Method::GET, &[]), "{control}");
        }
        let worker = "token-of-worker";
        let ack = [("queue", "orders"), ("group", "g")];
        assert!(allowed(
            &a,
            worker,
            "/v1/queues/{queue}/groups/{group}/ack",
            Method::POST,
            &ack
        ));
        assert!(!allowed(
            &a,
            worker,
            "/v1/queues/{queue}/messages",
            Method::POST,
            &[("queue", "orders")]
        ));
        assert!(a.caller("token-of-nobody").is_none());
    }

    #[test]
    fn a_refusal_says_what_to_add_where() {
        let a = access();
        let e = a
            .caller("token-of-web")
            .unwrap()
            .allows(&Need::Publish("audit"))
            .unwrap_err();
        assert_eq!(e.status(), StatusCode::FORBIDDEN);
        let text = format!("{e:?}");
        assert!(
            text.contains("services.web.access.publishes") && text.contains("audit"),
            "{text}"
        );
        // Each advice names a field the caller's entry has (walk of stop 51: a function
        // was told of `bindings`, a service to add a queue to `consumes`).
        let refusal = |token: &str, need: Need<'_>| {
            let e = a.caller(token).unwrap().allows(&need).unwrap_err();
            format!("{e:?}")
        };
        let text = refusal("token-of-web", Need::Call("worker"));
        assert!(
            text.contains("add \\\"worker\\\" to services.web.bindings or to services.web.access.calls"),
            "{text}"
        );
        let text = refusal("token-of-web", Need::Fetch("audit"));
        assert!(
            text.contains("services.web.access.fetches (or consume it by push: services.web.consumes)"),
            "{text}"
        );
        let text = refusal("token-of-hook", Need::Call("web"));
        assert!(text.contains("function \\\"hook\\\" may not call service"), "{text}");
        assert!(
            text.contains("to functions.hook.access.calls") && !text.contains("bindings"),
            "{text}"
        );
        let text = refusal("token-of-hook", Need::Fetch("audit"));
        assert!(
            text.contains("to functions.hook.access.fetches") && !text.contains("consumes"),
            "{text}"
        );
    }

    #[test]
    fn hosts_are_the_nodes_own_names() {
        let loopback = Hosts::of("127.0.0.1:4000".parse().unwrap());
        for ok in ["127.0.0.1:4000", "localhost:4000", "LOCALHOST:4000", "[::1]:4000"] {
            assert!(loopback.allows(ok), "{ok}");
        }
        for bad in ["evil.example:4000", "127.0.0.1:4001", "127.0.0.1", "10.0.0.1:4000", ""] {
            assert!(!loopback.allows(bad), "{bad}");
        }
        let lan = Hosts::of("10.1.2.3:4000".parse().unwrap());
        assert!(lan.allows("10.1.2.3:4000") && lan.allows("localhost:4000") && !lan.allows("10.1.2.4:4000"));
        let any = Hosts::of("0.0.0.0:4000".parse().unwrap());
        assert!(any.allows("192.168.1.9:4000") && any.allows("[fe80::1]:4000"));
        assert!(!any.allows("rebound.example:4000") && !any.allows("192.168.1.9:80"));
        let http = Hosts::of("127.0.0.1:80".parse().unwrap());
        assert!(http.allows("localhost") && http.allows("127.0.0.1:80"));
    }

    #[test]
    fn tokens_come_from_either_header() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(token_of(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, "bearer  abc ".parse().unwrap());
        assert_eq!(token_of(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(token_of(&h), None);
        h.insert(TOKEN_HEADER, "xyz".parse().unwrap());
        assert_eq!(
            token_of(&h),
            Some("xyz"),
            "X-Strata-Token wins: Authorization is the app's"
        );
        let mut relayed = h.clone();
        strip_token(&mut relayed);
        assert!(relayed.get(TOKEN_HEADER).is_none() && relayed.get(header::AUTHORIZATION).is_some());
        h.remove(TOKEN_HEADER);
        strip_token(&mut h);
        assert!(h.get(header::AUTHORIZATION).is_none());
    }

    #[test]
    fn json_endpoints_want_json_bodies() {
        let with = |ct: Option<&str>, len: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_LENGTH, len.parse().unwrap());
            if let Some(ct) = ct {
                h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
            }
            h
        };
        let status = |h: &HeaderMap, body| check_media_type(h, body).err().map(|e| e.status().as_u16());
        assert_eq!(
            status(&with(Some("application/json; charset=utf-8"), "2"), Body::Json),
            None
        );
        assert_eq!(
            status(&with(Some("application/merge-patch+json"), "2"), Body::Json),
            None
        );
        assert_eq!(status(&with(Some("text/plain"), "2"), Body::Json), Some(415));
        assert_eq!(status(&with(None, "2"), Body::Json), Some(415));
        assert_eq!(status(&with(None, "0"), Body::Json), None, "no body, nothing to read");
        assert_eq!(status(&with(Some(compact::MEDIA_TYPE), "9"), Body::JsonOrCompact), None);
        assert_eq!(status(&with(Some(compact::MEDIA_TYPE), "9"), Body::Json), Some(415));
        assert_eq!(status(&with(Some("text/plain"), "9"), Body::Any), None);
    }
}
