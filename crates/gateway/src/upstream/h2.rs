//! HTTP/2 over cleartext (h2c, prior knowledge) to a member, for gRPC, with the `h2`
//! crate used directly: one connection per member and gateway thread, multiplexing every
//! call of that thread; made on first use and again once the member closed it or sent
//! GOAWAY. Its driver task (reading, writing, keep-alive pings) runs on the thread that
//! made it; a call has no task and no channel of its own: it opens its stream from the
//! relay's task (`h2_call`).

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::{Connection, SendRequest};
use http::HeaderMap;
use strata_bus::Member;
use strata_os::bare::Bare;
use tokio::net::TcpStream;

use crate::relay::grpc::GRPC_TIMEOUT;
use crate::relay::REQUEST_ID;
use crate::trace::TRACEPARENT;
use crate::worker::{slot, SLOTS};

/// Opens calls on one connection to a member.
pub type Sender = SendRequest<Bytes>;

/// While calls are open, a ping goes to the member this often (no more often than gRPC
/// servers accept by default: C-core's `min_recv_ping_interval_without_data` is 5
/// minutes, and a server that gets a third ping sooner while it sends nothing ends the
/// connection with `too_many_pings`; at 30 s an idle stream through strata to a grpcio
/// member was cut after 135 s)...
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(310);
/// ...and a connection whose member does not answer one within this is closed (its
/// calls end `UNAVAILABLE`), as hyper's client did with the same settings.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// How often the driver looks at its pings.
const KEEP_ALIVE_CHECK: Duration = Duration::from_secs(5);
/// A member that left its pool while calls are open is pinged once, at the next check,
/// and its connection closed when that ping goes unanswered this long: one that stops to
/// drain answers, and its calls run on; one whose node died or is cut off does not, and
/// its calls end `UNAVAILABLE` within about ten seconds, not at the next keep-alive
/// ping. Once only, for the same `too_many_pings`.
const GONE_PING_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection as its cache entry and its calls hold it: the driver pings the member
/// only while a call holds one (a gRPC server may answer pings on an idle connection
/// with GOAWAY), and marks it closed when the connection ends.
pub struct ConnRef {
    open: AtomicBool,
    /// Whether a call has sent the per-call headers indexable ([`ConnRef::mark_per_call`]).
    names_indexed: AtomicBool,
    /// Calls opened on it so far, counted on extra connections only: the driver closes
    /// one that took none for a while.
    calls: AtomicU64,
    /// Made while the thread had another connection to the member (all busy).
    extra: bool,
    /// Why the driver ended the connection, when it did (the calls it broke say it).
    why: std::sync::OnceLock<String>,
}

impl ConnRef {
    fn new(extra: bool) -> ConnRef {
        ConnRef {
            open: AtomicBool::new(true),
            names_indexed: AtomicBool::new(false),
            calls: AtomicU64::new(0),
            extra,
            why: std::sync::OnceLock::new(),
        }
    }

    /// Why the connection was ended on strata's side (no answer to a ping), if it was.
    pub fn ended_why(&self) -> Option<&str> {
        self.why.get().map(String::as_str)
    }

    /// Marks how a call's per-call headers (`grpc-timeout`, `x-request-id`,
    /// `traceparent`) are to be HPACK-encoded on this connection.
    ///
    /// Never indexed: their values differ from call to call, and a table entry per call
    /// would push out the headers that do repeat (content-type, te, the client's
    /// user-agent), which would then be written out in full again. Except on the
    /// connection's first call, which sends them indexable to put their names in the
    /// table: with an entry of the same name there, the `h2` encoder writes a
    /// never-indexed value under the table's name (one byte) instead of the name in
    /// full, and the member decodes no name and allocates none. Once, not now and then:
    /// the encoder compares a header's value with every entry of its name, so each
    /// further entry would cost every later call a compare. Should other headers push
    /// the names out of the table, calls go on with the names in full, as before.
    pub fn mark_per_call(&self, headers: &mut HeaderMap) {
        // Only the thread that made the connection opens calls on it: no contention.
        let first = !self.names_indexed.load(Ordering::Relaxed) && !self.names_indexed.swap(true, Ordering::Relaxed);
        for name in [GRPC_TIMEOUT, REQUEST_ID, TRACEPARENT] {
            if let Some(value) = headers.get_mut(name) {
                value.set_sensitive(!first);
            }
        }
    }
}

struct Open {
    sender: Sender,
    conn: Arc<ConnRef>,
}

/// The HTTP/2 connections to one member, per gateway thread: one, and more while every
/// one of them has the route's calls per connection in flight
/// (`relay.grpc_calls_per_connection`).
pub struct H2Conns {
    conns: [Mutex<Vec<Open>>; SLOTS],
    /// Held while a thread makes a connection: the calls that need one meanwhile wait
    /// for it instead of each making its own (a hundred streams opened at once would
    /// otherwise open as many connections, and the long ones keep theirs).
    connecting: [tokio::sync::Mutex<()>; SLOTS],
}

/// At most this many connections per gateway thread and member.
const MAX_CONNS: usize = 64;

/// An extra connection that took no call for this long is closed.
const EXTRA_IDLE: Duration = Duration::from_secs(10);

impl Default for H2Conns {
    fn default() -> H2Conns {
        H2Conns {
            conns: std::array::from_fn(|_| Mutex::new(Vec::new())),
            connecting: std::array::from_fn(|_| tokio::sync::Mutex::new(())),
        }
    }
}

impl H2Conns {
    /// A connection of this thread to the member that takes new calls (no await, no
    /// timer): the one with the fewest calls in flight, unless all have `per_conn` (then
    /// none: the caller makes another, up to [`MAX_CONNS`]). One that ended or was told
    /// GOAWAY is forgotten here.
    pub fn cached(&self, per_conn: usize) -> Option<(Sender, Arc<ConnRef>)> {
        let mut conns = self.conns[slot()].lock().unwrap();
        loop {
            let count = conns.len();
            // Held by the entry here and by each call in flight on it.
            let (at, open) = conns
                .iter_mut()
                .enumerate()
                .min_by_key(|(_, open)| Arc::strong_count(&open.conn))?;
            // With no stream of its own pending, `poll_ready` only checks the
            // connection's state (no await): an error is a connection gone or going away.
            let ready = open.conn.open.load(Ordering::Relaxed)
                && matches!(
                    open.sender.poll_ready(&mut Context::from_waker(Waker::noop())),
                    Poll::Ready(Ok(()))
                );
            if !ready {
                conns.swap_remove(at);
                continue;
            }
            if Arc::strong_count(&open.conn) > per_conn && count < MAX_CONNS {
                return None;
            }
            if open.conn.extra {
                open.conn.calls.fetch_add(1, Ordering::Relaxed);
            }
            return Some((open.sender.clone(), open.conn.clone()));
        }
    }

    /// A new connection of this thread to `member`, kept for the calls after this one.
    /// An error here means nothing was sent.
    pub async fn connect(&self, member: &Arc<Member>, per_conn: usize) -> io::Result<(Sender, Arc<ConnRef>)> {
        let addr = member.addr;
        let _connecting = self.connecting[slot()].lock().await;
        // Made by the call before this one while this one waited.
        if let Some(open) = self.cached(per_conn) {
            return Ok(open);
        }
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        // hyper's client defaults, which the relay used before: large windows, so that a
        // stream's flow control is the client's and the member's, not the relay's.
        let (sender, conn) = h2::client::Builder::new()
            .initial_window_size(2 * 1024 * 1024)
            .initial_connection_window_size(5 * 1024 * 1024)
            .initial_max_send_streams(100)
            .max_frame_size(16 * 1024)
            .max_header_list_size(16 * 1024)
            .max_send_buffer_size(1024 * 1024)
            .max_local_error_reset_streams(Some(1024))
            .enable_push(false)
            .handshake::<_, Bytes>(Bare::new(stream))
            .await
            .map_err(io::Error::other)?;
        let mut conns = self.conns[slot()].lock().unwrap();
        let conn_ref = Arc::new(ConnRef::new(!conns.is_empty()));
        // This call is its first.
        conn_ref.calls.store(1, Ordering::Relaxed);
        tokio::spawn(drive(conn, Arc::downgrade(&conn_ref), Arc::downgrade(member)));
        conns.push(Open {
            sender: sender.clone(),
            conn: conn_ref.clone(),
        });
        Ok((sender, conn_ref))
    }
}

/// Runs a connection until it ends: the member closed it, sent GOAWAY and finished its
/// streams, did not answer a keep-alive ping, or every holder let go of it.
async fn drive(mut conn: Connection<Bare, Bytes>, conn_ref: Weak<ConnRef>, member: Weak<Member>) {
    let addr = member.upgrade().map(|m| m.addr);
    // Whether the member's leaving its pool has been checked with a ping.
    let mut gone_pinged = false;
    let mut pings = conn.ping_pong().expect("a new connection's pings");
    let mut check = tokio::time::interval_at((Instant::now() + KEEP_ALIVE_CHECK).into(), KEEP_ALIVE_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_ping = Instant::now();
    // When the ping still waiting for its pong was sent.
    let mut waiting: Option<Instant> = None;
    // An extra connection's calls so far, and since when that count stands.
    let mut calls_seen = (0, tokio::time::Instant::now());
    let ended: Result<(), String> = loop {
        tokio::select! {
            biased;
            ended = &mut conn => break ended.map_err(|e| e.to_string()),
            pong = std::future::poll_fn(|cx| pings.poll_pong(cx)), if waiting.is_some() => {
                waiting = None;
                if let Err(e) = pong {
                    break Err(e.to_string());
                }
            }
            _ = check.tick() => match waiting {
                // This node found the member's node out of reach: no ping would come back.
                _ if member.upgrade().is_some_and(|m| m.is_cut()) => {
                    break Err("this node cannot reach the member's node (cut off)".to_string());
                }
                Some(sent) if sent.elapsed() >= KEEP_ALIVE_TIMEOUT => {
                    break Err("no answer to a keep-alive ping".to_string());
                }
                Some(sent) if sent.elapsed() >= GONE_PING_TIMEOUT && gone_pinged => {
                    break Err(format!(
                        "the member left its pool and did not answer a ping in {GONE_PING_TIMEOUT:?} (its node down or cut off)"
                    ));
                }
                Some(_) => {}
                None => {
                    // An extra connection that took no call for a while is closed: nothing
                    // holds it but the cache entry, and no call can take it meanwhile
                    // (calls are opened on this thread).
                    if let Some(c) = conn_ref.upgrade().filter(|c| c.extra) {
                        let calls = c.calls.load(Ordering::Relaxed);
                        if calls != calls_seen.0 {
                            calls_seen = (calls, tokio::time::Instant::now());
                        } else if calls_seen.1.elapsed() >= EXTRA_IDLE && Arc::strong_count(&c) == 2 {
                            c.open.store(false, Ordering::Relaxed);
                            break Ok(());
                        }
                    }
                    // Held by the cache entry and at least one call.
                    let calls = conn_ref.strong_count() > 1;
                    let gone_now = calls && !gone_pinged && left_pool(&member);
                    gone_pinged |= gone_now;
                    if calls && (last_ping.elapsed() >= KEEP_ALIVE_INTERVAL || gone_now) {
                        if let Err(e) = pings.send_ping(h2::Ping::opaque()) {
                            break Err(e.to_string());
                        }
                        last_ping = Instant::now();
                        waiting = Some(last_ping);
                    }
                }
            },
        }
    };
    if let Some(conn_ref) = conn_ref.upgrade() {
        conn_ref.open.store(false, Ordering::Relaxed);
        if let Err(e) = &ended {
            let _ = conn_ref.why.set(e.clone());
        }
    }
    if let Err(e) = ended {
        tracing::debug!(error = %e, ?addr, "HTTP/2 connection to a member ended");
    }
    // Dropping `conn` here ends the streams still open on it with an error.
}

/// Whether the connection's member has left its pool (while a call is open, the call
/// holds the member: one that is no more has no call here to end).
fn left_pool(member: &Weak<Member>) -> bool {
    member.upgrade().is_some_and(|m| m.is_gone())
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::Poll;

    use http::HeaderValue;
    use tokio::io::{AsyncRead, ReadBuf};
    use tokio::net::TcpListener;

    use super::*;

    /// A member's socket that keeps a copy of every byte it reads.
    struct Recorded {
        socket: TcpStream,
        read: Arc<Mutex<Vec<u8>>>,
    }

    impl AsyncRead for Recorded {
        fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            let before = buf.filled().len();
            let polled = Pin::new(&mut self.socket).poll_read(cx, buf);
            let new = buf.filled()[before..].to_vec();
            self.read.lock().unwrap().extend_from_slice(&new);
            polled
        }
    }

    impl tokio::io::AsyncWrite for Recorded {
        fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.socket).poll_write(cx, buf)
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.socket).poll_flush(cx)
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.socket).poll_shutdown(cx)
        }
    }

    /// The HPACK blocks of the HEADERS frames in `bytes` (a client's side of an HTTP/2
    /// connection, preface first), in order.
    fn header_blocks(bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut at = 24;
        let mut blocks = Vec::new();
        while at + 9 <= bytes.len() {
            let len = usize::from(bytes[at]) << 16 | usize::from(bytes[at + 1]) << 8 | usize::from(bytes[at + 2]);
            let (kind, flags) = (bytes[at + 3], bytes[at + 4]);
            let payload = &bytes[at + 9..at + 9 + len];
            if kind == 1 {
                assert_eq!(flags & 0x28, 0, "no padding or priority from h2's client");
                blocks.push(payload.to_vec());
            }
            at += 9 + len;
        }
        blocks
    }

    /// Sends `calls` calls on a new connection to a member that records what it reads,
    /// each with its own per-call values; `mark` marks the per-call headers. Answers
    /// the member's header block per call and the headers it got.
    async fn calls_to_a_member(calls: usize, mark: impl Fn(&ConnRef, &mut HeaderMap)) -> Vec<(Vec<u8>, HeaderMap)> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let read = Arc::new(Mutex::new(Vec::new()));
        let recorded = read.clone();
        let member = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let mut conn = h2::server::handshake(Recorded { socket, read: recorded })
                .await
                .unwrap();
            let mut got = Vec::new();
            while let Some(call) = conn.accept().await {
                let (req, mut respond) = call.unwrap();
                got.push(req.headers().clone());
                respond.send_response(http::Response::new(()), true).unwrap();
            }
            got
        });
        let conns = H2Conns::default();
        let target = Member::new("m-1", addr);
        let (mut sender, conn) = conns.connect(&target, usize::MAX).await.unwrap();
        for n in 0..calls {
            let mut req = http::Request::post(format!("http://{addr}/test.Echo/Unary"))
                .body(())
                .unwrap();
            let headers = req.headers_mut();
            headers.insert(
                header_name("content-type"),
                HeaderValue::from_static("application/grpc"),
            );
            headers.insert(
                GRPC_TIMEOUT,
                HeaderValue::from_str(&format!("{}m", 29_000 + n)).unwrap(),
            );
            headers.insert(
                REQUEST_ID,
                HeaderValue::from_str(&format!("0123abcd-{:x}", 4096 + n)).unwrap(),
            );
            let traceparent = format!(
                "00-{:032x}-{:016x}-01",
                0x4bf9_2f35_77b3_4da6_u128 + n as u128,
                0xf067_aa0b_u64 + n as u64
            );
            headers.insert(TRACEPARENT, HeaderValue::from_str(&traceparent).unwrap());
            mark(&conn, headers);
            sender = sender.ready().await.unwrap();
            let (reply, _) = sender.send_request(req, true).unwrap();
            reply.await.unwrap();
        }
        drop((sender, conn, conns));
        let got = member.await.unwrap();
        let blocks = header_blocks(&read.lock().unwrap());
        assert_eq!(blocks.len(), calls);
        blocks.into_iter().zip(got).collect()
    }

    fn header_name(name: &'static str) -> http::HeaderName {
        http::HeaderName::from_static(name)
    }

    #[tokio::test]
    async fn per_call_headers_go_under_their_names_in_the_hpack_table_after_the_first_call() {
        let marked = calls_to_a_member(4, ConnRef::mark_per_call).await;
        // As before this change: never indexed on every call, names in full.
        let never_indexed = calls_to_a_member(4, |_, headers: &mut HeaderMap| {
            for name in [GRPC_TIMEOUT, REQUEST_ID, TRACEPARENT] {
                headers.get_mut(name).unwrap().set_sensitive(true);
            }
        })
        .await;
        for (n, ((block, got), (before, _))) in marked.iter().zip(&never_indexed).enumerate() {
            // Every value arrived as sent.
            assert_eq!(got[GRPC_TIMEOUT], format!("{}m", 29_000 + n).as_str());
            assert_eq!(got[REQUEST_ID], format!("0123abcd-{:x}", 4096 + n).as_str());
            assert!(got[TRACEPARENT].to_str().unwrap().starts_with("00-"));
            if n == 0 {
                continue;
            }
            // The three names (35 characters, about 26 bytes in Huffman code) are one
            // byte each.
            assert!(
                block.len() + 20 <= before.len(),
                "call {n}: {} bytes of header block against {} with names in full",
                block.len(),
                before.len()
            );
        }
    }
}
