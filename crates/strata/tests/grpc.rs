//! gRPC through the gateway by service name: an unmodified `grpcio` server as the pool
//! member and `grpcio` as the client, over HTTP/2 both ways with trailers kept: unary,
//! server-, client- and bidirectional streaming; deadlines honoured; strata's own
//! failures (no member, no route) answered as gRPC statuses. Routed by the manifest's
//! `grpc` names, at the gateway and through `$STRATA_URL` from another service's
//! instance; members checked with the gRPC health protocol; a member killed during
//! calls: reissued when the method is marked idempotent, never executed twice when not.

mod common;

use common::*;
use serde_json::{json, Value};

const MEMBER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/grpc_member.py");
const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/grpc_client.py");
const CALLER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/grpc_caller.py");
const WORK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/grpc_work_client.py");
const BIDI: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/grpc_bidi_reconnect.py");

async fn run_client(addr: std::net::SocketAddr) -> Value {
    run_python(vec![CLIENT.to_string(), addr.to_string()]).await
}

/// `grpc_bidi_reconnect.py` streaming through `addr` until `total` echoes came back.
struct BidiClient {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl BidiClient {
    /// Starts it and waits until its stream flows (50 echoes).
    async fn start(addr: std::net::SocketAddr, total: usize) -> BidiClient {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new("python3")
            .args([BIDI, &addr.to_string(), &total.to_string()])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the grpcio client");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let progress = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
            .await
            .expect("the stream flows")
            .unwrap();
        assert_eq!(progress.as_deref(), Some("progress 50"));
        BidiClient { child, lines }
    }

    /// Its JSON line once it ends.
    async fn end(&mut self) -> Value {
        let last = tokio::time::timeout(std::time::Duration::from_secs(60), self.lines.next_line())
            .await
            .expect("the client ends")
            .unwrap()
            .expect("a JSON line");
        let _ = self.child.wait().await;
        serde_json::from_str(&last).unwrap()
    }
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
    // Counted apart from HTTP: 20 unary calls, 3 streams, the deadline's and the unknown
    // method's calls all got a reply head.
    let metrics = get(node.api_addr, "/v1/metrics").await.text();
    let calls = metric(&metrics, "service=\"echo\",protocol=\"grpc\",code=\"2xx\"}");
    assert!(calls >= 23.0, "{calls}: {metrics}");
    let timed = metric(
        &metrics,
        "strata_request_duration_seconds_count{app=\"test\",service=\"echo\",protocol=\"grpc\"}",
    );
    assert!(timed >= calls, "{metrics}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_names_route_calls_at_the_gateway_and_through_strata_url() {
    let app = App::new();
    let services = json!({
        // No route: the gRPC service name is what routes its calls.
        "echo": {
            "run": ["python3", MEMBER],
            "instances": { "initial": 2, "min": 2, "max": 2 },
            "grpc": ["test.Echo"],
            "env": { "GRPC_HEALTH": "SERVING" },
            "health": { "grpc": "test.Echo", "interval_ms": 200 },
            "stop_grace_ms": 1000,
            // Each call on a connection of its own, as a grpcio member does best.
            "relay": { "grpc_calls_per_connection": 1 },
        },
        "other": {
            "run": ["python3", MEMBER],
            "grpc": ["test.Other"],
            "stop_grace_ms": 1000,
        },
        // Serves NOT_SERVING: never ready, and ps says why.
        "sick": {
            "run": ["python3", MEMBER],
            "env": { "GRPC_HEALTH": "NOT_SERVING" },
            "health": { "grpc": "", "interval_ms": 100 },
            "stop_grace_ms": 1000,
        },
        "caller": {
            "run": ["python3", CALLER],
            "routes": ["/calls"],
            "bindings": ["echo"],
        },
    });
    let node = app.start(app.config(app.manifest(services, Value::Null))).await;
    wait_ready(&node, "echo", 2).await;
    wait_ready(&node, "other", 1).await;
    wait_ready(&node, "caller", 1).await;

    // At the gateway, by name.
    let got = run_client(node.gateway_addr).await;
    assert_eq!(got["unary"].as_array().unwrap().len(), 20, "{got}");
    assert!(got["unary"].as_array().unwrap().iter().all(Value::is_string), "{got}");
    assert_eq!(got["bidi"], json!(1000), "{got}");

    // Through $STRATA_URL, from the caller's instance, with its token.
    let reply = get(node.gateway_addr, "/calls").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let calls = reply.json();
    let unary = calls["unary"].as_array().unwrap();
    assert_eq!(unary.len(), 20, "{calls}");
    for (i, answer) in unary.iter().enumerate() {
        let answer = answer.as_str().unwrap_or_else(|| panic!("call {i} failed: {calls}"));
        assert!(answer.ends_with(&format!(":hi-{i}")), "{answer}");
    }
    assert_eq!(calls["bidi"], json!(200), "{calls}");
    // The member got a request id of the call's own, and not the caller's token.
    let metadata = &calls["metadata"];
    assert!(
        metadata["x-request-id"]
            .as_str()
            .is_some_and(|id| id.starts_with("call-")),
        "{calls}"
    );
    assert!(metadata.get("authorization").is_none(), "{calls}");
    // A service it has no binding to, a name nobody serves, a call without a token.
    assert_eq!(calls["denied"]["code"], "PERMISSION_DENIED", "{calls}");
    assert!(
        calls["denied"]["details"].as_str().unwrap().contains("\"other\""),
        "{calls}"
    );
    assert_eq!(calls["unknown"]["code"], "UNIMPLEMENTED", "{calls}");
    assert!(
        calls["unknown"]["details"].as_str().unwrap().contains("test.Echo"),
        "{calls}"
    );
    assert_eq!(calls["no_token"]["code"], "UNAUTHENTICATED", "{calls}");

    // The gRPC health check: NOT_SERVING keeps an instance out of its pool.
    let detail = wait_for("sick's not-ready detail", std::time::Duration::from_secs(20), || {
        service(&node, "sick").instances.first().and_then(|i| i.detail.clone())
    })
    .await;
    assert!(detail.contains("NOT_SERVING"), "{detail}");
    assert!(ready_instances(&node, "sick").is_empty());
    assert!(node.bus.pool("sick").members().is_empty());

    // A plain HTTP/1.1 request on a gRPC name's path is answered by the gateway (415);
    // one through the node API reaches a member, which answers in HTTP/2: a 502 that
    // says so. Neither passes a healthy member over: the next calls all succeed.
    let plain = get(node.gateway_addr, "/test.Echo/Unary").await;
    assert_eq!(plain.status, 415, "{}", plain.text());
    assert_eq!(plain.json()["code"], "unsupported_media_type", "{}", plain.text());
    assert!(plain.text().contains("takes only gRPC calls"), "{}", plain.text());
    let mut upgrade = request(http::Method::GET, node.gateway_addr, "/test.Echo/Bidi", "");
    for (name, value) in [("connection", "upgrade"), ("upgrade", "websocket")] {
        upgrade
            .headers_mut()
            .insert(name, http::HeaderValue::from_static(value));
    }
    let upgrade = send(node.gateway_addr, upgrade).await.unwrap();
    assert_eq!(upgrade.status, 415, "{}", upgrade.text());
    let any = get(node.api_addr, "/v1/any/echo/x").await;
    assert_eq!(any.status, 502, "{}", any.text());
    assert!(any.text().contains("speaks only HTTP/2"), "{}", any.text());
    // gRPC-Web goes on to the member (a server with gRPC-Web answers it); this one
    // speaks only HTTP/2, which the 502 says, and nobody is blamed.
    let mut web = request(http::Method::POST, node.gateway_addr, "/test.Echo/Unary", "");
    web.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/grpc-web+proto"),
    );
    let web = send(node.gateway_addr, web).await.unwrap();
    assert_eq!(web.status, 502, "{}", web.text());
    assert!(web.text().contains("speaks only HTTP/2"), "{}", web.text());
    let members = node.bus.pool("echo").members();
    assert_eq!(members.len(), 2);
    assert!(
        members.iter().all(|m| !m.is_unavailable()),
        "no member passed over: {members:?}"
    );
    let got = run_client(node.gateway_addr).await;
    assert!(got["unary"].as_array().unwrap().iter().all(Value::is_string), "{got}");
    stop(node).await;
}

/// A call without a deadline has none (a watch-like server stream outlives the
/// service's `relay.timeout_ms`, which bounds only the wait for its reply head); one
/// with a deadline is held to it. A manifest that only shortens `relay.timeout_ms` is
/// valid (the attempt timeout follows it down).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_without_a_deadline_outlives_the_relay_timeout() {
    let app = App::new();
    let services = json!({
        "echo": {
            "run": ["python3", MEMBER],
            "grpc": ["test.Echo"],
            "relay": { "timeout_ms": 1000 },
            "stop_grace_ms": 1000,
        },
    });
    let node = app.start(app.config(app.manifest(services, Value::Null))).await;
    wait_ready(&node, "echo", 1).await;
    let script = r#"
import json, sys, grpc
out = {}
with grpc.insecure_channel(sys.argv[1]) as channel:
    stream = channel.unary_stream("/test.Echo/SlowStream")
    def run(**kw):
        try:
            return [m.decode() for m in stream(b"6:400", **kw)]
        except grpc.RpcError as e:
            return {"code": e.code().name, "details": e.details()}
    out["no_deadline"] = run()
    out["deadline"] = run(timeout=1.2)
print(json.dumps(out))
"#;
    let got = run_python(vec!["-c".into(), script.into(), node.gateway_addr.to_string()]).await;
    // 2.4 s of messages, past the 1 s relay timeout.
    assert_eq!(got["no_deadline"], json!(["0", "1", "2", "3", "4", "5"]), "{got}");
    assert_eq!(got["deadline"]["code"], "DEADLINE_EXCEEDED", "{got}");
    stop(node).await;
}

/// Kills one of two members while 20 calls of /test.Echo/Work (1.5 s each) run through
/// the gateway; `idempotent` marks the method so in the manifest. Returns the answers
/// and each call's executions (how many times its ID was logged by a member).
async fn kill_during_calls(idempotent: bool) -> (Vec<Value>, std::collections::BTreeMap<String, usize>) {
    let app = App::new();
    let log = app.path().join("executions.log");
    let relay = if idempotent {
        // Calls spread over a connection each: a killed member's reissues come from
        // many connections at once.
        json!({ "idempotent": ["test.Echo/Work"], "grpc_calls_per_connection": 1 })
    } else {
        json!({})
    };
    let services = json!({
        "work": {
            "run": ["python3", MEMBER],
            "instances": { "initial": 2, "min": 2, "max": 2 },
            "grpc": ["test.Echo"],
            "env": { "EXEC_LOG": log.to_str().unwrap() },
            "relay": relay,
            "stop_grace_ms": 1000,
        },
    });
    let node = app.start(app.config(app.manifest(services, Value::Null))).await;
    let members = wait_ready(&node, "work", 2).await;
    let client = tokio::spawn(run_python(vec![
        WORK.to_string(),
        node.gateway_addr.to_string(),
        "20".to_string(),
        "1500".to_string(),
    ]));
    let executions = |log: &std::path::Path| std::fs::read_to_string(log).unwrap_or_default().lines().count();
    wait_until("20 calls under way", std::time::Duration::from_secs(20), || {
        executions(&log) >= 20
    })
    .await;
    let victim = members[0].pid.expect("a pid") as i32;
    signal(victim, libc::SIGKILL);
    let got = client.await.unwrap();
    let mut counts = std::collections::BTreeMap::new();
    for id in std::fs::read_to_string(&log).unwrap().lines() {
        *counts.entry(id.to_string()).or_insert(0) += 1;
    }
    stop(node).await;
    (got["answers"].as_array().unwrap().clone(), counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_member_s_idempotent_calls_are_reissued() {
    let (answers, executions) = kill_during_calls(true).await;
    let failed: Vec<&Value> = answers.iter().filter(|a| !a.is_string()).collect();
    assert!(failed.is_empty(), "0 failed calls, got {failed:?}");
    // Some calls were under way on the killed member: those ran twice.
    assert!(executions.values().any(|&n| n == 2), "{executions:?}");
    assert_eq!(executions.len(), 20, "{executions:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_member_s_other_calls_fail_and_never_run_twice() {
    let (answers, executions) = kill_during_calls(false).await;
    let failed: Vec<&Value> = answers.iter().filter(|a| !a.is_string()).collect();
    assert!(!failed.is_empty(), "calls on the killed member fail: {answers:?}");
    for f in &failed {
        assert_eq!(f["code"], "UNAVAILABLE", "{f}");
        let details = f["details"].as_str().unwrap();
        assert!(details.contains("not idempotent"), "{f}");
        // Whose side it was, in words: the member's connection, not the client's pipe.
        assert!(details.contains("its connection was lost"), "{f}");
    }
    assert!(
        executions.values().all(|&n| n == 1),
        "never a second execution: {executions:?}"
    );
    assert_eq!(executions.len(), 20, "{executions:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bidi_stream_outlives_its_member_s_replacement_by_reconnecting() {
    let app = App::new();
    let services = json!({
        "echo": {
            "run": ["python3", MEMBER],
            "grpc": ["test.Echo"],
            "stop_grace_ms": 1000,
        },
    });
    let node = app.start(app.config(app.manifest(services, Value::Null))).await;
    let first = wait_ready(&node, "echo", 1).await;
    let mut client = BidiClient::start(node.gateway_addr, 400).await;
    signal(first[0].pid.unwrap() as i32, libc::SIGKILL);
    let got = client.end().await;
    assert_eq!(got["echoed"], json!(400), "{got}");
    let codes = got["codes"].as_array().unwrap();
    // The broken stream ends UNAVAILABLE (not INTERNAL), which clients reconnect on; so
    // do the calls made while no member is ready.
    assert!(!codes.is_empty(), "{got}");
    assert!(codes.iter().all(|c| c == "UNAVAILABLE"), "{got}");
    assert!(
        service(&node, "echo").instances[0].restarts >= 1,
        "the member was replaced"
    );
    stop(node).await;
}

/// Two bidi streams over two members (the pick puts one on each); the service scaled to
/// one: the stopping member is shown carrying its stream while it drains, the stream
/// ends UNAVAILABLE saying the member was stopped (not that it failed), and the client,
/// reconnecting, finishes on the other member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_on_a_member_scaled_away_is_shown_while_it_drains_and_ends_saying_so() {
    let app = App::new();
    let services = json!({
        "echo": {
            "run": ["python3", MEMBER],
            "grpc": ["test.Echo"],
            "instances": { "initial": 2, "min": 1, "max": 2 },
            "stop_grace_ms": 3000,
        },
    });
    let node = app.start(app.config(app.manifest(services, Value::Null))).await;
    wait_ready(&node, "echo", 2).await;
    let mut clients = Vec::new();
    for _ in 0..2 {
        clients.push(BidiClient::start(node.gateway_addr, 1000).await);
    }
    let carried: Vec<usize> = service(&node, "echo").instances.iter().map(|i| i.inflight).collect();
    assert_eq!(carried, vec![1, 1], "one stream on each member");

    let scaled = post(node.api_addr, "/v1/services/echo/scale", r#"{"instances": 1}"#).await;
    assert_eq!(scaled.status, 200, "{}", scaled.text());
    let draining = wait_for("echo-2 stopping", std::time::Duration::from_secs(5), || {
        service(&node, "echo")
            .instances
            .into_iter()
            .find(|i| i.id == "echo-2" && i.state == strata_appservice::InstanceState::Stopping)
    })
    .await;
    assert_eq!(draining.inflight, 1, "the stream it still carries: {draining:?}");

    let mut details = Vec::new();
    for mut client in clients {
        let got = client.end().await;
        assert_eq!(got["echoed"], json!(1000), "{got}");
        assert!(
            got["codes"].as_array().unwrap().iter().all(|c| c == "UNAVAILABLE"),
            "{got}"
        );
        details.extend(got["details"].as_array().unwrap().clone());
    }
    assert!(
        details.iter().any(|d| d
            .as_str()
            .unwrap()
            .contains("member echo-2 was stopped during the call (scaled in")),
        "{details:?}"
    );
    stop(node).await;
}

/// A raw HTTP/2 call to the gateway (what a grpcio client would never send is sent as
/// it is): the reply's HTTP status, `grpc-status`, `grpc-message` (from the head or
/// the trailers) and its messages' bytes.
async fn raw_call(
    client: &h2::client::SendRequest<bytes::Bytes>,
    path: &str,
    headers: &[(String, String)],
    message: &[u8],
) -> (u16, String, String, Vec<u8>) {
    let mut req = http::Request::post(format!("http://strata.test{path}"));
    for (name, value) in headers {
        req = req.header(name.as_str(), value.as_str());
    }
    let mut ready = client.clone().ready().await.expect("the connection takes a stream");
    let (reply, mut stream) = ready.send_request(req.body(()).unwrap(), false).unwrap();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    // A call refused on its head (metadata over the limit) may be answered and its
    // stream closed before its message goes: then the message is not sent.
    let _ = stream.send_data(bytes::Bytes::from(framed), true);
    let (head, mut body) = reply.await.expect("a reply head").into_parts();
    let mut data = Vec::new();
    // A refused stream may be reset after its answer's head (h2's 431 is followed by
    // REFUSED_STREAM): its body and trailers then end there.
    while let Some(Ok(chunk)) = body.data().await {
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await.ok().flatten().unwrap_or_default();
    let field = |name: &str| {
        head.headers
            .get(name)
            .or_else(|| trailers.get(name))
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    (head.status.as_u16(), field("grpc-status"), field("grpc-message"), data)
}

/// Calls a grpcio client never sends, from a raw HTTP/2 client on one connection: a call
/// without `te: trailers` (which the member would refuse) is relayed with it; a
/// `grpc-timeout` that is not one is INTERNAL; metadata over the gateway's limit gets
/// RESOURCE_EXHAUSTED (and far over it h2's 431) on its own stream while a stream on the
/// same connection carries on. None of it keeps the members from other callers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_calls_are_answered_alone_and_leave_the_members_to_the_others() {
    let app = App::new();
    let services = json!({
        "echo": {
            "run": ["python3", MEMBER],
            "instances": { "initial": 2, "min": 2, "max": 2 },
            "grpc": ["test.Echo"],
            "stop_grace_ms": 1000,
            "relay": { "grpc_calls_per_connection": 1, "idempotent": ["test.Echo/Unary"] },
        },
    });
    let node = app.start(app.config(app.manifest(services, Value::Null))).await;
    wait_ready(&node, "echo", 2).await;
    let tcp = tokio::net::TcpStream::connect(node.gateway_addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(conn);
    let grpc = |extra: &[(&str, &str)]| -> Vec<(String, String)> {
        let mut h = vec![("content-type".to_string(), "application/grpc".to_string())];
        h.extend(extra.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        h
    };
    let te = ("te", "trailers");

    // Without `te: trailers`, an idempotent and another method: served, every time.
    for path in ["/test.Echo/Unary", "/test.Echo/Metadata"].repeat(3) {
        let (status, code, message, data) = raw_call(&client, path, &grpc(&[]), b"hi").await;
        assert_eq!((status, code.as_str()), (200, "0"), "{path}: {message}");
        assert!(!data.is_empty(), "{path}");
    }
    // And well-formed calls right after: the members were not passed over.
    for _ in 0..6 {
        let (status, code, message, data) = raw_call(&client, "/test.Echo/Unary", &grpc(&[te]), b"ok").await;
        assert_eq!((status, code.as_str()), (200, "0"), "{message}");
        assert!(data.ends_with(b":ok"), "{}", String::from_utf8_lossy(&data));
    }

    // A grpc-timeout that is not one: INTERNAL, as a gRPC server answers it.
    for bad in ["abc", "-5m", "123456789S", "5x"] {
        let headers = grpc(&[te, ("grpc-timeout", bad)]);
        let (status, code, message, _) = raw_call(&client, "/test.Echo/Unary", &headers, b"x").await;
        assert_eq!((status, code.as_str()), (200, "13"), "{bad}: {message}");
        assert!(message.contains("grpc-timeout"), "{message}");
    }

    // An unknown service: UNIMPLEMENTED, naming the ones served here.
    let (status, code, message, _) = raw_call(&client, "/nope.Svc/M", &grpc(&[te]), b"x").await;
    assert_eq!((status, code.as_str()), (200, "12"), "{message}");
    assert!(message.contains("gRPC services served here: test.Echo"), "{message}");

    // A server stream open on the connection while two calls bring too much metadata.
    let streaming = {
        let client = client.clone();
        let headers = grpc(&[te]);
        tokio::spawn(async move { raw_call(&client, "/test.Echo/SlowStream", &headers, b"5:200").await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // 20 KiB of metadata: over the gateway's 16 KiB, answered by strata in gRPC terms.
    let big = "y".repeat(20 << 10);
    let (status, code, message, _) = raw_call(&client, "/test.Echo/Unary", &grpc(&[te, ("x-big", &big)]), b"x").await;
    assert_eq!((status, code.as_str()), (200, "8"), "{message}");
    assert!(message.contains("max_header_bytes"), "{message}");
    // 2,000 entries (about 90 KiB as HTTP/2 counts them): h2's own 431, on the stream.
    let many: Vec<(String, String)> = (0..2000)
        .map(|i| (format!("x-h{i}"), "yyyyyyyyyy".to_string()))
        .collect();
    let mut headers = grpc(&[te]);
    headers.extend(many);
    let (status, _, _, _) = raw_call(&client, "/test.Echo/Unary", &headers, b"x").await;
    assert_eq!(status, 431);
    let (status, code, message, data) = streaming.await.unwrap();
    assert_eq!((status, code.as_str()), (200, "0"), "the stream carried on: {message}");
    assert_eq!(data.len(), 5 * 6, "five framed messages of one digit");
    assert!(!connection.is_finished(), "the connection is still open");
    drop(client);
    stop(node).await;
}
