//! Deleting a queue (`Queues::delete`): its waiters end, its files and its dead-letter
//! queue's go, durably; a power cut at any point of a delete leaves the queue whole or
//! gone, never half; tombstones a crash left are cleared at open; declared queues and
//! dead-letter queues on their own are refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use strata_manifest::QueueSpec;
use strata_os::disk::{Disk, FaultDisk};
use strata_queue::{FetchOptions, NewMessage, QueueError, Queues, QueuesConfig};

fn spec() -> QueueSpec {
    QueueSpec {
        segment_bytes: 64 << 10,
        max_message_bytes: 8 << 10,
        ..QueueSpec::default()
    }
}

fn declared() -> BTreeMap<String, QueueSpec> {
    BTreeMap::from([("kept".to_string(), spec())])
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn all() -> FetchOptions {
    FetchOptions {
        max: usize::MAX,
        max_bytes: usize::MAX,
        ..FetchOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_queue_ends_its_waiters_and_leaves_no_file() {
    let tmp = tempfile::tempdir().unwrap();
    let queues = Arc::new(Queues::open(tmp.path(), &declared()).unwrap());
    let (q, created) = queues.create("temp", spec()).unwrap();
    assert!(created);
    q.publish(vec![NewMessage::new(Bytes::from_static(b"gone"))])
        .await
        .unwrap();
    q.fetch("g", all()).await.unwrap();
    // A long poll waiting on it.
    let waiter = {
        let q = q.clone();
        tokio::spawn(async move {
            q.fetch(
                "g",
                FetchOptions {
                    wait: Duration::from_secs(600),
                    ..FetchOptions::default()
                },
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished());
    queues.delete("temp").unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ended.unwrap_err(), QueueError::UnknownQueue("temp".into()));
    // Gone from the registry, the handle refuses, and no file is left.
    assert_eq!(queues.get("temp").err(), Some(QueueError::UnknownQueue("temp".into())));
    assert!(queues.get("temp.dlq").is_err());
    let e = q
        .publish(vec![NewMessage::new(Bytes::from_static(b"late"))])
        .await
        .unwrap_err();
    assert_eq!(e, QueueError::UnknownQueue("temp".into()));
    assert_eq!(names(tmp.path()), ["kept", "kept.dlq"]);
    assert_eq!(queues.delete("temp"), Err(QueueError::UnknownQueue("temp".into())));
    // The name is free: a queue made again under it starts empty.
    let (again, created) = queues.create("temp", spec()).unwrap();
    assert!(created);
    assert_eq!(again.stats().next_offset, 0);
    assert!(again.fetch("g", all()).await.unwrap().is_empty());
}

#[tokio::test]
async fn declared_queues_and_dead_letter_queues_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let queues = Queues::open(tmp.path(), &declared()).unwrap();
    let e = queues.delete("kept").unwrap_err();
    assert_eq!(e, QueueError::Declared("kept".into()));
    assert!(e.to_string().contains("declared in the manifest"), "{e}");
    queues.create("temp", spec()).unwrap();
    let e = queues.delete("temp.dlq").unwrap_err();
    let QueueError::BadInput(text) = &e else {
        panic!("{e:?}")
    };
    assert!(text.contains("dead-letter queue of \"temp\""), "{text}");
    assert!(queues.get("temp.dlq").is_ok());
    assert!(queues.get("kept").is_ok());
    assert_eq!(
        queues.delete("Bad/Name"),
        Err(QueueError::UnknownQueue("Bad/Name".into()))
    );
}

#[test]
fn a_queue_out_of_service_can_be_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let queues = Queues::open(tmp.path(), &BTreeMap::new()).unwrap();
        queues.create("broken", spec()).unwrap();
    }
    std::fs::write(tmp.path().join("broken/queue.json"), b"{ not json").unwrap();
    let queues = Queues::open(tmp.path(), &BTreeMap::new()).unwrap();
    assert_eq!(queues.failures().len(), 1);
    queues.delete("broken").unwrap();
    assert!(queues.failures().is_empty());
    assert!(names(tmp.path()).is_empty());
}

/// A tombstone is what a crash between the rename and the removal leaves.
#[test]
fn tombstones_a_crash_left_are_cleared_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let tomb = tmp.path().join(".deleted-old-1-0");
    std::fs::create_dir_all(tomb.join("sub")).unwrap();
    std::fs::write(tomb.join("00000000000000000000.log"), b"x").unwrap();
    std::fs::write(tomb.join("sub/f"), b"x").unwrap();
    let queues = Queues::open(tmp.path(), &declared()).unwrap();
    assert_eq!(names(tmp.path()), ["kept", "kept.dlq"]);
    assert!(queues.get("old").is_err());
}

/// A power cut after every number of disk changes a delete makes: after the restart the
/// queue is either whole (every message) or gone with its dead-letter queue, and no
/// tombstone is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_cut_during_a_delete_leaves_the_queue_whole_or_gone() {
    let mut outcomes = (0, 0);
    for cut_after in 0..40 {
        let root = PathBuf::from(format!("/delete-cut-{cut_after}"));
        let dir = root.join("queues");
        let disk = FaultDisk::new(&root, cut_after);
        let queues = Queues::open_with(&dir, &declared(), QueuesConfig::on(disk.clone())).unwrap();
        let (q, _) = queues.create("temp", spec()).unwrap();
        let bodies: Vec<NewMessage> = (0..40u32)
            .map(|i| NewMessage::new(Bytes::from(vec![i as u8; 4000])))
            .collect();
        q.publish(bodies).await.unwrap();
        drop(q);
        disk.power_cut_after(cut_after);
        let deleted = queues.delete("temp");
        let finished = !disk.is_cut();
        disk.power_cut();
        drop(queues);
        let disk = disk.restart();
        let queues = Queues::open_with(&dir, &declared(), QueuesConfig::on(disk.clone())).unwrap();
        let left: Vec<String> = disk
            .list(&dir)
            .unwrap()
            .into_iter()
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        assert!(
            !left.iter().any(|n| n.starts_with(".deleted")),
            "cut after {cut_after}: {left:?}"
        );
        match queues.get("temp") {
            Ok(q) => {
                assert!(
                    !finished || deleted.is_err(),
                    "cut after {cut_after}: a finished delete came back"
                );
                let got = q.fetch("g", all()).await.unwrap();
                assert_eq!(got.len(), 40, "cut after {cut_after}: the queue is whole");
                assert!(queues.get("temp.dlq").is_ok(), "cut after {cut_after}");
                outcomes.0 += 1;
            }
            Err(e) => {
                assert_eq!(e, QueueError::UnknownQueue("temp".into()), "cut after {cut_after}");
                assert!(queues.get("temp.dlq").is_err(), "cut after {cut_after}");
                outcomes.1 += 1;
            }
        }
    }
    assert!(outcomes.0 > 0 && outcomes.1 > 0, "both outcomes seen: {outcomes:?}");
}
