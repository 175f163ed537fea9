//! The Redis port's clients blocked on list keys (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH,
//! BLMPOP) and on sorted set keys (BZPOPMIN, BZPOPMAX, BZMPOP), across every worker
//! thread: each shard holds the [`Waiter`]s on its keys
//! ([`ShardWaiters`], under the shard's lock, as it holds the connections WATCHing
//! them), and the cache counts the blocked clients ([`Waiters`], for INFO).
//!
//! A blocked client registers its waiter on each of its keys while it holds those
//! keys' shards, right after finding them all empty; every write that adds elements to
//! a list ([`ShardWaiters::signal`]: a push, LMOVE's destination, RENAME and COPY of a
//! list, the same inside EXEC) signals with the key's shard still held, after the
//! elements are in. So a waiter either saw the elements or is registered before the
//! signal looks: no wake-up is lost, and no other lock is involved. A waiter waits for
//! one [`Kind`] of value (as Redis' blocked clients do: a list's waiter is not woken
//! by a sorted set appearing under its key). A signal of `n` new elements of a kind
//! makes sure the first `n` waiters of that kind on the key are woken, in the order they
//! registered (first blocked, first served: one woken before and yet to look counts, it
//! will take the first element). A woken waiter runs its pop again holding its keys'
//! shards: it re-arms first; if it got elements it leaves every queue and passes the
//! baton, signalling each of its keys that still holds elements, before releasing them.
//! If another client took the elements first it finds the lists empty and waits on in
//! its place. So while a list with waiters holds elements, one of its waiters is awake;
//! no element is lost or handed out twice, since every pop is one locked keyspace
//! operation.
//!
//! What a write pays for this while nobody waits on its shard: one test of an empty map,
//! under the lock it already holds.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

use crate::stored::Stored;

/// The type of value a blocked client waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    List,
    Zset,
}

/// One blocked client.
#[derive(Debug)]
pub(crate) struct Waiter {
    kind: Kind,
    notify: Notify,
    woken: AtomicBool,
}

impl Waiter {
    /// A client that waits for elements of a `kind` of value.
    pub fn new(kind: Kind) -> Waiter {
        Waiter {
            kind,
            notify: Notify::new(),
            woken: AtomicBool::new(false),
        }
    }

    /// Waits for a signal (one that came since the registration counts, even if it came
    /// before this call).
    pub async fn woken(&self) {
        self.notify.notified().await
    }

    /// Whether a signal picked this waiter since it was last [`Waiter::rearm`]ed.
    pub fn was_woken(&self) -> bool {
        self.woken.load(Ordering::Acquire)
    }

    /// Before looking again (its keys' shards held): a later signal may pick it.
    pub fn rearm(&self) {
        self.woken.store(false, Ordering::Release);
    }
}

/// The waiters on one shard's keys, first blocked first.
#[derive(Debug, Default)]
pub(crate) struct ShardWaiters {
    queues: HashMap<Stored, VecDeque<Arc<Waiter>>>,
}

impl ShardWaiters {
    /// Registers `waiter` on `key` (at the back; nothing if there already).
    pub fn register(&mut self, key: &[u8], waiter: &Arc<Waiter>) {
        let q = match self.queues.get_mut(key) {
            Some(q) => q,
            None => self.queues.entry(Stored::copy_from(key)).or_default(),
        };
        if !q.iter().any(|w| Arc::ptr_eq(w, waiter)) {
            q.push_back(waiter.clone());
        }
    }

    /// Takes `waiter` off `key`.
    pub fn deregister(&mut self, key: &[u8], waiter: &Arc<Waiter>) {
        if let Some(q) = self.queues.get_mut(key) {
            q.retain(|w| !Arc::ptr_eq(w, waiter));
            if q.is_empty() {
                self.queues.remove(key);
            }
        }
    }

    /// `n` elements were added to the `kind` of value at `key`: makes sure the first
    /// `n` of its waiters for that kind are woken, the longest waiting first (one woken
    /// already and yet to look counts: it will take an element). They keep their places
    /// until they leave.
    pub fn signal(&self, key: &[u8], n: usize, kind: Kind) {
        if self.queues.is_empty() || n == 0 {
            return;
        }
        let Some(q) = self.queues.get(key) else { return };
        for w in q.iter().filter(|w| w.kind == kind).take(n) {
            if !w.woken.swap(true, Ordering::AcqRel) {
                w.notify.notify_one();
            }
        }
    }

    /// Registrations held.
    #[cfg(test)]
    pub fn registered(&self) -> usize {
        self.queues.values().map(VecDeque::len).sum()
    }
}

/// The cache's count of blocked clients.
#[derive(Debug, Default)]
pub(crate) struct Waiters {
    clients: AtomicUsize,
}

impl Waiters {
    /// A client starts (`true`) or stops waiting.
    pub fn count_client(&self, blocked: bool) {
        if blocked {
            self.clients.fetch_add(1, Ordering::Relaxed);
        } else {
            self.clients.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Clients blocked now (INFO's `blocked_clients`).
    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_wakes_the_first_waiters_once_each() {
        let mut ws = ShardWaiters::default();
        let a = Arc::new(Waiter::new(Kind::List));
        let b = Arc::new(Waiter::new(Kind::List));
        let c = Arc::new(Waiter::new(Kind::List));
        ws.register(b"k", &a);
        ws.register(b"j", &a);
        ws.register(b"k", &b);
        ws.register(b"k", &c);
        ws.register(b"k", &c);
        assert_eq!(ws.registered(), 4);
        ws.signal(b"j", 1, Kind::List);
        assert!(a.was_woken() && !b.was_woken());
        // `a` is first on k, woken already: it counts for one element.
        ws.signal(b"k", 1, Kind::List);
        assert!(!b.was_woken());
        ws.signal(b"k", 2, Kind::List);
        assert!(b.was_woken() && !c.was_woken());
        // `b` found nothing: re-armed, it is still second in line.
        b.rearm();
        ws.signal(b"k", 2, Kind::List);
        assert!(b.was_woken() && !c.was_woken());
        ws.deregister(b"k", &a);
        ws.deregister(b"j", &a);
        ws.deregister(b"k", &b);
        assert_eq!(ws.registered(), 1);
        ws.signal(b"nobody", 5, Kind::List);
        let z = Arc::new(Waiter::new(Kind::Zset));
        ws.register(b"k", &z);
        ws.signal(b"k", 5, Kind::Zset);
        assert!(z.was_woken() && !c.was_woken(), "a signal wakes its kind only");
        ws.deregister(b"k", &z);
        ws.signal(b"k", 5, Kind::List);
        assert!(c.was_woken());
        ws.deregister(b"k", &c);
        assert_eq!(ws.registered(), 0);
        assert!(ws.queues.is_empty());
    }
}
