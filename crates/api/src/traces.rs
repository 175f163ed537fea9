//! `GET /v1/traces`: the traces of the spans this node keeps (`strata_gateway::trace`),
//! the newest ones or the one that holds `?id=` (a trace id, or a request id). In a
//! cluster each node keeps its own spans, so the one trace of `?id=` is gathered from
//! every node running the app ([`TracePeers`], over NATS): the spans each answer with,
//! each naming its node, and the nodes that did not answer in time
//! (`missing_nodes`). The newest traces (no `id`) are this node's only.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use strata_gateway::trace::{SpanView, TraceView, Traces, PER_SHARD};

use crate::extract::Query;
use crate::{ApiError, NodeParts};

pub(crate) fn routes() -> Router<Arc<NodeParts>> {
    Router::new().route("/v1/traces", get(traces))
}

/// What the other nodes of a cluster keep of one trace.
#[derive(Debug, Default)]
pub struct Gathered {
    /// The trace the id named, as the first node that keeps it resolved it (a request id
    /// is known only to the nodes its requests went through).
    pub trace_id: Option<String>,
    /// Their spans of it, each with its `node`.
    pub spans: Vec<SpanView>,
    /// The nodes that did not answer in time.
    pub missing: Vec<String>,
}

/// The other nodes of a cluster that run this app, each keeping spans of its own.
pub trait TracePeers: Send + Sync {
    /// This node's name.
    fn me(&self) -> &str;
    /// What every other live node keeps of the trace `id` names (a trace id in hex, or
    /// a request id), gathered within a short time.
    fn gather<'a>(&'a self, id: &'a str) -> Pin<Box<dyn Future<Output = Gathered> + Send + 'a>>;
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TracesQuery {
    /// A trace id (32 hex digits) or a request id: that one trace.
    id: Option<String>,
    /// The newest traces, at most this many (default 20, at most 1000).
    limit: Option<usize>,
}

/// Recent traces, or the one that holds `id` (404 when no node keeps a span of it).
async fn traces(
    State(state): State<Arc<NodeParts>>,
    Query(q): Query<TracesQuery>,
) -> Result<Json<Vec<TraceView>>, ApiError> {
    let limit = q.limit.unwrap_or(20).clamp(1, 1000);
    let mut found = state.traces.traces(q.id.as_deref(), limit);
    let mut missing = Vec::new();
    if let (Some(id), Some(peers)) = (&q.id, &state.trace_peers) {
        let (trace, not_answered) = across_nodes(peers.as_ref(), &state.traces, id, found.pop()).await;
        found = trace.into_iter().collect();
        missing = not_answered;
    }
    if let (Some(id), true) = (&q.id, found.is_empty()) {
        let unasked = match missing.is_empty() {
            true => String::new(),
            false => format!("; nodes {} did not answer in time", missing.join(", ")),
        };
        return Err(ApiError::not_found(format!(
            "no kept span has trace or request id {id:?} (a node keeps the last {PER_SHARD} spans of each gateway thread){unasked}"
        )));
    }
    Ok(Json(found))
}

/// The trace `id` names with the spans every node keeps of it (this node's, `local`,
/// first), and the nodes that did not answer.
async fn across_nodes(
    peers: &dyn TracePeers,
    traces: &Traces,
    id: &str,
    mut local: Option<TraceView>,
) -> (Option<TraceView>, Vec<String>) {
    // Known here: ask by its trace id (the other nodes may not know the request id).
    let ask = local.as_ref().map_or(id, |t| t.trace_id.as_str()).to_string();
    let mut gathered = peers.gather(&ask).await;
    if local.is_none() {
        if let Some(trace_id) = gathered.trace_id.clone().filter(|t| *t != ask) {
            // A request id another node knew: now every node's spans of its trace,
            // this one's included.
            local = traces.traces(Some(&trace_id), 1).pop();
            gathered = peers.gather(&trace_id).await;
            gathered.trace_id = Some(trace_id);
        }
    }
    let me = peers.me().to_string();
    let trace = match (local, gathered.trace_id) {
        (Some(mut trace), _) => {
            for span in &mut trace.spans {
                span.node = Some(me.clone());
            }
            trace.spans.extend(gathered.spans);
            Some(trace)
        }
        (None, Some(trace_id)) => Some(TraceView {
            trace_id,
            spans: gathered.spans,
            missing_nodes: Vec::new(),
        }),
        (None, None) => None,
    };
    let trace = trace.map(|mut t| {
        t.spans.sort_by_key(|s| s.start_us);
        t.missing_nodes = gathered.missing.clone();
        t
    });
    (trace, gathered.missing)
}
