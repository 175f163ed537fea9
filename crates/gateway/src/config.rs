//! The gateway's settings from the manifest: its limits and timeouts, the relay policy
//! of each service, and the routes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use strata_manifest::{CallMode, Manifest, RelaySpec};

use crate::fallback::Fallback;
use crate::{GatewayConfig, Route};

/// How long a relayed request may take and how often it may be reissued.
#[derive(Debug, Clone)]
pub struct RelayPolicy {
    pub deadline: Duration,
    pub attempt_timeout: Duration,
    pub retries: u32,
    /// gRPC methods that may run twice (`relay.idempotent`: `package.Service/Method` or
    /// `package.Service/*`).
    pub grpc_idempotent: Arc<[String]>,
    /// gRPC calls in flight per HTTP/2 connection to a member before another is opened
    /// (`relay.grpc_calls_per_connection`; unset: no limit, one connection).
    pub grpc_calls_per_connection: usize,
    /// A switched connection idle (no byte either way) this long is closed
    /// (`relay.websocket_idle_ms`).
    pub tunnel_idle: Duration,
    /// A switched connection is closed this long after it opened (`relay.websocket_max_ms`).
    pub tunnel_max: Duration,
}

impl RelayPolicy {
    /// Is the gRPC method `package.Service/Method` one that may run twice?
    pub fn grpc_idempotent(&self, method: &str) -> bool {
        self.grpc_idempotent.iter().any(|m| match m.strip_suffix("/*") {
            Some(service) => method.strip_prefix(service).is_some_and(|rest| rest.starts_with('/')),
            None => m == method,
        })
    }
}

impl Default for RelayPolicy {
    fn default() -> Self {
        RelayPolicy {
            deadline: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(10),
            retries: 2,
            grpc_idempotent: Arc::from(Vec::new()),
            grpc_calls_per_connection: usize::MAX,
            tunnel_idle: crate::relay::tunnel::TUNNEL_IDLE,
            tunnel_max: crate::relay::tunnel::TUNNEL_MAX,
        }
    }
}

impl From<&RelaySpec> for RelayPolicy {
    fn from(spec: &RelaySpec) -> RelayPolicy {
        RelayPolicy {
            deadline: Duration::from_millis(spec.timeout_ms),
            attempt_timeout: Duration::from_millis(spec.attempt_timeout_ms()),
            retries: spec.retries,
            grpc_idempotent: Arc::from(spec.idempotent.clone()),
            grpc_calls_per_connection: spec
                .grpc_calls_per_connection
                .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX)),
            tunnel_idle: Duration::from_millis(spec.websocket_idle_ms),
            tunnel_max: Duration::from_millis(spec.websocket_max_ms),
        }
    }
}

/// The relay policy of every service of `manifest` (functions expanded first).
pub fn relay_policies(manifest: &Manifest) -> HashMap<String, RelayPolicy> {
    manifest
        .services
        .iter()
        .map(|(name, spec)| (name.clone(), RelayPolicy::from(&spec.relay)))
        .collect()
}

impl From<&Manifest> for GatewayConfig {
    /// Limits from `gateway`, one route per service route, each with its service's
    /// relay policy.
    fn from(manifest: &Manifest) -> GatewayConfig {
        let routes = manifest
            .services
            .iter()
            .flat_map(|(name, spec)| {
                let policy = RelayPolicy::from(&spec.relay);
                let routes = spec.routes.iter().map({
                    let policy = policy.clone();
                    move |r| Route {
                        host: r.host().map(str::to_string),
                        prefix: r.path().to_string(),
                        service: name.clone(),
                        mode: r.mode(),
                        policy: policy.clone(),
                        fallback: r.fallback().map(|spec| Arc::new(Fallback::new(spec))),
                        grpc: false,
                    }
                });
                // A gRPC service name is a route of its calls' prefix, on every host.
                let grpc = spec.grpc.iter().map(move |g| Route {
                    host: None,
                    prefix: format!("/{g}/"),
                    service: name.clone(),
                    mode: CallMode::Any,
                    policy: policy.clone(),
                    fallback: None,
                    grpc: true,
                });
                routes.chain(grpc)
            })
            .collect();
        GatewayConfig {
            routes,
            traces: crate::trace::Traces::new(),
            max_header_bytes: manifest.gateway.max_header_bytes,
            max_body_bytes: manifest.gateway.max_body_bytes,
            header_read_timeout: Duration::from_millis(manifest.gateway.header_read_timeout_ms),
            max_connections: manifest.gateway.max_connections,
        }
    }
}
