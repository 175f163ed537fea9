//! Serving the node API: the accept loop (`strata_os::listen::accept`, which backs off
//! when accepts fail, as when out of file descriptors), a cap on open connections, each
//! connection served by hyper's HTTP/1.1 over an [`ApiConn`] (head, idle, body and write
//! timers, see `conn`), the router of [`crate::router`], and a lingering close.
//!
//! - **The cap.** Past [`ServerConfig::max_connections`] a new connection is accepted,
//!   answered `503` with `Retry-After: 1` and the shared error body naming the limit, and
//!   closed. A client sees why (and when to try again) instead of a reset or a connect
//!   that hangs in the backlog; the Redis port does the same with its error line. At most
//!   [`strata_os::cap::MAX_REFUSING`] such answers are under way at once; past that a connection is
//!   closed at once.
//! - **Lingering close.** A route may answer before reading the whole body (413 on a
//!   declared length, 400 on a body that already shows it is not what the route takes).
//!   Closing a socket with unread input makes the kernel send a reset, which can destroy
//!   the answer before the client reads it, so the server first ends its side and then
//!   reads and drops what still comes, for at most [`strata_os::cap::LINGER`] (like nginx's
//!   `lingering_close`).
//! - **Shutdown.** No connection is accepted after the token is cancelled; idle ones
//!   close, requests in flight get [`GRACE`] to finish.
//!
//! HTTP/1.1, which the clients of the node API (the CLI, the Python and Rust clients,
//! curl) speak, every connection under the timers above; and h2c for gRPC calls only
//! (`grpc`), a connection that opens with HTTP/2's preface.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use strata_gateway::relay::tunnel::{self, Tunnel};
use strata_os::cap::{self, linger, Admission, ConnCap, Slot};
use strata_wire::{ErrorBody, ErrorCode};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::conn::{ApiConn, Busy, InFlight, Timeouts};
use crate::NodeParts;

/// The node API's connection limits and timers.
#[derive(Debug, Clone, Copy)]
pub struct ServerConfig {
    /// A request line and headers must arrive within this of their first byte: 408.
    pub header_timeout: Duration,
    /// A kept-alive connection with no request in flight is closed after this.
    pub idle_timeout: Duration,
    /// Open connections at most; past it, 503 and closed.
    pub max_connections: usize,
    /// Request line and headers at most: 431.
    pub max_head_bytes: usize,
}

impl Default for ServerConfig {
    /// The gateway's timers (10 s for a head, 75 s idle), 4096 connections, 64 KiB heads.
    fn default() -> ServerConfig {
        ServerConfig {
            header_timeout: Duration::from_secs(10),
            idle_timeout: strata_gateway::IDLE_TIMEOUT,
            max_connections: 4096,
            max_head_bytes: 64 << 10,
        }
    }
}

/// Requests in flight at shutdown get this long to finish.
pub const GRACE: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown` (see the module).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    parts: Arc<NodeParts>,
    config: ServerConfig,
    shutdown: CancellationToken,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.keep_alive(true)
        // `ApiConn` keeps the head timer and answers 408 itself.
        .header_read_timeout(None)
        // A client that goes away during a long poll ends the request.
        .half_close(false)
        .max_buf_size(config.max_head_bytes.max(8192) + 4096);
    let shared = Arc::new(Shared {
        http,
        router: TowerToHyperService::new(router),
        timeouts: Timeouts {
            head: config.header_timeout,
            idle: config.idle_timeout,
            max_head: config.max_head_bytes,
        },
        cap: ConnCap::new("node API", config.max_connections),
        shutdown: shutdown.clone(),
        stop_now: CancellationToken::new(),
        parts,
    });
    let tracker = TaskTracker::new();
    strata_os::listen::accept(listener, &shutdown, "api", |stream, peer| match shared.cap.admit() {
        Admission::Admitted(slot) => {
            tracker.spawn(connection(stream, peer, shared.clone(), slot));
        }
        Admission::Refuse(slot) => {
            tracker.spawn(refuse(stream, shared.clone(), slot));
        }
        Admission::Close => {}
    })
    .await;
    tracker.close();
    if tokio::time::timeout(GRACE, tracker.wait()).await.is_err() {
        tracing::warn!("node API: requests in flight did not finish within 10s of shutdown");
        shared.stop_now.cancel();
        tracker.wait().await;
    }
}

struct Shared {
    http: hyper::server::conn::http1::Builder,
    router: TowerToHyperService<Router>,
    timeouts: Timeouts,
    cap: Arc<ConnCap>,
    shutdown: CancellationToken,
    /// Cancelled when the grace after shutdown is over.
    stop_now: CancellationToken,
    /// For gRPC calls (`grpc`).
    parts: Arc<NodeParts>,
}

/// Serves one connection until it ends, then closes it lingering.
async fn connection(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>, _slot: Slot) {
    if strata_gateway::framing::opens_h2(&stream, shared.timeouts.head).await {
        let (shutdown, stop_now) = (shared.shutdown.clone(), shared.stop_now.clone());
        crate::grpc::serve(stream, peer, shared.parts.clone(), shutdown, stop_now).await;
        return;
    }
    let in_flight = Arc::new(InFlight::default());
    let io = ApiConn::new(stream, shared.timeouts, in_flight.clone());
    let switch = Switch::default();
    let service = Tracked {
        router: shared.router.clone(),
        in_flight,
        switch: switch.clone(),
    };
    let mut conn = shared.http.serve_connection(TokioIo::new(io), service);
    let mut graceful = false;
    let ended = loop {
        tokio::select! {
            ended = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => break ended,
            _ = shared.shutdown.cancelled(), if !graceful => {
                graceful = true;
                Pin::new(&mut conn).graceful_shutdown();
            }
            _ = shared.stop_now.cancelled() => return,
        }
    };
    if let Err(e) = ended {
        tracing::debug!(error = %e, %peer, "node API connection ended with an error");
    }
    let parts = conn.into_parts();
    if let Some(tunnel) = switch.take() {
        // A call through `/v1/any` switched protocols (WebSocket): hyper is done with
        // the connection, which now joins the member's (`relay::tunnel`).
        // The socket itself: the tunnel keeps its own limits.
        let io = parts.io.into_inner().into_stream();
        tokio::select! {
            _ = tunnel.run(io, parts.read_buf) => {}
            _ = shared.stop_now.cancelled() => {}
        }
        return;
    }
    linger(parts.io.into_inner().into_stream(), &shared.stop_now).await;
}

/// The answer past the connection cap: 503, the shared error body, closed.
async fn refuse(stream: TcpStream, shared: Arc<Shared>, _slot: Slot) {
    let limit = shared.cap.max();
    let body = ErrorBody::new(
        503,
        ErrorCode::Unavailable,
        format!("the node API has {limit} connections open, its limit; close idle ones, or try again"),
    )
    .with("limit", limit)
    .to_json();
    let reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\nretry-after: 1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    cap::refuse(stream, reply.as_bytes(), &shared.stop_now).await;
}

/// The router as hyper's service, each request counted in flight until its reply body
/// is done (what keeps the idle timer off during a long poll).
#[derive(Clone)]
struct Tracked {
    router: TowerToHyperService<Router>,
    in_flight: Arc<InFlight>,
    /// Handed to a request that asks to switch protocols (in its extensions).
    switch: Switch,
}

/// Where a call through `/v1/any` that switched protocols leaves the member's side of
/// its tunnel, for the connection to join once hyper lets go of the socket.
#[derive(Clone, Default)]
pub(crate) struct Switch(Arc<std::sync::Mutex<Option<Tunnel>>>);

impl Switch {
    pub fn put(&self, tunnel: Tunnel) {
        *self.0.lock().expect("switch slot") = Some(tunnel);
    }

    fn take(&self) -> Option<Tunnel> {
        self.0.lock().expect("switch slot").take()
    }
}

type Answer = Pin<Box<dyn Future<Output = Result<Response<Body>, std::convert::Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for Tracked {
    type Response = Response<Body>;
    type Error = std::convert::Infallible;
    type Future = Answer;

    fn call(&self, mut req: Request<Incoming>) -> Answer {
        if tunnel::wants_upgrade(&req) {
            req.extensions_mut().insert(self.switch.clone());
        }
        let busy = self.in_flight.begin();
        let answer = hyper::service::Service::call(&self.router, req);
        Box::pin(async move {
            let res = answer.await?;
            Ok(res.map(|body| Body::new(TrackedBody { body, _busy: busy })))
        })
    }
}

/// A reply body that holds its request's place in flight until it is done or dropped.
struct TrackedBody {
    body: Body,
    _busy: Busy,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
