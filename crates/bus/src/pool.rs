use std::any::Any;
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use tokio::sync::watch;

use crate::RetryBudget;

/// One ready instance of a service, as the bus sees it.
pub struct Member {
    /// Instance id, for example `web-2`.
    pub id: String,
    pub addr: SocketAddr,
    inflight: AtomicUsize,
    served: AtomicU64,
    /// Set when the member left the pool or a caller saw it fail; never chosen again.
    gone: AtomicBool,
    /// Not chosen until this time (ms since [`epoch`]), after a caller saw it fail.
    suspect_until: AtomicU64,
    /// Where the transport keeps its per-member state (connection pool).
    transport: OnceLock<Box<dyn Any + Send + Sync>>,
    /// The pool's waiters for room, told when a request here ends (set on join).
    room: OnceLock<Arc<RoomWaiters>>,
}

/// What [`Pool::find_room`] found for a request whose chosen member is full.
pub enum Room {
    /// This member has room: send it there.
    Use(Arc<Member>),
    /// Waited for room: pick again.
    Waited,
    /// Send it to the chosen member anyway (not buffering, or too many held).
    Send,
}

/// What [`Pool::sheds`] says of a request at the pool's maximum size.
pub enum Shed {
    No,
    /// The chosen member is at the limit but this one is not.
    Use(Arc<Member>),
    /// Every member is at the limit: answer 503.
    Yes,
}

/// Requests waiting at the gateway for a member with room, and their wake-up.
#[derive(Default)]
struct RoomWaiters {
    waiting: AtomicUsize,
    notify: tokio::sync::Notify,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("id", &self.id)
            .field("addr", &self.addr)
            .field("inflight", &self.inflight())
            .finish()
    }
}

impl Member {
    pub fn new(id: impl Into<String>, addr: SocketAddr) -> Arc<Member> {
        Arc::new(Member {
            id: id.into(),
            addr,
            inflight: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            gone: AtomicBool::new(false),
            suspect_until: AtomicU64::new(0),
            transport: OnceLock::new(),
            room: OnceLock::new(),
        })
    }

    /// Requests relayed to this member and not yet answered.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }

    /// Requests relayed to this member so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Left its pool: never chosen again.
    pub fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Relaxed)
    }

    /// Left its pool, or failed a caller a moment ago.
    pub fn is_unavailable(&self) -> bool {
        if self.is_gone() {
            return true;
        }
        let until = self.suspect_until.load(Ordering::Relaxed);
        until != 0 && now_ms() < until
    }

    /// Counts a request as in flight until the guard is dropped.
    pub fn begin(self: &Arc<Self>) -> MemberGuard {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        self.served.fetch_add(1, Ordering::Relaxed);
        MemberGuard { member: self.clone() }
    }

    /// The transport's state for this member, made on first use.
    pub fn transport<T: Any + Send + Sync>(&self, init: impl FnOnce() -> T) -> &T {
        self.transport
            .get_or_init(|| Box::new(init()))
            .downcast_ref::<T>()
            .expect("one transport type per member")
    }
}

/// Keeps a request counted as in flight on its member.
pub struct MemberGuard {
    member: Arc<Member>,
}

impl MemberGuard {
    pub fn member(&self) -> &Arc<Member> {
        &self.member
    }
}

impl Drop for MemberGuard {
    fn drop(&mut self) {
        // SeqCst with the waiter's increment of `waiting` and read of `inflight`: either
        // it sees this request gone, or this sees it waiting (store-buffer pattern).
        self.member.inflight.fetch_sub(1, Ordering::SeqCst);
        if let Some(room) = self.member.room.get() {
            if room.waiting.load(Ordering::SeqCst) > 0 {
                room.notify.notify_one();
            }
        }
    }
}

/// The ready members of one service.
pub struct Pool {
    pub service: String,
    members: RwLock<Arc<[Arc<Member>]>>,
    ready: watch::Sender<usize>,
    pub budget: RetryBudget,
    /// Scale from zero: callers finding no member hold the request and ask for one.
    holds: std::sync::atomic::AtomicBool,
    /// Requests held right now, waiting for a member.
    held: std::sync::atomic::AtomicUsize,
    /// Wakes the autoscaler: a request held at zero, or a member past its concurrency
    /// target. `signalled` keeps a burst of requests to one wake-up.
    demand: tokio::sync::Notify,
    signalled: AtomicBool,
    /// In flight on one member past which the autoscaler is woken; 0: not autoscaled.
    saturation: AtomicUsize,
    /// In flight on the chosen member at which a request is shed; 0: never.
    shed_at: AtomicUsize,
    shed: AtomicU64,
    /// While instances are starting, a request whose chosen member is at the saturation
    /// count waits here for room or a new member instead of queueing on that member.
    buffering: AtomicBool,
    room: Arc<RoomWaiters>,
    /// Requests answered by members that have left, for [`Pool::served_total`].
    served_gone: AtomicU64,
    /// When the last request came (monotonic ms), for idle scale-down. On a cache line of
    /// its own, away from the fields every request reads.
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

/// Most requests one pool holds while an instance starts; more get 503.
pub const MAX_HELD: usize = 1024;

/// How long a member a caller saw fail is passed over.
pub const SUSPECT_FOR: std::time::Duration = std::time::Duration::from_secs(2);

/// Milliseconds since the first call, from the monotonic clock.
fn now_ms() -> u64 {
    static EPOCH: OnceLock<std::time::Instant> = OnceLock::new();
    EPOCH.get_or_init(std::time::Instant::now).elapsed().as_millis() as u64 + 1
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let local = 0u8;
    (t ^ (&local as *const u8 as u64).rotate_left(32)) | 1
}

/// xorshift64*: enough randomness to pick two members.
fn next_random() -> u64 {
    RNG.with(|state| {
        let mut x = state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

impl Pool {
    pub(crate) fn new(service: &str) -> Pool {
        Pool {
            service: service.to_string(),
            members: RwLock::new(Arc::from(Vec::new())),
            ready: watch::channel(0).0,
            budget: RetryBudget::default(),
            holds: Default::default(),
            held: Default::default(),
            demand: tokio::sync::Notify::new(),
            signalled: AtomicBool::new(false),
            saturation: AtomicUsize::new(0),
            shed_at: AtomicUsize::new(0),
            shed: AtomicU64::new(0),
            buffering: AtomicBool::new(false),
            room: Arc::default(),
            served_gone: AtomicU64::new(0),
            last_request_ms: Padded(AtomicU64::new(now_ms())),
        }
    }

    /// Lets callers hold a request while an instance starts (a service that may run
    /// none), instead of answering at once that no member is ready.
    pub fn set_scale_from_zero(&self, on: bool) {
        self.holds.store(on, Ordering::Relaxed);
    }

    pub fn scales_from_zero(&self) -> bool {
        self.holds.load(Ordering::Relaxed)
    }

    /// Takes a place among the held requests; None when [`MAX_HELD`] are held already.
    pub fn hold(&self) -> Option<Held<'_>> {
        let n = self.held.fetch_add(1, Ordering::Relaxed);
        if n >= MAX_HELD {
            self.held.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        self.signal();
        Some(Held(self))
    }

    fn signal(&self) {
        if !self.signalled.swap(true, Ordering::AcqRel) {
            self.demand.notify_one();
        }
    }

    /// Resolves when a caller asked for a member of an empty pool, or a member went past
    /// the concurrency set by [`Pool::set_saturation`].
    pub async fn demanded(&self) {
        self.demand.notified().await;
        self.signalled.store(false, Ordering::Release);
    }

    /// Wake [`Pool::demanded`] when a member has more than `inflight` requests in flight
    /// (0: never).
    pub fn set_saturation(&self, inflight: usize) {
        self.saturation.store(inflight, Ordering::Relaxed);
    }

    /// Called with a member's in-flight count once a request is counted on it.
    #[inline]
    pub fn note_inflight(&self, inflight: usize) {
        let saturation = self.saturation.load(Ordering::Relaxed);
        if saturation != 0 && inflight > saturation && !self.signalled.load(Ordering::Relaxed) {
            self.signal();
        }
    }

    /// Shed requests (503) whose chosen member has `inflight` in flight already; 0: never.
    /// The autoscaler sets it while the pool is at its maximum size.
    pub fn set_shed_at(&self, inflight: usize) {
        self.shed_at.store(inflight, Ordering::Relaxed);
    }

    /// Whether a request about to go to `member` is to be shed. Only when the chosen
    /// member is at the limit is every other one looked at: a request is shed when none
    /// (but those in `tried`) has room, and moved to the least loaded one otherwise.
    #[inline]
    pub fn sheds(&self, member: &Arc<Member>, tried: &[Arc<Member>]) -> Shed {
        let at = self.shed_at.load(Ordering::Relaxed);
        if at == 0 || member.inflight() < at {
            return Shed::No;
        }
        match self.least_loaded_under(at, tried) {
            Some(other) => Shed::Use(other),
            None => {
                self.shed.fetch_add(1, Ordering::Relaxed);
                Shed::Yes
            }
        }
    }

    /// The least loaded available member with fewer than `limit` in flight, passing over
    /// `tried`.
    fn least_loaded_under(&self, limit: usize, tried: &[Arc<Member>]) -> Option<Arc<Member>> {
        self.members
            .read()
            .unwrap()
            .iter()
            .filter(|m| !m.is_unavailable() && !tried.iter().any(|t| Arc::ptr_eq(t, m)))
            .map(|m| (m.inflight.load(Ordering::SeqCst), m))
            .filter(|(n, _)| *n < limit)
            .min_by_key(|(n, _)| *n)
            .map(|(_, m)| m.clone())
    }

    /// While on (the autoscaler sets it while instances it asked for are starting), a
    /// request whose chosen member has the saturation count in flight waits at the caller
    /// ([`Pool::wait_for_room`]) rather than queueing on that member.
    pub fn set_buffering(&self, on: bool) {
        self.buffering.store(on, Ordering::Relaxed);
    }

    /// Whether a request about to go to `member` should wait for room instead.
    #[inline]
    pub fn should_buffer(&self, member: &Member) -> bool {
        if !self.buffering.load(Ordering::Relaxed) {
            return false;
        }
        let saturation = self.saturation.load(Ordering::Relaxed);
        saturation != 0 && member.inflight() >= saturation
    }

    /// For a request whose chosen member is full while buffering: another member with
    /// room (not in `tried`), or a wait (counted as held) until one may have room, a member
    /// joins, or 100 ms or `timeout` pass, after which the caller picks again. Never
    /// returns [`Room::Waited`] without having waited, so a caller's loop cannot spin.
    pub async fn find_room(&self, tried: &[Arc<Member>], timeout: std::time::Duration) -> Room {
        let saturation = self.saturation.load(Ordering::Relaxed);
        if let Some(m) = self.least_loaded_under(saturation, tried) {
            return Room::Use(m);
        }
        if !self.buffering.load(Ordering::Relaxed) {
            return Room::Send;
        }
        let Some(_held) = self.hold() else {
            // Too many held already: queue on the member rather than hold without bound.
            return Room::Send;
        };
        self.room.waiting.fetch_add(1, Ordering::SeqCst);
        struct Leave<'a>(&'a RoomWaiters);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.waiting.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _leave = Leave(&self.room);
        let notified = self.room.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(m) = self.least_loaded_under(saturation, tried) {
            return Room::Use(m);
        }
        let mut ready = self.ready.subscribe();
        tokio::select! {
            _ = notified => {}
            _ = ready.changed() => {}
            _ = tokio::time::sleep(timeout.min(std::time::Duration::from_millis(100))) => {}
        }
        Room::Waited
    }

    /// Requests relayed to the pool's members so far, those that have left included.
    pub fn served_total(&self) -> u64 {
        let current: u64 = self.members().iter().map(|m| m.served()).sum();
        self.served_gone.load(Ordering::Relaxed) + current
    }

    /// Requests shed so far.
    pub fn shed_count(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }

    /// Requests held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Notes a request, for [`Pool::idle_for`]. Written at most once per 10 ms: every
    /// gateway thread calls it, and a store per request would bounce its cache line
    /// between cores.
    #[inline]
    pub fn touch(&self) {
        let now = now_ms();
        if now > self.last_request_ms.load(Ordering::Relaxed) + 10 {
            self.last_request_ms.store(now, Ordering::Relaxed);
        }
    }

    /// Time since the last request.
    pub fn idle_for(&self) -> std::time::Duration {
        std::time::Duration::from_millis(now_ms().saturating_sub(self.last_request_ms.load(Ordering::Relaxed)))
    }

    /// Adds a ready member.
    pub fn join(&self, member: Arc<Member>) {
        let _ = member.room.set(self.room.clone());
        let mut members = self.members.write().unwrap();
        let mut next: Vec<_> = members.iter().cloned().collect();
        next.push(member);
        *members = Arc::from(next);
        self.ready.send_replace(members.len());
    }

    /// Removes a member: it is never chosen again.
    pub fn leave(&self, id: &str) {
        let mut members = self.members.write().unwrap();
        let mut next: Vec<_> = members.iter().cloned().collect();
        next.retain(|m| {
            if m.id == id {
                m.gone.store(true, Ordering::Relaxed);
                self.served_gone.fetch_add(m.served(), Ordering::Relaxed);
                false
            } else {
                true
            }
        });
        *members = Arc::from(next);
        self.ready.send_replace(members.len());
    }

    /// A caller saw the member fail (refused or reset): it is not chosen for a moment,
    /// while the App Service finds out whether its process is gone. A member that only
    /// dropped one connection is chosen again afterwards.
    pub fn suspect(&self, member: &Member) {
        member
            .suspect_until
            .store(now_ms() + SUSPECT_FOR.as_millis() as u64, Ordering::Relaxed);
    }

    /// A snapshot of the ready members.
    pub fn members(&self) -> Arc<[Arc<Member>]> {
        self.members.read().unwrap().clone()
    }

    /// Number of ready members, watchable.
    pub fn watch_ready(&self) -> watch::Receiver<usize> {
        self.ready.subscribe()
    }

    /// Chooses one member for a request: the less loaded of two picked at random
    /// (power of two choices), skipping members already tried for this request.
    pub fn pick(&self, tried: &[Arc<Member>]) -> Option<Arc<Member>> {
        let members = self.members.read().unwrap();
        let eligible = |m: &Arc<Member>| !m.is_unavailable() && !tried.iter().any(|t| Arc::ptr_eq(t, m));
        match members.len() {
            0 => None,
            1 => Some(members[0].clone()).filter(eligible),
            n => {
                let r = next_random();
                let a = (r % n as u64) as usize;
                let mut b = ((r >> 32) % (n as u64 - 1)) as usize;
                if b >= a {
                    b += 1;
                }
                let (ma, mb) = (&members[a], &members[b]);
                let choice = match (eligible(ma), eligible(mb)) {
                    (true, true) => {
                        if mb.inflight() < ma.inflight() {
                            mb
                        } else {
                            ma
                        }
                    }
                    (true, false) => ma,
                    (false, true) => mb,
                    (false, false) => {
                        return members
                            .iter()
                            .filter(|m| eligible(m))
                            .min_by_key(|m| m.inflight())
                            .cloned()
                    }
                };
                Some(choice.clone())
            }
        }
    }
}

/// A request held while an instance starts; dropping it lets another take its place.
pub struct Held<'a>(&'a Pool);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn membership_follows_join_and_leave() {
        let pool = Pool::new("web");
        let ready = pool.watch_ready();
        assert!(pool.pick(&[]).is_none());
        pool.join(Member::new("web-1", addr(1)));
        pool.join(Member::new("web-2", addr(2)));
        assert_eq!(*ready.borrow(), 2);
        pool.leave("web-1");
        assert_eq!(*ready.borrow(), 1);
        for _ in 0..100 {
            assert_eq!(pool.pick(&[]).unwrap().id, "web-2");
        }
    }

    #[test]
    fn pick_spreads_and_prefers_less_loaded() {
        let pool = Pool::new("web");
        for i in 0..4 {
            pool.join(Member::new(format!("web-{i}"), addr(i)));
        }
        let mut counts = [0usize; 4];
        for _ in 0..4000 {
            let m = pool.pick(&[]).unwrap();
            counts[m.addr.port() as usize] += 1;
        }
        for c in counts {
            assert!(c > 500, "uneven spread: {counts:?}");
        }
        // A member with many requests in flight is chosen far less often.
        let busy = pool.members()[0].clone();
        let _guards: Vec<_> = (0..10).map(|_| busy.begin()).collect();
        let busy_picks = (0..3000)
            .filter(|_| Arc::ptr_eq(&pool.pick(&[]).unwrap(), &busy))
            .count();
        assert_eq!(busy_picks, 0, "p2c never prefers the loaded member over an idle one");
    }

    #[test]
    fn pick_skips_tried_and_suspected_members() {
        let pool = Pool::new("web");
        pool.join(Member::new("web-1", addr(1)));
        pool.join(Member::new("web-2", addr(2)));
        let first = pool.pick(&[]).unwrap();
        for _ in 0..100 {
            let other = pool.pick(std::slice::from_ref(&first)).unwrap();
            assert!(!Arc::ptr_eq(&other, &first));
        }
        pool.suspect(&first);
        let remaining = pool.pick(&[]).unwrap();
        assert!(!Arc::ptr_eq(&remaining, &first));
        assert!(pool.pick(&[remaining]).is_none());
    }

    #[test]
    fn saturation_wakes_once_per_burst_and_shedding_follows_the_limit() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let pool = Pool::new("web");
            let m = Member::new("web-1", addr(1));
            pool.join(m.clone());
            pool.note_inflight(100);
            let quiet = tokio::time::timeout(std::time::Duration::from_millis(20), pool.demanded()).await;
            assert!(quiet.is_err(), "not autoscaled: no wake-up");
            pool.set_saturation(4);
            pool.note_inflight(4);
            let quiet = tokio::time::timeout(std::time::Duration::from_millis(20), pool.demanded()).await;
            assert!(quiet.is_err(), "at the target, not past it");
            for n in 5..50 {
                pool.note_inflight(n);
            }
            pool.demanded().await;
            let quiet = tokio::time::timeout(std::time::Duration::from_millis(20), pool.demanded()).await;
            assert!(quiet.is_err(), "one wake-up for the burst");
            pool.note_inflight(5);
            pool.demanded().await;

            let _guards: Vec<_> = (0..3).map(|_| m.begin()).collect();
            assert!(matches!(pool.sheds(&m, &[]), Shed::No), "shedding off");
            pool.set_shed_at(3);
            assert!(matches!(pool.sheds(&m, &[]), Shed::Yes));
            pool.set_shed_at(4);
            assert!(matches!(pool.sheds(&m, &[]), Shed::No));
            assert_eq!(pool.shed_count(), 1);
            // A full member is passed over for one with room; shed only when none has.
            pool.set_shed_at(3);
            let idle = Member::new("web-2", addr(2));
            pool.join(idle.clone());
            assert!(matches!(pool.sheds(&m, &[]), Shed::Use(other) if Arc::ptr_eq(&other, &idle)));
            assert!(matches!(pool.sheds(&m, std::slice::from_ref(&idle)), Shed::Yes));
            assert_eq!(pool.shed_count(), 2);
        });
    }

    #[test]
    fn inflight_counts_until_guard_drops() {
        let m = Member::new("web-1", addr(1));
        let g = m.begin();
        assert_eq!(m.inflight(), 1);
        drop(g);
        assert_eq!(m.inflight(), 0);
        assert_eq!(m.served(), 1);
    }
}
