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
                while !body.data_done {
                    match ready!(body.recv.poll_data(cx)) {
                        // An empty frame carries nothing but, at most, the end of the
                        // stream (hyper's and tonic's clients end every request that
                        // way): it is not passed on, so that the relay puts the end on
                        // the last frame that carries data: a unary gRPC call then
                        // reaches the member as one DATA frame where the client sent two.
                        Some(Ok(data)) if data.is_empty() => continue,
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

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// What a client's HTTP/2 request body gives the relay, frame by frame, when the
    /// client sends `chunks` (the last with END_STREAM) and then `trailers`.
    async fn frames_of(chunks: &[&'static [u8]], trailers: bool) -> Vec<Frame<Bytes>> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let chunks: Vec<&'static [u8]> = chunks.to_vec();
        let client = tokio::spawn(async move {
            let socket = TcpStream::connect(addr).await.unwrap();
            let (sender, conn) = h2::client::handshake(socket).await.unwrap();
            tokio::spawn(conn);
            let mut sender = sender.ready().await.unwrap();
            let req = http::Request::post("http://strata/x").body(()).unwrap();
            let (reply, mut send) = sender.send_request(req, false).unwrap();
            let last = chunks.len() - 1;
            for (i, chunk) in chunks.into_iter().enumerate() {
                send.send_data(Bytes::from_static(chunk), i == last && !trailers)
                    .unwrap();
            }
            if trailers {
                let mut t = http::HeaderMap::new();
                t.insert("grpc-status", "0".parse().unwrap());
                send.send_trailers(t).unwrap();
            }
            // Held open until the server has answered.
            let _ = reply.await;
        });
        let (socket, _) = listener.accept().await.unwrap();
        let mut conn = h2::server::handshake(socket).await.unwrap();
        let (req, mut respond) = conn.accept().await.unwrap().unwrap();
        let serving = tokio::spawn(async move { while conn.accept().await.is_some() {} });
        // Whatever the client sent has arrived before the body is read, as when a
        // client's frames come in one read.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let mut body = ClientBody::H2(H2Body::new(req.into_body(), None));
        let mut frames = Vec::new();
        while let Some(frame) = body.frame().await {
            frames.push(frame.unwrap());
        }
        assert!(body.is_end_stream());
        respond.send_response(http::Response::new(()), true).unwrap();
        client.await.unwrap();
        serving.abort();
        frames
    }

    #[tokio::test]
    async fn empty_data_frames_are_not_passed_on_and_the_end_stays() {
        // hyper's and tonic's clients end a request with an empty DATA frame.
        let frames = frames_of(&[b"\0\0\0\0\x03abc", b""], false).await;
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_eq!(frames[0].data_ref().unwrap().as_ref(), b"\0\0\0\0\x03abc");
        // Empty frames between data, then trailers.
        let frames = frames_of(&[b"", b"ab", b"", b"cd"], true).await;
        let data: Vec<&[u8]> = frames.iter().filter_map(|f| f.data_ref().map(|d| d.as_ref())).collect();
        assert_eq!(data, [&b"ab"[..], b"cd"]);
        assert!(frames.last().unwrap().is_trailers(), "{frames:?}");
        // A body that is only an empty frame has no data at all.
        assert!(frames_of(&[b""], false).await.is_empty());
    }
}
