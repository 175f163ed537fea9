//! The standard gRPC health check (`grpc.health.v1.Health/Check`) of an instance that
//! declares `health.grpc`: one unary call over h2c with the service name asked about,
//! passed when the reply's status is `SERVING`. The two messages are hand-encoded: the
//! request is field 1 (string `service`), the reply field 1 (enum `status`), too small
//! to want a protobuf crate.

use std::net::SocketAddr;

use bytes::{Buf, Bytes};
use http::{header, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use super::Outcome;

/// `HealthCheckResponse.ServingStatus.SERVING`.
const SERVING: u64 = 1;

/// One check of `service` ("" for the server as a whole) on the member at `addr`; the
/// caller bounds it with the check's timeout.
pub(super) async fn check(addr: SocketAddr, service: &str) -> Outcome {
    let stream = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Outcome::Refused,
        Err(_) => return Outcome::NoReply,
    };
    let Ok((mut sender, conn)) =
        hyper::client::conn::http2::handshake::<_, _, Full<Bytes>>(TokioExecutor::new(), TokioIo::new(stream)).await
    else {
        return Outcome::NoReply;
    };
    let conn = tokio::spawn(conn);
    let outcome = call(&mut sender, addr, service).await;
    // Dropping the sender ends the connection (a GOAWAY, then the close).
    drop(sender);
    let _ = conn.await;
    outcome
}

async fn call(
    sender: &mut hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    service: &str,
) -> Outcome {
    let req = Request::post(format!("http://{addr}/grpc.health.v1.Health/Check"))
        .header(header::CONTENT_TYPE, "application/grpc")
        .header(header::TE, "trailers")
        .header(header::USER_AGENT, "strata-health")
        .body(Full::new(request(service)))
        .expect("a well-formed request");
    let Ok(res) = sender.send_request(req).await else {
        return Outcome::NoReply;
    };
    if !res.status().is_success() {
        return Outcome::Status(res.status().as_u16());
    }
    let head_status = res.headers().get("grpc-status").cloned();
    let Ok(collected) = res.into_body().collect().await else {
        return Outcome::NoReply;
    };
    let status = collected
        .trailers()
        .and_then(|t| t.get("grpc-status").cloned())
        .or(head_status);
    match status.as_ref().map(|s| s.as_bytes()) {
        Some(b"0") => {}
        Some(code) => {
            let code = String::from_utf8_lossy(code);
            let what = match code.as_ref() {
                "12" => " (UNIMPLEMENTED: the server has no health service)".to_string(),
                "5" => format!(" (NOT_FOUND: the health service does not know {service:?})"),
                _ => String::new(),
            };
            return Outcome::Grpc(format!("answered grpc-status {code}{what}"));
        }
        None => return Outcome::Grpc("answered without a grpc-status".to_string()),
    }
    match serving_status(collected.to_bytes()) {
        Some(SERVING) => Outcome::Passed,
        Some(other) => Outcome::Grpc(format!("answered {}", status_name(other))),
        None => Outcome::Grpc("answered a message that is not a HealthCheckResponse".to_string()),
    }
}

/// `HealthCheckRequest { service }` in a gRPC message frame.
fn request(service: &str) -> Bytes {
    let mut message = Vec::with_capacity(service.len() + 8);
    if !service.is_empty() {
        message.push(0x0a); // field 1, length-delimited
        varint(service.len() as u64, &mut message);
        message.extend_from_slice(service.as_bytes());
    }
    let mut frame = Vec::with_capacity(5 + message.len());
    frame.push(0); // not compressed
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    Bytes::from(frame)
}

fn varint(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// The `status` of a framed `HealthCheckResponse` (0, UNKNOWN, when it is left out);
/// None when the bytes are not one uncompressed message.
fn serving_status(mut body: Bytes) -> Option<u64> {
    if body.len() < 5 || body[0] != 0 {
        return None;
    }
    body.advance(1);
    let len = body.get_u32() as usize;
    if body.len() != len {
        return None;
    }
    let mut status = 0;
    while body.has_remaining() {
        let key = read_varint(&mut body)?;
        match (key >> 3, key & 7) {
            (1, 0) => status = read_varint(&mut body)?,
            // Fields of a later version: skipped by their wire type.
            (_, 0) => {
                read_varint(&mut body)?;
            }
            (_, 2) => {
                let n = read_varint(&mut body)? as usize;
                if body.len() < n {
                    return None;
                }
                body.advance(n);
            }
            (_, 1) if body.len() >= 8 => body.advance(8),
            (_, 5) if body.len() >= 4 => body.advance(4),
            _ => return None,
        }
    }
    Some(status)
}

fn read_varint(body: &mut Bytes) -> Option<u64> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *body.first()?;
        body.advance(1);
        n |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(n);
        }
    }
    None
}

fn status_name(status: u64) -> String {
    match status {
        0 => "UNKNOWN".to_string(),
        1 => "SERVING".to_string(),
        2 => "NOT_SERVING".to_string(),
        3 => "SERVICE_UNKNOWN".to_string(),
        n => format!("status {n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_messages() {
        assert_eq!(&request("")[..], &[0, 0, 0, 0, 0]);
        assert_eq!(&request("a.B")[..], &[0, 0, 0, 0, 5, 0x0a, 3, b'a', b'.', b'B']);
        let framed = |m: &[u8]| {
            let mut f = vec![0];
            f.extend_from_slice(&(m.len() as u32).to_be_bytes());
            f.extend_from_slice(m);
            Bytes::from(f)
        };
        assert_eq!(serving_status(framed(&[0x08, 1])), Some(SERVING));
        assert_eq!(serving_status(framed(&[0x08, 2])), Some(2));
        assert_eq!(serving_status(framed(&[])), Some(0));
        // An unknown length-delimited field, then the status.
        assert_eq!(serving_status(framed(&[0x12, 2, b'x', b'y', 0x08, 1])), Some(SERVING));
        // Malformed: truncated, compressed, a frame length that lies, a varint that never ends.
        assert_eq!(serving_status(Bytes::from_static(&[0, 0, 0])), None);
        assert_eq!(serving_status(Bytes::from_static(&[1, 0, 0, 0, 2, 0x08, 1])), None);
        assert_eq!(serving_status(Bytes::from_static(&[0, 0, 0, 0, 9, 0x08, 1])), None);
        assert_eq!(serving_status(framed(&[0x08, 0xff, 0xff])), None);
        assert_eq!(serving_status(framed(&[0x12, 9, b'x'])), None);
    }
}
