//! What this node handed out and has not seen settled: per (queue, group, offset) the
//! delivery's ack subject and its lease, so that an ack or nack by offset reaches the
//! delivery, and a fetch's own lease (other than the queue's, which is the consumer's
//! `ack_wait`) is kept by this node: a shorter one gives the message back (a nak) when it
//! runs out, a longer one tells the server work is in progress (`+WPI`) every half
//! `ack_wait` until then. If this node goes away, the queue's lease applies.
//!
//! Bounded: an entry leaves at its ack or nack, or when its lease runs out; past
//! [`MAX_LEASES`] the entries closest to their end are dropped (an ack for them then goes
//! by a rebuilt ack subject, and a fetch's own lease falls back to the queue's). The
//! offsets settled here lately are remembered (at most [`MAX_SETTLED`]) so that a second
//! ack of one counts as ignored, as in the embedded engine.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Most deliveries remembered at once.
pub(crate) const MAX_LEASES: usize = 1 << 20;
/// Most settled offsets remembered.
pub(crate) const MAX_SETTLED: usize = 1 << 16;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Key {
    pub queue: String,
    pub group: String,
    pub offset: u64,
}

/// What happens when an entry is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keep {
    /// The queue's lease: the server redelivers; the entry is just forgotten.
    Server,
    /// A shorter lease: a nak at its end.
    GiveBack,
    /// A longer lease: `+WPI` every `every`, a nak at its end.
    Extend { every: Duration },
}

#[derive(Debug)]
struct Entry {
    ack_subject: String,
    until: Instant,
    keep: Keep,
    /// When the keeper next looks at it.
    next: Instant,
}

#[derive(Default)]
struct Table {
    entries: HashMap<Key, Entry>,
    due: BTreeSet<(Instant, Key)>,
    settled: HashSet<Key>,
    settled_order: VecDeque<Key>,
}

/// The table and its keeper's wake-up.
#[derive(Default)]
pub(crate) struct Leases {
    table: Mutex<Table>,
    changed: Notify,
}

/// How an offset stands here.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Known {
    /// Leased through this node: its delivery's ack subject.
    Leased(String),
    /// Acked or nacked through this node lately.
    Settled,
    Unknown,
}

impl Leases {
    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers a delivery leased until `until`.
    pub fn insert(&self, key: Key, ack_subject: String, until: Instant, keep: Keep) {
        let now = Instant::now();
        let next = match keep {
            Keep::Extend { every } => (now + every).min(until),
            _ => until,
        };
        let mut t = self.table();
        if t.entries.len() >= MAX_LEASES {
            if let Some((_, oldest)) = t.due.pop_first() {
                t.entries.remove(&oldest);
            }
        }
        if t.settled.remove(&key) {
            t.settled_order.retain(|k| k != &key);
        }
        if let Some(old) = t.entries.remove(&key) {
            t.due.remove(&(old.next, key.clone()));
        }
        t.due.insert((next, key.clone()));
        let earliest = t.due.first().is_some_and(|(at, k)| *at == next && k == &key);
        t.entries.insert(
            key,
            Entry {
                ack_subject,
                until,
                keep,
                next,
            },
        );
        drop(t);
        if earliest {
            self.changed.notify_one();
        }
    }

    /// Takes `key` out to settle it (ack or nack): what this node knows of it. A key taken
    /// as leased is remembered as settled.
    pub fn settle(&self, key: &Key) -> Known {
        let mut t = self.table();
        if let Some(entry) = t.entries.remove(key) {
            t.due.remove(&(entry.next, key.clone()));
            t.settled.insert(key.clone());
            t.settled_order.push_back(key.clone());
            while t.settled_order.len() > MAX_SETTLED {
                if let Some(old) = t.settled_order.pop_front() {
                    t.settled.remove(&old);
                }
            }
            return Known::Leased(entry.ack_subject);
        }
        if t.settled.contains(key) {
            Known::Settled
        } else {
            Known::Unknown
        }
    }

    /// Puts back an entry taken by [`Leases::settle`] whose ack did not get through.
    pub fn unsettle(&self, key: Key, ack_subject: String, until: Instant) {
        {
            let mut t = self.table();
            if t.settled.remove(&key) {
                t.settled_order.retain(|k| k != &key);
            }
        }
        if until > Instant::now() {
            self.insert(key, ack_subject, until, Keep::Server);
        }
    }

    /// Forgets everything of `queue` (deleted).
    pub fn forget_queue(&self, queue: &str) {
        let mut t = self.table();
        t.entries.retain(|k, _| k.queue != queue);
        t.due.retain(|(_, k)| k.queue != queue);
        t.settled.retain(|k| k.queue != queue);
        t.settled_order.retain(|k| k.queue != queue);
    }

    /// How many deliveries are remembered.
    pub fn len(&self) -> usize {
        self.table().entries.len()
    }

    /// What is due at `now`: (ack subject, what to send) for each entry that needs a word
    /// to the server; entries whose lease ended leave.
    fn due(&self, now: Instant) -> Vec<(String, Bytes)> {
        let mut out = Vec::new();
        let mut t = self.table();
        while let Some((at, key)) = t.due.first().cloned() {
            if at > now {
                break;
            }
            t.due.pop_first();
            let Some(mut entry) = t.entries.remove(&key) else {
                continue;
            };
            match entry.keep {
                Keep::Server => {}
                Keep::GiveBack => out.push((entry.ack_subject, Bytes::from_static(b"-NAK"))),
                Keep::Extend { every } => {
                    if now >= entry.until {
                        out.push((entry.ack_subject, Bytes::from_static(b"-NAK")));
                    } else {
                        out.push((entry.ack_subject.clone(), Bytes::from_static(b"+WPI")));
                        entry.next = (now + every).min(entry.until);
                        t.due.insert((entry.next, key.clone()));
                        t.entries.insert(key, entry);
                    }
                }
            }
        }
        out
    }

    fn next_due(&self) -> Option<Instant> {
        self.table().due.first().map(|(at, _)| *at)
    }

    /// Keeps the leases until `stop`: sends the naks and progress notes as they fall due.
    pub async fn keep(&self, client: async_nats::Client, stop: CancellationToken) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            for (subject, word) in self.due(Instant::now()) {
                // Lost, the server's own lease (the queue's) applies.
                if let Err(e) = client.publish(subject, word).await {
                    tracing::debug!("a lease's word to the server was not sent: {e}");
                }
            }
            let wake = self
                .next_due()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep_until(wake) => {}
                _ = changed => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(offset: u64) -> Key {
        Key {
            queue: "q".into(),
            group: "g".into(),
            offset,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_lease_is_given_back_and_a_long_one_extended_until_its_end() {
        let leases = Leases::default();
        let now = Instant::now();
        leases.insert(key(0), "ack0".into(), now + Duration::from_millis(600), Keep::GiveBack);
        leases.insert(key(1), "ack1".into(), now + Duration::from_secs(30), Keep::Server);
        leases.insert(
            key(2),
            "ack2".into(),
            now + Duration::from_secs(10),
            Keep::Extend {
                every: Duration::from_secs(4),
            },
        );
        assert!(leases.due(now).is_empty());
        let at = |ms: u64| now + Duration::from_millis(ms);
        assert_eq!(leases.due(at(600)), [("ack0".to_string(), Bytes::from_static(b"-NAK"))]);
        assert_eq!(
            leases.due(at(4000)),
            [("ack2".to_string(), Bytes::from_static(b"+WPI"))]
        );
        assert_eq!(
            leases.due(at(8000)),
            [("ack2".to_string(), Bytes::from_static(b"+WPI"))]
        );
        assert_eq!(
            leases.due(at(10_000)),
            [("ack2".to_string(), Bytes::from_static(b"-NAK"))]
        );
        assert_eq!(leases.len(), 1);
        // The queue's lease: the server redelivers, the entry is just forgotten.
        assert!(leases.due(at(30_000)).is_empty());
        assert_eq!(leases.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn settling_twice_is_known_and_the_table_is_bounded() {
        let leases = Leases::default();
        let until = Instant::now() + Duration::from_secs(30);
        leases.insert(key(5), "ack5".into(), until, Keep::Server);
        assert_eq!(leases.settle(&key(5)), Known::Leased("ack5".into()));
        assert_eq!(leases.settle(&key(5)), Known::Settled);
        assert_eq!(leases.settle(&key(6)), Known::Unknown);
        // Fetched again (redelivered), it is leased again.
        leases.insert(key(5), "ack5b".into(), until, Keep::Server);
        assert_eq!(leases.settle(&key(5)), Known::Leased("ack5b".into()));
        for o in 0..(MAX_SETTLED as u64 + 10) {
            leases.insert(key(1000 + o), "a".into(), until, Keep::Server);
            leases.settle(&key(1000 + o));
        }
        assert!(leases.table().settled.len() <= MAX_SETTLED);
        leases.forget_queue("q");
        assert_eq!(leases.settle(&key(1000)), Known::Unknown);
    }
}
