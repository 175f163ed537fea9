//! The node's HTTP API, and nothing else: the platform API that instances reach through
//! `$STRATA_URL` (calls to other services by name, queues, store, cache) and the control
//! API the CLI uses (ps, scale, logs, events, down). It holds no behaviour of its own
//! beyond reading requests and writing answers: every call goes to a part of the node
//! ([`NodeParts`]), which `strata-node` assembles.
//!
//! Layout:
//! - [`router`] / [`serve`]: every route, over a [`NodeParts`], behind the access check.
//! - `server` (conn): how the API is served: the accept loop, the connection cap
//!   ([`ServerConfig`]), a lingering close; `conn`: one connection's head, idle, body and
//!   write timers, which never cut a request in flight (a long poll, followed logs).
//! - `body`: each route's body limit (413 naming it), and JSON read straight into the
//!   route's typed struct, refused at the first byte that shows it cannot become one.
//! - [`access`]: [`Access`], who may call what: the `Host` check, tokens (the CLI's
//!   control token, one per service), each route's right, JSON media types
//!   (docs/access.md).
//! - `extract`: the routes' `Path` and `Query`, axum's with their refusals in the
//!   shared error body.
//! - [`error`]: [`ApiError`], the one mapping of domain errors to HTTP statuses and the
//!   shared error body (`error`, `status`, `code`).
//! - `control` (prometheus): ps, metrics, events, scale, down; `prometheus`: label values
//!   escaped, and the families of relayed requests (by status class, a latency histogram).
//! - `calls`: `/v1/any/...` and `/v1/all/...`, through the gateway's relay.
//! - `grpc`: gRPC calls by service name on the same port (h2c, told apart by HTTP/2's
//!   preface), through the gateway's gRPC relay.
//! - `queues`: the queue routes (contract: `docs/queues.md`); `queue_delete`:
//!   `DELETE /v1/queues/NAME`.
//! - `store`: key-value and blobs (contract: `docs/state.md`).
//! - `cache`: the cache, raw and read-through.
//! - [`topics`]: `POST /v1/topics/NAME`, a publish on the cache's pub/sub (the bus's
//!   topics), and [`topics::deliver`], one message POSTed to a subscribing service's
//!   members through the relay (the node's delivery task calls it).
//! - `traced`: the span of a traced fetch, ack, nack, reply, store or cache call (a
//!   middleware on those routes; only for a caller that passes `traceparent`).
//! - `traces`: `GET /v1/traces`, the spans this node keeps and, in a cluster, those the
//!   other nodes keep of one trace or of the newest ones ([`TracePeers`]).
//! - `logs`: streams instance logs, optionally following them.
//! - `dashboard`: `GET /ui`, the live dashboard (a page compiled in, no token needed to
//!   load it), and `GET /v1/stream`, the server-sent events it reads (docs/dashboard.md).
//! - [`cluster`]: [`ClusterView`], what the dashboard shows of the cluster (nodes, their
//!   state, what runs where), which a cluster node hands in; a single node has none.
//! - [`openapi`]: `GET /v1/openapi.json`, the OpenAPI 3.1 description of every route
//!   (`crates/api/openapi.json`, held equal to the routers by a test).
//!
//! Invariant: the queues and the store are reached only through their backend traits
//! (`QueueBackend`, `StoreBackend`), so any backend serves the same API.

pub mod access;
pub mod body;
mod cache;
mod calls;
pub mod cluster;
mod conn;
mod control;
mod dashboard;
pub mod error;
mod extract;
mod grpc;
mod hosts;
mod logs;
pub mod openapi;
mod prometheus;
mod queue_delete;
pub mod queues;
mod range;
mod server;
mod store;
pub mod topics;
mod traced;
mod traces;
pub mod turns;

pub use access::{Access, Caller};
pub use cache::ReadThroughCaches;
pub use cluster::ClusterView;
pub use error::ApiError;
pub use server::ServerConfig;
pub use traces::{Gathered, GatheredMany, Listed, TracePeers};

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::Request;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde::Serialize;
use strata_appservice::AppService;
use strata_bus::Bus;
use strata_gateway::relay::RelayPolicy;
use strata_queue::QueueBackend;
use strata_store::StoreBackend;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Where the node can be reached, for `strata ps`.
#[derive(Debug, Clone, Serialize)]
pub struct NodeInfo {
    pub app: String,
    pub gateway: String,
    pub api: String,
    /// Where the cache speaks the Redis protocol.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<String>,
    pub pid: u32,
}

/// The parts of a running node that the API serves.
pub struct NodeParts {
    pub info: NodeInfo,
    pub app: Arc<AppService>,
    pub bus: Arc<Bus>,
    /// Relay policy of each service, from its manifest.
    pub policies: HashMap<String, RelayPolicy>,
    /// gRPC service (`package.Service`) -> the service whose `grpc` names it.
    pub grpc: HashMap<String, String>,
    pub queues: Arc<dyn QueueBackend>,
    /// Each producer's next batch, so that its batches in flight keep their order.
    pub turns: Arc<turns::Turns>,
    /// Services that consume a queue by push: service -> (queue, group).
    pub consumers: HashMap<String, (String, String)>,
    pub store: Arc<dyn StoreBackend>,
    pub cache: Arc<strata_cache::Cache>,
    /// The cache's Redis port's own figures, when it has one.
    pub redis: Option<strata_cache::RespFigures>,
    /// In a cluster, the cache ring over the nodes (`GET /v1/cache` shows it).
    pub cache_ring: Option<Arc<strata_cache::NodeRing>>,
    /// The declared read-through caches over the store.
    pub read_through: ReadThroughCaches,
    /// Who may call what (checked before every route).
    pub access: Access,
    pub shutdown: CancellationToken,
    /// The node's first tier (for its routes' fallback figures).
    pub gateway: Option<Arc<strata_gateway::Gateway>>,
    /// Recent spans: the gateway's and the calls through this API (`/v1/traces`).
    pub traces: Arc<strata_gateway::trace::Traces>,
    /// In a cluster, the other nodes running this app, asked for their spans of a trace.
    pub trace_peers: Option<Arc<dyn TracePeers>>,
    /// In a cluster, the nodes and what runs where, for the dashboard; None on a single
    /// node.
    pub cluster: Option<Arc<dyn ClusterView>>,
}

pub fn router(parts: Arc<NodeParts>) -> Router {
    let traced = || axum::middleware::from_fn_with_state(parts.clone(), traced::span);
    Router::new()
        .route("/v1/health", get(|| async { "ok\n" }))
        .route("/v1/services/{service}/logs", get(logs::logs))
        .merge(control::routes())
        .merge(calls::routes())
        // A traced queue, store or cache call's span (on those routes only; inside the
        // access check, so a refused call records none).
        .merge(queues::routes().route_layer(traced()))
        .merge(queue_delete::routes())
        .merge(store::routes().route_layer(traced()))
        .merge(cache::routes().route_layer(traced()))
        .merge(topics::routes())
        .merge(traces::routes())
        .merge(openapi::routes())
        .merge(dashboard::routes())
        // After every route: it applies to those registered before it. axum adds `Allow`.
        .method_not_allowed_fallback(|req: Request| async move {
            ApiError::new(
                http::StatusCode::METHOD_NOT_ALLOWED,
                strata_wire::ErrorCode::MethodNotAllowed,
                format!(
                    "{} {} is not a route: the Allow header lists the methods it takes",
                    req.method(),
                    req.uri().path()
                ),
            )
            .into_response()
        })
        // Each route reads its body itself, bounded by its own limit (`body`).
        .fallback(|req: Request| async move {
            if let Some(empty) = store::empty_key(req.uri().path()) {
                return empty.into_response();
            }
            ApiError::not_found(format!(
                "no API route {} {}; see /v1/ps, /v1/any/SERVICE/PATH, /v1/all/SERVICE/PATH",
                req.method(),
                req.uri().path()
            ))
            .into_response()
        })
        // Outermost, so that it runs before everything, the fallback included.
        .layer(axum::middleware::from_fn_with_state(parts.clone(), access::check))
        .with_state(parts)
}

/// Serves the API on `listener` until `shutdown`: HTTP/1.1, each connection under the
/// head and idle timers and the connection cap of `config` (module `server`).
pub async fn serve(listener: TcpListener, parts: Arc<NodeParts>, config: ServerConfig, shutdown: CancellationToken) {
    server::serve(listener, router(parts.clone()), parts, config, shutdown).await;
}
