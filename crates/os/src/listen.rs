//! Per-core servers, like nginx's worker processes: N threads, each a current-thread
//! tokio runtime with its own `SO_REUSEPORT` socket on the same address, so the kernel
//! spreads connections over the threads and a connection, with every task it wakes,
//! stays on one thread.
//!
//! [`spawn`] binds and starts the workers and hands each its [`Worker`] part; the
//! caller's serving function usually runs [`accept`] with its own per-connection
//! closure. Both are generic, so a connection costs what a hand-written accept loop costs.
//!
//! The address belongs to one [`spawn`] alone: before its workers bind, it is claimed
//! ([`crate::claim`]), so a second server on the same address (another node, or any
//! other process, `SO_REUSEPORT` or not) is refused at start with the holder named,
//! instead of the kernel splitting connections between the two. The claim is given up
//! when the workers have stopped.
//!
//! `SO_REUSEPORT` is set through `tokio::net::TcpSocket`, so this needs no `socket2`.
//!
//! A worker whose connections have all closed, and stayed so for [`IDLE_AFTER`], runs
//! what [`on_idle`] set, on its own thread: the binary gives the memory those
//! connections left back to the system there. A server whose clients keep their
//! connections open for good (a cache's pooled clients) marks its work instead
//! ([`worked`]): a worker that did none for [`IDLE_AFTER`] runs it, and so does every
//! other worker of its server that is quiet too, since the work may have freed what
//! they had allocated (a FLUSHALL frees every worker's keys). Both are in `idle`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::mpsc as mpsc_async;
use tokio_util::sync::CancellationToken;

use crate::claim::{self, Claim};

mod idle;

pub use idle::{on_idle, worked, IDLE_AFTER};
use idle::{Quiet, WORKER};

/// Where the workers listen and how many there are.
#[derive(Debug, Clone, Copy)]
pub struct Listen {
    /// The address every worker binds. With port 0 a free port is picked and every
    /// worker binds that one.
    pub addr: SocketAddr,
    /// How many worker threads; 0 counts as 1.
    pub threads: usize,
    /// Names the server: its threads are `strata-{name}-{n}`, and errors and log lines
    /// say it.
    pub name: &'static str,
}

/// One worker's share, handed to the serving function on the worker's own thread,
/// inside its runtime.
pub struct Worker {
    /// Which worker this is, `0..threads`.
    pub index: usize,
    /// This worker's own socket on the shared address.
    pub listener: TcpListener,
    /// The token given to [`spawn`]: the worker should stop serving once it is cancelled.
    pub shutdown: CancellationToken,
    /// This worker's part in keeping the workers' open connections even
    /// ([`accept_spread`]); unused by [`accept`].
    pub spread: Spread,
}

/// Keeps the open connections of one [`spawn`]'s workers even. `SO_REUSEPORT` spreads
/// connections by a hash of their addresses, so a few long connections (HTTP/2 clients
/// multiplexing many calls, WebSockets) can all land on one worker while the others
/// idle: with two workers, four connections split 3/1 or 4/0 seven times in eight.
/// A worker that accepts a connection while another has fewer open (by more than an
/// eighth, and at least one) hands it to the one with fewest, as HAProxy's threads do.
pub struct Spread {
    index: usize,
    shared: Arc<SpreadShared>,
    inbox: mpsc_async::UnboundedReceiver<Handed>,
}

struct SpreadShared {
    /// Each worker's open connections, connections on their way to it included.
    open: Box<[AtomicUsize]>,
    /// Whether a worker's idle run ([`on_idle`]) is already waiting.
    idle_waiting: Box<[AtomicBool]>,
    inboxes: Box<[mpsc_async::UnboundedSender<Handed>]>,
    /// Each worker's marks of work ([`worked`]).
    quiet: Box<[Quiet]>,
    /// Each worker's runtime, set when it starts: where the others send its idle run.
    runtimes: Box<[OnceLock<Handle>]>,
}

/// A connection handed from the worker that accepted it to the one that serves it.
struct Handed {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    open: Open,
}

/// A connection's count among its worker's open connections ([`Spread`]), given back
/// when dropped: the serving function holds it for as long as the connection is open.
/// Without a spread it counts nothing.
pub struct Open {
    counted: Option<(Arc<SpreadShared>, usize)>,
}

impl Open {
    /// [`worked`] for the worker this connection is counted on, without looking the
    /// worker up: for a connection's every read. Must be called on that worker's thread.
    pub fn worked(&self) {
        if let Some((shared, index)) = &self.counted {
            shared.worked(*index);
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if let Some((shared, index)) = &self.counted {
            if shared.open[*index].fetch_sub(1, Ordering::Relaxed) == 1 {
                shared.went_idle(*index);
            }
        }
    }
}

impl Spread {
    fn for_workers(threads: usize) -> Vec<Spread> {
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..threads).map(|_| mpsc_async::unbounded_channel()).unzip();
        let shared = Arc::new(SpreadShared {
            open: (0..threads).map(|_| AtomicUsize::new(0)).collect(),
            idle_waiting: (0..threads).map(|_| AtomicBool::new(false)).collect(),
            inboxes: senders.into(),
            quiet: (0..threads).map(|_| Quiet::default()).collect(),
            runtimes: (0..threads).map(|_| OnceLock::new()).collect(),
        });
        receivers
            .into_iter()
            .enumerate()
            .map(|(index, inbox)| Spread {
                index,
                shared: shared.clone(),
                inbox,
            })
            .collect()
    }

    /// Counts a connection on worker `index`.
    fn open(&self, index: usize) -> Open {
        self.shared.open[index].fetch_add(1, Ordering::Relaxed);
        Open {
            counted: Some((self.shared.clone(), index)),
        }
    }

    /// The worker a connection accepted here should go to: another one only if it has
    /// fewer open than this one by more than an eighth (at least one).
    fn place(&self) -> usize {
        let open = &self.shared.open;
        let mine = open[self.index].load(Ordering::Relaxed);
        let (least_at, least) = open
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .enumerate()
            .min_by_key(|&(_, n)| n)
            .unwrap_or((self.index, mine));
        if least_at != self.index && mine > least + least / 8 {
            least_at
        } else {
            self.index
        }
    }

    /// Serves `stream` here, or hands it to the worker with fewest open connections.
    fn take<F: FnMut(TcpStream, SocketAddr, Open)>(&self, stream: TcpStream, peer: SocketAddr, serve: &mut F) {
        let to = self.place();
        if to == self.index {
            return serve(stream, peer, self.open(to));
        }
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => return tracing::debug!(error = %e, %peer, "a connection could not be handed to another worker"),
        };
        let handed = Handed {
            stream,
            peer,
            open: self.open(to),
        };
        // The other worker has stopped (shutdown under way): serve it here.
        if let Err(mpsc_async::error::SendError(back)) = self.shared.inboxes[to].send(handed) {
            if let Ok(stream) = TcpStream::from_std(back.stream) {
                serve(stream, peer, self.open(self.index));
            }
        }
    }
}

/// The running workers.
pub struct Workers {
    /// The address they listen on (the real port when asked for port 0).
    pub addr: SocketAddr,
    threads: Vec<JoinHandle<()>>,
    /// Held while the workers run; dropped (the address given up) after they stopped.
    claim: Claim,
}

impl Workers {
    /// Waits until every worker has stopped (after the shutdown token is cancelled).
    /// Connections still open are closed when their worker stops.
    pub async fn join(self) {
        let Workers { threads, claim, .. } = self;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
            drop(claim);
        })
        .await;
    }

    /// [`Workers::join`] for callers outside a runtime.
    pub fn join_blocking(self) {
        for t in self.threads {
            let _ = t.join();
        }
        drop(self.claim);
    }
}

/// Starts `listen.threads` workers, each running `serve(worker)` on a current-thread
/// runtime of its own until that future ends; then the runtime is dropped, and with it
/// the tasks still on it (their sockets close).
///
/// Returns once every worker is listening. If the address is in use, the error (kind
/// [`io::ErrorKind::AddrInUse`]) names its holder where `/proc` shows it. If a worker
/// cannot start (no thread, no runtime, the address cannot be bound), cancels
/// `shutdown`, so that those already started stop, and returns the error.
pub fn spawn<F, Fut>(listen: Listen, shutdown: &CancellationToken, serve: F) -> io::Result<Workers>
where
    F: FnOnce(Worker) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()>,
{
    let Listen { addr, threads, name } = listen;
    let claim = match claim::claim(addr) {
        Ok(claim) => claim,
        Err(e) => {
            shutdown.cancel();
            return Err(e);
        }
    };
    let addr = claim.addr;
    let threads = threads.max(1);
    let mut handles = Vec::with_capacity(threads);
    for (index, spread) in Spread::for_workers(threads).into_iter().enumerate() {
        match start_worker(index, addr, name, shutdown.clone(), spread, serve.clone()) {
            Ok(handle) => handles.push(handle),
            Err(e) => {
                shutdown.cancel();
                return Err(e);
            }
        }
    }
    Ok(Workers {
        addr,
        threads: handles,
        claim,
    })
}

/// Accepts connections on `listener` until `shutdown` is cancelled, handing each to
/// `serve` with `TCP_NODELAY` set; then drops the listener, so no connection is taken
/// after, and returns. A failed accept (out of file descriptors and the like) is logged
/// and retried 10 ms later instead of spinning.
pub async fn accept<F>(listener: TcpListener, shutdown: &CancellationToken, name: &str, mut serve: F)
where
    F: FnMut(TcpStream, SocketAddr),
{
    accept_spread(listener, None, shutdown, name, |stream, peer, _| serve(stream, peer)).await
}

/// [`accept`] for a worker of [`spawn`] that keeps the workers' open connections even
/// ([`Spread`], the worker's own; `None` for a listener of its own): it serves the
/// connections it accepts or is handed; `serve` also gets the connection's [`Open`], to
/// hold for as long as the connection is open.
pub async fn accept_spread<F>(
    listener: TcpListener,
    mut spread: Option<Spread>,
    shutdown: &CancellationToken,
    name: &str,
    mut serve: F,
) where
    F: FnMut(TcpStream, SocketAddr, Open),
{
    // Out of file descriptors (or another failure that repeats): back off from 10 ms up
    // to 1 s, and say so once per episode with how many accepts failed, not once per try.
    let mut backoff = AcceptBackoff::default();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(ok) => ok,
                Err(e) => {
                    let pause = backoff.failed(name, &e);
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = shutdown.cancelled() => return,
                    }
                    continue;
                }
            },
            Some(handed) = async { spread.as_mut()?.inbox.recv().await }, if spread.is_some() => {
                let Handed { stream, peer, open } = handed;
                match TcpStream::from_std(stream) {
                    Ok(stream) => serve(stream, peer, open),
                    Err(e) => tracing::debug!(server = name, error = %e, %peer, "a handed connection could not be served"),
                }
                continue;
            }
            _ = shutdown.cancelled() => return,
        };
        backoff.recovered(name);
        let _ = stream.set_nodelay(true);
        match &spread {
            Some(spread) => spread.take(stream, peer, &mut serve),
            None => serve(stream, peer, Open { counted: None }),
        }
    }
}

/// Starts worker `index` and waits until it listens.
fn start_worker<F, Fut>(
    index: usize,
    addr: SocketAddr,
    name: &'static str,
    shutdown: CancellationToken,
    spread: Spread,
    serve: F,
) -> io::Result<JoinHandle<()>>
where
    F: FnOnce(Worker) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let (bound_tx, bound_rx) = mpsc::channel::<io::Result<()>>();
    let handle = std::thread::Builder::new()
        .name(format!("strata-{name}-{index}"))
        .spawn(move || {
            // I/O and timers. tokio also gives any runtime with I/O its signal and process
            // drivers when its `process` feature is compiled in (the App Service spawns
            // with it), so each park also looks for orphaned children to reap: 0.3 % of a
            // busy worker (bench/README.md, stop 35), which no builder option turns off.
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = bound_tx.send(Err(e));
                    return;
                }
            };
            let _ = spread.shared.runtimes[index].set(runtime.handle().clone());
            let _ = WORKER.with(|worker| worker.set((spread.shared.clone(), index)));
            runtime.block_on(async move {
                let listener = match reuseport_listener(addr) {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = bound_tx.send(Err(e));
                        return;
                    }
                };
                let _ = bound_tx.send(Ok(()));
                serve(Worker {
                    index,
                    listener,
                    shutdown,
                    spread,
                })
                .await;
            });
        })?;
    match bound_rx.recv() {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(io::Error::other(format!("{name} worker {index} died while starting"))),
    }
}

fn reuseport_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use tokio::io::AsyncWriteExt;

    use super::*;

    /// Each connection is answered with the index of the worker that took it.
    fn spawn_echo_index(addr: SocketAddr, threads: usize, shutdown: &CancellationToken) -> io::Result<Workers> {
        let listen = Listen {
            addr,
            threads,
            name: "test",
        };
        spawn(listen, shutdown, |worker: Worker| async move {
            let index = worker.index as u8;
            accept(worker.listener, &worker.shutdown, "test", |mut stream, _| {
                tokio::spawn(async move {
                    let _ = stream.write_all(&[index]).await;
                });
            })
            .await;
        })
    }

    #[test]
    fn workers_share_the_port_the_first_got_and_stop_on_shutdown() {
        let shutdown = CancellationToken::new();
        let workers = spawn_echo_index("127.0.0.1:0".parse().unwrap(), 3, &shutdown).unwrap();
        assert_ne!(workers.addr.port(), 0);
        for _ in 0..30 {
            let mut conn = std::net::TcpStream::connect(workers.addr).unwrap();
            let mut index = Vec::new();
            conn.read_to_end(&mut index).unwrap();
            assert!(matches!(index[..], [i] if i < 3), "answered {index:?}");
        }
        let addr = workers.addr;
        shutdown.cancel();
        workers.join_blocking();
        let refused = std::net::TcpStream::connect(addr).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
    }

    #[test]
    fn a_second_server_on_the_address_is_refused_and_the_first_keeps_every_connection() {
        let first_down = CancellationToken::new();
        let first = spawn_echo_index("127.0.0.1:0".parse().unwrap(), 2, &first_down).unwrap();
        // Asked for by address, as a second node with the same gateway.listen would.
        let second_down = CancellationToken::new();
        let err = spawn_echo_index(first.addr, 2, &second_down)
            .err()
            .expect("the address is taken");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(
            err.to_string()
                .contains(&format!("in use by pid {}", std::process::id())),
            "{err}"
        );
        assert!(second_down.is_cancelled());
        assert!(!first_down.is_cancelled());
        for _ in 0..10 {
            let mut conn = std::net::TcpStream::connect(first.addr).unwrap();
            let mut index = Vec::new();
            conn.read_to_end(&mut index).unwrap();
            assert!(matches!(index[..], [i] if i < 2), "answered {index:?}");
        }
        // Once the first has stopped, the address is free again, and now claimed by
        // address (with its lock file): a third is refused by the lock.
        let addr = first.addr;
        first_down.cancel();
        first.join_blocking();
        let again_down = CancellationToken::new();
        let again = spawn_echo_index(addr, 1, &again_down).unwrap();
        let err = spawn_echo_index(addr, 1, &CancellationToken::new())
            .err()
            .expect("the address is taken");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        again_down.cancel();
        again.join_blocking();
    }

    #[test]
    fn a_few_long_connections_are_spread_evenly_over_the_workers() {
        let shutdown = CancellationToken::new();
        let listen = Listen {
            addr: "127.0.0.1:0".parse().unwrap(),
            threads: 2,
            name: "test",
        };
        // Each connection is answered with the index of the worker that serves it, and
        // counted there until the client closes it.
        let (closed_tx, closed) = mpsc::channel::<()>();
        let workers = spawn(listen, &shutdown, move |worker: Worker| async move {
            let index = worker.index as u8;
            accept_spread(
                worker.listener,
                Some(worker.spread),
                &worker.shutdown,
                "test",
                |mut stream, _, open| {
                    let closed_tx = closed_tx.clone();
                    tokio::spawn(async move {
                        use tokio::io::AsyncReadExt;
                        let _ = stream.write_all(&[index]).await;
                        let _ = stream.read(&mut [0u8; 1]).await;
                        drop(open);
                        let _ = closed_tx.send(());
                    });
                },
            )
            .await;
        })
        .unwrap();
        let connect = || {
            let mut c = std::net::TcpStream::connect(workers.addr).unwrap();
            let mut index = [0u8; 1];
            c.read_exact(&mut index).unwrap();
            (c, index[0])
        };
        // However the kernel hashes them, four open connections end up two and two,
        // twenty times over (by the hash alone, 3/1 or 4/0 seven times in eight).
        for _ in 0..20 {
            let open: Vec<_> = (0..4).map(|_| connect()).collect();
            let on_first = open.iter().filter(|(_, i)| *i == 0).count();
            assert_eq!(
                on_first,
                2,
                "served by {:?}",
                open.iter().map(|(_, i)| i).collect::<Vec<_>>()
            );
            drop(open);
            // Closed: each count is given back once its task sees the end.
            for _ in 0..4 {
                closed
                    .recv_timeout(Duration::from_secs(10))
                    .expect("a connection's task ended");
            }
        }
        shutdown.cancel();
        workers.join_blocking();
    }

    #[test]
    fn an_address_that_cannot_be_bound_fails_the_start_and_cancels() {
        let shutdown = CancellationToken::new();
        // 192.0.2.0/24 is reserved for documentation: never a local address.
        let err = spawn_echo_index("192.0.2.1:0".parse().unwrap(), 2, &shutdown)
            .err()
            .expect("binding a foreign address fails");
        assert_eq!(err.kind(), io::ErrorKind::AddrNotAvailable);
        assert!(shutdown.is_cancelled());
    }
}

/// Failed accepts in a row: how long to pause, and what to log.
#[derive(Default)]
struct AcceptBackoff {
    failures: u64,
}

const ACCEPT_PAUSE_MIN: Duration = Duration::from_millis(10);
const ACCEPT_PAUSE_MAX: Duration = Duration::from_secs(1);

impl AcceptBackoff {
    /// Records a failed accept; the pause before the next try doubles each time.
    fn failed(&mut self, name: &str, e: &io::Error) -> Duration {
        if self.failures == 0 {
            tracing::warn!(server = name, error = %e, "accept failed; backing off (up to 1 s between tries) until it works again");
        }
        self.failures += 1;
        ACCEPT_PAUSE_MIN
            .saturating_mul(1 << self.failures.min(8).saturating_sub(1) as u32)
            .min(ACCEPT_PAUSE_MAX)
    }

    /// An accept worked: report the episode, if there was one.
    fn recovered(&mut self, name: &str) {
        if self.failures > 0 {
            tracing::warn!(server = name, failed = self.failures, "accepting connections again");
            self.failures = 0;
        }
    }
}

#[cfg(test)]
mod backoff_tests {
    use super::*;

    #[test]
    fn failed_accepts_back_off_to_a_second_and_reset() {
        let mut b = AcceptBackoff::default();
        let e = io::Error::from_raw_os_error(24); // EMFILE
        let pauses: Vec<u64> = (0..10).map(|_| b.failed("t", &e).as_millis() as u64).collect();
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        b.recovered("t");
        assert_eq!(b.failed("t", &e), ACCEPT_PAUSE_MIN);
    }
}
