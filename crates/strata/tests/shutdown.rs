//! No instance outlives its node, however the node stops: every process group of every
//! instance (the member, and a grandchild that ignores SIGTERM) is gone afterwards, and so
//! is the node's orphan guard.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const GONE_TIMEOUT: Duration = Duration::from_secs(15);

/// Two members that each leave a shell and a `sleep` in their process group.
fn services(app: &App) -> Value {
    json!({
        "web": app.member(json!({
            "instances": { "min": 2, "max": 2 },
            "routes": ["/"],
            "env": { "SPAWN_GRANDCHILD": "1" },
        })),
    })
}

/// Waits until every group holds its member, the shell and the sleep; returns the groups,
/// to be killed by the test if the node left them behind.
async fn full_groups(pgids: Vec<i32>) -> KillGroupsOnDrop {
    assert_eq!(pgids.len(), 2, "{pgids:?}");
    wait_until("member, shell and sleep in each group", READY_TIMEOUT, || {
        pgids.iter().all(|&g| group_alive(g).len() >= 3)
    })
    .await;
    for &g in &pgids {
        let comms: Vec<String> = group_alive(g).into_iter().map(|p| p.comm).collect();
        assert!(comms.iter().any(|c| c == "sleep"), "group {g}: {comms:?}");
    }
    KillGroupsOnDrop(pgids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_stop_leaves_no_process_behind() {
    let app = App::new();
    // The node runs in this process, so its guard is a child of this process: the one
    // that was not there before the node started.
    let before: Vec<i32> = orphan_guards(std::process::id() as i32).iter().map(|p| p.pid).collect();
    let node = app.start(app.config(app.manifest(services(&app), Value::Null))).await;
    let ready = wait_ready(&node, "web", 2).await;
    let mut groups = full_groups(ready.iter().map(|i| i.pid.unwrap() as i32).collect()).await;
    let guard: Vec<ProcStat> = orphan_guards(std::process::id() as i32)
        .into_iter()
        .filter(|p| !before.contains(&p.pid))
        .collect();
    assert_eq!(guard.len(), 1, "the node started one orphan guard: {guard:?}");
    // The guard leads a process group of its own: checked (and cleaned up) like the others.
    groups.0.push(guard[0].pid);
    stop(node).await;
    wait_groups_gone(&groups.0, GONE_TIMEOUT).await;
}

/// `strata up` in the app dir, its node ready; the instance groups and the orphan guard.
async fn up_and_ready(app: &App) -> (Up, KillGroupsOnDrop, i32) {
    app.write_manifest(services(app), Value::Null);
    let mut up = Up::spawn(app.path(), &[]);
    let node = up.node_file().await;
    let api = addr_of(node["api"].as_str().unwrap());
    let ps = up.wait_ready(api, 2).await;
    let groups = full_groups(pids_in_ps(&ps)).await;
    let guard = orphan_guards(up.pid);
    assert_eq!(guard.len(), 1, "one orphan guard: {guard:?}");
    (up, groups, guard[0].pid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_of_strata_up_leaves_no_process_behind() {
    stops_gracefully_on(libc::SIGINT).await;
}

/// The terminal closed (or the SSH session dropped): a hangup stops the app as Ctrl-C
/// does, draining and with SIGTERM, not by the orphan guard's SIGKILL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hangup_of_strata_up_stops_it_gracefully() {
    stops_gracefully_on(libc::SIGHUP).await;
}

async fn stops_gracefully_on(sig: i32) {
    let app = App::new();
    let (mut up, groups, guard) = up_and_ready(&app).await;
    signal(up.pid, sig);
    let status = up.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "strata up ended with {status}:\n{}", up.output());
    wait_groups_gone(&groups.0, GONE_TIMEOUT).await;
    assert!(!alive(guard), "the orphan guard ended with the node");
    assert!(!app.path().join(".strata/node.json").exists(), "node.json removed");
    assert!(up.output().contains("strata: stopped"), "{}", up.output());
}

/// A second Ctrl-C during a drain that takes its time (a request in flight for 60 s)
/// stops at once, and still leaves nothing behind; a second signal within a second of
/// the first (one keypress seen twice) does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ctrl_c_stops_at_once() {
    let app = App::new();
    let (mut up, groups, guard) = up_and_ready(&app).await;
    let gateway = addr_of(up.node_file().await["gateway"].as_str().unwrap());
    let in_flight = tokio::spawn(async move {
        send(
            gateway,
            request(http::Method::GET, gateway, "/sleep?ms=60000", bytes::Bytes::new()),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(up.pid, libc::SIGINT);
    // One keypress can come as two signals: one within a second does not count.
    tokio::time::sleep(Duration::from_millis(100)).await;
    signal(up.pid, libc::SIGTERM);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(alive(up.pid), "the first Ctrl-C drains the request in flight");
    let second = std::time::Instant::now();
    signal(up.pid, libc::SIGINT);
    let status = up.wait_exit(Duration::from_secs(10)).await;
    assert!(
        second.elapsed() < Duration::from_secs(5),
        "stopped at once: {:?}",
        second.elapsed()
    );
    assert_eq!(status.code(), Some(130), "{}", up.output());
    assert!(up.output().contains("stopping at once"), "{}", up.output());
    wait_groups_gone(&groups.0, GONE_TIMEOUT).await;
    wait_until("the orphan guard ended", GONE_TIMEOUT, || !alive(guard)).await;
    assert!(!app.path().join(".strata/node.json").exists(), "node.json removed");
    in_flight.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strata_down_leaves_no_process_behind() {
    let app = App::new();
    let (mut up, groups, guard) = up_and_ready(&app).await;
    let down = strata(app.path(), &["down"]).await;
    assert!(
        down.status.success(),
        "strata down: {}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&down.stdout).trim(), "stopping");
    let status = up.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "strata up ended with {status}:\n{}", up.output());
    wait_groups_gone(&groups.0, GONE_TIMEOUT).await;
    assert!(!alive(guard));
    // Nothing runs here any more, and the CLI says so.
    let ps = strata(app.path(), &["ps"]).await;
    assert!(!ps.status.success());
    assert!(
        String::from_utf8_lossy(&ps.stderr).contains("no running strata node"),
        "{ps:?}"
    );
    // What the instances printed is still there to read, from their files.
    let logs = strata(app.path(), &["logs", "web"]).await;
    assert!(logs.status.success(), "{logs:?}");
    let printed = String::from_utf8_lossy(&logs.stdout);
    assert!(printed.contains("web-1 | member web-1 listening on port"), "{printed}");
    assert!(printed.contains("web-2 | member web-2 listening on port"), "{printed}");
    let nothing = strata(app.path(), &["logs", "nope"]).await;
    assert!(!nothing.status.success(), "{nothing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_strata_leaves_no_process_behind() {
    let app = App::new();
    let (mut up, groups, guard) = up_and_ready(&app).await;
    signal(up.pid, libc::SIGKILL);
    up.wait_exit(Duration::from_secs(10)).await;
    // strata had no chance to clean up: the guard kills every instance group.
    wait_groups_gone(&groups.0, GONE_TIMEOUT).await;
    wait_until("the guard exits after its work", GONE_TIMEOUT, || !alive(guard)).await;
}

const CALLER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/caller.py");

/// A service running `caller.py` (which uses the Python client from the source tree).
fn caller(extra: Value) -> Value {
    let client = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clients/python");
    let mut spec = json!({
        "run": ["python3", CALLER],
        "env": { "PYTHONPATH": client.display().to_string(), "PYTHONDONTWRITEBYTECODE": "1" },
        "health": { "path": "/healthz", "interval_ms": 200, "timeout_ms": 1000 },
        "stop_grace_ms": 3000,
    });
    for (k, v) in extra.as_object().expect("an object") {
        spec[k] = v.clone();
    }
    spec
}

/// A request in flight when the node stops still reaches what its service binds to: the
/// node API serves until the last instance has stopped, and a service stops only after
/// the services that bind to it (docker compose's order).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_request_can_still_call_what_its_service_binds_to() {
    let app = App::new();
    let services = json!({
        "front": caller(json!({ "routes": ["/"], "bindings": ["back"] })),
        "back": caller(json!({})),
        "alone": caller(json!({})),
    });
    let node = app.start(app.config(app.manifest(services, Value::Null))).await;
    for s in ["front", "back", "alone"] {
        wait_ready(&node, s, 1).await;
    }
    let gateway = node.gateway_addr;
    let in_flight = tokio::spawn(async move { get(gateway, "/call?service=back&delay_ms=1500").await });
    // The request is at front (sleeping) when the stop begins.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let app_service = node.app.clone();
    stop(node).await;
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let answer = reply.json();
    assert_eq!(answer["status"], 200, "front's call to back during the drain: {answer}");
    // back stopped after front; alone, bound by nobody and binding nothing, did not wait.
    let stopped_at = |service: &str| {
        app_service
            .recent_events()
            .iter()
            .find(|e| e.service == service && e.kind == strata_appservice::EventKind::Stopped)
            .map(|e| e.at)
            .unwrap_or_else(|| panic!("no stopped event of {service}"))
    };
    assert!(stopped_at("back") >= stopped_at("front"), "back stopped before front");
    assert!(
        stopped_at("alone") < stopped_at("front"),
        "alone waited for front's drain"
    );
}
