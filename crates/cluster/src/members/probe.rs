//! While a node hears no heartbeat, its own included, it tries the forwarders of the
//! other nodes' members it keeps (see [`Probe`]).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use super::Joined;
use crate::Membership;

/// While this node hears no heartbeat, its own included, it tries the forwarders of the
/// other nodes' members it keeps this often (a TCP connect, no request)...
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// ...and takes out of its pools a member whose forwarder does not accept within this.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// While the node is deaf, the forwarders of the members it keeps are tried every
/// [`PROBE_EVERY`]: a node cut off by its own link cannot reach them, and a request sent
/// there would wait for its deadline, where a route's stored answer or a member on this
/// node could answer at once. A node that only lost its NATS server still reaches them
/// and keeps them.
#[derive(Default)]
pub(super) struct Probe {
    running: Option<tokio::task::JoinHandle<BTreeSet<SocketAddr>>>,
    last: Option<tokio::time::Instant>,
}

impl Probe {
    /// Takes in a finished probe's findings and starts the next when one is due; while
    /// the node hears itself, forgets them.
    pub(super) async fn step(&mut self, membership: &Membership, me: &str, joined: &mut Joined) {
        if membership.hears_itself(me) {
            self.stop();
            joined.unreachable.clear();
            return;
        }
        if self.running.as_ref().is_some_and(|p| p.is_finished()) {
            if let Ok(found) = self.running.take().expect("checked").await {
                for addr in found.difference(&joined.unreachable) {
                    tracing::warn!(%addr, "this node hears no heartbeat and cannot reach a forwarder of another node: its members are taken out of the pools until it answers");
                }
                joined.unreachable = found;
            }
        }
        if self.running.is_none() && self.last.is_none_or(|t| t.elapsed() >= PROBE_EVERY) {
            self.last = Some(tokio::time::Instant::now());
            let addrs: BTreeSet<SocketAddr> = joined.pooled.values().chain(joined.parked.values()).copied().collect();
            self.running = Some(tokio::spawn(unreachable(addrs)));
        }
    }

    pub(super) fn stop(&mut self) {
        if let Some(p) = self.running.take() {
            p.abort();
        }
        self.last = None;
    }
}

/// The forwarders in `addrs` that do not accept a TCP connection within [`PROBE_TIMEOUT`].
/// The connection is closed at once, and sends nothing: the forwarder that takes it
/// opens one to its member that closes with it, and takes it as a sign of traffic (a
/// departing member's forwarder stays open [`super::QUIET`] longer, within its
/// `HELD_AT_MOST`). Only a deaf node probes.
async fn unreachable(addrs: BTreeSet<SocketAddr>) -> BTreeSet<SocketAddr> {
    let tries = addrs.into_iter().map(|addr| async move {
        let reached = matches!(
            tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(addr)).await,
            Ok(Ok(_))
        );
        (!reached).then_some(addr)
    });
    futures_util::future::join_all(tries)
        .await
        .into_iter()
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use tokio::net::TcpListener;

    use super::*;

    #[tokio::test]
    async fn the_probe_finds_the_forwarders_that_do_not_accept() {
        let listening = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let closed = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let (up, down) = (listening.local_addr().unwrap(), closed.local_addr().unwrap());
        drop(closed);
        assert_eq!(unreachable(BTreeSet::from([up, down])).await, BTreeSet::from([down]));
    }
}
