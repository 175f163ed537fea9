//! Readiness and liveness checks: a GET of the health path, a port that accepts, or the
//! gRPC health protocol (`grpc`).
//!
//! The check is a well-behaved HTTP/1.1 client, because the instance's server sees
//! every one: a complete request with `Connection: close`, the whole reply read (to its
//! `Content-Length`, the end of its chunks, or the server's close), then a plain close.
//! Closing with unread bytes in the socket would make the kernel send a reset, and a
//! server still writing the reply (Python's `http.server` among them) would log a
//! `ConnectionResetError` traceback for it.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The gRPC health check, which the node supplies (`AppConfig::grpc_probe`): the App
/// Service speaks no HTTP/2 itself.
pub type GrpcProbe = Arc<dyn Fn(SocketAddr, String) -> Pin<Box<dyn Future<Output = Outcome> + Send>> + Send + Sync>;

/// What a check asks of an instance (`health` in the manifest).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Check<'a> {
    /// That its port accepts a connection (no `health`, or one with neither `path` nor
    /// `grpc`: its timings for the port).
    Port,
    /// That a GET of this path answers 2xx.
    Http(&'a str),
    /// That `grpc.health.v1.Health/Check` of this service answers SERVING.
    Grpc(&'a str),
}

impl<'a> Check<'a> {
    pub(crate) fn of(health: Option<&'a strata_manifest::HealthSpec>) -> Check<'a> {
        match health {
            None => Check::Port,
            Some(h) => match &h.grpc {
                Some(service) => Check::Grpc(service),
                None if h.path.is_empty() => Check::Port,
                None => Check::Http(&h.path),
            },
        }
    }

    /// The check in words, for events and `ps`.
    pub(crate) fn describe(&self, port: u16) -> String {
        match self {
            Check::Port => format!("a connection to port {port}"),
            Check::Http(path) => format!("GET {path}"),
            Check::Grpc(service) => format!("the gRPC health check of {service:?}"),
        }
    }
}

/// Checks the instance at `addr` once, within `timeout`.
pub(crate) async fn run(addr: SocketAddr, what: Check<'_>, timeout: Duration, grpc: Option<&GrpcProbe>) -> Outcome {
    match what {
        Check::Port => check(addr, None, timeout).await,
        Check::Http(path) => check(addr, Some(path), timeout).await,
        Check::Grpc(service) => match grpc {
            Some(probe) => tokio::time::timeout(timeout, probe(addr, service.to_string()))
                .await
                .unwrap_or(Outcome::TimedOut),
            None => Outcome::Grpc("cannot be made: this App Service was given no gRPC health check".to_string()),
        },
    }
}

/// The largest reply head read; a longer one fails the check.
const MAX_HEAD: usize = 16 * 1024;

/// How one check went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The port accepted (no health path), or the path answered 2xx.
    Passed,
    /// Nothing listens on the port: the connection was refused.
    Refused,
    /// The path answered with this status.
    Status(u16),
    /// The connection was closed, or the reply was not HTTP, before a status came.
    NoReply,
    /// No answer within the check's timeout.
    TimedOut,
    /// The gRPC health check did not answer SERVING: what it answered.
    Grpc(String),
}

impl Outcome {
    pub fn passed(&self) -> bool {
        *self == Outcome::Passed
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Passed => write!(f, "passed"),
            Outcome::Refused => write!(f, "connection refused"),
            Outcome::Status(code) => write!(f, "answered {code}"),
            Outcome::NoReply => write!(f, "closed without an HTTP reply"),
            Outcome::TimedOut => write!(f, "no answer in time"),
            Outcome::Grpc(what) => write!(f, "{what}"),
        }
    }
}

/// Checks the instance at `addr` once, within `timeout`.
pub(crate) async fn check(addr: SocketAddr, path: Option<&str>, timeout: Duration) -> Outcome {
    let deadline = Instant::now() + timeout;
    let attempt = async {
        let mut stream = match TcpStream::connect(addr).await {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return (Outcome::Refused, None),
            Err(_) => return (Outcome::NoReply, None),
        };
        let Some(path) = path else {
            // Nothing sent, nothing to read: closing now is a plain FIN.
            return (Outcome::Passed, None);
        };
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: strata-health\r\nConnection: close\r\n\r\n");
        if stream.write_all(request.as_bytes()).await.is_err() {
            return (Outcome::NoReply, None);
        }
        let mut reply = Reply::default();
        let outcome = reply.read_head(&mut stream).await;
        (outcome, Some((stream, reply)))
    };
    let (outcome, rest) = match tokio::time::timeout_at(deadline, attempt).await {
        Ok(done) => done,
        Err(_) => return Outcome::TimedOut,
    };
    if let Some((mut stream, reply)) = rest {
        // The verdict is in; what is left of the reply is read so the close is clean.
        let _ = tokio::time::timeout_at(deadline, reply.read_rest(&mut stream)).await;
    }
    outcome
}

/// A reply as it is read: the bytes so far, and where its body ends once the head says.
#[derive(Default)]
struct Reply {
    buf: Vec<u8>,
    /// Length of the head, once complete.
    head_len: usize,
    framing: Framing,
}

#[derive(Default, Clone, Copy)]
enum Framing {
    /// Read to the server's close.
    #[default]
    UntilClose,
    Length(u64),
    Chunked,
}

impl Reply {
    /// Reads until the head is complete; the outcome is its status.
    async fn read_head(&mut self, stream: &mut TcpStream) -> Outcome {
        let mut chunk = [0u8; 4096];
        loop {
            match parse_head(&self.buf) {
                Head::Complete { len, status, framing } => {
                    self.head_len = len;
                    self.framing = framing;
                    return if (200..300).contains(&status) {
                        Outcome::Passed
                    } else {
                        Outcome::Status(status)
                    };
                }
                Head::Invalid => return Outcome::NoReply,
                Head::Partial if self.buf.len() > MAX_HEAD => return Outcome::NoReply,
                Head::Partial => {}
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return Outcome::NoReply,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads the rest of the reply: to its length, the end of its chunks, or the close.
    /// Whatever comes after a head that could not be read is read to the close too.
    async fn read_rest(mut self, stream: &mut TcpStream) {
        let mut chunk = [0u8; 8192];
        // Body bytes seen so far, and (for chunked bodies) the decoder's state.
        let mut body = self.buf.len().saturating_sub(self.head_len) as u64;
        let mut chunks = ChunkScan::default();
        if let Framing::Chunked = self.framing {
            chunks.feed(&self.buf[self.head_len.min(self.buf.len())..]);
        }
        self.buf = Vec::new();
        loop {
            let done = match self.framing {
                Framing::Length(len) => body >= len,
                Framing::Chunked => chunks.done(),
                Framing::UntilClose => false,
            };
            if done {
                return;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    body += n as u64;
                    if let Framing::Chunked = self.framing {
                        chunks.feed(&chunk[..n]);
                    }
                }
            }
        }
    }
}

enum Head {
    Partial,
    Invalid,
    Complete { len: usize, status: u16, framing: Framing },
}

/// Reads a reply head: `HTTP/1.x NNN ...`, then headers to an empty line.
fn parse_head(buf: &[u8]) -> Head {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        // A reply that does not even start like HTTP is not worth waiting for.
        let prefix = &buf[..buf.len().min(7)];
        return if b"HTTP/1."[..prefix.len()] == *prefix {
            Head::Partial
        } else {
            Head::Invalid
        };
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = match status_line.split(' ').nth(1).map(str::parse::<u16>) {
        Some(Ok(code)) if status_line.starts_with("HTTP/1.") => code,
        _ => return Head::Invalid,
    };
    let mut framing = Framing::UntilClose;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") && value.to_ascii_lowercase().ends_with("chunked") {
            framing = Framing::Chunked;
        } else if name.eq_ignore_ascii_case("content-length") {
            if let (Framing::UntilClose, Ok(len)) = (framing, value.parse()) {
                framing = Framing::Length(len);
            }
        }
    }
    // Replies that have no body whatever their headers say.
    if status == 204 || status == 304 || (100..200).contains(&status) {
        framing = Framing::Length(0);
    }
    Head::Complete {
        len: end + 4,
        status,
        framing,
    }
}

/// Follows a chunked body byte by byte far enough to see its end (the last chunk and
/// the trailer's empty line); the data itself is skipped.
#[derive(Default)]
struct ChunkScan {
    state: ChunkState,
    size: u64,
}

#[derive(Default, PartialEq, Eq, Clone, Copy)]
enum ChunkState {
    #[default]
    Size,
    /// After the size: extensions up to the line's end.
    SizeLine,
    Data,
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines after the last chunk; `true` once the current line has text.
    Trailer(bool),
    Done,
}

impl ChunkScan {
    fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    fn feed(&mut self, mut bytes: &[u8]) {
        while let Some((&b, rest)) = bytes.split_first() {
            match self.state {
                ChunkState::Size => match (b as char).to_digit(16) {
                    Some(d) => self.size = self.size.saturating_mul(16).saturating_add(d as u64),
                    None => self.state = ChunkState::SizeLine,
                },
                ChunkState::SizeLine => {
                    if b == b'\n' {
                        self.state = if self.size == 0 {
                            ChunkState::Trailer(false)
                        } else {
                            ChunkState::Data
                        };
                    }
                }
                ChunkState::Data => {
                    let take = self.size.min(bytes.len() as u64) as usize;
                    self.size -= take as u64;
                    bytes = &bytes[take..];
                    if self.size == 0 {
                        self.state = ChunkState::DataEnd;
                    }
                    continue;
                }
                ChunkState::DataEnd => {
                    if b == b'\n' {
                        self.state = ChunkState::Size;
                    }
                }
                ChunkState::Trailer(text) => match b {
                    b'\n' if !text => self.state = ChunkState::Done,
                    b'\n' => self.state = ChunkState::Trailer(false),
                    b'\r' => {}
                    _ => self.state = ChunkState::Trailer(true),
                },
                ChunkState::Done => return,
            }
            bytes = rest;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use tokio::net::TcpListener;

    use super::*;

    fn status_of(head: &[u8]) -> Option<u16> {
        match parse_head(head) {
            Head::Complete { status, .. } => Some(status),
            _ => None,
        }
    }

    #[test]
    fn a_health_block_without_path_or_grpc_checks_the_port() {
        let spec = |v| serde_json::from_value::<strata_manifest::HealthSpec>(v).unwrap();
        let port = spec(serde_json::json!({"start_timeout_ms": 120000}));
        assert!(matches!(Check::of(Some(&port)), Check::Port));
        assert!(matches!(Check::of(None), Check::Port));
        let http = spec(serde_json::json!({"path": "/healthz"}));
        assert!(matches!(Check::of(Some(&http)), Check::Http("/healthz")));
        let grpc = spec(serde_json::json!({"grpc": ""}));
        assert!(matches!(Check::of(Some(&grpc)), Check::Grpc("")));
    }

    #[test]
    fn status_line() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r\n\r\n"), Some(200));
        assert_eq!(status_of(b"HTTP/1.0 204 No Content\r\n\r\n"), Some(204));
        assert_eq!(status_of(b"HTTP/1.1 503 Unavailable\r\nX: y\r\n\r\n"), Some(503));
        assert!(matches!(parse_head(b"garbage\r\n\r\n"), Head::Invalid));
        assert!(matches!(parse_head(b"SSH-2.0"), Head::Invalid));
        assert!(matches!(parse_head(b"HTTP/1.1 200 OK\r\n"), Head::Partial));
        assert!(matches!(parse_head(b"HTT"), Head::Partial));
    }

    #[test]
    fn chunked_bodies_end_at_the_last_chunk_and_trailer() {
        let body = b"5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n";
        for split in 0..body.len() {
            let mut scan = ChunkScan::default();
            scan.feed(&body[..split]);
            assert!(!scan.done(), "done after {split} bytes");
            scan.feed(&body[split..]);
            assert!(scan.done(), "split at {split}");
        }
        let mut scan = ChunkScan::default();
        scan.feed(b"0\r\n\r\n");
        assert!(scan.done());
    }

    /// A server that answers one connection with `reply`, then reads until the client
    /// closes; it records whether that close was a reset.
    async fn server(reply: &'static [u8]) -> (SocketAddr, Arc<AtomicBool>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let reset = Arc::new(AtomicBool::new(false));
        let seen = reset.clone();
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 1024];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = conn.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            assert!(String::from_utf8_lossy(&got).contains("Connection: close"));
            // Written in pieces, as a server writing its head and then its body does.
            for piece in reply.chunks(16) {
                if conn.write_all(piece).await.is_err() {
                    seen.store(true, Ordering::SeqCst);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            match conn.read(&mut buf).await {
                Ok(0) => {}
                _ => seen.store(true, Ordering::SeqCst),
            }
        });
        (addr, reset)
    }

    #[tokio::test]
    async fn reads_the_whole_reply_and_closes_without_a_reset() {
        let long: &'static [u8] = Box::leak(
            format!("HTTP/1.0 200 OK\r\nContent-Length: 3000\r\n\r\n{}", "x".repeat(3000))
                .into_bytes()
                .into_boxed_slice(),
        );
        let replies: [&'static [u8]; 4] = [
            long,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nok!\n\r\n0\r\n\r\n",
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\n\r\nbusy\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
        ];
        let expected = [Outcome::Passed, Outcome::Passed, Outcome::Status(503), Outcome::Passed];
        for (reply, want) in replies.into_iter().zip(expected) {
            let (addr, reset) = server(reply).await;
            let outcome = check(addr, Some("/healthz"), Duration::from_secs(5)).await;
            assert_eq!(outcome, want);
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert!(!reset.load(Ordering::SeqCst), "the server saw a reset");
        }
    }

    #[tokio::test]
    async fn says_why_a_check_failed() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        assert_eq!(check(addr, Some("/"), Duration::from_secs(1)).await, Outcome::Refused);
        assert_eq!(check(addr, None, Duration::from_secs(1)).await, Outcome::Refused);
        // Accepts (the kernel does) but never answers.
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        assert_eq!(check(addr, None, Duration::from_secs(1)).await, Outcome::Passed);
        assert_eq!(
            check(addr, Some("/"), Duration::from_millis(100)).await,
            Outcome::TimedOut
        );
    }
}
