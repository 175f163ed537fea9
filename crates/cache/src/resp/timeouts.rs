//! Idle and slow-command timeouts (Redis' `timeout`, and a slowloris guard Redis lacks)
//! at no cost per command: no timer per connection and no clock read per command.
//!
//! Each worker thread keeps a table of its connections' [`Activity`] (thread-local: a
//! connection never leaves its worker) and runs [`sweep`]: every tick it reads the clock
//! once, keeps it as the thread's coarse "now", and flags the connections whose deadline
//! passed ([`Timeouts::expired`], a pure function of an activity and a time), waking them.
//! A connection records its activity against the coarse "now" when a read returns (a
//! thread-local store), and waits for the client through [`Watch::until_expired`], which
//! ends when the sweep flags it. A timeout fires within a tick of its deadline (a tenth of
//! the shorter timeout, between 10 ms and 1 s: [`Timeouts::tick`]).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::task::{Poll, Waker};
use std::time::Duration;

use tokio::time::Instant;

/// A command being received gets one second more than the command timeout for each
/// MiB of it received so far, so a large value on a slow link is not cut off, while
/// holding a connection open with a trickle still fails.
const SLOW_LINK_BYTES_PER_SECOND: usize = 1 << 20;

/// The deadlines of a server's connections; `None`: never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timeouts {
    /// A connection with no command under way and no reply being written is closed,
    /// quietly, after this long (Redis' `timeout`).
    pub idle: Option<Duration>,
    /// A command under way (its first bytes received) must be complete this long after
    /// its first bytes arrived, plus a second per MiB received; else the client gets an
    /// error and the connection is closed.
    pub command: Option<Duration>,
}

/// Why the sweep closes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expired {
    /// Nothing under way for [`Timeouts::idle`], or a reply the client has taken
    /// nothing of for as long.
    Idle,
    /// A command not complete within [`Timeouts::command`].
    SlowCommand,
}

/// What a connection has been doing, as of its worker's coarse clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Activity {
    /// When it opened, its last command was complete, or its reply last made progress.
    pub last: Instant,
    /// When the first bytes of the command under way arrived (None: none under way).
    pub partial_since: Option<Instant>,
    /// How many bytes of it (and of the commands behind it) are held.
    pub partial_bytes: usize,
    /// A reply is being written that the socket did not take at once: the client is
    /// not reading, so only the idle rule applies, counted from the last progress.
    pub writing: bool,
}

impl Activity {
    fn new(now: Instant) -> Activity {
        Activity {
            last: now,
            partial_since: None,
            partial_bytes: 0,
            writing: false,
        }
    }
}

impl Timeouts {
    /// Whether a connection with `activity` is past a deadline at `now`.
    pub(crate) fn expired(&self, activity: &Activity, now: Instant) -> Option<Expired> {
        if let (Some(since), false) = (activity.partial_since, activity.writing) {
            let limit = self.command?;
            let allowance = Duration::from_secs((activity.partial_bytes / SLOW_LINK_BYTES_PER_SECOND) as u64);
            return (now.saturating_duration_since(since) > limit + allowance).then_some(Expired::SlowCommand);
        }
        let limit = self.idle?;
        (now.saturating_duration_since(activity.last) > limit).then_some(Expired::Idle)
    }

    /// How often the sweep runs: a tenth of the shorter timeout, between 10 ms and 1 s;
    /// None when there is no timeout.
    pub(crate) fn tick(&self) -> Option<Duration> {
        let shorter = match (self.idle, self.command) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        Some((shorter / 10).clamp(Duration::from_millis(10), Duration::from_secs(1)))
    }

    fn any(&self) -> bool {
        self.idle.is_some() || self.command.is_some()
    }
}

struct Slot {
    activity: Activity,
    /// The waker of the connection's task, while it waits in [`Watch::until_expired`].
    waker: Option<Waker>,
    /// Set by the sweep; cleared when a command completes or a reply makes progress.
    expired: Option<Expired>,
    live: bool,
}

/// The connections of this thread's worker.
#[derive(Default)]
struct Table {
    slots: Vec<Slot>,
    free: Vec<usize>,
}

thread_local! {
    static TABLE: RefCell<Table> = RefCell::new(Table::default());
    /// The time of the sweep's last tick; None while no sweep runs on this thread.
    static NOW: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// This thread's coarse clock (up to a tick behind), or the clock where no sweep runs.
fn now() -> Instant {
    NOW.with(|n| n.get()).unwrap_or_else(Instant::now)
}

/// Runs on a worker's runtime for as long as it serves (never returns): flags and wakes
/// the connections past a deadline. Does nothing without timeouts.
pub(crate) async fn sweep(timeouts: Timeouts) {
    let Some(tick) = timeouts.tick() else {
        return std::future::pending().await;
    };
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let _stopped = StopClock;
    loop {
        interval.tick().await;
        let now = Instant::now();
        NOW.with(|n| n.set(Some(now)));
        TABLE.with(|table| {
            for slot in table.borrow_mut().slots.iter_mut() {
                if !slot.live || slot.expired.is_some() {
                    continue;
                }
                if let Some(why) = timeouts.expired(&slot.activity, now) {
                    slot.expired = Some(why);
                    if let Some(waker) = &slot.waker {
                        waker.wake_by_ref();
                    }
                }
            }
        });
    }
}

struct StopClock;

impl Drop for StopClock {
    fn drop(&mut self) {
        let _ = NOW.try_with(|n| n.set(None));
    }
}

/// One connection's entry in its worker's table; removed when dropped. All its methods
/// are no-ops on a server without timeouts.
pub(crate) struct Watch {
    slot: Option<usize>,
}

impl Watch {
    /// Enters a connection opening now into this thread's table.
    pub fn register(timeouts: &Timeouts) -> Watch {
        if !timeouts.any() {
            return Watch { slot: None };
        }
        let slot = Slot {
            activity: Activity::new(now()),
            waker: None,
            expired: None,
            live: true,
        };
        let index = TABLE.with(|table| {
            let mut table = table.borrow_mut();
            match table.free.pop() {
                Some(i) => {
                    table.slots[i] = slot;
                    i
                }
                None => {
                    table.slots.push(slot);
                    table.slots.len() - 1
                }
            }
        });
        Watch { slot: Some(index) }
    }

    fn with_slot<R>(&self, f: impl FnOnce(&mut Slot) -> R) -> Option<R> {
        let index = self.slot?;
        TABLE.with(|table| table.borrow_mut().slots.get_mut(index).map(f))
    }

    /// After the received bytes were run: whether a command completed, and how many
    /// bytes are still held (the start of the next command, or commands not run yet).
    pub fn received(&self, completed: bool, held: usize) {
        if self.slot.is_none() {
            return;
        }
        let now = now();
        self.with_slot(|slot| {
            let a = &mut slot.activity;
            if completed {
                a.last = now;
                a.partial_since = (held > 0).then_some(now);
                // A flag set before this progress no longer stands.
                slot.expired = None;
            } else if held > 0 && a.partial_since.is_none() {
                a.partial_since = Some(now);
            } else if held == 0 {
                a.partial_since = None;
            }
            a.partial_bytes = held;
        });
    }

    /// A reply the socket did not take at once is being written (`true`), or is out.
    pub fn writing(&self, writing: bool) {
        if self.slot.is_none() {
            return;
        }
        let now = now();
        self.with_slot(|slot| {
            slot.activity.writing = writing;
            slot.activity.last = now;
        });
    }

    /// Part of a stalled reply went out: the idle time counts from here.
    pub fn wrote(&self) {
        if self.slot.is_none() {
            return;
        }
        let now = now();
        self.with_slot(|slot| {
            slot.activity.last = now;
            if slot.expired == Some(Expired::Idle) {
                slot.expired = None;
            }
        });
    }

    /// `fut` (a read or a write on the connection's socket), or why the sweep closes
    /// the connection if it does while `fut` waits.
    pub async fn until_expired<F: Future>(&self, fut: F) -> Result<F::Output, Expired> {
        let mut fut = std::pin::pin!(fut);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                return Poll::Ready(Ok(out));
            }
            let expired = self.with_slot(|slot| {
                if slot.expired.is_none() && !slot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    slot.waker = Some(cx.waker().clone());
                }
                slot.expired
            });
            match expired.flatten() {
                Some(why) => Poll::Ready(Err(why)),
                None => Poll::Pending,
            }
        })
        .await
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let Some(index) = self.slot else {
            return;
        };
        let _ = TABLE.try_with(|table| {
            let mut table = table.borrow_mut();
            if let Some(slot) = table.slots.get_mut(index) {
                slot.live = false;
                slot.waker = None;
                slot.expired = None;
                table.free.push(index);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(300);
    const COMMAND: Duration = Duration::from_secs(10);

    fn timeouts() -> Timeouts {
        Timeouts {
            idle: Some(IDLE),
            command: Some(COMMAND),
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn idle_and_partial_commands_have_their_own_deadlines() {
        let t0 = Instant::now();
        let t = timeouts();
        let mut a = Activity::new(t0);
        assert_eq!(t.expired(&a, t0 + IDLE), None);
        assert_eq!(t.expired(&a, t0 + IDLE + secs(1)), Some(Expired::Idle));
        // A command under way: only its own deadline counts, not the idle one.
        a.partial_since = Some(t0 + secs(1000));
        a.partial_bytes = 10;
        assert_eq!(t.expired(&a, t0 + secs(1010)), None);
        assert_eq!(t.expired(&a, t0 + secs(1011)), Some(Expired::SlowCommand));
        // A large command gets a second per MiB received.
        a.partial_bytes = 5 << 20;
        assert_eq!(t.expired(&a, t0 + secs(1015)), None);
        assert_eq!(t.expired(&a, t0 + secs(1016)), Some(Expired::SlowCommand));
        // A reply the client does not read: the idle rule, from the last progress.
        a.writing = true;
        a.last = t0 + secs(1000);
        assert_eq!(t.expired(&a, t0 + secs(1100)), None);
        assert_eq!(t.expired(&a, t0 + secs(1301)), Some(Expired::Idle));
    }

    #[test]
    fn none_means_never() {
        let t0 = Instant::now();
        let never = Timeouts {
            idle: None,
            command: None,
        };
        let mut a = Activity::new(t0);
        assert_eq!(never.expired(&a, t0 + secs(1_000_000)), None);
        assert_eq!(never.tick(), None);
        a.partial_since = Some(t0);
        let idle_only = Timeouts {
            idle: Some(IDLE),
            command: None,
        };
        assert_eq!(idle_only.expired(&a, t0 + secs(1_000_000)), None, "no command timeout");
        assert_eq!(idle_only.tick(), Some(secs(1)));
    }

    #[test]
    fn the_tick_is_a_tenth_of_the_shorter_timeout_within_bounds() {
        assert_eq!(timeouts().tick(), Some(secs(1)));
        let short = Timeouts {
            idle: Some(Duration::from_millis(400)),
            command: Some(Duration::from_millis(900)),
        };
        assert_eq!(short.tick(), Some(Duration::from_millis(40)));
        let tiny = Timeouts {
            idle: None,
            command: Some(Duration::from_millis(1)),
        };
        assert_eq!(tiny.tick(), Some(Duration::from_millis(10)));
    }

    /// The sweep wakes a connection waiting on its socket once a deadline passes, on
    /// tokio's paused clock; a command completing in time keeps it.
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn the_sweep_closes_idle_and_slow_connections() {
        let sweeper = tokio::spawn(sweep(timeouts()));
        tokio::task::yield_now().await;
        // Idle: never sends anything.
        let idle = tokio::spawn(async {
            let watch = Watch::register(&timeouts());
            let started = Instant::now();
            let end = watch.until_expired(std::future::pending::<()>()).await;
            (end, started.elapsed())
        });
        // Slow: sends the start of a command and nothing more.
        let slow = tokio::spawn(async {
            let watch = Watch::register(&timeouts());
            watch.received(false, 12);
            let started = Instant::now();
            let end = watch.until_expired(std::future::pending::<()>()).await;
            (end, started.elapsed())
        });
        // Busy: a command every 5 s, for 10 minutes.
        let busy = tokio::spawn(async {
            let watch = Watch::register(&timeouts());
            for _ in 0..120 {
                let end = watch.until_expired(tokio::time::sleep(secs(5))).await;
                assert_eq!(end, Ok(()));
                watch.received(true, 0);
            }
        });
        let (end, took) = slow.await.unwrap();
        assert_eq!(end, Err(Expired::SlowCommand));
        assert!(took > COMMAND - secs(1) && took <= COMMAND + secs(2), "{took:?}");
        let (end, took) = idle.await.unwrap();
        assert_eq!(end, Err(Expired::Idle));
        assert!(took > IDLE - secs(1) && took <= IDLE + secs(2), "{took:?}");
        busy.await.unwrap();
        sweeper.abort();
        let _ = sweeper.await;
        assert_eq!(NOW.with(|n| n.get()), None, "the coarse clock stops with the sweep");
        TABLE.with(|t| {
            let t = t.borrow();
            assert!(t.slots.iter().all(|s| !s.live), "every watch left the table");
            assert_eq!(t.free.len(), t.slots.len());
        });
    }
}
