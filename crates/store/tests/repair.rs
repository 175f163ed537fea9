//! `strata_store::repair` on real store files in temp dirs: a truncated and a corrupt
//! `store.redb`, a log that has moved between its files (so some keys are only in the
//! database file), a damaged blob body, a dry run that changes no byte, and a store that
//! is open; then the repaired store opened by the engine.

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use strata_store::repair::{self, OldFile, Outcome, RepairOptions};
use strata_store::{Cond, Store, StoreConfig};

fn value(i: usize) -> Bytes {
    Bytes::from(format!("value {i} ").repeat(10))
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

fn options(damaged: &Path, dry_run: bool) -> RepairOptions {
    RepairOptions {
        dry_run,
        damaged_dir: damaged.to_path_buf(),
    }
}

/// Puts `n` keys one at a time (one log batch each: key `i` is batch `i + 1`) and a blob,
/// and closes the store. Returns each key's version.
async fn fill(dir: &Path, config: StoreConfig, n: usize) -> Vec<u64> {
    let store = Store::open_with(dir, config).unwrap();
    let mut versions = Vec::new();
    for i in 0..n {
        versions.push(
            store
                .put("app", &format!("k{i:05}"), value(i), Cond::Any)
                .await
                .unwrap(),
        );
    }
    store
        .put_blob("app", "pic", "image/png", &b"a body of bytes"[..], Cond::Any)
        .await
        .unwrap();
    store.close();
    versions
}

/// Whether the store in `dir` opens (an error or a panic inside redb are both "no").
fn opens(dir: &Path) -> bool {
    std::panic::catch_unwind(|| Store::open(dir).is_ok()).unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_database_is_rebuilt_from_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let versions = fill(&dir, StoreConfig::default(), 300).await;
    let db = dir.join("store.redb");
    let len = std::fs::metadata(&db).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&db)
        .unwrap()
        .set_len(len / 3)
        .unwrap();
    assert!(!opens(&dir), "the store does not open as it is");

    let damaged = tmp.path().join("damaged");
    let before = files(&dir);
    let dry = repair::repair(&dir, &options(&damaged, true)).unwrap();
    assert_eq!(files(&dir), before, "a dry run changes no byte");
    assert!(!damaged.exists());
    assert_eq!(dry.outcome, Outcome::WouldRepair);
    assert!(matches!(dry.file, OldFile::Unreadable(_)), "{dry}");
    assert_eq!(dry.values, 300);
    assert!(
        !dry.lost_something(),
        "the log holds every batch since the start: {dry}"
    );

    let done = repair::repair(&dir, &options(&damaged, false)).unwrap();
    assert_eq!(
        done.outcome,
        Outcome::Repaired {
            moved_to: damaged.join("store")
        }
    );
    assert_eq!(
        std::fs::read(damaged.join("store/store.redb")).unwrap(),
        before[&db],
        "the damaged file is kept"
    );
    assert!(damaged.join("store/wal/0.log").exists());
    let store = Store::open(&dir).unwrap();
    let r = store.recovery();
    assert!(
        r.lost_batches.is_empty() && !r.torn_tail && r.replayed_batches == 0,
        "{r:?}"
    );
    for (i, version) in versions.iter().enumerate() {
        let got = store.get("app", &format!("k{i:05}")).await.unwrap().expect("kept");
        assert_eq!((got.value, got.version), (value(i), *version));
    }
    let (meta, _) = store.get_blob("app", "pic").await.unwrap().expect("the blob is kept");
    assert_eq!(meta.size, 15);
    let next = store.put("app", "new", value(0), Cond::Any).await.unwrap();
    assert!(next > *versions.iter().max().unwrap(), "versions are never reused");
    drop(store);
    assert_eq!(
        repair::repair(&dir, &options(&damaged, false)).unwrap().outcome,
        Outcome::Intact
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_only_in_an_unreadable_database_are_reported_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    // Small log files: the log moves between them many times, so the oldest writes are
    // only in the database file.
    let config = StoreConfig {
        wal_file_bytes: 16 << 10,
        ..StoreConfig::default()
    };
    let n = 1000;
    let versions = fill(&dir, config, n).await;
    let db = dir.join("store.redb");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&db)
        .unwrap()
        .set_len(4096)
        .unwrap();

    let done = repair::repair(&dir, &options(&tmp.path().join("damaged"), false)).unwrap();
    assert!(done.lost_something(), "{done}");
    let (first, last) = done.log_ids.expect("batches in the log");
    assert!(first > 1 && last == n as u64 + 1, "{done}");
    assert!(done.to_string().contains(&format!("before batch {first}")), "{done}");
    let store = Store::open(&dir).unwrap();
    for (i, version) in versions.iter().enumerate() {
        let got = store.get("app", &format!("k{i:05}")).await.unwrap();
        // Key i was batch i + 1.
        if i as u64 + 1 >= first {
            let got = got.unwrap_or_else(|| panic!("k{i:05} is in the log and back"));
            assert_eq!((got.value, got.version), (value(i), *version));
        }
    }
    store.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_database_keeps_what_redb_and_the_log_can_read() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let versions = fill(&dir, StoreConfig::default(), 300).await;
    // Garbage over the middle of the file.
    let db = dir.join("store.redb");
    let len = std::fs::metadata(&db).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
    f.write_all_at(&vec![0xa5; (len / 4) as usize], len / 3).unwrap();
    drop(f);

    let done = repair::repair(&dir, &options(&tmp.path().join("damaged"), false)).unwrap();
    assert!(matches!(done.outcome, Outcome::Repaired { .. }), "{done}");
    let store = Store::open(&dir).unwrap();
    for (i, version) in versions.iter().enumerate() {
        let got = store.get("app", &format!("k{i:05}")).await.unwrap().expect("kept");
        assert_eq!((got.value, got.version), (value(i), *version));
    }
    store.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_whose_body_is_damaged_is_dropped_not_served() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    fill(&dir, StoreConfig::default(), 3).await;
    let body = std::fs::read_dir(dir.join("blobs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(&body, b"a body of bytez").unwrap();

    let damaged = tmp.path().join("damaged");
    let done = repair::repair(&dir, &options(&damaged, false)).unwrap();
    assert_eq!(done.blobs_lost.len(), 1, "{done}");
    assert_eq!(done.blobs_lost[0].blob, "app/pic");
    assert!(done.lost_something());
    assert!(damaged.join("store/blobs").join(body.file_name().unwrap()).exists());
    let store = Store::open(&dir).unwrap();
    assert!(store.head_blob("app", "pic").await.unwrap().is_none());
    assert_eq!(store.get("app", "k00002").await.unwrap().unwrap().value, value(2));
    store.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_in_use_is_not_repaired() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = Store::open(&dir).unwrap();
    let e = repair::repair(&dir, &options(&tmp.path().join("damaged"), false)).unwrap_err();
    assert!(e.to_string().contains("running strata node"), "{e}");
    store.close();
}

/// Copies the files of `from` to `to`, as they are.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_left_by_a_crash_is_not_damage() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = Store::open(&dir).unwrap();
    let mut versions = Vec::new();
    for i in 0..50 {
        versions.push(
            store
                .put("app", &format!("k{i:05}"), value(i), Cond::Any)
                .await
                .unwrap(),
        );
    }
    // The files as a kill -9 leaves them: written after the last checkpoint, the
    // database not closed.
    let crashed = tmp.path().join("crashed");
    copy_dir(&dir, &crashed);
    drop(store);

    let done = repair::repair(&crashed, &options(&tmp.path().join("damaged"), false)).unwrap();
    assert_eq!(done.outcome, Outcome::Intact, "{done}");
    assert!(!done.lost_something());
    assert_eq!(done.values, 50);
    let store = Store::open(&crashed).unwrap();
    for (i, version) in versions.iter().enumerate() {
        let got = store.get("app", &format!("k{i:05}")).await.unwrap().expect("kept");
        assert_eq!((got.value, got.version), (value(i), *version));
    }
    store.close();
}
