//! The manifest as a user writes it: what is accepted, and what each mistake is called.
//! (The JSON Schema's agreement with the model is checked in `schema.rs`.)

use serde_json::{json, Value};
use strata_manifest::{
    parse, CallMode, Driver, FileSpec, Manifest, ManifestError, Network, RouteSpec, Seccomp, SetupSpec, NOBODY,
};

/// The example from the design brief; it must be accepted exactly as written.
const HELLO: &str = include_str!("fixtures/hello.json");
/// Every field of the model set to a value other than its default.
const FULL: &str = include_str!("fixtures/full.json");

fn full() -> Value {
    serde_json::from_str(FULL).expect("FULL is JSON")
}

fn hello() -> Value {
    serde_json::from_str(HELLO).expect("HELLO is JSON")
}

fn parse_value(v: &Value) -> Result<Manifest, ManifestError> {
    parse(&serde_json::to_string_pretty(v).expect("serialize"))
}

/// The error for the hello manifest after `edit`.
#[track_caller]
fn error_of(edit: impl FnOnce(&mut Value)) -> ManifestError {
    let mut v = hello();
    edit(&mut v);
    match parse_value(&v) {
        Ok(_) => panic!("accepted: {v}"),
        Err(err) => err,
    }
}

#[track_caller]
fn parse_err(text: &str) -> ManifestError {
    match parse(text) {
        Ok(_) => panic!("accepted: {text}"),
        Err(err) => err,
    }
}

/// `err` is `Invalid` at exactly `path`, its expected and found contain the given words,
/// and its message reads "path: expected ..., found ...".
#[track_caller]
fn assert_invalid(err: ManifestError, path: &str, expected: &str, found: &str) {
    let text = err.to_string();
    let ManifestError::Invalid {
        path: p,
        expected: e,
        found: f,
    } = &err
    else {
        panic!("want Invalid at {path}, got {err:?}: {text}");
    };
    assert_eq!(p, path, "{text}");
    assert!(e.contains(expected), "expected part {e:?} lacks {expected:?}: {text}");
    assert!(f.contains(found), "found part {f:?} lacks {found:?}: {text}");
    assert_eq!(text, format!("{path}: expected {e}, found {f}"));
    assert_eq!(err.path().as_deref(), Some(path));
}

#[track_caller]
fn assert_unknown_field(err: ManifestError, path: &str, allowed: &[&str]) {
    let text = err.to_string();
    let ManifestError::UnknownField { path: p, expected } = &err else {
        panic!("want UnknownField at {path}, got {err:?}: {text}");
    };
    assert_eq!(p, path, "{text}");
    assert_eq!(
        expected,
        &allowed.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        "{text}"
    );
    assert!(text.starts_with(&format!("{path}: unknown field; expected ")), "{text}");
}

#[track_caller]
fn assert_missing(err: ManifestError, path: &str) {
    assert_eq!(err, ManifestError::MissingField { path: path.to_string() });
    assert_eq!(err.to_string(), format!("{path}: required field is missing"));
}

#[track_caller]
fn assert_syntax(err: ManifestError, line: usize, message: &str) {
    let text = err.to_string();
    let ManifestError::Syntax {
        line: l,
        column,
        message: m,
        ..
    } = &err
    else {
        panic!("want Syntax, got {err:?}: {text}");
    };
    assert_eq!(*l, line, "{text}");
    assert!(m.contains(message), "{text}");
    assert!(
        text.starts_with(&format!("invalid JSON at line {line}, column {column}")),
        "{text}"
    );
}

// --- accepted manifests -------------------------------------------------------------

#[test]
fn hello_manifest_parses_as_written() {
    let m = parse(HELLO).expect("hello manifest");
    assert_eq!(m.app, "hello");
    assert_eq!(m.gateway.listen, "127.0.0.1:8080");
    assert_eq!(m.gateway.max_header_bytes, 16 * 1024);
    assert_eq!(m.services.keys().collect::<Vec<_>>(), ["api", "web"]);

    let web = &m.services["web"];
    assert_eq!(web.run[3], "${PORT}");
    assert_eq!(
        (web.instances.min, web.instances.max, web.instances.initial()),
        (2, 4, 2)
    );
    assert_eq!(web.routes, [RouteSpec::Prefix("/".into())]);
    assert_eq!(web.routes[0].mode(), CallMode::Any);
    assert_eq!(
        web.health.as_ref().map(|h| (h.path.as_str(), h.interval_ms)),
        Some(("/", 1000))
    );
    assert!(web.setup.is_none() && web.bindings.is_empty());

    let api = &m.services["api"];
    let setup = api.setup.as_ref().expect("setup");
    assert!(matches!(setup, SetupSpec::Argv(_)));
    assert_eq!(setup.argv().last().map(String::as_str), Some("flask"));
    assert!(setup.inputs().is_empty());
    assert_eq!(api.env["PYTHONPATH"], ".deps");
    assert_eq!(api.workdir.as_deref(), Some("api"));
    assert_eq!(api.routes[0].path(), "/api");
    assert_eq!(api.bindings, ["web"]);
    assert_eq!(api.resources.memory_mb, Some(128));
    assert_eq!(api.placement.spread.as_deref(), Some("power"));
    assert_eq!(api.relay.timeout_ms, 30_000);
    assert_eq!(api.stop_grace_ms, 5_000);
}

#[test]
fn every_field_set_parses() {
    let m = parse_value(&full()).expect("full manifest");
    let cart = &m.services["cart"];
    assert_eq!(m.gateway.max_body_bytes, Some(1_048_576));
    assert_eq!(cart.instances.initial(), 1);
    assert_eq!(cart.routes[1].host(), Some("shop.example"));
    assert_eq!(cart.routes[1].mode(), CallMode::All);
    assert_eq!(
        cart.files["conf/cart.toml"],
        FileSpec::Content {
            content: "port = ${PORT}\n".into()
        }
    );
    assert_eq!(
        cart.files["data/seed.json"],
        FileSpec::Source {
            source: "fixtures/seed.json".into()
        }
    );
    assert_eq!(
        cart.setup.as_ref().map(|s| s.inputs().to_vec()),
        Some(vec!["requirements.txt".to_string()])
    );
    assert_eq!(cart.relay.retries, 4);
    assert_eq!(
        (cart.driver, cart.image(), cart.user_ids()),
        (Driver::Oci, "host", (1000, 1000))
    );
    assert_eq!((cart.resources.cpus, cart.resources.pids), (Some(1.5), Some(256)));
}

#[test]
fn minimal_manifest_gets_defaults() {
    let m = parse(r#"{"strata": 1, "app": "a", "services": {"s": {"run": ["x"]}}}"#).expect("minimal");
    let s = &m.services["s"];
    assert_eq!(m.gateway.listen, "127.0.0.1:8080");
    assert_eq!((s.instances.min, s.instances.max, s.instances.initial()), (1, 1, 1));
    assert!(s.health.is_none() && s.routes.is_empty() && s.files.is_empty());
    assert_eq!(
        (s.relay.timeout_ms, s.relay.attempt_timeout_ms(), s.relay.retries),
        (30_000, 10_000, 2)
    );
    assert_eq!((s.driver, s.image(), s.user_ids()), (Driver::Process, "host", NOBODY));
}

#[test]
fn null_means_absent_for_optional_fields() {
    let mut v = hello();
    v["services"]["api"]["workdir"] = Value::Null;
    v["services"]["api"]["setup"] = Value::Null;
    v["services"]["api"]["health"] = Value::Null;
    v["gateway"]["max_body_bytes"] = Value::Null;
    let m = parse_value(&v).expect("nulls");
    assert!(m.services["api"].setup.is_none() && m.services["api"].health.is_none());
}

#[test]
fn serialized_manifest_parses_back_equal() {
    for v in [hello(), full()] {
        let m = parse_value(&v).expect("parse");
        let text = serde_json::to_string(&m).expect("serialize");
        assert_eq!(parse(&text).expect("parse back"), m, "{text}");
    }
}

#[test]
fn load_reads_a_file_and_names_a_missing_one() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let file = dir.join(format!("strata-manifest-test-{}.json", std::process::id()));
    std::fs::write(&file, HELLO).expect("write manifest");
    let loaded = strata_manifest::load(&file);
    std::fs::remove_file(&file).expect("remove manifest");
    assert_eq!(loaded.expect("load").app, "hello");

    let missing = dir.join("no-such-dir/strata.json");
    let err = strata_manifest::load(&missing).expect_err("missing file");
    let ManifestError::Read { path, reason } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(path, &missing.display().to_string());
    assert!(!reason.is_empty());
    assert!(
        err.to_string()
            .starts_with(&format!("cannot read manifest {}: ", missing.display())),
        "{err}"
    );
}

#[test]
fn start_order_puts_bindings_first() {
    let m = parse(HELLO).expect("hello");
    assert_eq!(m.start_order(), ["web", "api"]);

    let m = parse(
        r#"{"strata": 1, "app": "a", "services": {
            "a": {"run": ["x"], "bindings": ["c"]},
            "b": {"run": ["x"]},
            "c": {"run": ["x"], "bindings": ["d", "b"]},
            "d": {"run": ["x"]}}}"#,
    )
    .expect("chain");
    let order = m.start_order();
    assert_eq!(order, ["d", "b", "c", "a"]);
    let pos = |name: &str| order.iter().position(|s| s == name).expect("listed");
    for (name, spec) in &m.services {
        for dep in &spec.bindings {
            assert!(pos(dep) < pos(name), "{dep} before {name} in {order:?}");
        }
    }
}

// --- validation errors ----------------------------------------------------------------

/// The value at `field`, written as in error paths (`services.api.run[0]`, plain keys only).
fn at<'a>(v: &'a mut Value, field: &str) -> &'a mut Value {
    field.split('.').fold(v, |v, part| match part.split_once('[') {
        Some((key, index)) => {
            let index: usize = index.trim_end_matches(']').parse().expect("index");
            &mut v[key][index]
        }
        None => &mut v[part],
    })
}

/// An edit of the hello manifest: `field` set to `value`.
fn set(field: &str, value: Value) -> impl FnOnce(&mut Value) + '_ {
    move |v| *at(v, field) = value
}

/// Setting `field` of the hello manifest to `value` is an `Invalid` error at `field`.
#[track_caller]
fn invalid_at(field: &str, value: Value, expected: &str, found: &str) {
    assert_invalid(error_of(set(field, value)), field, expected, found);
}

#[track_caller]
fn accepted_with(edit: impl FnOnce(&mut Value)) {
    let mut v = hello();
    edit(&mut v);
    if let Err(err) = parse_value(&v) {
        panic!("rejected: {err}\n{v}");
    }
}

fn remove(v: &mut Value, field: &str) {
    let (parent, key) = field.rsplit_once('.').map_or((None, field), |(p, k)| (Some(p), k));
    let parent = match parent {
        Some(parent) => at(v, parent),
        None => v,
    };
    parent.as_object_mut().expect("an object").remove(key);
}

#[test]
fn wrong_version_is_named() {
    invalid_at("strata", json!(2), "1 (the manifest version this build reads)", "2");
    invalid_at("strata", json!(0), "1", "0");
    // A newer manifest fails on its version, not on a field this version does not know.
    let err = error_of(|v| {
        v["strata"] = json!(2);
        v["services"]["api"]["autoscale"] = json!({"target": 3});
    });
    assert_eq!(
        err.to_string(),
        "strata: expected 1 (the manifest version this build reads), found 2"
    );
    invalid_at("strata", json!("1"), "a whole number", "a string \"1\"");
    assert_missing(error_of(|v| remove(v, "strata")), "strata");
}

#[test]
fn app_name_must_be_lowercase_words() {
    invalid_at("app", json!(""), "lowercase letters, digits and -", "an empty string");
    invalid_at("app", json!("Hello"), "lowercase", "\"Hello\"");
    invalid_at("app", json!("my app"), "lowercase", "\"my app\"");
    accepted_with(set("app", json!("2-hello")));
}

#[test]
fn services_must_not_be_empty() {
    invalid_at(
        "services",
        json!({}),
        "at least one service (or a function under functions)",
        "none",
    );
    assert_invalid(
        error_of(|v| remove(v, "services")),
        "services",
        "at least one service (or a function under functions)",
        "none",
    );
    // An app of functions alone is an app.
    accepted_with(|v| {
        remove(v, "services");
        v["functions"] = json!({"tick": {"run": ["x"], "trigger": {"timer": {"interval_ms": 1000}}}});
    });
}

#[test]
fn service_names_are_checked() {
    let rename = |to: &'static str| {
        move |v: &mut Value| {
            let web = v["services"].as_object_mut().unwrap().remove("web").unwrap();
            v["services"]["api"]["bindings"] = json!([]);
            v["services"][to] = web;
        }
    };
    let letter = "starting with a letter";
    assert_invalid(error_of(rename("Web")), "services.Web", letter, "the name \"Web\"");
    assert_invalid(error_of(rename("1web")), "services.1web", letter, "\"1web\"");
    assert_invalid(
        error_of(rename("my_web")),
        "services.my_web",
        "digits and -",
        "\"my_web\"",
    );
    assert_invalid(error_of(rename("my web")), "services[\"my web\"]", letter, "\"my web\"");
    accepted_with(rename("web-2"));
}

#[test]
fn run_needs_a_program() {
    invalid_at("services.api.run", json!([]), "the program name", "an empty array");
    invalid_at("services.api.run[0]", json!(""), "a program name", "an empty string");
}

#[test]
fn instance_bounds_are_checked() {
    let instances = |value| set("services.web.instances", value);
    let err = |value| error_of(instances(value));
    let path = "services.web.instances";
    assert_invalid(
        err(json!({"min": 0, "max": 0})),
        &format!("{path}.max"),
        "between 1 and 10000",
        "0",
    );
    let min = format!("{path}.min");
    assert_invalid(err(json!({"min": 5, "max": 4})), &min, "at most instances.max (4)", "5");
    // max defaults to 1, so a larger min alone is an error at min.
    assert_invalid(err(json!({"min": 3})), &min, "at most instances.max (1)", "3");
    let initial = format!("{path}.initial");
    let between = "a number from instances.min (2) to instances.max (4)";
    assert_invalid(err(json!({"min": 2, "max": 4, "initial": 5})), &initial, between, "5");
    assert_invalid(err(json!({"min": 2, "max": 4, "initial": 1})), &initial, between, "1");
    // Scale to zero.
    accepted_with(instances(json!({"min": 0, "max": 3, "initial": 0})));
}

#[test]
fn routes_start_with_a_slash() {
    let slash = "a path starting with /";
    let err = error_of(set("services.api.routes", json!(["/x", "api"])));
    assert_invalid(err, "services.api.routes[1]", slash, "\"api\"");
    let err = error_of(set("services.api.routes", json!([{"path": "api"}])));
    assert_invalid(err, "services.api.routes[0].path", slash, "\"api\"");
    let err = error_of(set(
        "services.api.routes",
        json!([{"path": "/", "host": "a.example:80"}]),
    ));
    assert_invalid(err, "services.api.routes[0].host", "without port", "\"a.example:80\"");
}

#[test]
fn two_services_cannot_claim_one_route() {
    let claimed = "a route no other route claims";
    let err = error_of(set("services.web.routes", json!(["/", "/api"])));
    let found = "\"/api\", already claimed by services.api.routes[0]";
    assert_invalid(err, "services.web.routes[1]", claimed, found);

    // Host names compare without case.
    let err = error_of(|v| {
        v["services"]["api"]["routes"] = json!([{"path": "/", "host": "API.example"}]);
        v["services"]["web"]["routes"] = json!([{"path": "/", "host": "api.example"}]);
    });
    let found = "\"/\" on host \"api.example\", already claimed by services.api.routes[0]";
    assert_invalid(err, "services.web.routes[0]", claimed, found);

    let err = error_of(set(
        "services.api.routes",
        json!(["/api", {"path": "/api", "mode": "all"}]),
    ));
    let found = "already claimed by services.api.routes[0]";
    assert_invalid(err, "services.api.routes[1]", claimed, found);

    // The same path on another host is another route.
    accepted_with(set(
        "services.api.routes",
        json!([{"path": "/", "host": "api.example"}]),
    ));
}

#[test]
fn health_is_checked() {
    let h = "services.web.health";
    invalid_at(
        &format!("{h}.path"),
        json!("healthz"),
        "a path starting with /",
        "\"healthz\"",
    );
    for field in ["interval_ms", "timeout_ms", "start_timeout_ms"] {
        let ms = "a number of milliseconds greater than 0";
        invalid_at(&format!("{h}.{field}"), json!(0), ms, "0");
    }
    invalid_at(&format!("{h}.failure_threshold"), json!(0), "at least 1", "0");
}

#[test]
fn bindings_name_other_existing_services_once() {
    let err = error_of(set("services.api.bindings", json!(["web", "db"])));
    let expected = "the name of a service in this manifest (web)";
    assert_invalid(err, "services.api.bindings[1]", expected, "\"db\"");
    let err = error_of(set("services.api.bindings", json!(["api"])));
    let expected = "the name of another service";
    assert_invalid(err, "services.api.bindings[0]", expected, "\"api\", the service itself");
    let err = error_of(set("services.api.bindings", json!(["web", "web"])));
    let found = "\"web\" again (also at bindings[0])";
    assert_invalid(err, "services.api.bindings[1]", "each service named once", found);
}

#[test]
fn binding_cycles_are_named() {
    let err = error_of(set("services.web.bindings", json!(["api"])));
    let cycle = vec!["api".to_string(), "web".into(), "api".into()];
    assert_eq!(err, ManifestError::BindingCycle { cycle });
    let text = err.to_string();
    assert!(
        text.starts_with("services.api.bindings: binding cycle api -> web -> api; "),
        "{text}"
    );
    assert!(text.contains("remove one of these bindings"), "{text}");
    assert_eq!(err.path().as_deref(), Some("services.api.bindings"));

    let err = parse_err(
        r#"{"strata": 1, "app": "a", "services": {
            "a": {"run": ["x"], "bindings": ["b"]},
            "b": {"run": ["x"], "bindings": ["c"]},
            "c": {"run": ["x"], "bindings": ["a"]},
            "d": {"run": ["x"], "bindings": ["a"]}}}"#,
    );
    assert!(
        err.to_string()
            .starts_with("services.a.bindings: binding cycle a -> b -> c -> a;"),
        "{err}"
    );

    // A cycle the first service only leads into is named from where it closes.
    let err = parse_err(
        r#"{"strata": 1, "app": "a", "services": {
            "a": {"run": ["x"], "bindings": ["b"]},
            "b": {"run": ["x"], "bindings": ["c"]},
            "c": {"run": ["x"], "bindings": ["b"]}}}"#,
    );
    assert!(
        err.to_string()
            .starts_with("services.b.bindings: binding cycle b -> c -> b;"),
        "{err}"
    );
}

#[test]
fn gateway_is_checked() {
    let socket = "a socket address such as 127.0.0.1:8080";
    invalid_at("gateway.listen", json!("localhost"), socket, "\"localhost\"");
    invalid_at("gateway.listen", json!("127.0.0.1"), socket, "\"127.0.0.1\"");
    invalid_at("gateway.listen", json!(""), socket, "an empty string");
    accepted_with(set("gateway.listen", json!("[::]:0")));
    invalid_at("gateway.max_header_bytes", json!(100), "at least 1024 bytes", "100");
    invalid_at("gateway.header_read_timeout_ms", json!(0), "greater than 0", "0");
    let bounds = "between 1 and 1000000 connections";
    invalid_at("gateway.max_connections", json!(0), bounds, "0");
    invalid_at("gateway.max_connections", json!(1_000_001), bounds, "1000001");
    accepted_with(set("gateway.max_connections", json!(1)));
    let threads = "between 1 and 63 threads";
    invalid_at("gateway.workers", json!(0), threads, "0");
    invalid_at("gateway.workers", json!(64), threads, "64");
    accepted_with(set("gateway.workers", json!(1)));
    accepted_with(set("gateway.workers", json!(63)));
    accepted_with(set("gateway.access_log", json!(false)));
    invalid_at("gateway.access_log", json!("off"), "true or false", "a string \"off\"");
}

#[test]
fn route_fallbacks_are_checked() {
    let route = |fallback: Value| json!([{ "path": "/api", "fallback": fallback }]);
    accepted_with(set(
        "services.api.routes",
        route(json!({"stale_if_error_s": 60, "status": 503, "body": "later"})),
    ));
    let at = |field: &str| format!("services.api.routes[0].fallback.{field}");
    for (field, value, expected) in [
        ("stale_if_error_s", json!(2592001), "between 0 and 2592000 seconds"),
        ("cache_bytes", json!(10), "between 4096 and 1073741824 bytes"),
        ("status", json!(99), "between 200 and 599"),
        ("content_type", json!("text/\nplain"), "a media type"),
    ] {
        let err = error_of(set("services.api.routes", route(json!({ field: value }))));
        assert_invalid(err, &at(field), expected, "");
    }
    let err = error_of(set("services.api.routes", route(json!({"stale": 5}))));
    assert!(err.to_string().contains("unknown field"), "{err}");
    let err = error_of(set(
        "services.api.routes",
        json!([{ "path": "/api", "mode": "all", "fallback": {"status": 503} }]),
    ));
    assert!(err.to_string().contains("no fallback on a route of mode all"), "{err}");
}

#[test]
fn cache_port_is_opt_in_and_checked() {
    // No Redis port unless asked for: two apps side by side never share one.
    let m = parse_value(&hello()).expect("hello");
    assert_eq!(m.cache.listen, None);
    let m = parse(r#"{"strata": 1, "app": "a", "services": {"s": {"run": ["x"]}}, "cache": {"max_memory_mb": 8}}"#)
        .expect("cache without listen");
    assert_eq!(m.cache.listen, None);
    accepted_with(set("cache.listen", json!("127.0.0.1:6380")));
    accepted_with(set("cache.listen", Value::Null));
    let socket = "a socket address such as 127.0.0.1:6380";
    invalid_at("cache.listen", json!("6380"), socket, "\"6380\"");
    invalid_at(
        "cache.listen",
        json!("127.0.0.1:8080"),
        "an address other than gateway.listen",
        "\"127.0.0.1:8080\"",
    );
}

#[test]
fn cache_password_is_optional_and_long() {
    assert_eq!(parse_value(&hello()).expect("hello").cache.password, None);
    accepted_with(set("cache.password", json!("0123456789abcdef")));
    invalid_at(
        "cache.password",
        json!("hunter2"),
        "a password of at least 16 characters (such as `openssl rand -hex 16` prints)",
        "one of 7 characters",
    );
}

#[test]
fn cache_port_bounds_have_defaults_and_can_be_set() {
    let c = parse_value(&hello()).expect("hello").cache;
    let bounds = |c: &strata_manifest::CacheSpec| {
        (
            c.idle_timeout_ms,
            c.command_timeout_ms,
            c.max_clients,
            c.max_query_buffer_mb,
            c.max_query_buffers_total_mb,
        )
    };
    assert_eq!(bounds(&c), (300_000, 10_000, 10_000, 64, 256));
    let mut v = hello();
    v["cache"] = json!({"idle_timeout_ms": 0, "command_timeout_ms": 2000, "max_clients": 50,
                        "max_query_buffer_mb": 8, "max_query_buffers_total_mb": 32});
    let c = parse_value(&v).expect("cache bounds set").cache;
    assert_eq!(bounds(&c), (0, 2000, 50, 8, 32));
}

#[test]
fn relay_timeouts_are_checked() {
    let ms = "a number of milliseconds greater than 0";
    invalid_at("services.api.relay.timeout_ms", json!(0), ms, "0");
    invalid_at("services.api.relay.attempt_timeout_ms", json!(0), ms, "0");
    // An attempt timeout written longer than the deadline is refused.
    let err = error_of(set(
        "services.api.relay",
        json!({"timeout_ms": 5000, "attempt_timeout_ms": 6000}),
    ));
    let expected = "at most relay.timeout_ms (5000)";
    assert_invalid(err, "services.api.relay.attempt_timeout_ms", expected, "6000");
    // Left out, it is the default (10 s) cut to a shorter deadline: nothing to refuse.
    let mut v = hello();
    set("services.api.relay", json!({"timeout_ms": 2000}))(&mut v);
    let m = parse_value(&v).expect("a short deadline alone is valid");
    assert_eq!(m.services["api"].relay.attempt_timeout_ms(), 2000);
    let mut v = hello();
    set("services.api.relay", json!({"timeout_ms": 60000}))(&mut v);
    let m = parse_value(&v).expect("a long deadline alone is valid");
    assert_eq!(m.services["api"].relay.attempt_timeout_ms(), 10_000);
}

#[test]
fn grpc_calls_per_connection_is_at_least_one() {
    let per_call = "at least 1 call per connection (or leave it out: one connection carries every call)";
    invalid_at("services.api.relay.grpc_calls_per_connection", json!(0), per_call, "0");
    let mut v = hello();
    set("services.api.relay.grpc_calls_per_connection", json!(1))(&mut v);
    let m = parse_value(&v).expect("1 is valid");
    assert_eq!(m.services["api"].relay.grpc_calls_per_connection, Some(1));
    let m = parse_value(&hello()).expect("hello");
    assert_eq!(
        m.services["api"].relay.grpc_calls_per_connection, None,
        "unset by default"
    );
    let err = error_of(set("services.api.relay.grpc_calls_per_connection", json!(-1)));
    assert!(err.to_string().contains("grpc_calls_per_connection"), "{err}");
}

#[test]
fn websocket_limits_are_at_least_a_second_and_default_to_five_minutes_and_a_day() {
    let second = "at least 1000 milliseconds (the limits are checked once a second)";
    invalid_at("services.api.relay.websocket_idle_ms", json!(999), second, "999");
    invalid_at("services.api.relay.websocket_max_ms", json!(0), second, "0");
    let m = parse_value(&hello()).expect("hello");
    let relay = &m.services["api"].relay;
    assert_eq!((relay.websocket_idle_ms, relay.websocket_max_ms), (300_000, 86_400_000));
    let mut v = hello();
    set("services.api.relay.websocket_idle_ms", json!(1000))(&mut v);
    let m = parse_value(&v).expect("1000 is valid");
    assert_eq!(m.services["api"].relay.websocket_idle_ms, 1000);
    let err = error_of(set("services.api.relay.websocket_idle_ms", json!("60s")));
    assert!(err.to_string().contains("websocket_idle_ms"), "{err}");
}

#[test]
fn file_paths_stay_inside_the_app() {
    let relative = "a relative path inside the app directory";
    let files = |value| error_of(set("services.api.files", value));
    let err = files(json!({"/etc/app.conf": {"content": "x"}}));
    let found = "the absolute path \"/etc/app.conf\"";
    assert_invalid(err, "services.api.files[\"/etc/app.conf\"]", relative, found);
    let err = files(json!({"conf/../../x": {"content": "x"}}));
    let found = "\"conf/../../x\", which uses ..";
    assert_invalid(err, "services.api.files[\"conf/../../x\"]", relative, found);
    let err = files(json!({"": {"content": "x"}}));
    assert_invalid(err, "services.api.files[\"\"]", relative, "an empty string");
    let err = files(json!({"app.conf": {"source": "../secrets/app.conf"}}));
    let found = "\"../secrets/app.conf\", which uses ..";
    assert_invalid(err, "services.api.files[\"app.conf\"].source", relative, found);
    accepted_with(set("services.api.files", json!({"./a/b..c": {"source": "x/./y"}})));
}

#[test]
fn workdir_is_relative() {
    let relative = "a relative path inside the app directory";
    let workdir = "services.api.workdir";
    invalid_at(workdir, json!("/srv/api"), relative, "the absolute path \"/srv/api\"");
    invalid_at(workdir, json!("../api"), relative, "\"../api\", which uses ..");
    invalid_at(workdir, json!(""), relative, "an empty string");
}

#[test]
fn env_names_are_checked() {
    let err = error_of(set("services.api.env", json!({"A=B": "c"})));
    assert_invalid(err, "services.api.env[\"A=B\"]", "without = or NUL", "\"A=B\"");
    let err = error_of(set("services.api.env", json!({"": "c"})));
    assert_invalid(err, "services.api.env[\"\"]", "not empty", "an empty string");
}

#[test]
fn setup_is_checked() {
    invalid_at("services.api.setup", json!([]), "the program name", "an empty array");
    let err = error_of(set("services.api.setup", json!({"run": [""]})));
    assert_invalid(err, "services.api.setup.run[0]", "a program name", "an empty string");
    let err = error_of(set(
        "services.api.setup",
        json!({"run": ["pip"], "inputs": ["r.txt", "/r"]}),
    ));
    let found = "the absolute path \"/r\"";
    assert_invalid(err, "services.api.setup.inputs[1]", "a relative path", found);
}

#[test]
fn resources_and_placement_are_checked() {
    let memory = "a number of megabytes greater than 0";
    invalid_at("services.api.resources.memory_mb", json!(0), memory, "0");
    let label = "a node label name such as power";
    invalid_at("services.api.placement.spread", json!(""), label, "an empty string");
    invalid_at("services.api.placement.spread", json!("  "), label, "\"  \"");
}

#[test]
fn the_oci_driver_takes_the_host_image_a_user_and_limits() {
    let oci = |v: &mut Value| v["services"]["api"]["driver"] = json!("oci");
    let m = parse_value(&{
        let mut v = hello();
        oci(&mut v);
        v["services"]["api"]["image"] = json!("host");
        v["services"]["api"]["user"] = json!("1000");
        v["services"]["api"]["resources"] = json!({"memory_mb": 64, "cpus": 0.5, "pids": 64});
        v
    })
    .expect("an oci service");
    let api = &m.services["api"];
    assert_eq!((api.driver, api.user_ids()), (Driver::Oci, (1000, 1000)));
    assert_eq!((api.resources.cpus, api.resources.pids), (Some(0.5), Some(64)));

    // A registry name is refused, saying what an image may be.
    let err = error_of(|v| {
        oci(v);
        v["services"]["api"]["image"] = json!("busybox");
    });
    assert_invalid(err.clone(), "services.api.image", "\"host\"", "\"busybox\"");
    assert!(err.to_string().contains("not pulled from registries"), "{err}");
    let driver = "one of process, oci";
    invalid_at("services.api.driver", json!("docker"), driver, "\"docker\"");
    invalid_at("services.api.driver", json!(1), driver, "the number 1");
    // Names are taken (looked up in the image when the container starts).
    for good in [
        "nobody",
        "www-data",
        "app:staff",
        "1000:staff",
        "_svc$",
        "app.user:1000",
    ] {
        let m = parse_value(&{
            let mut v = hello();
            oci(&mut v);
            v["services"]["api"]["user"] = json!(good);
            v
        });
        assert!(m.is_ok(), "{good:?}: {m:?}");
    }
    let user = "a user, or a user and a group, each a number below 4294967295 or a name";
    for bad in [
        "Nobody",
        "1000:",
        ":1000",
        "-1",
        "4294967295",
        "1:2:3",
        "",
        "a b",
        "9x",
        &"a".repeat(33),
    ] {
        let err = error_of(|v| {
            oci(v);
            v["services"]["api"]["user"] = json!(bad);
        });
        assert_eq!(err.path().as_deref(), Some("services.api.user"), "{bad:?}: {err}");
        assert!(err.to_string().contains(user), "{err}");
    }
    let cpus = "between 0.01 and 1024 CPUs";
    let err = error_of(|v| {
        oci(v);
        v["services"]["api"]["resources"]["cpus"] = json!(0.001);
    });
    assert_invalid(err, "services.api.resources.cpus", cpus, "the number 0.001");
    let err = error_of(|v| {
        oci(v);
        v["services"]["api"]["resources"]["cpus"] = json!(2000);
    });
    assert_invalid(err, "services.api.resources.cpus", cpus, "2000");
    let err = error_of(|v| {
        oci(v);
        v["services"]["api"]["resources"]["pids"] = json!(0);
    });
    assert_invalid(
        err,
        "services.api.resources.pids",
        "between 1 and 4194304 processes",
        "0",
    );
}

#[test]
fn an_oci_service_may_leave_out_its_seccomp_filter() {
    let m = parse_value(&{
        let mut v = hello();
        v["services"]["api"]["driver"] = json!("oci");
        v["services"]["api"]["seccomp"] = json!("unconfined");
        v
    })
    .expect("an unconfined oci service");
    assert_eq!(m.services["api"].seccomp, Seccomp::Unconfined);
    assert_eq!(parse_value(&hello()).unwrap().services["api"].seccomp, Seccomp::Default);
    let filters = "one of default, unconfined";
    invalid_at("services.api.seccomp", json!("off"), filters, "\"off\"");
    invalid_at("services.api.seccomp", json!(false), filters, "false");
    // A process has no filter to leave out: refused, saying only a container has one.
    let err = error_of(set("services.api.seccomp", json!("unconfined")));
    assert_invalid(
        err,
        "services.api.seccomp",
        "no seccomp filter to leave out with the process driver",
        "\"unconfined\"",
    );
}

#[test]
fn an_oci_service_may_ask_for_the_apps_private_network() {
    let m = parse_value(&{
        let mut v = hello();
        v["services"]["api"]["driver"] = json!("oci");
        v["services"]["api"]["network"] = json!("private");
        v
    })
    .expect("an oci service on a private network");
    assert_eq!(m.services["api"].network, Network::Private);
    let host = parse_value(&{
        let mut v = hello();
        v["services"]["api"]["driver"] = json!("oci");
        v["services"]["api"]["network"] = json!("host");
        v
    })
    .expect("an oci service on the host's network");
    assert_eq!(host.services["api"].network, Network::Host);
    assert_eq!(parse_value(&hello()).unwrap().services["api"].network, Network::Host);

    let networks = "one of host, private";
    invalid_at("services.api.network", json!("bridge"), networks, "\"bridge\"");
    invalid_at("services.api.network", json!("Private"), networks, "\"Private\"");
    invalid_at("services.api.network", json!(true), networks, "true");
    invalid_at(
        "services.api.network",
        json!({"mode": "private"}),
        networks,
        "an object",
    );
    // Left as a process: refused, saying only a container has one.
    let err = error_of(set("services.api.network", json!("private")));
    assert_invalid(
        err.clone(),
        "services.api.network",
        "no private network with the process driver",
        "\"private\"",
    );
    assert!(err.to_string().contains("set \"driver\": \"oci\""), "{err}");
}

#[test]
fn a_process_has_no_image_user_or_limits() {
    let only = "with the process driver (only a container has one: set \"driver\": \"oci\")";
    let cases = [
        ("services.api.image", json!("host"), "\"host\""),
        ("services.api.user", json!("1000"), "\"1000\""),
        ("services.api.network", json!("private"), "\"private\""),
        ("services.api.resources.cpus", json!(1), "the number 1"),
        ("services.api.resources.pids", json!(10), "the number 10"),
    ];
    for (path, value, found) in cases {
        let err = error_of(set(path, value));
        assert_invalid(err, path, only, found);
    }
}

#[test]
fn first_error_is_reported_in_a_fixed_order() {
    // Top-level fields come first, then services by name.
    let err = error_of(|v| {
        v["services"]["web"]["instances"]["max"] = json!(0);
        v["services"]["api"]["run"] = json!([]);
        v["gateway"]["listen"] = json!("nowhere");
    });
    assert_eq!(err.path().as_deref(), Some("gateway.listen"));
    let err = error_of(|v| {
        v["services"]["web"]["instances"]["max"] = json!(0);
        v["services"]["api"]["run"] = json!([]);
    });
    assert_eq!(err.path().as_deref(), Some("services.api.run"));
}

// --- serde errors ---------------------------------------------------------------------

#[test]
fn wrong_types_name_the_field() {
    let err = error_of(set("services.api.instances.min", json!("two")));
    let text = r#"services.api.instances.min: expected a whole number, found a string "two""#;
    assert_eq!(err.to_string(), text);
    let u32_range = "a whole number from 0 to 4294967295";
    invalid_at("services.api.instances.max", json!(-1), u32_range, "the number -1");
    invalid_at(
        "services.api.instances.max",
        json!(5_000_000_000u64),
        u32_range,
        "5000000000",
    );
    // A u64 field: not its 2^64 bound, which no setting allows anyway.
    invalid_at(
        "services.api.relay.timeout_ms",
        json!(-5),
        "a whole number, 0 or more",
        "the number -5",
    );
    invalid_at(
        "services.api.resources.memory_mb",
        json!(1.5),
        "a whole number",
        "the number 1.5",
    );
    invalid_at("services.api.run", json!("python3 app.py"), "an array", "a string");
    invalid_at("services.api.run[1]", json!(3), "a string", "the number 3");
    invalid_at("services.api.env.PYTHONPATH", json!(8), "a string", "the number 8");
    invalid_at("services.api.env", json!(true), "an object", "true");
    invalid_at("services.api.bindings", json!("web"), "an array", "a string \"web\"");
    invalid_at("services.api.stop_grace_ms", json!(null), "a whole number", "null");
    invalid_at("gateway.listen", json!(8080), "a string", "the number 8080");
    invalid_at("app", json!(null), "a string", "null");
}

#[test]
fn objects_must_be_objects() {
    // serde would take a struct written as an array of its fields; the manifest does not.
    assert_invalid(parse_err("[]"), "manifest", "an object", "an array");
    assert_eq!(
        parse_err("[]").to_string(),
        "manifest: expected an object, found an array"
    );
    invalid_at("services", json!([]), "an object", "an array");
    invalid_at("gateway", json!(["0.0.0.0:80"]), "an object", "an array");
    invalid_at("services.web", json!([["x"]]), "an object", "an array");
    for field in ["instances", "resources", "placement", "relay", "health"] {
        invalid_at(&format!("services.api.{field}"), json!([1, 4]), "an object", "an array");
    }
    invalid_at("services.api.health", json!("/healthz"), "an object", "a string");
}

#[test]
fn route_setup_and_file_shapes_are_explained() {
    let route = "a path string or a route object";
    invalid_at("services.api.routes[0]", json!(5), route, "the number 5");
    let err = error_of(set("services.api.routes[0]", json!({"path": "/api", "mode": "some"})));
    assert_invalid(err, "services.api.routes[0].mode", "one of any, all", "\"some\"");
    let err = error_of(set("services.api.routes[0]", json!({"path": "/api", "mode": 1})));
    assert_invalid(err, "services.api.routes[0].mode", "one of any, all", "the number 1");
    let err = error_of(set("services.api.routes[0]", json!({"path": 7})));
    assert_invalid(err, "services.api.routes[0].path", "a string", "the number 7");
    let err = error_of(set("services.api.routes[0]", json!({"host": "a.example"})));
    assert_missing(err, "services.api.routes[0].path");

    let setup = "an argv array or an object with run and inputs";
    invalid_at(
        "services.api.setup",
        json!("pip install"),
        setup,
        "a string \"pip install\"",
    );
    let err = error_of(set("services.api.setup", json!({"run": ["pip"], "inputs": "r.txt"})));
    assert_invalid(err, "services.api.setup.inputs", "an array", "a string");
    assert_missing(
        error_of(set("services.api.setup", json!({"inputs": []}))),
        "services.api.setup.run",
    );

    let file = "an object with either content or source";
    let files = |value| error_of(set("services.api.files", json!({ "a.txt": value })));
    let path = "services.api.files[\"a.txt\"]";
    let both = "an object with both content and source";
    assert_invalid(files(json!({"content": "x", "source": "y"})), path, file, both);
    let neither = "an object with neither content nor source";
    assert_invalid(files(json!({})), path, file, neither);
    assert_invalid(files(json!("hello")), path, file, "a string \"hello\"");
}

#[test]
fn unknown_fields_are_named_at_every_level() {
    type Edit = Box<dyn FnOnce(&mut Value)>;
    const SERVICE: &[&str] = &[
        "run",
        "workdir",
        "env",
        "files",
        "setup",
        "instances",
        "routes",
        "grpc",
        "health",
        "bindings",
        "access",
        "resources",
        "placement",
        "relay",
        "stop_grace_ms",
        "consumes",
        "subscribes",
        "autoscale",
        "driver",
        "image",
        "user",
        "network",
        "seccomp",
    ];
    let err = error_of(set("services.api.instancs", json!({"min": 2})));
    assert_unknown_field(err.clone(), "services.api.instancs", SERVICE);
    let start = "services.api.instancs: unknown field; expected one of run, workdir, env, ";
    assert!(err.to_string().starts_with(start), "{err}");

    let gateway = [
        "listen",
        "max_header_bytes",
        "max_body_bytes",
        "header_read_timeout_ms",
        "max_connections",
        "workers",
        "access_log",
    ];
    let health = [
        "path",
        "grpc",
        "interval_ms",
        "timeout_ms",
        "failure_threshold",
        "start_timeout_ms",
    ];
    let cases: Vec<(&str, Edit, &[&str])> = vec![
        (
            "service",
            Box::new(set("service", json!({}))),
            &[
                "strata",
                "app",
                "gateway",
                "services",
                "queues",
                "queue_limits",
                "store",
                "cache",
                "caches",
                "functions",
            ],
        ),
        ("gateway.listn", Box::new(set("gateway.listn", json!(""))), &gateway),
        (
            "services.web.instances.mn",
            Box::new(set("services.web.instances.mn", json!(1))),
            &["min", "max", "initial", "idle_timeout_ms"],
        ),
        (
            "services.web.routes[0].hots",
            Box::new(set("services.web.routes[0]", json!({"path": "/", "hots": "x"}))),
            &["path", "host", "mode", "fallback"],
        ),
        (
            "services.web.health.paht",
            Box::new(set("services.web.health.paht", json!("/"))),
            &health,
        ),
        (
            "services.api.resources.memory",
            Box::new(set("services.api.resources.memory", json!(1))),
            &["memory_mb", "accelerators", "cpus", "pids"],
        ),
        (
            "services.api.placement.spred",
            Box::new(set("services.api.placement.spred", json!("x"))),
            &["spread"],
        ),
        (
            "services.api.relay.timeout",
            Box::new(set("services.api.relay.timeout", json!(1))),
            &[
                "timeout_ms",
                "attempt_timeout_ms",
                "retries",
                "idempotent",
                "grpc_calls_per_connection",
                "websocket_idle_ms",
                "websocket_max_ms",
            ],
        ),
        (
            "services.api.setup.rn",
            Box::new(set("services.api.setup", json!({"rn": ["pip"]}))),
            &["run", "inputs"],
        ),
        (
            "services.api.files[\"a.txt\"].contnt",
            Box::new(set("services.api.files", json!({"a.txt": {"contnt": "x"}}))),
            &["content", "source"],
        ),
    ];
    for (path, edit, allowed) in cases {
        assert_unknown_field(error_of(edit), path, allowed);
    }
}

#[test]
fn missing_required_fields_are_named() {
    assert_missing(error_of(|v| remove(v, "app")), "app");
    // `run` may be left out by a container with an image (its Entrypoint and Cmd run),
    // so it is not missing but invalid elsewhere.
    assert_invalid(
        error_of(|v| remove(v, "services.api.run")),
        "services.api.run",
        "only a service with \"driver\": \"oci\" and an image may leave it out",
        "no run at all",
    );
    accepted_with(|v| {
        remove(v, "services.api.run");
        v["services"]["api"]["driver"] = json!("oci");
        v["services"]["api"]["image"] = json!("./image.tar");
    });
    // Neither a path nor gRPC: the port is checked, with the block's timings.
    let mut v = hello();
    set("services.api.health", json!({"start_timeout_ms": 120000}))(&mut v);
    let m = parse_value(&v).expect("a health block for the port's check");
    let health = m.services["api"].health.as_ref().unwrap();
    assert!(health.path.is_empty() && health.grpc.is_none());
    assert_eq!(health.start_timeout_ms, 120_000);
    let err = error_of(set("services.api.health", json!({"path": "/h", "grpc": ""})));
    assert!(err.to_string().contains("not both"), "{err}");
}

#[test]
fn duplicate_keys_are_rejected() {
    let dup_service = r#"{"strata": 1, "app": "a", "services": {"s": {"run": ["x"]}, "s": {"run": ["y"]}}}"#;
    let err = parse_err(dup_service);
    assert_eq!(
        err,
        ManifestError::DuplicateKey {
            path: "services.s".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "services.s: appears more than once; write each key once"
    );

    let dup_field = r#"{"strata": 1, "app": "a", "services": {"s": {"run": ["x"], "run": ["y"]}}}"#;
    assert_eq!(
        parse_err(dup_field),
        ManifestError::DuplicateKey {
            path: "services.s.run".into()
        }
    );

    let dup_env = r#"{"strata": 1, "app": "a", "services": {"s": {"run": ["x"], "env": {"A": "1", "A": "2"}}}}"#;
    assert_eq!(
        parse_err(dup_env),
        ManifestError::DuplicateKey {
            path: "services.s.env.A".into()
        }
    );
}

#[test]
fn malformed_json_names_line_and_column() {
    let truncated = &HELLO[..HELLO.len() / 2];
    let err = parse_err(truncated);
    assert_syntax(err.clone(), truncated.lines().count(), "EOF while parsing");
    assert!(err.to_string().contains("is the file truncated?"), "{err}");

    let err = parse_err("{\"strata\": 1,\n \"app\": \"a\",\n}");
    assert_syntax(err.clone(), 3, "trailing comma");
    assert_eq!(
        err.to_string(),
        "invalid JSON at line 3, column 1: trailing comma; JSON allows no comma after the last item"
    );

    let err = parse_err("{\"strata\": 1, \"app\": \"a\",\n \"services\": {\"s\": {\"run\": [\"x\",]}}}");
    assert_syntax(err.clone(), 2, "trailing comma");
    assert!(err.to_string().contains("(inside services.s.run)"), "{err}");

    assert_syntax(parse_err(""), 1, "EOF while parsing a value");
    assert_syntax(parse_err("strata: 1"), 1, "expected value");
    assert_syntax(parse_err("{'strata': 1}"), 1, "key must be a string");
    assert_syntax(
        parse_err(&format!("{HELLO}}}")),
        9,
        "text after the end of the manifest",
    );
}

#[test]
fn queues_and_consumes_are_checked() {
    accepted_with(|v| {
        v["queues"] = json!({"orders": {"fsync": "none"}});
        v["services"]["api"]["consumes"] = json!({"queue": "orders", "group": "billing", "path": "/orders"});
    });
    let m = {
        let mut v = hello();
        v["queues"] = json!({"orders": {}});
        parse_value(&v).expect("queue with defaults")
    };
    assert_eq!(m.queues["orders"], strata_manifest::QueueSpec::default());

    let with_queue = |field: &'static str, value: Value| {
        move |v: &mut Value| {
            v["queues"] = json!({"orders": {}});
            *at(v, field) = value;
        }
    };
    let err = error_of(with_queue("queues.orders.fsync", json!("sometimes")));
    assert!(err.to_string().contains("always, interval, none"), "{err}");
    assert_invalid(
        error_of(with_queue("queues.orders.segment_bytes", json!(1000))),
        "queues.orders.segment_bytes",
        "between 65536 and 1073741824 bytes",
        "1000",
    );
    assert_invalid(
        error_of(with_queue("queues.orders.max_message_bytes", json!(0))),
        "queues.orders.max_message_bytes",
        "between 1 and segment_bytes - 4096 (16773120) bytes",
        "0",
    );
    assert_invalid(
        error_of(with_queue("queues.orders.lease_ms", json!(0))),
        "queues.orders.lease_ms",
        "between 1 and 43200000 milliseconds",
        "0",
    );
    // Numbers large enough to overflow arithmetic on them are refused, each naming its
    // bound (a huge max_age_s once wrapped to "expired" and deleted unread messages).
    for (field, value, expected) in [
        (
            "queues.orders.retention",
            json!({"max_age_s": u64::MAX}),
            "between 1 and 3153600000 seconds",
        ),
        (
            "queues.orders.retention",
            json!({"max_bytes": u64::MAX}),
            "between 1 and 1125899906842624 bytes",
        ),
        (
            "queues.orders.dedupe_window_ms",
            json!(u64::MAX),
            "between 0 and 604800000 milliseconds",
        ),
        (
            "queues.orders.fsync_interval_ms",
            json!(u64::MAX),
            "between 1 and 43200000 milliseconds",
        ),
        (
            "queues.orders.max_deliveries",
            json!(u32::MAX),
            "between 0 and 1000000 deliveries",
        ),
    ] {
        let err = error_of(with_queue(field, value));
        assert!(err.to_string().contains(expected), "{field}: {err}");
    }
    invalid_at(
        "services.web.instances.max",
        json!(1_000_000),
        "between 1 and 10000",
        "1000000",
    );
    assert_invalid(
        error_of(|v| v["queues"] = json!({"Orders!": {}})),
        "queues[\"Orders!\"]",
        "a name of at most 64 lowercase letters, digits, - and _, starting with a letter or digit",
        "the name \"Orders!\"",
    );
    let consumes = |c: Value| {
        move |v: &mut Value| {
            v["queues"] = json!({"orders": {}});
            v["services"]["api"]["consumes"] = c;
        }
    };
    assert_invalid(
        error_of(consumes(json!({"queue": "order", "group": "g", "path": "/"}))),
        "services.api.consumes.queue",
        "a queue declared under queues (orders)",
        "\"order\"",
    );
    assert_invalid(
        error_of(consumes(
            json!({"queue": "orders", "group": "g", "path": "/", "batch": 0}),
        )),
        "services.api.consumes.batch",
        "between 1 and 10000 messages",
        "0",
    );
    assert_invalid(
        error_of(consumes(json!({"queue": "orders", "group": "g", "path": "x"}))),
        "services.api.consumes.path",
        "a path starting with /",
        "\"x\"",
    );
    let err = error_of(consumes(json!({"queue": "orders", "path": "/"})));
    assert!(err.to_string().contains("group"), "{err}");
}

#[test]
fn autoscale_policy_is_checked_and_defaulted() {
    let m = {
        let mut v = hello();
        v["services"]["api"]["autoscale"] = json!({});
        parse_value(&v).expect("autoscale with defaults")
    };
    let a = m.services["api"].autoscale.clone().expect("autoscale");
    assert_eq!(a, strata_manifest::AutoscaleSpec::default());
    assert_eq!((a.concurrency, a.up_window_ms, a.down_window_ms), (10, 1_000, 30_000));
    assert_eq!(a.shed_at(), 40, "4 x concurrency when max_inflight is absent");
    accepted_with(set(
        "services.api.autoscale",
        json!({"concurrency": 4, "latency_ms": 200, "up_window_ms": 0, "max_step_up": 2, "max_inflight": 8}),
    ));
    invalid_at(
        "services.api.autoscale.concurrency",
        json!(0),
        "at least 1 request per instance",
        "0",
    );
    invalid_at(
        "services.api.autoscale.backlog",
        json!(0),
        "at least 1 message per instance",
        "0",
    );
    invalid_at(
        "services.api.autoscale.down_window_ms",
        json!(0),
        "a number of milliseconds greater than 0",
        "0",
    );
    invalid_at(
        "services.api.autoscale.latency_ms",
        json!(0),
        "a number of milliseconds greater than 0",
        "0",
    );
    invalid_at(
        "services.api.autoscale.max_inflight",
        json!(0),
        "at least 1 request per instance",
        "0",
    );
    let err = error_of(set("services.api.autoscale", json!({"concurency": 4})));
    assert!(err.to_string().contains("concurency"), "{err}");
    let err = error_of(set("services.api.autoscale.concurrency", json!("four")));
    assert!(err.to_string().contains("services.api.autoscale.concurrency"), "{err}");
}

#[test]
fn functions_are_checked_and_run_as_services() {
    let with_functions = |f: Value| {
        move |v: &mut Value| {
            v["queues"] = json!({"jobs": {}});
            v["functions"] = f;
        }
    };
    let mut v = hello();
    with_functions(json!({
        "tick": {"run": ["./tick"], "trigger": {"timer": {"interval_ms": 500}}},
        "nightly": {"run": ["./r"], "trigger": {"timer": {"cron": "30 2 * * mon-fri"}}},
        "work": {"run": ["./w"], "trigger": {"queue": {"queue": "jobs"}}, "concurrency": 3, "max_instances": 2},
        "thumb": {"run": ["./t"], "trigger": {"store": {"namespace": "images", "prefix": "in/"}}},
        "hook": {"run": ["./h"], "trigger": {"http": "/hook"}, "keep_warm_ms": 5000},
    }))(&mut v);
    let m = parse_value(&v).expect("functions");
    let x = m.expanded();
    let work = &x.services["work"];
    assert_eq!((work.instances.min, work.instances.max), (0, 2));
    let c = work.consumes.as_ref().expect("a queue trigger consumes");
    assert_eq!((c.queue.as_str(), c.group.as_str(), c.batch), ("jobs", "work", 10));
    let a = work.autoscale.as_ref().expect("autoscaled");
    assert_eq!((a.concurrency, a.max_inflight, a.backlog), (3, Some(3), 30));
    assert_eq!(x.services["hook"].routes[0].path(), "/hook");
    assert_eq!(x.services["hook"].instances.idle_timeout_ms, 5000);
    assert_eq!(x.services["tick"].function.as_deref(), Some("timer every 500 ms"));
    assert_eq!(x.services["thumb"].function.as_deref(), Some("store images/in/*"));
    assert!(!m.services.contains_key("work"), "the manifest itself keeps them apart");

    let bad = |f: Value, path: &str, expected: &str, found: &str| {
        assert_invalid(error_of(with_functions(f)), path, expected, found);
    };
    bad(
        json!({"f": {"run": ["x"], "trigger": {}}}),
        "functions.f.trigger",
        "exactly one of queue, store, timer or http",
        "none of them",
    );
    bad(
        json!({"f": {"run": ["x"], "trigger": {"http": "/a", "timer": {"interval_ms": 1}}}}),
        "functions.f.trigger",
        "exactly one of queue, store, timer or http",
        "timer and http",
    );
    bad(
        json!({"f": {"run": ["x"], "trigger": {"timer": {}}}}),
        "functions.f.trigger.timer",
        "one of interval_ms or cron",
        "neither",
    );
    bad(
        json!({"f": {"run": ["x"], "trigger": {"timer": {"interval_ms": 0}}}}),
        "functions.f.trigger.timer.interval_ms",
        "a number of milliseconds greater than 0",
        "0",
    );
    let err = error_of(with_functions(
        json!({"f": {"run": ["x"], "trigger": {"timer": {"cron": "61 * * * *"}}}}),
    ));
    let text = err.to_string();
    assert!(
        text.contains("functions.f.trigger.timer.cron") && text.contains("minute") && text.contains("61"),
        "{text}"
    );
    bad(
        json!({"f": {"run": ["x"], "trigger": {"queue": {"queue": "nope"}}}}),
        "functions.f.trigger.queue.queue",
        "a queue declared under queues (jobs)",
        "\"nope\"",
    );
    bad(
        json!({"f": {"run": ["x"], "trigger": {"store": {"namespace": "Bad NS"}}}}),
        "functions.f.trigger.store.namespace",
        "a name of at most 64 lowercase letters, digits, - and _, starting with a letter or digit",
        "\"Bad NS\"",
    );
    bad(
        json!({"f": {"run": ["x"], "trigger": {"http": "hook"}}}),
        "functions.f.trigger.http",
        "a path starting with /",
        "\"hook\"",
    );
    bad(
        json!({"f": {"run": ["x"], "trigger": {"http": "/a"}, "concurrency": 0}}),
        "functions.f.concurrency",
        "at least 1 event per instance",
        "0",
    );
    bad(
        json!({"f": {"run": [], "trigger": {"http": "/a"}}}),
        "functions.f.run",
        "a command: an array starting with the program name",
        "an empty array",
    );
    bad(
        json!({"api": {"run": ["x"], "trigger": {"http": "/a"}}}),
        "functions.api",
        "a name no service uses (a function runs as a pool of its own name)",
        "\"api\", also a service",
    );
    let err = error_of(|v: &mut Value| {
        v["queues"] = json!({"jobs": {}});
        v["services"]["api"]["consumes"] = json!({"queue": "jobs", "group": "work", "path": "/"});
        v["functions"] = json!({"work": {"run": ["x"], "trigger": {"queue": {"queue": "jobs"}}}});
    });
    let text = err.to_string();
    assert!(
        text.contains("functions.work.trigger.queue.group") && text.contains("also consumed by service \"api\""),
        "{text}"
    );
    let err = error_of(with_functions(
        json!({"f": {"run": ["x"], "trigger": {"http": "/api"}}}),
    ));
    assert!(err.to_string().contains("already claimed"), "{err}");
    let err = error_of(with_functions(
        json!({"f": {"run": ["x"], "trigger": {"cron": "* * * * *"}}}),
    ));
    assert!(err.to_string().contains("functions.f.trigger"), "{err}");
}

#[test]
fn load_to_run_names_a_workdir_that_is_not_a_folder() {
    let dir =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("strata-workdir-test-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("api")).unwrap();
    std::fs::write(dir.join("file"), "").unwrap();
    let manifest = serde_json::json!({"strata": 1, "app": "wd", "services": {
        "good": {"run": ["python3", "app.py"], "workdir": "api"},
        "gone": {"run": ["python3", "app.py"], "workdir": "srv", "files": {"conf/a.txt": {"source": "nosuch.txt"}, "b": {"content": "x"}}},
        "file": {"run": ["python3", "app.py"], "workdir": "file"},
        "built": {"run": ["python3", "app.py"], "setup": ["make"], "files": {"b": {"source": "made-by-setup.txt"}}},
    }, "functions": {
        "f": {"run": ["python3", "f.py"], "workdir": "fn", "trigger": {"http": "/f"}},
    }});
    let file = dir.join("strata.json");
    std::fs::write(&file, manifest.to_string()).unwrap();
    assert!(
        strata_manifest::load_all(&file).is_ok(),
        "load_all reads the manifest alone"
    );
    let problems: Vec<String> = strata_manifest::load_to_run(&file)
        .expect_err("missing workdirs")
        .iter()
        .map(ToString::to_string)
        .collect();
    let d = dir.display();
    assert_eq!(
        problems,
        [
            format!("services.gone.files[\"conf/a.txt\"].source: expected a file, relative to the manifest's folder, found nothing at {d}/nosuch.txt"),
            format!("services.file.workdir: expected a folder, relative to the manifest's folder, found {d}/file (not a folder)"),
            format!("services.gone.workdir: expected a folder, relative to the manifest's folder, found nothing at {d}/srv"),
            format!("functions.f.workdir: expected a folder, relative to the manifest's folder, found nothing at {d}/fn"),
        ]
    );
    std::fs::create_dir_all(dir.join("srv")).unwrap();
    std::fs::create_dir_all(dir.join("fn")).unwrap();
    std::fs::write(dir.join("nosuch.txt"), "now here").unwrap();
    std::fs::remove_file(dir.join("file")).unwrap();
    std::fs::create_dir_all(dir.join("file")).unwrap();
    assert!(strata_manifest::load_to_run(&file).is_ok());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A queue made by a request is judged by the same rules as a declared one, its
/// problems named as the request has them.
#[test]
fn a_queue_request_names_its_problems_by_the_url_and_the_body() {
    let good = strata_manifest::QueueSpec::default();
    assert_eq!(strata_manifest::check_queue_request("jobs", &good), Ok(()));
    let named = strata_manifest::check_queue_request("Bad!", &good).unwrap_err();
    assert!(
        named.starts_with("\"Bad!\" is not a queue name: expected a name of at most 64"),
        "{named}"
    );
    let zero = strata_manifest::QueueSpec { lease_ms: 0, ..good };
    let setting = strata_manifest::check_queue_request("jobs", &zero).unwrap_err();
    assert!(setting.starts_with("lease_ms: expected"), "{setting}");
}
