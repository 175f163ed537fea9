//! gRPC through the gateway by service name: an unmodified `grpcio` server as the pool
//! member and `grpcio` as the client, over HTTP/2 both ways with trailers kept: unary,
//! server-, client- and bidirectional streaming; deadlines honoured; strata's own
//! failures (no member, no route) answered as gRPC statuses.

mod common;

use std::process::Command;

use common::*;
use serde_json::{json, Value};

const MEMBER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/grpc_member.py");
const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/grpc_client.py");

async fn run_client(addr: std::net::SocketAddr) -> Value {
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args([CLIENT, &addr.to_string()])
            .output()
            .expect("run the grpcio client")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_grpc_call_goes_through_the_gateway() {
    let app = App::new();
    let services = json!({
        "echo": {
            "run": ["python3", MEMBER],
            "instances": { "initial": 2, "min": 2, "max": 2 },
            "routes": ["/test.Echo/"],
            "stop_grace_ms": 1000,
        },
    });
    let node = app.start(app.config(app.manifest(services, Value::Null))).await;
    wait_ready(&node, "echo", 2).await;
    let got = run_client(node.gateway_addr).await;

    let unary = got["unary"].as_array().unwrap();
    assert_eq!(unary.len(), 20, "{got}");
    for (i, answer) in unary.iter().enumerate() {
        let answer = answer.as_str().unwrap_or_else(|| panic!("call {i} failed: {answer}"));
        assert!(answer.ends_with(&format!(":hello-{i}")), "{answer}");
    }
    let served_by: std::collections::BTreeSet<&str> = unary
        .iter()
        .map(|a| a.as_str().unwrap().split(':').next().unwrap())
        .collect();
    assert_eq!(served_by.len(), 2, "calls spread over both members: {served_by:?}");
    let streamed: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    assert_eq!(got["server_stream"], json!(streamed));
    assert_eq!(got["client_stream"], json!("abc".repeat(100)));
    assert_eq!(got["bidi"], json!(1000));
    assert_eq!(got["deadline"]["code"], "DEADLINE_EXCEEDED", "{got}");
    assert_eq!(got["unknown"]["code"], "UNIMPLEMENTED", "{got}");
    stop(node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strata_s_own_failures_are_grpc_statuses() {
    let app = App::new();
    let services = json!({
        "echo": {
            "run": ["python3", MEMBER],
            "routes": ["/test.Echo/"],
            // An HTTP/1.1 health check that a gRPC server never passes: never ready.
            "health": { "path": "/healthz", "interval_ms": 100 },
        },
    });
    let node = app.start(app.config(app.manifest(services, Value::Null))).await;
    let got = run_client(node.gateway_addr).await;
    let first = &got["unary"][0];
    assert_eq!(first["code"], "UNAVAILABLE", "{got}");
    assert!(
        first["details"].as_str().unwrap().contains("no ready instance"),
        "{got}"
    );
    stop(node).await;
}
