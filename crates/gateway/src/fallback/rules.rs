//! The HTTP rules the route store follows (RFC 9110's entity tags, RFC 9111's
//! freshness, `Cache-Control` and `Vary`): pure functions of headers.

use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Request;

/// Whether the request's `If-None-Match` names `etag` (`*`, or a weak match of one
/// of its entity tags: RFC 9110 13.1.2).
pub(super) fn none_match(req: &HeaderMap, etag: &HeaderValue) -> bool {
    req.get_all(header::IF_NONE_MATCH)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(|tag| tag.trim_ascii())
        .any(|tag| tag == b"*" || weak_eq(tag, etag.as_bytes()))
}

/// Weak comparison of two entity tags: equal once a `W/` prefix is taken off either.
pub(super) fn weak_eq(a: &[u8], b: &[u8]) -> bool {
    fn opaque(tag: &[u8]) -> &[u8] {
        let tag = tag.trim_ascii();
        tag.strip_prefix(b"W/").unwrap_or(tag)
    }
    !a.is_empty() && opaque(a) == opaque(b)
}

/// `host` + NUL + path and query.
pub(super) fn key_of<B>(req: &Request<B>) -> String {
    let host = req
        .uri()
        .host()
        .or_else(|| req.headers().get(header::HOST).and_then(|h| h.to_str().ok()))
        .unwrap_or("");
    let pq = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    format!("{}\0{pq}", host.to_ascii_lowercase())
}

/// The `Cache-Control` directives of `headers`, as (name, value).
pub(super) fn directives(headers: &HeaderMap) -> impl Iterator<Item = (&str, Option<&str>)> {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| {
            let d = d.trim();
            match d.split_once('=') {
                Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
                None => (d, None),
            }
        })
}

/// How long a stored response is fresh, and how long past that it may be served on
/// error (None: never).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Freshness {
    pub fresh: Duration,
    pub stale: Option<Duration>,
}

/// A response the store may keep: its freshness and its stale bound under the route's
/// `route_stale`, or None (see the module).
pub(super) fn storable(headers: &HeaderMap, route_stale: Duration) -> Option<Freshness> {
    if headers.contains_key(header::SET_COOKIE) {
        return None;
    }
    let (mut max_age, mut s_maxage, mut stale_if_error, mut forbids_stale) = (None, None, None, false);
    for (name, value) in directives(headers) {
        let is = |d: &str| name.eq_ignore_ascii_case(d);
        if is("no-store") || is("private") {
            return None;
        }
        let secs = || value.and_then(|v| v.parse::<u64>().ok());
        if is("max-age") {
            max_age = secs();
        } else if is("s-maxage") {
            s_maxage = secs();
            forbids_stale = true;
        } else if is("stale-if-error") {
            stale_if_error = secs();
        } else if is("must-revalidate") || is("proxy-revalidate") || is("no-cache") {
            forbids_stale = true;
        }
    }
    let secs = s_maxage
        .or(max_age)
        .map(Duration::from_secs)
        .unwrap_or_else(|| expires(headers));
    let stale = match stale_if_error {
        Some(n) => Some(Duration::from_secs(n).min(route_stale)),
        None if forbids_stale => None,
        None => Some(route_stale),
    };
    Some(Freshness {
        fresh: secs.min(Duration::from_secs(365 * 24 * 3600)),
        stale,
    })
}

/// Freshness from `Expires` (RFC 9111 4.2.1): its time minus the response's `Date` (or
/// now); an invalid or past one is already stale.
pub(super) fn expires(headers: &HeaderMap) -> Duration {
    let date = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
    };
    let Some(expires) = date(header::EXPIRES) else {
        return Duration::ZERO;
    };
    let now = date(header::DATE).unwrap_or_else(std::time::SystemTime::now);
    expires.duration_since(now).unwrap_or(Duration::ZERO)
}

/// The request headers the response's `Vary` names, with their values; None for `*`.
pub(super) fn vary_of(res: &HeaderMap, req: &HeaderMap) -> Option<Vec<(HeaderName, Option<HeaderValue>)>> {
    let mut out = Vec::new();
    for value in res.get_all(header::VARY) {
        for name in value.to_str().ok()?.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "*" {
                return None;
            }
            let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
            let value = req.get(&name).cloned();
            out.push((name, value));
        }
    }
    Some(out)
}
