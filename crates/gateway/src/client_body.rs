//! The request body as a client sends it: over HTTP/1 through hyper's server, or over
//! HTTP/2 straight from the `h2` crate's stream (`serve_h2`), the window given back to
//! the client as the relay takes the data.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// A client's request body.
pub enum ClientBody {
    /// Read by hyper's HTTP/1 server (and the node API's servers).
    Http(Incoming),
    /// An HTTP/2 stream of the gateway's own HTTP/2 server.
    H2(H2Body),
}

impl From<Incoming> for ClientBody {
    fn from(body: Incoming) -> ClientBody {
        ClientBody::Http(body)
    }
}

/// Why a client's body broke off.
#[derive(Debug)]
pub enum ClientBodyError {
    Http(hyper::Error),
    H2(h2::Error),
}

impl std::fmt::Display for ClientBodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientBodyError::Http(e) => e.fmt(f),
            ClientBodyError::H2(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ClientBodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientBodyError::Http(e) => Some(e),
            ClientBodyError::H2(e) => Some(e),
        }
    }
}

/// An HTTP/2 request stream as a body: data, then trailers; each chunk's bytes are given
/// back to the client's window as the chunk is taken.
pub struct H2Body {
    recv: h2::RecvStream,
    data_done: bool,
    /// What the declared `content-length` leaves to come, for the size hint (h2 itself
    /// refuses a body that does not match it).
    length: Option<u64>,
}

impl H2Body {
    pub fn new(recv: h2::RecvStream, length: Option<u64>) -> H2Body {
        H2Body {
            recv,
            data_done: false,
            length,
        }
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        match self.get_mut() {
            ClientBody::Http(body) => Pin::new(body).poll_frame(cx).map_err(ClientBodyError::Http),
            ClientBody::H2(body) => {
                if !body.data_done {
                    match ready!(body.recv.poll_data(cx)) {
                        Some(Ok(data)) => {
                            let _ = body.recv.flow_control().release_capacity(data.len());
                            if let Some(left) = &mut body.length {
                                *left = left.saturating_sub(data.len() as u64);
                            }
                            return Poll::Ready(Some(Ok(Frame::data(data))));
                        }
                        Some(Err(e)) => return Poll::Ready(Some(Err(ClientBodyError::H2(e)))),
                        None => body.data_done = true,
                    }
                }
                Poll::Ready(match ready!(body.recv.poll_trailers(cx)) {
                    Ok(Some(trailers)) => Some(Ok(Frame::trailers(trailers))),
                    Ok(None) => None,
                    Err(e) => Some(Err(ClientBodyError::H2(e))),
                })
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Http(body) => body.is_end_stream(),
            ClientBody::H2(body) => body.recv.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Http(body) => body.size_hint(),
            ClientBody::H2(body) if body.recv.is_end_stream() => SizeHint::with_exact(0),
            ClientBody::H2(H2Body {
                length: Some(n),
                data_done: false,
                ..
            }) => SizeHint::with_exact(*n),
            ClientBody::H2(_) => SizeHint::default(),
        }
    }
}
