//! Traces across the nodes of a cluster. Each node keeps the spans it records in its
//! own rings (`strata_gateway::trace`): a request through node A whose member calls a
//! service on node B leaves spans on both. So `GET /v1/traces?id=` on any node asks the
//! others, over NATS, a scatter-gather on one subject per app:
//!
//! - every node running the app answers on `strata.traces.APP` ([`answer`]): a question
//!   `{"id"}` (a trace id, or a request id) gets `{"node", "trace_id", "spans"}`, the
//!   spans it keeps of the trace the id names, cut to fit NATS's 1 MiB message
//!   (`truncated`);
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
use serde::{Deserialize, Serialize};
use strata_api::{Gathered, TracePeers};
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

#[derive(Serialize, Deserialize)]
struct Ask {
    id: String,
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
        let found = traces.traces(Some(&ask.id), 1).pop();
        let body = answer_bytes(&node, found);
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
}

impl Peers {
    async fn gather_from_others(&self, id: &str) -> Gathered {
        let expected: BTreeSet<String> = self
            .membership
            .live()
            .into_iter()
            .filter(|r| r.name != self.me && r.gateways.contains_key(&self.app))
            .map(|r| r.name)
            .collect();
        let mut out = Gathered::default();
        if expected.is_empty() {
            return out;
        }
        let client = &self.nats.client;
        let inbox = client.new_inbox();
        let ask = serde_json::to_vec(&Ask { id: id.to_string() }).expect("a question serializes");
        let mut answers = match client.subscribe(inbox.clone()).await {
            Ok(answers) => answers,
            Err(e) => {
                tracing::debug!(app = self.app, "gather a trace: {e}");
                out.missing = expected.into_iter().collect();
                return out;
            }
        };
        if let Err(e) = client.publish_with_reply(subject(&self.app), inbox, ask.into()).await {
            tracing::debug!(app = self.app, "gather a trace: {e}");
            out.missing = expected.into_iter().collect();
            return out;
        }
        let deadline = tokio::time::Instant::now() + GATHER_TIMEOUT;
        let mut answered = BTreeSet::new();
        while !expected.is_subset(&answered) {
            let next = tokio::select! {
                a = answers.next() => a,
                _ = tokio::time::sleep_until(deadline) => None,
            };
            let Some(message) = next else { break };
            let Ok(answer) = serde_json::from_slice::<Answer>(&message.payload) else {
                continue;
            };
            if answer.node == self.me {
                continue;
            }
            if answer.truncated {
                tracing::warn!(
                    app = self.app,
                    node = answer.node,
                    "a trace's spans on a node did not fit one answer: the oldest are shown"
                );
            }
            answered.insert(answer.node);
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
        }
        let _ = answers.unsubscribe().await;
        out.missing = expected.difference(&answered).cloned().collect();
        out
    }
}
