//! [`Admission`]: the request path's side of one service's autoscaler. The relay calls
//! it through the bus trait ([`strata_bus::Admission`]) for every request to the pool;
//! the autoscaler task reads the signals it keeps and sets its modes.
//!
//! - Holding at zero: a request for an empty pool waits for a member (at most
//!   [`MAX_HELD`] per service) and wakes the task.
//! - Saturation: a member past `concurrency` in flight wakes the task, once per burst.
//! - Buffering (set by the task while instances it asked for start): a request whose
//!   pick is full goes to a member with room, or waits for one (counted as held).
//! - Shedding (set by the task at `instances.max` with every instance ready): a request
//!   whose pick is at `max_inflight` goes to a member under it, or is shed (503).
//! - Idle: the time of the last request.
//!
//! Buffering needs the target above the ready count and shedding needs every instance of
//! the maximum ready, so the task never sets both at once.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use strata_bus::{Held, Member, Placement, Pool, Waiting};
use tokio::sync::Notify;

/// Most requests one service holds (at zero, or buffered while instances start); more
/// get 503 at zero, or go to their member's queue while buffering.
pub const MAX_HELD: usize = 1024;

/// Longest wait for room before a buffered request picks again.
const ROOM_ROUND: Duration = Duration::from_millis(100);

/// Admission of one autoscaled service's requests, and the load signals they leave.
pub struct Admission {
    /// Scale from zero: a request finding no member is held while one starts.
    holds: bool,
    /// In flight on one member past which the task is woken, and at which a buffered
    /// request looks for room elsewhere.
    saturation: usize,
    /// Requests held right now (at zero, or buffered).
    held: AtomicUsize,
    /// Wakes the task: a request held, or a member past saturation. `signalled` keeps a
    /// burst of requests to one wake-up.
    demand: Notify,
    signalled: AtomicBool,
    /// While instances are starting: wait for room rather than queue on a full member.
    buffering: AtomicBool,
    /// In flight on the chosen member at which a request is shed; 0: never.
    shed_at: AtomicUsize,
    /// A function's hard cap per instance (its `concurrency`), at any pool size; 0: none.
    cap: usize,
    shed: AtomicU64,
    /// Of `shed`: a function's requests shed below its `max_instances`, every member at
    /// its cap and [`MAX_HELD`] requests waiting for room already.
    shed_held_full: AtomicU64,
    /// When the last request came (monotonic ms). On a cache line of its own, away from
    /// the fields every request reads.
    last_request_ms: Padded<AtomicU64>,
}

/// A value alone on its cache line (128 bytes: adjacent-line prefetch pairs lines).
#[repr(align(128))]
struct Padded<T>(T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Milliseconds since the first call, from the monotonic clock.
fn now_ms() -> u64 {
    static EPOCH: OnceLock<std::time::Instant> = OnceLock::new();
    EPOCH.get_or_init(std::time::Instant::now).elapsed().as_millis() as u64 + 1
}

impl Admission {
    /// The admission of the service `scaled` describes: holding at zero when it may run
    /// no instance; saturated past its `autoscale.concurrency`. Buffering and shedding
    /// start off; the task turns them on.
    pub fn new(scaled: &crate::Scaled) -> Admission {
        let mut admission = Admission::with(scaled.min == 0, scaled.spec.concurrency as usize);
        if scaled.capped {
            admission.cap = scaled.spec.shed_at() as usize;
        }
        admission
    }

    /// The admission of a service that a cluster's scheduler sizes and may scale to
    /// zero: it holds a request that finds no member on any node, and signals
    /// [`Admission::demanded`] so that the node can report it; the scheduler decides,
    /// so no saturation signal, buffering or shedding here.
    pub fn holding() -> Admission {
        Admission::with(true, 0)
    }

    /// The admission of a service a cluster's scheduler sizes: holding at zero when
    /// `holds` (as [`Admission::holding`]); shedding is set from outside with
    /// [`Admission::set_shed_at`] by the node, which knows the cluster's members.
    pub fn placed(holds: bool) -> Admission {
        Admission::with(holds, 0)
    }

    fn with(holds: bool, saturation: usize) -> Admission {
        Admission {
            holds,
            saturation,
            held: AtomicUsize::new(0),
            demand: Notify::new(),
            signalled: AtomicBool::new(false),
            buffering: AtomicBool::new(false),
            shed_at: AtomicUsize::new(0),
            cap: 0,
            shed: AtomicU64::new(0),
            shed_held_full: AtomicU64::new(0),
            last_request_ms: Padded(AtomicU64::new(now_ms())),
        }
    }

    /// Requests held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Requests shed so far.
    pub fn shed_count(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }

    /// Of [`Admission::shed_count`]: those shed below the pool's maximum because
    /// [`MAX_HELD`] requests were waiting for room already (a function's cap).
    pub fn shed_held_full_count(&self) -> u64 {
        self.shed_held_full.load(Ordering::Relaxed)
    }

    /// Time since the last request.
    pub fn idle_for(&self) -> Duration {
        self.idle_at(now_ms())
    }

    fn idle_at(&self, now_ms: u64) -> Duration {
        Duration::from_millis(now_ms.saturating_sub(self.last_request_ms.load(Ordering::Relaxed)))
    }

    /// Notes a request at `now_ms`. Written at most once per 10 ms: every gateway thread
    /// calls it, and a store per request would bounce its cache line between cores.
    #[inline]
    fn arrived_at(&self, now_ms: u64) {
        if now_ms > self.last_request_ms.load(Ordering::Relaxed) + 10 {
            self.last_request_ms.store(now_ms, Ordering::Relaxed);
        }
    }

    /// Resolves when a request was held, or a member went past saturation.
    pub async fn demanded(&self) {
        self.demand.notified().await;
        self.signalled.store(false, Ordering::Release);
    }

    /// While on, a request whose pick is saturated waits for room instead of queueing.
    pub(crate) fn set_buffering(&self, on: bool) {
        self.buffering.store(on, Ordering::Relaxed);
    }

    /// Shed requests whose pick has `inflight` in flight already (and so has every other
    /// member); 0: never.
    pub fn set_shed_at(&self, inflight: usize) {
        self.shed_at.store(inflight, Ordering::Relaxed);
    }

    fn signal(&self) {
        if !self.signalled.swap(true, Ordering::AcqRel) {
            self.demand.notify_one();
        }
    }

    /// Takes a place among the held requests and wakes the task; None when [`MAX_HELD`]
    /// are held already.
    fn take_held(&self) -> Option<HeldSlot<'_>> {
        let n = self.held.fetch_add(1, Ordering::Relaxed);
        if n >= MAX_HELD {
            self.held.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        self.signal();
        Some(HeldSlot(self))
    }
}

/// A place among the held requests; dropping it lets another take it.
struct HeldSlot<'a>(&'a Admission);

impl Drop for HeldSlot<'_> {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::Relaxed);
    }
}

impl strata_bus::Admission for Admission {
    fn arrived(&self) {
        self.arrived_at(now_ms());
    }

    fn holds(&self) -> bool {
        self.holds
    }

    fn hold<'a>(&'a self, pool: &'a Pool, within: Duration) -> Waiting<'a, Held> {
        Box::pin(async move {
            // Read before `gave_up` (which `start_failed` sets before it counts): a
            // failure between the two is either counted here or seen by the wait.
            let failures = pool.start_failures();
            if pool.gave_up() || pool.backing_off() {
                return Held::Failed;
            }
            let Some(_held) = self.take_held() else {
                return Held::Full;
            };
            let mut ready = pool.watch_ready();
            let joined = tokio::time::timeout(within, async {
                let seen = ready.wait_for(|n| *n > 0 || pool.start_failures() != failures).await;
                seen.map(|n| *n > 0).ok()
            })
            .await;
            match joined {
                Ok(Some(true)) => Held::Ready,
                Ok(Some(false)) => Held::Failed,
                // The pool keeps its sender while borrowed: not seen in practice.
                Ok(None) => Held::Full,
                Err(_) => Held::Expired,
            }
        })
    }

    fn place(&self, pool: &Pool, member: &Arc<Member>, tried: &[Arc<Member>]) -> Placement {
        let mut placement = Placement::Send;
        if self.buffering.load(Ordering::Relaxed) && self.saturation != 0 && member.inflight() >= self.saturation {
            match pool.least_loaded_under(self.saturation, tried) {
                Some(other) => placement = Placement::Use(other),
                None if self.held() < MAX_HELD => return Placement::Wait,
                // Too many held already: queue on the member rather than hold without bound.
                None => {}
            }
        }
        let at = self.shed_at.load(Ordering::Relaxed);
        if at == 0 && self.cap != 0 {
            // A function below its max_instances: a member at its cap is passed over for
            // one with room, else the request waits for room or a new instance.
            let to = match &placement {
                Placement::Use(other) => other,
                _ => member,
            };
            if to.inflight() < self.cap {
                return placement;
            }
            return match pool.least_loaded_under(self.cap, tried) {
                Some(other) => Placement::Use(other),
                None if self.held() < MAX_HELD => Placement::Wait,
                None => {
                    self.shed_held_full.fetch_add(1, Ordering::Relaxed);
                    self.shed.fetch_add(1, Ordering::Relaxed);
                    Placement::Shed
                }
            };
        }
        if at == 0 {
            return placement;
        }
        let to = match &placement {
            Placement::Use(other) => other,
            _ => member,
        };
        if to.inflight() < at {
            return placement;
        }
        // Only when the chosen member is at the limit is every other one looked at.
        match pool.least_loaded_under(at, tried) {
            Some(other) => Placement::Use(other),
            None => {
                self.shed.fetch_add(1, Ordering::Relaxed);
                Placement::Shed
            }
        }
    }

    fn wait_for_room<'a>(&'a self, pool: &'a Pool, tried: &'a [Arc<Member>], within: Duration) -> Waiting<'a, bool> {
        Box::pin(async move {
            let Some(_held) = self.take_held() else {
                return false;
            };
            // The limit `place` waited on: a function's cap, else the saturation.
            let limit = if self.cap != 0 { self.cap } else { self.saturation };
            pool.until_room(within.min(ROOM_ROUND), || {
                pool.least_loaded_under(limit, tried).is_some()
            })
            .await;
            true
        })
    }

    fn counted(&self, inflight: usize) {
        if self.saturation != 0 && inflight > self.saturation && !self.signalled.load(Ordering::Relaxed) {
            self.signal();
        }
    }

    /// As `place` checks: the shedding limit at the pool's maximum, else a function's
    /// cap, else while instances start the saturation it buffers at (unless too many are
    /// held already, when `place` sends to a full member).
    fn limit(&self) -> usize {
        match self.shed_at.load(Ordering::Relaxed) {
            0 if self.cap != 0 => self.cap,
            0 if self.buffering.load(Ordering::Relaxed) && self.held() < MAX_HELD => self.saturation,
            0 => 0,
            at => at,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use strata_bus::{Admission as _, Bus};

    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn paused() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
    }

    /// Whether the task would be woken within 20 ms.
    async fn woken(a: &Admission) -> bool {
        tokio::time::timeout(Duration::from_millis(20), a.demanded())
            .await
            .is_ok()
    }

    #[test]
    fn saturation_wakes_the_task_once_per_burst() {
        paused().block_on(async {
            let off = Admission::with(false, 0);
            off.counted(100);
            assert!(!woken(&off).await, "no concurrency target: no wake-up");
            let a = Admission::with(false, 4);
            a.counted(4);
            assert!(!woken(&a).await, "at the target, not past it");
            for n in 5..50 {
                a.counted(n);
            }
            assert!(woken(&a).await);
            assert!(!woken(&a).await, "one wake-up for the burst");
            a.counted(5);
            assert!(woken(&a).await, "the next burst wakes it again");
        });
    }

    #[test]
    fn shedding_follows_the_limit_and_prefers_a_member_with_room() {
        let bus = Bus::new();
        let pool = bus.pool("web");
        let a = Admission::with(false, 1);
        let m = Member::new("web-1", addr(1));
        pool.join(m.clone());
        let _guards: Vec<_> = (0..3).map(|_| m.begin()).collect();
        assert!(matches!(a.place(&pool, &m, &[]), Placement::Send), "shedding off");
        a.set_shed_at(3);
        assert!(matches!(a.place(&pool, &m, &[]), Placement::Shed));
        a.set_shed_at(4);
        assert!(matches!(a.place(&pool, &m, &[]), Placement::Send));
        assert_eq!(a.shed_count(), 1);
        // A full member is passed over for one with room; shed only when none has.
        a.set_shed_at(3);
        let idle = Member::new("web-2", addr(2));
        pool.join(idle.clone());
        assert!(matches!(a.place(&pool, &m, &[]), Placement::Use(other) if Arc::ptr_eq(&other, &idle)));
        assert!(matches!(
            a.place(&pool, &m, std::slice::from_ref(&idle)),
            Placement::Shed
        ));
        assert_eq!(a.shed_count(), 2);
    }

    #[test]
    fn a_request_at_zero_is_held_until_a_member_joins_or_its_time_is_up() {
        paused().block_on(async {
            let bus = Bus::new();
            let pool = bus.pool("fn");
            let a = Arc::new(Admission::with(true, 1));
            assert!(a.holds());
            assert_eq!(a.hold(&pool, Duration::from_millis(300)).await, Held::Expired);
            assert!(woken(&a).await, "a held request wakes the task");
            let held = {
                let (a, pool) = (a.clone(), pool.clone());
                tokio::spawn(async move { a.hold(&pool, Duration::from_secs(30)).await })
            };
            tokio::time::sleep(Duration::from_millis(10)).await;
            assert_eq!(a.held(), 1);
            pool.join(Member::new("fn-1", addr(1)));
            assert_eq!(held.await.unwrap(), Held::Ready);
            assert_eq!(a.held(), 0);
            // Past MAX_HELD: refused at once.
            let slots: Vec<_> = (0..MAX_HELD).map(|_| a.take_held().unwrap()).collect();
            assert_eq!(a.hold(&pool, Duration::from_secs(30)).await, Held::Full);
            drop(slots);
            assert!(!Admission::with(false, 1).holds());
        });
    }

    #[test]
    fn while_buffering_a_full_pick_goes_to_room_or_waits_for_it() {
        paused().block_on(async {
            let bus = Bus::new();
            let pool = bus.pool("web");
            let a = Admission::with(false, 2);
            let (m1, m2) = (Member::new("web-1", addr(1)), Member::new("web-2", addr(2)));
            pool.join(m1.clone());
            pool.join(m2.clone());
            let mut g1: Vec<_> = (0..2).map(|_| m1.begin()).collect();
            assert!(matches!(a.place(&pool, &m1, &[]), Placement::Send), "not buffering");
            a.set_buffering(true);
            assert!(matches!(a.place(&pool, &m1, &[]), Placement::Use(o) if Arc::ptr_eq(&o, &m2)));
            let g2: Vec<_> = (0..2).map(|_| m2.begin()).collect();
            assert!(matches!(a.place(&pool, &m1, &[]), Placement::Wait));
            // The wait ends when a request ends (not after its 100 ms round), counted as held.
            let t = tokio::time::Instant::now();
            let wait = a.wait_for_room(&pool, &[], Duration::from_secs(30));
            let free = async {
                tokio::time::sleep(Duration::from_millis(40)).await;
                assert_eq!(a.held(), 1, "a buffered request counts as held");
                g1.pop();
            };
            let (waited, ()) = tokio::join!(wait, free);
            assert!(waited);
            assert_eq!(t.elapsed(), Duration::from_millis(40));
            assert_eq!(a.held(), 0);
            // No room comes: one round of 100 ms, or the deadline if sooner.
            g1.push(m1.begin());
            let t = tokio::time::Instant::now();
            assert!(a.wait_for_room(&pool, &[], Duration::from_secs(30)).await);
            assert_eq!(t.elapsed(), ROOM_ROUND);
            let t = tokio::time::Instant::now();
            assert!(a.wait_for_room(&pool, &[], Duration::from_millis(30)).await);
            assert_eq!(t.elapsed(), Duration::from_millis(30));
            // Too many held: the request goes to its member.
            let slots: Vec<_> = (0..MAX_HELD).map(|_| a.take_held().unwrap()).collect();
            assert!(matches!(a.place(&pool, &m1, &[]), Placement::Send));
            assert!(!a.wait_for_room(&pool, &[], Duration::from_secs(30)).await);
            drop((slots, g1, g2));
        });
    }

    #[test]
    fn arrivals_reset_the_idle_time_at_most_every_10_ms() {
        let a = Admission::with(true, 1);
        a.last_request_ms.store(1_000, Ordering::Relaxed);
        assert_eq!(a.idle_at(31_000), Duration::from_secs(30));
        a.arrived_at(31_000);
        assert_eq!(a.idle_at(31_004), Duration::from_millis(4));
        a.arrived_at(31_005);
        assert_eq!(a.idle_at(31_010), Duration::from_millis(10), "not stored: within 10 ms");
        a.arrived_at(31_020);
        assert_eq!(a.idle_at(31_020), Duration::ZERO);
    }

    #[test]
    fn a_functions_cap_holds_at_any_size_and_is_the_limit_taken() {
        let bus = Bus::new();
        let pool = bus.pool("hook");
        let mut a = Admission::with(true, 2);
        a.cap = 2;
        assert_eq!(a.limit(), 2, "the cap, below max_instances too");
        let m = Member::new("hook-1", addr(1));
        pool.join(m.clone());
        assert!(matches!(a.place(&pool, &m, &[]), Placement::Send));
        let _guards: Vec<_> = (0..2).map(|_| m.try_begin_under(a.limit()).unwrap()).collect();
        assert!(m.try_begin_under(a.limit()).is_none(), "taken atomically up to the cap");
        assert!(
            matches!(a.place(&pool, &m, &[]), Placement::Wait),
            "full: wait for room"
        );
        // Too many waiting for room already: shed below max_instances, counted apart.
        let slots: Vec<_> = (0..MAX_HELD).map(|_| a.take_held().unwrap()).collect();
        assert!(matches!(a.place(&pool, &m, &[]), Placement::Shed));
        assert_eq!((a.shed_count(), a.shed_held_full_count()), (1, 1));
        drop(slots);
        let idle = Member::new("hook-2", addr(2));
        pool.join(idle.clone());
        assert!(matches!(a.place(&pool, &m, &[]), Placement::Use(other) if Arc::ptr_eq(&other, &idle)));
        // At max_instances the shedding limit rules, as for any service.
        a.set_shed_at(2);
        assert_eq!(a.limit(), 2);
        assert!(matches!(
            a.place(&pool, &m, std::slice::from_ref(&idle)),
            Placement::Shed
        ));
        assert_eq!(
            (a.shed_count(), a.shed_held_full_count()),
            (2, 1),
            "at max: not below it"
        );
    }
}
