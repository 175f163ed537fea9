//! [`ApiError`]: the one place where errors of the domain crates become HTTP statuses
//! and the shared error body (`strata_wire::ErrorBody`: `error`, `status`, `code`).
//! Handlers return `Result<_, ApiError>` and use `?`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use strata_appservice::ScaleError;
use strata_queue::QueueError;
use strata_store::StoreError;
use strata_wire::{ErrorBody, ErrorCode, WireError};

/// An error answer of the node API.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: ErrorBody::new(status.as_u16(), code, message),
        }
    }

    /// A malformed request: 400.
    /// What went wrong, in words (the body's `error`).
    pub fn message(&self) -> &str {
        &self.body.error
    }

    pub fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
    }

    /// Something named that does not exist: 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }

    /// A failure inside the node: 500.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, message)
    }

    /// Adds a field to the body beside `error`, `status` and `code`.
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> ApiError {
        self.body = self.body.with(key, value);
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            self.body.to_json(),
        )
            .into_response()
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> ApiError {
        let (status, code) = match &e {
            QueueError::UnknownQueue(_) | QueueError::UnknownGroup(_) | QueueError::NoInbox(_) => {
                (StatusCode::NOT_FOUND, ErrorCode::NotFound)
            }
            QueueError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::PayloadTooLarge),
            QueueError::BadInput(_) => (StatusCode::BAD_REQUEST, ErrorCode::BadRequest),
            QueueError::NoReply(_) => (StatusCode::GATEWAY_TIMEOUT, ErrorCode::NoReply),
            QueueError::Duplicate(_) => (StatusCode::CONFLICT, ErrorCode::Duplicate),
            QueueError::Closed | QueueError::Failed { .. } | QueueError::Unavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable)
            }
            QueueError::Declared(_) => (StatusCode::CONFLICT, ErrorCode::Conflict),
            QueueError::Io(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Conflict { current } => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                ErrorCode::ConditionFailed,
                e.to_string(),
            )
            .with("current", current),
            StoreError::TooLarge { .. } | StoreError::BlobTooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::PayloadTooLarge, e.to_string())
            }
            StoreError::BadInput(_) | StoreError::Body(_) => ApiError::bad(e.to_string()),
            StoreError::Closed | StoreError::Failed(_) | StoreError::Unavailable(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable, e.to_string())
            }
            StoreError::Io(_) => ApiError::internal(e.to_string()),
        }
    }
}

impl From<ScaleError> for ApiError {
    fn from(e: ScaleError) -> ApiError {
        let (status, code) = match &e {
            ScaleError::UnknownService { .. } => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            ScaleError::OutOfRange { .. } => (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::Unprocessable),
            ScaleError::Autoscaled(_) | ScaleError::Function(_) | ScaleError::Stopping(_) => {
                (StatusCode::CONFLICT, ErrorCode::Conflict)
            }
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<WireError> for ApiError {
    fn from(e: WireError) -> ApiError {
        ApiError::bad(e.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(e: ApiError) -> (StatusCode, serde_json::Value) {
        let res = e.into_response();
        let status = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 16).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn every_domain_error_maps_to_one_status_and_code() {
        let cases: Vec<(ApiError, u16, &str)> = vec![
            (QueueError::UnknownQueue("q".into()).into(), 404, "not_found"),
            (
                QueueError::TooLarge {
                    index: 0,
                    size: 9,
                    limit: 1,
                }
                .into(),
                413,
                "payload_too_large",
            ),
            (QueueError::NoReply(5).into(), 504, "no_reply"),
            (QueueError::Duplicate(3).into(), 409, "duplicate"),
            (QueueError::Closed.into(), 503, "unavailable"),
            (
                QueueError::Unavailable("could not roll".into()).into(),
                503,
                "unavailable",
            ),
            (QueueError::Declared("q".into()).into(), 409, "conflict"),
            (StoreError::BlobTooLarge { limit: 5 }.into(), 413, "payload_too_large"),
            (
                StoreError::Conflict { current: Some(4) }.into(),
                412,
                "condition_failed",
            ),
            (StoreError::BadInput("k".into()).into(), 400, "bad_request"),
            (StoreError::Io("eio".into()).into(), 500, "internal"),
            (StoreError::Unavailable("timed out".into()).into(), 503, "unavailable"),
            (
                ScaleError::UnknownService {
                    service: "x".into(),
                    app: "a".into(),
                    services: vec![],
                }
                .into(),
                404,
                "not_found",
            ),
            (
                ScaleError::OutOfRange {
                    service: "w".into(),
                    min: 1,
                    max: 2,
                    count: 9,
                }
                .into(),
                422,
                "unprocessable",
            ),
            (ScaleError::Autoscaled("w".into()).into(), 409, "conflict"),
            (ScaleError::Function("f".into()).into(), 409, "conflict"),
            (WireError("cut short".into()).into(), 400, "bad_request"),
        ];
        for (e, status, code) in cases {
            let (got, body) = body_of(e).await;
            assert_eq!(got.as_u16(), status, "{body}");
            assert_eq!(body["status"], status, "{body}");
            assert_eq!(body["code"], code, "{body}");
            assert!(body["error"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
        }
        let (_, body) = body_of(StoreError::Conflict { current: Some(4) }.into()).await;
        assert_eq!(body["current"], 4);
    }
}
