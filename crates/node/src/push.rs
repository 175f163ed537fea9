//! Push consumption: for a service that `consumes` a queue, fetch batches for its group
//! and POST each to one ready instance through the bus (load-aware, like any relayed
//! request), at most `per_member` batches in flight per ready instance (one for a
//! service, a function's `concurrency` for a function).
//!
//! A 2xx answer deletes the batch, except the offsets it lists in `{"failed": [...]}`,
//! which are given back. Any other answer, or none, gives the whole batch back for
//! redelivery (counted against `max_deliveries`); a delivery still running when the lease
//! ends is delivered again elsewhere, which at-least-once allows. A batch is fetched only
//! when a member may be picked (not while every one is passed over after a failure), so
//! that the deliveries counted are ones a member got.

use std::sync::Arc;
use std::time::Duration;

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use strata_bus::{Member, Pool};
use strata_gateway::relay::{self, JsonPost};
use strata_gateway::trace::{self, Traces};
use strata_gateway::RelayPolicy;
use strata_manifest::ConsumesSpec;
use strata_queue::{FetchOptions, Message, QueueHandle};
use strata_wire::{messages_json, MessageOut};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Pause before giving a failed batch back, so that a pool failing every batch is not
/// hammered in a tight loop.
const FAILED_PAUSE: Duration = Duration::from_millis(250);

/// How often the loop looks again while every ready member is passed over (for 2 s
/// after a failure).
const PASSED_OVER_POLL: Duration = Duration::from_millis(100);

/// Longest a fetched batch waits for a member that may be picked (the pass-over is 2 s),
/// and at most half its lease.
const PICKABLE_WAIT: Duration = Duration::from_secs(3);

/// One consuming service's push delivery.
pub(crate) struct Push {
    pub queue: Arc<dyn QueueHandle>,
    /// The consuming service (or function), as spans name it.
    pub service: Arc<str>,
    pub pool: Arc<Pool>,
    pub consumes: ConsumesSpec,
    pub policy: RelayPolicy,
    /// Batches in flight per ready member.
    pub per_member: usize,
    /// Where a delivery of traced messages records its span.
    pub traces: Arc<Traces>,
}

pub(crate) async fn run(push: Push, token: CancellationToken) {
    let Push {
        queue,
        service,
        pool,
        consumes,
        mut policy,
        per_member,
        traces,
    } = push;
    let lease = Duration::from_millis(queue.spec().lease_ms);
    policy.deadline = policy.deadline.min(lease);
    policy.attempt_timeout = policy.attempt_timeout.min(policy.deadline);
    let consumes = Arc::new(consumes);
    let failed_on: FailedOn = Arc::default();
    let delivering: Arc<Delivering> = Arc::default();
    let mut ready = pool.watch_ready();
    let mut tasks = JoinSet::new();
    loop {
        while tasks.try_join_next().is_some() {}
        let capacity = *ready.borrow_and_update() * per_member.max(1);
        if capacity == 0 {
            tokio::select! {
                _ = ready.changed() => continue,
                _ = token.cancelled() => break,
            }
        }
        if tasks.len() >= capacity {
            tokio::select! {
                _ = tasks.join_next() => continue,
                _ = ready.changed() => continue,
                _ = token.cancelled() => break,
            }
        }
        // A batch fetched now would reach nobody, and its fetch counts a delivery: a
        // message its only member just failed on would be dead-lettered by fetches
        // alone. Wait until a member may be picked.
        if !pickable(&pool) {
            tokio::select! {
                _ = tokio::time::sleep(PASSED_OVER_POLL) => continue,
                _ = ready.changed() => continue,
                _ = token.cancelled() => break,
            }
        }
        let opts = FetchOptions {
            max: consumes.batch as usize,
            max_bytes: 16 << 20,
            wait: Duration::from_secs(1),
            lease: None,
        };
        let fetched = tokio::select! {
            f = queue.fetch(&consumes.group, opts) => f,
            _ = token.cancelled() => break,
        };
        match fetched {
            Ok(batch) if batch.is_empty() => {}
            Ok(batch) => {
                let to = Target {
                    queue: queue.clone(),
                    service: service.clone(),
                    pool: pool.clone(),
                    consumes: consumes.clone(),
                    policy: policy.clone(),
                    traces: traces.clone(),
                };
                tasks.spawn(deliver(to, batch, failed_on.clone(), delivering.clone()));
            }
            Err(e) => {
                tracing::error!(queue = %queue.name(), group = %consumes.group, "push fetch failed: {e}");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = token.cancelled() => break,
                }
            }
        }
    }
    // Batches in flight stay leased and come back after a restart or the lease.
    tasks.abort_all();
}

/// The member that last failed each offset still to be delivered, so that its
/// redelivery goes elsewhere when another member is ready.
type FailedOn = Arc<std::sync::Mutex<HashMap<u64, Arc<Member>>>>;

/// The offsets whose delivery is running. A delivery's deadline is the lease, so a
/// redelivery can start just before the delivery it replaces has failed (the lease ran
/// out first). It then waits for that delivery to end, so that the member it failed on
/// is known and avoided; without the wait it could go to the same hung member.
#[derive(Default)]
struct Delivering {
    offsets: std::sync::Mutex<HashSet<u64>>,
    ended: tokio::sync::Notify,
}

impl Delivering {
    /// Marks `offsets` as running, once no earlier delivery of any of them runs, or
    /// `within` has passed.
    async fn enter(self: &Arc<Self>, offsets: &[u64], within: Duration) -> Running {
        let until = tokio::time::Instant::now() + within;
        loop {
            // Made before the check: an end signalled after it is not missed.
            let ended = self.ended.notified();
            {
                let mut running = self.offsets.lock().unwrap_or_else(|e| e.into_inner());
                if !offsets.iter().any(|o| running.contains(o)) || tokio::time::Instant::now() >= until {
                    running.extend(offsets.iter().copied());
                    break;
                }
            }
            let _ = tokio::time::timeout_at(until, ended).await;
        }
        Running {
            delivering: self.clone(),
            offsets: offsets.to_vec(),
        }
    }
}

/// A delivery's offsets, marked running until it is dropped.
struct Running {
    delivering: Arc<Delivering>,
    offsets: Vec<u64>,
}

impl Drop for Running {
    fn drop(&mut self) {
        {
            let mut running = self.delivering.offsets.lock().unwrap_or_else(|e| e.into_inner());
            for o in &self.offsets {
                running.remove(o);
            }
        }
        self.delivering.ended.notify_waiters();
    }
}

/// Where one batch goes.
struct Target {
    queue: Arc<dyn QueueHandle>,
    service: Arc<str>,
    pool: Arc<Pool>,
    consumes: Arc<ConsumesSpec>,
    policy: RelayPolicy,
    traces: Arc<Traces>,
}

async fn deliver(to: Target, batch: Vec<Message>, failed_on: FailedOn, delivering: Arc<Delivering>) {
    let Target {
        queue,
        service,
        pool,
        consumes,
        policy,
        traces,
    } = to;
    let offsets: Vec<u64> = batch.iter().map(|m| m.offset).collect();
    let running = delivering.enter(&offsets, policy.deadline).await;
    let avoid: Vec<Arc<Member>> = {
        let failed_on = failed_on.lock().unwrap_or_else(|e| e.into_inner());
        let mut avoid: Vec<Arc<Member>> = Vec::new();
        for m in offsets.iter().filter_map(|o| failed_on.get(o)) {
            if !avoid.iter().any(|a| Arc::ptr_eq(a, m)) {
                avoid.push(m.clone());
            }
        }
        avoid
    };
    // A message whose publish was traced is delivered as a span of its trace.
    let delivery = trace::Delivery::start(batch.iter().map(|m| m.traceparent.as_deref()));
    let traceparents: Vec<_> = (0..batch.len()).map(|i| delivery.traceparent(i)).collect();
    let out: Vec<MessageOut> = batch
        .iter()
        .zip(&traceparents)
        .map(|(m, traceparent)| {
            let (reply_to, correlation_id) = (m.reply_to.as_deref(), m.correlation_id.as_deref());
            MessageOut::new(
                m.offset,
                m.deliveries,
                m.timestamp_ms,
                &m.payload,
                reply_to,
                correlation_id,
            )
            .traced(traceparent.as_ref().and_then(|t| t.to_str().ok()))
            .origin(strata_api::queues::dead_letter_out(m))
        })
        .collect();
    let body = Bytes::from(messages_json(
        &out,
        &[("queue", queue.name()), ("group", &consumes.group)],
    ));
    let first = delivery.first();
    let mut headers = vec![
        ("x-strata-trigger", "queue"),
        ("x-strata-queue", queue.name()),
        ("x-strata-group", consumes.group.as_str()),
    ];
    if let Some(first) = first.as_ref().and_then(|t| t.to_str().ok()) {
        headers.push(("traceparent", first));
    }
    let post = JsonPost {
        path: &consumes.path,
        headers: &headers,
        body,
        answer_limit: 1 << 20,
    };
    // A batch fetched while the fetch waited, when every member has since been passed
    // over (one failed another batch): it waits for one too, within its deadline, so
    // that the delivery it counts reaches a member.
    let until = tokio::time::Instant::now() + PICKABLE_WAIT.min(policy.deadline / 2);
    while !pickable(&pool) && tokio::time::Instant::now() < until {
        tokio::time::sleep(PASSED_OVER_POLL).await;
    }
    let answer = relay::post_json(&pool, post, &policy, &avoid).await;
    delivery.record(&traces, &service, &consumes.path, answer.member.clone(), answer.status);
    let member = answer.member.as_ref().map(|m| m.name.clone()).unwrap_or_default();
    let failed: Vec<u64> = if (200..300).contains(&answer.status) {
        // A 2xx deletes the batch; only a readable `failed` list gives some back, and only
        // offsets of this batch (others may be in flight elsewhere).
        match answer.body {
            Ok(body) => {
                let mut failed = failed_offsets(&body);
                failed.retain(|o| offsets.contains(o));
                failed
            }
            Err(e) => {
                tracing::warn!(queue = %queue.name(), member, "push answer body unreadable ({e}): batch taken as done");
                Vec::new()
            }
        }
    } else {
        tracing::warn!(queue = %queue.name(), member, status = answer.status, "push delivery failed: batch given back");
        offsets.clone()
    };
    let done: Vec<u64> = offsets.iter().copied().filter(|o| !failed.contains(o)).collect();
    {
        let mut failed_on = failed_on.lock().unwrap_or_else(|e| e.into_inner());
        for o in &done {
            failed_on.remove(o);
        }
        if let Some(member) = &answer.member {
            for o in &failed {
                failed_on.insert(*o, member.clone());
            }
        }
        // Bounded: offsets that were dead-lettered or acked elsewhere are forgotten.
        if failed_on.len() > 100_000 {
            failed_on.clear();
        }
    }
    // Where it failed is known now: a redelivery waiting for this one may pick.
    drop(running);
    if !done.is_empty() {
        if let Err(e) = queue.ack(&consumes.group, &done).await {
            tracing::error!(queue = %queue.name(), "push ack failed: {e}");
        }
    }
    if !failed.is_empty() {
        tokio::time::sleep(FAILED_PAUSE).await;
        let _ = queue.nack(&consumes.group, &failed).await;
    }
}

/// Whether a member of `pool` may be picked now: one is there and not passed over (or
/// none is: the relay then holds the batch while one starts, which wakes the
/// autoscaler).
fn pickable(pool: &Pool) -> bool {
    let members = pool.members();
    members.is_empty() || members.iter().any(|m| !m.is_unavailable())
}

/// The offsets of `{"failed": [...]}`; an empty or other body fails none.
fn failed_offsets(body: &[u8]) -> Vec<u64> {
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(default)]
        failed: Vec<u64>,
    }
    serde_json::from_slice::<Answer>(body)
        .map(|a| a.failed)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn failed_offsets_are_read_leniently() {
        assert_eq!(super::failed_offsets(br#"{"failed": [3, 1]}"#), [3, 1]);
        assert!(super::failed_offsets(b"").is_empty());
        assert!(super::failed_offsets(b"ok").is_empty());
        assert!(super::failed_offsets(br#"{"processed": 4}"#).is_empty());
    }
}
