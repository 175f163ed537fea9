use std::sync::Arc;

use serde::Serialize;
use strata_bus::Member;

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceState {
    /// Waiting for capacity (memory or accelerators) on the node.
    Unschedulable,
    /// Launched, not yet answering its health check.
    Starting,
    /// A member of its pool.
    Ready,
    /// Waiting to be launched again after an exit.
    Backoff,
    /// Exited again and again without staying up: waiting longer each time.
    CrashLoop,
    /// Being drained and stopped.
    Stopping,
    Stopped,
}

#[derive(Debug, Clone, Serialize)]
pub struct InstanceStatus {
    pub id: String,
    pub state: InstanceState,
    pub pid: Option<u32>,
    pub port: Option<u16>,
    pub restarts: u32,
    pub inflight: usize,
    pub served: u64,
    /// How the last run ended, for example `exited with status 1`.
    pub last_exit: Option<String>,
    /// Why it is in this state, in words.
    pub detail: Option<String>,
    /// Value of the service's spread label on the node it runs on.
    pub domain: Option<String>,
    #[serde(skip)]
    pub member: Option<Arc<Member>>,
}

impl InstanceStatus {
    pub fn new(id: String) -> InstanceStatus {
        InstanceStatus {
            id,
            state: InstanceState::Starting,
            pid: None,
            port: None,
            restarts: 0,
            inflight: 0,
            served: 0,
            last_exit: None,
            detail: None,
            domain: None,
            member: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    pub name: String,
    /// What the service as a whole is doing: `setup`, `waiting for bindings: web`, `running`.
    pub state: String,
    pub desired: u32,
    pub min: u32,
    pub max: u32,
    pub ready: usize,
    pub instances: Vec<InstanceStatus>,
}
