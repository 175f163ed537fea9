//! `strata node` processes for the cluster tests (`cluster.rs`, `cluster_cache.rs`):
//! started against a NATS cluster with a name, a power label and a data dir under the
//! test's dir, output appended to `node-NAME.out` there (a restarted node keeps adding
//! to it); SIGTERM then SIGKILL when dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::STRATA;

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
