use super::*;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in pairs {
        h.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

#[test]
fn freshness_and_what_may_be_stored() {
    let route = Duration::from_secs(300);
    let f = |pairs: &[(&str, &str)]| storable(&headers(pairs), route).map(|f| f.fresh);
    assert_eq!(f(&[("cache-control", "max-age=60")]), Some(Duration::from_secs(60)));
    assert_eq!(
        f(&[("cache-control", "public, max-age=60, s-maxage=5")]),
        Some(Duration::from_secs(5))
    );
    assert_eq!(f(&[]), Some(Duration::ZERO), "stored only to be served stale");
    assert_eq!(f(&[("cache-control", "no-store")]), None);
    assert_eq!(
        f(&[("cache-control", "max-age=60"), ("cache-control", "private")]),
        None
    );
    assert_eq!(f(&[("cache-control", "max-age=banana")]), Some(Duration::ZERO));
    // Expires, against the response's Date; max-age wins over it; a bad one is stale.
    let date = "Thu, 03 Dec 2026 10:00:00 GMT";
    assert_eq!(
        f(&[("date", date), ("expires", "Thu, 03 Dec 2026 10:01:30 GMT")]),
        Some(Duration::from_secs(90))
    );
    assert_eq!(
        f(&[
            ("date", date),
            ("expires", "Thu, 03 Dec 2026 10:01:30 GMT"),
            ("cache-control", "max-age=5")
        ]),
        Some(Duration::from_secs(5))
    );
    assert_eq!(f(&[("date", date), ("expires", "0")]), Some(Duration::ZERO));
    assert_eq!(
        f(&[("date", date), ("expires", "Thu, 03 Dec 2026 09:00:00 GMT")]),
        Some(Duration::ZERO)
    );
}

#[test]
fn the_response_bounds_or_forbids_serving_it_stale() {
    let route = Duration::from_secs(300);
    let stale = |cc: &str| storable(&headers(&[("cache-control", cc)]), route).unwrap().stale;
    assert_eq!(stale("max-age=60"), Some(route), "the route's bound");
    assert_eq!(stale("max-age=60, stale-if-error=30"), Some(Duration::from_secs(30)));
    assert_eq!(
        stale("max-age=60, stale-if-error=9000"),
        Some(route),
        "never past the route's"
    );
    for forbids in [
        "max-age=60, must-revalidate",
        "proxy-revalidate",
        "s-maxage=5",
        "no-cache",
    ] {
        assert_eq!(stale(forbids), None, "{forbids}");
    }
    assert_eq!(
        stale("max-age=60, must-revalidate, stale-if-error=20"),
        Some(Duration::from_secs(20)),
        "an explicit stale-if-error permits it"
    );
}

#[test]
fn vary_records_the_request_values_and_star_is_never_stored() {
    let req = headers(&[("accept-language", "fr")]);
    let vary = vary_of(&headers(&[("vary", "Accept-Language, Accept")]), &req).unwrap();
    assert_eq!(vary.len(), 2);
    assert_eq!(vary[0].1, Some(HeaderValue::from_static("fr")));
    assert_eq!(vary[1].1, None);
    assert!(vary_of(&headers(&[("vary", "*")]), &req).is_none());
}

#[test]
fn the_least_recently_used_go_first_within_the_bound() {
    let spec = FallbackSpec {
        stale_if_error_s: 60,
        cache_bytes: 4096,
        status: None,
        body: String::new(),
        content_type: "text/plain".into(),
    };
    let fb = Fallback::new(&spec);
    let pending = |key: &str| Pending {
        key: key.to_string(),
        headers: HeaderMap::new(),
        fresh: Duration::from_secs(60),
        stale: None,
        vary: Vec::new(),
    };
    for key in ["a", "b", "c"] {
        fb.insert(pending(key), Bytes::from(vec![b'x'; 1500]));
    }
    let stats = fb.stats();
    assert_eq!((stats.entries, stats.stored), (2, 3));
    assert!(stats.bytes <= 4096);
    let store = fb.store.as_ref().unwrap().read().unwrap();
    assert!(!store.entries.contains_key("a") && store.entries.contains_key("c"));
    drop(store);
    // A hit makes an entry the most recently used: "b", older, goes first, and then
    // "d" (listed before the hits on "c"), never "c".
    let req = HeaderMap::new();
    for _ in 0..3 {
        assert!(fb.store.as_ref().unwrap().read().unwrap().get("c", &req).is_some());
    }
    fb.insert(pending("d"), Bytes::from(vec![b'x'; 1500]));
    let has = |key: &str| fb.store.as_ref().unwrap().read().unwrap().entries.contains_key(key);
    assert!(!has("b") && has("c") && has("d"));
    assert!(fb.store.as_ref().unwrap().read().unwrap().get("c", &req).is_some());
    fb.insert(pending("e"), Bytes::from(vec![b'x'; 1500]));
    assert!(!has("d") && has("c") && has("e"));
    let store = fb.store.as_ref().unwrap().read().unwrap();
    assert_eq!(store.by_use.len(), store.entries.len(), "one listing per entry");
    assert_eq!(store.bytes, store.entries.values().map(|s| s.entry.size).sum::<usize>());
}

fn route_fallback(status: Option<u16>, stale_if_error_s: u64) -> Arc<Fallback> {
    Arc::new(Fallback::new(&FallbackSpec {
        stale_if_error_s,
        cache_bytes: 1 << 20,
        status,
        body: "resting".into(),
        content_type: "text/plain".into(),
    }))
}

fn get(pairs: &[(&str, &str)]) -> Request<()> {
    let mut req = Request::get("http://app.test/page").body(()).unwrap();
    *req.headers_mut() = headers(pairs);
    req
}

fn reply(status: u16, pairs: &[(&str, &str)]) -> Response<ResBody> {
    let mut res = Response::new(ResBody::Full(Some(Bytes::from_static(b"page"))));
    *res.status_mut() = StatusCode::from_u16(status).unwrap();
    *res.headers_mut() = headers(pairs);
    res
}

/// Relays `req` through the fallback with `res` as the member's answer, reading the
/// client's body to its end (which stores a teed answer).
async fn through(fb: &Arc<Fallback>, req: &Request<()>, res: Response<ResBody>) -> Response<ResBody> {
    use http_body_util::BodyExt;
    let key = key_of(req);
    let res = fb.after(req.headers(), key, false, false, res);
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    Response::from_parts(parts, ResBody::Full(Some(bytes)))
}

fn fresh_status(fb: &Fallback, req: &Request<()>) -> Option<(StatusCode, HeaderMap)> {
    match fb.lookup(req) {
        Lookup::Fresh(res) => Some((res.status(), res.headers().clone())),
        _ => None,
    }
}

#[tokio::test]
async fn what_a_no_store_request_or_a_cookie_brings_is_never_stored() {
    let fb = route_fallback(None, 60);
    // A client's no-store keeps the answer to it out of the store.
    through(
        &fb,
        &get(&[("cache-control", "no-store")]),
        reply(200, &[("cache-control", "max-age=60")]),
    )
    .await;
    assert_eq!(fb.stats().stored, 0);
    assert!(fresh_status(&fb, &get(&[])).is_none());
    // An answer that sets a cookie is one client's: never handed to another.
    let cookie = [("cache-control", "max-age=60"), ("set-cookie", "session=secret-1")];
    through(&fb, &get(&[]), reply(200, &cookie)).await;
    assert_eq!(fb.stats().stored, 0);
    assert!(fresh_status(&fb, &get(&[])).is_none());
    assert!(storable(&headers(&cookie), Duration::from_secs(60)).is_none());
    // The same answer without the cookie is stored and hit.
    through(&fb, &get(&[]), reply(200, &[("cache-control", "max-age=60")])).await;
    assert_eq!(fb.stats().stored, 1);
    assert_eq!(fresh_status(&fb, &get(&[])).unwrap().0, StatusCode::OK);
}

#[tokio::test]
async fn a_client_naming_the_fresh_stored_etag_gets_304() {
    let fb = route_fallback(None, 60);
    let stored = [("cache-control", "max-age=60"), ("etag", "\"e1\""), ("x-other", "1")];
    through(&fb, &get(&[]), reply(200, &stored)).await;
    for named in ["\"e1\"", "W/\"e1\"", "\"zz\", \"e1\"", "*"] {
        let (status, headers) = fresh_status(&fb, &get(&[("if-none-match", named)])).unwrap();
        assert_eq!(status, StatusCode::NOT_MODIFIED, "{named}");
        assert_eq!(headers["etag"], "\"e1\"");
        assert_eq!(headers["cache-control"], "max-age=60");
        assert!(headers.contains_key("age") && !headers.contains_key("x-other"));
    }
    let (status, _) = fresh_status(&fb, &get(&[("if-none-match", "\"e2\"")])).unwrap();
    assert_eq!(status, StatusCode::OK, "another tag gets the stored answer");
}

#[tokio::test]
async fn a_304_to_the_clients_own_condition_refreshes_the_same_etag_only() {
    let fb = route_fallback(None, 60);
    // Stored already stale (max-age=0), with an ETag.
    through(
        &fb,
        &get(&[]),
        reply(200, &[("cache-control", "max-age=0"), ("etag", "\"e2\"")]),
    )
    .await;
    assert_eq!(fb.stats().stored, 1);
    assert!(fresh_status(&fb, &get(&[])).is_none(), "stale: relayed");
    // The member's 304 for another tag leaves it stale.
    let asked = get(&[("if-none-match", "\"other\"")]);
    let res = through(
        &fb,
        &asked,
        reply(304, &[("etag", "\"other\""), ("cache-control", "max-age=60")]),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    assert!(fresh_status(&fb, &get(&[])).is_none());
    // For the stored tag, it makes the stored answer fresh with the 304's max-age; the
    // client still gets the 304.
    let asked = get(&[("if-none-match", "\"e2\"")]);
    let res = through(
        &fb,
        &asked,
        reply(304, &[("etag", "\"e2\""), ("cache-control", "max-age=60")]),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(fresh_status(&fb, &get(&[])).unwrap().0, StatusCode::OK);
    assert_eq!(fb.stats().revalidated, 1);
}

#[test]
fn the_fixed_answer_keeps_the_replaced_answers_retry_after() {
    let fb = route_fallback(Some(503), 0);
    let fixed = fb.after_uncached(reply(503, &[("retry-after", "2")]));
    assert_eq!(fixed.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(fixed.headers()["retry-after"], "2");
    assert_eq!(fixed.headers()["x-strata-fallback"], "true");
    let fixed = fb.after_uncached(reply(500, &[]));
    assert!(!fixed.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn what_belongs_to_one_request_is_not_stored_and_a_304_updates_the_rest() {
    let fb = route_fallback(None, 60);
    let first = [
        ("cache-control", "max-age=0"),
        ("etag", "\"e3\""),
        ("x-n", "28"),
        ("x-request-id", "first-request"),
        ("x-strata-instance", "web-1"),
        ("content-length", "4"),
    ];
    through(&fb, &get(&[]), reply(200, &first)).await;
    assert_eq!(fb.stats().stored, 1);
    // The member's 304 to strata's own revalidation: its fields replace the stored
    // ones of the same names (not Content-Length), the rest stay.
    let key = key_of(&get(&[]));
    let revalidated = fb.after(
        &HeaderMap::new(),
        key,
        true,
        false,
        reply(
            304,
            &[
                ("etag", "\"e3\""),
                ("cache-control", "max-age=60"),
                ("x-n", "35"),
                ("content-length", "0"),
                ("x-strata-instance", "web-2"),
            ],
        ),
    );
    assert_eq!(revalidated.status(), StatusCode::OK);
    let (status, stored) = fresh_status(&fb, &get(&[])).expect("fresh after the 304");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stored["x-n"], "35");
    assert_eq!(stored["cache-control"], "max-age=60");
    assert_eq!(stored["content-length"], "4");
    assert!(!stored.contains_key("x-request-id"), "{stored:?}");
    assert!(!stored.contains_key("x-strata-instance"), "{stored:?}");
    assert_eq!(stored["x-strata-cache"], "hit");
}

#[tokio::test]
async fn a_304_that_makes_the_answer_one_clients_takes_it_out_of_the_store() {
    for private in [
        ("set-cookie", "session=secret-2"),
        ("cache-control", "private, max-age=60"),
    ] {
        let fb = route_fallback(None, 60);
        let stored = [("cache-control", "max-age=0"), ("etag", "\"e4\""), ("vary", "accept")];
        through(&fb, &get(&[("accept", "text/html")]), reply(200, &stored)).await;
        assert_eq!(fb.stats().stored, 1);
        let key = key_of(&get(&[]));
        let revalidated = fb.after(
            &headers(&[("accept", "text/html")]),
            key,
            true,
            false,
            reply(304, &[("etag", "\"e4\""), ("vary", "*"), private]),
        );
        // The client that revalidated gets the stored answer with its own header...
        assert_eq!(revalidated.status(), StatusCode::OK, "{private:?}");
        assert_eq!(revalidated.headers()[private.0], private.1);
        assert_eq!(revalidated.headers()["vary"], "accept", "Vary is not replaced");
        // ...and nobody else does: it is no longer stored.
        let next = get(&[("accept", "text/html")]);
        assert!(matches!(fb.lookup(&next), Lookup::Relay { .. }), "{private:?}");
        assert!(fresh_status(&fb, &next).is_none());
    }
}

#[tokio::test]
async fn an_unsafe_request_answered_without_error_takes_its_target_out_of_the_store() {
    let fb = route_fallback(None, 60);
    let at = |uri: &str| Request::get(uri).body(()).unwrap();
    let stored = [("cache-control", "max-age=60")];
    for uri in ["http://app.test/page", "http://app.test/other", "http://app.test/made"] {
        through(&fb, &at(uri), reply(200, &stored)).await;
    }
    assert_eq!(fb.stats().entries, 3);
    let post = |uri: &str| Request::post(uri).body(()).unwrap();
    // Safe methods and a refused write take nothing out.
    for method in [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE] {
        let req = Request::builder()
            .method(method)
            .uri("http://app.test/page")
            .body(())
            .unwrap();
        assert_eq!(fb.unsafe_target(&req), None);
    }
    let target = fb.unsafe_target(&post("http://app.test/page")).unwrap();
    fb.after_unsafe(target, reply(409, &[]));
    assert!(
        fresh_status(&fb, &at("http://app.test/page")).is_some(),
        "a 4xx changes nothing"
    );
    // A 2xx to a POST: its target goes, with its Location on the same host; another
    // host's Location and the other paths stay.
    let target = fb.unsafe_target(&post("http://app.test/page")).unwrap();
    fb.after_unsafe(
        target,
        reply(
            201,
            &[
                ("location", "/made"),
                ("content-location", "http://elsewhere.test/other"),
            ],
        ),
    );
    assert!(fresh_status(&fb, &at("http://app.test/page")).is_none());
    assert!(fresh_status(&fb, &at("http://app.test/made")).is_none());
    assert!(fresh_status(&fb, &at("http://app.test/other")).is_some());
    // A DELETE answered 204, by an absolute Content-Location on the same host.
    let delete = Request::delete("http://app.test/x").body(()).unwrap();
    let target = fb.unsafe_target(&delete).unwrap();
    fb.after_unsafe(target, reply(204, &[("content-location", "http://APP.test/other")]));
    assert!(fresh_status(&fb, &at("http://app.test/other")).is_none());
    assert_eq!(fb.stats().entries, 0);
    // A route that stores nothing has nothing to take out.
    let fixed_only = Arc::new(Fallback::new(&FallbackSpec {
        stale_if_error_s: 0,
        cache_bytes: 0,
        status: Some(503),
        body: "resting".into(),
        content_type: "text/plain".into(),
    }));
    assert_eq!(fixed_only.unsafe_target(&post("http://app.test/page")), None);
}
