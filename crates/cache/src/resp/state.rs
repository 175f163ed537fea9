//! What the commands run against: the state every connection of a server shares
//! ([`ConnectionContext`]: the cache, the settings from [`RespConfig`], counters for INFO) and one
//! connection's own ([`Session`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::parse::Limits;
use crate::cache::Cache;
use crate::ring::StableHasher;

/// How the RESP server runs.
#[derive(Debug, Clone)]
pub struct RespConfig {
    /// Worker threads (0: one per core).
    pub threads: usize,
    /// Parser limits (bulk size, argument count, inline length).
    pub limits: Limits,
    /// Most bytes a connection may have received and not yet run (Redis'
    /// `client-query-buffer-limit`); past it the connection is closed.
    pub max_query_bytes: usize,
}

impl Default for RespConfig {
    fn default() -> Self {
        RespConfig {
            threads: 0,
            limits: Limits::default(),
            max_query_bytes: 256 << 20,
        }
    }
}

/// What every connection shares.
pub(crate) struct ConnectionContext {
    pub cache: Arc<Cache>,
    pub server: ServerState,
}

pub(crate) struct ServerState {
    /// Set once every worker is bound.
    pub addr: std::sync::OnceLock<SocketAddr>,
    pub threads: usize,
    pub started: Instant,
    pub run_id: String,
    pub limits: Limits,
    pub max_query_bytes: usize,
    pub connected: AtomicU64,
    pub total_connections: AtomicU64,
    /// Commands run, one counter per worker so that workers never share a cache line.
    pub commands: Box<[PerWorker]>,
    pub next_client_id: AtomicU64,
}

impl ConnectionContext {
    pub fn new(cache: Arc<Cache>, config: &RespConfig, threads: usize) -> ConnectionContext {
        ConnectionContext {
            cache,
            server: ServerState {
                addr: std::sync::OnceLock::new(),
                threads,
                started: Instant::now(),
                run_id: run_id(),
                limits: config.limits,
                max_query_bytes: config.max_query_bytes.max(1024),
                connected: AtomicU64::new(0),
                total_connections: AtomicU64::new(0),
                commands: (0..threads.max(1)).map(|_| PerWorker::default()).collect(),
                next_client_id: AtomicU64::new(1),
            },
        }
    }
}

/// A counter on its own cache line.
#[derive(Default)]
#[repr(align(128))]
pub(crate) struct PerWorker(pub AtomicU64);

impl ServerState {
    pub fn total_commands(&self) -> u64 {
        self.commands.iter().map(|c| c.0.load(Ordering::Relaxed)).sum()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
            .get()
            .copied()
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }
}

fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let mut h = StableHasher::new();
    std::hash::Hasher::write_u64(&mut h, nanos as u64 ^ std::process::id() as u64);
    let a = std::hash::Hasher::finish(&h);
    std::hash::Hasher::write_u64(&mut h, a);
    format!(
        "{a:016x}{:016x}{:08x}",
        std::hash::Hasher::finish(&h),
        std::process::id()
    )
}

/// One connection's state.
pub(crate) struct Session {
    pub id: u64,
    pub resp3: bool,
    pub name: Option<Vec<u8>>,
    pub lib_name: String,
    pub lib_ver: String,
    pub peer: SocketAddr,
    pub created: Instant,
}

impl Session {
    /// `RESET`: back to a fresh connection's state.
    pub fn reset(&mut self) {
        self.resp3 = false;
        self.name = None;
    }
}
