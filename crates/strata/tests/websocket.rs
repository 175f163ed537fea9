//! WebSocket through the gateway and through the node API's `/v1/any/SERVICE` (what
//! `$STRATA_URL` reaches; HTTP/1.1 Upgrade), with the `websockets` package
//! (PyPI) as an unmodified member and as the client: the handshake goes to one member,
//! then bytes flow both ways; a killed member closes only its own connections; the open
//! connections count as load on their members; a member that does not switch has its
//! answer relayed and the connection closed.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const WS_ECHO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ws_echo.py");
const WS_CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ws_client.py");

/// A node with `ws` (two `websockets` echo members) at /ws and the HTTP test member at /app.
async fn ws_node(app: &App) -> strata_node::Node {
    let services = json!({
        "ws": {
            "run": ["python3", WS_ECHO],
            "instances": { "initial": 2, "min": 2, "max": 2 },
            "routes": ["/ws"],
            "stop_grace_ms": 2000,
        },
        "web": app.member(json!({ "routes": ["/app"] })),
    });
    let node = app.start(app.config(app.manifest(services, Value::Null))).await;
    wait_ready(&node, "ws", 2).await;
    wait_ready(&node, "web", 1).await;
    node
}

fn url(node: &strata_node::Node) -> String {
    format!("ws://{}/ws/chat", node.gateway_addr)
}

/// Runs the client's `echo` mode: `connections` at once, `messages` each; its report.
async fn echo(url: String, connections: u32, messages: u32, token: Option<String>) -> Value {
    let out = tokio::task::spawn_blocking(move || {
        let mut command = Command::new("python3");
        command.args([WS_CLIENT, "echo", &url, &connections.to_string(), &messages.to_string()]);
        if let Some(token) = token {
            command.env("WS_TOKEN", token);
        }
        command.output().expect("run the websockets client")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap()
}

/// Runs the client's `hold` mode with `connections`: the process, its stdin and its
/// stdout (the first line, the connections opened, still to read).
fn hold(url: &str, connections: u32) -> (Child, ChildStdin, BufReader<ChildStdout>) {
    hold_with(url, connections, None)
}

/// [`hold`] with the node API's token (through `/v1/any`).
fn hold_with(url: &str, connections: u32, token: Option<&str>) -> (Child, ChildStdin, BufReader<ChildStdout>) {
    let mut command = Command::new("python3");
    if let Some(token) = token {
        command.env("WS_TOKEN", token);
    }
    let mut client = command
        .args([WS_CLIENT, "hold", url, &connections.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the websockets client");
    let to = client.stdin.take().unwrap();
    let from = BufReader::new(client.stdout.take().unwrap());
    (client, to, from)
}

/// Reads one JSON line from the client.
fn line(out: &mut impl BufRead) -> Value {
    let mut text = String::new();
    out.read_line(&mut text).expect("read the client");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("client said {text:?}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_websockets_exchange_a_thousand_messages_each() {
    let app = App::new();
    let node = ws_node(&app).await;
    let result = echo(url(&node), 100, 1000, None).await;
    assert_eq!(result["failed"], json!([]), "{result}");
    assert_eq!(result["ok"], 100, "{result}");
    let members = result["members"].as_object().unwrap();
    assert_eq!(members.len(), 2, "both members took connections: {result}");
    assert_eq!(members.values().map(|n| n.as_u64().unwrap()).sum::<u64>(), 100);
    let metrics = get(node.api_addr, "/v1/metrics").await.text();
    let switched = metric(&metrics, "service=\"ws\",protocol=\"websocket\",code=\"1xx\"}");
    assert_eq!(switched, 100.0, "one 101 per connection: {metrics}");
    // Every tunnel ended with its connection: nothing counted in flight any more.
    wait_until("the tunnels to end", Duration::from_secs(10), || {
        ready_instances(&node, "ws").iter().all(|i| i.inflight == 0)
    })
    .await;
    stop(node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_member_closes_only_its_connections_and_open_ones_count_as_load() {
    let app = App::new();
    let node = ws_node(&app).await;
    let (mut client, mut to, mut from) = hold(&url(&node), 20);
    let opened: Vec<String> = serde_json::from_value(line(&mut from)["open"].clone()).unwrap();
    assert_eq!(opened.len(), 20);

    // Each open connection is a request in flight on its member: the pick sees them.
    let instances = ready_instances(&node, "ws");
    for instance in &instances {
        let here = opened.iter().filter(|m| **m == instance.id).count();
        assert!(here > 0, "load-aware picks spread 20 connections: {opened:?}");
        assert_eq!(instance.inflight, here, "{}: {opened:?}", instance.id);
    }

    // Kill one member: its connections end, the other's keep echoing.
    let victim = &instances[0];
    signal(victim.pid.unwrap() as i32, libc::SIGKILL);
    let want = json!(opened.iter().map(|m| *m != victim.id).collect::<Vec<bool>>());
    let alive = wait_for_async(
        "the killed member's connections to close",
        Duration::from_secs(15),
        || {
            writeln!(to, "check").unwrap();
            let alive = line(&mut from)["alive"].clone();
            let done = alive == want;
            async move { done.then_some(alive) }
        },
    )
    .await;
    assert_eq!(alive.as_array().unwrap().len(), 20);
    // The killed member's clients were sent a Close (1011) by the gateway, not left
    // with a broken connection (1006); the others are still open.
    writeln!(to, "closes 1").unwrap();
    let closes = line(&mut from)["closes"].clone();
    for (i, member) in opened.iter().enumerate() {
        if *member == victim.id {
            assert_eq!(closes[i], json!([1011, "the service instance went away"]), "{closes}");
        } else {
            assert!(closes[i].is_null(), "{closes}");
        }
    }

    // A new connection goes to a member that is there.
    writeln!(to, "new").unwrap();
    let new = line(&mut from)["new"].as_str().unwrap().to_string();
    assert!(!new.is_empty() && new != "?", "{new}");
    drop(to);
    let _ = client.wait();
    stop(node).await;
}

/// A member scaled away: its clients are sent a Close (1001, Going Away) at once and the
/// handshake goes through to the member, which sees each client's Close; the other
/// member's connections stay open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_scaled_away_has_its_websockets_closed_with_a_proper_handshake() {
    let app = App::new();
    let services = json!({
        "ws": {
            "run": ["python3", WS_ECHO],
            "instances": { "initial": 2, "min": 1, "max": 2 },
            "routes": ["/ws"],
            "stop_grace_ms": 8000,
        },
    });
    let node = app.start(app.config(app.manifest(services, Value::Null))).await;
    wait_ready(&node, "ws", 2).await;
    let (mut client, mut to, mut from) = hold(&url(&node), 10);
    let opened: Vec<String> = serde_json::from_value(line(&mut from)["open"].clone()).unwrap();
    let before: Vec<String> = ready_instances(&node, "ws").into_iter().map(|i| i.id).collect();
    assert!(before.iter().all(|id| opened.contains(id)), "{opened:?}");

    let scaled = post(node.api_addr, "/v1/services/ws/scale", r#"{"instances": 1}"#).await;
    assert_eq!(scaled.status, 200, "{}", scaled.text());
    writeln!(to, "closes 6").unwrap();
    let closes = line(&mut from)["closes"].clone();
    let stayed: Vec<String> = ready_instances(&node, "ws").into_iter().map(|i| i.id).collect();
    assert_eq!(stayed.len(), 1, "{stayed:?}");
    let gone = before.iter().find(|id| **id != stayed[0]).unwrap().clone();
    let want: Vec<Value> = opened
        .iter()
        .map(|m| match *m == gone {
            true => json!([1001, "service instance stopping"]),
            false => Value::Null,
        })
        .collect();
    assert_eq!(
        closes,
        json!(want),
        "closed: the stopped member's connections, with 1001; open: the other's ({opened:?})"
    );

    // The stopped member saw each client's Close in answer (the code and reason echoed).
    let log = app.path().join(format!(".strata/logs/ws/{gone}.log"));
    let seen = opened.iter().filter(|m| **m == gone).count();
    let closed = wait_for("the member's log of its closes", Duration::from_secs(15), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let closed: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(&l[l.find('{')?..]).ok())
            .filter(|v| v.get("closed").is_some())
            .collect();
        if closed.len() > seen {
            panic!("more closes than connections ({seen}) in {}:\n{text}", log.display());
        }
        (closed.len() == seen).then_some(closed)
    })
    .await;
    for c in closed {
        assert_eq!(c, json!({"closed": 1001, "reason": "service instance stopping"}));
    }
    drop(to);
    let _ = client.wait();
    stop(node).await;
}

/// `relay.websocket_idle_ms`: a WebSocket with no byte either way for that long is closed
/// with a Close (1001), the handshake through to the member; one kept busy stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_websocket_is_closed_after_its_services_idle_limit() {
    let app = App::new();
    let services = json!({
        "ws": {
            "run": ["python3", WS_ECHO],
            "routes": ["/ws"],
            "relay": { "websocket_idle_ms": 2000 },
        },
    });
    let node = app.start(app.config(app.manifest(services, Value::Null))).await;
    wait_ready(&node, "ws", 1).await;
    let (mut client, mut to, mut from) = hold(&url(&node), 2);
    line(&mut from);
    // Not idle while messages move: five checks a little under a second apart.
    for _ in 0..5 {
        writeln!(to, "check").unwrap();
        assert_eq!(line(&mut from)["alive"], json!([true, true]));
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
    writeln!(to, "closes 8").unwrap();
    let closes = line(&mut from)["closes"].clone();
    assert_eq!(closes, json!([[1001, "idle too long"], [1001, "idle too long"]]));
    let log = app.path().join(".strata/logs/ws/ws-1.log");
    let closed = wait_for("the member's log of its closes", Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        (text.matches(r#"{"closed": 1001, "reason": "idle too long"}"#).count() == 2).then_some(())
    });
    closed.await;
    drop(to);
    let _ = client.wait();
    stop(node).await;
}

/// A node that stops sends its WebSockets' clients a Close (1001) too, and waits for
/// the handshakes: no client sees its connection broken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_node_closes_its_websockets_with_a_close() {
    let app = App::new();
    let node = ws_node(&app).await;
    let (mut client, mut to, mut from) = hold(&url(&node), 6);
    line(&mut from);
    // And through the node API, by service name.
    let api_url = format!("ws://{}/v1/any/ws/chat", node.api_addr);
    let token = node.control_token().to_string();
    let (mut api_client, mut api_to, mut api_from) = hold_with(&api_url, 4, Some(&token));
    line(&mut api_from);
    stop(node).await;
    for (to, from) in [(&mut to, &mut from), (&mut api_to, &mut api_from)] {
        writeln!(to, "closes 5").unwrap();
        let closes = line(from)["closes"].clone();
        for close in closes.as_array().unwrap() {
            assert_eq!(close[0], 1001, "{closes}");
            assert!(
                ["server shutting down", "service instance stopping"].contains(&close[1].as_str().unwrap_or("")),
                "{closes}"
            );
        }
    }
    drop((to, api_to));
    let _ = client.wait();
    let _ = api_client.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_through_the_node_api_by_service_name() {
    let app = App::new();
    let node = ws_node(&app).await;
    let url = format!("ws://{}/v1/any/ws/chat", node.api_addr);
    let result = echo(url, 10, 200, Some(node.control_token().to_string())).await;
    assert_eq!(
        (result["ok"].as_u64(), &result["failed"]),
        (Some(10), &json!([])),
        "{result}"
    );
    wait_until("the tunnels to end", Duration::from_secs(10), || {
        ready_instances(&node, "ws").iter().all(|i| i.inflight == 0)
    })
    .await;
    // A refused upgrade through the API closes its connection too.
    let head = format!(
        "GET /v1/any/web/ws HTTP/1.1\r\nHost: {}\r\n{}Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        node.api_addr,
        auth_line(node.api_addr)
    );
    let (text, closed) = raw(node.api_addr, head.as_bytes()).await;
    assert_eq!((status_of(&text), closed), (Some(200), true), "{text:?}");
    stop(node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_does_not_switch_is_relayed_and_the_connection_closed() {
    let app = App::new();
    let node = ws_node(&app).await;
    let (text, closed) = raw(
        node.gateway_addr,
        b"GET /app/ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\
          GET /app/smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&text), Some(200), "{text:?}");
    assert!(closed, "closed after a refused upgrade: {text:?}");
    assert_eq!(
        text.matches("HTTP/1.1 ").count(),
        1,
        "the bytes after it are not a request: {text:?}"
    );
    let paths: Vec<String> = app
        .requests()
        .iter()
        .filter_map(|r| r["path"].as_str().map(String::from))
        .collect();
    assert!(!paths.iter().any(|p| p.contains("smuggled")), "{paths:?}");
    // No route: 404 and closed too.
    let (text, closed) = raw(
        node.gateway_addr,
        b"GET /nowhere HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    )
    .await;
    assert_eq!((status_of(&text), closed), (Some(404), true), "{text:?}");
    stop(node).await;
}
