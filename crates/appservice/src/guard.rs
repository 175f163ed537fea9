//! The orphan guard: a tiny shell process that outlives strata by a moment.
//!
//! strata tells it, over a pipe, the process group of every instance it launches and
//! every one that ended. When the pipe closes without a clean `close` (strata was
//! killed, even with SIGKILL), the guard kills every group still registered. It lives
//! in its own process group, so a Ctrl-C at the terminal does not reach it first.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;

use anyhow::{Context, Result};

/// Reads `+ PGID` / `- PGID` lines; on end of input kills the groups left.
/// Builtins only in the loop, so it forks nothing while strata runs. No `--` before the
/// group: dash (Debian's /bin/sh) takes it for an illegal pid and kills nothing.
const SCRIPT: &str = r#"
groups=""
while read -r op id; do
  case "$op" in
    +) groups="$groups $id" ;;
    -) kept=""; for g in $groups; do [ "$g" = "$id" ] || kept="$kept $g"; done; groups=$kept ;;
  esac
done
for g in $groups; do kill -KILL "-$g" 2>/dev/null; done
"#;

pub(crate) struct Guard {
    stdin: Mutex<Option<ChildStdin>>,
    child: Mutex<Child>,
}

impl Guard {
    pub fn spawn() -> Result<Guard> {
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(SCRIPT)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .context("spawn /bin/sh for the orphan guard")?;
        let stdin = child.stdin.take();
        Ok(Guard {
            stdin: Mutex::new(stdin),
            child: Mutex::new(child),
        })
    }

    fn send(&self, line: &str) {
        if let Some(stdin) = self.stdin.lock().unwrap().as_mut() {
            if let Err(e) = stdin.write_all(line.as_bytes()) {
                tracing::warn!(error = %e, "orphan guard is gone; instances may outlive a crash of strata");
            }
        }
    }

    pub fn watch(&self, pgid: u32) {
        self.send(&format!("+ {pgid}\n"));
    }

    pub fn forget(&self, pgid: u32) {
        self.send(&format!("- {pgid}\n"));
    }

    /// Ends the guard once every instance was stopped cleanly.
    pub fn close(&self) {
        drop(self.stdin.lock().unwrap().take());
        let _ = self.child.lock().unwrap().wait();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // Closing stdin makes the guard kill what is left and exit.
        drop(self.stdin.lock().unwrap().take());
        let _ = self.child.lock().unwrap().wait();
    }
}
