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
