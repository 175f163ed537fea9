use std::collections::BTreeMap;
use std::sync::Mutex;

use tokio::sync::Notify;

/// What this node offers to instances.
#[derive(Debug, Clone)]
pub struct NodeResources {
    pub memory_mb: u64,
    pub accelerators: u32,
    /// Failure-domain labels of this node, for example `power=a`.
    pub labels: BTreeMap<String, String>,
}

impl NodeResources {
    /// The machine's memory (from /proc/meminfo) and no accelerators.
    pub fn detect() -> NodeResources {
        let memory_mb = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map(|kb| kb / 1024)
            .unwrap_or(1024);
        NodeResources {
            memory_mb,
            accelerators: 0,
            labels: BTreeMap::new(),
        }
    }
}

/// A request for resources.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Demand {
    pub memory_mb: u64,
    pub accelerators: u32,
}

pub(crate) struct Capacity {
    pub node: NodeResources,
    used: Mutex<Demand>,
    freed: Notify,
}

impl Capacity {
    pub fn new(node: NodeResources) -> Capacity {
        Capacity {
            node,
            used: Mutex::new(Demand::default()),
            freed: Notify::new(),
        }
    }

    /// Reserves `demand`, or says in words why it cannot fit now. A demand that can never
    /// fit (larger than the whole node) says so.
    pub fn reserve(&self, demand: Demand) -> Result<(), String> {
        let node = &self.node;
        if demand.memory_mb > node.memory_mb {
            return Err(format!(
                "needs {} MB of memory but the node has {} MB in all",
                demand.memory_mb, node.memory_mb
            ));
        }
        if demand.accelerators > node.accelerators {
            return Err(format!(
                "needs {} accelerator(s) but the node has {}",
                demand.accelerators, node.accelerators
            ));
        }
        let mut used = self.used.lock().unwrap();
        if used.memory_mb + demand.memory_mb > node.memory_mb {
            return Err(format!(
                "needs {} MB of memory, {} MB of {} MB are free",
                demand.memory_mb,
                node.memory_mb - used.memory_mb,
                node.memory_mb
            ));
        }
        if used.accelerators + demand.accelerators > node.accelerators {
            return Err(format!(
                "needs {} accelerator(s), {} of {} are free",
                demand.accelerators,
                node.accelerators - used.accelerators,
                node.accelerators
            ));
        }
        used.memory_mb += demand.memory_mb;
        used.accelerators += demand.accelerators;
        Ok(())
    }

    pub fn release(&self, demand: Demand) {
        let mut used = self.used.lock().unwrap();
        used.memory_mb -= demand.memory_mb;
        used.accelerators -= demand.accelerators;
        drop(used);
        self.freed.notify_waiters();
    }

    /// Resolves when some reservation is released.
    pub async fn wait_freed(&self) {
        self.freed.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_until_full_then_release() {
        let cap = Capacity::new(NodeResources {
            memory_mb: 300,
            accelerators: 1,
            labels: BTreeMap::new(),
        });
        let d = Demand {
            memory_mb: 128,
            accelerators: 0,
        };
        cap.reserve(d).unwrap();
        cap.reserve(d).unwrap();
        let err = cap.reserve(d).unwrap_err();
        assert!(err.contains("44 MB of 300 MB are free"), "{err}");
        cap.release(d);
        cap.reserve(d).unwrap();
        let gpu = Demand {
            memory_mb: 0,
            accelerators: 2,
        };
        assert!(cap.reserve(gpu).unwrap_err().contains("node has 1"));
        let too_big = Demand {
            memory_mb: 301,
            accelerators: 0,
        };
        assert!(cap.reserve(too_big).unwrap_err().contains("in all"));
    }
}
