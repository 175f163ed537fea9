//! Dead letters told as events. Every group of every queue (not the `.dlq` queues
//! themselves) is read once a second; a group whose dead-lettered count grew makes a
//! `dead-lettered` event: of the service that consumes it by push (`consumes` in the
//! manifest), else of the queue (a group that fetches through the node API, a pull
//! consumer). Dead letters already there when the node starts are not told again.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use strata_appservice::{AppService, EventKind};
use strata_queue::{QueueBackend, DLQ_SUFFIX};
use tokio_util::sync::CancellationToken;

/// How often the groups are read.
const EVERY: Duration = Duration::from_secs(1);

/// What one read takes of a queue: its name, `max_deliveries`, and each group's
/// dead-lettered count.
struct Read {
    queue: String,
    max_deliveries: u32,
    groups: Vec<(String, u64)>,
}

/// A group's dead letters since the last read: `(subject, message)`, the subject being
/// the consuming service (`consumers`, by queue and group) or else the queue.
struct Seen {
    counts: HashMap<(String, String), u64>,
    /// Groups of the first read keep what they had; a group first seen later started
    /// after the node did, at zero.
    first: bool,
}

impl Seen {
    fn new() -> Seen {
        Seen {
            counts: HashMap::new(),
            first: true,
        }
    }

    fn read(&mut self, reads: &[Read], consumers: &BTreeMap<(String, String), String>) -> Vec<(String, String)> {
        let mut told = Vec::new();
        for Read {
            queue,
            max_deliveries,
            groups,
        } in reads
        {
            if queue.ends_with(DLQ_SUFFIX) {
                continue;
            }
            for (group, dead) in groups {
                let key = (queue.clone(), group.clone());
                let before = match self.counts.get(&key) {
                    Some(n) => *n,
                    None if self.first => *dead,
                    None => 0,
                };
                if *dead > before {
                    let subject = consumers.get(&key).unwrap_or(queue).clone();
                    told.push((
                        subject,
                        format!(
                            "{} message(s) of queue {queue} (group {group}) moved to {queue}{DLQ_SUFFIX} after {max_deliveries} deliveries (max_deliveries)",
                            dead - before,
                        ),
                    ));
                }
                self.counts.insert(key, *dead);
            }
        }
        self.first = false;
        told
    }
}

/// Reads `queues` every second until `token` is cancelled; `consumers` names the
/// service consuming each `(queue, group)` by push.
pub(crate) async fn watch(
    queues: Arc<dyn QueueBackend>,
    app: Arc<AppService>,
    consumers: BTreeMap<(String, String), String>,
    token: CancellationToken,
) {
    let mut seen = Seen::new();
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = token.cancelled() => return,
        }
        let reads: Vec<Read> = queues
            .list()
            .iter()
            .map(|q| Read {
                queue: q.name().to_string(),
                max_deliveries: q.spec().max_deliveries,
                groups: q
                    .stats()
                    .groups
                    .into_iter()
                    .map(|g| (g.name, g.dead_lettered))
                    .collect(),
            })
            .collect();
        for (subject, message) in seen.read(&reads, &consumers) {
            app.record(&subject, EventKind::DeadLettered, message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(name: &str, groups: &[(&str, u64)]) -> Read {
        Read {
            queue: name.to_string(),
            max_deliveries: 3,
            groups: groups.iter().map(|(g, dead)| (g.to_string(), *dead)).collect(),
        }
    }

    #[test]
    fn a_group_whose_dead_letters_grew_is_told_once_by_its_consumer_or_queue() {
        let consumers = BTreeMap::from([(("jobs".to_string(), "workers".to_string()), "work".to_string())]);
        let mut seen = Seen::new();
        // Already there at the start: not told.
        let first = [
            queue("jobs", &[("workers", 2), ("audit", 1)]),
            queue("jobs.dlq", &[("x", 0)]),
        ];
        assert!(seen.read(&first, &consumers).is_empty());
        let later = [
            queue("jobs", &[("workers", 3), ("audit", 1)]),
            queue("mail", &[("sender", 2)]),
            queue("jobs.dlq", &[("x", 5)]),
        ];
        let told = seen.read(&later, &consumers);
        assert_eq!(told.len(), 2, "{told:?}");
        assert_eq!(told[0].0, "work");
        assert_eq!(
            told[0].1,
            "1 message(s) of queue jobs (group workers) moved to jobs.dlq after 3 deliveries (max_deliveries)"
        );
        // A pull consumer's group, first seen after the start: told from zero, by queue.
        assert_eq!(told[1].0, "mail");
        assert!(
            told[1].1.starts_with("2 message(s) of queue mail (group sender)"),
            "{told:?}"
        );
        assert!(seen.read(&later, &consumers).is_empty(), "told once");
    }
}
