//! `strata repair`: salvages what can be read of damaged queues and a damaged store, with
//! no node running on them (docs/repair.md). The work is the domain crates'
//! (`strata_queue::repair`, `strata_store::repair`); this finds the state directory,
//! refuses while a node runs there, picks what to repair, reads the manifest's queue
//! declarations, names the directory the damaged files go to, and prints the report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use strata_manifest::QueueSpec;
use strata_node::nodefile;
use strata_queue::repair::{self as queue_repair, QueueRepair};
use strata_store::repair::{self as store_repair, StoreRepair};

use crate::out;

/// What `strata repair` was asked.
#[derive(Debug, Clone)]
pub struct RepairArgs {
    /// The state directory (`APP/.strata`).
    pub state: PathBuf,
    /// Only these queues (a queue's dead-letter queue comes with it).
    pub queues: Vec<String>,
    /// Only the store (with `queues`: those and the store).
    pub store: bool,
    pub dry_run: bool,
    pub json: bool,
}

/// The whole report, as `--json` prints it.
#[derive(Debug, Serialize)]
struct Report {
    dry_run: bool,
    /// Where damaged files went (nothing is there when nothing was repaired).
    damaged_dir: PathBuf,
    queues: Vec<QueueRepair>,
    #[serde(skip_serializing_if = "Option::is_none")]
    store: Option<StoreRepair>,
    /// Parts that could not be repaired, with why.
    failed: Vec<String>,
    /// Whether acknowledged data was (or, in a dry run, would be) lost.
    lost: bool,
}

/// Runs `strata repair`. Blocking: reads every file it repairs. Fails (exit status 1)
/// when a node runs on the state directory, when a part could not be repaired, and when
/// something was lost.
pub fn run(args: RepairArgs) -> Result<()> {
    let state = &args.state;
    if !state.join("queues").is_dir() && !state.join("store").is_dir() {
        bail!(
            "{} holds no queues and no store: nothing to repair (run it in the app's directory, \
             or pass -C APP_DIR or --state APP_DIR/.strata)",
            state.display()
        );
    }
    refuse_if_running(state)?;
    quiet_redb_panics();
    let declared = declared_queues(state);
    let damaged_dir = damaged_dir(state);
    let (queues, repair_store) = targets(state, &args)?;

    let mut report = Report {
        dry_run: args.dry_run,
        damaged_dir: damaged_dir.clone(),
        queues: Vec::new(),
        store: None,
        failed: Vec::new(),
        lost: false,
    };
    for name in &queues {
        let base = name.strip_suffix(strata_queue::DLQ_SUFFIX).unwrap_or(name);
        let options = queue_repair::RepairOptions {
            dry_run: args.dry_run,
            declared: declared.get(base).cloned(),
            damaged_dir: damaged_dir.clone(),
        };
        match queue_repair::repair(&state.join("queues"), name, &options) {
            Ok(r) => report.queues.push(r),
            Err(e) => report.failed.push(format!("queue {name}: {e}")),
        }
    }
    if repair_store {
        let options = store_repair::RepairOptions {
            dry_run: args.dry_run,
            damaged_dir: damaged_dir.clone(),
        };
        match store_repair::repair(&state.join("store"), &options) {
            Ok(r) => report.store = Some(r),
            Err(e) => report.failed.push(format!("store: {e}")),
        }
    }
    report.lost = report.queues.iter().any(|q| q.lost_records() > 0)
        || report.store.as_ref().is_some_and(StoreRepair::lost_something);

    if args.json {
        out::line(serde_json::to_string_pretty(&report)?)?;
    } else {
        out::stdout(|out| print(out, &report))?;
    }
    if !report.failed.is_empty() {
        bail!("could not repair: {}", report.failed.join("; "));
    }
    if report.lost {
        let what = if args.dry_run { "would lose" } else { "lost" };
        bail!("repair {what} acknowledged data (the lines marked LOST above)");
    }
    Ok(())
}

fn print(out: &mut dyn std::io::Write, report: &Report) -> std::io::Result<()> {
    for q in &report.queues {
        write!(out, "{q}")?;
    }
    if let Some(s) = &report.store {
        write!(out, "{s}")?;
    }
    for f in &report.failed {
        writeln!(out, "FAILED {f}")?;
    }
    let damaged = report.queues.iter().filter(|q| q.damaged()).count()
        + report.store.as_ref().map_or(0, |s| usize::from(s.damaged()));
    let checked = report.queues.len() + usize::from(report.store.is_some());
    if damaged == 0 {
        writeln!(out, "repair: {checked} checked, nothing damaged")
    } else if report.dry_run {
        writeln!(
            out,
            "repair: {checked} checked, {damaged} damaged; run without --dry-run to repair \
             (the damaged files would go to {})",
            report.damaged_dir.display()
        )
    } else {
        writeln!(
            out,
            "repair: {checked} checked, {damaged} repaired; the damaged files are in {}",
            report.damaged_dir.display()
        )
    }
}

/// Refuses while a node runs on `state`: its node file names a live process, or the
/// user's registry lists a node of that app directory. (The store is also locked by a
/// running node, which the store's repair checks.)
fn refuse_if_running(state: &Path) -> Result<()> {
    if let Ok(node) = nodefile::read(state) {
        bail!(
            "a strata node runs on {} (app {}, pid {}): stop it with `strata down` first; \
             repair needs the files to itself",
            state.display(),
            node.app,
            node.pid
        );
    }
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let here = canonical(state);
    if let Some(node) = nodefile::registered()
        .into_iter()
        .find(|n| canonical(&n.dir.join(".strata")) == here)
    {
        bail!(
            "a strata node runs on {} (app {}, pid {}): stop it with `strata down` first; \
             repair needs the files to itself",
            state.display(),
            node.app,
            node.pid
        );
    }
    Ok(())
}

/// The queues declared in the app's manifest (`strata.json` beside the state dir), which
/// a garbage `queue.json` is rebuilt from. A manifest that cannot be read is said, and
/// the files are used instead.
fn declared_queues(state: &Path) -> BTreeMap<String, QueueSpec> {
    let Some(file) = state.parent().map(|app| app.join("strata.json")) else {
        return BTreeMap::new();
    };
    if !file.exists() {
        return BTreeMap::new();
    }
    match strata_manifest::load_all(&file) {
        Ok(manifest) => manifest.queues,
        Err(problems) => {
            eprintln!(
                "strata: {} is not valid ({}); a garbage queue.json is rebuilt from the queue's files instead",
                file.display(),
                problems.first().map(ToString::to_string).unwrap_or_default()
            );
            BTreeMap::new()
        }
    }
}

/// `STATE/damaged/TIME` (UTC, with `-2`, `-3`... when taken), where this repair moves what
/// it replaces. Created by the parts that move something.
fn damaged_dir(state: &Path) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let base = state.join("damaged").join(utc_stamp(secs));
    let mut dir = base.clone();
    let mut n = 1;
    while dir.exists() {
        n += 1;
        dir = PathBuf::from(format!("{}-{n}", base.display()));
    }
    dir
}

/// `YYYYMMDDTHHMMSSZ` of a Unix time.
fn utc_stamp(secs: u64) -> String {
    // Days to a civil date (Howard Hinnant's algorithm).
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let t = secs % 86_400;
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

/// The queue directories and whether the store is repaired: all of them unless some are
/// named. A named queue brings its dead-letter queue.
fn targets(state: &Path, args: &RepairArgs) -> Result<(Vec<String>, bool)> {
    let queues_dir = state.join("queues");
    let stored = if queues_dir.is_dir() {
        queue_repair::queue_dirs(&queues_dir).with_context(|| format!("list {}", queues_dir.display()))?
    } else {
        Vec::new()
    };
    if args.queues.is_empty() && !args.store {
        return Ok((stored, state.join("store").is_dir()));
    }
    let mut picked = Vec::new();
    for name in &args.queues {
        if !stored.contains(name) {
            bail!(
                "no queue {name:?} in {} (queues there: {})",
                queues_dir.display(),
                if stored.is_empty() {
                    "none".to_string()
                } else {
                    stored.join(", ")
                }
            );
        }
        picked.push(name.clone());
        let dlq = format!("{name}{}", strata_queue::DLQ_SUFFIX);
        if stored.contains(&dlq) && !args.queues.contains(&dlq) {
            picked.push(dlq);
        }
    }
    if args.store && !state.join("store").is_dir() {
        bail!("no store in {}", state.display());
    }
    Ok((picked, args.store))
}

/// redb has been seen to panic on a damaged file; the store's repair catches that and
/// reports it, so the panic message itself would only be noise on stderr.
fn quiet_redb_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.location().is_some_and(|l| l.file().contains("/redb-")) {
            return;
        }
        default(info);
    }));
}

#[cfg(test)]
mod tests {
    use super::utc_stamp;

    #[test]
    fn stamps_are_utc_dates_and_times() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(951_782_400 + 3661), "20000229T010101Z");
        assert_eq!(utc_stamp(1_798_761_599), "20261231T235959Z");
    }
}
