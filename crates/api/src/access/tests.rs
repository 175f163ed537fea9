use super::*;

fn manifest() -> Manifest {
    strata_manifest::parse(
        r#"{"strata": 1, "app": "a", "queues": {"orders": {}, "audit": {}},
            "services": {
              "web": {"run": ["w"], "bindings": ["api"], "access": {"publishes": ["orders"], "namespaces": ["carts"]}},
              "api": {"run": ["a"], "access": {"topics": ["prices"]}},
              "worker": {"run": ["k"], "consumes": {"queue": "orders", "group": "g", "path": "/"}}},
            "functions": {"hook": {"run": ["h"], "trigger": {"http": "/hooks"}}}}"#,
    )
    .unwrap()
}

fn access() -> Access {
    let tokens: HashMap<String, String> = ["web", "api", "worker", "hook"]
        .into_iter()
        .map(|s| (s.to_string(), format!("token-of-{s}")))
        .collect();
    Access::new("control", &tokens, &manifest(), "127.0.0.1:4000".parse().unwrap())
}

fn allowed(access: &Access, token: &str, template: &str, method: Method, params: &[(&str, &str)]) -> bool {
    let (need, _) = route(Some(template), &method, params);
    access.caller(token).expect("a known token").allows(&need).is_ok()
}

#[test]
fn each_route_needs_its_right() {
    let a = access();
    let web = "token-of-web";
    // A topic is open to any token, its body any bytes; one a service claims, to
    // that service (and the control token) only.
    for token in [web, "token-of-api", "control"] {
        assert!(allowed(
            &a,
            token,
            "/v1/topics/{topic}",
            Method::POST,
            &[("topic", "news")]
        ));
    }
    for (token, may) in [
        (web, false),
        ("token-of-worker", false),
        ("token-of-api", true),
        ("control", true),
    ] {
        let got = allowed(&a, token, "/v1/topics/{topic}", Method::POST, &[("topic", "prices")]);
        assert_eq!(got, may, "{token} on a claimed topic");
    }
    let (need, _) = route(Some("/v1/topics/{topic}"), &Method::POST, &[("topic", "prices")]);
    let refused = a.caller(web).unwrap().allows(&need).unwrap_err();
    assert!(
        refused
            .message()
            .contains("add \"prices\" to services.web.access.topics"),
        "{refused:?}"
    );
    assert_eq!(
        route(Some("/v1/topics/{topic}"), &Method::POST, &[("topic", "news")]).1,
        Body::Any
    );
    assert!(allowed(
        &a,
        web,
        "/v1/any/{service}/{*path}",
        Method::GET,
        &[("service", "api"), ("path", "x")]
    ));
    assert!(!allowed(
        &a,
        web,
        "/v1/all/{service}",
        Method::GET,
        &[("service", "worker")]
    ));
    let refused = |service: &str| {
        let params = [("service", service), ("path", "x")];
        let (need, _) = route(Some("/v1/any/{service}/{*path}"), &Method::GET, &params);
        a.caller(web).unwrap().allows(&need).unwrap_err().message().to_string()
    };
    assert!(
        refused("worker").contains("add \"worker\" to services.web.bindings or to services.web.access.calls"),
        "{}",
        refused("worker")
    );
    // Itself: a binding to itself is refused by validation, so only access.calls.
    assert!(
        refused("web").contains("add \"web\" to services.web.access.calls in strata.json"),
        "{}",
        refused("web")
    );
    assert!(allowed(
        &a,
        web,
        "/v1/any/{service}/",
        Method::GET,
        &[("service", "api")]
    ));
    assert!(!allowed(
        &a,
        web,
        "/v1/all/{service}/",
        Method::GET,
        &[("service", "worker")]
    ));
    assert!(allowed(
        &a,
        web,
        "/v1/queues/{queue}/messages",
        Method::POST,
        &[("queue", "orders")]
    ));
    assert!(!allowed(
        &a,
        web,
        "/v1/queues/{queue}/messages",
        Method::POST,
        &[("queue", "audit")]
    ));
    assert!(!allowed(
        &a,
        web,
        "/v1/queues/{queue}/groups/{group}/fetch",
        Method::POST,
        &[("queue", "orders"), ("group", "g")]
    ));
    assert!(allowed(
        &a,
        web,
        "/v1/queues/{queue}",
        Method::GET,
        &[("queue", "orders")]
    ));
    assert!(!allowed(
        &a,
        web,
        "/v1/queues/{queue}",
        Method::PUT,
        &[("queue", "orders")]
    ));
    // Deleting a queue is the control token's, even for the queue's own publisher.
    let orders = [("queue", "orders")];
    assert!(!allowed(&a, web, "/v1/queues/{queue}", Method::DELETE, &orders));
    assert!(allowed(&a, "control", "/v1/queues/{queue}", Method::DELETE, &orders));
    assert!(allowed(
        &a,
        web,
        "/v1/kv/{ns}/{*key}",
        Method::PUT,
        &[("ns", "carts"), ("key", "k")]
    ));
    assert!(!allowed(&a, web, "/v1/blobs/{ns}", Method::GET, &[("ns", "images")]));
    assert!(!allowed(&a, web, "/v1/cache/keys/{*key}", Method::GET, &[("key", "k")]));
    assert!(allowed(&a, web, "/v1/reply", Method::POST, &[]));
    for control in [
        "/v1/ps",
        "/v1/down",
        "/v1/metrics",
        "/v1/queues",
        "/v1/cache",
        "/v1/some/new/route",
    ] {
        assert!(!allowed(&a, web, control, Method::GET, &[]), "{control}");
        assert!(allowed(&a, "control", control, Method::GET, &[]), "{control}");
    }
    let worker = "token-of-worker";
    let ack = [("queue", "orders"), ("group", "g")];
    assert!(allowed(
        &a,
        worker,
        "/v1/queues/{queue}/groups/{group}/ack",
        Method::POST,
        &ack
    ));
    assert!(!allowed(
        &a,
        worker,
        "/v1/queues/{queue}/messages",
        Method::POST,
        &[("queue", "orders")]
    ));
    assert!(a.caller("token-of-nobody").is_none());
}

#[test]
fn a_refusal_says_what_to_add_where() {
    let a = access();
    let e = a
        .caller("token-of-web")
        .unwrap()
        .allows(&Need::Publish("audit"))
        .unwrap_err();
    assert_eq!(e.status(), StatusCode::FORBIDDEN);
    let text = format!("{e:?}");
    assert!(
        text.contains("services.web.access.publishes") && text.contains("audit"),
        "{text}"
    );
    // Each advice names a field the caller's entry has (walk of stop 51: a function
    // was told of `bindings`, a service to add a queue to `consumes`).
    let refusal = |token: &str, need: Need<'_>| {
        let e = a.caller(token).unwrap().allows(&need).unwrap_err();
        format!("{e:?}")
    };
    let text = refusal("token-of-web", Need::Call("worker"));
    assert!(
        text.contains("add \\\"worker\\\" to services.web.bindings or to services.web.access.calls"),
        "{text}"
    );
    let text = refusal("token-of-web", Need::Fetch("audit"));
    assert!(
        text.contains("services.web.access.fetches (or consume it by push: services.web.consumes)"),
        "{text}"
    );
    let text = refusal("token-of-hook", Need::Call("web"));
    assert!(text.contains("function \\\"hook\\\" may not call service"), "{text}");
    assert!(
        text.contains("to functions.hook.access.calls") && !text.contains("bindings"),
        "{text}"
    );
    let text = refusal("token-of-hook", Need::Fetch("audit"));
    assert!(
        text.contains("to functions.hook.access.fetches") && !text.contains("consumes"),
        "{text}"
    );
}

#[test]
fn hosts_are_the_nodes_own_names() {
    let loopback = Hosts::of("127.0.0.1:4000".parse().unwrap());
    for ok in ["127.0.0.1:4000", "localhost:4000", "LOCALHOST:4000", "[::1]:4000"] {
        assert!(loopback.allows(ok), "{ok}");
    }
    for bad in ["evil.example:4000", "127.0.0.1:4001", "127.0.0.1", "10.0.0.1:4000", ""] {
        assert!(!loopback.allows(bad), "{bad}");
    }
    let lan = Hosts::of("10.1.2.3:4000".parse().unwrap());
    assert!(lan.allows("10.1.2.3:4000") && lan.allows("localhost:4000") && !lan.allows("10.1.2.4:4000"));
    let any = Hosts::of("0.0.0.0:4000".parse().unwrap());
    assert!(any.allows("192.168.1.9:4000") && any.allows("[fe80::1]:4000"));
    assert!(!any.allows("rebound.example:4000") && !any.allows("192.168.1.9:80"));
    let http = Hosts::of("127.0.0.1:80".parse().unwrap());
    assert!(http.allows("localhost") && http.allows("127.0.0.1:80"));
}

#[test]
fn tokens_come_from_either_header() {
    let mut h = HeaderMap::new();
    h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
    assert_eq!(token_of(&h), Some("abc"));
    h.insert(header::AUTHORIZATION, "bearer  abc ".parse().unwrap());
    assert_eq!(token_of(&h), Some("abc"));
    h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
    assert_eq!(token_of(&h), None);
    h.insert(TOKEN_HEADER, "xyz".parse().unwrap());
    assert_eq!(
        token_of(&h),
        Some("xyz"),
        "X-Strata-Token wins: Authorization is the app's"
    );
    let mut relayed = h.clone();
    strip_token(&mut relayed);
    assert!(relayed.get(TOKEN_HEADER).is_none() && relayed.get(header::AUTHORIZATION).is_some());
    h.remove(TOKEN_HEADER);
    strip_token(&mut h);
    assert!(h.get(header::AUTHORIZATION).is_none());
}

#[test]
fn json_endpoints_want_json_bodies() {
    let with = |ct: Option<&str>, len: &str| {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, len.parse().unwrap());
        if let Some(ct) = ct {
            h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
        }
        h
    };
    let status = |h: &HeaderMap, body| check_media_type(h, body).err().map(|e| e.status().as_u16());
    assert_eq!(
        status(&with(Some("application/json; charset=utf-8"), "2"), Body::Json),
        None
    );
    assert_eq!(
        status(&with(Some("application/merge-patch+json"), "2"), Body::Json),
        None
    );
    assert_eq!(status(&with(Some("text/plain"), "2"), Body::Json), Some(415));
    assert_eq!(status(&with(None, "2"), Body::Json), Some(415));
    assert_eq!(status(&with(None, "0"), Body::Json), None, "no body, nothing to read");
    assert_eq!(status(&with(Some(compact::MEDIA_TYPE), "9"), Body::JsonOrCompact), None);
    assert_eq!(status(&with(Some(compact::MEDIA_TYPE), "9"), Body::Json), Some(415));
    assert_eq!(status(&with(Some("text/plain"), "9"), Body::Any), None);
}
