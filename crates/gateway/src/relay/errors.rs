//! The relay's own answers when no member answered: no member, shed, deadline
//! exceeded, the member failed (and why it was not sent again); JSON error bodies naming
//! the service and the request.

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use strata_bus::{Member, Pool};
use strata_wire::{ErrorBody, ErrorCode};

use super::{Failure, RelayPolicy, REQUEST_ID};
use crate::response_body::ResBody;

/// Why a failed request is not reissued once its attempts are spent: `relay.retries`
/// is 0 (an HTTP function's, always), or its reissues were made.
pub(super) fn retries_spent(retries: u32) -> &'static str {
    if retries == 0 {
        "relay.retries is 0"
    } else {
        "relay.retries reissues were already made"
    }
}

pub(super) fn failed(
    pool: &Pool,
    last: Option<(Arc<Member>, Failure)>,
    why_not_again: &str,
    request_id: Option<&HeaderValue>,
) -> Response<ResBody> {
    let Some((member, failure)) = last else {
        return no_member(pool, request_id);
    };
    let (status, code, what) = match failure {
        Failure::Unsent(e) => (
            StatusCode::BAD_GATEWAY,
            ErrorCode::UpstreamFailed,
            format!(
                "member {} failed before the request was sent: {e}; not sent elsewhere: {why_not_again}",
                member.name
            ),
        ),
        Failure::Broken(e) => (
            StatusCode::BAD_GATEWAY,
            ErrorCode::UpstreamFailed,
            format!(
                "member {} failed while handling the request ({e}); not reissued: {why_not_again}",
                member.name
            ),
        ),
        Failure::Timeout => (
            StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::UpstreamTimeout,
            format!(
                "member {} did not answer in time; not reissued: {why_not_again}",
                member.name
            ),
        ),
    };
    error_response(status, code, &pool.service, &what, request_id)
}

pub(super) fn no_member(pool: &Pool, request_id: Option<&HeaderValue>) -> Response<ResBody> {
    let mut res = error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::NoMember,
        &pool.service,
        &no_member_text(pool),
        request_id,
    );
    // While its instance waits out a restart backoff, a retry is worth making when the
    // next launch comes, not before.
    let retry = pool
        .next_launch_in()
        .map_or(1, |d| d.as_secs_f64().ceil().max(1.0) as u64);
    res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry));
    res
}

/// "no ready instance of service S", why when its supervisor said (`Pool::why_none`),
/// and when the next launch comes while its instance waits out a restart backoff.
pub(crate) fn no_member_text(pool: &Pool) -> String {
    let next = match pool.next_launch_in() {
        Some(d) => format!("; next launch in {:.1} s", d.as_secs_f64()),
        None => String::new(),
    };
    match pool.why_none() {
        Some(why) => format!("no ready instance of service {:?} ({why}){next}", pool.service),
        None => format!("no ready instance of service {:?}{next}", pool.service),
    }
}

/// The pool is at its maximum size and the least loaded member found is at its limit.
pub(super) fn shed(pool: &Pool, request_id: Option<&HeaderValue>) -> Response<ResBody> {
    let mut res = error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Shed,
        &pool.service,
        &format!(
            "service {:?} is at its instances.max and every instance tried is at its limit (autoscale.max_inflight): load shed, retry later",
            pool.service
        ),
        request_id,
    );
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    res
}

pub(super) fn deadline_exceeded(
    pool: &Pool,
    policy: &RelayPolicy,
    request_id: Option<&HeaderValue>,
) -> Response<ResBody> {
    error_response(
        StatusCode::GATEWAY_TIMEOUT,
        ErrorCode::DeadlineExceeded,
        &pool.service,
        &format!("deadline of {} ms exceeded", policy.deadline.as_millis()),
        request_id,
    )
}

/// A JSON error body naming the service and what went wrong.
pub fn error_response(
    status: StatusCode,
    code: ErrorCode,
    service: &str,
    message: &str,
    request_id: Option<&HeaderValue>,
) -> Response<ResBody> {
    let mut body = ErrorBody::new(status.as_u16(), code, message);
    if !service.is_empty() {
        body = body.with("service", service);
    }
    if let Some(id) = request_id.and_then(|v| v.to_str().ok()) {
        body = body.with("request_id", id);
    }
    let mut res = Response::new(ResBody::full(body.to_json()));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(id) = request_id {
        res.headers_mut().insert(REQUEST_ID, id.clone());
    }
    res
}
