//! The path and query extractors of the routes: axum's, with their refusals in the
//! shared error body (400 `bad_request`) instead of axum's plain-text ones, so that a
//! path segment that is not UTF-8 (`%FF`) or a query that does not parse is answered
//! like every other error of the API (and as its OpenAPI description says).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::ApiError;

/// The route's path parameters, as [`axum::extract::Path`].
pub struct Path<T>(pub T);

/// The query string, as [`axum::extract::Query`].
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(t)) => Ok(Path(t)),
            Err(e) => Err(refused(e.status(), e.body_text())),
        }
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(t)) => Ok(Query(t)),
            Err(e) => Err(refused(e.status(), e.body_text())),
        }
    }
}

/// A refusal of axum's extractors: a 4xx is the caller's (400 with axum's words); a 5xx
/// (a route wired to the wrong extractor) stays one.
fn refused(status: axum::http::StatusCode, text: String) -> ApiError {
    if status.is_server_error() {
        return ApiError::internal(text);
    }
    ApiError::bad(text)
}
