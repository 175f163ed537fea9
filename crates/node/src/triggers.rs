//! The function server's event sources that are not requests: store writes and timers.
//!
//! A function runs as a service of its own name with `instances.min` 0
//! (`Manifest::expanded`): an HTTP trigger is a gateway route, a queue trigger is push
//! delivery (`push.rs`: a failed batch is redelivered, then dead-lettered after the
//! queue's `max_deliveries`), and both start instances on demand through the autoscaler.
//! The two sources here POST one JSON event per firing through the bus (`relay::any`),
//! which holds it while an instance starts:
//! - store: every committed write or delete of a key under the prefix, as
//!   `{"trigger": "store", "namespace", "key", "kind", "version", "deleted"}`. A failed
//!   delivery (no 2xx) is tried [`STORE_ATTEMPTS`] times in all, with back-off; then it
//!   is recorded as a `trigger-failed` event. At least once while the node runs; a
//!   change made while the node is down does not fire, and events for one key may be
//!   handled out of order when several are in flight.
//! - timer: `{"trigger": "timer", "function", "scheduled_ms", "fired_ms"}` every
//!   `interval_ms` or on each cron time (UTC). A failed firing is recorded, not retried:
//!   the next firing is the next chance. A firing due while the node was down is skipped.
//!   In a cluster every node runs the task, so each firing is first claimed
//!   ([`FiringClaims`], the cluster's KV bucket): the node that wins fires it, the others
//!   skip it, and a node that cannot claim does not fire (at most once). Interval
//!   firings are then aligned on the Unix epoch, so that every node names a firing by
//!   the same `scheduled_ms`. A node whose own firings are all still running skips
//!   without claiming, so that another node may fire that time.
//!
//! Each event is the first span of a trace of its own (`trigger`, with the function,
//! the member that answered, the attempts and the status), and the POST carries its
//! `traceparent` and a request id (`timer-FUNCTION-SCHEDULED_MS`,
//! `store-FUNCTION-VERSION`), so the function's own calls through `$STRATA_URL` join
//! that trace when it passes the header on. A store event does not continue the trace
//! of the write that caused it: the store's change feed carries no trace context (it
//! would take a `traceparent` through `StoreBackend::put` and both backends' records).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::collections::VecDeque;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use strata_appservice::{time_of_day, AppService, EventKind};
use strata_bus::Pool;
use strata_gateway::relay::{self, JsonPost};
use strata_gateway::trace::{self, Traces};
use strata_gateway::RelayPolicy;
use strata_manifest::{Cron, StoreTrigger, TimerTrigger};
use strata_store::{Change, ChangeKind, StoreBackend};
use tokio::sync::{broadcast, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Deliveries of one store event, the first included.
pub(crate) const STORE_ATTEMPTS: u32 = 3;
const RETRY_PAUSE: [Duration; 2] = [Duration::from_millis(200), Duration::from_secs(1)];
/// Matching store changes kept while they wait for the handler; past it the oldest go.
const MAX_PENDING: usize = 100_000;

/// One function and where its events go.
#[derive(Clone)]
pub(crate) struct Target {
    pub app: Arc<AppService>,
    pub function: String,
    pub pool: Arc<Pool>,
    pub path: String,
    pub policy: RelayPolicy,
    /// Deliveries in flight at once: instances.max x concurrency.
    pub parallel: usize,
    /// Where each event's span goes.
    pub traces: Arc<Traces>,
}

/// Fires `target` for every change under the trigger's prefix.
pub(crate) async fn store(
    target: Target,
    store: Arc<dyn StoreBackend>,
    trigger: StoreTrigger,
    ns: String,
    token: CancellationToken,
) {
    let mut changes = store.subscribe();
    let slots = Arc::new(Semaphore::new(target.parallel.max(1)));
    let mut tasks = JoinSet::new();
    // Matching changes not yet delivered: the feed is read on while deliveries wait for
    // a slot (a cold start), so that it does not fall behind and drop changes.
    let mut pending: VecDeque<Change> = VecDeque::new();
    loop {
        while tasks.try_join_next().is_some() {}
        let change = tokio::select! {
            c = changes.recv() => c,
            slot = slots.clone().acquire_owned(), if !pending.is_empty() => {
                let slot = slot.expect("never closed");
                let change = pending.pop_front().expect("not empty");
                tasks.spawn(deliver_change(target.clone(), trigger.namespace.clone(), change, slot));
                continue;
            }
            _ = token.cancelled() => break,
        };
        let change = match change {
            Ok(c) => c,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                target.app.record(
                    &target.function,
                    EventKind::TriggerFailed,
                    format!("{n} store change(s) missed: the handler fell behind the change feed"),
                );
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => break,
        };
        if change.ns != ns || !change.key.starts_with(&trigger.prefix) {
            continue;
        }
        if pending.len() >= MAX_PENDING {
            let dropped = pending.pop_front().expect("full");
            target.app.record(
                &target.function,
                EventKind::TriggerFailed,
                format!(
                    "store change {}/{} v{} dropped: {MAX_PENDING} changes wait for the handler",
                    trigger.namespace, dropped.key, dropped.version
                ),
            );
        }
        pending.push_back(change);
    }
    finish(tasks).await;
}

/// Delivers one store change, tried [`STORE_ATTEMPTS`] times in all.
async fn deliver_change(target: Target, namespace: String, change: Change, _slot: OwnedSemaphorePermit) {
    let body = serde_json::json!({
        "trigger": "store",
        "namespace": namespace,
        "key": change.key,
        "kind": match change.kind { ChangeKind::Value => "value", ChangeKind::Blob => "blob" },
        "version": change.version,
        "deleted": change.deleted,
    });
    let body = Bytes::from(body.to_string());
    let mut last = String::new();
    let mut span = Invocation::start(&target, format!("store-{}-{}", target.function, change.version));
    for attempt in 0..STORE_ATTEMPTS {
        match post(&target, "store", &mut span, body.clone()).await {
            Ok(()) => return span.record(&target),
            Err(e) => last = e.to_string(),
        }
        if let Some(pause) = RETRY_PAUSE.get(attempt as usize) {
            tokio::time::sleep(*pause).await;
        }
    }
    span.record(&target);
    target.app.record(
        &target.function,
        EventKind::TriggerFailed,
        format!(
            "store change {namespace}/{} v{}: not handled after {STORE_ATTEMPTS} attempts (last: {last})",
            change.key, change.version
        ),
    );
}

/// Gives the deliveries in flight a second to end, then aborts the rest.
async fn finish(mut tasks: JoinSet<()>) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
}

/// Who fires a timer firing when several nodes run the same function (a cluster): one
/// of them, chosen by a claim that only one can win. None on a single node.
pub trait FiringClaims: Send + Sync {
    /// Ok(true): this node fires `function`'s firing of `scheduled_ms`; Ok(false):
    /// another node does; Err(why): the claim could not be made, so nobody here fires it.
    fn claim<'a>(&'a self, function: &'a str, scheduled_ms: u64) -> BoxFuture<'a, Result<bool, String>>;
}

/// Fires `target` on the trigger's schedule; with `claims`, only the firings this node
/// wins, on a schedule aligned on the Unix epoch.
pub(crate) async fn timer(
    target: Target,
    trigger: TimerTrigger,
    claims: Option<Arc<dyn FiringClaims>>,
    token: CancellationToken,
) {
    let cron = trigger.cron.as_deref().map(Cron::parse);
    let interval = trigger.interval_ms.map(Duration::from_millis);
    let slots = Arc::new(Semaphore::new(target.parallel.max(1)));
    let mut tasks = JoinSet::new();
    // Intervals run on the monotonic clock (a wall-clock step neither stalls nor bunches
    // them); `scheduled_ms` is reported on the wall clock of the start. Cron times are
    // wall-clock times, never the same one twice. In a cluster, intervals are wall-clock
    // times too (multiples of the interval since the epoch), the same on every node.
    let (start, start_wall) = (tokio::time::Instant::now(), SystemTime::now());
    let mut k: u32 = 0;
    let mut last_cron: u64 = 0;
    let mut last_aligned: u64 = 0;
    loop {
        while tasks.try_join_next().is_some() {}
        let (deadline, scheduled) = match interval {
            Some(every) if claims.is_some() => {
                // Firings missed while late are skipped; none is scheduled twice.
                let now = unix_ms(SystemTime::now());
                let at = next_aligned(now, every.as_millis() as u64, last_aligned);
                last_aligned = at;
                (
                    tokio::time::Instant::now() + Duration::from_millis(at - now),
                    UNIX_EPOCH + Duration::from_millis(at),
                )
            }
            Some(every) => {
                // Firings missed while late are skipped.
                k += 1;
                let now = tokio::time::Instant::now();
                while start + every * k <= now {
                    k += 1;
                }
                (start + every * k, start_wall + every * k)
            }
            None => {
                let now = SystemTime::now();
                let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
                let Some(Ok(cron)) = &cron else { break };
                let Some(at) = cron.next_after(secs.max(last_cron)) else {
                    tracing::warn!(function = %target.function, "its cron schedule never fires again");
                    break;
                };
                last_cron = at;
                let at = UNIX_EPOCH + Duration::from_secs(at);
                (
                    tokio::time::Instant::now() + at.duration_since(now).unwrap_or_default(),
                    at,
                )
            }
        };
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {}
            _ = token.cancelled() => break,
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            target.app.record(
                &target.function,
                EventKind::TriggerFailed,
                format!(
                    "timer firing of {} UTC skipped: {} firings still running",
                    time_of_day(unix_ms(scheduled)),
                    target.parallel
                ),
            );
            continue;
        };
        let body = serde_json::json!({
            "trigger": "timer",
            "function": target.function,
            "scheduled_ms": unix_ms(scheduled),
            "fired_ms": unix_ms(SystemTime::now()),
        });
        let (target, claims) = (target.clone(), claims.clone());
        tasks.spawn(async move {
            let _slot = slot;
            if let Some(claims) = claims {
                match claims.claim(&target.function, unix_ms(scheduled)).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(why) => {
                        target.app.record(
                            &target.function,
                            EventKind::TriggerFailed,
                            format!(
                                "timer firing of {} UTC not fired: {why}",
                                time_of_day(unix_ms(scheduled))
                            ),
                        );
                        return;
                    }
                }
            }
            let mut span = Invocation::start(&target, format!("timer-{}-{}", target.function, unix_ms(scheduled)));
            let posted = post(&target, "timer", &mut span, Bytes::from(body.to_string())).await;
            span.record(&target);
            if let Err(e) = posted {
                target.app.record(
                    &target.function,
                    EventKind::TriggerFailed,
                    format!("timer firing of {} UTC: {e}", time_of_day(unix_ms(scheduled))),
                );
            }
        });
    }
    finish(tasks).await;
}

/// The first multiple of `every_ms` after both `now_ms` and `last_ms` (the firing
/// scheduled before, so that a timer woken early does not schedule it again).
fn next_aligned(now_ms: u64, every_ms: u64, last_ms: u64) -> u64 {
    let every_ms = every_ms.max(1);
    (now_ms.max(last_ms) / every_ms + 1) * every_ms
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

/// A firing that the function did not take: who answered what.
#[derive(Debug, thiserror::Error)]
#[error("{member} answered {status}: {answer}")]
struct Refused {
    /// The instance that answered, or "no instance".
    member: String,
    status: u16,
    /// The start of the answer, for the event log.
    answer: String,
}

/// One event's invocation of the function: its request id and, while tracing is on,
/// its span, the first of a trace of its own.
struct Invocation {
    request_id: String,
    span: Option<trace::Span>,
    started: std::time::Instant,
}

impl Invocation {
    fn start(target: &Target, request_id: String) -> Invocation {
        let span = trace::enabled().then(|| trace::Span::trigger(&target.function, &target.path, &request_id));
        Invocation {
            request_id,
            span,
            started: std::time::Instant::now(),
        }
    }

    /// The `traceparent` the function is handed: its trace, this span the parent.
    fn traceparent(&self) -> Option<String> {
        let span = self.span.as_ref()?;
        span.context.header(span.span_id).to_str().ok().map(str::to_string)
    }

    fn record(self, target: &Target) {
        if let Some(mut span) = self.span {
            span.duration_us = self.started.elapsed().as_micros() as u64;
            target.traces.record(span);
        }
    }
}

/// POSTs one event; Ok on a 2xx answer, else who answered what.
async fn post(target: &Target, trigger: &'static str, span: &mut Invocation, body: Bytes) -> Result<(), Refused> {
    let traceparent = span.traceparent();
    let mut headers = vec![
        ("x-strata-trigger", trigger),
        ("x-request-id", span.request_id.as_str()),
    ];
    if let Some(t) = &traceparent {
        headers.push(("traceparent", t.as_str()));
    }
    let post = JsonPost {
        path: &target.path,
        headers: &headers,
        body,
        answer_limit: 64 << 10,
    };
    let answer = relay::post_json(&target.pool, post, &target.policy, &[]).await;
    let status = answer.status;
    if let Some(s) = span.span.as_mut() {
        s.attempts += 1;
        s.status = status;
        s.member = answer.member.clone();
    }
    let text = match answer.body {
        Ok(body) => String::from_utf8_lossy(&body).into_owned(),
        Err(e) => format!("(answer unreadable: {e})"),
    };
    if (200..300).contains(&status) {
        return Ok(());
    }
    let member = answer
        .member
        .map(|m| m.name.clone())
        .unwrap_or_else(|| "no instance".into());
    Err(Refused {
        member,
        status,
        answer: text.trim().chars().take(200).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::next_aligned;

    #[test]
    fn aligned_firings_are_the_next_multiple_of_the_interval_once_each() {
        assert_eq!(next_aligned(1_000, 500, 0), 1_500);
        assert_eq!(next_aligned(1_001, 500, 0), 1_500);
        assert_eq!(next_aligned(1_499, 500, 0), 1_500);
        // Woken a little early by the wall clock: the same firing is not scheduled again.
        assert_eq!(next_aligned(1_499, 500, 1_500), 2_000);
        // Late by several intervals: the missed ones are skipped.
        assert_eq!(next_aligned(3_200, 500, 1_500), 3_500);
    }
}
