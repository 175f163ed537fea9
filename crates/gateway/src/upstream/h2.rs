//! HTTP/2 over cleartext (h2c, prior knowledge) to a member, for gRPC, with the `h2`
//! crate used directly: one connection per member and gateway thread, multiplexing every
//! call of that thread; made on first use and again once the member closed it or sent
//! GOAWAY. Its driver task (reading, writing, keep-alive pings) runs on the thread that
//! made it; a call has no task and no channel of its own: it opens its stream from the
//! relay's task (`h2_call`).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::{Connection, SendRequest};
use strata_os::bare::Bare;
use tokio::net::TcpStream;

use crate::worker::{slot, SLOTS};

/// Opens calls on one connection to a member.
pub type Sender = SendRequest<Bytes>;

/// While calls are open, a ping goes to the member this often...
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// ...and a connection whose member does not answer one within this is closed (its
/// calls end `UNAVAILABLE`), as hyper's client did with the same settings.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// How often the driver looks at its pings.
const KEEP_ALIVE_CHECK: Duration = Duration::from_secs(5);

/// A connection as its cache entry and its calls hold it: the driver pings the member
/// only while a call holds one (a gRPC server may answer pings on an idle connection
/// with GOAWAY), and marks it closed when the connection ends.
pub struct ConnRef {
    open: AtomicBool,
}

struct Open {
    sender: Sender,
    conn: Arc<ConnRef>,
}

/// The HTTP/2 connections to one member, one per gateway thread.
pub struct H2Conns {
    conns: [Mutex<Option<Open>>; SLOTS],
    /// Held while a thread makes its connection: the calls that need one meanwhile wait
    /// for it instead of each making its own (a hundred streams opened at once would
    /// otherwise open as many connections, and the long ones keep theirs).
    connecting: [tokio::sync::Mutex<()>; SLOTS],
}

impl Default for H2Conns {
    fn default() -> H2Conns {
        H2Conns {
            conns: std::array::from_fn(|_| Mutex::new(None)),
            connecting: std::array::from_fn(|_| tokio::sync::Mutex::new(())),
        }
    }
}

impl H2Conns {
    /// This thread's connection to the member, if it has one that takes new calls (no
    /// await, no timer). One that ended or was told GOAWAY is forgotten here, so that the
    /// caller makes a new one.
    pub fn cached(&self) -> Option<(Sender, Arc<ConnRef>)> {
        let mut conns = self.conns[slot()].lock().unwrap();
        let open = conns.as_mut()?;
        // With no stream of its own pending, `poll_ready` only checks the connection's
        // state (no await): an error is a connection gone or going away.
        let ready = open.conn.open.load(Ordering::Relaxed)
            && matches!(
                open.sender.poll_ready(&mut Context::from_waker(Waker::noop())),
                Poll::Ready(Ok(()))
            );
        if !ready {
            *conns = None;
            return None;
        }
        Some((open.sender.clone(), open.conn.clone()))
    }

    /// A new connection of this thread to the member at `addr`, kept for the calls after
    /// this one. An error here means nothing was sent.
    pub async fn connect(&self, addr: SocketAddr) -> io::Result<(Sender, Arc<ConnRef>)> {
        let _connecting = self.connecting[slot()].lock().await;
        // Made by the call before this one while this one waited.
        if let Some(open) = self.cached() {
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
        let conn_ref = Arc::new(ConnRef {
            open: AtomicBool::new(true),
        });
        tokio::spawn(drive(conn, Arc::downgrade(&conn_ref), addr));
        *self.conns[slot()].lock().unwrap() = Some(Open {
            sender: sender.clone(),
            conn: conn_ref.clone(),
        });
        Ok((sender, conn_ref))
    }
}

/// Runs a connection until it ends: the member closed it, sent GOAWAY and finished its
/// streams, did not answer a keep-alive ping, or every holder let go of it.
async fn drive(mut conn: Connection<Bare, Bytes>, conn_ref: Weak<ConnRef>, addr: SocketAddr) {
    let mut pings = conn.ping_pong().expect("a new connection's pings");
    let mut check = tokio::time::interval_at((Instant::now() + KEEP_ALIVE_CHECK).into(), KEEP_ALIVE_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_ping = Instant::now();
    // When the ping still waiting for its pong was sent.
    let mut waiting: Option<Instant> = None;
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
                Some(sent) if sent.elapsed() >= KEEP_ALIVE_TIMEOUT => {
                    break Err("no answer to a keep-alive ping".to_string());
                }
                Some(_) => {}
                None => {
                    // Held by the cache entry and at least one call.
                    let calls = conn_ref.strong_count() > 1;
                    if calls && last_ping.elapsed() >= KEEP_ALIVE_INTERVAL {
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
    }
    if let Err(e) = ended {
        tracing::debug!(error = %e, %addr, "HTTP/2 connection to a member ended");
    }
    // Dropping `conn` here ends the streams still open on it with an error.
}
