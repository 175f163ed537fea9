//! One supervisor per service: runs the setup step, waits for the services it binds
//! to, then keeps the desired number of instance slots.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use strata_manifest::ServiceSpec;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::capacity::Demand;
use crate::events::EventKind;
use crate::instance::{self, ServiceCtx};
use crate::setup::{self, Setup};
use crate::status::{InstanceState, InstanceStatus, ServiceStatus};
use crate::AppContext;

struct Slot {
    number: u32,
    status: Arc<Mutex<InstanceStatus>>,
    stop: CancellationToken,
}

pub(crate) struct ServiceHandle {
    ctx: Arc<ServiceCtx>,
    desired: watch::Sender<u32>,
    phase: Arc<Mutex<String>>,
    slots: Arc<Mutex<Vec<Slot>>>,
    autoscale: Mutex<Option<crate::AutoscaleStatus>>,
    stopper: Stopper,
}

/// Stops one service and tells when it has: its supervisor returned and every instance
/// it ran has stopped.
#[derive(Clone)]
pub(crate) struct Stopper {
    service: Arc<str>,
    stop: CancellationToken,
    /// Cancelled when the supervisor returns.
    done: CancellationToken,
    slots: Arc<Mutex<Vec<Slot>>>,
}

impl Stopper {
    pub fn service(&self) -> &str {
        &self.service
    }

    /// A stopper of no running service (tests): `finish` says it stopped.
    #[cfg(test)]
    pub(crate) fn detached(service: &str) -> Stopper {
        Stopper {
            service: Arc::from(service),
            stop: CancellationToken::new(),
            done: CancellationToken::new(),
            slots: Arc::default(),
        }
    }

    #[cfg(test)]
    pub(crate) fn is_stopping(&self) -> bool {
        self.stop.is_cancelled()
    }

    #[cfg(test)]
    pub(crate) fn finish(&self) {
        self.done.cancel();
    }

    /// Starts the service's stop (its instances drain and exit) when dropped.
    pub fn stop_on_drop(&self) -> tokio_util::sync::DropGuard {
        self.stop.clone().drop_guard()
    }

    /// Resolves once the service's supervisor returned and every instance stopped.
    pub async fn stopped(&self) {
        self.done.cancelled().await;
        loop {
            let all = self
                .slots
                .lock()
                .unwrap()
                .iter()
                .all(|s| s.status.lock().unwrap().state == InstanceState::Stopped);
            if all {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

impl ServiceHandle {
    /// Whether the service declares a setup step.
    pub fn has_setup(&self) -> bool {
        self.ctx.spec.setup.is_some()
    }

    /// Starts the service's supervisor; [`ServiceHandle::stopper`] stops it.
    pub fn start(shared: &Arc<AppContext>, name: String, spec: ServiceSpec) -> ServiceHandle {
        let stop = CancellationToken::new();
        let workdir = match &spec.workdir {
            Some(dir) => shared.app_dir.join(dir),
            None => shared.app_dir.clone(),
        };
        let ctx = Arc::new(ServiceCtx {
            pool: shared.bus.pool(&name),
            demand: Demand {
                memory_mb: spec.resources.memory_mb.unwrap_or(0),
                accelerators: spec.resources.accelerators,
            },
            name,
            workdir,
            spec,
            start_time: Default::default(),
            starting: Default::default(),
        });
        let (desired, desired_rx) = watch::channel(ctx.spec.instances.initial());
        let slots = Arc::new(Mutex::new(Vec::new()));
        let done = CancellationToken::new();
        let handle = ServiceHandle {
            ctx: ctx.clone(),
            desired,
            phase: Arc::new(Mutex::new("pending".into())),
            slots: slots.clone(),
            autoscale: Mutex::new(None),
            stopper: Stopper {
                service: Arc::from(ctx.name.as_str()),
                stop: stop.clone(),
                done: done.clone(),
                slots: slots.clone(),
            },
        };
        let phase = handle.phase.clone();
        let task_shared = shared.clone();
        shared.tracker.spawn(async move {
            // Done when the supervisor ends, however it ends.
            let _done = done.drop_guard();
            supervise(task_shared, ctx, phase, slots, desired_rx, stop).await;
        });
        handle
    }

    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// The services this one binds to.
    pub fn bindings(&self) -> &[String] {
        &self.ctx.spec.bindings
    }

    /// Instances launched at start.
    pub fn initial(&self) -> u32 {
        self.ctx.spec.instances.initial()
    }

    pub fn scale(&self, count: u32) -> Result<(), crate::ScaleError> {
        let bounds = &self.ctx.spec.instances;
        if count < bounds.min || count > bounds.max {
            return Err(crate::ScaleError::OutOfRange {
                service: self.ctx.name.clone(),
                min: bounds.min,
                max: bounds.max,
                count,
            });
        }
        self.desired.send_replace(count);
        Ok(())
    }

    /// Sets the count the cluster's placement gave this node, whatever the manifest's
    /// per-app bounds (they bound the whole app, not one node's share).
    pub fn place(&self, count: u32) {
        self.desired.send_replace(count);
    }

    pub fn desired(&self) -> u32 {
        *self.desired.borrow()
    }

    /// A function's pool (`Manifest::expanded`).
    pub fn is_function(&self) -> bool {
        self.ctx.spec.function.is_some()
    }

    pub fn is_autoscaled(&self) -> bool {
        self.ctx.spec.autoscale.is_some() || self.ctx.spec.instances.min == 0
    }

    pub fn set_autoscale(&self, status: crate::AutoscaleStatus) {
        *self.autoscale.lock().unwrap() = Some(status);
    }

    pub fn update_autoscale(&self, update: impl FnOnce(&mut crate::AutoscaleStatus)) {
        update(self.autoscale.lock().unwrap().get_or_insert_with(Default::default));
    }

    pub fn snapshot(&self) -> ServiceStatus {
        let instances: Vec<InstanceStatus> = self
            .slots
            .lock()
            .unwrap()
            .iter()
            .map(|slot| {
                let mut s = slot.status.lock().unwrap().clone();
                if let Some(member) = &s.member {
                    s.inflight = member.inflight();
                    s.served = member.served();
                }
                s
            })
            .collect();
        ServiceStatus {
            name: self.ctx.name.clone(),
            state: self.phase.lock().unwrap().clone(),
            desired: self.desired(),
            min: self.ctx.spec.instances.min,
            max: self.ctx.spec.instances.max,
            // This node's own: in a cluster the pool also holds other nodes' members.
            ready: instances.iter().filter(|i| i.state == InstanceState::Ready).count(),
            served: self.ctx.pool.served_total(),
            function: self.ctx.spec.function.clone(),
            autoscale: self.autoscale.lock().unwrap().clone(),
            instances,
            start_time: self.ctx.start_time.snapshot(),
        }
    }
}

async fn supervise(
    shared: Arc<AppContext>,
    ctx: Arc<ServiceCtx>,
    phase: Arc<Mutex<String>>,
    slots: Arc<Mutex<Vec<Slot>>>,
    mut desired: watch::Receiver<u32>,
    stop: CancellationToken,
) {
    // The pool's "no ready instance" answers say why while the service runs none.
    let set_phase = |p: String| {
        // Said to any client: a failed setup's details (paths, output) stay in `ps`.
        let why = match p.as_str() {
            "running" => None,
            "setup" => Some("its setup step is running"),
            failed if failed.starts_with("setup failed") => Some("its setup step failed"),
            other => Some(other),
        };
        ctx.pool.set_why_none(why);
        if p.starts_with("setup failed") {
            // Requests held for an instance (a service at zero) are answered now, and
            // none is held until the service is deployed again. Not on a cluster node:
            // the scheduler may place the service on a node whose setup works.
            if shared.cluster_node.is_none() {
                ctx.pool
                    .start_failed("its setup step failed", strata_bus::AfterFailure::GaveUp);
            }
        } else {
            ctx.pool.starting();
        }
        *phase.lock().unwrap() = p;
    };
    if let Some(spec) = &ctx.spec.setup {
        set_phase("setup".into());
        let env = setup_env(&shared, &ctx);
        let result = tokio::select! {
            r = setup::run(&shared, Setup {
                service: &ctx.name,
                argv: spec.argv(),
                inputs: spec.inputs(),
                workdir: &ctx.workdir,
                env: &env,
            }) => r,
            _ = stop.cancelled() => return,
        };
        if let Err(e) = result {
            set_phase(format!("setup failed: {e:#}; see strata logs {} --setup", ctx.name));
            if !shared
                .events
                .recent()
                .iter()
                .any(|ev| ev.service == ctx.name && ev.kind == EventKind::SetupFailed)
            {
                shared
                    .events
                    .emit(&ctx.name, None, EventKind::SetupFailed, format!("{e:#}"));
            }
            return;
        }
    }
    if !ctx.spec.bindings.is_empty() {
        set_phase(format!("waiting for bindings: {}", ctx.spec.bindings.join(", ")));
        shared.events.emit(
            &ctx.name,
            None,
            EventKind::WaitingForBindings,
            format!("waiting for a ready instance of {}", ctx.spec.bindings.join(", ")),
        );
        for dep in &ctx.spec.bindings {
            let mut ready = shared.bus.pool(dep).watch_ready();
            tokio::select! {
                _ = ready.wait_for(|n| *n > 0) => {}
                _ = stop.cancelled() => return,
            }
        }
    }
    set_phase("running".into());
    loop {
        let want = *desired.borrow_and_update();
        reconcile(&shared, &ctx, &slots, want, &stop);
        tokio::select! {
            changed = desired.changed() => {
                if changed.is_err() {
                    break;
                }
                let now = *desired.borrow();
                shared.events.emit(&ctx.name, None, EventKind::Scaled, format!("scaled to {now} instance(s)"));
            }
            _ = stop.cancelled() => break,
        }
    }
    // Stopping: every slot was given a child token of `stop`; they drain and exit on
    // their own, and the tracker waits for them.
    set_phase("stopping".into());
}

/// Starts or stops slots until `want` are running; the highest-numbered go first.
fn reconcile(
    shared: &Arc<AppContext>,
    ctx: &Arc<ServiceCtx>,
    slots: &Mutex<Vec<Slot>>,
    want: u32,
    stop: &CancellationToken,
) {
    let mut slots = slots.lock().unwrap();
    // Forget slots that were stopped and have finished.
    slots.retain(|s| !(s.stop.is_cancelled() && s.status.lock().unwrap().state == crate::InstanceState::Stopped));
    let running: Vec<usize> = (0..slots.len()).filter(|&i| !slots[i].stop.is_cancelled()).collect();
    let have = running.len() as u32;
    if have > want {
        let mut by_number: Vec<usize> = running;
        by_number.sort_by_key(|&i| std::cmp::Reverse(slots[i].number));
        for &i in by_number.iter().take((have - want) as usize) {
            slots[i].stop.cancel();
        }
    }
    for _ in have..want {
        let used: Vec<u32> = slots.iter().map(|s| s.number).collect();
        let number = (1..).find(|n| !used.contains(n)).unwrap_or(1);
        let id = format!("{}-{number}", ctx.name);
        let status = Arc::new(Mutex::new(InstanceStatus::new(id)));
        let slot_stop = stop.child_token();
        slots.push(Slot {
            number,
            status: status.clone(),
            stop: slot_stop.clone(),
        });
        shared
            .tracker
            .spawn(instance::run_slot(shared.clone(), ctx.clone(), status, slot_stop));
    }
    slots.sort_by_key(|s| s.number);
}

/// The environment of the setup step: the manifest's env with the app and service named.
fn setup_env(shared: &AppContext, ctx: &ServiceCtx) -> BTreeMap<String, String> {
    let mut env = BTreeMap::from([
        ("STRATA_APP".to_string(), shared.app.clone()),
        ("STRATA_SERVICE".to_string(), ctx.name.clone()),
    ]);
    for (k, v) in &ctx.spec.env {
        let v = crate::process::expand(v, &env);
        env.insert(k.clone(), v);
    }
    env
}
