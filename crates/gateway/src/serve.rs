//! Serving clients: the gateway's worker threads (`spawn`, `spawn_slot`) and each
//! worker's accept loop (`serve_slot`): the connection cap, the framing guard, and the
//! protocol told by the connection's first bytes (HTTP/1 with upgrades, or HTTP/2 for
//! h2c and gRPC, each with the service whose future suits it).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use strata_os::cap::{self, Admission};
use strata_os::listen::{self, Listen, Worker, Workers};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{coarse, framing, worker, Gateway, GatewaySlot, IDLE_TIMEOUT, MAX_WORKERS};

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
            serve_slot(worker.listener, slot, worker.shutdown).await;
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
    let gateway = tokio::select! {
        gateway = slot.filled() => gateway,
        _ = shutdown.cancelled() => return,
    };
    // Two builders: a connection is told HTTP/1 or HTTP/2 (h2c, gRPC) by its first bytes,
    // and each gets the service whose future suits it (`Gateway::handle_h2`).
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        // `framing::Guarded` keeps the head and idle timers, without a timer operation
        // per request.
        .header_read_timeout(None)
        // A client may end its side after its last request and still read the reply;
        // `framing::Guarded` also ends the stream after the requests before a refused one.
        .half_close(true)
        .max_buf_size(gateway.config.max_header_bytes.max(8192));
    let mut h2_builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).http2_only();
    h2_builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20))
        .max_header_list_size(gateway.config.max_header_bytes as u32);
    let (builder, h2_builder) = (Arc::new(builder), Arc::new(h2_builder));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let stop_now = CancellationToken::new();
    listen::accept(listener, &shutdown, "gateway", |stream, client| {
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
        );
        let pinned = Arc::new(slot.pin(gateway));
        // Written once per connection, for the access log.
        let client_text: Arc<str> = client.to_string().into();
        let (builder, h2_builder, watcher) = (builder.clone(), h2_builder.clone(), graceful.watcher());
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            // Nothing within the idle timeout: the HTTP/1 side closes it at once (its
            // timers count from the accept). A connection that has said nothing yet is
            // simply closed when the gateway stops.
            let h2 = tokio::select! {
                h2 = io.opens_h2(IDLE_TIMEOUT) => h2,
                _ = shutdown.cancelled() => return,
            };
            let ended = if h2 {
                let service = hyper::service::service_fn(move |req| pinned.get().handle_h2(req, client_text.clone()));
                let conn = h2_builder.serve_connection(TokioIo::new(io), service);
                watcher.watch(conn.into_owned()).await
            } else {
                let service = hyper::service::service_fn(move |req| {
                    let gateway = pinned.get();
                    let client_text = client_text.clone();
                    async move { Ok::<_, std::convert::Infallible>(gateway.handle(req, &client_text).await) }
                });
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
                watcher.watch(conn.into_owned()).await
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, %client, "client connection ended with an error");
            }
            drop(admitted);
        });
    })
    .await;
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(Duration::from_secs(10)) => {
            tracing::warn!("gateway: open connections did not finish within 10s of shutdown");
        }
    }
    stop_now.cancel();
}
