//! A cap on a listener's open connections, and the close that does not destroy its last
//! answer: shared by the gateway and the node API (the Redis port keeps its own, in RESP
//! terms).
//!
//! - **The cap.** [`ConnCap::admit`] takes one of `max` places for a new connection and
//!   gives it back when the returned [`Slot`] drops. Past `max`, the connection is to be
//!   answered with why (the caller writes its protocol's refusal, HTTP's `503` with
//!   `Retry-After`) and closed, so a client sees the limit instead of a reset or a
//!   connect that hangs in the backlog. At most [`MAX_REFUSING`] refusals are under way
//!   at once; past that a connection is closed at once. Refusals are logged at the 1st,
//!   10th, 100th... not once per connection.
//! - **Lingering close** ([`linger`]). A server may answer before reading all its input
//!   (a refusal, a 413 on a declared length). Closing a socket with unread input makes
//!   the kernel send a reset, which can destroy the answer before the client reads it, so
//!   the server first ends its side and then reads and drops what still comes, for at
//!   most [`LINGER`] (nginx's `lingering_close`).
//!
//! One atomic add and one subtract per connection: the places are shared by every
//! worker thread of a listener.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Refusals at the cap under way at once; past it, a connection is closed at once.
pub const MAX_REFUSING: usize = 64;
/// How long a closed connection's input is still read and dropped (lingering close).
pub const LINGER: Duration = Duration::from_secs(2);
/// A lingering close ends sooner when nothing comes for this long; a refusal that the
/// client does not take within it is given up.
pub const LINGER_QUIET: Duration = Duration::from_millis(500);

/// The open connections of one listener (all its workers), at most `max`.
#[derive(Debug)]
pub struct ConnCap {
    name: &'static str,
    max: usize,
    open: AtomicUsize,
    refusing: AtomicUsize,
    refused: AtomicU64,
}

/// What to do with a new connection.
pub enum Admission {
    /// Serve it; the place is given back when the slot drops.
    Admitted(Slot),
    /// Answer it with the refusal and close it; the slot is one of the refusals under
    /// way.
    Refuse(Slot),
    /// Close it at once: too many refusals are under way.
    Close,
}

/// A place taken from a [`ConnCap`] (an open connection, or a refusal under way).
#[derive(Debug)]
pub struct Slot {
    cap: Arc<ConnCap>,
    refusal: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let count = if self.refusal {
            &self.cap.refusing
        } else {
            &self.cap.open
        };
        count.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ConnCap {
    /// A cap of `max` (at least 1) connections on the listener called `name` in logs.
    pub fn new(name: &'static str, max: usize) -> Arc<ConnCap> {
        Arc::new(ConnCap {
            name,
            max: max.max(1),
            open: AtomicUsize::new(0),
            refusing: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Connections admitted and not yet closed.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections refused at the cap since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Takes a place for a new connection (see [`Admission`]).
    pub fn admit(self: &Arc<Self>) -> Admission {
        if self.open.fetch_add(1, Ordering::AcqRel) < self.max {
            return Admission::Admitted(Slot {
                cap: self.clone(),
                refusal: false,
            });
        }
        self.open.fetch_sub(1, Ordering::AcqRel);
        let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        if is_power_of_ten(refused) {
            tracing::warn!(
                max_connections = self.max,
                refused,
                "{}: connections refused, as many are open as its limit allows",
                self.name
            );
        }
        if self.refusing.fetch_add(1, Ordering::AcqRel) >= MAX_REFUSING {
            self.refusing.fetch_sub(1, Ordering::AcqRel);
            return Admission::Close;
        }
        Admission::Refuse(Slot {
            cap: self.clone(),
            refusal: true,
        })
    }
}

/// Writes `answer` (within [`LINGER_QUIET`]), then closes lingering.
pub async fn refuse(mut stream: TcpStream, answer: &[u8], stop_now: &CancellationToken) {
    match tokio::time::timeout(LINGER_QUIET, stream.write_all(answer)).await {
        Ok(Ok(())) => linger(stream, stop_now).await,
        _ => tracing::debug!("a refused client did not take its answer"),
    }
}

/// Ends our side, then reads and drops what the client still sends until it closes,
/// goes quiet for [`LINGER_QUIET`], [`LINGER`] passes, or `stop_now`; then the socket
/// closes without a reset.
pub async fn linger(mut stream: TcpStream, stop_now: &CancellationToken) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let until = Instant::now() + LINGER;
    let mut sink = [0u8; 4096];
    loop {
        let quiet = (Instant::now() + LINGER_QUIET).min(until);
        tokio::select! {
            read = tokio::time::timeout_at(quiet, stream.read(&mut sink)) => match read {
                Ok(Ok(n)) if n > 0 => continue,
                _ => return,
            },
            _ = stop_now.cancelled() => return,
        }
    }
}

/// 1, 10, 100, ...
fn is_power_of_ten(mut n: u64) -> bool {
    while n >= 10 && n.is_multiple_of(10) {
        n /= 10;
    }
    n == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_said_at_powers_of_ten() {
        let said: Vec<u64> = (1..=2000).filter(|&n| is_power_of_ten(n)).collect();
        assert_eq!(said, [1, 10, 100, 1000]);
    }

    #[test]
    fn places_are_given_back_and_refusals_are_bounded() {
        let cap = ConnCap::new("test", 2);
        let a = cap.admit();
        let b = cap.admit();
        assert!(matches!(a, Admission::Admitted(_)));
        assert!(matches!(b, Admission::Admitted(_)));
        assert_eq!(cap.open(), 2);
        let refusals: Vec<Admission> = (0..MAX_REFUSING).map(|_| cap.admit()).collect();
        assert!(refusals.iter().all(|r| matches!(r, Admission::Refuse(_))));
        assert!(matches!(cap.admit(), Admission::Close));
        assert_eq!(cap.refused(), MAX_REFUSING as u64 + 1);
        drop(refusals);
        assert!(matches!(cap.admit(), Admission::Refuse(_)));
        drop(a);
        assert_eq!(cap.open(), 1);
        assert!(matches!(cap.admit(), Admission::Admitted(_)));
    }
}
