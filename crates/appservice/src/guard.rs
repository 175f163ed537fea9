//! Containment: every process an instance or a setup step starts, however it detaches
//! (`setsid`, a double fork), ends with it, with the node, and after a SIGKILL of the
//! node.
//!
//! The policy, in the order tried (`STRATA_CONTAINMENT` = `cgroup` or `subreaper`
//! forces one; a forced one that is not available stops the node with the reason):
//! 1. **cgroup** — where this process's cgroup v2 directory is writable and has
//!    `cgroup.kill` (root on a hybrid or pure v2 layout, or a delegated subtree). The
//!    node makes `strata-PID-N/` below its own cgroup and one cgroup per launch below
//!    that; each child joins its cgroup between fork and exec, so nothing it runs is
//!    ever outside. Stopping a launch writes its `cgroup.kill`. The orphan guard, a
//!    small `/bin/sh` in a process group of its own, holds a pipe from the node and is
//!    told nothing else: when the pipe closes (the node stopped, or was killed even with
//!    SIGKILL) it writes the node cgroup's `cgroup.kill` and removes the cgroups. A
//!    node's cgroups left by a guard that died too are removed at the next start.
//! 2. **subreaper** — anywhere else: each child is a shim (`strata_os::contain::shim`)
//!    that forks the program and stays its parent, a child subreaper with a parent-death
//!    signal; it kills the whole tree when the program ends, when asked, or when the
//!    node dies. No guard process is needed.
//!
//! Both close the race between spawn and registration: the container exists before the
//! program's first instruction, and there is no registration step.

use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use strata_os::contain::{cgroup::Cgroup, shim};

/// Names the containment to use: `cgroup`, `subreaper`, or `auto` (the default).
pub const CONTAINMENT_ENV: &str = "STRATA_CONTAINMENT";

/// Waits for the processes of a killed cgroup to be gone, at most this long.
const EMPTY_WAIT: Duration = Duration::from_secs(5);

/// The guard's script; `$1` is the node's cgroup. It forks nothing while the node runs.
/// Its first line names it (tests find guards by it).
const SCRIPT: &str = r#"# strata orphan guard
while read -r _; do :; done
echo 1 > "$1/cgroup.kill"
n=0
while [ "$n" -lt 500 ]; do
  read -r key populated < "$1/cgroup.events" || break
  [ "$populated" = 0 ] && break
  sleep 0.01
  n=$((n + 1))
done
for leaf in "$1"/*/; do [ -d "$leaf" ] && rmdir "$leaf"; done
rmdir "$1"
"#;

/// Node cgroups made by this process (several nodes may run in one test process).
static NODES: AtomicU64 = AtomicU64::new(0);

/// How this node contains its children.
pub(crate) struct Guard {
    how: How,
}

enum How {
    Cgroup {
        node: Cgroup,
        launches: AtomicU64,
        stdin: Mutex<Option<ChildStdin>>,
        child: Mutex<Child>,
    },
    Subreaper,
}

/// What holds one launched process and everything it starts.
pub(crate) enum Container {
    Cgroup(Cgroup),
    Shim,
}

impl Guard {
    /// Chooses the containment (see the module's doc) and starts the orphan guard if the
    /// choice needs one.
    pub fn spawn() -> Result<Guard> {
        let wanted = std::env::var(CONTAINMENT_ENV).unwrap_or_default();
        let how = match wanted.as_str() {
            "" | "auto" => match cgroup_guard() {
                Ok(how) => how,
                Err(why) => {
                    tracing::info!("instances are contained by subreaper shims: no cgroup v2 to use ({why})");
                    How::Subreaper
                }
            },
            "cgroup" => cgroup_guard().map_err(|why| anyhow!("{CONTAINMENT_ENV}=cgroup, but {why}"))?,
            "subreaper" => How::Subreaper,
            other => bail!("{CONTAINMENT_ENV}={other:?} is not a containment: use cgroup, subreaper or auto"),
        };
        if let How::Cgroup { node, .. } = &how {
            tracing::info!(cgroup = %node.path().display(), "instances are contained by cgroups");
        }
        Ok(Guard { how })
    }

    /// Sets up `cmd` so that the process it spawns, and every process that one starts,
    /// are contained from before the program's first instruction. `name` says what runs
    /// (an instance, a setup step); it names the cgroup.
    pub fn contain(&self, cmd: &mut tokio::process::Command, name: &str) -> Result<Container> {
        match &self.how {
            How::Cgroup { node, launches, .. } => {
                let n = launches.fetch_add(1, Ordering::Relaxed);
                let leaf = node
                    .create_child(&format!("{n}-{}", cgroup_name(name)))
                    .with_context(|| format!("make a cgroup in {}", node.path().display()))?;
                leaf.join_on_spawn(cmd.as_std_mut())?;
                Ok(Container::Cgroup(leaf))
            }
            How::Subreaper => {
                shim::supervise_on_spawn(cmd.as_std_mut());
                Ok(Container::Shim)
            }
        }
    }

    /// Ends the guard once every instance was stopped cleanly; it removes the node's
    /// cgroup on its way out.
    pub fn close(&self) {
        if let How::Cgroup { stdin, child, .. } = &self.how {
            drop(stdin.lock().unwrap().take());
            let _ = child.lock().unwrap().wait();
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // Closing the pipe makes the guard kill what is left and exit.
        self.close();
    }
}

impl Container {
    /// Kills every process in the container now. `leader` is the spawned process's pid,
    /// `running` whether it is still unreaped (a reaped pid may belong to another
    /// process by now, so a shim that was reaped is not signalled).
    pub fn kill(&self, leader: u32, running: bool) {
        match self {
            Container::Cgroup(cg) => {
                if let Err(e) = cg.kill() {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        tracing::warn!(cgroup = %cg.path().display(), "could not kill a cgroup: {e}");
                    }
                }
            }
            Container::Shim => {
                if running {
                    let _ = shim::end(leader);
                }
            }
        }
    }

    /// Removes a container no process was started in.
    pub fn discard(&self) {
        if let Container::Cgroup(cg) = self {
            let _ = cg.remove();
        }
    }

    /// Once the spawned process ended: kills whatever it left behind, waits until nothing
    /// is left, and removes the container. A shim ends its tree before it exits, so
    /// there is nothing left to do for one.
    pub async fn clear(&self) {
        let Container::Cgroup(cg) = self else {
            return;
        };
        if cg.populated().unwrap_or(false) {
            let _ = cg.kill();
            let until = Instant::now() + EMPTY_WAIT;
            while cg.populated().unwrap_or(false) && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        if let Err(e) = cg.remove() {
            tracing::warn!(cgroup = %cg.path().display(), "could not remove a cgroup (the guard removes it when the node stops): {e}");
        }
    }
}

/// The cgroup containment: this process's own cgroup v2 directory, a node cgroup below
/// it that a child can join and that has `cgroup.kill`, and the guard watching it.
/// Errors are reasons in words.
fn cgroup_guard() -> Result<How, String> {
    let own = Cgroup::own()?;
    clear_stale(&own);
    let name = format!(
        "strata-{}-{}",
        std::process::id(),
        NODES.fetch_add(1, Ordering::Relaxed)
    );
    let node = own
        .create_child(&name)
        .map_err(|e| format!("cannot make a cgroup in {}: {e}", own.path().display()))?;
    let checked = check_joinable(&node);
    let spawned = checked.and_then(|()| {
        Command::new("/bin/sh")
            .arg("-c")
            .arg(SCRIPT)
            .arg("strata-guard")
            .arg(node.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start /bin/sh for the orphan guard: {e}"))
    });
    let mut child = match spawned {
        Ok(child) => child,
        Err(why) => {
            let _ = node.remove();
            return Err(why);
        }
    };
    let stdin = child.stdin.take();
    Ok(How::Cgroup {
        node,
        launches: AtomicU64::new(0),
        stdin: Mutex::new(stdin),
        child: Mutex::new(child),
    })
}

/// Whether `node` can hold processes: it has `cgroup.kill`, and a child process can join
/// a cgroup below it (tried with `/bin/sh -c :`).
fn check_joinable(node: &Cgroup) -> Result<(), String> {
    if !node.can_kill() {
        return Err(format!(
            "{} has no cgroup.kill (Linux 5.14 or later has it)",
            node.path().display()
        ));
    }
    let probe = node
        .create_child("probe")
        .map_err(|e| format!("cannot make a cgroup in {}: {e}", node.path().display()))?;
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", ":"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let joined = probe
        .join_on_spawn(&mut cmd)
        .and_then(|()| cmd.spawn())
        .and_then(|mut child| child.wait());
    let _ = probe.remove();
    match joined {
        Ok(_) => Ok(()),
        Err(e) => Err(format!(
            "a process cannot join a cgroup in {}: {e}",
            node.path().display()
        )),
    }
}

/// Removes the node cgroups of nodes that are gone (a node and its guard both killed),
/// killing what is left in them.
fn clear_stale(own: &Cgroup) {
    let Ok(children) = own.children() else {
        return;
    };
    let me = std::process::id();
    for cg in children {
        let Some(pid) = node_pid(cg.name()) else {
            continue;
        };
        if pid == me || std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let _ = cg.kill();
        let until = Instant::now() + EMPTY_WAIT;
        while cg.populated().unwrap_or(false) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(2));
        }
        match cg.remove() {
            Ok(()) => {
                tracing::warn!(cgroup = %cg.path().display(), "removed the cgroup of a node that is gone, and what ran in it")
            }
            Err(e) => {
                tracing::warn!(cgroup = %cg.path().display(), "could not remove the cgroup of a node that is gone: {e}")
            }
        }
    }
}

/// The pid in a node cgroup's name `strata-PID-N`.
fn node_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("strata-")?;
    let (pid, n) = rest.split_once('-')?;
    n.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// `name` with anything but letters, digits, `.`, `_` and `-` replaced.
fn cgroup_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_cgroups_are_told_apart_from_others() {
        assert_eq!(node_pid("strata-4242-0"), Some(4242));
        assert_eq!(node_pid("strata-4242-x"), None);
        assert_eq!(node_pid("strata-os-test-1-kill"), None);
        assert_eq!(node_pid("system.slice"), None);
        assert_eq!(cgroup_name("web-1.3"), "web-1.3");
        assert_eq!(cgroup_name("a b/c"), "a_b_c");
    }
}
