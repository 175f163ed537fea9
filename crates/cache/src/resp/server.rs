//! The RESP server: worker threads like the gateway's ([`strata_os::listen`]: one
//! current-thread tokio runtime per thread, each with its own `SO_REUSEPORT` listener, so
//! a connection never changes thread), and the connection loop: read, run every complete
//! command, append the replies to one buffer, one write per read. Pipelining costs
//! nothing extra.
//!
//! Every connection is bounded: at most `max_clients` are admitted; each one's query
//! buffer is bounded, and so are all of theirs together (`query_buffer`); a connection
//! idle too long, or too slow to send a command, is closed by its worker's sweep
//! (`timeouts`), which costs the loop no clock read and no timer per command.
//!
//! A connection with subscriptions also waits on its mailbox, and writes the messages
//! that come into it; the idle timeout spares it, as Redis' spares pub/sub clients. Its
//! mailbox is bounded (`crate::pubsub`); past the bound the connection is closed.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use strata_os::bare;
use strata_os::listen::{self, Listen, Worker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::command_stats::{self, bump, WorkerStats, SAMPLE_EVERY};
use super::connection::{Connection, Progress};
use super::query_buffer::{give_chunk, take_chunk, OverLimit, QueryBuffer, READ_CHUNK};
use super::state::{ConnectionContext, RespConfig, RespFigures};
use super::timeouts::{self, Expired, Watch};
use crate::cache::Cache;
use crate::pubsub::Subscriber;

/// The running RESP server's threads; [`RespWorkers::join`] (or `join_blocking` outside
/// a runtime) waits for them after the token is cancelled. Open connections are closed
/// when their worker stops.
pub use strata_os::listen::Workers as RespWorkers;

/// Starts the RESP server on `addr` with `threads` workers (0: one per core) serving
/// `cache`, until `token` is cancelled.
pub fn spawn_resp(
    addr: SocketAddr,
    threads: usize,
    cache: Arc<Cache>,
    token: CancellationToken,
) -> std::io::Result<RespWorkers> {
    spawn_resp_with(
        addr,
        RespConfig {
            threads,
            ..RespConfig::default()
        },
        cache,
        token,
    )
}

/// [`spawn_resp`] with every setting.
pub fn spawn_resp_with(
    addr: SocketAddr,
    config: RespConfig,
    cache: Arc<Cache>,
    token: CancellationToken,
) -> std::io::Result<RespWorkers> {
    spawn_resp_figures(addr, config, cache, token).map(|(workers, _)| workers)
}

/// [`spawn_resp_with`], and a handle on the port's own figures (connections, commands,
/// what its bounds closed) for the node's metrics.
pub fn spawn_resp_figures(
    addr: SocketAddr,
    config: RespConfig,
    cache: Arc<Cache>,
    token: CancellationToken,
) -> std::io::Result<(RespWorkers, RespFigures)> {
    let threads = match config.threads {
        0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        n => n,
    };
    let shared = Arc::new(ConnectionContext::new(cache, &config, threads));
    let listen = Listen {
        addr,
        threads,
        name: "resp",
    };
    let workers = listen::spawn(listen, &token, {
        let shared = shared.clone();
        move |worker: Worker| accept_loop(worker, shared)
    })?;
    let addr = workers.addr;
    let _ = shared.server.addr.set(addr);
    tracing::info!(%addr, threads, "cache RESP server listening");
    Ok((workers, RespFigures(shared)))
}

async fn accept_loop(worker: Worker, shared: Arc<ConnectionContext>) {
    let Worker {
        index,
        listener,
        shutdown,
        ..
    } = worker;
    let accept = listen::accept(listener, &shutdown, "resp", |stream, peer| {
        let Some(admitted) = Admitted::new(&shared) else {
            tokio::spawn(refuse(stream, peer, shared.clone()));
            return;
        };
        shared.server.total_connections.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let shared = &admitted.0;
            if let Err(e) = serve_connection(stream, peer, index, shared).await {
                tracing::debug!(error = %e, %peer, "cache client connection ended with an error");
            }
        });
    });
    // The sweep never ends: the worker serves until `accept` does. The first worker
    // also samples the figures INFO's rates and memory peak come from.
    tokio::select! {
        _ = accept => {}
        _ = timeouts::sweep(shared.server.timeouts) => {}
        () = sample_figures(&shared), if index == 0 => {}
    }
}

/// Every [`SAMPLE_EVERY`]: the running totals INFO's `instantaneous_*` rates are
/// computed from, and the memory used (for `used_memory_peak`). Never ends.
async fn sample_figures(shared: &ConnectionContext) {
    let mut every = tokio::time::interval(SAMPLE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let server = &shared.server;
        let t = command_stats::totals(&server.stats);
        server
            .rates
            .sample([server.total_commands(), t.net_input, t.net_output]);
        let used = shared.cache.stats().total.bytes;
        server.memory_peak.fetch_max(used, Ordering::Relaxed);
    }
}

/// One of the `max_clients` places, taken at accept and given back when the connection ends.
struct Admitted(Arc<ConnectionContext>);

impl Admitted {
    fn new(shared: &Arc<ConnectionContext>) -> Option<Admitted> {
        let server = &shared.server;
        if server.connected.fetch_add(1, Ordering::Relaxed) >= server.max_clients {
            server.connected.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Admitted(shared.clone()))
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.server.connected.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection past `max_clients`: Redis' error, then closed.
async fn refuse(mut stream: TcpStream, peer: SocketAddr, shared: Arc<ConnectionContext>) {
    let server = &shared.server;
    if server.closed.max_clients.fetch_add(1, Ordering::Relaxed) == 0 {
        tracing::warn!(%peer, max_clients = server.max_clients, "cache client refused: max number of clients reached (said once; INFO's rejected_connections counts them)");
    }
    let reply = stream.write_all(b"-ERR max number of clients reached\r\n");
    if matches!(tokio::time::timeout(REFUSAL_LINGER, reply).await, Ok(Ok(()))) {
        let _ = stream.shutdown().await;
        linger(&mut stream, REFUSAL_LINGER).await;
    }
}

/// How long a refused connection is given to take its error.
const REFUSAL_LINGER: Duration = Duration::from_millis(250);

/// Why a reply could not be written.
enum Ended {
    Io(std::io::Error),
    /// The client took nothing of it for the idle timeout.
    Stalled,
    /// The client's mailbox went past its bound meanwhile.
    Overflowed,
}

impl From<std::io::Error> for Ended {
    fn from(e: std::io::Error) -> Ended {
        Ended::Io(e)
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    worker: usize,
    shared: &Arc<ConnectionContext>,
) -> std::io::Result<()> {
    let server = &shared.server;
    let mut conn = Connection::new(shared.clone(), peer, worker);
    let traffic = &server.stats[worker];
    let watch = Watch::register(&server.timeouts);
    let mut input = QueryBuffer::new(&server.client_memory, server.max_query_bytes);
    // Both buffers are taken when input arrives and given back once it is run and
    // answered (`query_buffer`): a connection with nothing pending holds neither.
    let mut out: Vec<u8> = Vec::new();
    loop {
        let mailbox = conn.mailbox();
        let event = async {
            match &mailbox {
                None => Event::Readable(stream.readable().await),
                Some(mailbox) if mailbox.has_pending() => Event::Messages,
                Some(mailbox) => tokio::select! {
                    ready = stream.readable() => Event::Readable(ready),
                    () = mailbox.woken() => Event::Messages,
                },
            }
        };
        let event = watch.until_expired(event).await;
        // Once the worker has had nothing to do for a second, the memory this work
        // left goes back to the system (`listen::worked`), open connections or not.
        listen::worked();
        match event {
            Ok(Event::Readable(ready)) => ready?,
            Ok(Event::Messages) => {
                if out.capacity() == 0 {
                    out = take_chunk();
                }
                if !conn.write_messages(&mut out) {
                    drop(input);
                    let _ = stream.shutdown().await;
                    return Ok(());
                }
                if !out.is_empty() {
                    match write_out(&mut stream, &out, &watch, mailbox.as_deref()).await {
                        Ok(()) => {
                            bump(&traffic.net_output, out.len() as u64);
                            out.clear();
                        }
                        Err(Ended::Io(e)) => return Err(e),
                        Err(Ended::Stalled) => {
                            conn.idle();
                            return Ok(());
                        }
                        Err(Ended::Overflowed) => {
                            conn.write_messages(&mut out);
                            return Ok(());
                        }
                    }
                }
                if input.bytes.is_empty() {
                    give_chunk(std::mem::take(&mut out));
                }
                continue;
            }
            Err(Expired::Idle) if mailbox.is_some() => {
                // Redis' `timeout` spares pub/sub clients: they wait for messages.
                watch.wrote();
                continue;
            }
            Err(expired) => {
                drop(input);
                return match expired {
                    Expired::Idle => {
                        conn.idle();
                        let _ = stream.shutdown().await;
                        Ok(())
                    }
                    Expired::SlowCommand => {
                        conn.too_slow(&mut out);
                        close_with(stream, &out).await
                    }
                };
            }
        }
        if let Err(over) = input.make_room(conn.want()) {
            match over {
                OverLimit::Connection => conn.over_query_buffer_limit(input.bytes.len(), &mut out),
                OverLimit::Server => conn.evicted(&mut out),
            }
            drop(input);
            return close_with(stream, &out).await;
        }
        // A read that leaves room clears the readiness: one system call per request, as
        // Redis' level-triggered loop makes (see `bare::try_read_buf`).
        let read = match bare::try_read_buf(&stream, &mut input.bytes) {
            Ok(read) => read,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                input.release();
                continue;
            }
            Err(e) => return Err(e),
        };
        if read == 0 {
            return Ok(());
        }
        bump(&traffic.net_input, read as u64);
        if out.capacity() == 0 {
            out = take_chunk();
        }
        loop {
            let before = input.bytes.len();
            let progress = conn.process(&mut input.bytes, &mut out);
            watch.received(input.bytes.len() < before, input.bytes.len());
            if conn.has_forwards() {
                conn.forward(&mut out).await;
            }
            if !out.is_empty() {
                let mailbox = conn.mailbox();
                match write_out(&mut stream, &out, &watch, mailbox.as_deref()).await {
                    Ok(()) => {
                        bump(&traffic.net_output, out.len() as u64);
                        out.clear();
                    }
                    Err(Ended::Io(e)) => return Err(e),
                    Err(Ended::Stalled) => {
                        conn.idle();
                        return Ok(());
                    }
                    Err(Ended::Overflowed) => {
                        // Counts and logs it.
                        conn.write_messages(&mut out);
                        return Ok(());
                    }
                }
            }
            match progress {
                Progress::NeedInput => break,
                Progress::Flush => continue,
                Progress::Blocked => {
                    // Nothing pending behind the blocked command: the connection holds
                    // no buffer while it waits, as an idle one (the command's copy is
                    // counted instead, `blocking::Blocked::held`).
                    input.release();
                    if input.bytes.capacity() == 0 && out.is_empty() {
                        give_chunk(std::mem::take(&mut out));
                    }
                    match wait_blocked(&mut conn, &mut stream, &mut input, &mut out, traffic).await? {
                        Unblocked::Answered => {
                            // The command is done: no idle time counts from before it.
                            watch.received(true, input.bytes.len());
                            continue;
                        }
                        Unblocked::Closed => return Ok(()),
                        Unblocked::Over(over) => {
                            match over {
                                OverLimit::Connection => conn.over_query_buffer_limit(input.bytes.len(), &mut out),
                                OverLimit::Server => conn.evicted(&mut out),
                            }
                            drop(input);
                            return close_with(stream, &out).await;
                        }
                    }
                }
                Progress::Close => {
                    drop(input);
                    let _ = stream.shutdown().await;
                    linger(&mut stream, LINGER).await;
                    return Ok(());
                }
            }
        }
        // A burst of large commands should not pin memory for the connection's lifetime.
        input.shrink(conn.want());
        if input.bytes.is_empty() {
            input.release();
            give_chunk(std::mem::take(&mut out));
        } else {
            if out.capacity() > 4 * READ_CHUNK {
                out = take_chunk();
            }
            // A command that will never fit is refused now, not after more of it comes
            // (the read above may have cleared readiness: nothing more may come).
            if let Err(over) = input.make_room(conn.want()) {
                match over {
                    OverLimit::Connection => conn.over_query_buffer_limit(input.bytes.len(), &mut out),
                    OverLimit::Server => conn.evicted(&mut out),
                }
                drop(input);
                return close_with(stream, &out).await;
            }
        }
    }
}

/// What a connection waiting for its client was woken by.
enum Event {
    Readable(std::io::Result<()>),
    /// Messages came into its mailbox.
    Messages,
}

/// How a blocked connection's wait ended.
enum Unblocked {
    /// The command was answered (into `out`).
    Answered,
    /// The client went away.
    Closed,
    /// What the client sent meanwhile is past a bound.
    Over(OverLimit),
}

/// Waits while the connection is blocked in a command (BLPOP, ...): for a signal that
/// elements came (then it tries again), its deadline, or the client; a RESP3
/// subscriber's messages are written meanwhile. What the client
/// sends meanwhile is read and kept (bounded as always) to run after the answer, as
/// Redis does; the idle timeout does not apply to a blocked client, as in Redis.
async fn wait_blocked(
    conn: &mut Connection,
    stream: &mut TcpStream,
    input: &mut QueryBuffer<'_>,
    out: &mut Vec<u8>,
    traffic: &WorkerStats,
) -> std::io::Result<Unblocked> {
    while let Some((waiter, deadline)) = conn.blocked_on() {
        let expired = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        // A RESP3 subscriber gets its messages while it waits: up to a chunk of them
        // held in `out` (before the answer) while the socket does not take them, the
        // rest left in its bounded mailbox.
        let mailbox = conn.mailbox();
        let messages = async {
            match &mailbox {
                Some(m) if out.len() < BLOCKED_OUT_CHUNK => m.woken().await,
                _ => std::future::pending().await,
            }
        };
        let writable = async {
            if out.is_empty() {
                std::future::pending().await
            } else {
                stream.writable().await
            }
        };
        tokio::select! {
            () = messages => {
                if !conn.write_messages(out) {
                    return Ok(Unblocked::Closed);
                }
                flush_some(stream, out, traffic)?;
            }
            ready = writable => {
                ready?;
                flush_some(stream, out, traffic)?;
            }
            () = waiter.woken() => {
                if conn.retry_blocked(out) {
                    return Ok(Unblocked::Answered);
                }
            }
            () = expired => {
                conn.time_out_blocked(out);
                return Ok(Unblocked::Answered);
            }
            ready = stream.readable() => {
                ready?;
                if let Err(over) = input.make_room(conn.want()) {
                    return Ok(Unblocked::Over(over));
                }
                match bare::try_read_buf(stream, &mut input.bytes) {
                    Ok(0) => return Ok(Unblocked::Closed),
                    Ok(n) => bump(&traffic.net_input, n as u64),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(Unblocked::Answered)
}

/// How much of a blocked subscriber's messages waits in its output buffer while the
/// client does not read them.
const BLOCKED_OUT_CHUNK: usize = 1 << 20;

/// Writes what the socket takes of `out` now, and keeps the rest.
fn flush_some(stream: &TcpStream, out: &mut Vec<u8>, traffic: &WorkerStats) -> std::io::Result<()> {
    match bare::try_write(stream, out) {
        Ok(n) => {
            bump(&traffic.net_output, n as u64);
            out.drain(..n);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
        Err(e) => Err(e),
    }
}

/// Writes `out` whole. Nearly always the socket takes it at once; if not, the client is
/// not reading, and the idle timeout counts from the last part it took. A subscriber's
/// write also ends when its mailbox (`mailbox`) overflows meanwhile.
async fn write_out(
    stream: &mut TcpStream,
    out: &[u8],
    watch: &Watch,
    mailbox: Option<&Subscriber>,
) -> Result<(), Ended> {
    let mut at = match bare::try_write(stream, out) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
        Err(e) => return Err(e.into()),
    };
    if at == out.len() {
        return Ok(());
    }
    watch.writing(true);
    while at < out.len() {
        let write = async {
            match mailbox {
                None => Some(stream.write(&out[at..]).await),
                Some(mailbox) => tokio::select! {
                    n = stream.write(&out[at..]) => Some(n),
                    () = mailbox.woken(), if !mailbox.overflowed() => None,
                },
            }
        };
        let written = watch.until_expired(write).await.map_err(|_| Ended::Stalled)?;
        let Some(n) = written else {
            if mailbox.is_some_and(Subscriber::overflowed) {
                return Err(Ended::Overflowed);
            }
            continue;
        };
        let n = n?;
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into());
        }
        at += n;
        watch.wrote();
    }
    watch.writing(false);
    Ok(())
}

/// Writes the last reply, `out` (an error saying why), as far as the socket takes it at
/// once (the client may not be reading), and closes the connection.
async fn close_with(mut stream: TcpStream, out: &[u8]) -> std::io::Result<()> {
    let _ = stream.try_write(out);
    let _ = stream.shutdown().await;
    linger(&mut stream, LINGER).await;
    Ok(())
}

/// How long [`linger`] waits after a connection's last reply.
const LINGER: Duration = Duration::from_secs(1);

/// After our last reply (QUIT, a protocol error, a bound): reads and drops what the
/// client had already sent, until it closes (at most 1 MiB or `limit`). Closing a socket
/// with unread input makes the kernel reset the connection, and the client could lose
/// the reply that says why it is being closed.
async fn linger(stream: &mut TcpStream, limit: Duration) {
    let drain = async {
        let mut sink = [0u8; 8192];
        let mut total = 0;
        while total < (1 << 20) {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(limit, drain).await;
}
