//! A cgroup v2 directory as a container of processes: found below this process's own
//! cgroup, joined by a child before it executes its program, killed whole with
//! `cgroup.kill`, removed once empty.
//!
//! On a hybrid layout (cgroup v1 controllers, and the v2 hierarchy mounted at
//! `/sys/fs/cgroup/unified`) as on a pure v2 one: the v2 mount is found in
//! `/proc/self/mountinfo` and this process's place in it in `/proc/self/cgroup` (the
//! `0::` line). No controller is enabled or needed: a cgroup here only groups processes.

use std::ffi::CString;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

/// One cgroup v2 directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    dir: PathBuf,
}

impl Cgroup {
    /// This process's own cgroup v2 directory, below which it may make cgroups of its
    /// own; or, in words, why there is none (no cgroup2 mount, this process's cgroup not
    /// under it).
    pub fn own() -> Result<Cgroup, String> {
        let cgroups =
            std::fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("read /proc/self/cgroup: {e}"))?;
        let path = cgroups
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .ok_or("this process is in no cgroup v2 hierarchy (/proc/self/cgroup has no 0:: line)")?
            .to_string();
        if path.split('/').any(|part| part == "..") {
            return Err(format!(
                "this process's cgroup {path} lies outside its cgroup namespace"
            ));
        }
        let mountinfo =
            std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| format!("read /proc/self/mountinfo: {e}"))?;
        let dir = cgroup2_mounts(&mountinfo)
            .into_iter()
            .find_map(|(root, mountpoint)| {
                let rest = if root == "/" {
                    path.as_str()
                } else {
                    path.strip_prefix(root.as_str())
                        .filter(|r| r.is_empty() || r.starts_with('/'))?
                };
                Some(mountpoint.join(rest.trim_start_matches('/')))
            })
            .ok_or_else(|| format!("no cgroup2 file system is mounted where this process's cgroup {path} is"))?;
        if !dir.is_dir() {
            return Err(format!("{} is not a directory", dir.display()));
        }
        Ok(Cgroup { dir })
    }

    /// The cgroup at `dir` (which is not checked).
    pub fn at(dir: PathBuf) -> Cgroup {
        Cgroup { dir }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Its directory's name.
    pub fn name(&self) -> &str {
        self.dir.file_name().and_then(|n| n.to_str()).unwrap_or("")
    }

    /// Makes a child cgroup named `name`.
    pub fn create_child(&self, name: &str) -> io::Result<Cgroup> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') || name.starts_with("cgroup.") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name:?} cannot name a cgroup"),
            ));
        }
        let dir = self.dir.join(name);
        std::fs::create_dir(&dir)?;
        Ok(Cgroup { dir })
    }

    /// Its child cgroups.
    pub fn children(&self) -> io::Result<Vec<Cgroup>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                out.push(Cgroup { dir: entry.path() });
            }
        }
        out.sort_by(|a, b| a.dir.cmp(&b.dir));
        Ok(out)
    }

    /// Whether the kernel offers `cgroup.kill` here (Linux 5.14 and later; never in the
    /// root cgroup).
    pub fn can_kill(&self) -> bool {
        self.dir.join("cgroup.kill").exists()
    }

    /// Makes the child that `cmd` starts join this cgroup before it executes its program:
    /// the program and everything it starts are in it from their first instruction. If
    /// the child cannot join, the spawn fails with the error of the write.
    pub fn join_on_spawn(&self, cmd: &mut std::process::Command) -> io::Result<()> {
        let procs = CString::new(self.dir.join("cgroup.procs").as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a cgroup path with a NUL byte"))?;
        let hook = move || join(&procs);
        // SAFETY: the hook runs in the child between fork and exec, where only
        // async-signal-safe calls are allowed: `join` makes three system calls (open,
        // write, close) on a path prepared here in the parent, and allocates nothing.
        unsafe {
            cmd.pre_exec(hook);
        }
        Ok(())
    }

    /// Kills every process in this cgroup and in the cgroups below it (SIGKILL, by the
    /// kernel, in one write: a process cannot fork its way out of it).
    pub fn kill(&self) -> io::Result<()> {
        std::fs::write(self.dir.join("cgroup.kill"), b"1")
    }

    /// Whether any process is still in this cgroup or below it (zombies are not).
    pub fn populated(&self) -> io::Result<bool> {
        let events = std::fs::read_to_string(self.dir.join("cgroup.events"))?;
        Ok(events.lines().any(|l| l.trim() == "populated 1"))
    }

    /// The processes in this cgroup itself (not those below it).
    pub fn procs(&self) -> io::Result<Vec<u32>> {
        let text = std::fs::read_to_string(self.dir.join("cgroup.procs"))?;
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    /// Moves process `pid` into this cgroup.
    pub fn add(&self, pid: u32) -> io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(self.dir.join("cgroup.procs"))?;
        file.write_all(pid.to_string().as_bytes())
    }

    /// Removes this cgroup and the cgroups below it, deepest first. Fails (EBUSY) while a
    /// process is left in one of them.
    pub fn remove(&self) -> io::Result<()> {
        for child in self.children()? {
            child.remove()?;
        }
        match std::fs::remove_dir(&self.dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}

/// The cgroup v2 path of process `pid` (as `/proc/PID/cgroup` says it, relative to the
/// hierarchy's root), when it is in one.
pub fn cgroup_of(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines().find_map(|l| l.strip_prefix("0::")).map(str::to_string)
}

/// In the child, between fork and exec: writes "0" (the writing process) to
/// `cgroup.procs`.
fn join(procs: &CString) -> io::Result<()> {
    // SAFETY: `procs` is a NUL-terminated path; open, write and close are
    // async-signal-safe system calls; the buffer written is a static byte.
    unsafe {
        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let written = libc::write(fd, b"0".as_ptr().cast(), 1);
        let err = io::Error::last_os_error();
        libc::close(fd);
        if written != 1 {
            return Err(err);
        }
    }
    Ok(())
}

/// (root within the hierarchy, mount point) of every cgroup2 mount in `mountinfo`.
fn cgroup2_mounts(mountinfo: &str) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((before, after)) = line.split_once(" - ") else {
            continue;
        };
        if after.split(' ').next() != Some("cgroup2") {
            continue;
        }
        let fields: Vec<&str> = before.split(' ').collect();
        if let (Some(root), Some(mountpoint)) = (fields.get(3), fields.get(4)) {
            out.push((unescape(root), PathBuf::from(unescape(mountpoint))));
        }
    }
    // A mount of the whole hierarchy first.
    out.sort_by_key(|(root, _)| root != "/");
    out
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let value = bytes[i + 1..i + 4]
                .iter()
                .fold(0u32, |v, b| v * 8 + u32::from(b - b'0'));
            out.push(value as u8);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v2_mount_is_found_on_a_hybrid_layout() {
        let mountinfo = "\
25 30 0:23 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
26 25 0:24 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
35 25 0:30 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
40 30 0:31 /some/where /mnt/with\\040space rw - cgroup2 cgroup2 rw
";
        assert_eq!(
            cgroup2_mounts(mountinfo),
            vec![
                ("/".to_string(), PathBuf::from("/sys/fs/cgroup/unified")),
                ("/some/where".to_string(), PathBuf::from("/mnt/with space")),
            ]
        );
    }

    #[test]
    fn a_name_that_is_no_cgroup_is_refused() {
        let root = Cgroup::at(PathBuf::from("/nonexistent"));
        for bad in ["", "a/b", ".hidden", "cgroup.kill"] {
            let err = root.create_child(bad).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
    }
}
