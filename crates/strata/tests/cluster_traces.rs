//! Traces across a cluster's nodes: real nats-server processes (three, clustered), three
//! real `strata node` processes. A request that enters through one node's gateway and
//! is served by a member on another, which calls a second service through its own
//! node's API, leaves its spans on two nodes; `/v1/traces?id=` on either node gathers
//! both (by the trace id, or by a request id only one node knows), each naming its
//! node; the newest traces (`/v1/traces` without `id`, and `strata trace`) on the third
//! node, which recorded no span of it, list that trace whole; a node that does not
//! answer in time is named in `missing_nodes`, in both.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::{start_node, token_on};
use common::{get, remember_token, request, send, STRATA};
use http::Method;
use serde_json::{json, Value};
use strata_testkit::nats::{nats_server, NatsCluster};

const MEMBER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/trace_member.py");

fn nodes_json(urls: &str) -> Value {
    let out = Command::new(STRATA)
        .args(["nodes", "--json", "--nats", urls])
        .output()
        .expect("run strata nodes");
    assert!(
        out.status.success(),
        "strata nodes: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("nodes --json is JSON")
}

/// The node where `service` of app `test` has a ready instance.
fn ready_on(v: &Value, service: &str) -> Option<String> {
    v["nodes"].as_array()?.iter().find_map(|n| {
        let running = n["running"].as_array()?;
        running
            .iter()
            .any(|i| i["app"] == "test" && i["service"] == service && i["state"] == "ready")
            .then(|| n["name"].as_str().unwrap().to_string())
    })
}

async fn trace_on(api: SocketAddr, id: &str) -> Value {
    let reply = get(api, &format!("/v1/traces?id={id}")).await;
    assert_eq!(reply.status, 200, "GET /v1/traces?id={id} at {api}: {}", reply.text());
    reply.json()[0].clone()
}

fn kinds_and_nodes(trace: &Value) -> Vec<(String, String)> {
    trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["kind"].as_str().unwrap().to_string(),
                s["node"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_over_two_nodes_is_gathered_on_either() {
    if !strata_testkit::needs("cluster traces", nats_server()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsCluster::start(dir.path(), 3);
    let urls = nats.urls();
    let app = dir.path().join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::copy(MEMBER, app.join("trace_member.py")).unwrap();
    let manifest = json!({
        "strata": 1,
        "app": "test",
        "services": {
            "front": { "run": ["python3", "trace_member.py"], "routes": ["/front"], "bindings": ["back"] },
            "back": { "run": ["python3", "trace_member.py"] },
        },
    });
    let path = app.join("strata.json");
    std::fs::write(&path, manifest.to_string()).unwrap();
    let mut nodes: Vec<(String, common::cluster::ClusterNode)> = [("a", "A"), ("b", "B"), ("c", "C")]
        .into_iter()
        .map(|(n, p)| (n.to_string(), start_node(dir.path(), &urls, n, p)))
        .collect();
    let out = Command::new(STRATA)
        .args(["deploy", path.to_str().unwrap(), "--nats", &urls])
        .output()
        .unwrap();
    assert!(out.status.success(), "deploy: {}", String::from_utf8_lossy(&out.stderr));

    // Where front runs (F); the request enters through another node's gateway (E), so
    // the gateway's span is E's and the call front makes through its node API is F's.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (v, front_node) = loop {
        let v = nodes_json(&urls);
        let every_api = v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["apis"].get("test").is_some());
        if let (Some(front), Some(_), true) = (ready_on(&v, "front"), ready_on(&v, "back"), every_api) {
            if v["nodes"].as_array().unwrap().len() == 3 {
                break (v, front);
            }
        }
        assert!(Instant::now() < deadline, "front and back ready within 60 s: {v:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let names = ["a", "b", "c"];
    let entry = *names.iter().find(|n| **n != front_node).unwrap();
    let other = *names.iter().find(|n| **n != front_node && **n != entry).unwrap();
    let gateway = common::cluster::node_addr(&v, entry, "gateways", "test");
    let (api_e, api_f) = (
        common::cluster::node_addr(&v, entry, "apis", "test"),
        common::cluster::node_addr(&v, &front_node, "apis", "test"),
    );
    remember_token(api_e, &token_on(dir.path(), entry));
    remember_token(api_f, &token_on(dir.path(), &front_node));

    // Through E, once E's pool has F's front member.
    let trace_id = "7bf92f3577b34da6a3ce929d0e0e4737";
    let deadline = Instant::now() + Duration::from_secs(30);
    let request_id = loop {
        let mut req = request(Method::GET, gateway, "/front", "");
        req.headers_mut().insert(
            "traceparent",
            format!("00-{trace_id}-30f067aa0ba902ba-01").parse().unwrap(),
        );
        if let Ok(reply) = send(gateway, req).await {
            if reply.status == 200 {
                assert!(reply.text().contains(trace_id), "back got the trace: {}", reply.text());
                break reply.header("x-request-id").unwrap().to_string();
            }
        }
        assert!(
            Instant::now() < deadline,
            "a request through {entry}'s gateway within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let want = vec![
        ("gateway".to_string(), entry.to_string()),
        ("call".to_string(), front_node.clone()),
    ];
    // Asked on E (which recorded the gateway's span) and on F (the call's), by the trace
    // id; on F by the request id too, which only E's span holds.
    for (api, id) in [(api_e, trace_id), (api_f, trace_id), (api_f, request_id.as_str())] {
        let trace = trace_on(api, id).await;
        assert_eq!(trace["trace_id"], trace_id, "{trace:#}");
        assert_eq!(kinds_and_nodes(&trace), want, "asked {api} for {id}: {trace:#}");
        let spans = trace["spans"].as_array().unwrap();
        assert_eq!(spans[1]["parent_id"], spans[0]["span_id"], "{trace:#}");
        assert_eq!(spans[0]["service"], "front");
        assert_eq!(spans[1]["service"], "back");
        assert!(trace.get("missing_nodes").is_none(), "every node answered: {trace:#}");
    }

    // The newest traces on the third node, which keeps no span of the trace: listed,
    // whole, from the other two; and so by `strata trace` against that node.
    let api_o = common::cluster::node_addr(&v, other, "apis", "test");
    let token_o = token_on(dir.path(), other);
    remember_token(api_o, &token_o);
    let listed = newest_on(api_o).await;
    let trace = listed
        .iter()
        .find(|t| t["trace_id"] == trace_id)
        .unwrap_or_else(|| panic!("{trace_id} in the newest traces on {other}: {listed:#?}"));
    assert_eq!(kinds_and_nodes(trace), want, "listed on {other}: {trace:#}");
    assert!(trace.get("missing_nodes").is_none(), "every node answered: {trace:#}");
    let cli = Command::new(STRATA)
        .args(["--api", &format!("http://{api_o}"), "trace"])
        .env("STRATA_CONTROL_TOKEN", &token_o)
        .output()
        .expect("run strata trace");
    let printed = String::from_utf8_lossy(&cli.stdout);
    assert!(
        cli.status.success(),
        "strata trace: {}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let lines: Vec<&str> = printed.lines().collect();
    let at = lines
        .iter()
        .position(|l| *l == format!("trace {trace_id}"))
        .unwrap_or_else(|| panic!("trace {trace_id} in strata trace on {other}:\n{printed}"));
    assert!(
        lines[at + 1].contains("gateway") && lines[at + 1].ends_with(&format!("@{entry}")),
        "{printed}"
    );
    assert!(
        lines[at + 2].contains("call") && lines[at + 2].ends_with(&format!("@{front_node}")),
        "{printed}"
    );

    // A node that stops answering (killed; still live by its last heartbeat for 3 s) is
    // named, and what the others keep is answered.
    let victim = nodes.iter_mut().find(|(n, _)| n == other).unwrap();
    victim.1.kill9();
    let trace = trace_on(api_e, trace_id).await;
    assert_eq!(kinds_and_nodes(&trace), want, "{trace:#}");
    assert_eq!(trace["missing_nodes"], json!([other]), "{trace:#}");
    let listed = newest_on(api_f).await;
    let trace = listed.iter().find(|t| t["trace_id"] == trace_id).expect("listed");
    assert_eq!(kinds_and_nodes(trace), want, "{trace:#}");
    assert_eq!(trace["missing_nodes"], json!([other]), "{trace:#}");
}

/// The newest traces as node `api` lists them.
async fn newest_on(api: SocketAddr) -> Vec<Value> {
    let reply = get(api, "/v1/traces").await;
    assert_eq!(reply.status, 200, "GET /v1/traces at {api}: {}", reply.text());
    reply.json().as_array().expect("a list").clone()
}
