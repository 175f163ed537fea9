//! The read path: [`Queue::fetch`] leases the next offsets to a group under the index's
//! mutex (redeliveries first, then unread offsets), reads their records (`read`),
//! CRC-checks each on the way out, and long-polls when nothing is pending. An offset that
//! reached `max_deliveries` is copied to the dead-letter queue instead, then marked done.

use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_os::disk::Disk;

use crate::commit::Write;
use crate::group::Group;
use crate::groups_log::Op;
use crate::index::{locate, missing_fn, on_disk, slot_mut, slot_of};
use crate::queue::Queue;
use crate::read::{self, Lease};
use crate::record::{decode, DeadLetter, Decoded, NewMessage, Record};
use crate::segment;
use crate::QueueError;

/// How long a message on its way to the dead-letter queue is held from other fetches.
const DEAD_LETTER_LEASE: Duration = Duration::from_secs(60);

/// A message handed to a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub offset: u64,
    /// 1 on the first delivery to this group.
    pub deliveries: u32,
    pub timestamp_ms: u64,
    pub reply_to: Option<String>,
    pub correlation_id: Option<String>,
    /// The publisher's W3C `traceparent`, when the publish was traced.
    pub traceparent: Option<String>,
    /// In a dead-letter queue: where the message came from.
    pub dead_letter: Option<DeadLetter>,
    pub payload: Bytes,
}

#[derive(Debug, Clone, Copy)]
pub struct FetchOptions {
    /// Most messages; `usize::MAX` for all pending.
    pub max: usize,
    /// Most payload bytes (at least one message is always handed out).
    pub max_bytes: usize,
    /// Long poll: how long to wait when nothing is pending.
    pub wait: Duration,
    /// The lease of this fetch; None: the queue's.
    pub lease: Option<Duration>,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            max: 1,
            max_bytes: 1 << 20,
            wait: Duration::ZERO,
            lease: None,
        }
    }
}

impl<D: Disk> Queue<D> {
    /// Leases the next messages to `group` (created at the oldest stored message on its
    /// first fetch), waiting up to `opts.wait` for one.
    pub async fn fetch(&self, group: &str, opts: FetchOptions) -> Result<Vec<Message>, QueueError> {
        if opts.max == 0 {
            return Err(QueueError::BadInput("max must be at least 1".into()));
        }
        let lease = opts.lease.unwrap_or(Duration::from_millis(self.shared.spec.lease_ms));
        let end = tokio::time::Instant::now() + opts.wait;
        loop {
            let notified = self.shared.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // A deleted queue ends its waiting fetches.
            if self.shared.is_deleted() {
                return Err(QueueError::UnknownQueue(self.shared.name.clone()));
            }
            let (leases, dead, next_expiry) = self.take(group, &opts, lease);
            if !dead.is_empty() {
                self.dead_letter(group, dead).await;
            }
            if !leases.is_empty() {
                return self.read_leases(group, leases).await;
            }
            let now = tokio::time::Instant::now();
            if now >= end {
                return Ok(Vec::new());
            }
            let wake = next_expiry
                .map(|at| tokio::time::Instant::from_std(at).min(end))
                .unwrap_or(end);
            let _ = tokio::time::timeout_at(wake, notified).await;
        }
    }

    /// The synchronous part of a fetch: lease what is pending, under the lock.
    fn take(&self, group: &str, opts: &FetchOptions, lease: Duration) -> (Vec<Lease<D>>, Vec<u64>, Option<Instant>) {
        let max_deliveries = self.shared.spec.max_deliveries;
        let mut ops = Vec::new();
        let mut guard = self.shared.lock();
        let inner = &mut *guard;
        let now = Instant::now();
        let until = now + lease;
        if !inner.groups.contains_key(group) {
            let start = inner.first_offset;
            inner.groups.insert(group.to_string(), Group::new(start));
            ops.push(Op::Create {
                group: group.to_string(),
                start,
            });
        }
        let g = inner.groups.get_mut(group).expect("group exists");
        g.expire(now);
        let mut leases = Vec::new();
        let mut dead = Vec::new();
        let mut bytes = 0usize;
        let tail = inner.next_offset;
        loop {
            if leases.len() >= opts.max {
                break;
            }
            let offset = match g.redeliver.first() {
                Some(&o) => o,
                None => {
                    while g.next < tail && g.is_done(g.next) {
                        g.next += 1;
                    }
                    if g.next >= tail {
                        break;
                    }
                    g.next += 1;
                    g.next - 1
                }
            };
            let Some(slot) = slot_of(&inner.segments, offset).filter(|s| s.len > 0) else {
                // Corrupt or dropped: done for every group.
                g.redeliver.remove(&offset);
                g.done.insert(offset);
                continue;
            };
            let size = slot.len as usize;
            if !leases.is_empty() && bytes + size > opts.max_bytes {
                if g.redeliver.first() != Some(&offset) {
                    g.next -= 1;
                }
                break;
            }
            g.redeliver.remove(&offset);
            if max_deliveries > 0 && g.deliveries.get(&offset).copied().unwrap_or(0) >= max_deliveries {
                // Held by a lease while it moves to the dead-letter queue, so that a
                // cancelled fetch leaves it to be retried; not the fetch's own lease, which a
                // client may set short enough for a second fetch to move it again.
                g.lease(offset, now + lease.max(DEAD_LETTER_LEASE));
                dead.push(offset);
                continue;
            }
            let deliveries = g.lease(offset, until);
            bytes += size;
            let at = locate(&inner.segments, &inner.cache, offset, slot);
            leases.push(Lease { offset, deliveries, at });
        }
        let next_expiry = g.next_expiry();
        drop(guard);
        if !leases.is_empty() {
            ops.push(Op::Deliver {
                group: group.to_string(),
                offsets: leases.iter().map(|l| l.offset).collect(),
            });
        }
        if !ops.is_empty() {
            let _ = self.submit(Write::GroupsLog { ops, done: None }, false);
        }
        (leases, dead, next_expiry)
    }

    /// Reads the records of `leases` and checks each (CRC, offset): a corrupt one is not
    /// served and is done for every group.
    async fn read_leases(&self, group: &str, leases: Vec<Lease<D>>) -> Result<Vec<Message>, QueueError> {
        let raw = read::read(leases).await?;
        let mut out = Vec::with_capacity(raw.len());
        let mut bad = Vec::new();
        // A record the disk fails to give back goes back to its group (to be tried again,
        // and dead-lettered after max_deliveries); the rest of the batch is served.
        let mut unreadable = Vec::new();
        let mut last_error = None;
        for (offset, deliveries, bytes) in raw {
            let bytes = match bytes {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(queue = %self.shared.name, offset, "reading a record failed: {e}");
                    unreadable.push(offset);
                    last_error = Some(e);
                    continue;
                }
            };
            // The bytes read are exactly the slot: the record may be as long as they are
            // (a record written under a larger segment size stays readable).
            let whole = bytes.len();
            let decoded = match decode(&bytes, whole) {
                Decoded::Record(r, _) if r.offset == offset => Ok(r),
                // The damage may have been on the way (a bit flipped in memory or on the
                // bus), not on the disk: read it once more before giving up on it.
                other => self.read_again(offset).await.ok_or(other),
            };
            match decoded {
                Ok(r) => out.push(Message {
                    offset,
                    deliveries,
                    timestamp_ms: r.timestamp_ms,
                    reply_to: r.reply_to,
                    correlation_id: r.correlation_id,
                    traceparent: r.traceparent,
                    dead_letter: r.dead_letter,
                    payload: r.payload,
                }),
                Err(other) => {
                    let reason = match other {
                        Decoded::Bad(reason) => reason,
                        _ => "a record of another offset",
                    };
                    tracing::error!(
                        queue = %self.shared.name,
                        offset,
                        "corrupt record ({reason}) found on read: not served, skipped for every group"
                    );
                    bad.push(offset);
                }
            }
        }
        if !unreadable.is_empty() {
            let mut inner = self.shared.lock();
            if let Some(g) = inner.groups.get_mut(group) {
                for &o in &unreadable {
                    if g.unlease(o) {
                        g.redeliver.insert(o);
                    }
                }
            }
            drop(inner);
            if out.is_empty() && bad.is_empty() {
                if let Some(e) = last_error {
                    return Err(QueueError::io("read a segment", e));
                }
            }
        }
        if !bad.is_empty() {
            let mut inner = self.shared.lock();
            for &o in &bad {
                if let Some(slot) = slot_mut(&mut inner.segments, o) {
                    slot.len = 0;
                }
                inner.corrupt += 1;
            }
            if let Some(g) = inner.groups.get_mut(group) {
                for &o in &bad {
                    g.finish(o);
                }
            }
        }
        Ok(out)
    }

    /// `offset`'s record read again from its segment file (on the blocking pool), if it is
    /// intact this time.
    async fn read_again(&self, offset: u64) -> Option<Record> {
        let (file, pos, len) = on_disk(&self.shared.lock().segments, offset)?;
        let bytes = tokio::task::spawn_blocking(move || segment::read(&*file, pos, len as usize))
            .await
            .ok()?
            .ok()?;
        match decode(&bytes, bytes.len()) {
            Decoded::Record(r, _) if r.offset == offset => Some(r),
            _ => None,
        }
    }

    /// Moves messages that reached `max_deliveries` to the dead-letter queue, then marks
    /// them done for the group. A failure leaves them leased, to be retried on expiry.
    async fn dead_letter(&self, group: &str, offsets: Vec<u64>) {
        let Some(dlq) = &self.dlq else { return };
        let leases: Vec<Lease<D>> = {
            let inner = self.shared.lock();
            offsets
                .iter()
                .filter_map(|&o| {
                    let slot = slot_of(&inner.segments, o)?;
                    Some(Lease {
                        offset: o,
                        deliveries: 0,
                        at: locate(&inner.segments, &inner.cache, o, slot),
                    })
                })
                .collect()
        };
        let messages = match self.read_leases(group, leases).await {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(queue = %self.shared.name, "dead-lettering failed: {e}");
                return;
            }
        };
        let moved: Vec<u64> = messages.iter().map(|m| m.offset).collect();
        let deliveries = self.shared.spec.max_deliveries;
        let copies = messages
            .into_iter()
            .map(|m| NewMessage {
                payload: m.payload,
                dedupe_id: None,
                reply_to: m.reply_to,
                correlation_id: m.correlation_id,
                traceparent: m.traceparent,
                dead_letter: Some(DeadLetter {
                    group: group.to_string(),
                    offset: m.offset,
                    timestamp_ms: m.timestamp_ms,
                    deliveries,
                }),
            })
            .collect();
        if let Err(e) = dlq.publish(copies).await {
            tracing::error!(queue = %self.shared.name, "dead-lettering failed: {e}");
            return;
        }
        {
            let mut inner = self.shared.lock();
            let inner = &mut *inner;
            let missing = missing_fn(&inner.segments);
            if let Some(g) = inner.groups.get_mut(group) {
                for &o in &moved {
                    if g.finish(o) {
                        g.dead_lettered += 1;
                    }
                }
                g.advance(&missing);
            }
        }
        tracing::warn!(queue = %self.shared.name, group, offsets = ?moved, "moved to {}", dlq.name());
        let _ = self
            .log_groups(vec![Op::Dead {
                group: group.to_string(),
                offsets: moved,
            }])
            .await;
    }
}
