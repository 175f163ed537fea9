//! [`Client`]: the node API's address and connections, and what every call shares:
//! turning an error status into [`Error::Api`] and reading JSON answers.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::conn::{Answer, Conns, Outgoing};
use crate::{error, Error, TraceContext};

/// A handle on one node's API. Cheap to clone; clones share kept-alive connections.
/// Calls may run concurrently, each on its own connection. [`Client::traced`] gives a
/// handle on the same connections whose calls join a trace.
#[derive(Clone)]
pub struct Client {
    pub(crate) conns: Arc<Conns>,
    /// Sent with every call when set (`docs/traces.md`).
    pub(crate) trace: Option<Arc<TraceContext>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("api", &self.conns.authority())
            .field("trace", &self.trace)
            .finish()
    }
}

impl Client {
    /// `base` is the node API URL, for example `http://127.0.0.1:4000` (what instances
    /// find in `$STRATA_URL`). Every call carries the token of `$STRATA_TOKEN` (what
    /// strata gives each instance) when it is set, as the Python client does;
    /// [`Client::with_token`] gives another. Nothing is connected until the first call.
    pub fn new(base: &str) -> Result<Client, Error> {
        let token = std::env::var("STRATA_TOKEN").ok().filter(|t| !t.is_empty());
        Client::with_token(base, token.as_deref())
    }

    /// [`Client::new`] with this token (None: none), whatever the environment says: the
    /// control token of `.strata/control.token` for a tool, or a service's.
    pub fn with_token(base: &str, token: Option<&str>) -> Result<Client, Error> {
        let bad = |reason: &str| Error::Url {
            url: base.to_string(),
            reason: reason.to_string(),
        };
        let uri: http::Uri = base.parse().map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
        match uri.scheme_str() {
            Some("http") | None => {}
            Some(other) => return Err(bad(&format!("scheme {other} is not supported, only http"))),
        }
        if uri.path() != "/" && !uri.path().is_empty() {
            return Err(bad("a path after host:port is not supported"));
        }
        let authority = uri.authority().ok_or_else(|| bad("no host:port"))?;
        if authority.port_u16().is_none() {
            return Err(bad("no port"));
        }
        Ok(Client {
            conns: Conns::new(authority.to_string(), token)?,
            trace: None,
        })
    }

    /// The node API of `$STRATA_URL` with the token of `$STRATA_TOKEN`, as set for
    /// every instance.
    pub fn from_env() -> Result<Client, Error> {
        match std::env::var("STRATA_URL") {
            Ok(url) => Client::new(&url),
            Err(_) => Err(Error::Url {
                url: String::new(),
                reason: "STRATA_URL is not set (strata sets it for its instances)".to_string(),
            }),
        }
    }

    /// `host:port` of the node API.
    pub fn authority(&self) -> &str {
        self.conns.authority()
    }

    /// `GET /v1/health`: one round trip to the node.
    pub async fn health(&self) -> Result<(), Error> {
        self.call(Method::GET, "/v1/health", Outgoing::default())
            .await
            .map(drop)
    }

    /// Sends a request; a status outside 2xx becomes [`Error::Api`].
    pub(crate) async fn call(&self, method: Method, path: &str, out: Outgoing) -> Result<Answer, Error> {
        let answer = self.conns.call(method, path, out, self.trace.as_deref()).await?;
        if !answer.status.is_success() {
            return Err(error::from_answer(answer.status.as_u16(), &answer.body));
        }
        Ok(answer)
    }

    /// Sends `body` as JSON and reads a JSON answer.
    pub(crate) async fn call_json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<(StatusCode, T), Error> {
        let out = match body {
            Some(body) => Outgoing {
                content_type: Some("application/json"),
                body: Bytes::from(
                    serde_json::to_vec(body).map_err(|e| Error::Invalid(format!("cannot encode the request: {e}")))?,
                ),
                ..Outgoing::default()
            },
            None => Outgoing::default(),
        };
        let answer = self.call(method.clone(), path, out).await?;
        Ok((answer.status, parse(&method, path, &answer.body)?))
    }
}

/// A JSON answer, or a [`Error::Protocol`] naming the call.
pub(crate) fn parse<T: DeserializeOwned>(method: &Method, path: &str, body: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(body).map_err(|e| {
        let start: String = String::from_utf8_lossy(body).chars().take(120).collect();
        Error::Protocol(format!("cannot read the answer to {method} {path} ({e}): {start:?}"))
    })
}

/// `name` as one path segment: everything but unreserved characters percent-encoded.
pub(crate) fn segment(name: &str) -> Result<String, Error> {
    if name.is_empty() {
        return Err(Error::Invalid("a queue or group name cannot be empty".to_string()));
    }
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            Client::new("http://127.0.0.1:4000").unwrap().authority(),
            "127.0.0.1:4000"
        );
        assert_eq!(
            Client::new("http://localhost:4000/").unwrap().authority(),
            "localhost:4000"
        );
        for bad in [
            "https://127.0.0.1:4000",
            "http://127.0.0.1",
            "http://h:1/v1",
            "not a url",
        ] {
            let e = Client::new(bad).unwrap_err();
            assert!(matches!(e, Error::Url { .. }), "{bad}: {e}");
        }
    }

    #[test]
    fn names_become_single_segments() {
        assert_eq!(segment("orders.dlq").unwrap(), "orders.dlq");
        assert_eq!(segment("a/b c").unwrap(), "a%2Fb%20c");
        assert!(segment("").is_err());
    }
}
