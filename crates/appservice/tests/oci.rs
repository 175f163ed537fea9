//! The oci driver on a real runtime (runc, or crun where it works), with real
//! processes: a `host`-image service, a small Python HTTP server that reports what it
//! sees from inside its container, run by `AppService` as a node runs it.
//!
//! These tests need runc and root (runc runs rootful containers here); under `CI=true`
//! a missing one fails them (`.ci/run` installs runc), elsewhere they say SKIPPED.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use strata_appservice::{container_prefix, AppConfig, AppService, EventKind, InstanceState, NodeResources};
use strata_bus::Bus;
use tokio_util::sync::CancellationToken;

/// The instance program: serves `/healthz`, `/report` (what it sees, as JSON),
/// `/alloc?mb=N` (allocates and holds N MiB) and `/exit` (exits with status 3).
const APP: &str = r#"
import ctypes, errno, json, os, socket, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HELD = []

def err(e):
    return errno.errorcode.get(e.errno, str(e.errno))

def try_write(path, keep=False):
    try:
        with open(path, "w") as f:
            f.write("x")
        if not keep:
            os.unlink(path)
        return "written"
    except OSError as e:
        return err(e)

def status_field(name):
    for line in open("/proc/self/status"):
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()

def first(*paths):
    for p in paths:
        try:
            return open(p).read().strip()
        except OSError:
            pass
    return None

def report():
    tmp = os.environ["TMPDIR"]
    marker = os.path.join(tmp, "marker")
    had_marker = os.path.exists(marker)
    pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    cmdlines = {}
    for p in pids:
        try:
            cmdlines[p] = open("/proc/%d/cmdline" % p, "rb").read().replace(b"\0", b" ").decode().strip()
        except OSError:
            pass
    libc = ctypes.CDLL(None, use_errno=True)
    unshare = "ok" if libc.unshare(0x10000000) == 0 else errno.errorcode.get(ctypes.get_errno())
    try:
        state = os.listdir(os.path.join(os.getcwd(), ".strata"))
    except OSError as e:
        state = err(e)
    here = os.getcwd()
    return {
        "pid": os.getpid(), "ppid": os.getppid(), "pids": pids, "cmdlines": cmdlines,
        "uid": os.getuid(), "gid": os.getgid(),
        "cap_eff": status_field("CapEff"), "no_new_privs": status_field("NoNewPrivs"),
        "seccomp": status_field("Seccomp"), "unshare_user": unshare,
        "writes": {p: try_write(p) for p in ["/usr/strata-x", "/etc/strata-x", "/strata-x", os.path.join(here, "strata-x")]},
        "had_marker": had_marker, "wrote_marker": try_write(marker, keep=True),
        "home": os.environ.get("HOME"), "tmpdir": tmp, "hostname": socket.gethostname(),
        "greeting": first(os.path.join(tmp, "conf/greeting.txt")), "state_dir": state,
        "memory_limit": first("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory.max"),
        "cpu_quota": first("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu.max"),
        "pids_max": first("/sys/fs/cgroup/pids/pids.max", "/sys/fs/cgroup/pids.max"),
        "env": {k: v for k, v in os.environ.items() if k.startswith("STRATA") or k == "PORT"},
    }

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/exit":
            os._exit(3)
        if self.path.startswith("/alloc"):
            mb = int(self.path.split("=", 1)[1])
            for _ in range(mb):
                HELD.append(b"x" * (1 << 20))
        body = json.dumps(report() if self.path == "/report" else {"ok": True}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

port = int(os.environ["PORT"])
print("serving on port %d as pid %d" % (port, os.getpid()), flush=True)
print("a line on stderr", file=sys.stderr, flush=True)
ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"#;

const OWNER_DIR: &str = "STRATA_OCI_TEST_OWNER_DIR";
const OWNER_READY: &str = "owner: app ready";
const OWNER_TEST: &str = "a_killed_owner_leaves_no_container_and_a_leftover_is_removed_at_start";

/// Whether runc (or crun) and root are here; under CI a missing one fails the test.
fn runtime_here(test: &str) -> bool {
    let runc = strata_testkit::program("runc", "apt-get install runc").or_else(|why| {
        if Path::new("/usr/sbin/runc").exists() {
            Ok(())
        } else {
            Err(why)
        }
    });
    if !strata_testkit::needs(test, runc) {
        return false;
    }
    // SAFETY: geteuid has no preconditions and touches no memory.
    let root = unsafe { libc::geteuid() } == 0;
    strata_testkit::needs(
        test,
        if root {
            Ok(())
        } else {
            Err("root: runc runs rootful containers here".to_string())
        },
    )
}

fn runc() -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join("runc"))
        .find(|p| p.is_file())
        .expect("runc")
}

/// The ids of the containers runc has whose ids start with `prefix`.
fn containers(prefix: &str) -> Vec<String> {
    let out = Command::new(runc()).args(["list", "-q"]).output().expect("runc list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

/// An app directory readable by the container's user, with `app.py` in it.
fn app_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.path().join("app.py"), APP).unwrap();
    dir
}

fn manifest(service: Value) -> strata_manifest::Manifest {
    let text = json!({"strata": 1, "app": "boxed", "services": {"web": service}}).to_string();
    strata_manifest::parse(&text).expect("a valid manifest")
}

fn web(extra: Value) -> Value {
    let mut service = json!({
        "run": ["python3", "app.py"],
        "driver": "oci",
        "image": "host",
        "health": {"path": "/healthz", "interval_ms": 200, "timeout_ms": 2000},
        "files": {"conf/greeting.txt": {"content": "hello from ${STRATA_SERVICE}"}},
        "stop_grace_ms": 20000
    });
    for (k, v) in extra.as_object().unwrap() {
        service[k] = v.clone();
    }
    service
}

fn start(dir: &Path, service: Value) -> AppService {
    let state_dir = dir.join(".strata");
    std::fs::create_dir_all(&state_dir).unwrap();
    let config = AppConfig {
        cluster_node: None,
        grpc_probe: None,
        manifest: manifest(service),
        app_dir: dir.to_path_buf(),
        state_dir,
        api_url: "http://127.0.0.1:1".into(),
        tokens: BTreeMap::from([("web".to_string(), "t0ken".to_string())]),
        node: NodeResources::detect(),
    };
    AppService::start(config, Bus::new(), CancellationToken::new()).expect("start the app")
}

async fn ready(app: &AppService) {
    tokio::time::timeout(Duration::from_secs(60), app.ready())
        .await
        .unwrap_or_else(|_| panic!("not ready in 60 s: {:#?}", app.snapshot()));
}

/// The ready instance's port (waiting until there is one, after a restart).
async fn ready_port(app: &AppService) -> u16 {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let snapshot = app.snapshot();
        let instance = &snapshot[0].instances[0];
        if instance.state == InstanceState::Ready {
            return instance.port.unwrap();
        }
        assert!(Instant::now() < until, "no ready instance: {snapshot:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// GET `path` from the instance, the whole reply read; None when the connection broke.
async fn get(port: u16, path: &str) -> Option<Value> {
    let path = path.to_string();
    tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
        let mut reply = String::new();
        s.read_to_string(&mut reply).ok()?;
        let (head, body) = reply.split_once("\r\n\r\n")?;
        assert!(
            head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
            "{head}"
        );
        Some(serde_json::from_str(body).expect("a JSON body"))
    })
    .await
    .unwrap()
}

/// Waits for an event of `kind` about the instance `web-1` after `since` events.
async fn event(app: &AppService, kind: EventKind, since: usize) -> strata_appservice::Event {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(e) = app.recent_events().into_iter().skip(since).find(|e| e.kind == kind) {
            return e;
        }
        assert!(Instant::now() < until, "no {kind:?} event: {:#?}", app.recent_events());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_image_container_sees_only_itself_and_writes_only_its_scratch() {
    if !runtime_here("a_host_image_container_sees_only_itself_and_writes_only_its_scratch") {
        return;
    }
    let dir = app_dir();
    let app = start(dir.path(), web(json!({"resources": {"memory_mb": 128, "cpus": 0.5}})));
    ready(&app).await;
    let port = ready_port(&app).await;
    let r = get(port, "/report").await.expect("a report");

    // Its own pid namespace: the program is the child of strata's init, pid 1 (a few
    // pids above it, which the runtime's threads took while it made the container),
    // and /proc shows nothing of the host (this test process among it).
    let pid = r["pid"].as_u64().unwrap();
    assert!(pid < 10, "pid {pid}: {r:#}");
    assert_eq!(r["ppid"], 1, "{r:#}");
    let pids: Vec<u64> = r["pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect();
    assert!(
        pids.len() <= 3 && pids.iter().all(|&p| p < 10),
        "host processes in /proc: {r:#}"
    );
    let me = std::process::id() as u64;
    assert!(!pids.contains(&me) || me < 10, "{r:#}");
    for cmdline in r["cmdlines"].as_object().unwrap().values() {
        let cmdline = cmdline.as_str().unwrap();
        assert!(
            cmdline.starts_with("/bin/sh -c") || cmdline.starts_with("python3 app.py"),
            "a process that is not the instance's: {cmdline:?}"
        );
    }
    // Nobody, with nothing: no capabilities, no new privileges, a seccomp filter that
    // refuses a user namespace.
    assert_eq!(
        (r["uid"].as_u64(), r["gid"].as_u64()),
        (Some(65534), Some(65534)),
        "{r:#}"
    );
    assert_eq!(r["cap_eff"], "0000000000000000", "{r:#}");
    assert_eq!(r["no_new_privs"], "1", "{r:#}");
    assert_eq!(r["seccomp"], "2", "{r:#}");
    assert_eq!(r["unshare_user"], "EPERM", "{r:#}");
    // A read-only root, image and workdir; the node's state dir is not to be seen.
    for (path, outcome) in r["writes"].as_object().unwrap() {
        assert_eq!(outcome, "EROFS", "a write to {path}: {r:#}");
    }
    assert_eq!(r["state_dir"], json!([]), "{r:#}");
    // The scratch is its own: HOME and TMPDIR, with the manifest's files in it.
    assert_eq!((r["home"].as_str(), r["tmpdir"].as_str()), (Some("/tmp"), Some("/tmp")));
    assert_eq!(r["wrote_marker"], "written");
    assert_eq!(r["had_marker"], false);
    assert_eq!(r["greeting"], "hello from web");
    assert_eq!(r["hostname"], "web-1");
    // The instance contract, unchanged.
    assert_eq!(r["env"]["PORT"], port.to_string());
    assert_eq!(r["env"]["STRATA_TOKEN"], "t0ken");
    assert_eq!(r["env"]["STRATA_URL"], "http://127.0.0.1:1");
    // Its limits, as its cgroup shows them from inside.
    assert_eq!(r["memory_limit"], (128u64 << 20).to_string(), "{r:#}");
    assert!(r["cpu_quota"].as_str().unwrap().starts_with("50000"), "{r:#}");
    assert_eq!(r["pids_max"], "1024", "{r:#}");

    let status = &app.snapshot()[0].instances[0];
    let runtime = status.runtime.clone().expect("ps names the runtime");
    assert!(
        runtime.starts_with("runc ") || runtime.starts_with("crun "),
        "{runtime}"
    );
    println!("runtime: {runtime}");
    let prefix = container_prefix(&dir.path().join(".strata"));
    assert_eq!(containers(&prefix), [format!("{prefix}web-1.1")]);

    // A restart is a new container: what the last one wrote in its scratch is gone.
    let events = app.recent_events().len();
    assert!(get(port, "/exit").await.is_none());
    let exited = event(&app, EventKind::Exited, events).await;
    assert!(exited.message.contains("exited with status 3"), "{}", exited.message);
    let port = ready_port(&app).await;
    let r = get(port, "/report").await.expect("a report after the restart");
    assert_eq!(r["had_marker"], false, "the scratch outlived its container: {r:#}");
    assert_eq!(app.snapshot()[0].instances[0].restarts, 1);

    // Its stdout and stderr are the instance's log.
    let log = std::fs::read_to_string(dir.path().join(".strata/logs/web/web-1.log")).unwrap();
    assert_eq!(log.matches("serving on port").count(), 2, "{log}");
    assert!(log.contains("a line on stderr"), "{log}");

    // A stop is graceful (strata's init passes SIGTERM on to a program that has no
    // handler of its own) and leaves no container.
    let stopping = Instant::now();
    app.stop().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "the stop waited for the grace period: {:?}",
        stopping.elapsed()
    );
    assert_eq!(containers(&prefix), Vec::<String>::new());
    let stopped = app
        .recent_events()
        .into_iter()
        .rev()
        .find(|e| e.kind == EventKind::Stopped)
        .unwrap();
    assert!(stopped.message.contains("SIGTERM"), "{}", stopped.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_over_the_limit_is_reported_as_oom_and_restarted() {
    if !runtime_here("memory_over_the_limit_is_reported_as_oom_and_restarted") {
        return;
    }
    let dir = app_dir();
    let app = start(dir.path(), web(json!({"resources": {"memory_mb": 64}})));
    ready(&app).await;
    let port = ready_port(&app).await;
    let events = app.recent_events().len();
    assert!(
        get(port, "/alloc?mb=256").await.is_none(),
        "256 MiB fit in a 64 MiB container"
    );
    let oom = event(&app, EventKind::Oom, events).await;
    assert_eq!(oom.instance.as_deref(), Some("web-1"));
    assert!(
        oom.message
            .starts_with("oom: the kernel killed it for memory over its limit (resources.memory_mb: 64)"),
        "{}",
        oom.message
    );
    // Restarted by the back-off policy, like any exit, and shown in ps.
    event(&app, EventKind::Ready, events).await;
    let status = app.snapshot()[0].instances[0].clone();
    assert_eq!((status.oom_kills, status.restarts), (1, 1), "{status:#?}");
    assert!(status.last_exit.as_deref().unwrap().starts_with("oom"), "{status:#?}");
    assert!(get(ready_port(&app).await, "/healthz").await.is_some());
    app.stop().await;
}

/// `"seccomp": "unconfined"` leaves out the filter and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfined_container_has_no_seccomp_filter_and_is_otherwise_as_isolated() {
    if !runtime_here("an_unconfined_container_has_no_seccomp_filter_and_is_otherwise_as_isolated") {
        return;
    }
    let dir = app_dir();
    let app = start(dir.path(), web(json!({"seccomp": "unconfined"})));
    ready(&app).await;
    let r = get(ready_port(&app).await, "/report").await.expect("a report");
    assert_eq!(r["seccomp"], "0", "{r:#}");
    assert_eq!(r["cap_eff"], "0000000000000000", "{r:#}");
    assert_eq!(r["no_new_privs"], "1", "{r:#}");
    assert_eq!(
        (r["uid"].as_u64(), r["gid"].as_u64()),
        (Some(65534), Some(65534)),
        "{r:#}"
    );
    assert!(r["pid"].as_u64().unwrap() < 10, "{r:#}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_not_on_its_port_is_reported_with_where_it_listens() {
    if !runtime_here("a_container_not_on_its_port_is_reported_with_where_it_listens") {
        return;
    }
    let dir = app_dir();
    let app = start(
        dir.path(),
        web(json!({"run": ["python3", "-m", "http.server", "--bind", "127.0.0.1", "0"], "health": null})),
    );
    let not_ready = event(&app, EventKind::NotReady, 0).await;
    assert!(
        not_ready.message.contains("nothing listens on its port")
            && not_ready.message.contains("it listens on 127.0.0.1:"),
        "{}",
        not_ready.message
    );
    app.stop().await;
}

/// A killed node's containers go with it (the container guard deletes them), and a
/// container its guard did not delete (made here by hand, with the node's prefix) is
/// deleted when a node starts on the same state dir, before its first container.
#[test]
fn a_killed_owner_leaves_no_container_and_a_leftover_is_removed_at_start() {
    if let Ok(dir) = std::env::var(OWNER_DIR) {
        return own_until_killed(Path::new(&dir));
    }
    if !runtime_here(OWNER_TEST) {
        return;
    }
    let dir = app_dir();
    let state_dir = dir.path().join(".strata");
    std::fs::create_dir_all(&state_dir).unwrap();
    let prefix = container_prefix(&state_dir);

    // The owner: this test again, in a process of its own, running the app.
    let mut owner = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", OWNER_TEST, "--nocapture", "--test-threads", "1"])
        .env(OWNER_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(owner.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the owner ended before its app was ready"
        );
        // The harness prints the test's name on the same line first.
        if line.contains(OWNER_READY) {
            break;
        }
    }
    let running = containers(&prefix);
    assert_eq!(running, [format!("{prefix}web-1.1")]);
    let init = container_pid(&running[0]);
    owner.kill().unwrap(); // SIGKILL
    owner.wait().unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    while !containers(&prefix).is_empty() || alive(init) {
        assert!(
            Instant::now() < until,
            "a container outlived its killed owner: {:?}",
            containers(&prefix)
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // A leftover with the node's prefix, running (as if the guard had been killed too),
    // is gone once a node started there: a node without containers deletes it because
    // the dead node recorded its runtime; a node with containers before its first.
    let marker = state_dir.join("oci-runtime");
    assert!(marker.exists(), "the killed owner's runtime is not recorded");
    let rt = tokio::runtime::Runtime::new().unwrap();
    for driver in ["process", "oci"] {
        let leftover = format!("{prefix}leftover-{driver}");
        run_detached(dir.path(), &leftover);
        assert_eq!(containers(&prefix), std::slice::from_ref(&leftover));
        let leftover_pid = container_pid(&leftover);
        rt.block_on(async {
            let image = if driver == "oci" { json!("host") } else { Value::Null };
            let app = start(dir.path(), web(json!({"driver": driver, "image": image})));
            ready(&app).await;
            if driver == "oci" {
                assert_eq!(containers(&prefix), [format!("{prefix}web-1.1")]);
            }
            let until = Instant::now() + Duration::from_secs(20);
            while containers(&prefix).contains(&leftover) || alive(leftover_pid) {
                assert!(Instant::now() < until, "the leftover survived a {driver} node's start");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            app.stop().await;
        });
        assert_eq!(containers(&prefix), Vec::<String>::new());
        assert!(
            !marker.exists(),
            "a node that stopped cleanly left {}",
            marker.display()
        );
    }
}

/// The owner's side: runs the app, says "ready", and waits to be killed.
fn own_until_killed(dir: &Path) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let app = start(dir, web(json!({})));
        ready(&app).await;
        println!("{OWNER_READY}");
        std::future::pending::<()>().await;
    });
}

/// The container's first process, from `runc state`.
fn container_pid(id: &str) -> u32 {
    let out = Command::new(runc()).args(["state", id]).output().unwrap();
    let state: Value = serde_json::from_slice(&out.stdout).expect("runc state JSON");
    state["pid"].as_u64().unwrap() as u32
}

/// Whether `pid` is a process (a zombie is not).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Runs `sleep` in a container of id `id`, detached, as a node killed with its guard
/// would have left it.
fn run_detached(dir: &Path, id: &str) {
    let bundle = dir.join(format!("bundle-{id}"));
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    let mut mounts = vec![json!({"destination": "/proc", "type": "proc", "source": "proc"})];
    for top in ["usr", "bin", "lib", "lib64"] {
        let host = Path::new("/").join(top);
        match std::fs::read_link(&host) {
            Ok(target) => std::os::unix::fs::symlink(target, rootfs.join(top)).unwrap(),
            Err(_) if host.is_dir() => {
                mounts.push(json!({"destination": host, "type": "bind", "source": host, "options": ["rbind", "ro"]}))
            }
            Err(_) => {}
        }
    }
    let config = json!({
        "ociVersion": "1.0.2",
        "process": {"terminal": false, "user": {"uid": 65534, "gid": 65534}, "args": ["sleep", "600"],
                    "env": ["PATH=/usr/bin:/bin"], "cwd": "/", "noNewPrivileges": true},
        "root": {"path": "rootfs", "readonly": true},
        "mounts": mounts,
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}]}
    });
    std::fs::write(bundle.join("config.json"), config.to_string()).unwrap();
    let status = Command::new(runc())
        .args(["run", "--detach", "--bundle"])
        .arg(&bundle)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .unwrap();
    assert!(status.success(), "runc run --detach {id}: {status}");
}

#[test]
fn a_registry_name_is_refused_saying_what_an_image_may_be() {
    let text = json!({"strata": 1, "app": "boxed", "services": {"web": {
        "run": ["httpd"], "driver": "oci", "image": "busybox"}}})
    .to_string();
    let err = strata_manifest::parse(&text).expect_err("busybox names a registry image");
    let said = err.to_string();
    assert!(said.starts_with("services.web.image: expected \"host\""), "{said}");
    assert!(said.contains("found \"busybox\""), "{said}");
    assert!(said.contains("not pulled from registries"), "{said}");
    for fine in ["host", "./busybox.tar", "/srv/images/layout", "sha256:0123456789ab"] {
        let text = json!({"strata": 1, "app": "boxed", "services": {"web": {
            "run": ["httpd"], "driver": "oci", "image": fine}}})
        .to_string();
        strata_manifest::parse(&text).unwrap_or_else(|e| panic!("{fine}: {e}"));
    }
}

// ------------------------------------------------------------------ images

#[path = "support/image.rs"]
mod image;
use image::{layer_tar, write_layout, Item};

/// An OCI image layout of busybox serving `/www`: a gzipped lower layer with
/// `www/old.txt`, and a plain upper layer whose whiteout removes it and adds
/// `www/new.txt`.
fn busybox_layout(dir: &Path) {
    let busybox = std::fs::read("/usr/bin/busybox").expect("busybox-static (apt-get install busybox-static)");
    let lower = layer_tar(&[
        Item::Dir("bin"),
        Item::File("bin/busybox", 0o755, busybox),
        Item::Link("bin/sh", "busybox"),
        Item::Dir("www"),
        Item::File("www/healthz", 0o644, b"ok\n".to_vec()),
        Item::File("www/old.txt", 0o644, b"old\n".to_vec()),
    ]);
    let upper = layer_tar(&[
        Item::File("www/.wh.old.txt", 0o644, Vec::new()),
        Item::File("www/new.txt", 0o644, b"new from the upper layer\n".to_vec()),
    ]);
    write_layout(
        dir,
        &[(lower, true), (upper, false)],
        json!({"Env": ["PATH=/bin", "GREETING=from-image"], "WorkingDir": "/www"}),
        "busybox-test",
    );
}

/// GET `path` from 127.0.0.1:`port`: (status, body).
async fn fetch(port: u16, path: &str) -> (u16, String) {
    let path = path.to_string();
    tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
        let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        (status, body.to_string())
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oci_image_layout_runs_with_its_layers_and_whiteouts_and_a_damaged_one_never_starts() {
    let test = "an_oci_image_layout_runs_with_its_layers_and_whiteouts_and_a_damaged_one_never_starts";
    if !runtime_here(test) {
        return;
    }
    if !strata_testkit::needs(
        test,
        strata_testkit::program("busybox", "apt-get install busybox-static"),
    ) {
        return;
    }
    let dir = app_dir();
    let store = dir.path().join("images");
    // The store the node's image cache uses (no other test here reads it).
    std::env::set_var("STRATA_IMAGES", &store);
    let layout = dir.path().join("busybox-layout");
    busybox_layout(&layout);
    let service = |image: &str| {
        json!({
            "run": ["/bin/sh", "-c", "exec busybox httpd -f -p \"$PORT\" -h /www"],
            "driver": "oci",
            "image": image,
            "health": {"path": "/healthz", "interval_ms": 200, "timeout_ms": 2000},
        })
    };
    let app = start(dir.path(), service("./busybox-layout"));
    ready(&app).await;
    let port = ready_port(&app).await;
    assert_eq!(
        fetch(port, "/new.txt").await,
        (200, "new from the upper layer\n".to_string())
    );
    assert_eq!(fetch(port, "/healthz").await.0, 200);
    assert_eq!(
        fetch(port, "/old.txt").await.0,
        404,
        "the upper layer's whiteout removed it"
    );
    app.stop().await;

    // Imported once, kept by digest; `strata image ls` reads the same records.
    let images = strata_appservice::image::ImageStore::open(&store)
        .unwrap()
        .list()
        .unwrap();
    assert_eq!(images.len(), 1, "{images:?}");
    assert_eq!(images[0].tags, ["busybox-test"]);
    assert_eq!(images[0].layers.len(), 2);
    assert_eq!(images[0].working_dir.as_deref(), Some("/www"));

    // The same layout as a tar archive is the same image.
    let archive = dir.path().join("busybox.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&archive).unwrap());
    b.append_dir_all(".", &layout).unwrap();
    b.finish().unwrap();
    let from_archive = strata_appservice::image::ImageStore::open(&store)
        .unwrap()
        .import(&archive)
        .unwrap();
    assert_eq!(from_archive.digest, images[0].digest);

    // A layer blob damaged by one byte: refused with the digest named, no container.
    let damaged = dir.path().join("damaged-layout");
    busybox_layout(&damaged);
    let index: Value = serde_json::from_str(&std::fs::read_to_string(damaged.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(damaged.join("blobs/sha256").join(&manifest_digest)).unwrap()).unwrap();
    let upper = manifest["layers"][1]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let blob = damaged.join("blobs/sha256").join(&upper);
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[600] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    let app = start(dir.path(), service("./damaged-layout"));
    let until = Instant::now() + Duration::from_secs(30);
    let said = loop {
        let found = app
            .recent_events()
            .into_iter()
            .map(|e| e.message)
            .find(|m| m.contains("digest mismatch"));
        if let Some(m) = found {
            break m;
        }
        assert!(
            Instant::now() < until,
            "no digest mismatch reported: {:#?}",
            app.recent_events()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(said.contains(&upper[..12]), "names the blob: {said}");
    assert!(app.snapshot()[0]
        .instances
        .iter()
        .all(|i| i.state != InstanceState::Ready));
    app.stop().await;
    assert_eq!(
        strata_appservice::image::ImageStore::open(&store)
            .unwrap()
            .list()
            .unwrap()
            .len(),
        1,
        "nothing of the damaged image was recorded"
    );
}
