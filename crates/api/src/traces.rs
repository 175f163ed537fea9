//! `GET /v1/traces`: the traces of the spans this node keeps (`strata_gateway::trace`),
//! the newest ones or the one that holds `?id=` (a trace id, or a request id). In a
//! cluster each node keeps its own spans, so the one trace of `?id=` is gathered from
//! every node running the app ([`TracePeers`], over NATS): the spans each answer with,
//! each naming its node, and the nodes that did not answer in time
//! (`missing_nodes`). The newest traces (no `id`) are the cluster's too, in two rounds:
//! every node's newest trace ids (with when each one's newest span there started), merged
//! here, newest first, cut to `limit`; then every node that answered is asked for its
//! spans of those traces, so a listed trace holds what each node keeps of it, not only
//! what was among that node's own newest.

use std::collections::{BTreeSet, HashMap};
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

/// The other nodes' newest traces (`TracePeers::newest`).
#[derive(Debug, Default)]
pub struct Listed {
    /// Every answer's trace ids, each with when its newest span on that node started
    /// (µs since the epoch).
    pub newest: Vec<(String, u64)>,
    /// The nodes that answered.
    pub answered: Vec<String>,
    /// The nodes that did not answer in time.
    pub missing: Vec<String>,
}

/// What the other nodes keep of several traces (`TracePeers::spans_of`).
#[derive(Debug, Default)]
pub struct GatheredMany {
    /// Each node's spans of the traces asked for, by trace, each span with its `node`
    /// (a trace may come from several nodes: merged by the caller).
    pub traces: Vec<TraceView>,
    /// The nodes that did not answer in time.
    pub missing: Vec<String>,
}

type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The other nodes of a cluster that run this app, each keeping spans of its own.
pub trait TracePeers: Send + Sync {
    /// This node's name.
    fn me(&self) -> &str;
    /// What every other live node keeps of the trace `id` names (a trace id in hex, or
    /// a request id), gathered within a short time.
    fn gather<'a>(&'a self, id: &'a str) -> Boxed<'a, Gathered>;
    /// Every other live node's newest `limit` trace ids, gathered within a short time.
    fn newest(&self, limit: usize) -> Boxed<'_, Listed>;
    /// What `nodes` keep of the traces `ids` names (trace ids in hex), gathered within
    /// a short time.
    fn spans_of<'a>(&'a self, ids: &'a [String], nodes: &'a [String]) -> Boxed<'a, GatheredMany>;
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
    if let (None, Some(peers)) = (&q.id, &state.trace_peers) {
        return Ok(Json(newest_across_nodes(peers.as_ref(), &state.traces, limit).await));
    }
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

/// The newest `limit` traces of every node running the app, newest first, each with the
/// spans every node that answered keeps of it; every trace names the nodes that did not
/// answer (either round) in `missing_nodes`.
async fn newest_across_nodes(peers: &dyn TracePeers, traces: &Traces, limit: usize) -> Vec<TraceView> {
    let local: Vec<(String, u64)> = traces.traces(None, limit).iter().map(newest_start).collect();
    let listed = peers.newest(limit).await;
    let ids = newest_ids(local.into_iter().chain(listed.newest), limit);
    if ids.is_empty() {
        return Vec::new();
    }
    let gathered = peers.spans_of(&ids, &listed.answered).await;
    let me = peers.me().to_string();
    let mut local = traces.traces_of(&ids);
    for span in local.iter_mut().flat_map(|t| t.spans.iter_mut()) {
        span.node = Some(me.clone());
    }
    let missing: Vec<String> = listed
        .missing
        .into_iter()
        .chain(gathered.missing)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    merge(&ids, local.into_iter().chain(gathered.traces), &missing)
}

/// A trace's id with the start of its newest span (µs since the epoch).
fn newest_start(t: &TraceView) -> (String, u64) {
    let start = t.spans.iter().map(|s| s.start_us).max().unwrap_or(0);
    (t.trace_id.clone(), start)
}

/// The `limit` trace ids whose newest span on any node started last, newest first.
fn newest_ids(lists: impl Iterator<Item = (String, u64)>, limit: usize) -> Vec<String> {
    let mut newest: HashMap<String, u64> = HashMap::new();
    for (id, start) in lists {
        let at = newest.entry(id).or_insert(start);
        *at = (*at).max(start);
    }
    let mut ids: Vec<(String, u64)> = newest.into_iter().collect();
    ids.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    ids.truncate(limit);
    ids.into_iter().map(|(id, _)| id).collect()
}

/// One trace per id of `ids` (in that order) from the parts `parts` hold of them, each
/// trace's spans in start order, each naming `missing` as the nodes not heard.
fn merge(ids: &[String], parts: impl Iterator<Item = TraceView>, missing: &[String]) -> Vec<TraceView> {
    let mut by_id: HashMap<String, Vec<SpanView>> = HashMap::new();
    for part in parts {
        by_id.entry(part.trace_id).or_default().extend(part.spans);
    }
    ids.iter()
        .filter_map(|id| {
            let mut spans = by_id.remove(id)?;
            spans.sort_by_key(|s| s.start_us);
            Some(TraceView {
                trace_id: id.clone(),
                spans,
                missing_nodes: missing.to_vec(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(node: &str, span_id: &str, start_us: u64) -> SpanView {
        serde_json::from_value(serde_json::json!({
            "node": node, "span_id": span_id, "kind": "gateway", "service": "web",
            "method": "GET", "path": "/", "attempts": 1, "status": 200,
            "start_us": start_us, "duration_us": 5,
        }))
        .expect("a span")
    }

    #[test]
    fn the_newest_traces_are_those_whose_newest_span_on_any_node_started_last() {
        let lists = [
            ("t1".to_string(), 10),
            ("t2".to_string(), 30),
            ("t1".to_string(), 40),
            ("t3".to_string(), 20),
        ];
        assert_eq!(newest_ids(lists.clone().into_iter(), 10), ["t1", "t2", "t3"]);
        assert_eq!(newest_ids(lists.into_iter(), 2), ["t1", "t2"]);
    }

    #[test]
    fn a_trace_s_parts_from_several_nodes_are_one_trace_in_start_order() {
        let part = |id: &str, spans: Vec<SpanView>| TraceView {
            trace_id: id.into(),
            spans,
            missing_nodes: Vec::new(),
        };
        let parts = vec![
            part("t1", vec![span("a", "s2", 20)]),
            part("t2", vec![span("a", "s9", 5)]),
            part("t1", vec![span("b", "s1", 10), span("b", "s3", 30)]),
            part("t4", vec![span("b", "s4", 1)]),
        ];
        let ids = ["t1".to_string(), "t3".to_string(), "t2".to_string()];
        let merged = merge(&ids, parts.into_iter(), &["c".to_string()]);
        let seen: Vec<(&str, Vec<&str>)> = merged
            .iter()
            .map(|t| {
                (
                    t.trace_id.as_str(),
                    t.spans.iter().map(|s| s.span_id.as_str()).collect(),
                )
            })
            .collect();
        assert_eq!(seen, [("t1", vec!["s1", "s2", "s3"]), ("t2", vec!["s9"])]);
        assert!(merged.iter().all(|t| t.missing_nodes == ["c"]));
    }
}
