//! [`Bare`]: a tokio `TcpStream` read and written by the system calls themselves.
//!
//! glibc's `recv`, `send` and `writev` are cancellation points: in a process with more
//! than one thread, each call switches asynchronous cancellation on before the system
//! call and off after it (`__pthread_enable_asynccancel`, `__pthread_disable_asynccancel`).
//! Rust never cancels a thread, so that is only cost: 1.5 % of the gateway's CPU when it
//! relays WebSocket messages, more than the rest of the copy's own code
//! (bench/README.md, websocket.sh). `Bare` makes the same system calls through
//! `syscall(2)`, which is no cancellation point; [`try_read_buf`] and [`try_write`] do the
//! same for servers that wait on readiness themselves (the Redis port).
//!
//! It keeps tokio's readiness rules for a socket under epoll: a read that fills less
//! than the room it was given, or a write that takes less than it was offered, shows the
//! socket drained (or full), so its readiness is cleared then, without one more call
//! that would only answer `EAGAIN`; tokio clears it only if no event came since the
//! readiness was read, so no wake-up is lost.

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// The most buffers one `writev` takes (Linux's `IOV_MAX`); more are written next call.
const IOV_MAX: usize = 1024;

/// A `TcpStream` whose reads and writes are `recvfrom`, `sendto` and `writev` made
/// through `syscall(2)` (see the module's text).
#[derive(Debug)]
pub struct Bare {
    inner: TcpStream,
}

impl Bare {
    pub fn new(inner: TcpStream) -> Bare {
        Bare { inner }
    }

    pub fn get_ref(&self) -> &TcpStream {
        &self.inner
    }

    pub fn into_inner(self) -> TcpStream {
        self.inner
    }

    /// One non-blocking system call while the socket is ready for `interest`; `call`
    /// answers how many bytes it moved and how many it could have. A short call clears
    /// the readiness as `EAGAIN` does, and still returns what it moved.
    fn poll_call(
        &self,
        cx: &mut Context<'_>,
        interest: Interest,
        mut call: impl FnMut(RawFd) -> io::Result<(usize, usize)>,
    ) -> Poll<io::Result<usize>> {
        loop {
            if interest.is_readable() {
                ready!(self.inner.poll_read_ready(cx))?;
            } else {
                ready!(self.inner.poll_write_ready(cx))?;
            }
            match try_call(&self.inner, interest, &mut call) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                done => return Poll::Ready(done),
            }
        }
    }
}

/// One system call on `stream` if it is ready for `interest` (else `WouldBlock`), with
/// tokio clearing the readiness on `WouldBlock` and on a short call too: `call` answers
/// how many bytes it moved and how many it could have.
fn try_call(
    stream: &TcpStream,
    interest: Interest,
    mut call: impl FnMut(RawFd) -> io::Result<(usize, usize)>,
) -> io::Result<usize> {
    let mut short = None;
    let result = stream.try_io(interest, || {
        let (n, room) = call(stream.as_raw_fd())?;
        if n > 0 && n < room {
            // Drained (or full): tokio clears the readiness on this error.
            short = Some(n);
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match (result, short) {
        (_, Some(n)) => Ok(n),
        (result, None) => result,
    }
}

/// A system call's return: the count, or the error in `errno`. `EINTR` is made again.
pub(crate) fn retried(mut call: impl FnMut() -> libc::c_long) -> io::Result<usize> {
    loop {
        let n = call();
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// One `recvfrom(2)` on `stream` into the spare capacity of `buf`, whose length grows
/// by the count read, if the socket is ready for reading (else `WouldBlock`, as
/// `TcpStream::try_read_buf`). A read that leaves room took all the kernel had, so the
/// readiness is cleared then: the next wait is for new bytes, without the read that
/// would only have answered `EAGAIN`.
pub fn try_read_buf(stream: &TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    try_call(stream, Interest::READABLE, |fd| {
        let spare = buf.spare_capacity_mut();
        let room = spare.len();
        // SAFETY: the spare capacity is valid for its length of writes.
        let n = unsafe { recv(fd, spare.as_mut_ptr().cast(), room) }?;
        // SAFETY: recvfrom initialised these `n` bytes of the spare capacity.
        unsafe { buf.set_len(buf.len() + n) };
        Ok((n, room))
    })
}

/// One `sendto(2)` of `data` on `stream` if the socket is ready for writing (else
/// `WouldBlock`, as `TcpStream::try_write`); a short write clears the readiness.
pub fn try_write(stream: &TcpStream, data: &[u8]) -> io::Result<usize> {
    try_call(stream, Interest::WRITABLE, |fd| Ok((send(fd, data)?, data.len())))
}

/// One `recvfrom(2)` of at most `room` bytes into `ptr` on the socket `fd`; no address
/// is asked for.
///
/// # Safety
/// `ptr` must be valid for `room` bytes of writes.
pub(crate) unsafe fn recv(fd: RawFd, ptr: *mut u8, room: usize) -> io::Result<usize> {
    // SAFETY: the caller's promise for `ptr`; a bad `fd` is an error, not undefined.
    retried(|| unsafe {
        libc::syscall(
            libc::SYS_recvfrom,
            fd,
            ptr,
            room,
            0,
            std::ptr::null_mut::<libc::sockaddr>(),
            std::ptr::null_mut::<libc::socklen_t>(),
        )
    })
}

/// One `sendto(2)` of `data` on the socket `fd`; a closed peer is `EPIPE`, never SIGPIPE.
pub(crate) fn send(fd: RawFd, data: &[u8]) -> io::Result<usize> {
    // SAFETY: `data` is valid for its length of reads; `fd` is an open socket.
    retried(|| unsafe {
        libc::syscall(
            libc::SYS_sendto,
            fd,
            data.as_ptr(),
            data.len(),
            libc::MSG_NOSIGNAL,
            std::ptr::null::<libc::sockaddr>(),
            0 as libc::socklen_t,
        )
    })
}

impl AsyncRead for Bare {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        // SAFETY: recvfrom only writes into the unfilled part, and only the `n` bytes it
        // reports are then marked filled.
        let unfilled = unsafe { buf.unfilled_mut() };
        let (ptr, room) = (unfilled.as_mut_ptr(), unfilled.len());
        let n = ready!(self.poll_call(cx, Interest::READABLE, |fd| {
            // SAFETY: `ptr` is valid for `room` bytes of writes for this call.
            Ok((unsafe { recv(fd, ptr.cast(), room) }?, room))
        }))?;
        // SAFETY: recvfrom wrote these `n` bytes.
        unsafe { buf.assume_init(n) };
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Bare {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_call(cx, Interest::WRITABLE, |fd| Ok((send(fd, data)?, data.len())))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let bufs = &bufs[..bufs.len().min(IOV_MAX)];
        let total = bufs.iter().map(|b| b.len()).sum();
        self.poll_call(cx, Interest::WRITABLE, |fd| {
            // SAFETY: `IoSlice` is ABI-compatible with `iovec` on Unix, and each is valid
            // for its length of reads; `fd` is the stream's open socket. A closed peer is
            // EPIPE: Rust's runtime ignores SIGPIPE, as std's own `writev` relies on.
            let n = retried(|| unsafe { libc::syscall(libc::SYS_writev, fd, bufs.as_ptr(), bufs.len()) })?;
            Ok((n, total))
        })
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair() -> (Bare, Bare) {
        let (a, b) = crate::tcp_pair().await;
        (Bare::new(a), Bare::new(b))
    }

    /// Bytes each way through both kinds of write, larger than the socket buffers (so
    /// writes come back short and wait for room), read in reads of every size, then
    /// the end of the stream.
    #[tokio::test]
    async fn bytes_cross_both_ways_in_order_through_short_reads_and_writes_then_the_end() {
        let (mut a, mut b) = pair().await;
        let data: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            let (first, rest) = sent.split_at(1_000_000);
            a.write_all(first).await.unwrap();
            let mut rest = rest;
            while !rest.is_empty() {
                let (x, y) = rest.split_at(rest.len().min(3000));
                let (y, _) = y.split_at(y.len().min(5000));
                let n = a.write_vectored(&[IoSlice::new(x), IoSlice::new(y)]).await.unwrap();
                assert!(n > 0);
                rest = &rest[n..];
            }
            a.shutdown().await.unwrap();
            a
        });
        let mut got = Vec::new();
        let mut chunk = vec![0u8; 1];
        loop {
            // Reads of 1 to 70,000 bytes: many come back short of the room.
            let n = b.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
            chunk.resize(chunk.len() * 7 % 70_001 + 1, 0);
        }
        assert_eq!(got.len(), data.len());
        assert!(got == data, "the bytes arrived changed or out of order");
        // The other way, after the first side's end.
        let mut a = writer.await.unwrap();
        b.write_all(b"back").await.unwrap();
        let mut four = [0u8; 4];
        a.read_exact(&mut four).await.unwrap();
        assert_eq!(&four, b"back");
    }

    /// A short read clears the readiness; bytes sent after it still wake the reader.
    #[tokio::test]
    async fn a_read_after_a_short_read_wakes_for_the_next_bytes() {
        let (mut a, mut b) = pair().await;
        a.write_all(b"one").await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(b.read(&mut buf).await.unwrap(), 3);
        let reader = tokio::spawn(async move {
            let n = b.read(&mut buf).await.unwrap();
            buf[..n].to_vec()
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        a.write_all(b"two").await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), reader).await;
        assert_eq!(got.expect("the reader was never woken").unwrap(), b"two");
    }

    /// The calls for servers that wait on readiness themselves (the Redis port): what
    /// `try_write` sends, `try_read_buf` appends after what the buffer held.
    #[tokio::test]
    async fn try_read_buf_appends_what_try_write_sent() {
        let (a, b) = pair().await;
        let (a, b) = (a.into_inner(), b.into_inner());
        a.writable().await.unwrap();
        assert_eq!(try_write(&a, b"hello").unwrap(), 5);
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(b"> ");
        loop {
            b.readable().await.unwrap();
            match try_read_buf(&b, &mut buf) {
                Ok(n) => {
                    assert_eq!(n, 5);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(buf, b"> hello");
    }

    /// Writing to a peer that closed is an error (EPIPE or ECONNRESET), not a signal
    /// that ends the process.
    #[tokio::test]
    async fn a_write_to_a_closed_peer_is_an_error() {
        let (mut a, b) = pair().await;
        drop(b);
        let mut failed = None;
        for _ in 0..100 {
            if let Err(e) = a.write_all(&[7u8; 65536]).await {
                failed = Some(e);
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let e = failed.expect("writes to a closed peer kept succeeding");
        assert!(
            matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset),
            "{e}"
        );
    }
}
