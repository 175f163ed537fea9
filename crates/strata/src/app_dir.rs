//! What the CLI reads from the app's folder itself, with or without a node running: the
//! manifest and its checks (`strata validate`, and `strata up` before it starts a node),
//! and the logs runs left in `.strata/logs` (`strata logs` with no node running).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::out;

/// Reads and checks a manifest; the error lists every problem found, one per line.
pub(crate) fn load(file: &Path) -> Result<strata_manifest::Manifest> {
    let problems = match strata_manifest::load_to_run(file) {
        Ok(manifest) => return Ok(manifest),
        Err(problems) => problems,
    };
    if let [read @ strata_manifest::ManifestError::Read { .. }] = problems.as_slice() {
        bail!("{read}");
    }
    let mut text = match problems.len() {
        1 => format!("{} is not valid:", file.display()),
        n => format!("{} is not valid ({n} problems):", file.display()),
    };
    for p in &problems {
        text.push_str(&format!("\n  {p}"));
    }
    bail!("{text}")
}

/// Each service whose `image` is a `sha256:` digest the image store does not hold.
pub(crate) fn unimported_images(manifest: &strata_manifest::Manifest) -> Vec<strata_manifest::ManifestError> {
    let root = strata_appservice::image::ImageStore::default_root();
    let mut problems = Vec::new();
    for (name, spec) in &manifest.services {
        let Some(digest) = spec.image.as_deref().filter(|i| i.starts_with("sha256:")) else {
            continue;
        };
        let held = root.is_dir()
            && strata_appservice::image::ImageStore::open(&root)
                .ok()
                .and_then(|store| store.get(digest).ok().flatten())
                .is_some();
        if !held {
            problems.push(strata_manifest::ManifestError::Invalid {
                path: format!("services.{name}.image"),
                expected: format!("an image imported with `strata image import` (into {})", root.display()),
                found: format!("{digest}, which the image store does not hold"),
            });
        }
    }
    problems
}

/// `strata validate`: every problem of the manifest (the error), or what it holds.
pub(crate) fn validate(file: &Path) -> Result<()> {
    let manifest = load(file)?;
    let mut parts = Vec::new();
    for (kind, names) in [
        ("service(s)", manifest.services.keys().cloned().collect::<Vec<_>>()),
        ("function(s)", manifest.functions.keys().cloned().collect::<Vec<_>>()),
    ] {
        if !names.is_empty() {
            parts.push(format!("{} {kind}: {}", names.len(), names.join(", ")));
        }
    }
    let what = parts.join("; ");
    out::line(format!("{}: app {:?} is valid ({what})", file.display(), manifest.app))?;
    for note in unset_references(&manifest) {
        out::line(format!("note: {note}"))?;
    }
    // Images are this machine's (`strata up` refuses a digest its store lacks; a node of
    // a cluster has its own store).
    for problem in unimported_images(&manifest) {
        out::line(format!("note: {problem}: `strata up` here would refuse it"))?;
    }
    Ok(())
}

/// What `${NAME}` references expand to nothing here ([`Manifest::unset_references`]).
pub(crate) fn unset_references(manifest: &strata_manifest::Manifest) -> Vec<String> {
    manifest
        .expanded()
        .unset_references(|name| std::env::var_os(name).is_some())
}

/// `strata logs` with no node running: prints the log files a run left in
/// `dir/.strata/logs/SERVICE/` as the node would (`INSTANCE | line`), oldest file first.
/// False when there are none.
pub(crate) fn logs_from_files(dir: &Path, service: &str, instance: Option<&str>, setup: bool) -> Result<bool> {
    let logs = dir.join(".strata").join("logs").join(service);
    let Ok(entries) = std::fs::read_dir(&logs) else {
        return Ok(false);
    };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .filter(|p| {
            let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            match (setup, instance) {
                (true, _) => stem == "setup",
                (false, Some(id)) => stem == id,
                (false, None) => stem != "setup",
            }
        })
        .map(|p| {
            (
                std::fs::metadata(&p)
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH),
                p,
            )
        })
        .collect();
    if files.is_empty() {
        return Ok(false);
    }
    files.sort();
    eprintln!(
        "strata: no node is running here; the logs its runs left in {}:",
        logs.display()
    );
    for (_, file) in files {
        let label = file.file_stem().and_then(|s| s.to_str()).unwrap_or("?").to_string();
        // A line at a time: a log is never rotated and may be gigabytes.
        let mut reader =
            std::io::BufReader::new(std::fs::File::open(&file).with_context(|| format!("read {}", file.display()))?);
        out::stdout(|o| {
            let mut line = Vec::new();
            while std::io::BufRead::read_until(&mut reader, b'\n', &mut line)? > 0 {
                o.write_all(label.as_bytes())?;
                o.write_all(b" | ")?;
                o.write_all(&line)?;
                if !line.ends_with(b"\n") {
                    o.write_all(b"\n")?;
                }
                line.clear();
            }
            Ok(())
        })?;
    }
    Ok(true)
}
