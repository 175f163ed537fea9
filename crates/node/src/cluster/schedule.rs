//! The scheduler: while this node holds the lease, every deployed app is placed on the
//! live nodes four times a second (a `strata_cluster::schedule::round`: the same round
//! bench/sim.sh measures), autoscaled services counted by [`ClusterScaler`], and what
//! changed is written to the placement bucket. A heartbeat
//! that reports requests held at zero places at once, without waiting for the next round.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use strata_cluster::placement::AppPlacement;
use strata_cluster::schedule::Counts;
use strata_cluster::{Membership, Nats, NodeRecord};
use strata_manifest::ServiceSpec;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::read_placement;
use super::scale::{self, ClusterScaler};

/// While this node holds the lease: places every deployed app on the live nodes and
/// writes what changed, four times a second.
pub(super) async fn schedule(
    nats: Nats,
    membership: Membership,
    me: String,
    mut held: watch::Receiver<bool>,
    shutdown: CancellationToken,
) {
    let mut last: Option<BTreeMap<String, AppPlacement>> = None;
    let mut scaler = ClusterScaler::default();
    let mut heard = membership.changed();
    loop {
        if !*held.borrow() {
            last = None;
            scaler = ClusterScaler::default();
            tokio::select! {
                _ = held.changed() => continue,
                _ = shutdown.cancelled() => return,
            }
        }
        // A holder that does not see its own heartbeat arrive is cut off (or its NATS
        // server just died and it is reconnecting): its view of who is live is stale, and
        // placing from it would move every instance off the nodes it cannot hear,
        // itself included. It waits; the lease ages out if it stays cut off.
        let unheard = !membership.is_live(&me);
        if unheard {
            tracing::debug!("schedule: this node's own heartbeat is not arriving; not placing");
        } else if !confirm_silent(&nats, &membership, last.as_ref()).await {
            tracing::debug!("schedule: a silent node's record could not be read; not placing");
        } else if let Err(e) = schedule_once(&nats, &membership, &mut last, &mut scaler).await {
            tracing::warn!("schedule: {e:#}");
        }
        // The next round in a quarter second, or as soon as a heartbeat arrives from a
        // node holding requests for a service at zero (a start from zero waits for this),
        // or, while this node's own heartbeat was not heard, as soon as it is (a node that
        // has just taken the lease places as soon as it knows itself live).
        let next = tokio::time::Instant::now() + Duration::from_millis(250);
        heard.borrow_and_update();
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => break,
                changed = heard.changed() => {
                    if changed.is_err() {
                        tokio::time::sleep_until(next).await;
                        break;
                    }
                    // Read in place, not cloned: every node's heartbeat comes by here.
                    let seen = heard.borrow_and_update();
                    let held = seen
                        .values()
                        .any(|seen| seen.is_live() && scale::holds_at_zero(&seen.record));
                    let me_heard = unheard && seen.get(&me).is_some_and(|s| s.is_live());
                    if held || me_heard {
                        break;
                    }
                }
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

/// Before a node holding instances is taken for dead, its record is read from the
/// bucket itself: the watch can miss heartbeats while a NATS server is lost (the
/// scheduler then moved instances off live nodes, leaving none running for seconds). A
/// newer heartbeat there counts as heard (`Membership::heard`, clock-free); a read that
/// fails says nothing, and nothing is placed this round. True when placing may go on.
async fn confirm_silent(nats: &Nats, membership: &Membership, last: Option<&BTreeMap<String, AppPlacement>>) -> bool {
    let Some(last) = last else { return true };
    let holding: std::collections::BTreeSet<&String> = last
        .values()
        .flat_map(|p| p.services.values())
        .flat_map(|nodes| nodes.keys())
        .collect();
    for node in holding {
        if membership.is_live(node) {
            continue;
        }
        match tokio::time::timeout(Duration::from_secs(1), nats.nodes.get(node)).await {
            Ok(Ok(Some(value))) => membership.heard(node, &value),
            // No record: the node left (it deletes its record when it stops).
            Ok(Ok(None)) => {}
            Ok(Err(_)) | Err(_) => return false,
        }
    }
    true
}

async fn schedule_once(
    nats: &Nats,
    membership: &Membership,
    last: &mut Option<BTreeMap<String, AppPlacement>>,
    scaler: &mut ClusterScaler,
) -> Result<()> {
    if last.is_none() {
        // Taking over: start from what the previous holder wrote.
        *last = Some(read_placement(nats).await?);
    }
    let previous = last.as_mut().expect("set");
    let live = membership.live();
    let mut counts = Autoscaled { scaler, live: &live };
    strata_cluster::schedule::round(nats, &live, previous, &mut counts).await?;
    Ok(())
}

/// The round's counts: the scheduler's autoscalers size autoscaled services from every
/// live node's load; the rest keep their manifest's count.
struct Autoscaled<'a> {
    scaler: &'a mut ClusterScaler,
    live: &'a [NodeRecord],
}

impl Counts for Autoscaled<'_> {
    fn count(
        &mut self,
        app: &str,
        service: &str,
        spec: &ServiceSpec,
        is_function: bool,
        placed: Option<u32>,
    ) -> Option<(u32, Option<String>)> {
        scale::is_autoscaled(spec, is_function).then(|| self.scaler.decide(app, service, spec, self.live, placed))
    }

    fn deployed(&mut self, apps: &BTreeMap<String, String>) {
        self.scaler.retain_apps(apps);
    }
}
