//! One client connection without the socket: bytes in, replies out. The server's
//! connection loop drives it with reads and writes; tests and the fuzz target drive it
//! directly.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::blocking::Blocked;
use super::command_stats::slot_of;
use super::commands::{execute, Flow};
use super::forward::{self, Forwards, Route, PEER_NAME_PREFIX};
use super::parse::Parser;
use super::reply::Reply;
use super::state::{ConnectionContext, RespConfig, Session};
use super::table::lookup;
use crate::blocking::Waiter;
use crate::cache::Cache;
use crate::pubsub::Subscriber;

/// Replies past this size are handed out ([`Progress::Flush`]) before the rest of a
/// batch is run.
const FLUSH_AT: usize = 1 << 20;

/// What [`Connection::process`] needs next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Every complete command has run: write `out`, then read more.
    NeedInput,
    /// `out` is large: write it, then call `process` again with the same input.
    Flush,
    /// Write `out`, then close the connection (QUIT, or a protocol error).
    Close,
    /// A blocking command (BLPOP, ...) found nothing and waits: write `out`; the
    /// server then waits for elements, the command's deadline or the client (the input
    /// after the command is run once it is answered). A connection driven without the
    /// server (tests, fuzzing) stops here.
    Blocked,
}

/// A client connection's protocol state: parser, protocol version, name.
pub struct Connection {
    parser: Parser,
    session: Session,
    shared: Arc<ConnectionContext>,
    /// The worker thread serving it (its slot in the per-worker counters).
    worker: usize,
    /// The blocking command it waits in, if any.
    blocked: Option<Blocked>,
    /// In a cluster: the batch's commands that other nodes run (`forward`).
    forwards: Forwards,
}

impl Connection {
    pub(crate) fn new(shared: Arc<ConnectionContext>, peer: SocketAddr, worker: usize) -> Connection {
        let session = Session {
            id: shared.server.next_client_id.fetch_add(1, Ordering::Relaxed),
            resp3: false,
            name: None,
            lib_name: String::new(),
            lib_ver: String::new(),
            peer,
            created: Instant::now(),
            tx: Default::default(),
            subs: Default::default(),
            authenticated: shared.server.password.is_none(),
            replies: Default::default(),
        };
        Connection {
            parser: Parser::new(shared.server.limits),
            session,
            shared,
            worker,
            blocked: None,
            forwards: Forwards::default(),
        }
    }

    /// A connection to `cache` that belongs to no server (for tests and fuzzing).
    pub fn detached(cache: Arc<Cache>, config: &RespConfig) -> Connection {
        let shared = Arc::new(ConnectionContext::new(cache, config, 1));
        Connection::new(shared, SocketAddr::from(([127, 0, 0, 1], 0)), 0)
    }

    /// How many bytes of input the command being received needs in all (a hint for
    /// reserving buffer space); 0 when unknown.
    pub fn want(&self) -> usize {
        self.parser.want()
    }

    /// Runs the complete commands at the start of `input`, removing them from it and
    /// appending their replies to `out`. In a cluster, the commands other nodes own are
    /// queued instead ([`Connection::has_forwards`]): the server forwards them before it
    /// writes `out`.
    pub fn process(&mut self, input: &mut Vec<u8>, out: &mut Vec<u8>) -> Progress {
        // The batch's PUBLISHes wake each subscriber once, at its end.
        let _wakes = crate::pubsub::WakeLater::begin();
        let mut at = 0;
        let mut commands = 0u64;
        let mut progress = Progress::NeedInput;
        // A single node pays this one test per batch (and one per command, of `routing`);
        // a cluster node alone on its ring takes the ring's view once per batch and
        // routes nothing, nor does a peer's connection (one hop only).
        let routing = match &self.shared.ring {
            Some((ring, _)) if !self.is_peer() => Some(ring.view()).filter(|v| !v.is_solo()),
            _ => None,
        };
        let stats = &self.shared.server.stats[self.worker];
        // Each command's time runs from the one before it (the first's from here).
        let mut since = Instant::now();
        loop {
            // AUTH may have succeeded (or RESET logged out) in the command before.
            self.parser.set_unauthenticated(!self.session.authenticated);
            match self.parser.parse(&input[at..]) {
                Ok(Some(used)) => {
                    let args = self.parser.args(&input[at..]);
                    let start = at;
                    at += used;
                    let route = match &routing {
                        Some(view) if !args.is_empty() => forward::route(view, args, &self.session),
                        _ => Route::Here,
                    };
                    match route {
                        Route::Here => {}
                        Route::Peer(node) => {
                            let view = routing.as_ref().expect("routed");
                            // Its owner runs it; its reply is dropped here if CLIENT
                            // REPLY says so (a SKIP then moves on past it).
                            let quiet = self.session.replies.quiet();
                            self.forwards.add(view, node, &input[start..at], out.len(), quiet);
                            self.session.replies.finish(out, out.len(), true);
                            commands += 1;
                            if out.len() + self.forwards.queued_bytes() >= FLUSH_AT {
                                progress = Progress::Flush;
                                break;
                            }
                            continue;
                        }
                        Route::Refuse(e) => {
                            self.session.tx.refuse();
                            let at = out.len();
                            Reply {
                                out,
                                resp3: self.session.resp3,
                            }
                            .error(&e);
                            stats.count_error(&out[at..]);
                            self.session.replies.finish(out, at, false);
                            commands += 1;
                            continue;
                        }
                    }
                    if !args.is_empty() {
                        commands += 1;
                        match execute(args, &mut self.session, &self.shared, out, stats, &mut since) {
                            Flow::Continue => {}
                            Flow::Close => {
                                progress = Progress::Close;
                                break;
                            }
                            Flow::Block => {
                                let spec = lookup(args.get(0)).expect("a known command");
                                let at = out.len();
                                let mut r = Reply {
                                    out,
                                    resp3: self.session.resp3,
                                };
                                if let Some(b) = Blocked::start(&mut r, &self.shared, spec, args) {
                                    self.blocked = Some(b);
                                    progress = Progress::Blocked;
                                    break;
                                }
                                if out.get(at) == Some(&b'-') {
                                    stats.count_failed(slot_of(spec, None));
                                    stats.count_error(&out[at..]);
                                }
                                self.session.replies.finish(out, at, false);
                            }
                        }
                    }
                    if out.len() >= FLUSH_AT {
                        progress = Progress::Flush;
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let at = out.len();
                    Reply {
                        out,
                        resp3: self.session.resp3,
                    }
                    .error(&format!("ERR {e}"));
                    stats.count_error(&out[at..]);
                    progress = Progress::Close;
                    break;
                }
            }
        }
        if commands > 0 {
            self.shared.server.commands[self.worker]
                .0
                .fetch_add(commands, Ordering::Relaxed);
        }
        if at == input.len() {
            input.clear();
        } else if at > 0 {
            input.drain(..at);
        }
        if progress == Progress::NeedInput && input.len() > self.shared.server.max_query_bytes {
            self.over_query_buffer_limit(input.len(), out);
            progress = Progress::Close;
        }
        progress
    }

    /// Whether the batch just processed has commands for other nodes: then
    /// [`Connection::forward`] before writing its replies.
    pub(crate) fn has_forwards(&self) -> bool {
        !self.forwards.is_empty()
    }

    /// Forwards the batch's commands that other nodes own and puts their replies in
    /// their places in `out`.
    pub(crate) async fn forward(&mut self, out: &mut Vec<u8>) {
        let shared = self.shared.clone();
        let Some((ring, hello)) = &shared.ring else {
            return;
        };
        let resp3 = self.session.resp3;
        let view = ring.view();
        self.forwards.run(out, resp3, &hello[resp3 as usize], &view).await;
    }

    /// Whether this is another node's connection, forwarding to this one.
    fn is_peer(&self) -> bool {
        self.session
            .name
            .as_deref()
            .is_some_and(|n| n.starts_with(PEER_NAME_PREFIX))
    }

    /// What a blocked connection waits for: a signal, and the deadline (None: none).
    pub(crate) fn blocked_on(&self) -> Option<(Arc<Waiter>, Option<tokio::time::Instant>)> {
        self.blocked.as_ref().map(Blocked::wait)
    }

    /// After a signal: tries the blocked command again; true if it was answered (into
    /// `out`), false if it waits on.
    pub(crate) fn retry_blocked(&mut self, out: &mut Vec<u8>) -> bool {
        let at = out.len();
        let mut r = Reply {
            out,
            resp3: self.session.resp3,
        };
        let answered = self.blocked.as_mut().is_none_or(|b| b.retry(&mut r));
        if answered {
            self.blocked = None;
            self.answered(out, at);
        }
        answered
    }

    /// A blocking command's answer was written at `at` in `out`: its error counted, and
    /// dropped if CLIENT REPLY says so.
    fn answered(&mut self, out: &mut Vec<u8>, at: usize) {
        if out.get(at) == Some(&b'-') {
            self.shared.server.stats[self.worker].count_error(&out[at..]);
        }
        self.session.replies.finish(out, at, false);
    }

    /// The blocked command's deadline passed: answers it (into `out`).
    pub(crate) fn time_out_blocked(&mut self, out: &mut Vec<u8>) {
        if let Some(mut b) = self.blocked.take() {
            let at = out.len();
            b.time_out(&mut Reply {
                out,
                resp3: self.session.resp3,
            });
            self.answered(out, at);
        }
    }

    /// The mailbox to wait on while the connection has subscriptions.
    pub(crate) fn mailbox(&self) -> Option<Arc<Subscriber>> {
        self.session.subs.mailbox().cloned()
    }

    /// Appends messages waiting in the mailbox to `out` (about [`FLUSH_AT`] bytes of
    /// them: the rest stay counted in the mailbox); false if the mailbox went past its
    /// bound (counted: the connection is to be closed, without a reply).
    pub(crate) fn write_messages(&mut self, out: &mut Vec<u8>) -> bool {
        let mut r = Reply {
            out,
            resp3: self.session.resp3,
        };
        let ok = self.session.subs.write_pending(&mut r, Some(FLUSH_AT));
        if !ok {
            super::commands::over_output_limit(&self.session, &self.shared);
        }
        ok
    }

    /// The command being received cannot be held: appends the error to `out`, counts
    /// it; the connection is to be closed.
    pub(crate) fn over_query_buffer_limit(&self, bytes: usize, out: &mut Vec<u8>) {
        let server = &self.shared.server;
        server.closed.query_buffer_limit.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(peer = %self.session.peer, bytes, limit = server.max_query_bytes, "cache client closed: query buffer over the limit");
        Reply {
            out,
            resp3: self.session.resp3,
        }
        .error("ERR Protocol error: query buffer limit exceeded");
    }

    /// The connection's query buffer would take the server's query buffers past their
    /// bound: appends the error to `out`, counts it; the connection is to be closed.
    pub(crate) fn evicted(&self, out: &mut Vec<u8>) {
        let server = &self.shared.server;
        server.closed.evicted.fetch_add(1, Ordering::Relaxed);
        let max = server.client_memory.max();
        tracing::warn!(peer = %self.session.peer, held = server.client_memory.held(), max, "cache client closed: the query buffers of all clients are at their bound");
        Reply {
            out,
            resp3: self.session.resp3,
        }
        .error(&format!(
            "ERR client evicted: the query buffers of all clients would exceed maxmemory-clients ({max} bytes)"
        ));
    }

    /// A command did not arrive whole in time: appends the error to `out`, counts it;
    /// the connection is to be closed.
    pub(crate) fn too_slow(&self, out: &mut Vec<u8>) {
        let server = &self.shared.server;
        server.closed.slow_command.fetch_add(1, Ordering::Relaxed);
        let limit = server.timeouts.command.unwrap_or_default();
        tracing::debug!(peer = %self.session.peer, ?limit, "cache client closed: a command did not arrive whole in time");
        Reply {
            out,
            resp3: self.session.resp3,
        }
        .error(&format!(
            "ERR timeout: the command was still incomplete {limit:?} after its first bytes arrived"
        ));
    }

    /// The connection is over: its transaction and its watches end with it.
    fn end_transaction(&mut self) {
        super::commands::end_transaction(&mut self.session, &self.shared);
    }

    /// Nothing under way for the idle timeout: counts it; the connection is closed
    /// quietly, as Redis does (an error would read as the reply to a client's next command).
    pub(crate) fn idle(&self) {
        self.shared.server.closed.idle.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(peer = %self.session.peer, "cache client closed: idle");
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.end_transaction();
        self.session.subs.end(self.shared.cache.pubsub());
    }
}
