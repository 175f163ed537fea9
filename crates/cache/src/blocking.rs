//! [`Waiters`]: the clients blocked on list keys (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH,
//! BLMPOP), by key, across every worker thread of the cache's Redis port.
//!
//! A blocked client registers one [`Waiter`] on each of its keys while it holds those
//! keys' shards, right after finding them all empty; every write that adds elements to
//! a list ([`Waiters::signal`]: a push, LMOVE's destination, RENAME and COPY of a list,
//! the same inside EXEC) runs with the key's shard held too, after the elements are in.
//! So a waiter either saw the elements or is registered before the signal looks: no
//! wake-up is lost. A signal of `n` new elements makes sure the first `n` waiters of
//! the key are woken, in the order they registered (first blocked, first served: one
//! woken before and yet to look counts, it will take the first element). A woken
//! waiter runs its pop again holding its keys' shards: it re-arms first; if it got
//! elements it leaves every queue and passes the baton, signalling each of its keys
//! that still holds elements, before releasing them. If another client took the
//! elements first it finds the lists empty and waits on in its place. So while a list
//! with waiters holds elements, one of its waiters is awake; no element is lost or
//! handed out twice, since every pop is one locked keyspace operation.
//!
//! The lock order is a shard (or several, ascending), then the registry: the registry
//! never takes a shard lock. A command that adds elements while nobody is blocked pays
//! one relaxed atomic load ([`Waiters::signal`]'s first line).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// One blocked client: woken once per registration.
#[derive(Debug, Default)]
pub(crate) struct Waiter {
    notify: Notify,
    woken: AtomicBool,
}

impl Waiter {
    /// Waits for a signal (one that came since the registration counts, even if it came
    /// before this call).
    pub async fn woken(&self) {
        self.notify.notified().await
    }

    /// Whether a signal picked this waiter since it was last [`Waiter::rearm`]ed.
    pub fn was_woken(&self) -> bool {
        self.woken.load(Ordering::Acquire)
    }

    /// Before registering again: a later signal may pick it.
    pub fn rearm(&self) {
        self.woken.store(false, Ordering::Release);
    }
}

/// The registry: waiters by key, FIFO.
#[derive(Debug, Default)]
pub(crate) struct Waiters {
    /// Registrations held (one per waiter and key): the cheap check.
    count: AtomicUsize,
    /// Clients blocked (INFO's `blocked_clients`).
    clients: AtomicUsize,
    queues: Mutex<HashMap<Vec<u8>, VecDeque<Arc<Waiter>>>>,
}

impl Waiters {
    fn queues(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, VecDeque<Arc<Waiter>>>> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A client starts (`true`) or stops waiting.
    pub fn count_client(&self, blocked: bool) {
        if blocked {
            self.clients.fetch_add(1, Ordering::Relaxed);
        } else {
            self.clients.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Clients blocked now.
    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }

    /// Registers `waiter` on each of `keys`; the caller holds the keys' shards.
    pub fn register<'k>(&self, keys: impl Iterator<Item = &'k [u8]>, waiter: &Arc<Waiter>) {
        let mut queues = self.queues();
        for k in keys {
            let q = queues.entry(k.to_vec()).or_default();
            if !q.iter().any(|w| Arc::ptr_eq(w, waiter)) {
                q.push_back(waiter.clone());
                self.count.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Takes `waiter` off each of `keys` (where a signal has not already).
    pub fn deregister<'k>(&self, keys: impl Iterator<Item = &'k [u8]>, waiter: &Arc<Waiter>) {
        if self.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut queues = self.queues();
        for k in keys {
            let Some(q) = queues.get_mut(k) else { continue };
            let before = q.len();
            q.retain(|w| !Arc::ptr_eq(w, waiter));
            self.count.fetch_sub(before - q.len(), Ordering::Relaxed);
            if q.is_empty() {
                queues.remove(k);
            }
        }
    }

    /// `n` elements were added to the list at `key` (its shard is held): makes sure the
    /// first `n` of its waiters are woken, the longest waiting first (one woken already
    /// and yet to look counts: it will take an element). They keep their places until
    /// they leave: one that finds nothing waits on where it was.
    pub fn signal(&self, key: &[u8], n: usize) {
        if self.count.load(Ordering::Relaxed) == 0 || n == 0 {
            return;
        }
        let queues = self.queues();
        let Some(q) = queues.get(key) else { return };
        for w in q.iter().take(n) {
            if !w.woken.swap(true, Ordering::AcqRel) {
                w.notify.notify_one();
            }
        }
    }

    /// Registrations held.
    #[cfg(test)]
    pub fn registered(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_wakes_the_first_waiters_once_each() {
        let ws = Waiters::default();
        let a = Arc::new(Waiter::default());
        let b = Arc::new(Waiter::default());
        let c = Arc::new(Waiter::default());
        ws.register([&b"k"[..], b"j"].into_iter(), &a);
        ws.register([&b"k"[..]].into_iter(), &b);
        ws.register([&b"k"[..]].into_iter(), &c);
        assert_eq!(ws.registered(), 4);
        ws.signal(b"j", 1);
        assert!(a.was_woken() && !b.was_woken());
        // `a` is first on k, woken already: it counts for one element.
        ws.signal(b"k", 1);
        assert!(!b.was_woken());
        ws.signal(b"k", 2);
        assert!(b.was_woken() && !c.was_woken());
        // `b` found nothing: re-armed, it is still second in line.
        b.rearm();
        ws.signal(b"k", 2);
        assert!(b.was_woken() && !c.was_woken());
        ws.deregister([&b"k"[..], b"j"].into_iter(), &a);
        ws.deregister([&b"k"[..]].into_iter(), &b);
        assert_eq!(ws.registered(), 1);
        ws.signal(b"nobody", 5);
        ws.signal(b"k", 5);
        assert!(c.was_woken());
        ws.deregister([&b"k"[..]].into_iter(), &c);
        assert_eq!(ws.registered(), 0);
        assert!(ws.queues().is_empty());
    }
}
