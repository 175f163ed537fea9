//! The OCI runtime a node runs its containers with, and the runtime's commands strata
//! uses: `run` (in the foreground, `--keep`, `--pid-file`), `kill`, `delete --force`,
//! `list -q`, `--version`.
//!
//! crun is tried first and runc taken when crun is missing or refuses this machine: crun
//! is faster to start a container, but it refuses a hybrid cgroup layout (cgroup v1
//! controllers beside an empty v2 hierarchy, Debian 12's default), so a probe container
//! is run with it once per node before it is trusted. `STRATA_OCI_RUNTIME` (`crun`,
//! `runc` or a path) forces one runtime, probed by nothing.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::process::Command;

/// Names the runtime to use: `crun`, `runc`, or a path to either.
pub const RUNTIME_ENV: &str = "STRATA_OCI_RUNTIME";

/// How long a probe container may take before crun is passed over.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `kill`, `delete` or `list` may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Runtimes in the order they are preferred.
pub(crate) const PREFERRED: [&str; 2] = ["crun", "runc"];

/// A runtime on this machine.
#[derive(Debug, Clone)]
pub(crate) struct Runtime {
    /// `runc` or `crun` (or the file name of a forced path).
    pub name: String,
    pub path: PathBuf,
    /// As `--version` prints it, for example `1.1.5+ds1`.
    pub version: String,
    /// Why a preferred runtime is not the one used, for example that crun refused this
    /// machine's cgroup layout.
    pub passed_over: Option<String>,
}

impl Runtime {
    /// What `ps` shows: `runc 1.1.5+ds1`, and why crun is not used where it was tried.
    pub fn describe(&self) -> String {
        match &self.passed_over {
            Some(why) => format!("{} {} ({why})", self.name, self.version),
            None => format!("{} {}", self.name, self.version),
        }
    }

    /// The runtime to use: the one `STRATA_OCI_RUNTIME` names, or the first of
    /// [`PREFERRED`] that is installed and runs `probe` (a bundle directory is made
    /// for it by `make_probe`); the last one installed is taken without a probe.
    pub async fn detect<F>(make_probe: F) -> Result<Runtime>
    where
        F: Fn(&str) -> Result<(PathBuf, String)>,
    {
        if let Ok(forced) = std::env::var(RUNTIME_ENV) {
            if !forced.is_empty() {
                let path = if forced.contains('/') {
                    PathBuf::from(&forced)
                } else {
                    find_program(&forced)
                        .with_context(|| format!("{RUNTIME_ENV}={forced}, but {forced} is not installed"))?
                };
                return Runtime::at(&path, None).await;
            }
        }
        let installed: Vec<PathBuf> = PREFERRED.iter().filter_map(|name| find_program(name)).collect();
        Runtime::choose(&installed, make_probe).await
    }

    /// The first of `installed` that runs a probe container, or the last one.
    pub async fn choose<F>(installed: &[PathBuf], make_probe: F) -> Result<Runtime>
    where
        F: Fn(&str) -> Result<(PathBuf, String)>,
    {
        let Some((last, first)) = installed.split_last() else {
            bail!(
                "no OCI runtime is installed: the oci driver runs containers with runc or crun (apt-get install runc)"
            );
        };
        let mut passed_over = Vec::new();
        for path in first {
            let candidate = Runtime::at(path, None).await?;
            match candidate.probe(&make_probe).await {
                Ok(()) => return Ok(candidate),
                Err(why) => {
                    tracing::info!(runtime = %path.display(), "not used: {why}");
                    passed_over.push(format!("{} refused: {why}", candidate.name));
                }
            }
        }
        let why = (!passed_over.is_empty()).then(|| passed_over.join("; "));
        Runtime::at(last, why).await
    }

    /// The runtime at `path`, with its version.
    async fn at(path: &Path, passed_over: Option<String>) -> Result<Runtime> {
        let out = timed(Command::new(path).arg("--version"))
            .await
            .with_context(|| format!("run {} --version", path.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let version = text
            .lines()
            .next()
            .and_then(|l| l.split_once("version "))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "(version unknown)".into());
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        Ok(Runtime {
            name,
            path: path.to_path_buf(),
            version,
            passed_over,
        })
    }

    /// Runs a small container (`/bin/true` with limits, as an instance is run) and
    /// says why it failed.
    async fn probe<F>(&self, make_probe: &F) -> Result<(), String>
    where
        F: Fn(&str) -> Result<(PathBuf, String)>,
    {
        let (bundle, id) = make_probe(&self.name).map_err(|e| format!("{e:#}"))?;
        let mut cmd = Command::new(&self.path);
        cmd.arg("run").arg("--bundle").arg(&bundle).arg(&id);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.kill_on_drop(true);
        let ran = tokio::time::timeout(PROBE_TIMEOUT, cmd.output()).await;
        let _ = self.delete(&id).await;
        let _ = std::fs::remove_dir_all(&bundle);
        match ran {
            Err(_) => Err(format!("its probe container did not end within {PROBE_TIMEOUT:?}")),
            Ok(Err(e)) => Err(format!("cannot run it: {e}")),
            Ok(Ok(out)) if out.status.success() => Ok(()),
            Ok(Ok(out)) => {
                let said = String::from_utf8_lossy(&out.stderr);
                let last = said.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
                Err(format!("its probe container failed ({}): {last}", out.status))
            }
        }
    }

    /// `run` in the foreground: the runtime stays the container's parent, passes its
    /// stdio on, and exits as the container's program does; `--keep` leaves the ended
    /// container (and its cgroup, with its OOM count) until `delete`.
    pub fn run(&self, bundle: &Path, pid_file: &Path, id: &str) -> Command {
        let mut cmd = Command::new(&self.path);
        cmd.arg("run")
            .arg("--bundle")
            .arg(bundle)
            .arg("--pid-file")
            .arg(pid_file)
            .arg("--keep")
            .arg(id);
        cmd
    }

    /// Sends `signal` (`TERM`, `KILL`) to the container's first process.
    pub async fn kill(&self, id: &str, signal: &str) -> Result<(), String> {
        self.command(&["kill", id, signal]).await
    }

    /// Removes the container, killing what still runs in it.
    pub async fn delete(&self, id: &str) -> Result<(), String> {
        self.command(&["delete", "--force", id]).await
    }

    /// The ids of every container of this runtime (of this user).
    pub async fn list(&self) -> Result<Vec<String>, String> {
        let out = timed(Command::new(&self.path).args(["list", "-q"]))
            .await
            .map_err(|e| format!("{e:#}"))?;
        if !out.status.success() {
            return Err(last_line(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect())
    }

    async fn command(&self, args: &[&str]) -> Result<(), String> {
        let out = timed(Command::new(&self.path).args(args))
            .await
            .map_err(|e| format!("{e:#}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(last_line(&out.stderr))
        }
    }
}

/// Runs `cmd` to its end with its output captured, within [`COMMAND_TIMEOUT`].
async fn timed(cmd: &mut Command) -> Result<std::process::Output> {
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    match tokio::time::timeout(COMMAND_TIMEOUT, cmd.output()).await {
        Ok(out) => Ok(out?),
        Err(_) => bail!("it did not end within {COMMAND_TIMEOUT:?}"),
    }
}

fn last_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("(nothing said)")
        .trim()
        .to_string()
}

/// `name` on the PATH, or in the sbin and bin directories a non-root PATH may lack
/// (Debian installs runc as `/usr/sbin/runc`).
pub(crate) fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            [
                "/usr/local/sbin",
                "/usr/local/bin",
                "/usr/sbin",
                "/usr/bin",
                "/sbin",
                "/bin",
            ]
            .iter()
            .map(PathBuf::from),
        )
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake runtime: `--version` answers, `run` does what `run_body` says.
    fn fake(dir: &Path, name: &str, run_body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        let script = format!(
            "#!/bin/sh\ncase \"$1\" in\n  --version) echo \"{name} version 9.9\";;\n  run) {run_body};;\n  *) exit 0;;\nesac\n"
        );
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[tokio::test]
    async fn a_runtime_that_refuses_its_probe_is_passed_over_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let crun = fake(
            dir.path(),
            "crun",
            "echo 'cannot set memory limit: the cgroup layout is hybrid' >&2; exit 1",
        );
        let runc = fake(dir.path(), "runc", "exit 0");
        let probes = dir.path().to_path_buf();
        let make_probe = |name: &str| -> Result<(PathBuf, String)> {
            let bundle = probes.join(format!("probe-{name}"));
            std::fs::create_dir_all(&bundle)?;
            Ok((bundle, format!("probe-{name}")))
        };
        let chosen = Runtime::choose(&[crun.clone(), runc.clone()], make_probe)
            .await
            .unwrap();
        assert_eq!((chosen.name.as_str(), chosen.version.as_str()), ("runc", "9.9"));
        let said = chosen.describe();
        assert!(
            said.starts_with("runc 9.9 (crun refused: its probe container failed"),
            "{said}"
        );
        assert!(said.contains("the cgroup layout is hybrid"), "{said}");

        // A crun that works is taken, and its probe bundle removed.
        let crun = fake(dir.path(), "crun", "exit 0");
        let chosen = Runtime::choose(&[crun, runc.clone()], make_probe).await.unwrap();
        assert_eq!((chosen.name.as_str(), chosen.passed_over.as_deref()), ("crun", None));
        assert!(!dir.path().join("probe-crun").exists());

        // The last one is taken unprobed; none at all is an error that says what to
        // install.
        let chosen = Runtime::choose(&[runc], make_probe).await.unwrap();
        assert_eq!(chosen.describe(), "runc 9.9");
        let none = Runtime::choose(&[], make_probe).await.unwrap_err().to_string();
        assert!(none.contains("apt-get install runc"), "{none}");
    }
}
