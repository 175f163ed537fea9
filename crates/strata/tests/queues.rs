//! Queues through a real node: push delivery to a pool (spread, partial failure, lease
//! expiry to another member), bad input over HTTP, and kill -9 of the whole node during
//! concurrent acknowledged publishes.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Method;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

const CONSUMER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/consumer.py");

fn consumer_manifest(app: &App, instances: u32, env: Value, queue: Value) -> strata_manifest::Manifest {
    let mut env = env;
    env["RECORD"] = json!(app.record.display().to_string());
    let manifest = json!({
        "strata": 1,
        "app": "test",
        "queues": { "jobs": queue },
        "services": {
            "work": {
                "run": ["python3", CONSUMER],
                "env": env,
                "health": { "path": "/healthz", "interval_ms": 200 },
                "instances": { "min": instances, "max": instances },
                "consumes": { "queue": "jobs", "group": "workers", "batch": 5, "path": "/jobs" },
                "stop_grace_ms": 500
            }
        }
    });
    strata_manifest::parse(&manifest.to_string()).expect("a valid manifest")
}

async fn publish_texts(api: SocketAddr, queue: &str, texts: &[String]) -> Vec<u64> {
    let messages: Vec<Value> = texts.iter().map(|t| json!({ "body": t })).collect();
    let reply = post(
        api,
        &format!("/v1/queues/{queue}/messages"),
        json!({ "messages": messages }).to_string(),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    reply.json()["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_u64().unwrap())
        .collect()
}

/// (offset -> [(instance, deliveries)]) from the consumers' record file.
fn deliveries(app: &App) -> BTreeMap<u64, Vec<(String, u64)>> {
    let mut out: BTreeMap<u64, Vec<(String, u64)>> = BTreeMap::new();
    for r in app.records() {
        out.entry(r["offset"].as_u64().unwrap()).or_default().push((
            r["instance"].as_str().unwrap().to_string(),
            r["deliveries"].as_u64().unwrap(),
        ));
    }
    out
}

async fn backlog(api: SocketAddr) -> Option<u64> {
    let ps = get(api, "/v1/ps").await.json();
    ps["consumers"][0]["backlog"].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_delivery_spreads_over_the_pool_and_deletes() {
    let app = App::new();
    let node = app
        .start(app.config(consumer_manifest(&app, 2, json!({}), json!({}))))
        .await;
    wait_ready(&node, "work", 2).await;
    let texts: Vec<String> = (0..200).map(|i| format!("job-{i}")).collect();
    let offsets = publish_texts(node.api_addr, "jobs", &texts).await;
    assert_eq!(offsets, (0..200).collect::<Vec<u64>>());
    wait_until("every job delivered", Duration::from_secs(20), || {
        deliveries(&app).len() == 200
    })
    .await;
    wait_for_async("backlog 0", Duration::from_secs(10), || async {
        (backlog(node.api_addr).await == Some(0)).then_some(())
    })
    .await;
    let seen = deliveries(&app);
    let instances: std::collections::BTreeSet<&str> =
        seen.values().flat_map(|d| d.iter().map(|(i, _)| i.as_str())).collect();
    assert_eq!(instances.len(), 2, "both members got batches: {instances:?}");
    assert!(
        seen.values().all(|d| d.len() == 1 && d[0].1 == 1),
        "each delivered once"
    );
    let r = &app.records()[0];
    assert_eq!(r["queue"], "jobs");
    assert_eq!(r["group"], "workers");
    assert_eq!(r["header_queue"], "jobs");
    // Each batch is a request of the service in its figures (metrics, top).
    let batches: std::collections::BTreeSet<String> = app.records().iter().map(|r| r["batch"].to_string()).collect();
    let metrics = get(node.api_addr, "/v1/metrics").await.text();
    let counted = metric(&metrics, "service=\"work\",protocol=\"http\",code=\"2xx\"}");
    assert!(
        counted >= batches.len() as f64,
        "{counted} of {} batches",
        batches.len()
    );
    // ps shows the backlog under the service.
    let out = strata(app.path(), &["--api", &format!("http://{}", node.api_addr), "ps"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("consumes jobs/workers: backlog 0"), "{text}");
    let out = strata(app.path(), &["--api", &format!("http://{}", node.api_addr), "queues"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("jobs") && text.contains("always") && text.contains("group workers"),
        "{text}"
    );
    stop(node).await;
}

/// A 2xx answer listing some offsets of its batch in `{"failed": [...]}`: only those come
/// back (with a raised delivery count); the rest of the batch is deleted.
/// A consumer group is made by its first fetch: before it (here no member is ever ready
/// to be delivered to) ps counts the whole queue as its backlog, not `null`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_not_yet_fetched_from_counts_the_whole_queue_as_its_backlog() {
    let app = App::new();
    let manifest = json!({
        "strata": 1,
        "app": "test",
        "queues": { "jobs": {} },
        "services": {
            "work": {
                "run": ["sleep", "600"],
                "health": { "path": "/healthz" },
                "consumes": { "queue": "jobs", "group": "workers", "path": "/jobs" },
                "stop_grace_ms": 200
            }
        }
    });
    let node = app
        .start(app.config(strata_manifest::parse(&manifest.to_string()).unwrap()))
        .await;
    let texts: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
    publish_texts(node.api_addr, "jobs", &texts).await;
    let ps = get(node.api_addr, "/v1/ps").await.json();
    let c = &ps["consumers"][0];
    assert_eq!(
        (&c["backlog"], &c["unread"], &c["leased"]),
        (&json!(3), &json!(3), &json!(0)),
        "{ps}"
    );
    let out = strata(app.path(), &["--api", &format!("http://{}", node.api_addr), "ps"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("consumes jobs/workers: backlog 3 (unread 3, leased 0)"),
        "{text}"
    );
    stop(node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_offsets_of_a_batch_are_delivered_again() {
    let app = App::new();
    // The consumer fails the odd offsets of each batch on their first delivery.
    let node = app
        .start(app.config(consumer_manifest(&app, 1, json!({ "FAIL_ODD_FIRST": "1" }), json!({}))))
        .await;
    wait_ready(&node, "work", 1).await;
    let texts: Vec<String> = (0..10).map(|i| format!("job-{i}")).collect();
    let offsets = publish_texts(node.api_addr, "jobs", &texts).await;
    let odd = |o: &u64| o % 2 == 1;
    wait_until("every failed job delivered again", Duration::from_secs(20), || {
        let d = deliveries(&app);
        d.len() == 10
            && d.iter()
                .filter(|(o, _)| odd(o))
                .all(|(_, v)| v.iter().any(|(_, n)| *n == 2))
    })
    .await;
    // Once the backlog is 0 every delivery is recorded: a member records a batch before
    // it answers, and the group's backlog counts an offset until it is acknowledged.
    wait_for_async("backlog 0", Duration::from_secs(10), || async {
        (backlog(node.api_addr).await == Some(0)).then_some(())
    })
    .await;
    let seen = deliveries(&app);
    assert_eq!(
        seen.keys().copied().collect::<Vec<u64>>(),
        offsets,
        "every job delivered"
    );
    for (offset, d) in &seen {
        let counts: Vec<u64> = d.iter().map(|(_, n)| *n).collect();
        if odd(offset) {
            assert_eq!(counts, [1, 2], "failed offset {offset}: delivered again, once: {d:?}");
        } else {
            assert_eq!(
                counts,
                [1],
                "offset {offset} not failed: delivered once, then deleted: {d:?}"
            );
        }
    }
    // The failures were partial: some batch held offsets that failed and offsets that did not.
    let mixed = app.records().iter().any(|r| {
        let batch: Vec<u64> = r["batch"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o.as_u64().unwrap())
            .collect();
        r["deliveries"] == 1 && batch.iter().any(odd) && !batch.iter().all(odd)
    });
    assert!(mixed, "a batch was partly failed: {:?}", app.records());
    stop(node).await;
}

/// A message its only member fails on (no answer: the connection closed) is delivered
/// `max_deliveries` times to that member before it is dead-lettered: the pushes made
/// while the member is passed over after a failure wait for it, and are not spent as
/// deliveries that reach nobody. Each group's dead letters are told as events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_reaches_its_member_max_deliveries_times_before_the_dead_letters() {
    let app = App::new();
    let env = json!({ "POISON": "poison" });
    let queue = json!({ "max_deliveries": 3, "lease_ms": 10000 });
    let node = app.start(app.config(consumer_manifest(&app, 1, env, queue))).await;
    wait_ready(&node, "work", 1).await;
    let offsets = publish_texts(node.api_addr, "jobs", &["poison".to_string()]).await;
    let dead = wait_for_async("the poison message dead-lettered", Duration::from_secs(30), || async {
        let fetched = post(node.api_addr, "/v1/queues/jobs.dlq/groups/audit/fetch?max=10", "").await;
        let messages = fetched.json()["messages"].as_array().cloned().unwrap_or_default();
        (!messages.is_empty()).then_some(messages)
    })
    .await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let seen: Vec<u64> = deliveries(&app)
        .get(&offsets[0])
        .map(|d| d.iter().map(|(_, n)| *n).collect())
        .unwrap_or_default();
    assert_eq!(seen, [1, 2, 3], "the member saw each delivery: {seen:?}");
    // The dead letter says where it came from.
    let origin = &dead[0]["dead_letter"];
    assert_eq!(
        (&origin["group"], &origin["offset"], &origin["deliveries"]),
        (&json!("workers"), &json!(offsets[0]), &json!(3)),
        "{dead:?}"
    );
    assert!(
        origin["timestamp_ms"].as_u64().is_some_and(|t| t > 1_700_000_000_000),
        "{dead:?}"
    );
    // And the consuming service's events say so.
    let told = wait_for_async("a dead-lettered event", Duration::from_secs(10), || async {
        let events = get(node.api_addr, "/v1/events").await.json();
        events
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["kind"] == "dead-lettered" && e["service"] == "work")
            .cloned()
    })
    .await;
    let message = told["message"].as_str().unwrap();
    assert!(
        message.starts_with("1 message(s) of queue jobs (group workers) moved to jobs.dlq after 3 deliveries"),
        "{message}"
    );
    // A pull consumer's group (fetching through the API) that gives up on it: told too,
    // as an event of the queue.
    for delivery in 1..=3 {
        let fetched = post(node.api_addr, "/v1/queues/jobs/groups/puller/fetch?max=10", "").await;
        let messages = fetched.json()["messages"].as_array().cloned().unwrap_or_default();
        assert_eq!(messages.len(), 1, "delivery {delivery}: {messages:?}");
        let nack = json!({ "offsets": [offsets[0]] }).to_string();
        let nacked = post(node.api_addr, "/v1/queues/jobs/groups/puller/nack", nack).await;
        assert!(nacked.status.is_success(), "{}", nacked.text());
    }
    // The next fetch moves it (the queue dead-letters at fetch) and gets nothing.
    let fetched = post(node.api_addr, "/v1/queues/jobs/groups/puller/fetch?max=10", "").await;
    assert_eq!(fetched.json()["messages"], json!([]), "{}", fetched.text());
    let told = wait_for_async(
        "a pull group's dead-lettered event",
        Duration::from_secs(10),
        || async {
            let events = get(node.api_addr, "/v1/events").await.json();
            events
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["kind"] == "dead-lettered" && e["service"] == "jobs")
                .cloned()
        },
    )
    .await;
    let message = told["message"].as_str().unwrap();
    assert!(
        message.starts_with("1 message(s) of queue jobs (group puller) moved to jobs.dlq after 3 deliveries"),
        "{message}"
    );
    stop(node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_lease_is_delivered_to_another_member() {
    let app = App::new();
    // work-1 takes first deliveries and never answers in time; the lease is 1 s.
    let node = app
        .start(app.config(consumer_manifest(
            &app,
            2,
            json!({ "HANG_FIRST": "1" }),
            json!({ "lease_ms": 1000 }),
        )))
        .await;
    wait_ready(&node, "work", 2).await;
    let texts: Vec<String> = (0..30).map(|i| format!("job-{i}")).collect();
    publish_texts(node.api_addr, "jobs", &texts).await;
    // What the members saw, printed if the wait below runs out.
    let watchdog = {
        let record = app.record.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(29)).await;
            eprintln!(
                "records so far:\n{}",
                std::fs::read_to_string(record).unwrap_or_default()
            );
        })
    };
    wait_until(
        "a hung batch delivered again elsewhere",
        Duration::from_secs(30),
        || {
            let d = deliveries(&app);
            let hung: Vec<u64> = d
                .iter()
                .filter(|(_, v)| v.iter().any(|(i, n)| i == "work-1" && *n == 1))
                .map(|(o, _)| *o)
                .collect();
            // Every hung message is delivered again, to the other member.
            let rescued = !hung.is_empty() && hung.iter().all(|o| d[o].iter().any(|(i, n)| i == "work-2" && *n >= 2));
            rescued && d.len() == 30
        },
    )
    .await;
    watchdog.abort();
    wait_for_async("backlog 0", Duration::from_secs(20), || async {
        (backlog(node.api_addr).await == Some(0)).then_some(())
    })
    .await;
    // Every job delivered (the hung ones again, to work-2, as waited for above); each
    // delivery under a lease of its own, so the counts an offset was delivered with are
    // 1, 2, ... (none repeated, none skipped).
    let seen = deliveries(&app);
    assert_eq!(
        seen.keys().copied().collect::<Vec<u64>>(),
        (0..30).collect::<Vec<u64>>()
    );
    for (offset, d) in &seen {
        let mut counts: Vec<u64> = d.iter().map(|(_, n)| *n).collect();
        counts.sort_unstable();
        let expected: Vec<u64> = (1..=counts.len() as u64).collect();
        assert_eq!(counts, expected, "offset {offset}: one delivery per lease: {d:?}");
    }
    stop(node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_4xx_and_loses_nothing() {
    let app = App::new();
    let node = app
        .start(app.config(consumer_manifest(
            &app,
            1,
            json!({}),
            json!({ "max_message_bytes": 64 }),
        )))
        .await;
    let api = node.api_addr;
    let ok = post(api, "/v1/queues/jobs/messages", r#"{"body": "kept"}"#).await;
    assert_eq!(ok.status, 201, "{}", ok.text());
    let compact = |parts: &[&[u8]]| {
        let mut b = Vec::new();
        for p in parts {
            b.extend_from_slice(&(p.len() as u32).to_be_bytes());
            b.extend_from_slice(p);
        }
        b
    };
    let mut cut = compact(&[b"a", b"bb"]);
    cut.truncate(cut.len() - 1);
    /// method, path, body, content type, status, what the error says
    type Case<'a> = (Method, &'a str, Vec<u8>, Option<&'a str>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            Method::POST,
            "/v1/queues/nope/messages",
            br#"{"body":"x"}"#.to_vec(),
            None,
            404,
            "no queue named \"nope\"",
        ),
        (
            Method::POST,
            "/v1/queues/jobs/messages",
            format!(r#"{{"body":"{}"}}"#, "x".repeat(65)).into_bytes(),
            None,
            413,
            "over the queue's max_message_bytes (64)",
        ),
        (
            Method::POST,
            "/v1/queues/jobs/messages",
            br#"{"messages":[{"body":"ok"},{"body":7}]}"#.to_vec(),
            None,
            400,
            "messages[1]",
        ),
        (
            Method::POST,
            "/v1/queues/jobs/messages",
            br#"{"body":"x","colour":"red"}"#.to_vec(),
            None,
            400,
            "unknown field `colour`",
        ),
        (
            Method::POST,
            "/v1/queues/jobs/messages",
            br#"{"body_base64":"!!"}"#.to_vec(),
            None,
            400,
            "not base64",
        ),
        (
            Method::POST,
            "/v1/queues/jobs/messages",
            b"not json".to_vec(),
            None,
            400,
            "not JSON",
        ),
        (
            Method::POST,
            "/v1/queues/jobs/messages",
            cut,
            Some("application/x-strata-batch"),
            400,
            "claims 2 payload bytes at byte 9, but only 1 remain",
        ),
        (
            Method::POST,
            "/v1/queues/jobs/messages?wait=3",
            br#"{"body":"x"}"#.to_vec(),
            None,
            400,
            "unknown parameter",
        ),
        (
            Method::POST,
            "/v1/queues/jobs/messages?producer=p1",
            br#"{"body":"x"}"#.to_vec(),
            None,
            400,
            "producer and sequence go together",
        ),
        (
            Method::POST,
            "/v1/queues/jobs/messages?producer=p1&sequence=first",
            br#"{"body":"x"}"#.to_vec(),
            None,
            400,
            "sequence must be a whole number",
        ),
        (
            Method::POST,
            "/v1/queues/jobs/messages?producer=p!&sequence=0",
            br#"{"body":"x"}"#.to_vec(),
            None,
            400,
            "producer must be 1 to 64 letters",
        ),
        (
            Method::POST,
            "/v1/queues/jobs/messages?producer=p1&sequence=0&wait_reply_ms=100",
            br#"{"body":"x"}"#.to_vec(),
            None,
            400,
            "without producer and sequence",
        ),
        (
            Method::POST,
            "/v1/queues/jobs/groups/g/fetch?max=0",
            vec![],
            None,
            400,
            "max must be",
        ),
        (
            Method::POST,
            "/v1/queues/jobs/groups/g/fetch?max=lots",
            vec![],
            None,
            400,
            "max must be",
        ),
        (
            Method::POST,
            "/v1/queues/jobs/groups/G!/fetch",
            vec![],
            None,
            400,
            "not a group name",
        ),
        (
            Method::POST,
            "/v1/queues/jobs/groups/g/ack",
            br#"{"offsets":["1"]}"#.to_vec(),
            None,
            400,
            "offsets",
        ),
        (
            Method::POST,
            "/v1/queues/BadName/messages",
            br#"{"body":"x"}"#.to_vec(),
            None,
            404,
            "no queue named \"BadName\", nor can there be",
        ),
        (
            Method::POST,
            "/v1/queues/jobs/groups/nobody/ack",
            br#"{"offsets":[0]}"#.to_vec(),
            None,
            404,
            "no consumer group",
        ),
        (
            Method::DELETE,
            "/v1/queues/jobs/groups/g/messages/x1",
            vec![],
            None,
            400,
            "not a whole number",
        ),
        // Named as the request has them (the URL's name, the body's key), not by a
        // manifest path (walk of stop 51: "queues.newq.segment_bytes").
        (
            Method::PUT,
            "/v1/queues/Bad!",
            vec![],
            None,
            400,
            "\"Bad!\" is not a queue name",
        ),
        (
            Method::PUT,
            "/v1/queues/new",
            br#"{"lease_ms":0}"#.to_vec(),
            None,
            400,
            "lease_ms: expected",
        ),
        (
            Method::PUT,
            "/v1/queues/new",
            br#"{"fsync":"sometimes"}"#.to_vec(),
            None,
            400,
            "fsync",
        ),
        // An existing queue's settings are not changed by a PUT, nor silently kept.
        (
            Method::PUT,
            "/v1/queues/jobs",
            br#"{"lease_ms":1000,"max_deliveries":5}"#.to_vec(),
            None,
            409,
            "queue \"jobs\" exists with other settings: lease_ms is 30000, not 1000; a queue's settings are fixed",
        ),
        (
            Method::POST,
            "/v1/reply",
            br#"{"reply_to":"inbox:gone","body":"x"}"#.to_vec(),
            None,
            404,
            "no publisher waits",
        ),
    ];
    for (method, path, body, content_type, status, says) in cases {
        let mut req = request(method.clone(), api, path, body);
        if let Some(ct) = content_type {
            req.headers_mut()
                .insert(http::header::CONTENT_TYPE, ct.parse().unwrap());
        }
        let reply = send(api, req).await.expect("an answer");
        assert_eq!(reply.status, status, "{method} {path}: {}", reply.text());
        let body = reply.json();
        let error = body["error"].as_str().unwrap_or_default().to_string();
        assert!(error.contains(says), "{method} {path}: {error:?} should say {says:?}");
        // Every error body has the same shape, with a machine-readable code.
        assert_eq!(body["status"], status, "{method} {path}: {body}");
        assert!(
            body["code"].as_str().is_some_and(|c| !c.is_empty()),
            "{method} {path}: {body}"
        );
    }
    // The same settings again, or none: 200, the queue as it is.
    for body in [&br#"{"lease_ms":30000}"#[..], b""] {
        let reply = send(api, request(Method::PUT, api, "/v1/queues/jobs", body.to_vec()))
            .await
            .expect("an answer");
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    // Only the one good message was stored.
    let fetched = post(api, "/v1/queues/jobs/groups/g/fetch?max=all", "").await.json();
    let messages = fetched["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{fetched}");
    assert_eq!(messages[0]["body"], "kept");
    stop(node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producers_batches_in_flight_are_stored_in_the_order_it_sent_them() {
    let app = App::new();
    let manifest = strata_manifest::parse(
        r#"{"strata": 1, "app": "test", "queues": {"jobs": {}},
            "services": {"web": {"run": ["true"], "instances": {"min": 0, "max": 1}}}}"#,
    )
    .unwrap();
    let node = app.start(app.config(manifest)).await;
    let api = node.api_addr;

    // Batch 1 arrives before batch 0: it waits for it, then is stored after it.
    let second = tokio::spawn(async move {
        post(
            api,
            "/v1/queues/jobs/messages?producer=p1&sequence=1",
            r#"{"body": "second"}"#,
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!second.is_finished(), "batch 1 was answered before batch 0 came");
    let first = post(
        api,
        "/v1/queues/jobs/messages?producer=p1&sequence=0",
        r#"{"body": "first"}"#,
    )
    .await;
    assert_eq!(first.status, 201, "{}", first.text());
    let second = second.await.unwrap();
    assert_eq!(second.status, 201, "{}", second.text());
    assert!(first.json()["offset"].as_u64() < second.json()["offset"].as_u64());

    // The client's Producer with four batches on the wire at once: every receipt's
    // offset follows the one sent before it.
    let client = strata_client::Client::with_token(&format!("http://{api}"), Some(node.control_token())).unwrap();
    let config = strata_client::ProducerConfig {
        max_unacked: 400,
        max_in_flight: 4,
        max_batch_messages: 25,
        ..strata_client::ProducerConfig::default()
    };
    let producer = client.producer("jobs", config).unwrap();
    let mut receipts = Vec::new();
    for i in 0..4000 {
        receipts.push(producer.send(format!("m{i}")).await.unwrap());
    }
    let mut last = 0;
    for (i, r) in receipts.into_iter().enumerate() {
        let offset = r.await.unwrap();
        assert!(
            offset > last,
            "message {i} stored at {offset}, before the one sent ahead of it ({last})"
        );
        last = offset;
    }
    producer.close().await;
    stop(node).await;
}

/// One kept-alive HTTP/1.1 connection for a publisher.
struct Conn(hyper::client::conn::http1::SendRequest<Full<Bytes>>);

impl Conn {
    async fn open(addr: SocketAddr) -> Option<Conn> {
        let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.ok()?;
        tokio::spawn(conn);
        Some(Conn(send))
    }

    /// The offset of an acknowledged publish; None if the node did not acknowledge it.
    async fn publish(&mut self, addr: SocketAddr, body: String) -> Option<u64> {
        let req = request(Method::POST, addr, "/v1/queues/crash/messages", body);
        let res = self.0.send_request(req).await.ok()?;
        if res.status() != 201 {
            return None;
        }
        let body = res.into_body().collect().await.ok()?.to_bytes();
        serde_json::from_slice::<Value>(&body).ok()?["offset"].as_u64()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_concurrent_publishes_loses_no_acknowledged_message() {
    const PUBLISHERS: usize = 32;
    const PER_ROUND: usize = 10_000;
    const ROUNDS: usize = 3;
    let app = App::new();
    let manifest = json!({
        "strata": 1, "app": "crash",
        "queues": { "crash": { "segment_bytes": 262144, "max_message_bytes": 4096 } },
        "services": { "idle": { "run": ["python3", "-m", "http.server", "${PORT}", "--bind", "127.0.0.1"] } }
    });
    std::fs::write(app.path().join("strata.json"), manifest.to_string()).unwrap();
    // (round, publisher, seq) -> offset of every acknowledged publish.
    type Acked = HashMap<(usize, usize, usize), u64>;
    let acked: Arc<Mutex<Acked>> = Arc::default();
    let mut up = Up::spawn(app.path(), &[]);
    for round in 0..ROUNDS {
        let api = addr_of(up.node_file().await["api"].as_str().unwrap());
        let count = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for p in 0..PUBLISHERS {
            let (acked, count, stop) = (acked.clone(), count.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let Some(mut conn) = Conn::open(api).await else { return };
                for seq in 0..PER_ROUND / PUBLISHERS {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let body = json!({ "body": format!("r{round}-p{p}-s{seq}") }).to_string();
                    match conn.publish(api, body).await {
                        Some(offset) => {
                            acked.lock().unwrap().insert((round, p, seq), offset);
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                        None => return,
                    }
                }
            }));
        }
        // Kill at a different point each round, mid-stream.
        let kill_at = PER_ROUND / 4 + round * PER_ROUND / 5;
        wait_until("publishes under way", Duration::from_secs(60), || {
            count.load(Ordering::Relaxed) >= kill_at
        })
        .await;
        signal(up.pid, libc::SIGKILL);
        up.wait_exit(Duration::from_secs(10)).await;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            let _ = t.await;
        }
        let got = count.load(Ordering::Relaxed);
        assert!(got < PER_ROUND, "the kill came mid-stream ({got} acknowledged)");
        // Restart on the same files and read everything back.
        let _ = std::fs::remove_file(app.path().join(".strata").join("node.json"));
        up = Up::spawn(app.path(), &[]);
        let api = addr_of(up.node_file().await["api"].as_str().unwrap());
        let group = format!("check{round}");
        let fetched = post(
            api,
            &format!("/v1/queues/crash/groups/{group}/fetch?max=all&max_bytes=67108864"),
            "",
        )
        .await;
        assert_eq!(fetched.status, 200, "{}", fetched.text());
        let stored: HashMap<u64, String> = fetched.json()["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["offset"].as_u64().unwrap(), m["body"].as_str().unwrap().to_string()))
            .collect();
        let acked = acked.lock().unwrap().clone();
        let missing: Vec<_> = acked
            .iter()
            .filter(|((r, p, s), offset)| stored.get(offset) != Some(&format!("r{r}-p{p}-s{s}")))
            .collect();
        assert!(
            missing.is_empty(),
            "round {round}: {} of {} acknowledged messages missing or changed, e.g. {:?}",
            missing.len(),
            acked.len(),
            &missing[..missing.len().min(5)]
        );
        // Each publisher's messages are stored in the order it published them.
        for p in 0..PUBLISHERS {
            let offsets: Vec<u64> = (0..PER_ROUND / PUBLISHERS)
                .filter_map(|s| acked.get(&(round, p, s)).copied())
                .collect();
            assert!(offsets.windows(2).all(|w| w[0] < w[1]), "publisher {p} order kept");
        }
        let stats = get(api, "/v1/queues/crash").await.json();
        assert_eq!(stats["corrupt"], 0, "{stats}");
        eprintln!(
            "round {round}: killed after {got} acknowledged publishes; {} stored in all, 0 acknowledged missing",
            stored.len()
        );
    }
    signal(up.pid, libc::SIGTERM);
    up.wait_exit(Duration::from_secs(20)).await;
}
