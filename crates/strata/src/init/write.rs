//! The manifest `init` writes: its text (fields in the order a reader wants them, short
//! arrays and objects on one line), the questions on the terminal, and the write that
//! never replaces a strata.json unasked.

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use super::{Service, Setup, GATEWAY_LISTEN};

/// Lines up to this long are kept on one line.
const LINE_WIDTH: usize = 120;

#[derive(Serialize)]
struct Draft<'a> {
    strata: u32,
    app: &'a str,
    gateway: GatewayDraft,
    services: InOrder<'a>,
}

#[derive(Serialize)]
struct GatewayDraft {
    listen: &'static str,
}

/// The services in the order they were found (the main one first), not by name.
struct InOrder<'a>(&'a [Service]);

impl Serialize for InOrder<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for service in self.0 {
            map.serialize_entry(&service.name, &ServiceDraft::of(service))?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct ServiceDraft<'a> {
    run: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    workdir: Option<&'a str>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    env: &'a std::collections::BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    setup: Option<SetupDraft<'a>>,
    instances: InstancesDraft,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    routes: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    health: Option<HealthDraft<'a>>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    bindings: &'a [String],
}

impl<'a> ServiceDraft<'a> {
    fn of(s: &'a Service) -> ServiceDraft<'a> {
        ServiceDraft {
            run: &s.run,
            workdir: s.workdir.as_deref(),
            env: &s.env,
            setup: s.setup.as_ref().map(SetupDraft::of),
            instances: InstancesDraft { min: 1, max: 1 },
            routes: &s.routes,
            health: s.health.as_deref().map(|path| HealthDraft { path }),
            bindings: &s.bindings,
        }
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum SetupDraft<'a> {
    Argv(&'a [String]),
    Full { run: &'a [String], inputs: &'a [String] },
}

impl<'a> SetupDraft<'a> {
    fn of(setup: &'a Setup) -> SetupDraft<'a> {
        if setup.inputs.is_empty() {
            SetupDraft::Argv(&setup.run)
        } else {
            SetupDraft::Full {
                run: &setup.run,
                inputs: &setup.inputs,
            }
        }
    }
}

#[derive(Serialize)]
struct InstancesDraft {
    min: u32,
    max: u32,
}

#[derive(Serialize)]
struct HealthDraft<'a> {
    path: &'a str,
}

/// The manifest text of `services`, ending with a newline.
pub(crate) fn render(app: &str, services: &[Service]) -> String {
    let draft = Draft {
        strata: strata_manifest::VERSION,
        app,
        gateway: GatewayDraft { listen: GATEWAY_LISTEN },
        services: InOrder(services),
    };
    let pretty = serde_json::to_string_pretty(&draft).expect("a draft always serializes");
    let mut text = compact(&pretty);
    text.push('\n');
    text
}

/// Pretty-printed JSON with every array or object that fits in [`LINE_WIDTH`] (and holds
/// no block left open over several lines) joined onto one line.
fn compact(pretty: &str) -> String {
    let mut lines: Vec<String> = Vec::new();
    // Per open block: its first line's index and whether all it holds is on one line each.
    let mut open: Vec<(usize, bool)> = Vec::new();
    for line in pretty.lines() {
        let trimmed = line.trim();
        if trimmed.ends_with('[') || trimmed.ends_with('{') {
            open.push((lines.len(), true));
            lines.push(line.to_string());
            continue;
        }
        if trimmed.starts_with(']') || trimmed.starts_with('}') {
            let (start, flat) = open.pop().expect("balanced JSON");
            let joined = format!(
                "{}{}{}",
                lines[start],
                lines[start + 1..]
                    .iter()
                    .map(|l| l.trim())
                    .collect::<Vec<_>>()
                    .join(" "),
                trimmed
            );
            if flat && joined.len() <= LINE_WIDTH {
                lines.truncate(start);
                lines.push(joined);
            } else {
                lines.push(line.to_string());
                if let Some(parent) = open.last_mut() {
                    parent.1 = false;
                }
            }
            continue;
        }
        lines.push(line.to_string());
    }
    lines.join("\n")
}

/// Asks a yes/no question on the terminal; an empty answer (or end of input) is `default`.
pub(crate) fn confirm(question: &str, default: bool) -> Result<bool> {
    let hint = if default { "[Y/n]" } else { "[y/N]" };
    let mut err = std::io::stderr();
    write!(err, "{question} {hint} ")?;
    err.flush()?;
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("read the answer")?;
    Ok(match answer.trim().to_ascii_lowercase().as_str() {
        "" => default,
        a => a == "y" || a == "yes",
    })
}

/// Writes the manifest; an existing one is replaced only with `force` or when the user
/// says so. Returns whether it was written.
pub(crate) fn write(target: &Path, text: &str, exists: bool, force: bool, interactive: bool) -> Result<bool> {
    if exists && !force {
        if !interactive {
            bail!(
                "{} already exists and was left as it is; pass --force to replace it",
                target.display()
            );
        }
        if !confirm(&format!("{} already exists: replace it?", target.display()), false)? {
            return Ok(false);
        }
    }
    if exists {
        let tmp = target.with_extension("json.tmp");
        std::fs::write(&tmp, text).with_context(|| format!("write {}", tmp.display()))?;
        std::fs::rename(&tmp, target).with_context(|| format!("replace {}", target.display()))?;
    } else {
        // create_new: a strata.json that appeared since the check is not replaced.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(target)
            .with_context(|| format!("create {}", target.display()))?;
        file.write_all(text.as_bytes())
            .with_context(|| format!("write {}", target.display()))?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_blocks_go_on_one_line() {
        let pretty = serde_json::to_string_pretty(&serde_json::json!({
            "a": {"run": ["python3", "-m", "x"], "health": {"path": "/h"}, "long": ["x".repeat(LINE_WIDTH)]}
        }))
        .unwrap();
        let text = compact(&pretty);
        assert!(text.contains("\"run\": [\"python3\", \"-m\", \"x\"]"), "{text}");
        assert!(text.contains("\"health\": {\"path\": \"/h\"}"), "{text}");
        assert!(text.lines().count() > 3, "{text}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            serde_json::from_str::<serde_json::Value>(&pretty).unwrap()
        );
    }
}
