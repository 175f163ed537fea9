//! Keep-alive connections from the gateway to one member.
//!
//! Each gateway worker thread keeps its own idle connections to a member, so a request
//! and the connection task that carries it run on the same thread: no hand-off between
//! threads on the request path.

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use http::HeaderValue;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::body::ReqBody;

pub type Conn = SendRequest<ReqBody>;

/// Most idle connections kept per member and thread.
const IDLE_MAX: usize = 256;
/// Separate idle lists per member; gateway worker threads use 1.., everything else 0.
const SLOTS: usize = 16;
/// How long a pooled connection may take to be ready for its next request.
const READY_WAIT: Duration = Duration::from_millis(100);

thread_local! {
    static SLOT: Cell<usize> = const { Cell::new(0) };
}

/// Marks the current thread as gateway worker `n` (from 0).
pub fn set_worker(n: usize) {
    SLOT.with(|s| s.set(1 + n % (SLOTS - 1)));
}

fn slot() -> usize {
    SLOT.with(|s| s.get())
}

async fn wait_ready(mut conn: Conn) -> Option<Conn> {
    match tokio::time::timeout(READY_WAIT, conn.ready()).await {
        Ok(Ok(())) => Some(conn),
        _ => None,
    }
}

/// The idle connections to one member, kept in the member's transport slot.
pub struct Upstream {
    idle: [Mutex<Vec<Conn>>; SLOTS],
    /// The member's id as a header value, made once.
    pub served_by: HeaderValue,
}

impl Upstream {
    pub fn new(member_id: &str) -> Upstream {
        Upstream {
            idle: std::array::from_fn(|_| Mutex::new(Vec::new())),
            served_by: HeaderValue::from_str(member_id).unwrap_or(HeaderValue::from_static("-")),
        }
    }

    /// An idle connection of this thread that is still open, if any. A connection that
    /// was just given back may need its task to run once more before it takes the next
    /// request; that wait is short and stays on this thread.
    pub async fn take(&self) -> Option<Conn> {
        loop {
            let conn = self.idle[slot()].lock().unwrap().pop()?;
            if conn.is_ready() {
                return Some(conn);
            }
            if conn.is_closed() {
                continue;
            }
            // Rare: boxed, so that the common path keeps the caller's future small.
            if let Some(conn) = Box::pin(wait_ready(conn)).await {
                return Some(conn);
            }
        }
    }

    pub fn put(&self, conn: Conn) {
        if conn.is_closed() {
            return;
        }
        let mut idle = self.idle[slot()].lock().unwrap();
        if idle.len() < IDLE_MAX {
            idle.push(conn);
        }
    }

    /// Opens a new connection; an error here means no byte of a request was sent.
    pub async fn connect(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        Ok(sender)
    }
}
