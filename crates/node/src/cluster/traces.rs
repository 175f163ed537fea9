//! Traces across the nodes of a cluster. Each node keeps the spans it records in its
//! own rings (`strata_gateway::trace`): a request through node A whose member calls a
//! service on node B leaves spans on both. So `GET /v1/traces?id=` on any node asks the
//! others, over NATS, a scatter-gather on one subject per app:
//!
//! - every node running the app answers on `strata.traces.APP` ([`answer`]): a question
//!   `{"id"}` (a trace id, or a request id) gets `{"node", "trace_id", "spans"}`, the
//!   spans it keeps of the trace the id names, cut to fit NATS's 1 MiB message
//!   (`truncated`); `{"newest": N}` gets `{"node", "newest": [[TRACE_ID, START_US]]}`,
//!   its newest N trace ids with when each one's newest span started; `{"ids": [...]}`
//!   gets `{"node", "traces", "truncated"}`, its spans of those traces (the newest
//!   traces kept when they do not all fit);
//! - the asking node ([`Peers`], the node API's `TracePeers`) publishes the question
//!   with a reply inbox and takes the answers until every other live node running the
//!   app (by the membership's heartbeats) has answered, or for [`GATHER_TIMEOUT`]; the
//!   nodes that did not answer by then are named, and what was gathered is answered.
//!
//! Core NATS request/reply, not JetStream: nothing is stored, and a node that is down
//! has no spans to give (they were in its memory).

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use strata_api::{Gathered, GatheredMany, Listed, TracePeers};
use strata_cluster::{Membership, Nats};
use strata_gateway::trace::{SpanView, TraceView, Traces};
use tokio_util::sync::CancellationToken;

/// How long a gather waits for the other nodes' answers.
pub const GATHER_TIMEOUT: Duration = Duration::from_millis(500);
/// Most bytes of one node's answer (NATS refuses messages past 1 MiB by default).
const MAX_ANSWER_BYTES: usize = 900 << 10;

fn subject(app: &str) -> String {
    format!("strata.traces.{app}")
}

/// A question: one of `id` (one trace), `newest` (the newest trace ids) or `ids` (the
/// spans of several traces).
#[derive(Serialize, Deserialize, Default)]
struct Ask {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    newest: Option<usize>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ids: Vec<String>,
}

/// Most trace ids or traces one question asks for (as `/v1/traces?limit=`).
const MAX_TRACES: usize = 1000;

/// The answer to `{"newest": N}`.
#[derive(Serialize, Deserialize)]
struct NewestAnswer {
    node: String,
    newest: Vec<(String, u64)>,
}

/// The answer to `{"ids": [...]}`.
#[derive(Serialize, Deserialize)]
struct ManyAnswer {
    node: String,
    traces: Vec<TraceView>,
    #[serde(default)]
    truncated: bool,
}

/// Whose an answer is.
trait FromNode {
    fn node(&self) -> &str;
}

impl FromNode for Answer {
    fn node(&self) -> &str {
        &self.node
    }
}

impl FromNode for NewestAnswer {
    fn node(&self) -> &str {
        &self.node
    }
}

impl FromNode for ManyAnswer {
    fn node(&self) -> &str {
        &self.node
    }
}

#[derive(Serialize, Deserialize)]
struct Answer {
    node: String,
    trace_id: Option<String>,
    spans: Vec<SpanView>,
    /// Spans were left out to fit one message (the oldest are kept).
    #[serde(default)]
    truncated: bool,
}

/// Answers the other nodes' questions about `app`'s traces with the spans `traces`
/// keeps, until `stop`.
pub(super) async fn answer(nats: Nats, app: String, node: String, traces: Arc<Traces>, stop: CancellationToken) {
    let mut questions = match nats.client.subscribe(subject(&app)).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(app, "cannot answer other nodes' trace questions: {e}");
            return;
        }
    };
    loop {
        let question = tokio::select! {
            q = questions.next() => q,
            _ = stop.cancelled() => break,
        };
        let Some(question) = question else { break };
        let Some(reply) = question.reply else { continue };
        let Ok(ask) = serde_json::from_slice::<Ask>(&question.payload) else {
            continue;
        };
        let body = if let Some(id) = &ask.id {
            answer_bytes(&node, traces.traces(Some(id), 1).pop())
        } else if let Some(n) = ask.newest {
            let newest = traces
                .traces(None, n.clamp(1, MAX_TRACES))
                .iter()
                .map(|t| {
                    (
                        t.trace_id.clone(),
                        t.spans.iter().map(|s| s.start_us).max().unwrap_or(0),
                    )
                })
                .collect();
            let answer = NewestAnswer {
                node: node.clone(),
                newest,
            };
            serde_json::to_vec(&answer).expect("an answer serializes")
        } else if !ask.ids.is_empty() {
            let ids = &ask.ids[..ask.ids.len().min(MAX_TRACES)];
            many_bytes(&node, traces.traces_of(ids))
        } else {
            continue;
        };
        if let Err(e) = nats.client.publish(reply, body.into()).await {
            tracing::debug!(app, "answer a trace question: {e}");
        }
    }
    let _ = questions.unsubscribe().await;
}

/// `found`'s spans as this node's answer, no larger than [`MAX_ANSWER_BYTES`].
fn answer_bytes(node: &str, found: Option<TraceView>) -> Vec<u8> {
    let (trace_id, mut spans) = found.map_or((None, Vec::new()), |t| (Some(t.trace_id), t.spans));
    for span in &mut spans {
        span.node = Some(node.to_string());
    }
    let mut answer = Answer {
        node: node.to_string(),
        trace_id,
        spans,
        truncated: false,
    };
    loop {
        let bytes = serde_json::to_vec(&answer).expect("an answer serializes");
        if bytes.len() <= MAX_ANSWER_BYTES || answer.spans.is_empty() {
            return bytes;
        }
        let keep = answer.spans.len() / 2;
        answer.spans.truncate(keep);
        answer.truncated = true;
    }
}

/// `found` (newest first) as this node's answer, no larger than [`MAX_ANSWER_BYTES`]:
/// the oldest traces are left out first, then a trace's spans.
fn many_bytes(node: &str, mut found: Vec<TraceView>) -> Vec<u8> {
    for span in found.iter_mut().flat_map(|t| t.spans.iter_mut()) {
        span.node = Some(node.to_string());
    }
    let mut answer = ManyAnswer {
        node: node.to_string(),
        traces: found,
        truncated: false,
    };
    loop {
        let bytes = serde_json::to_vec(&answer).expect("an answer serializes");
        if bytes.len() <= MAX_ANSWER_BYTES {
            return bytes;
        }
        answer.truncated = true;
        match answer.traces.len() {
            0 => return bytes,
            1 if answer.traces[0].spans.is_empty() => answer.traces.clear(),
            1 => {
                let keep = answer.traces[0].spans.len() / 2;
                answer.traces[0].spans.truncate(keep);
            }
            n => answer.traces.truncate(n / 2),
        }
    }
}

/// The other nodes running an app, as the node API asks them (`TracePeers`).
pub(super) struct Peers {
    pub nats: Nats,
    pub app: String,
    pub me: String,
    pub membership: Membership,
}

impl TracePeers for Peers {
    fn me(&self) -> &str {
        &self.me
    }

    fn gather<'a>(&'a self, id: &'a str) -> Pin<Box<dyn Future<Output = Gathered> + Send + 'a>> {
        Box::pin(self.gather_from_others(id))
    }

    fn newest(&self, limit: usize) -> Pin<Box<dyn Future<Output = Listed> + Send + '_>> {
        Box::pin(self.newest_of_others(limit))
    }

    fn spans_of<'a>(
        &'a self,
        ids: &'a [String],
        nodes: &'a [String],
    ) -> Pin<Box<dyn Future<Output = GatheredMany> + Send + 'a>> {
        Box::pin(self.spans_of_others(ids, nodes))
    }
}

impl Peers {
    /// Every other live node running the app: those a question waits for.
    fn others(&self) -> BTreeSet<String> {
        self.membership
            .live()
            .into_iter()
            .filter(|r| r.name != self.me && r.gateways.contains_key(&self.app))
            .map(|r| r.name)
            .collect()
    }

    async fn gather_from_others(&self, id: &str) -> Gathered {
        let ask = Ask {
            id: Some(id.to_string()),
            ..Ask::default()
        };
        let mut out = Gathered::default();
        out.missing = self
            .ask(&ask, self.others(), |answer: Answer| {
                if answer.truncated {
                    tracing::warn!(
                        app = self.app,
                        node = answer.node,
                        "a trace's spans on a node did not fit one answer: the oldest are shown"
                    );
                }
                match (&out.trace_id, answer.trace_id) {
                    (_, None) => {}
                    (None, Some(trace_id)) => {
                        out.trace_id = Some(trace_id);
                        out.spans.extend(answer.spans);
                    }
                    (Some(have), Some(trace_id)) if *have == trace_id => out.spans.extend(answer.spans),
                    // A request id two traces share: the first trace found is the one shown.
                    (Some(_), Some(_)) => {}
                }
            })
            .await;
        out
    }

    async fn newest_of_others(&self, limit: usize) -> Listed {
        let ask = Ask {
            newest: Some(limit),
            ..Ask::default()
        };
        let mut out = Listed::default();
        out.missing = self
            .ask(&ask, self.others(), |answer: NewestAnswer| {
                out.answered.push(answer.node);
                out.newest.extend(answer.newest);
            })
            .await;
        out
    }

    async fn spans_of_others(&self, ids: &[String], nodes: &[String]) -> GatheredMany {
        let ask = Ask {
            ids: ids.to_vec(),
            ..Ask::default()
        };
        let mut out = GatheredMany::default();
        out.missing = self
            .ask(&ask, nodes.iter().cloned().collect(), |answer: ManyAnswer| {
                if answer.truncated {
                    tracing::warn!(
                        app = self.app,
                        node = answer.node,
                        "the newest traces' spans on a node did not fit one answer: the oldest traces are left out"
                    );
                }
                out.traces.extend(answer.traces);
            })
            .await;
        out
    }

    /// Publishes `ask` to every node of the app and hands `take` each other node's answer,
    /// until every node of `expected` answered or [`GATHER_TIMEOUT`] passed; answers the
    /// nodes of `expected` that did not answer.
    async fn ask<A: DeserializeOwned + FromNode>(
        &self,
        ask: &Ask,
        expected: BTreeSet<String>,
        mut take: impl FnMut(A),
    ) -> Vec<String> {
        if expected.is_empty() {
            return Vec::new();
        }
        let client = &self.nats.client;
        let inbox = client.new_inbox();
        let ask = serde_json::to_vec(ask).expect("a question serializes");
        let mut answers = match client.subscribe(inbox.clone()).await {
            Ok(answers) => answers,
            Err(e) => {
                tracing::debug!(app = self.app, "ask the other nodes for traces: {e}");
                return expected.into_iter().collect();
            }
        };
        if let Err(e) = client.publish_with_reply(subject(&self.app), inbox, ask.into()).await {
            tracing::debug!(app = self.app, "ask the other nodes for traces: {e}");
            return expected.into_iter().collect();
        }
        let deadline = tokio::time::Instant::now() + GATHER_TIMEOUT;
        let mut answered = BTreeSet::new();
        while !expected.is_subset(&answered) {
            let next = tokio::select! {
                a = answers.next() => a,
                _ = tokio::time::sleep_until(deadline) => None,
            };
            let Some(message) = next else { break };
            let Ok(answer) = serde_json::from_slice::<A>(&message.payload) else {
                continue;
            };
            let node = answer.node().to_string();
            // A node not (yet) live here that answers is heard too; each node once.
            if node == self.me || answered.contains(&node) {
                continue;
            }
            answered.insert(node);
            take(answer);
        }
        let _ = answers.unsubscribe().await;
        expected.difference(&answered).cloned().collect()
    }
}
