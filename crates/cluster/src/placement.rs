//! The scheduler's decision, as a pure function: given the live nodes, what each app's
//! services want and the last placement, how many instances of each service each node
//! runs. Rules, in order:
//! 1. An instance goes only where it fits (memory and accelerators left on the node).
//! 2. Instances already placed on a live node stay there (a node's death moves only
//!    its own share; nothing else restarts), except that with a spread label a value
//!    keeps at most its even share, rounded up: a node of a new value gets its part.
//! 3. A new instance goes to the value of the service's `placement.spread` label with the
//!    fewest of its instances (so values differ by at most one while every value has
//!    room), then to the node with the fewest of its instances, then the least loaded
//!    node (fewest instances in all), then by name.
//! 4. An instance that fits nowhere is reported with the reason.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::NodeRecord;

/// What one service of one app wants.
#[derive(Debug, Clone, PartialEq)]
pub struct Want {
    pub app: String,
    pub service: String,
    pub count: u32,
    pub memory_mb: u64,
    pub accelerators: u32,
    pub spread: Option<String>,
}

/// Instances of a service that could not be placed, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unplaced {
    pub count: u32,
    pub reason: String,
}

/// The placement of one app: service -> node -> instances.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppPlacement {
    /// The bundle the instances run.
    pub digest: String,
    pub services: BTreeMap<String, BTreeMap<String, u32>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unplaced: BTreeMap<String, Unplaced>,
    /// The scheduler's last autoscaling decision per autoscaled service (`"1 -> 3
    /// (concurrency): ..."`), which each node records as an event.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub autoscaled: BTreeMap<String, String>,
}

impl AppPlacement {
    /// Instances of `service` placed on `node`.
    pub fn share(&self, service: &str, node: &str) -> u32 {
        self.services
            .get(service)
            .and_then(|n| n.get(node))
            .copied()
            .unwrap_or(0)
    }
}

struct Room {
    name: String,
    labels: BTreeMap<String, String>,
    memory_mb: u64,
    accelerators: u32,
    instances: u32,
    /// The apps the node says it cannot run, and why.
    cannot_run: BTreeMap<String, String>,
}

impl Room {
    fn fits(&self, want: &Want) -> bool {
        self.memory_mb >= want.memory_mb
            && self.accelerators >= want.accelerators
            && !self.cannot_run.contains_key(&want.app)
    }
    fn take(&mut self, want: &Want) {
        self.memory_mb -= want.memory_mb;
        self.accelerators -= want.accelerators;
        self.instances += 1;
    }
}

/// Places every want on `nodes` (the live ones), keeping what `previous` placed on them.
/// The result has an entry for every app in `wants` (digests are the caller's).
pub fn place(
    nodes: &[NodeRecord],
    wants: &[Want],
    previous: &BTreeMap<String, AppPlacement>,
) -> BTreeMap<String, AppPlacement> {
    let mut rooms: Vec<Room> = nodes
        .iter()
        .map(|n| Room {
            name: n.name.clone(),
            labels: n.labels.clone(),
            memory_mb: n.memory_mb,
            accelerators: n.accelerators,
            instances: 0,
            cannot_run: n.cannot_run.clone(),
        })
        .collect();
    rooms.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out: BTreeMap<String, AppPlacement> = BTreeMap::new();
    // Rule 2 first for every service, so that kept instances hold their room before any
    // new one is placed.
    for want in wants {
        let app = out.entry(want.app.clone()).or_default();
        let placed = app.services.entry(want.service.clone()).or_default();
        let mut left = want.count;
        // With a spread label, a value keeps at most its even share (rounded up), so a
        // node of a new value (or one back from the dead) gets its part: skew at most one.
        let values: std::collections::BTreeSet<Option<&String>> = match &want.spread {
            Some(label) => rooms.iter().map(|r| r.labels.get(label)).collect(),
            None => Default::default(),
        };
        let cap = if values.is_empty() {
            u32::MAX
        } else {
            want.count.div_ceil(values.len() as u32)
        };
        let mut kept_in: BTreeMap<Option<String>, u32> = BTreeMap::new();
        if let Some(before) = previous.get(&want.app).and_then(|p| p.services.get(&want.service)) {
            for (node, &n) in before {
                let Some(room) = rooms.iter_mut().find(|r| &r.name == node) else {
                    continue;
                };
                let value = want.spread.as_ref().and_then(|l| room.labels.get(l).cloned());
                for _ in 0..n {
                    let in_value = kept_in.entry(value.clone()).or_default();
                    if left == 0 || !room.fits(want) || *in_value >= cap {
                        break;
                    }
                    *in_value += 1;
                    room.take(want);
                    *placed.entry(node.clone()).or_default() += 1;
                    left -= 1;
                }
            }
        }
    }
    for want in wants {
        let kept: u32 = out[&want.app].services[&want.service].values().sum();
        for _ in kept..want.count {
            let placed = &out[&want.app].services[&want.service];
            let domain_count = |r: &Room| -> u32 {
                let Some(label) = &want.spread else { return 0 };
                let value = r.labels.get(label);
                rooms
                    .iter()
                    .filter(|o| o.labels.get(label) == value)
                    .map(|o| placed.get(&o.name).copied().unwrap_or(0))
                    .sum()
            };
            let best = rooms
                .iter()
                .enumerate()
                .filter(|(_, r)| r.fits(want))
                .min_by_key(|(_, r)| {
                    (
                        domain_count(r),
                        placed.get(&r.name).copied().unwrap_or(0),
                        r.instances,
                        r.name.clone(),
                    )
                })
                .map(|(i, _)| i);
            let Some(i) = best else {
                let app = out.get_mut(&want.app).unwrap();
                let entry = app.unplaced.entry(want.service.clone()).or_insert(Unplaced {
                    count: 0,
                    reason: no_room(want, &rooms),
                });
                entry.count += 1;
                continue;
            };
            rooms[i].take(want);
            let node = rooms[i].name.clone();
            let app = out.get_mut(&want.app).unwrap();
            *app.services.get_mut(&want.service).unwrap().entry(node).or_default() += 1;
        }
    }
    out
}

fn no_room(want: &Want, rooms: &[Room]) -> String {
    let needs = format!(
        "each instance needs {} MB and {} accelerator(s)",
        want.memory_mb, want.accelerators
    );
    if rooms.is_empty() {
        return format!("{needs}; no node is alive");
    }
    let cannot: Vec<String> = rooms
        .iter()
        .filter_map(|r| {
            Some(format!(
                "{} cannot run {}: {}",
                r.name,
                want.app,
                r.cannot_run.get(&want.app)?
            ))
        })
        .collect();
    let able: Vec<&Room> = rooms.iter().filter(|r| !r.cannot_run.contains_key(&want.app)).collect();
    let Some(most) = able.iter().max_by_key(|r| (r.accelerators, r.memory_mb)) else {
        return format!("{needs}; {}", cannot.join("; "));
    };
    let mut reason = format!(
        "{needs}; no live node has that left (most free: {} with {} MB and {} accelerator(s), of {} node(s))",
        most.name,
        most.memory_mb,
        most.accelerators,
        able.len()
    );
    for c in cannot {
        reason += &format!("; {c}");
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, power: &str, memory_mb: u64) -> NodeRecord {
        NodeRecord {
            name: name.into(),
            labels: [("power".to_string(), power.to_string())].into(),
            memory_mb,
            ..Default::default()
        }
    }

    fn want(service: &str, count: u32, memory_mb: u64, spread: bool) -> Want {
        Want {
            app: "shop".into(),
            service: service.into(),
            count,
            memory_mb,
            accelerators: 0,
            spread: spread.then(|| "power".to_string()),
        }
    }

    #[test]
    fn replicas_spread_one_per_power_domain() {
        let nodes = [node("a", "A", 1000), node("b", "B", 1000), node("c", "C", 1000)];
        let p = place(&nodes, &[want("web", 3, 100, true)], &BTreeMap::new());
        let web = &p["shop"].services["web"];
        assert_eq!(web.values().copied().collect::<Vec<_>>(), vec![1, 1, 1], "{web:?}");
    }

    #[test]
    fn spread_counts_domains_not_nodes() {
        // Two nodes share power A: three replicas go A, B, A-or-B, never two on one A node
        // while B has none.
        let nodes = [node("a1", "A", 1000), node("a2", "A", 1000), node("b", "B", 1000)];
        let p = place(&nodes, &[want("web", 2, 100, true)], &BTreeMap::new());
        let web = &p["shop"].services["web"];
        assert_eq!(web.get("b"), Some(&1), "{web:?}");
        let p = place(&nodes, &[want("web", 4, 100, true)], &BTreeMap::new());
        let web = &p["shop"].services["web"];
        assert_eq!(web.get("b"), Some(&2), "{web:?}");
        assert_eq!(web.get("a1"), Some(&1), "{web:?}");
        assert_eq!(web.get("a2"), Some(&1), "{web:?}");
    }

    #[test]
    fn a_node_that_cannot_run_the_app_gets_none_of_it_and_says_why() {
        let mut e = node("e", "E", 1000);
        e.cannot_run = [("shop".to_string(), "127.0.0.1:18080 is already in use".to_string())].into();
        let nodes = [node("b", "B", 1000), node("c", "C", 1000), e];
        // Placed on e before it said so: its instance moves.
        let before: BTreeMap<String, AppPlacement> = [(
            "shop".to_string(),
            AppPlacement {
                services: [(
                    "web".to_string(),
                    [("b".into(), 1), ("c".into(), 1), ("e".into(), 1)].into(),
                )]
                .into(),
                ..Default::default()
            },
        )]
        .into();
        let p = place(&nodes, &[want("web", 3, 100, true)], &before);
        let web = &p["shop"].services["web"];
        assert_eq!(web.get("e"), None, "{web:?}");
        assert_eq!(web.values().sum::<u32>(), 3, "{web:?}");
        // Nowhere else to go: unplaced, with e's reason.
        let p = place(&nodes[2..], &[want("web", 1, 100, false)], &BTreeMap::new());
        let unplaced = &p["shop"].unplaced["web"];
        assert!(
            unplaced
                .reason
                .contains("e cannot run shop: 127.0.0.1:18080 is already in use"),
            "{}",
            unplaced.reason
        );
    }

    #[test]
    fn an_instance_goes_only_where_it_fits_and_else_is_reported() {
        let nodes = [node("a", "A", 300), node("b", "B", 100)];
        let p = place(&nodes, &[want("big", 3, 200, false)], &BTreeMap::new());
        assert_eq!(p["shop"].services["big"], [("a".to_string(), 1)].into());
        let unplaced = &p["shop"].unplaced["big"];
        assert_eq!(unplaced.count, 2);
        assert!(unplaced.reason.contains("needs 200 MB"), "{}", unplaced.reason);
        assert!(unplaced.reason.contains("most free"), "{}", unplaced.reason);
    }

    #[test]
    fn a_dead_node_moves_only_its_own_share() {
        let nodes = [node("a", "A", 1000), node("b", "B", 1000), node("c", "C", 1000)];
        let first = place(&nodes, &[want("web", 3, 100, true)], &BTreeMap::new());
        let live = [nodes[0].clone(), nodes[2].clone()];
        let second = place(&live, &[want("web", 3, 100, true)], &first);
        let web = &second["shop"].services["web"];
        assert_eq!(web.values().sum::<u32>(), 3);
        assert!(web.get("a").copied().unwrap_or(0) >= 1 && web.get("c").copied().unwrap_or(0) >= 1);
        assert!(!web.contains_key("b"));
        // When it comes back it gets its share again (spread), and only the extra
        // instance moves.
        let third = place(&nodes, &[want("web", 3, 100, true)], &second);
        let back = &third["shop"].services["web"];
        assert_eq!(back.values().copied().collect::<Vec<_>>(), vec![1, 1, 1], "{back:?}");
    }

    #[test]
    fn a_node_of_a_new_spread_value_gets_its_share() {
        // Deployed while only a and b were alive; then c (power C) joins.
        let nodes = [node("a", "A", 1000), node("b", "B", 1000), node("c", "C", 1000)];
        let before = place(&nodes[..2], &[want("web", 3, 100, true)], &BTreeMap::new());
        assert_eq!(before["shop"].services["web"].values().sum::<u32>(), 3);
        let after = place(&nodes, &[want("web", 3, 100, true)], &before);
        let web = &after["shop"].services["web"];
        assert_eq!(web.values().copied().collect::<Vec<_>>(), vec![1, 1, 1], "{web:?}");
        // Without a spread label nothing moves.
        let before = place(&nodes[..2], &[want("web", 3, 100, false)], &BTreeMap::new());
        let after = place(&nodes, &[want("web", 3, 100, false)], &before);
        assert_eq!(after["shop"].services["web"], before["shop"].services["web"]);
    }

    #[test]
    fn the_least_loaded_node_is_preferred() {
        let nodes = [node("a", "A", 1000), node("b", "A", 1000)];
        let p = place(
            &nodes,
            &[
                want("one", 1, 0, false),
                want("two", 1, 0, false),
                want("three", 2, 0, false),
            ],
            &BTreeMap::new(),
        );
        let per_node = |n: &str| -> u32 {
            p["shop"]
                .services
                .values()
                .map(|s| s.get(n).copied().unwrap_or(0))
                .sum()
        };
        assert_eq!((per_node("a"), per_node("b")), (2, 2));
    }
}
