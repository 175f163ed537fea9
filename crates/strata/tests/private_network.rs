//! A whole node with `"network": "private"` services on a real runtime: requests come
//! in through the gateway to a container on its app's bridge; a member calls another
//! service of its app through `$STRATA_URL` (the real node API, with its host and token
//! checks), which relays to that member's namespace address; a member cannot connect to
//! the instance of an app on another node; nothing of the networks is left after stop.
//!
//! Needs runc, `ip` (iproute2) and root; under `CI=true` a missing one fails the test.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::{get, stop, App};
use serde_json::{json, Value};

/// Serves on every address of its namespace: `/who` (its instance id), `/call` (GET
/// `$STRATA_URL/v1/any/api/who` with its token: the reply's status and body) and
/// `/connect?to=IP:PORT` (a TCP connect with a 1 s timeout: `connected` or why not).
const NET_APP: &str = r#"
import errno, json, os, socket, urllib.error, urllib.request
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

def call():
    req = urllib.request.Request(os.environ["STRATA_URL"] + "/v1/any/api/who",
                                 headers={"Authorization": "Bearer " + os.environ["STRATA_TOKEN"]})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return {"status": r.status, "body": json.loads(r.read())}
    except urllib.error.HTTPError as e:
        return {"status": e.code, "body": e.read().decode()}
    except Exception as e:
        return {"status": 0, "body": repr(e)}

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if "/connect?to=" in self.path:
            out = {"result": connect(self.path.split("=", 1)[1])}
        elif self.path.endswith("/call"):
            out = call()
        else:
            out = {"instance": os.environ["STRATA_INSTANCE"], "app": os.environ["STRATA_APP"]}
        body = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"#;

/// The `ip` program: on the PATH, or in Debian's sbin directories.
fn ip() -> std::path::PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain(["/usr/sbin", "/sbin"].map(std::path::PathBuf::from))
        .map(|d| d.join("ip"))
        .find(|p| p.is_file())
        .expect("ip (iproute2)")
}
fn here(test: &str) -> bool {
    let runc = strata_testkit::program("runc", "apt-get install runc").or_else(|why| {
        if Path::new("/usr/sbin/runc").exists() {
            Ok(())
        } else {
            Err(why)
        }
    });
    let ip = strata_testkit::program("ip", "apt-get install iproute2").or_else(|why| {
        if Path::new("/usr/sbin/ip").exists() {
            Ok(())
        } else {
            Err(why)
        }
    });
    // SAFETY: geteuid has no preconditions and touches no memory.
    let root = if unsafe { libc::geteuid() } == 0 {
        Ok(())
    } else {
        Err("root: runc runs rootful containers and ip makes namespaces here".to_string())
    };
    strata_testkit::needs(test, runc) && strata_testkit::needs(test, ip) && strata_testkit::needs(test, root)
}

/// A private-network container service running [`NET_APP`]; `extra` merged over it.
fn service(extra: Value) -> Value {
    let mut spec = json!({
        "run": ["python3", "net.py"],
        "driver": "oci",
        "network": "private",
        "health": {"path": "/who", "interval_ms": 200, "timeout_ms": 2000},
        "stop_grace_ms": 3000,
    });
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    spec
}

/// An app dir the container's user can read, with the program in it.
fn app_dir() -> App {
    use std::os::unix::fs::PermissionsExt;
    let app = App::new();
    std::fs::set_permissions(app.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(app.path().join("net.py"), NET_APP).unwrap();
    app
}

/// Waits until `name` has a ready member; says what the node saw when it has none.
async fn wait_ready(node: &strata_node::Node, name: &str) -> strata_appservice::InstanceStatus {
    let until = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let ready = common::ready_instances(node, name);
        if !ready.is_empty() && !node.bus.pool(name).members().is_empty() {
            return ready[0].clone();
        }
        if std::time::Instant::now() > until {
            panic!(
                "{name} not ready: {:#?}\n{:#?}",
                common::service(node, name),
                node.app.recent_events()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn manifest(app: &str, services: Value) -> strata_manifest::Manifest {
    let text = json!({"strata": 1, "app": app, "services": services}).to_string();
    strata_manifest::parse(&text).expect("a valid manifest")
}

/// The namespaces `ip netns list` shows for the node on `dir`.
fn namespaces(dir: &Path) -> Vec<String> {
    let prefix = strata_appservice::container_prefix(&dir.join(".strata"));
    let out = std::process::Command::new(ip())
        .args(["netns", "list"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_members_are_reached_through_the_gateway_and_the_api_but_not_from_another_app() {
    let test = "private_members_are_reached_through_the_gateway_and_the_api_but_not_from_another_app";
    if !here(test) {
        return;
    }
    let shop = app_dir();
    let services = json!({
        "web": service(json!({"routes": ["/"], "bindings": ["api"]})),
        "api": service(json!({})),
    });
    let node = shop.start(shop.config(manifest("shop", services))).await;
    let other = app_dir();
    let other_node = other
        .start(other.config(manifest("other", json!({"web": service(json!({}))}))))
        .await;
    let web = wait_ready(&node, "web").await;
    let api = wait_ready(&node, "api").await;
    let foreign = wait_ready(&other_node, "web").await;
    let addr = |i: &strata_appservice::InstanceStatus| -> SocketAddr { i.member.as_ref().unwrap().addr };
    let (web_addr, api_addr, foreign_addr) = (addr(&web), addr(&api), addr(&foreign));
    assert!(!web_addr.ip().is_loopback(), "{web_addr}");
    // `ps` says where it is.
    assert_eq!(web.address, Some(web_addr.ip()));

    // Through the gateway, to the container at its namespace address.
    let reply = get(node.gateway_addr, "/who").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["instance"], "web-1");

    // A call through $STRATA_URL: the node API (host and token checked) relays it to
    // the api member in its own namespace.
    let reply = get(node.gateway_addr, "/call").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let call = reply.json();
    assert_eq!(call["status"], 200, "{call}");
    assert_eq!(call["body"]["instance"], "api-1", "{call}");

    // The app's own members are reached directly; another app's are not.
    let connect = |to: SocketAddr| {
        let gateway = node.gateway_addr;
        async move { get(gateway, &format!("/connect?to={to}")).await.json()["result"].clone() }
    };
    assert_eq!(connect(api_addr).await, "connected");
    let refused = connect(foreign_addr).await;
    assert_ne!(
        refused, "connected",
        "web reached another app's instance {foreign_addr}"
    );

    assert_eq!(namespaces(shop.path()).len(), 2);
    stop(node).await;
    stop(other_node).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(namespaces(shop.path()), Vec::<String>::new());
    assert_eq!(namespaces(other.path()), Vec::<String>::new());
}
