//! Topics through a real node, real member processes and the real Redis port: two
//! services subscribe to one topic (`all` with two instances, `any` with two); a
//! message POSTed to `/v1/topics/NAME` and one PUBLISHed with redis-cli each reach every
//! member of the `all` service once and exactly one member of the `any` one, and a RESP
//! client SUBSCRIBEd to the topic; both answer the same count of receivers. A failed
//! delivery is counted, not retried; the counts are on `/v1/metrics`.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The topic records of the members, by message body: (service, instance) of each.
fn topic_records(app: &App) -> BTreeMap<String, Vec<(String, String)>> {
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for r in app.records().into_iter().filter(|r| r["kind"] == "topic") {
        assert_eq!(r["topic"], "news", "{r}");
        assert_eq!(r["content_type"], "application/octet-stream", "{r}");
        out.entry(r["body"].as_str().unwrap().to_string()).or_default().push((
            r["service"].as_str().unwrap().to_string(),
            r["instance"].as_str().unwrap().to_string(),
        ));
    }
    out
}

/// Waits until `body` reached 3 members, then checks who: each of `fan`'s two
/// instances once, one of `one`'s.
async fn reached_as_subscribed(app: &App, body: &str) {
    wait_until(&format!("{body} delivered"), Duration::from_secs(20), || {
        topic_records(app).get(body).map_or(0, Vec::len) >= 3
    })
    .await;
    // Anything more would come soon after: give it a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut got = topic_records(app).remove(body).unwrap();
    got.sort();
    let fan: Vec<&str> = got
        .iter()
        .filter(|(s, _)| s == "fan")
        .map(|(_, i)| i.as_str())
        .collect();
    let one: Vec<&str> = got
        .iter()
        .filter(|(s, _)| s == "one")
        .map(|(_, i)| i.as_str())
        .collect();
    assert_eq!(fan.len(), 2, "{body}: every member of `all` once: {got:?}");
    assert_ne!(fan[0], fan[1], "{body}: {got:?}");
    assert_eq!(one.len(), 1, "{body}: one member of `any`: {got:?}");
}

/// A RESP command as bytes.
fn resp(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend(format!("${}\r\n{a}\r\n", a.len()).bytes());
    }
    out
}

/// Reads from `conn` until `want` has arrived whole.
async fn read_exactly(conn: &mut TcpStream, want: &[u8]) {
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while got.len() < want.len() {
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
            .await
            .expect("the subscriber hears within 10s")
            .expect("read");
        assert!(n > 0, "the Redis port closed the subscriber");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(want));
}

async fn redis_cli(addr: SocketAddr, args: &[&str]) -> String {
    let port = addr.port().to_string();
    let out = tokio::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port])
        .args(args)
        .output()
        .await
        .expect("run redis-cli (Debian's redis-tools)");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_on_either_side_reaches_every_kind_of_subscriber() {
    let app = App::new();
    let two = json!({ "min": 2, "max": 2 });
    let services = json!({
        "fan": app.member(json!({
            "instances": two,
            "subscribes": { "topic": "news", "path": "/topic", "mode": "all" },
        })),
        "one": app.member(json!({
            "instances": two,
            "subscribes": [{ "topic": "news", "path": "/topic", "mode": "any" }],
        })),
    });
    let node = app.start(app.config(app.manifest(services, Value::Null))).await;
    wait_ready(&node, "fan", 2).await;
    wait_ready(&node, "one", 2).await;
    let redis = node.cache_addr.expect("the Redis port");

    // A RESP client subscribes.
    let mut subscriber = TcpStream::connect(redis).await.unwrap();
    subscriber.write_all(&resp(&["SUBSCRIBE", "news"])).await.unwrap();
    read_exactly(&mut subscriber, b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n").await;

    // Published on the node API: the two services and the RESP client.
    let reply = post(node.api_addr, "/v1/topics/news", "from-http").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json(), json!({ "receivers": 3 }));
    read_exactly(
        &mut subscriber,
        b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$9\r\nfrom-http\r\n",
    )
    .await;
    reached_as_subscribed(&app, "from-http").await;

    // Published on the Redis port: the same.
    assert_eq!(redis_cli(redis, &["PUBLISH", "news", "from-redis"]).await, "3");
    read_exactly(
        &mut subscriber,
        b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$10\r\nfrom-redis\r\n",
    )
    .await;
    reached_as_subscribed(&app, "from-redis").await;
    assert_eq!(
        redis_cli(redis, &["PUBSUB", "NUMSUB", "news"]).await,
        "news\n3",
        "the services' subscriptions count as subscribers"
    );

    // Nobody on another topic; an empty message is a message.
    let reply = post(node.api_addr, "/v1/topics/nobody", "x").await;
    assert_eq!(reply.json(), json!({ "receivers": 0 }));
    let reply = post(node.api_addr, "/v1/topics/news", "").await;
    assert_eq!(reply.json(), json!({ "receivers": 3 }));
    reached_as_subscribed(&app, "").await;

    // A member answering 500 is counted as failed and not asked again (at most once).
    let reply = post(node.api_addr, "/v1/topics/news", "fail").await;
    assert_eq!(reply.json(), json!({ "receivers": 3 }));
    reached_as_subscribed(&app, "fail").await;
    let metrics = wait_for_async("the failures counted", Duration::from_secs(10), || async {
        let text = get(node.api_addr, "/v1/metrics").await.text();
        text.contains(r#"strata_topic_messages_total{app="test",service="one",topic="news",outcome="failed"} 1"#)
            .then_some(text)
    })
    .await;
    for line in [
        r#"strata_topic_messages_total{app="test",service="fan",topic="news",outcome="delivered"} 6"#,
        r#"strata_topic_messages_total{app="test",service="fan",topic="news",outcome="failed"} 2"#,
        r#"strata_topic_messages_total{app="test",service="one",topic="news",outcome="delivered"} 3"#,
        r#"strata_topic_messages_total{app="test",service="one",topic="news",outcome="dropped"} 0"#,
    ] {
        assert!(metrics.contains(line), "{line} not in:\n{metrics}");
    }
    // The ANY subscriber's deliveries are its requests too (3 answered 2xx, 1 5xx).
    let ok = metric(&metrics, "service=\"one\",protocol=\"http\",code=\"2xx\"}");
    let failed = metric(&metrics, "service=\"one\",protocol=\"http\",code=\"5xx\"}");
    assert_eq!((ok, failed), (3.0, 1.0), "{metrics}");

    // A message over 1 MiB is refused, naming the limit.
    let reply = post(node.api_addr, "/v1/topics/news", vec![b'x'; (1 << 20) + 1]).await;
    assert_eq!(reply.status, 413, "{}", reply.text());
    stop(node).await;
}

/// A subscriber whose one instance holds every delivery: 4 deliveries wait on it (4 per
/// ready instance), 1024 messages wait in its mailbox, and the rest are dropped and counted; once it lets go,
/// everything not dropped is delivered, and nothing is delivered twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_is_bounded_and_its_drops_counted() {
    let app = App::new();
    let gate = app.path().join("release");
    let services = json!({
        "slow": app.member(json!({
            "instances": { "min": 1, "max": 1 },
            "relay": { "timeout_ms": 60000, "attempt_timeout_ms": 60000 },
            "subscribes": {
                "topic": "flood",
                "path": format!("/hold?until={}", gate.display()),
                "mode": "any",
            },
        })),
    });
    let node = app.start(app.config(app.manifest(services, Value::Null))).await;
    wait_ready(&node, "slow", 1).await;
    const SENT: u64 = 1100;
    let publish = |i: u64| async move {
        let reply = post(node.api_addr, "/v1/topics/flood", format!("m{i}")).await;
        assert_eq!(reply.json(), json!({ "receivers": 1 }));
    };
    let held = |app: &App| {
        app.requests()
            .into_iter()
            .filter(|r| r["path"].as_str().is_some_and(|p| p.starts_with("/hold")))
            .count()
    };
    // The first 4 fill the deliveries in flight; the rest wait, then are dropped.
    for i in 0..4 {
        publish(i).await;
    }
    wait_until("4 deliveries held", Duration::from_secs(20), || held(&app) == 4).await;
    for i in 4..SENT {
        publish(i).await;
    }
    let count = |text: &str, outcome: &str| -> u64 {
        let prefix =
            format!(r#"strata_topic_messages_total{{app="test",service="slow",topic="flood",outcome="{outcome}"}} "#);
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {outcome} count in:\n{text}"))
    };
    let metrics = get(node.api_addr, "/v1/metrics").await.text();
    let dropped = count(&metrics, "dropped");
    assert_eq!(dropped, SENT - 4 - 1024, "4 in flight, 1024 waiting, the rest dropped");
    std::fs::write(&gate, b"").unwrap();
    let metrics = wait_for_async("every message held delivered", Duration::from_secs(60), || async {
        let text = get(node.api_addr, "/v1/metrics").await.text();
        (count(&text, "delivered") + count(&text, "failed") == 4 + 1024).then_some(text)
    })
    .await;
    assert_eq!(count(&metrics, "failed"), 0);
    assert_eq!(count(&metrics, "dropped"), dropped);
    assert_eq!(held(&app), 4 + 1024, "each message not dropped reached the member once");
    stop(node).await;
}
