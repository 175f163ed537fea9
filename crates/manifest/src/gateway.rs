//! The gateway, the first tier: its listener and request limits ([`GatewaySpec`]), the
//! routes that send requests to a pool ([`RouteSpec`]) and how a request is relayed to
//! its members ([`CallMode`], [`RelaySpec`]).

use serde::{Deserialize, Serialize};

/// Every field may be left out; [`Default`] holds the values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewaySpec {
    /// Address the first tier listens on, `host:port`.
    pub listen: String,
    /// Largest request header block accepted; larger gets 431.
    pub max_header_bytes: usize,
    /// Largest request body accepted; larger gets 413. None: unlimited (streamed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u64>,
    /// A client that has not sent its whole header block by then gets 408 and a close.
    pub header_read_timeout_ms: u64,
    /// Client connections open at once, over all the gateway's workers; one more is
    /// answered 503 with `Retry-After: 1` and closed.
    pub max_connections: usize,
    /// Worker threads serving clients, each with its own event loop, like nginx's
    /// `worker_processes`. Absent: one per core this process may run on (its CPU
    /// affinity and quota).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
    /// A line per request in the node's `logs/access.log` (buffered per worker). False:
    /// none, as nginx's `access_log off` (the request's metrics and trace are kept).
    pub access_log: bool,
}

/// The gateway's connection cap unless the manifest says: room for many kept-alive
/// clients, well under the open-file limit strata raises itself to.
pub const DEFAULT_MAX_CONNECTIONS: usize = 20_000;
/// The highest connection cap a manifest may set.
pub const MAX_MAX_CONNECTIONS: usize = 1_000_000;
/// The most gateway workers: each has a slot of its own in the gateway's tables kept
/// per thread.
pub const MAX_GATEWAY_WORKERS: usize = 63;

impl Default for GatewaySpec {
    fn default() -> Self {
        GatewaySpec {
            listen: "127.0.0.1:8080".to_string(),
            max_header_bytes: 16 * 1024,
            max_body_bytes: None,
            header_read_timeout_ms: 10_000,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            workers: None,
            access_log: true,
        }
    }
}

/// A path string or a [`RouteFull`] object (see `de` for the hand-written `Deserialize`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum RouteSpec {
    /// A path prefix.
    Prefix(String),
    Full(RouteFull),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFull {
    /// Path prefix, starting with `/`.
    pub path: String,
    /// Only requests whose Host (without port) equals this match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `any` (one load-aware member, the default) or `all` (broadcast, replies gathered).
    #[serde(default)]
    pub mode: CallMode,
    /// What the route answers when no member can: stored responses (stale-if-error)
    /// and a fixed answer. None: errors pass through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<FallbackSpec>,
}

/// A route's answers for when its service cannot answer (RFC 5861's stale-if-error,
/// then a fixed body). See docs/gateway-cache.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackSpec {
    /// Cacheable GET responses are stored (and fresh ones served without calling a
    /// member); when no member answers, a stored response up to this many seconds past
    /// its freshness is served, marked `X-Strata-Stale: true`. 0: nothing is stored.
    #[serde(default)]
    pub stale_if_error_s: u64,
    /// Bound of the stored responses of this route, bytes of headers and bodies.
    #[serde(default = "default_cache_bytes")]
    pub cache_bytes: u64,
    /// The status of the fixed answer for what has no stored response (absent: the
    /// error passes through).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The fixed answer's body.
    #[serde(default)]
    pub body: String,
    /// The fixed answer's Content-Type.
    #[serde(default = "default_fallback_type")]
    pub content_type: String,
}

fn default_cache_bytes() -> u64 {
    16 << 20
}

fn default_fallback_type() -> String {
    "text/plain; charset=utf-8".to_string()
}

/// The largest `fallback.cache_bytes`.
pub const MAX_CACHE_BYTES: u64 = 1 << 30;
/// The longest `fallback.stale_if_error_s`: 30 days.
pub const MAX_STALE_IF_ERROR_S: u64 = 30 * 24 * 3600;

impl RouteSpec {
    pub fn path(&self) -> &str {
        match self {
            RouteSpec::Prefix(p) => p,
            RouteSpec::Full(f) => &f.path,
        }
    }
    pub fn host(&self) -> Option<&str> {
        match self {
            RouteSpec::Prefix(_) => None,
            RouteSpec::Full(f) => f.host.as_deref(),
        }
    }
    pub fn mode(&self) -> CallMode {
        match self {
            RouteSpec::Prefix(_) => CallMode::Any,
            RouteSpec::Full(f) => f.mode,
        }
    }
    pub fn fallback(&self) -> Option<&FallbackSpec> {
        match self {
            RouteSpec::Prefix(_) => None,
            RouteSpec::Full(f) => f.fallback.as_ref(),
        }
    }
}

/// How a routed request is relayed; `Deserialize` is in `de`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CallMode {
    #[default]
    Any,
    All,
}

/// A service's deadlines and retries at the gateway. Every field may be left out;
/// [`Default`] holds the values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelaySpec {
    /// Deadline of a relayed request, all attempts included; past it the client gets 504.
    pub timeout_ms: u64,
    /// One attempt that has not answered by then is abandoned (and reissued when safe).
    /// Unset: [`RelaySpec::DEFAULT_ATTEMPT_TIMEOUT_MS`], or `timeout_ms` when that is
    /// shorter ([`RelaySpec::attempt_timeout_ms`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt_timeout_ms: Option<u64>,
    /// Reissues allowed per request, beyond the first attempt.
    pub retries: u32,
    /// gRPC methods that may run twice (`package.Service/Method`, or
    /// `package.Service/*` for all of a service's): a call to one is reissued after it
    /// was sent, as an idempotent HTTP request is. Any other call only while unsent.
    pub idempotent: Vec<String>,
    /// gRPC calls in flight on each of a gateway thread's HTTP/2 connections to one
    /// member before the thread opens another to it (at most 64 per thread and member;
    /// an extra one left without calls for 10 s is closed). Unset: one connection per
    /// thread and member carries all its calls, which costs least on both sides for
    /// servers that serve one connection's calls in parallel. 1 suits servers that
    /// serve each connection's calls one after the other, such as Python's `grpcio`
    /// (each call then has a connection of its own, as behind nginx or HAProxy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_calls_per_connection: Option<u64>,
    /// A switched connection (WebSocket) with no byte either way for this long is
    /// closed (a WebSocket with a Close, 1001).
    pub websocket_idle_ms: u64,
    /// A switched connection (WebSocket) is closed this long after it opened, however
    /// busy.
    pub websocket_max_ms: u64,
}

impl RelaySpec {
    /// An attempt's timeout when the manifest gives none and the deadline is longer.
    pub const DEFAULT_ATTEMPT_TIMEOUT_MS: u64 = 10_000;

    /// One attempt's timeout: as written, or the default cut to the whole deadline (so
    /// that a manifest that only shortens `timeout_ms` needs nothing more).
    pub fn attempt_timeout_ms(&self) -> u64 {
        self.attempt_timeout_ms
            .unwrap_or(Self::DEFAULT_ATTEMPT_TIMEOUT_MS.min(self.timeout_ms))
    }
}

impl Default for RelaySpec {
    fn default() -> Self {
        RelaySpec {
            timeout_ms: 30_000,
            attempt_timeout_ms: None,
            retries: 2,
            idempotent: Vec::new(),
            grpc_calls_per_connection: None,
            websocket_idle_ms: 300_000,
            websocket_max_ms: 24 * 3_600_000,
        }
    }
}
