//! gRPC through `$STRATA_URL`: an instance's gRPC channel to the node API's address
//! (h2c, prior knowledge) reaches the pool that serves the called gRPC service, by the
//! `grpc` names of the manifest: `/package.Service/Method` goes to ANY one member of the
//! service whose `grpc` lists `package.Service`, through the gateway's gRPC relay
//! (`strata_gateway::relay::grpc`: deadlines, reissues of idempotent methods, admission).
//!
//! The caller sends its token as call metadata, `authorization: Bearer $STRATA_TOKEN`
//! (or `x-strata-token`), and may call what its manifest entry reaches, as over HTTP;
//! the token is removed before the call goes on, and the call carries the caller's
//! `x-request-id` or one of its own (`call-PID-N`, as an HTTP call). Refusals are gRPC
//! statuses in trailers-only responses: no or unknown token → UNAUTHENTICATED, not
//! reached → PERMISSION_DENIED, no service serves it → UNIMPLEMENTED, a foreign
//! `:authority` → PERMISSION_DENIED.
//!
//! The connection is told from an HTTP/1.1 one by its first bytes (HTTP/2's preface
//! starts `PRI`, which no HTTP/1.1 method does); it is served by hyper's HTTP/2 under
//! the same connection cap, until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use strata_gateway::client_body::ClientBody;
use strata_gateway::relay::grpc::{self, GrpcStatus};
use strata_gateway::ResBody;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::access::{self, Need};
use crate::NodeParts;

/// Serves one h2c connection of gRPC calls until it ends or `shutdown` (then its calls
/// get `grace` to finish).
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    parts: Arc<NodeParts>,
    shutdown: CancellationToken,
    stop_now: CancellationToken,
) {
    let mut http = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http.timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20))
        .max_header_list_size(64 << 10);
    let service = hyper::service::service_fn(move |req| {
        let parts = parts.clone();
        async move { Ok::<_, std::convert::Infallible>(call(&parts, req).await) }
    });
    let conn = http.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut graceful = false;
    let ended = loop {
        tokio::select! {
            ended = conn.as_mut() => break ended,
            _ = shutdown.cancelled(), if !graceful => {
                graceful = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = stop_now.cancelled() => return,
        }
    };
    if let Err(e) = ended {
        tracing::debug!(error = %e, %peer, "node API gRPC connection ended with an error");
    }
}

/// One call: the caller's right, then the pool that serves its gRPC service.
async fn call(parts: &NodeParts, mut req: Request<Incoming>) -> Response<ResBody> {
    if !grpc::is_grpc(&req) {
        return grpc::status_response(
            GrpcStatus::Unimplemented,
            "HTTP/2 on the node API is for gRPC calls (content-type application/grpc); other calls use HTTP/1.1",
        );
    }
    let caller = match parts.access.grpc_caller(&req) {
        Ok(caller) => caller,
        Err((status, message)) => return grpc::status_response(status, &message),
    };
    let path = req.uri().path();
    let Some(grpc_service) = path.strip_prefix('/').and_then(|p| p.split_once('/')).map(|(s, _)| s) else {
        return grpc::status_response(
            GrpcStatus::Unimplemented,
            &format!("{path:?} is not a gRPC method path"),
        );
    };
    let Some(service) = parts.grpc.get(grpc_service) else {
        let mut known: Vec<&str> = parts.grpc.keys().map(String::as_str).collect();
        known.sort_unstable();
        let message = format!(
            "no service of app {:?} serves gRPC service {grpc_service:?} (a service's \"grpc\" in the manifest; served: {})",
            parts.info.app,
            if known.is_empty() { "none".to_string() } else { known.join(", ") }
        );
        return grpc::status_response(GrpcStatus::Unimplemented, &message);
    };
    if let Err(e) = caller.allows(&Need::Call(service)) {
        return grpc::status_response(GrpcStatus::PermissionDenied, e.message());
    }
    let Some(policy) = parts.policies.get(service) else {
        return grpc::status_response(GrpcStatus::Unimplemented, &format!("no service named {service:?}"));
    };
    access::strip_token(req.headers_mut());
    crate::calls::ensure_request_id(req.headers_mut());
    let pool = parts.bus.pool(service);
    grpc::relay(&pool, req.map(ClientBody::Http), policy).await.0
}
