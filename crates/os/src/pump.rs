//! [`Joined`]: two sockets joined into a tunnel whose bytes are moved by one epoll set
//! per thread, the way nginx moves a proxied WebSocket's, instead of by a copying task
//! per tunnel.
//!
//! Why: with a task per tunnel (`copy_bidirectional` over tokio sockets), every message
//! costs tokio's readiness bookkeeping for its socket and a wake and poll of its task;
//! that was what kept the gateway's WebSocket relay at 0.96-0.98 of nginx's messages per
//! second (bench/README.md, websocket.sh). Here one wake of the runtime serves every
//! tunnel of the thread that has bytes waiting.
//!
//! How:
//! - Each thread that joins sockets has a [`Pump`]: an epoll set of its own, watched by
//!   the runtime as one file (`AsyncFd`), and a task that, when the set has events,
//!   takes them all with no wait and moves the bytes in the same turn: a read from the
//!   side that has them, then at once a write of them to the other.
//! - Edge-triggered, as tokio's own sockets: a side is read until a read comes back
//!   short or `EAGAIN`, which shows it drained; a write that comes back short or `EAGAIN`
//!   waits for the side's next writable edge.
//! - Reads go into one buffer of the pump's. Only bytes the other side cannot take yet
//!   are kept, with their tunnel, and that direction reads nothing more until they are
//!   written: an idle tunnel holds no buffer, and a slow reader holds back its writer
//!   (TCP's own flow control, end to end).
//! - A side's end of stream is passed on as a shutdown of the other side's writing once
//!   what it sent is written; the tunnel ends when both directions have ended, or at the
//!   first error. Its sockets close when its [`Joined`] is dropped.
//! - A side that keeps its reads full is read [`READS_PER_TURN`] times, then the other
//!   tunnels' events go first and it is taken up again on the pump's next turn.
//! - Each tunnel's limits are its owner's: a [`Watch`] the pump calls once a [`WATCH`]
//!   (one timer per pump, none per tunnel, so an idle tunnel costs no CPU) with whether
//!   bytes moved since; when it says why the tunnel must end, the tunnel is cut.
//! - A WebSocket tunnel can also be closed gracefully ([`Limit::Close`]): the pump
//!   follows the frames each way by their headers ([`frames`]) and, between two of the
//!   member's frames, sends the client a Close (Going Away) of its own; from then on the
//!   member's bytes are dropped (nothing may follow a Close) and the client's Close in
//!   answer goes on to the member, whose own answer ends the handshake: each end sees a
//!   proper closing handshake, not a connection that broke. A member whose stream ends
//!   (or fails) between two of its frames without a Close (it died) leaves the client a
//!   Close (Internal Error, 1011) of the pump's own before the end.
//!
//! Reads and writes are `recvfrom`/`sendto` through `syscall(2)` (see [`crate::bare`]).

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::bare::{recv, retried, send};

mod frames;

use frames::Frames;

/// Events taken from the set per `epoll_wait`.
const EVENTS: usize = 256;
/// The pump's read buffer.
const SCRATCH: usize = 64 << 10;
/// Reads of one side in one turn, after which the other tunnels go first.
pub const READS_PER_TURN: usize = 16;
/// How often each tunnel's [`Watch`] is called.
pub const WATCH: Duration = Duration::from_secs(1);

/// A tunnel's limits, called once a [`WATCH`] with the time and whether bytes moved
/// either way since the last call: what must happen to the tunnel now, if anything.
pub type Watch = Box<dyn FnMut(Instant, bool) -> Option<Limit> + Send>;

/// What a tunnel's [`Watch`] says must happen to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Close it gracefully: a WebSocket tunnel's client is sent a Close (Going Away,
    /// with this reason) between two of the member's frames, as soon as one ends, and
    /// the closing handshake goes on through the tunnel. Nothing is sent on other
    /// tunnels, or when a side has already sent a Close: they go on until cut.
    Close(&'static str),
    /// Cut it now (both sockets closed), for this reason.
    Cut(&'static str),
}

/// How a tunnel ended.
#[derive(Debug)]
pub enum Ended {
    /// Both sides ended their streams, and each end was passed on.
    Both,
    /// A read or write failed.
    Failed(io::Error),
    /// Its [`Watch`] cut it, for this reason.
    Cut(&'static str),
}

/// A thread's epoll set of tunnels and the task that serves it.
struct Pump {
    epoll: AsyncFd<OwnedFd>,
    links: Mutex<Links>,
    /// Cleared when the serving task ends (its runtime stopped): the thread's next
    /// tunnel then makes a new pump.
    serving: AtomicBool,
}

thread_local! {
    static PUMP: RefCell<Option<Arc<Pump>>> = const { RefCell::new(None) };
}

impl Pump {
    /// This thread's pump, made (with its task, on the current runtime) if it has none
    /// that is still served.
    fn current() -> io::Result<Arc<Pump>> {
        PUMP.with(|pump| {
            let mut pump = pump.borrow_mut();
            if let Some(p) = pump.as_ref().filter(|p| p.serving.load(Ordering::Acquire)) {
                return Ok(p.clone());
            }
            // SAFETY: epoll_create1 takes no pointer; its result is checked.
            let fd = retried(|| unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) } as libc::c_long)?;
            // SAFETY: a new descriptor, owned by nothing else.
            let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
            // SAFETY: the `OwnedFd` is the set's only owner and stays open with it.
            let epoll = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?;
            let p = Arc::new(Pump {
                epoll,
                links: Mutex::new(Links::default()),
                serving: AtomicBool::new(true),
            });
            tokio::spawn(serve(p.clone()));
            *pump = Some(p.clone());
            Ok(p)
        })
    }

    fn links(&self) -> MutexGuard<'_, Links> {
        self.links.lock().expect("a pump's tunnels")
    }
}

/// Clears the pump's `serving` when its task ends, however it ends.
struct Serving(Arc<Pump>);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.serving.store(false, Ordering::Release);
    }
}

/// The pump's task: each time its set has events, takes them all and serves them.
async fn serve(pump: Arc<Pump>) {
    let serving = Serving(pump);
    let pump = &serving.0;
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS];
    let mut again = Vec::new();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + WATCH, WATCH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // No tunnel, no watch: an idle worker is not woken once a second. A new tunnel's
        // sockets bring events as they are added, which come through here first.
        let watching = !pump.links().is_empty();
        let mut ready = tokio::select! {
            ready = pump.epoll.readable() => match ready {
                Ok(ready) => ready,
                Err(e) => {
                    tracing::error!(error = %e, "a tunnel pump's epoll set failed; its tunnels are stalled");
                    return;
                }
            },
            _ = tick.tick(), if watching => {
                pump.links().watch(Instant::now(), &mut again);
                continue;
            }
        };
        let fd = pump.epoll.get_ref().as_raw_fd();
        // SAFETY: `events` is valid for EVENTS entries; no wait.
        let n = match retried(|| unsafe { libc::epoll_wait(fd, events.as_mut_ptr(), EVENTS as i32, 0) } as libc::c_long)
        {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "a tunnel pump's epoll_wait failed; its tunnels are stalled");
                return;
            }
        };
        let mut links = pump.links();
        // Sides that were still full when their last turn ended go on first.
        for token in std::mem::take(&mut again) {
            links.turn(token, &mut again);
        }
        for event in &events[..n] {
            // A copy of the (packed) fields.
            let (flags, token) = (event.events, event.u64);
            links.event(token, flags, &mut again);
        }
        drop(links);
        // All events taken and no side left full: wait for the next ones (tokio keeps
        // the readiness if an event came meanwhile). Else another turn, after the
        // runtime's other tasks once this task's budget is spent.
        if n < EVENTS && again.is_empty() {
            ready.clear_ready();
        }
    }
}

/// A pump's tunnels, by slot.
struct Links {
    slots: Vec<Slot>,
    free: Vec<u32>,
    scratch: Box<[u8]>,
}

impl Default for Links {
    fn default() -> Links {
        Links {
            slots: Vec::new(),
            free: Vec::new(),
            scratch: vec![0; SCRATCH].into_boxed_slice(),
        }
    }
}

struct Slot {
    /// Counts the slot's tunnels, so that an event for an earlier one is not taken for
    /// the tunnel in the slot now.
    generation: u32,
    link: Option<Link>,
}

/// An epoll token: the slot, its generation and the side.
fn token(slot: u32, generation: u32, side: usize) -> u64 {
    (u64::from(generation) << 33) | (u64::from(slot) << 1) | side as u64
}

fn untoken(token: u64) -> (u32, u32, usize) {
    ((token >> 1) as u32, (token >> 33) as u32, (token & 1) as usize)
}

impl Links {
    fn is_empty(&self) -> bool {
        self.slots.len() == self.free.len()
    }

    fn insert(&mut self, link: Link) -> (u32, u32) {
        match self.free.pop() {
            Some(slot) => {
                let s = &mut self.slots[slot as usize];
                s.generation = s.generation.wrapping_add(1) & 0x7fff_ffff;
                s.link = Some(link);
                (slot, s.generation)
            }
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    link: Some(link),
                });
                ((self.slots.len() - 1) as u32, 0)
            }
        }
    }

    fn get(&mut self, slot: u32, generation: u32) -> Option<&mut Link> {
        self.slots
            .get_mut(slot as usize)
            .filter(|s| s.generation == generation)
            .and_then(|s| s.link.as_mut())
    }

    fn remove(&mut self, slot: u32, generation: u32) -> Option<Link> {
        let s = self
            .slots
            .get_mut(slot as usize)
            .filter(|s| s.generation == generation)?;
        let link = s.link.take()?;
        self.free.push(slot);
        Some(link)
    }

    /// Calls every open tunnel's watch; cuts those it says must end, and closes those
    /// it says must close (or goes on trying to, where a frame was still passing).
    fn watch(&mut self, now: Instant, again: &mut Vec<u64>) {
        let Links { slots, scratch, .. } = self;
        for (slot, s) in slots.iter_mut().enumerate() {
            let generation = s.generation;
            let Some(link) = s.link.as_mut() else {
                continue;
            };
            if link.over.is_some() {
                continue;
            }
            let moved = std::mem::take(&mut link.moved);
            match (link.watch)(now, moved) {
                Some(Limit::Cut(why)) => {
                    link.end(Ended::Cut(why));
                    continue;
                }
                Some(Limit::Close(reason)) if !link.discard[1] => link.going_away = Some(reason),
                _ => {}
            }
            if link.going_away.is_some() {
                // A turn sends the Close if it can go now (and a side still full after
                // it is taken up again, as after an event).
                let token = token(slot as u32, generation, 0);
                link.turn(scratch, || again.push(token));
            }
        }
    }

    /// An epoll event for one side of a tunnel.
    fn event(&mut self, token: u64, flags: u32, again: &mut Vec<u64>) {
        let (slot, generation, side) = untoken(token);
        let Some(link) = self.get(slot, generation) else {
            return;
        };
        // An error or hang-up shows in the next read or write.
        let (hup, err) = (libc::EPOLLHUP as u32, libc::EPOLLERR as u32);
        if flags & (libc::EPOLLIN as u32 | libc::EPOLLRDHUP as u32 | hup | err) != 0 {
            link.readable[side] = true;
        }
        if flags & (libc::EPOLLRDHUP as u32 | hup | err) != 0 {
            link.closing[side] = true;
        }
        if flags & (libc::EPOLLOUT as u32 | hup | err) != 0 {
            link.writable[side] = true;
        }
        self.turn(token, again);
    }

    /// Moves what can be moved both ways on the tunnel of `token`; a side still full
    /// after its reads in this turn goes on `again`.
    fn turn(&mut self, token: u64, again: &mut Vec<u64>) {
        let (slot, generation, _) = untoken(token);
        let Links { slots, scratch, .. } = self;
        let Some(link) = slots
            .get_mut(slot as usize)
            .filter(|s| s.generation == generation)
            .and_then(|s| s.link.as_mut())
        else {
            return;
        };
        link.turn(scratch, || again.push(token));
    }
}

/// One tunnel: its two sockets and what is known of them.
struct Link {
    sides: [std::net::TcpStream; 2],
    /// Whether a side may have bytes to read (cleared by a short read or `EAGAIN`).
    readable: [bool; 2],
    /// Whether a side may take bytes (cleared by a short write or `EAGAIN`).
    writable: [bool; 2],
    /// Whether a side's peer has ended its stream (or the socket failed): its end (or
    /// error) still waits behind the bytes a short read left, with no edge to come, so
    /// a short read does not clear `readable` then (tokio keeps its closed readiness
    /// for the same reason).
    closing: [bool; 2],
    /// For each direction (from side `d` to the other): bytes read and not yet written,
    /// and how many of them were.
    pending: [Vec<u8>; 2],
    written: [usize; 2],
    /// Side `d` has ended its stream, and the other side's writing was shut for it.
    ended: [bool; 2],
    shut: [bool; 2],
    /// A WebSocket tunnel's frames, each way (side 0 the client, side 1 the member).
    frames: Option<Box<[Frames; 2]>>,
    /// A Close to send the client as soon as the member's frames allow, with its reason.
    going_away: Option<&'static str>,
    /// Direction `d`'s bytes are read and dropped: the member's, once the client was
    /// sent a Close of the pump's own.
    discard: [bool; 2],
    /// Set once the tunnel is over, with how it ended (taken by its owner).
    over: Option<Option<Ended>>,
    waker: Option<Waker>,
    /// Whether a read brought bytes since the last watch.
    moved: bool,
    watch: Watch,
}

impl Link {
    fn turn(&mut self, scratch: &mut [u8], mut full: impl FnMut()) {
        if self.over.is_some() {
            return;
        }
        // A Close owed to the client goes at the first turn that finds the member's
        // frames between two (a busy tunnel's reads seldom end in a frame at the watch).
        self.go_away();
        for d in 0..2 {
            match self.direction(d, scratch) {
                Ok(false) => {}
                Ok(true) => full(),
                Err(e) => return self.end(Ended::Failed(e)),
            }
        }
        if self.ended == [true, true] && self.shut == [true, true] {
            self.end(Ended::Both);
        }
    }

    fn end(&mut self, how: Ended) {
        self.over = Some(Some(how));
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// Queues the Close the client is owed ([`Limit::Close`]) if the member's frames are
    /// between two and everything before was written (the turn writes it); else leaves
    /// it for the next turn. Forgotten when there is nothing to close gracefully: not a
    /// WebSocket, a side has sent a Close already, or the member's side has ended.
    fn go_away(&mut self) {
        let Some(reason) = self.going_away else {
            return;
        };
        let Some(frames) = &self.frames else {
            self.going_away = None;
            return;
        };
        if frames[0].closed || frames[1].closed || self.ended[1] {
            self.going_away = None;
            return;
        }
        if !frames[1].at_boundary() || self.written[1] < self.pending[1].len() {
            return;
        }
        self.going_away = None;
        self.pending[1] = frames::close_frame(frames::GOING_AWAY, reason);
        self.written[1] = 0;
        self.discard[1] = true;
    }

    /// Side `d`'s stream ended or failed. When it is the member's, of a WebSocket
    /// tunnel, between two of its frames and with no Close sent either way (the member
    /// died), the client is owed a Close of the pump's own (Internal Error), queued
    /// behind what is still pending for it. True when one was queued.
    fn member_gone(&mut self, d: usize) -> bool {
        if d != 1 || self.discard[1] {
            return false;
        }
        let Some(frames) = &self.frames else {
            return false;
        };
        if frames[0].closed || frames[1].closed || !frames[1].at_boundary() {
            return false;
        }
        self.going_away = None;
        if self.written[1] == self.pending[1].len() {
            self.pending[1].clear();
            self.written[1] = 0;
        }
        let close = frames::close_frame(frames::INTERNAL_ERROR, "the service instance went away");
        self.pending[1].extend_from_slice(&close);
        self.discard[1] = true;
        true
    }

    /// A write to the member failed (it died, and a write saw it before a read did):
    /// when the client of a WebSocket tunnel has a Close of the pump's own queued (just
    /// now, [`Link::member_gone`], or earlier), the member's side is taken as ended and
    /// the client's bytes are dropped from then on, so that the Close still reaches the
    /// client. True when so.
    fn member_unreachable(&mut self) -> bool {
        if self.frames.is_none() || !(self.member_gone(1) || self.discard[1]) {
            return false;
        }
        self.ended[1] = true;
        self.discard[0] = true;
        self.pending[0] = Vec::new();
        self.written[0] = 0;
        true
    }

    /// Moves bytes from side `d` to the other until one of them has to wait; true when
    /// side `d` is still readable after [`READS_PER_TURN`] reads.
    fn direction(&mut self, d: usize, scratch: &mut [u8]) -> io::Result<bool> {
        let (from, to) = (d, 1 - d);
        let mut reads = 0;
        loop {
            if self.written[d] < self.pending[d].len() {
                if !self.writable[to] {
                    return Ok(false);
                }
                let rest = &self.pending[d][self.written[d]..];
                match send(self.sides[to].as_raw_fd(), rest) {
                    Ok(n) => {
                        self.written[d] += n;
                        if n < rest.len() {
                            self.writable[to] = false;
                            return Ok(false);
                        }
                        self.written[d] = 0;
                        self.pending[d] = Vec::new();
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.writable[to] = false;
                        return Ok(false);
                    }
                    Err(_) if d == 0 && self.member_unreachable() => return Ok(false),
                    Err(e) => return Err(e),
                }
            }
            if self.ended[d] {
                if !self.shut[d] {
                    self.shut[d] = true;
                    match self.sides[to].shutdown(std::net::Shutdown::Write) {
                        Err(e) if e.kind() != io::ErrorKind::NotConnected => return Err(e),
                        _ => {}
                    }
                }
                return Ok(false);
            }
            if !self.readable[from] {
                return Ok(false);
            }
            if reads == READS_PER_TURN {
                return Ok(true);
            }
            reads += 1;
            // SAFETY: `scratch` is valid for its length of writes.
            let n = match unsafe { recv(self.sides[from].as_raw_fd(), scratch.as_mut_ptr(), scratch.len()) } {
                Ok(0) => {
                    self.ended[d] = true;
                    self.member_gone(d);
                    continue;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable[from] = false;
                    return Ok(false);
                }
                // A member's reset: the client gets its Close, then its end.
                Err(_) if self.member_gone(d) => {
                    self.ended[d] = true;
                    continue;
                }
                Err(e) => return Err(e),
            };
            self.moved = true;
            if n < scratch.len() && !self.closing[from] {
                // Drained: the next bytes come with an edge.
                self.readable[from] = false;
            }
            let read = &scratch[..n];
            if self.discard[d] {
                continue;
            }
            if let Some(frames) = &mut self.frames {
                frames[d].pass(read);
            }
            let sent = if self.writable[to] {
                match send(self.sides[to].as_raw_fd(), read) {
                    Ok(sent) => sent,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                    Err(_) if d == 0 && self.member_unreachable() => return Ok(false),
                    Err(e) => return Err(e),
                }
            } else {
                0
            };
            if sent < n {
                self.writable[to] = false;
                self.pending[d] = read[sent..].to_vec();
                self.written[d] = 0;
            }
        }
    }
}

/// Asks every WebSocket tunnel of this thread's pump to close ([`Limit::Close`] with
/// `reason`: the Close goes at the pump's next turn for it, at most a [`WATCH`] away),
/// then waits until all the thread's tunnels have ended or `wait` has passed. For a
/// server that stops: what is still open after it is the caller's to drop.
pub async fn close_all(reason: &'static str, wait: Duration) {
    let Some(pump) = PUMP.with(|p| p.borrow().clone()) else {
        return;
    };
    for link in pump.links().slots.iter_mut().filter_map(|s| s.link.as_mut()) {
        if link.over.is_none() && link.frames.is_some() && !link.discard[1] {
            link.going_away = Some(reason);
        }
    }
    let until = tokio::time::Instant::now() + wait;
    while !pump.links().is_empty() && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two sockets joined (see the module): the tunnel ends when both have ended their
/// streams or one fails; dropping this closes both.
pub struct Joined {
    pump: Arc<Pump>,
    slot: u32,
    generation: u32,
}

impl Joined {
    /// Joins `a` and `b`: `to_a` and `to_b` are written to them first (bytes a side sent
    /// early, already read); `watch` is called once a [`WATCH`] while the tunnel lasts.
    /// `websocket`: the tunnel carries WebSocket frames, `a` being the client's side
    /// (its frames are followed, so that [`Limit::Close`] can close it gracefully).
    ///
    /// Must be called within a tokio runtime: the thread's pump is served there.
    pub fn new(
        a: TcpStream,
        b: TcpStream,
        to_a: &[u8],
        to_b: &[u8],
        watch: Watch,
        websocket: bool,
    ) -> io::Result<Joined> {
        let pump = Pump::current()?;
        let frames = websocket.then(|| {
            let mut frames = Box::new([Frames::default(), Frames::default()]);
            frames[0].pass(to_b);
            frames[1].pass(to_a);
            frames
        });
        // Out of the runtime's own set (still non-blocking) and into the pump's.
        let sides = [a.into_std()?, b.into_std()?];
        let fds = [sides[0].as_raw_fd(), sides[1].as_raw_fd()];
        let link = Link {
            sides,
            readable: [true, true],
            writable: [true, true],
            closing: [false, false],
            // Direction 0 (a to b) carries what goes to b first.
            pending: [to_b.to_vec(), to_a.to_vec()],
            written: [0, 0],
            ended: [false, false],
            shut: [false, false],
            frames,
            going_away: None,
            discard: [false, false],
            over: None,
            waker: None,
            moved: false,
            watch,
        };
        let mut links = pump.links();
        let (slot, generation) = links.insert(link);
        let epoll = pump.epoll.get_ref().as_raw_fd();
        for (side, fd) in fds.into_iter().enumerate() {
            let mut event = libc::epoll_event {
                events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
                u64: token(slot, generation, side),
            };
            // SAFETY: `event` is valid for reads; both descriptors are open.
            let added =
                retried(|| unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &mut event) } as libc::c_long);
            if let Err(e) = added {
                links.remove(slot, generation);
                return Err(e);
            }
        }
        // No turn here: a side that is readable or writable as it is added has its
        // event queued by the add itself, and the pump's next turn moves the early bytes
        // and whatever the sides sent meanwhile.
        drop(links);
        Ok(Joined { pump, slot, generation })
    }

    /// Ready when the tunnel is over, with how it ended (once; [`Ended::Both`] after).
    pub fn poll_ended(&self, cx: &mut Context<'_>) -> Poll<Ended> {
        let mut links = self.pump.links();
        let Some(link) = links.get(self.slot, self.generation) else {
            return Poll::Ready(Ended::Both);
        };
        match &mut link.over {
            Some(how) => Poll::Ready(how.take().unwrap_or(Ended::Both)),
            None => {
                if !link.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    link.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }

    /// Waits until the tunnel is over (see [`Joined::poll_ended`]).
    pub async fn ended(&self) -> Ended {
        std::future::poll_fn(|cx| self.poll_ended(cx)).await
    }
}

impl Drop for Joined {
    fn drop(&mut self) {
        // Dropped after the lock is let go: closing the sockets also takes them out of
        // the set.
        let link = self.pump.links().remove(self.slot, self.generation);
        drop(link);
    }
}

#[cfg(test)]
mod tests;
