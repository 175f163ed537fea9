//! Topics on the node API: `POST /v1/topics/{topic}` publishes the body's bytes on the
//! topic, as PUBLISH on the Redis port does (the same registry: `strata_cache::topics`),
//! and answers how many subscribers received it, `{"receivers": N}`: Redis connections
//! subscribed to the channel or a matching pattern, and services that `subscribes` to
//! it (one per subscription, whatever its mode and its number of instances). At most
//! once; nothing is stored. Any token of the node may publish, as any client with the
//! cache's password may PUBLISH.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;

use crate::extract::Path;
use crate::{ApiError, NodeParts};

/// The largest message: 1 MiB, what a broadcast through `/v1/all` holds too.
pub const MESSAGE_LIMIT: usize = 1 << 20;

pub(crate) fn routes() -> Router<Arc<NodeParts>> {
    Router::new().route("/v1/topics/{topic}", post(publish))
}

async fn publish(
    State(state): State<Arc<NodeParts>>,
    Path(topic): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let message = crate::body::read(&headers, body, MESSAGE_LIMIT, "a topic message").await?;
    let receivers = state.cache.publish(topic.as_bytes(), &message);
    Ok(Json(json!({ "receivers": receivers })).into_response())
}
