//! Scale to zero and back: a service with `instances.min: 0` runs nothing until a request
//! comes; that request is held at the gateway while an instance starts, then answered;
//! after `idle_timeout_ms` without requests the last instance stops.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_to_a_service_at_zero_is_held_while_an_instance_starts() {
    let app = App::new();
    let manifest = app.manifest(
        json!({ "lazy": app.member(json!({
            "routes": ["/"],
            "instances": { "min": 0, "max": 2, "idle_timeout_ms": 1500 },
        })) }),
        serde_json::Value::Null,
    );
    let node = app.start(app.config(manifest)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(service(&node, "lazy").desired, 0, "nothing runs before a request");
    assert!(app.starts().is_empty());

    // The first request waits for the cold start, then succeeds.
    let started = Instant::now();
    let reply = get(node.gateway_addr, "/hello").await;
    let cold = started.elapsed();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["instance"], "lazy-1");
    eprintln!("first request answered after a cold start of {cold:?}");
    assert_eq!(service(&node, "lazy").desired, 1);
    // The cold start is measured and shown per service, in ps and the metrics.
    let scale = wait_for("the cold start reported", Duration::from_secs(5), || {
        service(&node, "lazy").autoscale.filter(|a| a.cold_start_ms.is_some())
    })
    .await;
    assert_eq!(scale.cold_starts, 1);
    assert!(
        scale.cold_start_ms.unwrap() <= cold.as_millis() as u64 + 1,
        "{scale:?} vs {cold:?}"
    );
    // In seconds, as Prometheus' base unit.
    let metrics = get(node.api_addr, "/v1/metrics").await.text();
    let seconds: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("strata_cold_start_seconds{app=\"test\",service=\"lazy\"} "))
        .unwrap_or_else(|| panic!("no strata_cold_start_seconds in {metrics}"))
        .parse()
        .expect("a number");
    assert_eq!(seconds, scale.cold_start_ms.unwrap() as f64 / 1000.0, "{metrics}");
    relayed_requests_are_counted_and_timed(&node).await;
    assert!(
        node.app
            .recent_events()
            .iter()
            .any(|e| e.service == "lazy" && e.message.contains("after the first request to a pool at zero")),
        "the cold start is an event"
    );

    // Idle past the timeout: back to zero.
    wait_until("the idle service scaled to zero", Duration::from_secs(20), || {
        let s = service(&node, "lazy");
        s.desired == 0 && s.ready == 0
    })
    .await;
    // And up again for the next request.
    let reply = get(node.gateway_addr, "/again").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    stop(node).await;
}

/// The relay's figures in `/v1/metrics`, read by Prometheus's own parser: after the cold
/// start's request, 5 more answered 200, 2 answered 404 and 1 answered 500 by the member;
/// and a queue's fsync times after 3 publishes.
async fn relayed_requests_are_counted_and_timed(node: &strata_node::Node) {
    let has = strata_testkit::python_module("prometheus_client", "python3 -m pip install prometheus_client");
    if !strata_testkit::needs("relayed_requests_are_counted_and_timed", has) {
        return;
    }
    for (path, status, times) in [
        ("/hello", 200, 5),
        ("/cached?status=404", 404, 2),
        ("/cached?status=500", 500, 1),
    ] {
        for _ in 0..times {
            assert_eq!(get(node.gateway_addr, path).await.status, status, "{path}");
        }
    }
    // A queue with `fsync: always` (the default) syncs each published batch.
    let (jobs, _) = node
        .backends
        .queues
        .create("jobs", strata_manifest::QueueSpec::default())
        .await
        .expect("create a queue");
    for n in 0..3 {
        jobs.publish(vec![strata_queue::NewMessage::new(format!("job {n}"))])
            .await
            .expect("publish");
    }
    // One message leased to group g; two store writes and a read; a cache key.
    let leased = jobs
        .fetch("g", strata_queue::FetchOptions::default())
        .await
        .expect("fetch");
    assert_eq!(leased.len(), 1);
    // Acked, and one more leased: one done, one leased, one unread.
    assert_eq!(jobs.ack("g", &[leased[0].offset]).await.expect("ack"), (1, 0));
    let leased = jobs
        .fetch("g", strata_queue::FetchOptions::default())
        .await
        .expect("fetch");
    assert_eq!(leased.len(), 1);
    let store = &node.backends.store;
    for v in ["1", "2"] {
        store
            .put("test.ns", "k", v.into(), strata_store::Cond::Any)
            .await
            .expect("put");
    }
    store.get("test.ns", "k").await.expect("get");
    // One Redis connection, open while the metrics are read, that ran one command.
    let _redis = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut resp = tokio::net::TcpStream::connect(node.cache_addr.expect("a Redis port"))
            .await
            .unwrap();
        resp.write_all(b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n")
            .await
            .unwrap();
        let mut ok = [0u8; 5];
        resp.read_exact(&mut ok).await.unwrap();
        assert_eq!(&ok, b"+OK\r\n");
        resp
    };
    let metrics = get(node.api_addr, "/v1/metrics").await.text();
    let families = parse_prometheus(&metrics);
    let labelled = |family: &str, label: &str, value: &str| -> Vec<(String, serde_json::Value, f64)> {
        let family = &families[family];
        family["samples"]
            .as_array()
            .unwrap_or_else(|| panic!("no family {family} in\n{metrics}"))
            .iter()
            .filter(|s| s[1][label] == value && s[1]["app"] == "test")
            .map(|s| (s[0].as_str().unwrap().to_string(), s[1].clone(), s[2].as_f64().unwrap()))
            .collect()
    };
    let samples = |family: &str| labelled(family, "service", "lazy");
    // A histogram's buckets are cumulative over rising bounds, end at +Inf with the
    // count, and the sum is positive; answers the count.
    let histogram = |name: &str, samples: Vec<(String, serde_json::Value, f64)>| -> f64 {
        assert_eq!(families[name]["type"], "histogram", "{name}");
        let count = samples
            .iter()
            .find(|s| s.0 == format!("{name}_count"))
            .unwrap_or_else(|| panic!("no {name}_count in\n{metrics}"))
            .2;
        let buckets: Vec<(String, f64)> = samples
            .iter()
            .filter(|s| s.0 == format!("{name}_bucket"))
            .map(|s| (s.1["le"].as_str().unwrap().to_string(), s.2))
            .collect();
        assert!(buckets.len() > 10, "{metrics}");
        assert_eq!(buckets.last().unwrap(), &("+Inf".to_string(), count), "{name}");
        assert!(
            buckets.windows(2).all(|w| w[0].1 <= w[1].1),
            "{name}: cumulative buckets: {buckets:?}"
        );
        let bounds: Vec<f64> = buckets[..buckets.len() - 1]
            .iter()
            .map(|b| b.0.parse().unwrap())
            .collect();
        assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{bounds:?}");
        let sum = samples.iter().find(|s| s.0 == format!("{name}_sum")).unwrap().2;
        assert!(sum > 0.0, "{name}: {metrics}");
        count
    };
    let relayed = histogram(
        "strata_request_duration_seconds",
        samples("strata_request_duration_seconds"),
    );
    assert_eq!(relayed, 9.0, "{metrics}");
    let fsyncs = histogram(
        "strata_queue_fsync_duration_seconds",
        labelled("strata_queue_fsync_duration_seconds", "queue", "jobs"),
    );
    assert!(fsyncs >= 3.0, "one sync per published batch: {metrics}");
    assert_eq!(families["strata_requests"]["type"], "counter");
    let by_code = |code: &str| {
        samples("strata_requests")
            .iter()
            .find(|s| s.0 == "strata_requests_total" && s.1["code"] == code)
            .map(|s| s.2)
    };
    assert_eq!(by_code("2xx"), Some(6.0), "{metrics}");
    assert_eq!(by_code("3xx"), Some(0.0), "{metrics}");
    assert_eq!(by_code("4xx"), Some(2.0), "{metrics}");
    assert_eq!(by_code("5xx"), Some(1.0), "{metrics}");

    // Instances by state, queues and groups, the cache's shards, the store.
    let one = |family: &str, name: &str, labels: &[(&str, &str)]| -> f64 {
        let found: Vec<f64> = families[family]["samples"]
            .as_array()
            .unwrap_or_else(|| panic!("no family {family} in\n{metrics}"))
            .iter()
            .filter(|s| s[0] == name && s[1]["app"] == "test" && labels.iter().all(|(k, v)| s[1][*k] == *v))
            .map(|s| s[2].as_f64().unwrap())
            .collect();
        assert_eq!(found.len(), 1, "{name} {labels:?} in\n{metrics}");
        found[0]
    };
    assert_eq!(families["strata_instances"]["type"], "gauge");
    let ready = one(
        "strata_instances",
        "strata_instances",
        &[("service", "lazy"), ("state", "ready")],
    );
    assert_eq!(ready, 1.0, "{metrics}");
    let backoff = one(
        "strata_instances",
        "strata_instances",
        &[("service", "lazy"), ("state", "backoff")],
    );
    assert_eq!(backoff, 0.0);
    let restarts = ("strata_instance_restarts", "strata_instance_restarts_total");
    assert_eq!(one(restarts.0, restarts.1, &[("service", "lazy")]), 0.0);
    let starts = histogram(
        "strata_instance_start_duration_seconds",
        samples("strata_instance_start_duration_seconds"),
    );
    assert_eq!(starts, 1.0, "the one cold start: {metrics}");
    let jobs = [("queue", "jobs")];
    assert_eq!(
        one("strata_queue_published", "strata_queue_published_total", &jobs),
        3.0
    );
    assert_eq!(one("strata_queue_messages", "strata_queue_messages", &jobs), 3.0);
    let group = [("queue", "jobs"), ("group", "g")];
    assert_eq!(
        one("strata_queue_group_backlog", "strata_queue_group_backlog", &group),
        2.0
    );
    assert_eq!(
        one("strata_queue_group_acked", "strata_queue_group_acked_total", &group),
        1.0
    );
    assert_eq!(
        one(
            "strata_queue_group_lease_expiries",
            "strata_queue_group_lease_expiries_total",
            &group
        ),
        0.0
    );
    assert_eq!(
        one("strata_queue_group_leased", "strata_queue_group_leased", &group),
        1.0
    );
    let keys: f64 = families["strata_cache_keys"]["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s[1]["app"] == "test")
        .map(|s| s[2].as_f64().unwrap())
        .sum();
    assert_eq!(keys, 1.0, "{metrics}");
    // The Redis port's own figures.
    assert_eq!(families["strata_redis_clients"]["type"], "gauge");
    assert_eq!(
        one("strata_redis_clients", "strata_redis_clients", &[]),
        1.0,
        "{metrics}"
    );
    let redis_counter = |name: &str| one(name, &format!("{name}_total"), &[]);
    assert_eq!(redis_counter("strata_redis_connections"), 1.0, "{metrics}");
    assert_eq!(redis_counter("strata_redis_commands"), 1.0, "{metrics}");
    assert_eq!(redis_counter("strata_redis_refused_connections"), 0.0, "{metrics}");
    let closed = (
        "strata_redis_closed_connections",
        "strata_redis_closed_connections_total",
    );
    assert_eq!(one(closed.0, closed.1, &[("reason", "idle")]), 0.0, "{metrics}");
    assert_eq!(families[closed.0]["samples"].as_array().unwrap().len(), 5, "{metrics}");
    let op = |op: &str| {
        one(
            "strata_store_operations",
            "strata_store_operations_total",
            &[("op", op)],
        )
    };
    assert_eq!((op("put"), op("get"), op("delete")), (2.0, 1.0, 0.0), "{metrics}");
    let store_commits = labelled("strata_store_commit_duration_seconds", "app", "test");
    let commits = histogram("strata_store_commit_duration_seconds", store_commits);
    assert!(
        (1.0..=2.0).contains(&commits),
        "two puts, one or two group commits: {metrics}"
    );
}

/// Every family of a Prometheus text exposition as `{name: {"type", "samples": [[name,
/// labels, value]]}}`, parsed by the `prometheus_client` package (which fails on text
/// that breaks the format).
fn parse_prometheus(text: &str) -> serde_json::Value {
    use std::io::Write;
    const PARSE: &str = "import json, sys\nfrom prometheus_client.parser import text_string_to_metric_families\nout = {f.name: {'type': f.type, 'samples': [[s.name, s.labels, s.value] for s in f.samples]} for f in text_string_to_metric_families(sys.stdin.read())}\nprint(json.dumps(out))";
    let mut child = std::process::Command::new("python3")
        .args(["-c", PARSE])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run python3");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client could not parse the metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the parser's JSON")
}

/// A service at zero whose instance cannot start (its program exits at once; another's
/// setup step fails): a held request is answered 503 as the start fails, saying so,
/// not held to its 30 s deadline for a 504; after a failed setup none is held at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_held_for_an_instance_that_cannot_start_is_answered_at_once() {
    let app = App::new();
    let manifest = app.manifest(
        json!({
            "crashing": {
                "run": ["python3", "-c", "import sys; sys.exit('cannot start: missing DB_URL')"],
                "routes": ["/crashing"],
                "instances": { "min": 0, "max": 1 },
            },
            "unset": {
                "setup": ["sh", "-c", "echo no network >&2; exit 1"],
                "run": ["python3", "-c", "pass"],
                "routes": ["/unset"],
                "instances": { "min": 0, "max": 1 },
            },
        }),
        serde_json::Value::Null,
    );
    let node = app.start(app.config(manifest)).await;
    for (path, why) in [
        (
            "/crashing/a",
            "its instance crashing-1 failed to start; strata ps says why",
        ),
        ("/unset/a", "its setup step failed"),
        ("/unset/b", "its setup step failed"),
    ] {
        let started = Instant::now();
        let reply = get(node.gateway_addr, path).await;
        let took = started.elapsed();
        eprintln!("{path}: {} after {took:?}: {}", reply.status, reply.text());
        assert_eq!(reply.status, 503, "{path}: {}", reply.text());
        assert!(reply.text().contains(why), "{path}: {}", reply.text());
        assert!(
            took < Duration::from_secs(10),
            "{path} answered at once, not at its deadline: {took:?}"
        );
    }
    // Asked again and again while it keeps failing (its restart backoff doubling from
    // 0.1 s, 3.2 s by the sixth failure): each is answered as the launch under way fails,
    // or at once while the instance waits out its backoff, never held through it.
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut asked = 0;
    while started.elapsed() < Duration::from_secs(9) {
        let sent = Instant::now();
        let reply = get(node.gateway_addr, "/crashing/again").await;
        let took = sent.elapsed();
        asked += 1;
        assert_eq!(reply.status, 503, "{}", reply.text());
        assert!(reply.text().contains("failed to start"), "{}", reply.text());
        // Told when to come back: the next launch, while it waits out its backoff.
        let retry: u64 = reply.headers["retry-after"].to_str().unwrap().parse().unwrap();
        if let Some(next) = reply.text().split("next launch in ").nth(1) {
            let s: f64 = next.split(' ').next().unwrap().parse().unwrap();
            assert!(
                s <= 30.0 && (retry as f64 - s.max(1.0)).abs() <= 1.0,
                "{retry}: {}",
                reply.text()
            );
        } else {
            assert_eq!(retry, 1, "{}", reply.text());
        }
        slowest = slowest.max(took);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ps = get(node.api_addr, "/v1/ps").await.json();
    let restarts = ps["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "crashing"))
        .map(|s| s["instances"][0]["restarts"].clone());
    eprintln!("{asked} requests while it failed, the slowest answered in {slowest:?}; restarts {restarts:?}");
    assert!(
        slowest < Duration::from_millis(2500),
        "a request during the restart backoff is answered at once, not held through it: {slowest:?}"
    );
    stop(node).await;
}
