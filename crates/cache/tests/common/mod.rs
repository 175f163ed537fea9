//! Shared by the socket tests: start a RESP server on port 0, talk raw RESP to it.

#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_cache::{spawn_resp_with, Cache, CacheConfig, RespConfig, RespWorkers};
use tokio_util::sync::CancellationToken;

/// How long [`Client::assert_closed`] waits for the server to close a connection.
pub const CLOSE_WITHIN: Duration = Duration::from_secs(5);

pub struct Server {
    pub addr: SocketAddr,
    pub cache: Arc<Cache>,
    pub token: CancellationToken,
    pub workers: Option<RespWorkers>,
}

impl Server {
    pub fn start(threads: usize) -> Server {
        Server::start_with(
            threads,
            CacheConfig {
                shards: 2,
                ..CacheConfig::default()
            },
            RespConfig::default(),
        )
    }

    pub fn start_with(threads: usize, cache: CacheConfig, config: RespConfig) -> Server {
        let cache = Arc::new(Cache::new(cache));
        let token = CancellationToken::new();
        let workers = spawn_resp_with(
            "127.0.0.1:0".parse().unwrap(),
            RespConfig { threads, ..config },
            cache.clone(),
            token.clone(),
        )
        .expect("the RESP server starts");
        Server {
            addr: workers.addr,
            cache,
            token,
            workers: Some(workers),
        }
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    pub fn stop(&mut self) {
        self.token.cancel();
        if let Some(w) = self.workers.take() {
            w.join_blocking();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

pub struct Client {
    pub stream: TcpStream,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Client::from_stream(TcpStream::connect(addr).expect("connect to the RESP server"))
    }

    pub fn from_stream(stream: TcpStream) -> Client {
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.set_nodelay(true).unwrap();
        Client { stream }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to the server");
    }

    /// Reads exactly `n` bytes.
    pub fn read_n(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        self.stream
            .read_exact(&mut buf)
            .unwrap_or_else(|e| panic!("reading {n} bytes: {e}"));
        buf
    }

    /// Sends one command and checks the exact reply.
    pub fn check(&mut self, args: &[&str], expected: &str) {
        self.send(&cmd(args));
        let got = self.read_n(expected.len());
        assert_eq!(String::from_utf8_lossy(&got), expected, "reply to {args:?}");
    }

    /// Reads one whole reply (any type), raw.
    pub fn read_reply(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.read_value(&mut out);
        out
    }

    fn read_line(&mut self, out: &mut Vec<u8>) -> String {
        let start = out.len();
        loop {
            let mut b = [0u8; 1];
            self.stream.read_exact(&mut b).expect("reading a reply line");
            out.push(b[0]);
            if out.len() >= start + 2 && &out[out.len() - 2..] == b"\r\n" {
                return String::from_utf8_lossy(&out[start + 1..out.len() - 2]).into_owned();
            }
        }
    }

    fn read_value(&mut self, out: &mut Vec<u8>) {
        let at = out.len();
        let line = self.read_line(out);
        match out[at] {
            b'+' | b'-' | b':' | b'_' | b',' | b'#' => {}
            b'$' | b'=' => {
                let n: i64 = line.parse().unwrap();
                if n >= 0 {
                    let data = self.read_n(n as usize + 2);
                    out.extend_from_slice(&data);
                }
            }
            b'*' | b'~' | b'>' => {
                let n: i64 = line.parse().unwrap();
                for _ in 0..n.max(0) {
                    self.read_value(out);
                }
            }
            b'%' => {
                let n: i64 = line.parse().unwrap();
                for _ in 0..2 * n {
                    self.read_value(out);
                }
            }
            other => panic!("unexpected reply type {:?}", other as char),
        }
    }

    /// Waits until the server closes the connection: end of file or a reset, within
    /// [`CLOSE_WITHIN`]. Panics, saying which, if the server sends more bytes instead or
    /// keeps the connection open and quiet.
    pub fn assert_closed(&mut self, context: &str) {
        let deadline = Instant::now() + CLOSE_WITHIN;
        let mut b = [0u8; 64];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!("{context}: the server kept the connection open for {CLOSE_WITHIN:?} without closing it");
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            match self.stream.read(&mut b) {
                Ok(0) => return,
                Ok(n) => panic!(
                    "{context}: the server sent {:?} instead of closing the connection",
                    String::from_utf8_lossy(&b[..n])
                ),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(e) => panic!("{context}: reading while waiting for the server to close: {e}"),
            }
        }
    }
}

/// A command as a RESP multibulk.
pub fn cmd(args: &[&str]) -> Vec<u8> {
    cmd_bytes(&args.iter().map(|a| a.as_bytes()).collect::<Vec<_>>())
}

pub fn cmd_bytes(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}
