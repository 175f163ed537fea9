//! Relaying one request to a pool: ANY (one load-aware member, reissued to a different
//! member when that is safe) or ALL (every ready member once, replies gathered).

use std::io;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use strata_bus::{Held, Member, MemberGuard, Placement, Pool};
use strata_wire::ErrorCode;

use crate::metrics::{NoAnswer, Protocol, RelayStats};
use crate::request_body::ReqBody;
use crate::response_body::ResBody;
use crate::upstream::{Conn, SendError, Upstream};
pub use errors::error_response;
pub(crate) use errors::no_member_text;
use errors::{deadline_exceeded, failed, no_member, retries_spent, shed};

mod all;
mod errors;
pub mod grpc;
pub mod tunnel;

pub use all::all;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Which attempt this is, from 1; a member sees 2 or more on a reissued request.
pub const ATTEMPT: HeaderName = HeaderName::from_static("x-strata-attempt");
/// Milliseconds left before the caller gives up on this request.
pub const DEADLINE: HeaderName = HeaderName::from_static("x-strata-deadline-ms");
/// Marks a request safe to reissue after it was sent, whatever its method.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// The instance that answered, on every relayed response.
pub const SERVED_BY: HeaderName = HeaderName::from_static("x-strata-instance");

pub use crate::config::RelayPolicy;

/// What happened to a relayed request, for the access log.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// The member that answered last (or was tried last).
    pub member: Option<Arc<Member>>,
    /// How many members a broadcast reached.
    pub broadcast: Option<usize>,
    pub attempts: u32,
    /// Why no member's reply came back, when the relay answered itself.
    pub unanswered: Option<NoAnswer>,
    /// The attempts that got no reply, in order (empty unless one failed): traces show
    /// them as spans of their own.
    pub failed: Vec<FailedAttempt>,
}

/// An attempt that got no reply.
#[derive(Debug, Clone)]
pub struct FailedAttempt {
    pub member: Arc<Member>,
    /// Why, in words.
    pub why: String,
    /// Why, for the figures (`strata_reissues_total{reason}`).
    pub kind: crate::metrics::AttemptFailure,
    /// When it started and ended, in microseconds from the relay's start.
    pub from_us: u64,
    pub to_us: u64,
}

impl Outcome {
    pub(crate) fn unanswered(mut self, why: NoAnswer) -> Self {
        self.unanswered = Some(why);
        self
    }
}

/// GET, HEAD, PUT, DELETE, OPTIONS and TRACE may be sent twice; anything carrying an
/// `Idempotency-Key` too.
pub fn is_idempotent(method: &Method, headers: &HeaderMap) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE
    ) || headers.contains_key(IDEMPOTENCY_KEY)
}

/// Largest reply gathered from one member of a broadcast.
const BROADCAST_REPLY: usize = 16 * 1024 * 1024;

/// Why the last attempt failed.
enum Failure {
    /// Nothing of the request reached the member (refused, or a closed idle connection).
    Unsent(String),
    /// The request was (perhaps partly) sent, then the connection failed.
    Broken(String),
    /// No reply within the attempt timeout.
    Timeout,
}

/// Relays to ANY one member of `pool`.
pub async fn any(pool: &Pool, req: Request<ReqBody>, policy: &RelayPolicy) -> (Response<ResBody>, Outcome) {
    any_from(pool, req, policy, Vec::new()).await
}

/// Like [`any`], passing over the members in `avoid` while another ready member is
/// available (a redelivery should not go back to the member that just failed it).
pub async fn any_avoiding(
    pool: &Pool,
    req: Request<ReqBody>,
    policy: &RelayPolicy,
    avoid: &[Arc<Member>],
) -> (Response<ResBody>, Outcome) {
    let others = pool
        .members()
        .iter()
        .any(|m| !m.is_unavailable() && !avoid.iter().any(|a| Arc::ptr_eq(a, m)));
    let seed = if others { avoid.to_vec() } else { Vec::new() };
    any_from(pool, req, policy, seed).await
}

/// An event or a batch POSTed as JSON through the bus to one member (push delivery,
/// function triggers): never reissued once sent, since a POST is not idempotent.
pub struct JsonPost<'a> {
    /// The member-side path, for example `/jobs`.
    pub path: &'a str,
    /// Extra headers (`x-strata-queue`, `x-strata-trigger`, ...).
    pub headers: &'a [(&'static str, &'a str)],
    pub body: Bytes,
    /// Most bytes of the answer read back; the rest is dropped.
    pub answer_limit: usize,
}

/// What a member (or the relay itself) answered to a [`JsonPost`].
pub struct JsonAnswer {
    pub status: u16,
    /// The answer's body (read whole, so the connection goes back to the idle list), or
    /// why it could not be read.
    pub body: Result<Bytes, String>,
    /// The member that answered, if one did.
    pub member: Option<Arc<Member>>,
}

/// POSTs `post` to ANY one member of `pool`, passing over `avoid` while another is ready.
pub async fn post_json(pool: &Pool, post: JsonPost<'_>, policy: &RelayPolicy, avoid: &[Arc<Member>]) -> JsonAnswer {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(post.path)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, post.body.len());
    for (name, value) in post.headers {
        req = req.header(*name, *value);
    }
    let req = match req.body(ReqBody::Full(Some(post.body))) {
        Ok(req) => req,
        Err(e) => {
            return JsonAnswer {
                status: StatusCode::BAD_REQUEST.as_u16(),
                body: Err(format!("cannot build POST {}: {e}", post.path)),
                member: None,
            }
        }
    };
    // Counted in the pool's figures as the gateway's requests are: metrics and `top`
    // show the work a consumer or a function's instances are given.
    let arrived = std::time::Instant::now();
    let (res, outcome) = any_avoiding(pool, req, policy, avoid).await;
    let stats = RelayStats::of(pool);
    stats.record(res.status(), outcome.unanswered, arrived.elapsed());
    stats.record_reissues(Protocol::Http, outcome.attempts, &outcome.failed);
    let status = res.status().as_u16();
    let body = match http_body_util::Limited::new(res.into_body(), post.answer_limit)
        .collect()
        .await
    {
        Ok(body) => Ok(body.to_bytes()),
        Err(e) => Err(e.to_string()),
    };
    JsonAnswer {
        status,
        body,
        member: outcome.member,
    }
}

async fn any_from(
    pool: &Pool,
    req: Request<ReqBody>,
    policy: &RelayPolicy,
    mut tried: Vec<Arc<Member>>,
) -> (Response<ResBody>, Outcome) {
    let started = Instant::now();
    let (mut parts, body) = req.into_parts();
    to_origin_form(&mut parts);
    strip_hop_by_hop(&mut parts.headers);
    let request_id = parts.headers.get(REQUEST_ID).cloned();
    let idempotent = is_idempotent(&parts.method, &parts.headers);
    // A body held whole can be sent again; a streamed one only while unsent.
    let replay: Option<Option<Bytes>> = match &body {
        ReqBody::Full(b) => Some(b.clone()),
        ReqBody::Stream(_) => None,
    };
    let mut body = Some(body);
    let mut outcome = Outcome::default();
    tried.reserve(2);
    let mut last: Option<(Arc<Member>, Failure)> = None;
    let mut stale = Stale::Unused;
    pool.budget.deposit();
    // An autoscaled pool's admission holds, buffers or sheds; without one, one read here.
    let admission = pool.admission();
    if let Some(admission) = admission {
        admission.arrived();
    }
    loop {
        if outcome.attempts as usize > outcome.failed.len() {
            // The attempt just made failed: kept for the trace.
            if let Some((member, failure)) = &last {
                outcome.failed.push(FailedAttempt {
                    member: member.clone(),
                    why: failure.describe(),
                    kind: failure.kind(),
                    from_us: outcome.failed.last().map_or(0, |f| f.to_us),
                    to_us: started.elapsed().as_micros() as u64,
                });
            }
        }
        if outcome.attempts > 0 {
            let may_reissue = match &last {
                Some((_, Failure::Unsent(_))) => true,
                Some((_, Failure::Broken(_) | Failure::Timeout)) => idempotent && replay.is_some(),
                None => false,
            };
            // The budget is only drawn on when a reissue is allowed at all.
            let why_not = if !may_reissue || body.is_none() {
                // With no reissue at all, that is the reason: an Idempotency-Key would not
                // help. (A request that never left a stale connection is sent again
                // whatever relay.retries says, below.)
                let unsent = matches!(&last, Some((_, Failure::Unsent(_))));
                Some(if policy.retries == 0 && !unsent {
                    retries_spent(0)
                } else if replay.is_none() {
                    "its body was streamed and cannot be sent again"
                } else {
                    "the request is not idempotent (send an Idempotency-Key header to allow it)"
                })
            } else if outcome.attempts - (stale != Stale::Unused) as u32 > policy.retries {
                Some(retries_spent(policy.retries))
            } else if !(stale == Stale::JustNow || pool.budget.withdraw()) {
                Some("the pool's retry budget is spent")
            } else {
                None
            };
            if let Some(why_not) = why_not {
                let why = no_answer(&last);
                return (
                    failed(pool, last, why_not, request_id.as_ref()),
                    outcome.unanswered(why),
                );
            }
            if stale == Stale::JustNow {
                stale = Stale::Used;
            }
        }
        let remaining = policy.deadline.saturating_sub(started.elapsed());
        if remaining.is_zero() {
            return (
                deadline_exceeded(pool, policy, request_id.as_ref()),
                outcome.unanswered(NoAnswer::Deadline),
            );
        }
        let Some(mut member) = pool.pick(&tried) else {
            if last.is_some() {
                let why = no_answer(&last);
                return (
                    failed(pool, last, "no other member was left to try", request_id.as_ref()),
                    outcome.unanswered(why),
                );
            }
            // A service that may run no instance: hold the request while one starts.
            if let Some(admission) = admission.filter(|a| a.holds() && pool.members().is_empty()) {
                match admission.hold(pool, remaining).await {
                    Held::Ready => continue,
                    Held::Full | Held::Failed => {
                        return (
                            no_member(pool, request_id.as_ref()),
                            outcome.unanswered(NoAnswer::NoMember),
                        )
                    }
                    Held::Expired => {
                        return (
                            deadline_exceeded(pool, policy, request_id.as_ref()),
                            outcome.unanswered(NoAnswer::Deadline),
                        )
                    }
                }
            }
            return (
                no_member(pool, request_id.as_ref()),
                outcome.unanswered(NoAnswer::NoMember),
            );
        };
        if let Some(admission) = admission.filter(|_| outcome.attempts == 0) {
            // When the pick is full: another member with room; or, while instances start,
            // wait for room or a new member and pick again; or, at max, shed.
            match admission.place(pool, &member, &tried) {
                Placement::Send => {}
                Placement::Use(other) => member = other,
                Placement::Wait => {
                    if admission.wait_for_room(pool, &tried, remaining).await {
                        continue;
                    }
                }
                Placement::Shed => return (shed(pool, request_id.as_ref()), outcome.unanswered(NoAnswer::Shed)),
            }
        }
        let guard = match admission.map(|a| a.limit()).filter(|&at| at > 0) {
            // Taken only while still under the limit: requests placed together (held
            // ones released at once) would all pass `place`.
            Some(at) => match member.try_begin_under(at) {
                Some(guard) => guard,
                // A first attempt is placed again: elsewhere, wait, or shed.
                None if outcome.attempts == 0 => continue,
                // A reissue (or a stale connection's free retry) that finds the member
                // full goes to one with room, else is shed: it neither waits nor passes
                // the limit.
                None => match room_under(pool, at, &tried) {
                    Some((other, guard)) => {
                        member = other;
                        guard
                    }
                    None => return (shed(pool, request_id.as_ref()), outcome.unanswered(NoAnswer::Shed)),
                },
            },
            None => member.begin(),
        };
        outcome.attempts += 1;
        outcome.member = Some(member.clone());
        tried.push(member.clone());
        let upstream = upstream_of(&member);
        if let Some(admission) = admission {
            admission.counted(member.inflight());
        }
        let attempt_timeout = policy.attempt_timeout.min(remaining);
        let conn = match upstream.take() {
            Some(conn) => conn,
            None => match Box::pin(connect(&member, attempt_timeout)).await {
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
            },
        };
        let reused = conn.reused;
        parts.headers.insert(ATTEMPT, attempt_value(outcome.attempts));
        parts
            .headers
            .insert(DEADLINE, HeaderValue::from(remaining.as_millis() as u64));
        let send_body = match &replay {
            Some(bytes) => ReqBody::Full(bytes.clone()),
            None => body.take().expect("a streamed body is sent at most once"),
        };
        let sent = if member.is_remote() {
            // Across a partition the member's node never answers: the attempt ends when
            // this node finds it cannot reach it, not at its timeout.
            tokio::select! {
                biased;
                sent = conn.send(&parts, send_body, attempt_timeout) => sent,
                () = member.until_cut() => Err((SendError::Broken(cut_off()), None)),
            }
        } else {
            conn.send(&parts, send_body, attempt_timeout).await
        };
        match sent {
            Ok((res, pending)) => {
                let (mut head, ()) = res.into_parts();
                strip_hop_by_hop(&mut head.headers);
                if let Some(id) = &request_id {
                    head.headers.insert(REQUEST_ID, id.clone());
                }
                head.headers.insert(SERVED_BY, upstream.served_by.clone());
                let body = ResBody::Relayed(pending.into_body(upstream, guard));
                return (Response::from_parts(head, body), outcome);
            }
            Err((SendError::ClientBody(e), _)) => {
                // The client's body broke off or ran over the limit while it streamed to
                // the member: the member is not to blame, and the request cannot be sent
                // again.
                return (
                    client_body_error(pool, client_body_status(&e), request_id.as_ref()),
                    outcome.unanswered(NoAnswer::ClientBody),
                );
            }
            Err((SendError::Unsent(e), back)) => {
                if back.is_some() {
                    body = back;
                }
                if reused {
                    // Most likely the member closed the idle connection: it may take the
                    // request on a fresh one.
                    stale.retry_fresh(&upstream, &mut tried);
                } else {
                    pool.suspect(&member);
                }
                last = Some((member, Failure::Unsent(format!("could not send: {e}"))));
            }
            Err((SendError::Broken(e), _)) if e.kind() == io::ErrorKind::Unsupported => {
                // An HTTP/2-only member: every member of the pool would answer the same,
                // and none of them failed.
                let what = format!(
                    "member {} cannot take an HTTP/1.1 request: {e}; call service {:?} with a gRPC client",
                    member.name, pool.service
                );
                let res = error_response(
                    StatusCode::BAD_GATEWAY,
                    ErrorCode::UpstreamFailed,
                    &pool.service,
                    &what,
                    request_id.as_ref(),
                );
                return (res, outcome.unanswered(NoAnswer::Failed));
            }
            Err((SendError::Broken(e), _)) => {
                // The member dropped the connection mid-request: most likely it died. On a
                // kept-alive connection it may only have closed it while idle; the same
                // member may then be tried again, on a fresh connection, when the request
                // may be reissued at all (not one this node cannot reach).
                if reused && !member.is_cut() {
                    stale.retry_fresh(&upstream, &mut tried);
                } else {
                    pool.suspect(&member);
                }
                last = Some((member, Failure::Broken(e.to_string())));
            }
            Err((SendError::TimedOut, _)) => last = Some((member, Failure::Timeout)),
        }
    }
}

/// A fresh connection to `member`, within `within`; to a member on another node, given
/// up as soon as this node finds it out of reach ([`Member::cut`]).
async fn connect(
    member: &Member,
    within: std::time::Duration,
) -> Result<io::Result<Conn>, tokio::time::error::Elapsed> {
    let connect = tokio::time::timeout(within, Conn::connect(member.addr));
    if !member.is_remote() {
        return connect.await;
    }
    tokio::select! {
        biased;
        made = connect => made,
        () = member.until_cut() => Ok(Err(cut_off())),
    }
}

/// What an attempt to a member this node found out of reach ([`Member::cut`]) ends with.
fn cut_off() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "this node cannot reach the member's node",
    )
}

/// The one failure on a kept-alive connection that a request is not charged for, against
/// `relay.retries` or the budget: it most likely met a connection the member had closed
/// (or died with) while idle, which says nothing of the request (nginx does not count a
/// cached connection's error as a try either).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stale {
    Unused,
    /// The attempt just made was the free one.
    JustNow,
    Used,
}

impl Stale {
    /// A kept-alive connection to the member just tried failed: the member may be tried
    /// again, on a fresh connection (its other idle ones are dropped, being likely as
    /// stale); the first such failure of the request is the free one.
    fn retry_fresh(&mut self, upstream: &Upstream, tried: &mut Vec<Arc<Member>>) {
        tried.pop();
        upstream.drop_idle();
        if *self == Stale::Unused {
            *self = Stale::JustNow;
        }
    }
}

impl Failure {
    fn kind(&self) -> crate::metrics::AttemptFailure {
        use crate::metrics::AttemptFailure as K;
        match self {
            Failure::Unsent(_) => K::Unsent,
            Failure::Broken(_) => K::Broken,
            Failure::Timeout => K::Timeout,
        }
    }

    fn describe(&self) -> String {
        match self {
            Failure::Unsent(e) => e.clone(),
            Failure::Broken(e) => format!("the connection broke off: {e}"),
            Failure::Timeout => "no reply within the attempt timeout".to_string(),
        }
    }
}

/// Why the last attempt got no reply, for the figures.
fn no_answer(last: &Option<(Arc<Member>, Failure)>) -> NoAnswer {
    match last {
        None => NoAnswer::NoMember,
        Some((_, Failure::Timeout)) => NoAnswer::Timeout,
        Some((_, Failure::Unsent(_) | Failure::Broken(_))) => NoAnswer::Failed,
    }
}

/// A relay failed because the client's streamed body did (not the member): 413 when the
/// body ran over the gateway's limit, 400 when it broke off.
fn client_body_status(e: &crate::request_body::BoxError) -> StatusCode {
    if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
        StatusCode::PAYLOAD_TOO_LARGE
    } else {
        StatusCode::BAD_REQUEST
    }
}

fn client_body_error(pool: &Pool, status: StatusCode, request_id: Option<&HeaderValue>) -> Response<ResBody> {
    let what = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "request body is over the limit (gateway.max_body_bytes)"
    } else {
        "the request body broke off before its end"
    };
    let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
        ErrorCode::PayloadTooLarge
    } else {
        ErrorCode::ClientBody
    };
    let mut res = error_response(status, code, &pool.service, what, request_id);
    // The rest of the body was not read: the connection cannot carry another request.
    res.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    res
}

/// A member under `limit` in flight, not in `tried`, counted on it atomically: where a
/// reissue goes when its pick is full.
pub(crate) fn room_under(pool: &Pool, limit: usize, tried: &[Arc<Member>]) -> Option<(Arc<Member>, MemberGuard)> {
    let other = pool.least_loaded_under(limit, tried)?;
    let guard = other.try_begin_under(limit)?;
    Some((other, guard))
}

/// The member's connection pool, kept in its transport slot.
fn upstream_of(member: &Member) -> Arc<Upstream> {
    member
        .transport(|| Arc::new(Upstream::new(&member.name, member.addr)))
        .clone()
}

fn attempt_value(n: u32) -> HeaderValue {
    match n {
        1 => HeaderValue::from_static("1"),
        2 => HeaderValue::from_static("2"),
        3 => HeaderValue::from_static("3"),
        n => HeaderValue::from(n),
    }
}

/// A member speaks HTTP/1.1 and wants `/path?query`, whatever form the client used.
fn to_origin_form(parts: &mut Parts) {
    if parts.uri.scheme().is_none() && parts.uri.authority().is_none() {
        return;
    }
    if let Some(authority) = parts.uri.authority() {
        if !parts.headers.contains_key(header::HOST) {
            if let Ok(v) = HeaderValue::from_str(authority.as_str()) {
                parts.headers.insert(header::HOST, v);
            }
        }
    }
    let pq = parts.uri.path_and_query().map(|pq| pq.as_str()).unwrap_or("/");
    if let Ok(uri) = pq.parse::<Uri>() {
        parts.uri = uri;
    }
    parts.version = http::Version::HTTP_11;
}

static HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes the headers that belong to one connection, not to the message. One pass over
/// the (few) headers finds whether there is anything to remove at all; most messages
/// carry at most `Connection`.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let mut present = 0u8;
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    if let Some(listed) = headers.remove(header::CONNECTION) {
        if let Ok(listed) = listed.to_str() {
            for token in listed.split(',').map(str::trim) {
                // `close` and `keep-alive` are the usual tokens; only other names can
                // be headers that need removing.
                if token.eq_ignore_ascii_case("close") || token.eq_ignore_ascii_case("keep-alive") {
                    continue;
                }
                if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                    headers.remove(name);
                }
            }
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate().skip(1) {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
}

#[cfg(test)]
mod tests;
