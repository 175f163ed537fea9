//! The App Service: runs the pools of an app from its manifest.
//!
//! Layout:
//! - [`AppService`]: the handle of a running app: snapshot, scale, events, stop.
//! - `service`: one supervisor per service: setup step, bindings, desired count.
//! - `instance`: the life of one instance slot: place, launch, ready, live, restart.
//! - `driver`: a launched instance, whichever driver launched it ([`Driver`]): what
//!   `instance` waits for, stops and kills.
//! - `process`: the process driver (own process group, signals, exit status).
//! - `oci`: the OCI driver: a container per launch on an OCI runtime (crun where it
//!   works, else runc), its bundle (the `host` image, isolation, seccomp, limits), OOM
//!   kills, an app's private network (a namespace per launch on the app's bridge), and
//!   the container guard that deletes a dead node's containers and networks.
//! - [`image`]: container images (OCI layouts and archives, `docker save` archives)
//!   imported into the node's image store, verified and unpacked layer by layer.
//! - `guard`: containment of every process an instance starts (a cgroup per launch, or
//!   a subreaper shim), and the orphan guard that kills them all if strata itself dies.
//! - `probe`: readiness and liveness checks (health path or port accept), as a
//!   well-behaved client: one request with `Connection: close`, the reply read whole, a
//!   clean close; the outcome says why a check failed.
//! - `setup`: the install step, skipped while its inputs are unchanged.
//! - `capacity`: the node's memory and accelerators, reserved per instance.
//! - `events`: what happened and why, for the CLI and `strata events`.
//!
//! Invariants: a ready instance is a member of its pool in the bus and nothing else is;
//! every child process is in its own process group and, with all it starts, in its
//! container from before its first instruction (for the oci driver, the OCI container
//! itself: its pid namespace and cgroup); nothing here speaks HTTP beyond the health
//! probe (one GET, its reply read to its end).
//!
//! [`Driver`]: strata_manifest::Driver

mod capacity;
mod driver;
mod events;
mod guard;
pub mod image;
mod instance;
mod oci;
mod probe;
mod process;
mod service;
mod setup;
mod status;

pub use capacity::NodeResources;
pub use events::{time_of_day, Event, EventKind};
pub use oci::{container_prefix, RUNTIME_ENV};
pub use probe::{GrpcProbe, Outcome as ProbeOutcome};
pub use status::{AutoscaleStatus, InstanceState, InstanceStatus, ServiceStatus};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use strata_bus::Bus;
use strata_manifest::Manifest;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Who sets an instance count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleBy {
    /// A person, through `strata scale` or the control API.
    Hand,
    /// The service's autoscaler.
    Autoscaler,
    /// The cluster's placement: this node's share of the service's instances, which may
    /// be below `instances.min` (the other instances run on other nodes) or zero.
    Placement,
}

/// Why an instance count was not set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScaleError {
    #[error("no service named {service:?} in app {app:?} (services: {})", services.join(", "))]
    UnknownService {
        service: String,
        app: String,
        services: Vec<String>,
    },
    #[error("{service} can run between {min} and {max} instances (instances.min and instances.max in the manifest); {count} is outside")]
    OutOfRange {
        service: String,
        min: u32,
        max: u32,
        count: u32,
    },
    #[error("service {0:?} is autoscaled (it has autoscale, or instances.min 0): its count follows its load and a count set by hand would be undone; change instances.min and instances.max in the manifest instead")]
    Autoscaled(String),
    #[error("{0:?} is a function: it is started by its events and stopped once idle, so a count set by hand would be undone; change its max_instances and keep_warm_ms in the manifest instead")]
    Function(String),
    /// The app is stopping: its services wait for those that bind to them, and no new
    /// instance starts meanwhile.
    #[error("the app is stopping: {0:?} is not scaled")]
    Stopping(String),
}

/// What the App Service needs to run one app on this node.
pub struct AppConfig {
    pub manifest: Manifest,
    /// The manifest's directory: workdirs and file sources are relative to it.
    pub app_dir: PathBuf,
    /// Where logs, scratch dirs and setup stamps go (usually `app_dir/.strata`).
    pub state_dir: PathBuf,
    /// `STRATA_URL` given to instances: the platform API of this node.
    pub api_url: String,
    /// `STRATA_TOKEN` given to each service's instances: service -> its token for the
    /// platform API (a service without one gets none).
    pub tokens: BTreeMap<String, String>,
    pub node: NodeResources,
    /// In a cluster, this node's name: instances get it as `STRATA_NODE`, and their
    /// `STRATA_INSTANCE` is `ID@NODE` (unique in the cluster; `web-1` alone repeats on
    /// every node). None: one node.
    pub cluster_node: Option<String>,
    /// The gRPC health check (`health.grpc`), from a crate that speaks HTTP/2; None:
    /// such a check fails, saying so.
    pub grpc_probe: Option<GrpcProbe>,
}

/// What every task of the App Service shares: the app, its dirs, the bus, capacity, the
/// guard, the event log and the task tracker.
pub(crate) struct AppContext {
    pub app: String,
    pub app_dir: PathBuf,
    pub state_dir: PathBuf,
    pub api_url: String,
    pub tokens: BTreeMap<String, String>,
    pub cluster_node: Option<String>,
    pub grpc_probe: Option<GrpcProbe>,
    pub bus: Arc<Bus>,
    pub capacity: capacity::Capacity,
    pub guard: guard::Guard,
    pub events: events::EventLog,
    pub tracker: TaskTracker,
    /// The OCI driver's node state, made when the first container is wanted (a failed
    /// attempt, such as no runtime installed, is tried again at the next launch).
    pub oci: tokio::sync::OnceCell<Arc<oci::Oci>>,
    /// The images the app's containers run, resolved (imported, unpacked) once each.
    pub images: tokio::sync::Mutex<BTreeMap<String, Arc<image::Resolved>>>,
}

impl AppContext {
    /// Where an instance's stdout and stderr go: `logs/SERVICE/INSTANCE.log` in the
    /// state dir, appended to by every run.
    pub fn log_path(&self, service: &str, instance: &str) -> PathBuf {
        self.state_dir
            .join("logs")
            .join(service)
            .join(format!("{instance}.log"))
    }

    /// The OCI driver, started (runtime chosen, leftovers removed, guard running) on
    /// first use.
    pub async fn oci(&self) -> Result<Arc<oci::Oci>> {
        self.oci
            .get_or_try_init(|| async { oci::Oci::start(&self.state_dir).await.map(Arc::new) })
            .await
            .cloned()
    }

    /// The image a container service runs: None for the `host` image, else the image
    /// the manifest names, imported into the node's image store on first use (a bad one
    /// is an error here, before any container is made). A failed import is tried again
    /// at the next launch.
    pub async fn image(&self, spec: &strata_manifest::ServiceSpec) -> Result<Option<Arc<image::Resolved>>> {
        let name = spec.image();
        if name == strata_manifest::HOST_IMAGE {
            return Ok(None);
        }
        let mut images = self.images.lock().await;
        if let Some(found) = images.get(name) {
            return Ok(Some(found.clone()));
        }
        let (name_owned, base) = (name.to_string(), self.app_dir.clone());
        let resolved = tokio::task::spawn_blocking(move || -> Result<image::Resolved> {
            let store = image::ImageStore::open_default()?;
            let image = store.resolve(&name_owned, &base)?;
            image::Resolved::of(&store, image)
        })
        .await
        .context("import the image")??;
        let resolved = Arc::new(resolved);
        images.insert(name.to_string(), resolved.clone());
        Ok(Some(resolved))
    }
}

/// A running app.
pub struct AppService {
    shared: Arc<AppContext>,
    services: BTreeMap<String, service::ServiceHandle>,
    shutdown: CancellationToken,
}

impl AppService {
    /// Launches every service of the manifest; returns at once while they start.
    pub fn start(config: AppConfig, bus: Arc<Bus>, shutdown: CancellationToken) -> Result<AppService> {
        let logs = config.state_dir.join("logs");
        std::fs::create_dir_all(&logs).with_context(|| format!("create log dir {}", logs.display()))?;
        let run = config.state_dir.join("run");
        std::fs::create_dir_all(&run).context("create scratch dir root")?;
        clear_stale_scratch(&run);
        let guard = guard::Guard::spawn().context("start the orphan guard")?;
        let shared = Arc::new(AppContext {
            app: config.manifest.app.clone(),
            app_dir: config.app_dir,
            state_dir: config.state_dir,
            api_url: config.api_url,
            tokens: config.tokens,
            cluster_node: config.cluster_node,
            grpc_probe: config.grpc_probe,
            bus,
            capacity: capacity::Capacity::new(config.node),
            guard,
            events: events::EventLog::new(),
            tracker: TaskTracker::new(),
            oci: tokio::sync::OnceCell::new(),
            images: tokio::sync::Mutex::new(BTreeMap::new()),
        });
        let containers = config
            .manifest
            .services
            .values()
            .any(|s| s.driver == strata_manifest::Driver::Oci);
        if containers {
            // The driver starts (runtime chosen, leftovers deleted) while the services
            // run their setup steps; a failure is reported by the launches that need it.
            let oci_shared = shared.clone();
            shared.tracker.spawn(async move {
                if let Err(e) = oci_shared.oci().await {
                    tracing::warn!("the oci driver cannot run containers: {e:#}");
                }
            });
        } else if oci::left_behind(&shared.state_dir) {
            let state_dir = shared.state_dir.clone();
            shared
                .tracker
                .spawn(async move { oci::sweep_leftovers(&state_dir).await });
        }
        let mut services = BTreeMap::new();
        for name in config.manifest.start_order() {
            let spec = config.manifest.services[&name].clone();
            let handle = service::ServiceHandle::start(&shared, name.clone(), spec);
            services.insert(name, handle);
        }
        let order = stop_order(&services);
        // The longest an instance takes to stop: its drain and its SIGTERM's grace, each
        // up to `stop_grace_ms`. Past it, whatever still waits for its dependents stops.
        let longest_grace = config
            .manifest
            .services
            .values()
            .map(|s| s.stop_grace_ms)
            .max()
            .unwrap_or(0);
        let longest_stop = Duration::from_millis(2 * longest_grace) + Duration::from_secs(5);
        let stopping = shutdown.clone();
        shared.tracker.spawn(async move {
            stopping.cancelled().await;
            stop_in_order(order, longest_stop).await;
        });
        Ok(AppService {
            shared,
            services,
            shutdown,
        })
    }

    /// Per-service state for `strata ps`.
    pub fn snapshot(&self) -> Vec<ServiceStatus> {
        self.services.values().map(|s| s.snapshot()).collect()
    }

    /// Sets the number of instances of a service, within its manifest bounds.
    /// Sets a service's instance count. `by` says who asks: a count set by hand is
    /// refused for a service whose count follows its load, since it would be undone.
    pub fn scale(&self, service: &str, count: u32, by: ScaleBy) -> Result<(), ScaleError> {
        let Some(handle) = self.services.get(service) else {
            return Err(ScaleError::UnknownService {
                service: service.to_string(),
                app: self.shared.app.clone(),
                services: self.services.keys().cloned().collect(),
            });
        };
        if self.shutdown.is_cancelled() {
            return Err(ScaleError::Stopping(service.to_string()));
        }
        if by == ScaleBy::Hand && handle.is_function() {
            return Err(ScaleError::Function(service.to_string()));
        }
        if by == ScaleBy::Hand && handle.is_autoscaled() {
            return Err(ScaleError::Autoscaled(service.to_string()));
        }
        if by == ScaleBy::Placement {
            handle.place(count);
            return Ok(());
        }
        handle.scale(count)
    }

    /// The instance count a service is set to run (without building a whole snapshot).
    pub fn desired(&self, service: &str) -> Option<u32> {
        self.services.get(service).map(|h| h.desired())
    }

    /// Whether a service's count follows its load (it has `autoscale`, or may run none),
    /// so that a count set by hand would be undone.
    pub fn is_autoscaled(&self, service: &str) -> bool {
        self.services.get(service).is_some_and(|h| h.is_autoscaled())
    }

    /// Records what the autoscaler concluded for a service, shown by `snapshot`.
    pub fn set_autoscale(&self, service: &str, status: AutoscaleStatus) {
        if let Some(handle) = self.services.get(service) {
            handle.set_autoscale(status);
        }
    }

    /// Changes part of a service's autoscale status (a default one when it has none):
    /// for figures kept by more than one task, as in a cluster.
    pub fn update_autoscale(&self, service: &str, update: impl FnOnce(&mut AutoscaleStatus)) {
        if let Some(handle) = self.services.get(service) {
            handle.update_autoscale(update);
        }
    }

    /// Records an event from outside the App Service (the autoscaler, the function
    /// triggers), with its reason.
    pub fn record(&self, service: &str, kind: EventKind, message: String) {
        self.shared.events.emit(service, None, kind, message);
    }

    /// Events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    /// The most recent events, oldest first.
    pub fn recent_events(&self) -> Vec<Event> {
        self.shared.events.recent()
    }

    /// Where the logs of an instance are written.
    pub fn log_dir(&self, service: &str) -> Option<PathBuf> {
        self.services
            .contains_key(service)
            .then(|| self.shared.state_dir.join("logs").join(service))
    }

    /// Whether the service declares a setup step (None: no such service).
    pub fn has_setup(&self, service: &str) -> Option<bool> {
        self.services.get(service).map(|h| h.has_setup())
    }

    /// Resolves once every service has a ready instance (or shutdown began); a service
    /// that starts with none (scale from zero) does not count.
    pub async fn ready(&self) {
        for (name, handle) in &self.services {
            if handle.initial() == 0 {
                continue;
            }
            let mut ready = self.shared.bus.pool(name).watch_ready();
            tokio::select! {
                _ = ready.wait_for(|n| *n > 0) => {}
                _ = self.shutdown.cancelled() => return,
            }
        }
    }

    /// Stops every instance (drain, SIGTERM, grace, SIGKILL) and waits for all of them.
    pub async fn stop(&self) {
        self.shutdown.cancel();
        self.shared.tracker.close();
        self.shared.tracker.wait().await;
        if let Some(oci) = self.shared.oci.get() {
            oci.close().await;
        }
        self.shared.guard.close();
        // This node's scratch root, emptied by its instances' ends (left if not empty).
        let mine = self.shared.state_dir.join("run").join(std::process::id().to_string());
        let _ = std::fs::remove_dir(mine);
    }
}

/// Each service's stopper and the stoppers of the services that bind to it (its
/// dependents).
type StopOrder = Vec<(service::Stopper, Vec<service::Stopper>)>;

fn stop_order(services: &BTreeMap<String, service::ServiceHandle>) -> StopOrder {
    services
        .iter()
        .map(|(name, handle)| {
            let dependents = services
                .values()
                .filter(|other| other.bindings().iter().any(|b| b == name))
                .map(|other| other.stopper())
                .collect();
            (handle.stopper(), dependents)
        })
        .collect()
}

/// Stops every service once the services that bind to it have stopped (docker compose's
/// order): an instance draining its last requests can still call what it binds to. The
/// bindings have no cycle (the manifest's validation refuses one), and services that
/// do not depend on each other stop together. Bounded: `longest_stop` after the start,
/// every service still waiting stops (a chain of bindings does not add up its drains,
/// and a dependent that never says it stopped holds nothing).
async fn stop_in_order(order: StopOrder, longest_stop: Duration) {
    let deadline = tokio::time::Instant::now() + longest_stop;
    let mut stops = tokio::task::JoinSet::new();
    for (stopper, dependents) in order {
        stops.spawn(async move {
            // Stopped when this task ends, however it ends.
            let _stop = stopper.stop_on_drop();
            let waits = async {
                for d in &dependents {
                    d.stopped().await;
                }
            };
            if tokio::time::timeout_at(deadline, waits).await.is_err() {
                tracing::warn!(
                    service = stopper.service(),
                    "the services that bind to it still stopping after {longest_stop:?}: stopping it anyway"
                );
            }
        });
    }
    while stops.join_next().await.is_some() {}
}

/// Removes the scratch dirs left under `run/` by nodes that are no longer running (a node
/// killed with SIGKILL leaves its instances' dirs): one dir per node pid, kept only while
/// that pid is alive; anything else there (the old flat layout) is removed too.
fn clear_stale_scratch(run: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(run) else {
        return;
    };
    let me = std::process::id();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid: Option<u32> = name.to_str().and_then(|n| n.parse().ok());
        let live = pid.is_some_and(|p| p != me && std::path::Path::new(&format!("/proc/{p}")).exists());
        if !live {
            let path = entry.path();
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            if let Err(e) = removed {
                tracing::warn!(path = %path.display(), "could not remove a stale scratch dir: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use service::Stopper;

    #[tokio::test]
    async fn a_service_stops_after_those_that_bind_to_it_within_a_bound() {
        // back is bound by front; alone by nobody.
        let (front, back, alone) = (
            Stopper::detached("front"),
            Stopper::detached("back"),
            Stopper::detached("alone"),
        );
        let order: StopOrder = vec![
            (front.clone(), vec![]),
            (back.clone(), vec![front.clone()]),
            (alone.clone(), vec![]),
        ];
        let stopping = tokio::spawn(stop_in_order(order, Duration::from_secs(30)));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(front.is_stopping() && alone.is_stopping());
        assert!(!back.is_stopping(), "back waits for front");
        front.finish();
        stopping.await.unwrap();
        assert!(back.is_stopping());

        // A dependent that never says it stopped holds back only until the bound.
        let (front, back) = (Stopper::detached("front"), Stopper::detached("back"));
        let order: StopOrder = vec![(front.clone(), vec![]), (back.clone(), vec![front.clone()])];
        let started = std::time::Instant::now();
        stop_in_order(order, Duration::from_millis(300)).await;
        assert!(back.is_stopping());
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "{:?}",
            started.elapsed()
        );
    }
}
