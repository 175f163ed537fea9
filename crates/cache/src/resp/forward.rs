//! Forwarding in a cluster: a command whose keys another node owns ([`route`], by the
//! [`crate::NodeRing`]) is sent, as the client's own bytes, to the owner's Redis port
//! over a pooled connection, and the owner's reply is copied back in its place among
//! the batch's replies ([`Forwards`]), so a pipeline's replies stay in command order.
//! One hop only: a node's connection to a peer names itself `strata-peer:NODE`, and
//! what arrives on such a connection runs where it arrives.
//!
//! What is forwarded: every command whose keys all have one owner, another node.
//! What is not: commands without keys (PING, INFO, DBSIZE, KEYS, SCAN, FLUSHDB,
//! RANDOMKEY, CONFIG, pub/sub: they see or change this node's part only); keys of
//! several owners (`-CROSSSLOT`, as Redis Cluster); a key owned elsewhere inside
//! MULTI, in WATCH, or in a blocking command (BLPOP & co.): an error naming the owner
//! (a transaction and a wait stay on one node).
//!
//! A batch's forwarded commands go to each owner in one write, all owners at once,
//! before any reply is awaited: one round trip per batch, not per command. Commands run
//! here in the same batch are not ordered with those forwarded (they hold other keys).
//! An owner that cannot be reached or answers wrongly gets its commands answered with
//! `-TRYAGAIN` (the ring is changing: retry); the commands it had answered keep their
//! replies.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::frame::reply_len;
use super::parse::Args;
use super::reply::Reply;
use super::state::Session;
use super::table::{lookup, Cmd};
use crate::node_ring::{NodeRing, Owner, RingView};

/// How a peer connection names itself (and so is never forwarded from).
pub(crate) const PEER_NAME_PREFIX: &[u8] = b"strata-peer:";

/// How long a peer may take to connect, or between two parts of its replies.
const PEER_TIMEOUT: Duration = Duration::from_secs(5);

/// Idle connections kept per peer and protocol, per worker thread.
const POOL_PER_PEER: usize = 16;

/// Where a command runs.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route {
    Here,
    /// Ring node `i` owns every key.
    Peer(usize),
    /// Answered with this error.
    Refuse(String),
}

/// Where the command in `args` runs, by `view` (not solo).
pub(crate) fn route(view: &RingView, args: Args<'_>, session: &Session) -> Route {
    let Some(spec) = lookup(args.get(0)) else {
        return Route::Here;
    };
    // The checks before a command runs answer here, as anything without keys does.
    if !spec.arity_ok(args.len())
        || !session.authenticated
        || spec.cmd.touches_every_shard()
        || (!session.resp3 && session.subs.active())
    {
        return Route::Here;
    }
    let mut owner = None;
    for i in spec.key_positions(args) {
        let o = view.owner(args.get(i));
        match owner {
            None => owner = Some(o),
            Some(first) if first != o => {
                return Route::Refuse("CROSSSLOT Keys in request don't hash to the same slot".into());
            }
            Some(_) => {}
        }
    }
    let Some(Owner::Peer(i)) = owner else {
        return Route::Here;
    };
    let (node, addr) = view.node(i);
    let elsewhere = |what: &str| {
        Route::Refuse(format!(
            "ERR key held by cache node {node} ({addr}): {what} run on one node's keys only; connect to its Redis port"
        ))
    };
    if session.tx.in_multi() || spec.cmd == Cmd::Watch {
        return elsewhere("transactions (MULTI, WATCH)");
    }
    if spec.cmd.is_blocking() {
        return elsewhere("blocking commands");
    }
    Route::Peer(i)
}

/// The forwarded commands of one batch, and where their replies go.
#[derive(Default)]
pub(crate) struct Forwards {
    peers: Vec<PeerBatch>,
    /// In command order: where each reply goes.
    slots: Vec<Slot>,
}

/// Where one forwarded command's reply goes: at `at` in the batch's output, from the
/// `peer`th batch; a `quiet` one (CLIENT REPLY) goes nowhere.
#[derive(Clone, Copy)]
struct Slot {
    at: usize,
    peer: usize,
    quiet: bool,
}

struct PeerBatch {
    node: Arc<str>,
    addr: SocketAddr,
    commands: Vec<u8>,
    count: usize,
    /// The replies as they came, and where each ends.
    replies: Vec<u8>,
    ends: Vec<usize>,
    /// Why the rest of its replies did not come.
    failed: Option<String>,
}

impl Forwards {
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The bytes of the commands queued.
    pub fn queued_bytes(&self) -> usize {
        self.peers.iter().map(|p| p.commands.len()).sum()
    }

    /// Queues `command` (its bytes as received) for ring node `peer`; its reply goes at
    /// offset `at` of the batch's output, or nowhere if `quiet` (CLIENT REPLY OFF or
    /// SKIP was in force for it here: the owner runs it, its reply is dropped).
    pub fn add(&mut self, view: &RingView, peer: usize, command: &[u8], at: usize, quiet: bool) {
        let (node, addr) = view.node(peer);
        let p = match self.peers.iter().position(|p| p.addr == addr) {
            Some(p) => p,
            None => {
                self.peers.push(PeerBatch {
                    node: node.clone(),
                    addr,
                    commands: Vec::new(),
                    count: 0,
                    replies: Vec::new(),
                    ends: Vec::new(),
                    failed: None,
                });
                self.peers.len() - 1
            }
        };
        let batch = &mut self.peers[p];
        batch.commands.extend_from_slice(command);
        batch.count += 1;
        self.slots.push(Slot { at, peer: p, quiet });
    }

    /// Sends every peer its commands, reads their replies, and puts each in its place
    /// in `out`. `hello` is what opens a new peer connection (`hello_command`); the
    /// pooled connections to nodes no longer on `view` are closed.
    pub async fn run(&mut self, out: &mut Vec<u8>, resp3: bool, hello: &[u8], view: &RingView) {
        POOL.with(|p| p.borrow_mut().retain(|(addr, _), _| view.has_addr(*addr)));
        let mut conns = Vec::with_capacity(self.peers.len());
        for p in self.peers.iter_mut() {
            let conn = match send(p, resp3, hello, true).await {
                Ok(c) => Some(c),
                Err(e) => {
                    p.failed = Some(e);
                    None
                }
            };
            conns.push(conn);
        }
        for (p, conn) in self.peers.iter_mut().zip(conns) {
            let Some((mut conn, pooled)) = conn else {
                continue;
            };
            let mut received = receive(p, &mut conn).await;
            if received.is_err() && pooled && p.ends.is_empty() && p.replies.is_empty() {
                // A pooled connection the peer had closed (its idle timeout) took the
                // write and answered nothing: once more on a new connection.
                match send(p, resp3, hello, false).await {
                    Ok((c, _)) => {
                        conn = c;
                        received = receive(p, &mut conn).await;
                    }
                    Err(e) => received = Err(e),
                }
            }
            match received {
                Ok(()) => give_back(p.addr, resp3, conn),
                Err(e) => p.failed = Some(e),
            }
        }
        self.splice(out, resp3);
    }

    /// Builds the batch's output: what ran here, each forwarded reply in its place.
    fn splice(&mut self, out: &mut Vec<u8>, resp3: bool) {
        let extra: usize = self.peers.iter().map(|p| p.replies.len()).sum();
        let mut spliced = Vec::with_capacity(out.len() + extra + 64 * self.slots.len());
        let mut copied = 0;
        let mut next = vec![0usize; self.peers.len()];
        for &Slot { at, peer: p, quiet } in &self.slots {
            spliced.extend_from_slice(&out[copied..at]);
            copied = at;
            let batch = &self.peers[p];
            let i = next[p];
            next[p] += 1;
            if quiet {
                continue;
            }
            if i < batch.ends.len() {
                let start = if i == 0 { 0 } else { batch.ends[i - 1] };
                spliced.extend_from_slice(&batch.replies[start..batch.ends[i]]);
            } else {
                let why = batch.failed.as_deref().unwrap_or("no reply");
                Reply {
                    out: &mut spliced,
                    resp3,
                }
                .error(&format!(
                    "TRYAGAIN cache node {} ({}) did not answer: {why}; its keys move to another node if it is down",
                    batch.node, batch.addr
                ));
            }
        }
        spliced.extend_from_slice(&out[copied..]);
        *out = spliced;
        self.peers.clear();
        self.slots.clear();
    }
}

/// Runs one command, `args`, on ring node `peer` of `view` (for callers other than the
/// Redis port: the node API's raw keys) and returns its reply as RESP2 bytes; a node
/// that cannot be reached answers `-TRYAGAIN`.
pub async fn call_peer(ring: &NodeRing, view: &RingView, peer: usize, args: &[&[u8]]) -> Vec<u8> {
    let mut command = Vec::new();
    let mut r = Reply {
        out: &mut command,
        resp3: false,
    };
    r.array(args.len());
    for a in args {
        r.bulk(a);
    }
    let mut forwards = Forwards::default();
    forwards.add(view, peer, &command, 0, false);
    let mut out = Vec::new();
    forwards.run(&mut out, false, &ring.hello(false), view).await;
    out
}

/// What opens a peer connection: HELLO with the protocol, the password and the name
/// that marks it a peer's.
pub(crate) fn hello_command(resp3: bool, password: Option<&[u8]>, me: &str) -> Vec<u8> {
    let name = [PEER_NAME_PREFIX, me.as_bytes()].concat();
    let mut args: Vec<&[u8]> = vec![b"HELLO", if resp3 { b"3" } else { b"2" }];
    if let Some(p) = password {
        args.extend([&b"AUTH"[..], b"default", p]);
    }
    args.extend([&b"SETNAME"[..], &name]);
    let mut out = Vec::new();
    let mut r = Reply {
        out: &mut out,
        resp3: false,
    };
    r.array(args.len());
    for a in args {
        r.bulk(a);
    }
    out
}

thread_local! {
    /// Idle peer connections of this worker thread (a tokio stream belongs to the
    /// runtime that made it, and each worker has its own), by address and protocol.
    static POOL: RefCell<HashMap<(SocketAddr, bool), Vec<TcpStream>>> = RefCell::new(HashMap::new());
}

fn give_back(addr: SocketAddr, resp3: bool, conn: TcpStream) {
    POOL.with(|p| {
        let mut pool = p.borrow_mut();
        let idle = pool.entry((addr, resp3)).or_default();
        if idle.len() < POOL_PER_PEER {
            idle.push(conn);
        }
    });
}

/// A connection to `p` (a pooled one if `pool` and there is one: then true), with
/// `p`'s commands written to it.
async fn send(p: &PeerBatch, resp3: bool, hello: &[u8], pool: bool) -> Result<(TcpStream, bool), String> {
    let pooled = pool
        .then(|| POOL.with(|pool| pool.borrow_mut().get_mut(&(p.addr, resp3)).and_then(Vec::pop)))
        .flatten();
    if let Some(mut conn) = pooled {
        // A write that fails did not go out: a new connection is tried.
        if conn.write_all(&p.commands).await.is_ok() {
            return Ok((conn, true));
        }
    }
    let mut conn = open(p.addr, hello).await?;
    conn.write_all(&p.commands)
        .await
        .map_err(|e| format!("write to it: {e}"))?;
    Ok((conn, false))
}

/// A new connection to a peer's Redis port, past its HELLO.
async fn open(addr: SocketAddr, hello: &[u8]) -> Result<TcpStream, String> {
    let mut conn = tokio::time::timeout(PEER_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
    let _ = conn.set_nodelay(true);
    conn.write_all(hello).await.map_err(|e| format!("write to it: {e}"))?;
    let mut buf = Vec::new();
    let n = read_replies(&mut conn, &mut buf, &mut Vec::new(), 1).await?;
    if buf.first() == Some(&b'-') || n != buf.len() {
        let line = String::from_utf8_lossy(&buf[..buf.len().min(200)])
            .trim_end()
            .to_string();
        return Err(format!("it refused the connection: {line}"));
    }
    Ok(conn)
}

/// Reads `p`'s replies, one per command.
async fn receive(p: &mut PeerBatch, conn: &mut TcpStream) -> Result<(), String> {
    let used = read_replies(conn, &mut p.replies, &mut p.ends, p.count).await?;
    if used != p.replies.len() {
        return Err("it sent more than the replies".into());
    }
    Ok(())
}

/// Reads from `conn` into `buf` until `count` replies are whole, noting where each ends
/// in `ends`; returns where the last one ends. Replies whole before an error stay.
async fn read_replies(
    conn: &mut TcpStream,
    buf: &mut Vec<u8>,
    ends: &mut Vec<usize>,
    count: usize,
) -> Result<usize, String> {
    let mut at = 0;
    while ends.len() < count {
        match reply_len(&buf[at..]) {
            Ok(Some(n)) => {
                at += n;
                ends.push(at);
                continue;
            }
            Ok(None) => {}
            Err(e) => return Err(format!("a malformed reply: {e}")),
        }
        buf.reserve(16 << 10);
        let read = tokio::time::timeout(PEER_TIMEOUT, conn.read_buf(buf))
            .await
            .map_err(|_| format!("no reply within {PEER_TIMEOUT:?}"))?
            .map_err(|e| format!("read: {e}"))?;
        if read == 0 {
            return Err("it closed the connection".into());
        }
    }
    Ok(at)
}
