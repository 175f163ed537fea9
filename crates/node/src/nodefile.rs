//! How CLI commands find a running node: `.strata/node.json` in the app's directory,
//! written by `strata up` and read by the commands run there; and beside it, the user's
//! registry of running nodes, one small JSON file per node in
//! `$XDG_RUNTIME_DIR/strata/nodes/` (or `/tmp/strata-$UID/nodes/`), which commands run
//! anywhere else read to find the node the user started (`strata ls`).
//!
//! Beside node.json, `control.token` (0600): the node API's control token, which the
//! CLI sends with every call ([`write_token`], [`read_token`], [`token_for_api`]).
//!
//! A file whose node is gone (killed before it could remove it) is ignored by readers,
//! and a registry entry of a dead pid is removed by the first reader that sees it.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use strata_api::NodeInfo;

#[derive(Debug, Clone, Deserialize)]
pub struct NodeFile {
    pub app: String,
    pub gateway: String,
    pub api: String,
    pub pid: u32,
}

/// One running node in the user's registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registered {
    pub app: String,
    /// The app's directory (where its strata.json and .strata/ are): `strata -C DIR`.
    pub dir: PathBuf,
    pub gateway: String,
    pub api: String,
    pub pid: u32,
}

/// Writes `path` (the state dir's node.json) and registers the node in the user's
/// registry; the app dir is the state dir's parent (`strata up` keeps its state in
/// `APP/.strata`). A registry that cannot be written is a warning: the node runs, and
/// commands in its directory still find it.
pub fn write(path: &Path, info: &NodeInfo) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(info)?).context("write node state file")?;
    std::fs::rename(&tmp, path).context("move node state file into place")?;
    let Some(entry) = registry_entry(path) else {
        return Ok(());
    };
    let dir = path.parent().and_then(Path::parent).unwrap_or(Path::new("."));
    let registered = Registered {
        app: info.app.clone(),
        dir: dir.to_path_buf(),
        gateway: info.gateway.clone(),
        api: info.api.clone(),
        pid: info.pid,
    };
    let written = serde_json::to_vec_pretty(&registered)
        .map_err(anyhow::Error::from)
        .and_then(|text| {
            let tmp = entry.with_extension("json.tmp");
            std::fs::write(&tmp, text)?;
            std::fs::rename(&tmp, &entry)?;
            Ok(())
        });
    if let Err(e) = written {
        tracing::warn!(entry = %entry.display(), error = %e, "could not register the node for `strata ls`");
    }
    Ok(())
}

/// Removes the node file at `path` and the node's registry entry (when it is this
/// process's: a later node of the same app may have replaced it).
pub fn remove(path: &Path) {
    let _ = std::fs::remove_file(path);
    if let Some(entry) = registry_entry(path) {
        let ours = read_entry(&entry).is_some_and(|r| r.pid == std::process::id());
        if ours {
            let _ = std::fs::remove_file(entry);
        }
    }
}

/// The running nodes of this user, by app name then directory; entries of processes
/// that are gone are removed.
pub fn registered() -> Vec<Registered> {
    let Some(dir) = registry_dir() else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut nodes = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        match read_entry(&path) {
            Some(node) if alive(node.pid) => nodes.push(node),
            // A node killed before it could remove its entry (or a file that is not one).
            _ => {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    nodes.sort_by(|a, b| (&a.app, &a.dir).cmp(&(&b.app, &b.dir)));
    nodes
}

/// The running node of the app whose state dir is `dir`.
pub fn read(dir: &Path) -> Result<NodeFile> {
    let path = dir.join("node.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(_) => bail!(
            "no running strata node found for {} (no {}); start one with `strata up`, or pass --api URL",
            dir.parent().unwrap_or(dir).display(),
            path.display()
        ),
    };
    let node: NodeFile = serde_json::from_str(&text).with_context(|| format!("read {}", path.display()))?;
    if !alive(node.pid) {
        bail!(
            "the strata node of {} (pid {}) is not running any more; start it with `strata up`",
            node.app,
            node.pid
        );
    }
    Ok(node)
}

/// Whether process `pid` runs (a zombie counts as gone).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map(|s| {
            !s.lines()
                .any(|l| l.starts_with("State:") && (l.contains("zombie") || l.contains("dead")))
        })
        .unwrap_or(false)
}

/// The control token's file in a state dir: the CLI's key to the node API.
pub const TOKEN_FILE: &str = "control.token";

/// Writes the control token to `state_dir/control.token`, the owner's alone (0600),
/// in place of an earlier node's → its path.
pub fn write_token(state_dir: &Path, token: &str) -> Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = state_dir.join(TOKEN_FILE);
    let tmp = state_dir.join(format!("{TOKEN_FILE}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("create {}", tmp.display()))?;
    file.write_all(format!("{token}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("move {} into place", path.display()))?;
    Ok(path)
}

/// The control token in the state dir `state_dir`, if there is one.
pub fn read_token(state_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(state_dir.join(TOKEN_FILE)).ok()?;
    let token = text.trim();
    (!token.is_empty()).then(|| token.to_string())
}

/// The control token of the running node whose API is `api` (`http://HOST:PORT`),
/// found through the user's registry of running nodes.
pub fn token_for_api(api: &str) -> Option<String> {
    let bare = |url: &str| {
        url.trim_start_matches("http://")
            .trim_end_matches('/')
            .to_ascii_lowercase()
    };
    let want = bare(api);
    registered()
        .into_iter()
        .find(|node| bare(&node.api) == want)
        .and_then(|node| read_token(&node.dir.join(".strata")))
}

fn read_entry(path: &Path) -> Option<Registered> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// The registry entry of the node whose node file is `node_file`: named by the app dir,
/// so a node started again in the same dir replaces the entry of one that was killed.
fn registry_entry(node_file: &Path) -> Option<PathBuf> {
    let app_dir = node_file.parent()?.parent()?;
    let name = app_dir.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    let hash = fnv1a(app_dir.as_os_str().as_encoded_bytes());
    Some(registry_dir()?.join(format!("{safe}-{hash:016x}.json")))
}

/// A hash that stays the same across builds (std's does not promise to).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `$XDG_RUNTIME_DIR/strata/nodes` (or `/tmp/strata-$UID/nodes`), made if missing; None
/// when it cannot be made or is not this user's alone.
fn registry_dir() -> Option<PathBuf> {
    // The owner of /proc/self is this process's user (std has no getuid).
    let uid = std::fs::metadata("/proc/self").ok()?.uid();
    let base = match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(runtime) if runtime.is_absolute() && runtime.is_dir() => runtime.join("strata"),
        _ => std::env::temp_dir().join(format!("strata-{uid}")),
    };
    let dir = base.join("nodes");
    if let Err(e) = std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir) {
        tracing::debug!(dir = %dir.display(), error = %e, "no registry of running nodes");
        return None;
    }
    for d in [&base, &dir] {
        let meta = std::fs::symlink_metadata(d).ok()?;
        if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o022 != 0 {
            tracing::warn!(dir = %d.display(), "not using the registry of running nodes: the dir is not this user's alone");
            return None;
        }
    }
    Some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_entries_are_named_by_the_app_dir() {
        let a = registry_entry(Path::new("/srv/shop/.strata/node.json"));
        let b = registry_entry(Path::new("/home/me/shop/.strata/node.json"));
        if let (Some(a), Some(b)) = (a, b) {
            assert_ne!(a, b, "two apps of one name in two dirs");
            let name = a.file_name().unwrap().to_string_lossy().into_owned();
            assert!(name.starts_with("shop-") && name.ends_with(".json"), "{name}");
        }
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
