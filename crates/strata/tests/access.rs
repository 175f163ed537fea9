//! Nothing on the node API is reachable without a token (docs/access.md): no token is
//! 401, a service's token beyond its manifest entry 403, a body a web page could send
//! (text/plain) to a JSON endpoint 415, a Host that is not the node's 421. Instances get
//! their service's token in `$STRATA_TOKEN` and reach what their entry declares; the CLI
//! reads the control token from `.strata/control.token` (0600, in a 0700 state dir); an
//! API beyond loopback without a configured token does not start.

mod common;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::*;
use http::{Method, StatusCode};
use serde_json::{json, Value};

const CALLER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/caller.py");

fn python_client_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clients/python")
}

/// A service running `caller.py` (which uses the Python client from the source tree).
fn caller(extra: Value) -> Value {
    let mut spec = json!({
        "run": ["python3", CALLER],
        "env": { "PYTHONPATH": python_client_dir().display().to_string(), "PYTHONDONTWRITEBYTECODE": "1" },
        "health": { "path": "/healthz", "interval_ms": 200, "timeout_ms": 1000 },
        "stop_grace_ms": 2000,
    });
    for (k, v) in extra.as_object().expect("an object") {
        spec[k] = v.clone();
    }
    spec
}

/// web binds to api and publishes to orders; api claims the topic prices; other declares
/// nothing.
fn manifest() -> strata_manifest::Manifest {
    let m = json!({
        "strata": 1, "app": "test",
        "queues": { "orders": {}, "audit": {} },
        "services": {
            "web": caller(json!({ "routes": ["/"], "bindings": ["api"], "access": { "publishes": ["orders"] } })),
            "api": caller(json!({ "access": { "topics": ["prices"] } })),
            "other": caller(json!({})),
        }
    });
    strata_manifest::parse(&m.to_string()).expect("a valid manifest")
}

/// The token an instance was given, from its environment.
fn token_of_instance(pid: u32) -> String {
    let env = std::fs::read(format!("/proc/{pid}/environ")).expect("read the instance's environment");
    env.split(|b| *b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok())
        .find_map(|kv| kv.strip_prefix("STRATA_TOKEN="))
        .expect("the instance has STRATA_TOKEN")
        .to_string()
}

/// One request to the node API with exactly these headers (no helper adds any).
async fn call(
    api: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, Value) {
    let mut req = http::Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(http_body_util::Full::new(bytes::Bytes::from(body.to_string())))
        .unwrap();
    let reply = send(api, req).await.expect("the node API answers");
    let value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    (reply.status, value)
}

fn assert_error(got: (StatusCode, Value), status: u16, code: &str) {
    let (s, body) = got;
    assert_eq!(s.as_u16(), status, "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_api_wants_a_token_the_right_one_and_a_programs_request() {
    let app = App::new();
    let node = app.start(app.config(manifest())).await;
    let api = node.api_addr;
    let host = api.to_string();
    let control = format!("Bearer {}", node.control_token());
    let web_pid = wait_ready(&node, "web", 1).await[0].pid.expect("a pid");
    let api_pid = wait_ready(&node, "api", 1).await[0].pid.expect("a pid");
    let web = format!("Bearer {}", token_of_instance(web_pid));
    assert_ne!(
        token_of_instance(web_pid),
        token_of_instance(api_pid),
        "a token per service"
    );
    assert_ne!(token_of_instance(web_pid), node.control_token());
    let publish = |queue: &str| format!("/v1/queues/{queue}/messages");
    let json_ct = ("content-type", "application/json");

    // No token, or one the node did not give out: 401, whatever the route.
    for path in ["/v1/ps", "/v1/health", "/v1/queues/orders", "/v1/no/such/route"] {
        assert_error(
            call(api, Method::GET, path, &[("host", &host)], "").await,
            401,
            "unauthorized",
        );
    }
    let stranger = format!("Bearer {}", "0".repeat(64));
    assert_error(
        call(
            api,
            Method::POST,
            "/v1/down",
            &[("host", &host), ("authorization", &stranger)],
            "",
        )
        .await,
        401,
        "unauthorized",
    );
    assert_error(
        call(
            api,
            Method::GET,
            "/v1/ps",
            &[("host", &host), ("authorization", "Basic dXNlcg==")],
            "",
        )
        .await,
        401,
        "unauthorized",
    );

    // A service's token: what its entry reaches, 403 beyond it.
    let as_web = [("host", host.as_str()), ("authorization", web.as_str()), json_ct];
    let (status, _) = call(api, Method::POST, &publish("orders"), &as_web, r#"{"body": "a"}"#).await;
    assert_eq!(status, 201);
    let denied = call(api, Method::POST, &publish("audit"), &as_web, r#"{"body": "a"}"#).await;
    assert!(
        denied.1["error"]
            .as_str()
            .unwrap()
            .contains("services.web.access.publishes"),
        "{}",
        denied.1
    );
    assert_error(denied, 403, "forbidden");
    assert_error(
        call(api, Method::POST, "/v1/queues/orders/groups/g/fetch", &as_web, "").await,
        403,
        "forbidden",
    );
    assert_error(
        call(api, Method::GET, "/v1/any/other/x", &as_web, "").await,
        403,
        "forbidden",
    );
    assert_eq!(call(api, Method::GET, "/v1/any/api/headers", &as_web, "").await.0, 200);
    for (method, path) in [
        (Method::GET, "/v1/ps"),
        (Method::POST, "/v1/down"),
        (Method::GET, "/v1/metrics"),
        (Method::GET, "/v1/services/web/logs"),
        (Method::PUT, "/v1/queues/new"),
        (Method::GET, "/v1/cache"),
        (Method::GET, "/v1/kv/carts/k"),
        (Method::GET, "/v1/cache/keys/k"),
    ] {
        assert_error(call(api, method, path, &as_web, "").await, 403, "forbidden");
    }
    // A reply into a queue is a publish there: the dead-letter queue included.
    let reply = |to: &str| json!({ "reply_to": to, "body": "r" }).to_string();
    assert_error(
        call(api, Method::POST, "/v1/reply", &as_web, &reply("queue:orders.dlq")).await,
        403,
        "forbidden",
    );
    assert_eq!(
        call(api, Method::POST, "/v1/reply", &as_web, &reply("queue:orders"))
            .await
            .0,
        201
    );

    // A topic nobody claims is open to every token; one api claims, to api alone.
    let topic = |name: &str| format!("/v1/topics/{name}");
    assert_eq!(call(api, Method::POST, &topic("news"), &as_web, "n").await.0, 200);
    let denied = call(api, Method::POST, &topic("prices"), &as_web, "p").await;
    assert!(
        denied.1["error"]
            .as_str()
            .unwrap()
            .contains("services.web.access.topics"),
        "{}",
        denied.1
    );
    assert_error(denied, 403, "forbidden");
    let as_api = format!("Bearer {}", token_of_instance(api_pid));
    let as_api = [("host", host.as_str()), ("authorization", as_api.as_str())];
    assert_eq!(call(api, Method::POST, &topic("prices"), &as_api, "p").await.0, 200);

    // The control token reaches everything.
    let as_cli = [("host", host.as_str()), ("authorization", control.as_str()), json_ct];
    assert_eq!(call(api, Method::GET, "/v1/ps", &as_cli, "").await.0, 200);
    assert_eq!(
        call(api, Method::POST, &publish("audit"), &as_cli, r#"{"body": "a"}"#)
            .await
            .0,
        201
    );
    assert_error(
        call(api, Method::GET, "/v1/no/such/route", &as_cli, "").await,
        404,
        "not_found",
    );

    // What a web page can send without asking: a text/plain body. Not to a JSON endpoint.
    let plain = [
        ("host", host.as_str()),
        ("authorization", control.as_str()),
        ("content-type", "text/plain"),
    ];
    assert_error(
        call(api, Method::POST, &publish("orders"), &plain, r#"{"body": "a"}"#).await,
        415,
        "unsupported_media_type",
    );
    let no_type = [("host", host.as_str()), ("authorization", control.as_str())];
    assert_error(
        call(
            api,
            Method::POST,
            "/v1/services/web/scale",
            &no_type,
            r#"{"instances": 1}"#,
        )
        .await,
        415,
        "unsupported_media_type",
    );
    // Bytes stay bytes: a stored value takes any type.
    assert_eq!(call(api, Method::PUT, "/v1/kv/notes/a", &plain, "hello").await.0, 201);

    // A Host that is not the node's (a rebound DNS name): 421, token or not.
    for bad in ["attacker.example:80", &format!("rebound.example:{}", api.port())] {
        let headers = [("host", bad), ("authorization", control.as_str())];
        assert_error(
            call(api, Method::GET, "/v1/ps", &headers, "").await,
            421,
            "misdirected_request",
        );
    }
    let local = format!("localhost:{}", api.port());
    let headers = [("host", local.as_str()), ("authorization", control.as_str())];
    assert_eq!(call(api, Method::GET, "/v1/ps", &headers, "").await.0, 200);
    stop(node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_reaches_what_its_manifest_entry_declares() {
    let app = App::new();
    let node = app.start(app.config(manifest())).await;
    for service in ["web", "api", "other"] {
        wait_ready(&node, service, 1).await;
    }
    let gw = node.gateway_addr;
    let ask = |path: &'static str| async move {
        let reply = get(gw, path).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        reply.json()
    };

    // web binds to api: the call goes through; api never sees web's token.
    let called = ask("/call?service=api").await;
    assert_eq!(called["status"], 200, "{called}");
    let seen = &called["body"];
    assert!(seen["x-request-id"].is_string(), "api's /headers answered: {seen}");
    assert!(
        seen.get("authorization").is_none() && seen.get("x-strata-token").is_none(),
        "the caller's token is not passed on: {seen}"
    );
    let other = ask("/call?service=other").await;
    assert_eq!(
        (other["status"].as_u64(), other["code"].as_str()),
        (Some(403), Some("forbidden")),
        "{other}"
    );

    // web publishes to orders (declared), not to audit.
    let published = ask("/publish?queue=orders").await;
    assert_eq!(published["status"], 200, "{published}");
    let refused = ask("/publish?queue=audit").await;
    assert_eq!(refused["status"], 403, "{refused}");
    assert!(
        refused["body"].as_str().unwrap().contains("access.publishes"),
        "{refused}"
    );
    let stats = get(node.api_addr, "/v1/queues/orders").await.json();
    assert_eq!(stats["messages"], 1, "the one publish that was allowed: {stats}");
    let audit = get(node.api_addr, "/v1/queues/audit").await.json();
    assert_eq!(audit["messages"], 0, "{audit}");

    // And the control API is not an instance's.
    let ps = ask("/ps").await;
    assert_eq!(ps["status"], 403, "{ps}");

    // Paths that do not decode, names the app does not have, an empty key: the right
    // error, not a refusal whose advice would not help.
    let web = ready_instances(&node, "web")[0].pid.expect("a pid");
    let token = format!("Bearer {}", token_of_instance(web));
    let api = node.api_addr;
    let host = api.to_string();
    let auth = [("authorization", token.as_str()), ("host", host.as_str())];
    let bad = call(api, Method::GET, "/v1/kv/notes/%FF", &auth, "").await;
    assert_error(bad.clone(), 400, "bad_request");
    assert!(
        bad.1["error"].as_str().unwrap().contains("does not decode"),
        "{}",
        bad.1
    );
    // A call's path is the member's, relayed as sent (as through the gateway).
    // (caller.py answers a path it does not serve with its own HTML 404, not JSON.)
    let (status, body) = call(api, Method::GET, "/v1/any/api/%FF", &auth, "").await;
    assert_eq!((status.as_u16(), &body), (404, &Value::Null), "the member answered");
    let (status, body) = call(api, Method::GET, "/v1/any/%61pi/%FF", &auth, "").await;
    assert_eq!(
        (status.as_u16(), &body),
        (404, &Value::Null),
        "an escaped service name too"
    );
    assert_error(
        call(api, Method::GET, "/v1/any/nobody/x", &auth, "").await,
        404,
        "not_found",
    );
    let empty = call(api, Method::PUT, "/v1/kv/notes/", &auth, "v").await;
    assert_error(empty.clone(), 400, "bad_request");
    assert!(
        empty.1["error"].as_str().unwrap().contains("a key may not be empty"),
        "{}",
        empty.1
    );
    stop(node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_uses_its_token_file_which_only_the_owner_can_read() {
    let app = App::new();
    let spec = app.member(json!({ "instances": { "min": 1, "max": 2 } }));
    let mut config = app.config(app.manifest(json!({ "web": spec }), Value::Null));
    config.write_state_file = true;
    let node = app.start(config).await;
    wait_ready(&node, "web", 1).await;

    let state = app.path().join(".strata");
    let file = state.join("control.token");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&file), 0o600, "the token file is the owner's alone");
    assert_eq!(mode(&state), 0o700, "and so is the state dir, with all it holds");
    let token = std::fs::read_to_string(&file).unwrap();
    assert_eq!(token.trim(), node.control_token());
    assert_eq!(token.trim().len(), 64, "32 random bytes in hex");
    assert!(token.trim().bytes().all(|b| b.is_ascii_hexdigit()));

    // In the app's dir, and from elsewhere with -C: the CLI finds the token itself.
    let out = strata(app.path(), &["ps", "--json"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dir = app.path().to_str().unwrap();
    let out = strata(Path::new("/"), &["ps", "--json", "-C", dir]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ps: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ps["app"], "test");

    // A wrong token (an old one, say) is refused, and the CLI says so.
    let out = tokio::process::Command::new(STRATA)
        .args(["--api", &format!("http://{}", node.api_addr), "ps"])
        .env("STRATA_CONTROL_TOKEN", "f".repeat(64))
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("token"), "{said}");
    stop(node).await;
    assert!(!file.exists(), "the token goes with its node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_beyond_loopback_needs_a_configured_token() {
    let app = App::new();
    let services = json!({ "idle": { "run": ["sleep", "1000"], "instances": { "min": 0, "max": 1 } } });
    let mut config = app.config(app.manifest(services.clone(), Value::Null));
    config.api_listen = SocketAddr::from(([0, 0, 0, 0], 0));
    config.control_token = None;
    let refused = strata_node::Node::start(config, tokio_util::sync::CancellationToken::new())
        .await
        .err()
        .expect("no token, no API beyond loopback");
    assert!(refused.to_string().contains("STRATA_CONTROL_TOKEN"), "{refused:#}");

    let mut config = app.config(app.manifest(services.clone(), Value::Null));
    config.api_listen = SocketAddr::from(([0, 0, 0, 0], 0));
    config.control_token = Some("short".to_string());
    let short = strata_node::Node::start(config, tokio_util::sync::CancellationToken::new())
        .await
        .err()
        .expect("a short token is no token");
    assert!(short.to_string().contains("at least 32"), "{short:#}");

    let token = "5".repeat(64);
    let mut config = app.config(app.manifest(services, Value::Null));
    config.api_listen = SocketAddr::from(([0, 0, 0, 0], 0));
    config.control_token = Some(token.clone());
    let node = app.start(config).await;
    assert_eq!(node.control_token(), token);
    let port = node.api_addr.port();
    let loopback = SocketAddr::from(([127, 0, 0, 1], port));
    let bearer = format!("Bearer {token}");
    let host = loopback.to_string();
    let (status, _) = call(
        loopback,
        Method::GET,
        "/v1/ps",
        &[("host", &host), ("authorization", &bearer)],
        "",
    )
    .await;
    assert_eq!(status, 200);
    let rebound = format!("rebound.example:{port}");
    assert_error(
        call(
            loopback,
            Method::GET,
            "/v1/ps",
            &[("host", &rebound), ("authorization", &bearer)],
            "",
        )
        .await,
        421,
        "misdirected_request",
    );
    stop(node).await;
}

/// The node API agrees with its OpenAPI description (`crates/api/openapi.json`, served at
/// `/v1/openapi.json` without a token): schemathesis generates requests for every
/// operation from it, valid and not, and checks that no answer is a 5xx and that every
/// answer's status, media type, headers and body are what the description says. Left
/// out: `POST /v1/down` (stops the node), `POST /v1/cache/shards/{n}/drop` (a drill that
/// empties the cache).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_api_agrees_with_its_openapi_description() {
    let has = strata_testkit::program("st", "python3 -m pip install schemathesis");
    if !strata_testkit::needs("the_node_api_agrees_with_its_openapi_description", has) {
        return;
    }
    let app = App::new();
    // Something behind every route: queues, a namespace and a read-through cache over
    // it, a service to call (at one instance: a scale to any other count is refused).
    let m = json!({
        "strata": 1, "app": "test",
        "queues": { "orders": {} },
        "caches": { "carts": { "namespace": "carts", "ttl_ms": 60000 } },
        "services": {
            "web": app.member(json!({ "routes": ["/"], "instances": { "min": 1, "max": 1 },
                                      "access": { "publishes": ["orders"], "namespaces": ["carts"] } })),
        }
    });
    let manifest = strata_manifest::parse(&m.to_string()).expect("a valid manifest");
    let node = app.start(app.config(manifest)).await;
    let api = node.api_addr;
    let host = api.to_string();
    wait_ready(&node, "web", 1).await;

    // The description needs no token; the Host check applies.
    let (status, doc) = call(api, Method::GET, "/v1/openapi.json", &[("host", &host)], "").await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["openapi"], "3.1.0");
    assert_error(
        call(api, Method::GET, "/v1/openapi.json", &[("host", "evil.example:80")], "").await,
        421,
        "misdirected_request",
    );

    let control = format!("Bearer {}", node.control_token());
    // What schemathesis found. axum's own refusals of a path or a query were plain
    // text, not the shared error body the description promises.
    let auth = [("host", host.as_str()), ("authorization", control.as_str())];
    for path in [
        "/v1/queues/%FF",
        "/v1/services/web/logs?follow=maybe",
        "/v1/kv/carts/%C3%28",
    ] {
        assert_error(call(api, Method::GET, path, &auth, "").await, 400, "bad_request");
    }
    // The setup log of a service without a setup step: said, not an empty answer.
    let (status, body) = call(api, Method::GET, "/v1/services/web/logs?setup=true", &auth, "").await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("service \"web\" has no setup step"),
        "{body}"
    );
    // A call's path reaches the member as it was sent: `%20` was decoded to a space
    // (400, not a path) and `%3F` to a query.
    let reply = get(api, "/v1/any/web/a%20b%3Fc?x=1").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["path"], "/a%20b%3Fc?x=1");
    // And a method a route does not take: 405 with Allow, and the shared body.
    let reply = send(api, request(Method::PATCH, api, "/v1/ps", ""))
        .await
        .expect("the node API answers");
    assert_eq!(reply.header("allow"), Some("GET,HEAD"), "{}", reply.text());
    assert_error((reply.status, reply.json()), 405, "method_not_allowed");

    // A message in the queue, for the run's fetches.
    let (status, _) = call(
        api,
        Method::POST,
        "/v1/queues/orders/messages",
        &[
            ("host", &host),
            ("authorization", &control),
            ("content-type", "application/json"),
        ],
        r#"{"body": "one"}"#,
    )
    .await;
    assert_eq!(status, 201);

    // A fetch or a publish-and-wait waits as long as it is asked to, and followed logs
    // never end: the run asks for no wait, so that each request is answered at once. A
    // publish-and-wait that nobody answers is a 504 by contract (no_reply); a call to a
    // service answers what its member answers (the test member has no PATCH: 501). Not
    // run: schemathesis's `unsupported_method`, since a call relays every method (QUERY
    // too) to the member; the 405 of the other routes is checked above.
    let config = app.path().join("schemathesis.toml");
    std::fs::write(
        &config,
        r#"
[[operations]]
include-name = "POST /v1/queues/{queue}/groups/{group}/fetch"
parameters = { "query.wait_ms" = 0 }

[[operations]]
include-name = "POST /v1/queues/{queue}/messages"
parameters = { "query.wait_reply_ms" = 1 }
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "504"]

[[operations]]
include-name = "GET /v1/services/{service}/logs"
parameters = { "query.follow" = "false" }

[[operations]]
include-tag = "calls"
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "501"]
"#,
    )
    .unwrap();
    let started = std::time::Instant::now();
    let run = tokio::process::Command::new("st")
        .arg("--config-file")
        .arg(&config)
        .args(["--no-color", "run"])
        .arg(format!("http://{api}/v1/openapi.json"))
        // The token in both of its headers, so that no generated X-Strata-Token (the
        // description's second scheme) replaces it.
        .args(["--header", &format!("Authorization: {control}")])
        .args(["--header", &format!("X-Strata-Token: {}", node.control_token())])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,allow_header_conformance",
        ])
        .args(["--max-examples", "20", "--seed", "1", "--workers", "2", "--request-timeout", "10"])
        .args(["--suppress-health-check", "all"])
        .args(["--exclude-path", "/v1/down"])
        .args(["--exclude-path", "/v1/cache/shards/{n}/drop"])
        // The dashboard's stream never ends (tests/dashboard.rs reads it in a browser).
        .args(["--exclude-path", "/v1/stream"])
        .current_dir(app.path())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(240), run)
        .await
        .expect("schemathesis finished within 240 s")
        .expect("run schemathesis");
    let took = started.elapsed();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis found disagreements ({:?}):\n{text}",
        out.status
    );
    eprintln!("schemathesis agreed in {took:?}:\n{text}");
    stop(node).await;
}
