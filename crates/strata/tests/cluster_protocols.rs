//! The first tier's protocols across the cluster's nodes: real nats-server processes
//! (three, clustered, with JetStream) and real `strata node` processes. A node's gateway
//! relays gRPC calls, WebSocket connections and cacheable GETs to members on another
//! node; when that node dies, the route's stored answers keep answering; a node that
//! cannot run an app says why and gets none of its instances.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::cluster::*;
use common::{get, run_python};
use serde_json::{json, Value};
use strata_testkit::nats::{nats_server, NatsCluster};

/// The cluster tests start many processes: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A node that cannot run an app (the app's gateway port is taken on its address) says
/// why in its record, and the scheduler places every instance on the node that can; once
/// the port is free, the node runs the app and its record no longer says it cannot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_cannot_run_an_app_gets_none_of_it_and_runs_it_once_it_can() {
    if !strata_testkit::needs("cluster", nats_server()) {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsCluster::start(dir.path(), 3);
    let urls = nats.urls();
    remember_dir(&urls, dir.path());
    let record = dir.path().join("record.jsonl");
    let manifest = write_app(
        dir.path(),
        &record,
        json!({ "web": { "instances": { "min": 2, "max": 2 }, "routes": ["/"] } }),
    );
    // The app's gateway on a port this test holds. Node b listens where the manifest
    // says, so cannot bind it; node a takes any port.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    doc["gateway"] = json!({ "listen": format!("127.0.0.1:{port}") });
    std::fs::write(&manifest, doc.to_string()).unwrap();
    let nodes = [
        start_node(dir.path(), &urls, "a", "A"),
        start_node_in(dir.path(), &urls, "b", "B", None, "127.0.0.1"),
    ];
    let out = strata(&["deploy", manifest.to_str().unwrap(), "--nats", &urls]);
    assert!(out.status.success(), "deploy: {}", String::from_utf8_lossy(&out.stderr));
    let record_of = |v: &Value, node: &str| -> Value {
        v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == node)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let urls_ = urls.clone();
    let v = tokio::task::spawn_blocking(move || {
        let on_a = BTreeMap::from([("a".to_string(), 2)]);
        wait_for(
            &urls_,
            "both instances on a, b saying why it has none",
            Duration::from_secs(40),
            |v| {
                placed(v, "web") == on_a
                    && ready_on(v, "a") == 2
                    && record_of(v, "b")["cannot_run"]["test"]
                        .as_str()
                        .is_some_and(|why| why.contains(&port.to_string()))
            },
        );
        nodes_json(&urls_)
    })
    .await
    .unwrap();
    assert_eq!(ready_on(&v, "b"), 0, "{v:#}");
    assert!(record_of(&v, "b")["gateways"]["test"].is_null(), "{v:#}");
    let why = record_of(&v, "b")["cannot_run"]["test"].as_str().unwrap().to_string();
    eprintln!("b says: {why}");
    // `strata nodes` says it too.
    let text = String::from_utf8_lossy(&strata(&["nodes", "--nats", &urls]).stdout).into_owned();
    assert!(
        text.contains(&format!("b cannot run test (placed elsewhere): {why}")),
        "{text}"
    );
    // Answered through a's gateway meanwhile.
    let reply = get(gateway_of(&v, "a"), "/hello").await;
    assert_eq!(reply.status, http::StatusCode::OK, "{}", reply.text());

    // The port freed: b runs the app (tried again every second), and says so.
    drop(held);
    let urls_ = urls.clone();
    tokio::task::spawn_blocking(move || {
        wait_for(&urls_, "b running the app", Duration::from_secs(20), |v| {
            let b = record_of(v, "b");
            b["gateways"]["test"].is_string() && b["cannot_run"].is_null()
        })
    })
    .await
    .unwrap();
    let reply = get(format!("127.0.0.1:{port}").parse().unwrap(), "/hello").await;
    assert_eq!(
        reply.status,
        http::StatusCode::OK,
        "b's gateway relays: {}",
        reply.text()
    );
    drop(nodes);
    drop(nats);
}

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// Nodes a and b over three nats-servers, running the app `test` of `services` whose
/// programs are the fixtures named in `files` (copied into the app's folder, so that they
/// travel in its bundle); made once each service has one ready instance and both
/// gateways are up. Dropped: the nodes, then the servers, then the dir.
struct TwoNodes {
    nodes: BTreeMap<&'static str, ClusterNode>,
    _nats: NatsCluster,
    /// `strata nodes --json` once ready.
    v: Value,
    _dir: tempfile::TempDir,
}

impl TwoNodes {
    async fn start(files: &[&str], services: Value) -> TwoNodes {
        let dir = tempfile::tempdir().unwrap();
        let nats = NatsCluster::start(dir.path(), 3);
        let urls = nats.urls();
        remember_dir(&urls, dir.path());
        let app = dir.path().join("app");
        std::fs::create_dir_all(&app).unwrap();
        for file in files {
            std::fs::copy(format!("{FIXTURES}/{file}"), app.join(file)).unwrap();
        }
        let names: Vec<String> = services.as_object().unwrap().keys().cloned().collect();
        let manifest = json!({ "strata": 1, "app": "test", "services": services });
        let path = app.join("strata.json");
        std::fs::write(&path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
        let nodes = BTreeMap::from([
            ("a", start_node(dir.path(), &urls, "a", "A")),
            ("b", start_node(dir.path(), &urls, "b", "B")),
        ]);
        let out = strata(&["deploy", path.to_str().unwrap(), "--nats", &urls]);
        assert!(out.status.success(), "deploy: {}", String::from_utf8_lossy(&out.stderr));
        let v = tokio::task::spawn_blocking(move || {
            wait_for(&urls, "each service ready on a node", Duration::from_secs(60), |v| {
                let ready = |s: &str| ["a", "b"].iter().map(|n| ready_on_app(v, n, "test", s)).sum::<u64>();
                names.iter().all(|s| ready(s) == 1) && ["a", "b"].iter().all(|n| node_addr_of(v, n).is_some())
            });
            nodes_json(&urls)
        })
        .await
        .unwrap();
        TwoNodes {
            nodes,
            _nats: nats,
            v,
            _dir: dir,
        }
    }

    /// The node that runs `service`'s instance, and the other node's gateway.
    fn on(&self, service: &str) -> (&'static str, std::net::SocketAddr) {
        let node = if ready_on_app(&self.v, "a", "test", service) == 1 {
            "a"
        } else {
            "b"
        };
        let other = if node == "a" { "b" } else { "a" };
        (node, gateway_of(&self.v, other))
    }
}

/// gRPC by name, WebSocket and a route with stored answers, each served by one member on
/// one of two nodes and asked for through the other node's gateway; then the node of
/// the stored route's member is killed, and its stored answer is served stale at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_relays_grpc_websocket_and_cached_gets_to_members_on_another_node() {
    if !strata_testkit::needs("cluster", nats_server()) {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let record = tempfile::NamedTempFile::new().unwrap();
    let one = json!({ "min": 1, "max": 1 });
    let services = json!({
        "echo": {
            "run": ["python3", "grpc_member.py"], "instances": one, "grpc": ["test.Echo"],
            "relay": { "grpc_calls_per_connection": 1 }, "stop_grace_ms": 1000,
        },
        "ws": { "run": ["python3", "ws_echo.py"], "instances": one, "routes": ["/ws"], "stop_grace_ms": 1000 },
        "web": {
            "run": ["python3", "member.py"], "instances": one,
            "env": { "RECORD": record.path().display().to_string() },
            "health": { "path": "/healthz", "interval_ms": 200, "timeout_ms": 1000 },
            "routes": [{ "path": "/app", "fallback": { "stale_if_error_s": 300 } }],
            "stop_grace_ms": 1000,
        },
    });
    let mut cluster = TwoNodes::start(&["grpc_member.py", "ws_echo.py", "member.py"], services).await;
    let on = |service: &str| cluster.on(service);

    // gRPC, every kind of call, by name through the other node.
    let (_, gw) = on("echo");
    let got = run_python(vec![format!("{FIXTURES}/grpc_client.py"), gw.to_string()]).await;
    let unary = got["unary"].as_array().unwrap();
    assert!(unary.iter().all(Value::is_string), "{got}");
    assert_eq!(got["bidi"], json!(1000), "{got}");
    assert_eq!(got["client_stream"], json!("abc".repeat(100)), "{got}");

    // WebSocket: 10 connections of 100 messages each through the other node.
    let (ws_node, gw) = on("ws");
    let got = run_python(vec![
        format!("{FIXTURES}/ws_client.py"),
        "echo".into(),
        format!("ws://{gw}/ws"),
        "10".into(),
        "100".into(),
    ])
    .await;
    assert_eq!(got["ok"], json!(10), "{got}");
    eprintln!("ws member on {ws_node}: {got}");

    // A cacheable GET through the other node, stored there; then the member's node dies:
    // the other node's gateway answers from its store at once, marked stale.
    let (web_node, gw) = on("web");
    let cached = "/app/cached?cc=max-age%3D0";
    let first = get(gw, cached).await;
    assert_eq!(first.status, http::StatusCode::OK, "{}", first.text());
    assert_eq!(first.header("x-strata-stale"), None);
    cluster.nodes.get_mut(web_node).unwrap().kill9();
    let stale = get(gw, cached).await;
    assert_eq!(stale.status, http::StatusCode::OK, "{}", stale.text());
    assert_eq!(stale.header("x-strata-stale"), Some("true"), "{:?}", stale.headers);
    assert_eq!(stale.body, first.body);
}

/// The node's gateway address for the app, if its record lists one yet.
fn node_addr_of(v: &Value, node: &str) -> Option<String> {
    v["nodes"].as_array()?.iter().find(|n| n["name"] == node)?["gateways"]["test"]
        .as_str()
        .map(String::from)
}

/// One bidi stream through `addr`, a message each 50 ms: prints "flowing" after 20
/// echoes, then, when the stream ends, its status as JSON.
const BIDI_UNTIL_IT_ENDS: &str = r#"
import json, sys, time, grpc
channel = grpc.insecure_channel(sys.argv[1])
bidi = channel.stream_stream("/test.Echo/Bidi")
def messages():
    while True:
        yield b"m"
        time.sleep(0.05)
echoed = 0
try:
    for _ in bidi(messages()):
        echoed += 1
        if echoed == 20:
            print("flowing", flush=True)
    print(json.dumps({"code": "OK", "details": "", "echoed": echoed}), flush=True)
except grpc.RpcError as e:
    print(json.dumps({"code": e.code().name, "details": e.details(), "echoed": echoed}), flush=True)
"#;

/// A bidi stream through `gateway` (a grpcio client): the client, and its output's lines
/// once the first reads "flowing".
async fn bidi_until_it_ends(gateway: std::net::SocketAddr) -> (tokio::process::Child, ClientLines) {
    use tokio::io::AsyncBufReadExt;
    let start = std::time::Instant::now();
    loop {
        let mut client = tokio::process::Command::new("python3")
            .args(["-c", BIDI_UNTIL_IT_ENDS, &gateway.to_string()])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the grpcio client");
        let mut lines = tokio::io::BufReader::new(client.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await;
        let first = first.ok().and_then(|l| l.ok()).flatten();
        if first.as_deref() == Some("flowing") {
            return (client, lines);
        }
        // The member's node published it a moment ago: this gateway may not have it yet.
        let not_yet = first.as_deref().is_some_and(|l| l.contains("no ready instance"));
        assert!(not_yet && start.elapsed() < Duration::from_secs(20), "{first:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The output lines of a grpcio client's bidi stream.
type ClientLines = tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>;

/// Two nodes, one member of a grpcio service on one of them, and a bidi stream to it
/// through the other's gateway: the cluster, the member's node, that gateway, the
/// client and its lines.
async fn a_stream_through_the_other_node() -> (
    TwoNodes,
    &'static str,
    std::net::SocketAddr,
    tokio::process::Child,
    ClientLines,
) {
    let services = json!({
        "echo": {
            "run": ["python3", "grpc_member.py"], "instances": { "min": 1, "max": 1 },
            "grpc": ["test.Echo"], "stop_grace_ms": 1000,
        },
    });
    let cluster = TwoNodes::start(&["grpc_member.py"], services).await;
    let (node, other_gateway) = cluster.on("echo");
    let (client, lines) = bidi_until_it_ends(other_gateway).await;
    (cluster, node, other_gateway, client, lines)
}

/// A node stopped (SIGTERM): a gRPC stream another node's gateway had open to its
/// member ends UNAVAILABLE saying the member (`echo-1@NODE`) was stopped, not that it
/// failed (the stopping node marks its members' records before it deletes them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_to_a_member_on_a_node_that_stops_ends_saying_it_was_stopped() {
    if !strata_testkit::needs("cluster", nats_server()) {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let (cluster, stopped, other_gateway, mut client, mut lines) = a_stream_through_the_other_node().await;
    let pid = cluster.nodes[stopped].child.id() as i32;
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let ended = tokio::time::timeout(Duration::from_secs(45), lines.next_line()).await;
    let line = ended.expect("the stream ended").unwrap().expect("its status");
    let status: Value = serde_json::from_str(&line).unwrap();
    eprintln!("the stream through {other_gateway} ended after {stopped} stopped: {status}");
    assert_eq!(status["code"], "UNAVAILABLE", "{status}");
    // Named as its own STRATA_INSTANCE names it.
    assert!(
        status["details"]
            .as_str()
            .unwrap()
            .contains(&format!("member echo-1@{stopped} was stopped during the call")),
        "{status}"
    );
    let _ = client.wait().await;
}

/// A node frozen (SIGSTOP: its heartbeats and its members' forwarders stop, the kernel
/// keeps its connections open) is taken for dead, and its member leaves the pools of the
/// other nodes; a gRPC stream another node's gateway had open to it then ends
/// UNAVAILABLE within seconds, saying why, instead of after the keep-alive's 50 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_to_a_member_on_a_frozen_node_ends_once_the_node_is_taken_for_dead() {
    if !strata_testkit::needs("cluster", nats_server()) {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let (cluster, frozen, other_gateway, mut client, mut lines) = a_stream_through_the_other_node().await;

    let pid = cluster.nodes[frozen].child.id() as i32;
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let frozen_at = std::time::Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(45), lines.next_line()).await;
    let took = frozen_at.elapsed();
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let line = ended.expect("the stream ended").unwrap().expect("its status");
    let status: Value = serde_json::from_str(&line).unwrap();
    eprintln!("the stream through {other_gateway} ended {took:?} after {frozen} froze: {status}");
    assert_eq!(status["code"], "UNAVAILABLE", "{status}");
    assert!(
        status["details"]
            .as_str()
            .unwrap()
            .contains("left its pool and did not answer a ping"),
        "{status}"
    );
    assert!(
        took < Duration::from_secs(25),
        "ended {took:?} after the freeze: {status}"
    );
    let _ = client.wait().await;
}
