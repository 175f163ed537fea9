//! The dashboard (`/ui`, docs/dashboard.md) in a real browser: `strata up` runs the
//! example shop and prints the dashboard's address; Debian's Chromium, headless and
//! driven by Playwright for Python (`fixtures/dashboard.py`), loads it and sees every
//! service and instance (and, once it took the token out of its address, again after a
//! reload), a request chart move while load runs through the gateway, an
//! instance's row change after the test SIGKILLs it (and its exit on the timeline), an
//! instance's log followed; then saves a screenshot that it decodes and finds not blank.
//! The page itself needs no token, its data does.
//!
//! And a cluster node's dashboard: three `strata node`s over a real NATS cluster, the
//! address a node that does not hold the scheduler's lease prints for the deployed app
//! loaded in Chromium (`fixtures/dashboard_cluster.py`), which sees every node live, the
//! holder named as the scheduler, the spread service's instances on every node, then the
//! holder, killed with SIGKILL, turn dead, another live node named as the scheduler, and
//! the dead node's share ready again on the other two.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::cluster::{start_node, ClusterNode};
use common::example::example;
use common::*;
use serde_json::{json, Value};
use strata_testkit::nats::{nats_server, NatsCluster};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/dashboard.py");
const CLUSTER_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/dashboard_cluster.py");
/// Each test runs Chromium, the cluster's three nodes and three NATS servers too: one
/// test at a time on a small machine.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const CHROMIUM: &str = "/usr/bin/chromium";
/// The shop's setup steps install Flask and the client package with pip.
const SETUP_TIMEOUT: Duration = Duration::from_secs(240);
/// Everything the browser script does.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);
/// The instance the test kills.
const VICTIM: &str = "images-1";

fn tools() -> Result<(), String> {
    if !Path::new(CHROMIUM).is_file() {
        return Err(format!("Debian's Chromium at {CHROMIUM} (apt-get install chromium)"));
    }
    strata_testkit::python_module("playwright", "python3 -m pip install playwright")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_shop_live_in_a_browser() {
    if !strata_testkit::needs("the_dashboard_shows_the_shop_live_in_a_browser", tools()) {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let (_dir, app, _manifest) = example("shop");
    let mut up = Up::spawn(&app, &[]);
    let node = up.node_file().await;
    let api = addr_of(node["api"].as_str().expect("the API's address"));
    let gateway = node["gateway"].as_str().expect("the gateway's address").to_string();
    let url = wait_for("strata up prints the dashboard's address", SETUP_TIMEOUT, || {
        up.output()
            .lines()
            .find_map(|l| l.strip_prefix("strata: dashboard "))
            .map(str::to_string)
    })
    .await;
    let token = token_of(api).expect("the node's control token");
    assert_eq!(url, format!("http://{api}/ui#token={token}"), "{}", up.output());

    // The page and its files answer without a token; the stream of its data does not.
    let host = format!("Host: {api}\r\nConnection: close\r\n\r\n");
    for path in ["/ui", "/ui/dashboard.js", "/ui/dashboard.css"] {
        let (reply, _) = raw(api, format!("GET {path} HTTP/1.1\r\n{host}").as_bytes()).await;
        assert_eq!(status_of(&reply), Some(200), "{path} without a token: {reply}");
    }
    let (reply, _) = raw(api, format!("GET /v1/stream HTTP/1.1\r\n{host}").as_bytes()).await;
    assert_eq!(status_of(&reply), Some(401), "the stream without a token: {reply}");

    // Every instance ready (the app is up with one ready per service).
    let ps = wait_for_async("every instance of the shop ready", SETUP_TIMEOUT, || async {
        let ps = get(api, "/v1/ps").await.json();
        let services = ps["services"].as_array()?;
        let all_ready = services.iter().all(|s| {
            s["ready"].as_u64() >= s["min"].as_u64()
                && s["instances"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .all(|i| i["state"] == "ready")
        });
        all_ready.then_some(ps)
    })
    .await;
    let services: Vec<&str> = ps["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    let instances: Vec<&str> = ps["services"]
        .as_array()
        .expect("services")
        .iter()
        .flat_map(|s| s["instances"].as_array().into_iter().flatten())
        .filter(|i| i["state"] == "ready")
        .filter_map(|i| i["id"].as_str())
        .collect();
    assert!(
        services.len() == 6 && instances.contains(&VICTIM) && instances.contains(&"frontend-1"),
        "the shop's services and instances: {ps}"
    );
    let expected = json!({ "services": services, "instances": instances, "kill": VICTIM });
    let screenshot = app.join("dashboard.png");

    let mut browser = tokio::process::Command::new("python3")
        .arg(SCRIPT)
        .arg(&url)
        .arg(&gateway)
        .arg(expected.to_string())
        .arg(&screenshot)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run python3 with the dashboard script");
    let mut to_script = browser.stdin.take().expect("the script's stdin");
    let mut lines = BufReader::new(browser.stdout.take().expect("the script's stdout")).lines();
    let mut said = Vec::new();
    let talk = async {
        while let Some(line) = lines.next_line().await.expect("read the script's output") {
            said.push(line.clone());
            let Some(rest) = line.strip_prefix("kill ") else {
                continue;
            };
            // The pid the page shows is the one ps has; the test kills it.
            let pid = pid_of(&get(api, "/v1/ps").await.json(), VICTIM);
            assert_eq!(rest, format!("{VICTIM} {pid}"), "the page shows the instance's pid");
            signal(pid, 9);
            to_script.write_all(b"killed\n").await.expect("tell the script");
        }
    };
    let finished = tokio::time::timeout(SCRIPT_TIMEOUT, talk).await;
    let out = browser.wait_with_output().await.expect("the script's end");
    let report = format!(
        "script said:\n{}\n{}\n\nstrata up:\n{}",
        said.join("\n"),
        String::from_utf8_lossy(&out.stderr),
        up.output()
    );
    assert!(
        finished.is_ok(),
        "the browser script did not finish in {SCRIPT_TIMEOUT:?}: {report}"
    );
    assert!(
        out.status.success() && said.last().map(String::as_str) == Some("ok"),
        "the browser script failed ({}): {report}",
        out.status
    );

    // The screenshot the script found not blank (it decoded its pixels): kept for people.
    let png = std::fs::read(&screenshot).expect("the screenshot");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
    let kept = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::copy(&screenshot, &kept);
    eprintln!("{}\nscreenshot: {}", said.join("\n"), kept.display());

    signal(up.pid, 15);
    assert!(up.wait_exit(Duration::from_secs(30)).await.success(), "{}", up.output());
}

fn pid_of(ps: &Value, instance: &str) -> i32 {
    ps["services"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["instances"].as_array().into_iter().flatten())
        .find(|i| i["id"] == instance)
        .and_then(|i| i["pid"].as_i64())
        .unwrap_or_else(|| panic!("no pid of {instance} in {ps}")) as i32
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_nodes_dashboard_shows_every_node_what_runs_where_and_a_node_dying() {
    let test = "a_cluster_nodes_dashboard_shows_every_node_what_runs_where_and_a_node_dying";
    if !strata_testkit::needs(test, tools().and_then(|()| nats_server())) {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsCluster::start(dir.path(), 3);
    let urls = nats.urls();
    let manifest = write_cluster_app(dir.path());
    let mut nodes: BTreeMap<&str, ClusterNode> = [("a", "A"), ("b", "B"), ("c", "C")]
        .into_iter()
        .map(|(n, power)| (n, start_node(dir.path(), &urls, n, power)))
        .collect();
    let deploy = std::process::Command::new(STRATA)
        .args(["deploy", manifest.to_str().unwrap(), "--nats", &urls])
        .output()
        .expect("run strata deploy");
    assert!(
        deploy.status.success(),
        "deploy: {}",
        String::from_utf8_lossy(&deploy.stderr)
    );

    // Every instance ready somewhere, as the nodes' heartbeats say.
    let deadline = Instant::now() + SETUP_TIMEOUT;
    loop {
        let v = nodes_json(&urls);
        let ready: u64 = v["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["ready"].as_u64())
            .sum();
        if ready == 5 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "5 instances not ready: {v:#}{}",
            node_logs(dir.path())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The page is a node's that does not hold the scheduler's lease; the test kills the
    // holder, so that the page must name another.
    let holder = scheduler_of(&nodes_json(&urls)).expect("a node holds the scheduler's lease");
    let viewer = ["a", "b", "c"]
        .into_iter()
        .find(|n| *n != holder)
        .expect("another node");

    // `strata node` prints where the app's dashboard is, with the token of the node API
    // it runs the app under (the version's state dir holds the same token).
    let printed = format!("strata node {viewer}: shop (version ");
    let url = wait_for("the node prints the app's dashboard", SETUP_TIMEOUT, || {
        let out = std::fs::read_to_string(dir.path().join(format!("node-{viewer}.out"))).unwrap_or_default();
        let line = out.lines().rev().find(|l| l.starts_with(&printed))?;
        line.split_once("  dashboard ").map(|(_, url)| url.to_string())
    })
    .await;
    let token = url
        .split_once("#token=")
        .map(|(_, t)| t.to_string())
        .expect("a token in the address");
    let versions =
        std::fs::read_dir(dir.path().join(format!("node-{viewer}/apps/shop"))).expect("the app's state dirs");
    let written: Vec<String> = versions
        .flatten()
        .filter_map(|v| std::fs::read_to_string(v.path().join("control.token")).ok())
        .map(|t| t.trim().to_string())
        .collect();
    assert_eq!(written, [token], "{url}");

    let expected = json!({
        "me": viewer,
        "nodes": ["a", "b", "c"],
        "spread": "web",
        "services": { "web": 3, "api": 2 },
        "scheduler": holder,
        "kill": holder,
    });
    let screenshot = dir.path().join("dashboard-cluster.png");
    let mut browser = tokio::process::Command::new("python3")
        .arg(CLUSTER_SCRIPT)
        .arg(&url)
        .arg(expected.to_string())
        .arg(&screenshot)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run python3 with the cluster dashboard script");
    let mut to_script = browser.stdin.take().expect("the script's stdin");
    let mut lines = BufReader::new(browser.stdout.take().expect("the script's stdout")).lines();
    let mut said = Vec::new();
    let talk = async {
        while let Some(line) = lines.next_line().await.expect("read the script's output") {
            said.push(line.clone());
            if let Some(node) = line.strip_prefix("kill ") {
                nodes.get_mut(node).expect("a node of the test").kill9();
                to_script.write_all(b"killed\n").await.expect("tell the script");
            }
        }
    };
    let finished = tokio::time::timeout(SCRIPT_TIMEOUT, talk).await;
    let out = browser.wait_with_output().await.expect("the script's end");
    let report = format!(
        "script said:\n{}\n{}\n{}",
        said.join("\n"),
        String::from_utf8_lossy(&out.stderr),
        node_logs(dir.path())
    );
    assert!(
        finished.is_ok(),
        "the browser script did not finish in {SCRIPT_TIMEOUT:?}: {report}"
    );
    assert!(
        out.status.success() && said.last().map(String::as_str) == Some("ok"),
        "the browser script failed ({}): {report}",
        out.status
    );
    let png = std::fs::read(&screenshot).expect("the screenshot");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
    let kept = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-cluster.png");
    let _ = std::fs::copy(&screenshot, &kept);
    eprintln!("{}\nscreenshot: {}", said.join("\n"), kept.display());
    drop(nodes);
    drop(nats);
}

/// The app the cluster test deploys: `web`, three instances spread over the power
/// label (one per node), and `api`, two; both the test member (copied in, so that it
/// travels in the bundle).
fn write_cluster_app(dir: &Path) -> std::path::PathBuf {
    let app = dir.join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::copy(MEMBER, app.join("member.py")).unwrap();
    let member = |instances: u32, path: &str| {
        json!({
            "run": ["python3", "member.py"],
            "env": { "RECORD": dir.join("record.jsonl").display().to_string() },
            "health": { "path": "/healthz", "interval_ms": 200, "timeout_ms": 1000 },
            "stop_grace_ms": 2000,
            "instances": { "min": instances, "max": instances },
            "routes": [{ "path": path }],
        })
    };
    let mut web = member(3, "/");
    web["placement"] = json!({ "spread": "power" });
    let manifest = json!({
        "strata": 1,
        "app": "shop",
        "services": { "web": web, "api": member(2, "/api") },
    });
    let path = app.join("strata.json");
    std::fs::write(&path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
    path
}

/// The node `strata nodes --json` names as holding the scheduler's lease.
fn scheduler_of(nodes: &Value) -> Option<String> {
    nodes["scheduler"].as_str().map(String::from)
}

fn nodes_json(urls: &str) -> Value {
    let out = std::process::Command::new(STRATA)
        .args(["nodes", "--json", "--nats", urls])
        .output()
        .expect("run strata nodes");
    assert!(
        out.status.success(),
        "strata nodes: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("nodes --json is JSON")
}

/// The last lines of every node's output, for a failure's message.
fn node_logs(dir: &Path) -> String {
    let mut logs = String::new();
    for name in ["a", "b", "c"] {
        let text = std::fs::read_to_string(dir.join(format!("node-{name}.out"))).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        logs.push_str(&format!("\n--- node {name}\n{}", tail.join("\n")));
    }
    logs
}
