//! A member's reply body as it streams to the client, read from the connection as the
//! client side asks for it (chunked decoding included); when it ends as framed, the
//! connection goes back to the member's idle list.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use strata_bus::MemberGuard;

use super::conn::{poll_read_into, Conn, Pending, READ_CHUNK};
use super::head::{BodyFraming, Chunk, MAX_HEAD};
use super::idle::Upstream;

// `Pending` is defined beside the connection that hands it back; what it turns into lives
// here, so that `conn` knows neither `UpBody` nor `Upstream`.
impl Pending {
    /// The body, as it will stream to the client; the connection returns to `upstream`
    /// when it ends cleanly.
    pub fn into_body(self, upstream: Arc<Upstream>, guard: MemberGuard) -> UpBody {
        let done = self.framing == BodyFraming::Length(0);
        let cut = guard.member().is_remote().then(|| {
            let member = guard.member().clone();
            Box::pin(async move { member.until_cut().await }) as Cut
        });
        let mut body = UpBody {
            conn: Some(self.conn),
            framing: self.framing,
            keep_alive: self.keep_alive,
            upstream: Some(upstream),
            guard: Some(guard),
            cut,
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
    /// For a member on another node: resolves when this node finds it out of reach
    /// ([`strata_bus::Member::cut`]), and the body then ends at once, as a dead member's
    /// would, instead of waiting on a connection across the partition.
    cut: Option<Cut>,
    done: bool,
}

type Cut = Pin<Box<dyn Future<Output = ()> + Send>>;

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
        self.cut = None;
    }

    fn fail(&mut self, e: io::Error) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.done = true;
        self.conn = None;
        self.guard = None;
        self.cut = None;
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
                Poll::Pending => {
                    if this.cut.as_mut().is_some_and(|cut| cut.as_mut().poll(cx).is_ready()) {
                        return this.fail(io::Error::new(
                            io::ErrorKind::ConnectionAborted,
                            "this node cannot reach the member's node: its reply was cut off",
                        ));
                    }
                    return Poll::Pending;
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_size_lines() {
        assert_eq!(parse_chunk_size(b"1a\r\n"), Some(26));
        assert_eq!(parse_chunk_size(b"0;x=y\r\n"), Some(0));
        assert_eq!(parse_chunk_size(b"zz\r\n"), None);
        assert_eq!(parse_chunk_size(b"\r\n"), None);
        assert_eq!(parse_chunk_size(b"1a"), None);
    }
}
