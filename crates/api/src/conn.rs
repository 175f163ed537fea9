//! One node API connection as hyper reads and writes it ([`ApiConn`]): its HTTP/1.1
//! framing followed ahead of hyper by the gateway's [`Framer`] (so that a head with both
//! Content-Length and Transfer-Encoding gets 400 and one over the limit 431 before hyper
//! sees it), and its timers kept by what the connection is doing:
//!
//! | the connection is | timer | when it runs out |
//! |---|---|---|
//! | reading a head | `head` from the head's first byte | 408, closed |
//! | between requests, none in flight | `idle` from the last reply | closed quietly |
//! | between requests, one in flight (a long poll, followed logs) | none | — |
//! | reading a body | [`BODY_IDLE`] from its last byte | closed |
//! | switched (WebSocket through `/v1/any`) | [`TUNNEL_IDLE`] from the last byte either way, kept by the tunnel on the socket itself once hyper lets go | closed |
//! | writing to a client that takes nothing | [`WRITE_STALL`](strata_gateway::framing::WRITE_STALL), by [`StallWatch`] | closed |
//!
//! Unlike the gateway's `framing::Guarded`, it knows which requests are in flight
//! ([`InFlight`], counted by the server from the call of the route to the end of its
//! reply body), so that the idle timer never cuts a long poll, while hyper still watches
//! the socket during one and drops the request when the client goes away.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use strata_gateway::framing::{Framer, Refusal, StallWatch, BODY_IDLE, TUNNEL_IDLE};
use strata_wire::{ErrorBody, ErrorCode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// The head and idle limits of a connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub head: Duration,
    pub idle: Duration,
    pub max_head: usize,
}

/// The requests of one connection in flight, and the task to wake when the last ends.
#[derive(Default)]
pub(crate) struct InFlight {
    count: AtomicUsize,
    waker: Mutex<Option<Waker>>,
}

/// One request in flight; dropped with its reply body (or the route, if it never answers).
pub(crate) struct Busy(Arc<InFlight>);

impl InFlight {
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.count.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    fn busy(&self) -> bool {
        self.count.load(Ordering::Acquire) > 0
    }

    /// Wakes `cx` when no request is in flight any more; false if none is now.
    fn wake_when_done(&self, cx: &Context<'_>) -> bool {
        *self.waker.lock().expect("in-flight waker") = Some(cx.waker().clone());
        self.busy()
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            if let Some(waker) = self.0.waker.lock().expect("in-flight waker").take() {
                waker.wake();
            }
        }
    }
}

/// A client socket with its framing followed and its timers kept (see the module).
pub(crate) struct ApiConn {
    stream: TcpStream,
    framer: Framer,
    in_flight: Arc<InFlight>,
    timeouts: Timeouts,
    /// When the current head or body last moved, or the last reply was written.
    since: Instant,
    sleep: Pin<Box<Sleep>>,
    /// Whether a request was in flight at the last look: its end restarts the idle time.
    was_busy: bool,
    /// A refusal found after complete requests that went to hyper: those are answered,
    /// then the stream ends.
    pending: Option<Refusal>,
    /// Whether a whole request already went to hyper (its reply may be on its way out,
    /// so a refusal must not be written beside it).
    served: bool,
    write_stall: StallWatch,
}

enum Expired {
    Head,
    Idle,
    Body,
}

impl ApiConn {
    pub fn new(stream: TcpStream, timeouts: Timeouts, in_flight: Arc<InFlight>) -> ApiConn {
        let now = Instant::now();
        ApiConn {
            stream,
            framer: Framer::new(timeouts.max_head),
            in_flight,
            timeouts,
            since: now,
            sleep: Box::pin(tokio::time::sleep_until(now + timeouts.idle)),
            was_busy: false,
            pending: None,
            served: false,
            write_stall: StallWatch::default(),
        }
    }

    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    fn refuse(&mut self, why: Refusal) -> io::Error {
        // The socket is writable at this point in all but pathological cases; a reply
        // that does not fit is dropped with the connection.
        let _ = self.stream.try_write(&refusal_reply(why, &self.timeouts));
        io::Error::new(io::ErrorKind::InvalidData, format!("{why:?}"))
    }

    /// While waiting for the client: has the deadline of what the connection is doing
    /// passed? Arms the timer only as far as needed.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Option<Expired> {
        let (limit, what) = if self.framer.in_tunnel() {
            // Switched (WebSocket through `/v1/any`): no byte either way for this long.
            (TUNNEL_IDLE, Expired::Idle)
        } else if self.framer.mid_head() {
            (self.timeouts.head, Expired::Head)
        } else if self.framer.between() {
            if self.in_flight.busy() && self.in_flight.wake_when_done(cx) {
                // A long poll or a followed log: hyper only watches for the client
                // going away; the end of the reply wakes this read again.
                self.was_busy = true;
                return None;
            }
            if std::mem::take(&mut self.was_busy) {
                self.since = Instant::now();
            }
            (self.timeouts.idle, Expired::Idle)
        } else {
            (BODY_IDLE, Expired::Body)
        };
        let deadline = self.since + limit;
        if self.sleep.deadline() != deadline {
            self.sleep.as_mut().reset(deadline);
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Some(what),
            Poll::Pending => None,
        }
    }

    /// A reply going out: the idle time of a kept-alive connection counts from here.
    fn touch(&mut self) {
        if self.framer.between() || self.framer.in_tunnel() {
            self.since = Instant::now();
        }
    }
}

/// The whole reply to a request refused before hyper saw it, connection closing.
pub(crate) fn refusal_reply(why: Refusal, timeouts: &Timeouts) -> Vec<u8> {
    let (status, reason, code, message) = match why {
        Refusal::AmbiguousLength => (
            400,
            "Bad Request",
            ErrorCode::BadRequest,
            "a request may not carry both Content-Length and Transfer-Encoding".to_string(),
        ),
        Refusal::HeadTooLarge => (
            431,
            "Request Header Fields Too Large",
            ErrorCode::HeadersTooLarge,
            format!(
                "request line and headers are over the node API's limit of {} bytes",
                timeouts.max_head
            ),
        ),
        Refusal::HeadTimeout => (
            408,
            "Request Timeout",
            ErrorCode::DeadlineExceeded,
            format!(
                "request line and headers not received within {:?} of their first byte",
                timeouts.head
            ),
        ),
    };
    let body = ErrorBody::new(status, code, message).to_json();
    format!(
        "HTTP/1.1 {status} {reason}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

impl AsyncRead for ApiConn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pending.is_some() {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let fresh = &buf.filled()[before..];
                if fresh.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                if this.framer.between() {
                    // A head begins now.
                    this.since = Instant::now();
                }
                if let Err((why, good)) = this.framer.feed(fresh) {
                    buf.set_filled(before + good);
                    if good == 0 && !this.served {
                        return Poll::Ready(Err(this.refuse(why)));
                    }
                    this.pending = Some(why);
                    return Poll::Ready(Ok(()));
                }
                if this.framer.messages > 0 {
                    this.served = true;
                }
                if !this.framer.between() && !this.framer.mid_head() {
                    // A body is arriving: its idle time counts from here.
                    this.since = Instant::now();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match this.poll_deadline(cx) {
                None => Poll::Pending,
                Some(Expired::Head) => Poll::Ready(Err(this.refuse(Refusal::HeadTimeout))),
                // Idle too long: end of stream, and hyper closes the connection quietly.
                Some(Expired::Idle) => Poll::Ready(Ok(())),
                Some(Expired::Body) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client sent nothing of its request body for 60s",
                ))),
            },
        }
    }
}

impl AsyncWrite for ApiConn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.touch();
        let this = &mut *self;
        let polled = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.write_stall.watch(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.touch();
        let this = &mut *self;
        let polled = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.write_stall.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_replies_are_well_framed_and_name_the_limit() {
        let timeouts = Timeouts {
            head: Duration::from_secs(10),
            idle: Duration::from_secs(75),
            max_head: 65536,
        };
        for (why, says) in [
            (Refusal::AmbiguousLength, "both Content-Length and Transfer-Encoding"),
            (Refusal::HeadTooLarge, "limit of 65536 bytes"),
            (Refusal::HeadTimeout, "within 10s"),
        ] {
            let reply = refusal_reply(why, &timeouts);
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
            assert!(json["error"].as_str().unwrap().contains(says), "{why:?}: {body}");
        }
    }
}
