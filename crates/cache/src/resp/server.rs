//! The RESP server: worker threads like the gateway's ([`strata_os::listen`]: one
//! current-thread tokio runtime per thread, each with its own `SO_REUSEPORT` listener, so
//! a connection never changes thread), and the connection loop: read, run every complete command, append the
//! replies to one buffer, one write per read. Pipelining costs nothing extra.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use strata_os::listen::{self, Listen, Worker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::connection::{Connection, Progress};
use super::state::{ConnectionContext, RespConfig};
use crate::cache::Cache;

/// The running RESP server's threads; [`RespWorkers::join`] (or `join_blocking` outside
/// a runtime) waits for them after the token is cancelled. Open connections are closed
/// when their worker stops.
pub use strata_os::listen::Workers as RespWorkers;

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
    let shared = Arc::new(ConnectionContext::new(cache, &config, threads));
    let listen = Listen {
        addr,
        threads,
        name: "resp",
    };
    let workers = listen::spawn(listen, &token, {
        let shared = shared.clone();
        move |worker: Worker| accept_loop(worker, shared)
    })?;
    let addr = workers.addr;
    let _ = shared.server.addr.set(addr);
    tracing::info!(%addr, threads, "cache RESP server listening");
    Ok(workers)
}

async fn accept_loop(worker: Worker, shared: Arc<ConnectionContext>) {
    let Worker {
        index,
        listener,
        shutdown,
    } = worker;
    listen::accept(listener, &shutdown, "resp", |stream, peer| {
        let shared = shared.clone();
        tokio::spawn(async move {
            shared.server.connected.fetch_add(1, Ordering::Relaxed);
            shared.server.total_connections.fetch_add(1, Ordering::Relaxed);
            let _guard = Connected(&shared);
            if let Err(e) = serve_connection(stream, peer, index, &shared).await {
                tracing::debug!(error = %e, %peer, "cache client connection ended with an error");
            }
        });
    })
    .await;
}

struct Connected<'a>(&'a ConnectionContext);

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
    shared: &Arc<ConnectionContext>,
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
