//! A route's answers for when its service cannot answer (`routes[].fallback` in the
//! manifest): stored responses served stale within a bound (RFC 5861 stale-if-error),
//! then a fixed answer.
//!
//! The store is a small shared HTTP cache (an RFC 9111 subset) of one route:
//!
//! - **What is stored:** the `200` answer to a `GET` without `Authorization` nor
//!   `Cache-Control: no-store`, whose `Cache-Control` has neither `no-store` nor
//!   `private`, that sets no cookie (`Set-Cookie`: one client's cookie is never handed
//!   to another), whose `Vary` is not `*`, and whose body, read whole as it streams to
//!   the client, fits an entry (an eighth of the route's `cache_bytes`, at most 8 MiB).
//!   Its freshness is `s-maxage`, else `max-age`, else `Expires` minus `Date` (0
//!   without any: stored only to be served stale).
//! - **Fresh hits** are answered from the store without calling a member, with `Age`;
//!   a request with `Cache-Control: no-cache` or `no-store` always goes to a member. A
//!   client whose `If-None-Match` names the fresh stored response's `ETag` gets a `304`.
//! - **Revalidation:** a stored response past its freshness that has an `ETag` is asked
//!   for with `If-None-Match` (unless the client sent a condition of its own); a `304`
//!   makes it fresh again and the client gets the stored `200`. A `304` answering the
//!   client's own condition refreshes the stored response too when its `ETag` is the
//!   stored one's, and goes to the client as it is.
//! - **Stale-if-error:** when the relay answers 5xx (no ready member, every attempt
//!   failed, the deadline passed, or a member's own 5xx) and a stored response for the
//!   request is at most `stale_if_error_s` past its freshness, that response is served,
//!   marked `X-Strata-Stale: true` (and counted). Past the bound it is never served.
//!   The response has its say (RFC 9111 4.2.4, RFC 5861): its own `stale-if-error=N`
//!   directive bounds it to N seconds (never past the route's bound); without one,
//!   `must-revalidate`, `proxy-revalidate`, `s-maxage` or `no-cache` forbid serving it
//!   stale at all.
//! - **Invalidation:** a member's 2xx or 3xx to an unsafe request (POST, PUT, PATCH,
//!   DELETE, any method but GET, HEAD, OPTIONS and TRACE) removes the stored response
//!   for its target, and for its `Location` and `Content-Location` on the same host
//!   (RFC 9111 4.4), so that a client reads its own write.
//! - **HEAD** is answered from a stored GET response (its head, no body) when fresh, and
//!   when stale on error; a HEAD's own answer is never stored.
//! - **Fixed answer:** with `status` set, a 5xx that has no usable stored response is
//!   replaced by that status and body, marked `X-Strata-Fallback: true`, keeping the
//!   replaced answer's `Retry-After` (the relay's 503 for no ready member has one). Any
//!   method's 5xx, a member's own included.
//! - **Vary:** one entry per host and path (query included); it records the request
//!   headers its `Vary` names, and a request with other values misses (and replaces it).
//! - **Bound:** the route's entries together stay within `cache_bytes` (heads and
//!   bodies); the least recently used go first.
//!
//! Only routes with a fallback pay anything: the lookup is one lock of the route's map.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use serde::Serialize;
use strata_manifest::FallbackSpec;

use crate::response_body::ResBody;

/// Marks a stored response served because the service could not answer.
pub const STALE: HeaderName = HeaderName::from_static("x-strata-stale");
/// Marks the route's fixed answer.
pub const FALLBACK: HeaderName = HeaderName::from_static("x-strata-fallback");
/// Says how the store took part: `hit`, `revalidated`, `stale`, `miss`.
pub const CACHE: HeaderName = HeaderName::from_static("x-strata-cache");

const MAX_ENTRY: usize = 8 << 20;

/// One route's fallback: its store and its fixed answer.
pub struct Fallback {
    stale_if_error: Duration,
    store: Option<RwLock<Store>>,
    max_entry: usize,
    fixed: Option<(StatusCode, Bytes, HeaderValue)>,
    stats: Counters,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    revalidated: AtomicU64,
    stale: AtomicU64,
    fixed: AtomicU64,
    stored: AtomicU64,
}

/// A route's figures, for `ps` and the metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FallbackStats {
    pub entries: usize,
    pub bytes: usize,
    pub max_bytes: usize,
    /// Fresh answers from the store, without calling a member.
    pub hits: u64,
    pub misses: u64,
    /// Stored responses made fresh again by a member's 304.
    pub revalidated: u64,
    /// Stored responses served because the service could not answer.
    pub stale: u64,
    /// Fixed answers served.
    pub fixed: u64,
    pub stored: u64,
}

/// A hit takes the read lock only: the entry is shared (`Arc`, nothing of it copied
/// but the headers of the answer), and its last use is an atomic store. `by_use` is
/// brought up to date lazily, by the eviction that finds an entry used since it was
/// listed (it lists it again under its last use and goes on).
struct Store {
    entries: HashMap<String, Slot>,
    /// Entries by their use when listed, oldest first; one listing per entry.
    by_use: BTreeMap<u64, String>,
    tick: AtomicU64,
    bytes: usize,
    max: usize,
}

struct Slot {
    entry: Arc<Entry>,
    /// The tick of its last use.
    used: AtomicU64,
    /// The tick it is listed under in `by_use`.
    listed: u64,
}

#[derive(Clone)]
struct Entry {
    headers: HeaderMap,
    body: Bytes,
    stored: Instant,
    fresh: Duration,
    /// How long past `fresh` it may be served on error; None: never.
    stale: Option<Duration>,
    vary: Vec<(HeaderName, Option<HeaderValue>)>,
    size: usize,
}

/// What the store has for a request, before it is relayed. Returned once per request and
/// taken apart at once: a `Box` around the fresh answer would cost an allocation per hit.
#[allow(clippy::large_enum_variant)]
pub enum Lookup {
    /// Answer this, without calling a member.
    Fresh(Response<ResBody>),
    /// Relay the request; `key` names the entry to store or fall back on, and
    /// `revalidate` the ETag to ask about with `If-None-Match`.
    Relay {
        key: String,
        revalidate: Option<HeaderValue>,
    },
    /// Not for the store (not a GET, or the client's headers keep it out).
    Bypass,
}

impl Fallback {
    pub fn new(spec: &FallbackSpec) -> Fallback {
        let max = spec.cache_bytes.min(usize::MAX as u64) as usize;
        let store = (spec.stale_if_error_s > 0).then(|| {
            RwLock::new(Store {
                entries: HashMap::new(),
                by_use: BTreeMap::new(),
                tick: AtomicU64::new(0),
                bytes: 0,
                max,
            })
        });
        let fixed = spec.status.and_then(|status| {
            let status = StatusCode::from_u16(status).ok()?;
            let content_type = HeaderValue::from_str(&spec.content_type).ok()?;
            Some((status, Bytes::from(spec.body.clone()), content_type))
        });
        Fallback {
            stale_if_error: Duration::from_secs(spec.stale_if_error_s),
            store,
            max_entry: (max / 8).clamp(1, MAX_ENTRY),
            fixed,
            stats: Counters::default(),
        }
    }

    pub fn stats(&self) -> FallbackStats {
        let (entries, bytes, max_bytes) = match &self.store {
            Some(store) => {
                let store = store.read().expect("fallback store");
                (store.entries.len(), store.bytes, store.max)
            }
            None => (0, 0, 0),
        };
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        FallbackStats {
            entries,
            bytes,
            max_bytes,
            hits: n(&self.stats.hits),
            misses: n(&self.stats.misses),
            revalidated: n(&self.stats.revalidated),
            stale: n(&self.stats.stale),
            fixed: n(&self.stats.fixed),
            stored: n(&self.stats.stored),
        }
    }

    /// Looks `req` up before it is relayed.
    pub fn lookup<B>(&self, req: &Request<B>) -> Lookup {
        let Some(store) = &self.store else {
            return Lookup::Bypass;
        };
        let head = req.method() == Method::HEAD;
        if (req.method() != Method::GET && !head) || req.headers().contains_key(header::AUTHORIZATION) {
            return Lookup::Bypass;
        }
        let key = key_of(req);
        let client_bypass = directives(req.headers())
            .any(|(name, _)| name.eq_ignore_ascii_case("no-cache") || name.eq_ignore_ascii_case("no-store"));
        let client_conditional =
            req.headers().contains_key(header::IF_NONE_MATCH) || req.headers().contains_key(header::IF_MODIFIED_SINCE);
        let found = store.read().expect("fallback store").get(&key, req.headers());
        let Some(entry) = found else {
            self.stats.misses.fetch_add(1, Ordering::Relaxed);
            return Lookup::Relay { key, revalidate: None };
        };
        let age = entry.stored.elapsed();
        if age < entry.fresh && !client_bypass {
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            if let Some(etag) = entry.headers.get(header::ETAG) {
                if none_match(req.headers(), etag) {
                    return Lookup::Fresh(not_modified(&entry, age));
                }
            }
            return Lookup::Fresh(answer(&entry, age, "hit", false, head));
        }
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        let revalidate = (!client_conditional && !head)
            .then(|| entry.headers.get(header::ETAG).cloned())
            .flatten();
        Lookup::Relay { key, revalidate }
    }

    /// After the relay of a request the store does not take (not a GET, or one with
    /// `Authorization`): only the fixed answer may replace a 5xx.
    pub fn after_uncached(&self, res: Response<ResBody>) -> Response<ResBody> {
        if res.status().is_server_error() {
            if let Some(fixed) = self.fixed_answer(&res) {
                return fixed;
            }
        }
        res
    }

    /// The stored response an unsafe request (not GET, HEAD, OPTIONS or TRACE) makes
    /// out of date once a member answers it without error (RFC 9111 4.4): its target's
    /// key, for [`Fallback::after_unsafe`]. None for a safe method or a route that
    /// stores nothing.
    pub fn unsafe_target<B>(&self, req: &Request<B>) -> Option<String> {
        self.store.as_ref()?;
        let safe = matches!(
            *req.method(),
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
        );
        (!safe).then(|| key_of(req))
    }

    /// After the relay of an unsafe request: a 2xx or 3xx answer removes the stored
    /// response for its target, and for its `Location` and `Content-Location` when they
    /// name the same host (RFC 9111 4.4); then as [`Fallback::after_uncached`].
    pub fn after_unsafe(&self, target: String, res: Response<ResBody>) -> Response<ResBody> {
        let status = res.status();
        if let Some(store) = self
            .store
            .as_ref()
            .filter(|_| status.is_success() || status.is_redirection())
        {
            let host = target.split('\0').next().unwrap_or("").to_string();
            let mut keys = vec![target];
            for name in [header::LOCATION, header::CONTENT_LOCATION] {
                let named = res.headers().get(name).and_then(|v| v.to_str().ok());
                if let Some(path) = named.and_then(|v| same_host_path(v, &host)) {
                    keys.push(format!("{host}\0{path}"));
                }
            }
            let mut store = store.write().expect("fallback store");
            for key in &keys {
                store.remove(key);
            }
        }
        self.after_uncached(res)
    }

    /// The fixed answer in place of `replaced`, with its `Retry-After`.
    fn fixed_answer(&self, replaced: &Response<ResBody>) -> Option<Response<ResBody>> {
        let (status, body, content_type) = self.fixed.as_ref()?;
        self.stats.fixed.fetch_add(1, Ordering::Relaxed);
        let mut fixed = Response::new(ResBody::Full(Some(body.clone())));
        *fixed.status_mut() = *status;
        let headers = fixed.headers_mut();
        headers.insert(header::CONTENT_TYPE, content_type.clone());
        headers.insert(FALLBACK, HeaderValue::from_static("true"));
        if let Some(retry) = replaced.headers().get(header::RETRY_AFTER) {
            headers.insert(header::RETRY_AFTER, retry.clone());
        }
        Some(fixed)
    }

    /// After the relay: the response for the client, storing, revalidating or replacing
    /// what the member (or the relay) answered.
    /// `head`: the request was a HEAD (answered from a stored GET, never stored).
    pub fn after(
        self: &Arc<Self>,
        req_headers: &HeaderMap,
        key: String,
        revalidating: bool,
        head: bool,
        res: Response<ResBody>,
    ) -> Response<ResBody> {
        let status = res.status();
        if status == StatusCode::NOT_MODIFIED && revalidating {
            if let Some(store) = &self.store {
                let mut store = store.write().expect("fallback store");
                if let Some(entry) = store.refresh(&key, res.headers(), self.stale_if_error) {
                    self.stats.revalidated.fetch_add(1, Ordering::Relaxed);
                    return answer(&entry, Duration::ZERO, "revalidated", false, head);
                }
            }
            return res;
        }
        if status == StatusCode::NOT_MODIFIED {
            // The member's 304 to the client's own condition: it validates the stored
            // response only if it names the same ETag (RFC 9111 4.3.4).
            if let (Some(store), Some(etag)) = (&self.store, res.headers().get(header::ETAG)) {
                let mut store = store.write().expect("fallback store");
                // The entry for this request (its Vary agrees), with the same ETag.
                let same = store.peek(&key, req_headers).is_some_and(|entry| {
                    entry
                        .headers
                        .get(header::ETAG)
                        .is_some_and(|stored| weak_eq(stored.as_bytes(), etag.as_bytes()))
                });
                if same && store.refresh(&key, res.headers(), self.stale_if_error).is_some() {
                    self.stats.revalidated.fetch_add(1, Ordering::Relaxed);
                }
            }
            return res;
        }
        if status.is_server_error() {
            if let Some(store) = &self.store {
                let found = store.read().expect("fallback store").peek(&key, req_headers);
                if let Some(entry) = found {
                    let age = entry.stored.elapsed();
                    if entry.stale.is_some_and(|stale| age <= entry.fresh + stale) {
                        self.stats.stale.fetch_add(1, Ordering::Relaxed);
                        return answer(&entry, age, "stale", true, head);
                    }
                }
            }
            return self.fixed_answer(&res).unwrap_or(res);
        }
        if status != StatusCode::OK || self.store.is_none() || head {
            return res;
        }
        // RFC 9111 5.2.1.5: nothing of a no-store request's answer is stored.
        if directives(req_headers).any(|(name, _)| name.eq_ignore_ascii_case("no-store")) {
            return res;
        }
        let Some(Freshness { fresh, stale }) = storable(res.headers(), self.stale_if_error) else {
            return res;
        };
        let vary = match vary_of(res.headers(), req_headers) {
            Some(vary) => vary,
            None => return res,
        };
        if res
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
            .is_some_and(|n| n > self.max_entry)
        {
            return res;
        }
        let (parts, body) = res.into_parts();
        let tee = Tee {
            body,
            kept: BytesMut::new(),
            limit: self.max_entry,
            done: Some(Pending {
                key,
                headers: stored_headers(&parts.headers),
                fresh,
                stale,
                vary,
            }),
            into: self.clone(),
        };
        Response::from_parts(parts, ResBody::Teed(Box::new(tee)))
    }

    fn insert(&self, pending: Pending, body: Bytes) {
        let Some(store) = &self.store else { return };
        let size = size_of(&pending.key, &pending.headers, &body);
        let mut store = store.write().expect("fallback store");
        if size > store.max {
            return;
        }
        store.remove(&pending.key);
        while store.bytes + size > store.max && store.evict_oldest() {}
        let used = store.next_tick();
        store.by_use.insert(used, pending.key.clone());
        store.bytes += size;
        let entry = Entry {
            headers: pending.headers,
            body,
            stored: Instant::now(),
            fresh: pending.fresh,
            stale: pending.stale,
            vary: pending.vary,
            size,
        };
        store.entries.insert(
            pending.key,
            Slot {
                entry: Arc::new(entry),
                used: AtomicU64::new(used),
                listed: used,
            },
        );
        self.stats.stored.fetch_add(1, Ordering::Relaxed);
    }
}

impl Store {
    fn next_tick(&self) -> u64 {
        self.tick.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The entry for `key` if the request's headers match its Vary; marks it used.
    fn get(&self, key: &str, req: &HeaderMap) -> Option<Arc<Entry>> {
        let slot = self.entries.get(key)?;
        if !slot
            .entry
            .vary
            .iter()
            .all(|(name, value)| req.get(name) == value.as_ref())
        {
            return None;
        }
        slot.used.store(self.next_tick(), Ordering::Relaxed);
        Some(slot.entry.clone())
    }

    fn peek(&self, key: &str, req: &HeaderMap) -> Option<Arc<Entry>> {
        let slot = self.entries.get(key)?;
        slot.entry
            .vary
            .iter()
            .all(|(name, value)| req.get(name) == value.as_ref())
            .then(|| slot.entry.clone())
    }

    /// A 304 for `key`: fresh again from now, with the 304's freshness if it has one,
    /// and its header fields in place of the stored ones of the same names (RFC 9111
    /// 3.2; not `Content-Length` nor `Vary`, hop-by-hop fields nor strata's per-request
    /// ones). A 304 that makes the answer one client's (`Set-Cookie`, `private`,
    /// `no-store`) takes it out of the store: the updated answer is that client's only.
    fn refresh(&mut self, key: &str, headers: &HeaderMap, route_stale: Duration) -> Option<Arc<Entry>> {
        let private = headers.contains_key(header::SET_COOKIE)
            || directives(headers)
                .any(|(name, _)| name.eq_ignore_ascii_case("private") || name.eq_ignore_ascii_case("no-store"));
        let slot = self.entries.get_mut(key)?;
        let entry = Arc::make_mut(&mut slot.entry);
        entry.stored = Instant::now();
        let update = stored_headers(headers);
        for name in update.keys() {
            if name == header::CONTENT_LENGTH || name == header::VARY {
                continue;
            }
            entry.headers.remove(name);
            for value in update.get_all(name) {
                entry.headers.append(name.clone(), value.clone());
            }
        }
        let size = size_of(key, &entry.headers, &entry.body);
        self.bytes = self.bytes - entry.size + size;
        entry.size = size;
        if headers.contains_key(header::CACHE_CONTROL) || headers.contains_key(header::EXPIRES) {
            if let Some(Freshness { fresh, stale }) = storable(headers, route_stale) {
                entry.fresh = fresh;
                entry.stale = stale;
            }
        }
        let refreshed = slot.entry.clone();
        if private {
            self.remove(key);
        }
        // Grown past the bound: the least recently used go (this one too, if it is).
        while self.bytes > self.max && self.evict_oldest() {}
        Some(refreshed)
    }

    fn remove(&mut self, key: &str) {
        if let Some(gone) = self.entries.remove(key) {
            self.by_use.remove(&gone.listed);
            self.bytes -= gone.entry.size;
        }
    }

    /// Evicts the least recently used entry; false when there is none. An entry used
    /// since it was listed is listed again under its last use, and the search goes on.
    fn evict_oldest(&mut self) -> bool {
        while let Some((listed, key)) = self.by_use.pop_first() {
            let Some(slot) = self.entries.get_mut(&key) else {
                continue;
            };
            let used = slot.used.load(Ordering::Relaxed);
            if used != listed {
                slot.listed = used;
                self.by_use.insert(used, key);
                continue;
            }
            if let Some(gone) = self.entries.remove(&key) {
                self.bytes -= gone.entry.size;
            }
            return true;
        }
        false
    }
}

/// What an entry's size counts against `cache_bytes`.
/// The path (and query) of a `Location` or `Content-Location` value when it names a
/// resource of `host` (a key's host: the request's host, with its port when the
/// request named one): a path, or an absolute URI with that host.
fn same_host_path(value: &str, host: &str) -> Option<String> {
    let uri: http::Uri = value.parse().ok()?;
    let path = uri.path_and_query()?.as_str();
    if !path.starts_with('/') {
        return None;
    }
    match uri.authority() {
        None if value.starts_with('/') && !value.starts_with("//") => Some(path.to_string()),
        Some(a) if a.as_str().eq_ignore_ascii_case(host) || a.host().eq_ignore_ascii_case(host) => {
            Some(path.to_string())
        }
        _ => None,
    }
}

fn size_of(key: &str, headers: &HeaderMap, body: &Bytes) -> usize {
    body.len()
        + headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum::<usize>()
        + key.len()
}

/// A reply's header fields as they are stored: without the ones that belong to the one
/// request (its id, the instance that answered it) or to the one connection.
fn stored_headers(headers: &HeaderMap) -> HeaderMap {
    let mut kept = headers.clone();
    for name in [
        crate::relay::REQUEST_ID,
        crate::relay::SERVED_BY,
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::HeaderName::from_static("keep-alive"),
    ] {
        kept.remove(name);
    }
    kept
}

/// The stored response as an answer, `age` old: its headers with `Age` and the cache
/// marker.
fn answer(entry: &Entry, age: Duration, how: &'static str, stale: bool, head: bool) -> Response<ResBody> {
    let body = if head { None } else { Some(entry.body.clone()) };
    let mut res = Response::new(ResBody::Full(body));
    *res.headers_mut() = entry.headers.clone();
    let headers = res.headers_mut();
    headers.insert(header::AGE, HeaderValue::from(age.as_secs()));
    headers.insert(CACHE, HeaderValue::from_static(how));
    if stale {
        headers.insert(STALE, HeaderValue::from_static("true"));
    }
    res
}

/// A `304` for a fresh stored response whose `ETag` the client named: the stored
/// headers a 304 carries (RFC 9110 15.4.5), with `Age` and the cache marker.
fn not_modified(entry: &Entry, age: Duration) -> Response<ResBody> {
    let mut res = Response::new(ResBody::Full(None));
    *res.status_mut() = StatusCode::NOT_MODIFIED;
    let headers = res.headers_mut();
    for name in [
        header::CACHE_CONTROL,
        header::CONTENT_LOCATION,
        header::DATE,
        header::ETAG,
        header::EXPIRES,
        header::VARY,
    ] {
        for value in entry.headers.get_all(&name) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.insert(header::AGE, HeaderValue::from(age.as_secs()));
    headers.insert(CACHE, HeaderValue::from_static("hit"));
    res
}

/// What to store once a body has streamed whole.
struct Pending {
    key: String,
    headers: HeaderMap,
    fresh: Duration,
    stale: Option<Duration>,
    vary: Vec<(HeaderName, Option<HeaderValue>)>,
}

/// A response body streaming to the client that keeps a copy, stored when it ends
/// whole within the entry limit.
pub struct Tee {
    body: ResBody,
    kept: BytesMut,
    limit: usize,
    /// Taken when the body ended (stored) or went past the limit (not stored).
    done: Option<Pending>,
    into: Arc<Fallback>,
}

impl Tee {
    /// The body ended whole: store the copy.
    fn finish(&mut self) {
        if let Some(pending) = self.done.take() {
            self.into.insert(pending, std::mem::take(&mut self.kept).freeze());
        }
    }
}

impl Body for Tee {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(_)) = (frame.data_ref(), &this.done) {
                    if this.kept.len() + data.len() > this.limit {
                        this.done = None;
                        this.kept = BytesMut::new();
                    } else {
                        this.kept.extend_from_slice(data);
                    }
                }
                // hyper stops polling a body of known length once it has all of it:
                // the end is seen here, not only as `None`.
                if this.body.is_end_stream() {
                    this.finish();
                }
            }
            Poll::Ready(None) => this.finish(),
            Poll::Ready(Some(Err(_))) => this.done = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

mod rules;

use rules::{directives, key_of, none_match, storable, vary_of, weak_eq, Freshness};

#[cfg(test)]
mod tests;
