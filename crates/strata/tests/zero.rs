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
    let metrics = get(node.api_addr, "/v1/metrics").await.text();
    assert!(
        metrics.contains("strata_cold_start_ms{app=\"test\",service=\"lazy\"}"),
        "{metrics}"
    );
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
