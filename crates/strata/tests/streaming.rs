//! Bodies stream through the first tier without being held whole: a 1 GiB upload passes
//! through the real `strata` binary while its peak memory stays small.

mod common;

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Method, StatusCode};
use http_body::{Body, Frame};
use serde_json::{json, Value};

const UPLOAD: u64 = 1024 * 1024 * 1024;
const PEAK_RSS_LIMIT_KB: u64 = 100 * 1024;

/// A body of zeros made as it is sent, in 64 KiB frames, of no declared length (chunked).
struct Zeros {
    left: u64,
    chunk: Bytes,
}

impl Body for Zeros {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(self.chunk.len() as u64);
        self.left -= n;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n as usize)))))
    }
}

/// Peak resident memory of a process, in kB.
fn peak_rss_kb(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// `strata up` (the real binary) of one member service routed at `/`, ready.
async fn one_member_binary(app: &App) -> (Up, std::net::SocketAddr) {
    app.write_manifest(json!({ "web": app.member(json!({ "routes": ["/"] })) }), Value::Null);
    let mut up = Up::spawn(app.path(), &[]);
    let node = up.node_file().await;
    let api = addr_of(node["api"].as_str().unwrap());
    let gateway = addr_of(node["gateway"].as_str().unwrap());
    up.wait_ready(api, 1).await;
    (up, gateway)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_upload_streams_through_the_binary_in_bounded_memory() {
    let app = App::new();
    let (mut up, gateway) = one_member_binary(&app).await;

    let body = Zeros {
        left: UPLOAD,
        chunk: Bytes::from(vec![0u8; 64 * 1024]),
    };
    let req = http::Request::builder()
        .method(Method::POST)
        .uri("/upload/count")
        .header(http::header::HOST, gateway.to_string())
        .body(body)
        .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(90), send(gateway, req))
        .await
        .expect("the upload finishes within 90s")
        .expect("a reply to the upload");
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["bytes"], UPLOAD, "every byte reached the member");
    let seen = app.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0]["transfer_encoding"], "chunked",
        "streamed on to the member, not gathered"
    );

    let peak = peak_rss_kb(up.pid);
    assert!(
        peak < PEAK_RSS_LIMIT_KB,
        "strata's peak RSS was {} MB while a {} MB body passed through",
        peak / 1024,
        UPLOAD >> 20
    );
    signal(up.pid, libc::SIGTERM);
    assert!(up.wait_exit(Duration::from_secs(30)).await.success(), "{}", up.output());
}

/// An upload slower than the attempt timeout is not the member's fault: the attempt
/// timeout bounds the wait for the reply once the request is written, not the upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_outlasts_the_attempt_timeout() {
    use tokio::io::AsyncWriteExt;
    // Ample for a member to answer a request once it is written, even on a busy machine;
    // the upload below goes on for twice as long after the attempt began.
    const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1500);
    let app = App::new();
    let services = json!({
        "web": app.member(json!({
            "routes": ["/"],
            "relay": { "timeout_ms": 60000, "attempt_timeout_ms": ATTEMPT_TIMEOUT.as_millis() as u64 },
        })),
    });
    let node = app.start(app.config(app.manifest(services, Value::Null))).await;
    wait_ready(&node, "web", 1).await;
    let mut stream = tokio::net::TcpStream::connect(node.gateway_addr).await.unwrap();
    stream
        .write_all(b"POST /count HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let piece = vec![b'x'; 16 * 1024];
    let mut chunk = format!("{:x}\r\n", piece.len()).into_bytes();
    chunk.extend_from_slice(&piece);
    chunk.extend_from_slice(b"\r\n");
    stream.write_all(&chunk).await.unwrap();
    // The attempt is under way once the member has the request head (it records it then).
    wait_until("the request head reached the member", READY_TIMEOUT, || {
        app.requests().iter().any(|r| r["path"] == "/count")
    })
    .await;
    let attempt_began = std::time::Instant::now();
    let mut pieces = 1;
    // A pause only makes the upload longer, so a slow machine cannot make this pass. A
    // write that fails means the gateway gave up: its answer, read below, says why.
    while attempt_began.elapsed() < ATTEMPT_TIMEOUT * 2 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if stream.write_all(&chunk).await.is_err() {
            break;
        }
        pieces += 1;
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let (reply, closed) = read_until_close(&mut stream, Duration::from_secs(60)).await;
    assert!(closed, "a reply, then the close asked for: {reply:?}");
    assert_eq!(status_of(&reply), Some(200), "{reply}");
    let body: Value = serde_json::from_str(body_of(&reply).trim()).unwrap_or_else(|e| panic!("{e}: {reply}"));
    assert_eq!(body["bytes"], (pieces * piece.len()) as u64, "{reply}");
    let attempts = app.requests();
    assert_eq!(
        attempts.len(),
        1,
        "one attempt, not timed out and reissued: {attempts:?}"
    );
    assert_eq!(attempts[0]["attempt"], "1");
    stop(node).await;
}

/// Replies stream back from the member as they come, framed by length or by chunks, and
/// the member's connection carries the next request afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_replies_stream_back_by_length_and_by_chunks() {
    use http_body_util::BodyExt;
    const REPLY: u64 = 256 * 1024 * 1024;
    let app = App::new();
    let (mut up, gateway) = one_member_binary(&app).await;
    for chunked in ["0", "1"] {
        let stream = tokio::net::TcpStream::connect(gateway).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = http::Request::builder()
            .uri(format!("/zeros?n={REPLY}&chunked={chunked}"))
            .header(http::header::HOST, gateway.to_string())
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let res = sender.send_request(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        // Counted frame by frame: the test holds none of it either.
        let mut body = res.into_body();
        let mut total = 0u64;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.expect("the reply streams to its end").into_data() {
                total += data.len() as u64;
            }
        }
        assert_eq!(total, REPLY, "chunked={chunked}");
    }
    // The member connection went back to the pool clean: the next request works.
    let after = get(gateway, "/after").await;
    assert_eq!(after.status, StatusCode::OK, "{}", after.text());
    let peak = peak_rss_kb(up.pid);
    assert!(peak < PEAK_RSS_LIMIT_KB, "strata's peak RSS was {} MB", peak / 1024);
    signal(up.pid, libc::SIGTERM);
    assert!(up.wait_exit(Duration::from_secs(30)).await.success(), "{}", up.output());
}
