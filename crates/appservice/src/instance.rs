//! The life of one instance slot: place it, launch it, wait until it is ready, join its
//! pool, watch it, and on exit leave the pool and launch it again after a back-off.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use strata_bus::{Member, Pool};
use strata_manifest::{Driver, FileSpec, Network, ServiceSpec};
use tokio_util::sync::CancellationToken;

use crate::capacity::Demand;
use crate::driver::{Ended, Launched};
use crate::events::EventKind;
use crate::oci::{self, ContainerLaunch};
use crate::probe;
use crate::process::{self, Launch};
use crate::status::{InstanceState, InstanceStatus};
use crate::AppContext;

mod launch;
mod not_ready;

use launch::launch;
use not_ready::not_ready_why;

/// A run this long resets the back-off: the instance is no longer crash-looping.
const STABLE: Duration = Duration::from_secs(10);
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Exits in a row without a stable run before the slot is called a crash loop.
const CRASH_LOOP_AFTER: u32 = 3;
const READY_POLL: Duration = Duration::from_millis(20);
/// For the first second of a start the check is repeated more often: a cold start from
/// zero waits on it (a refused connect costs microseconds).
const READY_POLL_EARLY: Duration = Duration::from_millis(1);
const EARLY: Duration = Duration::from_secs(1);
/// The longest spacing of readiness checks a program answers with a status that is not
/// 2xx yet (one warming up is found ready at most this late).
const READY_POLL_ANSWERED_MAX: Duration = Duration::from_millis(500);
/// A starting instance not ready after this long is reported (event and `ps` detail)
/// with what its check found, for example that nothing listens on its `$PORT`; it is
/// still waited for up to `health.start_timeout_ms`, since slow starters exist (with a
/// start timeout this short or shorter, the timeout's own message says it). Kept beside
/// the health settings' defaults used in [`supervise`].
const NOT_READY_REPORT: Duration = Duration::from_secs(5);
/// Lines of an instance's output shown when it fails to start or exits.
const OUTPUT_LINES: usize = 20;

/// What every instance of one service shares.
pub(crate) struct ServiceCtx {
    pub name: String,
    pub spec: ServiceSpec,
    pub workdir: PathBuf,
    pub demand: Demand,
    pub pool: Arc<Pool>,
    /// From each launch to its first passed readiness check (a cold start's cost).
    pub start_time: strata_os::histogram::Histogram,
    /// Instances launched and not ready yet ([`Starting`]).
    pub starting: AtomicUsize,
}

/// Counts a launched instance in [`ServiceCtx::starting`] until it is ready
/// ([`Starting::ready`]) or its run ends.
struct Starting<'a> {
    count: &'a AtomicUsize,
    counted: AtomicBool,
}

impl<'a> Starting<'a> {
    fn new(count: &'a AtomicUsize) -> Starting<'a> {
        count.fetch_add(1, Ordering::SeqCst);
        Starting {
            count,
            counted: AtomicBool::new(true),
        }
    }

    fn ready(&self) {
        if self.counted.swap(false, Ordering::SeqCst) {
            self.count.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for Starting<'_> {
    fn drop(&mut self) {
        self.ready();
    }
}

/// How one run of an instance ended.
enum RunEnd {
    /// Asked to stop; stopped.
    Stopped,
    /// Exited, failed its checks, or never became ready.
    Failed {
        reason: String,
        /// The kernel killed it for memory over its limit.
        oom: bool,
        ran: Duration,
        /// It had passed its readiness check (and joined its pool) in this run.
        was_ready: bool,
        /// The last lines it printed, when it exited or never became ready (empty when
        /// it printed nothing, or was killed for failing its liveness checks).
        output: Vec<String>,
    },
}

pub(crate) async fn run_slot(
    shared: Arc<AppContext>,
    ctx: Arc<ServiceCtx>,
    status: Arc<Mutex<InstanceStatus>>,
    stop: CancellationToken,
) {
    let id = status.lock().unwrap().id.clone();
    let mut failures_in_row: u32 = 0;
    let mut launches: u64 = 0;
    // The output last shown in an event: a crash loop printing the same is not repeated.
    let mut shown_output: Vec<String> = Vec::new();
    loop {
        if stop.is_cancelled() {
            break;
        }
        // Its backoff is over: requests are held again, for this launch (or while it
        // waits for room on the node).
        ctx.pool.backoff_over();
        if !wait_for_capacity(&shared, &ctx, &id, &status, &stop).await {
            break;
        }
        launches += 1;
        let end = run_once(&shared, &ctx, &id, launches, &status, &stop).await;
        shared.capacity.release(ctx.demand);
        let (reason, oom, ran, was_ready, output) = match end {
            RunEnd::Stopped => break,
            RunEnd::Failed {
                reason,
                oom,
                ran,
                was_ready,
                output,
            } => (reason, oom, ran, was_ready, output),
        };
        if ran >= STABLE {
            failures_in_row = 0;
        }
        failures_in_row += 1;
        let delay = backoff(failures_in_row);
        let crash_loop = failures_in_row >= CRASH_LOOP_AFTER;
        {
            let mut s = status.lock().unwrap();
            s.restarts += 1;
            s.pid = None;
            s.port = None;
            s.address = None;
            s.forget_member();
            s.last_exit = Some(reason.clone());
            if oom {
                s.oom_kills += 1;
            }
            s.state = if crash_loop {
                InstanceState::CrashLoop
            } else {
                InstanceState::Backoff
            };
            let said = match output.iter().rev().find(|l| !l.trim().is_empty()) {
                Some(line) => format!(", its last line: {}", line.trim()),
                None => String::new(),
            };
            s.detail = Some(format!(
                "{reason}{said}; {} exit(s) in a row; next launch in {:.1}s",
                failures_in_row,
                delay.as_secs_f64()
            ));
            s.last_output = output.clone();
        }
        let none_starting = ctx.starting.load(Ordering::SeqCst) == 0;
        if !was_ready && none_starting {
            // Told to the other nodes in the heartbeat: only when no other instance of
            // the service is starting here, which they cannot tell apart from this one
            // launching again.
            ctx.pool.launch_failed(delay);
        }
        if !was_ready && shared.cluster_node.is_none() && none_starting {
            // Requests held for an instance (a service at zero) are answered now, not at
            // their deadline (the next launch may fail as well; one that does not serves
            // those that come after), unless another instance is starting for them. The
            // client is told no more than that (its output stays in `ps`). Not on a
            // cluster node: the scheduler may be starting one on another node (the
            // node holding requests answers them from the heartbeats: `node::cluster::zero`).
            // Until it launches again (after `delay`), those that come are answered at
            // once too: nothing could serve them before then.
            let times = match failures_in_row {
                1 => String::new(),
                n => format!(" {n} times in a row"),
            };
            ctx.pool.start_failed(
                &format!("its instance {id} failed to start{times}; strata ps says why"),
                strata_bus::AfterFailure::Backoff(delay),
            );
        }
        if oom {
            shared.events.emit(&ctx.name, Some(&id), EventKind::Oom, reason.clone());
        }
        let (kind, what) = if crash_loop {
            (EventKind::CrashLoop, "crash loop")
        } else {
            (EventKind::Exited, "exited")
        };
        shared.events.emit(
            &ctx.name,
            Some(&id),
            kind,
            match ran.is_zero() {
                // It never started: no time to give.
                true => format!("{what}: {reason}; launching again in {:.1}s", delay.as_secs_f64()),
                false => format!(
                    "{what}: {reason} after {:.1}s; launching again in {:.1}s",
                    ran.as_secs_f64(),
                    delay.as_secs_f64()
                ),
            },
        );
        if !output.is_empty() && (failures_in_row == 1 || output != shown_output) {
            let log = shared.log_path(&ctx.name, &id);
            let shown = log.strip_prefix(&shared.app_dir).unwrap_or(&log);
            shared.events.emit(
                &ctx.name,
                Some(&id),
                EventKind::Output,
                format!(
                    "its last {} line(s) of output ({}):\n{}",
                    output.len(),
                    shown.display(),
                    output.join("\n")
                ),
            );
            shown_output = output;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.cancelled() => break,
        }
    }
    // Stopped while it waited out a backoff (scaled to zero): the next request is held
    // for the launch it asks for.
    ctx.pool.backoff_over();
    let mut s = status.lock().unwrap();
    s.state = InstanceState::Stopped;
    s.pid = None;
    s.port = None;
    s.address = None;
    s.forget_member();
}

fn backoff(failures_in_row: u32) -> Duration {
    let factor = 1u32 << failures_in_row.saturating_sub(1).min(16);
    (BACKOFF_FIRST * factor).min(BACKOFF_MAX)
}

/// Waits until the instance's resources fit on the node; false when asked to stop first.
async fn wait_for_capacity(
    shared: &AppContext,
    ctx: &ServiceCtx,
    id: &str,
    status: &Mutex<InstanceStatus>,
    stop: &CancellationToken,
) -> bool {
    let mut reported = false;
    loop {
        let freed = shared.capacity.wait_freed();
        match shared.capacity.reserve(ctx.demand) {
            Ok(()) => return true,
            Err(why) => {
                if !reported {
                    reported = true;
                    let mut s = status.lock().unwrap();
                    s.state = InstanceState::Unschedulable;
                    s.detail = Some(format!("not launched: {why}"));
                    drop(s);
                    shared.events.emit(
                        &ctx.name,
                        Some(id),
                        EventKind::Unschedulable,
                        format!("not launched: {why}"),
                    );
                }
            }
        }
        tokio::select! {
            _ = freed => {}
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = stop.cancelled() => return false,
        }
    }
}

async fn run_once(
    shared: &Arc<AppContext>,
    ctx: &ServiceCtx,
    id: &str,
    launch_no: u64,
    status: &Mutex<InstanceStatus>,
    stop: &CancellationToken,
) -> RunEnd {
    let started = Instant::now();
    // Unique per incarnation of the node (its pid) and per launch: a new instance is
    // never handed a predecessor's files, even after a kill -9 of the node.
    let scratch = shared
        .state_dir
        .join("run")
        .join(std::process::id().to_string())
        .join(format!("{id}.{launch_no}"));
    let launched = launch(shared, ctx, id, launch_no, &scratch).await;
    // `_port`: the instance's port stays claimed until this launch has ended.
    let (mut proc, addr, log, _port) = match launched {
        Ok(ok) => ok,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&scratch);
            return RunEnd::Failed {
                reason: format!("could not launch: {e:#}"),
                oom: false,
                // Nothing ran.
                ran: Duration::ZERO,
                was_ready: false,
                output: Vec::new(),
            };
        }
    };
    let runtime = proc.runtime();
    let starting = Starting::new(&ctx.starting);
    {
        let mut s = status.lock().unwrap();
        s.state = InstanceState::Starting;
        s.pid = Some(proc.pid());
        s.port = Some(addr.port());
        s.address = (!addr.ip().is_loopback()).then_some(addr.ip());
        s.detail = None;
        s.runtime = runtime.clone();
        s.domain = ctx.spec.placement.spread.as_ref().map(|label| {
            shared
                .capacity
                .node
                .labels
                .get(label)
                .cloned()
                .unwrap_or_else(|| "unlabelled".into())
        });
    }
    let container = match &runtime {
        Some(runtime) => format!(" in a container ({runtime})"),
        None => String::new(),
    };
    shared.events.emit(
        &ctx.name,
        Some(id),
        EventKind::Launched,
        match addr.ip().is_loopback() {
            true => format!("launched pid {} on port {}{container}", proc.pid(), addr.port()),
            false => format!("launched pid {} at {addr}{container}", proc.pid()),
        },
    );
    let end = supervise(shared, ctx, id, &mut proc, addr, status, stop, started, &starting).await;
    drop(starting);
    if let Supervised::Stop(Some(member)) = &end {
        member.stopping();
    }
    ctx.pool.leave(id);
    // A stopping member stays in the status while it drains: ps shows what it still
    // carries (open streams, WebSockets).
    if !matches!(end, Supervised::Stop(_)) {
        status.lock().unwrap().forget_member();
    }
    let grace = Duration::from_millis(ctx.spec.stop_grace_ms);
    let end = match end {
        Supervised::Stop(member) => {
            status.lock().unwrap().state = InstanceState::Stopping;
            if let Some(member) = member {
                drain(&member, grace).await;
            }
            let how = proc.stop(grace).await;
            status.lock().unwrap().forget_member();
            shared.events.emit(
                &ctx.name,
                Some(id),
                EventKind::Stopped,
                format!("stopped ({})", how.unwrap_or_else(|| "gone".into())),
            );
            RunEnd::Stopped
        }
        Supervised::Exited(Ended { reason, oom }, was_ready) => {
            // The leader is gone; anything it left (in its group or not) goes too.
            proc.clear().await;
            RunEnd::Failed {
                reason,
                oom,
                ran: started.elapsed(),
                was_ready,
                output: log.last_lines(OUTPUT_LINES).await,
            }
        }
        Supervised::NeverReady(reason) => {
            proc.kill_and_clear().await;
            RunEnd::Failed {
                reason,
                oom: false,
                ran: started.elapsed(),
                was_ready: false,
                output: log.last_lines(OUTPUT_LINES).await,
            }
        }
        Supervised::Kill(reason) => {
            proc.kill_and_clear().await;
            RunEnd::Failed {
                reason,
                oom: false,
                ran: started.elapsed(),
                was_ready: true,
                output: Vec::new(),
            }
        }
    };
    let _ = std::fs::remove_dir_all(&scratch);
    end
}

enum Supervised {
    /// Asked to stop; the member (if it was ready) is to be drained first.
    Stop(Option<Arc<Member>>),
    /// The process exited on its own (after it was ready: true).
    Exited(Ended, bool),
    /// The process is to be killed: it was not ready within the start timeout.
    NeverReady(String),
    /// The process is to be killed: it failed its liveness checks.
    Kill(String),
}

#[allow(clippy::too_many_arguments)]
async fn supervise(
    shared: &AppContext,
    ctx: &ServiceCtx,
    id: &str,
    proc: &mut Launched,
    addr: SocketAddr,
    status: &Mutex<InstanceStatus>,
    stop: &CancellationToken,
    started: Instant,
    starting: &Starting<'_>,
) -> Supervised {
    let health = ctx.spec.health.as_ref();
    let path = probe::Check::of(health);
    let check_timeout = Duration::from_millis(health.map_or(1_000, |h| h.timeout_ms));
    let start_timeout = Duration::from_millis(health.map_or(60_000, |h| h.start_timeout_ms));
    let interval = Duration::from_millis(health.map_or(1_000, |h| h.interval_ms));
    let threshold = health.map_or(3, |h| h.failure_threshold);

    // Readiness: poll until the check passes; say why it does not after a while.
    let mut reported = false;
    // Once the program answers the check (a status, not 2xx yet), each check is a
    // request it serves and most likely logs: they come at doubling spacing from
    // READY_POLL up to READY_POLL_ANSWERED_MAX (or `health.interval_ms` if shorter), not
    // every 1-20 ms (a framework's request log filled with checks, pushing out what the
    // program said of why it is not ready).
    let mut answered_poll: Option<Duration> = None;
    loop {
        tokio::select! {
            exit = proc.wait() => return Supervised::Exited(exit_reason(exit), false),
            _ = stop.cancelled() => return Supervised::Stop(None),
            outcome = probe::run(addr, path, check_timeout, shared.grpc_probe.as_ref()) => {
                if outcome.passed() {
                    break;
                }
                let waited = started.elapsed();
                if waited > start_timeout {
                    let why = not_ready_why(&outcome, addr, path, check_timeout, proc.group()).await;
                    return Supervised::NeverReady(format!(
                        "not ready after {}s (health.start_timeout_ms): {why}",
                        start_timeout.as_secs_f64()
                    ));
                }
                if !reported && NOT_READY_REPORT < start_timeout && waited >= NOT_READY_REPORT {
                    reported = true;
                    let why = not_ready_why(&outcome, addr, path, check_timeout, proc.group()).await;
                    let wait = format!("waiting up to {}s in all (health.start_timeout_ms)", start_timeout.as_secs_f64());
                    status.lock().unwrap().detail = Some(format!("{why}; {wait}"));
                    shared.events.emit(
                        &ctx.name,
                        Some(id),
                        EventKind::NotReady,
                        format!("not ready after {:.0}s: {why}; still {wait}", waited.as_secs_f64()),
                    );
                }
                let pause = if matches!(outcome, probe::Outcome::Status(_) | probe::Outcome::Grpc(_)) {
                    let next = answered_poll.map_or(READY_POLL, |p| (p * 2).min(READY_POLL_ANSWERED_MAX.min(interval).max(READY_POLL)));
                    answered_poll = Some(next);
                    next
                } else {
                    answered_poll = None;
                    if started.elapsed() < EARLY { READY_POLL_EARLY } else { READY_POLL }
                };
                tokio::select! {
                    exit = proc.wait() => return Supervised::Exited(exit_reason(exit), false),
                    _ = stop.cancelled() => return Supervised::Stop(None),
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
    let member = Member::new(id, addr);
    starting.ready();
    {
        let mut s = status.lock().unwrap();
        s.state = InstanceState::Ready;
        s.member = Some(member.clone());
        s.detail = None;
    }
    let took = started.elapsed();
    ctx.start_time.record(took);
    shared.events.emit(
        &ctx.name,
        Some(id),
        EventKind::Ready,
        format!("ready in {:.0} ms", took.as_secs_f64() * 1000.0),
    );
    ctx.pool.join(member.clone());

    // Liveness: the process must stay up and keep passing its check.
    let mut failed_checks = 0;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            exit = proc.wait() => return Supervised::Exited(exit_reason(exit), true),
            _ = stop.cancelled() => return Supervised::Stop(Some(member)),
            _ = tick.tick() => {
                let outcome = probe::run(addr, path, check_timeout, shared.grpc_probe.as_ref()).await;
                if outcome.passed() {
                    failed_checks = 0;
                } else {
                    failed_checks += 1;
                    if failed_checks >= threshold {
                        let reason = format!(
                            "failed {failed_checks} health checks in a row ({}; the last: {outcome})",
                            path.describe(addr.port())
                        );
                        shared.events.emit(&ctx.name, Some(id), EventKind::Unhealthy, reason.clone());
                        return Supervised::Kill(reason);
                    }
                }
            }
        }
    }
}

fn exit_reason(exit: std::io::Result<Ended>) -> Ended {
    exit.unwrap_or_else(|e| Ended {
        reason: format!("lost track of the process: {e}"),
        oom: false,
    })
}

/// Waits for the requests in flight on a member that left its pool, and for what holds
/// it (in a cluster: other nodes' requests and their hearing that it left), at most
/// `grace`.
async fn drain(member: &Member, grace: Duration) {
    let until = Instant::now() + grace;
    while (member.inflight() > 0 || member.held() > 0) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(4), Duration::from_millis(800));
        assert_eq!(backoff(30), BACKOFF_MAX);
    }
}
