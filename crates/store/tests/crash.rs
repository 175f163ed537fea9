//! kill -9 during writes loses nothing acknowledged.
//!
//! The test re-runs its own binary as the writer (`STORE_CHILD_DIR` set, only this test
//! selected): concurrent value puts, compare-and-set increments of one counter and blob
//! uploads, each printed to stdout once acknowledged. The parent SIGKILLs it mid-stream,
//! reopens the store and checks that every acknowledged write is there. Three rounds on
//! the same directory, so recovery also runs over a store that already recovered.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use strata_store::{Cond, Recovery, Store, StoreError};
use tokio::io::AsyncReadExt;

const TEST_NAME: &str = "kill_9_loses_nothing_acknowledged";

/// The value written under `key`: derived from the key, of varying size (about 512 KiB
/// under `big/`, so that the write-ahead log moves between its files during the rounds).
fn value_of(key: &str) -> Bytes {
    let n = key.bytes().map(usize::from).sum::<usize>() % 40 + 1;
    let n = if key.starts_with("big/") { 20_000 } else { n };
    Bytes::from(format!("{key};").repeat(n))
}

/// The body of blob `name`: derived from the name, 10 to 700 KB.
fn body_of(name: &str) -> Vec<u8> {
    let seed = Sha256::digest(name.as_bytes());
    let len = 10_000 + (u32::from_le_bytes(seed[..4].try_into().unwrap()) % 690_000) as usize;
    seed.iter()
        .cycle()
        .take(len)
        .enumerate()
        .map(|(i, b)| b ^ (i as u8))
        .collect()
}

fn ack(line: String) {
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes()).unwrap();
    out.write_all(b"\n").unwrap();
    out.flush().unwrap();
}

/// The child: writes until killed (or 60 s pass).
fn run_writer(dir: &Path, round: u32) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // The test harness has printed `test NAME ... ` without a newline: end that line, or
    // the first acknowledgement would be glued to it and go unchecked.
    std::io::stdout().write_all(b"\n").unwrap();
    rt.block_on(async {
        let store = Arc::new(Store::open(dir).unwrap());
        let mut tasks = Vec::new();
        for t in 0..16 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0.. {
                    let key = format!("r{round}/t{t:02}/{i:06}");
                    let cond = if i % 2 == 0 { Cond::Absent } else { Cond::Any };
                    store.put("app", &key, value_of(&key), cond).await.unwrap();
                    ack(format!("ack kv {key}"));
                }
            }));
        }
        for t in 0..2 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0.. {
                    let key = format!("big/r{round}/t{t}/{i:06}");
                    store.put("app", &key, value_of(&key), Cond::Any).await.unwrap();
                    ack(format!("ack kv {key}"));
                }
            }));
        }
        for t in 0..4 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let current = store.get("app", "counter").await.unwrap();
                    let (n, cond) = match &current {
                        Some(e) => (
                            std::str::from_utf8(&e.value).unwrap().parse::<u64>().unwrap(),
                            Cond::Version(e.version),
                        ),
                        None => (0, Cond::Absent),
                    };
                    match store
                        .put("app", "counter", Bytes::from((n + 1).to_string()), cond)
                        .await
                    {
                        Ok(_) => ack(format!("ack counter {} {t}", n + 1)),
                        Err(StoreError::Conflict { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            }));
        }
        for t in 0..2 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0.. {
                    // Half new names, half replacing the same few names.
                    let name = if i % 2 == 0 {
                        format!("r{round}/b{t}/{i:05}")
                    } else {
                        format!("shared/{}", i % 5)
                    };
                    let body = body_of(&format!("{name}@{round}/{t}/{i}"));
                    let meta = store
                        .put_blob("app", &name, "application/x-test", &body[..], Cond::Any)
                        .await
                        .unwrap();
                    ack(format!("ack blob {name} {} {}", meta.version, meta.etag));
                }
            }));
        }
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
    });
}

#[test]
fn kill_9_loses_nothing_acknowledged() {
    if let Ok(dir) = std::env::var("STORE_CHILD_DIR") {
        let round = std::env::var("STORE_CHILD_ROUND").unwrap().parse().unwrap();
        run_writer(Path::new(&dir), round);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut replayed = 0;
    for round in 0..3u32 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads", "1"])
            .env("STORE_CHILD_DIR", dir.path())
            .env("STORE_CHILD_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut acked = Vec::new();
        let mut blobs_acked = 0;
        // Kill at a different point each round, once blobs went through too.
        let kill_after = 400 + 700 * round as usize;
        while acked.len() < kill_after || blobs_acked < 3 {
            let line = lines.next().expect("the writer ended early").unwrap();
            if line.starts_with("ack blob") {
                blobs_acked += 1;
            }
            if line.starts_with("ack ") {
                acked.push(line);
            }
        }
        child.kill().unwrap(); // SIGKILL
                               // Lines written before the kill are acknowledged writes too.
        for line in lines {
            let line = line.unwrap();
            if line.starts_with("ack ") {
                acked.push(line);
            }
        }
        let status = child.wait().unwrap();
        assert!(!status.success(), "the writer was killed, not finished");
        let recovery = check(dir.path(), &acked);
        replayed += recovery.replayed_batches;
        eprintln!(
            "round {round}: {} acknowledged writes all found after kill -9 ({} logged batches re-applied, {} blob files removed)",
            acked.len(),
            recovery.replayed_batches,
            recovery.removed_files
        );
    }
    assert!(replayed > 0, "some rounds must have re-applied the log");
    let logs: Vec<u64> = (0..2)
        .map(|i| std::fs::metadata(dir.path().join(format!("wal/{i}.log"))).map_or(0, |m| m.len()))
        .collect();
    eprintln!("write-ahead log files: {logs:?} bytes");
}

/// Reopens the store and finds every acknowledged write.
fn check(dir: &Path, acked: &[String]) -> Recovery {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Store::open(dir).unwrap();
        let recovery = store.recovery();
        let mut counter_acked = 0;
        let mut blobs = std::collections::HashMap::new();
        for line in acked {
            let parts: Vec<&str> = line.split(' ').collect();
            match parts[1] {
                "kv" => {
                    let e = store.get("app", parts[2]).await.unwrap();
                    let e = e.unwrap_or_else(|| panic!("acknowledged {} is missing", parts[2]));
                    assert_eq!(e.value, value_of(parts[2]));
                }
                "counter" => counter_acked = counter_acked.max(parts[2].parse::<u64>().unwrap()),
                "blob" => {
                    let version: u64 = parts[3].parse().unwrap();
                    // Keep the latest acknowledged version of each name.
                    let e = blobs
                        .entry(parts[2].to_string())
                        .or_insert((version, parts[4].to_string()));
                    if version > e.0 {
                        *e = (version, parts[4].to_string());
                    }
                }
                other => panic!("unknown line {other}"),
            }
        }
        let counter = store.get("app", "counter").await.unwrap().expect("the counter");
        let n: u64 = std::str::from_utf8(&counter.value).unwrap().parse().unwrap();
        assert!(n >= counter_acked, "counter {n} is behind acknowledged {counter_acked}");
        for (name, (version, etag)) in blobs {
            let (meta, mut file) = store
                .get_blob("app", &name)
                .await
                .unwrap()
                .expect("an acknowledged blob");
            // A later unacknowledged replacement may have committed.
            assert!(
                meta.version >= version,
                "{name}: version {} < acknowledged {version}",
                meta.version
            );
            let mut body = Vec::new();
            file.read_to_end(&mut body).await.unwrap();
            let hex: String = Sha256::digest(&body).iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(hex, meta.etag, "{name}: body and etag disagree");
            assert_eq!(body.len() as u64, meta.size);
            if meta.version == version {
                assert_eq!(meta.etag, etag);
            }
        }
        // No temporary or orphaned body file survived the reopen.
        let mut referenced = 0;
        let mut after: Option<String> = None;
        loop {
            let page = store.list_blobs("app", "", after.as_deref(), 1000).await.unwrap();
            referenced += page.items.len();
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        let files = std::fs::read_dir(dir.join("blobs")).unwrap().count();
        assert_eq!(files, referenced, "one body file per blob, nothing else");
        recovery
    })
}
