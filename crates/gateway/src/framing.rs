//! The client side of an HTTP/1.1 connection, followed byte by byte ahead of hyper.
//!
//! hyper parses requests leniently where a proxy must not: a head carrying both
//! `Content-Length` and `Transfer-Encoding` is accepted (framed by the latter), which is
//! how request smuggling starts. [`Framer`] follows the framing of every message on the
//! connection (heads, then bodies by length or by chunks) so that each head can be
//! checked before hyper sees it, and so that the connection knows whether a client is in
//! the middle of sending a head (a slow client gets 408) or idle between requests
//! (closed quietly). [`Guarded`] wraps the socket with it and keeps the timers.

use std::time::Duration;

use tokio::net::TcpStream;

mod guarded;
pub use guarded::{Guarded, StallWatch, BODY_IDLE, TUNNEL_IDLE, WRITE_STALL};

/// Why a connection is refused before hyper sees the request; the reply is written as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Both Content-Length and Transfer-Encoding: 400.
    AmbiguousLength,
    /// Request line and headers over the limit: 431.
    HeadTooLarge,
    /// The head was not complete in time: 408.
    HeadTimeout,
}

impl Refusal {
    /// The whole HTTP reply, connection closing.
    pub fn reply(self) -> Vec<u8> {
        use strata_wire::{ErrorBody, ErrorCode};
        let (status, reason, code, message) = match self {
            Refusal::AmbiguousLength => (
                400,
                "Bad Request",
                ErrorCode::BadRequest,
                "a request may not carry both Content-Length and Transfer-Encoding",
            ),
            Refusal::HeadTooLarge => (
                431,
                "Request Header Fields Too Large",
                ErrorCode::HeadersTooLarge,
                "request line and headers are over the gateway's limit",
            ),
            Refusal::HeadTimeout => (
                408,
                "Request Timeout",
                ErrorCode::DeadlineExceeded,
                "request headers not received in time",
            ),
        };
        let body = ErrorBody::new(status, code, message).to_json();
        format!(
            "HTTP/1.1 {status} {reason}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a head; `seen` bytes of it so far.
    Head,
    /// Skipping a body of known length.
    Body(u64),
    /// Reading a chunk-size line.
    ChunkSize,
    /// Skipping chunk data, then its CRLF.
    ChunkData(u64),
    /// Skipping trailer lines until an empty one; `line` bytes into the current line.
    Trailers { line: usize },
    /// No longer following (HTTP/2, or a head hyper will refuse anyway).
    Off,
    /// After a bodiless GET asking to switch protocols (WebSocket): what follows is the
    /// tunnel's bytes if the member agrees; if it does not, the gateway closes the
    /// connection after its answer, so nothing after the head is ever taken for a
    /// request. Idle for [`TUNNEL_IDLE`] (no byte either way): closed.
    Tunnel,
}

/// Follows message boundaries of the requests on one connection.
pub struct Framer {
    state: State,
    /// Heads completed so far.
    pub messages: u64,
    /// The head being read (or the chunk-size line).
    buf: Vec<u8>,
    max_head: usize,
}

const MAX_CHUNK_LINE: usize = 4096;

impl Framer {
    pub fn new(max_head: usize) -> Framer {
        Framer {
            state: State::Head,
            messages: 0,
            buf: Vec::new(),
            max_head,
        }
    }

    /// True while some bytes of a head have arrived but not all of it.
    pub fn mid_head(&self) -> bool {
        self.state == State::Head && !self.buf.is_empty()
    }

    /// True after a request to switch protocols: what follows is not HTTP any more.
    pub fn in_tunnel(&self) -> bool {
        self.state == State::Tunnel
    }

    /// True between requests: the last one was read whole and nothing of the next has
    /// arrived. Neither this nor [`Framer::mid_head`]: inside a body.
    pub fn between(&self) -> bool {
        self.state == State::Head && self.buf.is_empty()
    }

    /// Takes bytes the client sent, in order. A refusal comes with how many of these
    /// bytes belong to the messages before the refused one (they may still be served).
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), (Refusal, usize)> {
        let total = bytes.len();
        let mut head_start = 0;
        self.feed_inner(bytes, &mut head_start)
            .map_err(|why| (why, head_start.min(total)))
    }

    fn feed_inner(&mut self, mut bytes: &[u8], head_start: &mut usize) -> Result<(), Refusal> {
        let total = bytes.len();
        while !bytes.is_empty() {
            match self.state {
                State::Off | State::Tunnel => return Ok(()),
                State::Head => {
                    if self.buf.is_empty() {
                        *head_start = total - bytes.len();
                    }
                    // A fresh head: if it arrived whole, check it in place.
                    let (head_end, from) = if self.buf.is_empty() {
                        (find_head_end(bytes, 0), None)
                    } else {
                        let from = self.buf.len().saturating_sub(3);
                        let take = bytes
                            .len()
                            .min(self.max_head + 4 - self.buf.len().min(self.max_head + 4));
                        self.buf.extend_from_slice(&bytes[..take]);
                        (find_head_end(&self.buf, from), Some(take))
                    };
                    match (head_end, from) {
                        (Some(end), None) => {
                            if end > self.max_head + 4 {
                                return Err(Refusal::HeadTooLarge);
                            }
                            self.state = next_after_head(&bytes[..end])?;
                            self.messages += 1;
                            bytes = &bytes[end..];
                        }
                        (Some(end), Some(take)) => {
                            if end > self.max_head + 4 {
                                return Err(Refusal::HeadTooLarge);
                            }
                            let head = std::mem::take(&mut self.buf);
                            self.state = next_after_head(&head[..end])?;
                            self.messages += 1;
                            // Bytes of the head that came in this feed; the rest is body.
                            let used_here = end - (head.len() - take);
                            bytes = &bytes[used_here..];
                        }
                        (None, None) => {
                            if bytes.len() > self.max_head + 4 {
                                return Err(Refusal::HeadTooLarge);
                            }
                            self.buf.extend_from_slice(bytes);
                            return Ok(());
                        }
                        (None, Some(_)) => {
                            if self.buf.len() > self.max_head + 3 {
                                return Err(Refusal::HeadTooLarge);
                            }
                            return Ok(());
                        }
                    }
                }
                State::Body(left) => {
                    let n = left.min(bytes.len() as u64);
                    bytes = &bytes[n as usize..];
                    self.state = if n == left { State::Head } else { State::Body(left - n) };
                }
                State::ChunkSize => match bytes.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        self.buf.extend_from_slice(&bytes[..i]);
                        bytes = &bytes[i + 1..];
                        let size = parse_chunk_size(&self.buf);
                        self.buf.clear();
                        self.state = match size {
                            Some(0) => State::Trailers { line: 0 },
                            Some(n) => State::ChunkData(n.saturating_add(2)),
                            // hyper refuses it; nothing to follow any more.
                            None => State::Off,
                        };
                    }
                    None => {
                        self.buf.extend_from_slice(bytes);
                        if self.buf.len() > MAX_CHUNK_LINE {
                            self.state = State::Off;
                        }
                        return Ok(());
                    }
                },
                State::ChunkData(left) => {
                    let n = left.min(bytes.len() as u64);
                    bytes = &bytes[n as usize..];
                    self.state = if n == left {
                        State::ChunkSize
                    } else {
                        State::ChunkData(left - n)
                    };
                }
                State::Trailers { line } => {
                    let b = bytes[0];
                    bytes = &bytes[1..];
                    self.state = match b {
                        b'\n' if line == 0 => State::Head,
                        b'\n' => State::Trailers { line: 0 },
                        b'\r' => State::Trailers { line },
                        _ => State::Trailers { line: line + 1 },
                    };
                }
            }
        }
        Ok(())
    }
}

/// The index just past the blank line ending a head, searching from `from`.
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 1 < buf.len() {
        match buf[i..].iter().position(|&b| b == b'\n') {
            Some(p) => i += p,
            None => return None,
        }
        // `\n\n` or `\n\r\n` after a line ends the head.
        if buf.get(i + 1) == Some(&b'\n') {
            return Some(i + 2);
        }
        if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
            return Some(i + 3);
        }
        i += 1;
    }
    None
}

/// Reads the framing headers of a complete head and says what follows it.
fn next_after_head(head: &[u8]) -> Result<State, Refusal> {
    let mut lines = head.split(|&b| b == b'\n');
    let request_line = lines.next().unwrap_or_default();
    if request_line.starts_with(b"PRI * HTTP/2") {
        return Ok(State::Off);
    }
    let mut length: Option<Option<u64>> = None;
    let mut chunked: Option<bool> = None;
    let (mut upgrade, mut connection_upgrade) = (false, false);
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if name.eq_ignore_ascii_case(b"content-length") {
            length = Some(std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()));
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            let last = value.rsplit(|&b| b == b',').next().map(trim).unwrap_or_default();
            chunked = Some(last.eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            upgrade = !value.is_empty();
        } else if name.eq_ignore_ascii_case(b"connection") {
            connection_upgrade |= value
                .split(|&b| b == b',')
                .any(|token| trim(token).eq_ignore_ascii_case(b"upgrade"));
        }
    }
    if upgrade && connection_upgrade && request_line.starts_with(b"GET ") && length.is_none() && chunked.is_none() {
        return Ok(State::Tunnel);
    }
    match (length, chunked) {
        (Some(_), Some(_)) => Err(Refusal::AmbiguousLength),
        (_, Some(true)) => Ok(State::ChunkSize),
        // A transfer coding other than chunked last: hyper answers 400.
        (_, Some(false)) => Ok(State::Off),
        (Some(Some(0)), None) | (None, None) => Ok(State::Head),
        (Some(Some(n)), None) => Ok(State::Body(n)),
        // A length that is not a number: hyper answers 400.
        (Some(None), None) => Ok(State::Off),
    }
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let hex = line.split(|&b| b == b';').next().map(trim)?;
    if hex.is_empty() || hex.len() > 15 {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

/// Whether the connection opens with HTTP/2's preface (`PRI * HTTP/2.0`, which no
/// HTTP/1 request can start with): peeks at the first three bytes, waiting for them at
/// most `within`; false when they do not come.
pub async fn opens_h2(stream: &TcpStream, within: Duration) -> bool {
    let peek = async {
        let mut first = [0u8; 3];
        loop {
            match stream.peek(&mut first).await {
                Ok(n) if n >= 3 => return &first == b"PRI",
                Ok(0) | Err(_) => return false,
                Ok(n) if first[..n] != b"PRI"[..n] => return false,
                // A byte or two of what may be a preface: wait for the rest.
                Ok(_) => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
    };
    tokio::time::timeout(within, peek).await.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(framer: &mut Framer, bytes: &[u8], step: usize) -> Result<(), Refusal> {
        for chunk in bytes.chunks(step) {
            framer.feed(chunk).map_err(|(why, _)| why)?;
        }
        Ok(())
    }

    /// Every split of the input gives the same verdict as feeding it whole.
    fn verdict(bytes: &[u8]) -> Result<bool, Refusal> {
        let mut results = Vec::new();
        for step in [1, 2, 3, 7, 64, bytes.len().max(1)] {
            let mut framer = Framer::new(1024);
            results
                .push(feed_all(&mut framer, bytes, step).map(|()| framer.state == State::Head && !framer.mid_head()));
        }
        assert!(results.windows(2).all(|w| w[0] == w[1]), "splits disagree: {results:?}");
        results[0]
    }

    #[test]
    fn follows_requests_with_and_without_bodies() {
        let stream = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n\
            POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello\
            POST /y HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n\
            GET /z HTTP/1.1\r\n\r\n";
        assert_eq!(verdict(stream), Ok(true), "ends between requests");
        assert_eq!(verdict(b"GET / HTTP/1.1\r\nHost: a\r\n"), Ok(false), "mid head");
    }

    #[test]
    fn an_upgrade_request_switches_to_the_tunnel_and_only_a_bodiless_get_does() {
        let ws = b"GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\r\n";
        let mut framer = Framer::new(1024);
        // What follows the head is the tunnel's, even bytes that look like a refusable head.
        let mut stream = ws.to_vec();
        stream.extend_from_slice(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(feed_all(&mut framer, &stream, 5), Ok(()));
        assert_eq!(framer.state, State::Tunnel);
        for not in [
            // No Connection: upgrade, no Upgrade, a body, not a GET: framed as usual.
            &b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nConnection: upgrade\r\n\r\n",
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\nContent-Length: 0\r\n\r\n",
            b"POST / HTTP/1.1\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n",
        ] {
            assert_eq!(verdict(not), Ok(true), "{}", String::from_utf8_lossy(not));
        }
    }

    #[test]
    fn a_body_that_looks_like_a_request_is_not_read_as_one() {
        let inner = b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut stream = format!("POST /x HTTP/1.1\r\nContent-Length: {}\r\n\r\n", inner.len()).into_bytes();
        stream.extend_from_slice(inner);
        assert_eq!(verdict(&stream), Ok(true));
        let mut chunked = b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        chunked.extend_from_slice(format!("{:x}\r\n", inner.len()).as_bytes());
        chunked.extend_from_slice(inner);
        chunked.extend_from_slice(b"\r\n0\r\n\r\n");
        assert_eq!(verdict(&chunked), Ok(true));
    }

    #[test]
    fn refuses_content_length_with_transfer_encoding_in_any_order_and_case() {
        for head in [
            &b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n",
            b"POST / HTTP/1.1\r\nTRANSFER-ENCODING: gzip, chunked\r\nCONTENT-LENGTH:3\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert_eq!(
                verdict(head),
                Err(Refusal::AmbiguousLength),
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[test]
    fn refuses_heads_over_the_limit_however_they_arrive() {
        let mut head = b"GET / HTTP/1.1\r\nX-Filler: ".to_vec();
        head.extend(std::iter::repeat_n(b'f', 2000));
        head.extend_from_slice(b"\r\n\r\n");
        assert_eq!(verdict(&head), Err(Refusal::HeadTooLarge));
        // Still incomplete but already too long.
        assert_eq!(verdict(&head[..1500]), Err(Refusal::HeadTooLarge));
        let small = b"GET / HTTP/1.1\r\nX-Filler: ffff\r\n\r\n";
        assert_eq!(verdict(small), Ok(true));
    }

    #[test]
    fn stops_following_what_hyper_refuses_or_cannot_be_followed() {
        for stream in [
            &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n anything at all"[..],
            b"POST / HTTP/1.1\r\nContent-Length: nope\r\n\r\nxx",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        ] {
            let mut framer = Framer::new(1024);
            assert_eq!(framer.feed(stream), Ok(()));
            assert_eq!(framer.state, State::Off, "{}", String::from_utf8_lossy(stream));
        }
    }

    #[test]
    fn refusal_replies_are_well_framed_json() {
        for why in [Refusal::AmbiguousLength, Refusal::HeadTooLarge, Refusal::HeadTimeout] {
            let reply = why.reply();
            let text = std::str::from_utf8(&reply).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            let declared: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(declared, body.len(), "{why:?}");
            let json: serde_json::Value = serde_json::from_str(body).unwrap();
            assert!(head.contains(&json["status"].to_string()), "{why:?}");
        }
    }

    #[test]
    fn chunk_sizes() {
        assert_eq!(parse_chunk_size(b"1a\r"), Some(26));
        assert_eq!(parse_chunk_size(b"0"), Some(0));
        assert_eq!(parse_chunk_size(b"ff ; name=value\r"), Some(255));
        assert_eq!(parse_chunk_size(b"\r"), None);
        assert_eq!(parse_chunk_size(b"12345678901234567\r"), None);
        assert_eq!(
            parse_chunk_size(b"ffffffffffffffff\r"),
            None,
            "16 digits could overflow"
        );
        assert_eq!(parse_chunk_size(b"fffffffffffffff\r"), Some(0xfff_ffff_ffff_ffff));
        assert_eq!(parse_chunk_size(b"xyz\r"), None);
    }
}
