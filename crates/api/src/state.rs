//! The stateful tier on the node API (contract: `docs/state.md`): key-value and blobs of
//! the store, namespaced per app, and the cache (raw, read-through, stats, drop-shard).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use strata_cache::{Cache, Expiry, LoadFuture, Loader, ReadThrough};
use strata_store::{Cond, Store, StoreError};
use tokio::io::{AsyncRead, ReadBuf};

use crate::{api_error, ApiState};

/// The stateful tier as the API sees it.
pub struct StateTier {
    pub app: String,
    pub store: Arc<Store>,
    pub cache: Arc<Cache>,
    /// Declared read-through caches: name -> (store namespace within the app, cache).
    pub read_through: HashMap<String, (String, Arc<ReadThrough>)>,
}

impl StateTier {
    /// The store namespace of an app's namespace: apps never see each other's keys.
    pub fn store_ns(app: &str, ns: &str) -> String {
        format!("{app}/{ns}")
    }

    /// The cache key a read-through cache keeps `key` under.
    pub fn read_through_key(name: &str, key: &str) -> String {
        format!("rt:{name}:{key}")
    }
}

/// Loads a read-through cache's misses from its store namespace.
pub struct StoreLoader {
    pub store: Arc<Store>,
    /// The full store namespace.
    pub ns: String,
    /// The cache key prefix of this read-through cache (`rt:NAME:`).
    pub prefix: String,
}

impl Loader for StoreLoader {
    fn load<'a>(&'a self, key: &'a [u8]) -> LoadFuture<'a> {
        Box::pin(async move {
            let key = std::str::from_utf8(key).map_err(|_| "key is not UTF-8".to_string())?;
            let key = key.strip_prefix(&self.prefix).unwrap_or(key);
            match self.store.get(&self.ns, key).await {
                Ok(entry) => Ok(entry.map(|e| e.value)),
                Err(e) => Err(e.to_string()),
            }
        })
    }
}

pub(crate) fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/v1/kv/{ns}", get(list_keys))
        .route("/v1/kv/{ns}/{*key}", get(get_key).put(put_key).delete(delete_key))
        .route("/v1/blobs/{ns}", get(list_blobs))
        .route(
            "/v1/blobs/{ns}/{*name}",
            get(get_blob).put(put_blob).delete(delete_blob),
        )
        .route("/v1/cache", get(cache_stats))
        .route("/v1/cache/shards/{n}/drop", post(drop_shard))
        .route(
            "/v1/cache/keys/{*key}",
            get(cache_get).put(cache_put).delete(cache_delete),
        )
        .route("/v1/caches/{name}/{*key}", get(read_through_get))
}

fn store_error(e: StoreError) -> Response {
    match e {
        StoreError::Conflict { current } => (
            StatusCode::PRECONDITION_FAILED,
            Json(json!({ "error": e.to_string(), "status": 412, "current": current })),
        )
            .into_response(),
        StoreError::TooLarge { .. } => api_error(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
        StoreError::BadInput(_) | StoreError::Body(_) => api_error(StatusCode::BAD_REQUEST, e.to_string()),
        StoreError::Closed => api_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        StoreError::Io(_) => api_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn bad(message: impl Into<String>) -> Response {
    api_error(StatusCode::BAD_REQUEST, message.into())
}

/// The write condition from `If-Match: N` (a version, quoted or not) or `If-None-Match: *`.
fn condition(headers: &HeaderMap) -> Result<Cond, String> {
    let if_match = headers.get(header::IF_MATCH).map(|v| v.to_str().unwrap_or("?").trim());
    let if_none = headers
        .get(header::IF_NONE_MATCH)
        .map(|v| v.to_str().unwrap_or("?").trim());
    match (if_match, if_none) {
        (Some(_), Some(_)) => Err("give If-Match or If-None-Match, not both".into()),
        (None, Some("*")) => Ok(Cond::Absent),
        (None, Some(other)) => Err(format!("If-None-Match takes only *, not {other:?}")),
        (Some(v), None) => v
            .trim_matches('"')
            .parse::<u64>()
            .map(Cond::Version)
            .map_err(|_| format!("If-Match takes a version number, not {v:?}")),
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

fn tier(state: &ApiState) -> &StateTier {
    &state.state
}

fn list_params(params: &HashMap<String, String>) -> Result<(String, Option<String>, usize), String> {
    if let Some(unknown) = params
        .keys()
        .find(|k| !["prefix", "after", "limit"].contains(&k.as_str()))
    {
        return Err(format!(
            "unknown parameter {unknown:?}; a listing takes prefix, after, limit"
        ));
    }
    let limit = match params.get("limit") {
        None => 100,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("limit must be a whole number of at least 1, not {v:?}")),
        },
    };
    Ok((
        params.get("prefix").cloned().unwrap_or_default(),
        params.get("after").cloned(),
        limit,
    ))
}

async fn list_keys(
    State(state): State<Arc<ApiState>>,
    Path(ns): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let (prefix, after, limit) = match list_params(&params) {
        Ok(p) => p,
        Err(e) => return bad(e),
    };
    let t = tier(&state);
    match t
        .store
        .list(&StateTier::store_ns(&t.app, &ns), &prefix, after.as_deref(), limit)
        .await
    {
        Ok(page) => Json(page).into_response(),
        Err(e) => store_error(e),
    }
}

async fn get_key(State(state): State<Arc<ApiState>>, Path((ns, key)): Path<(String, String)>) -> Response {
    let t = tier(&state);
    match t.store.get(&StateTier::store_ns(&t.app, &ns), &key).await {
        Ok(Some(entry)) => (version_headers(entry.version), entry.value).into_response(),
        Ok(None) => api_error(StatusCode::NOT_FOUND, format!("no key {key:?} in namespace {ns:?}")),
        Err(e) => store_error(e),
    }
}

/// Drops the cached copies of `key` in every read-through cache over `ns`.
fn invalidate(t: &StateTier, ns: &str, key: &str) {
    for (name, (namespace, rt)) in &t.read_through {
        if namespace == ns {
            rt.invalidate(StateTier::read_through_key(name, key).as_bytes());
        }
    }
}

async fn put_key(
    State(state): State<Arc<ApiState>>,
    Path((ns, key)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let cond = match condition(&headers) {
        Ok(c) => c,
        Err(e) => return bad(e),
    };
    let t = tier(&state);
    match t.store.put(&StateTier::store_ns(&t.app, &ns), &key, body, cond).await {
        Ok(version) => {
            invalidate(t, &ns, &key);
            (
                StatusCode::CREATED,
                version_headers(version),
                Json(json!({ "version": version })),
            )
                .into_response()
        }
        Err(e) => store_error(e),
    }
}

async fn delete_key(
    State(state): State<Arc<ApiState>>,
    Path((ns, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let cond = match condition(&headers) {
        Ok(c) => c,
        Err(e) => return bad(e),
    };
    let t = tier(&state);
    match t.store.delete(&StateTier::store_ns(&t.app, &ns), &key, cond).await {
        Ok(true) => {
            invalidate(t, &ns, &key);
            Json(json!({ "deleted": true })).into_response()
        }
        Ok(false) => api_error(StatusCode::NOT_FOUND, format!("no key {key:?} in namespace {ns:?}")),
        Err(e) => store_error(e),
    }
}

async fn list_blobs(
    State(state): State<Arc<ApiState>>,
    Path(ns): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let (prefix, after, limit) = match list_params(&params) {
        Ok(p) => p,
        Err(e) => return bad(e),
    };
    let t = tier(&state);
    match t
        .store
        .list_blobs(&StateTier::store_ns(&t.app, &ns), &prefix, after.as_deref(), limit)
        .await
    {
        Ok(page) => Json(page).into_response(),
        Err(e) => store_error(e),
    }
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
    State(state): State<Arc<ApiState>>,
    Path((ns, name)): Path<(String, String)>,
    req: Request,
) -> Response {
    let cond = match condition(req.headers()) {
        Ok(c) => c,
        Err(e) => return bad(e),
    };
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
    let t = tier(&state);
    match t
        .store
        .put_blob(&StateTier::store_ns(&t.app, &ns), &name, &content_type, reader, cond)
        .await
    {
        Ok(meta) => (StatusCode::CREATED, Json(meta)).into_response(),
        Err(e) => store_error(e),
    }
}

async fn get_blob(
    State(state): State<Arc<ApiState>>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let t = tier(&state);
    let (meta, file) = match t.store.get_blob(&StateTier::store_ns(&t.app, &ns), &name).await {
        Ok(Some(found)) => found,
        Ok(None) => return api_error(StatusCode::NOT_FOUND, format!("no blob {name:?} in namespace {ns:?}")),
        Err(e) => return store_error(e),
    };
    let etag = format!("\"{}\"", meta.etag);
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file, 256 << 10));
    (
        [
            (header::CONTENT_TYPE, meta.content_type.clone()),
            (header::CONTENT_LENGTH, meta.size.to_string()),
            (header::ETAG, etag),
            (
                header::HeaderName::from_static("x-strata-version"),
                meta.version.to_string(),
            ),
        ],
        body,
    )
        .into_response()
}

async fn delete_blob(
    State(state): State<Arc<ApiState>>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let cond = match condition(&headers) {
        Ok(c) => c,
        Err(e) => return bad(e),
    };
    let t = tier(&state);
    match t
        .store
        .delete_blob(&StateTier::store_ns(&t.app, &ns), &name, cond)
        .await
    {
        Ok(true) => Json(json!({ "deleted": true })).into_response(),
        Ok(false) => api_error(StatusCode::NOT_FOUND, format!("no blob {name:?} in namespace {ns:?}")),
        Err(e) => store_error(e),
    }
}

async fn cache_stats(State(state): State<Arc<ApiState>>) -> Response {
    let t = tier(&state);
    let stats = t.cache.stats();
    let shard = |s: &strata_cache::ShardStats| {
        json!({
            "keys": s.keys, "expires": s.expires, "bytes": s.bytes, "max_bytes": s.max_bytes,
            "hits": s.hits, "misses": s.misses, "evictions": s.evictions, "expired": s.expired,
        })
    };
    let mut caches = serde_json::Map::new();
    for (name, (ns, rt)) in &t.read_through {
        let s = rt.stats();
        caches.insert(
            name.clone(),
            json!({
                "namespace": ns, "loads": s.loads, "coalesced": s.coalesced,
                "stale_served": s.stale_served, "refreshes": s.refreshes, "load_errors": s.load_errors,
            }),
        );
    }
    Json(json!({
        "total": shard(&stats.total),
        "shards": stats.shards.iter().map(shard).collect::<Vec<_>>(),
        "read_through": caches,
    }))
    .into_response()
}

async fn drop_shard(State(state): State<Arc<ApiState>>, Path(n): Path<String>) -> Response {
    let Ok(n) = n.parse::<usize>() else {
        return bad(format!("shard {n:?} is not a whole number"));
    };
    match tier(&state).cache.drop_shard(n) {
        Ok(keys) => Json(json!({ "shard": n, "dropped_keys": keys })).into_response(),
        Err(e) => api_error(StatusCode::NOT_FOUND, e.to_string()),
    }
}

async fn cache_get(State(state): State<Arc<ApiState>>, Path(key): Path<String>) -> Response {
    match tier(&state).cache.get(key.as_bytes()) {
        Some(v) => v.into_response(),
        None => api_error(StatusCode::NOT_FOUND, format!("no key {key:?} in the cache")),
    }
}

async fn cache_put(
    State(state): State<Arc<ApiState>>,
    Path(key): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    if let Some(unknown) = params.keys().find(|k| *k != "ttl_ms" && *k != "sliding") {
        return bad(format!(
            "unknown parameter {unknown:?}; a cache write takes ttl_ms and sliding"
        ));
    }
    let sliding = match params.get("sliding").map(String::as_str) {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(other) => return bad(format!("sliding must be true or false, not {other:?}")),
    };
    let expiry = match params.get("ttl_ms").map(|v| v.parse::<u64>()) {
        None if sliding => return bad("sliding needs ttl_ms: the idle time after which the key expires"),
        None => Expiry::Never,
        Some(Ok(ms)) if ms > 0 && sliding => Expiry::Sliding(Duration::from_millis(ms)),
        Some(Ok(ms)) if ms > 0 => Expiry::After(Duration::from_millis(ms)),
        Some(_) => return bad("ttl_ms must be a whole number of milliseconds above 0"),
    };
    tier(&state).cache.set(key.as_bytes(), body, expiry);
    StatusCode::NO_CONTENT.into_response()
}

async fn cache_delete(State(state): State<Arc<ApiState>>, Path(key): Path<String>) -> Response {
    let deleted = tier(&state).cache.delete(key.as_bytes());
    Json(json!({ "deleted": deleted })).into_response()
}

async fn read_through_get(State(state): State<Arc<ApiState>>, Path((name, key)): Path<(String, String)>) -> Response {
    let t = tier(&state);
    let Some((ns, rt)) = t.read_through.get(&name) else {
        let declared: Vec<&str> = t.read_through.keys().map(String::as_str).collect();
        return api_error(
            StatusCode::NOT_FOUND,
            format!(
                "no cache named {name:?} (declared under caches: {})",
                declared.join(", ")
            ),
        );
    };
    // The store's own check, so that a key it would refuse is a 400 here, not a failed load.
    if let Err(e) = strata_store::check_key(&key) {
        return store_error(e);
    }
    match rt.get(StateTier::read_through_key(&name, &key).as_bytes()).await {
        Ok(Some(v)) => v.into_response(),
        Ok(None) => api_error(StatusCode::NOT_FOUND, format!("no key {key:?} in namespace {ns:?}")),
        Err(e) => api_error(StatusCode::BAD_GATEWAY, e.to_string()),
    }
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
        assert_eq!(condition(&h(&[])), Ok(Cond::Any));
        assert_eq!(condition(&h(&[("if-none-match", "*")])), Ok(Cond::Absent));
        assert_eq!(condition(&h(&[("if-match", "7")])), Ok(Cond::Version(7)));
        assert_eq!(condition(&h(&[("if-match", "\"7\"")])), Ok(Cond::Version(7)));
        assert!(condition(&h(&[("if-match", "seven")])).is_err());
        assert!(condition(&h(&[("if-none-match", "\"3\"")])).is_err());
        assert!(condition(&h(&[("if-match", "1"), ("if-none-match", "*")])).is_err());
    }
}
