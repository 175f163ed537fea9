//! The scheduler: while this node holds the lease, every deployed app is placed on the
//! live nodes four times a second (`placement::place`), autoscaled services counted by
//! [`ClusterScaler`], and what changed is written to the placement bucket. A heartbeat
//! that reports requests held at zero places at once, without waiting for the next round.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use strata_cluster::placement::{self, AppPlacement, Want};
use strata_cluster::{Membership, Nats, NodeRecord};
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
        if !membership.is_live(&me) {
            tracing::debug!("schedule: this node's own heartbeat is not arriving; not placing");
        } else if let Err(e) = schedule_once(&nats, &membership, &mut last, &mut scaler).await {
            tracing::warn!("schedule: {e:#}");
        }
        // The next round in a quarter second, or as soon as a heartbeat arrives from a
        // node holding requests for a service at zero (a start from zero waits for this).
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
                    let held = heard
                        .borrow_and_update()
                        .values()
                        .any(|seen| seen.is_live() && scale::holds_at_zero(&seen.record));
                    if held {
                        break;
                    }
                }
                _ = shutdown.cancelled() => return,
            }
        }
    }
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
    let apps = nats.apps().await?;
    let live = membership.live();
    let mut wants = Vec::new();
    let mut digests = BTreeMap::new();
    let mut decisions: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for app in &apps {
        let manifest = match strata_manifest::parse(&app.manifest) {
            Ok(m) => m.expanded(),
            Err(e) => {
                tracing::warn!(app = app.app, "deployed manifest does not parse: {e}");
                continue;
            }
        };
        digests.insert(app.app.clone(), app.digest.clone());
        for (service, spec) in &manifest.services {
            let mut count = spec.instances.initial();
            if scale::is_autoscaled(spec, manifest.functions.contains_key(service)) {
                let placed = previous
                    .get(&app.app)
                    .and_then(|p| p.services.get(service))
                    .map(|nodes| nodes.values().sum::<u32>());
                let (target, why) = scaler.decide(&app.app, service, spec, &live, placed);
                count = target;
                let said = decisions.entry(app.app.clone()).or_default();
                match why {
                    Some(why) => {
                        tracing::info!(app = app.app, service, "autoscaled: {why}");
                        said.insert(service.clone(), why);
                    }
                    None => {
                        // The last decision stays on show until the next one.
                        if let Some(before) = previous.get(&app.app).and_then(|p| p.autoscaled.get(service)) {
                            said.insert(service.clone(), before.clone());
                        }
                    }
                }
            }
            wants.push(Want {
                app: app.app.clone(),
                service: service.clone(),
                count,
                memory_mb: spec.resources.memory_mb.unwrap_or(0),
                accelerators: spec.resources.accelerators,
                spread: spec.placement.spread.clone(),
            });
        }
    }
    scaler.retain_apps(&digests);
    // Placing is CPU work that grows with instances x nodes (seconds at a thousand
    // nodes, bench/sim.sh): off the async workers, so heartbeats and watches go on.
    let (nodes, before) = (live.clone(), previous.clone());
    let placed = tokio::task::spawn_blocking(move || placement::place(&nodes, &wants, &before))
        .await
        .context("placing")?;
    // Every changed app's placement is written at once, not one after another: a dead
    // node's share of many apps is placed again in one round trip.
    let mut changed = Vec::new();
    for (app, mut p) in placed {
        p.digest = digests[&app].clone();
        p.autoscaled = decisions.remove(&app).unwrap_or_default();
        if previous.get(&app) == Some(&p) {
            continue;
        }
        let why = reason(previous.get(&app), &p, &live);
        let value = serde_json::to_vec(&p)?;
        changed.push((app, p, why, value));
    }
    let writes = changed
        .iter()
        .map(|(app, _, _, value)| nats.placement.put(app.as_str(), value.clone().into()));
    let written = futures_util::future::join_all(writes).await;
    for ((app, p, why, _), result) in changed.into_iter().zip(written) {
        match result {
            Ok(_) => {
                tracing::info!(app, "placed: {why}");
                previous.insert(app, p);
            }
            // Not remembered as written: the next round tries it again.
            Err(e) => tracing::warn!(app, "write the placement: {e}"),
        }
    }
    let undeployed: Vec<String> = previous.keys().filter(|a| !digests.contains_key(*a)).cloned().collect();
    for app in undeployed {
        nats.placement
            .delete(&app)
            .await
            .context("remove an undeployed app's placement")?;
        tracing::info!(app, "undeployed: its instances stop");
        previous.remove(&app);
    }
    Ok(())
}

fn reason(before: Option<&AppPlacement>, after: &AppPlacement, live: &[NodeRecord]) -> String {
    let Some(before) = before else {
        return format!("deployed, on {} live node(s)", live.len());
    };
    if before.digest != after.digest {
        return format!("new bundle {}", after.digest);
    }
    if before.autoscaled != after.autoscaled {
        return "autoscaled".to_string();
    }
    let gone: Vec<&String> = before
        .services
        .values()
        .flat_map(|n| n.keys())
        .filter(|n| !live.iter().any(|l| &&l.name == n))
        .collect();
    if !gone.is_empty() {
        return format!("node(s) {gone:?} dead: their instances placed again");
    }
    "capacity or nodes changed".to_string()
}
