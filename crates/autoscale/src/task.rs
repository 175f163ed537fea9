//! The autoscaler task of one service: feeds the policy ([`crate::policy`]) samples of
//! the pool's load and applies its decisions.
//!
//! Driven by events, not a polling period: it wakes when a request is held at zero or a
//! member goes past its concurrency target (both signalled by the service's
//! [`Admission`] from the request path), or a message is published to the queue the
//! service consumes. While the pool has
//! work (anything in flight, held or queued) it also samples every 100 ms, which the
//! policy's windows need, and event wake-ups are at least 20 ms apart; while idle, once
//! a second for the down window and the idle timeout.
//!
//! It also sets the admission's modes (buffering while instances it asked for start,
//! shedding only at instances.max), measures each start
//! from zero (first held request to a ready instance), and records every decision, shed
//! burst and cold start as an event with its inputs and reason.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_appservice::{AppService, AutoscaleStatus, EventKind, ScaleBy};
use strata_bus::Pool;
use strata_manifest::{AutoscaleSpec, ServiceSpec};
use strata_queue::QueueHandle;
use tokio_util::sync::CancellationToken;

use crate::policy::{Backlog, Policy, Sample};
use crate::Admission;

/// Time between samples while the pool has work.
const BUSY_TICK: Duration = Duration::from_millis(100);
/// Least time between two samples woken by load events while busy.
const MIN_GAP: Duration = Duration::from_millis(20);
/// Time between samples while idle (down window, idle timeout).
const IDLE_TICK: Duration = Duration::from_secs(1);
/// Rates (arrivals, drain, throughput) are taken over this much of the recent past.
const RATE_SPAN: Duration = Duration::from_secs(1);
/// How long after a step up requests may wait at the gateway for the new instances.
const BUFFER_FOR: Duration = Duration::from_secs(5);
/// How long a start from zero may take before it is no longer reported as a cold start.
const COLD_START_REPORT: Duration = Duration::from_secs(120);

/// What the autoscaler of one service works from.
pub struct Scaled {
    pub service: String,
    pub spec: AutoscaleSpec,
    pub min: u32,
    pub max: u32,
    pub idle_timeout: Duration,
    /// The manifest setting behind `idle_timeout` (`ServiceSpec::idle_setting`).
    pub idle_setting: &'static str,
    /// The queue and group the service consumes, if it does.
    pub consumes: Option<(Arc<dyn QueueHandle>, String)>,
    /// Shed load at max: only for a service that declares `autoscale` (one that only
    /// scales from zero keeps queueing as before).
    pub sheds: bool,
    /// A function's pool: its `concurrency` is a hard cap per instance, at any size (a
    /// service's concurrency target is soft).
    pub capped: bool,
}

impl Scaled {
    /// The services that are autoscaled: those with `autoscale`, and those that may run
    /// no instance (scaled from and to zero with the default policy).
    pub fn of(name: &str, spec: &ServiceSpec, queue: Option<Arc<dyn QueueHandle>>) -> Option<Scaled> {
        if spec.autoscale.is_none() && spec.instances.min > 0 {
            return None;
        }
        Some(Scaled {
            service: name.to_string(),
            spec: spec.autoscale.clone().unwrap_or_default(),
            min: spec.instances.min,
            max: spec.instances.max,
            idle_timeout: Duration::from_millis(spec.instances.idle_timeout_ms),
            idle_setting: spec.idle_setting(),
            consumes: queue.zip(spec.consumes.as_ref().map(|c| c.group.clone())),
            sheds: spec.autoscale.is_some(),
            capped: spec.function.is_some(),
        })
    }
}

/// One sample's raw figures, kept for rates over [`RATE_SPAN`].
#[derive(Clone, Copy)]
struct Point {
    at: Instant,
    served: u64,
    /// In flight on the members plus held at the gateway.
    demand: u64,
    published: u64,
    backlog: u64,
}

/// Runs the autoscaler of one service until `token` is cancelled. `admission` is the
/// one installed on `pool` (made from the same `scaled`).
pub async fn run(
    app: Arc<AppService>,
    pool: Arc<Pool>,
    admission: Arc<Admission>,
    scaled: Scaled,
    token: CancellationToken,
) {
    let service = scaled.service.clone();
    let shed_at = if scaled.sheds {
        scaled.spec.shed_at() as usize
    } else {
        0
    };
    let origin = Instant::now();
    let mut policy =
        Policy::new(scaled.spec.clone(), scaled.min, scaled.max, scaled.idle_timeout).idle_setting(scaled.idle_setting);
    let mut points: VecDeque<Point> = VecDeque::new();
    let mut decisions = 0u64;
    // The last sample with anything in flight or held: a request running longer than the
    // idle timeout keeps its instance.
    let mut last_busy = Instant::now();
    // When the last step up was taken: buffering at the gateway is bounded by it.
    let mut stepped_up_at: Option<Instant> = None;
    let cold = Arc::new(ColdStarts::default());
    let mut shed_reported = 0u64;
    let mut held_full_reported = 0u64;
    let mut shed_reported_at = Instant::now();
    loop {
        // Registered before the queue is read, so that a publish after it wakes an idle wait.
        let published_event = scaled.consumes.as_ref().map(|(queue, _)| queue.changed());
        let now = Instant::now();
        let current = app.desired(&service).unwrap_or(0);
        let members = pool.members();
        let inflight: u64 = members.iter().map(|m| m.inflight() as u64).sum();
        let served = pool.served_total();
        let held = admission.held() as u64;
        if inflight + held > 0 {
            last_busy = now;
        }
        let (published, backlog) = match &scaled.consumes {
            Some((queue, group)) => {
                let stats = queue.stats();
                // A group not made yet (its first fetch makes it) starts at the oldest message.
                let backlog = stats
                    .groups
                    .iter()
                    .find(|g| &g.name == group)
                    .map_or(stats.messages, |g| g.backlog);
                (stats.next_offset, Some(backlog))
            }
            None => (0, None),
        };
        let point = Point {
            at: now,
            served,
            demand: inflight + held,
            published,
            backlog: backlog.unwrap_or(0),
        };
        points.push_back(point);
        while points.len() > 2 && (now.duration_since(points[1].at) >= RATE_SPAN || points.len() > 64) {
            points.pop_front();
        }
        let base = points[0];
        let span = now.duration_since(base.at).as_secs_f64();
        let (backlog_sample, latency) = if span > 0.0 {
            let arrived = published.saturating_sub(base.published);
            let drained = (base.backlog + arrived).saturating_sub(point.backlog);
            let answered = served.saturating_sub(base.served);
            let mean_demand = points.iter().map(|p| p.demand as f64).sum::<f64>() / points.len() as f64;
            // Little's law: mean time in the system (held included) = mean number in it /
            // throughput.
            let latency = (answered > 0).then(|| Duration::from_secs_f64(mean_demand * span / answered as f64));
            let backlog = backlog.map(|messages| Backlog {
                messages,
                arriving_per_s: arrived as f64 / span,
                draining_per_s: drained as f64 / span,
            });
            (backlog, latency)
        } else {
            (
                backlog.map(|messages| Backlog {
                    messages,
                    ..Backlog::default()
                }),
                None,
            )
        };
        // A closed-loop load makes the instantaneous count dip as replies turn around; the
        // mean over the last second does not, and a step shows in the instantaneous one.
        let mean_demand = points
            .iter()
            .map(|p| p.demand)
            .sum::<u64>()
            .div_ceil(points.len() as u64);
        let sample = Sample {
            at: now.duration_since(origin),
            current,
            ready: members.len() as u32,
            inflight: (inflight + held).max(mean_demand) - held,
            held,
            backlog: backlog_sample,
            latency,
            idle_for: admission.idle_for().min(now.duration_since(last_busy)),
        };
        let r = policy.observe(&sample);
        if r.target != current {
            match app.scale(&service, r.target, ScaleBy::Autoscaler) {
                Ok(()) => {
                    decisions += 1;
                    app.record(
                        &service,
                        EventKind::Autoscaled,
                        format!("{current} -> {} ({}): {}", r.target, r.signal.as_str(), r.reason),
                    );
                    if current == 0 && r.target > 0 {
                        cold.watch(&app, &pool, &service, now, &token);
                    }
                    if r.target > current {
                        stepped_up_at = Some(now);
                    }
                }
                Err(e) => tracing::warn!(service = %service, "autoscale to {} failed: {e:#}", r.target),
            }
        }
        // While instances asked for are starting, requests past the concurrency target
        // wait at the gateway for room or a new instance, not in a full instance's queue.
        // Bounded in time: instances that do not come (a crash loop, no capacity) must not
        // turn the soft concurrency target into a hard cap on the ones that run.
        let starting = stepped_up_at.is_some_and(|t| now.duration_since(t) < BUFFER_FOR);
        admission.set_buffering(starting && r.target as usize > members.len() && !members.is_empty());
        // Shed only once the pool is at its maximum and every instance is serving.
        let full = r.at_max && members.len() as u32 >= scaled.max;
        admission.set_shed_at(if full { shed_at } else { 0 });
        let shed = admission.shed_count();
        if shed > shed_reported && now.duration_since(shed_reported_at) >= Duration::from_secs(1) {
            let held_full = admission.shed_held_full_count();
            app.record(
                &service,
                EventKind::Shed,
                shed_event(
                    &scaled,
                    shed - shed_reported,
                    held_full - held_full_reported,
                    inflight,
                    shed_at,
                ),
            );
            shed_reported = shed;
            held_full_reported = held_full;
            shed_reported_at = now;
        }
        app.set_autoscale(
            &service,
            AutoscaleStatus {
                target: r.target,
                signal: r.signal.as_str().to_string(),
                reason: r.reason,
                inflight: inflight + held,
                held,
                backlog,
                drain_s: backlog_sample
                    .filter(|b| b.draining_per_s > 0.0)
                    .map(|b| (b.messages as f64 / b.draining_per_s * 10.0).round() / 10.0),
                latency_ms: latency.map(|l| (l.as_secs_f64() * 1e5).round() / 100.0),
                shed,
                cold_start_ms: cold.last(),
                cold_starts: cold.count.load(Ordering::Relaxed),
                decisions,
            },
        );

        let busy = inflight + held > 0
            || backlog.unwrap_or(0) > 0
            || r.target != members.len() as u32
            || (scaled.min == 0 && r.target > 0);
        if busy {
            // A member past its concurrency still wakes the task at once, but samples are
            // at least MIN_GAP apart: under sustained saturation every request signals.
            tokio::select! {
                _ = tokio::time::sleep(BUSY_TICK) => {}
                _ = admission.demanded() => {
                    let since = now.elapsed();
                    if since < MIN_GAP && !members.is_empty() {
                        tokio::select! {
                            _ = tokio::time::sleep(MIN_GAP - since) => {}
                            _ = token.cancelled() => return,
                        }
                    }
                }
                _ = token.cancelled() => return,
            }
        } else {
            let published = async {
                match published_event {
                    Some(notified) => notified.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(IDLE_TICK) => {}
                _ = admission.demanded() => {}
                _ = published => {}
                _ = token.cancelled() => return,
            }
        }
    }
}

/// Starts from zero: how many, and how long the last one took to get a ready instance.
#[derive(Default)]
struct ColdStarts {
    count: AtomicU64,
    /// Milliseconds x 1000 of the last one; 0: none yet.
    last_us: AtomicU64,
}

impl ColdStarts {
    fn last(&self) -> Option<u64> {
        match self.last_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(us.div_ceil(1000)),
        }
    }

    /// Times the start from `since` to the pool's first ready member, in its own task so
    /// that the figure is not rounded to the sampling tick.
    fn watch(
        self: &Arc<Self>,
        app: &Arc<AppService>,
        pool: &Arc<Pool>,
        service: &str,
        since: Instant,
        token: &CancellationToken,
    ) {
        let (me, app, pool, service) = (self.clone(), app.clone(), pool.clone(), service.to_string());
        let token = token.clone();
        tokio::spawn(async move {
            let mut ready = pool.watch_ready();
            let became_ready = async { ready.wait_for(|n| *n > 0).await.is_ok() };
            let waited = tokio::select! {
                w = tokio::time::timeout(COLD_START_REPORT, became_ready) => w,
                _ = token.cancelled() => return,
            };
            if let Ok(true) = waited {
                let took = since.elapsed();
                me.count.fetch_add(1, Ordering::Relaxed);
                me.last_us.store((took.as_micros() as u64).max(1), Ordering::Relaxed);
                tracing::info!(service = %service, cold_start_ms = took.as_millis() as u64, "scaled from zero");
                app.record(
                    &service,
                    EventKind::ColdStart,
                    format!(
                        "ready {:.1} ms after the first request to a pool at zero",
                        took.as_secs_f64() * 1e3
                    ),
                );
            }
        });
    }
}

/// The shed event's text: `shed` requests shed with 503 since the last one, of which
/// `held_full` below the maximum because [`crate::MAX_HELD`] were waiting for room
/// already (a function's cap), the rest at the pool's maximum.
fn shed_event(scaled: &Scaled, shed: u64, held_full: u64, inflight: u64, shed_at: usize) -> String {
    // A function's bounds are its own settings' names.
    let (max_name, per_name) = match scaled.capped {
        true => ("max_instances", "concurrency"),
        false => ("instances.max", "autoscale.max_inflight"),
    };
    let at_max = shed.saturating_sub(held_full);
    let mut text = format!("{shed} request(s) shed with 503: ");
    if held_full > 0 {
        text += &format!(
            "{held_full} below {max_name} ({}), every instance at its {per_name} and {} requests waiting for room already (the most held per service)",
            scaled.max,
            crate::MAX_HELD
        );
        if at_max > 0 {
            text += "; ";
        }
    }
    if at_max > 0 {
        text += &format!(
            "{}at {max_name} ({}) with {inflight} in flight, {shed_at} per instance allowed ({per_name})",
            if held_full > 0 {
                format!("{at_max} ")
            } else {
                String::new()
            },
            scaled.max,
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn function(max: u32) -> Scaled {
        Scaled {
            service: "fn".into(),
            spec: AutoscaleSpec::default(),
            min: 0,
            max,
            idle_timeout: Duration::from_secs(1),
            idle_setting: "keep_warm_ms",
            consumes: None,
            sheds: true,
            capped: true,
        }
    }

    #[test]
    fn a_shed_event_says_whether_the_pool_was_at_its_maximum() {
        let f = function(10);
        assert_eq!(
            shed_event(&f, 3, 0, 40, 4),
            "3 request(s) shed with 503: at max_instances (10) with 40 in flight, 4 per instance allowed (concurrency)"
        );
        // Below the maximum, shed because too many waited for room: not "at max_instances".
        let below = shed_event(&f, 5, 5, 8, 0);
        assert!(!below.contains("at max_instances"), "{below}");
        assert!(
            below.contains("5 below max_instances (10)") && below.contains("1024 requests waiting"),
            "{below}"
        );
        let both = shed_event(&f, 5, 2, 40, 4);
        assert!(
            both.contains("2 below max_instances") && both.contains("; 3 at max_instances (10)"),
            "{both}"
        );
        let service = Scaled {
            capped: false,
            ..function(3)
        };
        assert!(shed_event(&service, 1, 0, 9, 3).contains("at instances.max (3)"));
    }
}
