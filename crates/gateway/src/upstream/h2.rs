//! HTTP/2 over cleartext (h2c, prior knowledge) to a member, for gRPC: one connection per
//! member and gateway thread, multiplexing every call of that thread; made on first use
//! and again when the member closed it. Its driver task runs on the thread that made it.

use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::worker::{slot, SLOTS};

/// A request body on its way to a member over HTTP/2.
pub type H2Body = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// The HTTP/2 connections to one member, one per gateway thread.
pub struct H2Conns {
    senders: [Mutex<Option<SendRequest<H2Body>>>; SLOTS],
}

impl Default for H2Conns {
    fn default() -> H2Conns {
        H2Conns {
            senders: std::array::from_fn(|_| Mutex::new(None)),
        }
    }
}

impl H2Conns {
    /// This thread's open connection to the member, if it has one (no await, no timer).
    pub fn cached(&self) -> Option<SendRequest<H2Body>> {
        let senders = self.senders[slot()].lock().unwrap();
        senders.as_ref().filter(|s| !s.is_closed()).cloned()
    }

    /// This thread's connection to the member at `addr`, made if there is none open.
    /// An error here means nothing was sent.
    pub async fn sender(&self, addr: SocketAddr) -> io::Result<SendRequest<H2Body>> {
        if let Some(sender) = self.cached() {
            return Ok(sender);
        }
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive_interval(Some(std::time::Duration::from_secs(30)))
            .handshake(TokioIo::new(stream))
            .await
            .map_err(io::Error::other)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %addr, "HTTP/2 connection to a member ended");
            }
        });
        *self.senders[slot()].lock().unwrap() = Some(sender.clone());
        Ok(sender)
    }
}
