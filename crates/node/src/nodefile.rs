//! `.strata/node.json`: written by `strata up`, read by the other commands run in the
//! app's directory to find the node's API.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use strata_api::NodeInfo;

#[derive(Debug, Clone, Deserialize)]
pub struct NodeFile {
    pub app: String,
    pub gateway: String,
    pub api: String,
    pub pid: u32,
}

pub fn write(path: &Path, info: &NodeInfo) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(info)?).context("write node state file")?;
    std::fs::rename(&tmp, path).context("move node state file into place")?;
    Ok(())
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

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map(|s| {
            !s.lines()
                .any(|l| l.starts_with("State:") && (l.contains("zombie") || l.contains("dead")))
        })
        .unwrap_or(false)
}
