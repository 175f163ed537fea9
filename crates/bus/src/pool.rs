use std::any::Any;
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use tokio::sync::watch;

use crate::{Admission, RetryBudget};

/// One ready instance of a service, as the bus sees it.
pub struct Member {
    /// Instance id, for example `web-2`: unique in its pool.
    pub id: String,
    /// How messages, headers and traces name it: the id here; `web-2@b` for one on
    /// node b, as its `STRATA_INSTANCE` says.
    pub name: String,
    pub addr: SocketAddr,
    inflight: AtomicUsize,
    /// See [`Member::hold`].
    held: AtomicUsize,
    served: AtomicU64,
    /// Set when the member left the pool or a caller saw it fail; never chosen again.
    gone: AtomicBool,
    /// Its instance is being stopped on purpose (scaled in, replaced, its node
    /// stopping), not failing: see [`Member::stopping`].
    stopping: AtomicBool,
    /// Not chosen until this time (ms since [`epoch`]), after a caller saw it fail.
    suspect_until: AtomicU64,
    /// This node cannot reach it (see [`Member::cut`]); `cut_off` wakes the calls waiting
    /// on it.
    cut: AtomicBool,
    cut_off: tokio::sync::Notify,
    /// On another node (reached through that node's forwarder): on a tie in load the
    /// pick prefers a member on this node.
    remote: bool,
    /// Where the transport keeps its per-member state (connection pool).
    transport: OnceLock<Box<dyn Any + Send + Sync>>,
    /// The pool's waiters for room, told when a request here ends (set on join).
    room: OnceLock<Arc<RoomWaiters>>,
}

/// Callers waiting in [`Pool::until_room`], and their wake-up.
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
        let id = id.into();
        Self::with_place(id.clone(), id, addr, false)
    }

    /// A member running on another node, reached at `addr` (that node's forwarder),
    /// named `name` in what people read.
    pub fn new_remote(id: impl Into<String>, name: impl Into<String>, addr: SocketAddr) -> Arc<Member> {
        Self::with_place(id.into(), name.into(), addr, true)
    }

    /// Whether the member runs on another node.
    pub fn is_remote(&self) -> bool {
        self.remote
    }

    fn with_place(id: String, name: String, addr: SocketAddr, remote: bool) -> Arc<Member> {
        Arc::new(Member {
            id,
            name,
            addr,
            remote,
            inflight: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            gone: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            suspect_until: AtomicU64::new(0),
            cut: AtomicBool::new(false),
            cut_off: tokio::sync::Notify::new(),
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

    /// Marks its instance as being stopped on purpose, before it leaves its pool: a
    /// call it breaks off from then on was cut by the stop, not by a failure.
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// Whether its instance is being stopped on purpose ([`Member::stopping`]).
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// This node cannot reach the member (it is on another node, whose forwarder does not
    /// answer across a partition): calls waiting on it end now, as with a member that
    /// died, instead of at their deadline ([`Member::until_cut`]). Before it leaves its
    /// pool.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.cut_off.notify_waiters();
    }

    /// Whether [`Member::cut`] was called.
    pub fn is_cut(&self) -> bool {
        self.cut.load(Ordering::Relaxed)
    }

    /// Resolves once [`Member::cut`] was called (at once if it was).
    pub async fn until_cut(&self) {
        let notified = self.cut_off.notified();
        tokio::pin!(notified);
        // Registered before the flag is read: a cut between the two still wakes it.
        notified.as_mut().enable();
        if self.cut.load(Ordering::SeqCst) {
            return;
        }
        notified.await
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
        self.clone().begin_owned()
    }

    /// [`Member::begin`] only while fewer than `limit` are in flight (taken atomically:
    /// requests placed at the same moment, as held ones released together, each get
    /// their own count); None when the member is at its limit.
    pub fn try_begin_under(self: &Arc<Self>, limit: usize) -> Option<MemberGuard> {
        self.inflight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < limit).then_some(n + 1))
            .ok()?;
        self.served.fetch_add(1, Ordering::Relaxed);
        Some(MemberGuard { member: self.clone() })
    }

    /// [`Member::begin`] with the caller's reference, which the guard keeps
    /// ([`MemberGuard::member`]): no further count on the reference, which the threads
    /// that relay to one member would take from each other's caches.
    pub fn begin_owned(self: Arc<Self>) -> MemberGuard {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        self.served.fetch_add(1, Ordering::Relaxed);
        MemberGuard { member: self }
    }

    /// Keeps the member from being stopped (its drain waits) until the guard is dropped,
    /// without counting as load: for what uses the member besides this node's relay. In a
    /// cluster, a request from another node's gateway that came through the forwarder
    /// and is not answered yet, and the moment after the member left its pool while the
    /// other nodes may not have heard of it.
    pub fn hold(self: &Arc<Self>) -> Hold {
        self.held.fetch_add(1, Ordering::Relaxed);
        Hold { member: self.clone() }
    }

    /// Holds taken by [`Member::hold`] and not yet dropped.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
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

/// Keeps a member from being stopped (see [`Member::hold`]).
pub struct Hold {
    member: Arc<Member>,
}

impl Hold {
    /// The member held.
    pub fn member(&self) -> &Arc<Member> {
        &self.member
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.member.held.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The ready members of one service.
pub struct Pool {
    pub service: String,
    members: RwLock<Arc<[Arc<Member>]>>,
    ready: watch::Sender<usize>,
    pub budget: RetryBudget,
    /// Decides about requests before they go to a member (an autoscaled service).
    admission: OnceLock<Arc<dyn Admission>>,
    /// Callers waiting for a member with room, woken as requests end.
    room: Arc<RoomWaiters>,
    /// Requests answered by members that have left, for [`Pool::served_total`].
    served_gone: AtomicU64,
    /// Where the transport keeps its per-pool state (the gateway's request figures).
    transport: OnceLock<Box<dyn Any + Send + Sync>>,
    /// Why its service runs no instance now, as its supervisor says (its setup step,
    /// waiting for bindings, stopping): told with a "no ready instance" answer.
    why_none: std::sync::Mutex<Option<Arc<str>>>,
    /// Starts of its instances that failed while it had no ready member
    /// ([`Pool::start_failed`]): each answers the requests held for a member.
    start_failures: AtomicU64,
    /// Instances of its service on this node that ended before they were ever ready
    /// ([`Pool::launch_failed`]): what a cluster node's heartbeat tells the others.
    launches_failed: AtomicU64,
    /// Its supervisor gave up starting instances (a failed setup): no request is held
    /// for a member until one joins.
    gave_up: AtomicBool,
    /// Its instances wait out a restart backoff after a failed start
    /// ([`AfterFailure::Backoff`]): no request is held until one launches.
    backing_off: AtomicBool,
    /// When the next launch comes after a failed start ([`now_ms`]'s clock; 0: none
    /// due): `backing_off` ends then at the latest.
    next_launch_ms: AtomicU64,
    /// `why_none` was said by [`Pool::start_failed`] (a member joining clears it).
    why_is_start_failure: AtomicBool,
    /// Set while this node cannot tell whether the other nodes are there (it hears no
    /// heartbeat, its own included): a member on this node is picked whenever one can
    /// be, since one on another node may be across a partition.
    local_first: AtomicBool,
}

/// What follows a failed start ([`Pool::start_failed`]), for the requests that come next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Another launch may come at any moment (on another node): they are held for it.
    Hold,
    /// The failed instance waits out its restart backoff (this long) and no other is
    /// launching: they are answered at once, until one launches
    /// ([`Pool::backoff_over`]), told when the next launch comes ([`Pool::next_launch_in`]).
    Backoff(Duration),
    /// No launch is coming (its setup failed): they are answered at once until the
    /// service is deployed anew ([`Pool::starting`]).
    GaveUp,
}

/// How long a member a caller saw fail is passed over.
pub const SUSPECT_FOR: Duration = Duration::from_secs(2);

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
    /// Says why the service runs no instance now (None: it runs or starts them).
    pub fn set_why_none(&self, why: Option<&str>) {
        self.why_is_start_failure.store(false, Ordering::SeqCst);
        *self.why_none.lock().unwrap_or_else(|e| e.into_inner()) = why.map(Arc::from);
    }

    /// Why the service runs no instance now, if its supervisor said.
    pub fn why_none(&self) -> Option<Arc<str>> {
        self.why_none.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// An instance of the service failed to start (its process exited, it never became
    /// ready, its setup failed) while the pool has no ready member: the requests held
    /// for one are answered now, with `why` (as [`Pool::why_none`]), instead of at their
    /// deadline; `then` says whether those that come next are held. A member joining
    /// clears what it set.
    pub fn start_failed(&self, why: &str, then: AfterFailure) {
        // Under the members' lock, as `join`: a member joining meanwhile clears this.
        let members = self.members.write().unwrap();
        if !members.is_empty() {
            return;
        }
        self.set_why_none(Some(why));
        self.why_is_start_failure.store(true, Ordering::SeqCst);
        self.gave_up.store(then == AfterFailure::GaveUp, Ordering::SeqCst);
        if let AfterFailure::Backoff(delay) = then {
            self.next_launch_ms
                .store(now_ms() + delay.as_millis() as u64, Ordering::SeqCst);
        }
        self.backing_off
            .store(matches!(then, AfterFailure::Backoff(_)), Ordering::SeqCst);
        self.start_failures.fetch_add(1, Ordering::SeqCst);
        drop(members);
        // Wakes what waits on the ready count, to look at the failures.
        self.ready.send_modify(|_| {});
    }

    /// Its supervisor starts instances again (deployed anew): requests are held again.
    pub fn starting(&self) {
        self.gave_up.store(false, Ordering::SeqCst);
        self.backing_off.store(false, Ordering::SeqCst);
    }

    /// An instance launches, or one waiting out its restart backoff stopped: requests
    /// are held again ([`AfterFailure::Backoff`]).
    pub fn backoff_over(&self) {
        self.backing_off.store(false, Ordering::SeqCst);
        self.next_launch_ms.store(0, Ordering::SeqCst);
    }

    /// Whether its instances wait out a restart backoff after a failed start, none
    /// launching ([`AfterFailure::Backoff`]).
    pub fn backing_off(&self) -> bool {
        // Ends at the next launch at the latest: on a cluster node nothing here says
        // when the other node's instance launched again.
        self.backing_off.load(Ordering::SeqCst) && self.next_launch_ms.load(Ordering::SeqCst) > now_ms()
    }

    /// While [`Pool::backing_off`]: how long until the next launch (zero when it is due).
    pub fn next_launch_in(&self) -> Option<Duration> {
        if !self.backing_off() {
            return None;
        }
        let at = self.next_launch_ms.load(Ordering::SeqCst);
        Some(Duration::from_millis(at.saturating_sub(now_ms())))
    }

    /// How many starts failed so far ([`Pool::start_failed`]).
    pub fn start_failures(&self) -> u64 {
        self.start_failures.load(Ordering::SeqCst)
    }

    /// An instance of the service on this node ended before it was ever ready (its
    /// process exited, or it never passed its readiness check), and no other instance
    /// of it is starting on this node; it launches again `next_in` from now. Only
    /// counted: on one node [`Pool::start_failed`] answers the held requests; in a
    /// cluster the count and the next launch go out in this node's heartbeat
    /// ([`Pool::relaunch_in`]), and the node holding requests for the service answers
    /// them when no instance is starting anywhere.
    pub fn launch_failed(&self, next_in: Duration) {
        self.next_launch_ms
            .store(now_ms() + next_in.as_millis() as u64, Ordering::SeqCst);
        self.launches_failed.fetch_add(1, Ordering::SeqCst);
    }

    /// How long until an instance of this node that failed to start launches again
    /// ([`Pool::launch_failed`]); None once it does (or none failed).
    pub fn relaunch_in(&self) -> Option<Duration> {
        let left = self.next_launch_ms.load(Ordering::SeqCst).saturating_sub(now_ms());
        (left > 0).then(|| Duration::from_millis(left))
    }

    /// How many instances on this node ended before they were ready
    /// ([`Pool::launch_failed`]).
    pub fn launches_failed(&self) -> u64 {
        self.launches_failed.load(Ordering::SeqCst)
    }

    /// Whether its supervisor gave up starting instances for now ([`Pool::start_failed`]).
    pub fn gave_up(&self) -> bool {
        self.gave_up.load(Ordering::SeqCst)
    }

    pub(crate) fn new(service: &str) -> Pool {
        Pool {
            service: service.to_string(),
            members: RwLock::new(Arc::from(Vec::new())),
            ready: watch::channel(0).0,
            budget: RetryBudget::default(),
            why_none: std::sync::Mutex::new(None),
            start_failures: AtomicU64::new(0),
            launches_failed: AtomicU64::new(0),
            gave_up: AtomicBool::new(false),
            backing_off: AtomicBool::new(false),
            next_launch_ms: AtomicU64::new(0),
            why_is_start_failure: AtomicBool::new(false),
            admission: OnceLock::new(),
            room: Arc::default(),
            served_gone: AtomicU64::new(0),
            transport: OnceLock::new(),
            local_first: AtomicBool::new(false),
        }
    }

    /// Picks members on this node first while `on` (see the field).
    pub fn set_local_first(&self, on: bool) {
        self.local_first.store(on, Ordering::Relaxed);
    }

    pub fn local_first(&self) -> bool {
        self.local_first.load(Ordering::Relaxed)
    }

    /// Installs the pool's admission, before requests come. A pool has at most one: a
    /// second is refused and handed back.
    pub fn set_admission(&self, admission: Arc<dyn Admission>) -> Result<(), Arc<dyn Admission>> {
        self.admission.set(admission)
    }

    /// The transport's state for this pool, made on first use.
    #[inline]
    pub fn transport<T: Any + Send + Sync>(&self, init: impl FnOnce() -> T) -> &T {
        self.transport
            .get_or_init(|| Box::new(init()))
            .downcast_ref::<T>()
            .expect("one transport type per pool")
    }

    /// The pool's admission, if it has one (an autoscaled service).
    #[inline]
    pub fn admission(&self) -> Option<&Arc<dyn Admission>> {
        self.admission.get()
    }

    /// The least loaded available member with fewer than `limit` in flight, passing over
    /// `tried`. Scans every member: for a request whose pick is full.
    pub fn least_loaded_under(&self, limit: usize, tried: &[Arc<Member>]) -> Option<Arc<Member>> {
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

    /// Waits until a member may have room again: a request on a member ends, a member
    /// joins or leaves, or `within` passes. `has_room` is asked once the wait is
    /// registered, so that room freed just before is not missed; when it says yes, this
    /// returns at once.
    pub async fn until_room(&self, within: Duration, has_room: impl FnOnce() -> bool) {
        // SeqCst with the guard's decrement of `inflight` and read of `waiting`: either
        // `has_room` sees the request gone, or the guard sees this waiter.
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
        if has_room() {
            return;
        }
        let mut ready = self.ready.subscribe();
        tokio::select! {
            _ = notified => {}
            _ = ready.changed() => {}
            _ = tokio::time::sleep(within) => {}
        }
    }

    /// Requests relayed to the pool's members so far, those that have left included.
    pub fn served_total(&self) -> u64 {
        let current: u64 = self.members().iter().map(|m| m.served()).sum();
        self.served_gone.load(Ordering::Relaxed) + current
    }

    /// Adds a ready member.
    pub fn join(&self, member: Arc<Member>) {
        let _ = member.room.set(self.room.clone());
        let mut members = self.members.write().unwrap();
        let mut next: Vec<_> = members.iter().cloned().collect();
        next.push(member);
        *members = Arc::from(next);
        self.gave_up.store(false, Ordering::SeqCst);
        self.backing_off.store(false, Ordering::SeqCst);
        if self.why_is_start_failure.swap(false, Ordering::SeqCst) {
            // A start failure said while none was ready no longer holds (what the
            // supervisor says of its phase stays).
            self.set_why_none(None);
        }
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
    /// (power of two choices; on a tie, one on this node over one on another), skipping
    /// members already tried for this request.
    pub fn pick(&self, tried: &[Arc<Member>]) -> Option<Arc<Member>> {
        let members = self.members.read().unwrap();
        let eligible = |m: &Arc<Member>| !m.is_unavailable() && !tried.iter().any(|t| Arc::ptr_eq(t, m));
        if self.local_first.load(Ordering::Relaxed) {
            let local = members
                .iter()
                .filter(|m| !m.remote && eligible(m))
                .min_by_key(|m| m.inflight());
            if let Some(m) = local {
                return Some(m.clone());
            }
        }
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
                        let (la, lb) = (ma.inflight(), mb.inflight());
                        if lb < la || (lb == la && ma.remote && !mb.remote) {
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

#[cfg(test)]
mod tests;
