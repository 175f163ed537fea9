//! Key-value and blobs of the store on the node API (contract: `docs/state.md`),
//! namespaced per app: `/v1/kv/NS/KEY` and `/v1/blobs/NS/NAME` of app A are the store's
//! namespace `A/NS`, so apps never see each other's keys.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use strata_store::{app_namespace, Cond};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use crate::extract::{Path, Query};
use crate::range::{self, Wanted};
use crate::{ApiError, NodeParts};

type Answer = Result<Response, ApiError>;

pub(crate) fn routes() -> Router<Arc<NodeParts>> {
    Router::new()
        .route("/v1/kv/{ns}", get(list_keys))
        .route("/v1/kv/{ns}/{*key}", get(get_key).put(put_key).delete(delete_key))
        .route("/v1/blobs/{ns}", get(list_blobs))
        .route(
            "/v1/blobs/{ns}/{*name}",
            get(get_blob).put(put_blob).delete(delete_blob),
        )
}

/// `/v1/kv/NS/` or `/v1/blobs/NS/` (no route: an empty key or name): the 400 that says
/// so, for the API's fallback.
pub(crate) fn empty_key(path: &str) -> Option<ApiError> {
    let rest = path
        .strip_prefix("/v1/kv/")
        .or_else(|| path.strip_prefix("/v1/blobs/"))?;
    let ns = rest.strip_suffix('/')?;
    (!ns.is_empty() && !ns.contains('/')).then(|| {
        ApiError::bad(format!(
            "a key may not be empty (the path ends with /); to list the namespace: GET {}?prefix=P",
            path.trim_end_matches('/')
        ))
    })
}

/// The store's namespace of the app's `ns` to write to: a name the manifest can grant
/// (`access.namespaces`, a cache's or a trigger's `namespace`: at most 64 lowercase
/// letters, digits, `-` and `_`), so that what is written can be given to a service.
fn ns_to_write(state: &NodeParts, ns: &str) -> Result<String, ApiError> {
    if !strata_manifest::is_queue_name(ns) {
        return Err(ApiError::bad(format!(
            "{ns:?} is not a namespace name: at most 64 lowercase letters, digits, - and _, starting with a letter or digit (the names access.namespaces can grant)"
        )));
    }
    ns_of(state, ns)
}

/// The store's namespace of the app's `ns`, which the app's name prefixes: it fits the
/// room [`strata_store::MAX_NAMESPACE`] leaves after the prefix. Reads, lists and
/// deletes take any such name, so that what was written before writes had to use a
/// grantable name (stop 51) can still be read and removed.
fn ns_of(state: &NodeParts, ns: &str) -> Result<String, ApiError> {
    let room = strata_store::MAX_NAMESPACE.saturating_sub(state.info.app.len() + 1);
    if ns.is_empty() || ns.len() > room || ns.contains('\0') {
        return Err(ApiError::bad(format!(
            "a namespace must be 1 to {room} bytes without NUL in app {:?} ({} less the app's name and a /), not {} bytes",
            state.info.app,
            strata_store::MAX_NAMESPACE,
            ns.len()
        )));
    }
    Ok(app_namespace(&state.info.app, ns))
}

/// The write condition from `If-Match: N` (a version, quoted or not) or `If-None-Match: *`.
fn condition(headers: &HeaderMap) -> Result<Cond, ApiError> {
    let if_match = headers.get(header::IF_MATCH).map(|v| v.to_str().unwrap_or("?").trim());
    let if_none = headers
        .get(header::IF_NONE_MATCH)
        .map(|v| v.to_str().unwrap_or("?").trim());
    match (if_match, if_none) {
        (Some(_), Some(_)) => Err(ApiError::bad("give If-Match or If-None-Match, not both")),
        (None, Some("*")) => Ok(Cond::Absent),
        (None, Some(other)) => Err(ApiError::bad(format!("If-None-Match takes only *, not {other:?}"))),
        (Some(v), None) => v.trim_matches('"').parse::<u64>().map(Cond::Version).map_err(|_| {
            ApiError::bad(format!(
                "If-Match takes a version number (a read's X-Strata-Version; a value's ETag is its version, \
                     a blob's ETag is its SHA-256), not {v:?}"
            ))
        }),
        (None, None) => Ok(Cond::Any),
    }
}

fn version_headers(version: u64) -> [(header::HeaderName, HeaderValue); 2] {
    [
        (
            header::ETAG,
            HeaderValue::from_str(&format!("\"{version}\"")).expect("digits"),
        ),
        (
            header::HeaderName::from_static("x-strata-version"),
            HeaderValue::from(version),
        ),
    ]
}

fn list_params(params: &HashMap<String, String>) -> Result<(String, Option<String>, usize), ApiError> {
    if let Some(unknown) = params
        .keys()
        .find(|k| !["prefix", "after", "limit"].contains(&k.as_str()))
    {
        return Err(ApiError::bad(format!(
            "unknown parameter {unknown:?}; a listing takes prefix, after, limit"
        )));
    }
    let limit = match params.get("limit") {
        None => 100,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(ApiError::bad(format!(
                    "limit must be a whole number of at least 1, not {v:?}"
                )))
            }
        },
    };
    Ok((
        params.get("prefix").cloned().unwrap_or_default(),
        params.get("after").cloned(),
        limit,
    ))
}

async fn list_keys(
    State(state): State<Arc<NodeParts>>,
    Path(ns): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Answer {
    let (prefix, after, limit) = list_params(&params)?;
    let page = state
        .store
        .list(&ns_of(&state, &ns)?, &prefix, after.as_deref(), limit)
        .await?;
    Ok(Json(page).into_response())
}

async fn get_key(
    State(state): State<Arc<NodeParts>>,
    Path((ns, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Answer {
    match state.store.get(&ns_of(&state, &ns)?, &key).await? {
        // A reader holding this version gets 304, as for a blob.
        Some(entry) if none_match(&headers, &format!("\"{}\"", entry.version)) => {
            Ok((StatusCode::NOT_MODIFIED, version_headers(entry.version)).into_response())
        }
        Some(entry) => Ok((version_headers(entry.version), entry.value).into_response()),
        None => Err(ApiError::not_found(format!("no key {key:?} in namespace {ns:?}"))),
    }
}

/// Whether the request's `If-None-Match` names `etag`: compared weakly, as RFC 9110
/// 13.1.2 has If-None-Match compared; `*` matches any.
fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .map(|t| t.trim())
                .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
        })
}

async fn put_key(
    State(state): State<Arc<NodeParts>>,
    Path((ns, key)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let cond = condition(&headers)?;
    let value = crate::body::read(&headers, body, crate::body::KV_VALUE, "a store value").await?;
    let version = state.store.put(&ns_to_write(&state, &ns)?, &key, value, cond).await?;
    state.read_through.invalidate(&ns, &key);
    Ok((
        StatusCode::CREATED,
        version_headers(version),
        Json(json!({ "version": version })),
    )
        .into_response())
}

async fn delete_key(
    State(state): State<Arc<NodeParts>>,
    Path((ns, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Answer {
    let cond = condition(&headers)?;
    if !state.store.delete(&ns_of(&state, &ns)?, &key, cond).await? {
        return Err(ApiError::not_found(format!("no key {key:?} in namespace {ns:?}")));
    }
    state.read_through.invalidate(&ns, &key);
    Ok(Json(json!({ "deleted": true })).into_response())
}

async fn list_blobs(
    State(state): State<Arc<NodeParts>>,
    Path(ns): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Answer {
    let (prefix, after, limit) = list_params(&params)?;
    let page = state
        .store
        .list_blobs(&ns_of(&state, &ns)?, &prefix, after.as_deref(), limit)
        .await?;
    Ok(Json(page).into_response())
}

/// A request body as `AsyncRead`, chunk by chunk, never held whole.
struct BodyReader {
    body: Body,
    chunk: Bytes,
}

impl AsyncRead for BodyReader {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        use http_body::Body as _;
        loop {
            if !self.chunk.is_empty() {
                let n = self.chunk.len().min(buf.remaining());
                buf.put_slice(&self.chunk.split_to(n));
                return Poll::Ready(Ok(()));
            }
            match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.chunk = data;
                    }
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(std::io::Error::other(e))),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

async fn put_blob(
    State(state): State<Arc<NodeParts>>,
    Path((ns, name)): Path<(String, String)>,
    req: Request,
) -> Answer {
    let cond = condition(req.headers())?;
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let reader = BodyReader {
        body: req.into_body(),
        chunk: Bytes::new(),
    };
    let meta = state
        .store
        .put_blob(&ns_to_write(&state, &ns)?, &name, &content_type, Box::new(reader), cond)
        .await?;
    Ok((StatusCode::CREATED, Json(meta)).into_response())
}

async fn get_blob(
    State(state): State<Arc<NodeParts>>,
    Path((ns, name)): Path<(String, String)>,
    method: axum::http::Method,
    headers: HeaderMap,
) -> Answer {
    let Some((meta, file)) = state.store.get_blob(&ns_of(&state, &ns)?, &name).await? else {
        return Err(ApiError::not_found(format!("no blob {name:?} in namespace {ns:?}")));
    };
    let etag = format!("\"{}\"", meta.etag);
    if none_match(&headers, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    // A HEAD ignores Range (RFC 9110 14.2: ranges are for GET): the whole blob's head.
    let wanted = if method == axum::http::Method::HEAD {
        Wanted::Whole
    } else {
        range::wanted(&headers, meta.size, &etag)
    };
    let (status, first, len, content_range) = match wanted {
        Wanted::Whole => (StatusCode::OK, 0, meta.size, None),
        Wanted::Part { first, last } => (
            StatusCode::PARTIAL_CONTENT,
            first,
            last - first + 1,
            Some(format!("bytes {first}-{last}/{}", meta.size)),
        ),
        Wanted::Unsatisfiable => {
            let refused = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                strata_wire::ErrorCode::BadRequest,
                format!("the range asked for is outside the blob's {} bytes", meta.size),
            );
            let mut res = refused.into_response();
            res.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{}", meta.size)).expect("digits"),
            );
            return Ok(res);
        }
    };
    // The bytes before the range are read and dropped: a blob's body is a stream (a
    // file here, JetStream's chunks in a cluster).
    let mut file = file;
    if first > 0 {
        let skipped = tokio::io::copy(&mut (&mut file).take(first), &mut tokio::io::sink())
            .await
            .map_err(|e| ApiError::internal(format!("reading the blob: {e}")))?;
        if skipped < first {
            return Err(ApiError::internal("the blob ended before its size"));
        }
    }
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file.take(len), 256 << 10));
    let mut res = (
        status,
        [
            (header::CONTENT_TYPE, meta.content_type.clone()),
            (header::CONTENT_LENGTH, len.to_string()),
            (header::ETAG, etag),
            (
                header::HeaderName::from_static("x-strata-version"),
                meta.version.to_string(),
            ),
            (header::ACCEPT_RANGES, "bytes".to_string()),
        ],
        body,
    )
        .into_response();
    if let Some(content_range) = content_range {
        res.headers_mut().insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&content_range).expect("digits"),
        );
    }
    Ok(res)
}

async fn delete_blob(
    State(state): State<Arc<NodeParts>>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Answer {
    let cond = condition(&headers)?;
    if !state.store.delete_blob(&ns_of(&state, &ns)?, &name, cond).await? {
        return Err(ApiError::not_found(format!("no blob {name:?} in namespace {ns:?}")));
    }
    Ok(Json(json!({ "deleted": true })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_come_from_if_match_and_if_none_match() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, HeaderValue::from_static(v));
            }
            m
        };
        assert_eq!(condition(&h(&[])).unwrap(), Cond::Any);
        assert_eq!(condition(&h(&[("if-none-match", "*")])).unwrap(), Cond::Absent);
        assert_eq!(condition(&h(&[("if-match", "7")])).unwrap(), Cond::Version(7));
        assert_eq!(condition(&h(&[("if-match", "\"7\"")])).unwrap(), Cond::Version(7));
        assert!(condition(&h(&[("if-match", "seven")])).is_err());
        assert!(condition(&h(&[("if-none-match", "\"3\"")])).is_err());
        assert!(condition(&h(&[("if-match", "1"), ("if-none-match", "*")])).is_err());
    }
}
