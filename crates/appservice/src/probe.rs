//! Readiness and liveness checks: a GET of the health path, or a port that accepts.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// True when the instance answers the check within `timeout`.
pub(crate) async fn check(addr: SocketAddr, path: Option<&str>, timeout: Duration) -> bool {
    tokio::time::timeout(timeout, check_once(addr, path))
        .await
        .unwrap_or(false)
}

async fn check_once(addr: SocketAddr, path: Option<&str>) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return false;
    };
    let Some(path) = path else {
        return true;
    };
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: strata-health\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    let mut len = 0;
    while len < 12 {
        match stream.read(&mut buf[len..]).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => len += n,
        }
    }
    status_is_2xx(&buf[..len])
}

/// Reads `HTTP/1.x 2NN` at the start of a response.
fn status_is_2xx(head: &[u8]) -> bool {
    head.starts_with(b"HTTP/1.") && head.len() >= 12 && head[8] == b' ' && head[9] == b'2'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line() {
        assert!(status_is_2xx(b"HTTP/1.1 200 OK\r\n"));
        assert!(status_is_2xx(b"HTTP/1.0 204 No Content"));
        assert!(!status_is_2xx(b"HTTP/1.1 503 Unavailable"));
        assert!(!status_is_2xx(b"garbage"));
    }
}
