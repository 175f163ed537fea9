//! The node API is bounded like the gateway (issue 10): a head trickled byte by byte
//! gets 408 within the header timeout, an idle kept-alive connection is closed while a
//! long poll or a followed log outlives the idle timeout, connections past the cap get
//! 503 naming it, every route reads at most its own limit, and JSON bodies are parsed
//! into typed structs: a 64 MiB body of zeros is refused at its first bytes, and a field
//! of the wrong type is named by its path. Real nodes on port 0, raw sockets.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use strata_node::{Node, NodeConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// A hang guard for waits that should end by themselves, far above what they take.
const GUARD: Duration = Duration::from_secs(60);

struct Api {
    node: Node,
    addr: SocketAddr,
    token: String,
    dir: tempfile::TempDir,
}

async fn start(api_server: impl FnOnce(&mut strata_api::ServerConfig)) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let manifest = strata_manifest::parse(
        r#"{"strata": 1, "app": "t",
            "services": {"idle": {"run": ["true"], "instances": {"min": 0, "max": 1}}},
            "queues": {"jobs": {}}}"#,
    )
    .unwrap();
    let mut config = NodeConfig::new(manifest, dir.path().to_path_buf());
    config.gateway_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    api_server(&mut config.api_server);
    let node = Node::start(config, CancellationToken::new())
        .await
        .expect("start the node");
    let addr = node.api_addr;
    let token = node.control_token().to_string();
    Api { node, addr, token, dir }
}

impl Api {
    fn head(&self, method: &str, path: &str, extra: &str) -> String {
        format!(
            "{method} {path} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {}\r\n{extra}\r\n",
            self.addr, self.token
        )
    }

    /// One request with a JSON body on a fresh connection, closed after.
    async fn call(&self, method: &str, path: &str, body: &str) -> Reply {
        let head = self.head(
            method,
            path,
            &format!(
                "content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
                body.len()
            ),
        );
        let mut stream = TcpStream::connect(self.addr).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        // A body over a route's limit may be answered (and the connection ended) before
        // all of it is sent: the answer is what counts.
        let _ = stream.write_all(body.as_bytes()).await;
        read_reply(&mut stream).await
    }

    async fn stop(self) {
        self.node.stop();
        self.node.wait().await;
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

/// Reads one reply framed by Content-Length (every reply these tests read has one).
async fn read_reply(stream: &mut (impl AsyncRead + Unpin)) -> Reply {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tokio::time::timeout(GUARD, stream.read(&mut chunk))
            .await
            .expect("a reply")
            .unwrap();
        assert!(n > 0, "closed before a reply: {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no content-length: {head}"));
    while buf.len() < head_end + length {
        let n = tokio::time::timeout(GUARD, stream.read(&mut chunk))
            .await
            .expect("a body")
            .unwrap();
        assert!(n > 0, "closed inside a body");
        buf.extend_from_slice(&chunk[..n]);
    }
    Reply {
        status: head[9..12].parse().unwrap(),
        body: String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned(),
        head,
    }
}

/// Waits until the server closes `stream`, dropping what it sends; the bytes read.
async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(GUARD, stream.read_to_end(&mut out))
        .await
        .expect("the server closes the connection");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_trickled_byte_by_byte_gets_408_within_the_header_timeout() {
    let timeout = Duration::from_millis(800);
    let api = start(|c| c.header_timeout = timeout).await;
    let stream = TcpStream::connect(api.addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    // A head that never ends, one byte every 20 ms: each byte alone would reset a timer
    // that counted from the last byte.
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    // Before the first byte goes out: the server's timer starts at that byte or later.
    let started = Instant::now();
    let trickle = tokio::spawn(async move {
        let mut head = api_head_start().into_bytes();
        head.extend(std::iter::repeat_n(b'a', 100_000));
        for b in head {
            if write.write_all(&[b]).await.is_err() {
                return;
            }
            counter.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let mut out = Vec::new();
    let _ = tokio::time::timeout(GUARD, read.read_to_end(&mut out))
        .await
        .expect("the server closes the connection");
    let waited = started.elapsed();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    let body: Value = serde_json::from_str(text.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(body["code"], "deadline_exceeded", "{body}");
    assert!(body["error"].as_str().unwrap().contains("800ms"), "{body}");
    assert!(waited >= timeout, "cut after {waited:?}, before the header timeout");
    // The client was still sending when it was cut: the timer counts from the head's
    // first byte, not from its last.
    let bytes = sent.load(Ordering::Relaxed);
    assert!(bytes > 10, "only {bytes} bytes were trickled");
    trickle.abort();
    api.stop().await;
}

fn api_head_start() -> String {
    "GET /v1/health HTTP/1.1\r\nx-slow: ".to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_but_long_polls_and_followed_logs_are_not() {
    let idle = Duration::from_millis(400);
    let api = start(|c| c.idle_timeout = idle).await;

    // Kept alive after a reply, then nothing: closed, quietly.
    let mut stream = TcpStream::connect(api.addr).await.unwrap();
    // Before the request: the server's idle time counts from its reply, later.
    let asked = Instant::now();
    stream
        .write_all(api.head("GET", "/v1/health", "").as_bytes())
        .await
        .unwrap();
    assert_eq!(read_reply(&mut stream).await.status, 200);
    let rest = until_closed(&mut stream).await;
    assert!(rest.is_empty(), "closed without a reply: {rest:?}");
    assert!(asked.elapsed() >= idle, "closed after {:?}", asked.elapsed());

    // A long poll three times the idle timeout gets its answer, and the connection
    // serves the next request.
    let mut stream = TcpStream::connect(api.addr).await.unwrap();
    let poll = api.head("POST", "/v1/queues/jobs/groups/g/fetch?wait_ms=1200", "");
    let asked = Instant::now();
    stream.write_all(poll.as_bytes()).await.unwrap();
    let reply = read_reply(&mut stream).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["messages"], serde_json::json!([]));
    assert!(asked.elapsed() >= 3 * idle, "the poll waited {:?}", asked.elapsed());
    stream
        .write_all(api.head("GET", "/v1/health", "").as_bytes())
        .await
        .unwrap();
    assert_eq!(read_reply(&mut stream).await.status, 200);

    // A followed log with nothing to say for longer than the idle timeout stays open
    // and shows the line written after.
    let mut stream = TcpStream::connect(api.addr).await.unwrap();
    let follow = api.head("GET", "/v1/services/idle/logs?follow=true", "");
    stream.write_all(follow.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(GUARD, stream.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed before the head");
        seen.extend_from_slice(&chunk[..n]);
    }
    tokio::time::sleep(3 * idle).await;
    let logs = api.dir.path().join(".strata/logs/idle");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::write(logs.join("idle-1.log"), "written after a quiet spell\n").unwrap();
    let line = b"idle-1 | written after a quiet spell";
    while !seen.windows(line.len()).any(|w| w == line) {
        let n = tokio::time::timeout(GUARD, stream.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "a followed log was closed: {:?}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&chunk[..n]);
    }
    drop(stream);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_get_503_naming_it() {
    let api = start(|c| c.max_connections = 3).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(api.addr).await.unwrap();
        stream
            .write_all(api.head("GET", "/v1/health", "").as_bytes())
            .await
            .unwrap();
        assert_eq!(read_reply(&mut stream).await.status, 200);
        open.push(stream);
    }
    let mut fourth = TcpStream::connect(api.addr).await.unwrap();
    // Its request may or may not be sent before the refusal: the answer is the same.
    let _ = fourth.write_all(api.head("GET", "/v1/health", "").as_bytes()).await;
    let refused = read_reply(&mut fourth).await;
    assert_eq!(refused.status, 503, "{refused:?}");
    assert!(
        refused.head.to_ascii_lowercase().contains("retry-after: 1"),
        "{refused:?}"
    );
    let body = refused.json();
    assert_eq!(
        (body["code"].as_str(), body["limit"].as_u64()),
        (Some("unavailable"), Some(3))
    );
    assert!(body["error"].as_str().unwrap().contains("3 connections"), "{body}");
    assert!(until_closed(&mut fourth).await.is_empty());

    // A place given back is taken again.
    drop(open.pop());
    let until = Instant::now() + GUARD;
    loop {
        let mut stream = TcpStream::connect(api.addr).await.unwrap();
        let _ = stream.write_all(api.head("GET", "/v1/health", "").as_bytes()).await;
        match read_reply(&mut stream).await.status {
            200 => break,
            503 if Instant::now() < until => tokio::time::sleep(Duration::from_millis(20)).await,
            other => panic!("{other} after a connection closed"),
        }
    }
    drop(open);
    api.stop().await;
}

/// Sends `total` bytes of `start` then `filler` repeated, chunked, while reading the
/// reply; the reply.
async fn publish_chunked(api: &Api, start: &[u8], filler: &[u8], total: usize) -> Reply {
    let stream = TcpStream::connect(api.addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let head = api.head(
        "POST",
        "/v1/queues/jobs/messages",
        "content-type: application/json\r\ntransfer-encoding: chunked\r\n",
    );
    let (start, filler) = (start.to_vec(), filler.to_vec());
    let sender = tokio::spawn(async move {
        write.write_all(head.as_bytes()).await?;
        let mut block = start.clone();
        while block.len() < 64 << 10 {
            block.extend_from_slice(&filler);
        }
        let mut sent = 0;
        while sent < total {
            let frame = [format!("{:x}\r\n", block.len()).as_bytes(), &block, b"\r\n"].concat();
            write.write_all(&frame).await?;
            sent += block.len();
            block = filler.repeat((64 << 10) / filler.len());
        }
        write.write_all(b"0\r\n\r\n").await
    });
    let reply = read_reply(&mut read).await;
    sender.abort();
    reply
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_body_of_zeros_is_refused_at_its_first_bytes() {
    let api = start(|_| {}).await;
    for (start, filler, says) in [
        (&b"[0"[..], &b",0"[..], "the body is an array"),
        (b"0", b"0", "the body is a number"),
        (b"\0", b"\0", "body is not JSON"),
        (br#"{"messages": [0"#, b",0", "messages[0]"),
    ] {
        let reply = publish_chunked(&api, start, filler, 64 << 20).await;
        assert_eq!(reply.status, 400, "{reply:?}");
        let error = reply.json()["error"].as_str().unwrap().to_string();
        assert!(error.contains(says), "{error:?} should say {says:?}");
    }
    // Declared over the publish limit: 413 before a byte of it is read.
    let mut stream = TcpStream::connect(api.addr).await.unwrap();
    let head = api.head(
        "POST",
        "/v1/queues/jobs/messages",
        "content-type: application/json\r\ncontent-length: 67108864\r\n",
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let reply = read_reply(&mut stream).await;
    assert_eq!(reply.status, 413, "{reply:?}");
    let body = reply.json();
    assert_eq!(
        (body["code"].as_str(), body["limit"].as_u64()),
        (Some("payload_too_large"), Some(16 << 20)),
        "{body}"
    );
    // The queue took nothing, and still serves.
    let reply = api
        .call("POST", "/v1/queues/jobs/messages", r#"{"body": "after"}"#)
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    assert_eq!(reply.json()["offset"], 0);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_route_reads_at_most_its_limit() {
    let api = start(|_| {}).await;
    let over = |limit: usize| "x".repeat(limit + 1);
    for (method, path, limit) in [
        ("POST", "/v1/services/idle/scale", 16 << 10),
        ("PUT", "/v1/queues/new", 16 << 10),
        ("PUT", "/v1/kv/ns/key", 16 << 20),
    ] {
        let reply = api.call(method, path, &over(limit)).await;
        assert_eq!(reply.status, 413, "{method} {path}: {reply:?}");
        let body = reply.json();
        assert_eq!(body["limit"].as_u64(), Some(limit as u64), "{method} {path}: {body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains(&format!("at most {limit} bytes")),
            "{body}"
        );
    }
    // A head over the limit: 431.
    let mut stream = TcpStream::connect(api.addr).await.unwrap();
    let head = api.head("GET", "/v1/health", &format!("x-big: {}\r\n", "b".repeat(70 << 10)));
    let _ = stream.write_all(head.as_bytes()).await;
    let reply = read_reply(&mut stream).await;
    assert_eq!(reply.status, 431, "{reply:?}");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_of_each_route_answers_400_naming_the_field() {
    let api = start(|_| {}).await;
    for (method, path, body, field) in [
        (
            "POST",
            "/v1/services/idle/scale",
            r#"{"instances": "two"}"#,
            "instances",
        ),
        ("POST", "/v1/services/idle/scale", r#"{"instances": 1, "to": 2}"#, "to"),
        ("PUT", "/v1/queues/fresh", r#"{"lease_ms": "long"}"#, "lease_ms"),
        ("POST", "/v1/queues/jobs/messages", r#"{"body": 7}"#, "body"),
        (
            "POST",
            "/v1/queues/jobs/messages",
            r#"{"messages": [{"body": "a"}, {"body": "b", "dedupe_id": 5}]}"#,
            "messages[1].dedupe_id",
        ),
        (
            "POST",
            "/v1/queues/jobs/groups/g/ack",
            r#"{"offsets": [1, "x"]}"#,
            "offsets[1]",
        ),
        (
            "POST",
            "/v1/queues/jobs/groups/g/nack",
            r#"{"offsets": "all"}"#,
            "offsets",
        ),
        ("POST", "/v1/reply", r#"{"reply_to": 5, "body": "x"}"#, "reply_to"),
    ] {
        let reply = api.call(method, path, body).await;
        assert_eq!(reply.status, 400, "{method} {path} {body}: {reply:?}");
        let v = reply.json();
        let error = v["error"].as_str().unwrap();
        assert!(
            error.contains(field),
            "{method} {path}: {error:?} should name {field:?}"
        );
        assert_eq!(v["code"], "bad_request", "{v}");
        if !error.contains("unknown field") {
            assert_eq!(v["field"], field, "{method} {path}: {v}");
        }
    }
    api.stop().await;
}
