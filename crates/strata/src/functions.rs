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

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, Method, Request};
use http_body_util::{BodyExt, Limited};
use strata_appservice::{AppService, EventKind};
use strata_bus::Pool;
use strata_gateway::relay;
use strata_gateway::{RelayPolicy, ReqBody};
use strata_manifest::{Cron, StoreTrigger, TimerTrigger};
use strata_store::{ChangeKind, Store};
use tokio::sync::{broadcast, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Deliveries of one store event, the first included.
pub(crate) const STORE_ATTEMPTS: u32 = 3;
const RETRY_PAUSE: [Duration; 2] = [Duration::from_millis(200), Duration::from_secs(1)];

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
}

/// Fires `target` for every change under the trigger's prefix.
pub(crate) async fn store(
    target: Target,
    store: Arc<Store>,
    trigger: StoreTrigger,
    ns: String,
    token: CancellationToken,
) {
    let mut changes = store.subscribe();
    let slots = Arc::new(Semaphore::new(target.parallel.max(1)));
    let tasks = TaskTracker::new();
    loop {
        let change = tokio::select! {
            c = changes.recv() => c,
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
        let body = serde_json::json!({
            "trigger": "store",
            "namespace": trigger.namespace,
            "key": change.key,
            "kind": match change.kind { ChangeKind::Value => "value", ChangeKind::Blob => "blob" },
            "version": change.version,
            "deleted": change.deleted,
        });
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s.expect("never closed"),
            _ = token.cancelled() => break,
        };
        let target = target.clone();
        tasks.spawn(async move {
            let _slot = slot;
            let what = format!("store change {}/{} v{}", body["namespace"], change.key, change.version);
            let body = Bytes::from(body.to_string());
            let mut last = String::new();
            for attempt in 0..STORE_ATTEMPTS {
                match post(&target, "store", body.clone()).await {
                    Ok(()) => return,
                    Err(e) => last = e,
                }
                if let Some(pause) = RETRY_PAUSE.get(attempt as usize) {
                    tokio::time::sleep(*pause).await;
                }
            }
            target.app.record(
                &target.function,
                EventKind::TriggerFailed,
                format!("{what}: not handled after {STORE_ATTEMPTS} attempts (last: {last})"),
            );
        });
    }
    tasks.close();
    tokio::select! {
        _ = tasks.wait() => {}
        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
    }
}

/// Fires `target` on the trigger's schedule.
pub(crate) async fn timer(target: Target, trigger: TimerTrigger, token: CancellationToken) {
    let cron = trigger.cron.as_deref().map(Cron::parse);
    let interval = trigger.interval_ms.map(Duration::from_millis);
    let slots = Arc::new(Semaphore::new(target.parallel.max(1)));
    let mut next = match interval {
        Some(every) => SystemTime::now() + every,
        None => SystemTime::UNIX_EPOCH,
    };
    loop {
        let now = SystemTime::now();
        if interval.is_none() {
            let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
            let Some(Ok(cron)) = &cron else { return };
            let Some(at) = cron.next_after(secs) else {
                tracing::warn!(function = %target.function, "its cron schedule never fires again");
                return;
            };
            next = UNIX_EPOCH + Duration::from_secs(at);
        }
        let wait = next.duration_since(now).unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = token.cancelled() => return,
        }
        let scheduled = next;
        if let Some(every) = interval {
            // The next firing keeps to the schedule; firings missed while late are skipped.
            next += every;
            let now = SystemTime::now();
            while next <= now {
                next += every;
            }
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            target.app.record(
                &target.function,
                EventKind::TriggerFailed,
                format!(
                    "timer firing of {} skipped: {} firings still running",
                    unix_ms(scheduled),
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
        let target = target.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = post(&target, "timer", Bytes::from(body.to_string())).await {
                target.app.record(
                    &target.function,
                    EventKind::TriggerFailed,
                    format!("timer firing of {}: {e}", body["scheduled_ms"]),
                );
            }
        });
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

/// POSTs one event; Ok on a 2xx answer, else what went wrong.
async fn post(target: &Target, trigger: &'static str, body: Bytes) -> Result<(), String> {
    let req = Request::builder()
        .method(Method::POST)
        .uri(target.path.as_str())
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, body.len())
        .header("x-strata-trigger", trigger)
        .body(ReqBody::Full(Some(body)))
        .expect("a valid request");
    let (res, outcome) = relay::any(&target.pool, req, &target.policy).await;
    let status = res.status();
    // Read the answer whole so that the connection goes back to the member's idle list.
    let text = match Limited::new(res.into_body(), 64 << 10).collect().await {
        Ok(body) => String::from_utf8_lossy(&body.to_bytes()).into_owned(),
        Err(e) => format!("(answer unreadable: {e})"),
    };
    if status.is_success() {
        return Ok(());
    }
    let member = outcome
        .member
        .map(|m| m.id.clone())
        .unwrap_or_else(|| "no instance".into());
    Err(format!(
        "{member} answered {status}: {}",
        text.trim().chars().take(200).collect::<String>()
    ))
}
