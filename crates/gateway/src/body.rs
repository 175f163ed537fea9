//! The bodies the relay moves: requests toward members, responses toward clients.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use strata_bus::MemberGuard;

use crate::upstream::{Conn, Upstream};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body on its way to a member: held whole (so it can be sent again to
/// another member) or streamed (sent once).
pub enum ReqBody {
    Full(Option<Bytes>),
    Stream(UnsyncBoxBody<Bytes, BoxError>),
}

impl ReqBody {
    pub fn empty() -> ReqBody {
        ReqBody::Full(None)
    }
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ReqBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            ReqBody::Stream(s) => Pin::new(s).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Full(data) => data.is_none(),
            ReqBody::Stream(s) => s.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Full(Some(d)) => SizeHint::with_exact(d.len() as u64),
            ReqBody::Full(None) => SizeHint::with_exact(0),
            ReqBody::Stream(s) => s.size_hint(),
        }
    }
}

/// A response body on its way to the client: a member's streamed reply, or one the
/// gateway wrote itself (errors, gathered replies).
pub enum ResBody {
    Full(Option<Bytes>),
    Relayed(Relayed),
}

/// A member's reply. While it streams, the request counts as in flight on the member;
/// when it ends cleanly the connection goes back to the member's pool.
pub struct Relayed {
    pub(crate) inner: Incoming,
    pub(crate) guard: Option<MemberGuard>,
    pub(crate) conn: Option<(Arc<Upstream>, Conn)>,
}

impl ResBody {
    pub fn full(bytes: impl Into<Bytes>) -> ResBody {
        ResBody::Full(Some(bytes.into()))
    }
}

impl Relayed {
    fn finish(&mut self) {
        if let Some((upstream, conn)) = self.conn.take() {
            upstream.put(conn);
        }
        self.guard = None;
    }
}

impl Body for ResBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ResBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            ResBody::Relayed(r) => {
                let polled = Pin::new(&mut r.inner).poll_frame(cx);
                match &polled {
                    Poll::Ready(None) => r.finish(),
                    Poll::Ready(Some(Ok(_))) if r.inner.is_end_stream() => r.finish(),
                    Poll::Ready(Some(Err(_))) => {
                        r.conn = None;
                        r.guard = None;
                    }
                    _ => {}
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResBody::Full(data) => data.is_none(),
            ResBody::Relayed(r) => r.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResBody::Full(Some(d)) => SizeHint::with_exact(d.len() as u64),
            ResBody::Full(None) => SizeHint::with_exact(0),
            ResBody::Relayed(r) => r.inner.size_hint(),
        }
    }
}
