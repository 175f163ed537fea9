//! The crate dependency rules of ARCHITECTURE.md ("Crates and which may depend on
//! which"), checked against the `Cargo.toml` files, so that a new dependency that breaks
//! them fails here rather than in a review.

use std::collections::BTreeMap;
use std::path::Path;

/// Each crate's `[dependencies]` names (dev-dependencies are not the architecture).
fn dependencies() -> BTreeMap<String, Vec<String>> {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&crates).unwrap() {
        let toml = entry.unwrap().path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&toml) else {
            continue;
        };
        let name = text
            .lines()
            .find_map(|l| l.strip_prefix("name = \""))
            .and_then(|l| l.strip_suffix('"'))
            .expect("a package name")
            .to_string();
        let mut deps = Vec::new();
        let mut in_deps = false;
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('[') {
                in_deps = line == "[dependencies]";
                continue;
            }
            if in_deps {
                if let Some(dep) = line.split(['=', '.', ' ']).next().filter(|d| !d.is_empty()) {
                    deps.push(dep.to_string());
                }
            }
        }
        out.insert(name, deps);
    }
    out
}

const HTTP: [&str; 6] = ["hyper", "hyper-util", "axum", "http", "http-body", "http-body-util"];

#[test]
fn only_the_gateway_the_api_and_the_client_speak_http() {
    let deps = dependencies();
    assert!(deps.len() >= 15, "found the crates: {:?}", deps.keys());
    for (name, list) in &deps {
        let allowed = ["strata-gateway", "strata-api", "strata-client", "strata"].contains(&name.as_str());
        let http: Vec<&String> = list.iter().filter(|d| HTTP.contains(&d.as_str())).collect();
        assert!(
            allowed || http.is_empty(),
            "{name} depends on {http:?}: only gateway, api and client speak HTTP"
        );
    }
}

#[test]
fn crates_depend_only_on_what_the_architecture_allows() {
    let deps = dependencies();
    let strata = |name: &str| -> Vec<String> {
        deps[name]
            .iter()
            .filter_map(|d| d.strip_prefix("strata-").map(str::to_string))
            .collect()
    };
    let rules: [(&str, &[&str]); 13] = [
        ("strata-manifest", &[]),
        ("strata-os", &[]),
        ("strata-wire", &[]),
        ("strata-bus", &[]),
        ("strata-queue", &["manifest", "os"]),
        ("strata-store", &["os"]),
        ("strata-cache", &["os"]),
        ("strata-appservice", &["manifest", "bus", "os"]),
        ("strata-autoscale", &["appservice", "bus", "manifest", "queue"]),
        ("strata-gateway", &["bus", "manifest", "os", "wire"]),
        (
            "strata-api",
            &[
                "appservice",
                "bus",
                "cache",
                "gateway",
                "manifest",
                "os",
                "queue",
                "store",
                "wire",
            ],
        ),
        ("strata-client", &["wire"]),
        ("strata-cluster", &["bus", "manifest", "queue", "store"]),
    ];
    for (name, allowed) in rules {
        for dep in strata(name) {
            assert!(
                allowed.contains(&dep.as_str()),
                "{name} depends on strata-{dep}, which ARCHITECTURE.md does not allow"
            );
        }
    }
    // Nothing but the CLI depends on the node.
    for (name, list) in &deps {
        if name != "strata" {
            assert!(
                !list.iter().any(|d| d == "strata-node"),
                "{name} depends on strata-node"
            );
        }
    }
}
