//! `"network": "private"` on a real runtime, with real namespaces, veths and bridges:
//! two apps, each on its own private network, run by `AppService` as a node runs them.
//! Members of one app reach each other and the node; a member of one app cannot
//! connect to another app's instance; `$STRATA_URL` (the node API on loopback) works
//! from inside; an image's container runs there with the private network's
//! `/etc/resolv.conf`; nothing of the networks is left after a stop, after a SIGKILL of
//! the node, or when a node starts where a dead one left some.
//!
//! These tests need runc, `ip` (iproute2) and root (and busybox-static for the image);
//! under `CI=true` a missing one fails them (`.ci/run` installs them), elsewhere they
//! say SKIPPED.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use strata_appservice::{container_prefix, AppConfig, AppService, EventKind, InstanceState, NodeResources};
use strata_bus::Bus;
use tokio_util::sync::CancellationToken;

#[path = "support/image.rs"]
mod image;
use image::{layer_tar, write_layout, Item};

/// The instance program: serves on every address of its namespace: `/healthz`,
/// `/connect?to=IP:PORT` (a TCP connect with a 1 s timeout: `connected` or why not)
/// and `/api` (a GET of `$STRATA_URL/hello`: the reply's body, or why none, and the
/// container's `/etc/resolv.conf`).
const APP: &str = r#"
import errno, json, os, socket, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

def connect(to):
    host, port = to.rsplit(":", 1)
    s = socket.socket()
    s.settimeout(1.0)
    try:
        s.connect((host, int(port)))
        return "connected"
    except socket.timeout:
        return "timeout"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    finally:
        s.close()

def api():
    try:
        with urllib.request.urlopen(os.environ["STRATA_URL"] + "/hello", timeout=5) as r:
            return r.read().decode()
    except Exception as e:
        return "failed: %r" % (e,)

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith("/connect?to="):
            out = {"result": connect(self.path.split("=", 1)[1])}
        elif self.path == "/api":
            out = {"body": api(), "url": os.environ["STRATA_URL"], "resolv": open("/etc/resolv.conf").read()}
        else:
            out = {"ok": True}
        body = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"#;

const OWNER_DIR: &str = "STRATA_NET_TEST_OWNER_DIR";
const OWNER_READY: &str = "owner: app ready";
const OWNER_TEST: &str = "a_killed_node_leaves_no_network_and_a_leftover_is_removed_at_start";

/// The `ip` program: on the PATH, or in Debian's sbin directories.
fn ip() -> std::path::PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain(["/usr/sbin", "/sbin"].map(std::path::PathBuf::from))
        .map(|d| d.join("ip"))
        .find(|p| p.is_file())
        .expect("ip (iproute2)")
}
/// Whether runc, `ip` and root are here; under CI a missing one fails the test.
fn here(test: &str) -> bool {
    let runc = strata_testkit::program("runc", "apt-get install runc").or_else(|why| {
        if Path::new("/usr/sbin/runc").exists() {
            Ok(())
        } else {
            Err(why)
        }
    });
    let ip = strata_testkit::program("ip", "apt-get install iproute2").or_else(|why| {
        if Path::new("/usr/sbin/ip").exists() || Path::new("/sbin/ip").exists() {
            Ok(())
        } else {
            Err(why)
        }
    });
    // SAFETY: geteuid has no preconditions and touches no memory.
    let root = unsafe { libc::geteuid() } == 0;
    strata_testkit::needs(test, runc)
        && strata_testkit::needs(test, ip)
        && strata_testkit::needs(
            test,
            if root {
                Ok(())
            } else {
                Err("root: runc runs rootful containers and ip makes namespaces here".to_string())
            },
        )
}

/// An app directory readable by the container's user, with `app.py` in it.
fn app_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.path().join("app.py"), APP).unwrap();
    dir
}

/// Starts app `app` with one private-network service `web` of `instances` instances;
/// `api` is the node API's address given as `$STRATA_URL`.
fn start(dir: &Path, app: &str, instances: u32, api: SocketAddr) -> AppService {
    let web = json!({
        "run": ["python3", "app.py"],
        "driver": "oci",
        "network": "private",
        "instances": {"min": instances, "max": instances},
        "health": {"path": "/healthz", "interval_ms": 200, "timeout_ms": 2000},
    });
    start_service(dir, app, web, api)
}

/// Starts app `app` with the one service `web`.
fn start_service(dir: &Path, app: &str, web: Value, api: SocketAddr) -> AppService {
    let state_dir = dir.join(".strata");
    std::fs::create_dir_all(&state_dir).unwrap();
    let text = json!({"strata": 1, "app": app, "services": {"web": web}}).to_string();
    let config = AppConfig {
        cluster_node: None,
        grpc_probe: None,
        manifest: strata_manifest::parse(&text).expect("a valid manifest"),
        app_dir: dir.to_path_buf(),
        state_dir,
        api_url: format!("http://{api}"),
        tokens: BTreeMap::new(),
        node: NodeResources::detect(),
    };
    AppService::start(config, Bus::new(), CancellationToken::new()).expect("start the app")
}

/// The addresses of the app's instances once `count` are ready.
async fn ready_members(app: &AppService, count: usize) -> Vec<SocketAddr> {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let snapshot = app.snapshot();
        let members: Vec<SocketAddr> = snapshot[0]
            .instances
            .iter()
            .filter(|i| i.state == InstanceState::Ready)
            .filter_map(|i| i.member.as_ref().map(|m| m.addr))
            .collect();
        if members.len() == count {
            return members;
        }
        assert!(Instant::now() < until, "not {count} ready: {snapshot:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// GET `path` from a member, the whole reply read, as JSON.
async fn get(addr: SocketAddr, path: &str) -> Value {
    let path = path.to_string();
    tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to the member");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        let (head, body) = reply.split_once("\r\n\r\n").expect("a reply");
        assert!(head.starts_with("HTTP/1.0 200"), "{head}");
        serde_json::from_str(body).expect("a JSON body")
    })
    .await
    .unwrap()
}

/// What a connect from `from` (a member) to `to` came to.
async fn connect_from(from: SocketAddr, to: SocketAddr) -> String {
    get(from, &format!("/connect?to={to}")).await["result"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A stand-in for the node API on loopback: answers every request with the Host header
/// it was sent.
fn node_api() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut host = String::new();
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    if let Some(h) = line.to_ascii_lowercase().strip_prefix("host:") {
                        host = h.trim().to_string();
                    }
                    line.clear();
                }
                let body = format!("node api, host {host}");
                let mut conn = conn;
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    addr
}

/// The node's namespaces, links (veths and bridges) and rules, from `ip`.
fn network_of(prefix: &str) -> Vec<String> {
    let hash = prefix.trim_start_matches("strata-").trim_end_matches('-');
    let run =
        |args: &[&str]| String::from_utf8_lossy(&Command::new(ip()).args(args).output().unwrap().stdout).into_owned();
    let mut found = Vec::new();
    for line in run(&["netns", "list"]).lines() {
        if line.starts_with(prefix) {
            found.push(format!("netns {line}"));
        }
    }
    for line in run(&["-o", "link", "show"]).lines() {
        let name = line.split_whitespace().nth(1).unwrap_or("");
        if name.starts_with(&format!("sv{hash}")) || name.starts_with(&format!("sb{hash}")) {
            found.push(format!("link {name}"));
        }
    }
    for line in run(&["-4", "rule", "show"]).lines() {
        if line.contains(&format!("sb{hash}")) {
            found.push(format!("rule {line}"));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_network_app_reaches_its_own_and_the_node_but_not_another_app() {
    let test = "a_private_network_app_reaches_its_own_and_the_node_but_not_another_app";
    if !here(test) {
        return;
    }
    let api = node_api();
    let (dir_a, dir_b) = (app_dir(), app_dir());
    let alpha = start(dir_a.path(), "alpha", 2, api);
    let beta = start(dir_b.path(), "beta", 1, api);
    let a = ready_members(&alpha, 2).await;
    let b = ready_members(&beta, 1).await;

    // Each instance is at an address of its app's /24, reached there from the node
    // (the relay's and the health check's path), on its $PORT.
    let net = |addr: &SocketAddr| match addr.ip() {
        std::net::IpAddr::V4(ip) => [ip.octets()[0], ip.octets()[1], ip.octets()[2]],
        other => panic!("not IPv4: {other}"),
    };
    assert_eq!(net(&a[0]), net(&a[1]), "{a:?}");
    assert_ne!(net(&a[0]), net(&b[0]), "two apps share a subnet: {a:?} {b:?}");
    assert_eq!(net(&a[0])[0], 10);
    assert!(!a[0].ip().is_loopback() && a[0].ip() != a[1].ip());
    assert_eq!(get(a[0], "/healthz").await, json!({"ok": true}));
    let launched = alpha
        .recent_events()
        .into_iter()
        .find(|e| e.kind == EventKind::Launched)
        .unwrap();
    assert!(launched.message.contains(" at 10."), "{}", launched.message);

    // Members of one app reach each other.
    assert_eq!(connect_from(a[0], a[1]).await, "connected");
    assert_eq!(connect_from(a[1], a[0]).await, "connected");
    // ... and the node, at their gateway (the bridge's address).
    let node = TcpListener::bind("0.0.0.0:0").unwrap();
    let [x, y, z] = net(&a[0]);
    let gateway = SocketAddr::from((Ipv4Addr::new(x, y, z, 1), node.local_addr().unwrap().port()));
    assert_eq!(connect_from(a[0], gateway).await, "connected");
    // Another app's instance is out of reach, both ways.
    for (from, to) in [(a[0], b[0]), (b[0], a[1])] {
        let result = connect_from(from, to).await;
        assert_ne!(result, "connected", "{from} reached {to}");
        assert!(
            ["EHOSTUNREACH", "ENETUNREACH", "EACCES", "timeout", "ECONNREFUSED"].contains(&result.as_str()),
            "{from} -> {to}: {result}"
        );
    }

    // $STRATA_URL is the node API's own URL, and works from inside: the Host it sends
    // is the node's (what the node API's host check wants).
    let reply = get(a[1], "/api").await;
    assert_eq!(reply["url"], format!("http://{api}"));
    assert_eq!(reply["body"], format!("node api, host {api}"), "{reply}");
    // No name server is reached from a private network: lookups go to the namespace's
    // own loopback and fail at once.
    let resolv = reply["resolv"].as_str().unwrap();
    let servers: Vec<&str> = resolv.lines().filter(|l| l.starts_with("nameserver")).collect();
    assert_eq!(servers, ["nameserver 127.0.0.1"], "{resolv}");

    let prefixes = [dir_a.path(), dir_b.path()].map(|d| container_prefix(&d.join(".strata")));
    assert!(!network_of(&prefixes[0]).is_empty());
    alpha.stop().await;
    beta.stop().await;
    for prefix in prefixes {
        assert_eq!(network_of(&prefix), Vec::<String>::new(), "left after a stop");
    }
}

/// A program that listens on its own loopback is not reached on a private network, and
/// the event says to listen on every address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_instance_on_its_loopback_is_told_to_listen_on_every_address() {
    let test = "a_private_instance_on_its_loopback_is_told_to_listen_on_every_address";
    if !here(test) {
        return;
    }
    let dir = app_dir();
    let web = json!({
        "run": ["python3", "-m", "http.server", "--bind", "127.0.0.1", "${PORT}"],
        "driver": "oci", "network": "private",
        "health": {"path": "/", "interval_ms": 200, "timeout_ms": 500, "start_timeout_ms": 3000},
    });
    let app = start_service(dir.path(), "epsilon", web, node_api());
    let until = Instant::now() + Duration::from_secs(60);
    let exited = loop {
        if let Some(e) = app.recent_events().into_iter().find(|e| e.kind == EventKind::Exited) {
            break e;
        }
        assert!(Instant::now() < until, "no exited event: {:#?}", app.recent_events());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        exited.message.contains("nothing listens on its port")
            && exited.message.contains(" at 10.")
            && exited
                .message
                .contains("must serve HTTP on 0.0.0.0:$PORT, not on its own loopback"),
        "{}",
        exited.message
    );
    app.stop().await;
}

/// An image's container on a private network: busybox's httpd (which listens on every
/// address) is reached at its namespace address, and the image's own
/// `/etc/resolv.conf` is replaced by the private network's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_runs_on_a_private_network_with_its_name_server_replaced() {
    let test = "an_image_runs_on_a_private_network_with_its_name_server_replaced";
    let busybox = strata_testkit::program("busybox", "apt-get install busybox-static");
    if !here(test) || !strata_testkit::needs(test, busybox) {
        return;
    }
    let dir = app_dir();
    let layer = layer_tar(&[
        Item::Dir("bin"),
        Item::File("bin/busybox", 0o755, std::fs::read("/usr/bin/busybox").unwrap()),
        Item::Link("bin/sh", "busybox"),
        Item::Dir("etc"),
        Item::File("etc/resolv.conf", 0o644, b"nameserver 192.0.2.53\n".to_vec()),
    ]);
    write_layout(
        &dir.path().join("box"),
        &[(layer, true)],
        json!({"Env": ["PATH=/bin"]}),
        "box",
    );
    let cmd =
        "mkdir -p /tmp/www && cat /etc/resolv.conf > /tmp/www/resolv && exec busybox httpd -f -p \"$PORT\" -h /tmp/www";
    let web = json!({
        "run": ["/bin/sh", "-c", cmd],
        "driver": "oci", "image": "./box", "network": "private",
        "health": {"path": "/resolv", "interval_ms": 200, "timeout_ms": 2000},
    });
    let app = start_service(dir.path(), "delta", web, node_api());
    let member = ready_members(&app, 1).await[0];
    assert!(!member.ip().is_loopback(), "{member}");
    let resolv = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect_timeout(&member, Duration::from_secs(5)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(s, "GET /resolv HTTP/1.0\r\n\r\n").unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        reply
    })
    .await
    .unwrap();
    assert!(resolv.starts_with("HTTP/1.1 200"), "{resolv}");
    assert!(
        resolv.contains("nameserver 127.0.0.1") && !resolv.contains("192.0.2.53"),
        "{resolv}"
    );
    app.stop().await;
    let prefix = container_prefix(&dir.path().join(".strata"));
    assert_eq!(network_of(&prefix), Vec::<String>::new(), "left after a stop");
}

/// A killed node's networks go with it (the container guard deletes them), and a
/// namespace and bridge its guard did not delete (made here by hand, with the node's
/// names) are deleted when a node starts on the same state dir.
#[test]
fn a_killed_node_leaves_no_network_and_a_leftover_is_removed_at_start() {
    if let Ok(dir) = std::env::var(OWNER_DIR) {
        return own_until_killed(Path::new(&dir));
    }
    if !here(OWNER_TEST) {
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
        if line.contains(OWNER_READY) {
            break;
        }
    }
    let made = network_of(&prefix);
    // Two namespaces and veths, the bridge and its rule.
    assert_eq!(made.len(), 6, "{made:#?}");
    owner.kill().unwrap(); // SIGKILL
    owner.wait().unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    while !network_of(&prefix).is_empty() {
        assert!(
            Instant::now() < until,
            "left after the node was killed: {:#?}",
            network_of(&prefix)
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // Leftovers with the node's names (as if the guard had been killed too) are gone
    // once a node started there, before its first container.
    let hash = prefix.trim_start_matches("strata-").trim_end_matches('-');
    let leftover_ns = format!("{prefix}web-9.9");
    let leftover_bridge = format!("sb{hash}zzzzz");
    for args in [
        vec!["netns", "add", leftover_ns.as_str()],
        vec!["link", "add", leftover_bridge.as_str(), "type", "bridge"],
    ] {
        assert!(
            Command::new(ip()).args(&args).status().unwrap().success(),
            "ip {args:?}"
        );
    }
    assert_eq!(network_of(&prefix).len(), 2);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let app = start(dir.path(), "gamma", 1, node_api());
        let members = ready_members(&app, 1).await;
        assert_eq!(get(members[0], "/healthz").await, json!({"ok": true}));
        let now = network_of(&prefix);
        assert!(
            !now.iter()
                .any(|l| l.contains(&leftover_ns) || l.contains(&leftover_bridge)),
            "a leftover survived a node's start: {now:#?}"
        );
        app.stop().await;
    });
    assert_eq!(network_of(&prefix), Vec::<String>::new(), "left after a stop");
}

/// The owner's side: runs an app of two private instances, says "ready", and waits to
/// be killed.
fn own_until_killed(dir: &Path) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let app = start(dir, "gamma", 2, node_api());
        ready_members(&app, 2).await;
        println!("{OWNER_READY}");
        std::future::pending::<()>().await;
    });
}
