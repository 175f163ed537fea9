//! Which node a command talks to, in this order: `--api URL`; the app in `-C DIR`; the
//! app in the current directory (one with a strata.json or a .strata/node.json: there,
//! only that app's node is used, so `strata down` never stops another app's); and
//! otherwise the user's registry of running nodes (`strata ls`): the node whose app
//! directory holds the current one, or the only node running. With several and no way to
//! choose, the error lists them and says to pass `-C DIR`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use strata_node::nodefile::{self, Registered};

/// The node a command talks to.
pub struct Located {
    /// The node API URL.
    pub api: String,
    /// The node's process, when known from its node file or registry entry.
    pub pid: Option<u32>,
    /// Set when the node was found in the registry rather than where the command was
    /// pointed: which one it is, said to a person on stderr.
    pub note: Option<String>,
}

/// Finds the node; `dir` is `-C DIR`, when given.
pub fn node(api: Option<&str>, dir: Option<&Path>) -> Result<Located> {
    if let Some(url) = api {
        return Ok(Located {
            api: url.to_string(),
            pid: None,
            note: None,
        });
    }
    if let Some(dir) = dir {
        return in_dir(dir);
    }
    let here = Path::new(".");
    if here.join("strata.json").exists() || here.join(".strata").join("node.json").exists() {
        return in_dir(here).map_err(|e| match others_running(&nodefile::registered()) {
            Some(others) => anyhow::anyhow!("{e:#}\n{others}"),
            None => e,
        });
    }
    let nodes = nodefile::registered();
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    // The deepest app dir holding the current one: a command run in an app's subfolder.
    let holding = nodes
        .iter()
        .filter(|n| cwd.starts_with(std::fs::canonicalize(&n.dir).unwrap_or_else(|_| n.dir.clone())))
        .max_by_key(|n| n.dir.as_os_str().len());
    let (node, why) = match (holding, nodes.as_slice()) {
        (Some(node), _) => (node, "its app dir holds this one"),
        (None, [only]) => (only, "the only node running"),
        (None, []) => bail!(
            "no running strata node found: none in {} and none elsewhere (`strata ls`); \
             start one with `strata up` in the app's directory, or pass -C DIR or --api URL",
            cwd.display()
        ),
        (None, several) => bail!(
            "{} strata nodes are running and none in {}; say which with -C DIR:\n{}",
            several.len(),
            cwd.display(),
            listing(several)
        ),
    };
    Ok(Located {
        api: node.api.clone(),
        pid: Some(node.pid),
        note: Some(format!(
            "strata: using the node of app {} in {} ({why}; `strata ls` lists them)",
            node.app,
            node.dir.display()
        )),
    })
}

/// The node of the app in `dir`, by its node file.
fn in_dir(dir: &Path) -> Result<Located> {
    let node = nodefile::read(&dir.join(".strata"))?;
    Ok(Located {
        api: node.api,
        pid: Some(node.pid),
        note: None,
    })
}

/// "other nodes run: ..." when some do, to add to the error of an app dir whose node
/// does not run.
fn others_running(nodes: &[Registered]) -> Option<String> {
    (!nodes.is_empty()).then(|| format!("running elsewhere (use -C DIR):\n{}", listing(nodes)))
}

fn listing(nodes: &[Registered]) -> String {
    nodes
        .iter()
        .map(|n| {
            format!(
                "  {}  -C {}  (pid {}, gateway http://{})",
                n.app,
                n.dir.display(),
                n.pid,
                n.gateway
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
