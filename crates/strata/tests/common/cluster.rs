//! `strata node` processes for the cluster tests (`cluster.rs`, `cluster_cache.rs`,
//! `cluster_protocols.rs`): started against a NATS cluster with a name, a power label and
//! a data dir under the test's dir, output appended to `node-NAME.out` there (a restarted
//! node keeps adding to it); SIGTERM then SIGKILL when dropped. Then what the tests read
//! of the cluster: `strata nodes --json`, waited on, and the figures in it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{log_tails, STRATA};

pub struct ClusterNode {
    pub child: Child,
}

impl ClusterNode {
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        // SIGTERM first, so the node stops its instances; SIGKILL if it lingers.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill9();
    }
}

pub fn start_node(dir: &Path, urls: &str, name: &str, power: &str) -> ClusterNode {
    start_node_in(dir, urls, name, power, None, "127.0.0.1:0")
}

/// A node, in network namespace `netns` when given, reached at `listen`.
pub fn start_node_in(
    dir: &Path,
    urls: &str,
    name: &str,
    power: &str,
    netns: Option<&str>,
    listen: &str,
) -> ClusterNode {
    let data = dir.join(format!("node-{name}"));
    std::fs::create_dir_all(&data).unwrap();
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("node-{name}.out")))
        .unwrap();
    let mut command = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, STRATA]);
            c
        }
        None => Command::new(STRATA),
    };
    let child = command
        .args(["node", "--nats", urls, "--name", name, "--listen", listen])
        .arg("--labels")
        .arg(format!("power={power}"))
        .args(["--memory-mb", "4000"])
        .arg("--data")
        .arg(&data)
        .env("STRATA_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("spawn strata node");
    ClusterNode { child }
}

/// An address `node` lists for `app` in `strata nodes --json` (`field`: `gateways` or
/// `apis`), without its `http://`.
pub fn node_addr(v: &serde_json::Value, node: &str, field: &str, app: &str) -> std::net::SocketAddr {
    let n = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == node)
        .expect("node listed");
    let addr = n[field][app]
        .as_str()
        .unwrap_or_else(|| panic!("{field} of app {app} on {node}: {n}"));
    addr.trim_start_matches("http://").parse().unwrap()
}

/// The app's control token on `node` (in its state dir, `DATA/apps/test/VERSION/`).
pub fn token_on(dir: &Path, node: &str) -> String {
    app_token_on(dir, node, "test")
}

/// `app`'s control token on `node` (in its state dir, `DATA/apps/APP/VERSION/`).
pub fn app_token_on(dir: &Path, node: &str, app: &str) -> String {
    let apps = dir.join(format!("node-{node}")).join("apps").join(app);
    for version in std::fs::read_dir(&apps).unwrap().flatten() {
        if let Ok(token) = std::fs::read_to_string(version.path().join("control.token")) {
            return token.trim().to_string();
        }
    }
    panic!("no control token under {}", apps.display());
}

pub fn strata(args: &[&str]) -> std::process::Output {
    Command::new(STRATA).args(args).output().expect("run strata")
}

pub fn nodes_json(urls: &str) -> Value {
    let out = strata(&["nodes", "--json", "--nats", urls]);
    assert!(
        out.status.success(),
        "strata nodes: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("nodes --json is JSON")
}

/// An app dir with the test member copied in (so it travels in the bundle).
pub fn write_app(dir: &Path, record: &Path, services: Value) -> PathBuf {
    let app = dir.join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::copy(super::MEMBER, app.join("member.py")).unwrap();
    let mut services = services;
    for spec in services.as_object_mut().unwrap().values_mut() {
        spec["run"] = json!(["python3", "member.py"]);
        spec["env"] = json!({ "RECORD": record.display().to_string() });
        spec["health"] = json!({ "path": "/healthz", "interval_ms": 200, "timeout_ms": 1000 });
        spec["stop_grace_ms"] = json!(2000);
    }
    let manifest = json!({ "strata": 1, "app": "test", "services": services });
    let path = app.join("strata.json");
    std::fs::write(&path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
    path
}

/// Waits until `check(nodes --json)` holds; returns how long it took.
pub fn wait_for(urls: &str, what: &str, within: Duration, check: impl Fn(&Value) -> bool) -> Duration {
    let start = Instant::now();
    loop {
        let v = nodes_json(urls);
        if check(&v) {
            return start.elapsed();
        }
        if start.elapsed() > within {
            panic!("{what} did not happen within {within:?}: {v:#}{}", node_logs(urls));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The last lines of each node's log, for a failure message.
pub fn node_logs(urls: &str) -> String {
    log_tails(std::path::Path::new(urls_dir(urls)), 30)
}

/// The test's dir, remembered per cluster (for the node logs in a failure message).
pub fn urls_dir(urls: &str) -> &'static str {
    DIRS.lock().unwrap().get(urls).copied().unwrap_or("/nonexistent")
}

pub fn remember_dir(urls: &str, dir: &Path) {
    let dir: &'static str = Box::leak(dir.display().to_string().into_boxed_str());
    DIRS.lock().unwrap().insert(urls.to_string(), dir);
}

static DIRS: std::sync::Mutex<BTreeMap<String, &'static str>> = std::sync::Mutex::new(BTreeMap::new());

pub fn ready_on(v: &Value, node: &str) -> u64 {
    v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == node)
        .map_or(0, |n| n["ready"].as_u64().unwrap())
}

/// Members of `app`'s `service` ready on `node`, from its heartbeat's load.
pub fn ready_on_app(v: &Value, node: &str, app: &str, service: &str) -> u64 {
    v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == node)
        .and_then(|n| n["load"][format!("{app}/{service}")]["ready"].as_u64())
        .unwrap_or(0)
}

pub fn placed(v: &Value, service: &str) -> BTreeMap<String, u64> {
    v["apps"]["test"]["services"][service]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, n)| (k.clone(), n.as_u64().unwrap()))
                .filter(|(_, n)| *n > 0)
                .collect()
        })
        .unwrap_or_default()
}

pub fn gateway_of(v: &Value, node: &str) -> SocketAddr {
    gateway_of_app(v, node, "test")
}

pub fn gateway_of_app(v: &Value, node: &str, app: &str) -> SocketAddr {
    node_addr(v, node, "gateways", app)
}

pub fn scheduler(v: &Value) -> Option<String> {
    v["scheduler"].as_str().map(String::from)
}

pub fn records(record: &Path) -> Vec<Value> {
    std::fs::read_to_string(record)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

pub fn api_of(v: &Value, node: &str) -> SocketAddr {
    node_addr(v, node, "apis", "test")
}

pub fn strata_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
