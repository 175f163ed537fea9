//! Timeouts for the request path that cost no timer operation per request.
//!
//! A tokio timer registered for every relayed request is not free: the timer wheel
//! takes a lock, and a deadline earlier than the one the runtime sleeps toward makes it
//! wake its driver through an eventfd, a system call and an extra `epoll_wait` per
//! request on an otherwise idle gateway. Attempt timeouts need no millisecond
//! precision, so on a gateway worker thread they are kept in a thread-local list that a
//! ticker task scans every [`TICK`]: registering is a push, finishing a swap-remove.
//! With nothing to watch the ticker waits, with no timer, for the next registration to
//! wake it: an idle worker does not wake up every tick (each wake-up by a tokio timer
//! is an eventfd write and an `epoll_wait`, 40 a second per worker).
//! Elsewhere (no ticker on the thread) a plain tokio timer is used.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How often the ticker looks for expired deadlines; a timeout fires at most this late.
pub const TICK: Duration = Duration::from_millis(25);

struct Entry {
    id: u64,
    at: Instant,
    waker: Waker,
}

thread_local! {
    static ENTRIES: RefCell<Vec<Entry>> = const { RefCell::new(Vec::new()) };
    static NEXT_ID: Cell<u64> = const { Cell::new(1) };
    static TICKING: Cell<bool> = const { Cell::new(false) };
    /// The ticker, while it waits for a deadline to watch.
    static PARKED: RefCell<Option<Waker>> = const { RefCell::new(None) };
}

/// Runs on a gateway worker's runtime for as long as it serves: wakes the futures whose
/// deadline passed.
pub async fn ticker() {
    TICKING.with(|t| t.set(true));
    let _off = TickingGuard;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let idle = ENTRIES.with(|entries| {
            let entries = entries.borrow();
            for entry in entries.iter().filter(|e| e.at <= now) {
                entry.waker.wake_by_ref();
            }
            entries.is_empty()
        });
        if idle {
            std::future::poll_fn(|cx| {
                if ENTRIES.with(|entries| entries.borrow().is_empty()) {
                    PARKED.with(|parked| *parked.borrow_mut() = Some(cx.waker().clone()));
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            })
            .await;
            // The first deadline is at least a tick away (it is checked when registered).
            tick.reset();
        }
    }
}

struct TickingGuard;

impl Drop for TickingGuard {
    fn drop(&mut self) {
        TICKING.with(|t| t.set(false));
    }
}

/// The error of a future that did not finish in time.
#[derive(Debug)]
pub struct Elapsed;

/// `fut`, or [`Elapsed`] once `limit` has passed (up to [`TICK`] later).
pub fn timeout<F: Future>(limit: Duration, fut: F) -> Timeout<F> {
    Timeout {
        fut,
        at: Instant::now().checked_add(limit),
        id: 0,
        fallback: None,
    }
}

pub struct Timeout<F> {
    fut: F,
    /// None: too far away to matter.
    at: Option<Instant>,
    /// Registered in this thread's list under this id (0: not registered).
    id: u64,
    fallback: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<F> Timeout<F> {
    fn deregister(&mut self) {
        if self.id != 0 {
            let id = self.id;
            ENTRIES.with(|entries| {
                let mut entries = entries.borrow_mut();
                if let Some(i) = entries.iter().position(|e| e.id == id) {
                    entries.swap_remove(i);
                }
            });
            self.id = 0;
        }
    }
}

impl<F> Drop for Timeout<F> {
    fn drop(&mut self) {
        self.deregister();
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `fut` is never moved out of the pinned struct; the other fields are
        // plain data, moved freely.
        let this = unsafe { self.get_unchecked_mut() };
        let fut = unsafe { Pin::new_unchecked(&mut this.fut) };
        if let Poll::Ready(out) = fut.poll(cx) {
            this.deregister();
            return Poll::Ready(Ok(out));
        }
        let Some(at) = this.at else {
            return Poll::Pending;
        };
        if Instant::now() >= at {
            this.deregister();
            return Poll::Ready(Err(Elapsed));
        }
        if !TICKING.with(|t| t.get()) {
            let sleep = this
                .fallback
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at.into())));
            return match sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
                Poll::Pending => Poll::Pending,
            };
        }
        ENTRIES.with(|entries| {
            let mut entries = entries.borrow_mut();
            if this.id == 0 {
                let id = NEXT_ID.with(|n| {
                    let id = n.get();
                    n.set(id + 1);
                    id
                });
                this.id = id;
                entries.push(Entry {
                    id,
                    at,
                    waker: cx.waker().clone(),
                });
                // The ticker, if it waits for something to watch (on this thread: the
                // wake only queues it).
                if let Some(ticker) = PARKED.with(|parked| parked.borrow_mut().take()) {
                    ticker.wake();
                }
            } else if let Some(entry) = entries.iter_mut().find(|e| e.id == this.id) {
                if !entry.waker.will_wake(cx.waker()) {
                    entry.waker = cx.waker().clone();
                }
            }
        });
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls `fut` once; true if it is still pending.
    async fn pending_after_one_poll<F: Future>(mut fut: Pin<&mut F>) -> bool {
        std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx).is_pending())).await
    }

    #[tokio::test(flavor = "current_thread")]
    async fn fires_on_the_ticker_and_deregisters() {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let ticker = tokio::task::spawn_local(ticker());
                // Its first tick finds nothing to watch: then it waits with no timer.
                for _ in 0..1000 {
                    if PARKED.with(|p| p.borrow().is_some()) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                assert!(
                    PARKED.with(|p| p.borrow().is_some()),
                    "with nothing to watch, the ticker waits with no timer"
                );
                let limit = Duration::from_millis(60);
                // In a task of its own, so that nothing but its own waker polls it again
                // (the LocalSet re-polls `run_until`'s future whenever the ticker runs).
                let waiting = tokio::task::spawn_local(async move {
                    let started = Instant::now();
                    let mut pending = std::pin::pin!(timeout(limit, std::future::pending::<()>()));
                    // Waiting, it is one entry of the thread's list and holds no tokio
                    // timer: only the ticker can wake it.
                    assert!(pending_after_one_poll(pending.as_mut()).await);
                    assert_ne!(pending.id, 0, "registered");
                    assert!(pending.fallback.is_none(), "no tokio timer beside the ticker");
                    assert_eq!(ENTRIES.with(|e| e.borrow().len()), 1);
                    (pending.await.is_err(), started.elapsed())
                });
                // No upper bound on when it fires beyond "it does" (a loaded machine may be
                // late); the guard only keeps a broken ticker from hanging the test.
                let (elapsed, took) = tokio::time::timeout(Duration::from_secs(30), waiting)
                    .await
                    .expect("the ticker woke the timeout")
                    .expect("the waiting task");
                assert!(elapsed, "it ended by its deadline");
                assert!(took >= limit, "fired before its deadline: {took:?}");
                assert_eq!(ENTRIES.with(|e| e.borrow().len()), 0, "deregistered once fired");
                let done = timeout(Duration::from_secs(5), async { 7 }).await;
                assert_eq!(done.unwrap(), 7);
                assert_eq!(ENTRIES.with(|e| e.borrow().len()), 0);
                // One dropped while waiting leaves the list too.
                let mut dropped = Box::pin(timeout(Duration::from_secs(5), std::future::pending::<()>()));
                assert!(pending_after_one_poll(dropped.as_mut()).await);
                assert_eq!(ENTRIES.with(|e| e.borrow().len()), 1);
                drop(dropped);
                assert_eq!(ENTRIES.with(|e| e.borrow().len()), 0, "deregistered when dropped");
                ticker.abort();
            })
            .await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn without_a_ticker_a_tokio_timer_is_used() {
        let mut pending = std::pin::pin!(timeout(Duration::from_millis(30), std::future::pending::<()>()));
        assert!(pending_after_one_poll(pending.as_mut()).await);
        assert!(pending.fallback.is_some(), "a tokio timer");
        assert_eq!(ENTRIES.with(|e| e.borrow().len()), 0, "not in the ticker's list");
        assert!(pending.await.is_err());
        assert_eq!(ENTRIES.with(|e| e.borrow().len()), 0);
    }
}
