//! The node's HTTP API: the platform API that instances reach through `$STRATA_URL`
//! (calls to other services by name, as ANY or ALL) and the control API the CLI uses
//! (ps, scale, logs, events, down).
//!
//! Layout:
//! - [`router`]: every route, over an [`ApiState`].
//! - `logs`: streams instance logs, optionally following them.
//!
//! Invariant: this is the one place that maps App Service errors to HTTP statuses for
//! the control API; the relay's own errors come from the gateway crate.

mod logs;
pub mod queues;
pub mod state;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use strata_appservice::AppService;
use strata_bus::Bus;
use strata_gateway::relay::{self, RelayPolicy};
use strata_manifest::CallMode;
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

pub struct ApiState {
    pub info: NodeInfo,
    pub app: Arc<AppService>,
    pub bus: Arc<Bus>,
    /// Relay policy of each service, from its manifest.
    pub policies: HashMap<String, RelayPolicy>,
    pub queues: Arc<strata_queue::Queues>,
    /// Services that consume a queue by push: service -> (queue, group).
    pub consumers: HashMap<String, (String, String)>,
    /// The store and the cache.
    pub state: state::StateTier,
    pub shutdown: CancellationToken,
}

pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/v1/health", get(|| async { "ok\n" }))
        .route("/v1/ps", get(ps))
        .route("/v1/events", get(events))
        .route("/v1/metrics", get(metrics))
        .route("/v1/down", post(down))
        .route("/v1/services/{service}/scale", post(scale))
        .route("/v1/services/{service}/logs", get(logs::logs))
        .route("/v1/any/{service}", any(call_any_root))
        .route("/v1/any/{service}/{*path}", any(call_any))
        .route("/v1/all/{service}", any(call_all_root))
        .route("/v1/all/{service}/{*path}", any(call_all))
        .merge(queues::routes())
        .merge(state::routes())
        // Publishes of big batches; a single message is bounded by its queue.
        .layer(axum::extract::DefaultBodyLimit::max(QUEUE_BODY_LIMIT))
        .fallback(|req: Request| async move {
            api_error(
                StatusCode::NOT_FOUND,
                format!(
                    "no API route {} {}; see /v1/ps, /v1/any/SERVICE/PATH, /v1/all/SERVICE/PATH",
                    req.method(),
                    req.uri().path()
                ),
            )
        })
        .with_state(state)
}

/// Largest request body the queue routes read.
pub const QUEUE_BODY_LIMIT: usize = 64 << 20;

pub(crate) fn api_error(status: StatusCode, message: String) -> Response {
    (
        status,
        Json(serde_json::json!({ "error": message, "status": status.as_u16() })),
    )
        .into_response()
}

#[derive(Serialize)]
struct Ps {
    #[serde(flatten)]
    info: NodeInfo,
    services: Vec<strata_appservice::ServiceStatus>,
    /// The backlog of each service that consumes a queue.
    consumers: Vec<Consumer>,
}

#[derive(Serialize)]
struct Consumer {
    service: String,
    queue: String,
    group: String,
    #[serde(flatten)]
    stats: Option<strata_queue::GroupStats>,
}

async fn ps(State(state): State<Arc<ApiState>>) -> Json<Ps> {
    let mut consumers: Vec<Consumer> = state
        .consumers
        .iter()
        .map(|(service, (queue, group))| Consumer {
            service: service.clone(),
            queue: queue.clone(),
            group: group.clone(),
            stats: state
                .queues
                .get(queue)
                .ok()
                .and_then(|q| q.stats().groups.into_iter().find(|g| &g.name == group)),
        })
        .collect();
    consumers.sort_by(|a, b| a.service.cmp(&b.service));
    Json(Ps {
        info: state.info.clone(),
        services: state.app.snapshot(),
        consumers,
    })
}

/// The figures of `ps` in the Prometheus text format: per service the current, target
/// and ready instance counts, in-flight and held requests, backlog, latency, shed
/// requests and cold starts.
async fn metrics(State(state): State<Arc<ApiState>>) -> Response {
    use std::fmt::Write;
    let services = state.app.snapshot();
    let mut out = String::new();
    let mut family =
        |name: &str, kind: &str, help: &str, value: &dyn Fn(&strata_appservice::ServiceStatus) -> Option<f64>| {
            let _ = writeln!(out, "# HELP strata_{name} {help}\n# TYPE strata_{name} {kind}");
            for s in &services {
                if let Some(v) = value(s) {
                    let _ = writeln!(
                        out,
                        "strata_{name}{{app=\"{}\",service=\"{}\"}} {v}",
                        state.info.app, s.name
                    );
                }
            }
        };
    let scale = |s: &strata_appservice::ServiceStatus| s.autoscale.clone();
    family(
        "instances_desired",
        "gauge",
        "Instances the service is set to run.",
        &|s| Some(f64::from(s.desired)),
    );
    family("instances_ready", "gauge", "Instances ready and in the pool.", &|s| {
        Some(s.ready as f64)
    });
    family(
        "instances_target",
        "gauge",
        "The autoscaler's target instance count.",
        &|s| scale(s).map(|a| f64::from(a.target)),
    );
    family(
        "inflight_requests",
        "gauge",
        "Requests in flight on the pool's instances.",
        &|s| Some(s.instances.iter().map(|i| i.inflight as f64).sum()),
    );
    family(
        "held_requests",
        "gauge",
        "Requests held at the gateway while an instance starts.",
        &|s| scale(s).map(|a| a.held as f64),
    );
    family(
        "backlog_messages",
        "gauge",
        "Backlog of the consumed queue's group.",
        &|s| scale(s).and_then(|a| a.backlog).map(|b| b as f64),
    );
    family(
        "backlog_drain_seconds",
        "gauge",
        "Estimated time to drain the backlog at its recent drain rate.",
        &|s| scale(s).and_then(|a| a.drain_s),
    );
    family(
        "latency_mean_ms",
        "gauge",
        "Mean latency of recent requests (Little's law over 1 s).",
        &|s| scale(s).and_then(|a| a.latency_ms),
    );
    family(
        "served_total",
        "counter",
        "Requests relayed to the service's instances, stopped ones included.",
        &|s| Some(s.served as f64),
    );
    family(
        "shed_total",
        "counter",
        "Requests shed with 503 at instances.max.",
        &|s| scale(s).map(|a| a.shed as f64),
    );
    family("cold_starts_total", "counter", "Starts from zero instances.", &|s| {
        scale(s).map(|a| a.cold_starts as f64)
    });
    family(
        "cold_start_ms",
        "gauge",
        "Time from the first request to a pool at zero until an instance was ready, last start.",
        &|s| scale(s).and_then(|a| a.cold_start_ms).map(|c| c as f64),
    );
    family(
        "autoscale_decisions_total",
        "counter",
        "Autoscaler decisions taken.",
        &|s| scale(s).map(|a| a.decisions as f64),
    );
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

async fn events(State(state): State<Arc<ApiState>>) -> Json<Vec<strata_appservice::Event>> {
    Json(state.app.recent_events())
}

async fn down(State(state): State<Arc<ApiState>>) -> Response {
    state.shutdown.cancel();
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "stopping": state.info.app })),
    )
        .into_response()
}

#[derive(Deserialize)]
struct ScaleBody {
    instances: u32,
}

async fn scale(
    State(state): State<Arc<ApiState>>,
    Path(service): Path<String>,
    body: Result<Json<ScaleBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return api_error(StatusCode::BAD_REQUEST, format!("expected {{\"instances\": N}}: {e}")),
    };
    if state.app.is_autoscaled(&service) {
        return api_error(
            StatusCode::CONFLICT,
            format!(
                "service {service:?} is autoscaled (it has autoscale, or instances.min 0): its count follows its load and a count set by hand would be undone; change instances.min and instances.max in the manifest instead"
            ),
        );
    }
    match state.app.scale(&service, body.instances) {
        Ok(()) => Json(serde_json::json!({ "service": service, "instances": body.instances })).into_response(),
        Err(e) => {
            let status = if state.app.log_dir(&service).is_none() {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            api_error(status, format!("{e:#}"))
        }
    }
}

#[derive(Deserialize)]
struct ServicePath {
    service: String,
    path: String,
}

async fn call_any_root(state: State<Arc<ApiState>>, Path(service): Path<String>, req: Request) -> Response {
    call(state, service, String::new(), req, CallMode::Any).await
}

async fn call_any(state: State<Arc<ApiState>>, Path(p): Path<ServicePath>, req: Request) -> Response {
    call(state, p.service, p.path, req, CallMode::Any).await
}

async fn call_all_root(state: State<Arc<ApiState>>, Path(service): Path<String>, req: Request) -> Response {
    call(state, service, String::new(), req, CallMode::All).await
}

async fn call_all(state: State<Arc<ApiState>>, Path(p): Path<ServicePath>, req: Request) -> Response {
    call(state, p.service, p.path, req, CallMode::All).await
}

/// Relays an instance's call to another service: `/v1/any/web/x?y` reaches `/x?y` on a
/// member of `web`.
async fn call(
    State(state): State<Arc<ApiState>>,
    service: String,
    path: String,
    req: Request,
    mode: CallMode,
) -> Response {
    let Some(policy) = state.policies.get(&service).copied() else {
        return api_error(
            StatusCode::NOT_FOUND,
            format!(
                "no service named {service:?} in app {:?} (services: {})",
                state.info.app,
                state.policies.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        );
    };
    let pool = state.bus.pool(&service);
    let (mut parts, body) = req.into_parts();
    let target = match parts.uri.query() {
        Some(q) => format!("/{path}?{q}"),
        None => format!("/{path}"),
    };
    parts.uri = match target.parse() {
        Ok(uri) => uri,
        Err(e) => return api_error(StatusCode::BAD_REQUEST, format!("bad path {target:?}: {e}")),
    };
    if !parts.headers.contains_key(relay::REQUEST_ID) {
        // Calls between instances keep the caller's request id when it passes one on;
        // others get one of their own.
        static CALLS: AtomicU64 = AtomicU64::new(1);
        let n = CALLS.fetch_add(1, Ordering::Relaxed);
        if let Ok(v) = HeaderValue::from_str(&format!("call-{}-{n:x}", std::process::id())) {
            parts.headers.insert(relay::REQUEST_ID, v);
        }
    }
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let hold_whole = matches!(mode, CallMode::All)
        || http_body::Body::is_end_stream(&body)
        || declared.is_some_and(|n| n <= strata_gateway::REPLAYABLE_BODY);
    let body = match strata_gateway::body_for_relay(body, hold_whole, None, mode).await {
        Ok(b) => b,
        Err(res) => return res.map(Body::new),
    };
    let req = http::Request::from_parts(parts, body);
    let (res, _) = match mode {
        CallMode::Any => relay::any(&pool, req, &policy).await,
        CallMode::All => relay::all(&pool, req, &policy).await,
    };
    res.map(Body::new)
}
