//! One keep-alive connection to a member: writing a request to it (head, then a body
//! held whole or streamed) and reading the reply head, inline in the request's task.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use http::header;
use http::request::Parts;
use http::{Method, Response};
use strata_os::bare::Bare;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::head::{parse_head, BodyFraming, MAX_HEAD};
use crate::request_body::ReqBody;

/// Read buffer growth step.
pub(super) const READ_CHUNK: usize = 16 * 1024;

/// One keep-alive connection to a member.
pub struct Conn {
    pub(super) stream: Bare,
    /// Bytes read from the member and not yet consumed.
    pub(super) rbuf: BytesMut,
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
    ClientBody(crate::request_body::BoxError),
    /// The request was sent; no reply head came back in time.
    TimedOut,
}

/// What a member answered to a request to switch protocols.
pub enum Upgrade {
    /// 101: the socket is the tunnel's now; `early` is what came after the head.
    Switched {
        res: Response<()>,
        stream: Bare,
        early: bytes::Bytes,
    },
    /// Any other reply, with its body to relay.
    Refused(Response<()>, Pending),
}

impl Conn {
    /// Opens a connection; an error here means no byte of a request was sent.
    pub async fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream: Bare::new(stream),
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: Vec::with_capacity(512),
            reused: false,
        })
    }

    /// False when the member closed the idle connection (or sent something unasked).
    /// Costs no system call unless the socket was reported readable.
    pub(super) fn is_usable(&mut self) -> bool {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        match self.stream.get_ref().poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.stream.get_ref().try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
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
        match crate::coarse::timeout(reply_timeout, self.read_head(&method, false)).await {
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

    /// Sends a bodiless request asking to switch protocols (WebSocket; its `Upgrade` and
    /// `Connection: upgrade` are in `parts`) and reads the reply head within
    /// `reply_timeout`. A 101 hands back the socket and what the member sent after the
    /// head, the start of the new protocol; any other reply is relayed as from
    /// [`Conn::send`], and its connection is not used again.
    pub async fn send_upgrade(
        mut self,
        parts: &Parts,
        reply_timeout: std::time::Duration,
    ) -> Result<Upgrade, SendError> {
        self.write_head(parts, &ReqBody::Full(None));
        let head = std::mem::take(&mut self.wbuf);
        let mut written = 0;
        let sent = write_all_vectored(&mut self.stream, &head, &[], &mut written).await;
        if let Err(e) = sent {
            return Err(if written > 0 {
                SendError::Broken(e)
            } else {
                SendError::Unsent(e)
            });
        }
        match crate::coarse::timeout(reply_timeout, self.read_head(&parts.method, true)).await {
            Ok(Ok((res, _, _))) if res.status() == http::StatusCode::SWITCHING_PROTOCOLS => Ok(Upgrade::Switched {
                res,
                stream: self.stream,
                early: self.rbuf.freeze(),
            }),
            Ok(Ok((res, framing, _))) => Ok(Upgrade::Refused(
                res,
                Pending {
                    conn: self,
                    framing,
                    keep_alive: false,
                },
            )),
            Ok(Err(e)) => Err(SendError::Broken(e)),
            Err(_) => Err(SendError::TimedOut),
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
    async fn read_head(&mut self, method: &Method, upgrade: bool) -> io::Result<(Response<()>, BodyFraming, bool)> {
        loop {
            if !self.rbuf.is_empty() {
                if let Some(parsed) = parse_head(&mut self.rbuf, method, upgrade)? {
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
    buf.extend_from_slice(crate::digits::decimal(n, &mut digits));
    buf.extend_from_slice(b"\r\n");
}

/// Writes both slices; `written` counts what the kernel took, even when it fails later.
async fn write_all_vectored(stream: &mut Bare, head: &[u8], body: &[u8], written: &mut usize) -> io::Result<()> {
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

pub(super) fn poll_read_into(stream: &mut Bare, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
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

/// A reply whose head was read and whose body is still on the connection; `body` turns
/// it into the body that streams to the client ([`Pending::into_body`]).
pub struct Pending {
    pub(super) conn: Conn,
    pub(super) framing: BodyFraming,
    pub(super) keep_alive: bool,
}
