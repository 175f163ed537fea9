//! The control API the CLI uses: ps, metrics (Prometheus text, with `prometheus`),
//! events, scale, down.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use strata_appservice::ScaleBy;

use crate::extract::Path;
use crate::{ApiError, NodeInfo, NodeParts};

pub(crate) fn routes() -> Router<Arc<NodeParts>> {
    Router::new()
        .route("/v1/ps", get(ps))
        .route("/v1/events", get(events))
        .route("/v1/metrics", get(metrics))
        .route("/v1/down", post(down))
        .route("/v1/services/{service}/scale", post(scale))
}

#[derive(Serialize)]
pub(crate) struct Ps {
    #[serde(flatten)]
    info: NodeInfo,
    pub(crate) services: Vec<strata_appservice::ServiceStatus>,
    /// The backlog of each service that consumes a queue.
    consumers: Vec<Consumer>,
    /// What is out of service and why (a queue or the store whose files could not be
    /// opened); empty when all is well.
    failures: Vec<String>,
    /// Routes with a fallback: their stored responses and what they served.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    route_caches: Vec<RouteCache>,
    /// Where the store's data is, in words (a cluster's: each bucket's copies); absent
    /// for the embedded store, in this node's files.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    store_placement: Vec<String>,
    /// On a cluster node: its name, and each service's placement over the nodes (a
    /// service's `desired`, `min` and `max` above are this node's share).
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<PsCluster>,
}

#[derive(Serialize)]
struct PsCluster {
    node: String,
    /// service -> node -> instances placed there.
    placement: std::collections::BTreeMap<String, std::collections::BTreeMap<String, u32>>,
}

#[derive(Serialize)]
struct RouteCache {
    service: String,
    route: String,
    #[serde(flatten)]
    stats: strata_gateway::fallback::FallbackStats,
}

fn route_caches(state: &NodeParts) -> Vec<RouteCache> {
    state.gateway.as_ref().map_or_else(Vec::new, |gateway| {
        gateway
            .fallback_stats()
            .into_iter()
            .map(|(service, route, stats)| RouteCache { service, route, stats })
            .collect()
    })
}

#[derive(Serialize)]
struct Consumer {
    service: String,
    queue: String,
    group: String,
    #[serde(flatten)]
    stats: Option<strata_queue::GroupStats>,
}

async fn ps(State(state): State<Arc<NodeParts>>) -> Json<Ps> {
    Json(ps_of(&state))
}

/// What `GET /v1/ps` answers (the dashboard's stream sends it too).
pub(crate) fn ps_of(state: &NodeParts) -> Ps {
    let mut consumers: Vec<Consumer> = state
        .consumers
        .iter()
        .map(|(service, (queue, group))| Consumer {
            service: service.clone(),
            queue: queue.clone(),
            group: group.clone(),
            stats: state.queues.get(queue).ok().map(|q| {
                let stats = q.stats();
                let not_yet = strata_queue::GroupStats {
                    // A group is made by its first fetch, from the queue's first offset:
                    // until then everything in the queue is its backlog.
                    name: group.clone(),
                    floor: stats.first_offset,
                    unread: stats.messages,
                    leased: 0,
                    backlog: stats.messages,
                    dead_lettered: 0,
                    acked: 0,
                    lease_expiries: None,
                };
                stats.groups.into_iter().find(|g| &g.name == group).unwrap_or(not_yet)
            }),
        })
        .collect();
    consumers.sort_by(|a, b| a.service.cmp(&b.service));
    let mut failures: Vec<String> = state
        .queues
        .failures()
        .into_iter()
        .map(|(name, reason)| format!("queue {name:?} is out of service: {reason}"))
        .collect();
    if let Some(reason) = state.store.failure() {
        failures.push(format!("the store is out of service: {reason}"));
    }
    failures.extend(state.store.repairs());
    Ps {
        info: state.info.clone(),
        services: state.app.snapshot(),
        consumers,
        failures,
        route_caches: route_caches(state),
        store_placement: state.store.placement(),
        cluster: state.cluster.as_ref().map(|c| {
            let snapshot = c.snapshot();
            PsCluster {
                node: snapshot.node,
                placement: snapshot.placement,
            }
        }),
    }
}

/// The figures of `ps` in the Prometheus text format: per service the current, target
/// and ready instance counts, in-flight and held requests, backlog, latency, shed
/// requests and cold starts.
async fn metrics(State(state): State<Arc<NodeParts>>) -> Response {
    use std::fmt::Write;
    let services = state.app.snapshot();
    let app = crate::prometheus::escape(&state.info.app);
    let mut out = String::new();
    let mut family =
        |name: &str, kind: &str, help: &str, value: &dyn Fn(&strata_appservice::ServiceStatus) -> Option<f64>| {
            let _ = writeln!(out, "# HELP strata_{name} {help}\n# TYPE strata_{name} {kind}");
            for s in &services {
                if let Some(v) = value(s) {
                    let _ = writeln!(
                        out,
                        "strata_{name}{{app=\"{app}\",service=\"{}\"}} {v}",
                        crate::prometheus::escape(&s.name)
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
        "latency_mean_seconds",
        "gauge",
        "Mean latency of recent requests (Little's law over 1 s).",
        &|s| scale(s).and_then(|a| a.latency_ms).map(|ms| ms / 1000.0),
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
        "cold_start_seconds",
        "gauge",
        "Time from the first request to a pool at zero until an instance was ready, last start.",
        &|s| scale(s).and_then(|a| a.cold_start_ms).map(|ms| ms as f64 / 1000.0),
    );
    family(
        "autoscale_decisions_total",
        "counter",
        "Autoscaler decisions taken.",
        &|s| scale(s).map(|a| a.decisions as f64),
    );
    // HTTP for every service; gRPC and WebSocket once a service had one.
    let relayed: Vec<_> = services
        .iter()
        .flat_map(|s| {
            let pool = state.bus.pool(&s.name);
            let stats = strata_gateway::RelayStats::of(&pool);
            let figures = strata_gateway::Protocol::ALL.map(|p| (p, stats.snapshot_of(p)));
            figures.into_iter().filter_map(|(p, figures)| {
                (p == strata_gateway::Protocol::Http || figures.latency.count() > 0)
                    .then(|| (s.name.clone(), p, figures))
            })
        })
        .collect();
    crate::prometheus::relay_families(&mut out, &state.info.app, &relayed);
    if let Some(gateway) = &state.gateway {
        crate::prometheus::route_families(&mut out, &state.info.app, &gateway.route_stats());
    }
    // Queues kept in files of their own (JetStream syncs on its servers).
    let fsyncs: Vec<_> = state
        .queues
        .list()
        .iter()
        .map(|q| q.stats())
        .filter(|s| s.fsync != "jetstream")
        .map(|s| (s.name, s.fsync_time))
        .collect();
    crate::prometheus::fsync_family(&mut out, &state.info.app, &fsyncs);
    crate::prometheus::instance_families(&mut out, &state.info.app, &services);
    let queues: Vec<_> = state.queues.list().iter().map(|q| q.stats()).collect();
    crate::prometheus::queue_families(&mut out, &state.info.app, &queues);
    crate::prometheus::cache_families(&mut out, &state.info.app, &state.cache.stats());
    if let Some(redis) = &state.redis {
        crate::prometheus::redis_families(&mut out, &state.info.app, &redis.read());
    }
    if let Some(cluster) = &state.cluster {
        crate::prometheus::cluster_families(&mut out, &state.info.app, &cluster.snapshot());
    }
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    crate::prometheus::runtime_family(&mut out, &state.info.app, workers);
    if let Some(figures) = state.store.figures() {
        crate::prometheus::store_families(&mut out, &state.info.app, &figures);
    }
    crate::prometheus::topic_family(&mut out, &state.info.app, &state.cache.topic_stats());
    let caches = route_caches(&state);
    type Figure = fn(&strata_gateway::fallback::FallbackStats) -> u64;
    let cache_families: [(&str, &str, &str, Figure); 6] = [
        (
            "route_cache_hits_total",
            "counter",
            "Fresh answers from a route's stored responses, without calling a member.",
            |s| s.hits,
        ),
        (
            "route_cache_stale_total",
            "counter",
            "Stored responses served stale because the service could not answer.",
            |s| s.stale,
        ),
        (
            "route_cache_revalidated_total",
            "counter",
            "Stored responses made fresh again by a member's 304.",
            |s| s.revalidated,
        ),
        (
            "route_fallback_total",
            "counter",
            "A route's fixed answers served because the service could not answer.",
            |s| s.fixed,
        ),
        ("route_cache_entries", "gauge", "Responses a route has stored.", |s| {
            s.entries as u64
        }),
        (
            "route_cache_bytes",
            "gauge",
            "Bytes of a route's stored responses.",
            |s| s.bytes as u64,
        ),
    ];
    if !caches.is_empty() {
        for (name, kind, help, value) in cache_families {
            let _ = writeln!(out, "# HELP strata_{name} {help}\n# TYPE strata_{name} {kind}");
            for c in &caches {
                let _ = writeln!(
                    out,
                    "strata_{name}{{app=\"{app}\",service=\"{}\",route=\"{}\"}} {}",
                    crate::prometheus::escape(&c.service),
                    crate::prometheus::escape(&c.route),
                    value(&c.stats)
                );
            }
        }
    }
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

async fn events(State(state): State<Arc<NodeParts>>) -> Json<Vec<strata_appservice::Event>> {
    Json(state.app.recent_events())
}

async fn down(State(state): State<Arc<NodeParts>>) -> Response {
    state.shutdown.cancel();
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "stopping": state.info.app })),
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScaleBody {
    instances: u32,
}

async fn scale(
    State(state): State<Arc<NodeParts>>,
    Path(service): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    let body: ScaleBody = crate::body::json(
        &headers,
        body,
        crate::body::CONTROL,
        "a scale request",
        r#"{"instances": N}"#,
    )
    .await?;
    state.app.scale(&service, body.instances, ScaleBy::Hand)?;
    Ok(Json(
        serde_json::json!({ "service": service, "instances": body.instances }),
    ))
}
