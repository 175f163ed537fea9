//! The response body on its way to the client: a member's reply streaming through, or
//! one the gateway wrote itself.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::upstream::{H2Reply, UpBody};

/// A response body on its way to the client: a member's streamed reply, or one the
/// gateway wrote itself (errors, gathered replies).
pub enum ResBody {
    Full(Option<Bytes>),
    Relayed(UpBody),
    /// A reply streaming to the client while the route's fallback keeps a copy.
    Teed(Box<crate::fallback::Tee>),
    /// A member's HTTP/2 reply (gRPC), trailers included; the guard keeps the call
    /// counted on its member until the body ends. A reply the member breaks off (it
    /// died, or reset the stream) ends with `grpc-status: 14` (UNAVAILABLE) trailers, the
    /// status a gRPC client reconnects on, instead of a reset (which it reads as INTERNAL).
    H2(H2Reply, strata_bus::MemberGuard, H2End),
}

/// Whether a gRPC reply has ended (after the trailers strata wrote for a broken one).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum H2End {
    #[default]
    Streaming,
    Ended,
}

/// What went wrong with a member's call, in words that say whose side it was: a broken
/// connection reads as the member's loss, not as the client's ("broken pipe").
/// `ended`: why strata ended the member's connection, when it did (a ping unanswered).
pub(crate) fn failure(e: &h2::Error, ended: Option<&str>) -> String {
    if let Some(why) = ended {
        format!("its connection was closed: {why}")
    } else if e.is_io() {
        format!("its connection was lost (the member may have exited): {e}")
    } else {
        e.to_string()
    }
}

/// The trailers of a reply `member` broke off with `e`: stopped on purpose (scaled in,
/// replaced, its node stopping) or failed.
fn broken_off(e: &h2::Error, member: &strata_bus::Member, ended: Option<&str>) -> http::HeaderMap {
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("14"));
    let message = match member.is_stopping() {
        true => format!(
            "member {} was stopped during the call (scaled in, replaced, or its node stopping); call again: {e}",
            member.name
        ),
        false => format!("member {} failed during the call: {}", member.name, failure(e, ended)),
    }
    .chars()
    .map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' })
    .collect::<String>()
    .replace('%', "%25");
    if let Ok(value) = http::HeaderValue::from_str(&message) {
        trailers.insert("grpc-message", value);
    }
    trailers
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
            ResBody::H2(_, _, H2End::Ended) => Poll::Ready(None),
            ResBody::H2(body, guard, end) => match Pin::new(&mut *body).poll_frame(cx) {
                Poll::Ready(Some(Err(e))) => {
                    *end = H2End::Ended;
                    let trailers = broken_off(&e, guard.member(), body.connection_ended());
                    Poll::Ready(Some(Ok(Frame::trailers(trailers))))
                }
                other => other.map_err(std::io::Error::other),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResBody::Full(data) => data.is_none(),
            ResBody::Relayed(r) => r.is_end_stream(),
            ResBody::Teed(t) => t.is_end_stream(),
            ResBody::H2(_, _, H2End::Ended) => true,
            ResBody::H2(body, _, _) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResBody::Full(Some(d)) => SizeHint::with_exact(d.len() as u64),
            ResBody::Full(None) => SizeHint::with_exact(0),
            ResBody::Relayed(r) => r.size_hint(),
            ResBody::Teed(t) => t.size_hint(),
            ResBody::H2(body, _, _) => body.size_hint(),
        }
    }
}
