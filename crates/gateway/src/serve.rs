//! Serving clients: the gateway's worker threads (`spawn`, `spawn_slot`) and each
//! worker's accept loop (`serve_slot`): the connection cap, the framing guard, and the
//! protocol told by the connection's first bytes (HTTP/1 with upgrades by hyper, or
//! HTTP/2 for h2c and gRPC by `serve_h2`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use strata_os::cap::{self, Admission};
use strata_os::listen::{self, Listen, Worker, Workers};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{coarse, framing, serve_h2, worker, Gateway, GatewaySlot, IDLE_TIMEOUT, MAX_WORKERS};

/// How long a stopping worker waits for its WebSockets to finish their closing
/// handshakes (what is still open after it is cut).
const TUNNELS_AT_SHUTDOWN: Duration = Duration::from_secs(5);

/// Starts `threads` gateway workers on `addr` (at most [`MAX_WORKERS`]), like nginx's
/// worker processes: each thread runs a single-threaded runtime with its own
/// `SO_REUSEPORT` socket on the same address ([`strata_os::listen`]), so the kernel
/// spreads connections and a request never changes thread.
pub fn spawn(
    addr: SocketAddr,
    threads: usize,
    gateway: Arc<Gateway>,
    shutdown: CancellationToken,
) -> std::io::Result<Workers> {
    spawn_slot(addr, threads, GatewaySlot::with(gateway), shutdown)
}

/// [`spawn`] serving whatever gateway `slot` holds (requests follow it when it is
/// replaced; see [`GatewaySlot`]). With an empty slot the workers bind now and accept
/// once a gateway is put in.
pub fn spawn_slot(
    addr: SocketAddr,
    threads: usize,
    slot: Arc<GatewaySlot>,
    shutdown: CancellationToken,
) -> std::io::Result<Workers> {
    if threads > MAX_WORKERS {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("at most {MAX_WORKERS} gateway workers, not {threads}"),
        ));
    }
    let listen = Listen {
        addr,
        threads,
        name: "gateway",
    };
    listen::spawn(listen, &shutdown, move |worker: Worker| {
        worker::set_worker(worker.index);
        async move {
            let ticker = tokio::spawn(coarse::ticker());
            serve_on(worker.listener, Some(worker.spread), slot, worker.shutdown).await;
            ticker.abort();
        }
    })
}

/// Accepts connections until `shutdown`, then lets open requests finish.
pub async fn serve(listener: TcpListener, gateway: Arc<Gateway>, shutdown: CancellationToken) {
    serve_slot(listener, GatewaySlot::with(gateway), shutdown).await
}

/// [`serve`] for whatever gateway `slot` holds: nothing is accepted before it holds one.
pub async fn serve_slot(listener: TcpListener, slot: Arc<GatewaySlot>, shutdown: CancellationToken) {
    serve_on(listener, None, slot, shutdown).await
}

/// [`serve_slot`] on one worker of [`spawn_slot`], which keeps the workers' open
/// connections even (`spread`).
async fn serve_on(
    listener: TcpListener,
    spread: Option<listen::Spread>,
    slot: Arc<GatewaySlot>,
    shutdown: CancellationToken,
) {
    let gateway = tokio::select! {
        gateway = slot.filled() => gateway,
        _ = shutdown.cancelled() => return,
    };
    // A connection is told HTTP/1 or HTTP/2 (h2c, gRPC) by its first bytes
    // (`framing::opens_h2`). HTTP/1 is served by hyper's own builder, not hyper-util's
    // `auto`, which would read the first bytes again and wrap the socket: an upgraded
    // connection's socket is then taken back whole for its tunnel (`relay::tunnel`).
    // HTTP/2 is served by `serve_h2`, each stream by `Gateway::handle_h2`.
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // `framing::Guarded` keeps the head and idle timers, without a timer operation
        // per request.
        .header_read_timeout(None)
        // A client may end its side after its last request and still read the reply;
        // `framing::Guarded` also ends the stream after the requests before a refused one.
        .half_close(true)
        .max_buf_size(gateway.config.max_header_bytes.max(8192));
    // h2 answers a head over its bound with a bare 431 itself, and ends the whole
    // connection past four times that (its guard against decoding without end). Given
    // four times the limit, a head just over it reaches the gateway, which answers it
    // on its stream (a gRPC status for a call): `Gateway::handle_h2`.
    let max_header_list_size = u32::try_from(gateway.config.max_header_bytes.saturating_mul(4)).unwrap_or(u32::MAX);
    let builder = Arc::new(builder);
    // Every connection's task, to wait for at shutdown.
    let connections = TaskTracker::new();
    let stop_now = CancellationToken::new();
    listen::accept_spread(listener, spread, &shutdown, "gateway", |stream, client, open| {
        // The slot's gateway now: its cap admits the connection, its limits frame it.
        let Some(gateway) = slot.current() else { return };
        let admitted = match gateway.cap.admit() {
            Admission::Admitted(admitted) => admitted,
            Admission::Refuse(admitted) => {
                let answer = gateway.refusal.clone();
                let stop_now = stop_now.clone();
                tokio::spawn(async move {
                    cap::refuse(stream, &answer, &stop_now).await;
                    drop(admitted);
                });
                return;
            }
            Admission::Close => return,
        };
        let io = framing::Guarded::new(
            stream,
            gateway.config.max_header_bytes,
            gateway.config.header_read_timeout,
            IDLE_TIMEOUT,
        )
        .counted(open);
        let pinned = Arc::new(slot.pin(gateway));
        // Written once per connection, for the access log.
        let client_text: Arc<str> = client.to_string().into();
        let builder = builder.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            // Nothing within the idle timeout: the HTTP/1 side closes it at once (its
            // timers count from the accept). A connection that has said nothing yet is
            // simply closed when the gateway stops.
            let h2 = tokio::select! {
                h2 = io.opens_h2(IDLE_TIMEOUT) => h2,
                _ = shutdown.cancelled() => return,
            };
            // At shutdown each connection finishes its request under way and closes.
            if h2 {
                let handle = |req| pinned.get().handle_h2(req, client_text.clone());
                if let Err(e) = serve_h2::serve(io, max_header_list_size, &shutdown, handle).await {
                    tracing::debug!(error = %e, %client, "client connection ended with an error");
                }
                drop(admitted);
                return;
            }
            let ended = {
                let service = hyper::service::service_fn(move |req| {
                    let gateway = pinned.get();
                    let client_text = client_text.clone();
                    async move { Ok::<_, std::convert::Infallible>(gateway.handle(req, &client_text).await) }
                });
                let conn = std::pin::pin!(builder.serve_connection(TokioIo::new(io), service).with_upgrades());
                until_shutdown(conn, &shutdown, |conn| conn.graceful_shutdown()).await
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, %client, "client connection ended with an error");
            }
            drop(admitted);
        });
    })
    .await;
    connections.close();
    // This worker's WebSockets (their tasks are not connections any more) are sent a
    // Close at the same time, and their members, still in their pools' drain, see each
    // closing handshake through.
    let tunnels = strata_os::pump::close_all("server shutting down", TUNNELS_AT_SHUTDOWN);
    let connections_done = async {
        tokio::select! {
            _ = connections.wait() => {}
            _ = tokio::time::sleep(Duration::from_secs(10)) => {
                tracing::warn!("gateway: open connections did not finish within 10s of shutdown");
            }
        }
    };
    tokio::join!(connections_done, tunnels);
    stop_now.cancel();
}

/// Drives `conn` to its end; once `shutdown` is cancelled, asks it to finish gracefully
/// (`graceful`: the request under way is answered, then the connection closes).
async fn until_shutdown<C, T, E>(
    mut conn: std::pin::Pin<&mut C>,
    shutdown: &CancellationToken,
    graceful: impl FnOnce(std::pin::Pin<&mut C>),
) -> Result<T, E>
where
    C: std::future::Future<Output = Result<T, E>>,
{
    tokio::select! {
        biased;
        ended = conn.as_mut() => return ended,
        _ = shutdown.cancelled() => {}
    }
    graceful(conn.as_mut());
    conn.await
}
