//! Deleting a queue ([`Queues::delete`]): the queue and its dead-letter queue leave the
//! registry (later calls get [`QueueError::UnknownQueue`], waiting fetches end with it),
//! their writers stop, then their directories are renamed to tombstones
//! (`.deleted-NAME-TOKEN`, never a queue name) and the parent directory is synced: from
//! there on the delete survives a crash. The tombstones are then removed and the parent
//! synced again; a tombstone a crash left behind is removed at the next open.
//!
//! The manifest owns the queues it declares: they are created at every start, their
//! consumers (push delivery, autoscaling on backlog, function triggers) are wired to
//! them, so deleting one through the API is refused ([`QueueError::Declared`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use strata_os::disk::Disk;

use crate::{QueueError, Queues, DLQ_SUFFIX};

/// Names of tombstones start so: no queue name starts with a dot.
const TOMBSTONE: &str = ".deleted-";

/// Makes tombstone names unique within a run (the process id and time make them unique
/// across runs).
static NEXT_TOMBSTONE: AtomicU64 = AtomicU64::new(0);

impl<D: Disk> Queues<D> {
    /// Deletes queue `name`, its dead-letter queue, and every message in them, durably.
    /// A queue out of service (its files could not be opened) is deleted too. Refused: a
    /// queue the manifest declares ([`QueueError::Declared`]) and a dead-letter queue on
    /// its own ([`QueueError::BadInput`]). Blocking: stops writer threads, removes files.
    pub fn delete(&self, name: &str) -> Result<(), QueueError> {
        if let Some(owner) = name.strip_suffix(DLQ_SUFFIX) {
            return Err(QueueError::BadInput(format!(
                "{name:?} is the dead-letter queue of {owner:?}: it is deleted with {owner:?}, not on its own"
            )));
        }
        if !strata_manifest::is_queue_name(name) {
            return Err(QueueError::UnknownQueue(name.to_string()));
        }
        if self.declared.contains(name) {
            return Err(QueueError::Declared(name.to_string()));
        }
        let _creating = self.creating.lock().unwrap_or_else(|e| e.into_inner());
        let dlq_name = format!("{name}{DLQ_SUFFIX}");
        let removed: Vec<_> = {
            let mut queues = self.queues.write().unwrap_or_else(|e| e.into_inner());
            [name, dlq_name.as_str()]
                .into_iter()
                .filter_map(|n| queues.remove(n))
                .collect()
        };
        let was_failed = self
            .failed
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
            .is_some();
        if removed.is_empty() && !was_failed {
            return Err(QueueError::UnknownQueue(name.to_string()));
        }
        for q in &removed {
            q.shared.mark_deleted();
        }
        for q in &removed {
            // What was queued before is written; no thread of it stays in its directory.
            q.close();
            q.shared.release_all();
        }
        let dirs = [self.dir.join(name), self.dir.join(&dlq_name)];
        if let Err(e) = self.entomb(&dirs) {
            // Still on disk: out of service, so that a second delete finishes the job.
            let reason = format!("a delete did not finish ({e}); delete it again");
            tracing::error!(queue = %name, "{reason}");
            self.failed
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name.to_string(), reason);
            return Err(QueueError::Io(format!("delete queue {name:?}: {e}")));
        }
        tracing::info!(queue = %name, "queue deleted");
        Ok(())
    }

    /// Renames `dirs` (those that exist) to tombstones, durably, then removes them.
    fn entomb(&self, dirs: &[PathBuf]) -> std::io::Result<()> {
        let disk = &self.config.disk;
        let mut tombstones = Vec::new();
        for dir in dirs.iter().filter(|d| disk.list(d).is_ok()) {
            let tombstone = self.dir.join(format!(
                "{TOMBSTONE}{}-{:x}-{:x}",
                dir.file_name().unwrap_or_default().to_string_lossy(),
                std::process::id(),
                NEXT_TOMBSTONE.fetch_add(1, Ordering::Relaxed)
            ));
            disk.rename(dir, &tombstone)?;
            tombstones.push(tombstone);
        }
        disk.sync_dir(&self.dir)?;
        // Deleted for good; what follows only frees the space (or the next open does).
        for tombstone in &tombstones {
            if let Err(e) = remove_tree(disk, tombstone) {
                tracing::warn!(dir = %tombstone.display(), "removing a deleted queue's files: {e} (the next start tries again)");
            }
        }
        if let Err(e) = disk.sync_dir(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), "sync after removing deleted queues: {e}");
        }
        Ok(())
    }
}

/// At open: removes the tombstones of deletes a crash cut short.
pub(crate) fn clear_tombstones<D: Disk>(disk: &D, dir: &Path) {
    let Ok(names) = disk.list(dir) else { return };
    for name in names {
        if name.to_str().is_some_and(|n| n.starts_with(TOMBSTONE)) {
            let path = dir.join(&name);
            match remove_tree(disk, &path) {
                Ok(()) => tracing::info!(dir = %path.display(), "removed what a delete cut short left"),
                Err(e) => tracing::warn!(dir = %path.display(), "could not remove a deleted queue's files: {e}"),
            }
        }
    }
}

/// Removes directories a create made before it failed, and syncs `parent`; best effort.
pub(crate) fn remove_durably<D: Disk>(disk: &D, parent: &Path, dirs: &[&Path]) {
    for dir in dirs.iter().filter(|d| disk.list(d).is_ok()) {
        if let Err(e) = remove_tree(disk, dir) {
            tracing::warn!(dir = %dir.display(), "removing a queue that could not be made: {e}");
        }
    }
    let _ = disk.sync_dir(parent);
}

/// Removes `dir` with everything under it.
fn remove_tree<D: Disk>(disk: &D, dir: &Path) -> std::io::Result<()> {
    for name in disk.list(dir)? {
        let path = dir.join(name);
        if disk.list(&path).is_ok() {
            remove_tree(disk, &path)?;
        } else {
            disk.remove_file(&path)?;
        }
    }
    disk.remove_dir(dir)
}
