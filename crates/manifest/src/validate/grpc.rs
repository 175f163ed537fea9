//! The checks of what makes a service a gRPC pool: its `grpc` service names, the
//! methods its `relay.idempotent` names, and a gRPC health check.

use super::*;

/// What a gRPC service name looks like: `package.Service`, dot-separated identifiers.
const EXPECT_SERVICE: &str = "a gRPC service name such as package.Service (letters, digits and _, dot-separated)";

/// `package.Service`: identifiers of letters, digits and `_`, not starting with a digit,
/// joined by dots.
pub(crate) fn is_grpc_service(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name.split('.').all(|part| {
            part.bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
}

/// `grpc`, `relay.idempotent` and `health`'s choice of check.
pub(super) fn check_grpc(spec: &ServiceSpec, path: &FieldPath, p: &mut Problems) {
    let mut seen = BTreeSet::new();
    for (i, name) in spec.grpc.iter().enumerate() {
        if !is_grpc_service(name) {
            p.add(invalid(path.key("grpc").index(i), EXPECT_SERVICE, quoted(name)));
        } else if !seen.insert(name.as_str()) {
            p.add(invalid(
                path.key("grpc").index(i),
                "each gRPC service named once",
                format!("{} again", quoted(name)),
            ));
        }
    }
    for (i, method) in spec.relay.idempotent.iter().enumerate() {
        let ok = method.split_once('/').is_some_and(|(service, m)| {
            is_grpc_service(service) && (m == "*" || (is_grpc_service(m) && !m.contains('.')))
        });
        if !ok {
            p.add(invalid(
                path.key("relay").key("idempotent").index(i),
                "a gRPC method as package.Service/Method, or package.Service/* for all of its methods",
                quoted(method),
            ));
        }
    }
    if let Some(health) = &spec.health {
        let at = path.key("health");
        match (&health.grpc, health.path.is_empty()) {
            (Some(_), false) => p.add(invalid(
                at,
                "either path (an HTTP check) or grpc (the gRPC health protocol), not both",
                "both".to_string(),
            )),
            (Some(name), true) if !name.is_empty() && !is_grpc_service(name) => {
                p.add(invalid(
                    at.key("grpc"),
                    format!("\"\" (the server as a whole) or {EXPECT_SERVICE}"),
                    quoted(name),
                ));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_grpc_service;

    #[test]
    fn grpc_service_names() {
        for ok in ["Echo", "test.Echo", "grpc.health.v1.Health", "_a.b_c.D9"] {
            assert!(is_grpc_service(ok), "{ok}");
        }
        for bad in [
            "",
            ".Echo",
            "test.",
            "test..Echo",
            "9x.Echo",
            "test/Echo",
            "a b",
            "é.Echo",
        ] {
            assert!(!is_grpc_service(bad), "{bad}");
        }
    }
}
