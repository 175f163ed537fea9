//! Scale from zero across the cluster, end to end: real nats-server processes (three,
//! clustered, with JetStream) and real `strata node` processes.

mod common;

use std::time::{Duration, Instant};

use common::cluster::*;
use common::{get, remember_token};
use serde_json::{json, Value};
use strata_testkit::nats::{nats_server, NatsCluster};

/// The cluster tests start many processes: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Scale from zero across the cluster: a service with `instances.min` 0 goes to zero on
/// every node once idle; a request through any node's gateway (or a node API's
/// `/v1/any`) is then held, not refused, while the scheduler places an instance
/// somewhere, and answered once it is ready; the start is recorded as a cold start on
/// the node that held the request; idle again, the service goes back to zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_at_zero_on_every_node_starts_on_demand_from_any_node() {
    if !strata_testkit::needs("cluster", nats_server()) {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsCluster::start(dir.path(), 3);
    let urls = nats.urls();
    remember_dir(&urls, dir.path());
    let record = dir.path().join("record.jsonl");
    // Placed at zero from the start; back at zero after 2 s idle.
    let manifest = write_app(
        dir.path(),
        &record,
        json!({
            "lazy": {
                "instances": { "min": 0, "max": 2, "idle_timeout_ms": 2000 },
                "routes": ["/"],
            },
        }),
    );
    let nodes: Vec<ClusterNode> = [("a", "A"), ("b", "B"), ("c", "C")]
        .into_iter()
        .map(|(n, p)| start_node(dir.path(), &urls, n, p))
        .collect();
    let out = strata(&["deploy", manifest.to_str().unwrap(), "--nats", &urls]);
    assert!(out.status.success(), "deploy: {}", String::from_utf8_lossy(&out.stderr));
    let total = |v: &Value| placed(v, "lazy").values().sum::<u64>();
    let ready = |v: &Value| ["a", "b", "c"].iter().map(|n| ready_on(v, n)).sum::<u64>();
    let at_zero = |urls: &str| {
        let urls = urls.to_string();
        tokio::task::spawn_blocking(move || {
            wait_for(&urls, "lazy at zero on every node", Duration::from_secs(30), |v| {
                let running = v["nodes"].as_array().unwrap();
                running.iter().filter(|n| n["apis"]["test"].is_string()).count() == 3
                    && v["apps"]["test"]["services"]["lazy"].is_object()
                    && total(v) == 0
                    && ready(v) == 0
            })
        })
    };
    at_zero(&urls).await.unwrap();

    // A request through node c's gateway is held while an instance starts somewhere (on
    // a: the nodes are equally loaded, and ties go by name), then relayed to it.
    let v = nodes_json(&urls);
    let gw_c = gateway_of(&v, "c");
    let sent_ms = strata_now_ms();
    let started = Instant::now();
    let reply = get(gw_c, "/sleep?ms=1").await;
    let cold = started.elapsed();
    assert_eq!(
        reply.status,
        http::StatusCode::OK,
        "held, then answered: {}",
        reply.text()
    );
    let v = nodes_json(&urls);
    assert!(total(&v) >= 1, "an instance placed: {v:#}");
    let on = placed(&v, "lazy");
    eprintln!("cold start in the cluster: answered after {cold:?} through c, instance on {on:?}");

    // Recorded on c, the node that held it: the cold-start event and the metric.
    let api_c = api_of(&v, "c");
    remember_token(api_c, &token_on(dir.path(), "c"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let metrics = get(api_c, "/v1/metrics").await.text();
        if metrics.contains("strata_cold_start_seconds{app=\"test\",service=\"lazy\"}") {
            break metrics;
        }
        assert!(
            Instant::now() < deadline,
            "no strata_cold_start_seconds on c: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        metrics.contains("strata_cold_starts_total{app=\"test\",service=\"lazy\"} 1"),
        "{metrics}"
    );
    // Where the time went, from every node's events (one machine, one clock).
    let mut timeline = Vec::new();
    for n in ["a", "b", "c"] {
        let api = api_of(&v, n);
        remember_token(api, &token_on(dir.path(), n));
        for e in get(api, "/v1/events").await.json().as_array().unwrap() {
            let at = e["at"].as_u64().unwrap();
            if e["service"] == "lazy" && at >= sent_ms {
                timeline.push((
                    at - sent_ms,
                    n,
                    e["kind"].as_str().unwrap().to_string(),
                    e["message"].clone(),
                ));
            }
        }
    }
    timeline.sort_by_key(|t| t.0);
    for (ms, node, kind, message) in &timeline {
        eprintln!("  +{ms:>5} ms  {node}  {kind:<12} {message}");
    }
    let first = |kind: &str| timeline.iter().find(|t| t.2 == kind).map(|t| t.0);
    let cold_event = timeline.iter().find(|t| t.2 == "cold-start" && t.1 == "c");
    assert!(cold_event.is_some(), "a cold-start event on c: {timeline:?}");
    assert!(
        first("autoscaled").is_some() && first("ready").is_some(),
        "{timeline:?}"
    );
    eprintln!(
        "cold start: decision placed +{:?} ms, launched +{:?} ms, ready +{:?} ms, reached from c +{:?} ms, answered {} ms",
        first("autoscaled"),
        first("launched"),
        first("ready"),
        cold_event.map(|t| t.0),
        cold.as_millis()
    );

    // Idle again: back to zero everywhere.
    let idle = at_zero(&urls).await.unwrap();
    eprintln!("back to zero {idle:?} after the answer");

    // A platform call (`$STRATA_URL/v1/any/...`) through node a's API is held the same
    // way (the instance starts on a again: a start without the hop between nodes).
    let v = nodes_json(&urls);
    let api_a = api_of(&v, "a");
    remember_token(api_a, &token_on(dir.path(), "a"));
    let started = Instant::now();
    let reply = get(api_a, "/v1/any/lazy/sleep?ms=1").await;
    assert_eq!(
        reply.status,
        http::StatusCode::OK,
        "held, then answered: {}",
        reply.text()
    );
    eprintln!(
        "cold start through a's node API: {:?}, instance on {:?}",
        started.elapsed(),
        placed(&nodes_json(&urls), "lazy")
    );
    drop(nodes);
    drop(nats);
}

/// A service at zero whose instance cannot start (its program exits at once): a request
/// held on one node while the scheduler starts the instance on another is answered 503
/// as that start fails, naming the node, not held to its 30 s deadline for a 504 (the
/// failure comes in the other node's heartbeat).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_held_in_the_cluster_for_an_instance_that_cannot_start_is_answered_at_once() {
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
        json!({
            "broken": {
                // Kept placed while it fails: its restart backoff grows.
                "instances": { "min": 0, "max": 1, "idle_timeout_ms": 60000 },
                "routes": ["/"],
            },
        }),
    );
    let mut app: Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    app["services"]["broken"]["run"] = json!(["python3", "-c", "import sys; sys.exit('cannot start: missing DB_URL')"]);
    std::fs::write(&manifest, app.to_string()).unwrap();
    // Ties go by name: the instance is placed on a; the requests come through b.
    let nodes = [
        start_node(dir.path(), &urls, "a", "A"),
        start_node(dir.path(), &urls, "b", "B"),
    ];
    let out = strata(&["deploy", manifest.to_str().unwrap(), "--nats", &urls]);
    assert!(out.status.success(), "deploy: {}", String::from_utf8_lossy(&out.stderr));
    let urls2 = urls.clone();
    tokio::task::spawn_blocking(move || {
        wait_for(&urls2, "the app on both nodes", Duration::from_secs(60), |v| {
            let nodes = v["nodes"].as_array().unwrap();
            nodes.iter().filter(|n| n["apis"]["test"].is_string()).count() == 2
        })
    })
    .await
    .unwrap();
    let gw_b = gateway_of(&nodes_json(&urls), "b");
    for path in ["/first", "/second"] {
        let started = Instant::now();
        let reply = get(gw_b, path).await;
        let took = started.elapsed();
        eprintln!("{path}: {} after {took:?}: {}", reply.status, reply.text());
        assert_eq!(reply.status, 503, "{path}: {}", reply.text());
        assert!(
            reply.text().contains("failed to start; strata ps --nats says why"),
            "{path}: {}",
            reply.text()
        );
        assert!(
            took < Duration::from_secs(15),
            "{path} answered as the start failed, not at its deadline: {took:?}"
        );
    }
    // Asked again and again while it keeps failing (its backoff doubling from 0.1 s,
    // 6.4 s by the seventh failure): answered at once while the instance on a waits out
    // its backoff (a's heartbeat says when it launches again), held only through a
    // launch, never through a backoff.
    let started = Instant::now();
    let (mut slowest, mut asked, mut told_when) = (Duration::ZERO, 0, 0);
    while started.elapsed() < Duration::from_secs(12) {
        let sent = Instant::now();
        let reply = get(gw_b, "/again").await;
        let took = sent.elapsed();
        asked += 1;
        assert_eq!(reply.status, 503, "{}", reply.text());
        if reply.text().contains("next launch in") {
            told_when += 1;
        }
        slowest = slowest.max(took);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let v = nodes_json(&urls);
    eprintln!(
        "{asked} requests while it failed, {told_when} told when the next launch comes, the slowest answered in {slowest:?}; placed {:?}",
        placed(&v, "broken")
    );
    assert!(
        slowest < Duration::from_secs(3),
        "a request during the restart backoff is answered at once, not held through it: {slowest:?}"
    );
    assert!(told_when > 0, "no answer told when the next launch comes");
    drop(nodes);
    drop(nats);
}
