//! One round of the scheduler: read every deployed app, count each service's instances,
//! place them on the live nodes ([`placement::place`], off the async workers) and write
//! every changed app's placement at once. `strata-node`'s scheduler runs a round four
//! times a second while it holds the lease, counting autoscaled services with its
//! autoscalers; `bench/sim.sh`'s simulated scheduler runs the same round, so what it
//! measures is what a node does.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use strata_manifest::ServiceSpec;

use crate::placement::{self, AppPlacement, Want};
use crate::{Nats, NodeRecord};

/// What decides the count of a service in a round.
pub trait Counts {
    /// The count of `app`'s `service` to place, and the decision in words when it
    /// changed; None: not the caller's to count (the manifest's count is placed).
    /// `placed` is its count in the last placement written (None: not placed yet).
    fn count(
        &mut self,
        app: &str,
        service: &str,
        spec: &ServiceSpec,
        is_function: bool,
        placed: Option<u32>,
    ) -> Option<(u32, Option<String>)>;

    /// The apps deployed now (name → digest), after each round.
    fn deployed(&mut self, _apps: &BTreeMap<String, String>) {}
}

/// Every service placed at its manifest's count (no autoscaler).
pub struct ManifestCounts;

impl Counts for ManifestCounts {
    fn count(&mut self, _: &str, _: &str, _: &ServiceSpec, _: bool, _: Option<u32>) -> Option<(u32, Option<String>)> {
        None
    }
}

/// What a round did and how long each part took.
#[derive(Debug, Default, Clone)]
pub struct Round {
    /// Deployed apps read (one KV get each).
    pub apps_read: usize,
    /// Placements written: app, revision, size in bytes.
    pub written: Vec<(String, u64, usize)>,
    /// Undeployed apps whose placement was removed.
    pub removed: Vec<String>,
    /// Reading the apps; parsing and counting; placing; writing.
    pub took: [Duration; 4],
}

/// Places every deployed app on `live` and writes what changed against `previous`,
/// which it keeps up to date (an app whose write failed stays as it was, so the next
/// round tries again).
pub async fn round(
    nats: &Nats,
    live: &[NodeRecord],
    previous: &mut BTreeMap<String, AppPlacement>,
    counts: &mut impl Counts,
) -> Result<Round> {
    let mut report = Round::default();
    let t0 = Instant::now();
    let apps = nats.apps().await?;
    report.apps_read = apps.len();
    let t1 = Instant::now();
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
            let placed = previous
                .get(&app.app)
                .and_then(|p| p.services.get(service))
                .map(|nodes| nodes.values().sum::<u32>());
            let is_function = manifest.functions.contains_key(service);
            if let Some((target, why)) = counts.count(&app.app, service, spec, is_function, placed) {
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
    counts.deployed(&digests);
    let t2 = Instant::now();
    // Placing is CPU work that grows with instances x nodes (seconds at a thousand
    // nodes, bench/sim.sh): off the async workers, so heartbeats and watches go on.
    let (nodes, before) = (live.to_vec(), previous.clone());
    let placed = tokio::task::spawn_blocking(move || placement::place(&nodes, &wants, &before))
        .await
        .context("placing")?;
    let t3 = Instant::now();
    // Every changed app's placement is written at once, not one after another: a dead
    // node's share of many apps is placed again in one round trip.
    let mut changed = Vec::new();
    for (app, mut p) in placed {
        p.digest = digests[&app].clone();
        p.autoscaled = decisions.remove(&app).unwrap_or_default();
        if previous.get(&app) == Some(&p) {
            continue;
        }
        let why = reason(previous.get(&app), &p, live);
        let value = serde_json::to_vec(&p)?;
        changed.push((app, p, why, value));
    }
    let writes = changed
        .iter()
        .map(|(app, _, _, value)| nats.placement.put(app.as_str(), value.clone().into()));
    let written = futures_util::future::join_all(writes).await;
    for ((app, p, why, value), result) in changed.into_iter().zip(written) {
        match result {
            Ok(revision) => {
                tracing::info!(app, "placed: {why}");
                report.written.push((app.clone(), revision, value.len()));
                previous.insert(app, p);
            }
            // Not remembered as written: the next round tries it again.
            Err(e) => tracing::warn!(app, "write the placement ({} bytes): {e}", value.len()),
        }
    }
    let missing: Vec<String> = previous.keys().filter(|a| !digests.contains_key(*a)).cloned().collect();
    for app in missing {
        // Gone from this read of the apps is not undeployed: a listing made while the
        // bucket elects its leader can leave a deployed app out, and taking that for an
        // undeploy restarted the app on every node. Only an app whose record JetStream
        // says is not there is undeployed.
        match nats.apps.get(&app).await {
            Ok(None) => {}
            Ok(Some(_)) => {
                tracing::debug!(app, "left out of the apps' listing, yet deployed: placement kept");
                continue;
            }
            Err(e) => {
                tracing::debug!(app, "left out of the apps' listing, and not read ({e}): placement kept");
                continue;
            }
        }
        nats.placement
            .delete(&app)
            .await
            .context("remove an undeployed app's placement")?;
        tracing::info!(app, "undeployed: its instances stop");
        previous.remove(&app);
        report.removed.push(app);
    }
    report.took = [t1 - t0, t2 - t1, t3 - t2, t3.elapsed()];
    Ok(report)
}

/// Why an app's placement changed, in words for the log.
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
