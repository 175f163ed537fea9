//! What tests that need a tool from outside the repository (redis-cli, python3 with a
//! package) share: the rule for when the tool is missing. Under CI (`CI=true`) a
//! missing tool fails the test, since `.ci/run` installs every tool; elsewhere the test
//! is skipped, and says so where a person sees it (straight to the terminal, past the
//! test harness's capture of passing tests' output), so a run without the tool never
//! looks like a full pass.
//!
//! Used as a dev-dependency only. Its own test `tests/architecture.rs` checks the crate
//! dependency rules of ARCHITECTURE.md against every `Cargo.toml`.

pub mod nats;

use std::io::Write;

/// Whether a test that needs `what` may go on: `Ok(())` when it is there; when it is
/// missing (`Err(why)`), panics under CI and otherwise prints a visible SKIPPED line and
/// answers false.
#[track_caller]
pub fn needs(test: &str, what: Result<(), String>) -> bool {
    let Err(why) = what else {
        return true;
    };
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{test} needs {why}: CI must install it (see .ci/run)");
    }
    // Not eprintln!: the harness captures that for passing tests and the skip would be
    // invisible. A direct write to the process's stderr is shown.
    let _ = writeln!(std::io::stderr().lock(), "\nSKIPPED {test}: needs {why}");
    false
}

/// `Ok(())` when the program `name` is on the PATH, else why not with the install hint.
pub fn program(name: &str, install: &str) -> Result<(), String> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .any(|d| d.join(name).is_file());
    if found {
        Ok(())
    } else {
        Err(format!("{name}, which is not installed ({install})"))
    }
}

/// `Ok(())` when `python3 -c "import MODULE"` works, else why not with the install hint.
pub fn python_module(module: &str, install: &str) -> Result<(), String> {
    let ok = std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Ok(())
    } else {
        Err(format!("python3 with the {module} package ({install})"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_present_tool_goes_on_and_a_missing_one_is_named() {
        assert!(super::needs("t", super::program("sh", "apt-get install dash")));
        let missing = super::program("no-such-tool-strata", "apt-get install nothing");
        assert!(missing.as_ref().unwrap_err().contains("no-such-tool-strata"));
    }
}
