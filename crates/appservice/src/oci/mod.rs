//! The OCI driver: an instance is a container, run by an OCI runtime (crun where it
//! works, else runc) from a bundle written for each launch.
//!
//! - `runtime`: which runtime, and its commands.
//! - `bundle`: the bundle and its `config.json` (what the container sees, isolation,
//!   limits).
//! - `seccomp`: the default seccomp profile.
//! - `memory`: the container's OOM-kill counter.
//! - `network`: the private network of an app (`"network": "private"`): a bridge per
//!   app, a network namespace and veth per launch, the `$STRATA_URL` forwarder.
//!
//! The life of a container: the runtime's `run` is started in the foreground, in a
//! process group of its own, with the instance's log as its stdout and stderr; it stays
//! the container's parent and exits as the program does. Its `--pid-file` gives the
//! container's first process (strata's init, [`bundle::INIT`], whose child is the
//! program; the program itself in an image without `/bin/sh`). A stop is `kill TERM`, then `kill KILL` after the grace period; an ended
//! container is kept (`--keep`) until its OOM count was read, then `delete --force`d.
//!
//! No orphans: a container's id is `strata-HASH-INSTANCE.LAUNCH`, HASH from the node's
//! state dir ([`container_prefix`]). A container guard (a small `/bin/sh`, in its own
//! process group, started with the first container) holds a pipe from the node: when
//! the pipe closes (the node stopped, or died even by SIGKILL) it lists the runtime's
//! containers and deletes every one with the node's prefix. A container the guard could
//! not delete (it was killed too) is found the same way and deleted when a node starts
//! on that state dir again, before it runs any container (a node without containers
//! does it when the dead one's runtime is still recorded in the state dir). The guard
//! and that sweep delete the node's network namespaces, veths, bridges and rules too
//! ([`network::SWEEP`]).

mod bundle;
mod memory;
mod network;
mod runtime;
mod seccomp;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::process::{Child, ChildStdin, Command};

pub(crate) use bundle::{PATH, SCRATCH};
pub use runtime::RUNTIME_ENV;

use crate::driver::Ended;
use crate::process::{self, RunLog};

/// After `kill KILL`, the runtime is waited for at most this long before it is sent
/// SIGKILL itself (the container is deleted after that anyway).
const KILLED_WAIT: Duration = Duration::from_secs(10);
/// How long a container may take to be created before its launch is left to the
/// start timeout.
const CREATE_WAIT: Duration = Duration::from_secs(30);

/// The container guard's script: `$1` is the runtime, `$2` the node's prefix. It runs
/// nothing while the node runs. Its first line names it. [`network::SWEEP`] follows it.
const GUARD: &str = r#"# strata container guard
while read -r _; do :; done
"$1" list -q 2>/dev/null | while read -r id; do
  case "$id" in
    "$2"*) "$1" delete --force "$id" >/dev/null 2>&1 ;;
  esac
done
p="$2"
"#;

/// Where a node that runs containers records its runtime's path while it runs, in its
/// state dir.
const RUNTIME_FILE: &str = "oci-runtime";

/// The prefix of the ids of the containers of a node whose state dir is `state_dir`:
/// `strata-` and 8 hex digits of a hash of the dir's path, then `-`.
pub fn container_prefix(state_dir: &Path) -> String {
    let path = state_dir.canonicalize().unwrap_or_else(|_| state_dir.to_path_buf());
    let hash = fnv(path.as_os_str().as_encoded_bytes());
    format!("strata-{:08x}-", (hash >> 32) as u32 ^ hash as u32)
}

/// FNV-1a: stable across builds and platforms, which `DefaultHasher` is not.
fn fnv(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// What a node keeps for its containers: the runtime, the image, the id prefix and the
/// container guard. Made when the first container is wanted.
pub(crate) struct Oci {
    runtime: Arc<runtime::Runtime>,
    image: bundle::HostImage,
    memory: memory::MemoryCgroups,
    prefix: String,
    /// [`RUNTIME_FILE`] in the state dir.
    marker: PathBuf,
    guard_stdin: Mutex<Option<ChildStdin>>,
    guard: tokio::sync::Mutex<Option<Child>>,
    /// The app's private network, made for its first container that asks for it.
    network: tokio::sync::OnceCell<Arc<network::AppNetwork>>,
}

/// One container launch.
pub(crate) struct ContainerLaunch<'a> {
    /// The instance id and launch number (`web-1.3`): the container's id after the
    /// node's prefix.
    pub name: &'a str,
    /// The instance id: the container's hostname.
    pub hostname: &'a str,
    pub argv: &'a [String],
    /// Whether strata's init (the image's `/bin/sh`) is the first process.
    pub init: bool,
    pub env: &'a BTreeMap<String, String>,
    pub workdir: &'a Path,
    /// Where the program starts.
    pub cwd: &'a Path,
    /// The node's state dir: masked where it lies inside the workdir.
    pub state_dir: &'a Path,
    pub log: &'a Path,
    /// An empty directory of the launch's own, for the bundle.
    pub bundle: &'a Path,
    /// The image's root filesystem; None: the `host` image.
    pub root: Option<&'a Path>,
    /// The manifest's files, written on the host: (path below the scratch, host file).
    pub files: &'a [(String, PathBuf)],
    pub user: (u32, u32),
    pub memory_mb: Option<u64>,
    pub cpus: Option<f64>,
    pub pids: u64,
    /// Whether the default seccomp profile applies (false: `"seccomp": "unconfined"`).
    pub seccomp: bool,
    /// Some for a container on its app's private network: the app's name and the
    /// node API's address (forwarded into the namespace where it is on loopback).
    pub private: Option<(&'a str, Option<std::net::SocketAddr>)>,
}

impl Oci {
    /// Chooses the runtime (see `runtime`), deletes the containers a node that is gone
    /// left on this state dir, and starts the container guard. Records the runtime in
    /// the state dir ([`RUNTIME_FILE`]) until [`Oci::close`], so that a node started
    /// there later without containers still deletes what this one leaves if it dies.
    pub async fn start(state_dir: &Path) -> Result<Oci> {
        // SAFETY: geteuid has no preconditions and touches no memory.
        if unsafe { libc::geteuid() } != 0 {
            anyhow::bail!(
                "the oci driver runs containers as root only so far (rootless containers, in a user namespace of their own, are not done yet): start strata as root, or use \"driver\": \"process\""
            );
        }
        let prefix = container_prefix(state_dir);
        let image = bundle::HostImage::detect();
        let probes = state_dir
            .join("run")
            .join(std::process::id().to_string())
            .join("oci-probe");
        let make_probe = {
            let (probes, image, prefix) = (probes.clone(), image.clone(), prefix.clone());
            move |runtime: &str| -> Result<(PathBuf, String)> {
                probe_bundle(&probes.join(runtime), &image, &prefix, runtime)
            }
        };
        let runtime = runtime::Runtime::detect(make_probe).await;
        let _ = std::fs::remove_dir_all(&probes);
        let runtime = runtime?;
        tracing::info!(runtime = %runtime.describe(), prefix, "containers run with {}", runtime.name);
        let oci = Oci {
            runtime: Arc::new(runtime),
            image,
            memory: memory::MemoryCgroups::detect(),
            prefix,
            marker: state_dir.join(RUNTIME_FILE),
            guard_stdin: Mutex::new(None),
            guard: tokio::sync::Mutex::new(None),
            network: tokio::sync::OnceCell::new(),
        };
        sweep(&oci.runtime, &oci.prefix).await;
        network::sweep(&oci.prefix).await;
        std::fs::write(&oci.marker, oci.runtime.path.as_os_str().as_encoded_bytes())
            .with_context(|| format!("write {}", oci.marker.display()))?;
        let mut guard = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("{GUARD}{}", network::SWEEP))
            .arg("strata-container-guard")
            .arg(&oci.runtime.path)
            .arg(&oci.prefix)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .context("start /bin/sh for the container guard")?;
        *oci.guard_stdin.lock().unwrap() = guard.stdin.take();
        *oci.guard.lock().await = Some(guard);
        Ok(oci)
    }

    /// Writes the launch's bundle and starts its container; returns once the runtime
    /// has made it (or ended).
    pub async fn launch(&self, l: ContainerLaunch<'_>) -> Result<(Container, RunLog)> {
        let id = format!("{}{}", self.prefix, l.name);
        let attachment = match l.private {
            Some((app, api)) => {
                let network = self
                    .network
                    .get_or_try_init(|| async { network::AppNetwork::create(&self.prefix, app).await.map(Arc::new) })
                    .await?;
                Some(network.attach(&id, api).await?)
            }
            None => None,
        };
        let netns = attachment.as_ref().map(|a| a.netns_path());
        let resolv_conf = l.bundle.join("resolv.conf");
        if attachment.is_some() {
            std::fs::write(&resolv_conf, network::RESOLV_CONF)
                .with_context(|| format!("write {}", resolv_conf.display()))?;
        }
        let masked: Vec<PathBuf> = [l.state_dir.to_path_buf()]
            .into_iter()
            .filter(|s| s.starts_with(l.workdir) && s != l.workdir)
            .collect();
        bundle::write(
            l.bundle,
            &self.image,
            &bundle::BundleSpec {
                hostname: l.hostname,
                argv: l.argv,
                init: l.init,
                env: l.env,
                workdir: l.workdir,
                cwd: l.cwd,
                root: l.root,
                masked: &masked,
                files: l.files,
                user: l.user,
                memory_mb: l.memory_mb,
                cpus: l.cpus,
                pids: l.pids,
                seccomp: l.seccomp,
                cgroup: &id,
                netns: netns.as_deref(),
                resolv_conf: attachment.as_ref().map(|_| resolv_conf.as_path()),
            },
        )?;
        let (out, err, run_log) = process::open_log(l.log)?;
        let pid_file = l.bundle.join("init.pid");
        let mut cmd = self.runtime.run(l.bundle, &pid_file, &id);
        cmd.stdin(Stdio::null()).stdout(out).stderr(err).process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("start {} run", self.runtime.path.display()))?;
        let runtime_pid = child.id().context("the runtime exited before its pid was read")?;
        let mut container = Container {
            pid: runtime_pid,
            id,
            runtime: self.runtime.clone(),
            memory: self.memory.clone(),
            memory_mb: l.memory_mb,
            child,
            network: attachment,
            cleared: false,
        };
        // The container's first process, once the runtime has made it; a runtime that
        // ends first failed, and says why in the log.
        let since = Instant::now();
        loop {
            if let Some(pid) = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|t| t.trim().parse::<u32>().ok())
            {
                container.pid = pid;
                break;
            }
            if !matches!(container.child.try_wait(), Ok(None)) || since.elapsed() > CREATE_WAIT {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok((container, run_log))
    }

    /// Ends the container guard once every container was stopped: it deletes any left.
    /// The app's private network goes first.
    pub async fn close(&self) {
        if let Some(network) = self.network.get() {
            network.remove().await;
        }
        drop(self.guard_stdin.lock().unwrap().take());
        if let Some(mut guard) = self.guard.lock().await.take() {
            if let Ok(Ok(status)) = tokio::time::timeout(Duration::from_secs(30), guard.wait()).await {
                if status.success() {
                    let _ = std::fs::remove_file(&self.marker);
                }
            }
        }
    }
}

/// A bundle for a runtime's probe: `/bin/true` with limits, as an instance is run.
fn probe_bundle(dir: &Path, image: &bundle::HostImage, prefix: &str, runtime: &str) -> Result<(PathBuf, String)> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let id = format!("{prefix}probe-{runtime}");
    let argv = ["true".to_string()];
    let env = BTreeMap::new();
    bundle::write(
        dir,
        image,
        &bundle::BundleSpec {
            hostname: "probe",
            argv: &argv,
            init: true,
            env: &env,
            workdir: Path::new("/usr"),
            cwd: Path::new("/usr"),
            root: None,
            masked: &[],
            files: &[],
            user: strata_manifest::NOBODY,
            memory_mb: Some(64),
            cpus: Some(0.5),
            pids: 16,
            seccomp: true,
            cgroup: &id,
            netns: None,
            resolv_conf: None,
        },
    )?;
    Ok((dir.to_path_buf(), id))
}

/// Deletes the containers whose ids start with `prefix`: left by a node that is gone.
async fn sweep(runtime: &runtime::Runtime, prefix: &str) {
    let ids = match runtime.list().await {
        Ok(ids) => ids,
        Err(why) => {
            tracing::warn!(runtime = %runtime.path.display(), "could not list containers to remove those left behind: {why}");
            return;
        }
    };
    for id in ids.into_iter().filter(|id| id.starts_with(prefix)) {
        match runtime.delete(&id).await {
            Ok(()) => tracing::warn!(container = id, "removed a container left behind by a node that is gone"),
            Err(why) => tracing::warn!(container = id, "could not remove a container left behind: {why}"),
        }
    }
}

/// Whether a node that ran containers on `state_dir` did not stop cleanly (its runtime
/// is still recorded there).
pub(crate) fn left_behind(state_dir: &Path) -> bool {
    state_dir.join(RUNTIME_FILE).exists()
}

/// For a node that runs no container: deletes what a node that ran some on
/// `state_dir` and died left there, with the runtime it recorded ([`RUNTIME_FILE`]).
pub(crate) async fn sweep_leftovers(state_dir: &Path) {
    let marker = state_dir.join(RUNTIME_FILE);
    let Ok(path) = std::fs::read(&marker) else {
        return;
    };
    let path = PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(path));
    let runtime = runtime::Runtime {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        path,
        version: String::new(),
        passed_over: None,
    };
    let prefix = container_prefix(state_dir);
    sweep(&runtime, &prefix).await;
    network::sweep(&prefix).await;
    let _ = std::fs::remove_file(&marker);
}

/// A launched container.
pub(crate) struct Container {
    /// The container's first process (strata's init) as the host sees it, the leader of
    /// the session and process group of everything in the container; the runtime's pid
    /// until the runtime wrote it.
    pub pid: u32,
    id: String,
    runtime: Arc<runtime::Runtime>,
    memory: memory::MemoryCgroups,
    memory_mb: Option<u64>,
    child: Child,
    /// Its namespace on the app's private network, removed once it is deleted.
    network: Option<network::Attachment>,
    cleared: bool,
}

impl Container {
    /// What `ps` shows as its runtime.
    pub fn runtime(&self) -> String {
        self.runtime.describe()
    }

    /// Its address on its app's private network; None on the node's network.
    pub fn address(&self) -> Option<std::net::Ipv4Addr> {
        self.network.as_ref().map(|n| n.address)
    }

    /// Waits for the program to end, and says how, OOM kills included (read before
    /// anything awaits again, so the answer is not lost when the caller moves on).
    pub async fn wait(&mut self) -> std::io::Result<Ended> {
        let status = self.child.wait().await?;
        let kills = self.memory.oom_kills(&self.id).unwrap_or(0);
        if kills > 0 {
            let limit = match self.memory_mb {
                Some(mb) => format!("for memory over its limit (resources.memory_mb: {mb})"),
                None => "for memory".to_string(),
            };
            return Ok(Ended {
                reason: format!("oom: the kernel killed it {limit}; its end: {}", describe(&status)),
                oom: true,
            });
        }
        Ok(Ended {
            reason: describe(&status),
            oom: false,
        })
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// `kill TERM`, then after `grace` `kill KILL`; then the container is deleted.
    pub async fn stop(&mut self, grace: Duration) -> Option<String> {
        if self.running() {
            if let Err(why) = self.runtime.kill(&self.id, "TERM").await {
                tracing::debug!(container = self.id, "kill TERM: {why}");
            }
        }
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => {
                self.clear().await;
                status.ok().map(|s| describe(&s))
            }
            Err(_) => self.kill_and_clear().await,
        }
    }

    /// Kills everything in the container now, waits for the runtime, deletes the
    /// container.
    pub async fn kill_and_clear(&mut self) -> Option<String> {
        if self.running() {
            if let Err(why) = self.runtime.kill(&self.id, "KILL").await {
                tracing::debug!(container = self.id, "kill KILL: {why}");
            }
        }
        let status = match tokio::time::timeout(KILLED_WAIT, self.child.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                tracing::warn!(
                    container = self.id,
                    "a killed container's runtime did not end; sending it SIGKILL"
                );
                let _ = self.child.start_kill();
                self.child.wait().await.ok()
            }
        };
        self.clear().await;
        status.map(|s| describe(&s))
    }

    /// Once the runtime ended: deletes the container (and whatever still runs in it).
    pub async fn clear(&mut self) {
        if let Err(why) = self.runtime.delete(&self.id).await {
            tracing::warn!(
                container = self.id,
                "could not delete a container (the container guard deletes it when the node stops): {why}"
            );
        }
        if let Some(network) = self.network.take() {
            network.remove().await;
        }
        self.cleared = true;
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if !self.cleared {
            // Dropped without being cleared (its task was aborted): delete it from a
            // thread, since no runtime may be left to await on.
            let (path, id) = (self.runtime.path.clone(), self.id.clone());
            std::thread::spawn(move || {
                let _ = std::process::Command::new(path)
                    .args(["delete", "--force", &id])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            });
        }
    }
}

/// How the runtime's `run` ended, in the words of the process driver: the runtime exits
/// 128 + N for a program killed by signal N.
fn describe(status: &ExitStatus) -> String {
    match status.code() {
        Some(code) if (129..=128 + 64).contains(&code) => {
            let sig = code - 128;
            format!("killed by signal {sig}{}", process::signal_name(sig))
        }
        _ => process::describe(status),
    }
}
