//! The simulated disk's state: files, names, and what a power cut keeps of them.

use super::*;

impl State {
    pub(super) fn random(&mut self) -> u64 {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(super) fn one_in(&mut self, n: u32) -> bool {
        n > 0 && self.random().is_multiple_of(u64::from(n))
    }

    /// Fails when `boot` is over (the power was cut since).
    pub(super) fn live(&self, boot: u64) -> io::Result<()> {
        if boot == self.boot {
            Ok(())
        } else {
            Err(eio())
        }
    }

    /// A change to the disk by a handle of `boot`: counts towards the armed power cut,
    /// which happens instead of the change.
    pub(super) fn change(&mut self, boot: u64) -> io::Result<()> {
        self.live(boot)?;
        match self.cut_after {
            Some((0, torn)) => {
                self.cut(torn);
                Err(eio())
            }
            Some((n, torn)) => {
                self.cut_after = Some((n - 1, torn));
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// The root and its parents: directories that always exist and are durable.
    pub(super) fn implicit(&self, dir: &Path) -> bool {
        self.root.starts_with(dir)
    }

    pub(super) fn is_dir(&self, path: &Path) -> bool {
        self.implicit(path) || self.names.get(path) == Some(&Node::Dir)
    }

    pub(super) fn check_inside(&self, path: &Path) -> io::Result<()> {
        if path.starts_with(&self.root) && path != self.root {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{} is outside the simulated disk's root", path.display()),
            ))
        }
    }

    pub(super) fn file(&self, path: &Path) -> io::Result<u64> {
        match self.names.get(path) {
            Some(Node::File(ino)) => Ok(*ino),
            Some(Node::Dir) => Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("{} is a directory", path.display()),
            )),
            None => Err(not_found(path)),
        }
    }

    pub(super) fn parent_exists(&self, path: &Path) -> io::Result<()> {
        match path.parent() {
            Some(parent) if self.is_dir(parent) => Ok(()),
            _ => Err(not_found(path)),
        }
    }

    pub(super) fn inode(&mut self, ino: u64) -> io::Result<&mut Inode> {
        // An inode of this boot is never dropped while a handle of this boot is open.
        self.inodes.get_mut(&ino).ok_or_else(eio)
    }

    /// The power goes: the names and contents become what was synced (plus, `torn`, a
    /// random part of what was not), and every handle of this boot is dead.
    pub(super) fn cut(&mut self, torn: bool) {
        // A directory renamed and not made durable under its new name is found under its
        // old one, with what it holds.
        for (from, to) in std::mem::take(&mut self.dir_renames).into_iter().rev() {
            rekey(&mut self.durable, &to, &from, false);
        }
        let mut names = BTreeMap::new();
        // Parents sort before their children: a name survives if its parent did.
        for (path, node) in &self.durable {
            let parent_kept = path
                .parent()
                .is_some_and(|p| self.implicit(p) || names.get(p) == Some(&Node::Dir));
            if parent_kept {
                names.insert(path.clone(), *node);
            }
        }
        let reachable: HashSet<u64> = names
            .values()
            .filter_map(|n| match n {
                Node::File(ino) => Some(*ino),
                Node::Dir => None,
            })
            .collect();
        let mut inodes = std::mem::take(&mut self.inodes);
        inodes.retain(|ino, _| reachable.contains(ino));
        for inode in inodes.values_mut() {
            let mut data = std::mem::take(&mut inode.synced);
            for change in std::mem::take(&mut inode.unsynced) {
                if torn && self.random().is_multiple_of(2) {
                    change.apply(&mut data);
                }
            }
            inode.synced = data.clone();
            inode.data = data;
            inode.lock = None;
        }
        self.inodes = inodes;
        self.durable = names.clone();
        self.names = names;
        self.boot += 1;
        self.cut_after = None;
        self.fail_sync = None;
        self.counts.power_cuts += 1;
    }

    /// Renames directory `from`, and every name under it, to `to` (which must not
    /// exist). What the directory holds keeps its durability (it belongs to the
    /// directory, not to its name); the new name itself is durable once its parent is
    /// synced.
    pub(super) fn rename_dir(&mut self, boot: u64, from: &Path, to: &Path) -> io::Result<()> {
        self.parent_exists(to)?;
        if to.starts_with(from) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is inside {}", to.display(), from.display()),
            ));
        }
        if self.names.contains_key(to) || self.implicit(to) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists", to.display()),
            ));
        }
        self.change(boot)?;
        rekey(&mut self.names, from, to, true);
        rekey(&mut self.durable, from, to, false);
        self.dir_renames.push((from.to_path_buf(), to.to_path_buf()));
        Ok(())
    }

    /// Whether this open is one armed to fail, and with which error number.
    pub(super) fn open_fails(&mut self, path: &Path) -> Option<i32> {
        let (left, end, errno) = self.fail_open.as_mut()?;
        if !path.ends_with(&*end) {
            return None;
        }
        let errno = *errno;
        *left -= 1;
        if *left == 0 {
            self.fail_open = None;
        }
        Some(errno)
    }

    /// Whether this sync is the one armed to fail (`paths`: the names it covers).
    pub(super) fn sync_fails(&mut self, paths: &[&Path]) -> bool {
        let Some((left, part)) = &mut self.fail_sync else {
            return false;
        };
        if !paths.iter().any(|p| p.ends_with(&*part)) {
            return false;
        }
        if *left > 0 {
            *left -= 1;
            return false;
        }
        self.fail_sync = None;
        self.counts.failed_syncs += 1;
        self.failed_syncs.extend(paths.first().map(|p| p.to_path_buf()));
        true
    }

    pub(super) fn names_of(&self, ino: u64) -> Vec<&Path> {
        self.names
            .iter()
            .filter(|(_, n)| **n == Node::File(ino))
            .map(|(p, _)| p.as_path())
            .collect()
    }
}

/// Moves every name under `from` to the same place under `to`; with `itself`, `from`'s
/// own entry too.
fn rekey(names: &mut BTreeMap<PathBuf, Node>, from: &Path, to: &Path, itself: bool) {
    let moved: Vec<PathBuf> = names
        .keys()
        .filter(|p| p.starts_with(from) && (itself || *p != from))
        .cloned()
        .collect();
    for old in moved {
        let node = names.remove(&old).expect("listed");
        let rest = old.strip_prefix(from).expect("under from");
        let new = if rest.as_os_str().is_empty() {
            to.to_path_buf()
        } else {
            to.join(rest)
        };
        names.insert(new, node);
    }
}
