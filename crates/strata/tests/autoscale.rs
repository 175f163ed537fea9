//! The autoscaler with real processes: load scales a pool out at once and back in after
//! the down window, every decision recorded with its reason; at instances.max excess
//! load is shed with 503 and Retry-After; ps and the metrics show target, signal and
//! cold starts.

mod common;

use std::time::{Duration, Instant, SystemTime};

use common::*;
use serde_json::json;

/// Requests to `/hold?until=GATE` are answered once the gate file exists: load that lasts
/// exactly as long as the test needs it, however slow the machine.
struct Gate(std::path::PathBuf);

impl Gate {
    fn new(app: &App) -> Gate {
        Gate(app.path().join("release"))
    }

    fn path(&self) -> String {
        format!("/hold?until={}", self.0.display())
    }

    /// Lets every held request (and every later one) be answered.
    fn release(&self) {
        std::fs::write(&self.0, "").expect("create the gate file");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_scales_the_pool_out_at_once_and_back_in_after_the_down_window() {
    let app = App::new();
    let manifest = app.manifest(
        json!({ "web": app.member(json!({
            "routes": ["/"],
            "instances": { "min": 1, "max": 4 },
            "autoscale": { "concurrency": 2, "down_window_ms": 1500 },
            // Held requests are neither timed out nor reissued while the pool grows.
            "relay": { "timeout_ms": 120000, "attempt_timeout_ms": 120000 },
        })) }),
        serde_json::Value::Null,
    );
    let node = app.start(app.config(manifest)).await;
    wait_ready(&node, "web", 1).await;

    // 8 requests held at once: 4 instances needed, twice the current count or more, so
    // taken at once. They stay in flight until the 4 are ready, however long that takes.
    let gate = Gate::new(&app);
    let step = Instant::now();
    let gateway = node.gateway_addr;
    let load: Vec<_> = (0..8)
        .map(|_| {
            let path = gate.path();
            tokio::spawn(async move { get(gateway, &path).await })
        })
        .collect();
    wait_ready(&node, "web", 4).await;
    let took = step.elapsed();
    eprintln!("4 instances ready {took:?} after the step");
    let status = service(&node, "web");
    let scale = status.autoscale.expect("autoscaled");
    assert_eq!(scale.target, 4, "{scale:?}");
    assert_eq!(scale.signal, "concurrency");
    let decision = node
        .app
        .recent_events()
        .into_iter()
        .find(|e| e.service == "web" && e.message.starts_with("1 -> "))
        .expect("the decision is an event");
    assert!(
        decision
            .message
            .contains("request(s) in flight over 1 ready, target 2 each")
            && decision.message.contains("overload"),
        "{}",
        decision.message
    );
    // The load ends now: nothing is in flight after it.
    let load_ended = SystemTime::now();
    assert!(decision.at <= load_ended, "scaled out while the load ran");
    gate.release();
    for l in load {
        assert_eq!(l.await.unwrap().status, 200);
    }

    // Idle: back to min once nothing more was needed for the down window.
    wait_until("scaled back to 1", Duration::from_secs(60), || {
        let s = service(&node, "web");
        s.desired == 1 && s.ready == 1
    })
    .await;
    let down = node
        .app
        .recent_events()
        .into_iter()
        .find(|e| e.service == "web" && e.message.starts_with("4 -> "))
        .expect("the scale-in is an event");
    assert!(
        down.message.contains("no more needed throughout the last 1500 ms")
            || down.message.contains("instances.min is 1"),
        "{}",
        down.message
    );
    // Not before the down window had passed since the load ended (a lower bound only).
    let after_load = down.at.duration_since(load_ended).unwrap_or_default();
    eprintln!("scaled in {after_load:?} after the load ended");
    assert!(
        after_load >= Duration::from_millis(1500),
        "scaled in {after_load:?} after the load ended, within the 1500 ms down window"
    );

    // A count set by hand would be undone: refused, with the reason.
    let mut req = request(
        http::Method::POST,
        node.api_addr,
        "/v1/services/web/scale",
        r#"{"instances": 3}"#,
    );
    req.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    let manual = send(node.api_addr, req).await.expect("scale");
    assert_eq!(manual.status, 409, "{}", manual.text());
    assert!(manual.text().contains("autoscaled"), "{}", manual.text());

    // The metrics export the same figures.
    let metrics = get(node.api_addr, "/v1/metrics").await;
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    assert!(
        text.contains("strata_instances_target{app=\"test\",service=\"web\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("strata_autoscale_decisions_total{app=\"test\",service=\"web\"}"),
        "{text}"
    );
    stop(node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_max_excess_load_is_shed_with_retry_after() {
    let app = App::new();
    let manifest = app.manifest(
        json!({ "web": app.member(json!({
            "routes": ["/"],
            "instances": { "min": 1, "max": 1 },
            "autoscale": { "concurrency": 1, "max_inflight": 2 },
        })) }),
        serde_json::Value::Null,
    );
    let node = app.start(app.config(manifest)).await;
    wait_ready(&node, "web", 1).await;
    // The autoscaler turns shedding on once it sees the pool at max.
    wait_for("the autoscaler's first sample", Duration::from_secs(20), || {
        service(&node, "web").autoscale
    })
    .await;
    // Two requests held in flight (max_inflight) until the excess one has been answered.
    let gate = Gate::new(&app);
    let gateway = node.gateway_addr;
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let path = gate.path();
            tokio::spawn(async move { get(gateway, &path).await })
        })
        .collect();
    wait_until("two requests in flight", Duration::from_secs(20), || {
        ready_instances(&node, "web").iter().map(|i| i.inflight).sum::<usize>() == 2
    })
    .await;
    let shed = get(gateway, "/now").await;
    assert_eq!(shed.status, 503, "{}", shed.text());
    assert_eq!(shed.header("retry-after"), Some("1"));
    assert!(shed.text().contains("instances.max"), "{}", shed.text());
    assert!(
        slow.iter().all(|s| !s.is_finished()),
        "the excess request came while both were held"
    );
    gate.release();
    for s in slow {
        assert_eq!(s.await.unwrap().status, 200, "the requests within the limit are served");
    }
    assert_eq!(
        get(gateway, "/after").await.status,
        200,
        "served again once under the limit"
    );
    wait_until("the shed recorded", Duration::from_secs(20), || {
        service(&node, "web").autoscale.is_some_and(|a| a.shed == 1)
            && node
                .app
                .recent_events()
                .iter()
                .any(|e| e.service == "web" && e.message.contains("1 request(s) shed"))
    })
    .await;
    stop(node).await;
}
