//! Whether the kernel killed something in a container for memory: the OOM-kill counter
//! of the container's memory cgroup, read after its program ended and before the
//! container is deleted (it is run with `--keep` so that its cgroup outlives it).
//!
//! A container is given a relative `cgroupsPath` (its id), so the runtime makes its
//! cgroup below its own, which is the node's: on cgroup v1 (and Debian's hybrid layout,
//! where the memory controller is on v1) in the memory hierarchy below the node's
//! memory cgroup; on v2 below the node's cgroup or, as runc does (the node's own cgroup
//! holds processes, so no controller can be enabled below it), below its parent. The
//! counter is `oom_kill` in `memory.oom_control` (v1, Linux 4.13 or later) or in
//! `memory.events` (v2).

use std::path::{Path, PathBuf};

/// The directories a container's memory cgroup may be made in, most likely first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct MemoryCgroups {
    parents: Vec<PathBuf>,
}

impl MemoryCgroups {
    /// Read from this process's `/proc/self/cgroup` and `/proc/self/mountinfo`.
    pub fn detect() -> MemoryCgroups {
        let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        MemoryCgroups {
            parents: parents(&cgroup, &mountinfo),
        }
    }

    /// OOM kills counted in the memory cgroup named `name`; None where it was not found.
    pub fn oom_kills(&self, name: &str) -> Option<u64> {
        self.parents.iter().find_map(|parent| {
            let dir = parent.join(name);
            counter(&dir.join("memory.oom_control")).or_else(|| counter(&dir.join("memory.events")))
        })
    }
}

/// The `oom_kill` line of a cgroup's `memory.oom_control` or `memory.events`.
fn counter(file: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
}

/// The parents from the text of `/proc/self/cgroup` and `/proc/self/mountinfo`.
fn parents(cgroup: &str, mountinfo: &str) -> Vec<PathBuf> {
    // "ID:CONTROLLERS:PATH"; v2 is "0::PATH".
    let mut v1_memory = None;
    let mut v2 = None;
    for line in cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if controllers.is_empty() {
            v2 = Some(path.to_string());
        } else if controllers.split(',').any(|c| c == "memory") {
            v1_memory = Some(path.to_string());
        }
    }
    let (mut v1_dirs, mut v2_dirs) = (Vec::new(), Vec::new());
    for line in mountinfo.lines() {
        // "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER"
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = left.split(' ').collect();
        let theirs: Vec<&str> = right.split(' ').collect();
        if fields.len() < 5 || theirs.len() < 3 {
            continue;
        }
        let (root, mountpoint) = (fields[3], Path::new(fields[4]));
        let (fstype, options) = (theirs[0], theirs[2]);
        let own = match fstype {
            "cgroup" if options.split(',').any(|o| o == "memory") => v1_memory.as_deref(),
            "cgroup2" => v2.as_deref(),
            _ => None,
        };
        // A cgroup path as the mount shows it: relative to the mount's root.
        let Some(inside) = own.and_then(|own| own.strip_prefix(root.trim_end_matches('/'))) else {
            continue;
        };
        let dir = mountpoint.join(inside.trim_start_matches('/'));
        if fstype == "cgroup" {
            v1_dirs.push(dir);
        } else {
            let parent = dir
                .parent()
                .filter(|p| p.starts_with(mountpoint))
                .map(Path::to_path_buf);
            v2_dirs.push(dir);
            v2_dirs.extend(parent);
        }
    }
    v1_dirs.extend(v2_dirs);
    v1_dirs.dedup();
    v1_dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_CGROUP: &str = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/a52\n1:cpu:/\n0::/\n";
    const HYBRID_MOUNTS: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn on_the_hybrid_layout_the_v1_memory_hierarchy_comes_first() {
        let found = parents(HYBRID_CGROUP, HYBRID_MOUNTS);
        assert_eq!(found[0], PathBuf::from("/sys/fs/cgroup/memory/process_api/a52"));
        assert!(found.contains(&PathBuf::from("/sys/fs/cgroup/unified")), "{found:?}");
    }

    #[test]
    fn on_v2_the_own_cgroup_and_its_parent() {
        let found = parents(
            "0::/system.slice/strata.service\n",
            "29 23 0:26 / /sys/fs/cgroup rw shared:4 - cgroup2 cgroup2 rw,nsdelegate\n",
        );
        assert_eq!(
            found,
            [
                PathBuf::from("/sys/fs/cgroup/system.slice/strata.service"),
                PathBuf::from("/sys/fs/cgroup/system.slice"),
            ]
        );
    }

    #[test]
    fn the_counter_is_read_from_either_file() {
        let dir = tempfile::tempdir().unwrap();
        let v1 = dir.path().join("a");
        std::fs::create_dir(&v1).unwrap();
        std::fs::write(
            v1.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        let v2 = dir.path().join("b");
        std::fs::create_dir(&v2).unwrap();
        std::fs::write(v2.join("memory.events"), "low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\n").unwrap();
        let cgroups = MemoryCgroups {
            parents: vec![dir.path().to_path_buf()],
        };
        assert_eq!(cgroups.oom_kills("a"), Some(2));
        assert_eq!(cgroups.oom_kills("b"), Some(1));
        assert_eq!(cgroups.oom_kills("c"), None);
    }
}
