//! `GET /v1/openapi.json`: the OpenAPI 3.1 description of the node API, written by hand
//! in `crates/api/openapi.json` and compiled in. It needs no token (it is the same for
//! every node and holds no secret); the `Host` check applies as everywhere.
//!
//! Held equal to the routers by the tests below: every `.route(` of `src/*.rs` (method
//! and path template, axum's `{*key}` written `{key}`) is described, and nothing else is.
//! The integration test `crates/strata/tests/access.rs` runs schemathesis against a
//! running node with it: no 5xx, no answer that disagrees with it.

use std::sync::Arc;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::NodeParts;

/// The description, as served.
pub const DESCRIPTION: &str = include_str!("../openapi.json");

/// The path it is served at; the access check lets it through without a token.
pub const PATH: &str = "/v1/openapi.json";

pub(crate) fn routes() -> Router<Arc<NodeParts>> {
    Router::new().route(
        PATH,
        get(|| async { ([(header::CONTENT_TYPE, "application/json")], DESCRIPTION).into_response() }),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The methods a handler of `any(...)` is described with: all that OpenAPI names.
    const ANY: [&str; 8] = ["get", "put", "post", "delete", "patch", "head", "options", "trace"];

    /// (method, path template) of every `.route(` call in the crate's sources, read from
    /// the sources themselves: `Router` does not list its routes.
    fn routes_in_sources() -> BTreeSet<(String, String)> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
        let mut found = BTreeSet::new();
        let mut calls = 0;
        for entry in std::fs::read_dir(dir).expect("read src") {
            let path = entry.expect("a dir entry").path();
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read a source file");
            // Neither comments nor this file's tests, which name `.route(` in text.
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            let text: String = code
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .flat_map(|l| [l, "\n"])
                .collect();
            for (at, _) in text.match_indices(".route(") {
                calls += 1;
                let rest = &text[at + ".route(".len()..];
                let (template, methods) = parse_route(rest).unwrap_or_else(|| {
                    panic!(
                        "cannot read the .route( call in {}: {}",
                        path.display(),
                        &rest[..80.min(rest.len())]
                    )
                });
                let template = template.replace("{*", "{");
                for method in methods {
                    if method == "any" {
                        found.extend(ANY.iter().map(|m| (m.to_string(), template.clone())));
                    } else {
                        found.insert((method, template.clone()));
                    }
                }
            }
        }
        assert!(calls >= 28, "found only {calls} .route( calls");
        found
    }

    /// The template (a string literal, or [`PATH`]) and the methods of the routing
    /// functions called at the call's top level (`get(h).put(h2)`).
    fn parse_route(rest: &str) -> Option<(String, Vec<String>)> {
        let rest = rest.trim_start();
        let (template, mut after) = if let Some(lit) = rest.strip_prefix('"') {
            let end = lit.find('"')?;
            (lit[..end].to_string(), &lit[end + 1..])
        } else {
            let end = rest.find(',')?;
            let name = rest[..end].trim();
            (
                if name == "PATH" { PATH.to_string() } else { return None },
                &rest[end..],
            )
        };
        after = after.trim_start().strip_prefix(',')?;
        let mut methods = Vec::new();
        let mut depth = 0usize;
        let mut word = String::new();
        let mut in_str = false;
        for c in after.chars() {
            if in_str {
                in_str = c != '"';
                continue;
            }
            match c {
                '"' => in_str = true,
                '(' | '{' | '[' => {
                    if depth == 0 && ["get", "put", "post", "delete", "patch", "any"].contains(&word.as_str()) {
                        methods.push(word.clone());
                    }
                    depth += 1;
                }
                ')' | '}' | ']' => {
                    if depth == 0 {
                        return Some((template, methods));
                    }
                    depth -= 1;
                }
                _ => {}
            }
            if c.is_alphanumeric() || c == '_' {
                word.push(c);
            } else {
                word.clear();
            }
        }
        None
    }

    fn described() -> BTreeSet<(String, String)> {
        let doc: serde_json::Value = serde_json::from_str(DESCRIPTION).expect("the description is JSON");
        let mut ops = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("a path item").keys() {
                ops.insert((method.clone(), path.clone()));
            }
        }
        ops
    }

    #[test]
    fn every_route_is_described_and_nothing_else() {
        let routes = routes_in_sources();
        let described = described();
        let missing: Vec<_> = routes.difference(&described).collect();
        let extra: Vec<_> = described.difference(&routes).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "crates/api/openapi.json disagrees with the routers:\nroutes not described: {missing:?}\ndescribed but not routed: {extra:?}"
        );
    }

    #[test]
    fn the_description_is_openapi_3_1_with_the_shared_error_body_and_both_token_headers() {
        let doc: serde_json::Value = serde_json::from_str(DESCRIPTION).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let error = &doc["components"]["schemas"]["Error"];
        assert_eq!(error["required"], serde_json::json!(["error", "status", "code"]));
        let codes: Vec<&str> = strata_wire::ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            error["properties"]["code"]["enum"],
            serde_json::json!(codes),
            "the codes of strata_wire::ErrorCode"
        );
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes["bearer"]["scheme"], "bearer");
        let header = schemes["strataToken"]["name"].as_str().unwrap_or("");
        assert!(header.eq_ignore_ascii_case(crate::access::TOKEN_HEADER), "{header}");
        // Every operation but the description itself answers errors with the shared body,
        // and every path parameter of its template is declared.
        for ((method, path), item) in described().iter().map(|k| (k.clone(), &doc["paths"][&k.1][&k.0])) {
            if path != PATH {
                assert!(
                    item["responses"]["default"].is_object(),
                    "{method} {path}: no default (error) answer"
                );
            }
            let declared: BTreeSet<&str> = item["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .filter_map(|p| p["name"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            let in_template: BTreeSet<&str> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .collect();
            assert_eq!(declared, in_template, "{method} {path}: path parameters");
        }
    }
}
