//! A segment roll that fails for a cause that goes away — out of file descriptors
//! (`EMFILE`), no space (`ENOSPC`), a preparation that could not be synced — on the
//! fault-injecting disk: the batch that needed the roll is refused with a 503-class
//! error saying so, nothing of it is stored or ever served, none of its offsets or
//! dedupe ids is taken, and the queue takes publishes again once the cause is gone
//! (it once refused every write until restarted). What was acknowledged before and after
//! survives a power cut.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use strata_manifest::QueueSpec;
use strata_os::disk::FaultDisk;
use strata_queue::{FetchOptions, NewMessage, QueueError, Queues, QueuesConfig};

/// 64 KiB segments; a 4000-byte message with its dedupe id takes about 4030 bytes: 16
/// per segment.
const SEGMENT: u64 = 64 << 10;
const PER_SEGMENT: u64 = 16;
const PREPARED: &str = "next-segment.tmp";

fn spec() -> QueueSpec {
    QueueSpec {
        segment_bytes: SEGMENT,
        max_message_bytes: 8 << 10,
        dedupe_window_ms: 60_000,
        ..QueueSpec::default()
    }
}

fn declared() -> BTreeMap<String, QueueSpec> {
    BTreeMap::from([("q".to_string(), spec())])
}

fn message(i: u64) -> NewMessage {
    let mut body = format!("{i:08}").into_bytes();
    body.resize(4000, b'.');
    NewMessage {
        payload: Bytes::from(body),
        dedupe_id: Some(format!("id-{i}")),
        ..NewMessage::default()
    }
}

fn id_of(payload: &[u8]) -> u64 {
    std::str::from_utf8(&payload[..8]).unwrap().parse().unwrap()
}

fn all() -> FetchOptions {
    FetchOptions {
        max: usize::MAX,
        max_bytes: usize::MAX,
        ..FetchOptions::default()
    }
}

fn open(dir: &Path, disk: &FaultDisk) -> Queues<FaultDisk> {
    Queues::open_with(dir, &declared(), QueuesConfig::on(disk.clone())).expect("open")
}

/// Publishes messages `ids` one publish each, all acknowledged; their offsets.
async fn publish_ok(queues: &Queues<FaultDisk>, ids: std::ops::Range<u64>) -> Vec<u64> {
    let q = queues.get("q").unwrap();
    let mut offsets = Vec::new();
    for i in ids {
        let p = q
            .publish(vec![message(i)])
            .await
            .unwrap_or_else(|e| panic!("publish {i}: {e}"));
        assert!(!p[0].duplicate);
        offsets.push(p[0].offset);
    }
    offsets
}

/// Waits until the segment prepared in the background is whole (so that an armed fault
/// lands on the roll, not on the background thread).
fn wait_prepared(disk: &FaultDisk, dir: &Path) {
    let path = dir.join("q").join(PREPARED);
    for _ in 0..2000 {
        if disk.files().iter().any(|(p, size)| *p == path && *size == SEGMENT) {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("no segment was prepared ahead");
}

fn segments(disk: &FaultDisk, dir: &Path) -> Vec<PathBuf> {
    let q = dir.join("q");
    disk.files()
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| p.parent() == Some(&q) && p.extension().is_some_and(|e| e == "log") && !p.ends_with("groups.log"))
        .collect()
}

/// The payload ids group `group` is served, in offset order, with their offsets.
async fn served(queues: &Queues<FaultDisk>, group: &str) -> Vec<(u64, u64)> {
    let q = queues.get("q").unwrap();
    let got = q.fetch(group, all()).await.unwrap();
    got.iter().map(|m| (m.offset, id_of(&m.payload))).collect()
}

fn assert_refused_for_the_roll(e: &QueueError, cause: &str) {
    let QueueError::Unavailable(text) = e else {
        panic!("want Unavailable (503), got {e:?}");
    };
    assert!(text.starts_with("could not roll to a new segment: "), "{text}");
    assert!(text.contains(cause), "{text} lacks {cause}");
    assert!(text.contains("nothing of this publish was stored"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_roll_out_of_file_descriptors_refuses_its_batch_and_the_queue_stays_in_service() {
    let root = PathBuf::from("/roll-emfile");
    let dir = root.join("queues");
    let disk = FaultDisk::new(&root, 3);
    let queues = open(&dir, &disk);
    let q = queues.get("q").unwrap();
    // The first segment full: the next message needs a segment prepared now, and
    // opening its file fails as a process out of descriptors does.
    let before = publish_ok(&queues, 0..PER_SEGMENT).await;
    disk.fail_opens(2, PREPARED, libc::EMFILE);
    for _ in 0..2 {
        let e = q.publish(vec![message(100), message(101)]).await.unwrap_err();
        assert_refused_for_the_roll(&e, "Too many open files");
    }
    // Nothing of the refused batch is visible, no offset of it was taken, and its
    // dedupe ids were not remembered.
    assert_eq!(q.stats().next_offset, PER_SEGMENT);
    assert_eq!(segments(&disk, &dir).len(), 1);
    // The cause is gone: the same batch goes through, at the next offsets.
    let again = q.publish(vec![message(100), message(101)]).await.unwrap();
    assert_eq!(
        again.iter().map(|p| (p.offset, p.duplicate)).collect::<Vec<_>>(),
        [(16, false), (17, false)]
    );
    let after = publish_ok(&queues, 102..110).await;
    assert_eq!(after, (18..26).collect::<Vec<_>>());
    let ids: Vec<u64> = served(&queues, "g").await.iter().map(|(_, id)| *id).collect();
    let want: Vec<u64> = (0..PER_SEGMENT).chain(100..110).collect();
    assert_eq!(ids, want);
    assert_eq!(before, (0..PER_SEGMENT).collect::<Vec<_>>());

    // Every acknowledged message survives a power cut; nothing refused appears.
    queues.close();
    drop((q, queues));
    disk.power_cut();
    let disk = disk.restart();
    let queues = open(&dir, &disk);
    let got = served(&queues, "h").await;
    assert_eq!(got.iter().map(|(_, id)| *id).collect::<Vec<_>>(), want);
    assert_eq!(
        got.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
        (0..26).collect::<Vec<_>>()
    );
    assert!(queues.get("q").unwrap().stats().repairs.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_second_roll_fails_takes_back_the_first_and_leaves_no_segment() {
    let root = PathBuf::from("/roll-twice");
    let dir = root.join("queues");
    let disk = FaultDisk::new(&root, 4);
    let queues = open(&dir, &disk);
    let q = queues.get("q").unwrap();
    // One roll done: the segment after it is prepared in the background.
    publish_ok(&queues, 0..PER_SEGMENT + 4).await;
    wait_prepared(&disk, &dir);
    assert_eq!(segments(&disk, &dir).len(), 2);
    // One publish spanning three segments: the first new one is the prepared file, the
    // second must be made now, and the disk is full.
    disk.fail_opens(1, PREPARED, libc::ENOSPC);
    let big: Vec<NewMessage> = (200..200 + 2 * PER_SEGMENT).map(message).collect();
    let e = q.publish(big.clone()).await.unwrap_err();
    assert_refused_for_the_roll(&e, "No space left on device");
    assert_eq!(
        segments(&disk, &dir).len(),
        2,
        "the segment installed for the batch is taken back"
    );
    assert_eq!(q.stats().next_offset, PER_SEGMENT + 4);
    assert_eq!(q.stats().segments, 2);
    // Space again: the whole batch goes in, at the offsets it would have had.
    let p = q.publish(big).await.unwrap();
    assert_eq!(p.first().unwrap().offset, PER_SEGMENT + 4);
    assert_eq!(p.last().unwrap().offset, 3 * PER_SEGMENT + 3);
    assert!(p.iter().all(|p| !p.duplicate));
    assert_eq!(segments(&disk, &dir).len(), 4);

    queues.close();
    drop((q, queues));
    disk.power_cut();
    let disk = disk.restart();
    let queues = open(&dir, &disk);
    let got = served(&queues, "g").await;
    let want: Vec<u64> = (0..PER_SEGMENT + 4).chain(200..200 + 2 * PER_SEGMENT).collect();
    assert_eq!(got.iter().map(|(_, id)| *id).collect::<Vec<_>>(), want);
    assert_eq!(
        got.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
        (0..want.len() as u64).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_prepared_ahead_that_failed_is_made_again_at_the_roll() {
    let root = PathBuf::from("/roll-prepared");
    let dir = root.join("queues");
    let disk = FaultDisk::new(&root, 5);
    let queues = open(&dir, &disk);
    let q = queues.get("q").unwrap();
    publish_ok(&queues, 0..PER_SEGMENT).await;
    // The roll's own preparation fails to sync: refused; the next roll makes the file
    // anew (the failed one is never used: a failed sync says nothing of its zeros).
    disk.fail_sync(0, PREPARED);
    let e = q.publish(vec![message(50)]).await.unwrap_err();
    assert_refused_for_the_roll(&e, "Input/output error");
    publish_ok(&queues, 50..51 + PER_SEGMENT).await;
    wait_prepared(&disk, &dir);
    let ids: Vec<u64> = served(&queues, "g").await.iter().map(|(_, id)| *id).collect();
    assert_eq!(ids, (0..PER_SEGMENT).chain(50..51 + PER_SEGMENT).collect::<Vec<_>>());
}
