//! The examples in the repo run as written: the issue's hello manifest (an unmodified
//! Flask app installed by its setup step) and the shop, whose frontend composes the
//! page from three other pools through the platform and places orders through a queue
//! that its worker pool consumes by push.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

/// Setup steps install Flask from PyPI: allow for a slow first install.
const SETUP_TIMEOUT: Duration = Duration::from_secs(240);

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == ".strata" || name == ".deps" || name == "__pycache__" {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn example(name: &str) -> (tempfile::TempDir, strata_manifest::Manifest) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples").join(name);
    let dir = tempfile::Builder::new().prefix("strata-example-").tempdir().unwrap();
    copy_dir(&src, dir.path());
    let manifest = strata_manifest::load(&dir.path().join("strata.json"))
        .unwrap_or_else(|e| panic!("examples/{name}/strata.json: {e}"));
    (dir, manifest)
}

async fn start_example(dir: &Path, manifest: strata_manifest::Manifest) -> strata::Node {
    let mut config = strata::NodeConfig::new(manifest, dir.to_path_buf());
    config.gateway_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    config.cache_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    let node = strata::start(config, tokio_util::sync::CancellationToken::new())
        .await
        .expect("start the example");
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
    let (dir, manifest) = example("hello");
    assert_eq!(manifest.gateway.listen, "127.0.0.1:8080");
    let node = start_example(dir.path(), manifest).await;
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
    let (_, manifest) = (
        dir.path(),
        strata_manifest::load(&dir.path().join("strata.json")).unwrap(),
    );
    let node = start_example(dir.path(), manifest).await;
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
    let (dir, manifest) = example("shop");
    let node = start_example(dir.path(), manifest).await;
    let gw = node.gateway_addr;

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
    // The worker's 2xx answer deleted the message for its group.
    let api = node.api_addr;
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

#[test]
fn shop_ships_the_python_client_as_is() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let client = std::fs::read_to_string(root.join("clients/python/strata_client.py")).unwrap();
    let copy = std::fs::read_to_string(root.join("examples/shop/strata_client.py")).unwrap();
    assert!(
        client == copy,
        "examples/shop/strata_client.py is a copy of clients/python/strata_client.py: \
         cp clients/python/strata_client.py examples/shop/"
    );
}
