//! [`Guarded`]: the client socket with its framing followed ([`Framer`]) and its timers
//! kept.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use strata_os::bare::Bare;
use strata_os::listen::Open;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::{opens_h2, Framer, Refusal, State};

/// A client socket with its framing followed and two timers kept: the head of a request
/// must arrive within `head_timeout` of its first byte (else 408), and a connection with
/// no request under way closes after `idle_timeout`. The timer is armed lazily: a
/// request whose head arrives in one read costs no timer operation.
pub struct Guarded {
    /// Read and written by the system calls themselves ([`Bare`]).
    stream: Bare,
    framer: Framer,
    head_timeout: Duration,
    idle_timeout: Duration,
    /// When the current head began, or the connection went idle.
    since: Instant,
    sleep: Pin<Box<Sleep>>,
    /// A refusal found after complete requests that were handed on: hyper answers
    /// those, then sees the end of the stream and closes.
    pending: Option<Refusal>,
    /// Whether a whole request already went to hyper on this connection (its reply
    /// may still be on its way out, so a refusal must not be written beside it).
    served: bool,
    write_stall: StallWatch,
    /// The connection's count on its worker ([`strata_os::listen::Spread`]), for as
    /// long as the socket is open (a tunnel's included).
    open: Option<Open>,
}

/// A switched connection (WebSocket) with no byte either way for this long is closed;
/// WebSocket peers ping more often than this (the `websockets` package every 20 s).
pub const TUNNEL_IDLE: Duration = Duration::from_secs(300);
/// A client that sends nothing of a body it started for this long is cut off.
pub const BODY_IDLE: Duration = Duration::from_secs(60);
/// A client that takes nothing of a reply for this long is cut off.
pub const WRITE_STALL: Duration = Duration::from_secs(60);

impl Guarded {
    pub fn new(stream: TcpStream, max_head: usize, head_timeout: Duration, idle_timeout: Duration) -> Guarded {
        let now = Instant::now();
        Guarded {
            stream: Bare::new(stream),
            framer: Framer::new(max_head),
            head_timeout,
            idle_timeout,
            since: now,
            sleep: Box::pin(tokio::time::sleep_until(now + idle_timeout)),
            pending: None,
            served: false,
            write_stall: StallWatch::default(),
            open: None,
        }
    }

    /// Holds the connection's count on its worker for as long as the socket is open.
    pub fn counted(mut self, open: Open) -> Guarded {
        self.open = Some(open);
        self
    }

    /// The socket and its count on its worker, for a connection that switched
    /// protocols (its tunnel keeps its own limits, and the count while it lasts).
    pub fn into_socket(self) -> (Bare, Option<Open>) {
        (self.stream, self.open)
    }

    /// Whether the client opens with HTTP/2's preface (see [`opens_h2`]), waiting for
    /// its first bytes at most `within`.
    pub async fn opens_h2(&self, within: Duration) -> bool {
        opens_h2(self.stream.get_ref(), within).await
    }

    fn refuse(&mut self, why: Refusal) -> io::Error {
        // The socket is writable at this point in all but pathological cases; a reply
        // that does not fit is dropped with the connection.
        let _ = self.stream.get_ref().try_write(&why.reply());
        io::Error::new(io::ErrorKind::InvalidData, format!("{why:?}"))
    }

    /// A reply going out: the idle time of a kept-alive connection counts from here.
    fn touch(&mut self) {
        if self.between() || self.framer.state == State::Tunnel {
            self.since = Instant::now();
        }
    }

    /// True between requests: nothing of a next head has arrived yet.
    fn between(&self) -> bool {
        self.framer.state == State::Head && self.framer.buf.is_empty()
    }

    /// While waiting for the client: has the head or idle deadline passed? Arms the
    /// timer only as far as needed; a timer that fired for an older deadline is re-armed.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Option<Expired> {
        let (limit, what) = if self.framer.mid_head() {
            (self.head_timeout, Expired::Head)
        } else if self.between() {
            (self.idle_timeout, Expired::Idle)
        } else if self.framer.state == State::Off {
            return None;
        } else if self.framer.state == State::Tunnel {
            (TUNNEL_IDLE, Expired::Idle)
        } else {
            // Inside a body that hyper is waiting for.
            (BODY_IDLE, Expired::Body)
        };
        let deadline = self.since + limit;
        if self.sleep.deadline() > deadline {
            self.sleep.as_mut().reset(deadline);
        }
        loop {
            match self.sleep.as_mut().poll(cx) {
                Poll::Pending => return None,
                Poll::Ready(()) if Instant::now() >= deadline => return Some(what),
                Poll::Ready(()) => self.sleep.as_mut().reset(deadline),
            }
        }
    }
}

enum Expired {
    Head,
    Idle,
    Body,
}

/// The write side's stall timer, shared with the node API's connection: armed while the
/// client takes nothing of what is written to it, and [`WRITE_STALL`] of that is an
/// error.
#[derive(Default)]
pub struct StallWatch(Option<Pin<Box<Sleep>>>);

impl StallWatch {
    /// A write that cannot proceed arms the timer (and fails once it has run out); one
    /// that does disarms it.
    pub fn watch(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        match polled {
            Poll::Pending => {
                let stall = self.0.get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_STALL)));
                match stall.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the client took nothing of its reply for {}s", WRITE_STALL.as_secs()),
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
            done => {
                self.0 = None;
                done
            }
        }
    }
}

impl AsyncRead for Guarded {
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
                // A worker quiet for a second gives the memory back (`listen::worked`),
                // even while clients keep their connections open.
                if let Some(open) = &this.open {
                    open.worked();
                }
                if this.between() {
                    // A head begins now.
                    this.since = Instant::now();
                }
                let result = this.framer.feed(fresh);
                if let Err((why, good)) = result {
                    buf.set_filled(before + good);
                    if good == 0 && !this.served {
                        return Poll::Ready(Err(this.refuse(why)));
                    }
                    // Serve the complete requests before the refused one, then close.
                    this.pending = Some(why);
                    return Poll::Ready(Ok(()));
                }
                if this.framer.messages > 0 {
                    this.served = true;
                }
                if !this.between() && !this.framer.mid_head() && this.framer.state != State::Off {
                    // A body (or a tunnel's bytes) is arriving: its idle time counts from here.
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

impl AsyncWrite for Guarded {
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
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    use super::*;

    /// A client that takes nothing of its reply: the write fails once it has stalled for
    /// [`WRITE_STALL`] (time paused: the runtime skips ahead while the socket is full),
    /// and not before.
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_client_that_reads_nothing_is_cut_off_after_the_write_stall() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut guarded = Guarded::new(server, 8192, Duration::from_secs(10), Duration::from_secs(600));
        let started = Instant::now();
        let chunk = vec![b'x'; 1 << 16];
        let mut written = 0usize;
        let err = loop {
            match guarded.write(&chunk).await {
                Ok(n) => written += n,
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        assert!(err.to_string().contains("60s"), "{err}");
        assert!(
            started.elapsed() >= WRITE_STALL,
            "cut off after {:?}",
            started.elapsed()
        );
        assert!(written > 0, "the socket's buffers took something first");
        drop(client);
    }
}
