//! A WebSocket echo member and a closed-loop WebSocket load client, for
//! `bench/websocket.sh`: small, hand-written (no WebSocket crate), one thread each, so
//! that neither is the bottleneck nor Python.
//!
//!     ws_bench echo                            # listens on 127.0.0.1:$PORT (a strata pool member)
//!     ws_bench load URL CONNS DURATION SIZE    # e.g. ws://127.0.0.1:8080/ 100 10 128
//!
//! **echo** accepts the RFC 6455 handshake with a 101 and then echoes every frame: a
//! client frame (masked, as clients must) comes back as an unmasked server frame with
//! the same FIN bit, opcode and payload; a ping gets a pong, a close gets its close back
//! and ends the connection. A request that is not an upgrade gets `200 ws_bench echo`.
//! One task per connection on a current-thread runtime.
//!
//! **load** opens CONNS connections, then for DURATION seconds each runs a closed loop:
//! one masked text frame of SIZE bytes (a fresh masking key per frame), wait for its
//! echo, check it, repeat. Then a close handshake. It prints one JSON line:
//! `{"messages", "msgs_per_s", "p50_us", "p99_us", "errors"}`; latency is from the first
//! byte written to the whole echo read; `errors` counts connections that failed (connect,
//! handshake, a wrong or missing echo), each ending at its first error.
//!
//! **The handshake's accept value.** No crate in the workspace gives SHA-1 and base64, so
//! nothing computes `Sec-WebSocket-Accept`: the client always sends RFC 6455's sample key
//! (section 1.3) and the member answers that key's accept value, also from the RFC, which
//! the client checks. The member refuses any other key with a 400 (it cannot answer it
//! correctly), so it is an echo member for this client only, not for any WebSocket
//! client.

use std::io;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// RFC 6455 section 1.3's sample `Sec-WebSocket-Key` and the accept value it calls for.
const SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const SAMPLE_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

const OP_TEXT: u8 = 0x1;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;
const FIN: u8 = 0x80;
const MASKED: u8 = 0x80;

/// Largest HTTP head and frame payload either side accepts.
const MAX_HEAD: usize = 16 * 1024;
const MAX_PAYLOAD: u64 = 16 * 1024 * 1024;
/// How long past DURATION a load connection may take before it counts as an error.
const GRACE: Duration = Duration::from_secs(10);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["echo"] => {
            let port = std::env::var("PORT").unwrap_or_else(|_| usage("echo needs $PORT"));
            let port: u16 = port.parse().unwrap_or_else(|_| usage("$PORT is not a port number"));
            if let Err(e) = runtime.block_on(echo(port)) {
                eprintln!("ws_bench echo: cannot listen on 127.0.0.1:{port}: {e}");
                std::process::exit(1);
            }
        }
        ["load", url, conns, duration, size] => {
            let target = Target::parse(url).unwrap_or_else(|| usage("URL must look like ws://HOST:PORT/PATH"));
            let number = |what: &str, s: &str| {
                s.parse::<u64>()
                    .unwrap_or_else(|_| usage(&format!("{what} is not a number: {s:?}")))
            };
            let conns = number("CONNS", conns) as usize;
            let duration = Duration::from_secs_f64(
                duration
                    .parse::<f64>()
                    .unwrap_or_else(|_| usage(&format!("DURATION is not a number: {duration:?}"))),
            );
            let size = number("SIZE", size) as usize;
            if conns == 0 || size as u64 > MAX_PAYLOAD {
                usage("CONNS must be at least 1 and SIZE at most 16 MiB");
            }
            let report = runtime.block_on(load(target, conns, duration, size));
            println!("{}", report.json());
        }
        _ => usage("unknown mode"),
    }
}

fn usage(why: &str) -> ! {
    eprintln!("ws_bench: {why}\nusage: ws_bench echo  (listens on 127.0.0.1:$PORT)\n       ws_bench load ws://HOST:PORT/PATH CONNS DURATION_S SIZE_BYTES");
    std::process::exit(2);
}

// ------------------------------------------------------------------ frames

/// The head of one frame, parsed from the start of a buffer.
struct FrameHead {
    /// FIN, RSV and opcode: the first byte as sent.
    first: u8,
    mask: Option<[u8; 4]>,
    head_len: usize,
    payload_len: usize,
}

impl FrameHead {
    fn opcode(&self) -> u8 {
        self.first & 0x0F
    }

    /// The head at the start of `buf`: `Ok(None)` while it is not all there.
    fn parse(buf: &[u8]) -> io::Result<Option<FrameHead>> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let masked = buf[1] & MASKED != 0;
        let (len, mut at) = match buf[1] & 0x7F {
            126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4),
            127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes")), 10),
            126 | 127 => return Ok(None),
            n => (n as u64, 2),
        };
        if len > MAX_PAYLOAD {
            return Err(protocol(format!("a frame of {len} bytes, more than 16 MiB")));
        }
        let mask = if masked {
            if buf.len() < at + 4 {
                return Ok(None);
            }
            let key = buf[at..at + 4].try_into().expect("4 bytes");
            at += 4;
            Some(key)
        } else {
            None
        };
        Ok(Some(FrameHead {
            first: buf[0],
            mask,
            head_len: at,
            payload_len: len as usize,
        }))
    }
}

/// Appends a frame's head (first byte, optional masking key, length) to `out`.
fn put_head(out: &mut Vec<u8>, first: u8, mask: Option<[u8; 4]>, len: usize) {
    out.push(first);
    let bit = if mask.is_some() { MASKED } else { 0 };
    if len < 126 {
        out.push(bit | len as u8);
    } else if len <= u16::MAX as usize {
        out.push(bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
}

/// Appends `payload` to `out`, XORed with `key` (masking and unmasking are the same).
fn put_masked(out: &mut Vec<u8>, payload: &[u8], key: [u8; 4]) {
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i & 3]));
}

fn protocol(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

/// Reads into `buf` until it holds a whole HTTP head; returns the head's length.
async fn read_head(sock: &mut TcpStream, buf: &mut BytesMut) -> io::Result<Option<usize>> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(Some(end + 4));
        }
        if buf.len() > MAX_HEAD {
            return Err(protocol("an HTTP head of more than 16 KiB".into()));
        }
        if sock.read_buf(buf).await? == 0 {
            return Ok(None);
        }
    }
}

// ------------------------------------------------------------------ echo member

async fn echo(port: u16) -> io::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    loop {
        let (sock, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // out of descriptors and the like: wait instead of spinning
                eprintln!("ws_bench echo: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            if let Err(e) = serve(sock).await {
                if e.kind() == io::ErrorKind::InvalidData {
                    eprintln!("ws_bench echo: closed a connection: {e}");
                }
            }
        });
    }
}

/// One member connection: the handshake, then frames echoed until a close or EOF.
async fn serve(mut sock: TcpStream) -> io::Result<()> {
    sock.set_nodelay(true)?;
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let Some(head_len) = read_head(&mut sock, &mut buf).await? else {
        return Ok(());
    };
    let answer = {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..head_len]) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => return Err(protocol("a request head that does not parse".into())),
        }
        let header = |name: &str| {
            req.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
        };
        let upgrade = header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        match header("sec-websocket-key") {
            _ if !upgrade => Err("HTTP/1.1 200 OK\r\nContent-Length: 14\r\nConnection: close\r\n\r\nws_bench echo\n"),
            Some(key) if key == SAMPLE_KEY => Ok(format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {SAMPLE_ACCEPT}\r\n\r\n"
            )),
            _ => Err("HTTP/1.1 400 Bad Request\r\nContent-Length: 59\r\nConnection: close\r\n\r\nws_bench echo answers only RFC 6455's sample WebSocket key\n"),
        }
    };
    match answer {
        Ok(switch) => sock.write_all(switch.as_bytes()).await?,
        Err(refusal) => {
            sock.write_all(refusal.as_bytes()).await?;
            return sock.shutdown().await;
        }
    }
    buf.advance(head_len);
    let mut out = Vec::with_capacity(16 * 1024);
    loop {
        // every whole frame read so far, answered in one write
        while let Some(head) = FrameHead::parse(&buf)? {
            let end = head.head_len + head.payload_len;
            if buf.len() < end {
                buf.reserve(end - buf.len());
                break;
            }
            let key = head
                .mask
                .ok_or_else(|| protocol("an unmasked frame from a client".into()))?;
            let payload = &buf[head.head_len..end];
            let closing = head.opcode() == OP_CLOSE;
            match head.opcode() {
                OP_PONG => {}
                OP_PING => {
                    put_head(&mut out, FIN | OP_PONG, None, payload.len());
                    put_masked(&mut out, payload, key);
                }
                _ => {
                    put_head(&mut out, head.first, None, payload.len());
                    put_masked(&mut out, payload, key);
                }
            }
            buf.advance(end);
            if closing {
                sock.write_all(&out).await?;
                return sock.shutdown().await;
            }
        }
        if !out.is_empty() {
            sock.write_all(&out).await?;
            out.clear();
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        if sock.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
}

// ------------------------------------------------------------------ load client

/// Where `load` connects: `ws://HOST:PORT/PATH`.
struct Target {
    authority: String,
    path: String,
}

impl Target {
    fn parse(url: &str) -> Option<Target> {
        let rest = url.strip_prefix("ws://")?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        authority.contains(':').then(|| Target {
            authority: authority.to_string(),
            path: path.to_string(),
        })
    }
}

#[derive(Default)]
struct Report {
    messages: u64,
    seconds: f64,
    /// Round trips in microseconds, sorted at the end.
    latencies: Vec<u32>,
    errors: u64,
}

impl Report {
    fn percentile(&self, p: f64) -> u32 {
        if self.latencies.is_empty() {
            return 0;
        }
        let rank = ((p / 100.0) * self.latencies.len() as f64).ceil() as usize;
        self.latencies[rank.clamp(1, self.latencies.len()) - 1]
    }

    fn json(&self) -> String {
        let rate = if self.seconds > 0.0 {
            self.messages as f64 / self.seconds
        } else {
            0.0
        };
        format!(
            "{{\"messages\": {}, \"msgs_per_s\": {:.1}, \"p50_us\": {}, \"p99_us\": {}, \"errors\": {}}}",
            self.messages,
            rate,
            self.percentile(50.0),
            self.percentile(99.0),
            self.errors
        )
    }
}

async fn load(target: Target, conns: usize, duration: Duration, size: usize) -> Report {
    let target = std::sync::Arc::new(target);
    // every connection switched first, so that the timed loop measures messages only
    let mut opening = Vec::with_capacity(conns);
    for _ in 0..conns {
        let target = target.clone();
        opening.push(tokio::spawn(async move { open(&target).await }));
    }
    let mut report = Report::default();
    let mut open_conns = Vec::with_capacity(conns);
    for task in opening {
        match task.await.expect("an opening task") {
            Ok(conn) => open_conns.push(conn),
            Err(e) => {
                eprintln!("ws_bench load: could not open a WebSocket: {e}");
                report.errors += 1;
            }
        }
    }
    let started = Instant::now();
    let end = started + duration;
    let mut loops = Vec::with_capacity(open_conns.len());
    for (i, (sock, buf)) in open_conns.into_iter().enumerate() {
        loops.push(tokio::spawn(async move {
            let mut lats = Vec::with_capacity(64 * 1024);
            let run = closed_loop(sock, buf, end, size, i as u32, &mut lats);
            let outcome = match tokio::time::timeout_at((end + GRACE).into(), run).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no echo within {} s past the end", GRACE.as_secs())),
            };
            (lats, outcome)
        }));
    }
    for task in loops {
        let (lats, outcome) = task.await.expect("a load task");
        report.messages += lats.len() as u64;
        report.latencies.extend(lats);
        if let Err(e) = outcome {
            eprintln!("ws_bench load: a connection failed: {e}");
            report.errors += 1;
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    report.latencies.sort_unstable();
    report
}

/// Connects and switches to WebSocket; returns the socket and what came after the 101.
async fn open(target: &Target) -> io::Result<(TcpStream, BytesMut)> {
    let mut sock = TcpStream::connect(&target.authority).await?;
    sock.set_nodelay(true)?;
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {SAMPLE_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        target.path, target.authority
    );
    sock.write_all(req.as_bytes()).await?;
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let head_len = read_head(&mut sock, &mut buf)
        .await?
        .ok_or_else(|| protocol("the connection closed before the handshake's answer".into()))?;
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut res = httparse::Response::new(&mut headers);
    if !matches!(res.parse(&buf[..head_len]), Ok(httparse::Status::Complete(_))) {
        return Err(protocol("an answer to the handshake that does not parse".into()));
    }
    if res.code != Some(101) {
        return Err(protocol(format!("the handshake was answered {:?}, not 101", res.code)));
    }
    let accept = res
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"))
        .map(|h| h.value);
    if accept != Some(SAMPLE_ACCEPT.as_bytes()) {
        return Err(protocol("a 101 without the expected Sec-WebSocket-Accept".into()));
    }
    buf.advance(head_len);
    Ok((sock, buf))
}

/// Send, await the echo, check it, repeat until `end`; then the close handshake.
async fn closed_loop(
    mut sock: TcpStream,
    mut buf: BytesMut,
    end: Instant,
    size: usize,
    seed: u32,
    lats: &mut Vec<u32>,
) -> io::Result<()> {
    let payload: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
    let mut frame = Vec::with_capacity(size + 14);
    let mut rng = (0x9E37_79B9u32 ^ seed.wrapping_mul(0x85EB_CA6B)) | 1;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        // a fresh masking key per frame (xorshift32)
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        let key = rng.to_ne_bytes();
        frame.clear();
        put_head(&mut frame, FIN | OP_TEXT, Some(key), size);
        put_masked(&mut frame, &payload, key);
        sock.write_all(&frame).await?;
        let (head, body) = read_frame(&mut sock, &mut buf).await?;
        if head.opcode() != OP_TEXT || head.first & FIN == 0 || head.mask.is_some() || body[..] != payload[..] {
            return Err(protocol(format!(
                "an echo that is not the message sent (opcode {:#x}, {} bytes, masked: {})",
                head.opcode(),
                body.len(),
                head.mask.is_some()
            )));
        }
        lats.push(now.elapsed().as_micros().min(u32::MAX as u128) as u32);
    }
    // close 1000 (normal), then wait for the member's close
    let key = rng.to_ne_bytes();
    frame.clear();
    put_head(&mut frame, FIN | OP_CLOSE, Some(key), 2);
    put_masked(&mut frame, &1000u16.to_be_bytes(), key);
    sock.write_all(&frame).await?;
    loop {
        let (head, _) = read_frame(&mut sock, &mut buf).await?;
        if head.opcode() == OP_CLOSE {
            return Ok(());
        }
    }
}

/// Reads one whole frame; returns its head and its payload (taken out of `buf`).
async fn read_frame(sock: &mut TcpStream, buf: &mut BytesMut) -> io::Result<(FrameHead, BytesMut)> {
    loop {
        if let Some(head) = FrameHead::parse(buf)? {
            let end = head.head_len + head.payload_len;
            if buf.len() >= end {
                buf.advance(head.head_len);
                let body = buf.split_to(head.payload_len);
                return Ok((head, body));
            }
            buf.reserve(end - buf.len());
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        if sock.read_buf(buf).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the connection closed before an echo",
            ));
        }
    }
}
