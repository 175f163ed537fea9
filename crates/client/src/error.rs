//! [`Error`]: what a call to the node API can end in.

use std::sync::Arc;

/// What went wrong with a call. Cheap to clone: a [`Producer`](crate::Producer) hands the
/// same error to every message of a batch that failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The node answered with an error status; `message` is its `error` field (or the
    /// start of the body when it was not the documented JSON).
    #[error("{message} (HTTP {status})")]
    Api { status: u16, message: String },
    /// No TCP connection to the node API could be made.
    #[error("cannot reach the strata node API at {addr} ({source}); is the node running?")]
    Connect {
        addr: String,
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The HTTP exchange broke off (connection reset, closed mid-answer, ...). The request
    /// may or may not have been carried out.
    #[error("HTTP exchange with the strata node API failed: {0}")]
    Http(#[source] Arc<hyper::Error>),
    /// The node answered something this client cannot read (bad JSON, a malformed compact
    /// batch, a count that does not match).
    #[error("unexpected answer from the strata node API: {0}")]
    Protocol(String),
    /// The base URL given to [`Client::new`](crate::Client::new) is not `http://host:port`.
    #[error("{url:?} is not a node API URL ({reason}); expected http://HOST:PORT")]
    Url { url: String, reason: String },
    /// A queue or group name, or a request built from the caller's input, was rejected
    /// before anything was sent.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The [`Producer`](crate::Producer) stopped before this message's batch was answered.
    #[error("the producer stopped before this message was acknowledged")]
    Closed,
}

impl Error {
    /// The HTTP status the node answered with, for [`Error::Api`].
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// 404: unknown queue, an offset not leased to the group, an inbox nobody waits on.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// 401: no token, or one the node did not give out (`$STRATA_TOKEN` unset, or from a
    /// node that has since restarted).
    pub fn is_unauthorized(&self) -> bool {
        self.status() == Some(401)
    }

    /// 403: the token does not reach this (the service's `access` in the manifest).
    pub fn is_forbidden(&self) -> bool {
        self.status() == Some(403)
    }

    /// 504: [`Client::request`](crate::Client::request) saw no reply before its deadline
    /// (the message itself stays published).
    pub fn is_timeout(&self) -> bool {
        self.status() == Some(504)
    }
}

impl From<hyper::Error> for Error {
    fn from(e: hyper::Error) -> Self {
        Error::Http(Arc::new(e))
    }
}

/// The error of a failed answer: the documented `{"error": "...", "status": N}`, or the
/// start of whatever else the body held.
pub(crate) fn from_answer(status: u16, body: &[u8]) -> Error {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error: String,
    }
    let message = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) => b.error,
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                "the node gave no reason".to_string()
            } else {
                text.chars().take(200).collect()
            }
        }
    };
    Error::Api { status, message }
}

/// A malformed answer in one of the shared wire formats.
impl From<strata_wire::WireError> for Error {
    fn from(e: strata_wire::WireError) -> Error {
        Error::Protocol(e.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_servers_message_and_status() {
        let e = from_answer(404, br#"{"error": "no queue \"orders\"", "status": 404}"#);
        assert_eq!(e.status(), Some(404));
        assert!(e.is_not_found());
        assert_eq!(e.to_string(), "no queue \"orders\" (HTTP 404)");
    }

    #[test]
    fn falls_back_to_the_body_text() {
        let e = from_answer(502, b"bad gateway\n");
        assert_eq!(e.to_string(), "bad gateway (HTTP 502)");
        let e = from_answer(500, b"");
        assert_eq!(e.to_string(), "the node gave no reason (HTTP 500)");
    }
}
