//! The names the node API answers to in the `Host` header (a request addressed to
//! another name is refused 421: DNS rebinding, or a proxy in the way).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use axum::extract::Request;
use axum::http::{header, StatusCode};
use strata_wire::ErrorCode;

use crate::ApiError;

/// The names the node answers to in the `Host` header.
#[derive(Debug)]
pub(crate) struct Hosts {
    /// Exact `host:port` names, lowercase.
    names: Vec<String>,
    port: u16,
    /// Listening on every address (0.0.0.0 or ::): any IP literal with the port is the
    /// node's too (DNS rebinding needs a name).
    any_ip: bool,
}

impl Hosts {
    pub(crate) fn of(listen: SocketAddr) -> Hosts {
        let port = listen.port();
        let mut hosts = vec![
            IpAddr::V4(Ipv4Addr::LOCALHOST).to_string(),
            format!("[{}]", Ipv6Addr::LOCALHOST),
            "localhost".to_string(),
        ];
        let any_ip = listen.ip().is_unspecified();
        if !any_ip && !listen.ip().is_loopback() {
            hosts.push(match listen.ip() {
                IpAddr::V4(ip) => ip.to_string(),
                IpAddr::V6(ip) => format!("[{ip}]"),
            });
        }
        if any_ip {
            // Its own name, as a remote CLI would write it.
            if let Ok(name) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
                let name = name.trim().to_ascii_lowercase();
                if !name.is_empty() {
                    hosts.push(name);
                }
            }
        }
        let mut names: Vec<String> = hosts.iter().map(|h| format!("{h}:{port}")).collect();
        if port == 80 {
            names.extend(hosts);
        }
        Hosts { names, port, any_ip }
    }

    pub(crate) fn allows(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        if self.names.contains(&host) {
            return true;
        }
        self.any_ip && host.parse::<SocketAddr>().is_ok_and(|a| a.port() == self.port)
    }

    pub(crate) fn check(&self, req: &Request) -> Result<(), ApiError> {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()));
        match host {
            Some(host) if self.allows(host) => Ok(()),
            found => Err(ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                ErrorCode::MisdirectedRequest,
                format!(
                    "{} is none of this node's names ({}): the node API answers only requests addressed to it",
                    found.map_or("a request without a Host header".to_string(), |h| format!("Host {h:?}")),
                    self.names.join(", ")
                ),
            )),
        }
    }
}
