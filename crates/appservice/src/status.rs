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
    /// A container on its app's private network: its address there (where `port` is
    /// reached); None on the node's own network.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<std::net::IpAddr>,
    pub restarts: u32,
    pub inflight: usize,
    pub served: u64,
    /// How the last run ended, for example `exited with status 1`.
    pub last_exit: Option<String>,
    /// Why it is in this state, in words.
    pub detail: Option<String>,
    /// The last lines (at most 20, oldest first) the instance printed in the run that
    /// ended as `last_exit` says, when that run exited or never became ready.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub last_output: Vec<String>,
    /// Value of the service's spread label on the node it runs on.
    pub domain: Option<String>,
    /// For a container: the OCI runtime that runs it, with its version (and why a
    /// preferred runtime was passed over), for example `runc 1.1.5+ds1`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// Runs the kernel ended for memory over the instance's limit (its `last_exit`
    /// then starts with `oom`).
    #[serde(skip_serializing_if = "is_zero")]
    pub oom_kills: u32,
    #[serde(skip)]
    pub member: Option<Arc<Member>>,
}

impl InstanceStatus {
    /// Forgets the member of a run that ended, keeping what it served: `ps` shows the
    /// last run's count, not 0.
    pub(crate) fn forget_member(&mut self) {
        if let Some(member) = self.member.take() {
            self.served = member.served();
        }
        self.inflight = 0;
    }

    pub fn new(id: String) -> InstanceStatus {
        InstanceStatus {
            id,
            state: InstanceState::Starting,
            pid: None,
            port: None,
            address: None,
            restarts: 0,
            inflight: 0,
            served: 0,
            last_exit: None,
            detail: None,
            last_output: Vec::new(),
            domain: None,
            runtime: None,
            oom_kills: 0,
            member: None,
        }
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    pub name: String,
    /// What the service as a whole is doing: `setup`, `waiting for bindings: web`, `running`.
    pub state: String,
    pub desired: u32,
    pub min: u32,
    pub max: u32,
    /// Its instances on this node that are ready (in a cluster, the pool also has other
    /// nodes').
    pub ready: usize,
    /// Requests relayed to the service's instances so far, instances that have stopped
    /// included.
    pub served: u64,
    /// For a function: what triggers it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// The autoscaler's view: its target and the signal and reason behind it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autoscale: Option<AutoscaleStatus>,
    pub instances: Vec<InstanceStatus>,
    /// Launch to ready of each start so far (for `/v1/metrics`, not in `ps`).
    #[serde(skip)]
    pub start_time: strata_os::histogram::HistogramSnapshot,
}

/// What the autoscaler last concluded for a service, for `strata ps` and metrics.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AutoscaleStatus {
    pub target: u32,
    /// `concurrency`, `backlog`, `latency`, `min` or `idle`.
    pub signal: String,
    pub reason: String,
    /// Requests in flight (plus held) at the last sample.
    pub inflight: u64,
    /// Requests held at the gateway at the last sample.
    pub held: u64,
    /// Backlog of the consumed queue's group, for a consuming service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backlog: Option<u64>,
    /// Estimated time to drain that backlog at the rate it drained over the last second
    /// (None while nothing drains).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain_s: Option<f64>,
    /// Mean latency of the requests answered lately (Little's law over the last second).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// Requests shed (503) at instances.max so far.
    pub shed: u64,
    /// Time from the first request to a pool at zero until an instance was ready, last time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cold_start_ms: Option<u64>,
    /// Starts from zero so far.
    pub cold_starts: u64,
    /// Decisions taken so far.
    pub decisions: u64,
}
