//! Traces (W3C Trace Context): every request through the gateway, and every call an
//! instance makes through the node API (`$STRATA_URL/v1/any|all`), is a span of a trace.
//!
//! - **Context.** A request's `traceparent` (`00-TRACEID-PARENTID-FLAGS`) is taken when
//!   it is well formed; otherwise a trace starts here (a random trace id). The span gets
//!   an id of its own and the request goes on with `traceparent` naming it as the
//!   parent, so a member that passes the header on (as OpenTelemetry's instrumentations
//!   do) links its own calls into the same trace; `tracestate` travels unchanged.
//! - **Spans** say what strata did: the gateway's relay (route's service, the member
//!   that answered, attempts, why no member answered when none did, status) and a call
//!   through the node API, with the request id, wall-clock start and duration; a traced
//!   publish, fetch, ack, nack or reply, store or cache call through the node API (only
//!   when the caller passed a `traceparent`: [`Context::passed`]); a push delivery
//!   ([`Delivery`]) and a function's store or timer trigger ([`Kind::Trigger`]).
//! - **Kept in memory:** the last [`PER_SHARD`] spans of each gateway worker (and of the
//!   other threads together) in a ring each, so recording is one uncontended lock and
//!   no allocation; `/v1/traces` and `strata trace ID` read them. With `--otlp URL`
//!   each is also handed to the exporter (`crate::otlp`) through a bounded channel.
//!
//! Cost per request: a header lookup and parse, one random number, 55 bytes of hex
//! written into the forwarded header, one clock read and one push into the ring.
//! `STRATA_TRACES=off` in the node's environment turns it off (no span, no header), for
//! measuring that cost.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use strata_bus::Member;
use tokio::sync::mpsc;

use crate::metrics::NoAnswer;
use crate::worker::{self, SLOTS};

pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// Spans kept per shard (a gateway worker's, or the shared one of other threads).
pub const PER_SHARD: usize = 2048;

/// Whether spans are recorded: unless `STRATA_TRACES=off` (read once).
pub fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("STRATA_TRACES").map_or(true, |v| v != "off"))
}

/// The trace a request belongs to, from its `traceparent` or new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    pub trace_id: u128,
    /// The caller's span, 0 when the trace starts here.
    pub parent: u64,
    pub flags: u8,
}

impl Context {
    /// The context of a request: its `traceparent` when well formed (version 00, ids
    /// not all zero, lowercase hex), else a new trace, sampled.
    pub fn of(headers: &HeaderMap) -> Context {
        headers
            .get(TRACEPARENT)
            .and_then(|v| parse(v.as_bytes()))
            .unwrap_or_else(Context::fresh)
    }

    /// A new trace, sampled, starting here.
    pub fn fresh() -> Context {
        Context {
            trace_id: (u128::from(random()) << 64) | u128::from(random()),
            parent: 0,
            flags: 1,
        }
    }

    /// The context a caller passed in its `traceparent`, if well formed: unlike [`of`],
    /// no trace is started (a publish or delivery that nobody traced stays untraced).
    ///
    /// [`of`]: Context::of
    pub fn passed(traceparent: &[u8]) -> Option<Context> {
        parse(traceparent)
    }

    /// `traceparent` for what this span calls: the trace, `span` as the parent.
    pub fn header(&self, span: u64) -> HeaderValue {
        let mut buf = [0u8; 55];
        buf[..3].copy_from_slice(b"00-");
        hex(self.trace_id, &mut buf[3..35]);
        buf[35] = b'-';
        hex(u128::from(span), &mut buf[36..52]);
        buf[52] = b'-';
        hex(u128::from(self.flags), &mut buf[53..55]);
        HeaderValue::from_bytes(&buf).expect("hex is a valid header value")
    }
}

/// `00-<32 hex>-<16 hex>-<2 hex>`; a higher version may carry more after a `-`.
fn parse(v: &[u8]) -> Option<Context> {
    if v.len() < 55 || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' || (v.len() > 55 && v[55] != b'-') {
        return None;
    }
    let version = unhex(&v[..2])?;
    if version == 0xff || (version == 0 && v.len() != 55) {
        return None;
    }
    let trace_id = unhex(&v[3..35])?;
    let parent = unhex(&v[36..52])? as u64;
    let flags = unhex(&v[53..55])? as u8;
    (trace_id != 0 && parent != 0).then_some(Context {
        trace_id,
        parent,
        flags,
    })
}

fn unhex(s: &[u8]) -> Option<u128> {
    s.iter().try_fold(0u128, |n, &b| {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        Some((n << 4) | u128::from(d))
    })
}

fn hex(v: u128, out: &mut [u8]) {
    for (i, b) in out.iter_mut().rev().enumerate() {
        *b = b"0123456789abcdef"[((v >> (4 * i)) & 0xf) as usize];
    }
}

/// A random non-zero u64 (wyrand, per thread, seeded from the clock and the thread).
pub fn random() -> u64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let t = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
            let here = &t as *const u64 as u64;
            t ^ here.rotate_left(32) ^ u64::from(std::process::id())
        });
    }
    STATE.with(|s| loop {
        let state = s.get().wrapping_add(0xa076_1d64_78bd_642f);
        s.set(state);
        let m = u128::from(state) * u128::from(state ^ 0xe703_7ed1_a0b4_28db);
        let r = ((m >> 64) ^ m) as u64;
        if r != 0 {
            return r;
        }
    })
}

/// What a span was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A client's request relayed by the gateway.
    Gateway,
    /// An instance's call to another service through the node API.
    Call,
    /// A traced publish to a queue through the node API (`service` is the queue).
    Publish,
    /// A push delivery of queued messages to a consuming service (or a function's
    /// queue trigger); one span per trace among the batch's messages.
    Deliver,
    /// One attempt of a relayed request that was reissued: a child of the relay's span
    /// (`gateway` or `call`), with the member tried and why it gave no reply.
    Attempt,
    /// A traced fetch from a queue through the node API (`service` is the queue).
    Fetch,
    /// A traced ack through the node API (`.../ack`, or the delete of one message).
    Ack,
    /// A traced nack through the node API.
    Nack,
    /// A traced reply through `/v1/reply` (`service` is the queue replied into, or
    /// `inbox`).
    Reply,
    /// A traced key-value or blob call through the node API (`service` is the
    /// namespace).
    Store,
    /// A traced cache read or write through the node API (`service` is the read-through
    /// cache, or `keys` for the raw keys).
    Cache,
    /// A function invoked by a store or timer trigger (`service` is the function; its
    /// request id says which trigger): the first span of a trace of its own.
    Trigger,
}

/// One span, as recorded.
#[derive(Debug, Clone)]
pub struct Span {
    pub context: Context,
    pub span_id: u64,
    pub kind: Kind,
    pub service: Arc<str>,
    pub method: http::Method,
    pub path: http::Uri,
    pub request_id: Option<HeaderValue>,
    pub member: Option<Arc<Member>>,
    pub attempts: u32,
    pub unanswered: Option<NoAnswer>,
    pub status: u16,
    pub start_us: u64,
    pub duration_us: u64,
    /// Why an attempt got no reply, in words.
    pub reason: Option<String>,
}

impl Span {
    /// A span of the platform's own work (a queue, store or cache call, a trigger): no
    /// member, no attempt, status 0 and no duration until they are set.
    pub fn of(
        kind: Kind,
        context: Context,
        span_id: u64,
        service: &str,
        method: http::Method,
        path: http::Uri,
    ) -> Span {
        Span {
            context,
            span_id,
            kind,
            service: Arc::from(service),
            method,
            path,
            request_id: None,
            member: None,
            attempts: 0,
            unanswered: None,
            status: 0,
            start_us: now_us(),
            duration_us: 0,
            reason: None,
        }
    }

    /// The span of a function's invocation by a store or timer trigger: POST to its
    /// `path`, the first span of a new trace.
    pub fn trigger(function: &str, path: &str, request_id: &str) -> Span {
        let path = http::Uri::try_from(path).unwrap_or_default();
        let mut span = Span::of(
            Kind::Trigger,
            Context::fresh(),
            random(),
            function,
            http::Method::POST,
            path,
        );
        span.request_id = HeaderValue::from_str(request_id).ok();
        span
    }
}

/// A push delivery of a batch of queued messages, as a span of each trace among the
/// messages' publishers' (one span id, recorded once per trace): each message is handed
/// its own `traceparent` with the delivery as parent.
pub struct Delivery {
    span_id: u64,
    contexts: Vec<Option<Context>>,
    started: std::time::Instant,
    start_us: u64,
}

impl Delivery {
    /// Starts the delivery of messages whose publishers passed these `traceparent`s.
    pub fn start<'a>(traceparents: impl Iterator<Item = Option<&'a str>>) -> Delivery {
        let on = enabled();
        Delivery {
            span_id: random(),
            contexts: traceparents
                .map(|t| t.filter(|_| on).and_then(|t| Context::passed(t.as_bytes())))
                .collect(),
            started: std::time::Instant::now(),
            start_us: now_us(),
        }
    }

    /// The `traceparent` message `i` continues its trace with, if it was traced.
    pub fn traceparent(&self, i: usize) -> Option<HeaderValue> {
        self.contexts.get(i).copied().flatten().map(|c| c.header(self.span_id))
    }

    /// The `traceparent` of the delivery's request: the first traced message's.
    pub fn first(&self) -> Option<HeaderValue> {
        self.contexts.iter().flatten().next().map(|c| c.header(self.span_id))
    }

    /// Records the finished delivery of `service`'s `path`, as `member` answered it.
    pub fn record(self, traces: &Traces, service: &Arc<str>, path: &str, member: Option<Arc<Member>>, status: u16) {
        let duration_us = self.started.elapsed().as_micros() as u64;
        let mut recorded: Vec<u128> = Vec::new();
        for context in self.contexts.into_iter().flatten() {
            if recorded.contains(&context.trace_id) {
                continue;
            }
            recorded.push(context.trace_id);
            traces.record(Span {
                context,
                span_id: self.span_id,
                kind: Kind::Deliver,
                service: service.clone(),
                method: http::Method::POST,
                path: http::Uri::try_from(path).unwrap_or_default(),
                request_id: None,
                member: member.clone(),
                attempts: 1,
                unanswered: None,
                status,
                start_us: self.start_us,
                duration_us,
                reason: None,
            });
        }
    }
}

/// Wall-clock microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    micros_since_epoch(SystemTime::now())
}

/// `at` in microseconds since the Unix epoch.
pub fn micros_since_epoch(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// The rings of recent spans, one per gateway worker and one for other threads, and
/// the exporter's channel when spans are exported (`crate::otlp`).
pub struct Traces {
    shards: Vec<Mutex<Ring>>,
    export: OnceLock<mpsc::Sender<Span>>,
    /// Spans the exporter had no room for.
    dropped: AtomicU64,
}

struct Ring {
    spans: Vec<Span>,
    next: usize,
}

impl Default for Traces {
    fn default() -> Self {
        Traces {
            shards: (0..SLOTS)
                .map(|_| {
                    Mutex::new(Ring {
                        spans: Vec::new(),
                        next: 0,
                    })
                })
                .collect(),
            export: OnceLock::new(),
            dropped: AtomicU64::new(0),
        }
    }
}

impl std::fmt::Debug for Traces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Traces").field("shards", &self.shards.len()).finish()
    }
}

impl Traces {
    pub fn new() -> Arc<Traces> {
        Arc::new(Traces::default())
    }

    pub fn record(&self, span: Span) {
        if let Some(export) = self.export.get() {
            if export.try_send(span.clone()).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        let mut ring = self.shards[worker::slot()].lock().expect("trace ring");
        if ring.spans.len() < PER_SHARD {
            ring.spans.push(span);
        } else {
            let at = ring.next;
            ring.spans[at] = span;
        }
        ring.next = (ring.next + 1) % PER_SHARD;
    }

    /// Records a relay's span and, when an attempt failed, a child span per attempt: each
    /// failed one with its member and why, and the one that answered (if one did).
    pub fn record_relay(&self, span: Span, failed: &[crate::relay::FailedAttempt]) {
        if !failed.is_empty() {
            let child = Context {
                parent: span.span_id,
                ..span.context
            };
            let attempt = |n: usize, member: Option<Arc<Member>>, from_us: u64, to_us: u64| Span {
                context: child,
                span_id: random(),
                kind: Kind::Attempt,
                service: span.service.clone(),
                method: span.method.clone(),
                path: span.path.clone(),
                request_id: span.request_id.clone(),
                member,
                attempts: n as u32 + 1,
                unanswered: None,
                status: 0,
                start_us: span.start_us + from_us,
                duration_us: to_us.saturating_sub(from_us),
                reason: None,
            };
            for (n, f) in failed.iter().enumerate() {
                self.record(Span {
                    reason: Some(f.why.clone()),
                    ..attempt(n, Some(f.member.clone()), f.from_us, f.to_us)
                });
            }
            let answered = span.unanswered.is_none() && span.attempts as usize > failed.len();
            if answered {
                let from_us = failed.last().map_or(0, |f| f.to_us);
                self.record(Span {
                    status: span.status,
                    ..attempt(failed.len(), span.member.clone(), from_us, span.duration_us)
                });
            }
        }
        self.record(span);
    }

    /// From now on every recorded span is also sent to the receiver this answers (the
    /// exporter's), while it has room for `capacity`; one exporter per `Traces` (a
    /// second call gets a receiver that is already closed).
    pub fn export(&self, capacity: usize) -> mpsc::Receiver<Span> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        match self.export.set(tx) {
            Ok(()) => rx,
            Err(_) => mpsc::channel(1).1,
        }
    }

    /// Spans the exporter had no room for.
    pub fn export_dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Every kept span, oldest first.
    pub fn spans(&self) -> Vec<Span> {
        let mut all: Vec<Span> = Vec::new();
        for shard in &self.shards {
            all.extend(shard.lock().expect("trace ring").spans.iter().cloned());
        }
        all.sort_by_key(|s| s.start_us);
        all
    }

    /// The traces of the last `limit` root-most spans, or the one trace that holds
    /// `id` (a trace id in hex, or a request id), as JSON-ready views, newest first.
    pub fn traces(&self, id: Option<&str>, limit: usize) -> Vec<TraceView> {
        let spans = self.spans();
        let wanted: Vec<u128> = match id {
            Some(id) => {
                let by_trace = (id.len() == 32).then(|| unhex(id.as_bytes())).flatten();
                // The newest: a client may send the same request id again.
                let found = spans
                    .iter()
                    .rev()
                    .find(|s| Some(s.context.trace_id) == by_trace || s.request_id.as_ref().is_some_and(|r| r == id));
                found.map(|s| s.context.trace_id).into_iter().collect()
            }
            None => {
                let mut ids: Vec<u128> = Vec::new();
                for s in spans.iter().rev() {
                    if !ids.contains(&s.context.trace_id) {
                        ids.push(s.context.trace_id);
                        if ids.len() == limit {
                            break;
                        }
                    }
                }
                ids
            }
        };
        Self::views(&spans, wanted)
    }

    /// The traces `ids` name (trace ids in hex), each with every span kept of it, in
    /// the order of `ids`; an id of which no span is kept is left out.
    pub fn traces_of(&self, ids: &[String]) -> Vec<TraceView> {
        let wanted: Vec<u128> = ids
            .iter()
            .filter_map(|id| (id.len() == 32).then(|| unhex(id.as_bytes())).flatten())
            .collect();
        let asked: std::collections::HashSet<u128> = wanted.iter().copied().collect();
        let spans: Vec<Span> = self
            .spans()
            .into_iter()
            .filter(|s| asked.contains(&s.context.trace_id))
            .collect();
        let seen: std::collections::HashSet<u128> = spans.iter().map(|s| s.context.trace_id).collect();
        let kept = wanted.into_iter().filter(|id| seen.contains(id)).collect();
        Self::views(&spans, kept)
    }

    /// `wanted`'s spans among `spans` (oldest first), a view per trace.
    fn views(spans: &[Span], wanted: Vec<u128>) -> Vec<TraceView> {
        wanted
            .into_iter()
            .map(|trace_id| {
                let mut hex_id = [0u8; 32];
                hex(trace_id, &mut hex_id);
                TraceView {
                    trace_id: String::from_utf8_lossy(&hex_id).into_owned(),
                    spans: spans
                        .iter()
                        .filter(|s| s.context.trace_id == trace_id)
                        .map(SpanView::of)
                        .collect(),
                    missing_nodes: Vec::new(),
                }
            })
            .collect()
    }
}

/// One trace as `/v1/traces` shows it: its spans in start order.
#[derive(Debug, Serialize, Deserialize)]
pub struct TraceView {
    pub trace_id: String,
    pub spans: Vec<SpanView>,
    /// In a cluster: the nodes that did not say within the time allowed which spans of
    /// the trace they keep (their spans, if any, are missing here).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_nodes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpanView {
    /// In a cluster: the node that recorded the span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub span_id: String,
    /// The span this one was called from (another service's request, or the client's
    /// own span); absent for a trace's first span.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    pub kind: Kind,
    pub service: String,
    pub method: String,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    pub attempts: u32,
    /// Why no member's answer came back, when none did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unanswered: Option<String>,
    pub status: u16,
    pub start_us: u64,
    pub duration_us: u64,
    /// Why an attempt got no reply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Span {
    /// As `/v1/traces` shows it.
    pub fn view(&self) -> SpanView {
        SpanView::of(self)
    }

    /// The trace id, 32 hex digits.
    pub fn trace_id_hex(&self) -> String {
        let mut buf = [0u8; 32];
        hex(self.context.trace_id, &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl SpanView {
    fn of(s: &Span) -> SpanView {
        let id = |v: u64| {
            let mut buf = [0u8; 16];
            hex(u128::from(v), &mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        };
        SpanView {
            node: None,
            span_id: id(s.span_id),
            parent_id: (s.context.parent != 0).then(|| id(s.context.parent)),
            kind: s.kind,
            service: s.service.to_string(),
            method: s.method.to_string(),
            path: s.path.path().to_string(),
            request_id: s.request_id.as_ref().and_then(|r| r.to_str().ok()).map(str::to_string),
            member: s.member.as_ref().map(|m| m.name.clone()),
            attempts: s.attempts,
            unanswered: s.unanswered.map(|u| format!("{u:?}").to_lowercase()),
            status: s.status,
            start_us: s.start_us,
            duration_us: s.duration_us,
            reason: s.reason.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_id_sent_twice_finds_the_newest_trace() {
        let traces = Traces::new();
        let mut old = Span::trigger("web", "/a", "my-req-1");
        old.start_us = 1_000;
        let mut new = Span::trigger("web", "/b", "my-req-1");
        new.start_us = 2_000;
        let newest = new.trace_id_hex();
        traces.record(new);
        traces.record(old);
        let found = traces.traces(Some("my-req-1"), 10);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].trace_id, newest);
        assert_eq!(found[0].spans[0].path, "/b");
    }

    #[test]
    fn traceparent_round_trips_and_bad_ones_start_a_trace() {
        let mut h = HeaderMap::new();
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        h.insert(TRACEPARENT, HeaderValue::from_static(good));
        let c = Context::of(&h);
        assert_eq!(c.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(c.parent, 0x00f067aa0ba902b7);
        assert_eq!(c.header(0x00f067aa0ba902b7).to_str().unwrap(), good);
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse(bad.as_bytes()), None, "{bad:?}");
        }
        // A later version may carry more fields.
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra";
        assert!(parse(later.as_bytes()).is_some());
        h.insert(TRACEPARENT, HeaderValue::from_static("garbage"));
        let fresh = Context::of(&h);
        assert_ne!(fresh.trace_id, 0);
        assert_eq!(fresh.parent, 0);
    }
}
