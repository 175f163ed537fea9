//! The relay through the first tier: ANY spreads load, ALL reaches every member once,
//! reissues happen only when safe, request ids and attempt numbers reach members, h2c.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};

/// A node running `count` test members of `web`, routed at `/`.
async fn web_pool(app: &App, count: u32, extra: Value) -> strata_node::Node {
    let mut spec = json!({ "instances": { "min": count, "max": count }, "routes": ["/"] });
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    let manifest = app.manifest(json!({ "web": app.member(spec) }), Value::Null);
    let node = app.start(app.config(manifest)).await;
    wait_ready(&node, "web", count as usize).await;
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_spreads_load_across_members() {
    let app = App::new();
    let node = web_pool(&app, 4, json!({})).await;
    let mut client = Client::connect(node.gateway_addr).await;
    let mut served: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..400 {
        let reply = client.get(&format!("/spread/{i}")).await.expect("a reply");
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        let by = reply
            .header("x-strata-instance")
            .expect("x-strata-instance on a relayed reply");
        assert_eq!(
            reply.json()["instance"],
            by,
            "the header names the member that answered"
        );
        *served.entry(by.to_string()).or_default() += 1;
    }
    assert_eq!(served.len(), 4, "every member served: {served:?}");
    // A fair share is 100 each; 50 is more than five standard deviations below it.
    for (member, n) in &served {
        assert!(*n >= 50, "{member} served only {n} of 400: {served:?}");
    }
    // The members saw the same split.
    let mut recorded: BTreeMap<String, usize> = BTreeMap::new();
    for r in app.requests() {
        *recorded.entry(r["instance"].as_str().unwrap().to_string()).or_default() += 1;
    }
    assert_eq!(recorded, served);
    stop(node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_reaches_each_member_exactly_once() {
    let app = App::new();
    let spec = app.member(json!({
        "instances": { "min": 3, "max": 3 },
        "routes": [{ "path": "/everyone", "mode": "all" }],
    }));
    let manifest = app.manifest(json!({ "web": spec }), Value::Null);
    let node = app.start(app.config(manifest)).await;
    let ready = wait_ready(&node, "web", 3).await;
    let mut ids: Vec<String> = ready.iter().map(|i| i.id.clone()).collect();
    ids.sort();

    // Through the node API, as an instance would call it.
    let mut req = request(Method::POST, node.api_addr, "/v1/all/web/ping?x=1", "hello all");
    req.headers_mut().insert("x-request-id", "all-via-api".parse().unwrap());
    let reply = send(node.api_addr, req).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    check_gathered(&reply.json(), &ids);
    let seen = app.requests_with_id("all-via-api");
    check_once_each(&seen, &ids);
    assert!(
        seen.iter().all(|r| r["path"] == "/ping?x=1" && r["method"] == "POST"),
        "{seen:?}"
    );

    // Through a gateway route in mode "all".
    let mut req = request(Method::GET, node.gateway_addr, "/everyone/now", Bytes::new());
    req.headers_mut()
        .insert("x-request-id", "all-via-gateway".parse().unwrap());
    let reply = send(node.gateway_addr, req).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.header("x-request-id"), Some("all-via-gateway"));
    check_gathered(&reply.json(), &ids);
    let seen = app.requests_with_id("all-via-gateway");
    check_once_each(&seen, &ids);
    assert!(
        seen.iter().all(|r| r["path"] == "/everyone/now" && r["attempt"] == "1"),
        "{seen:?}"
    );
    stop(node).await;
}

/// The gathered reply of an ALL call: one 200 entry per member, each with that member's body.
fn check_gathered(replies: &Value, ids: &[String]) {
    let replies = replies.as_array().expect("an array of replies");
    let instances: Vec<&str> = replies.iter().map(|r| r["instance"].as_str().unwrap()).collect();
    assert_eq!(instances, ids, "{replies:?}");
    for r in replies {
        assert_eq!(r["status"], 200, "{r}");
        let body: Value = serde_json::from_str(r["body"].as_str().expect("a text body")).unwrap();
        assert_eq!(body["instance"], r["instance"]);
    }
}

/// The record lines of one broadcast: one per member, from distinct processes.
fn check_once_each(seen: &[Value], ids: &[String]) {
    let mut instances: Vec<&str> = seen.iter().map(|r| r["instance"].as_str().unwrap()).collect();
    instances.sort();
    assert_eq!(instances, ids, "each member exactly once: {seen:?}");
    // Counted as a set: duplicates need not be adjacent in the record file.
    let pids: BTreeSet<i64> = seen.iter().map(|r| r["pid"].as_i64().unwrap()).collect();
    assert_eq!(pids.len(), ids.len(), "each member in a process of its own: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_member_under_load_fails_no_request() {
    const TOTAL: usize = 2000;
    const CLIENTS: usize = 8;
    let app = App::new();
    let node = web_pool(&app, 3, json!({})).await;
    let victim = service(&node, "web").instances[1].clone();
    let victim_pid = victim.pid.unwrap() as i32;

    let done = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut load = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let (done, failures, gateway) = (done.clone(), failures.clone(), node.gateway_addr);
        load.spawn(async move {
            let mut client = Client::connect(gateway).await;
            for i in 0..TOTAL / CLIENTS {
                match client.get(&format!("/load/{c}/{i}")).await {
                    Ok(r) if r.status == StatusCode::OK => {}
                    Ok(r) => failures.lock().unwrap().push(format!("{}: {}", r.status, r.text())),
                    Err(e) => failures.lock().unwrap().push(e.to_string()),
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    wait_until("300 requests done", Duration::from_secs(30), || {
        done.load(Ordering::Relaxed) >= 300
    })
    .await;
    signal(victim_pid, libc::SIGKILL);
    let done_at_kill = done.load(Ordering::Relaxed);
    while let Some(joined) = load.join_next().await {
        joined.expect("a load task");
    }
    assert!(
        done_at_kill < TOTAL - 500,
        "the kill came while the load ran ({done_at_kill} done)"
    );
    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} of {TOTAL} requests failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(done.load(Ordering::Relaxed), TOTAL);
    let by_victim = app.requests().iter().filter(|r| r["pid"] == victim_pid).count();
    assert!(
        by_victim > 0,
        "the killed member had its share of the load before it died"
    );

    // The killed member is replaced: a new process, ready, the pool back to 3.
    let replaced = wait_for("the killed member replaced", READY_TIMEOUT, || {
        let s = service(&node, "web");
        let i = s.instances.iter().find(|i| i.id == victim.id)?.clone();
        let back = i.state == strata_appservice::InstanceState::Ready && s.ready == 3;
        back.then_some(i)
    })
    .await;
    assert_eq!(replaced.restarts, 1);
    assert_ne!(replaced.pid, victim.pid);
    assert!(
        replaced.last_exit.as_deref().unwrap_or("").contains("SIGKILL"),
        "last_exit says how it ended: {:?}",
        replaced.last_exit
    );
    assert_eq!(node.bus.pool("web").members().len(), 3);
    stop(node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_to_a_dying_member_is_not_reissued_unless_idempotency_key() {
    let app = App::new();
    let node = web_pool(&app, 2, json!({})).await;

    // Without a key: the member dies mid-request; the client gets a clear 502.
    let mut req = request(Method::POST, node.gateway_addr, "/die", "order #1");
    req.headers_mut().insert("x-request-id", "post-once".parse().unwrap());
    let reply = send(node.gateway_addr, req).await.unwrap();
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let body = reply.json();
    let error = body["error"].as_str().expect("an error message");
    assert!(error.contains("failed while handling the request"), "{error}");
    assert!(
        error.contains("not idempotent") && error.contains("Idempotency-Key"),
        "{error}"
    );
    assert_eq!(body["service"], "web");
    assert_eq!(body["request_id"], "post-once");
    let executed = app.requests_with_id("post-once");
    assert_eq!(executed.len(), 1, "executed once only: {executed:?}");
    let died = executed[0]["instance"].as_str().unwrap().to_string();

    // The dead member comes back; then the same POST with a key is reissued.
    wait_for("the dead member relaunched", READY_TIMEOUT, || {
        let s = service(&node, "web");
        let back = s.instances.iter().any(|i| i.id == died && i.restarts == 1);
        (back && s.ready == 2).then_some(())
    })
    .await;
    let mut req = request(Method::POST, node.gateway_addr, "/die", "order #2");
    req.headers_mut().insert("x-request-id", "post-keyed".parse().unwrap());
    req.headers_mut().insert("idempotency-key", "order-2".parse().unwrap());
    let reply = send(node.gateway_addr, req).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let answer = reply.json();
    assert_eq!(answer["attempt"], "2", "the member sees the reissue as attempt 2");
    let attempts = app.requests_with_id("post-keyed");
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[0]["attempt"], "1");
    assert_eq!(attempts[1]["attempt"], "2");
    assert_ne!(
        attempts[0]["instance"], attempts[1]["instance"],
        "reissued to a different member"
    );
    assert_eq!(attempts[1]["instance"], answer["instance"]);
    assert!(attempts.iter().all(|a| a["idempotency_key"] == "order-2"));

    // The trace shows each attempt under the relay's span: the first with the member
    // that died and why, the second with the member that answered.
    let trace = get(node.api_addr, "/v1/traces?id=post-keyed").await.json();
    let spans = trace[0]["spans"].as_array().unwrap();
    let relay = spans.iter().find(|s| s["kind"] == "gateway").expect("the relay's span");
    assert_eq!(relay["attempts"], 2);
    let tries: Vec<&serde_json::Value> = spans.iter().filter(|s| s["kind"] == "attempt").collect();
    assert_eq!(tries.len(), 2, "{trace:#}");
    assert!(tries.iter().all(|t| t["parent_id"] == relay["span_id"]));
    assert_eq!(tries[0]["member"], attempts[0]["instance"]);
    let why = tries[0]["reason"].as_str().expect("why the first attempt failed");
    assert!(why.contains("broke off"), "{why}");
    assert_eq!(tries[1]["member"], answer["instance"]);
    assert_eq!(tries[1]["status"], 200);
    assert!(tries[1].get("reason").is_none(), "{trace:#}");
    assert!(tries[0]["start_us"].as_u64() <= tries[1]["start_us"].as_u64());
    // Counted: the one reissue, after a connection that broke off once sent (the POST
    // without a key was not reissued).
    let metrics = get(node.api_addr, "/v1/metrics").await.text();
    let reissued = |why: &str| {
        metric(
            &metrics,
            &format!("strata_reissues_total{{app=\"test\",service=\"web\",protocol=\"http\",reason=\"{why}\"}}"),
        )
    };
    assert_eq!(
        (reissued("broken"), reissued("unsent"), reissued("timeout")),
        (1.0, 0.0, 0.0),
        "{metrics}"
    );
    // The route saw the two POSTs: one answered by a member, one by the relay itself.
    let route = "app=\"test\",service=\"web\",route=\"/\"";
    assert_eq!(
        metric(
            &metrics,
            &format!("strata_route_requests_total{{{route},code=\"2xx\"}}")
        ),
        1.0
    );
    assert_eq!(
        metric(
            &metrics,
            &format!("strata_route_requests_total{{{route},code=\"none\",reason=\"failed\"}}")
        ),
        1.0
    );
    assert_eq!(
        metric(
            &metrics,
            &format!("strata_route_request_duration_seconds_count{{{route}}}")
        ),
        2.0
    );
    stop(node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_is_kept_or_added_and_first_attempt_is_1() {
    let app = App::new();
    let node = web_pool(
        &app,
        1,
        json!({ "relay": { "timeout_ms": 7000, "attempt_timeout_ms": 5000 } }),
    )
    .await;

    let mut req = request(Method::GET, node.gateway_addr, "/given", Bytes::new());
    req.headers_mut()
        .insert("x-request-id", "client-chose-this".parse().unwrap());
    let reply = send(node.gateway_addr, req).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    let seen = reply.json();
    assert_eq!(seen["request_id"], "client-chose-this");
    assert_eq!(reply.header("x-request-id"), Some("client-chose-this"));
    assert_eq!(seen["attempt"], "1");
    let deadline: u64 = seen["deadline_ms"]
        .as_str()
        .expect("a deadline header")
        .parse()
        .unwrap();
    assert!(
        deadline > 0 && deadline <= 7000,
        "remaining deadline within relay.timeout_ms: {deadline}"
    );

    let mut added = Vec::new();
    for path in ["/absent/1", "/absent/2"] {
        let reply = get(node.gateway_addr, path).await;
        assert_eq!(reply.status, StatusCode::OK);
        let seen = reply.json();
        let id = seen["request_id"]
            .as_str()
            .expect("the gateway added an id")
            .to_string();
        assert!(!id.is_empty());
        assert_eq!(
            reply.header("x-request-id"),
            Some(id.as_str()),
            "the client sees the id the member saw"
        );
        assert_eq!(seen["attempt"], "1");
        added.push(id);
    }
    assert_ne!(added[0], added[1], "each request gets its own id");
    let recorded: Vec<String> = app
        .requests()
        .iter()
        .map(|r| r["request_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(recorded, ["client-chose-this", added[0].as_str(), added[1].as_str()]);
    stop(node).await;
}

/// The platform API relays like the gateway: `/v1/any/web/x?y` reaches `/x?y`, and a call
/// without a request id gets one of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_through_the_node_api_keep_or_get_their_own_request_id() {
    let app = App::new();
    let node = web_pool(&app, 1, json!({})).await;
    let mut ids = Vec::new();
    for i in 0..2 {
        let reply = get(node.api_addr, &format!("/v1/any/web/call/{i}?q=1")).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        let seen = reply.json();
        assert_eq!(seen["path"], format!("/call/{i}?q=1"));
        assert_eq!(seen["attempt"], "1");
        let id = seen["request_id"].as_str().expect("an id").to_string();
        assert_eq!(reply.header("x-request-id"), Some(id.as_str()));
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1], "two calls, two request ids");
    let mut req = request(Method::GET, node.api_addr, "/v1/any/web/passed-on", Bytes::new());
    req.headers_mut()
        .insert("x-request-id", "from-the-caller".parse().unwrap());
    let reply = send(node.api_addr, req).await.unwrap();
    assert_eq!(reply.json()["request_id"], "from-the-caller");
    // One that could forge access-log fields is replaced.
    let mut req = request(Method::GET, node.api_addr, "/v1/any/web/forged", Bytes::new());
    req.headers_mut()
        .insert("x-request-id", "a status=500".parse().unwrap());
    let reply = send(node.api_addr, req).await.unwrap();
    assert_ne!(reply.json()["request_id"], "a status=500");
    // The service's root, with and without its slash (an empty path after it).
    for root in ["/v1/any/web", "/v1/any/web/", "/v1/any/web/?q=1"] {
        let reply = get(node.api_addr, root).await;
        assert_eq!(reply.status, StatusCode::OK, "{root}: {}", reply.text());
        assert!(reply.json()["path"].as_str().unwrap().starts_with('/'), "{root}");
    }
    let reply = get(node.api_addr, "/v1/all/web/").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let reply = get(node.api_addr, "/v1/any/nope/x").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(reply.json()["error"]
        .as_str()
        .unwrap()
        .contains("no service named \"nope\""));
    stop(node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_is_relayed() {
    let app = App::new();
    let node = web_pool(&app, 1, json!({})).await;
    let stream = tokio::net::TcpStream::connect(node.gateway_addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .expect("an HTTP/2 handshake with the gateway");
    tokio::spawn(conn);
    for i in 0..3 {
        let req = http::Request::builder()
            .uri(format!("http://{}/over-h2/{i}", node.gateway_addr))
            .header("x-request-id", format!("h2-{i}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let res = sender.send_request(req).await.expect("an h2 reply");
        assert_eq!(res.version(), http::Version::HTTP_2);
        assert_eq!(res.status(), StatusCode::OK);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let seen: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            seen["path"],
            format!("/over-h2/{i}"),
            "the member gets origin form over HTTP/1.1"
        );
        assert_eq!(seen["request_id"], format!("h2-{i}"));
    }
    assert_eq!(app.requests().len(), 3);
    stop(node).await;
}

/// The node's access log: what it holds of requests to `/logged/`, once `want` lines are
/// there or a few flushes (one a second) have passed.
async fn logged(app: &App, want: usize) -> Vec<String> {
    let path = app.path().join(".strata").join("logs").join("access.log");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<String> = text
            .lines()
            .filter(|l| l.contains("/logged/"))
            .map(str::to_string)
            .collect();
        if lines.len() >= want && want > 0 || std::time::Instant::now() >= deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_is_a_line_of_the_access_log_unless_it_is_off() {
    for on in [true, false] {
        let app = App::new();
        let spec = app.member(json!({ "instances": { "min": 1, "max": 1 }, "routes": ["/"] }));
        let manifest = app.manifest(json!({ "web": spec }), json!({ "access_log": on }));
        let node = app.start(app.config(manifest)).await;
        wait_ready(&node, "web", 1).await;
        let mut client = Client::connect(node.gateway_addr).await;
        for i in 0..3 {
            let reply = client.get(&format!("/logged/{i}")).await.expect("a reply");
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        }
        let lines = logged(&app, if on { 3 } else { 0 }).await;
        if on {
            assert_eq!(lines.len(), 3, "{lines:?}");
            for (i, line) in lines.iter().enumerate() {
                assert!(line.contains(&format!(" GET /logged/{i} 200 ")), "{line}");
                assert!(line.contains(" service=web member=web-"), "{line}");
                assert!(line.contains(" rid="), "{line}");
            }
        } else {
            assert!(lines.is_empty(), "gateway.access_log false, yet: {lines:?}");
        }
        stop(node).await;
    }
}
