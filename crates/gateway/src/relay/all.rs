//! ALL: a request relayed to every ready member of a pool once, the replies gathered
//! into one JSON array.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use strata_bus::{Member, Pool};
use strata_wire::ErrorCode;

use super::{
    error_response, no_member, strip_hop_by_hop, to_origin_form, upstream_of, Outcome, RelayPolicy, ATTEMPT,
    BROADCAST_REPLY, DEADLINE, REQUEST_ID,
};
use crate::metrics::NoAnswer;
use crate::request_body::ReqBody;
use crate::response_body::ResBody;
use crate::upstream::{Conn, SendError};

/// Relays to ALL ready members of `pool`, once each, and gathers their replies into one
/// JSON array: `[{"instance", "status", "body" | "body_base64" | "error"}]`.
pub async fn all(pool: &Pool, req: Request<ReqBody>, policy: &RelayPolicy) -> (Response<ResBody>, Outcome) {
    let (mut parts, body) = req.into_parts();
    to_origin_form(&mut parts);
    strip_hop_by_hop(&mut parts.headers);
    let request_id = parts.headers.get(REQUEST_ID).cloned();
    let ReqBody::Full(bytes) = body else {
        let res = error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            &pool.service,
            "a broadcast request body must be small enough to hold (at most 1 MiB)",
            request_id.as_ref(),
        );
        return (res, Outcome::default().unanswered(NoAnswer::ClientBody));
    };
    let members: Vec<Arc<Member>> = pool.members().iter().filter(|m| !m.is_gone()).cloned().collect();
    if members.is_empty() {
        return (
            no_member(pool, request_id.as_ref()),
            Outcome::default().unanswered(NoAnswer::NoMember),
        );
    }
    let timeout = policy.attempt_timeout.min(policy.deadline);
    let mut tasks = tokio::task::JoinSet::new();
    for member in &members {
        let mut req = Request::new(ReqBody::Full(bytes.clone()));
        *req.method_mut() = parts.method.clone();
        *req.uri_mut() = parts.uri.clone();
        *req.headers_mut() = parts.headers.clone();
        req.headers_mut().insert(ATTEMPT, HeaderValue::from(1));
        req.headers_mut()
            .insert(DEADLINE, HeaderValue::from(timeout.as_millis() as u64));
        let member = member.clone();
        tasks.spawn(async move {
            let result = tokio::time::timeout(timeout, call_once(&member, req)).await;
            (member.name.clone(), result)
        });
    }
    let mut replies = Vec::with_capacity(members.len());
    while let Some(joined) = tasks.join_next().await {
        let Ok((id, result)) = joined else { continue };
        let entry = match result {
            Ok(Ok((status, body))) => {
                let mut entry = serde_json::json!({ "instance": id, "status": status.as_u16() });
                match std::str::from_utf8(&body) {
                    Ok(text) => entry["body"] = text.into(),
                    Err(_) => entry["body_base64"] = strata_wire::base64::encode(&body).into(),
                }
                entry
            }
            Ok(Err(e)) => serde_json::json!({ "instance": id, "error": e }),
            Err(_) => serde_json::json!({ "instance": id, "error": "no answer in time" }),
        };
        replies.push(entry);
    }
    replies.sort_by(|a, b| a["instance"].as_str().cmp(&b["instance"].as_str()));
    let outcome = Outcome {
        member: None,
        broadcast: Some(replies.len()),
        attempts: 1,
        unanswered: None,
        failed: Vec::new(),
    };
    let mut res = Response::new(ResBody::full(format!("{}\n", serde_json::Value::Array(replies))));
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(id) = request_id {
        res.headers_mut().insert(REQUEST_ID, id);
    }
    (res, outcome)
}

/// One request to one member, reply read whole (for ALL).
async fn call_once(member: &Arc<Member>, req: Request<ReqBody>) -> Result<(StatusCode, Bytes), String> {
    let guard = member.begin();
    let upstream = upstream_of(member);
    let conn = match upstream.take() {
        Some(conn) => conn,
        None => Conn::connect(member.addr)
            .await
            .map_err(|e| format!("could not connect: {e}"))?,
    };
    let (parts, body) = req.into_parts();
    let (res, pending) = conn
        .send(&parts, body, std::time::Duration::MAX)
        .await
        .map_err(|(e, _)| match e {
            SendError::Unsent(e) | SendError::Broken(e) => e.to_string(),
            SendError::ClientBody(e) => e.to_string(),
            SendError::TimedOut => "no reply in time".to_string(),
        })?;
    let status = res.status();
    let body = http_body_util::Limited::new(pending.into_body(upstream, guard), BROADCAST_REPLY)
        .collect()
        .await
        .map_err(|e| format!("reply broken or over {BROADCAST_REPLY} bytes: {e}"))?
        .to_bytes();
    Ok((status, body))
}
