//! HTTP/1.1 to members: keep-alive connections, kept per member and per gateway thread,
//! driven inline by the request that uses them.
//!
//! A relayed request writes its head (and small body) to the member's socket itself and
//! reads the reply head itself, in its own task: no connection task, no channel between
//! tasks, no second header map for the reply beyond the one handed to the client side.
//! The reply body is read by the client side as it streams out ([`UpBody`]); when it
//! ends cleanly the connection goes back to the idle list of the thread it is on.
//!
//! Each gateway worker thread keeps its own idle connections to a member, so a request
//! never touches a socket registered with another thread's runtime.

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use strata_bus::MemberGuard;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::body::ReqBody;

/// Most idle connections kept per member and thread.
const IDLE_MAX: usize = 256;
/// Separate idle lists per member; gateway worker threads use 1.., everything else 0.
pub(crate) const SLOTS: usize = 64;
/// Most gateway worker threads: each needs an idle list of its own, because a socket
/// belongs to the runtime (thread) that registered it.
pub const MAX_WORKERS: usize = SLOTS - 1;
/// Largest reply head accepted from a member.
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 100;
/// Read buffer growth step.
const READ_CHUNK: usize = 16 * 1024;

thread_local! {
    static SLOT: Cell<usize> = const { Cell::new(0) };
}

/// Marks the current thread as gateway worker `n` (from 0).
pub fn set_worker(n: usize) {
    assert!(n < MAX_WORKERS, "at most {MAX_WORKERS} gateway workers");
    SLOT.with(|s| s.set(1 + n));
}

pub(crate) fn slot() -> usize {
    SLOT.with(|s| s.get())
}

/// One keep-alive connection to a member.
pub struct Conn {
    stream: TcpStream,
    /// Bytes read from the member and not yet consumed.
    rbuf: BytesMut,
    /// The request head being written (kept to reuse its allocation).
    wbuf: Vec<u8>,
    /// Taken from the idle list (a request on it may meet a close the member sent
    /// while it was idle).
    pub reused: bool,
}

/// How a request failed on a connection.
#[derive(Debug)]
pub enum SendError {
    /// Nothing of the request reached the member.
    Unsent(io::Error),
    /// The request was (perhaps partly) sent; no complete reply head came back.
    Broken(io::Error),
    /// The client's own streamed body failed (broke off, or ran over the limit).
    ClientBody(crate::body::BoxError),
    /// The request was sent; no reply head came back in time.
    TimedOut,
}

impl Conn {
    /// Opens a connection; an error here means no byte of a request was sent.
    pub async fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: Vec::with_capacity(512),
            reused: false,
        })
    }

    /// False when the member closed the idle connection (or sent something unasked).
    /// Costs no system call unless the socket was reported readable.
    fn is_usable(&mut self) -> bool {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }

    /// Writes the request and reads the reply head. The reply body is read later,
    /// through the returned [`Pending`]. `reply_timeout` bounds the wait for the reply
    /// head once the request is written (a slow upload is not the member's fault).
    /// On `Unsent`, a streamed body that was not touched comes back, to go elsewhere.
    pub async fn send(
        mut self,
        parts: &Parts,
        body: ReqBody,
        reply_timeout: std::time::Duration,
    ) -> Result<(Response<()>, Pending), (SendError, Option<ReqBody>)> {
        let method = parts.method.clone();
        let mut body = body;
        let framing = self.write_head(parts, &body);
        let mut written = 0;
        let first = match &mut body {
            ReqBody::Full(Some(data)) if framing != Framing::Chunked => {
                let data = std::mem::take(data);
                let head = std::mem::take(&mut self.wbuf);
                let result = write_all_vectored(&mut self.stream, &head, &data, &mut written).await;
                self.wbuf = head;
                result
            }
            _ => {
                let head = std::mem::take(&mut self.wbuf);
                let result = write_all_vectored(&mut self.stream, &head, &[], &mut written).await;
                self.wbuf = head;
                result
            }
        };
        if let Err(e) = first {
            if written > 0 {
                // Part of the request reached the member: it may have acted on it.
                return Err((SendError::Broken(e), None));
            }
            // A write the kernel refused outright delivered nothing.
            let back = matches!(body, ReqBody::Stream(_)).then_some(body);
            return Err((SendError::Unsent(e), back));
        }
        if let ReqBody::Stream(_) = &body {
            if let Err(e) = self.write_streamed_body(body, framing).await {
                return Err((e, None));
            }
        } else if framing == Framing::Chunked {
            if let Err(e) = self.stream.write_all(b"0\r\n\r\n").await {
                return Err((SendError::Broken(e), None));
            }
        }
        match crate::coarse::timeout(reply_timeout, self.read_head(&method)).await {
            Ok(Ok((res, framing, keep_alive))) => {
                let pending = Pending {
                    conn: self,
                    framing,
                    keep_alive,
                };
                Ok((res, pending))
            }
            Ok(Err(e)) => Err((SendError::Broken(e), None)),
            Err(_) => Err((SendError::TimedOut, None)),
        }
    }

    /// Serialises the request head into `wbuf`; says how the body is framed.
    fn write_head(&mut self, parts: &Parts, body: &ReqBody) -> Framing {
        let buf = &mut self.wbuf;
        buf.clear();
        buf.extend_from_slice(parts.method.as_str().as_bytes());
        buf.push(b' ');
        match parts.uri.path_and_query() {
            Some(pq) => buf.extend_from_slice(pq.as_str().as_bytes()),
            None => buf.push(b'/'),
        }
        buf.extend_from_slice(b" HTTP/1.1\r\n");
        let mut declared = false;
        for (name, value) in &parts.headers {
            if name == header::CONTENT_LENGTH {
                declared = true;
                // A body held whole states its own length below.
                if matches!(body, ReqBody::Full(_)) {
                    continue;
                }
            }
            buf.extend_from_slice(name.as_str().as_bytes());
            buf.extend_from_slice(b": ");
            buf.extend_from_slice(value.as_bytes());
            buf.extend_from_slice(b"\r\n");
        }
        let framing = match body {
            ReqBody::Full(Some(data)) => {
                write_content_length(buf, data.len() as u64);
                Framing::Length
            }
            ReqBody::Full(None) => {
                if declared || matches!(parts.method, Method::POST | Method::PUT | Method::PATCH) {
                    write_content_length(buf, 0);
                }
                Framing::Length
            }
            ReqBody::Stream(_) if declared => Framing::Length,
            ReqBody::Stream(_) => {
                buf.extend_from_slice(b"transfer-encoding: chunked\r\n");
                Framing::Chunked
            }
        };
        buf.extend_from_slice(b"\r\n");
        framing
    }

    async fn write_streamed_body(&mut self, mut body: ReqBody, framing: Framing) -> Result<(), SendError> {
        use http_body_util::BodyExt;
        let broken = SendError::Broken;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(SendError::ClientBody)?;
            let Ok(data) = frame.into_data() else { continue };
            if data.is_empty() {
                continue;
            }
            if framing == Framing::Chunked {
                let size = format!("{:x}\r\n", data.len());
                write_all_vectored(&mut self.stream, size.as_bytes(), &data, &mut 0)
                    .await
                    .map_err(broken)?;
                self.stream.write_all(b"\r\n").await.map_err(broken)?;
            } else {
                self.stream.write_all(&data).await.map_err(broken)?;
            }
        }
        if framing == Framing::Chunked {
            self.stream.write_all(b"0\r\n\r\n").await.map_err(broken)?;
        }
        Ok(())
    }

    /// Reads until a whole reply head is in; skips interim (1xx) replies.
    async fn read_head(&mut self, method: &Method) -> io::Result<(Response<()>, BodyFraming, bool)> {
        loop {
            if !self.rbuf.is_empty() {
                if let Some(parsed) = parse_head(&mut self.rbuf, method)? {
                    return Ok(parsed);
                }
            }
            if self.rbuf.len() > MAX_HEAD {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "reply head from the member is too large",
                ));
            }
            self.rbuf.reserve(READ_CHUNK);
            let n = std::future::poll_fn(|cx| poll_read_into(&mut self.stream, cx, &mut self.rbuf)).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the member closed the connection before replying",
                ));
            }
        }
    }
}

/// How the request body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length,
    Chunked,
}

fn write_content_length(buf: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    buf.extend_from_slice(b"content-length: ");
    buf.extend_from_slice(crate::access::decimal(n, &mut digits));
    buf.extend_from_slice(b"\r\n");
}

/// Writes both slices; `written` counts what the kernel took, even when it fails later.
async fn write_all_vectored(stream: &mut TcpStream, head: &[u8], body: &[u8], written: &mut usize) -> io::Result<()> {
    let (mut a, mut b) = (head, body);
    while !a.is_empty() || !b.is_empty() {
        let slices = [io::IoSlice::new(a), io::IoSlice::new(b)];
        let n = stream.write_vectored(&slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        *written += n;
        let from_a = n.min(a.len());
        a = &a[from_a..];
        b = &b[n - from_a..];
    }
    Ok(())
}

fn poll_read_into(stream: &mut TcpStream, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
    let spare = buf.spare_capacity_mut();
    let mut read = ReadBuf::uninit(spare);
    match Pin::new(stream).poll_read(cx, &mut read) {
        Poll::Ready(Ok(())) => {
            let n = read.filled().len();
            // SAFETY: `n` bytes of the spare capacity were just initialised by the read.
            unsafe { buf.set_len(buf.len() + n) };
            Poll::Ready(Ok(n))
        }
        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        Poll::Pending => Poll::Pending,
    }
}

/// Parses a reply head at the front of `rbuf`, consuming it. None: not complete yet.
fn parse_head(rbuf: &mut BytesMut, method: &Method) -> io::Result<Option<(Response<()>, BodyFraming, bool)>> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("{what} from the member"));
    loop {
        // Where each header's name and value lie in the head, so that the head can be
        // frozen once and the values shared from it without copying.
        let mut spans = [(0u32, 0u32, 0u32, 0u32); MAX_HEADERS];
        let (len, code, http10, count) = {
            let mut slots = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
            let mut parsed = httparse::Response::new(&mut []);
            let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
                &mut parsed,
                rbuf,
                &mut slots,
            ) {
                Ok(httparse::Status::Complete(len)) => len,
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(e) => return Err(invalid(&format!("bad reply head ({e})"))),
            };
            let base = rbuf.as_ptr() as usize;
            for (span, h) in spans.iter_mut().zip(parsed.headers.iter()) {
                let name = h.name.as_ptr() as usize - base;
                let value = h.value.as_ptr() as usize - base;
                *span = (
                    name as u32,
                    (name + h.name.len()) as u32,
                    value as u32,
                    (value + h.value.len()) as u32,
                );
            }
            (
                len,
                parsed.code.unwrap_or(0),
                parsed.version == Some(0),
                parsed.headers.len(),
            )
        };
        if code == 101 {
            // strata never asks a member to switch protocols.
            return Err(invalid("an unrequested 101 Switching Protocols"));
        }
        if (100..200).contains(&code) {
            // An interim reply (100 Continue, 103 Early Hints): the real one follows.
            rbuf.advance(len);
            continue;
        }
        let status = StatusCode::from_u16(code).map_err(|_| invalid(&format!("bad status {code}")))?;
        let head: Bytes = rbuf.split_to(len).freeze();
        let mut headers = HeaderMap::with_capacity(count);
        let mut length: Option<u64> = None;
        let mut chunked = false;
        let mut te = false;
        let mut keep_alive = !http10;
        for &(ns, ne, vs, ve) in &spans[..count] {
            let name =
                HeaderName::from_bytes(&head[ns as usize..ne as usize]).map_err(|_| invalid("bad header name"))?;
            let value = HeaderValue::from_maybe_shared(head.slice(vs as usize..ve as usize))
                .map_err(|_| invalid("bad header value"))?;
            if name == header::CONTENT_LENGTH {
                let n = std::str::from_utf8(value.as_bytes())
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .ok_or_else(|| invalid("bad content-length"))?;
                if length.is_some_and(|m| m != n) {
                    return Err(invalid("conflicting content-length"));
                }
                length = Some(n);
            } else if name == header::TRANSFER_ENCODING {
                te = true;
                chunked = value
                    .as_bytes()
                    .rsplit(|&b| b == b',')
                    .next()
                    .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            } else if name == header::CONNECTION {
                let v = value.as_bytes();
                if contains_token(v, b"close") {
                    keep_alive = false;
                } else if http10 && contains_token(v, b"keep-alive") {
                    keep_alive = true;
                }
            }
            headers.append(name, value);
        }
        let no_body = *method == Method::HEAD
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
            || status.is_informational();
        let framing = if no_body {
            BodyFraming::Length(0)
        } else if te {
            if length.is_some() {
                // Transfer-Encoding overrides Content-Length (RFC 9112 6.3); a reply
                // carrying both is suspect, so its connection is not used again.
                headers.remove(header::CONTENT_LENGTH);
                keep_alive = false;
            }
            if chunked {
                BodyFraming::Chunked(Chunk::Size)
            } else {
                keep_alive = false;
                BodyFraming::Close
            }
        } else if let Some(n) = length {
            BodyFraming::Length(n)
        } else {
            keep_alive = false;
            BodyFraming::Close
        };
        let mut res = Response::new(());
        *res.status_mut() = status;
        *res.version_mut() = Version::HTTP_11;
        *res.headers_mut() = headers;
        return Ok(Some((res, framing, keep_alive)));
    }
}

fn contains_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// How the reply body is framed, and where the reader is in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// This many bytes left.
    Length(u64),
    Chunked(Chunk),
    /// Until the member closes the connection.
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// This many data bytes left in the chunk.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines after the last chunk, until an empty one.
    Trailers,
}

/// A reply whose head was read and whose body is still on the connection.
pub struct Pending {
    conn: Conn,
    framing: BodyFraming,
    keep_alive: bool,
}

impl Pending {
    /// The body, as it will stream to the client; the connection returns to `upstream`
    /// when it ends cleanly.
    pub fn into_body(self, upstream: Arc<Upstream>, guard: MemberGuard) -> UpBody {
        let done = self.framing == BodyFraming::Length(0);
        let mut body = UpBody {
            conn: Some(self.conn),
            framing: self.framing,
            keep_alive: self.keep_alive,
            upstream: Some(upstream),
            guard: Some(guard),
            done,
        };
        if done {
            body.finish();
        }
        body
    }
}

/// A member's reply body, read from its connection as the client side asks for it.
pub struct UpBody {
    conn: Option<Conn>,
    framing: BodyFraming,
    keep_alive: bool,
    upstream: Option<Arc<Upstream>>,
    /// Keeps the request counted as in flight on the member until the body ends.
    guard: Option<MemberGuard>,
    done: bool,
}

impl UpBody {
    /// The body ended as framed: the connection may carry the next request.
    fn finish(&mut self) {
        self.done = true;
        if let (Some(conn), Some(upstream)) = (self.conn.take(), self.upstream.take()) {
            if self.keep_alive && conn.rbuf.is_empty() {
                upstream.put(conn);
            }
        }
        self.guard = None;
    }

    fn fail(&mut self, e: io::Error) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.done = true;
        self.conn = None;
        self.guard = None;
        Poll::Ready(Some(Err(e)))
    }

    /// Takes the next piece of body from the read buffer, if there is one.
    fn next_data(&mut self) -> io::Result<Option<Bytes>> {
        let conn = self.conn.as_mut().expect("a body being read has its connection");
        let rbuf = &mut conn.rbuf;
        loop {
            match self.framing {
                BodyFraming::Length(0) => return Ok(None),
                BodyFraming::Length(left) => {
                    if rbuf.is_empty() {
                        return Ok(None);
                    }
                    let n = (left as usize).min(rbuf.len());
                    self.framing = BodyFraming::Length(left - n as u64);
                    return Ok(Some(rbuf.split_to(n).freeze()));
                }
                BodyFraming::Close => {
                    if rbuf.is_empty() {
                        return Ok(None);
                    }
                    return Ok(Some(rbuf.split().freeze()));
                }
                BodyFraming::Chunked(Chunk::Size) => {
                    let Some(eol) = rbuf.iter().position(|&b| b == b'\n') else {
                        if rbuf.len() > 4096 {
                            return Err(io::Error::new(io::ErrorKind::InvalidData, "chunk size line too long"));
                        }
                        return Ok(None);
                    };
                    let line = rbuf.split_to(eol + 1);
                    let size = parse_chunk_size(&line)
                        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size from the member"))?;
                    self.framing = BodyFraming::Chunked(if size == 0 { Chunk::Trailers } else { Chunk::Data(size) });
                }
                BodyFraming::Chunked(Chunk::Data(left)) => {
                    if rbuf.is_empty() {
                        return Ok(None);
                    }
                    let n = (left as usize).min(rbuf.len());
                    let rest = left - n as u64;
                    self.framing = BodyFraming::Chunked(if rest == 0 { Chunk::DataEnd } else { Chunk::Data(rest) });
                    return Ok(Some(rbuf.split_to(n).freeze()));
                }
                BodyFraming::Chunked(Chunk::DataEnd) => {
                    if rbuf.len() < 2 {
                        return Ok(None);
                    }
                    if &rbuf[..2] != b"\r\n" {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, "chunk not followed by CRLF"));
                    }
                    rbuf.advance(2);
                    self.framing = BodyFraming::Chunked(Chunk::Size);
                }
                BodyFraming::Chunked(Chunk::Trailers) => {
                    let Some(eol) = rbuf.iter().position(|&b| b == b'\n') else {
                        if rbuf.len() > MAX_HEAD {
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                "trailers from the member too large",
                            ));
                        }
                        return Ok(None);
                    };
                    let line = rbuf.split_to(eol + 1);
                    if line.as_ref() == b"\r\n" || line.as_ref() == b"\n" {
                        self.framing = BodyFraming::Length(0);
                        return Ok(None);
                    }
                }
            }
        }
    }
}

fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let hex = line.split(|&b| b == b';').next()?.trim_ascii();
    if hex.is_empty() || hex.len() > 15 {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

impl Body for UpBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match this.next_data() {
                Ok(Some(data)) => {
                    if this.framing == BodyFraming::Length(0) {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(None) if this.framing == BodyFraming::Length(0) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(None) => {}
                Err(e) => return this.fail(e),
            }
            let conn = this.conn.as_mut().expect("a body being read has its connection");
            conn.rbuf.reserve(READ_CHUNK);
            match poll_read_into(&mut conn.stream, cx, &mut conn.rbuf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return this.fail(e),
                Poll::Ready(Ok(0)) => {
                    if this.framing == BodyFraming::Close {
                        this.keep_alive = false;
                        this.finish();
                        return Poll::Ready(None);
                    }
                    return this.fail(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the member closed the connection in the middle of its reply",
                    ));
                }
                Poll::Ready(Ok(_)) => {}
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            _ if self.done => SizeHint::with_exact(0),
            BodyFraming::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

/// The idle connections to one member, kept in the member's transport slot.
pub struct Upstream {
    idle: [Mutex<Vec<Conn>>; SLOTS],
    /// The member's id as a header value, made once.
    pub served_by: HeaderValue,
}

impl Upstream {
    pub fn new(member_id: &str) -> Upstream {
        Upstream {
            idle: std::array::from_fn(|_| Mutex::new(Vec::new())),
            served_by: HeaderValue::from_str(member_id).unwrap_or(HeaderValue::from_static("-")),
        }
    }

    /// An idle connection of this thread that the member has not closed, if any.
    pub fn take(&self) -> Option<Conn> {
        let mut idle = self.idle[slot()].lock().unwrap();
        while let Some(mut conn) = idle.pop() {
            if conn.is_usable() {
                conn.reused = true;
                return Some(conn);
            }
        }
        None
    }

    pub fn put(&self, conn: Conn) {
        let mut idle = self.idle[slot()].lock().unwrap();
        if idle.len() < IDLE_MAX {
            idle.push(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> io::Result<Option<(Response<()>, BodyFraming, bool)>> {
        let mut buf = BytesMut::from(text.as_bytes());
        parse_head(&mut buf, &Method::GET)
    }

    #[test]
    fn reply_heads_and_their_framing() {
        let (res, framing, keep) = head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello")
            .unwrap()
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["x-a"], "b");
        assert_eq!((framing, keep), (BodyFraming::Length(5), true));
        let (_, framing, keep) = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((framing, keep), (BodyFraming::Chunked(Chunk::Size), true));
        let (_, framing, keep) = head("HTTP/1.0 200 OK\r\n\r\n").unwrap().unwrap();
        assert_eq!((framing, keep), (BodyFraming::Close, false));
        let (_, _, keep) = head("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!keep);
        let (res, framing, _) = head("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((res.status().as_u16(), framing), (204, BodyFraming::Length(0)));
        assert!(head("HTTP/1.1 200 OK\r\nContent-Le").unwrap().is_none(), "partial");
    }

    #[test]
    fn a_reply_with_both_lengths_is_framed_by_chunks_and_not_reused() {
        let (res, framing, keep) = head("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(framing, BodyFraming::Chunked(Chunk::Size));
        assert!(!keep);
        assert!(
            res.headers().get(header::CONTENT_LENGTH).is_none(),
            "the client must not see the stale length"
        );
    }

    #[test]
    fn malformed_reply_heads_are_errors() {
        for bad in [
            "HTTP/1.1 200 OK\r\nContent-Length: five\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "SMTP ready\r\n\r\n",
            "HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
        ] {
            assert!(head(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn chunk_size_lines() {
        assert_eq!(parse_chunk_size(b"1a\r\n"), Some(26));
        assert_eq!(parse_chunk_size(b"0;x=y\r\n"), Some(0));
        assert_eq!(parse_chunk_size(b"zz\r\n"), None);
        assert_eq!(parse_chunk_size(b"\r\n"), None);
        assert_eq!(parse_chunk_size(b"1a"), None);
    }
}
