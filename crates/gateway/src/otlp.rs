//! Export of spans over OTLP/HTTP with the JSON encoding (OpenTelemetry's protocol, as
//! collectors, Jaeger, Tempo and most tracing back ends take it at `/v1/traces`).
//!
//! A node started with `--otlp URL` (or `OTEL_EXPORTER_OTLP_ENDPOINT`) hands every span
//! it records to one exporter task besides keeping it in memory: [`Traces::export`] gives
//! the task a bounded channel, which a full channel never blocks (the span is counted as
//! dropped). The task POSTs what it has every second, or at once when [`BATCH`] spans
//! wait, to `URL/v1/traces`, and once more when the node stops. A failed POST is logged
//! (at most once a minute) and its spans are dropped: export is best effort, and the
//! node's own ring still has them.
//!
//! The JSON is written here rather than through the `opentelemetry` SDK: strata already
//! keeps its spans and their context (W3C ids), so the SDK's tracer, processors and
//! their dependencies would add nothing but a second copy; the encoding is the OTLP
//! JSON mapping of `ExportTraceServiceRequest` (ids in hex, times as decimal strings).
//! Plain `http://` only: a collector behind TLS needs a local agent in front of it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::trace::{Kind, Span, Traces};

/// Spans sent in one POST at most; also the point at which a POST goes without waiting
/// for the second to end.
pub const BATCH: usize = 512;
/// Spans waiting for the exporter at most; past it new spans are dropped (and counted).
pub const QUEUED: usize = 8192;
/// How long one POST may take.
const POST_TIMEOUT: Duration = Duration::from_secs(5);

/// Where spans go: an `http://HOST:PORT[/base]` endpoint, posted to at `base/v1/traces`.
#[derive(Debug, Clone)]
pub struct Endpoint {
    authority: String,
    path: String,
}

impl Endpoint {
    /// The OTLP endpoint `url`, as `OTEL_EXPORTER_OTLP_ENDPOINT` gives it (the base: the
    /// traces go to its path + `/v1/traces`).
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("the OTLP endpoint {url:?} is not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(format!(
                    "the OTLP endpoint {url:?} is {other}://; strata exports over plain http:// (put a local collector in front of a TLS one)"
                ))
            }
            None => return Err(format!("the OTLP endpoint {url:?} needs http://HOST:PORT")),
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("the OTLP endpoint {url:?} has no host"))?;
        let authority = match authority.port_u16() {
            Some(_) => authority.to_string(),
            None => format!("{}:4318", authority.host()),
        };
        let base = uri.path().trim_end_matches('/');
        Ok(Endpoint {
            authority,
            path: format!("{base}/v1/traces"),
        })
    }

    /// The URL spans are posted to.
    pub fn traces_url(&self) -> String {
        format!("http://{}{}", self.authority, self.path)
    }
}

/// What the resource of every exported span says.
#[derive(Debug, Clone)]
pub struct Resource {
    /// The app the spans belong to (`strata.app`).
    pub app: String,
    /// This node's name in a cluster (`service.instance.id`), if any.
    pub node: Option<String>,
}

/// Runs the exporter of `traces` to `endpoint` until `stop`, then sends what is left.
pub async fn run(traces: Arc<Traces>, endpoint: Endpoint, resource: Resource, stop: CancellationToken) {
    let mut spans = traces.export(QUEUED);
    let resource = resource_json(&resource);
    let mut batch: Vec<Span> = Vec::with_capacity(BATCH);
    let mut last_warning: Option<Instant> = None;
    loop {
        let stopping = tokio::select! {
            n = spans.recv_many(&mut batch, BATCH) => n == 0,
            _ = stop.cancelled() => true,
        };
        if !stopping && batch.len() < BATCH {
            // Gather for up to a second before posting.
            let until = tokio::time::Instant::now() + Duration::from_secs(1);
            while batch.len() < BATCH {
                let room = BATCH - batch.len();
                let more = tokio::select! {
                    n = spans.recv_many(&mut batch, room) => n > 0,
                    _ = tokio::time::sleep_until(until) => false,
                    _ = stop.cancelled() => false,
                };
                if !more {
                    break;
                }
            }
        }
        if stopping {
            while batch.len() < BATCH {
                match spans.try_recv() {
                    Ok(s) => batch.push(s),
                    Err(_) => break,
                }
            }
        }
        if !batch.is_empty() {
            let body = request_json(&resource, &batch);
            if let Err(e) = post(&endpoint, body).await {
                if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                    tracing::warn!(endpoint = %endpoint.traces_url(), spans = batch.len(), "OTLP export failed, spans dropped: {e}");
                    last_warning = Some(Instant::now());
                }
            }
            batch.clear();
        }
        if stopping {
            return;
        }
    }
}

async fn post(endpoint: &Endpoint, body: Vec<u8>) -> Result<(), String> {
    let exchange = async {
        let addr: SocketAddr = tokio::net::lookup_host(&endpoint.authority)
            .await
            .map_err(|e| format!("resolve {}: {e}", endpoint.authority))?
            .next()
            .ok_or_else(|| format!("{} resolves to no address", endpoint.authority))?;
        let stream = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
        tokio::spawn(conn);
        let req = Request::builder()
            .method(Method::POST)
            .uri(endpoint.path.as_str())
            .header(header::HOST, endpoint.authority.as_str())
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let res = sender.send_request(req).await.map_err(|e| format!("POST: {e}"))?;
        let status = res.status();
        let answer = res
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if status.is_success() {
            Ok(())
        } else {
            let answer = String::from_utf8_lossy(&answer[..answer.len().min(200)]).into_owned();
            Err(format!("the collector answered {status}: {answer}"))
        }
    };
    tokio::time::timeout(POST_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {POST_TIMEOUT:?}")))
}

fn attr(key: &str, value: Value) -> Value {
    let value = match value {
        Value::Number(n) => json!({ "intValue": n.to_string() }),
        other => json!({ "stringValue": other }),
    };
    json!({ "key": key, "value": value })
}

fn resource_json(r: &Resource) -> Value {
    let mut attributes = vec![attr("service.name", json!("strata")), attr("strata.app", json!(r.app))];
    if let Some(node) = &r.node {
        attributes.push(attr("service.instance.id", json!(node)));
    }
    json!({ "attributes": attributes })
}

/// One `ExportTraceServiceRequest` in OTLP's JSON mapping.
pub fn request_json(resource: &Value, spans: &[Span]) -> Vec<u8> {
    let spans: Vec<Value> = spans.iter().map(span_json).collect();
    let request = json!({
        "resourceSpans": [{
            "resource": resource,
            "scopeSpans": [{
                "scope": { "name": "strata", "version": env!("CARGO_PKG_VERSION") },
                "spans": spans,
            }],
        }],
    });
    serde_json::to_vec(&request).expect("JSON values serialize")
}

fn span_json(s: &Span) -> Value {
    // OTLP's SpanKind: SERVER 2, CLIENT 3, PRODUCER 4, CONSUMER 5. Names are low in
    // cardinality (a queue, namespace or cache and the operation, never a key), as
    // OpenTelemetry's messaging and database conventions name them.
    let (kind, name) = match s.kind {
        Kind::Gateway => (2, format!("{} {}", s.method, s.path.path())),
        Kind::Call => (3, format!("{} {}", s.method, s.path.path())),
        Kind::Publish => (4, format!("{} publish", s.service)),
        Kind::Deliver => (5, format!("{} process", s.service)),
        Kind::Attempt => (3, format!("attempt {} {} {}", s.attempts, s.method, s.path.path())),
        // A pull (receive) and its settlement are the consumer's calls: CLIENT.
        Kind::Fetch => (3, format!("{} receive", s.service)),
        Kind::Ack => (3, format!("{} ack", s.service)),
        Kind::Nack => (3, format!("{} nack", s.service)),
        Kind::Reply => (4, format!("{} reply", s.service)),
        Kind::Store => (3, format!("{} {}", s.service, store_operation(s))),
        Kind::Cache => (3, format!("{} cache {}", s.service, s.method.as_str().to_lowercase())),
        // The platform sends the function an event: the trace's first span.
        Kind::Trigger => (4, format!("{} trigger", s.service)),
    };
    let view = s.view();
    let mut attributes = vec![
        attr("strata.kind", serde_json::to_value(s.kind).unwrap_or_default()),
        attr("strata.service", json!(view.service)),
        attr("http.request.method", json!(view.method)),
        attr("url.path", json!(view.path)),
        attr("http.response.status_code", json!(s.status)),
        attr("strata.attempts", json!(s.attempts)),
    ];
    if let Some(member) = &view.member {
        attributes.push(attr("strata.member", json!(member)));
    }
    if let Some(rid) = &view.request_id {
        attributes.push(attr("strata.request_id", json!(rid)));
    }
    if let Some(why) = &view.unanswered {
        attributes.push(attr("strata.unanswered", json!(why)));
    }
    if let Some(why) = &s.reason {
        attributes.push(attr("strata.reason", json!(why)));
    }
    // STATUS_CODE_ERROR 2 when strata or the member failed the request (or the
    // attempt); else UNSET 0.
    let failed = s.status >= 500 || s.unanswered.is_some() || s.reason.is_some();
    let mut span = json!({
        "traceId": s.trace_id_hex(),
        "spanId": view.span_id,
        "name": name,
        "kind": kind,
        "startTimeUnixNano": (u128::from(s.start_us) * 1000).to_string(),
        "endTimeUnixNano": (u128::from(s.start_us + s.duration_us) * 1000).to_string(),
        "attributes": attributes,
        "status": { "code": if failed { 2 } else { 0 } },
    });
    if let Some(parent) = view.parent_id {
        span["parentSpanId"] = json!(parent);
    }
    span
}

/// `kv get`, `blob put`, `kv list`, ... of a store call's path and method.
fn store_operation(s: &Span) -> String {
    let path = s.path.path();
    let what = if path.starts_with("/v1/blobs") { "blob" } else { "kv" };
    // `/v1/kv/NS` lists; `/v1/kv/NS/KEY` reads, writes or deletes one.
    let listing = path.split('/').filter(|p| !p.is_empty()).count() <= 3;
    let op = match (&s.method, listing) {
        (_, true) => "list".to_string(),
        (m, false) => m.as_str().to_lowercase(),
    };
    format!("{what} {op}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_the_base_url_with_v1_traces() {
        let e = Endpoint::parse("http://127.0.0.1:4318").unwrap();
        assert_eq!(e.traces_url(), "http://127.0.0.1:4318/v1/traces");
        let e = Endpoint::parse("http://collector/otel/").unwrap();
        assert_eq!(e.traces_url(), "http://collector:4318/otel/v1/traces");
        for bad in ["https://c:4318", "collector:4318", "not a url", "http://"] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
        let why = Endpoint::parse("https://c:4318").unwrap_err();
        assert!(why.contains("plain http://"), "{why}");
    }

    #[test]
    fn platform_spans_are_named_by_their_queue_namespace_or_cache_and_operation() {
        use crate::trace::{Context, Kind};
        let span = |kind: Kind, service: &str, method: http::Method, path: &'static str| {
            let context = Context::fresh();
            span_json(&Span::of(kind, context, 7, service, method, Uri::from_static(path)))
        };
        let named = |v: Value| (v["kind"].as_u64().unwrap(), v["name"].as_str().unwrap().to_string());
        let get = || Method::GET;
        assert_eq!(
            named(span(
                Kind::Fetch,
                "jobs",
                Method::POST,
                "/v1/queues/jobs/groups/g/fetch"
            )),
            (3, "jobs receive".to_string())
        );
        assert_eq!(
            named(span(Kind::Ack, "jobs", Method::POST, "/v1/queues/jobs/groups/g/ack")),
            (3, "jobs ack".to_string())
        );
        assert_eq!(
            named(span(Kind::Reply, "replies", Method::POST, "/v1/reply")),
            (4, "replies reply".to_string())
        );
        assert_eq!(
            named(span(Kind::Store, "data", Method::PUT, "/v1/kv/data/k1")),
            (3, "data kv put".to_string())
        );
        assert_eq!(
            named(span(Kind::Store, "data", get(), "/v1/blobs/data/a/b")),
            (3, "data blob get".to_string())
        );
        assert_eq!(
            named(span(Kind::Store, "data", get(), "/v1/kv/data")),
            (3, "data kv list".to_string())
        );
        assert_eq!(
            named(span(Kind::Cache, "users", get(), "/v1/caches/users/k1")),
            (3, "users cache get".to_string())
        );
        assert_eq!(
            named(span(Kind::Trigger, "tick", Method::POST, "/tick")),
            (4, "tick trigger".to_string())
        );
    }
}
