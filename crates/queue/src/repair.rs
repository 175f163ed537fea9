//! `strata repair` for one queue directory (a queue `NAME` or its dead-letter queue
//! `NAME.dlq`), with no node running on it.
//!
//! The segments are read by the queue's own recovery (`segment::recover`) on a disk that
//! never changes a file (`overlay`), so repair keeps exactly the records a node would
//! serve: every record whose CRC holds, at its offset. `groups.log` is replayed by its own
//! replay, up to its last intact record. If anything is damaged — a corrupt stretch or a
//! torn tail in a segment, a damaged `groups.log`, a `queue.json` that is not valid
//! settings — a clean directory is written beside the damaged one and swapped in:
//!
//! - one segment file per run of consecutive intact offsets (a lost stretch starts a new
//!   segment, so the offsets of every kept record stay what they were: consumers' floors
//!   refer to them), the last one preallocated as the queue's active segment;
//! - `groups.log` as a snapshot of the groups replayed, with the lost offsets done for
//!   every group (they can never be delivered) and floors no higher than the next offset;
//! - `queue.json` as it was, or, when it was garbage, rebuilt from the manifest's
//!   declaration of the queue or else from the files (default settings, the segment size
//!   of the segment files, a message size limit that admits every kept record).
//!
//! The damaged directory is moved, whole, to `DAMAGED/queues/NAME/` (with an atomic
//! exchange where the file system allows, so the queue's name is never missing).

mod overlay;

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;
use strata_manifest::QueueSpec;
use strata_os::disk::{Disk, DiskFile, Open, OsDisk};

use crate::group::Group;
use crate::segment::{self, Slot};
use crate::{compact, groups_log, QueueError, DLQ_SUFFIX};

use overlay::ReadOnlyDisk;

/// How [`repair`] treats one queue.
#[derive(Debug, Clone, Default)]
pub struct RepairOptions {
    /// Report what a repair would do, and change nothing.
    pub dry_run: bool,
    /// The queue's declaration in the manifest, if it has one: what a garbage
    /// `queue.json` is rebuilt from.
    pub declared: Option<QueueSpec>,
    /// Where the damaged directory goes, as `DAMAGED/queues/NAME/`.
    pub damaged_dir: PathBuf,
}

/// A stretch of offsets whose records could not be read: lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LostRange {
    /// Offsets `from..to`.
    pub from: u64,
    pub to: u64,
    /// Bytes of the damaged stretch.
    pub bytes: u64,
    pub segment: String,
    pub position: u64,
    pub reason: String,
}

/// Bytes at the end of the last segment that hold no intact record: a write cut short by
/// a crash (never acknowledged), or damage to the last records; the two cannot be told
/// apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TornTail {
    pub segment: String,
    pub position: u64,
    pub bytes: u64,
    pub reason: String,
}

/// What became of `queue.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Settings {
    /// Valid settings, kept as they are.
    Intact,
    /// No `queue.json` (a node uses the manifest's declaration or the defaults).
    Missing,
    /// A dead-letter queue: it takes its queue's settings.
    DeadLetter,
    /// Not valid settings (`reason`); rebuilt from `from`.
    Rebuilt { reason: String, from: String },
}

/// One consumer group as repair leaves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupKept {
    pub name: String,
    /// Every offset below is done.
    pub floor: u64,
    /// The floor it had, when that was past the last record kept (offsets from the new
    /// next offset on will be handed out again).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lowered_from: Option<u64>,
}

/// What repair did with a queue, or in a dry run would do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Outcome {
    /// Nothing damaged: nothing changed.
    Intact,
    /// Damaged; a dry run changed nothing.
    WouldRepair,
    /// Rewritten; the damaged directory is at `moved_to`.
    Repaired { moved_to: PathBuf },
}

/// What [`repair`] found in one queue directory and what it did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueRepair {
    pub name: String,
    /// Intact records kept, their bytes, and the offsets they lie in (`first..next`).
    pub records: u64,
    pub bytes: u64,
    pub first_offset: u64,
    pub next_offset: u64,
    pub lost: Vec<LostRange>,
    pub torn_tail: Option<TornTail>,
    pub settings: Settings,
    pub groups: Vec<GroupKept>,
    /// Damaged `groups.log` records skipped (the deletes in them are lost: those
    /// messages are delivered again).
    pub groups_log_skipped: usize,
    /// Bytes of a torn `groups.log` tail cut off (never synced, so never acknowledged).
    pub groups_log_torn: u64,
    /// `groups.log` held bytes but no intact record: every group starts again from the
    /// first offset.
    pub groups_reset: bool,
    pub outcome: Outcome,
}

impl QueueRepair {
    /// Offsets lost to damage: acknowledged messages gone.
    pub fn lost_records(&self) -> u64 {
        self.lost.iter().map(|l| l.to - l.from).sum()
    }

    /// Whether anything needed repair.
    pub fn damaged(&self) -> bool {
        self.outcome != Outcome::Intact
    }
}

/// The queue directories under `queues_dir` (queues and dead-letter queues), by name.
pub fn queue_dirs(queues_dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(queues_dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let queue = name.strip_suffix(DLQ_SUFFIX).unwrap_or(&name);
        if strata_manifest::is_queue_name(queue) && entry.file_type()?.is_dir() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Repairs the queue stored in `queues_dir/NAME` (see the module doc). Blocking: reads
/// every segment. An error means nothing was changed, or (after the swap) says which
/// step failed.
pub fn repair(queues_dir: &Path, name: &str, options: &RepairOptions) -> Result<QueueRepair, QueueError> {
    let dir = queues_dir.join(name);
    if !dir.is_dir() {
        return Err(QueueError::UnknownQueue(name.to_string()));
    }
    let io = |what: &str| {
        let what = format!("{what} of queue {name}");
        move |e: io::Error| QueueError::io(&what, e)
    };
    let found = examine(&dir, name, options).map_err(io("read the files"))?;
    let damaged = !found.report.lost.is_empty()
        || found.report.torn_tail.is_some()
        || found.report.groups_log_skipped > 0
        || found.report.groups_log_torn > 0
        || matches!(found.report.settings, Settings::Rebuilt { .. });
    let mut report = found.report.clone();
    report.outcome = match (damaged, options.dry_run) {
        (false, _) => Outcome::Intact,
        (true, true) => Outcome::WouldRepair,
        (true, false) => {
            let moved_to = rewrite(&dir, name, &found, options).map_err(io("rewrite the files"))?;
            Outcome::Repaired { moved_to }
        }
    };
    Ok(report)
}

/// What was read: the report, and what a rewrite needs.
struct Found {
    report: QueueRepair,
    /// The records kept, as runs of consecutive offsets: (segment base, first offset,
    /// slots).
    runs: Vec<(u64, u64, Vec<Slot>)>,
    /// Size of the last segment file: the new active segment gets as much room.
    last_segment_size: u64,
    had_segments: bool,
    groups: BTreeMap<String, Group>,
    /// The `queue.json` to write, if any.
    settings_file: Option<Vec<u8>>,
}

fn examine(dir: &Path, name: &str, options: &RepairOptions) -> io::Result<Found> {
    // No dedupe window to rebuild: `u64::MAX` keeps no dedupe id.
    let recovered = segment::recover(&ReadOnlyDisk, dir, u64::MAX)?;
    let segments = &recovered.segments;
    let next_offset = segments.last().map_or(0, |s| s.next_offset());
    let mut runs: Vec<(u64, u64, Vec<Slot>)> = Vec::new();
    let (mut records, mut bytes, mut largest) = (0u64, 0u64, 0u64);
    for seg in segments {
        let mut run: Option<(u64, u64, Vec<Slot>)> = None;
        for (i, slot) in seg.index.iter().enumerate() {
            if slot.len == 0 {
                runs.extend(run.take());
                continue;
            }
            records += 1;
            bytes += u64::from(slot.len);
            largest = largest.max(u64::from(slot.len));
            run.get_or_insert_with(|| (seg.base, seg.base + i as u64, Vec::new()))
                .2
                .push(*slot);
        }
        runs.extend(run);
    }
    let file_name = |p: &Path| p.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let mut lost = Vec::new();
    for c in &recovered.corrupt {
        let seg = segments.iter().find(|s| s.base <= c.from && c.from < s.next_offset());
        let end = match seg {
            Some(s) if c.to < s.next_offset() => u64::from(s.index[(c.to - s.base) as usize].pos),
            _ => damage_end(&c.segment, c.position)?,
        };
        lost.push(LostRange {
            from: c.from,
            to: c.to,
            bytes: end.saturating_sub(c.position),
            segment: file_name(&c.segment),
            position: c.position,
            reason: c.reason.clone(),
        });
    }
    let torn_tail = match (recovered.truncated, segments.last()) {
        (Some((position, reason)), Some(last)) => {
            let path = segment::segment_path(dir, last.base);
            Some(TornTail {
                segment: file_name(&path),
                position,
                bytes: damage_end(&path, position)?.saturating_sub(position),
                reason: reason.to_string(),
            })
        }
        _ => None,
    };
    let last_segment_size = match segments.last() {
        Some(last) => fs::metadata(segment::segment_path(dir, last.base))?.len(),
        None => 0,
    };
    let first_offset = runs.first().map_or(next_offset, |r| r.1);

    // groups.log, replayed by its own replay, up to its last intact record.
    let log = match fs::read(groups_log::path(dir)) {
        Ok(log) => log,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let replay = groups_log::replay(&log);
    let mut groups = BTreeMap::new();
    let mut kept = Vec::new();
    for (gname, mut r) in replay.groups {
        let floor = Group::from_replay(r.clone(), first_offset).floor;
        let lowered_from = (floor > next_offset).then_some(floor);
        r.floor = r.floor.min(next_offset);
        r.done.retain(|o| *o < next_offset);
        r.deliveries.retain(|o, _| *o < next_offset);
        // Lost offsets are done for every group: they can never be delivered.
        for l in &lost {
            r.done.extend(l.from.max(r.floor)..l.to);
        }
        let g = Group::from_replay(r, first_offset);
        kept.push(GroupKept {
            name: gname.clone(),
            floor: g.floor,
            lowered_from,
        });
        groups.insert(gname, g);
    }

    let (settings, settings_file) = settings(dir, name, options, last_segment_size, largest)?;
    Ok(Found {
        report: QueueRepair {
            name: name.to_string(),
            records,
            bytes,
            first_offset,
            next_offset,
            lost,
            torn_tail,
            settings,
            groups: kept,
            groups_log_skipped: replay.corrupt,
            groups_log_torn: (log.len() - replay.valid_len) as u64,
            groups_reset: !log.is_empty() && replay.valid_len == 0,
            outcome: Outcome::Intact,
        },
        runs,
        last_segment_size,
        had_segments: !segments.is_empty(),
        groups,
        settings_file,
    })
}

/// Where damage that starts at `position` of the segment file at `path` ends: its last
/// byte that is not zero, plus one.
fn damage_end(path: &Path, position: u64) -> io::Result<u64> {
    let data = fs::read(path)?;
    let from = (position as usize).min(data.len());
    Ok(data[from..]
        .iter()
        .rposition(|&b| b != 0)
        .map_or(position, |i| (from + i + 1) as u64))
}

/// What `queue.json` holds, and the file to write in a rewrite.
fn settings(
    dir: &Path,
    name: &str,
    options: &RepairOptions,
    segment_size: u64,
    largest_record: u64,
) -> io::Result<(Settings, Option<Vec<u8>>)> {
    if name.ends_with(DLQ_SUFFIX) {
        return Ok((Settings::DeadLetter, None));
    }
    let text = match fs::read(dir.join("queue.json")) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Settings::Missing, None)),
        Err(e) => return Err(e),
    };
    let reason = match serde_json::from_slice::<QueueSpec>(&text) {
        Ok(spec) => match strata_manifest::check_queue(name, &spec) {
            Ok(()) => return Ok((Settings::Intact, Some(text))),
            Err(e) => e.to_string(),
        },
        Err(e) => format!("not valid settings ({e})"),
    };
    let (spec, from) = match &options.declared {
        Some(spec) => (spec.clone(), "the manifest's declaration".to_string()),
        None => {
            let mut spec = QueueSpec::default();
            if segment_size > 0 {
                spec.segment_bytes = segment_size.clamp(64 << 10, 1 << 30);
            }
            spec.max_message_bytes = spec
                .max_message_bytes
                .max(largest_record)
                .min(spec.segment_bytes - 4096);
            (
                spec,
                "the files (default settings, with the segment size of the segment files)".to_string(),
            )
        }
    };
    let text = serde_json::to_vec_pretty(&spec).expect("a spec serializes");
    Ok((Settings::Rebuilt { reason, from }, Some(text)))
}

/// Writes the clean directory beside the damaged one, swaps them, and moves the damaged
/// one to `DAMAGED/queues/NAME`; returns that path.
fn rewrite(dir: &Path, name: &str, found: &Found, options: &RepairOptions) -> io::Result<PathBuf> {
    let disk = OsDisk;
    let parked = options.damaged_dir.join("queues");
    fs::create_dir_all(&parked)?;
    let stage = parked.join(format!("{name}.new"));
    let moved_to = parked.join(name);
    if stage.exists() || moved_to.exists() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} is in use: repair into a new damaged dir", parked.display()),
        ));
    }
    fs::create_dir(&stage)?;
    let report = &found.report;
    let mut source: Option<(u64, Vec<u8>)> = None;
    for (i, (seg_base, first, slots)) in found.runs.iter().enumerate() {
        if source.as_ref().is_none_or(|(b, _)| b != seg_base) {
            source = Some((*seg_base, fs::read(segment::segment_path(dir, *seg_base))?));
        }
        let data = &source.as_ref().expect("read above").1;
        let mut content = Vec::with_capacity(slots.iter().map(|s| s.len as usize).sum());
        for s in slots {
            content.extend_from_slice(&data[s.pos as usize..(s.pos + s.len) as usize]);
        }
        // The active segment (where publishing goes on) gets the room the last one had.
        let active = i + 1 == found.runs.len() && first + slots.len() as u64 == report.next_offset;
        let room = if active { found.last_segment_size } else { 0 };
        write_segment(&stage, *first, &content, room)?;
    }
    let ends_at_next = found
        .runs
        .last()
        .is_some_and(|(_, first, slots)| first + slots.len() as u64 == report.next_offset);
    if found.had_segments && !ends_at_next {
        // The records at the end were lost: the next publish still gets the next offset.
        write_segment(&stage, report.next_offset, &[], found.last_segment_size)?;
    }
    let log = disk.open(&groups_log::path(&stage), Open::Truncate)?;
    log.write_all_at(&compact::snapshot(&found.groups), 0)?;
    log.sync_data()?;
    if let Some(text) = &found.settings_file {
        let file = disk.open(&stage.join("queue.json"), Open::Truncate)?;
        file.write_all_at(text, 0)?;
        file.sync_data()?;
    }
    strata_os::fs::sync_dir(&stage)?;
    swap(&stage, dir)?;
    // `stage` now holds the damaged files.
    fs::rename(&stage, &moved_to)?;
    for d in [dir.parent().unwrap_or(dir), parked.as_path()] {
        strata_os::fs::sync_dir(d)?;
    }
    Ok(moved_to)
}

/// Writes segment `base` in `dir`: `content`, then zeros up to `size` (preallocated, as
/// the queue's segments are: appends then change no file metadata), synced.
fn write_segment(dir: &Path, base: u64, content: &[u8], size: u64) -> io::Result<()> {
    let file = OsDisk.open(&segment::segment_path(dir, base), Open::Truncate)?;
    file.write_all_at(content, 0)?;
    let zeros = vec![0u8; 1 << 20];
    let mut at = content.len() as u64;
    while at < size {
        let n = (size - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    file.sync_data()
}

/// Exchanges two directories atomically (`renameat2` with `RENAME_EXCHANGE`), so that the
/// queue's name always names a whole directory. Where the file system cannot, three
/// renames do it, and between the last two the queue's name is missing.
fn swap(stage: &Path, live: &Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let a = CString::new(stage.as_os_str().as_bytes())?;
    let b = CString::new(live.as_os_str().as_bytes())?;
    // SAFETY: two NUL-terminated paths that live for the call; no other memory is passed.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if !matches!(
        e.raw_os_error(),
        Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP)
    ) {
        return Err(e);
    }
    let aside = stage.with_extension("swap");
    fs::rename(stage, &aside)?;
    fs::rename(live, stage)?;
    fs::rename(&aside, live)
}

impl fmt::Display for QueueRepair {
    /// The report for a person: a line for the queue, then one per finding.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.outcome {
            Outcome::Intact => String::new(),
            Outcome::WouldRepair => "damaged (dry run: nothing changed)".to_string(),
            Outcome::Repaired { moved_to } => format!("repaired; the damaged files are in {}", moved_to.display()),
        };
        let records = format!(
            "{} ({} bytes), offsets {}..{}",
            plural(self.records, "record"),
            self.bytes,
            self.first_offset,
            self.next_offset
        );
        if !self.damaged() {
            return writeln!(f, "queue {}: intact, nothing to repair ({records})", self.name);
        }
        writeln!(f, "queue {}: {state}", self.name)?;
        writeln!(f, "  kept {records}")?;
        for l in &self.lost {
            writeln!(
                f,
                "  LOST offsets {}..{} ({}, {} bytes at byte {} of {}: {})",
                l.from,
                l.to,
                plural(l.to - l.from, "record"),
                l.bytes,
                l.position,
                l.segment,
                l.reason
            )?;
        }
        if let Some(t) = &self.torn_tail {
            writeln!(
                f,
                "  a torn tail of {} bytes at byte {} of {} ({}) is dropped: a write cut short by a crash \
                 (never acknowledged), or damage to the last records; offsets from {} on are handed out again",
                t.bytes, t.position, t.segment, t.reason, self.next_offset
            )?;
        }
        match &self.settings {
            Settings::Rebuilt { reason, from } => writeln!(f, "  queue.json: {reason}; rebuilt from {from}")?,
            Settings::Missing => writeln!(
                f,
                "  queue.json: none (the manifest's declaration or the defaults apply)"
            )?,
            Settings::Intact | Settings::DeadLetter => {}
        }
        if self.groups_reset {
            writeln!(
                f,
                "  groups.log: no intact record; every group starts again from offset {} (messages are delivered again)",
                self.first_offset
            )?;
        }
        if self.groups_log_skipped > 0 {
            writeln!(
                f,
                "  groups.log: {} skipped; the deletes in them are lost, so those messages are delivered again",
                plural(self.groups_log_skipped as u64, "damaged record")
            )?;
        }
        if self.groups_log_torn > 0 && !self.groups_reset {
            writeln!(
                f,
                "  groups.log: a torn tail of {} bytes cut (never synced: deletes and delivery counts not acknowledged)",
                self.groups_log_torn
            )?;
        }
        if !self.groups.is_empty() {
            let groups: Vec<String> = self
                .groups
                .iter()
                .map(|g| match g.lowered_from {
                    Some(was) => format!("{} at {} (was {was}, past the records kept)", g.name, g.floor),
                    None => format!("{} at {}", g.name, g.floor),
                })
                .collect();
            writeln!(f, "  groups kept: {}", groups.join(", "))?;
        }
        Ok(())
    }
}

/// "1 record", "3 records".
fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}
