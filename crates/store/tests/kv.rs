//! Values: compare-and-set, versions, listing pages, namespaces, group commit under
//! concurrency (and kill -9 in the middle of it), the change feed, and what survives a
//! reopen. Real files in a temp dir, and a real child process to kill.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use bytes::Bytes;
use strata_store::{Cond, Store, StoreConfig, StoreError};

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

#[tokio::test]
async fn a_failed_condition_does_not_fail_the_rest_of_its_batch() {
    let (_dir, store) = open();
    let store = Arc::new(store);
    store.put("app", "taken", b("x"), Cond::Any).await.unwrap();
    // Many writes at once land in few batches; only the conflicting ones fail.
    let mut tasks = Vec::new();
    for i in 0..200 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let key = if i % 4 == 0 {
                "taken".to_string()
            } else {
                format!("k{i}")
            };
            (i, store.put("app", &key, b("v"), Cond::Absent).await)
        }));
    }
    for t in tasks {
        let (i, r) = t.await.unwrap();
        if i % 4 == 0 {
            assert!(
                matches!(r, Err(StoreError::Conflict { current: Some(_) })),
                "{i}: {r:?}"
            );
        } else {
            assert!(r.is_ok(), "{i}: {r:?}");
        }
    }
}

#[tokio::test]
async fn bad_names_and_large_values_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(
        dir.path(),
        StoreConfig {
            max_value_bytes: 1000,
            ..StoreConfig::default()
        },
    )
    .unwrap();
    for ns in ["", "a\0b", &"n".repeat(129)] {
        assert!(matches!(
            store.put(ns, "k", b("v"), Cond::Any).await,
            Err(StoreError::BadInput(_))
        ));
    }
    for key in ["", &"k".repeat(1025)] {
        assert!(matches!(store.get("ns", key).await, Err(StoreError::BadInput(_))));
    }
    store
        .put("n".repeat(128).as_str(), &"k".repeat(1024), b("v"), Cond::Any)
        .await
        .unwrap();
    store.put("ns", "k\0with nul", b("v"), Cond::Any).await.unwrap();
    assert_eq!(
        store
            .put("ns", "k", Bytes::from(vec![0; 1001]), Cond::Any)
            .await
            .unwrap_err(),
        StoreError::TooLarge {
            size: 1001,
            limit: 1000
        }
    );
    store
        .put("ns", "k", Bytes::from(vec![7; 1000]), Cond::Any)
        .await
        .unwrap();
    assert_eq!(store.get("ns", "k").await.unwrap().unwrap().value.len(), 1000);
}

#[tokio::test]
async fn large_values_round_trip() {
    let (_dir, store) = open();
    let big: Vec<u8> = (0..16 << 20)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let big = Bytes::from(big);
    store.put("app", "big", big.clone(), Cond::Any).await.unwrap();
    assert_eq!(store.get("app", "big").await.unwrap().unwrap().value, big);
    let list = store.list("app", "", None, 10).await.unwrap();
    assert_eq!(list.items[0].size, 16 << 20);
}

/// The crash test below re-runs this binary as its writer, with this set to the store's
/// directory and only that test selected.
const CRASH_CHILD_DIR: &str = "STORE_KV_CRASH_CHILD_DIR";
const CRASH_TEST: &str = "concurrent_puts_from_64_tasks_are_all_durable_and_correct";
const TASKS: u32 = 64;
const PUTS_PER_TASK: u32 = 40;

fn crash_key(t: u32, i: u32) -> String {
    format!("t{t:02}/k{i:02}")
}

fn crash_value(t: u32, i: u32) -> Bytes {
    b(&format!("{t}-{i}"))
}

/// 64 tasks put 40 new keys each, concurrently, in a child process that prints each put
/// once it is acknowledged. The child is killed with SIGKILL halfway (no close, no last
/// checkpoint); the store is reopened and what survived is counted: every acknowledged
/// put is there with its value and version, each task's keys are a prefix of what it
/// wrote (at most one past its acknowledged ones: the put in flight at the kill), and no
/// version was handed out twice, before or after the crash.
#[test]
fn concurrent_puts_from_64_tasks_are_all_durable_and_correct() {
    if let Ok(dir) = std::env::var(CRASH_CHILD_DIR) {
        return put_until_killed(Path::new(&dir));
    }
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", CRASH_TEST, "--nocapture", "--test-threads", "1"])
        .env(CRASH_CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    // (task, index) -> acknowledged version.
    let mut acked: HashMap<(u32, u32), u64> = HashMap::new();
    // Kill halfway, while the tasks are still writing.
    while acked.len() < (TASKS * PUTS_PER_TASK / 2) as usize {
        assert!(read_ack(&mut out, &mut acked), "the writer ended before it was killed");
    }
    child.0.kill().unwrap(); // SIGKILL
                             // What it printed before it died was acknowledged too.
    while read_ack(&mut out, &mut acked) {}
    let status = child.0.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(9),
        "the writer was killed, not finished: {status}"
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Store::open(dir.path()).unwrap();
        for (&(t, i), &version) in &acked {
            let e = store.get("app", &crash_key(t, i)).await.unwrap();
            let e = e.unwrap_or_else(|| panic!("acknowledged {} is missing after kill -9", crash_key(t, i)));
            assert_eq!(
                (e.value, e.version),
                (crash_value(t, i), version),
                "{}",
                crash_key(t, i)
            );
        }
        // Count what survived, per task.
        let mut survived: Vec<Vec<u64>> = vec![Vec::new(); TASKS as usize];
        let mut versions = HashSet::new();
        let mut after: Option<String> = None;
        loop {
            let page = store.list("app", "", after.as_deref(), 1000).await.unwrap();
            for item in &page.items {
                let (t, i) = item.key.split_once("/k").unwrap();
                let (t, i): (u32, u32) = (t[1..].parse().unwrap(), i.parse().unwrap());
                let e = store.get("app", &item.key).await.unwrap().unwrap();
                assert_eq!((e.value, e.version), (crash_value(t, i), item.version));
                assert!(versions.insert(e.version), "version {} handed out twice", e.version);
                // Listed in key order: a task's keys in the order it wrote them.
                assert_eq!(survived[t as usize].len(), i as usize, "{}: a gap before it", item.key);
                survived[t as usize].push(e.version);
            }
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        for (t, versions) in survived.iter().enumerate() {
            let acked = acked.keys().filter(|&&(at, _)| at == t as u32).count();
            assert!(
                versions.len() == acked || versions.len() == acked + 1,
                "task {t}: {} puts survived, {acked} were acknowledged",
                versions.len()
            );
            // Each task's own writes were applied in its order.
            assert!(versions.windows(2).all(|w| w[0] < w[1]), "task {t}: {versions:?}");
        }
        eprintln!(
            "{} puts acknowledged, {} survived kill -9 ({} logged batches re-applied)",
            acked.len(),
            versions.len(),
            store.recovery().replayed_batches
        );
        // The version counter went on where it stopped: none is handed out twice.
        let v = store.put("app", "after", b("x"), Cond::Any).await.unwrap();
        assert!(v > versions.iter().copied().max().unwrap_or(0));
    });
}

/// The crash test's child: the puts, each printed once acknowledged (`ack TASK INDEX
/// VERSION`), then a wait to be killed (at most 60 s).
fn put_until_killed(dir: &Path) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // The test harness has printed `test NAME ... ` without a newline: end that line, or
    // the first acknowledgement would be glued to it.
    std::io::stdout().write_all(b"\n").unwrap();
    rt.block_on(async {
        let store = Arc::new(Store::open(dir).unwrap());
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..PUTS_PER_TASK {
                    let v = store
                        .put("app", &crash_key(t, i), crash_value(t, i), Cond::Absent)
                        .await
                        .unwrap();
                    // One write of the whole line, so a kill cannot leave half of it.
                    let line = format!("ack {t} {i} {v}\n");
                    let mut stdout = std::io::stdout().lock();
                    stdout.write_all(line.as_bytes()).unwrap();
                    stdout.flush().unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
    });
}

/// Reads one line of the crash test's child into `acked`; false at the end of its output.
fn read_ack(out: &mut impl BufRead, acked: &mut HashMap<(u32, u32), u64>) -> bool {
    let mut line = String::new();
    if out.read_line(&mut line).unwrap() == 0 {
        return false;
    }
    // A line cut short by the kill acknowledges nothing.
    let fields: Vec<&str> = line.strip_suffix('\n').unwrap_or_default().split(' ').collect();
    if let ["ack", t, i, v] = fields[..] {
        acked.insert((t.parse().unwrap(), i.parse().unwrap()), v.parse().unwrap());
    }
    true
}

/// Kills the child process if the test fails before it did.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn writes_survive_reopen_and_close_refuses_calls() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let v = store.put("app", "k", b("kept"), Cond::Any).await.unwrap();
    // A second open of the same directory is refused while the first is open.
    assert!(matches!(Store::open(dir.path()), Err(StoreError::Io(_))));
    store.close();
    assert_eq!(
        store.put("app", "k", b("x"), Cond::Any).await.unwrap_err(),
        StoreError::Closed
    );
    assert_eq!(store.get("app", "k").await.unwrap_err(), StoreError::Closed);
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    let e = store.get("app", "k").await.unwrap().unwrap();
    assert_eq!((e.value, e.version), (b("kept"), v));
}

#[tokio::test]
async fn the_log_moves_between_its_files_and_everything_survives() {
    // Over 64 MiB of values: the write-ahead log fills a file and moves to the other one
    // (after a checkpoint) at least twice.
    let dir = tempfile::tempdir().unwrap();
    let value = |i: usize| Bytes::from(vec![(i % 251) as u8; 1_500_000]);
    let mut versions = Vec::new();
    {
        let store = Store::open(dir.path()).unwrap();
        for i in 0..100 {
            versions.push(
                store
                    .put("app", &format!("big{i:03}"), value(i), Cond::Any)
                    .await
                    .unwrap(),
            );
        }
        for i in (0..100).step_by(7) {
            assert_eq!(
                store.get("app", &format!("big{i:03}")).await.unwrap().unwrap().value,
                value(i)
            );
        }
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.recovery().replayed_batches,
        0,
        "a clean close leaves nothing to re-apply"
    );
    for (i, version) in versions.into_iter().enumerate() {
        let e = store.get("app", &format!("big{i:03}")).await.unwrap().unwrap();
        assert_eq!((e.version, e.value.len()), (version, 1_500_000));
        assert_eq!(e.value[0], (i % 251) as u8);
    }
    let logs: u64 = std::fs::read_dir(dir.path().join("wal"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(
        logs <= 2 * (68 << 20),
        "the log files are reused, not grown: {logs} bytes"
    );
}
