//! A minimal HTTP/1.1 client over one kept-alive `TcpStream`: GET only, replies framed by
//! Content-Length, chunked encoding, or the end of the connection.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Upper bound of one request (the gateway's default relay deadline is 30 s).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(35);

pub struct Reply {
    pub status: u16,
    /// `x-strata-instance`: the instance that served the reply.
    pub instance: Option<String>,
    pub body: Vec<u8>,
}

pub struct Conn {
    /// host:port
    addr: String,
    stream: Option<BufReader<TcpStream>>,
}

/// `http://host:port/...`, `host:port` -> `host:port`.
pub fn host_port(url: &str) -> String {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    rest.split('/').next().unwrap_or(rest).to_string()
}

impl Conn {
    pub fn new(addr: &str) -> Conn {
        Conn {
            addr: host_port(addr),
            stream: None,
        }
    }

    pub async fn connect(&mut self) -> Result<()> {
        let stream = TcpStream::connect(&self.addr)
            .await
            .with_context(|| format!("connect to {}", self.addr))?;
        stream.set_nodelay(true)?;
        self.stream = Some(BufReader::with_capacity(16 * 1024, stream));
        Ok(())
    }

    /// GET `path`; on a failure the connection is dropped (the next call reconnects). A
    /// kept-alive connection the server closed while idle is retried once on a new one.
    pub async fn get(&mut self, path: &str) -> Result<Reply> {
        let reused = self.stream.is_some();
        match tokio::time::timeout(REQUEST_TIMEOUT, self.get_once(path)).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => {
                self.stream = None;
                if reused && e.downcast_ref::<Stale>().is_some() {
                    return match tokio::time::timeout(REQUEST_TIMEOUT, self.get_once(path)).await {
                        Ok(Ok(reply)) => Ok(reply),
                        Ok(Err(e)) => {
                            self.stream = None;
                            Err(e)
                        }
                        Err(_) => {
                            self.stream = None;
                            bail!("GET {path}: no reply within {REQUEST_TIMEOUT:?}")
                        }
                    };
                }
                Err(e)
            }
            Err(_) => {
                self.stream = None;
                bail!("GET {path}: no reply within {REQUEST_TIMEOUT:?}")
            }
        }
    }

    async fn get_once(&mut self, path: &str) -> Result<Reply> {
        if self.stream.is_none() {
            self.connect().await?;
        }
        let addr = self.addr.clone();
        let stream = self.stream.as_mut().expect("connected");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: autoscale-bench\r\n\r\n");
        if stream.get_mut().write_all(request.as_bytes()).await.is_err() {
            return Err(Stale.into());
        }
        let mut line = Vec::with_capacity(128);
        match stream.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return Err(Stale.into()),
            Ok(_) => {}
        }
        let status_line = String::from_utf8_lossy(&line).trim_end().to_string();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        if !version.starts_with("HTTP/1.") {
            bail!("not an HTTP reply: {status_line:?}");
        }
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {status_line:?}"))?;
        let mut length: Option<usize> = None;
        let mut chunked = false;
        let mut close = version == "HTTP/1.0";
        let mut instance = None;
        loop {
            line.clear();
            if stream.read_until(b'\n', &mut line).await? == 0 {
                bail!("connection closed in the reply head");
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end();
            if text.is_empty() {
                break;
            }
            let Some((name, value)) = text.split_once(':') else {
                bail!("bad header line {text:?}");
            };
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = Some(value.parse().context("bad Content-Length")?),
                "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
                "connection" => close = value.eq_ignore_ascii_case("close"),
                "x-strata-instance" => instance = Some(value.to_string()),
                _ => {}
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                if stream.read_until(b'\n', &mut line).await? == 0 {
                    bail!("connection closed in a chunked body");
                }
                let size_text = String::from_utf8_lossy(&line);
                let size_text = size_text.trim().split(';').next().unwrap_or("").to_string();
                let size = usize::from_str_radix(&size_text, 16).context("bad chunk size")?;
                if size == 0 {
                    // trailers, up to an empty line
                    loop {
                        line.clear();
                        if stream.read_until(b'\n', &mut line).await? == 0 || line == b"\r\n" || line == b"\n" {
                            break;
                        }
                    }
                    break;
                }
                let start = body.len();
                body.resize(start + size, 0);
                stream.read_exact(&mut body[start..]).await?;
                let mut crlf = [0u8; 2];
                stream.read_exact(&mut crlf).await?;
            }
        } else if let Some(n) = length {
            body.resize(n, 0);
            stream.read_exact(&mut body).await?;
        } else if status != 204 && status != 304 && !(100..200).contains(&status) {
            stream.read_to_end(&mut body).await?;
            close = true;
        }
        if close {
            self.stream = None;
        }
        Ok(Reply { status, instance, body })
    }
}

/// The kept-alive connection was closed before the reply began.
#[derive(Debug)]
struct Stale;

impl std::fmt::Display for Stale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection closed before the reply")
    }
}

impl std::error::Error for Stale {}
