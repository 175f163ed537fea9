//! Scale from zero in a cluster, on the node where the requests wait. A service the
//! scheduler may leave at zero (`instances.min` 0) has a holding admission on every
//! node ([`strata_autoscale::Admission::holding`]): a request that finds no member on
//! any node waits at this node's gateway, within its deadline, as on one node. Here,
//! per such service, a task wakes on the first held request, puts this node's
//! heartbeat at once (its load reports the held requests, which the scheduler takes as
//! demand at zero), and times the start: from the first request held here to the
//! first member ready on any node, recorded as a `cold-start` event and in the
//! service's autoscale status (`cold_start_ms`; `strata_cold_start_seconds` in the metrics).
//!
//! An instance that cannot start (it exits, or never passes its readiness check) is
//! told by its node's heartbeat (`ServiceLoad::launches_failed`): while requests are
//! held here and no instance of the service is starting on another node, each such
//! failure answers them 503 at once, naming the node ([`Pool::start_failed`], as on one
//! node), instead of at their deadline; and those that come until that instance
//! launches again (`ServiceLoad::relaunch_at_ms`) are answered at once too.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_appservice::{AppService, AutoscaleStatus, EventKind};
use strata_autoscale::Admission;
use strata_bus::Pool;
use strata_cluster::{Membership, NodeRecord};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::Node;

/// A start that takes longer than this is no longer reported as a cold start.
const COLD_START_REPORT: Duration = Duration::from_secs(120);

/// Follows every service of `node` (app `app_name`) that the scheduler may leave at
/// zero, until `stop`. `beat_now` puts this node's heartbeat at once.
pub(super) fn watch(
    app_name: &str,
    node: &Node,
    membership: &Membership,
    beat_now: &Arc<Notify>,
    stop: &CancellationToken,
) {
    for (service, admission) in &node.held_at_zero {
        let failures = Failures {
            membership: membership.clone(),
            key: format!("{app_name}/{service}"),
            app: app_name.to_string(),
            service: service.clone(),
        };
        tokio::spawn(watch_service(
            node.app.clone(),
            node.bus.pool(service),
            admission.clone(),
            failures,
            beat_now.clone(),
            stop.child_token(),
        ));
    }
}

/// Where the nodes' heartbeats tell of a service's instances that failed to start.
struct Failures {
    membership: Membership,
    /// `APP/SERVICE`, as `NodeRecord::load` is keyed.
    key: String,
    app: String,
    service: String,
}

impl Failures {
    /// Per live node: its instances of the service that ended before they were ready,
    /// and when the last of them launches again (Unix ms, 0: none waits to).
    fn counts(&self) -> BTreeMap<String, (u64, u64)> {
        self.membership
            .live()
            .into_iter()
            .filter_map(|n| {
                let load = n.load.get(&self.key)?;
                Some((n.name.clone(), (load.launches_failed, load.relaunch_at_ms)))
            })
            .collect()
    }

    /// Whether `node` lists an instance of the service as starting.
    fn starting_on(&self, node: &NodeRecord) -> bool {
        node.running
            .iter()
            .any(|i| i.app == self.app && i.service == self.service && i.state == "starting")
    }

    /// The nodes where an instance failed since `before` (updated to now), when no
    /// instance is starting on any other node: the requests held here are then answered.
    /// A node that counted a failure had no other instance starting then (it counts
    /// only those, `Pool::launch_failed`); one it lists as starting may be the failed
    /// one launching again, so it is not asked.
    fn failed_since(&self, before: &mut BTreeMap<String, (u64, u64)>) -> Vec<(String, u64)> {
        let now = self.counts();
        let now_ms = strata_cluster::now_ms();
        let failed: Vec<(String, u64)> = now
            .iter()
            .filter(|(node, count)| failed_anew(before.get(*node).copied(), **count, now_ms))
            .map(|(node, (_, relaunch_at))| (node.clone(), *relaunch_at))
            .collect();
        *before = now;
        if failed.is_empty() {
            return failed;
        }
        let starting_elsewhere = self
            .membership
            .live()
            .iter()
            .any(|n| !failed.iter().any(|(f, _)| *f == n.name) && self.starting_on(n));
        if starting_elsewhere {
            return Vec::new();
        }
        failed
    }
}

/// Whether a node's count of failed starts (and next launch, Unix ms), `now` against
/// what it was `before`, tells of a new failure: it grew; or it restarted from 0 (the
/// node or the app restarted) and is not 0 again; or the node was not heard before and
/// its count comes with a next launch still to come (a failure of its last seconds: a
/// count without one may be hours old).
fn failed_anew(before: Option<(u64, u64)>, now: (u64, u64), now_ms: u64) -> bool {
    let (n, relaunch_at) = now;
    match before {
        Some((b, _)) => n > b || (n < b && n > 0),
        None => n > 0 && relaunch_at > now_ms,
    }
}

/// What follows failures on `failed` (node, its next launch in Unix ms) for the
/// requests that come next: answered at once until the soonest next launch, held if it
/// is due (or not known).
fn after(failed: &[(String, u64)]) -> strata_bus::AfterFailure {
    let soonest = failed.iter().map(|(_, at)| *at).min().unwrap_or(0);
    match soonest.saturating_sub(strata_cluster::now_ms()) {
        0 => strata_bus::AfterFailure::Hold,
        left => strata_bus::AfterFailure::Backoff(Duration::from_millis(left)),
    }
}

async fn watch_service(
    app: Arc<AppService>,
    pool: Arc<Pool>,
    admission: Arc<Admission>,
    failures: Failures,
    beat_now: Arc<Notify>,
    stop: CancellationToken,
) {
    let service = failures.service.clone();
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
        tokio::pin!(became_ready);
        let report_by = tokio::time::sleep(COLD_START_REPORT);
        tokio::pin!(report_by);
        let mut heard = failures.membership.changed();
        // A node missing here (not heard yet) is judged by its first record (`failed_anew`).
        let mut failed_before = failures.counts();
        let waited = loop {
            tokio::select! {
                w = &mut became_ready => break w,
                () = &mut report_by => break false,
                changed = heard.changed() => {
                    if changed.is_err() {
                        // The membership is gone: this node is stopping.
                        return;
                    }
                    let failed = failures.failed_since(&mut failed_before);
                    if !failed.is_empty() && admission.held() > 0 && pool.members().is_empty() {
                        let nodes: Vec<&str> = failed.iter().map(|(n, _)| n.as_str()).collect();
                        pool.start_failed(
                            &format!(
                                "its instance on node {} failed to start; strata ps --nats says why",
                                nodes.join(", ")
                            ),
                            after(&failed),
                        );
                    }
                }
                _ = stop.cancelled() => return,
            }
        };
        if !waited {
            continue;
        }
        let took = since.elapsed();
        starts += 1;
        let members = pool.members();
        let first = members.first().map_or_else(String::new, |m| m.name.clone());
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

#[cfg(test)]
mod tests {
    use super::failed_anew;

    #[test]
    fn a_failure_is_seen_when_the_count_grows_restarts_or_first_comes_with_a_relaunch_due() {
        let now = 1_000_000;
        assert!(failed_anew(Some((2, 0)), (3, now + 500), now), "grew");
        assert!(!failed_anew(Some((3, 0)), (3, 0), now), "the same");
        assert!(failed_anew(Some((5, 0)), (1, now + 500), now), "restarted, one since");
        assert!(!failed_anew(Some((5, 0)), (0, 0), now), "restarted, none since");
        assert!(failed_anew(None, (1, now + 500), now), "first heard, relaunch due");
        assert!(!failed_anew(None, (7, 0), now), "first heard, an old count");
        assert!(!failed_anew(None, (7, now - 1), now), "first heard, relaunched already");
    }
}
