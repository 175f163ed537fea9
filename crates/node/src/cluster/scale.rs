//! Autoscaling in a cluster: the scheduler (the node holding the lease) sizes each
//! autoscaled service from the load every live node reports in its heartbeat, with the
//! same [`Policy`] a single node uses, and places the count it decides. One decider per
//! service, so nodes never scale against each other.
//!
//! The sample is the single-node one, summed over the cluster: requests in flight (each
//! node's gateway counts what it sent to the service's members on any node, so the sum
//! counts each request once), ready members, latency by Little's law from the replies
//! answered over the last second, and for a queue consumer its group's backlog with
//! the rates it is published and drained at (the queue is the cluster's: every node
//! reports the same figures, a moment apart; the largest is taken). Figures arrive with the heartbeat (every
//! second), so a decision lags the load by up to a second more than on one node.
//!
//! Scale from zero: a service with `instances.min` 0 goes to zero instances cluster-wide
//! after its idle timeout, as on one node. A request that then finds no member on any
//! node is held by that node's gateway (`strata_autoscale::Admission::holding`), which
//! puts its heartbeat at once; the held requests count as demand here (any demand at
//! zero is taken at once), and the scheduler runs as soon as such a heartbeat arrives,
//! not at its next quarter second.
//!
//! Shedding at `instances.max` is each node's own ([`super::shed`]).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use strata_autoscale::policy::Backlog;
use strata_autoscale::{Policy, Sample};
use strata_cluster::NodeRecord;
use strata_manifest::ServiceSpec;

/// Replies answered are counted over this span for the latency figure.
const RATE_SPAN: Duration = Duration::from_secs(1);

/// The scheduler's autoscalers, one per autoscaled service; made afresh when a node
/// takes the lease (the first decisions start from the placement it reads).
#[derive(Default)]
pub(crate) struct ClusterScaler {
    services: BTreeMap<(String, String), Scaler>,
    origin: Option<Instant>,
}

struct Scaler {
    policy: Policy,
    /// The spec the policy was made from: a redeploy that changes it starts over.
    spec: ServiceSpec,
    points: VecDeque<Point>,
    last_busy: Instant,
}

#[derive(Clone, Copy)]
struct Point {
    at: Instant,
    served: u64,
    demand: u64,
    published: u64,
    backlog: u64,
}

/// A service the cluster autoscales: one with an `autoscale` section or `instances.min`
/// 0 (then with the default policy, as on one node) that is not a function (a function
/// starts from zero on each node where its events arrive).
pub(crate) fn is_autoscaled(spec: &ServiceSpec, is_function: bool) -> bool {
    (spec.autoscale.is_some() || spec.instances.min == 0) && !is_function
}

/// Whether `node` holds requests for a service at zero.
pub(crate) fn holds_at_zero(node: &NodeRecord) -> bool {
    node.load.values().any(|l| l.held > 0)
}

impl ClusterScaler {
    /// The count to place for `app`'s autoscaled `service` now, and the decision in words
    /// when it changed. `current` is the count placed now (None: not placed yet).
    pub fn decide(
        &mut self,
        app: &str,
        service: &str,
        spec: &ServiceSpec,
        live: &[NodeRecord],
        current: Option<u32>,
    ) -> (u32, Option<String>) {
        let now = Instant::now();
        let origin = *self.origin.get_or_insert(now);
        let min = spec.instances.min;
        let max = spec.instances.max.max(min);
        let key = (app.to_string(), service.to_string());
        if self.services.get(&key).is_some_and(|s| &s.spec != spec) {
            self.services.remove(&key);
        }
        let scaler = self.services.entry(key).or_insert_with(|| Scaler {
            policy: Policy::new(
                spec.autoscale.clone().unwrap_or_default(),
                min,
                max,
                Duration::from_millis(spec.instances.idle_timeout_ms),
            )
            .idle_setting(spec.idle_setting()),
            spec: spec.clone(),
            points: VecDeque::new(),
            last_busy: now,
        });
        let current = current.unwrap_or_else(|| spec.instances.initial()).clamp(min, max);
        let name = format!("{app}/{service}");
        let (mut inflight, mut held, mut served, mut ready) = (0u64, 0u64, 0u64, 0u32);
        // The queue is the cluster's: every node reports it; the freshest is the largest.
        let (mut backlog, mut published) = (None::<u64>, 0u64);
        for load in live.iter().filter_map(|n| n.load.get(&name)) {
            inflight += load.inflight;
            held += load.held;
            served += load.served;
            ready += load.ready;
            if let Some(b) = load.backlog {
                backlog = Some(backlog.map_or(b, |was: u64| was.max(b)));
            }
            published = published.max(load.published);
        }
        let point = Point {
            at: now,
            served,
            demand: inflight + held,
            published,
            backlog: backlog.unwrap_or(0),
        };
        let points = &mut scaler.points;
        points.push_back(point);
        while points.len() > 2 && (now.duration_since(points[1].at) >= RATE_SPAN || points.len() > 64) {
            points.pop_front();
        }
        let base = points[0];
        let span = now.duration_since(base.at).as_secs_f64();
        // A node that stopped reporting takes its count with it: the sum may go down.
        let answered = served.saturating_sub(base.served);
        if inflight + held > 0 || answered > 0 {
            scaler.last_busy = now;
        }
        let mean_demand = points.iter().map(|p| p.demand as f64).sum::<f64>() / points.len() as f64;
        let latency =
            (span > 0.0 && answered > 0).then(|| Duration::from_secs_f64(mean_demand * span / answered as f64));
        let backlog = backlog.map(|messages| {
            let arrived = published.saturating_sub(base.published);
            let drained = (base.backlog + arrived).saturating_sub(messages);
            let per_s = |n: u64| if span > 0.0 { n as f64 / span } else { 0.0 };
            Backlog {
                messages,
                arriving_per_s: per_s(arrived),
                draining_per_s: per_s(drained),
            }
        });
        if backlog.is_some_and(|b| b.messages > 0) {
            scaler.last_busy = now;
        }
        let sample = Sample {
            at: now.duration_since(origin),
            current,
            ready,
            inflight: (inflight + held).max(mean_demand.ceil() as u64) - held,
            held,
            backlog,
            latency,
            idle_for: now.duration_since(scaler.last_busy),
        };
        let r = scaler.policy.observe(&sample);
        if r.target == current {
            return (current, None);
        }
        let why = format!("{current} -> {} ({}): {}", r.target, r.signal.as_str(), r.reason);
        (r.target, Some(why))
    }

    /// Forgets the services of apps no longer deployed.
    pub fn retain_apps(&mut self, deployed: &BTreeMap<String, String>) {
        self.services.retain(|(app, _), _| deployed.contains_key(app));
    }
}

#[cfg(test)]
mod tests {
    use strata_cluster::membership::ServiceLoad;
    use strata_manifest::AutoscaleSpec;

    use super::*;

    fn spec() -> ServiceSpec {
        let mut spec: ServiceSpec = serde_json::from_value(serde_json::json!({
            "run": ["true"],
            "instances": { "min": 1, "max": 4 },
        }))
        .unwrap();
        spec.autoscale = Some(AutoscaleSpec {
            concurrency: 2,
            up_window_ms: 0,
            down_window_ms: 0,
            ..AutoscaleSpec::default()
        });
        spec
    }

    fn node(name: &str, inflight: u64, served: u64) -> NodeRecord {
        NodeRecord {
            name: name.into(),
            load: [(
                "shop/web".to_string(),
                ServiceLoad {
                    inflight,
                    served,
                    ready: 1,
                    ..ServiceLoad::default()
                },
            )]
            .into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_load_of_every_node_is_summed_and_sized_by_the_policy() {
        let mut scaler = ClusterScaler::default();
        let spec = spec();
        // 3 + 3 in flight over two gateways, 2 per instance: 3 instances.
        let live = [node("a", 3, 10), node("b", 3, 10)];
        let (count, why) = scaler.decide("shop", "web", &spec, &live, Some(1));
        assert_eq!(count, 3, "{why:?}");
        assert!(why.unwrap().starts_with("1 -> 3 (concurrency)"));
        // Past the max: capped.
        let live = [node("a", 20, 20), node("b", 20, 20)];
        assert_eq!(scaler.decide("shop", "web", &spec, &live, Some(3)).0, 4);
        // Nothing in flight, nothing answered: back to the min (never below 1).
        let live = [node("a", 0, 20), node("b", 0, 20)];
        let mut count = 4;
        for _ in 0..70 {
            count = scaler.decide("shop", "web", &spec, &live, Some(count)).0;
        }
        assert_eq!(count, 1);
        // An unchanged count says nothing.
        assert_eq!(scaler.decide("shop", "web", &spec, &live, Some(1)), (1, None));
    }

    #[test]
    fn a_min_0_service_goes_to_zero_when_idle_and_a_held_request_starts_it_at_once() {
        let mut scaler = ClusterScaler::default();
        let mut spec = spec();
        spec.instances.min = 0;
        spec.instances.idle_timeout_ms = 0;
        // Idle: zero (min 0 is no longer taken as 1).
        let idle = [node("a", 0, 5), node("b", 0, 5)];
        let (count, why) = scaler.decide("shop", "web", &spec, &idle, Some(1));
        assert_eq!(count, 0, "{why:?}");
        // A request held on one node at zero: one instance, without waiting for a window.
        let mut held = node("b", 0, 5);
        held.load.get_mut("shop/web").unwrap().held = 1;
        assert!(holds_at_zero(&held));
        assert!(!holds_at_zero(&idle[0]));
        let live = [node("a", 0, 5), held];
        let (count, why) = scaler.decide("shop", "web", &spec, &live, Some(0));
        assert_eq!(count, 1, "{why:?}");
        assert!(why.unwrap().contains("(1 held)"));
        // A min-0 service without `autoscale` is sized by the scheduler too.
        spec.autoscale = None;
        assert!(is_autoscaled(&spec, false));
        assert!(
            !is_autoscaled(&spec, true),
            "a function starts on the node of its event"
        );
    }

    #[test]
    fn a_queue_consumer_is_sized_by_its_group_s_backlog_as_every_node_reports_it() {
        let mut scaler = ClusterScaler::default();
        let mut spec = spec();
        spec.autoscale.as_mut().unwrap().backlog = 10;
        let consumer = |name: &str, backlog: u64| {
            let mut n = node(name, 0, 0);
            let load = n.load.get_mut("shop/web").unwrap();
            load.backlog = Some(backlog);
            load.published = 100;
            n
        };
        // 30 messages waiting (one node's figure a moment older), 10 per instance: 3.
        let live = [consumer("a", 30), consumer("b", 28)];
        let (count, why) = scaler.decide("shop", "web", &spec, &live, Some(1));
        assert_eq!(count, 3, "{why:?}");
        assert!(why.unwrap().contains("(backlog)"));
    }
}
