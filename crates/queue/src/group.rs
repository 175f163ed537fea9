//! One consumer group's position in a queue: what is done, what is leased to whom until
//! when, what waits to be delivered again, and how often each message was delivered.

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Instant;

use serde::Serialize;

use crate::groups_log::ReplayedGroup;

/// Offsets are already well spread integers: one multiply mixes them enough, where
/// SipHash cost a measurable share of a fetch.
#[derive(Default)]
pub(crate) struct OffsetHasher(u64);

impl Hasher for OffsetHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

pub(crate) type OffsetMap<V> = HashMap<u64, V, BuildHasherDefault<OffsetHasher>>;

#[derive(Debug)]
pub(crate) struct Group {
    /// Every offset below is done (deleted, dead-lettered, corrupt or dropped).
    pub floor: u64,
    /// Offsets at or above were never handed out since the queue opened.
    pub next: u64,
    /// Done at or above the floor.
    pub done: BTreeSet<u64>,
    /// Deleted, but the delete is not durable yet: never handed out again, and not yet
    /// under the floor (segments are reclaimed below the floor).
    pub settling: BTreeSet<u64>,
    pub leased: OffsetMap<Instant>,
    pub expiry: BTreeSet<(Instant, u64)>,
    /// Given back (lease expired, nack), lowest first.
    pub redeliver: BTreeSet<u64>,
    pub deliveries: OffsetMap<u32>,
    pub dead_lettered: u64,
    /// Leases that ran out before an ack or nack, since the queue opened.
    pub lease_expiries: u64,
    /// Messages acked (deleted) by the group's consumers, since the queue opened.
    pub acked: u64,
}

/// A group's figures, for `strata queues`, `strata ps` and the autoscaler.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GroupStats {
    pub name: String,
    pub floor: u64,
    /// Never delivered or given back, waiting for a consumer.
    pub unread: u64,
    pub leased: u64,
    /// unread + leased.
    pub backlog: u64,
    pub dead_lettered: u64,
    /// Messages acked by the group's consumers since the queue opened (on JetStream:
    /// through this node).
    pub acked: u64,
    /// Leases that ran out before an ack or nack since the queue opened; absent on
    /// JetStream, whose server keeps ack waits and counts no expiries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_expiries: Option<u64>,
}

impl Group {
    pub fn new(start: u64) -> Group {
        Group::from_replay(
            ReplayedGroup {
                floor: start,
                ..ReplayedGroup::default()
            },
            start,
        )
    }

    pub fn from_replay(r: ReplayedGroup, first_offset: u64) -> Group {
        let floor = r.floor.max(first_offset);
        let mut g = Group {
            floor,
            next: floor,
            done: r.done.into_iter().filter(|o| *o >= floor).collect(),
            settling: BTreeSet::new(),
            leased: OffsetMap::default(),
            expiry: BTreeSet::new(),
            redeliver: BTreeSet::new(),
            deliveries: r.deliveries.into_iter().filter(|(o, _)| *o >= floor).collect(),
            dead_lettered: r.dead_lettered,
            lease_expiries: 0,
            acked: 0,
        };
        // Past what was deleted before the restart, so the floor can move over it.
        while g.done.contains(&g.next) {
            g.next += 1;
        }
        g.advance(&|_| false);
        g
    }

    /// Moves the floor over done offsets (and those `missing` says are gone).
    pub fn advance(&mut self, missing: &dyn Fn(u64) -> bool) {
        while self.floor < self.next
            && !self.leased.contains_key(&self.floor)
            && !self.redeliver.contains(&self.floor)
            && (self.done.remove(&self.floor) || missing(self.floor))
        {
            self.deliveries.remove(&self.floor);
            self.floor += 1;
        }
        if self.next < self.floor {
            self.next = self.floor;
        }
    }

    /// Raises the floor to `first` when the segments below it were dropped.
    pub fn clamp(&mut self, first: u64) {
        if self.floor >= first {
            return;
        }
        self.floor = first;
        self.next = self.next.max(first);
        self.done = self.done.split_off(&first);
        self.settling = self.settling.split_off(&first);
        self.redeliver = self.redeliver.split_off(&first);
        self.deliveries.retain(|o, _| *o >= first);
        let gone: Vec<u64> = self.leased.keys().copied().filter(|o| *o < first).collect();
        for o in gone {
            self.unlease(o);
        }
    }

    /// Moves expired leases to the redelivery set; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut n = 0;
        while let Some(&(at, offset)) = self.expiry.first() {
            if at > now {
                break;
            }
            self.expiry.pop_first();
            self.leased.remove(&offset);
            self.redeliver.insert(offset);
            n += 1;
        }
        self.lease_expiries += n as u64;
        n
    }

    pub fn next_expiry(&self) -> Option<Instant> {
        self.expiry.first().map(|(at, _)| *at)
    }

    pub fn lease(&mut self, offset: u64, until: Instant) -> u32 {
        self.leased.insert(offset, until);
        self.expiry.insert((until, offset));
        let d = self.deliveries.entry(offset).or_default();
        *d += 1;
        *d
    }

    /// Ends a lease; true if `offset` was leased.
    pub fn unlease(&mut self, offset: u64) -> bool {
        match self.leased.remove(&offset) {
            Some(until) => {
                self.expiry.remove(&(until, offset));
                true
            }
            None => false,
        }
    }

    /// Marks `offset` deleted but not yet durably so, if it was leased or waiting for
    /// redelivery; false otherwise. [`Group::settled`] makes it done.
    pub fn settle(&mut self, offset: u64) -> bool {
        let was = self.unlease(offset) | self.redeliver.remove(&offset);
        if was {
            self.settling.insert(offset);
            self.deliveries.remove(&offset);
        }
        was
    }

    /// The deletes of `offsets` are durable: they count as done.
    pub fn settled(&mut self, offsets: &[u64]) {
        for o in offsets {
            if self.settling.remove(o) {
                self.done.insert(*o);
            }
        }
    }

    /// Whether `offset` was deleted (durably or not yet).
    pub fn is_done(&self, offset: u64) -> bool {
        self.done.contains(&offset) || self.settling.contains(&offset)
    }

    /// Marks `offset` done if it was leased or waiting for redelivery; false otherwise.
    pub fn finish(&mut self, offset: u64) -> bool {
        let was = self.unlease(offset) | self.redeliver.remove(&offset);
        if was {
            self.done.insert(offset);
            self.deliveries.remove(&offset);
        }
        was
    }

    pub fn stats(&self, name: &str, tail: u64) -> GroupStats {
        let done_ahead = (self.done.len() + self.settling.len()) as u64;
        let backlog = tail.saturating_sub(self.floor).saturating_sub(done_ahead);
        let leased = self.leased.len() as u64;
        GroupStats {
            name: name.to_string(),
            floor: self.floor,
            unread: backlog.saturating_sub(leased),
            leased,
            backlog,
            dead_lettered: self.dead_lettered,
            acked: self.acked,
            lease_expiries: Some(self.lease_expiries),
        }
    }
}
