//! The cache on the node API: raw keys (`/v1/cache/keys/KEY`, with TTL or sliding
//! expiry), stats, dropping a shard (drills), and the declared read-through caches over
//! the store (`/v1/caches/NAME/KEY`). In a cluster a raw key another node owns is read,
//! written or deleted on that node, over its Redis port ([`on_owner`]), as the Redis
//! port itself does.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use strata_cache::{read_through_key, Expiry, ReadThrough};
use strata_wire::ErrorCode;

use crate::extract::{Path, Query};
use crate::{ApiError, NodeParts};

type Answer = Result<Response, ApiError>;

/// The declared read-through caches over the store. Their entries live in a cache of
/// their own, not in the raw keyspace that the Redis port and `/v1/cache/keys` reach, so
/// no raw write can replace what a read-through cache serves.
pub struct ReadThroughCaches {
    /// name -> (the app's store namespace it reads, its read-through cache).
    pub by_name: HashMap<String, (String, Arc<ReadThrough>)>,
    /// The cache that holds every read-through entry.
    pub cache: Arc<strata_cache::Cache>,
}

impl ReadThroughCaches {
    /// Drops the cached copies of `key` in every read-through cache over `ns`.
    pub fn invalidate(&self, ns: &str, key: &str) {
        for (name, (namespace, rt)) in &self.by_name {
            if namespace == ns {
                rt.invalidate(read_through_key(name, key).as_bytes());
            }
        }
    }
}

pub(crate) fn routes() -> Router<Arc<NodeParts>> {
    Router::new()
        .route("/v1/cache", get(cache_stats))
        .route("/v1/cache/shards/{n}/drop", post(drop_shard))
        .route(
            "/v1/cache/keys/{*key}",
            get(cache_get).put(cache_put).delete(cache_delete),
        )
        .route("/v1/caches/{name}/{*key}", get(read_through_get))
}

async fn cache_stats(State(state): State<Arc<NodeParts>>) -> Response {
    Json(stats_of(&state)).into_response()
}

/// What `GET /v1/cache` answers (the dashboard's stream sends it too).
pub(crate) fn stats_of(state: &NodeParts) -> serde_json::Value {
    let stats = state.cache.stats();
    let shard = |s: &strata_cache::ShardStats| {
        json!({
            "keys": s.keys, "expires": s.expires, "bytes": s.bytes, "max_bytes": s.max_bytes,
            "hits": s.hits, "misses": s.misses, "evictions": s.evictions, "expired": s.expired,
        })
    };
    let mut caches = serde_json::Map::new();
    for (name, (ns, rt)) in &state.read_through.by_name {
        let s = rt.stats();
        caches.insert(
            name.clone(),
            json!({
                "namespace": ns, "loads": s.loads, "coalesced": s.coalesced,
                "stale_served": s.stale_served, "refreshes": s.refreshes, "load_errors": s.load_errors,
            }),
        );
    }
    let rt_stats = state.read_through.cache.stats();
    let ring = state.cache_ring.as_ref().map(|ring| {
        let view = ring.view();
        json!({
            "me": ring.me(),
            "member": view.is_member(),
            "nodes": view.nodes().iter().map(|n| json!({
                "name": n.name, "addr": n.addr.to_string(), "share": n.share,
            })).collect::<Vec<_>>(),
        })
    });
    let mut body = json!({
        "total": shard(&stats.total),
        "shards": stats.shards.iter().map(shard).collect::<Vec<_>>(),
        "read_through": caches,
        "read_through_total": shard(&rt_stats.total),
        "read_through_shards": rt_stats.shards.iter().map(shard).collect::<Vec<_>>(),
    });
    // Only in a cluster: this node's view of the cache ring.
    if let Some(ring) = ring {
        body["ring"] = ring;
    }
    // Only with a Redis port: its connections and commands.
    if let Some(redis) = &state.redis {
        let r = redis.read();
        body["redis"] = json!({
            "clients": r.clients, "max_clients": r.max_clients, "blocked_clients": r.blocked_clients,
            "connections": r.connections, "commands": r.commands, "refused": r.refused,
            "closed": {
                "query_buffers_total": r.closed_query_buffers_total, "query_buffer": r.closed_query_buffer,
                "idle": r.closed_idle, "slow_command": r.closed_slow_command,
                "output_buffer": r.closed_output_buffer,
            },
            "query_buffer_bytes": r.query_buffer_bytes,
        });
    }
    body
}

async fn drop_shard(State(state): State<Arc<NodeParts>>, Path(n): Path<String>) -> Answer {
    let Ok(n) = n.parse::<usize>() else {
        return Err(ApiError::bad(format!("shard {n:?} is not a whole number")));
    };
    // A drill: the shard loses its data in the raw keyspace and in the read-through
    // caches alike.
    let raw = state
        .cache
        .drop_shard(n)
        .map_err(|e| ApiError::not_found(e.to_string()))?;
    let read_through = state.read_through.cache.drop_shard(n).unwrap_or(0);
    Ok(Json(json!({ "shard": n, "dropped_keys": raw + read_through })).into_response())
}

/// The node that owns `key` on the cluster's cache ring, when it is another one: the
/// command `args` is run there, and its reply (RESP2) returned.
async fn on_owner(state: &NodeParts, key: &str, args: &[&[u8]]) -> Option<Result<Vec<u8>, ApiError>> {
    let ring = state.cache_ring.as_ref()?;
    let view = ring.view();
    let strata_cache::Owner::Peer(peer) = view.owner(key.as_bytes()) else {
        return None;
    };
    let reply = strata_cache::call_peer(ring, &view, peer, args).await;
    if reply.first() == Some(&b'-') {
        let text = String::from_utf8_lossy(&reply[1..]).trim_end().to_string();
        let status = if text.starts_with("TRYAGAIN") {
            (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable)
        } else {
            (StatusCode::BAD_GATEWAY, ErrorCode::Unavailable)
        };
        return Some(Err(ApiError::new(status.0, status.1, text)));
    }
    Some(Ok(reply))
}

/// Whether another node of the cluster owns `key`.
fn owned_elsewhere(state: &NodeParts, key: &str) -> bool {
    state
        .cache_ring
        .as_ref()
        .is_some_and(|ring| ring.view().owner(key.as_bytes()) != strata_cache::Owner::Here)
}

/// A RESP2 bulk string's data (None: a null reply, or not a bulk string).
fn bulk_data(reply: &[u8]) -> Option<&[u8]> {
    let rest = reply.strip_prefix(b"$")?;
    let end = rest.iter().position(|&b| b == b'\r')?;
    let n: usize = std::str::from_utf8(&rest[..end]).ok()?.parse().ok()?;
    rest.get(end + 2..end + 2 + n)
}

async fn cache_get(State(state): State<Arc<NodeParts>>, Path(key): Path<String>) -> Answer {
    if let Some(reply) = on_owner(&state, &key, &[b"GET", key.as_bytes()]).await {
        let reply = reply?;
        return match bulk_data(&reply) {
            Some(v) => Ok(bytes::Bytes::copy_from_slice(v).into_response()),
            None => Err(ApiError::not_found(format!("no key {key:?} in the cache"))),
        };
    }
    match state.cache.get(key.as_bytes()) {
        Some(v) => Ok(v.into_response()),
        None => Err(ApiError::not_found(format!("no key {key:?} in the cache"))),
    }
}

async fn cache_put(
    State(state): State<Arc<NodeParts>>,
    Path(key): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    if let Some(unknown) = params.keys().find(|k| *k != "ttl_ms" && *k != "sliding") {
        return Err(ApiError::bad(format!(
            "unknown parameter {unknown:?}; a cache write takes ttl_ms and sliding"
        )));
    }
    let sliding = match params.get("sliding").map(String::as_str) {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(other) => return Err(ApiError::bad(format!("sliding must be true or false, not {other:?}"))),
    };
    let expiry = match params.get("ttl_ms").map(|v| v.parse::<u64>()) {
        None if sliding => {
            return Err(ApiError::bad(
                "sliding needs ttl_ms: the idle time after which the key expires",
            ))
        }
        None => Expiry::Never,
        Some(Ok(ms)) if ms > 0 && sliding => Expiry::Sliding(Duration::from_millis(ms)),
        Some(Ok(ms)) if ms > 0 => Expiry::After(Duration::from_millis(ms)),
        Some(_) => return Err(ApiError::bad("ttl_ms must be a whole number of milliseconds above 0")),
    };
    let value = crate::body::read(&headers, body, crate::body::CACHE_VALUE, "a cache value").await?;
    if state.cache_ring.is_some() {
        let ms = match expiry {
            Expiry::After(d) => Some(d.as_millis().to_string()),
            _ => None,
        };
        let mut args: Vec<&[u8]> = vec![b"SET", key.as_bytes(), &value];
        if let Some(ms) = &ms {
            args.extend([&b"PX"[..], ms.as_bytes()]);
        }
        if matches!(expiry, Expiry::Sliding(_)) && owned_elsewhere(&state, &key) {
            return Err(ApiError::bad(
                "sliding expiry is kept by the node that holds the key, and another node of the cluster owns this one: use ttl_ms without sliding",
            ));
        }
        if let Some(reply) = on_owner(&state, &key, &args).await {
            reply?;
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
    }
    state.cache.set(key.as_bytes(), value, expiry);
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn cache_delete(State(state): State<Arc<NodeParts>>, Path(key): Path<String>) -> Answer {
    if let Some(reply) = on_owner(&state, &key, &[b"DEL", key.as_bytes()]).await {
        let deleted = reply? != b":0\r\n";
        return Ok(Json(json!({ "deleted": deleted })).into_response());
    }
    let deleted = state.cache.delete(key.as_bytes());
    Ok(Json(json!({ "deleted": deleted })).into_response())
}

async fn read_through_get(State(state): State<Arc<NodeParts>>, Path((name, key)): Path<(String, String)>) -> Answer {
    let Some((ns, rt)) = state.read_through.by_name.get(&name) else {
        let declared: Vec<&str> = state.read_through.by_name.keys().map(String::as_str).collect();
        let declared = if declared.is_empty() {
            "the manifest declares none under caches".to_string()
        } else {
            format!("declared under caches: {}", declared.join(", "))
        };
        return Err(ApiError::not_found(format!("no cache named {name:?} ({declared})")));
    };
    // The store's own check, so that a key it would refuse is a 400 here, not a failed load.
    strata_store::check_key(&key)?;
    match rt.get(read_through_key(&name, &key).as_bytes()).await {
        Ok(Some(v)) => Ok(v.into_response()),
        Ok(None) => Err(ApiError::not_found(format!("no key {key:?} in namespace {ns:?}"))),
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            ErrorCode::Unavailable,
            e.to_string(),
        )),
    }
}
