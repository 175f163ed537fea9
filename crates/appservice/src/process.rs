//! The process driver: an instance is a child process in its own process group, held
//! with everything it starts in a container (`guard`: a cgroup, or a subreaper shim).

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::process::{Child, Command};

use crate::guard::{Container, Guard};

/// After the whole tree was killed, the leader is waited for at most this long before
/// it is sent SIGKILL itself (a shim that does not end its tree).
const KILLED_WAIT: Duration = Duration::from_secs(10);

pub(crate) struct Launch<'a> {
    /// What runs, for the container's name: an instance id with its launch number, or a
    /// setup step.
    pub name: &'a str,
    pub argv: &'a [String],
    pub workdir: &'a Path,
    pub env: &'a BTreeMap<String, String>,
    pub log: &'a Path,
}

/// A launched process: the leader of its process group, in its container.
pub(crate) struct Process {
    pub child: Child,
    /// The spawned process: the leader of the group (the shim, under a shim).
    pub pid: u32,
    /// The program's own pid, as `ps` shows it (under a shim, the shim's child).
    pub program_pid: u32,
    container: Container,
    /// Whether the container was emptied and removed.
    cleared: bool,
}

impl Process {
    /// Kills the program and everything it started, now; its end is still to be waited
    /// for.
    pub fn kill(&mut self) {
        let running = matches!(self.child.try_wait(), Ok(None));
        self.container.kill(self.pid, running);
    }

    /// Kills the whole tree and waits for the leader to end; then [`Process::clear`].
    pub async fn kill_and_clear(&mut self) -> Option<ExitStatus> {
        self.kill();
        let status = match tokio::time::timeout(KILLED_WAIT, self.child.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                tracing::warn!(pid = self.pid, "a killed instance did not end; sending it SIGKILL");
                let _ = self.child.start_kill();
                self.child.wait().await.ok()
            }
        };
        self.clear().await;
        status
    }

    /// Once the leader has ended: kills whatever it left, waits until nothing of its tree
    /// is left, and removes its container.
    pub async fn clear(&mut self) {
        self.container.clear().await;
        if matches!(self.container, Container::Shim) {
            // A shim killed from outside leaves its program behind; its process group
            // still finds it.
            signal_group(self.pid, libc::SIGKILL);
        }
        self.cleared = true;
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if !self.cleared {
            self.kill();
        }
    }
}

/// Where one run's output went: its log file, from the length it had at launch.
pub(crate) struct RunLog {
    path: PathBuf,
    start: u64,
}

/// At most this much of a run's output is read for its last lines.
const TAIL_BYTES: u64 = 16 * 1024;
/// Longer lines are cut to this many characters.
const LINE_CHARS: usize = 300;

impl RunLog {
    /// The last `n` lines this run wrote, oldest first (read on the blocking pool).
    pub(crate) async fn last_lines(&self, n: usize) -> Vec<String> {
        let (path, start) = (self.path.clone(), self.start);
        tokio::task::spawn_blocking(move || last_lines(&path, start, n).unwrap_or_default())
            .await
            .unwrap_or_default()
    }
}

fn last_lines(path: &Path, start: u64, n: usize) -> std::io::Result<Vec<String>> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let from = start.max(len.saturating_sub(TAIL_BYTES));
    file.seek(SeekFrom::Start(from))?;
    let mut bytes = Vec::new();
    file.take(len - from.min(len)).read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<&str> = text.lines().collect();
    if from > start && !lines.is_empty() {
        // The read began inside a line.
        lines.remove(0);
    }
    let keep = lines.len().saturating_sub(n);
    Ok(lines[keep..]
        .iter()
        .map(|line| {
            let line = line.trim_end_matches('\r');
            if line.chars().count() > LINE_CHARS {
                line.chars().take(LINE_CHARS - 1).collect::<String>() + "…"
            } else {
                line.to_string()
            }
        })
        .collect())
}

/// Starts the program in a new process group, contained by `guard`, with stdout and
/// stderr appended to `log`.
pub(crate) fn launch(guard: &Guard, spec: Launch<'_>) -> Result<(Process, RunLog)> {
    let (log, log_err, run_log) = open_log(spec.log)?;
    let (program, args) = spec.argv.split_first().context("run is empty")?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(spec.workdir)
        .envs(spec.env)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0);
    let container = guard.contain(&mut cmd, spec.name)?;
    let spawned = cmd.spawn().map_err(|e| {
        // ENOENT names neither the program nor the folder: say which one is missing.
        let why = if !spec.workdir.is_dir() {
            format!("its workdir {} is not a folder", spec.workdir.display())
        } else if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "no such program (on the PATH, or relative to {})",
                spec.workdir.display()
            )
        } else {
            e.to_string()
        };
        anyhow::anyhow!("start {program:?}: {why}")
    });
    let child = match spawned {
        Ok(child) => child,
        Err(e) => {
            container.discard();
            return Err(e);
        }
    };
    let pid = child.id().context("child exited before its pid was read")?;
    let program_pid = match container {
        Container::Shim => strata_os::contain::shim::program_of(pid).unwrap_or(pid),
        Container::Cgroup(_) => pid,
    };
    let process = Process {
        child,
        pid,
        program_pid,
        container,
        cleared: false,
    };
    Ok((process, run_log))
}

/// Opens a run's log for appending: one handle for stdout, one for stderr, and where
/// this run's output starts.
pub(crate) fn open_log(path: &Path) -> Result<(std::fs::File, std::fs::File, RunLog)> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("open log file {}", path.display()))?;
    let run_log = RunLog {
        path: path.to_path_buf(),
        start: log.metadata().map(|m| m.len()).unwrap_or(0),
    };
    let log_err = log.try_clone().context("duplicate log file handle")?;
    Ok((log, log_err, run_log))
}

/// Sends `signal` to the whole process group.
pub(crate) fn signal_group(pgid: u32, signal: i32) {
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is touched.
    unsafe {
        libc::kill(-(pgid as i32), signal);
    }
}

/// SIGTERM to the group, then, after `grace` if the leader is still running, the whole
/// tree is killed; then anything of the instance left (a daemon it started) is killed
/// and its container removed.
pub(crate) async fn stop(process: &mut Process, grace: Duration) -> Option<ExitStatus> {
    if matches!(process.child.try_wait(), Ok(None)) {
        signal_group(process.pid, libc::SIGTERM);
    }
    match tokio::time::timeout(grace, process.child.wait()).await {
        Ok(status) => {
            process.clear().await;
            status.ok()
        }
        Err(_) => process.kill_and_clear().await,
    }
}

/// Says how a process ended, in words.
pub(crate) fn describe(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}{}", signal_name(sig)),
        _ => "ended".to_string(),
    }
}

pub(crate) fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGKILL => " (SIGKILL)",
        libc::SIGTERM => " (SIGTERM)",
        libc::SIGSEGV => " (SIGSEGV)",
        libc::SIGABRT => " (SIGABRT)",
        libc::SIGINT => " (SIGINT)",
        _ => "",
    }
}

/// Expands `${NAME}` from `env`, then from the process environment; an unknown name
/// expands to nothing.
pub(crate) fn expand(text: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                let name = &after[..end];
                match env.get(name) {
                    Some(v) => out.push_str(v),
                    None => out.push_str(&std::env::var(name).unwrap_or_default()),
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_lines_are_those_of_this_run_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web-1.log");
        std::fs::write(&path, "earlier run\n").unwrap();
        let start = std::fs::metadata(&path).unwrap().len();
        let mut text = String::new();
        for i in 0..30 {
            text.push_str(&format!("line {i}\r\n"));
        }
        text.push_str(&"x".repeat(1000));
        std::fs::write(&path, format!("earlier run\n{text}")).unwrap();
        let lines = last_lines(&path, start, 5).unwrap();
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[0], "line 26");
        assert!(lines[4].ends_with('…') && lines[4].chars().count() == LINE_CHARS);
        assert_eq!(
            last_lines(&path, start + text.len() as u64, 5).unwrap(),
            Vec::<String>::new()
        );
        // A long run's output: only its end is read, and the cut line left out.
        std::fs::write(&path, "y".repeat(40_000) + "\nlast\n").unwrap();
        assert_eq!(last_lines(&path, 0, 20).unwrap(), vec!["last".to_string()]);
    }

    #[test]
    fn expands_known_names_and_leaves_unterminated_text() {
        let env = BTreeMap::from([("PORT".to_string(), "8081".to_string())]);
        assert_eq!(expand("--port=${PORT}", &env), "--port=8081");
        assert_eq!(expand("${STRATA_NOPE_X}x", &env), "x");
        assert_eq!(expand("a ${PORT", &env), "a ${PORT");
        assert_eq!(expand("$PORT", &env), "$PORT");
    }
}
