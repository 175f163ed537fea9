//! The install step of a service, run before its first launch and skipped while its
//! inputs (argv, env, workdir and the declared input files) are unchanged.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::events::EventKind;
use crate::process::{self, Launch};
use crate::AppContext;

/// How often a failing step runs before the service is given up on. A step can fail
/// for a reason that passes: pyenv's `pip` shim, for one, fails an install that
/// succeeded when another step's install rehashes its shims at the same moment.
const SETUP_ATTEMPTS: u32 = 3;
/// The pause after the first failure; it grows by as much after each next one.
const SETUP_RETRY_DELAY: Duration = Duration::from_secs(1);

pub(crate) struct Setup<'a> {
    pub service: &'a str,
    pub argv: &'a [String],
    pub inputs: &'a [String],
    pub workdir: &'a Path,
    pub env: &'a BTreeMap<String, String>,
}

/// Runs the step unless its stamp says the same inputs already succeeded.
pub(crate) async fn run(shared: &AppContext, setup: Setup<'_>) -> Result<()> {
    let stamp_path = shared.state_dir.join("setup").join(format!("{}.stamp", setup.service));
    let stamp = fingerprint(&setup, &shared.app_dir)?;
    if std::fs::read_to_string(&stamp_path).ok().as_deref() == Some(stamp.as_str()) {
        shared.events.emit(
            setup.service,
            None,
            EventKind::SetupSkipped,
            "setup skipped: inputs unchanged since the last successful run".into(),
        );
        return Ok(());
    }
    let log_dir = shared.state_dir.join("logs").join(setup.service);
    std::fs::create_dir_all(&log_dir).context("create log dir")?;
    let log = log_dir.join("setup.log");
    let started = Instant::now();
    let mut attempt = 1;
    loop {
        let status = attempt_once(shared, &setup, &log).await?;
        if status.success() {
            break;
        }
        let tail = tail(&log, 10);
        if attempt < SETUP_ATTEMPTS {
            let delay = SETUP_RETRY_DELAY * attempt;
            shared.events.emit(
                setup.service,
                None,
                EventKind::SetupRetrying,
                format!(
                    "setup failed ({}), trying again in {}s (attempt {attempt} of {SETUP_ATTEMPTS}); log {}:\n{tail}",
                    process::describe(&status),
                    delay.as_secs(),
                    log.display()
                ),
            );
            tokio::time::sleep(delay).await;
            attempt += 1;
            continue;
        }
        shared.events.emit(
            setup.service,
            None,
            EventKind::SetupFailed,
            format!(
                "setup failed ({}) {SETUP_ATTEMPTS} times; log {}:\n{tail}",
                process::describe(&status),
                log.display()
            ),
        );
        bail!(
            "setup of {} {} {SETUP_ATTEMPTS} times",
            setup.service,
            process::describe(&status)
        );
    }
    if let Some(dir) = stamp_path.parent() {
        std::fs::create_dir_all(dir).context("create setup stamp dir")?;
    }
    std::fs::write(&stamp_path, &stamp).context("write setup stamp")?;
    shared.events.emit(
        setup.service,
        None,
        EventKind::SetupFinished,
        match attempt {
            1 => format!("setup done in {:.1}s", started.elapsed().as_secs_f64()),
            n => format!("setup done in {:.1}s, on attempt {n}", started.elapsed().as_secs_f64()),
        },
    );
    Ok(())
}

/// One run of the step, its output in `log` (replacing an earlier attempt's).
async fn attempt_once(shared: &AppContext, setup: &Setup<'_>, log: &Path) -> Result<ExitStatus> {
    let _ = std::fs::remove_file(log);
    shared.events.emit(
        setup.service,
        None,
        EventKind::SetupStarted,
        format!("setup: {}", setup.argv.join(" ")),
    );
    let started = Instant::now();
    let (mut proc, _) = process::launch(
        &shared.guard,
        Launch {
            name: &format!("{}.setup", setup.service),
            argv: setup.argv,
            workdir: setup.workdir,
            env: setup.env,
            log,
        },
    )?;
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.tick().await;
    let status = loop {
        tokio::select! {
            status = proc.child.wait() => break status,
            _ = tick.tick() => shared.events.emit(
                setup.service,
                None,
                EventKind::SetupProgress,
                format!("setup still running ({}s){}", started.elapsed().as_secs(), last_line(log)),
            ),
        }
    };
    // Whatever the step left running (a daemon it started) ends with it.
    proc.clear().await;
    status.context("wait for setup")
}

fn fingerprint(setup: &Setup<'_>, app_dir: &Path) -> Result<String> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    setup.argv.hash(&mut hasher);
    setup.env.hash(&mut hasher);
    setup.workdir.hash(&mut hasher);
    for input in setup.inputs {
        let path: PathBuf = setup.workdir.join(input);
        let path = if path.exists() { path } else { app_dir.join(input) };
        let content = std::fs::read(&path).with_context(|| format!("read setup input {}", path.display()))?;
        input.hash(&mut hasher);
        content.hash(&mut hasher);
    }
    Ok(format!("{:016x}\n", hasher.finish()))
}

fn last_line(log: &Path) -> String {
    match tail(log, 1).trim() {
        "" => String::new(),
        line => format!(": {}", line.chars().take(120).collect::<String>()),
    }
}

fn tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
