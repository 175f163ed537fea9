//! A launched instance, whichever driver launched it: the one face `instance` drives
//! (wait, stop, kill, clear). An enum, not a trait object: two drivers, each call a
//! match, nothing boxed on the process driver's path.

use std::time::Duration;

use crate::oci::Container;
use crate::process::{self, Process};

pub(crate) enum Launched {
    Process(Process),
    Container(Container),
}

/// How an instance's program ended.
pub(crate) struct Ended {
    /// In words, for example `exited with status 1`.
    pub reason: String,
    /// The kernel killed it (or one of its processes) for memory over its limit.
    pub oom: bool,
}

impl Launched {
    /// The pid `ps` shows: the program's, or the container's first process's.
    pub fn pid(&self) -> u32 {
        match self {
            Launched::Process(p) => p.program_pid,
            Launched::Container(c) => c.pid,
        }
    }

    /// The process group its processes are in (where to look for what it listens on).
    pub fn group(&self) -> u32 {
        match self {
            Launched::Process(p) => p.pid,
            Launched::Container(c) => c.pid,
        }
    }

    /// The OCI runtime that runs it, as `ps` shows it; None for a process.
    pub fn runtime(&self) -> Option<String> {
        match self {
            Launched::Process(_) => None,
            Launched::Container(c) => Some(c.runtime()),
        }
    }

    /// Waits for the program to end.
    pub async fn wait(&mut self) -> std::io::Result<Ended> {
        match self {
            Launched::Process(p) => p.child.wait().await.map(|status| Ended {
                reason: process::describe(&status),
                oom: false,
            }),
            Launched::Container(c) => c.wait().await,
        }
    }

    /// SIGTERM, then after `grace` everything killed; says how it ended.
    pub async fn stop(&mut self, grace: Duration) -> Option<String> {
        match self {
            Launched::Process(p) => process::stop(p, grace).await.map(|s| process::describe(&s)),
            Launched::Container(c) => c.stop(grace).await,
        }
    }

    /// Kills everything it runs now, waits for it, and removes what held it.
    pub async fn kill_and_clear(&mut self) {
        match self {
            Launched::Process(p) => {
                p.kill_and_clear().await;
            }
            Launched::Container(c) => {
                c.kill_and_clear().await;
            }
        }
    }

    /// Once it ended: kills whatever it left and removes what held it.
    pub async fn clear(&mut self) {
        match self {
            Launched::Process(p) => p.clear().await,
            Launched::Container(c) => c.clear().await,
        }
    }
}
