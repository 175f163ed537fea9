//! Keep-alive connections from the gateway to one member.

use std::net::SocketAddr;
use std::sync::Mutex;

use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::body::ReqBody;

pub type Conn = SendRequest<ReqBody>;

/// Most idle connections kept per member.
const IDLE_MAX: usize = 256;

/// The idle connections to one member, kept in the member's transport slot.
#[derive(Default)]
pub struct Upstream {
    idle: Mutex<Vec<Conn>>,
}

impl Upstream {
    /// An idle connection that is still open, if any.
    pub fn take(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap();
        while let Some(conn) = idle.pop() {
            if conn.is_ready() {
                return Some(conn);
            }
        }
        None
    }

    pub fn put(&self, conn: Conn) {
        if conn.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap();
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
