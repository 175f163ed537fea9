//! The setup steps `init` writes: a folder's Python packages into `.deps` (pip
//! `--target`, so nothing outside the app's folder changes), its npm packages into
//! `node_modules`; and whether a program is on PATH.

use std::path::Path;

use super::detect::{words, Folder};
use super::Setup;

/// `pip install --target .deps` of requirements.txt, else of the pyproject.toml project;
/// None when the folder has neither. The file is the step's input: the step runs again
/// when it changes.
pub(crate) fn python_deps(folder: &Folder) -> Option<Setup> {
    let pip = ["python3", "-m", "pip", "install", "--target", ".deps"];
    if folder.has("requirements.txt") {
        let mut run = words(&pip);
        run.extend(words(&["-r", "requirements.txt"]));
        return Some(Setup {
            run,
            inputs: vec!["requirements.txt".into()],
        });
    }
    if folder.has("pyproject.toml") {
        let mut run = words(&pip);
        run.push(".".into());
        return Some(Setup {
            run,
            inputs: vec!["pyproject.toml".into()],
        });
    }
    None
}

/// `npm install`, with package.json and the lock file (when there is one) as inputs.
pub(crate) fn node_deps(folder: &Folder) -> Setup {
    let mut inputs = vec!["package.json".to_string()];
    if folder.has("package-lock.json") {
        inputs.push("package-lock.json".into());
    }
    Setup {
        run: words(&["npm", "install"]),
        inputs,
    }
}

/// Whether a package.json lists packages to install.
pub(crate) fn lists_packages(package: &serde_json::Value) -> bool {
    ["dependencies", "devDependencies"]
        .iter()
        .any(|k| package[k].as_object().is_some_and(|d| !d.is_empty()))
}

/// Both steps in one, for a folder that needs both (a setup step is one command).
pub(crate) fn both(first: Setup, second: Setup) -> Setup {
    let line = format!("{} && {}", first.run.join(" "), second.run.join(" "));
    let mut inputs = first.inputs;
    inputs.extend(second.inputs);
    Setup {
        run: vec!["sh".into(), "-c".into(), line],
        inputs,
    }
}

/// Whether `program` is an executable file in a directory of PATH.
pub(crate) fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| {
        Path::new(&dir)
            .join(program)
            .metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}
