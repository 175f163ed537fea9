//! gRPC through the bus: a call (HTTP/2, `content-type: application/grpc...`) goes to ANY
//! one member of the route's pool over HTTP/2 (h2c) and streams both ways, trailers
//! included, with HTTP/2 flow control end to end (the gateway's `h2` server streams on the client's
//! side, the `h2` crate's client streams on the member's; nothing is buffered here).
//! Unary and the three streaming kinds are the same code; a unary call's request is sent
//! from this task, with no task or channel of its own (`upstream::send_h2`).
//!
//! - **Deadline:** `grpc-timeout` from the client (capped by the service's
//!   `relay.timeout_ms`) bounds the wait for the member's reply head; the member sees the
//!   remaining time in `grpc-timeout` and ends the call itself, as gRPC servers do. A
//!   call without one has no deadline in gRPC: `relay.timeout_ms` bounds only the wait
//!   for its reply head, and the member gets no `grpc-timeout` (a server stream without
//!   a deadline, a watch, runs as long as both ends keep it).
//! - **strata's own failures** are trailers-only responses with gRPC statuses: no ready
//!   member → `UNAVAILABLE` (14), no reply head in time → `DEADLINE_EXCEEDED` (4), the
//!   member's connection failed → `UNAVAILABLE`, no route → `UNIMPLEMENTED` (12).
//! - **Reissue:** only when nothing of the call reached a member (it could not be
//!   reached, or refused the stream before reading it), to another member, up to
//!   `relay.retries`: a call is never executed twice.
//! - **Load:** a call counts as in flight on its member until its reply body (and
//!   trailers) ends, so long streams weigh on the pick like open WebSockets.

use std::borrow::Cow;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::client_body::ClientBody;
use http::header::{self, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri};
use http_body::{Body, Frame};
use strata_bus::{Held, Member, Placement, Pool};

use super::{
    attempt_value, retries_spent, upstream_of, NoAnswer, Outcome, RelayPolicy, ATTEMPT, IDEMPOTENCY_KEY, SERVED_BY,
};
use crate::metrics::{Protocol, RelayStats};
use crate::response_body::{failure, H2End, ResBody};
use crate::upstream::{send_h2, H2Reply, H2SendError};

mod replay;

use replay::Replay;

/// The call's deadline, as the client gave it and as the member gets it.
pub(crate) const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// gRPC's status codes that strata itself answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcStatus {
    Cancelled = 1,
    DeadlineExceeded = 4,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    Unauthenticated = 16,
}

/// A gRPC call: HTTP/2 with a gRPC content type.
pub fn is_grpc<B>(req: &Request<B>) -> bool {
    req.version() == http::Version::HTTP_2
        && req
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// `grpc-timeout`: up to 8 digits and a unit (H, M, S, m, u, n).
pub fn parse_timeout(value: &[u8]) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b"H" => Duration::from_secs(n * 3600),
        b"M" => Duration::from_secs(n * 60),
        b"S" => Duration::from_secs(n),
        b"m" => Duration::from_millis(n),
        b"u" => Duration::from_micros(n),
        b"n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// `grpc-timeout` for what is left of a call's deadline: milliseconds (at least 1), or
/// seconds, minutes, hours when the milliseconds need more than the 8 digits gRPC allows
/// (rounded down, as the member then ends the call no later than strata would).
pub fn timeout_value(remaining: Duration) -> HeaderValue {
    let ms = remaining.as_millis().max(1);
    let (n, unit) = if ms <= 99_999_999 {
        (ms as u64, b'm')
    } else if remaining.as_secs() <= 99_999_999 {
        (remaining.as_secs(), b'S')
    } else if remaining.as_secs() / 60 <= 99_999_999 {
        (remaining.as_secs() / 60, b'M')
    } else {
        ((remaining.as_secs() / 3600).min(99_999_999), b'H')
    };
    let mut digits = [0u8; 20];
    let digits = crate::digits::decimal(n, &mut digits);
    let mut text = [0u8; 21];
    text[..digits.len()].copy_from_slice(digits);
    text[digits.len()] = unit;
    HeaderValue::from_bytes(&text[..=digits.len()]).expect("digits and a unit")
}

/// A trailers-only response carrying `status` and `message`.
pub fn status_response(status: GrpcStatus, message: &str) -> Response<ResBody> {
    let mut res = Response::new(ResBody::Full(None));
    let headers = res.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from(status as u32));
    // grpc-message is percent-encoded; keep to what needs no encoding.
    let text: String = message
        .chars()
        .map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' })
        .collect::<String>()
        .replace('%', "%25");
    if let Ok(text) = HeaderValue::from_str(&text) {
        headers.insert("grpc-message", text);
    }
    res
}

/// What a call's attempts send: the client's stream as it is, or (for an idempotent
/// method) a [`Replay`] that a reissue can send again.
enum CallBody {
    Once(Option<ClientBody>),
    Replay(Replay),
}

impl CallBody {
    /// The body of the next attempt; None when the call cannot be sent again.
    fn next(&mut self, first: bool) -> Option<Outgoing> {
        match self {
            CallBody::Once(body) => body.take().map(Outgoing::Client),
            CallBody::Replay(replay) if first => Some(Outgoing::Replay(replay.again())),
            CallBody::Replay(replay) => replay.replayable().then(|| Outgoing::Replay(replay.again())),
        }
    }

    /// Takes back a body that never left: the next attempt sends it (a replay makes a
    /// fresh one anyway).
    fn unsent(&mut self, body: Outgoing) {
        if let (CallBody::Once(slot), Outgoing::Client(body)) = (self, body) {
            *slot = Some(body);
        }
    }
}

/// One attempt's request body.
enum Outgoing {
    Client(ClientBody),
    Replay(Replay),
}

impl Body for Outgoing {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            Outgoing::Client(body) => Pin::new(body).poll_frame(cx).map_err(|e| Box::new(e) as _),
            Outgoing::Replay(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Outgoing::Client(body) => body.is_end_stream(),
            Outgoing::Replay(body) => body.is_end_stream(),
        }
    }
}

/// Relays a gRPC call to ANY one member of `pool` (see the module), counted in the
/// pool's [`RelayStats`] as [`Protocol::Grpc`].
pub async fn relay(pool: &Pool, req: Request<ClientBody>, policy: &RelayPolicy) -> (Response<ResBody>, Outcome) {
    let started = Instant::now();
    let (res, outcome) = relay_call(pool, req, policy, started).await;
    RelayStats::of(pool).record_as(Protocol::Grpc, res.status(), outcome.unanswered, started.elapsed());
    (res, outcome)
}

async fn relay_call(
    pool: &Pool,
    req: Request<ClientBody>,
    policy: &RelayPolicy,
    started: Instant,
) -> (Response<ResBody>, Outcome) {
    let (mut parts, body) = req.into_parts();
    let client_deadline = match parts.headers.get(GRPC_TIMEOUT) {
        None => None,
        Some(v) => match parse_timeout(v.as_bytes()) {
            Some(t) => Some(t),
            // As a gRPC server answers it: a call whose bound cannot be read is not
            // run unbounded.
            None => {
                let message = format!(
                    "grpc-timeout {:?} is not a timeout: 1 to 8 digits and a unit (H, M, S, m, u, n)",
                    String::from_utf8_lossy(v.as_bytes())
                );
                return (status_response(GrpcStatus::Internal, &message), Outcome::default());
            }
        },
    };
    let deadline = client_deadline.map_or(policy.deadline, |t| t.min(policy.deadline));
    // Connection-specific headers may not travel over HTTP/2. `te: trailers` is what
    // gRPC asks of every call, and strata is the member's client: a client that left
    // it out does not get the member to refuse the call (nginx's grpc_pass sends it
    // the same way).
    for name in [header::CONNECTION, header::UPGRADE, header::TRANSFER_ENCODING] {
        parts.headers.remove(name);
    }
    parts.headers.insert(header::TE, HeaderValue::from_static("trailers"));
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let idempotent =
        policy.grpc_idempotent(parts.uri.path().trim_start_matches('/')) || parts.headers.contains_key(IDEMPOTENCY_KEY);
    // The head: cloned for each attempt of a call that may be sent again, else moved
    // into its one send (and taken back if that send never left).
    let mut parts = Some(parts);
    let mut body = if idempotent {
        CallBody::Replay(Replay::new(body))
    } else {
        CallBody::Once(Some(body))
    };
    let mut outcome = Outcome::default();
    // The members of the attempts before the last (`outcome.member`): filled only when a
    // second pick comes, so that a call answered at its first attempt allocates no list
    // and takes no further reference to its member (a count the gateway's threads
    // would otherwise take from each other's caches on every call).
    let mut tried: Vec<Arc<Member>> = Vec::new();
    // Why the last attempt got no answer: a borrowed text until one fails (no allocation
    // per call).
    let mut why: Cow<'static, str> = Cow::Borrowed("no ready instance");
    pool.budget.deposit();
    let admission = pool.admission();
    if let Some(admission) = admission {
        admission.arrived();
    }
    // Whether the last attempt may have reached its member: a reissue then needs an
    // idempotent method, a call that can be sent again and a token of the retry budget.
    let mut sent = false;
    loop {
        let remaining = deadline.saturating_sub(started.elapsed());
        if remaining.is_zero() {
            let res = status_response(
                GrpcStatus::DeadlineExceeded,
                "the deadline passed before a member answered",
            );
            return (res, outcome.unanswered(NoAnswer::Deadline));
        }
        if outcome.attempts > policy.retries {
            let why = format!("{why}; not reissued: {}", retries_spent(policy.retries));
            return (
                status_response(GrpcStatus::Unavailable, &why),
                outcome.unanswered(NoAnswer::Failed),
            );
        }
        if sent && !pool.budget.withdraw() {
            let why = format!("{why}; not reissued: the pool's retry budget is spent");
            return (
                status_response(GrpcStatus::Unavailable, &why),
                outcome.unanswered(NoAnswer::Failed),
            );
        }
        if tried.len() < outcome.attempts as usize {
            tried.extend(outcome.member.clone());
        }
        let Some(mut member) = pool.pick(&tried) else {
            if outcome.attempts > 0 {
                let why = format!("{why}; no other member was left to try");
                return (
                    status_response(GrpcStatus::Unavailable, &why),
                    outcome.unanswered(NoAnswer::Failed),
                );
            }
            // A service that may run no instance: hold the call while one starts.
            if let Some(admission) = admission.filter(|a| a.holds() && pool.members().is_empty()) {
                match admission.hold(pool, remaining).await {
                    Held::Ready => continue,
                    Held::Full | Held::Failed => {}
                    Held::Expired => {
                        let res = status_response(
                            GrpcStatus::DeadlineExceeded,
                            &format!(
                                "no instance of service {:?} was ready within the deadline",
                                pool.service
                            ),
                        );
                        return (res, outcome.unanswered(NoAnswer::Deadline));
                    }
                }
            }
            let message = super::no_member_text(pool);
            return (
                status_response(GrpcStatus::Unavailable, &message),
                outcome.unanswered(NoAnswer::NoMember),
            );
        };
        if let Some(admission) = admission.filter(|_| outcome.attempts == 0) {
            match admission.place(pool, &member, &tried) {
                Placement::Send => {}
                Placement::Use(other) => member = other,
                Placement::Wait => {
                    if admission.wait_for_room(pool, &tried, remaining).await {
                        continue;
                    }
                }
                Placement::Shed => {
                    let message = format!(
                        "service {:?} is at its maximum size and every instance is at its limit; try again",
                        pool.service
                    );
                    let res = status_response(GrpcStatus::ResourceExhausted, &message);
                    return (res, outcome.unanswered(NoAnswer::Shed));
                }
            }
        }
        let Some(attempt_body) = body.next(outcome.attempts == 0) else {
            let why = format!("{why}; not reissued: more than 1 MiB of it was sent, which is not kept");
            return (
                status_response(GrpcStatus::Unavailable, &why),
                outcome.unanswered(NoAnswer::Failed),
            );
        };
        let guard = match admission.map(|a| a.limit()).filter(|&at| at > 0) {
            // As for HTTP: taken only while still under the limit `place` checked; a
            // first attempt is placed again, a reissue goes to a member with room or is
            // shed.
            Some(at) => match member.try_begin_under(at) {
                Some(guard) => guard,
                None if outcome.attempts == 0 => {
                    body.unsent(attempt_body);
                    continue;
                }
                None => match super::room_under(pool, at, &tried) {
                    Some((_, guard)) => guard,
                    None => {
                        let message = format!(
                            "service {:?}: every instance is at its limit; not reissued",
                            pool.service
                        );
                        let res = status_response(GrpcStatus::ResourceExhausted, &message);
                        return (res, outcome.unanswered(NoAnswer::Shed));
                    }
                },
            },
            None => member.begin_owned(),
        };
        outcome.attempts += 1;
        outcome.member = Some(guard.member().clone());
        let member = guard.member();
        if let Some(admission) = admission {
            admission.counted(member.inflight());
        }
        let upstream = upstream_of(member);
        let attempt = policy.attempt_timeout.min(remaining);
        // An open connection is taken as it is; only a new one is made under a timer.
        let cached = upstream.h2.cached(policy.grpc_calls_per_connection);
        let connecting = async {
            match cached {
                Some(open) => Ok(Ok(open)),
                None => {
                    tokio::time::timeout(attempt, upstream.h2.connect(member, policy.grpc_calls_per_connection)).await
                }
            }
        };
        let (mut sender, conn) = match connecting.await {
            Ok(Ok(open)) => open,
            Ok(Err(e)) => {
                pool.suspect(member);
                why = format!("member {} could not be reached: {e}", member.name).into();
                body.unsent(attempt_body);
                sent = false;
                continue;
            }
            Err(_) => {
                pool.suspect(member);
                why = format!("member {} could not be reached in time", member.name).into();
                body.unsent(attempt_body);
                sent = false;
                continue;
            }
        };
        let mut head = match &body {
            CallBody::Replay(_) => parts.clone().expect("the head is kept"),
            CallBody::Once(_) => parts.take().expect("the head is back after an unsent attempt"),
        };
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(Scheme::HTTP);
        uri.authority = Some(upstream.authority.clone());
        uri.path_and_query = Some(path.clone());
        head.uri = Uri::from_parts(uri).unwrap_or_else(|_| Uri::from_static("/"));
        if client_deadline.is_some() {
            head.headers.insert(GRPC_TIMEOUT, timeout_value(remaining));
        } else {
            head.headers.remove(GRPC_TIMEOUT);
        }
        conn.mark_per_call(&mut head.headers);
        head.headers.insert(ATTEMPT, attempt_value(outcome.attempts));
        let call = match send_h2(&mut sender, &conn, head, attempt_body).await {
            Ok(call) => call,
            Err(H2SendError::Unsent(back, e)) => {
                let (head, unsent) = *back;
                // The connection closed or went away just now: nothing was sent.
                why = format!("member {}'s connection closed: {e}", member.name).into();
                parts.get_or_insert(head);
                body.unsent(unsent);
                sent = false;
                continue;
            }
            Err(H2SendError::Refused(e)) => {
                why = format!("member {} could not take the call: {e}", member.name).into();
                // Nothing reached the member; only a call whose head was kept can go again.
                if matches!(body, CallBody::Once(_)) {
                    return (
                        status_response(GrpcStatus::Unavailable, &why),
                        outcome.unanswered(NoAnswer::Failed),
                    );
                }
                sent = false;
                continue;
            }
            Err(H2SendError::ClientBody(e)) => return client_broke_off(&e, outcome),
        };
        // `coarse`: no tokio timer per call (it fires up to `coarse::TICK` late; the
        // member ends the call itself at the `grpc-timeout` it was given).
        match crate::coarse::timeout(remaining, call).await {
            Ok(Ok((res, pump))) => {
                let (mut head, recv) = res.into_parts();
                head.headers.insert(SERVED_BY, upstream.served_by.clone());
                if head.status != StatusCode::OK && !head.headers.contains_key("grpc-status") {
                    // Not a gRPC reply: say so in gRPC terms.
                    let message = format!("member {} answered HTTP {}", member.name, head.status);
                    return (status_response(GrpcStatus::Unavailable, &message), outcome);
                }
                let reply = H2Reply::new(recv, pump, conn);
                return (
                    Response::from_parts(head, ResBody::H2(reply, guard, H2End::Streaming)),
                    outcome,
                );
            }
            // The request's pump reset the stream: the client's request broke off.
            Ok(Err(e)) if e.is_reset() && !e.is_remote() && e.reason() == Some(h2::Reason::CANCEL) => {
                return client_broke_off(&e, outcome);
            }
            // The member reset this call's stream: it is up (its connection carries
            // on) and refused or failed this one call, so it is not passed over. Only a
            // refused stream (nothing of it was processed) goes to another member.
            Ok(Err(e)) if e.is_reset() && e.is_remote() => {
                let reason = e.reason().unwrap_or(h2::Reason::INTERNAL_ERROR);
                if reason == h2::Reason::REFUSED_STREAM && matches!(body, CallBody::Replay(_)) {
                    why = format!("member {} refused the call (REFUSED_STREAM)", member.name).into();
                    sent = false;
                    continue;
                }
                let message = format!("member {} reset the call: {reason:?}", member.name);
                return (status_response(reset_status(reason), &message), outcome);
            }
            Ok(Err(e)) => {
                pool.suspect(member);
                if idempotent {
                    why = format!(
                        "member {} failed during the call: {}",
                        member.name,
                        failure(&e, conn.ended_why())
                    )
                    .into();
                    sent = true;
                } else {
                    let why = format!(
                        "member {} failed during the call: {}; not reissued: the method is not idempotent (relay.idempotent)",
                        member.name,
                        failure(&e, conn.ended_why())
                    );
                    return (
                        status_response(GrpcStatus::Unavailable, &why),
                        outcome.unanswered(NoAnswer::Failed),
                    );
                }
            }
            Err(_) => {
                let res = status_response(
                    GrpcStatus::DeadlineExceeded,
                    &format!("member {} did not answer within the deadline", member.name),
                );
                return (res, outcome.unanswered(NoAnswer::Deadline));
            }
        }
    }
}

/// The gRPC status of a call whose stream the member reset (gRPC's HTTP/2 protocol
/// document, "Errors").
fn reset_status(reason: h2::Reason) -> GrpcStatus {
    match reason {
        h2::Reason::REFUSED_STREAM => GrpcStatus::Unavailable,
        h2::Reason::CANCEL => GrpcStatus::Cancelled,
        h2::Reason::ENHANCE_YOUR_CALM => GrpcStatus::ResourceExhausted,
        h2::Reason::INADEQUATE_SECURITY => GrpcStatus::PermissionDenied,
        _ => GrpcStatus::Internal,
    }
}

/// The client's request broke off while it was sent: nobody waits for the answer, and
/// the member is not to blame.
fn client_broke_off(e: &dyn std::fmt::Display, outcome: Outcome) -> (Response<ResBody>, Outcome) {
    let why = format!("the call's request broke off: {e}");
    (
        status_response(GrpcStatus::Unavailable, &why),
        outcome.unanswered(NoAnswer::ClientBody),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts() {
        assert_eq!(parse_timeout(b"100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_timeout(b"2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_timeout(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_timeout(b"99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in [&b""[..], b"m", b"123456789m", b"10x", b"-1S", b"1.5S"] {
            assert_eq!(parse_timeout(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn a_stream_the_member_reset_is_a_grpc_status() {
        assert_eq!(reset_status(h2::Reason::REFUSED_STREAM), GrpcStatus::Unavailable);
        assert_eq!(reset_status(h2::Reason::CANCEL), GrpcStatus::Cancelled);
        assert_eq!(
            reset_status(h2::Reason::ENHANCE_YOUR_CALM),
            GrpcStatus::ResourceExhausted
        );
        assert_eq!(
            reset_status(h2::Reason::INADEQUATE_SECURITY),
            GrpcStatus::PermissionDenied
        );
        for other in [
            h2::Reason::PROTOCOL_ERROR,
            h2::Reason::INTERNAL_ERROR,
            h2::Reason::NO_ERROR,
        ] {
            assert_eq!(reset_status(other), GrpcStatus::Internal, "{other:?}");
        }
    }

    #[test]
    fn deadlines_as_grpc_timeouts() {
        assert_eq!(timeout_value(Duration::from_millis(1500)), "1500m");
        assert_eq!(timeout_value(Duration::from_micros(10)), "1m");
        assert_eq!(timeout_value(Duration::from_millis(99_999_999)), "99999999m");
        assert_eq!(timeout_value(Duration::from_millis(100_000_000)), "100000S");
        assert_eq!(timeout_value(Duration::from_secs(100_000_000)), "1666666M");
        assert_eq!(timeout_value(Duration::MAX), "99999999H");
        for d in [Duration::from_millis(7), Duration::from_secs(200_000), Duration::MAX] {
            let v = timeout_value(d);
            let back = parse_timeout(v.as_bytes()).expect("a valid grpc-timeout");
            assert!(back <= d.max(Duration::from_millis(1)), "{v:?}");
        }
    }

    #[test]
    fn strata_failures_are_trailers_only_grpc_statuses() {
        let res = status_response(GrpcStatus::Unavailable, "no ready instance of service \"x\"\n100%");
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["grpc-status"], "14");
        assert_eq!(res.headers()["content-type"], "application/grpc");
        assert_eq!(
            res.headers()["grpc-message"],
            "no ready instance of service \"x\"?100%25"
        );
    }
}
