//! A member's reply head, parsed from the front of the read buffer, and how the reply
//! body after it is framed. Pure: bytes in, a response head and its framing out.

use std::io;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode, Version};

/// Largest reply head accepted from a member.
pub(super) const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 100;

/// The member answered an HTTP/1.1 request with an HTTP/2 frame: it speaks only HTTP/2
/// (an h2c gRPC server). The request's protocol is wrong, not the member: the error's
/// kind is [`io::ErrorKind::Unsupported`], which the relay does not hold against it.
fn h2_only() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "it answered with an HTTP/2 frame (it speaks only HTTP/2, as gRPC servers do)",
    )
}

/// Parses a reply head at the front of `rbuf`, consuming it. None: not complete yet.
/// `upgrade`: the request asked to switch protocols, so a 101 is its answer (with no
/// body: what follows is the new protocol's).
pub(super) fn parse_head(
    rbuf: &mut BytesMut,
    method: &Method,
    upgrade: bool,
) -> io::Result<Option<(Response<()>, BodyFraming, bool)>> {
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
                // No HTTP/1 reply starts with a NUL; an HTTP/2 frame's length does (an h2c
                // server's SETTINGS, its first frame, is short).
                Err(_) if rbuf.first() == Some(&0) => return Err(h2_only()),
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
        if code == 101 && !upgrade {
            return Err(invalid("an unrequested 101 Switching Protocols"));
        }
        if (100..200).contains(&code) && code != 101 {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> io::Result<Option<(Response<()>, BodyFraming, bool)>> {
        let mut buf = BytesMut::from(text.as_bytes());
        parse_head(&mut buf, &Method::GET, false)
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
            let e = head(bad).expect_err(bad);
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{bad:?}");
        }
    }

    #[test]
    fn an_http2_frame_says_the_member_speaks_only_http2() {
        // grpcio's first bytes to an HTTP/1.1 request: its SETTINGS frame.
        let mut buf = BytesMut::from(&b"\x00\x00\x18\x04\x00\x00\x00\x00\x00\x00\x04\x00"[..]);
        let e = parse_head(&mut buf, &Method::GET, false).expect_err("not HTTP/1");
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
        assert!(e.to_string().contains("speaks only HTTP/2"), "{e}");
    }
}
