//! Traces (W3C Trace Context): a request through the gateway to a member that calls a
//! second service through `$STRATA_URL`, passing its `traceparent` on, gives one trace
//! whose spans link gateway -> call, each naming the member that answered; the client's
//! own `traceparent` is the gateway span's parent; `/v1/traces` finds the trace by its
//! id or by the request id.

mod common;

use common::*;
use http::Method;
use serde_json::{json, Value};

const MEMBER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/trace_member.py");

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
