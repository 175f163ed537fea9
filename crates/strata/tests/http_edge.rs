//! The edge of the first tier: malformed, oversized and slow requests are answered by
//! the gateway (4xx or a close) and never reach a member; unknown routes, empty pools
//! and missed deadlines get clear JSON errors.

mod common;

use std::time::{Duration, Instant};

use common::*;
use http::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

const MAX_HEADER_BYTES: usize = 2048;
const MAX_BODY_BYTES: usize = 1000;

/// `web` at /app, `slow` at /slow with a 300 ms deadline, `down` at /down never ready.
async fn edge_node(app: &App) -> strata_node::Node {
    let never = app.path().join("never-healthy");
    std::fs::write(&never, "").unwrap();
    let services = json!({
        "web": app.member(json!({ "routes": ["/app"] })),
        "slow": app.member(json!({
            "routes": ["/slow"],
            "relay": { "timeout_ms": 300, "attempt_timeout_ms": 300 },
        })),
        "once": app.member(json!({
            "routes": ["/once"],
            "relay": { "timeout_ms": 300, "attempt_timeout_ms": 300, "retries": 0 },
        })),
        "down": app.member(json!({
            "routes": ["/down"],
            "env": { "UNHEALTHY": never.display().to_string() },
        })),
    });
    let gateway = json!({
        "max_header_bytes": MAX_HEADER_BYTES,
        "max_body_bytes": MAX_BODY_BYTES,
        "header_read_timeout_ms": 300,
    });
    let node = app.start(app.config(app.manifest(services, gateway))).await;
    wait_ready(&node, "web", 1).await;
    wait_ready(&node, "slow", 1).await;
    wait_ready(&node, "once", 1).await;
    node
}

/// A 4xx answer, or a close without one.
fn rejected(text: &str, closed: bool) -> bool {
    match status_of(text) {
        Some(status) => (400..500).contains(&status),
        None => closed && text.is_empty(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_never_reach_a_member() {
    let app = App::new();
    let node = edge_node(&app).await;
    let gw = node.gateway_addr;
    let cases: [(&str, &[u8]); 6] = [
        ("bad request line", b"GARBAGE\r\n\r\n"),
        ("no version", b"GET /app/x\r\nHost: a\r\n\r\n"),
        (
            "HTTP/1.0 with Transfer-Encoding",
            b"POST /app/x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "NUL in a header",
            b"GET /app/x HTTP/1.1\r\nHost: a\r\nX-Bad: a\0b\r\n\r\n",
        ),
        (
            "Content-Length not a number",
            b"POST /app/x HTTP/1.1\r\nHost: a\r\nContent-Length: 12abc\r\n\r\nhello world!",
        ),
        ("space before the colon", b"GET /app/x HTTP/1.1\r\nHost : a\r\n\r\n"),
    ];
    for (what, bytes) in cases {
        let (text, closed) = raw(gw, bytes).await;
        assert!(
            rejected(&text, closed),
            "{what}: expected a 4xx or a close, got {text:?} (closed: {closed})"
        );
        assert!(
            closed,
            "{what}: the gateway closes the connection after a malformed request"
        );
    }
    assert_eq!(
        app.requests(),
        Vec::<Value>::new(),
        "no malformed request reached a member"
    );

    // A well-formed request on the same gateway does reach one (so the check above can fail).
    let (text, _) = raw(gw, b"GET /app/fine HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status_of(&text), Some(200), "{text}");
    assert_eq!(app.requests().len(), 1);
    stop(node).await;
}

/// A path with a `.` or `..` segment would be routed by a prefix it may leave at the
/// member (`/app/../down/x` to the `/app` service): 400, never relayed; dots inside a
/// segment are just characters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_with_dot_segments_gets_400_and_is_never_relayed() {
    let app = App::new();
    let node = edge_node(&app).await;
    let gw = node.gateway_addr;
    for path in [
        "/app/../down/x",
        "/app/./x",
        "/app/..",
        "/app/%2e%2e/down",
        "/app/%2E./x",
    ] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        let (text, _) = raw(gw, req.as_bytes()).await;
        assert_eq!(status_of(&text), Some(400), "{path}: {text}");
        assert!(text.contains("dot segments removed"), "{path}: {text}");
    }
    // Asking to switch protocols changes nothing: 400, and the connection closed.
    let upgrade = "GET /app/../down/x HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    let (text, closed) = raw(gw, upgrade.as_bytes()).await;
    assert_eq!((status_of(&text), closed), (Some(400), true), "{text}");
    assert_eq!(app.requests(), Vec::<Value>::new(), "none reached a member");
    for path in ["/app/..x", "/app/.well-known/a", "/app/a.b"] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        let (text, _) = raw(gw, req.as_bytes()).await;
        assert_eq!(status_of(&text), Some(200), "{path}: {text}");
    }
    assert_eq!(app.requests().len(), 3);
    stop(node).await;
}

/// README, "What the first tier guarantees": "a bad request line, a NUL in a header: 400,
/// never relayed". Each gets one reply, a 400, and then the close; nothing of it reaches
/// a member, alone or pipelined behind a good request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_request_line_and_nul_in_a_header_get_400_and_are_never_relayed() {
    let app = App::new();
    let node = edge_node(&app).await;
    let gw = node.gateway_addr;
    let cases: [(&str, &[u8]); 5] = [
        ("a request line of one word", b"GARBAGE\r\nHost: a\r\n\r\n"),
        (
            "a request line without a version",
            b"GET /app/no-version\r\nHost: a\r\n\r\n",
        ),
        (
            "a request line with a bad version",
            b"GET /app/bad-version HTTP/1.x\r\nHost: a\r\n\r\n",
        ),
        (
            "a NUL in a header value",
            b"GET /app/nul-value HTTP/1.1\r\nHost: a\r\nX-Bad: a\0b\r\n\r\n",
        ),
        (
            "a NUL in a header name",
            b"GET /app/nul-name HTTP/1.1\r\nHost: a\r\nX-B\0d: a\r\n\r\n",
        ),
    ];
    for (n, (what, bad)) in cases.iter().enumerate() {
        let (text, closed) = raw(gw, bad).await;
        assert_eq!(status_of(&text), Some(400), "{what}: {text:?}");
        assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{what}: one reply: {text:?}");
        assert!(closed, "{what}: the connection is closed after the 400");

        // Behind a good request on the same connection: that one is relayed and answered,
        // the bad one answered 400.
        let good = format!("GET /app/before-{n} HTTP/1.1\r\nHost: a\r\n\r\n");
        let (text, closed) = raw(gw, &[good.as_bytes(), bad].concat()).await;
        let statuses: Vec<Option<u16>> = text
            .split("HTTP/1.1 ")
            .skip(1)
            .map(|r| r.get(..3)?.parse().ok())
            .collect();
        assert_eq!(statuses, [Some(200), Some(400)], "{what}, pipelined: {text:?}");
        assert!(closed, "{what}, pipelined: the connection is closed after the 400");
    }
    let paths: Vec<String> = app
        .requests()
        .iter()
        .map(|r| r["path"].as_str().unwrap_or("").to_string())
        .collect();
    let before: Vec<String> = (0..cases.len()).map(|n| format!("/app/before-{n}")).collect();
    assert_eq!(paths, before, "only the good requests reached a member");
    stop(node).await;
}

/// Both Content-Length and Transfer-Encoding: what request smuggling needs. hyper drops the
/// Content-Length before the gateway sees the request, so the gateway cannot answer 400;
/// RFC 9112 section 6.3 allows the other answer, which is what this checks: the request is
/// framed by Transfer-Encoding alone, relayed without the Content-Length, and the
/// connection is closed after it, so nothing hidden behind it is ever read as a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_transfer_encoding_cannot_smuggle() {
    let app = App::new();
    let node = edge_node(&app).await;
    // Both orders of the two headers: hyper alone would drop Content-Length and relay.
    for (n, lengths) in [
        "Content-Length: 4\r\nTransfer-Encoding: chunked",
        "Transfer-Encoding: chunked\r\nContent-Length: 4",
    ]
    .iter()
    .enumerate()
    {
        let attack = format!(
            "GET /app/warm-{n} HTTP/1.1\r\nHost: a\r\n\r\n\
             POST /app/cl-te HTTP/1.1\r\nHost: a\r\n{lengths}\r\n\r\n\
             5\r\nhello\r\n0\r\n\r\n\
             GET /app/smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
        );
        // Pipelined behind a good request: that one is answered, then the connection closes.
        let (text, closed) = raw(node.gateway_addr, attack.as_bytes()).await;
        assert!(closed, "the connection is closed after such a request");
        assert_eq!(
            text.matches("HTTP/1.1 ").count(),
            1,
            "only the request before it is answered: {text}"
        );
        assert_eq!(status_of(&text), Some(200), "{text}");
        // On its own: a 400 naming the problem.
        let alone = &attack[attack.find("POST").unwrap()..];
        let (text, closed) = raw(node.gateway_addr, alone.as_bytes()).await;
        assert!(closed);
        assert_eq!(status_of(&text), Some(400), "{text}");
        assert!(text.contains("Content-Length and Transfer-Encoding"), "{text}");
    }
    let paths: Vec<String> = app
        .requests()
        .iter()
        .map(|r| r["path"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        paths,
        vec!["/app/warm-0", "/app/warm-1"],
        "neither the ambiguous request nor what it hid reached a member"
    );
    stop(node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_get_431() {
    let app = App::new();
    let node = edge_node(&app).await;
    let head = |filler: usize| {
        format!(
            "GET /app/h HTTP/1.1\r\nHost: a\r\nX-Filler: {}\r\nConnection: close\r\n\r\n",
            "f".repeat(filler)
        )
    };
    // Well under gateway.max_header_bytes: relayed.
    let (text, _) = raw(node.gateway_addr, head(MAX_HEADER_BYTES / 2).as_bytes()).await;
    assert_eq!(status_of(&text), Some(200), "{text}");
    // Over it: 431, whether just over or far over hyper's own buffer.
    for filler in [MAX_HEADER_BYTES * 2, 64 * 1024] {
        let (text, closed) = raw(node.gateway_addr, head(filler).as_bytes()).await;
        assert_eq!(status_of(&text), Some(431), "header of {filler} bytes: {text:?}");
        assert!(closed);
    }
    assert_eq!(app.requests().len(), 1, "only the small request reached a member");
    stop(node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_the_limit_gets_413() {
    let app = App::new();
    let node = edge_node(&app).await;
    let gw = node.gateway_addr;
    // Declared too large: refused before any of it is read.
    let big = vec![b'x'; MAX_BODY_BYTES + 1];
    let mut req = format!(
        "POST /app/declared HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
        big.len()
    )
    .into_bytes();
    req.extend_from_slice(&big);
    let (text, closed) = raw(gw, &req).await;
    assert_eq!(status_of(&text), Some(413), "{text}");
    assert!(closed);
    let error: Value = serde_json::from_str(body_of(&text)).expect("a JSON error");
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("over the limit of 1000 bytes"),
        "{error}"
    );
    assert_eq!(
        app.requests(),
        Vec::<Value>::new(),
        "a body declared too large never reaches a member"
    );

    // Chunked, with no length declared: found too large as it streams.
    let chunk = "y".repeat(400);
    let chunked = format!(
        "POST /app/chunked HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{0:x}\r\n{chunk}\r\n{0:x}\r\n{chunk}\r\n{0:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    let (text, closed) = raw(gw, chunked.as_bytes()).await;
    assert_eq!(status_of(&text), Some(413), "{text}");
    assert!(closed);
    assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "one response only: {text}");

    // At the limit exactly: relayed whole.
    let fits = post(gw, "/app/fits", vec![b'z'; MAX_BODY_BYTES]).await;
    assert_eq!(fits.status, StatusCode::OK, "{}", fits.text());
    stop(node).await;
}

/// A client that goes away in the middle of a streamed upload is the client's failure, not
/// the member's: the member stays in the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_drops_its_upload_does_not_evict_the_member() {
    let app = App::new();
    let node = edge_node(&app).await;
    let member = node.bus.pool("web").members()[0].clone();
    let mut stream = tokio::net::TcpStream::connect(node.gateway_addr).await.unwrap();
    let head = "POST /app/upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    stream
        .write_all(format!("{head}100\r\n{}\r\n", "u".repeat(256)).as_bytes())
        .await
        .unwrap();
    wait_until("the upload reached the member", READY_TIMEOUT, || {
        app.requests().iter().any(|r| r["path"] == "/app/upload")
    })
    .await;
    drop(stream);
    wait_until("the gateway gave up on the upload", READY_TIMEOUT, || {
        member.inflight() == 0
    })
    .await;
    assert!(
        !member.is_gone(),
        "the member was taken out of the pool for a client's failure"
    );
    for _ in 0..3 {
        let reply = get(node.gateway_addr, "/app/after").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    stop(node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_get_408_and_a_close() {
    let app = App::new();
    let node = edge_node(&app).await;
    let mut stream = tokio::net::TcpStream::connect(node.gateway_addr).await.unwrap();
    let started = Instant::now();
    stream
        .write_all(b"GET /app/slowloris HTTP/1.1\r\nHost: a\r\n")
        .await
        .unwrap();
    let (text, closed) = read_until_close(&mut stream, Duration::from_secs(10)).await;
    assert!(closed, "the gateway closes a connection whose headers never end");
    assert_eq!(status_of(&text), Some(408), "{text:?}");
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(5),
        "header_read_timeout_ms is 300, but the close came after {waited:?}"
    );
    assert_eq!(app.requests(), Vec::<Value>::new());
    stop(node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_route_empty_pool_and_missed_deadline_are_clear_errors() {
    let app = App::new();
    let node = edge_node(&app).await;
    let gw = node.gateway_addr;

    let reply = get(gw, "/nowhere").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.json()["error"], "no route for /nowhere");
    // Prefixes match on segment boundaries.
    assert_eq!(get(gw, "/application").await.status, StatusCode::NOT_FOUND);

    let reply = get(gw, "/down/x").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(reply.header("retry-after").is_some(), "503 carries Retry-After");
    let body = reply.json();
    assert_eq!(body["error"], "no ready instance of service \"down\"");
    assert_eq!(body["service"], "down");

    // A POST (not reissued) that outlives the 300 ms deadline.
    let started = Instant::now();
    let reply = send(gw, request(Method::POST, gw, "/slow/sleep?ms=3000", "x"))
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT, "{}", reply.text());
    assert!(
        waited < Duration::from_millis(2500),
        "answered at the deadline, not when the member woke: {waited:?}"
    );
    let body = reply.json();
    assert!(
        body["error"].as_str().unwrap().contains("did not answer in time"),
        "{body}"
    );
    assert_eq!(body["service"], "slow");
    let sent = app
        .requests()
        .into_iter()
        .filter(|r| r["path"] == "/slow/sleep?ms=3000")
        .count();
    assert_eq!(sent, 1, "a POST that timed out is not sent again");
    // With relay.retries 0, no reissue whatever the request: the answer does not send
    // the client after an Idempotency-Key (walk of stop 51: it did, then said that
    // reissues "were already made").
    let mut post = request(Method::POST, gw, "/once/sleep?ms=3000", "x");
    post.headers_mut().insert("idempotency-key", "k1".parse().unwrap());
    let reply = send(gw, post).await.unwrap();
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT, "{}", reply.text());
    let error = reply.json()["error"].as_str().unwrap().to_string();
    assert!(
        error.ends_with("did not answer in time; not reissued: relay.retries is 0"),
        "{error}"
    );
    stop(node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_gateway_cap_get_503_naming_it() {
    let app = App::new();
    let services = json!({ "web": app.member(json!({ "routes": ["/app"] })) });
    let gateway = json!({ "max_connections": 3 });
    let node = app.start(app.config(app.manifest(services, gateway))).await;
    wait_ready(&node, "web", 1).await;
    let gw = node.gateway_addr;
    let request = b"GET /app/held HTTP/1.1\r\nHost: a\r\n\r\n";

    // Three kept-alive connections, each answered, held open (over every worker).
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut stream = tokio::net::TcpStream::connect(gw).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await.unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert_eq!(status_of(&text), Some(200), "{text:?}");
        open.push(stream);
    }
    let (text, closed) = raw(gw, request).await;
    assert!(closed, "a refused connection is closed: {text:?}");
    assert_eq!(status_of(&text), Some(503), "{text:?}");
    assert!(text.to_ascii_lowercase().contains("retry-after: 1"), "{text:?}");
    let body: Value = serde_json::from_str(body_of(&text)).unwrap();
    assert_eq!(
        (body["code"].as_str(), body["limit"].as_u64()),
        (Some("unavailable"), Some(3))
    );
    assert!(
        body["error"].as_str().unwrap().contains("gateway.max_connections"),
        "{body}"
    );

    // A place given back is taken again.
    drop(open.pop());
    wait_for_async("a freed place to be taken", Duration::from_secs(10), || async {
        let (text, _) = raw(gw, b"GET /app/again HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").await;
        (status_of(&text) == Some(200)).then_some(())
    })
    .await;
    drop(open);
    stop(node).await;
}
