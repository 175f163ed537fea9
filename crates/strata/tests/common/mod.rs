//! Shared by the first tier's integration tests: apps of test members in temp dirs,
//! a small HTTP client, polling with deadlines, and process-group checks.
//!
//! Every test file uses part of this module only.
#![allow(dead_code)]

pub mod cluster;
pub mod example;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use strata_appservice::{InstanceState, InstanceStatus, ServiceStatus};
use strata_manifest::Manifest;
use strata_node::{Node, NodeConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// The test member program.
pub const MEMBER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/member.py");
/// The `strata` binary built for these tests.
pub const STRATA: &str = env!("CARGO_BIN_EXE_strata");

/// Long enough for Python members to start on a busy two-core machine.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// Apps of test members
// ---------------------------------------------------------------------------------------

/// An app in a temp dir whose members all append to one record file.
pub struct App {
    pub dir: tempfile::TempDir,
    pub record: PathBuf,
    /// Cancel the nodes started here when the test ends, even by a panic: a node that is
    /// never stopped keeps its gateway threads, and the test's runtime waits for them.
    stop_on_drop: std::sync::Mutex<Vec<tokio_util::sync::DropGuard>>,
}

impl App {
    pub fn new() -> App {
        let dir = tempfile::Builder::new()
            .prefix("strata-test-")
            .tempdir()
            .expect("make a temp dir");
        let record = dir.path().join("record.jsonl");
        App {
            dir,
            record,
            stop_on_drop: Default::default(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A service running the test member, with a fast /healthz check; `extra` is merged
    /// over it (its `env` merged key by key).
    pub fn member(&self, extra: Value) -> Value {
        let mut spec = json!({
            "run": ["python3", MEMBER],
            "env": { "RECORD": self.record.display().to_string() },
            "health": { "path": "/healthz", "interval_ms": 200, "timeout_ms": 1000 },
            "stop_grace_ms": 3000,
        });
        let Value::Object(extra) = extra else {
            panic!("extra must be an object")
        };
        for (key, value) in extra {
            if key == "env" {
                for (k, v) in value.as_object().expect("env is an object") {
                    spec["env"][k] = v.clone();
                }
            } else {
                spec[key] = value;
            }
        }
        spec
    }

    /// A manifest named `test` with these services and gateway settings.
    pub fn manifest(&self, services: Value, gateway: Value) -> Manifest {
        let mut manifest = json!({ "strata": 1, "app": "test", "services": services });
        if !gateway.is_null() {
            manifest["gateway"] = gateway;
        }
        strata_manifest::parse(&manifest.to_string()).expect("a valid test manifest")
    }

    /// Writes the manifest as `strata.json` in the app dir (for the binary).
    pub fn write_manifest(&self, services: Value, gateway: Value) -> PathBuf {
        let manifest = self.manifest(services, gateway);
        let path = self.path().join("strata.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
        path
    }

    /// The node config used by in-process tests: gateway on port 0, state in the temp dir.
    pub fn config(&self, manifest: Manifest) -> NodeConfig {
        let mut config = NodeConfig::new(manifest, self.path().to_path_buf());
        config.gateway_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        config.cache_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        config
    }

    /// Starts a node in this process; the HTTP helpers send its control token.
    pub async fn start(&self, config: NodeConfig) -> Node {
        let shutdown = CancellationToken::new();
        self.stop_on_drop.lock().unwrap().push(shutdown.clone().drop_guard());
        let node = strata_node::Node::start(config, shutdown)
            .await
            .expect("start the node");
        trust(&node);
        node
    }

    /// Every complete line of the record file (a member may be writing the last one
    /// while it is read: a line without its newline yet is left for the next read).
    pub fn records(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.record).unwrap_or_default();
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad record line {l:?}: {e}")))
            .collect()
    }

    /// Requests that reached a member, health checks left out.
    pub fn requests(&self) -> Vec<Value> {
        self.records()
            .into_iter()
            .filter(|r| r["kind"] == "request" && !r["path"].as_str().unwrap_or("").starts_with("/healthz"))
            .collect()
    }

    /// Requests that reached a member carrying this request id.
    pub fn requests_with_id(&self, id: &str) -> Vec<Value> {
        self.requests().into_iter().filter(|r| r["request_id"] == id).collect()
    }

    /// The start lines of members, in order.
    pub fn starts(&self) -> Vec<Value> {
        self.records().into_iter().filter(|r| r["kind"] == "start").collect()
    }
}

/// Stops an in-process node and waits until it has stopped every instance.
pub async fn stop(node: Node) {
    node.stop();
    tokio::time::timeout(Duration::from_secs(30), node.wait())
        .await
        .expect("the node stops within 30s");
}

/// The status of one service, from the App Service.
pub fn service(node: &Node, name: &str) -> ServiceStatus {
    node.app
        .snapshot()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no service {name} in ps"))
}

pub fn ready_instances(node: &Node, name: &str) -> Vec<InstanceStatus> {
    service(node, name)
        .instances
        .into_iter()
        .filter(|i| i.state == InstanceState::Ready)
        .collect()
}

/// Waits until `count` instances of `name` are ready (and members of the pool).
pub async fn wait_ready(node: &Node, name: &str, count: usize) -> Vec<InstanceStatus> {
    wait_for(&format!("{count} ready instance(s) of {name}"), READY_TIMEOUT, || {
        let ready = ready_instances(node, name);
        let members = node.bus.pool(name).members().len();
        (ready.len() == count && members == count).then_some(ready)
    })
    .await
}

// ---------------------------------------------------------------------------------------
// Waiting with deadlines
// ---------------------------------------------------------------------------------------

const POLL: Duration = Duration::from_millis(20);

/// Polls `cond` until it holds; panics naming `what` after `timeout`.
pub async fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    wait_for(what, timeout, || cond().then_some(())).await
}

/// Polls `f` until it gives a value; panics naming `what` after `timeout`.
pub async fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Like [`wait_for`], for a condition that must be awaited.
pub async fn wait_for_async<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

// ---------------------------------------------------------------------------------------
// The node API's control tokens
// ---------------------------------------------------------------------------------------

/// The control token of each node API address a test started (or found), which the
/// HTTP helpers and `strata --api` send: the tests act as the node's operator.
static TOKENS: std::sync::Mutex<Vec<(SocketAddr, String)>> = std::sync::Mutex::new(Vec::new());

/// The HTTP helpers send this node's control token to its API.
pub fn trust(node: &Node) {
    remember_token(node.api_addr, node.control_token());
}

pub fn remember_token(api: SocketAddr, token: &str) {
    let mut tokens = TOKENS.lock().unwrap();
    tokens.retain(|(a, _)| *a != api);
    tokens.push((api, token.to_string()));
}

/// The control token of the node API at `addr`, if a test started that node.
pub fn token_of(addr: SocketAddr) -> Option<String> {
    TOKENS
        .lock()
        .unwrap()
        .iter()
        .find(|(a, _)| *a == addr)
        .map(|(_, t)| t.clone())
}

/// `Authorization: Bearer TOKEN\r\n` for a request written by hand to a node API (empty
/// when the test did not start that node).
pub fn auth_line(api: SocketAddr) -> String {
    token_of(api).map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"))
}

/// Routes of the node API whose bodies are bytes, not JSON.
fn raw_body_route(path: &str) -> bool {
    ["/v1/kv/", "/v1/blobs/", "/v1/cache/keys/", "/v1/any/", "/v1/all/"]
        .iter()
        .any(|p| path.starts_with(p))
}

// ---------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------

/// A whole response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("reply is not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Sends one request on a new HTTP/1.1 connection and reads the whole reply.
pub async fn send<B>(addr: SocketAddr, req: Request<B>) -> Result<Reply, BoxError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let res = sender.send_request(req).await?;
    read_reply(res).await
}

async fn read_reply(res: hyper::Response<hyper::body::Incoming>) -> Result<Reply, BoxError> {
    let (head, body) = res.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Reply {
        status: head.status,
        version: head.version,
        headers: head.headers,
        body,
    })
}

/// A request with a small body (or none). To a node API a test started, it carries the
/// node's control token, and a body for a JSON endpoint says it is JSON (a test may
/// replace either header).
pub fn request(method: Method, addr: SocketAddr, path: &str, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    let body = body.into();
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, addr.to_string());
    if let Some(token) = token_of(addr) {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        if !body.is_empty() && !raw_body_route(path) {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
        }
    }
    req.body(Full::new(body)).unwrap()
}

pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    send(addr, request(Method::GET, addr, path, Bytes::new()))
        .await
        .unwrap_or_else(|e| panic!("GET {path} at {addr}: {e}"))
}

pub async fn post(addr: SocketAddr, path: &str, body: impl Into<Bytes>) -> Reply {
    send(addr, request(Method::POST, addr, path, body))
        .await
        .unwrap_or_else(|e| panic!("POST {path} at {addr}: {e}"))
}

/// A keep-alive HTTP/1.1 connection for many requests in a row.
pub struct Client {
    addr: SocketAddr,
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.expect("connect to the gateway");
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP/1.1 handshake");
        tokio::spawn(conn);
        Client { addr, sender }
    }

    pub async fn get(&mut self, path: &str) -> Result<Reply, BoxError> {
        self.send(Method::GET, path, Bytes::new()).await
    }

    pub async fn send(&mut self, method: Method, path: &str, body: Bytes) -> Result<Reply, BoxError> {
        self.sender.ready().await?;
        let res = self.sender.send_request(request(method, self.addr, path, body)).await?;
        read_reply(res).await
    }
}

/// Writes `bytes` on a new connection, then reads until the server closes it (or 10s
/// pass). Returns everything read and whether the server closed the connection.
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> (String, bool) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // The server may answer and close before all is written; that is fine.
    let _ = stream.write_all(bytes).await;
    read_until_close(&mut stream, Duration::from_secs(10)).await
}

/// Reads until the peer closes or `timeout` passes; returns the text and whether it closed.
pub async fn read_until_close(stream: &mut TcpStream, timeout: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), false),
        }
    }
}

/// The status code of the first response in `text`, if there is one.
pub fn status_of(text: &str) -> Option<u16> {
    let rest = text
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| text.strip_prefix("HTTP/1.0 "))?;
    rest.get(..3)?.parse().ok()
}

/// The body of the first response in `text` (after the blank line).
pub fn body_of(text: &str) -> &str {
    text.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

// ---------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------

/// One line of /proc/PID/stat, the fields the tests need.
#[derive(Debug, Clone)]
pub struct ProcStat {
    pub pid: i32,
    pub comm: String,
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
}

pub fn proc_stat(pid: i32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_string();
    let mut fields = text[close + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(ProcStat {
        pid,
        comm,
        state,
        ppid,
        pgrp,
    })
}

fn all_processes() -> Vec<ProcStat> {
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(proc_stat)
        .collect()
}

/// Live processes (zombies and dead ones left out) of process group `pgid`.
pub fn group_alive(pgid: i32) -> Vec<ProcStat> {
    all_processes()
        .into_iter()
        .filter(|p| p.pgrp == pgid && !matches!(p.state, 'Z' | 'X' | 'x'))
        .collect()
}

/// Whether the process runs (a zombie counts as gone).
pub fn alive(pid: i32) -> bool {
    proc_stat(pid).is_some_and(|p| !matches!(p.state, 'Z' | 'X' | 'x'))
}

/// Live children of `pid`.
pub fn children(pid: i32) -> Vec<ProcStat> {
    all_processes()
        .into_iter()
        .filter(|p| p.ppid == pid && !matches!(p.state, 'Z' | 'X' | 'x'))
        .collect()
}

/// Live orphan guards started by `parent`: the `/bin/sh` script of
/// `crates/appservice/src/guard.rs` (with cgroup containment), a child in a process group
/// of its own, holding a pipe from the node.
pub fn orphan_guards(parent: i32) -> Vec<ProcStat> {
    children(parent)
        .into_iter()
        .filter(|p| p.comm == "sh" && p.pgrp == p.pid)
        .filter(|p| {
            std::fs::read(format!("/proc/{}/cmdline", p.pid))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("# strata orphan guard"))
        })
        .collect()
}

pub fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) touches no memory of this process.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}) failed: {}", std::io::Error::last_os_error());
}

/// Kills what is left of these process groups (started by the test) when dropped, so a
/// failed test leaves nothing running.
pub struct KillGroupsOnDrop(pub Vec<i32>);

impl Drop for KillGroupsOnDrop {
    fn drop(&mut self) {
        for &g in &self.0 {
            if !group_alive(g).is_empty() {
                // SAFETY: kill(2) touches no memory of this process.
                unsafe { libc::kill(-g, libc::SIGKILL) };
            }
        }
    }
}

/// Waits until no live process is left in any of `groups`.
pub async fn wait_groups_gone(groups: &[i32], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let left: Vec<ProcStat> = groups.iter().flat_map(|&g| group_alive(g)).collect();
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "processes left behind after {timeout:?}: {left:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

// ---------------------------------------------------------------------------------------
// The strata binary
// ---------------------------------------------------------------------------------------

/// `strata ARGS` run in `dir`, with the output captured. Given `--api URL` of a node a
/// test started, it gets that node's control token in `$STRATA_CONTROL_TOKEN`, as an
/// operator elsewhere would; otherwise it finds the token itself.
pub async fn strata(dir: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(STRATA);
    cmd.args(args).current_dir(dir).stdin(Stdio::null()).kill_on_drop(true);
    let api = args.iter().position(|a| *a == "--api").and_then(|i| args.get(i + 1));
    if let Some(token) = api
        .and_then(|url| url.trim_start_matches("http://").parse().ok())
        .and_then(token_of)
    {
        cmd.env("STRATA_CONTROL_TOKEN", token);
    }
    tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("strata {args:?} did not finish within 30s"))
        .expect("run strata")
}

/// A `strata up` running in the background. Dropping it SIGKILLs the process if it still
/// runs (the orphan guard then stops its instances).
pub struct Up {
    pub child: Child,
    pub pid: i32,
    pub dir: PathBuf,
}

impl Up {
    /// Runs `strata up --listen 127.0.0.1:0` in `dir`; output goes to `dir/up.out`.
    pub fn spawn(dir: &Path, extra: &[&str]) -> Up {
        let mut args = vec!["--listen", "127.0.0.1:0", "--cache-listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        Up::spawn_with(dir, &args, &[])
    }

    /// Runs `strata up ARGS` in `dir` with `env` added; output goes to `dir/up.out`.
    pub fn spawn_with(dir: &Path, args: &[&str], env: &[(&str, &Path)]) -> Up {
        let out = std::fs::File::create(dir.join("up.out")).unwrap();
        let child = Command::new(STRATA)
            .arg("up")
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, *v)))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawn strata up");
        let pid = child.id() as i32;
        Up {
            child,
            pid,
            dir: dir.to_path_buf(),
        }
    }

    /// What `strata up` printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.dir.join("up.out")).unwrap_or_default()
    }

    /// The node file `strata up` writes once it listens; the HTTP helpers then send the
    /// node's control token (from `.strata/control.token`, written before it).
    pub async fn node_file(&mut self) -> Value {
        let path = self.dir.join(".strata").join("node.json");
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(text) = std::fs::read_to_string(&path) {
                if let Ok(v) = serde_json::from_str::<Value>(&text) {
                    let token = strata_node::nodefile::read_token(&self.dir.join(".strata"));
                    if let (Some(api), Some(token)) = (v["api"].as_str(), token) {
                        remember_token(addr_of(api), &token);
                    }
                    return v;
                }
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("strata up exited with {status}:\n{}", self.output());
            }
            assert!(
                Instant::now() < deadline,
                "strata up wrote no node.json:\n{}",
                self.output()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// `/v1/ps` of the node once every service has `count` ready instances.
    pub async fn wait_ready(&mut self, api: SocketAddr, count: u64) -> Value {
        wait_for_async(
            &format!("{count} ready instance(s) per service"),
            READY_TIMEOUT,
            || async {
                let ps = get(api, "/v1/ps").await.json();
                let all_ready = ps["services"].as_array()?.iter().all(|s| s["ready"] == count);
                all_ready.then_some(ps)
            },
        )
        .await
    }

    /// Waits for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "strata up still runs after {timeout:?}:\n{}",
                self.output()
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `http://127.0.0.1:N` to an address.
pub fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("an address")
}

/// Pids of the instances in a `/v1/ps` reply.
pub fn pids_in_ps(ps: &Value) -> Vec<i32> {
    ps["services"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["instances"].as_array().into_iter().flatten())
        .filter_map(|i| i["pid"].as_i64())
        .map(|p| p as i32)
        .collect()
}

/// The value of the one sample of `/v1/metrics` text whose name and labels contain
/// `needle` (e.g. `service="echo",protocol="grpc",code="2xx"}`); panics if not exactly one.
pub fn metric(text: &str, needle: &str) -> f64 {
    let found: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(needle))
        .collect();
    assert_eq!(found.len(), 1, "one sample with {needle} in\n{text}");
    let value = found[0].rsplit(' ').next().unwrap();
    value.parse().unwrap_or_else(|_| panic!("a number in {:?}", found[0]))
}

/// The last `lines` lines of every `*.out` log in `dir` (the nodes of a cluster test),
/// each under its path, for a failure message.
pub fn log_tails(dir: &Path, lines: usize) -> String {
    let mut logs = String::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().ends_with(".out") {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(lines).collect();
            logs.push_str(&format!(
                "\n--- {}\n{}",
                entry.path().display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
    }
    logs
}

/// A Python program's one JSON line (the fixtures' grpcio and websockets clients):
/// fails the test with its output when it fails.
pub async fn run_python(args: Vec<String>) -> Value {
    let out = tokio::task::spawn_blocking(move || Command::new("python3").args(&args).output())
        .await
        .unwrap()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}
