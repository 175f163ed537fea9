//! The one error body of every strata HTTP answer, from the node API and the gateway
//! alike: `{"error": "what happened, in words", "status": 404, "code": "not_found"}`,
//! sometimes with more fields (`service`, `request_id`, `current`). `code` is stable
//! and meant for programs; `error` is meant for people and may change.

use serde::Serialize;

/// What kind of failure an error body reports; `as_str` is its stable `code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The request is malformed or names something invalid.
    BadRequest,
    /// No token, or one the node does not know (401): the node API wants
    /// `Authorization: Bearer TOKEN`.
    Unauthorized,
    /// The token is valid but does not allow this call (403): a service's token reaches
    /// only what its manifest entry declares.
    Forbidden,
    /// A JSON endpoint was sent a body of another media type, or a gRPC service's path
    /// a request that is no gRPC call (415).
    UnsupportedMediaType,
    /// The `Host` header names none of the node's own names (421): DNS rebinding, or a
    /// proxy in the way.
    MisdirectedRequest,
    /// The route, service, queue, group, key or blob does not exist.
    NotFound,
    /// The route exists but not with this method (405, with `Allow`).
    MethodNotAllowed,
    /// The body is over a limit.
    PayloadTooLarge,
    /// A header block over the limit.
    HeadersTooLarge,
    /// The request conflicts with the current state (an autoscaled service scaled by hand).
    Conflict,
    /// A write's condition (If-Match / If-None-Match) did not hold.
    ConditionFailed,
    /// A duplicate message (same dedupe id within the window).
    Duplicate,
    /// The request is understood but cannot be carried out (a count out of bounds).
    Unprocessable,
    /// No instance of the service is ready.
    NoMember,
    /// The service is at its maximum size and every instance at its limit.
    Shed,
    /// The request's deadline passed.
    DeadlineExceeded,
    /// No reply came within the wait.
    NoReply,
    /// The instance failed while handling the request.
    UpstreamFailed,
    /// The instance did not answer in time.
    UpstreamTimeout,
    /// The client's request body broke off.
    ClientBody,
    /// The component is closed or stopping.
    Unavailable,
    /// A failure inside strata (disk, task).
    Internal,
}

impl ErrorCode {
    /// Every code, in the order above: the `code` enum of the node API's OpenAPI
    /// description is held equal to it (`strata_api::openapi`).
    pub const ALL: [ErrorCode; 22] = [
        ErrorCode::BadRequest,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::MisdirectedRequest,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::PayloadTooLarge,
        ErrorCode::HeadersTooLarge,
        ErrorCode::Conflict,
        ErrorCode::ConditionFailed,
        ErrorCode::Duplicate,
        ErrorCode::Unprocessable,
        ErrorCode::NoMember,
        ErrorCode::Shed,
        ErrorCode::DeadlineExceeded,
        ErrorCode::NoReply,
        ErrorCode::UpstreamFailed,
        ErrorCode::UpstreamTimeout,
        ErrorCode::ClientBody,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::MisdirectedRequest => "misdirected_request",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::HeadersTooLarge => "headers_too_large",
            ErrorCode::Conflict => "conflict",
            ErrorCode::ConditionFailed => "condition_failed",
            ErrorCode::Duplicate => "duplicate",
            ErrorCode::Unprocessable => "unprocessable",
            ErrorCode::NoMember => "no_member",
            ErrorCode::Shed => "shed",
            ErrorCode::DeadlineExceeded => "deadline_exceeded",
            ErrorCode::NoReply => "no_reply",
            ErrorCode::UpstreamFailed => "upstream_failed",
            ErrorCode::UpstreamTimeout => "upstream_timeout",
            ErrorCode::ClientBody => "client_body",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

/// An error body; `detail` adds fields beside the three every body has.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorBody {
    pub error: String,
    pub status: u16,
    pub code: &'static str,
    #[serde(flatten)]
    pub detail: serde_json::Map<String, serde_json::Value>,
}

impl ErrorBody {
    pub fn new(status: u16, code: ErrorCode, error: impl Into<String>) -> ErrorBody {
        ErrorBody {
            error: error.into(),
            status,
            code: code.as_str(),
            detail: serde_json::Map::new(),
        }
    }

    /// Adds a field beside `error`, `status` and `code`.
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> ErrorBody {
        self.detail.insert(key.to_string(), value.into());
        self
    }

    /// The body as JSON, with a closing newline (it is read by people with curl too).
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string(self).expect("an error body serializes");
        text.push('\n');
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_each_code_once() {
        let codes: std::collections::BTreeSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(codes.len(), ErrorCode::ALL.len());
    }

    #[test]
    fn body_has_error_status_code_and_detail() {
        let body = ErrorBody::new(404, ErrorCode::NotFound, "no queue named \"x\"").with("service", "web");
        let v: serde_json::Value = serde_json::from_str(&body.to_json()).unwrap();
        assert_eq!(v["error"], "no queue named \"x\"");
        assert_eq!(v["status"], 404);
        assert_eq!(v["code"], "not_found");
        assert_eq!(v["service"], "web");
    }
}
