//! What a `placed` event says: the service's placement across the cluster, and why
//! the nodes that gave instances up did.

use std::collections::BTreeMap;

use strata_cluster::membership::{Seen, HEARTBEAT};
use strata_cluster::placement::AppPlacement;

/// Why the nodes (`seen`: by name, as heard) that hold fewer of `service`'s instances in `after` than in `before`
/// gave them up, as far as their heartbeats tell: "; a is dead (not heard from for 4 s):
/// its 1 placed again", or one that cannot run `app`, with its reason. Empty when no
/// node lost any, or none of those reasons holds (a scale-in, a rebalance).
pub(super) fn why_moved(
    app: &str,
    before: &AppPlacement,
    after: &AppPlacement,
    service: &str,
    seen: &BTreeMap<String, Seen>,
) -> String {
    let (Some(was), now) = (before.services.get(service), after.services.get(service)) else {
        return String::new();
    };
    let mut out = String::new();
    for (node, &n) in was {
        let left = n.saturating_sub(now.and_then(|m| m.get(node)).copied().unwrap_or(0));
        if left == 0 {
            continue;
        }
        let why = match seen.get(node) {
            None => format!("{node} is not heard from"),
            Some(s) if !s.is_live() => format!("{node} is dead (not heard from for {} s)", s.at.elapsed().as_secs()),
            // The scheduler took it for dead; this node may have heard its last
            // heartbeat a moment later.
            Some(s) if s.at.elapsed() >= HEARTBEAT => {
                format!(
                    "{node} is silent (not heard from for {:.1} s)",
                    s.at.elapsed().as_secs_f64()
                )
            }
            Some(s) => match s.record.cannot_run.get(app) {
                Some(reason) => format!("{node} cannot run {app}: {reason}"),
                None => continue,
            },
        };
        out.push_str(&format!("; {why}: its {left} placed again"));
    }
    out
}

pub(super) fn describe(p: &AppPlacement, service: &str) -> String {
    let nodes = p.services.get(service).cloned().unwrap_or_default();
    let parts: Vec<String> = nodes
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(node, n)| format!("{node}: {n}"))
        .collect();
    let mut out = if parts.is_empty() {
        "none placed".to_string()
    } else {
        parts.join(", ")
    };
    if let Some(u) = p.unplaced.get(service) {
        out.push_str(&format!("; {} unplaced ({})", u.count, u.reason));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use strata_cluster::NodeRecord;

    use super::*;

    #[test]
    fn a_placement_event_says_why_a_node_gave_up_its_instances() {
        let placement = |nodes: &[(&str, u32)]| AppPlacement {
            digest: "d".into(),
            services: BTreeMap::from([(
                "web".to_string(),
                nodes.iter().map(|(n, k)| (n.to_string(), *k)).collect(),
            )]),
            unplaced: BTreeMap::new(),
            autoscaled: BTreeMap::new(),
        };
        let seen = |name: &str, ago: u64, cannot_run: Option<&str>| {
            let mut record = NodeRecord {
                name: name.into(),
                ..NodeRecord::default()
            };
            if let Some(why) = cannot_run {
                record.cannot_run.insert("shop".into(), why.into());
            }
            (
                name.to_string(),
                Seen {
                    record,
                    at: Instant::now() - Duration::from_secs(ago),
                },
            )
        };
        let heard = BTreeMap::from([
            seen("a", 7, None),
            seen("b", 0, None),
            seen("c", 0, Some("port 80 taken")),
            seen("d", 2, None),
        ]);
        let before = placement(&[("a", 2), ("b", 1), ("c", 1)]);
        // a dead, c unable: theirs moved to b; nothing said of b, which gained.
        assert_eq!(
            why_moved("shop", &before, &placement(&[("b", 4)]), "web", &heard),
            "; a is dead (not heard from for 7 s): its 2 placed again; c cannot run shop: port 80 taken: its 1 placed again"
        );
        // A live node that gives one up (a scale-in) has no reason given here.
        assert_eq!(
            why_moved("shop", &before, &placement(&[("a", 2), ("c", 1)]), "web", &heard),
            ""
        );
        // A node the scheduler took for dead that this node heard a moment later.
        assert_eq!(
            why_moved("shop", &placement(&[("d", 1)]), &placement(&[("b", 1)]), "web", &heard),
            "; d is silent (not heard from for 2.0 s): its 1 placed again"
        );
        // A node never heard from.
        assert_eq!(
            why_moved("shop", &placement(&[("z", 1)]), &placement(&[("b", 1)]), "web", &heard),
            "; z is not heard from: its 1 placed again"
        );
    }
}
