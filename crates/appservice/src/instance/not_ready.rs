//! Why a starting instance is not ready, in words for `ps` and events.

use std::net::SocketAddr;
use std::time::Duration;

use crate::probe;

/// Why a starting instance is not ready, in words, with what to do when it is the
/// instance contract it misses: nothing on `$PORT` (and where it listens instead).
pub(super) async fn not_ready_why(
    outcome: &probe::Outcome,
    addr: SocketAddr,
    path: probe::Check<'_>,
    check_timeout: Duration,
    pgid: u32,
) -> String {
    let port = addr.port();
    let check = path.describe(port);
    match outcome {
        probe::Outcome::Refused => {
            let elsewhere = tokio::task::spawn_blocking(move || strata_os::sockets::listening_in_group(pgid))
                .await
                .unwrap_or_default();
            let mut why = if addr.ip().is_loopback() {
                format!(
                    "nothing listens on its port {port}: an instance must serve HTTP on 127.0.0.1:$PORT (it was started with PORT={port})"
                )
            } else {
                format!(
                    "nothing listens on its port {port} at {}: an instance on a private network must serve HTTP on 0.0.0.0:$PORT, not on its own loopback (it was started with PORT={port})",
                    addr.ip()
                )
            };
            if !elsewhere.is_empty() {
                let list = elsewhere.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ");
                why.push_str(&format!("; it listens on {list} instead"));
            }
            why
        }
        probe::Outcome::Status(code) => format!("{check} answered {code}, not 2xx (health)"),
        probe::Outcome::NoReply => format!("port {port} accepts, but {check} got no reply"),
        probe::Outcome::Grpc(what) => format!("{check} {what}, not SERVING (health.grpc)"),
        probe::Outcome::TimedOut => format!(
            "{check} got no answer within {} ms (health.timeout_ms)",
            check_timeout.as_millis()
        ),
        probe::Outcome::Passed => "ready".to_string(),
    }
}
