//! The queue routes of the node API (contract: `docs/queues.md`): create, stats, publish
//! (JSON or the compact batch form, or publish-and-wait for the reply), fetch (JSON or
//! compact), ack, nack, delete, reply.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use strata_gateway::base64;
use strata_manifest::QueueSpec;
use strata_queue::{FetchOptions, Message, NewMessage, QueueError, Queues, Replied, Reply};

use crate::{api_error, ApiState};

/// Content type of the compact batch form.
pub const COMPACT: &str = "application/x-strata-batch";
/// Largest `max_bytes` of one fetch: one answer is built in memory.
pub const MAX_FETCH_BYTES: usize = 64 << 20;
/// Longest `lease_ms` of one fetch: a consumer that vanishes holds its messages that long.
pub const MAX_LEASE_MS: u64 = 12 * 3600 * 1000;

pub(crate) fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/v1/queues", get(list))
        .route("/v1/queues/{queue}", get(stats).put(create))
        .route("/v1/queues/{queue}/messages", post(publish))
        .route("/v1/queues/{queue}/groups/{group}/fetch", post(fetch))
        .route("/v1/queues/{queue}/groups/{group}/ack", post(ack))
        .route("/v1/queues/{queue}/groups/{group}/nack", post(nack))
        .route(
            "/v1/queues/{queue}/groups/{group}/messages/{offset}",
            delete(delete_one),
        )
        .route("/v1/reply", post(reply))
}

fn queue_error(e: QueueError) -> Response {
    let status = match &e {
        QueueError::UnknownQueue(_) | QueueError::UnknownGroup(_) | QueueError::NoInbox(_) => StatusCode::NOT_FOUND,
        QueueError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        QueueError::BadInput(_) => StatusCode::BAD_REQUEST,
        QueueError::NoReply(_) => StatusCode::GATEWAY_TIMEOUT,
        QueueError::Duplicate(_) => StatusCode::CONFLICT,
        QueueError::Closed => StatusCode::SERVICE_UNAVAILABLE,
        QueueError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    api_error(status, e.to_string())
}

fn bad(message: impl Into<String>) -> Response {
    api_error(StatusCode::BAD_REQUEST, message.into())
}

fn queues(state: &ApiState) -> &Arc<Queues> {
    &state.queues
}

async fn list(State(state): State<Arc<ApiState>>) -> Response {
    let stats: Vec<_> = queues(&state).list().iter().map(|q| q.stats()).collect();
    Json(json!({ "queues": stats })).into_response()
}

async fn stats(State(state): State<Arc<ApiState>>, Path(queue): Path<String>) -> Response {
    match queues(&state).get(&queue) {
        Ok(q) => Json(q.stats()).into_response(),
        Err(e) => queue_error(e),
    }
}

async fn create(State(state): State<Arc<ApiState>>, Path(queue): Path<String>, body: Bytes) -> Response {
    let spec: QueueSpec = if body.iter().all(u8::is_ascii_whitespace) {
        QueueSpec::default()
    } else {
        let mut de = serde_json::Deserializer::from_slice(&body);
        match serde_path_to_error::deserialize(&mut de) {
            Ok(spec) => spec,
            Err(e) => {
                return bad(format!(
                    "queue settings: {}: {} (see docs/queues.md)",
                    e.path(),
                    e.inner()
                ))
            }
        }
    };
    let qs = queues(&state).clone();
    let created = tokio::task::spawn_blocking(move || qs.create(&queue, spec)).await;
    match created {
        Ok(Ok((q, true))) => (StatusCode::CREATED, Json(q.stats())).into_response(),
        Ok(Ok((q, false))) => Json(q.stats()).into_response(),
        Ok(Err(e)) => queue_error(e),
        Err(e) => api_error(StatusCode::INTERNAL_SERVER_ERROR, format!("create task: {e}")),
    }
}

/// A message as JSON carries it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageIn {
    body: Option<String>,
    body_base64: Option<String>,
    dedupe_id: Option<String>,
    reply_to: Option<String>,
    correlation_id: Option<String>,
}

/// Input errors are `String`s, turned into a 400 by the handler.
fn payload_of(body: Option<String>, body_base64: Option<String>, what: &str) -> Result<Bytes, String> {
    match (body, body_base64) {
        (Some(text), None) => Ok(Bytes::from(text)),
        (None, Some(b64)) => base64::decode(&b64)
            .map(Bytes::from)
            .map_err(|e| format!("{what}.body_base64 is not base64: {e}")),
        (None, None) => Err(format!("{what} has neither body nor body_base64")),
        (Some(_), Some(_)) => Err(format!("{what} has both body and body_base64; give one")),
    }
}

fn message_in(value: serde_json::Value, what: &str) -> Result<NewMessage, String> {
    let m: MessageIn = serde_json::from_value(value).map_err(|e| format!("{what}: {e}"))?;
    Ok(NewMessage {
        payload: payload_of(m.body, m.body_base64, what)?,
        dedupe_id: m.dedupe_id,
        reply_to: m.reply_to,
        correlation_id: m.correlation_id,
    })
}

/// The compact batch form: each message a 4-byte big-endian length, then its bytes.
pub fn decode_compact(mut body: Bytes) -> Result<Vec<NewMessage>, String> {
    let mut out = Vec::new();
    while !body.is_empty() {
        if body.len() < 4 {
            return Err(format!(
                "message {}: a length cut short ({} bytes)",
                out.len(),
                body.len()
            ));
        }
        let len = u32::from_be_bytes(body[..4].try_into().expect("4 bytes")) as usize;
        if body.len() - 4 < len {
            return Err(format!(
                "message {}: length {len} runs past the end ({} bytes left)",
                out.len(),
                body.len() - 4
            ));
        }
        let _ = body.split_to(4);
        out.push(NewMessage::new(body.split_to(len)));
    }
    Ok(out)
}

fn is_compact(headers: &HeaderMap, name: header::HeaderName) -> bool {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|p| p.trim().starts_with(COMPACT)))
}

async fn publish(
    State(state): State<Arc<ApiState>>,
    Path(queue): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let q = match queues(&state).get(&queue) {
        Ok(q) => q,
        Err(e) => return queue_error(e),
    };
    let wait_reply = match params.get("wait_reply_ms").map(|v| v.parse::<u64>()) {
        None => None,
        Some(Ok(ms)) if ms > 0 => Some(Duration::from_millis(ms)),
        Some(_) => return bad("wait_reply_ms must be a whole number of milliseconds above 0"),
    };
    if let Some(unknown) = params.keys().find(|k| *k != "wait_reply_ms") {
        return bad(format!("unknown parameter {unknown:?}; publish takes wait_reply_ms"));
    }
    if is_compact(&headers, header::CONTENT_TYPE) {
        if wait_reply.is_some() {
            return bad("wait_reply_ms takes one JSON message, not a compact batch");
        }
        let messages = match decode_compact(body) {
            Ok(m) => m,
            Err(e) => return bad(format!("compact batch: {e}")),
        };
        return match q.publish(messages).await {
            Ok(published) => {
                let offsets: Vec<u64> = published.iter().map(|p| p.offset).collect();
                (StatusCode::CREATED, Json(json!({ "offsets": offsets }))).into_response()
            }
            Err(e) => queue_error(e),
        };
    }
    let value: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad(format!("body is not JSON: {e}")),
    };
    let batch = match value {
        serde_json::Value::Object(mut map) if map.contains_key("messages") => {
            if map.len() > 1 {
                return bad("a batch is {\"messages\": [...]} and nothing else");
            }
            match map.remove("messages") {
                Some(serde_json::Value::Array(items)) => Some(items),
                _ => return bad("messages must be an array of messages"),
            }
        }
        other => {
            let message = match message_in(other, "message") {
                Ok(m) => m,
                Err(e) => return bad(e),
            };
            if let Some(deadline) = wait_reply {
                return request(&state, &queue, message, deadline).await;
            }
            return match q.publish(vec![message]).await {
                Ok(p) => (StatusCode::CREATED, Json(p[0])).into_response(),
                Err(e) => queue_error(e),
            };
        }
    };
    if wait_reply.is_some() {
        return bad("wait_reply_ms takes one message, not a batch");
    }
    let items = batch.unwrap_or_default();
    let mut messages = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        match message_in(item, &format!("messages[{i}]")) {
            Ok(m) => messages.push(m),
            Err(e) => return bad(e),
        }
    }
    match q.publish(messages).await {
        Ok(published) => {
            let offsets: Vec<u64> = published.iter().map(|p| p.offset).collect();
            let duplicates = published.iter().filter(|p| p.duplicate).count();
            (
                StatusCode::CREATED,
                Json(json!({ "offsets": offsets, "duplicates": duplicates })),
            )
                .into_response()
        }
        Err(e) => queue_error(e),
    }
}

async fn request(state: &ApiState, queue: &str, message: NewMessage, deadline: Duration) -> Response {
    match queues(state).request(queue, message, deadline).await {
        Ok((published, reply)) => {
            let mut r = body_json(&reply.payload);
            if let Some(c) = reply.correlation_id {
                r.insert("correlation_id".into(), c.into());
            }
            Json(json!({ "offset": published.offset, "reply": r })).into_response()
        }
        Err(e) => queue_error(e),
    }
}

/// `body` when the bytes are UTF-8, else `body_base64`.
fn body_json(payload: &[u8]) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    match std::str::from_utf8(payload) {
        Ok(text) => m.insert("body".into(), text.into()),
        Err(_) => m.insert("body_base64".into(), base64::encode(payload).into()),
    };
    m
}

#[derive(Serialize)]
struct MessageOut<'a> {
    offset: u64,
    deliveries: u32,
    timestamp_ms: u64,
    #[serde(flatten)]
    body: serde_json::Map<String, serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_to: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    correlation_id: Option<&'a str>,
}

/// The JSON form of fetched messages: `{"messages": [...]}` plus `extra` fields.
pub fn messages_json(messages: &[Message], extra: &[(&str, &str)]) -> Vec<u8> {
    let out: Vec<MessageOut> = messages
        .iter()
        .map(|m| MessageOut {
            offset: m.offset,
            deliveries: m.deliveries,
            timestamp_ms: m.timestamp_ms,
            body: body_json(&m.payload),
            reply_to: m.reply_to.as_deref(),
            correlation_id: m.correlation_id.as_deref(),
        })
        .collect();
    let mut doc = serde_json::Map::new();
    for (k, v) in extra {
        doc.insert((*k).into(), (*v).into());
    }
    doc.insert(
        "messages".into(),
        serde_json::to_value(out).expect("messages serialize"),
    );
    serde_json::to_vec(&doc).expect("json")
}

fn parse_param<T: std::str::FromStr>(
    params: &HashMap<String, String>,
    name: &str,
    what: &str,
) -> Result<Option<T>, String> {
    match params.get(name) {
        None => Ok(None),
        Some(v) => v
            .parse::<T>()
            .map(Some)
            .map_err(|_| format!("{name} must be {what}, not {v:?}")),
    }
}

async fn fetch(
    State(state): State<Arc<ApiState>>,
    Path((queue, group)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    const KNOWN: [&str; 4] = ["max", "wait_ms", "max_bytes", "lease_ms"];
    if let Some(unknown) = params.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return bad(format!(
            "unknown parameter {unknown:?}; fetch takes {}",
            KNOWN.join(", ")
        ));
    }
    if !strata_manifest::is_queue_name(&group) {
        return bad(format!(
            "group {group:?} is not a group name (at most 64 lowercase letters, digits, - and _)"
        ));
    }
    let q = match queues(&state).get(&queue) {
        Ok(q) => q,
        Err(e) => return queue_error(e),
    };
    let mut opts = FetchOptions::default();
    match params.get("max").map(String::as_str) {
        None => {}
        Some("all") => opts.max = usize::MAX,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n > 0 => opts.max = n,
            _ => return bad(format!("max must be a whole number of at least 1, or all; not {v:?}")),
        },
    }
    let wait = match parse_param::<u64>(&params, "wait_ms", "a whole number of milliseconds") {
        Ok(w) => w,
        Err(e) => return bad(e),
    };
    // Long polls are bounded so a forgotten client does not hold a task forever.
    opts.wait = Duration::from_millis(wait.unwrap_or(0).min(300_000));
    match parse_param::<usize>(&params, "max_bytes", "a whole number of bytes") {
        Ok(Some(0)) => return bad("max_bytes must be at least 1"),
        Ok(Some(n)) if n > MAX_FETCH_BYTES => {
            return bad(format!("max_bytes must be at most {MAX_FETCH_BYTES} (64 MiB)"))
        }
        Ok(Some(n)) => opts.max_bytes = n,
        Ok(None) => {}
        Err(e) => return bad(e),
    }
    match parse_param::<u64>(&params, "lease_ms", "a whole number of milliseconds") {
        Ok(Some(0)) => return bad("lease_ms must be at least 1"),
        Ok(Some(n)) if n > MAX_LEASE_MS => return bad(format!("lease_ms must be at most {MAX_LEASE_MS} (12 hours)")),
        Ok(l) => opts.lease = l.map(Duration::from_millis),
        Err(e) => return bad(e),
    }
    let messages = match q.fetch(&group, opts).await {
        Ok(m) => m,
        Err(e) => return queue_error(e),
    };
    if is_compact(&headers, header::ACCEPT) {
        let size: usize = messages.iter().map(|m| 16 + m.payload.len()).sum();
        let mut out = Vec::with_capacity(size);
        for m in &messages {
            out.extend_from_slice(&m.offset.to_be_bytes());
            out.extend_from_slice(&m.deliveries.to_be_bytes());
            out.extend_from_slice(&(m.payload.len() as u32).to_be_bytes());
            out.extend_from_slice(&m.payload);
        }
        return ([(header::CONTENT_TYPE, COMPACT)], Body::from(out)).into_response();
    }
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(messages_json(&messages, &[])),
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Offsets {
    offsets: Vec<u64>,
}

fn offsets_of(body: &[u8]) -> Result<Vec<u64>, String> {
    serde_json::from_slice::<Offsets>(body)
        .map(|o| o.offsets)
        .map_err(|e| format!("expected {{\"offsets\": [whole numbers]}}: {e}"))
}

async fn ack(
    State(state): State<Arc<ApiState>>,
    Path((queue, group)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let offsets = match offsets_of(&body) {
        Ok(o) => o,
        Err(e) => return bad(e),
    };
    let q = match queues(&state).get(&queue) {
        Ok(q) => q,
        Err(e) => return queue_error(e),
    };
    match q.ack(&group, &offsets).await {
        Ok((acked, ignored)) => Json(json!({ "acked": acked, "ignored": ignored })).into_response(),
        Err(e) => queue_error(e),
    }
}

async fn nack(
    State(state): State<Arc<ApiState>>,
    Path((queue, group)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let offsets = match offsets_of(&body) {
        Ok(o) => o,
        Err(e) => return bad(e),
    };
    let q = match queues(&state).get(&queue) {
        Ok(q) => q,
        Err(e) => return queue_error(e),
    };
    match q.nack(&group, &offsets) {
        Ok((nacked, ignored)) => Json(json!({ "nacked": nacked, "ignored": ignored })).into_response(),
        Err(e) => queue_error(e),
    }
}

async fn delete_one(
    State(state): State<Arc<ApiState>>,
    Path((queue, group, offset)): Path<(String, String, String)>,
) -> Response {
    let Ok(offset) = offset.parse::<u64>() else {
        return bad(format!("offset {offset:?} is not a whole number"));
    };
    let q = match queues(&state).get(&queue) {
        Ok(q) => q,
        Err(e) => return queue_error(e),
    };
    match q.ack(&group, &[offset]).await {
        Ok((1, _)) => Json(json!({ "acked": 1 })).into_response(),
        Ok(_) => api_error(
            StatusCode::NOT_FOUND,
            format!("offset {offset} is not leased to group {group:?} (deleted already, or never fetched)"),
        ),
        Err(e) => queue_error(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplyIn {
    reply_to: String,
    correlation_id: Option<String>,
    body: Option<String>,
    body_base64: Option<String>,
}

async fn reply(State(state): State<Arc<ApiState>>, body: Bytes) -> Response {
    let r: ReplyIn = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad(format!("reply: {e}")),
    };
    let payload = match payload_of(r.body, r.body_base64, "reply") {
        Ok(p) => p,
        Err(e) => return bad(e),
    };
    let reply = Reply {
        correlation_id: r.correlation_id,
        payload,
    };
    match queues(&state).reply(&r.reply_to, reply).await {
        Ok(Replied::Inbox) => (StatusCode::ACCEPTED, Json(json!({ "delivered": "inbox" }))).into_response(),
        Ok(Replied::Queue(offset)) => (StatusCode::CREATED, Json(json!({ "offset": offset }))).into_response(),
        Err(e) => queue_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_batches_decode_and_malformed_ones_are_named() {
        let mut body = Vec::new();
        for m in [&b"one"[..], b"", b"three"] {
            body.extend_from_slice(&(m.len() as u32).to_be_bytes());
            body.extend_from_slice(m);
        }
        let got = decode_compact(Bytes::from(body.clone())).unwrap();
        let payloads: Vec<&[u8]> = got.iter().map(|m| &m.payload[..]).collect();
        assert_eq!(payloads, [&b"one"[..], b"", b"three"]);
        assert!(decode_compact(Bytes::new()).unwrap().is_empty());
        let cut = decode_compact(Bytes::from(body[..body.len() - 1].to_vec())).unwrap_err();
        assert!(cut.contains("message 2: length 5 runs past the end"), "{cut}");
        let short = decode_compact(Bytes::from(vec![0, 0])).unwrap_err();
        assert!(short.contains("a length cut short"), "{short}");
    }
}
