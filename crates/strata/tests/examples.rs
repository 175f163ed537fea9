//! The examples in the repo run as written: the issue's hello manifest (an unmodified
//! Flask app installed by its setup step) and the shop, whose frontend composes the
//! page from three other pools through the platform and places orders through a queue
//! that its worker pool consumes by push; carts and purchase histories live in the
//! store, and histories are read through a read-through cache. The shop's Python
//! services use the client package `clients/python`, which their setup steps install
//! with pip from its place in the repo (`../../../clients/python`), so an example is run
//! from a copy of the repo's layout: `examples/NAME` beside `clients/python`
//! (`common::example`).

mod common;

use std::path::Path;
use std::time::Duration;

use common::example::example;
use common::*;

/// Setup steps install Flask from PyPI, and the client package (building it fetches its
/// build backend): allow for a slow first install.
const SETUP_TIMEOUT: Duration = Duration::from_secs(240);

async fn start_example(dir: &Path, manifest: strata_manifest::Manifest) -> strata_node::Node {
    let mut config = strata_node::NodeConfig::new(manifest, dir.to_path_buf());
    config.gateway_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    config.cache_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    let node = strata_node::Node::start(config, tokio_util::sync::CancellationToken::new())
        .await
        .expect("start the example");
    trust(&node);
    if tokio::time::timeout(SETUP_TIMEOUT, node.app.ready()).await.is_err() {
        let events: Vec<String> = node
            .app
            .recent_events()
            .iter()
            .map(|e| format!("{} {:?} {}", e.service, e.kind, e.message))
            .collect();
        panic!("example not ready in time; events:\n{}", events.join("\n"));
    }
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_manifest_runs_as_written() {
    let (_dir, app, manifest) = example("hello");
    assert_eq!(manifest.gateway.listen, "127.0.0.1:8080");
    let node = start_example(&app, manifest).await;
    let gw = node.gateway_addr;

    let api = get(gw, "/api/hello").await;
    assert_eq!(api.status, 200, "{}", api.text());
    assert_eq!(api.json()["instance"], "api-1");

    let page = get(gw, "/").await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("<html"), "web serves index.html: {}", page.text());
    assert!(ready_instances(&node, "web").len() == 2, "web runs its min of 2");

    // The setup step left its stamp: a second start skips it.
    let events = node.app.recent_events();
    assert!(events
        .iter()
        .any(|e| e.service == "api" && e.kind == strata_appservice::EventKind::SetupFinished));
    stop(node).await;
    let manifest = strata_manifest::load(&app.join("strata.json")).unwrap();
    let node = start_example(&app, manifest).await;
    let events = node.app.recent_events();
    assert!(
        events
            .iter()
            .any(|e| e.service == "api" && e.kind == strata_appservice::EventKind::SetupSkipped),
        "unchanged setup inputs skip the step"
    );
    stop(node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shop_composes_the_page_from_its_pools() {
    let (_dir, app, manifest) = example("shop");
    let node = start_example(&app, manifest).await;
    let gw = node.gateway_addr;

    // The services that talk to the platform got the client package from their setup
    // step (pip, from clients/python), not from a copy in the shop.
    for service in ["frontend", "history", "worker", "receipts"] {
        assert!(
            app.join(service).join(".deps/strata_client/py.typed").is_file(),
            "{service}'s setup step installed the strata_client package into {service}/.deps"
        );
    }
    assert!(
        !app.join("strata_client.py").exists(),
        "the shop carries no copy of the client"
    );

    let page = get(gw, "/?format=json").await;
    assert_eq!(page.status, 200, "{}", page.text());
    let summary = page.json();
    let text = summary.to_string();
    for part in ["recommendations-", "images-", "history-", "frontend-"] {
        assert!(
            text.contains(part),
            "the composed page names an instance of {part}: {text}"
        );
    }
    // The frontend passes the page's traceparent on: its three calls are spans of the
    // page's trace.
    let id = page.header("x-request-id").expect("a request id").to_string();
    let trace = get(node.api_addr, &format!("/v1/traces?id={id}")).await.json();
    let mut services: Vec<String> = trace[0]["spans"]
        .as_array()
        .unwrap_or_else(|| panic!("a trace for {id}: {trace}"))
        .iter()
        .map(|s| s["service"].as_str().unwrap_or("?").to_string())
        .collect();
    services.sort();
    services.dedup();
    for service in ["frontend", "history", "images", "recommendations"] {
        assert!(
            services.iter().any(|s| s == service),
            "{service} in the page's trace: {trace}"
        );
    }
    let html = get(gw, "/").await;
    assert_eq!(html.status, 200);
    assert!(html.text().contains("<html"), "{}", html.text());
    assert!(
        html.text().contains(r#"action="/buy""#),
        "the page offers to buy: {}",
        html.text()
    );

    // An order: the frontend publishes it to the `orders` queue and waits for the reply
    // of the worker that strata pushed it to.
    let order = post(
        gw,
        "/buy?format=json",
        "product=B0003&user=bob&qty=2&order_id=test-order-1",
    )
    .await;
    assert_eq!(order.status, 200, "the order is confirmed: {}", order.text());
    let order = order.json();
    assert_eq!(order["status"], "confirmed", "{order}");
    let confirmation = &order["confirmation"];
    assert_eq!(confirmation["order_id"], "test-order-1", "{order}");
    assert_eq!(confirmation["total"], "178.00", "2 x 89.00: {order}");
    assert!(
        confirmation["worker"]
            .as_str()
            .is_some_and(|w| w.starts_with("worker-")),
        "a worker instance fulfilled it: {order}"
    );
    assert_eq!(
        confirmation["offset"], order["offset"],
        "the worker saw the published message: {order}"
    );

    // The worker appended the order to bob's purchase history in the store (namespace
    // `history`) before it replied, and the history service reads it through the
    // read-through cache `history`: the write dropped any cached copy, so it shows at once.
    let api = node.api_addr;
    let loads = |stats: &Reply| stats.json()["read_through"]["history"]["loads"].as_u64().unwrap();
    let before = get(api, "/v1/cache").await;
    assert_eq!(before.status, 200, "{}", before.text());
    let history = get(gw, "/history?user=bob").await;
    assert_eq!(history.status, 200, "{}", history.text());
    let history = history.json();
    assert!(
        history["instance"].as_str().is_some_and(|i| i.starts_with("history-")),
        "{history}"
    );
    assert_eq!(history["orders"][0]["order_id"], "test-order-1", "{history}");
    assert_eq!(history["orders"][0]["total"], "178.00", "{history}");
    assert_eq!(history["items"][0]["id"], "B0003", "{history}");
    let after = get(api, "/v1/cache").await;
    assert!(
        loads(&after) > loads(&before),
        "the history was read through the cache, which loaded it from the store: {} then {}",
        before.text(),
        after.text()
    );
    let stored = get(api, "/v1/kv/history/bob").await;
    assert_eq!(stored.status, 200, "{}", stored.text());
    assert_eq!(stored.json()["orders"][0]["order_id"], "test-order-1");
    let again = get(gw, "/history?user=bob").await;
    assert_eq!(
        again.json()["orders"],
        history["orders"],
        "a second read, the same history"
    );
    // The `receipts` function, triggered by the store write of bob's history, started
    // from zero and wrote his receipt summary. A cold start of a Python function on a
    // machine busy with the other tests can take a while: up to 60 s, and past it the
    // node's events say what happened to the trigger (started, failed, not handled).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let receipt = loop {
        let r = get(api, "/v1/kv/receipts/bob").await;
        if r.status == 200 {
            break r.json();
        }
        if std::time::Instant::now() >= deadline {
            let events = get(api, "/v1/events").await;
            let receipts = get(api, "/v1/kv/receipts/bob").await;
            panic!(
                "no receipt for bob after 60 s (last answer {} {}); the node's events: {}",
                receipts.status,
                receipts.text(),
                events.text()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(receipt["orders"], 1, "{receipt}");
    assert_eq!(receipt["last_order_id"], "test-order-1", "{receipt}");
    assert_eq!(receipt["spent"], "178.00", "{receipt}");

    // A cart in the store (namespace `carts`): two adds, then a checkout orders its lines
    // as one order, empties the cart, and the order shows in carol's history.
    let added = post(gw, "/cart?format=json", "product=B0001&user=carol&qty=2").await;
    assert_eq!(added.status, 200, "{}", added.text());
    let added = post(gw, "/cart?format=json", "product=B0008&user=carol&qty=3").await;
    assert_eq!(added.status, 200, "{}", added.text());
    assert_eq!(
        added.json()["items"].as_array().map(Vec::len),
        Some(2),
        "{}",
        added.text()
    );
    let cart = get(gw, "/cart?user=carol").await;
    assert_eq!(cart.status, 200, "{}", cart.text());
    assert_eq!(cart.json()["total"], "40.95", "2 x 12.99 + 3 x 4.99: {}", cart.text());
    let stored = get(api, "/v1/kv/carts/carol").await;
    assert_eq!(stored.status, 200, "the cart is in the store: {}", stored.text());
    let checkout = post(gw, "/buy?format=json", "cart=1&user=carol&order_id=test-order-2").await;
    assert_eq!(checkout.status, 200, "the checkout is confirmed: {}", checkout.text());
    let checkout = checkout.json();
    assert_eq!(checkout["confirmation"]["total"], "40.95", "{checkout}");
    assert_eq!(checkout["cart_left"], serde_json::json!([]), "{checkout}");
    let cart = get(gw, "/cart?user=carol").await;
    assert_eq!(cart.json()["items"], serde_json::json!([]), "{}", cart.text());
    let history = get(gw, "/history?user=carol").await;
    assert_eq!(history.status, 200, "{}", history.text());
    let history = history.json();
    assert_eq!(history["orders"][0]["order_id"], "test-order-2", "{history}");
    assert_eq!(
        history["orders"][0]["items"].as_array().map(Vec::len),
        Some(2),
        "{history}"
    );
    let page = get(gw, "/?product=B0003&user=carol").await;
    assert!(
        page.text().contains("Bought before, carol") && page.text().contains("bought just now"),
        "the page shows what carol bought: {}",
        page.text()
    );
    assert!(page.text().contains("Your cart is empty"), "{}", page.text());

    // The workers' 2xx answers deleted the messages for their group.
    wait_for_async(
        "the fulfil group to have nothing left",
        Duration::from_secs(10),
        || async move {
            let stats = get(api, "/v1/queues/orders").await;
            assert_eq!(stats.status, 200, "{}", stats.text());
            let stats = stats.json();
            let group = stats["groups"]
                .as_array()?
                .iter()
                .find(|g| g["name"] == "fulfil")?
                .clone();
            (group["backlog"] == 0).then_some(())
        },
    )
    .await;
    stop(node).await;
}
