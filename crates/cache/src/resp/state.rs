//! What the commands run against: the state every connection of a server shares
//! ([`ConnectionContext`]: the cache, the settings from [`RespConfig`], the pub/sub
//! registry, counters for INFO) and one connection's own ([`Session`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::command_stats::{Baseline, Rates, WorkerStats};
use super::parse::Limits;
use super::pubsub::Subscriptions;
use super::query_buffer::ClientMemory;
use super::timeouts::Timeouts;
use super::transaction::Transaction;
use crate::cache::Cache;
use crate::node_ring::NodeRing;
use crate::ring::StableHasher;

/// How the RESP server runs, and what bounds each connection and all of them. The
/// defaults bound a node's Redis port without getting in a normal client's way.
#[derive(Clone)]
pub struct RespConfig {
    /// Worker threads (0: one per core).
    pub threads: usize,
    /// Parser limits (bulk size, argument count, inline length).
    pub limits: Limits,
    /// Most bytes a connection may have received and not yet run, 64 MiB (Redis'
    /// `client-query-buffer-limit`); past it the connection gets an error and is closed.
    /// Keep it above `limits.max_bulk`, so that the largest value fits.
    pub max_query_bytes: usize,
    /// Most bytes the query buffers of all connections may hold together, 256 MiB (as
    /// Redis' `maxmemory-clients`, for query buffers): a connection whose buffer would
    /// have to grow past it gets an error and is closed (`evicted_clients` in INFO).
    /// Each connection's first 16 KiB read buffer counts, but is always granted; so do
    /// the commands queued in MULTI (one past the bound is refused) and a blocked
    /// client's command (always granted: it was in the client's query buffer).
    pub max_query_bytes_total: usize,
    /// Most connections open at once, 10,000 (Redis' `maxclients`); one more gets
    /// `-ERR max number of clients reached` and is closed.
    pub max_clients: usize,
    /// A connection with nothing under way for this long is closed, quietly, as Redis'
    /// `timeout` does; 300 s. None: never.
    pub idle_timeout: Option<Duration>,
    /// A command must arrive whole within this long of its first bytes (plus a second
    /// per MiB received, for large values on slow links), else the client gets an error
    /// and the connection is closed: a slowloris client holds nothing for long; 10 s.
    /// None: never.
    pub command_timeout: Option<Duration>,
    /// The default user's password (Redis' `requirepass`): when set, a connection runs
    /// nothing but AUTH, HELLO (with AUTH), QUIT and RESET until `AUTH password`,
    /// `AUTH default password` or `HELLO 3 AUTH default password` succeeds. None: no
    /// password, every connection is authenticated (and the node keeps the port on
    /// loopback).
    pub password: Option<String>,
    /// In a cluster, the cache ring over the nodes: a command whose keys another node
    /// owns is forwarded to it (`forward`), and the peers are reached with `password`.
    /// None: a single node, every key served here (nothing is checked per command).
    pub ring: Option<Arc<NodeRing>>,
}

impl std::fmt::Debug for RespConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RespConfig")
            .field("threads", &self.threads)
            .field("limits", &self.limits)
            .field("max_query_bytes", &self.max_query_bytes)
            .field("max_query_bytes_total", &self.max_query_bytes_total)
            .field("max_clients", &self.max_clients)
            .field("idle_timeout", &self.idle_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ring", &self.ring)
            .finish()
    }
}

impl Default for RespConfig {
    fn default() -> Self {
        RespConfig {
            threads: 0,
            limits: Limits::default(),
            max_query_bytes: 64 << 20,
            max_query_bytes_total: 256 << 20,
            max_clients: 10_000,
            idle_timeout: Some(Duration::from_secs(300)),
            command_timeout: Some(Duration::from_secs(10)),
            password: None,
            ring: None,
        }
    }
}

/// What every connection shares.
pub(crate) struct ConnectionContext {
    pub cache: Arc<Cache>,
    pub server: ServerState,
    /// The cluster's cache ring, and what opens a connection to a peer (RESP2, RESP3).
    pub ring: Option<(Arc<NodeRing>, [Vec<u8>; 2])>,
}

pub(crate) struct ServerState {
    /// Set once every worker is bound.
    pub addr: std::sync::OnceLock<SocketAddr>,
    pub threads: usize,
    pub started: Instant,
    pub run_id: String,
    pub limits: Limits,
    pub max_query_bytes: usize,
    pub max_clients: u64,
    pub timeouts: Timeouts,
    /// The bytes held by all connections' query buffers, queued transactions and
    /// blocked commands, and their bound.
    pub client_memory: ClientMemory,
    pub connected: AtomicU64,
    pub total_connections: AtomicU64,
    /// Events that close connections, for INFO (rare: counters shared by the workers).
    pub closed: Closed,
    /// Commands run, one counter per worker so that workers never share a cache line.
    pub commands: Box<[PerWorker]>,
    /// Each worker's figures by command and error, and its traffic (INFO's
    /// commandstats, errorstats, `total_net_*`).
    pub stats: Box<[WorkerStats]>,
    /// Samples for INFO's `instantaneous_*` rates.
    pub rates: Rates,
    /// The most `used_memory` seen (at each sample of `rates` and each INFO).
    pub memory_peak: AtomicU64,
    /// INFO's counters at the last CONFIG RESETSTAT.
    pub baseline: Baseline,
    pub next_client_id: AtomicU64,
    /// The password AUTH wants (None: none).
    pub password: Option<Vec<u8>>,
}

impl ConnectionContext {
    pub fn new(cache: Arc<Cache>, config: &RespConfig, threads: usize) -> ConnectionContext {
        let ring = config.ring.as_ref().map(|ring| {
            ring.set_password(config.password.as_deref());
            (ring.clone(), [ring.hello(false), ring.hello(true)])
        });
        ConnectionContext {
            cache,
            ring,
            server: ServerState {
                addr: std::sync::OnceLock::new(),
                threads,
                started: Instant::now(),
                run_id: run_id(),
                limits: config.limits,
                max_query_bytes: config.max_query_bytes.max(1024),
                max_clients: config.max_clients.max(1) as u64,
                timeouts: Timeouts {
                    idle: config.idle_timeout.filter(|t| !t.is_zero()),
                    command: config.command_timeout.filter(|t| !t.is_zero()),
                },
                client_memory: ClientMemory::new(config.max_query_bytes_total),
                connected: AtomicU64::new(0),
                total_connections: AtomicU64::new(0),
                closed: Closed::default(),
                commands: (0..threads.max(1)).map(|_| PerWorker::default()).collect(),
                stats: (0..threads.max(1)).map(|_| WorkerStats::default()).collect(),
                rates: Rates::default(),
                memory_peak: AtomicU64::new(0),
                baseline: Baseline::default(),
                next_client_id: AtomicU64::new(1),
                password: config.password.as_ref().map(|p| p.as_bytes().to_vec()),
            },
        }
    }
}

/// Connections refused or closed by the server's bounds.
#[derive(Default)]
pub(crate) struct Closed {
    /// Refused at accept: `max_clients` were open (Redis' `rejected_connections`).
    pub max_clients: AtomicU64,
    /// Past `max_query_bytes_total` (Redis' `evicted_clients`).
    pub evicted: AtomicU64,
    /// Past `max_query_bytes` (Redis' `client_query_buffer_limit_disconnections`).
    pub query_buffer_limit: AtomicU64,
    /// Idle for `idle_timeout`.
    pub idle: AtomicU64,
    /// A command not whole within `command_timeout`.
    pub slow_command: AtomicU64,
    /// A subscriber's mailbox past its bound (Redis'
    /// `client_output_buffer_limit_disconnections`).
    pub output_limit: AtomicU64,
}

/// The running Redis port's own figures (INFO's clients and stats sections), for the
/// node's metrics: a handle on the server's shared state, read when asked.
#[derive(Clone)]
pub struct RespFigures(pub(crate) Arc<ConnectionContext>);

/// What [`RespFigures::read`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RespStats {
    /// Connections open now, and the bound (`cache.max_clients`).
    pub clients: u64,
    pub max_clients: u64,
    /// Clients waiting in a blocking command (BLPOP and the like).
    pub blocked_clients: u64,
    /// Connections accepted, and commands run, since the port opened.
    pub connections: u64,
    pub commands: u64,
    /// Connections refused at accept because `max_clients` were open.
    pub refused: u64,
    /// Connections closed by a bound, by reason: every query buffer together past
    /// `max_query_buffers_total_mb`, one past `max_query_buffer_mb`, idle past
    /// `idle_timeout_ms`, a command not whole within `command_timeout_ms`, a
    /// subscriber's mailbox past its bound.
    pub closed_query_buffers_total: u64,
    pub closed_query_buffer: u64,
    pub closed_idle: u64,
    pub closed_slow_command: u64,
    pub closed_output_buffer: u64,
    /// Bytes the connections' query buffers hold now (with the commands queued in
    /// MULTI and those of blocked clients, INFO's `mem_clients_normal`).
    pub query_buffer_bytes: u64,
}

impl RespFigures {
    pub fn read(&self) -> RespStats {
        let server = &self.0.server;
        let closed = &server.closed;
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RespStats {
            clients: n(&server.connected),
            max_clients: server.max_clients,
            blocked_clients: self.0.cache.waiters().clients() as u64,
            connections: n(&server.total_connections),
            commands: server.total_commands(),
            refused: n(&closed.max_clients),
            closed_query_buffers_total: n(&closed.evicted),
            closed_query_buffer: n(&closed.query_buffer_limit),
            closed_idle: n(&closed.idle),
            closed_slow_command: n(&closed.slow_command),
            closed_output_buffer: n(&closed.output_limit),
            query_buffer_bytes: server.client_memory.held() as u64,
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
    /// MULTI's queue and the WATCHed keys.
    pub tx: Transaction,
    /// Channels and patterns subscribed, and the mailbox.
    pub subs: Subscriptions,
    /// Whether AUTH succeeded, or no password is set.
    pub authenticated: bool,
    /// CLIENT REPLY's state.
    pub replies: Replies,
}

/// CLIENT REPLY's state, Redis' flags: OFF drops every reply until ON; SKIP drops the
/// next command's. As in Redis, a flag applies to what is written while it is set, so
/// EXEC's array header and its commands' replies each go or not as the flags are when
/// they are written; pub/sub's pushes (SUBSCRIBE's confirmations, messages) are never
/// dropped.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Replies {
    pub off: bool,
    /// CLIENT REPLY SKIP ran: the next command's reply is dropped.
    pub skip_next: bool,
    /// This command's reply is dropped.
    pub skip: bool,
}

impl Replies {
    /// Whether a reply written now is dropped.
    #[inline]
    pub fn quiet(&self) -> bool {
        self.off || self.skip
    }

    /// Drops what was written since `at` in `out` if replies are quiet now (one piece
    /// of a reply that goes or not as the flags are when it is written).
    #[inline]
    pub fn finish_piece(&self, out: &mut Vec<u8>, at: usize) {
        if self.quiet() {
            out.truncate(at);
        }
    }

    /// After a command whose reply starts at `at` in `out`: drops it if replies are
    /// quiet (`pushes`: it was pub/sub's, kept), then moves SKIP on, as Redis'
    /// `resetClient`.
    #[inline]
    pub fn finish(&mut self, out: &mut Vec<u8>, at: usize, pushes: bool) {
        if self.quiet() && !pushes {
            out.truncate(at);
        }
        self.skip = std::mem::take(&mut self.skip_next);
    }
}

impl Session {
    /// `RESET`: back to a fresh connection's state, authenticated only if no password
    /// is set (the caller ends any transaction, watch and subscription first: that needs
    /// the cache and the server).
    pub fn reset(&mut self, server: &ServerState) {
        self.resp3 = false;
        self.name = None;
        self.replies = Replies::default();
        self.authenticated = server.password.is_none();
    }
}
