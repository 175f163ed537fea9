//! Scale from zero in a cluster, on the node where the requests wait. A service the
//! scheduler may leave at zero (`instances.min` 0) has a holding admission on every
//! node ([`strata_autoscale::Admission::holding`]): a request that finds no member on
//! any node waits at this node's gateway, within its deadline, as on one node. Here,
//! per such service, a task wakes on the first held request, puts this node's
//! heartbeat at once (its load reports the held requests, which the scheduler takes as
//! demand at zero), and times the start: from the first request held here to the
//! first member ready on any node, recorded as a `cold-start` event and in the
//! service's autoscale status (`cold_start_ms`; `strata_cold_start_seconds` in the metrics).

use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_appservice::{AppService, AutoscaleStatus, EventKind};
use strata_autoscale::Admission;
use strata_bus::Pool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::Node;

/// A start that takes longer than this is no longer reported as a cold start.
const COLD_START_REPORT: Duration = Duration::from_secs(120);

/// Follows every service of `node` that the scheduler may leave at zero, until `stop`.
/// `beat_now` puts this node's heartbeat at once.
pub(super) fn watch(node: &Node, beat_now: &Arc<Notify>, stop: &CancellationToken) {
    for (service, admission) in &node.held_at_zero {
        tokio::spawn(watch_service(
            node.app.clone(),
            node.bus.pool(service),
            admission.clone(),
            service.clone(),
            beat_now.clone(),
            stop.child_token(),
        ));
    }
}

async fn watch_service(
    app: Arc<AppService>,
    pool: Arc<Pool>,
    admission: Arc<Admission>,
    service: String,
    beat_now: Arc<Notify>,
    stop: CancellationToken,
) {
    let mut starts = 0u64;
    loop {
        tokio::select! {
            _ = admission.demanded() => {}
            _ = stop.cancelled() => return,
        }
        if admission.held() == 0 || !pool.members().is_empty() {
            continue;
        }
        let since = Instant::now();
        beat_now.notify_one();
        let mut ready = pool.watch_ready();
        let became_ready = async { ready.wait_for(|n| *n > 0).await.is_ok() };
        let waited = tokio::select! {
            w = tokio::time::timeout(COLD_START_REPORT, became_ready) => w,
            _ = stop.cancelled() => return,
        };
        if !matches!(waited, Ok(true)) {
            continue;
        }
        let took = since.elapsed();
        starts += 1;
        let members = pool.members();
        let first = members.first().map_or_else(String::new, |m| m.id.clone());
        let ms = took.as_secs_f64() * 1e3;
        tracing::info!(
            service,
            cold_start_ms = took.as_millis() as u64,
            member = first,
            "scaled from zero in the cluster"
        );
        app.record(
            &service,
            EventKind::ColdStart,
            format!("ready {ms:.1} ms after the first request held here for a service at zero on every node (member {first})"),
        );
        app.update_autoscale(&service, |s| {
            *s = AutoscaleStatus {
                target: members.len() as u32,
                signal: "cluster".to_string(),
                reason: "sized by the cluster's scheduler".to_string(),
                cold_start_ms: Some((took.as_micros() as u64).div_ceil(1000).max(1)),
                cold_starts: starts,
                // Kept by the shedding task (`shed`).
                shed: s.shed,
                ..AutoscaleStatus::default()
            }
        });
    }
}
