//! Shedding at `instances.max` in a cluster, on each node's gateway. On one node the
//! autoscaler task turns shedding on once the pool is at its maximum with every
//! instance ready (docs/autoscaling.md); in a cluster the scheduler sizes the pool and
//! every node's gateway sends to every member, so each node decides for its own
//! gateway here, from what it sees:
//!
//! - **at the maximum**: this node's pool (every ready member on every node) holds
//!   the cluster's `instances.max` members or more;
//! - **how much room is left per member**: `autoscale.max_inflight` less an even share
//!   of what the other nodes' gateways report in flight to the service (their
//!   heartbeats, at most a second old), at least 1. The admission then sheds a request
//!   when the member picked, and every other, has that many in flight from this node.
//!
//! A member's in flight is counted by each gateway for itself, so the limit holds
//! across nodes only as well as the heartbeats are fresh: under a burst that starts on
//! every node at once each may let through up to `max_inflight` per member before the
//! next heartbeat shows the others' share (docs/cluster.md).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_appservice::{AppService, EventKind};
use strata_autoscale::Admission;
use strata_bus::Bus;
use strata_cluster::{Membership, NodeRecord};
use strata_manifest::Manifest;
use tokio_util::sync::CancellationToken;

use crate::Node;

/// How often the limits are looked at besides when a heartbeat arrives.
const TICK: Duration = Duration::from_millis(250);

/// A shed event is recorded at most this often per service.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// The cluster-wide bounds of one service that sheds at its maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Limit {
    /// `instances.max` of the cluster (not this node's share).
    pub max: u32,
    /// `autoscale.max_inflight`: in flight per member at which requests are shed.
    pub shed_at: u32,
}

/// The services of `manifest` (as deployed, before the counts become this node's
/// share) that shed at their maximum: those with an `autoscale` section, as on one
/// node; functions start where their events arrive and never shed.
pub(super) fn limits(manifest: &Manifest) -> BTreeMap<String, Limit> {
    manifest
        .services
        .iter()
        .filter(|(service, _)| !manifest.functions.contains_key(*service))
        .filter_map(|(service, spec)| {
            let autoscale = spec.autoscale.as_ref()?;
            let limit = Limit {
                max: spec.instances.max.max(spec.instances.min),
                shed_at: autoscale.shed_at(),
            };
            Some((service.clone(), limit))
        })
        .collect()
}

/// One service's shedding on this node.
struct Shedding {
    service: String,
    limit: Limit,
    admission: Arc<Admission>,
    /// Shed count already recorded as an event, and when.
    reported: (u64, Option<Instant>),
}

/// Keeps the shedding of `app`'s services on this node (`node.shed_in_cluster`, with
/// their `limits`) up to date until `stop`.
pub(super) fn watch(
    app: &str,
    me: &str,
    node: &Node,
    limits: &BTreeMap<String, Limit>,
    membership: Membership,
    stop: CancellationToken,
) {
    let services: Vec<Shedding> = node
        .shed_in_cluster
        .iter()
        .filter_map(|(service, admission)| {
            Some(Shedding {
                service: service.clone(),
                limit: *limits.get(service)?,
                admission: admission.clone(),
                reported: (0, None),
            })
        })
        .collect();
    if services.is_empty() {
        return;
    }
    tokio::spawn(run(
        app.to_string(),
        me.to_string(),
        node.app.clone(),
        node.bus.clone(),
        services,
        membership,
        stop,
    ));
}

async fn run(
    app: String,
    me: String,
    service_app: Arc<AppService>,
    bus: Arc<Bus>,
    mut services: Vec<Shedding>,
    membership: Membership,
    stop: CancellationToken,
) {
    let mut heard = membership.changed();
    let mut listening = true;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            r = heard.changed(), if listening => listening = r.is_ok(),
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        let live = membership.live();
        for s in &mut services {
            let members = bus.pool(&s.service).members().len() as u32;
            let others = others_inflight(&live, &me, &format!("{app}/{}", s.service));
            let at = shed_at(s.limit, members, others);
            s.admission.set_shed_at(at as usize);
            report(&service_app, s, at, others);
        }
    }
}

/// In flight to `key` (`APP/SERVICE`) from the gateways of the live nodes other than `me`.
fn others_inflight(live: &[NodeRecord], me: &str, key: &str) -> u64 {
    live.iter()
        .filter(|n| n.name != me)
        .filter_map(|n| n.load.get(key))
        .map(|l| l.inflight)
        .sum()
}

/// In flight from this node per member at which a request is shed; 0: not shedding
/// (below the cluster's maximum, or no member).
fn shed_at(limit: Limit, members: u32, others_inflight: u64) -> u32 {
    if members == 0 || members < limit.max || limit.shed_at == 0 {
        return 0;
    }
    let share = others_inflight / u64::from(members);
    (u64::from(limit.shed_at).saturating_sub(share)).max(1) as u32
}

/// Records what was shed since the last report (at most once a second) as an event, and
/// the count in the service's autoscale status.
fn report(app: &AppService, s: &mut Shedding, at: u32, others: u64) {
    let shed = s.admission.shed_count();
    let (reported, when) = s.reported;
    if shed == reported || when.is_some_and(|t| t.elapsed() < REPORT_EVERY) {
        return;
    }
    app.update_autoscale(&s.service, |status| status.shed = shed);
    app.record(
        &s.service,
        EventKind::Shed,
        format!(
            "{} request(s) shed with 503 by this node's gateway: at instances.max ({}) cluster-wide with every \
             instance ready, {} per instance allowed (autoscale.max_inflight), {at} of them from this node \
             while the other nodes have {others} in flight",
            shed - reported,
            s.limit.max,
            s.limit.shed_at,
        ),
    );
    s.reported = (shed, Some(Instant::now()));
}

#[cfg(test)]
mod tests {
    use strata_cluster::membership::ServiceLoad;

    use super::*;

    fn node(name: &str, inflight: u64) -> NodeRecord {
        NodeRecord {
            name: name.into(),
            load: [(
                "shop/web".to_string(),
                ServiceLoad {
                    inflight,
                    ..ServiceLoad::default()
                },
            )]
            .into(),
            ..Default::default()
        }
    }

    #[test]
    fn sheds_only_at_the_cluster_s_maximum_leaving_room_for_the_other_nodes() {
        let limit = Limit { max: 3, shed_at: 4 };
        // Below the maximum, or nothing ready: never.
        assert_eq!(shed_at(limit, 2, 0), 0);
        assert_eq!(shed_at(Limit { max: 0, shed_at: 4 }, 0, 0), 0);
        // At it, alone: max_inflight per member.
        assert_eq!(shed_at(limit, 3, 0), 4);
        assert_eq!(shed_at(limit, 4, 0), 4, "more ready than the max (a rollover)");
        // The other nodes send 6 to 3 members: 2 each, 2 left per member for this one.
        let live = [node("a", 1), node("b", 3), node("c", 3)];
        let others = others_inflight(&live, "a", "shop/web");
        assert_eq!(others, 6, "this node's own heartbeat is not counted");
        assert_eq!(shed_at(limit, 3, others), 2);
        // Past the limit already: one each, never "no limit".
        assert_eq!(shed_at(limit, 3, 30), 1);
        // Another service's load is not this one's.
        assert_eq!(others_inflight(&live, "a", "shop/other"), 0);
    }
}
