//! `strata repair` with the real binary on a real app's state: damage made by hand to a
//! stopped node's files (a garbage queue.json, a zeroed stretch mid-segment, a torn
//! groups.log, a truncated store.redb), a dry run that changes no byte, the repair, then
//! `strata up` again serving every intact record at its offset and every key, with
//! `strata queues` showing each queue in service. And no repair while a node runs.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use http::Method;
use serde_json::{json, Value};

fn write_manifest(dir: &Path) {
    let m = json!({
        "strata": 1, "app": "repaired",
        "queues": { "jobs": { "segment_bytes": 65536, "max_message_bytes": 4096 } },
        "services": { "idle": { "run": ["sleep", "100000"], "instances": { "min": 0, "max": 1 } } }
    });
    std::fs::write(dir.join("strata.json"), m.to_string()).unwrap();
}

async fn up(dir: &Path) -> (Up, std::net::SocketAddr) {
    let mut up = Up::spawn(dir, &[]);
    let api = addr_of(up.node_file().await["api"].as_str().unwrap());
    (up, api)
}

async fn down(dir: &Path, mut up: Up) {
    let out = strata(dir, &["down"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(up.wait_exit(Duration::from_secs(30)).await.success());
}

async fn publish(api: std::net::SocketAddr, queue: &str, n: usize) {
    let messages: Vec<Value> = (0..n).map(|i| json!({ "body": format!("{queue}-{i:04}") })).collect();
    let r = post(
        api,
        &format!("/v1/queues/{queue}/messages"),
        json!({ "messages": messages }).to_string(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
}

/// (offset, body) of everything group `group` is handed.
async fn fetch_all(api: std::net::SocketAddr, queue: &str, group: &str) -> Vec<(u64, String)> {
    let r = post(api, &format!("/v1/queues/{queue}/groups/{group}/fetch?max=all"), "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["offset"].as_u64().unwrap(), m["body"].as_str().unwrap().to_string()))
        .collect()
}

/// Where each record of a segment file starts (its header: length, CRC).
fn record_starts(segment: &Path) -> Vec<u64> {
    let data = std::fs::read(segment).unwrap();
    let mut starts = Vec::new();
    let mut at = 0usize;
    while at + 8 <= data.len() {
        let len = u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        starts.push(at as u64);
        at += 8 + len;
    }
    starts
}

/// Every file under `dir` and its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.insert(path.clone(), std::fs::read(&path).unwrap());
        }
    }
    out
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_brings_damaged_queues_and_store_back_into_service() {
    let app = tempfile::tempdir().unwrap();
    let dir = app.path();
    write_manifest(dir);
    let (node, api) = up(dir).await;
    publish(api, "jobs", 100).await;
    for q in ["other", "third"] {
        let r = send(api, request(Method::PUT, api, &format!("/v1/queues/{q}"), ""))
            .await
            .unwrap();
        assert_eq!(r.status, 201, "{}", r.text());
        publish(api, q, 50).await;
    }
    // Group g of `third` deletes its first 30 messages, ten at a time (a groups.log of
    // several records).
    for round in 0..3 {
        let r = post(api, "/v1/queues/third/groups/g/fetch?max=10", "").await;
        let offsets: Vec<u64> = r.json()["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["offset"].as_u64().unwrap())
            .collect();
        assert_eq!(offsets[0], round * 10);
        let r = post(
            api,
            "/v1/queues/third/groups/g/ack",
            json!({ "offsets": offsets }).to_string(),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    for i in 0..100 {
        let r = send(
            api,
            request(Method::PUT, api, &format!("/v1/kv/ns/k{i}"), format!("v{i}")),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 201, "{}", r.text());
    }

    // Not while the node runs.
    let refused = strata(dir, &["repair"]).await;
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("runs on") && text(&refused).contains("strata down"),
        "{}",
        text(&refused)
    );
    down(dir, node).await;

    let state = dir.join(".strata");
    std::fs::write(state.join("queues/other/queue.json"), b"{ not json").unwrap();
    let segment = state.join("queues/jobs/00000000000000000000.log");
    let starts = record_starts(&segment);
    let f = std::fs::OpenOptions::new().write(true).open(&segment).unwrap();
    f.write_all_at(&vec![0; (starts[23] - starts[20]) as usize], starts[20])
        .unwrap();
    let log = state.join("queues/third/groups.log");
    let f = std::fs::OpenOptions::new().read(true).write(true).open(&log).unwrap();
    let len = f.metadata().unwrap().len();
    let mut byte = [0u8];
    f.read_exact_at(&mut byte, 20).unwrap();
    f.write_all_at(&[byte[0] ^ 0x01], 20).unwrap();
    f.write_all_at(&[0x42; 9], len).unwrap();
    let db = state.join("store/store.redb");
    let f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
    f.set_len(f.metadata().unwrap().len() / 3).unwrap();

    // A dry run says what it would do and changes no byte.
    let before = files(&state);
    let dry = strata(dir, &["repair", "--dry-run"]).await;
    assert_eq!(files(&state), before, "a dry run changes no byte");
    assert_eq!(dry.status.code(), Some(1), "records would be lost: {}", text(&dry));
    let said = text(&dry);
    for what in [
        "queue jobs: damaged",
        "LOST offsets 20..23",
        "queue other: damaged",
        "queue.json: not valid settings",
        "queue third: damaged",
        "groups.log: 1 damaged record skipped",
        "store: damaged",
        "unreadable",
        "would lose",
    ] {
        assert!(said.contains(what), "no {what:?} in:\n{said}");
    }

    let done = strata(dir, &["repair"]).await;
    assert_eq!(done.status.code(), Some(1), "{}", text(&done));
    assert!(text(&done).contains("lost acknowledged data"), "{}", text(&done));
    let damaged: Vec<PathBuf> = std::fs::read_dir(state.join("damaged"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(damaged.len(), 1);
    for moved in [
        "queues/jobs/00000000000000000000.log",
        "queues/other/queue.json",
        "queues/third/groups.log",
        "store/store.redb",
    ] {
        assert!(damaged[0].join(moved).exists(), "{moved} is kept");
    }

    let (node, api) = up(dir).await;
    let listed = strata(dir, &["queues"]).await;
    assert!(listed.status.success(), "{}", text(&listed));
    let table = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(
        !table.contains("OUT OF SERVICE") && !table.contains("repaired at open"),
        "{table}"
    );
    for q in ["jobs", "other", "third"] {
        assert!(table.lines().any(|l| l.starts_with(q)), "{q} in service:\n{table}");
    }
    let jobs = fetch_all(api, "jobs", "g").await;
    let expected: Vec<(u64, String)> = (0..100u64)
        .filter(|o| !(20..23).contains(o))
        .map(|o| (o, format!("jobs-{o:04}")))
        .collect();
    assert_eq!(jobs, expected, "every intact record at its offset");
    let other = fetch_all(api, "other", "g").await;
    assert_eq!(other.len(), 50);
    let third = fetch_all(api, "third", "g").await;
    assert_eq!(third.first().map(|m| m.0), Some(30), "the group's deletes are kept");
    assert_eq!(third.len(), 20);
    for i in 0..100 {
        let r = get(api, &format!("/v1/kv/ns/k{i}")).await;
        assert_eq!((r.status.as_u16(), r.text()), (200, format!("v{i}")), "k{i}");
    }
    let r = post(api, "/v1/queues/jobs/messages", r#"{"body": "next"}"#).await;
    assert_eq!(r.json()["offset"], 100, "{}", r.text());
    down(dir, node).await;

    let again = strata(dir, &["repair"]).await;
    assert!(again.status.success(), "{}", text(&again));
    assert!(text(&again).contains("nothing damaged"), "{}", text(&again));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_names_what_it_cannot_find() {
    let app = tempfile::tempdir().unwrap();
    let out = strata(app.path(), &["repair"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("nothing to repair"), "{}", text(&out));
    std::fs::create_dir_all(app.path().join(".strata/queues/jobs")).unwrap();
    let out = strata(app.path(), &["repair", "--queue", "nope"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("no queue \"nope\"") && text(&out).contains("jobs"),
        "{}",
        text(&out)
    );
}
