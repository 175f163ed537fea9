//! Traces (W3C Trace Context): a request through the gateway to a member that calls a
//! second service through `$STRATA_URL`, passing its `traceparent` on, gives one trace
//! whose spans link gateway -> call, each naming the member that answered; the client's
//! own `traceparent` is the gateway span's parent; `/v1/traces` finds the trace by its
//! id or by the request id. A message published with the trace's `traceparent` and
//! pushed to a consuming service continues the same trace: publish -> deliver -> the
//! consumer's own call. A member's traced fetch, reply, ack, store and cache calls are
//! spans of its trace; a traced reply carries its span on (in the message of a reply
//! into a queue, in the waiting publisher's answer); a timer firing starts a trace the
//! function's calls join. The Rust client's traced handle (`strata_client::Client::traced`)
//! puts its publishes, fetches, acks and replies in the caller's trace, and hands on the
//! `traceparent` of the messages and replies it reads. A member using the Python
//! client's `traced_from(self.headers)` makes its call a child of the gateway's span.

mod common;

use common::*;
use http::Method;
use serde_json::{json, Value};

const MEMBER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/trace_member.py");
const CALLER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/caller.py");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_and_the_call_it_makes_are_one_trace() {
    let app = App::new();
    let services = json!({
        "front": { "run": ["python3", MEMBER], "routes": ["/front"], "bindings": ["back"] },
        "back": { "run": ["python3", MEMBER] },
    });
    let node = app.start(app.config(app.manifest(services, Value::Null))).await;
    wait_ready(&node, "front", 1).await;
    wait_ready(&node, "back", 1).await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let mut req = request(Method::GET, node.gateway_addr, "/front", "");
    req.headers_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{client_span}-01").parse().unwrap(),
    );
    let reply = send(node.gateway_addr, req).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    // What `back` got: the same trace, its parent the call's span.
    let seen = reply.text();
    let parts: Vec<&str> = seen.split('-').collect();
    assert_eq!(parts.len(), 4, "{seen:?}");
    assert_eq!(parts[1], trace_id);
    let request_id = reply.header("x-request-id").expect("a request id").to_string();

    let traces = get(node.api_addr, &format!("/v1/traces?id={trace_id}")).await;
    assert_eq!(traces.status, 200, "{}", traces.text());
    let traces = traces.json();
    let spans = traces[0]["spans"].as_array().unwrap().clone();
    assert_eq!(spans.len(), 2, "{traces}");
    let (gateway, call) = (&spans[0], &spans[1]);
    assert_eq!(gateway["kind"], "gateway");
    assert_eq!(gateway["service"], "front");
    assert_eq!(gateway["parent_id"], client_span, "the client's span is the parent");
    assert_eq!(gateway["member"], "front-1");
    assert_eq!(gateway["status"], 200);
    assert_eq!(call["kind"], "call");
    assert_eq!(call["service"], "back");
    assert_eq!(
        call["parent_id"], gateway["span_id"],
        "the call is the gateway span's child"
    );
    assert_eq!(call["member"], "back-1");
    assert_eq!(parts[2], call["span_id"].as_str().unwrap(), "back's parent is the call");
    assert!(call["start_us"].as_u64() >= gateway["start_us"].as_u64());
    assert!(call["duration_us"].as_u64() <= gateway["duration_us"].as_u64());

    // Found by the request id too; a request without traceparent starts a trace.
    let by_rid = get(node.api_addr, &format!("/v1/traces?id={request_id}")).await.json();
    assert_eq!(by_rid[0]["trace_id"], trace_id, "{by_rid}");
    let fresh = get(node.gateway_addr, "/front").await;
    assert_eq!(fresh.status, 200);
    let newest = get(node.api_addr, "/v1/traces?limit=1").await.json();
    assert_ne!(newest[0]["trace_id"], trace_id);
    assert!(newest[0]["spans"][0].get("parent_id").is_none(), "{newest}");
    assert_eq!(newest[0]["spans"].as_array().unwrap().len(), 2, "{newest}");
    let missing = get(node.api_addr, "/v1/traces?id=nothing-like-it").await;
    assert_eq!(missing.status, 404);
    stop(node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_message_and_its_delivery_join_the_trace() {
    let app = App::new();
    let manifest = json!({
        "strata": 1,
        "app": "test",
        "queues": { "jobs": {} },
        "services": {
            "front": {
                "run": ["python3", MEMBER],
                "routes": ["/publish"],
                "bindings": ["back"],
                "access": { "publishes": ["jobs"] }
            },
            "back": { "run": ["python3", MEMBER] },
            "worker": {
                "run": ["python3", MEMBER],
                "bindings": ["back"],
                "consumes": { "queue": "jobs", "group": "workers", "path": "/jobs" }
            }
        }
    });
    let manifest = strata_manifest::parse(&manifest.to_string()).expect("a valid manifest");
    let node = app.start(app.config(manifest)).await;
    for service in ["front", "back", "worker"] {
        wait_ready(&node, service, 1).await;
    }

    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let mut req = request(Method::GET, node.gateway_addr, "/publish", "");
    req.headers_mut().insert(
        "traceparent",
        format!("00-{trace_id}-b7ad6b7169203331-01").parse().unwrap(),
    );
    let reply = send(node.gateway_addr, req).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());

    // gateway -> call (front to back), publish -> deliver (to worker) -> call (worker
    // to back): five spans once the worker's call is recorded.
    let mut spans: Vec<Value> = Vec::new();
    for _ in 0..200 {
        let traces = get(node.api_addr, &format!("/v1/traces?id={trace_id}")).await.json();
        spans = traces[0]["spans"].as_array().cloned().unwrap_or_default();
        if spans.len() >= 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let kinds: Vec<&str> = spans.iter().map(|s| s["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["gateway", "call", "publish", "deliver", "call"], "{spans:#?}");
    let (gateway, publish, deliver, consumer_call) = (&spans[0], &spans[2], &spans[3], &spans[4]);
    assert_eq!(publish["service"], "jobs");
    assert_eq!(publish["status"], 201);
    assert_eq!(
        publish["parent_id"], gateway["span_id"],
        "front published under the gateway's span, as it was given"
    );
    assert_eq!(deliver["service"], "worker");
    assert_eq!(deliver["path"], "/jobs");
    assert_eq!(deliver["member"], "worker-1");
    assert_eq!(deliver["status"], 200);
    assert_eq!(deliver["parent_id"], publish["span_id"], "delivery follows the publish");
    assert_eq!(consumer_call["service"], "back");
    assert_eq!(
        consumer_call["parent_id"], deliver["span_id"],
        "the consumer continued the message's traceparent"
    );

    // A publish without traceparent is not traced, and its message carries none.
    let before = get(node.api_addr, "/v1/traces?limit=100").await.json();
    let published = post(node.api_addr, "/v1/queues/jobs/messages", r#"{"body": "plain"}"#).await;
    assert_eq!(published.status, 201, "{}", published.text());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let after = get(node.api_addr, "/v1/traces?limit=100").await.json();
    // (The worker's call for it starts a trace of its own, as any untraced call does.)
    let queue_spans = |v: &Value| -> usize {
        let spans = v
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|t| t["spans"].as_array().unwrap().iter());
        spans
            .filter(|s| s["kind"] == "publish" || s["kind"] == "deliver")
            .count()
    };
    assert_eq!(queue_spans(&before), 2, "{before:#}");
    assert_eq!(
        queue_spans(&after),
        2,
        "an untraced publish or delivery records no span: {after:#}"
    );
    stop(node).await;
}

/// The spans of trace `trace_id` once there are at least `n` of them.
async fn spans_of(node: &strata_node::Node, trace_id: &str, n: usize) -> Vec<Value> {
    let mut spans: Vec<Value> = Vec::new();
    for _ in 0..200 {
        let traces = get(node.api_addr, &format!("/v1/traces?id={trace_id}")).await;
        if traces.status == 200 {
            spans = traces.json()[0]["spans"].as_array().cloned().unwrap_or_default();
            if spans.len() >= n {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    spans
}

/// Every kept span of the node's newest traces.
async fn all_spans(node: &strata_node::Node) -> Vec<Value> {
    let traces = get(node.api_addr, "/v1/traces?limit=1000").await.json();
    traces
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["spans"].as_array().unwrap().clone())
        .collect()
}

/// A member that fetches, replies, acks, and calls the store and a read-through cache
/// through `$STRATA_URL` with its request's `traceparent` has a span for each, in its
/// trace, under the gateway's span; the same calls without `traceparent` record none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_s_queue_store_and_cache_calls_are_spans_of_its_trace() {
    let app = App::new();
    let manifest = json!({
        "strata": 1,
        "app": "test",
        "queues": { "jobs": {}, "replies": {} },
        "caches": { "users": { "namespace": "data", "ttl_ms": 60000 } },
        "services": {
            "front": {
                "run": ["python3", MEMBER],
                "routes": ["/state"],
                "access": {
                    "publishes": ["jobs", "replies"],
                    "fetches": ["jobs"],
                    "namespaces": ["data"],
                    "caches": ["users"]
                }
            }
        }
    });
    let manifest = strata_manifest::parse(&manifest.to_string()).expect("a valid manifest");
    let node = app.start(app.config(manifest)).await;
    wait_ready(&node, "front", 1).await;

    let trace_id = "1bf92f3577b34da6a3ce929d0e0e4731";
    let mut req = request(Method::GET, node.gateway_addr, "/state", "");
    req.headers_mut().insert(
        "traceparent",
        format!("00-{trace_id}-20f067aa0ba902b9-01").parse().unwrap(),
    );
    let reply = send(node.gateway_addr, req).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.json(),
        json!([201, 200, 201, 200, 201, 200, 201, 200]),
        "each call the member made succeeded"
    );

    let spans = spans_of(&node, trace_id, 9).await;
    let kinds: Vec<&str> = spans.iter().map(|s| s["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["gateway", "publish", "fetch", "reply", "ack", "store", "store", "store", "cache"],
        "{spans:#?}"
    );
    let gateway = &spans[0];
    for span in &spans[1..] {
        assert_eq!(
            span["parent_id"], gateway["span_id"],
            "each call is a child of the request the member served: {span}"
        );
        assert!(span.get("member").is_none(), "{span}");
        assert!(span["start_us"].as_u64() >= gateway["start_us"].as_u64(), "{span}");
    }
    let seen: Vec<(&str, &str, &str, u64)> = spans[2..]
        .iter()
        .map(|s| {
            (
                s["service"].as_str().unwrap(),
                s["method"].as_str().unwrap(),
                s["path"].as_str().unwrap(),
                s["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("jobs", "POST", "/v1/queues/jobs/groups/g/fetch", 200),
            ("replies", "POST", "/v1/reply", 201),
            ("jobs", "POST", "/v1/queues/jobs/groups/g/ack", 200),
            ("data", "PUT", "/v1/kv/data/k1", 201),
            ("data", "GET", "/v1/kv/data/k1", 200),
            ("data", "PUT", "/v1/blobs/data/b1", 201),
            ("users", "GET", "/v1/caches/users/k1", 200),
        ]
    );
    // The reply went into queue `replies` carrying its span on: a consumer of the
    // replies continues the trace from it.
    let reply_span = spans[3]["span_id"].as_str().unwrap();
    let replies = post(node.api_addr, "/v1/queues/replies/groups/check/fetch?max=1", "").await;
    assert_eq!(replies.status, 200, "{}", replies.text());
    assert_eq!(
        replies.json()["messages"][0]["traceparent"],
        format!("00-{trace_id}-{reply_span}-01"),
        "{}",
        replies.text()
    );

    // The same calls without traceparent (the operator's, here) record nothing.
    let state_spans = |spans: &[Value]| {
        spans
            .iter()
            .filter(|s| ["fetch", "ack", "reply", "store", "cache"].contains(&s["kind"].as_str().unwrap()))
            .count()
    };
    let before = state_spans(&all_spans(&node).await);
    assert_eq!(before, 7);
    let put = send(
        node.api_addr,
        request(Method::PUT, node.api_addr, "/v1/kv/data/k2", "v2"),
    )
    .await
    .unwrap();
    assert_eq!(put.status, 201, "{}", put.text());
    assert_eq!(get(node.api_addr, "/v1/kv/data/k2").await.status, 200);
    assert_eq!(get(node.api_addr, "/v1/caches/users/k2").await.status, 200);
    let fetched = post(node.api_addr, "/v1/queues/jobs/groups/g/fetch?max=1", "").await;
    assert_eq!(fetched.status, 200, "{}", fetched.text());
    assert_eq!(
        state_spans(&all_spans(&node).await),
        before,
        "an untraced call records no span"
    );

    // Publish and wait: the consumer fetches the message (untraced: it does not know the
    // trace yet; the message's traceparent names the publish span) and replies passing it on; the waiting publisher's answer carries
    // the reply's span on, and the reply is a span of the publisher's trace.
    let waiter_trace = "2bf92f3577b34da6a3ce929d0e0e4732";
    let api = node.api_addr;
    let waiting = tokio::spawn(async move {
        let mut req = request(
            Method::POST,
            api,
            "/v1/queues/jobs/messages?wait_reply_ms=10000",
            r#"{"body": "question"}"#,
        );
        req.headers_mut().insert(
            "traceparent",
            format!("00-{waiter_trace}-30f067aa0ba902b9-01").parse().unwrap(),
        );
        send(api, req).await.unwrap()
    });
    let fetched = post(api, "/v1/queues/jobs/groups/g/fetch?max=1&wait_ms=5000", "").await;
    assert_eq!(fetched.status, 200, "{}", fetched.text());
    let m = fetched.json()["messages"][0].clone();
    assert_eq!(m["body"], "question", "{m}");
    let passed = m["traceparent"]
        .as_str()
        .expect("the message's traceparent")
        .to_string();
    let mut reply = request(
        Method::POST,
        api,
        "/v1/reply",
        json!({ "reply_to": m["reply_to"], "correlation_id": m["correlation_id"], "body": "answer" }).to_string(),
    );
    reply.headers_mut().insert("traceparent", passed.parse().unwrap());
    let replied = send(api, reply).await.unwrap();
    assert_eq!(replied.status, 202, "{}", replied.text());
    let answered = waiting.await.unwrap();
    assert_eq!(answered.status, 200, "{}", answered.text());
    let answer = answered.json();
    assert_eq!(answer["reply"]["body"], "answer", "{answer}");

    let spans = spans_of(&node, waiter_trace, 2).await;
    let kinds: Vec<&str> = spans.iter().map(|s| s["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["publish", "reply"], "{spans:#?}");
    let (publish, reply) = (&spans[0], &spans[1]);
    assert_eq!(
        passed,
        format!("00-{waiter_trace}-{}-01", publish["span_id"].as_str().unwrap())
    );
    assert_eq!(reply["parent_id"], publish["span_id"], "{spans:#?}");
    assert_eq!(reply["service"], "inbox", "{reply}");
    assert_eq!(
        answer["reply"]["traceparent"],
        format!("00-{waiter_trace}-{}-01", reply["span_id"].as_str().unwrap()),
        "the publisher's answer names the reply's span: {answer}"
    );
    stop(node).await;
}

/// A timer's firing starts a trace: a `trigger` span (the function, the instance that
/// answered, a request id naming the firing), and the function's own call through
/// `$STRATA_URL` with the `traceparent` it was handed is that span's child. A store
/// write's trigger does the same (a trace of its own, named by the write's version).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_firing_is_a_trace_the_function_s_calls_join() {
    let app = App::new();
    let manifest = json!({
        "strata": 1,
        "app": "test",
        "functions": {
            "tick": {
                "run": ["python3", MEMBER],
                "trigger": { "timer": { "interval_ms": 300 } },
                "path": "/tick",
                "keep_warm_ms": 60000,
                "access": { "namespaces": ["data"] }
            },
            "onput": {
                "run": ["python3", MEMBER],
                "trigger": { "store": { "namespace": "data", "prefix": "in/" } },
                "path": "/tick",
                "keep_warm_ms": 60000,
                "access": { "namespaces": ["data"] }
            }
        }
    });
    let manifest = strata_manifest::parse(&manifest.to_string()).expect("a valid manifest");
    let node = app.start(app.config(manifest)).await;

    // A firing the function answered: its trigger span has a child, the store call.
    let mut found: Option<(Value, Value)> = None;
    for _ in 0..300 {
        let spans = all_spans(&node).await;
        let answered = spans
            .iter()
            .filter(|s| s["kind"] == "trigger" && s["status"] == 200)
            .find_map(|t| {
                let child = spans.iter().find(|c| c["parent_id"] == t["span_id"])?;
                Some((t.clone(), child.clone()))
            });
        if answered.is_some() {
            found = answered;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (trigger, call) = found.expect("a timer firing whose function called the store, within 15 s");
    assert!(
        trigger["request_id"].as_str().unwrap().starts_with("timer-tick-"),
        "{trigger}"
    );
    assert_eq!(trigger["service"], "tick");
    assert_eq!(trigger["path"], "/tick");
    assert!(
        trigger.get("parent_id").is_none(),
        "a timer starts its trace: {trigger}"
    );
    assert_eq!(trigger["member"], "tick-1");
    assert!(trigger["attempts"].as_u64() >= Some(1), "{trigger}");
    let request_id = trigger["request_id"].as_str().unwrap();
    assert!(request_id.starts_with("timer-tick-"), "{request_id}");
    let scheduled: u64 = request_id["timer-tick-".len()..].parse().unwrap();
    assert!(
        scheduled > 1_600_000_000_000,
        "the firing's scheduled time: {request_id}"
    );
    assert_eq!(call["kind"], "store");
    assert_eq!(call["service"], "data");
    assert_eq!(call["path"], "/v1/kv/data/tick");
    assert_eq!(call["status"], 201);
    // One trace: found by the firing's request id too.
    let by_rid = get(node.api_addr, &format!("/v1/traces?id={request_id}")).await.json();
    let spans = by_rid[0]["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 2, "{by_rid:#}");
    assert_eq!(by_rid[0]["spans"][0]["span_id"], trigger["span_id"]);

    // A write under the store trigger's prefix: the function's trace, by its request id.
    let put = send(
        node.api_addr,
        request(Method::PUT, node.api_addr, "/v1/kv/data/in/x", "x"),
    )
    .await
    .unwrap();
    assert_eq!(put.status, 201, "{}", put.text());
    let version = put.json()["version"].as_u64().unwrap();
    let request_id = format!("store-onput-{version}");
    let mut spans: Vec<Value> = Vec::new();
    for _ in 0..300 {
        let traces = get(node.api_addr, &format!("/v1/traces?id={request_id}")).await;
        if traces.status == 200 {
            spans = traces.json()[0]["spans"].as_array().cloned().unwrap_or_default();
            if spans.len() >= 2 {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        spans.len(),
        2,
        "the store trigger's span and its function's call: {spans:#?}"
    );
    let (trigger, call) = (&spans[0], &spans[1]);
    assert_eq!(trigger["kind"], "trigger");
    assert_eq!(trigger["service"], "onput");
    assert_eq!(trigger["status"], 200);
    assert!(trigger.get("parent_id").is_none(), "{trigger}");
    assert_eq!(call["kind"], "store");
    assert_eq!(call["parent_id"], trigger["span_id"]);
    stop(node).await;
}

const RECEIVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/otlp_receiver.py");

/// With an OTLP endpoint, the spans of a trace reach the collector as an OTLP/HTTP JSON
/// export: ids in hex, the parent link, SERVER and CLIENT kinds, the resource's names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_over_otlp() {
    use tokio::io::AsyncBufReadExt;
    let app = App::new();
    let received = app.path().join("otlp.jsonl");
    let mut receiver = tokio::process::Command::new("python3")
        .args([RECEIVER, received.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the OTLP receiver");
    let mut port = String::new();
    tokio::io::BufReader::new(receiver.stdout.take().unwrap())
        .read_line(&mut port)
        .await
        .unwrap();
    let endpoint = format!("http://127.0.0.1:{}", port.trim());

    let services = json!({
        "front": { "run": ["python3", MEMBER], "routes": ["/front"], "bindings": ["back"] },
        "back": { "run": ["python3", MEMBER] },
    });
    let mut config = app.config(app.manifest(services, Value::Null));
    config.otlp = Some((strata_node::otlp::Endpoint::parse(&endpoint).unwrap(), None));
    let node = app.start(config).await;
    wait_ready(&node, "front", 1).await;
    wait_ready(&node, "back", 1).await;
    let trace_id = "5bf92f3577b34da6a3ce929d0e0e4737";
    let mut req = request(Method::GET, node.gateway_addr, "/front", "");
    req.headers_mut().insert(
        "traceparent",
        format!("00-{trace_id}-10f067aa0ba902b8-01").parse().unwrap(),
    );
    assert_eq!(send(node.gateway_addr, req).await.unwrap().status, 200);

    // Within the exporter's second (and a margin), both spans arrive.
    let mut spans: Vec<Value> = Vec::new();
    let mut resource = Value::Null;
    for _ in 0..100 {
        let text = std::fs::read_to_string(&received).unwrap_or_default();
        spans.clear();
        for line in text.lines() {
            let export: Value = serde_json::from_str(line).unwrap();
            for rs in export["resourceSpans"].as_array().unwrap() {
                for ss in rs["scopeSpans"].as_array().unwrap() {
                    for span in ss["spans"].as_array().unwrap() {
                        if span["traceId"] == trace_id {
                            resource = rs["resource"].clone();
                            spans.push(span.clone());
                        }
                    }
                }
            }
        }
        if spans.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(spans.len(), 2, "{spans:#?}");
    spans.sort_by_key(|s| s["kind"].as_u64());
    let (server, client) = (&spans[0], &spans[1]);
    assert_eq!(server["kind"], 2, "the gateway's span is SERVER");
    assert_eq!(server["name"], "GET /front");
    assert_eq!(server["parentSpanId"], "10f067aa0ba902b8");
    assert_eq!(client["kind"], 3, "the call's span is CLIENT");
    assert_eq!(client["parentSpanId"], server["spanId"]);
    assert_eq!(server["spanId"].as_str().unwrap().len(), 16);
    let start: u128 = server["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
    let end: u128 = server["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
    assert!(end >= start && start > 1_600_000_000_000_000_000, "{server}");
    let attribute = |span: &Value, key: &str| -> Value {
        let found = span["attributes"].as_array().unwrap().iter().find(|a| a["key"] == key);
        found.map(|a| a["value"].clone()).unwrap_or(Value::Null)
    };
    assert_eq!(attribute(server, "strata.member"), json!({"stringValue": "front-1"}));
    assert_eq!(
        attribute(server, "http.response.status_code"),
        json!({"intValue": "200"})
    );
    assert_eq!(attribute(&resource, "service.name"), json!({"stringValue": "strata"}));
    assert_eq!(attribute(&resource, "strata.app"), json!({"stringValue": "test"}));
    stop(node).await;
}

/// The Rust client: a traced handle's publish is a span of the caller's trace (the given
/// span its parent), the fetched message carries the publish span on, and a consumer
/// that replies and acks on `client.traced(message.trace())` continues that trace; the
/// waiting publisher's `Reply` names the reply's span. The untraced handle the traced one
/// was made from records nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_client_s_traced_calls_join_the_caller_s_trace() {
    use std::time::Duration;
    use strata_client::{FetchOptions, OutgoingMessage, TraceContext};

    let app = App::new();
    let manifest = json!({
        "strata": 1,
        "app": "test",
        "queues": { "jobs": {} },
        "services": { "front": { "run": ["python3", MEMBER] } }
    });
    let manifest = strata_manifest::parse(&manifest.to_string()).expect("a valid manifest");
    let node = app.start(app.config(manifest)).await;
    let url = format!("http://{}", node.api_addr);
    let client = strata_client::Client::with_token(&url, Some(node.control_token())).unwrap();

    let trace_id = "5bf92f3577b34da6a3ce929d0e0e4735";
    let caller = "50f067aa0ba902b5";
    let context = TraceContext::new(&format!("00-{trace_id}-{caller}-01"), Some("vendor=1")).unwrap();
    let traced = client.traced(context.clone());
    assert_eq!(traced.trace(), Some(&context));
    assert_eq!(client.trace(), None, "the handle it was made from stays untraced");

    // Publish and wait on the traced handle; an untraced consumer fetches, then replies
    // and acks within the message's trace.
    let waiting = tokio::spawn(async move {
        traced
            .request("jobs", &OutgoingMessage::new("question"), Duration::from_secs(10))
            .await
    });
    let fetched = client
        .fetch("jobs", "g", &FetchOptions::max(1).wait_ms(5000))
        .await
        .unwrap();
    let m = fetched.first().expect("the published message");
    let consumer = client.traced(m.trace());
    assert!(
        consumer.trace().is_some(),
        "a traced publish's message carries its trace: {m:?}"
    );
    consumer
        .reply(m.reply_to.as_deref().unwrap(), m.correlation_id.as_deref(), b"answer")
        .await
        .unwrap();
    consumer.ack("jobs", "g", &[m.offset]).await.unwrap();
    let reply = waiting.await.unwrap().unwrap();
    assert_eq!(&reply.body[..], b"answer");

    let spans = spans_of(&node, trace_id, 3).await;
    let kinds: Vec<&str> = spans.iter().map(|s| s["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["publish", "reply", "ack"], "{spans:#?}");
    let (publish, replied, acked) = (&spans[0], &spans[1], &spans[2]);
    assert_eq!(
        publish["parent_id"], caller,
        "the caller's span is the publish's parent"
    );
    assert_eq!(publish["service"], "jobs");
    assert_eq!(
        m.traceparent.as_deref(),
        Some(format!("00-{trace_id}-{}-01", publish["span_id"].as_str().unwrap()).as_str()),
        "the fetched message names the publish span"
    );
    assert_eq!(replied["parent_id"], publish["span_id"], "{spans:#?}");
    assert_eq!(acked["parent_id"], publish["span_id"], "{spans:#?}");
    assert_eq!(
        reply.traceparent.as_deref(),
        Some(format!("00-{trace_id}-{}-01", replied["span_id"].as_str().unwrap()).as_str()),
        "the reply names its span"
    );
    assert_eq!(reply.trace().map(|t| t.traceparent().to_string()), reply.traceparent);

    // The untraced handle records nothing, and its messages carry no trace.
    let before = all_spans(&node).await.len();
    client.publish("jobs", &OutgoingMessage::new("plain")).await.unwrap();
    let plain = client.fetch("jobs", "g", &FetchOptions::max(1)).await.unwrap();
    assert_eq!(plain[0].traceparent, None);
    assert!(plain[0].trace().is_none());
    client.ack("jobs", "g", &[plain[0].offset]).await.unwrap();
    assert_eq!(
        all_spans(&node).await.len(),
        before,
        "an untraced handle records no span"
    );
    stop(node).await;
}

/// A member written with the Python client (`caller.py`) that makes its call on
/// `CLIENT.traced_from(self.headers)` (http.server's headers of the request it serves)
/// puts the call in the request's trace, the gateway span its parent; the same call on
/// the untraced client is no span of that trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_member_s_traced_from_call_joins_the_request_s_trace() {
    let python_client = concat!(env!("CARGO_MANIFEST_DIR"), "/../../clients/python");
    let caller = json!({
        "run": ["python3", CALLER],
        "env": { "PYTHONPATH": python_client, "PYTHONDONTWRITEBYTECODE": "1" },
        "health": { "path": "/healthz", "interval_ms": 200, "timeout_ms": 1000 },
    });
    let mut front = caller.clone();
    front["routes"] = json!(["/"]);
    front["bindings"] = json!(["back"]);
    let app = App::new();
    let node = app
        .start(app.config(app.manifest(json!({ "front": front, "back": caller }), Value::Null)))
        .await;
    wait_ready(&node, "front", 1).await;
    wait_ready(&node, "back", 1).await;

    let trace_id = "6bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "60f067aa0ba902b6";
    for path in ["/call?service=back", "/traced_call?service=back"] {
        let mut req = request(Method::GET, node.gateway_addr, path, "");
        req.headers_mut().insert(
            "traceparent",
            format!("00-{trace_id}-{client_span}-01").parse().unwrap(),
        );
        let reply = send(node.gateway_addr, req).await.unwrap();
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        assert_eq!(reply.json()["status"], 200, "{path}: {}", reply.text());
    }
    let spans = spans_of(&node, trace_id, 3).await;
    let kinds: Vec<(&str, &str)> = spans
        .iter()
        .map(|s| (s["kind"].as_str().unwrap(), s["service"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [("gateway", "front"), ("gateway", "front"), ("call", "back")],
        "the untraced client's call is no span of the trace, the traced view's is: {spans:#?}"
    );
    let (traced_gateway, call) = (&spans[1], &spans[2]);
    assert_eq!(traced_gateway["parent_id"], client_span);
    assert_eq!(
        call["parent_id"], traced_gateway["span_id"],
        "the member's call is a child of the gateway span of the request it served"
    );
    stop(node).await;
}
