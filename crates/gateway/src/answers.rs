//! The gateway's own answers to what it does not relay: no route, a request that is not
//! gRPC on a gRPC name's path, and the headers it puts on answers of its own.

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use strata_wire::ErrorCode;

use crate::relay;
use crate::response_body::ResBody;
use crate::RoutePool;

/// UNIMPLEMENTED: no route or `grpc` name matches the call's path.
pub(crate) fn no_grpc_route<B>(req: &Request<B>) -> Response<ResBody> {
    relay::grpc::status_response(
        relay::grpc::GrpcStatus::Unimplemented,
        &format!("no route for {}", req.uri().path()),
    )
}

/// 404: no route matches the request's host and path.
pub(crate) fn no_route<B>(req: &Request<B>, rid: &HeaderValue) -> Response<ResBody> {
    relay::error_response(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        "",
        &format!("no route for {}", req.uri().path()),
        Some(rid),
    )
}

/// What a gRPC server may answer besides HTTP/2 gRPC, and so goes on to the member on a
/// `grpc` name's path: gRPC-Web and gRPC over HTTP/1.1 (`application/grpc...`), the
/// Connect protocol (`connect-protocol-version`), and CORS preflights (`OPTIONS`). A
/// member that speaks only HTTP/2 answers these with a frame the relay does not hold
/// against it (a 502 that says so).
pub(crate) fn grpc_kin<B>(req: &Request<B>) -> bool {
    req.method() == http::Method::OPTIONS
        || req.headers().contains_key("connect-protocol-version")
        || req
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// 415: a request that is not a gRPC call (nor of its kin, [`grpc_kin`]), on the path
/// of a service's `grpc` name.
pub(crate) fn not_grpc<B>(req: &Request<B>, target: &RoutePool, rid: &HeaderValue) -> Response<ResBody> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .map_or("no content-type".to_string(), |v| {
            format!("content-type {}", String::from_utf8_lossy(v.as_bytes()))
        });
    relay::error_response(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorCode::UnsupportedMediaType,
        &target.route.service,
        &format!(
            "{} is a gRPC service's path ({}): it takes only gRPC calls (HTTP/2, content-type application/grpc), \
             and this request is {:?} with {content_type}",
            req.uri().path(),
            target.route.prefix.trim_matches('/'),
            req.version()
        ),
        Some(rid),
    )
}

pub(crate) fn with_request_id(mut res: Response<ResBody>, rid: &HeaderValue) -> Response<ResBody> {
    res.headers_mut().insert(relay::REQUEST_ID, rid.clone());
    res
}

pub(crate) fn close(mut res: Response<ResBody>) -> Response<ResBody> {
    res.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    res
}
