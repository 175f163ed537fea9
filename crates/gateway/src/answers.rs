//! The gateway's own answers to what it does not relay: no route, a request that is not
//! gRPC on a gRPC name's path, and the headers it puts on answers of its own.

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use strata_wire::ErrorCode;

use crate::relay;
use crate::response_body::ResBody;
use crate::RoutePool;

/// UNIMPLEMENTED: no route or `grpc` name matches the call's path.
/// The message names the gRPC services the gateway routes.
pub(crate) fn no_grpc_route<B>(req: &Request<B>, routes: &[RoutePool]) -> Response<ResBody> {
    let mut served: Vec<&str> = routes
        .iter()
        .map(|r| (r.route.grpc, r.route.prefix.trim_matches('/')))
        // A `grpc` name's route, or a route written as one (`/package.Service/`).
        .filter(|(grpc, name)| *grpc || (name.contains('.') && !name.contains('/')))
        .map(|(_, name)| name)
        .collect();
    served.sort_unstable();
    served.dedup();
    let path = req.uri().path();
    let served = if served.is_empty() {
        "none (a service's \"grpc\" in the manifest names the gRPC services it serves)".to_string()
    } else {
        served.join(", ")
    };
    relay::grpc::status_response(
        relay::grpc::GrpcStatus::Unimplemented,
        &format!("no route for {path}; gRPC services served here: {served}"),
    )
}

/// A request head's size as HTTP/2 counts it (RFC 9113 6.5.2: each field's name and
/// value and 32 octets), its pseudo-header fields included.
pub(crate) fn h2_head_size<B>(req: &Request<B>) -> usize {
    let fields: usize = req.headers().iter().map(|(n, v)| n.as_str().len() + v.len() + 32).sum();
    let uri = req.uri();
    let path = uri.path_and_query().map_or(1, |p| p.as_str().len());
    let authority = uri
        .authority()
        .map_or(0, |a| a.as_str().len() + ":authority".len() + 32);
    fields
        + ":method".len()
        + req.method().as_str().len()
        + 32
        + ":path".len()
        + path
        + 32
        + ":scheme".len()
        + uri.scheme_str().map_or(4, str::len)
        + 32
        + authority
}

/// An HTTP/2 request whose head is over `gateway.max_header_bytes` (`size` as HTTP/2
/// counts it): a gRPC call gets RESOURCE_EXHAUSTED, any other request a 431, on its
/// own stream (the connection's other streams go on).
pub(crate) fn head_too_large<B>(req: &Request<B>, size: usize, max: usize, rid: &HeaderValue) -> Response<ResBody> {
    if relay::grpc::is_grpc(req) {
        return relay::grpc::status_response(
            relay::grpc::GrpcStatus::ResourceExhausted,
            &format!(
                "the call's metadata is {size} bytes, over the gateway's limit of {max} (gateway.max_header_bytes)"
            ),
        );
    }
    relay::error_response(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        ErrorCode::HeadersTooLarge,
        "",
        &format!(
            "the request's headers are {size} bytes, over the gateway's limit of {max} (gateway.max_header_bytes)"
        ),
        Some(rid),
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
