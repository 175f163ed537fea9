//! A route's fallback (`routes[].fallback`): cacheable GET responses stored and fresh
//! ones served without calling a member, revalidated with the member's ETag, served
//! stale (`X-Strata-Stale: true`) within the bound when no member answers and never
//! after it (nor at all when the response says must-revalidate; within its own
//! stale-if-error when it has one), HEAD answered from a stored GET, and the fixed
//! answer for what has nothing stored.

mod common;

use std::time::Duration;

use common::*;
use http::{Method, StatusCode};
use serde_json::{json, Value};

const STALE_S: u64 = 2;

/// `web` at /app with a fallback; `never` makes its member unhealthy when it exists.
async fn node_with_fallback(app: &App) -> (strata_node::Node, std::path::PathBuf) {
    let never = app.path().join("unhealthy");
    let services = json!({
        "web": app.member(json!({
            "routes": [{
                "path": "/app",
                "fallback": {
                    "stale_if_error_s": STALE_S,
                    "status": 200,
                    "body": "offline copy",
                    "content_type": "text/plain",
                },
            }],
            "env": { "UNHEALTHY": never.display().to_string() },
            "health": { "path": "/healthz", "interval_ms": 100, "timeout_ms": 1000, "failure_threshold": 1 },
        })),
    });
    let node = app.start(app.config(app.manifest(services, Value::Null))).await;
    wait_ready(&node, "web", 1).await;
    (node, never)
}

/// Requests for `path` the member saw.
fn seen(app: &App, path: &str) -> usize {
    app.requests().iter().filter(|r| r["path"] == path).count()
}

async fn get_with(node: &strata_node::Node, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = request(Method::GET, node.gateway_addr, path, "");
    for (name, value) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    send(node.gateway_addr, req).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_responses_are_served_without_a_member_and_stale_ones_revalidated() {
    let app = App::new();
    let (node, _) = node_with_fallback(&app).await;
    let gw = node.gateway_addr;

    // max-age=60: the second answer comes from the store, with Age, the member not called.
    let fresh = "/app/cached?cc=max-age%3D60";
    let first = get(gw, fresh).await;
    assert_eq!(first.status, StatusCode::OK);
    let second = get(gw, fresh).await;
    assert_eq!(second.header("x-strata-cache"), Some("hit"));
    assert!(second.header("age").is_some());
    assert_eq!(second.body, first.body);
    assert_eq!(seen(&app, fresh), 1);
    // A HEAD is answered from the stored GET: its head, no body.
    let head = send(gw, request(Method::HEAD, gw, fresh, "")).await.unwrap();
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("x-strata-cache"), Some("hit"));
    assert_eq!(
        head.header("content-length"),
        Some(first.body.len().to_string().as_str())
    );
    assert!(head.body.is_empty());
    assert_eq!(seen(&app, fresh), 1);
    // The client's no-cache goes to the member.
    let asked = get_with(&node, fresh, &[("cache-control", "no-cache")]).await;
    assert_eq!(asked.header("x-strata-cache"), None);
    assert_eq!(seen(&app, fresh), 2);
    // A write to it that the member answers 200 takes the stored answer out (RFC 9111
    // 4.4): the next read goes to the member, and is stored again.
    let post = send(gw, request(Method::POST, gw, fresh, "")).await.unwrap();
    assert_eq!(post.status, StatusCode::OK);
    assert_ne!(get(gw, fresh).await.header("x-strata-cache"), Some("hit"));
    assert_eq!(seen(&app, fresh), 4);
    assert_eq!(get(gw, fresh).await.header("x-strata-cache"), Some("hit"));
    assert_eq!(seen(&app, fresh), 4);

    // max-age=0 with an ETag: revalidated, the member answers 304, the stored body is served.
    let tagged = "/app/cached?cc=max-age%3D0&etag=%22v1%22";
    let first = get(gw, tagged).await;
    let again = get(gw, tagged).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.header("x-strata-cache"), Some("revalidated"));
    assert_eq!(again.body, first.body, "the stored body, not a new one");
    assert_eq!(seen(&app, tagged), 2);

    // no-store, and a Vary the next request does not match: never from the store.
    let private = "/app/cached?cc=no-store";
    get(gw, private).await;
    assert_eq!(get(gw, private).await.header("x-strata-cache"), None);
    assert_eq!(seen(&app, private), 2);
    let varied = "/app/cached?cc=max-age%3D60&vary=Accept-Language";
    get_with(&node, varied, &[("accept-language", "fr")]).await;
    let fr = get_with(&node, varied, &[("accept-language", "fr")]).await;
    assert_eq!(fr.header("x-strata-cache"), Some("hit"));
    let en = get_with(&node, varied, &[("accept-language", "en")]).await;
    assert_eq!(en.header("x-strata-cache"), None);
    assert_eq!(seen(&app, varied), 2);

    let ps = get(node.api_addr, "/v1/ps").await.json();
    let cache = &ps["route_caches"][0];
    assert_eq!(
        (cache["service"].as_str(), cache["route"].as_str()),
        (Some("web"), Some("/app"))
    );
    assert!(cache["hits"].as_u64().unwrap() >= 2, "{cache}");
    assert!(cache["revalidated"].as_u64().unwrap() >= 1, "{cache}");
    let metrics = get(node.api_addr, "/v1/metrics").await.text();
    assert!(
        metrics.contains("strata_route_cache_hits_total{app=\"test\",service=\"web\",route=\"/app\"}"),
        "{metrics}"
    );
    stop(node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_member_stored_responses_are_served_stale_within_the_bound_then_the_fixed_answer() {
    let app = App::new();
    let (node, never) = node_with_fallback(&app).await;
    let gw = node.gateway_addr;
    let stored = "/app/cached?cc=max-age%3D0";
    let first = get(gw, stored).await;
    assert_eq!(first.status, StatusCode::OK);
    // must-revalidate forbids serving it stale; its own stale-if-error=1 bounds it to 1 s.
    let must = "/app/cached?cc=max-age%3D0%2C%20must-revalidate";
    assert_eq!(get(gw, must).await.status, StatusCode::OK);
    let short = "/app/cached?cc=max-age%3D0%2C%20stale-if-error%3D1";
    assert_eq!(get(gw, short).await.status, StatusCode::OK);

    // The only member goes unhealthy: the pool is empty.
    std::fs::write(&never, "").unwrap();
    wait_until("the member to leave the pool", Duration::from_secs(10), || {
        ready_instances(&node, "web").is_empty()
    })
    .await;
    let stale = get(gw, stored).await;
    assert_eq!(stale.status, StatusCode::OK, "{}", stale.text());
    assert_eq!(stale.header("x-strata-stale"), Some("true"));
    assert_eq!(stale.body, first.body);
    // The stored answer is this request's: its own id, and no instance answered it.
    assert!(first.header("x-strata-instance").is_some());
    assert_eq!(stale.header("x-strata-instance"), None);
    let ids = (first.header("x-request-id"), stale.header("x-request-id"));
    assert!(ids.1.is_some() && ids.0 != ids.1, "{ids:?}");
    let head = send(gw, request(Method::HEAD, gw, stored, "")).await.unwrap();
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("x-strata-stale"), Some("true"));
    assert!(head.body.is_empty());
    let forbidden = get(gw, must).await;
    assert_eq!(forbidden.header("x-strata-stale"), None);
    assert_eq!(forbidden.header("x-strata-fallback"), Some("true"));
    // Nothing stored for this one: the fixed answer.
    let other = get(gw, "/app/never-stored").await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(other.header("x-strata-fallback"), Some("true"));
    assert_eq!(other.text(), "offline copy");
    assert!(other.header("x-request-id").is_some());
    // A WebSocket handshake no member can take gets the fixed answer too.
    let handshake = get_with(
        &node,
        "/app/socket",
        &[
            ("connection", "upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
    )
    .await;
    assert_eq!(handshake.status, StatusCode::OK, "{}", handshake.text());
    assert_eq!(handshake.header("x-strata-fallback"), Some("true"));
    assert_eq!(handshake.text(), "offline copy");
    assert!(handshake.header("x-request-id").is_some());

    // Past its own 1 s, the short one is not served; past the route's bound, none is.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(get(gw, short).await.header("x-strata-fallback"), Some("true"));
    tokio::time::sleep(Duration::from_secs(STALE_S) + Duration::from_millis(300)).await;
    let late = get(gw, stored).await;
    assert_eq!(late.header("x-strata-stale"), None);
    assert_eq!(late.header("x-strata-fallback"), Some("true"));

    // The member back: answers come from it again.
    std::fs::remove_file(&never).unwrap();
    wait_ready(&node, "web", 1).await;
    let back = get(gw, "/app/cached").await;
    assert_eq!((back.status, back.header("x-strata-fallback")), (StatusCode::OK, None));
    let ps = get(node.api_addr, "/v1/ps").await.json();
    let cache = &ps["route_caches"][0];
    assert!(
        cache["stale"].as_u64().unwrap() >= 1 && cache["fixed"].as_u64().unwrap() >= 2,
        "{cache}"
    );
    stop(node).await;
}
