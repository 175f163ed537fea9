//! [`TraceContext`]: the W3C trace context a traced [`Client`] sends with every call
//! (`docs/traces.md`), and [`Client::traced`], which makes such a client.
//!
//! The node records a call that carries a well-formed `traceparent` as a span of that
//! trace, the span it names as the parent: a publish (whose messages then carry the
//! trace to their consumers), a fetch, an ack, a nack, a delete, a reply. A
//! `traceparent` the node cannot parse is ignored there, so the calls would silently
//! be left out of the trace: [`TraceContext::new`] refuses it instead, while
//! [`TraceContext::from_headers`] (a request from outside) ignores it, as the W3C
//! recommendation says a receiver does.

use std::sync::Arc;

use http::HeaderValue;

use crate::{Client, Error};

/// The trace calls join: the caller's `traceparent` and its `tracestate` (vendor
/// data, passed on unchanged), ready to go on the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct TraceContext {
    pub(crate) traceparent: HeaderValue,
    pub(crate) tracestate: Option<HeaderValue>,
}

impl std::fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceContext")
            .field("traceparent", &self.traceparent())
            .field("tracestate", &self.tracestate())
            .finish()
    }
}

impl TraceContext {
    /// The context of `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`, lowercase, ids not
    /// all zero: what the node accepts) and `tracestate`. [`Error::Invalid`] when
    /// `traceparent` is malformed or `tracestate` cannot be a header value.
    pub fn new(traceparent: &str, tracestate: Option<&str>) -> Result<TraceContext, Error> {
        if !well_formed(traceparent.as_bytes()) {
            return Err(Error::Invalid(format!(
                "not a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>, lowercase, ids not all zero): {traceparent:?}"
            )));
        }
        let tracestate = tracestate
            .map(|s| {
                HeaderValue::from_str(s)
                    .map_err(|_| Error::Invalid(format!("a tracestate is one line of printable ASCII: {s:?}")))
            })
            .transpose()?;
        Ok(TraceContext {
            traceparent: HeaderValue::from_str(traceparent).expect("a well-formed traceparent is a header value"),
            tracestate,
        })
    }

    /// The context of an incoming request (what strata hands a member, or a pushed
    /// batch's POST): its `traceparent` and `tracestate` headers. None when there is no
    /// well-formed `traceparent` (a malformed one is ignored, with its `tracestate`).
    pub fn from_headers(headers: &http::HeaderMap) -> Option<TraceContext> {
        let traceparent = headers.get("traceparent")?;
        if !well_formed(traceparent.as_bytes()) {
            return None;
        }
        Some(TraceContext {
            traceparent: traceparent.clone(),
            tracestate: headers.get("tracestate").cloned(),
        })
    }

    pub fn traceparent(&self) -> &str {
        self.traceparent.to_str().expect("checked ASCII")
    }

    /// None when there is none, or when it is not visible ASCII.
    pub fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_ref().and_then(|v| v.to_str().ok())
    }
}

impl Client {
    /// A client whose every call carries `trace` (`traceparent`, and `tracestate` when
    /// it has one), sharing this client's connections and token; `None` gives an
    /// untraced one, so `client.traced(message.trace())` fits any message.
    ///
    /// ```no_run
    /// # async fn f(client: strata_client::Client, headers: http::HeaderMap) -> Result<(), strata_client::Error> {
    /// use strata_client::{OutgoingMessage, TraceContext};
    /// // the request being served, continued in what it publishes
    /// let traced = client.traced(TraceContext::from_headers(&headers));
    /// traced.publish("orders", &OutgoingMessage::new("B0001")).await?;
    /// # Ok(()) }
    /// ```
    pub fn traced(&self, trace: impl Into<Option<TraceContext>>) -> Client {
        Client {
            conns: Arc::clone(&self.conns),
            trace: trace.into().map(Arc::new),
        }
    }

    /// The trace this client's calls join, None when they are not traced.
    pub fn trace(&self) -> Option<&TraceContext> {
        self.trace.as_deref()
    }
}

/// What the node accepts: `00-<32 hex>-<16 hex>-<2 hex>` lowercase with ids not all
/// zero; a later version (not ff) may carry more after a `-`.
pub(crate) fn well_formed(v: &[u8]) -> bool {
    if v.len() < 55 || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' || (v.len() > 55 && v[55] != b'-') {
        return false;
    }
    let hex = |s: &[u8]| s.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !(hex(&v[..2]) && hex(&v[3..35]) && hex(&v[36..52]) && hex(&v[53..55])) {
        return false;
    }
    let version = &v[..2];
    if version == b"ff" || (version == b"00" && v.len() != 55) {
        return false;
    }
    v[3..35].iter().any(|&b| b != b'0') && v[36..52].iter().any(|&b| b != b'0')
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparents_the_node_takes_and_those_it_ignores() {
        assert!(well_formed(GOOD.as_bytes()));
        assert!(well_formed(format!("01{}-more", &GOOD[2..]).as_bytes()));
        for bad in [
            String::new(),
            GOOD.to_uppercase(),
            GOOD[..54].to_string(),
            format!("{GOOD}-more"),
            format!("ff{}", &GOOD[2..]),
            format!("00-{}{}", "0".repeat(32), &GOOD[35..]),
            format!("{}{}{}", &GOOD[..36], "0".repeat(16), &GOOD[52..]),
            GOOD.replace('-', "_"),
        ] {
            assert!(!well_formed(bad.as_bytes()), "{bad:?}");
            assert!(
                matches!(TraceContext::new(&bad, None), Err(Error::Invalid(_))),
                "{bad:?}"
            );
        }
        assert!(TraceContext::new(GOOD, Some("a=1\r\nx: y")).is_err());
        let t = TraceContext::new(GOOD, Some("vendor=1")).unwrap();
        assert_eq!((t.traceparent(), t.tracestate()), (GOOD, Some("vendor=1")));
    }

    #[test]
    fn from_headers_ignores_a_malformed_traceparent() {
        let mut h = http::HeaderMap::new();
        assert_eq!(TraceContext::from_headers(&h), None);
        h.insert("tracestate", "v=1".parse().unwrap());
        h.insert("traceparent", "junk".parse().unwrap());
        assert_eq!(TraceContext::from_headers(&h), None);
        h.insert("traceparent", GOOD.parse().unwrap());
        let t = TraceContext::from_headers(&h).unwrap();
        assert_eq!((t.traceparent(), t.tracestate()), (GOOD, Some("v=1")));
    }
}
