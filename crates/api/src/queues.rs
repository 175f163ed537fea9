//! The queue routes of the node API (contract: `docs/queues.md`): create, stats, publish
//! (JSON or the compact batch form, or publish-and-wait for the reply), fetch (JSON or
//! compact), ack, nack, delete, reply.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::json;
use strata_manifest::QueueSpec;
use strata_queue::{
    FetchOptions, Message, NewMessage, Published, QueueBackend, QueueError, QueueHandle, Replied, Reply,
};
use strata_wire::{compact, messages_json, CompactMessage, DeadLetterOut, ErrorCode, JsonBody, MessageOut};

use strata_gateway::{relay, trace};

use crate::extract::{Path, Query};
use crate::turns::Turn;
use crate::{body, ApiError, Caller, NodeParts};

/// Largest `max_bytes` of one fetch: one answer is built in memory.
pub const MAX_FETCH_BYTES: usize = 64 << 20;
/// Longest `lease_ms` of one fetch: a consumer that vanishes holds its messages that long.
pub const MAX_LEASE_MS: u64 = 12 * 3600 * 1000;

pub(crate) fn routes() -> Router<Arc<NodeParts>> {
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

fn queues(state: &NodeParts) -> &Arc<dyn QueueBackend> {
    &state.queues
}

fn queue(state: &NodeParts, name: &str) -> Result<Arc<dyn QueueHandle>, ApiError> {
    queues(state).get(name).map_err(|e| {
        let own = name.strip_suffix(strata_queue::DLQ_SUFFIX).unwrap_or(name);
        match e {
            // A name no queue can have: said so, not only that there is none.
            QueueError::UnknownQueue(_) if !strata_manifest::is_queue_name(own) => ApiError::not_found(format!(
                "no queue named {name:?}, nor can there be: a queue name is at most 64 lowercase letters, digits, - and _"
            )),
            e => e.into(),
        }
    })
}

type Answer = Result<Response, ApiError>;

async fn list(State(state): State<Arc<NodeParts>>) -> Response {
    Json(list_of(&state)).into_response()
}

/// What `GET /v1/queues` answers (the dashboard's stream sends it too).
pub(crate) fn list_of(state: &NodeParts) -> serde_json::Value {
    let stats: Vec<_> = queues(state).list().iter().map(|q| q.stats()).collect();
    let failed: Vec<_> = queues(state)
        .failures()
        .into_iter()
        .map(|(name, reason)| json!({ "name": name, "reason": reason }))
        .collect();
    json!({ "queues": stats, "failed": failed, "backend": queues(state).kind() })
}

async fn stats(State(state): State<Arc<NodeParts>>, Path(name): Path<String>) -> Answer {
    Ok(Json(queue(&state, &name)?.stats()).into_response())
}

async fn create(
    State(state): State<Arc<NodeParts>>,
    Path(queue): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let body = body::read(&headers, body, body::CONTROL, "a queue's settings").await?;
    let given = !body.iter().all(u8::is_ascii_whitespace);
    let spec: QueueSpec = if given {
        body::parse(&body, "the queue settings of docs/queues.md, or nothing")?
    } else {
        QueueSpec::default()
    };
    strata_manifest::check_queue_request(&queue, &spec).map_err(ApiError::bad)?;
    Ok(match queues(&state).create(&queue, spec.clone()).await? {
        (q, true) => (StatusCode::CREATED, Json(q.stats())).into_response(),
        (q, false) => {
            // Settings that differ from the queue's are refused, not dropped unsaid.
            if given {
                let differ = differing_settings(&body, &spec, q.spec());
                if !differ.is_empty() {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        ErrorCode::Conflict,
                        format!(
                            "queue {queue:?} exists with other settings: {}; a queue's settings are fixed when it is made (delete it and create it again, or declare it in strata.json)",
                            differ.join(", ")
                        ),
                    ));
                }
            }
            Json(q.stats()).into_response()
        }
    })
}

/// The settings `body` names whose values in `asked` differ from the queue's (`has`),
/// as "lease_ms is 30000, not 1000".
fn differing_settings(body: &[u8], asked: &QueueSpec, has: &QueueSpec) -> Vec<String> {
    let named: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let (asked, has) = (json!(asked), json!(has));
    let Some(named) = named.as_object() else {
        return Vec::new();
    };
    named
        .keys()
        .filter(|key| asked.get(key.as_str()) != has.get(key.as_str()))
        .map(|key| {
            let show = |v: Option<&serde_json::Value>| v.map_or("unset".to_string(), ToString::to_string);
            format!(
                "{key} is {}, not {}",
                show(has.get(key.as_str())),
                show(asked.get(key.as_str()))
            )
        })
        .collect()
}

/// A publish as JSON carries it: one message, or a batch (`messages` and nothing else).
/// Parsed as one struct, so that neither form is buffered as a JSON value first.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishIn {
    messages: Option<Vec<MessageIn>>,
    body: Option<String>,
    body_base64: Option<String>,
    dedupe_id: Option<String>,
    reply_to: Option<String>,
    correlation_id: Option<String>,
}

const PUBLISH_SHAPE: &str = r#"{"body": "..."} or {"messages": [{"body": "..."}, ...]} (docs/queues.md)"#;

impl PublishIn {
    /// The one message, when this is not a batch.
    fn message(self) -> MessageIn {
        MessageIn {
            body: self.body,
            body_base64: self.body_base64,
            dedupe_id: self.dedupe_id,
            reply_to: self.reply_to,
            correlation_id: self.correlation_id,
        }
    }

    fn has_message_fields(&self) -> bool {
        self.body.is_some()
            || self.body_base64.is_some()
            || self.dedupe_id.is_some()
            || self.reply_to.is_some()
            || self.correlation_id.is_some()
    }
}

/// A message as JSON carries it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a message, {\"body\": \"...\"}")]
struct MessageIn {
    body: Option<String>,
    body_base64: Option<String>,
    dedupe_id: Option<String>,
    reply_to: Option<String>,
    correlation_id: Option<String>,
}

fn message_in(m: MessageIn, what: &str) -> Result<NewMessage, ApiError> {
    Ok(NewMessage {
        payload: JsonBody {
            body: m.body,
            body_base64: m.body_base64,
        }
        .into_payload(what)?,
        dedupe_id: m.dedupe_id,
        reply_to: m.reply_to,
        correlation_id: m.correlation_id,
        traceparent: None,
        dead_letter: None,
    })
}

fn is_compact(headers: &HeaderMap, name: header::HeaderName) -> bool {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|p| p.trim().starts_with(compact::MEDIA_TYPE)))
}

async fn publish(
    State(state): State<Arc<NodeParts>>,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // A publisher that passes its `traceparent` gets a publish span in its trace, and
    // the messages carry the span on to their delivery; an untraced publish costs nothing.
    let passed = trace::enabled()
        .then(|| headers.get(trace::TRACEPARENT))
        .flatten()
        .and_then(|v| trace::Context::passed(v.as_bytes()));
    let Some(context) = passed else {
        return publish_messages(&state, &name, &params, &headers, body, None)
            .await
            .into_response();
    };
    let (started, start_us) = (std::time::Instant::now(), trace::now_us());
    let span_id = trace::random();
    let traceparent = context.header(span_id);
    let traceparent = traceparent.to_str().expect("a traceparent is ASCII");
    let res = publish_messages(&state, &name, &params, &headers, body, Some(traceparent))
        .await
        .into_response();
    state.traces.record(trace::Span {
        context,
        span_id,
        kind: trace::Kind::Publish,
        service: Arc::from(name.as_str()),
        method: http::Method::POST,
        path: http::Uri::try_from(format!("/v1/queues/{name}/messages")).unwrap_or_default(),
        request_id: headers.get(relay::REQUEST_ID).cloned(),
        member: None,
        attempts: 0,
        unanswered: None,
        status: res.status().as_u16(),
        start_us,
        duration_us: started.elapsed().as_micros() as u64,
        reason: None,
    });
    res
}

/// A publish: `traceparent` (the publish span's) goes into every message.
async fn publish_messages(
    state: &NodeParts,
    name: &str,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Body,
    traceparent: Option<&str>,
) -> Answer {
    let traced = |mut m: NewMessage| {
        m.traceparent = traceparent.map(str::to_string);
        m
    };
    let q = queue(state, name)?;
    let wait_reply = match params.get("wait_reply_ms").map(|v| v.parse::<u64>()) {
        None => None,
        Some(Ok(ms)) if ms > 0 => Some(Duration::from_millis(ms)),
        Some(_) => {
            return Err(ApiError::bad(
                "wait_reply_ms must be a whole number of milliseconds above 0",
            ))
        }
    };
    if let Some(unknown) = params
        .keys()
        .find(|k| !matches!(k.as_str(), "wait_reply_ms" | "producer" | "sequence"))
    {
        return Err(ApiError::bad(format!(
            "unknown parameter {unknown:?}; publish takes wait_reply_ms, producer and sequence"
        )));
    }
    let turn = match (params.get("producer"), params.get("sequence")) {
        (None, None) => None,
        (Some(producer), Some(sequence)) => {
            if producer.is_empty()
                || producer.len() > 64
                || !producer
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(ApiError::bad("producer must be 1 to 64 letters, digits, - and _"));
            }
            let Ok(sequence) = sequence.parse::<u64>() else {
                return Err(ApiError::bad(format!(
                    "sequence must be a whole number from 0, not {sequence:?}"
                )));
            };
            if wait_reply.is_some() {
                return Err(ApiError::bad(
                    "wait_reply_ms takes one message on its own, without producer and sequence",
                ));
            }
            Some(state.turns.claim(name, producer, sequence))
        }
        _ => return Err(ApiError::bad("producer and sequence go together")),
    };
    let limit = body::publish_limit(q.spec().max_message_bytes);
    let what = format!("a publish to queue {name:?}");
    if is_compact(headers, header::CONTENT_TYPE) {
        if wait_reply.is_some() {
            return Err(ApiError::bad(
                "wait_reply_ms takes one JSON message, not a compact batch",
            ));
        }
        let body = body::read(headers, body, limit, &what).await?;
        let messages = compact::decode_batch(&body)
            .map_err(|e| ApiError::bad(format!("compact batch: {e}")))?
            .into_iter()
            .map(|payload| traced(NewMessage::new(payload)))
            .collect();
        let published = publish_in_turn(&q, messages, turn).await?;
        let offsets: Vec<u64> = published.iter().map(|p| p.offset).collect();
        return Ok((StatusCode::CREATED, Json(json!({ "offsets": offsets }))).into_response());
    }
    let mut publish: PublishIn = body::json(headers, body, limit, &what, PUBLISH_SHAPE).await?;
    let Some(items) = publish.messages.take() else {
        let message = traced(message_in(publish.message(), "message")?);
        if let Some(deadline) = wait_reply {
            return request(state, name, message, deadline).await;
        }
        let p = publish_in_turn(&q, vec![message], turn).await?;
        return Ok((StatusCode::CREATED, Json(p[0])).into_response());
    };
    if publish.has_message_fields() {
        return Err(ApiError::bad("a batch is {\"messages\": [...]} and nothing else"));
    }
    if wait_reply.is_some() {
        return Err(ApiError::bad("wait_reply_ms takes one message, not a batch"));
    }
    let messages = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| message_in(item, &format!("messages[{i}]")).map(traced))
        .collect::<Result<Vec<_>, _>>()?;
    let published = publish_in_turn(&q, messages, turn).await?;
    let offsets: Vec<u64> = published.iter().map(|p| p.offset).collect();
    let duplicates = published.iter().filter(|p| p.duplicate).count();
    Ok((
        StatusCode::CREATED,
        Json(json!({ "offsets": offsets, "duplicates": duplicates })),
    )
        .into_response())
}

/// Publishes `messages`; with a `turn`, after its producer's earlier publishes have
/// their place ([`crate::turns`]).
async fn publish_in_turn(
    q: &Arc<dyn QueueHandle>,
    messages: Vec<NewMessage>,
    turn: Option<Turn>,
) -> Result<Vec<Published>, QueueError> {
    match turn {
        None => q.publish(messages).await,
        Some(turn) => q.publish_placed(messages, turn.wait().await).await,
    }
}

async fn request(state: &NodeParts, queue: &str, message: NewMessage, deadline: Duration) -> Answer {
    let (published, reply) = queues(state).request(queue, message, deadline).await?;
    let mut r = serde_json::to_value(JsonBody::from_bytes(&reply.payload)).expect("a body serializes");
    if let Some(c) = reply.correlation_id {
        r["correlation_id"] = c.into();
    }
    if let Some(t) = reply.traceparent {
        r["traceparent"] = t.into();
    }
    Ok(Json(json!({ "offset": published.offset, "reply": r })).into_response())
}

/// The JSON form of fetched messages (also what push delivery posts).
pub fn messages_out(messages: &[Message]) -> Vec<MessageOut<'_>> {
    messages
        .iter()
        .map(|m| {
            let (reply_to, correlation_id) = (m.reply_to.as_deref(), m.correlation_id.as_deref());
            MessageOut::new(
                m.offset,
                m.deliveries,
                m.timestamp_ms,
                &m.payload,
                reply_to,
                correlation_id,
            )
            .traced(m.traceparent.as_deref())
            .origin(dead_letter_out(m))
        })
        .collect()
}

/// A dead letter's origin as its JSON gives it (None for any other message).
pub fn dead_letter_out(m: &Message) -> Option<DeadLetterOut<'_>> {
    m.dead_letter.as_ref().map(|d| DeadLetterOut {
        group: &d.group,
        offset: d.offset,
        timestamp_ms: d.timestamp_ms,
        deliveries: d.deliveries,
    })
}

fn parse_param<T: std::str::FromStr>(
    params: &HashMap<String, String>,
    name: &str,
    what: &str,
) -> Result<Option<T>, ApiError> {
    match params.get(name) {
        None => Ok(None),
        Some(v) => v
            .parse::<T>()
            .map(Some)
            .map_err(|_| ApiError::bad(format!("{name} must be {what}, not {v:?}"))),
    }
}

/// The fetch options of a query string, each bounded.
fn fetch_options(params: &HashMap<String, String>) -> Result<FetchOptions, ApiError> {
    const KNOWN: [&str; 4] = ["max", "wait_ms", "max_bytes", "lease_ms"];
    if let Some(unknown) = params.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(ApiError::bad(format!(
            "unknown parameter {unknown:?}; fetch takes {}",
            KNOWN.join(", ")
        )));
    }
    let mut opts = FetchOptions::default();
    match params.get("max").map(String::as_str) {
        None => {}
        Some("all") => opts.max = usize::MAX,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n > 0 => opts.max = n,
            _ => {
                return Err(ApiError::bad(format!(
                    "max must be a whole number of at least 1, or all; not {v:?}"
                )))
            }
        },
    }
    let wait = parse_param::<u64>(params, "wait_ms", "a whole number of milliseconds")?;
    // Long polls are bounded so a forgotten client does not hold a task forever.
    opts.wait = Duration::from_millis(wait.unwrap_or(0).min(300_000));
    match parse_param::<usize>(params, "max_bytes", "a whole number of bytes")? {
        Some(0) => return Err(ApiError::bad("max_bytes must be at least 1")),
        Some(n) if n > MAX_FETCH_BYTES => {
            return Err(ApiError::bad(format!(
                "max_bytes must be at most {MAX_FETCH_BYTES} (64 MiB)"
            )))
        }
        Some(n) => opts.max_bytes = n,
        None => {}
    }
    match parse_param::<u64>(params, "lease_ms", "a whole number of milliseconds")? {
        Some(0) => return Err(ApiError::bad("lease_ms must be at least 1")),
        Some(n) if n > MAX_LEASE_MS => {
            return Err(ApiError::bad(format!(
                "lease_ms must be at most {MAX_LEASE_MS} (12 hours)"
            )))
        }
        l => opts.lease = l.map(Duration::from_millis),
    }
    Ok(opts)
}

async fn fetch(
    State(state): State<Arc<NodeParts>>,
    Path((name, group)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Answer {
    let opts = fetch_options(&params)?;
    if !strata_manifest::is_queue_name(&group) {
        return Err(ApiError::bad(format!(
            "group {group:?} is not a group name (at most 64 lowercase letters, digits, - and _)"
        )));
    }
    let messages = queue(&state, &name)?.fetch(&group, opts).await?;
    if is_compact(&headers, header::ACCEPT) {
        let compact_messages: Vec<CompactMessage> = messages
            .iter()
            .map(|m| CompactMessage {
                offset: m.offset,
                deliveries: m.deliveries,
                body: m.payload.clone(),
            })
            .collect();
        let out = compact::encode_fetch(&compact_messages).map_err(|e| ApiError::internal(e.0))?;
        return Ok(([(header::CONTENT_TYPE, compact::MEDIA_TYPE)], Body::from(out)).into_response());
    }
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(messages_json(&messages_out(&messages), &[])),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Offsets {
    offsets: Vec<u64>,
}

async fn offsets_of(headers: &HeaderMap, body: Body, what: &str) -> Result<Vec<u64>, ApiError> {
    let o: Offsets = body::json(headers, body, body::OFFSETS, what, r#"{"offsets": [whole numbers]}"#).await?;
    Ok(o.offsets)
}

async fn ack(
    State(state): State<Arc<NodeParts>>,
    Path((name, group)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let offsets = offsets_of(&headers, body, "an ack").await?;
    let (acked, ignored) = queue(&state, &name)?.ack(&group, &offsets).await?;
    Ok(Json(json!({ "acked": acked, "ignored": ignored })).into_response())
}

async fn nack(
    State(state): State<Arc<NodeParts>>,
    Path((name, group)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let offsets = offsets_of(&headers, body, "a nack").await?;
    let (nacked, ignored) = queue(&state, &name)?.nack(&group, &offsets).await?;
    Ok(Json(json!({ "nacked": nacked, "ignored": ignored })).into_response())
}

async fn delete_one(
    State(state): State<Arc<NodeParts>>,
    Path((name, group, offset)): Path<(String, String, String)>,
) -> Answer {
    let Ok(offset) = offset.parse::<u64>() else {
        return Err(ApiError::bad(format!("offset {offset:?} is not a whole number")));
    };
    match queue(&state, &name)?.ack(&group, &[offset]).await? {
        (1, _) => Ok(Json(json!({ "acked": 1 })).into_response()),
        _ => Err(ApiError::not_found(format!(
            "offset {offset} is not leased to group {group:?} (deleted already, or never fetched)"
        ))),
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

async fn reply(
    State(state): State<Arc<NodeParts>>,
    Extension(caller): Extension<Caller>,
    continued: Option<Extension<crate::traced::Continued>>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let r: ReplyIn = body::json(
        &headers,
        body,
        body::PUBLISH_BATCH,
        "a reply",
        r#"{"reply_to": "...", "body": "...", "correlation_id": "..."}"#,
    )
    .await?;
    // A reply into a queue is a publish there (a dead-letter queue included).
    let queue = r.reply_to.strip_prefix("queue:");
    if let Some(queue) = queue {
        caller.may_publish(queue)?;
    }
    // A traced reply's span names where it went (`traced`).
    let named = headers
        .contains_key(trace::TRACEPARENT)
        .then(|| crate::traced::Service(Arc::from(queue.unwrap_or("inbox"))));
    let payload = JsonBody {
        body: r.body,
        body_base64: r.body_base64,
    }
    .into_payload("reply")?;
    // A traced reply carries its span on: to the waiting publisher, or in the message.
    let traceparent = continued.and_then(|Extension(c)| c.0.to_str().ok().map(str::to_string));
    let reply = Reply {
        correlation_id: r.correlation_id,
        payload,
        traceparent,
    };
    let mut res = match queues(&state).reply(&r.reply_to, reply).await {
        Ok(Replied::Inbox) => (StatusCode::ACCEPTED, Json(json!({ "delivered": "inbox" }))).into_response(),
        Ok(Replied::Queue(offset)) => (StatusCode::CREATED, Json(json!({ "offset": offset }))).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    };
    if let Some(named) = named {
        res.extensions_mut().insert(named);
    }
    Ok(res)
}
