//! Containment with real child processes: a program that double-forks and `setsid`s
//! sleepers, started in a cgroup of its own or under the subreaper shim; nothing of its
//! tree is left once the container is ended, and the program is contained from its
//! first instruction.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use strata_os::contain::cgroup::{self, Cgroup};
use strata_os::contain::shim;

/// Long enough for a shell to start on a busy two-core machine; never a measure of speed.
const PATIENCE: Duration = Duration::from_secs(15);

/// A program that records its pid, then leaves two sleepers behind that escape its
/// process group's reach: one through `setsid`, one by a double fork (its parent exits).
/// Its first action records what it sees of its own container.
const TREE: &str = r#"
while read -r cg; do case "$cg" in 0::*) echo "$cg" > "$D/first-cgroup" ;; esac; done < /proc/self/cgroup
read -r parent < /proc/$PPID/stat; echo "$parent" > "$D/first-parent"
setsid sh -c 'echo $$ > "$D/setsid.pid"; exec sleep 300' </dev/null >/dev/null 2>&1 &
(sh -c 'echo $$ > "$D/double.pid"; exec sleep 300' </dev/null >/dev/null 2>&1 &)
echo $$ > "$D/program.pid"
if [ -n "$EXIT_AT_ONCE" ]; then
  while [ ! -s "$D/setsid.pid" ] || [ ! -s "$D/double.pid" ]; do sleep 0.01; done
  exit 3
fi
exec sleep 300
"#;

fn command(dir: &Path, exit_at_once: bool) -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(TREE)
        .env("D", dir)
        .stdin(Stdio::null())
        .process_group(0);
    if exit_at_once {
        cmd.env("EXIT_AT_ONCE", "1");
    }
    cmd
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "waited {PATIENCE:?} for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn pid_in(dir: &Path, name: &str) -> Option<i32> {
    std::fs::read_to_string(dir.join(name)).ok()?.trim().parse().ok()
}

/// The pids of the program and its two sleepers, once all three wrote them.
fn tree_pids(dir: &Path) -> Vec<i32> {
    let names = ["program.pid", "setsid.pid", "double.pid"];
    wait_for("the tree's pid files", || {
        names.iter().all(|n| pid_in(dir, n).is_some())
    });
    names.iter().map(|n| pid_in(dir, n).unwrap()).collect()
}

/// (state, ppid, session) of a process, None once it is gone.
fn stat(pid: i32) -> Option<(char, i32, i32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some((
        fields[0].chars().next()?,
        fields[1].parse().ok()?,
        fields[3].parse().ok()?,
    ))
}

fn alive(pid: i32) -> bool {
    stat(pid).is_some_and(|(state, ..)| !matches!(state, 'Z' | 'X' | 'x'))
}

/// Kills what a failed test left (the sleepers would otherwise run for 5 minutes).
struct Reap(Vec<i32>);

impl Drop for Reap {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if alive(pid) {
                // SAFETY: kill(2) touches no memory.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

fn wait_child(child: &mut Child) -> std::process::ExitStatus {
    let mut status = None;
    wait_for("the child to end", || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    status.unwrap()
}

#[test]
fn the_shim_ends_the_whole_tree_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(dir.path(), false);
    shim::supervise_on_spawn(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let pids = tree_pids(dir.path());
    let _reap = Reap(pids.clone());
    let shim_pid = child.id() as i32;
    // The setsid'd sleeper left the program's session: a process-group kill misses it.
    let (_, _, session) = stat(pids[1]).unwrap();
    assert_eq!(session, pids[1], "the sleeper leads a session of its own");
    // The double-forked one lost its parent and was given to the shim, not to init.
    wait_for("the orphan to be re-parented to the shim", || {
        stat(pids[2]).is_some_and(|(_, ppid, _)| ppid == shim_pid)
    });
    assert_eq!(
        shim::program_of(shim_pid as u32),
        Some(pids[0] as u32),
        "the program is told from the orphans the shim adopted"
    );
    let first_parent = std::fs::read_to_string(dir.path().join("first-parent")).unwrap();
    assert!(
        first_parent.contains(&format!("({})", shim::NAME)),
        "the program's parent is the shim from its first instruction: {first_parent}"
    );

    shim::end(child.id()).unwrap();
    let status = wait_child(&mut child);
    assert_eq!(status.signal(), Some(libc::SIGKILL), "the shim ends as its program did");
    for pid in pids {
        assert!(!alive(pid), "pid {pid} outlived its shim");
    }
}

#[test]
fn the_shim_ends_what_its_program_left_and_exits_with_its_code() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(dir.path(), true);
    shim::supervise_on_spawn(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let status = wait_child(&mut child);
    let pids = tree_pids(dir.path());
    let _reap = Reap(pids.clone());
    assert_eq!(status.code(), Some(3));
    for pid in pids {
        assert!(!alive(pid), "pid {pid} outlived its program");
    }
}

#[test]
fn the_shim_keeps_no_copy_of_its_parents_memory() {
    // 256 MiB of this process's heap, written before and after the spawn: a fork that
    // kept its copy would hold every page this process changes afterwards.
    let mut big = vec![1u8; 256 << 20];
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(dir.path(), false);
    shim::supervise_on_spawn(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let pids = tree_pids(dir.path());
    let _reap = Reap(pids);
    for page in big.chunks_mut(4096) {
        page[0] = 2;
    }
    let rss_kib = rss_kib(child.id());
    eprintln!("the shim's resident memory after its parent rewrote 256 MiB: {rss_kib} KiB");
    shim::end(child.id()).unwrap();
    wait_child(&mut child);
    assert!(big.iter().step_by(4096).all(|&b| b == 2));
    assert!(rss_kib < 64 << 10, "the shim holds {rss_kib} KiB");
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A test's cgroup, killed and removed when the test ends, passed or failed.
struct TestCgroup(Cgroup);

impl std::ops::Deref for TestCgroup {
    type Target = Cgroup;
    fn deref(&self) -> &Cgroup {
        &self.0
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        if self.0.path().exists() {
            let _ = self.0.kill();
            let deadline = Instant::now() + PATIENCE;
            while self.0.populated().unwrap_or(false) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = self.0.remove();
        }
    }
}

/// A cgroup of its own for one test, below this process's cgroup; None (and a SKIPPED
/// line, or a failure under CI) where this machine gives none.
fn test_cgroup(name: &str) -> Option<TestCgroup> {
    let made = Cgroup::own()
        .and_then(|own| {
            own.create_child(&format!("strata-os-test-{}-{name}", std::process::id()))
                .map_err(|e| format!("cannot make a cgroup in {}: {e}", own.path().display()))
        })
        .and_then(|cg| {
            if cg.can_kill() {
                Ok(cg)
            } else {
                Err("no cgroup.kill".into())
            }
        });
    match made {
        Ok(cg) => Some(TestCgroup(cg)),
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") => {
            panic!("{name} needs a writable cgroup v2: {why}")
        }
        Err(why) => {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr().lock(),
                "\nSKIPPED {name}: needs a writable cgroup v2: {why}"
            );
            None
        }
    }
}

#[test]
fn a_cgroup_holds_the_program_from_its_first_instruction_and_kill_ends_the_tree() {
    let Some(cg) = test_cgroup("kill") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(dir.path(), false);
    cg.join_on_spawn(&mut cmd).unwrap();
    let mut child = cmd.spawn().unwrap();
    let pids = tree_pids(dir.path());
    let _reap = Reap(pids.clone());
    let own = cgroup::cgroup_of(std::process::id()).unwrap();
    let want = format!("{}/{}", own.trim_end_matches('/'), cg.name());
    let first = std::fs::read_to_string(dir.path().join("first-cgroup")).unwrap();
    assert_eq!(first.trim(), format!("0::{want}"), "the first thing the program saw");
    for &pid in &pids {
        assert_eq!(
            cgroup::cgroup_of(pid as u32).as_deref(),
            Some(want.as_str()),
            "pid {pid}"
        );
    }
    let mut listed = cg.procs().unwrap();
    listed.sort();
    let mut expected: Vec<u32> = pids.iter().map(|&p| p as u32).collect();
    expected.sort();
    assert_eq!(listed, expected);

    cg.kill().unwrap();
    assert!(wait_child(&mut child).signal() == Some(libc::SIGKILL));
    wait_for("the cgroup to empty", || !cg.populated().unwrap());
    for pid in pids {
        assert!(!alive(pid), "pid {pid} outlived cgroup.kill");
    }
    cg.remove().unwrap();
    assert!(!cg.path().exists());
}

#[test]
fn a_child_that_cannot_join_its_cgroup_is_not_started() {
    let Some(cg) = test_cgroup("gone") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(dir.path(), false);
    cg.join_on_spawn(&mut cmd).unwrap();
    cg.remove().unwrap();
    let err = cmd.spawn().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{err}");
    assert!(!dir.path().join("program.pid").exists());
}
