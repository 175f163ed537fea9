//! The check across services: no two routes claim the same host and path, and no
//! gRPC service name is claimed twice or by a route's prefix.

use super::*;

/// No two routes, in one service or across services, with the same host and path.
pub(super) fn check_route_conflicts(m: &Manifest, p: &mut Problems) {
    let services = FieldPath::root().key("services");
    let mut claimed: BTreeMap<(Option<String>, &str), FieldPath> = BTreeMap::new();
    let mut grpc_claimed: BTreeMap<String, FieldPath> = BTreeMap::new();
    for (name, spec) in &m.services {
        for (i, route) in spec.routes.iter().enumerate() {
            let path = match spec.function {
                Some(_) => FieldPath::root().key("functions").key(name).key("trigger").key("http"),
                None => services.key(name).key("routes").index(i),
            };
            let key = (route.host().map(str::to_ascii_lowercase), route.path());
            if let Some(first) = claimed.get(&key) {
                let on_host = route
                    .host()
                    .map(|h| format!(" on host {}", quoted(h)))
                    .unwrap_or_default();
                p.add(invalid(
                    path,
                    "a route no other route claims",
                    format!("{}{on_host}, already claimed by {first}", quoted(route.path())),
                ));
            } else {
                claimed.insert(key, path);
            }
        }
    }
    // A gRPC service name claims `/package.Service/` on every host.
    for (name, spec) in &m.services {
        for (i, grpc) in spec.grpc.iter().enumerate() {
            let prefix = format!("/{grpc}/");
            let path = services.key(name).key("grpc").index(i);
            let clash = claimed
                .iter()
                .find(|((_, p), _)| *p == prefix)
                .map(|(_, at)| at.clone());
            if let Some(first) = clash.or_else(|| grpc_claimed.get(&prefix).cloned()) {
                p.add(invalid(
                    path,
                    "a gRPC service no route or other service claims",
                    format!(
                        "{} (the prefix {} of its calls), already claimed by {first}",
                        quoted(grpc),
                        quoted(&prefix)
                    ),
                ));
            } else {
                grpc_claimed.insert(prefix, path);
            }
        }
    }
}
