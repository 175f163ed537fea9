//! `DELETE /v1/queues/NAME` (contract: `docs/queues.md`): deletes a queue created at run
//! time, with its dead-letter queue and every message, durably; fetches waiting on it
//! end with 404. The control token's (the CLI's), like creating a queue. A queue the
//! manifest declares is refused with 409 `conflict` (the manifest owns it), a
//! dead-letter queue on its own with 400, an unknown queue with 404.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::delete;
use axum::{Json, Router};
use serde_json::json;

use crate::extract::Path;
use crate::{ApiError, NodeParts};

pub(crate) fn routes() -> Router<Arc<NodeParts>> {
    Router::new().route("/v1/queues/{queue}", delete(delete_queue))
}

/// → 200 `{"deleted": NAME}` once the queue is gone durably.
async fn delete_queue(State(state): State<Arc<NodeParts>>, Path(name): Path<String>) -> Result<Response, ApiError> {
    state.queues.delete(&name).await?;
    Ok(Json(json!({ "deleted": name })).into_response())
}
