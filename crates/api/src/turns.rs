//! A publisher's batches in flight at once, stored in the order it sent them: a publish
//! that names its `producer` and `sequence` waits until the batch before it (sequence
//! − 1) has its place in the queue (not until it is durable), then takes its own. So a
//! producer with several batches on the wire keeps its order without waiting for each
//! answer.
//!
//! A batch whose predecessor never comes (it failed on the wire, or the node restarted
//! and lost count) goes after [`ORDER_WAIT`]. A producer's count is forgotten after
//! [`FORGET_AFTER`] without a publish.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_queue::Placed;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How long a batch waits for the batch before it.
pub const ORDER_WAIT: Duration = Duration::from_secs(2);
/// A producer idle this long is forgotten (its next batch may wait [`ORDER_WAIT`]).
const FORGET_AFTER: Duration = Duration::from_secs(300);
/// Producers counted before the idle ones are swept.
const SWEEP_ABOVE: usize = 4096;

/// The next sequence of each (queue, producer).
#[derive(Default)]
pub struct Turns {
    next: Mutex<HashMap<(String, String), Next>>,
    placed: Notify,
}

struct Next {
    sequence: u64,
    used: Instant,
}

/// A publish's place among its producer's, claimed before its body is read: a publish
/// that fails before it publishes (a bad body, an unknown queue) still takes its turn
/// when dropped, so the next one does not wait [`ORDER_WAIT`] for it.
pub struct Turn {
    turns: Arc<Turns>,
    queue: String,
    producer: String,
    sequence: u64,
    taken: bool,
}

impl Turn {
    /// Waits for this publish's turn ([`Turns::wait`]). Cancelled (the client went
    /// away), the turn is still passed when it comes.
    pub async fn wait(mut self) -> Placed {
        let placed = self.turns.wait(&self.queue, &self.producer, self.sequence).await;
        self.taken = true;
        placed
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if self.taken {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (turns, queue, producer) = (
            self.turns.clone(),
            std::mem::take(&mut self.queue),
            std::mem::take(&mut self.producer),
        );
        let sequence = self.sequence;
        runtime.spawn(async move { drop(turns.wait(&queue, &producer, sequence).await) });
    }
}

impl Turns {
    /// `sequence`'s turn for `producer` on `queue`, to wait for or to pass.
    pub fn claim(self: &Arc<Self>, queue: &str, producer: &str, sequence: u64) -> Turn {
        Turn {
            turns: self.clone(),
            queue: queue.to_string(),
            producer: producer.to_string(),
            sequence,
            taken: false,
        }
    }

    /// Waits for `sequence`'s turn (every earlier sequence placed, or [`ORDER_WAIT`]
    /// passed); what it returns, dropped, lets the next one go. A sequence already
    /// passed (sent again, or late) goes at once.
    pub async fn wait(self: &Arc<Self>, queue: &str, producer: &str, sequence: u64) -> Placed {
        let until = Instant::now() + ORDER_WAIT;
        let key = (queue.to_string(), producer.to_string());
        loop {
            // Made before the check: a turn passed after it is not missed.
            let placed = self.placed.notified();
            {
                let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                if next.len() > SWEEP_ABOVE && !next.contains_key(&key) {
                    next.retain(|_, n| now.duration_since(n.used) < FORGET_AFTER);
                }
                let n = next.entry(key.clone()).or_insert(Next { sequence: 0, used: now });
                n.used = now;
                if sequence <= n.sequence || now >= until {
                    break;
                }
            }
            let _ = tokio::time::timeout_at(until, placed).await;
        }
        let turns = self.clone();
        Placed::new(move || {
            {
                let mut next = turns.next.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(n) = next.get_mut(&key) {
                    n.sequence = n.sequence.max(sequence + 1);
                }
            }
            turns.placed.notify_waiters();
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn batches_go_in_sequence_order_and_a_missing_one_is_waited_for_a_while() {
        let turns = Arc::new(Turns::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        // 2 and 1 arrive before 0: they wait for it.
        let mut tasks = Vec::new();
        for sequence in [2u64, 1] {
            let (turns, order) = (turns.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let placed = turns.wait("q", "p", sequence).await;
                order.lock().unwrap().push(sequence);
                drop(placed);
            }));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(order.lock().unwrap().is_empty());
        let placed = turns.wait("q", "p", 0).await;
        order.lock().unwrap().push(0);
        drop(placed);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2]);

        // Another producer, or the same on another queue, has its own count.
        drop(turns.wait("q", "other", 0).await);
        drop(turns.wait("r", "p", 0).await);

        // 3 fails before it publishes (its turn dropped unused): 4 goes at once, not
        // after ORDER_WAIT.
        drop(turns.claim("q", "p", 3));
        let started = Instant::now();
        drop(turns.wait("q", "p", 4).await);
        assert!(started.elapsed() < ORDER_WAIT / 4);

        // 6's publish is cancelled while it waits for its turn (its client went away):
        // the turn still passes once 5 has, so 7 does not wait ORDER_WAIT.
        let cancelled = tokio::spawn(turns.claim("q", "p", 6).wait());
        tokio::time::sleep(Duration::from_millis(50)).await;
        cancelled.abort();
        let _ = cancelled.await;
        drop(turns.wait("q", "p", 5).await);
        let started = Instant::now();
        drop(turns.wait("q", "p", 7).await);
        assert!(started.elapsed() < ORDER_WAIT / 4);

        // Sent again: goes at once.
        drop(turns.wait("q", "p", 1).await);

        // 9 without 8: goes after ORDER_WAIT, and 10 then follows it at once.
        let started = Instant::now();
        drop(turns.wait("q", "p", 9).await);
        assert!(started.elapsed() >= ORDER_WAIT);
        let started = Instant::now();
        drop(turns.wait("q", "p", 10).await);
        assert!(started.elapsed() < ORDER_WAIT / 4);
    }
}
