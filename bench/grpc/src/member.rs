//! The echo member: a tonic server on 127.0.0.1:$PORT (h2c) answering
//! `/test.Echo/Unary` (the request back) and `/test.Echo/Bidi` (each message back as it
//! comes), like tests/fixtures/grpc_member.py but fast, so that what a run measures is
//! the proxy in front of it. Any other path answers UNIMPLEMENTED.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use anyhow::Context as _;
use bytes::Bytes;
use tokio_stream::Stream;
use tonic::body::Body;
use tonic::server::{Grpc, StreamingService, UnaryService};
use tonic::{Request, Response, Status, Streaming};

use crate::codec::BytesCodec;

/// Serves until SIGTERM or Ctrl-C.
pub async fn run(addr: SocketAddr) -> anyhow::Result<()> {
    eprintln!("grpc-bench member on {addr}");
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .serve_with_shutdown(addr, Echo, shutdown())
        .await
        .with_context(|| format!("serve gRPC on {addr}"))
}

async fn shutdown() {
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("install the SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[derive(Clone, Copy)]
struct Echo;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl tower_service::Service<http::Request<Body>> for Echo {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        match req.uri().path() {
            "/test.Echo/Unary" => Box::pin(async move { Ok(Grpc::new(BytesCodec).unary(UnaryEcho, req).await) }),
            "/test.Echo/Bidi" => Box::pin(async move { Ok(Grpc::new(BytesCodec).streaming(BidiEcho, req).await) }),
            _ => Box::pin(async move { Ok(Status::unimplemented("no such method").into_http()) }),
        }
    }
}

struct UnaryEcho;

impl UnaryService<Bytes> for UnaryEcho {
    type Response = Bytes;
    type Future = std::future::Ready<Result<Response<Bytes>, Status>>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        std::future::ready(Ok(Response::new(request.into_inner())))
    }
}

struct BidiEcho;

type EchoStream = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;

impl StreamingService<Bytes> for BidiEcho {
    type Response = Bytes;
    type ResponseStream = EchoStream;
    type Future = std::future::Ready<Result<Response<EchoStream>, Status>>;

    fn call(&mut self, request: Request<Streaming<Bytes>>) -> Self::Future {
        // each message back as it comes; the reply ends when the request stream does
        let stream: EchoStream = Box::pin(request.into_inner());
        std::future::ready(Ok(Response::new(stream)))
    }
}
