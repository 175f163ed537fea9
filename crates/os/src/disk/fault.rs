//! [`FaultDisk`]: a [`Disk`] in memory, for tests, that fails the way disks and kernels do.
//!
//! It keeps, per file, what is synced and what is only written (the writes since the last
//! good sync, in order), and per directory which names are synced; a test can then:
//! - **cut the power** ([`FaultDisk::power_cut`], or [`FaultDisk::power_cut_after`] a
//!   number of changes, which lands the cut inside whatever the engine is doing): every
//!   write, new name, rename and removal not yet synced is dropped, every handle of the
//!   machine before the cut fails from then on with `EIO` (its threads are dead), and
//!   [`FaultDisk::restart`] gives a handle on the disk as the next boot finds it.
//!   [`FaultDisk::power_cut_torn`] keeps a random part of the unsynced writes instead of
//!   none (what a disk that wrote some of its cache before the power went leaves);
//! - **fail an fsync** with `EIO` ([`FaultDisk::fail_sync`]), the Linux way: of the writes
//!   it was to cover, some may have reached the disk, the others never will though they
//!   stay readable, and the next sync succeeds (a failing directory sync may or may not
//!   have made its names durable);
//! - **fail an open** with an error such as `EMFILE` or `ENOSPC` ([`FaultDisk::fail_opens`]);
//! - return **short reads** ([`FaultDisk::short_reads`]);
//! - **flip bits**: on the way out of a read, once ([`FaultDisk::flip_on_read`]), or in the
//!   stored bytes for good ([`FaultDisk::flip_bit`]).
//!
//! Every random choice comes from the seed given to [`FaultDisk::new`]. Paths are names
//! only: nothing is read or written under them on the real file system. Everything under
//! the root given to `new` is simulated; the root and its parents always exist.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Disk, DiskFile, Open};

/// A simulated disk; clones share it. See the module docs.
#[derive(Clone)]
pub struct FaultDisk {
    shared: Arc<Mutex<State>>,
    /// The boot this handle belongs to: after a power cut, every call through a handle of
    /// an earlier boot fails with `EIO`.
    boot: u64,
}

/// One open file of a [`FaultDisk`].
pub struct FaultFile {
    shared: Arc<Mutex<State>>,
    boot: u64,
    ino: u64,
    handle: u64,
}

/// What the disk did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub writes: u64,
    pub syncs: u64,
    pub power_cuts: u64,
    pub failed_syncs: u64,
    pub short_reads: u64,
    pub flipped_reads: u64,
}

struct State {
    root: PathBuf,
    boot: u64,
    /// The names as the running machine sees them.
    names: BTreeMap<PathBuf, Node>,
    /// The names as a boot after a power cut would find them.
    durable: BTreeMap<PathBuf, Node>,
    /// By inode number: ordered, so that a torn cut's choices follow the seed.
    inodes: BTreeMap<u64, Inode>,
    next_ino: u64,
    next_handle: u64,
    rng: u64,
    /// Changes still allowed before the armed power cut, and whether it is torn.
    cut_after: Option<(u64, bool)>,
    /// (syncs still allowed, the end of the path) before the armed failing sync.
    fail_sync: Option<(u64, PathBuf)>,
    short_reads: u32,
    flip_on_read: u32,
    /// Reads still to come back with a bit flipped, whatever `flip_on_read` says.
    flip_next_reads: u32,
    /// The paths whose sync was made to fail, in order.
    failed_syncs: Vec<PathBuf>,
    /// (opens still to fail, the end of the path, the error number) of
    /// [`FaultDisk::fail_opens`].
    fail_open: Option<(u32, PathBuf, i32)>,
    /// Directories renamed since the directory holding their new name was last synced:
    /// (from, to). A power cut puts them back under their old name.
    dir_renames: Vec<(PathBuf, PathBuf)>,
    counts: FaultCounts,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Dir,
    File(u64),
}

#[derive(Default)]
struct Inode {
    /// What reads see.
    data: Vec<u8>,
    /// What the platter holds: the contents as of the last good sync.
    synced: Vec<u8>,
    /// Changes since then that a good sync would make durable, in order.
    unsynced: Vec<Change>,
    /// The handle holding the lock.
    lock: Option<u64>,
}

enum Change {
    Write { pos: u64, bytes: Vec<u8> },
    SetLen(u64),
}

impl Change {
    fn apply(&self, data: &mut Vec<u8>) {
        match self {
            Change::Write { pos, bytes } => write_into(data, *pos, bytes),
            Change::SetLen(len) => data.resize(*len as usize, 0),
        }
    }
}

fn write_into(data: &mut Vec<u8>, pos: u64, bytes: &[u8]) {
    let end = pos as usize + bytes.len();
    if data.len() < end {
        data.resize(end, 0);
    }
    data[pos as usize..end].copy_from_slice(bytes);
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{} does not exist", path.display()))
}

impl FaultDisk {
    /// An empty disk whose root directory is `root`; its random choices follow `seed`.
    pub fn new(root: &Path, seed: u64) -> FaultDisk {
        let state = State {
            root: root.to_path_buf(),
            boot: 0,
            names: BTreeMap::new(),
            durable: BTreeMap::new(),
            inodes: BTreeMap::new(),
            next_ino: 1,
            next_handle: 1,
            rng: seed,
            cut_after: None,
            fail_sync: None,
            short_reads: 0,
            flip_on_read: 0,
            flip_next_reads: 0,
            failed_syncs: Vec::new(),
            fail_open: None,
            dir_renames: Vec::new(),
            counts: FaultCounts::default(),
        };
        FaultDisk {
            shared: Arc::new(Mutex::new(state)),
            boot: 0,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Cuts the power now: what was not synced is lost; every handle (this one too, its
    /// clones and their files) fails from now on. Take [`FaultDisk::restart`] next.
    pub fn power_cut(&self) {
        self.state().cut(false);
    }

    /// Like [`FaultDisk::power_cut`], but each write not yet synced is kept or lost at
    /// random, in no particular order: a torn state.
    pub fn power_cut_torn(&self) {
        self.state().cut(true);
    }

    /// Arms a power cut: after `changes` more changes (writes, syncs, truncations, new
    /// names, renames, removals), the next one cuts the power instead of happening.
    pub fn power_cut_after(&self, changes: u64) {
        self.state().cut_after = Some((changes, false));
    }

    /// [`FaultDisk::power_cut_after`], the cut torn as in [`FaultDisk::power_cut_torn`].
    pub fn torn_power_cut_after(&self, changes: u64) {
        self.state().cut_after = Some((changes, true));
    }

    /// Whether the power was cut since this handle's boot.
    pub fn is_cut(&self) -> bool {
        self.state().boot != self.boot
    }

    /// A handle on the disk as the machine finds it now (after a power cut: the next boot).
    pub fn restart(&self) -> FaultDisk {
        FaultDisk {
            shared: self.shared.clone(),
            boot: self.state().boot,
        }
    }

    /// Arms a failing sync: after `after` more syncs (of files or directories) whose path
    /// ends with `path_end` (whole components: `"groups.log"`, `"q/groups.log"`; `""` for
    /// any), the next one fails with `EIO`. Of the writes a failing file sync was to cover,
    /// each either reached the disk or never will (chosen at random), though all stay
    /// readable until the power is cut; a failing directory sync made its names durable,
    /// or none of them.
    pub fn fail_sync(&self, after: u64, path_end: &str) {
        self.state().fail_sync = Some((after, PathBuf::from(path_end)));
    }

    /// The next `times` opens of a path ending with `path_end` (whole components; `""`
    /// for any) fail with the error number `errno` (`libc::EMFILE`: out of file
    /// descriptors, `libc::ENOSPC`: no space to create the file) and change nothing.
    pub fn fail_opens(&self, times: u32, path_end: &str, errno: i32) {
        self.state().fail_open = (times > 0).then(|| (times, PathBuf::from(path_end), errno));
    }

    /// Whether an armed failing sync is still to come.
    pub fn sync_failure_armed(&self) -> bool {
        self.state().fail_sync.is_some()
    }

    /// Disarms the power cut and the failing sync still to come, if any.
    pub fn disarm(&self) {
        let mut state = self.state();
        state.cut_after = None;
        state.fail_sync = None;
    }

    /// One read in `one_in` (0: none) returns fewer bytes than asked.
    pub fn short_reads(&self, one_in: u32) {
        self.state().short_reads = one_in;
    }

    /// One read in `one_in` (0: none) comes back with one bit flipped; the stored bytes
    /// stay right.
    pub fn flip_on_read(&self, one_in: u32) {
        self.state().flip_on_read = one_in;
    }

    /// The next `reads` reads come back with one bit flipped each; the stored bytes stay
    /// right.
    pub fn flip_next_reads(&self, reads: u32) {
        self.state().flip_next_reads = reads;
    }

    /// Flips bit `bit` (counted from the file's start) of the file at `path`, for good,
    /// as damage to the medium would.
    pub fn flip_bit(&self, path: &Path, bit: u64) -> io::Result<()> {
        let mut state = self.state();
        let ino = state.file(path)?;
        let inode = state.inode(ino)?;
        let (at, mask) = ((bit / 8) as usize, 1u8 << (bit % 8));
        if at >= inode.data.len() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "past the end of the file"));
        }
        inode.data[at] ^= mask;
        if let Some(b) = inode.synced.get_mut(at) {
            *b ^= mask;
        }
        for change in &mut inode.unsynced {
            if let Change::Write { pos, bytes } = change {
                if let Some(b) = (at as u64).checked_sub(*pos).and_then(|i| bytes.get_mut(i as usize)) {
                    *b ^= mask;
                }
            }
        }
        Ok(())
    }

    /// Every file with its size, by path.
    pub fn files(&self) -> Vec<(PathBuf, u64)> {
        let state = self.state();
        state
            .names
            .iter()
            .filter_map(|(p, n)| match n {
                Node::File(ino) => Some((p.clone(), state.inodes.get(ino).map_or(0, |i| i.data.len() as u64))),
                Node::Dir => None,
            })
            .collect()
    }

    /// Bytes written to the file at `path` and not synced yet.
    pub fn unsynced_bytes(&self, path: &Path) -> io::Result<u64> {
        let mut state = self.state();
        let ino = state.file(path)?;
        let inode = state.inode(ino)?;
        Ok(inode
            .unsynced
            .iter()
            .map(|c| match c {
                Change::Write { bytes, .. } => bytes.len() as u64,
                Change::SetLen(_) => 0,
            })
            .sum())
    }

    /// The paths whose sync was made to fail so far, in order.
    pub fn failed_sync_paths(&self) -> Vec<PathBuf> {
        self.state().failed_syncs.clone()
    }

    pub fn counts(&self) -> FaultCounts {
        self.state().counts
    }
}

impl std::fmt::Debug for FaultDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state();
        f.debug_struct("FaultDisk")
            .field("root", &state.root)
            .field("boot", &self.boot)
            .field("counts", &state.counts)
            .finish()
    }
}

impl std::fmt::Debug for FaultFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultFile")
            .field("ino", &self.ino)
            .field("boot", &self.boot)
            .finish()
    }
}

impl Disk for FaultDisk {
    type File = FaultFile;

    fn open(&self, path: &Path, how: Open) -> io::Result<FaultFile> {
        let mut state = self.state();
        state.live(self.boot)?;
        state.check_inside(path)?;
        if let Some(errno) = state.open_fails(path) {
            return Err(io::Error::from_raw_os_error(errno));
        }
        state.parent_exists(path)?;
        let ino = match (state.file(path), how) {
            (Ok(ino), Open::Existing | Open::Create) => ino,
            (Ok(ino), Open::Truncate) => {
                state.change(self.boot)?;
                let inode = state.inode(ino)?;
                inode.data.clear();
                inode.unsynced.push(Change::SetLen(0));
                ino
            }
            (Err(e), Open::Existing) => return Err(e),
            (Err(e), _) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            (Err(_), Open::Create | Open::Truncate) => {
                state.change(self.boot)?;
                let ino = state.next_ino;
                state.next_ino += 1;
                state.inodes.insert(ino, Inode::default());
                state.names.insert(path.to_path_buf(), Node::File(ino));
                ino
            }
        };
        let handle = state.next_handle;
        state.next_handle += 1;
        Ok(FaultFile {
            shared: self.shared.clone(),
            boot: self.boot,
            ino,
            handle,
        })
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        let state = self.state();
        state.live(self.boot)?;
        if !state.is_dir(dir) {
            return Err(not_found(dir));
        }
        Ok(state
            .names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(|n| n.to_os_string()))
            .collect())
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.live(self.boot)?;
        if state.implicit(dir) {
            return Ok(());
        }
        state.check_inside(dir)?;
        let missing: Vec<PathBuf> = dir
            .ancestors()
            .take_while(|a| !state.is_dir(a))
            .map(Path::to_path_buf)
            .collect();
        for d in missing.into_iter().rev() {
            if state.names.contains_key(&d) {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} is a file", d.display()),
                ));
            }
            state.change(self.boot)?;
            state.names.insert(d, Node::Dir);
        }
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.live(self.boot)?;
        state.check_inside(to)?;
        if state.names.get(from) == Some(&Node::Dir) {
            return state.rename_dir(self.boot, from, to);
        }
        let ino = state.file(from)?;
        state.parent_exists(to)?;
        if state.names.get(to) == Some(&Node::Dir) {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("{} is a directory", to.display()),
            ));
        }
        state.change(self.boot)?;
        state.names.remove(from);
        state.names.insert(to.to_path_buf(), Node::File(ino));
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.live(self.boot)?;
        state.file(path)?;
        state.change(self.boot)?;
        state.names.remove(path);
        Ok(())
    }

    fn remove_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.live(self.boot)?;
        state.check_inside(dir)?;
        if state.names.get(dir) != Some(&Node::Dir) {
            return Err(not_found(dir));
        }
        if state.names.keys().any(|p| p.parent() == Some(dir)) {
            return Err(io::Error::new(
                io::ErrorKind::DirectoryNotEmpty,
                format!("{} is not empty", dir.display()),
            ));
        }
        state.change(self.boot)?;
        state.names.remove(dir);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.live(self.boot)?;
        if !state.is_dir(dir) {
            return Err(not_found(dir));
        }
        state.change(self.boot)?;
        state.counts.syncs += 1;
        // A failing sync may have written the directory before it failed, or not.
        let failed = state.sync_fails(&[dir]);
        if failed && state.random().is_multiple_of(2) {
            return Err(eio());
        }
        if state.implicit(dir) && dir != state.root {
            return if failed { Err(eio()) } else { Ok(()) };
        }
        // Renames into this directory are durable now.
        state.dir_renames.retain(|(_, to)| to.parent() != Some(dir));
        let State { names, durable, .. } = &mut *state;
        durable.retain(|p, _| p.parent() != Some(dir));
        for (p, n) in names.iter() {
            if p.parent() == Some(dir) {
                durable.insert(p.clone(), *n);
            }
        }
        if failed {
            return Err(eio());
        }
        Ok(())
    }
}

impl FaultFile {
    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl DiskFile for FaultFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        let mut state = self.state();
        state.live(self.boot)?;
        let inode = state.inode(self.ino)?;
        let start = (pos as usize).min(inode.data.len());
        let mut n = (inode.data.len() - start).min(buf.len());
        buf[..n].copy_from_slice(&inode.data[start..start + n]);
        let (short, flip) = (state.short_reads, state.flip_on_read);
        if n > 1 && state.one_in(short) {
            n = 1 + (state.random() % (n as u64 - 1)) as usize;
            state.counts.short_reads += 1;
        }
        let flip_this = state.flip_next_reads > 0 || state.one_in(flip);
        if n > 0 && flip_this {
            state.flip_next_reads = state.flip_next_reads.saturating_sub(1);
            let bit = state.random() % (n as u64 * 8);
            buf[(bit / 8) as usize] ^= 1 << (bit % 8);
            state.counts.flipped_reads += 1;
        }
        Ok(n)
    }

    fn write_at(&self, buf: &[u8], pos: u64) -> io::Result<usize> {
        let mut state = self.state();
        state.change(self.boot)?;
        state.counts.writes += 1;
        let inode = state.inode(self.ino)?;
        write_into(&mut inode.data, pos, buf);
        inode.unsynced.push(Change::Write {
            pos,
            bytes: buf.to_vec(),
        });
        Ok(buf.len())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut state = self.state();
        state.change(self.boot)?;
        state.counts.syncs += 1;
        let fails = match state.fail_sync {
            Some(_) => {
                let names: Vec<PathBuf> = state.names_of(self.ino).into_iter().map(Path::to_path_buf).collect();
                let names: Vec<&Path> = names.iter().map(PathBuf::as_path).collect();
                state.sync_fails(&names)
            }
            None => false,
        };
        if fails {
            // Some pages may have been written before the error; the kernel marks the
            // others clean: what they held never reaches the disk.
            let changes = std::mem::take(&mut state.inode(self.ino)?.unsynced);
            let kept: Vec<Change> = changes
                .into_iter()
                .filter(|_| state.random().is_multiple_of(2))
                .collect();
            let inode = state.inode(self.ino)?;
            for change in kept {
                change.apply(&mut inode.synced);
            }
            return Err(eio());
        }
        let inode = state.inode(self.ino)?;
        let Inode { synced, unsynced, .. } = inode;
        for change in unsynced.drain(..) {
            change.apply(synced);
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut state = self.state();
        state.change(self.boot)?;
        let inode = state.inode(self.ino)?;
        inode.data.resize(len as usize, 0);
        inode.unsynced.push(Change::SetLen(len));
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        let mut state = self.state();
        state.live(self.boot)?;
        Ok(state.inode(self.ino)?.data.len() as u64)
    }

    /// What is read from now on is what the disk holds, plus what is still to be written:
    /// the writes a failed sync dropped are gone.
    fn forget_cached(&self) -> io::Result<()> {
        let mut state = self.state();
        state.live(self.boot)?;
        let inode = state.inode(self.ino)?;
        let mut data = inode.synced.clone();
        for change in &inode.unsynced {
            change.apply(&mut data);
        }
        inode.data = data;
        Ok(())
    }

    fn try_lock_exclusive(&self) -> io::Result<()> {
        let mut state = self.state();
        state.live(self.boot)?;
        let inode = state.inode(self.ino)?;
        match inode.lock {
            Some(h) if h != self.handle => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "another handle holds the file's lock",
            )),
            _ => {
                inode.lock = Some(self.handle);
                Ok(())
            }
        }
    }

    fn read_cached(&self, buf: &mut [u8], pos: u64) -> io::Result<bool> {
        Ok(self.read_at(buf, pos)? == buf.len())
    }
}

impl Drop for FaultFile {
    fn drop(&mut self) {
        let mut state = self.state();
        if state.boot != self.boot {
            return;
        }
        if let Some(inode) = state.inodes.get_mut(&self.ino) {
            if inode.lock == Some(self.handle) {
                inode.lock = None;
            }
        }
    }
}

mod state;
#[cfg(test)]
mod tests;
