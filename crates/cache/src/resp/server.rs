//! The RESP server: worker threads like the gateway's (one current-thread tokio runtime
//! per thread, each with its own `SO_REUSEPORT` listener, so a connection never changes
//! thread), and the connection loop: read, run every complete command, append the
//! replies to one buffer, one write per read. Pipelining costs nothing extra.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::connection::{Connection, Progress};
use super::state::{RespConfig, Shared};
use crate::cache::Cache;

/// The running RESP server's threads.
pub struct RespWorkers {
    /// The address it listens on (the real port when asked for port 0).
    pub addr: SocketAddr,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl RespWorkers {
    /// Waits until every worker has stopped (after the token is cancelled). Open
    /// connections are closed when their worker stops.
    pub async fn join(self) {
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }

    /// [`RespWorkers::join`] for callers outside a runtime.
    pub fn join_blocking(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Starts the RESP server on `addr` with `threads` workers (0: one per core) serving
/// `cache`, until `token` is cancelled.
pub fn spawn_resp(
    addr: SocketAddr,
    threads: usize,
    cache: Arc<Cache>,
    token: CancellationToken,
) -> std::io::Result<RespWorkers> {
    spawn_resp_with(
        addr,
        RespConfig {
            threads,
            ..RespConfig::default()
        },
        cache,
        token,
    )
}

/// [`spawn_resp`] with every setting.
pub fn spawn_resp_with(
    addr: SocketAddr,
    config: RespConfig,
    cache: Arc<Cache>,
    token: CancellationToken,
) -> std::io::Result<RespWorkers> {
    let threads = match config.threads {
        0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        n => n,
    };
    let shared = Arc::new(Shared::new(cache, &config, threads));
    // Each worker binds its own socket inside its runtime; the first one resolves port 0
    // and the others bind the port it got.
    let mut addr = addr;
    let mut handles = Vec::new();
    for n in 0..threads {
        let (bound_tx, bound_rx) = std::sync::mpsc::channel::<std::io::Result<SocketAddr>>();
        let shared = shared.clone();
        let worker_token = token.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("strata-resp-{n}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = bound_tx.send(Err(e));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listener = match reuseport_listener(addr) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = bound_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = bound_tx.send(listener.local_addr());
                    accept_loop(listener, shared, n, worker_token).await;
                });
                // Dropping the runtime drops the connection tasks: their sockets close.
            });
        let handle = match spawned {
            Ok(h) => h,
            Err(e) => {
                token.cancel();
                return Err(e);
            }
        };
        match bound_rx.recv() {
            Ok(Ok(bound)) => addr = bound,
            Ok(Err(e)) => {
                token.cancel();
                return Err(e);
            }
            Err(_) => {
                token.cancel();
                return Err(std::io::Error::other("cache RESP worker died while starting"));
            }
        }
        handles.push(handle);
    }
    let _ = shared.server.addr.set(addr);
    tracing::info!(%addr, threads, "cache RESP server listening");
    Ok(RespWorkers { addr, threads: handles })
}

fn reuseport_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, worker: usize, token: CancellationToken) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(ok) => ok,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "cache: accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = token.cancelled() => return,
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            shared.server.connected.fetch_add(1, Ordering::Relaxed);
            shared.server.total_connections.fetch_add(1, Ordering::Relaxed);
            let _guard = Connected(&shared);
            if let Err(e) = serve_connection(stream, peer, worker, &shared).await {
                tracing::debug!(error = %e, %peer, "cache client connection ended with an error");
            }
        });
    }
}

struct Connected<'a>(&'a Shared);

impl Drop for Connected<'_> {
    fn drop(&mut self) {
        self.0.server.connected.fetch_sub(1, Ordering::Relaxed);
    }
}

const READ_CHUNK: usize = 16 << 10;

async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    worker: usize,
    shared: &Arc<Shared>,
) -> std::io::Result<()> {
    let mut conn = Connection::new(shared.clone(), peer, worker);
    let mut input: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut out: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    loop {
        // Room for the next read: a chunk, or more of a large bulk being received (at most
        // doubling per read, so a bare header cannot make us reserve its whole length).
        let want = conn
            .want()
            .saturating_sub(input.len())
            .min(input.capacity().max(1 << 20));
        input.reserve(want.max(READ_CHUNK / 4));
        if stream.read_buf(&mut input).await? == 0 {
            return Ok(());
        }
        loop {
            let progress = conn.process(&mut input, &mut out);
            if !out.is_empty() {
                stream.write_all(&out).await?;
                out.clear();
            }
            match progress {
                Progress::NeedInput => break,
                Progress::Flush => continue,
                Progress::Close => {
                    let _ = stream.shutdown().await;
                    linger(&mut stream).await;
                    return Ok(());
                }
            }
        }
        // A burst of large commands should not pin memory for the connection's lifetime.
        if input.is_empty() && input.capacity() > 4 * READ_CHUNK {
            input = Vec::with_capacity(READ_CHUNK);
        }
        if out.capacity() > 4 * READ_CHUNK {
            out = Vec::with_capacity(READ_CHUNK);
        }
    }
}

/// After our last reply (QUIT, a protocol error): reads and drops what the client had
/// already sent, until it closes (at most 1 MiB or 1 s). Closing a socket with unread
/// input makes the kernel reset the connection, and the client could lose the reply
/// that says why it is being closed.
async fn linger(stream: &mut TcpStream) {
    let drain = async {
        let mut sink = [0u8; 8192];
        let mut total = 0;
        while total < (1 << 20) {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}
