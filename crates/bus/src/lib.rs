//! The message bus: tracks the members of every pool and chooses where a request goes.
//!
//! Layout:
//! - [`Bus`]: the pools of one node, by service name.
//! - [`Pool`]: the ready members of one service, with a watch on their count, the
//!   pick, a wake-up for callers waiting for a member with room, and a slot where the
//!   transport keeps its figures of the pool's requests.
//! - [`Member`]: one ready instance: its address, its in-flight and served counts, and
//!   a slot where the transport (the gateway) keeps its connections to it.
//! - [`Admission`]: the one interface through which the relay asks an autoscaled pool
//!   whether and where a request goes (hold at zero, buffer, shed); implemented by
//!   `strata_autoscale`, installed with [`Pool::set_admission`].
//! - [`RetryBudget`]: bounds reissued requests to a fraction of first attempts.
//!
//! Invariant: this crate knows nothing of HTTP or of processes, nor of autoscaling
//! policy. The App Service adds and removes members; the gateway picks them, reports
//! failures and asks the pool's admission.

mod admission;
mod budget;
mod pool;

pub use admission::{Admission, Held, Placement, Waiting};
pub use budget::RetryBudget;
pub use pool::{AfterFailure, Hold, Member, MemberGuard, Pool};

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// All pools of a node.
#[derive(Default)]
pub struct Bus {
    pools: RwLock<HashMap<String, Arc<Pool>>>,
}

impl Bus {
    pub fn new() -> Arc<Bus> {
        Arc::new(Bus::default())
    }

    /// The pool of `service`, created empty on first use.
    pub fn pool(&self, service: &str) -> Arc<Pool> {
        if let Some(pool) = self.pools.read().unwrap().get(service) {
            return pool.clone();
        }
        let mut pools = self.pools.write().unwrap();
        pools
            .entry(service.to_string())
            .or_insert_with(|| Arc::new(Pool::new(service)))
            .clone()
    }
}
