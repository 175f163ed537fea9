//! The response body on its way to the client: a member's reply streaming through, or
//! one the gateway wrote itself.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::upstream::UpBody;

/// A response body on its way to the client: a member's streamed reply, or one the
/// gateway wrote itself (errors, gathered replies).
pub enum ResBody {
    Full(Option<Bytes>),
    Relayed(UpBody),
    /// A reply streaming to the client while the route's fallback keeps a copy.
    Teed(Box<crate::fallback::Tee>),
    /// A member's HTTP/2 reply (gRPC), trailers included; the guard keeps the call
    /// counted on its member until the body ends.
    H2(hyper::body::Incoming, strata_bus::MemberGuard),
}

impl ResBody {
    pub fn full(bytes: impl Into<Bytes>) -> ResBody {
        ResBody::Full(Some(bytes.into()))
    }
}

impl Body for ResBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            ResBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            ResBody::Relayed(r) => Pin::new(r).poll_frame(cx),
            ResBody::Teed(t) => Pin::new(&mut **t).poll_frame(cx),
            ResBody::H2(body, _) => Pin::new(body).poll_frame(cx).map_err(std::io::Error::other),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResBody::Full(data) => data.is_none(),
            ResBody::Relayed(r) => r.is_end_stream(),
            ResBody::Teed(t) => t.is_end_stream(),
            ResBody::H2(body, _) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResBody::Full(Some(d)) => SizeHint::with_exact(d.len() as u64),
            ResBody::Full(None) => SizeHint::with_exact(0),
            ResBody::Relayed(r) => r.size_hint(),
            ResBody::Teed(t) => t.size_hint(),
            ResBody::H2(body, _) => body.size_hint(),
        }
    }
}
