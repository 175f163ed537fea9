//! HTTP/1.1 Upgrade (WebSocket) through the gateway: the handshake goes to ANY one
//! member, like a request, and once it answers `101 Switching Protocols` the client's
//! connection and a fresh connection to the member are joined and bytes flow both ways
//! as they come, never buffered past one read.
//!
//! - **Load.** The tunnel counts as a request in flight on its member for as long as it
//!   lasts, so the pick and the autoscaler see open WebSockets.
//! - **Limits.** A tunnel with no byte either way for `relay.websocket_idle_ms` (by
//!   default [`TUNNEL_IDLE`]) is closed, and any tunnel after `relay.websocket_max_ms`
//!   ([`TUNNEL_MAX`]): checked once a second by the pump that moves its bytes. A WebSocket is closed gracefully: its client is sent a Close (1001, Going
//!   Away) between two of the member's frames and the handshake goes on through the
//!   tunnel; [`CLOSE_GRACE`] later what is still open is cut.
//! - **The copy** is of the two sockets themselves (the client's taken back from hyper
//!   and `framing` once it has switched), moved by the worker thread's pump
//!   (`strata_os::pump`): one epoll set for all of the thread's tunnels, served by one
//!   task that reads a side as its bytes come and writes them to the other at once, with
//!   no timer or buffer per tunnel (as nginx relays a WebSocket); the tunnel's own task
//!   is only woken by its end.
//! - **Drain.** When the member leaves its pool (stopping, or failed), its WebSockets'
//!   clients are sent a Close (1001) at once, and its tunnels get [`DRAIN_GRACE`] to
//!   finish (the client's Close in answer reaches the member, whose own answer ends the
//!   handshake), then they are cut. The member is stopped once its tunnels have ended
//!   (or its `stop_grace_ms` has passed), so it sees each closing handshake through.
//! - **Refusal.** A member that answers anything but 101 has its answer relayed and the
//!   client connection closed after it: the bytes after an upgrade request are never
//!   taken for another request (`framing`'s tunnel state).
//!
//! The handshake is a bodiless GET, safe to send again: a member that cannot be reached
//! or fails before answering is replaced by another, up to `relay.retries`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use strata_bus::{Member, MemberGuard, Pool};
use strata_os::bare::Bare;
use strata_os::pump::{Ended, Joined, Limit};
use tokio::net::TcpStream;

pub use crate::framing::TUNNEL_IDLE;

use super::{
    attempt_value, deadline_exceeded, failed, no_member, retries_spent, strip_hop_by_hop, to_origin_form, upstream_of,
    Failure, Outcome, RelayPolicy, ATTEMPT, REQUEST_ID, SERVED_BY,
};
use crate::client_body::ClientBody;
use crate::framing::Guarded;
use crate::metrics::{Protocol, RelayStats};
use crate::response_body::ResBody;
use crate::upstream::{Conn, SendError, Upgrade};

/// The longest a tunnel lasts, however busy, unless `relay.websocket_max_ms` says.
pub const TUNNEL_MAX: Duration = Duration::from_secs(24 * 3600);
/// How long a tunnel to a member that left its pool may go on, to close itself.
pub const DRAIN_GRACE: Duration = Duration::from_secs(10);
/// How long a tunnel closed for its idle limit or its age has to finish its closing
/// handshake before it is cut.
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// How long the client has to take the 101 before the tunnel is given up.
const SWITCH_WAIT: Duration = Duration::from_secs(10);

/// A GET asking to switch protocols, with no body: the same test `framing` makes of the
/// raw head, so the two agree on what becomes a tunnel.
pub fn wants_upgrade<B>(req: &Request<B>) -> bool {
    let headers = req.headers();
    req.version() == http::Version::HTTP_11
        && req.method() == http::Method::GET
        && headers.get(header::UPGRADE).is_some_and(|v| !v.is_empty())
        && headers.get_all(header::CONNECTION).iter().any(|v| {
            v.as_bytes()
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
        })
        && !headers.contains_key(header::CONTENT_LENGTH)
        && !headers.contains_key(header::TRANSFER_ENCODING)
}

/// The member's side of a switched connection: its socket, what it sent after its 101,
/// and its count in flight, until [`Tunnel::run`] joins it to the client's side.
pub struct Tunnel {
    member: Bare,
    early: Bytes,
    guard: MemberGuard,
    /// The protocol switched to is WebSocket (its frames can be closed gracefully).
    websocket: bool,
    /// Its idle and total limits (the service's `relay`).
    idle: Duration,
    max: Duration,
}

/// Relays the handshake of `req` (the gateway's client connection) to one member of
/// `pool`; on 101, joins the two connections in a task of its own once hyper hands the
/// client's over, and answers the client's 101.
pub async fn relay(pool: &Pool, mut req: Request<ClientBody>, policy: &RelayPolicy) -> (Response<ResBody>, Outcome) {
    let on_upgrade = hyper::upgrade::on(&mut req);
    let (res, outcome, tunnel) = handshake(pool, req, policy).await;
    if let Some(tunnel) = tunnel {
        tokio::spawn(async move {
            match tokio::time::timeout(SWITCH_WAIT, on_upgrade).await {
                // The gateway's own connections: the socket itself, past hyper and
                // `framing` (the tunnel keeps its own limits).
                Ok(Ok(upgraded)) => match upgraded.downcast::<TokioIo<Guarded>>() {
                    Ok(parts) => {
                        let (stream, _open) = parts.io.into_inner().into_socket();
                        tunnel.run(stream.into_inner(), parts.read_buf).await
                    }
                    // hyper hands back the connection it was given: always a `Guarded`.
                    Err(_) => tracing::error!("a switched connection was not the gateway's socket; closed"),
                },
                Ok(Err(e)) => tracing::debug!(error = %e, "the client's connection did not switch"),
                Err(_) => tracing::debug!("the client's connection did not switch in time"),
            }
        });
    }
    (res, outcome)
}

/// Relays the handshake of `req` to one member of `pool`: the answer for the client,
/// and on 101 the member's side of the tunnel, for the caller to join to the client's
/// connection once it has switched.
pub async fn handshake<B>(
    pool: &Pool,
    req: Request<B>,
    policy: &RelayPolicy,
) -> (Response<ResBody>, Outcome, Option<Tunnel>) {
    let started = Instant::now();
    let (res, outcome, tunnel) = switch(pool, req, policy, started).await;
    RelayStats::of(pool).record_as(Protocol::WebSocket, res.status(), outcome.unanswered, started.elapsed());
    (res, outcome, tunnel)
}

async fn switch<B>(
    pool: &Pool,
    req: Request<B>,
    policy: &RelayPolicy,
    started: Instant,
) -> (Response<ResBody>, Outcome, Option<Tunnel>) {
    let (mut parts, _) = req.into_parts();
    let protocol = parts.headers.get(header::UPGRADE).cloned();
    let websocket = protocol.as_ref().is_some_and(is_websocket);
    to_origin_form(&mut parts);
    strip_hop_by_hop(&mut parts.headers);
    if let Some(protocol) = protocol {
        parts.headers.insert(header::UPGRADE, protocol);
    }
    parts
        .headers
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    let request_id = parts.headers.get(REQUEST_ID).cloned();
    let mut outcome = Outcome::default();
    let mut tried: Vec<Arc<Member>> = Vec::new();
    let mut last: Option<(Arc<Member>, Failure)> = None;
    loop {
        let remaining = policy.deadline.saturating_sub(started.elapsed());
        if remaining.is_zero() {
            return (deadline_exceeded(pool, policy, request_id.as_ref()), outcome, None);
        }
        if outcome.attempts > policy.retries {
            return (
                failed(pool, last, retries_spent(policy.retries), request_id.as_ref()),
                outcome,
                None,
            );
        }
        let Some(member) = pool.pick(&tried) else {
            return match last {
                Some(_) => (
                    failed(pool, last, "no other member was left to try", request_id.as_ref()),
                    outcome,
                    None,
                ),
                None => (no_member(pool, request_id.as_ref()), outcome, None),
            };
        };
        outcome.attempts += 1;
        outcome.member = Some(member.clone());
        tried.push(member.clone());
        let guard = member.begin();
        let attempt_timeout = policy.attempt_timeout.min(remaining);
        let conn = match tokio::time::timeout(attempt_timeout, Conn::connect(member.addr)).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                pool.suspect(&member);
                last = Some((member, Failure::Unsent(format!("could not connect: {e}"))));
                continue;
            }
            Err(_) => {
                pool.suspect(&member);
                last = Some((member, Failure::Unsent("could not connect in time".into())));
                continue;
            }
        };
        parts.headers.insert(ATTEMPT, attempt_value(outcome.attempts));
        let served_by = upstream_of(&member).served_by.clone();
        match conn.send_upgrade(&parts, attempt_timeout).await {
            Ok(Upgrade::Switched { res, stream, early }) => {
                let (mut head, ()) = res.into_parts();
                if let Some(id) = &request_id {
                    head.headers.insert(REQUEST_ID, id.clone());
                }
                head.headers.insert(SERVED_BY, served_by);
                let tunnel = Tunnel {
                    member: stream,
                    early,
                    guard,
                    // The member switched to what was asked (RFC 9110 7.8).
                    websocket: websocket && head.headers.get(header::UPGRADE).is_some_and(is_websocket),
                    idle: policy.tunnel_idle,
                    max: policy.tunnel_max,
                };
                return (Response::from_parts(head, ResBody::Full(None)), outcome, Some(tunnel));
            }
            Ok(Upgrade::Refused(res, pending)) => {
                let (mut head, ()) = res.into_parts();
                strip_hop_by_hop(&mut head.headers);
                if let Some(id) = &request_id {
                    head.headers.insert(REQUEST_ID, id.clone());
                }
                head.headers.insert(SERVED_BY, served_by);
                let body = ResBody::Relayed(pending.into_body(upstream_of(&member), guard));
                return (Response::from_parts(head, body), outcome, None);
            }
            Err(SendError::Unsent(e)) => {
                pool.suspect(&member);
                last = Some((member, Failure::Unsent(e.to_string())));
            }
            Err(SendError::Broken(e)) if e.kind() == std::io::ErrorKind::Unsupported => {
                // An HTTP/2-only member: every member would answer the same, and none
                // of them failed.
                let last = Some((member, Failure::Broken(e.to_string())));
                let why = "not tried elsewhere: the service speaks only HTTP/2 (gRPC) and cannot switch protocols";
                return (failed(pool, last, why, request_id.as_ref()), outcome, None);
            }
            Err(SendError::Broken(e)) => {
                pool.suspect(&member);
                last = Some((member, Failure::Broken(e.to_string())));
            }
            Err(SendError::TimedOut) => last = Some((member, Failure::Timeout)),
            Err(SendError::ClientBody(_)) => unreachable!("a handshake has no body"),
        }
    }
}

/// An `Upgrade` value naming WebSocket (a list of one; the token is case-insensitive).
fn is_websocket(v: &HeaderValue) -> bool {
    v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"websocket")
}

impl Tunnel {
    /// Joins `client` (a socket, switched; `client_early` is what it sent past its
    /// handshake that was already read) to the member until both have ended, or it is
    /// closed: no byte has moved either way for its idle limit, it reached its longest
    /// life, or its member left its pool (see [`Watch::check`]).
    ///
    /// The bytes are moved by the thread's pump (`strata_os::pump`), which also checks
    /// the limits once a second ([`Watch`]): no timer per tunnel, and this future only
    /// waits for the end.
    pub async fn run(self, client: TcpStream, client_early: Bytes) {
        let Tunnel {
            member,
            early,
            guard,
            websocket,
            idle,
            max,
        } = self;
        let member_id = guard.member().name.clone();
        let gone = guard.member().clone();
        let mut watch = Watch::new(Instant::now(), idle, max);
        let limits = Box::new(move |now, moved| watch.check(now, moved, gone.is_gone()));
        let joined = match Joined::new(client, member.into_inner(), &early, &client_early, limits, websocket) {
            Ok(joined) => joined,
            Err(e) => {
                tracing::warn!(error = %e, member = member_id, "a tunnel could not be joined; closed");
                return;
            }
        };
        match joined.ended().await {
            Ended::Both => {}
            Ended::Failed(e) => tracing::debug!(error = %e, member = member_id, "a tunnel ended with an error"),
            Ended::Cut(why) => tracing::debug!(member = member_id, "a tunnel was closed: {why}"),
        }
        // Both sockets close before the member's count in flight ends.
        drop(joined);
        drop(guard);
    }
}

/// A tunnel's limits, checked by its pump once a second (`strata_os::pump::WATCH`).
struct Watch {
    idle: Duration,
    max: Duration,
    started: Instant,
    last_moved: Instant,
    /// Asked to close: since when, for how long at most, and why (for the log).
    closing: Option<(Instant, Duration, &'static str)>,
}

impl Watch {
    fn new(now: Instant, idle: Duration, max: Duration) -> Watch {
        Watch {
            idle,
            max,
            started: now,
            last_moved: now,
            closing: None,
        }
    }

    /// What must happen to the tunnel now, if anything: `moved` says whether a byte
    /// moved since the last check, `gone` whether the member has left its pool. A limit
    /// reached first asks for a graceful close (the reason is the client's to read), and
    /// the cut follows its grace, whatever moves meanwhile.
    fn check(&mut self, now: Instant, moved: bool, gone: bool) -> Option<Limit> {
        if moved {
            self.last_moved = now;
        }
        if let Some((since, grace, why)) = self.closing {
            // A member leaving meanwhile shortens nothing: its grace is longer.
            return (now.duration_since(since) >= grace).then_some(Limit::Cut(why));
        }
        let (grace, why, reason) = if gone {
            (DRAIN_GRACE, "its member left its pool", "service instance stopping")
        } else if now.duration_since(self.last_moved) >= self.idle {
            (CLOSE_GRACE, "no byte either way for its idle limit", "idle too long")
        } else if now.duration_since(self.started) >= self.max {
            (CLOSE_GRACE, "it reached its longest life", "connection too old")
        } else {
            return None;
        };
        self.closing = Some((now, grace, why));
        Some(Limit::Close(reason))
    }
}

/// The answer to an upgrade request that is not switched: the connection closes after
/// it, since the client may already be sending the new protocol.
pub fn closing(mut res: Response<ResBody>) -> Response<ResBody> {
    if res.status() != StatusCode::SWITCHING_PROTOCOLS {
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watch_closes_a_tunnel_idle_drained_or_too_old_then_cuts_it_after_its_grace() {
        let t0 = Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        let mut watch = Watch::new(t0, TUNNEL_IDLE, TUNNEL_MAX);
        // Bytes moving keep it open past the idle limit.
        let mut t = 0;
        while t < TUNNEL_IDLE.as_secs() * 2 {
            t += 1;
            assert_eq!(watch.check(at(t), true, false), None, "busy at {t}s");
        }
        // Idle: closed once nothing moved for the whole limit, not a check before; cut
        // after the close's grace even though the handshake moved bytes.
        let last = t;
        let idle = last + TUNNEL_IDLE.as_secs();
        assert_eq!(watch.check(at(idle - 1), false, false), None);
        assert_eq!(watch.check(at(idle), false, false), Some(Limit::Close("idle too long")));
        let grace = CLOSE_GRACE.as_secs();
        assert_eq!(watch.check(at(idle + 1), true, false), None);
        assert_eq!(watch.check(at(idle + grace - 1), false, false), None);
        assert_eq!(
            watch.check(at(idle + grace), false, false),
            Some(Limit::Cut("no byte either way for its idle limit"))
        );

        // Drained: closed at once, cut once the grace has passed since the member was
        // first seen gone, however busy the tunnel is.
        let mut watch = Watch::new(t0, TUNNEL_IDLE, TUNNEL_MAX);
        assert_eq!(
            watch.check(at(5), true, true),
            Some(Limit::Close("service instance stopping"))
        );
        assert_eq!(watch.check(at(5 + DRAIN_GRACE.as_secs() - 1), true, true), None);
        assert_eq!(
            watch.check(at(5 + DRAIN_GRACE.as_secs()), true, true),
            Some(Limit::Cut("its member left its pool"))
        );

        // Too old: busy and its member there, closed at the longest life.
        let mut watch = Watch::new(t0, TUNNEL_IDLE, TUNNEL_MAX);
        let max = TUNNEL_MAX.as_secs();
        assert_eq!(watch.check(at(max - 1), true, false), None);
        assert_eq!(
            watch.check(at(max), true, false),
            Some(Limit::Close("connection too old"))
        );
        assert_eq!(
            watch.check(at(max + grace), true, false),
            Some(Limit::Cut("it reached its longest life"))
        );
    }

    #[test]
    fn only_a_websocket_upgrade_is_followed_as_frames() {
        for yes in ["websocket", "WebSocket", " websocket "] {
            assert!(is_websocket(&HeaderValue::from_static(yes)), "{yes}");
        }
        for no in ["h2c", "websocket, h2c", "TLS/1.2", ""] {
            assert!(!is_websocket(&HeaderValue::from_static(no)), "{no}");
        }
    }
}
