//! A worker's idle run: what the binary set with [`on_idle`] (it gives the memory the
//! worker's connections left back to the system), run on the worker's own thread once
//! its last connection has closed and none came for [`IDLE_AFTER`] (`went_idle`), or
//! once it marked no work ([`worked`]) for as long, connections open or not; with it,
//! every other quiet worker of the same server runs it too.

use std::cell::OnceCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::runtime::Handle;

use super::SpreadShared;

/// What a worker runs once it has been without connections for [`IDLE_AFTER`] ([`on_idle`]).
pub(super) static IDLE: OnceLock<fn()> = OnceLock::new();

/// How long a worker is without connections before what [`on_idle`] set runs on it.
pub const IDLE_AFTER: Duration = Duration::from_secs(1);

/// Sets what a worker of [`spawn`](super::spawn) runs on its own thread once its last
/// connection has closed and no other came for [`IDLE_AFTER`]: at most once per
/// [`IDLE_AFTER`] per worker, never while it serves. For the binary's allocator: mimalloc keeps the pages a
/// thread freed until that thread allocates again, which an idle worker does not, so
/// the memory of 4,000 closed WebSockets stayed with the process. The first call sets
/// it; later ones are ignored.
pub fn on_idle(idle: fn()) {
    let _ = IDLE.set(idle);
}

thread_local! {
    /// The workers this thread is one of, and which: set when a worker of [`spawn`](super::spawn)
    /// starts, for [`worked`].
    pub(super) static WORKER: OnceCell<(Arc<SpreadShared>, usize)> = const { OnceCell::new() };
}

/// Marks work done on this thread, a worker's of [`spawn`](super::spawn) (elsewhere it does nothing):
/// once the worker has done none for [`IDLE_AFTER`], what [`on_idle`] set runs on it,
/// open connections or not, and on each other worker of the same [`spawn`](super::spawn) that is
/// quiet too (what this one freed may be theirs: mimalloc keeps a block freed by
/// another thread on its owner's page until the owner looks). For servers whose
/// clients hold their connections (a cache's pool), where the last one never closes.
/// Costs two relaxed atomics on the worker's own cache line, and one timer per second
/// of work, none while quiet.
pub fn worked() {
    WORKER.with(|worker| {
        if let Some((shared, index)) = worker.get() {
            shared.worked(*index);
        }
    });
}

/// One worker's marks of work ([`worked`]), on a cache line of its own: only its own
/// thread writes them, and the others only read them once a second.
#[repr(align(64))]
#[derive(Default)]
pub(super) struct Quiet {
    /// How many times the worker marked work.
    work: AtomicU64,
    /// Whether a check for a quiet second is waiting on the worker.
    waiting: AtomicBool,
}

impl SpreadShared {
    /// Worker `index` has just closed its last connection: what [`on_idle`] set runs on
    /// this thread (the worker's, where the connection was served) if none comes within
    /// [`IDLE_AFTER`]. Needs the worker's runtime; without one (a connection dropped at
    /// shutdown) nothing runs.
    pub(super) fn went_idle(self: &Arc<Self>, index: usize) {
        let Some(&idle) = IDLE.get() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.idle_waiting[index].swap(true, Ordering::AcqRel) {
            return;
        }
        let shared = self.clone();
        runtime.spawn(async move {
            tokio::time::sleep(IDLE_AFTER).await;
            shared.idle_waiting[index].store(false, Ordering::Release);
            if shared.open[index].load(Ordering::Relaxed) == 0 {
                idle();
            }
        });
    }

    /// Worker `index`, on its own thread, marked work ([`worked`]).
    pub(super) fn worked(self: &Arc<Self>, index: usize) {
        let quiet = &self.quiet[index];
        // Only this thread writes the count: no locked instruction needed.
        quiet
            .work
            .store(quiet.work.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
        if quiet.waiting.load(Ordering::Relaxed) || IDLE.get().is_none() {
            return;
        }
        let Ok(runtime) = Handle::try_current() else { return };
        quiet.waiting.store(true, Ordering::Relaxed);
        runtime.spawn(self.clone().until_quiet(index));
    }

    /// Waits until worker `index` has marked no work for [`IDLE_AFTER`], then runs what
    /// [`on_idle`] set there, and on every other worker that is quiet as well.
    async fn until_quiet(self: Arc<Self>, index: usize) {
        let Some(&idle) = IDLE.get() else { return };
        let quiet = &self.quiet[index];
        loop {
            let seen = quiet.work.load(Ordering::Relaxed);
            tokio::time::sleep(IDLE_AFTER).await;
            if quiet.work.load(Ordering::Relaxed) != seen {
                continue;
            }
            quiet.waiting.store(false, Ordering::SeqCst);
            // Work marked between the look and the store found the check still
            // waiting and started none: look again for it.
            if quiet.work.load(Ordering::SeqCst) == seen || quiet.waiting.swap(true, Ordering::SeqCst) {
                break;
            }
        }
        if quiet.waiting.load(Ordering::SeqCst) {
            // A newer check took over.
            return;
        }
        idle();
        for (other, runtime) in self.runtimes.iter().enumerate() {
            if other == index || self.quiet[other].waiting.load(Ordering::Relaxed) {
                continue;
            }
            if let Some(runtime) = runtime.get() {
                runtime.spawn(async move { idle() });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::io::Read;

    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    use tokio_util::sync::CancellationToken;

    use super::super::{accept_spread, spawn, Listen, Open, Worker, Workers};
    use super::*;

    /// The threads [`on_idle`]'s function ran on, in order.
    static IDLE_RAN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

    fn record_idle() {
        let name = std::thread::current().name().unwrap_or("?").to_string();
        IDLE_RAN.lock().unwrap().push(name);
    }

    fn idle_runs_of(prefix: &str) -> Vec<String> {
        let mut ran: Vec<String> = IDLE_RAN
            .lock()
            .unwrap()
            .iter()
            .filter(|n| n.starts_with(prefix))
            .cloned()
            .collect();
        ran.sort();
        ran
    }

    /// Waits (10 s at most) until [`on_idle`]'s function has run `n` times on threads
    /// whose names start with `prefix`.
    fn wait_for_idle_runs(prefix: &str, n: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while idle_runs_of(prefix).len() < n && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Two workers named `name` on a free port, keeping their connections even
    /// ([`accept_spread`]); each connection is served by `serve` in a task of its own,
    /// with its [`Open`].
    fn spread_workers<F, Fut>(name: &'static str, shutdown: &CancellationToken, serve: F) -> Workers
    where
        F: Fn(TcpStream, Open) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listen = Listen {
            addr: "127.0.0.1:0".parse().unwrap(),
            threads: 2,
            name,
        };
        spawn(listen, shutdown, move |worker: Worker| async move {
            accept_spread(
                worker.listener,
                Some(worker.spread),
                &worker.shutdown,
                name,
                |stream, _, open| {
                    tokio::spawn(serve(stream, open));
                },
            )
            .await;
        })
        .unwrap()
    }

    #[test]
    fn a_worker_runs_its_idle_work_on_its_own_thread_a_second_after_its_last_connection() {
        on_idle(record_idle);
        let shutdown = CancellationToken::new();
        // Each connection is held, counted, until its client closes it.
        let workers = spread_workers("idletest", &shutdown, |mut stream, open| async move {
            use tokio::io::AsyncReadExt;
            let _ = stream.write_all(b"+").await;
            let _ = stream.read(&mut [0u8; 1]).await;
            drop(open);
        });
        let connect = || {
            let mut c = std::net::TcpStream::connect(workers.addr).unwrap();
            c.read_exact(&mut [0u8; 1]).unwrap();
            c
        };
        let mine = "strata-idletest-";
        // Two connections, one on each worker (the spread), and a third that comes and
        // goes: a worker that still serves one runs nothing.
        let held: Vec<_> = (0..2).map(|_| connect()).collect();
        drop(connect());
        std::thread::sleep(IDLE_AFTER * 2);
        assert_eq!(idle_runs_of(mine), Vec::<String>::new(), "ran while serving");
        // All closed, and connections that come and go within the second after: each
        // worker runs it once, on its own thread, once the second has passed.
        drop(held);
        for _ in 0..5 {
            drop(connect());
        }
        wait_for_idle_runs(mine, 2);
        std::thread::sleep(IDLE_AFTER * 2);
        assert_eq!(
            idle_runs_of(mine),
            vec!["strata-idletest-0".to_string(), "strata-idletest-1".to_string()]
        );
        shutdown.cancel();
        workers.join_blocking();
    }

    #[test]
    fn a_worker_quiet_for_a_second_runs_its_idle_work_with_connections_open_and_so_do_quiet_others() {
        on_idle(record_idle);
        let shutdown = CancellationToken::new();
        // Echoes each byte, marking the work; the connection stays open until its client
        // closes it. The spread puts the two connections on the two workers.
        let workers = spread_workers("quiettest", &shutdown, |mut stream, open| async move {
            use tokio::io::AsyncReadExt;
            let mut byte = [0u8; 1];
            while matches!(stream.read(&mut byte).await, Ok(1)) {
                worked();
                let _ = stream.write_all(&byte).await;
            }
            drop(open);
        });
        let mine = "strata-quiettest-";
        let mut busy = std::net::TcpStream::connect(workers.addr).unwrap();
        let _other = std::net::TcpStream::connect(workers.addr).unwrap();
        let echo = |c: &mut std::net::TcpStream| {
            std::io::Write::write_all(c, b"x").unwrap();
            c.read_exact(&mut [0u8; 1]).unwrap();
        };
        // Work every 100 ms for twice the quiet time: nothing runs, on either worker.
        let until = std::time::Instant::now() + IDLE_AFTER * 2;
        while std::time::Instant::now() < until {
            echo(&mut busy);
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(idle_runs_of(mine), Vec::<String>::new(), "ran while working");
        // Quiet, both connections still open: the worker that worked runs it, and so
        // does the other one, which did no work but is quiet too. Once each: nothing
        // more runs while nothing is done.
        wait_for_idle_runs(mine, 2);
        std::thread::sleep(IDLE_AFTER * 2);
        assert_eq!(
            idle_runs_of(mine),
            vec!["strata-quiettest-0".to_string(), "strata-quiettest-1".to_string()]
        );
        // More work, then quiet again: they run once more.
        echo(&mut busy);
        wait_for_idle_runs(mine, 4);
        assert_eq!(idle_runs_of(mine).len(), 4, "{:?}", idle_runs_of(mine));
        drop(busy);
        shutdown.cancel();
        workers.join_blocking();
    }
}
