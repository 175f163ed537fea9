//! The queue engine on real files in temp dirs: semantics, restart, corruption.

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use strata_manifest::{FsyncPolicy, QueueSpec, RetentionSpec};
use strata_queue::{FetchOptions, NewMessage, QueueError, Queues};

fn spec() -> QueueSpec {
    QueueSpec {
        segment_bytes: 1 << 20,
        max_message_bytes: 64 << 10,
        ..QueueSpec::default()
    }
}

fn open(dir: &Path, spec: QueueSpec) -> Queues {
    Queues::open(dir, &BTreeMap::from([("q".to_string(), spec)])).expect("open")
}

fn payload(i: usize) -> Bytes {
    Bytes::from(format!("message-{i:06}"))
}

fn fetch_all() -> FetchOptions {
    FetchOptions {
        max: usize::MAX,
        max_bytes: usize::MAX,
        ..FetchOptions::default()
    }
}

async fn publish_n(queues: &Queues, n: usize) {
    let q = queues.get("q").unwrap();
    let msgs = (0..n).map(|i| NewMessage::new(payload(i))).collect();
    let published = q.publish(msgs).await.expect("publish");
    assert_eq!(published.len(), n);
}

/// Record `i` of a segment holding only `payload(i)` messages starts here.
fn position(i: usize) -> u64 {
    (i * (8 + 17 + payload(0).len())) as u64
}

/// On a multi-thread runtime publishers lead their own commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_deletes_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let queues = open(dir.path(), spec());
        publish_n(&queues, 10).await;
        let q = queues.get("q").unwrap();
        let got = q
            .fetch(
                "g",
                FetchOptions {
                    max: 6,
                    ..FetchOptions::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(got.iter().map(|m| m.offset).collect::<Vec<_>>(), [0, 1, 2, 3, 4, 5]);
        assert_eq!(got[3].payload, payload(3));
        assert!(got.iter().all(|m| m.deliveries == 1));
        assert_eq!(q.ack("g", &[4, 0, 2, 99]).await.unwrap(), (3, 1));
        let stats = q.stats();
        assert_eq!(stats.groups[0].floor, 1);
        assert_eq!(stats.groups[0].backlog, 7);
        assert_eq!(stats.groups[0].leased, 3);
        queues.close();
    }
    let queues = open(dir.path(), spec());
    let q = queues.get("q").unwrap();
    let got = q.fetch("g", fetch_all()).await.unwrap();
    let offsets: Vec<u64> = got.iter().map(|m| m.offset).collect();
    assert_eq!(offsets, [1, 3, 5, 6, 7, 8, 9], "deleted ones stay deleted, order kept");
    let deliveries: Vec<u32> = got.iter().map(|m| m.deliveries).collect();
    assert_eq!(deliveries, [2, 2, 2, 1, 1, 1, 1], "delivery counts survive");
    q.ack("g", &offsets).await.unwrap();
    assert_eq!(q.stats().groups[0].backlog, 0);
    assert_eq!(q.stats().groups[0].floor, 10);
}

#[tokio::test]
async fn dedupe_ids_survive_a_restart() {
    // What dedupe does within one run is the conformance suite's; here, that the window
    // is rebuilt from the segments at open.
    let dir = tempfile::tempdir().unwrap();
    let s = QueueSpec {
        dedupe_window_ms: 60_000,
        ..spec()
    };
    let with_id = |body: &'static [u8], id: &str| NewMessage {
        payload: Bytes::from_static(body),
        dedupe_id: Some(id.into()),
        ..NewMessage::default()
    };
    {
        let queues = open(dir.path(), s.clone());
        let q = queues.get("q").unwrap();
        let first = q
            .publish(vec![with_id(b"a", "order-1"), with_id(b"x", "order-2")])
            .await
            .unwrap();
        assert_eq!(
            first.iter().map(|p| (p.offset, p.duplicate)).collect::<Vec<_>>(),
            [(0, false), (1, false)]
        );
        queues.close();
    }
    let queues = open(dir.path(), s);
    let q = queues.get("q").unwrap();
    let again = q
        .publish(vec![with_id(b"a", "order-1"), with_id(b"x", "order-2")])
        .await
        .unwrap();
    assert_eq!(
        again.iter().map(|p| (p.offset, p.duplicate)).collect::<Vec<_>>(),
        [(0, true), (1, true)]
    );
    assert_eq!(q.stats().next_offset, 2, "duplicates store nothing");
}

#[tokio::test]
async fn torn_tail_is_cut_and_writing_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    {
        let queues = open(dir.path(), spec());
        publish_n(&queues, 100).await;
        queues.close();
    }
    // Cut the segment in the middle of record 60.
    let seg = dir.path().join("q").join(format!("{:020}.log", 0));
    let file = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    file.set_len(position(60) + 11).unwrap();
    drop(file);
    let queues = open(dir.path(), spec());
    let q = queues.get("q").unwrap();
    assert_eq!(q.stats().next_offset, 60);
    assert_eq!(q.stats().corrupt, 0);
    let repairs = q.stats().repairs;
    assert!(
        repairs.len() == 1 && repairs[0].contains("torn tail"),
        "the cut is reported: {repairs:?}"
    );
    let next = q.publish(vec![NewMessage::new(&b"after"[..])]).await.unwrap()[0];
    assert_eq!(next.offset, 60);
    let got = q.fetch("g", fetch_all()).await.unwrap();
    assert_eq!(got.len(), 61);
    for (i, m) in got.iter().take(60).enumerate() {
        assert_eq!(m.payload, payload(i));
    }
    assert_eq!(got[60].payload, &b"after"[..]);
    queues.close();
    drop(queues);
    // And the repaired log reads back the same.
    let queues = open(dir.path(), spec());
    assert_eq!(queues.get("q").unwrap().stats().next_offset, 61);
}

#[tokio::test]
async fn flipped_bit_is_reported_and_never_served() {
    let dir = tempfile::tempdir().unwrap();
    {
        let queues = open(dir.path(), spec());
        publish_n(&queues, 100).await;
        queues.close();
    }
    let seg = dir.path().join("q").join(format!("{:020}.log", 0));
    let file = std::fs::OpenOptions::new().read(true).write(true).open(&seg).unwrap();
    for (record, at) in [(40usize, 30u64), (41, 3)] {
        // A payload byte of record 40, the length field of record 41.
        let mut b = [0u8];
        file.read_exact_at(&mut b, position(record) + at).unwrap();
        b[0] ^= 0x10;
        file.write_all_at(&b, position(record) + at).unwrap();
    }
    drop(file);
    let queues = open(dir.path(), spec());
    let q = queues.get("q").unwrap();
    let stats = q.stats();
    assert_eq!(stats.corrupt, 2);
    assert_eq!(stats.next_offset, 100, "records after the damage are kept");
    let got = q.fetch("g", fetch_all()).await.unwrap();
    let offsets: Vec<u64> = got.iter().map(|m| m.offset).collect();
    assert_eq!(got.len(), 98);
    assert!(!offsets.contains(&40) && !offsets.contains(&41));
    for m in &got {
        assert_eq!(m.payload, payload(m.offset as usize), "offset {}", m.offset);
    }
    q.ack("g", &offsets).await.unwrap();
    assert_eq!(q.stats().groups[0].floor, 100, "the group moves past the lost offsets");
}

#[tokio::test]
async fn consumed_segments_are_reclaimed_and_retention_drops_old_ones() {
    let dir = tempfile::tempdir().unwrap();
    let small = QueueSpec {
        segment_bytes: 64 << 10,
        max_message_bytes: 4096,
        ..QueueSpec::default()
    };
    let queues = open(dir.path(), small.clone());
    let q = queues.get("q").unwrap();
    let body = Bytes::from(vec![b'x'; 1000]);
    for _ in 0..20 {
        let batch = (0..20).map(|_| NewMessage::new(body.clone())).collect();
        q.publish(batch).await.unwrap();
    }
    let segments = q.stats().segments;
    assert!(segments >= 6, "400 KB in 64 KB segments: {segments}");
    let mut seen = 0;
    loop {
        let got = q
            .fetch(
                "g",
                FetchOptions {
                    max: 50,
                    max_bytes: usize::MAX,
                    ..FetchOptions::default()
                },
            )
            .await
            .unwrap();
        if got.is_empty() {
            break;
        }
        assert!(got.iter().all(|m| m.payload == body));
        seen += got.len();
        let offsets: Vec<u64> = got.iter().map(|m| m.offset).collect();
        q.ack("g", &offsets).await.unwrap();
    }
    assert_eq!(seen, 400);
    // Reclaimed at the next write.
    q.publish(vec![NewMessage::new(body.clone())]).await.unwrap();
    let files = std::fs::read_dir(dir.path().join("q"))
        .unwrap()
        .filter(|e| {
            e.as_ref().unwrap().path().extension().is_some_and(|x| x == "log")
                && !e.as_ref().unwrap().file_name().to_string_lossy().starts_with("groups")
        })
        .count();
    assert!(files <= 2, "{files} segment files left");
    assert!(q.stats().segments <= 2);

    // Retention by size drops unconsumed segments too.
    let dir2 = tempfile::tempdir().unwrap();
    let queues = open(
        dir2.path(),
        QueueSpec {
            retention: RetentionSpec {
                max_bytes: Some(200 << 10),
                max_age_s: None,
            },
            ..small
        },
    );
    let q = queues.get("q").unwrap();
    for _ in 0..30 {
        let batch = (0..20).map(|_| NewMessage::new(body.clone())).collect();
        q.publish(batch).await.unwrap();
    }
    let stats = q.stats();
    assert!(stats.bytes <= (200 << 10) + (64 << 10), "{} bytes kept", stats.bytes);
    assert!(stats.first_offset > 0);
    let got = q.fetch("late", FetchOptions::default()).await.unwrap();
    assert_eq!(got[0].offset, stats.first_offset);
}

#[tokio::test]
async fn interval_and_none_policies_keep_what_was_written_across_a_reopen() {
    for fsync in [FsyncPolicy::Interval, FsyncPolicy::None] {
        let dir = tempfile::tempdir().unwrap();
        let s = QueueSpec {
            fsync,
            fsync_interval_ms: 20,
            ..spec()
        };
        {
            let queues = open(dir.path(), s.clone());
            publish_n(&queues, 50).await;
            let q = queues.get("q").unwrap();
            let got = q.fetch("g", fetch_all()).await.unwrap();
            q.ack("g", &[0, 1, 2]).await.unwrap();
            assert_eq!(got.len(), 50);
            assert_eq!(q.stats().fsync, fsync.as_str());
            tokio::time::sleep(Duration::from_millis(60)).await;
            queues.close();
        }
        let queues = open(dir.path(), s);
        let q = queues.get("q").unwrap();
        let got = q.fetch("g", fetch_all()).await.unwrap();
        assert_eq!(got.len(), 47, "{fsync:?}");
        assert_eq!(got[0].offset, 3);
    }
}

#[tokio::test]
async fn request_with_a_duplicate_dedupe_id_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let queues = open(dir.path(), spec());
    let q = queues.get("q").unwrap();
    let first = NewMessage {
        payload: Bytes::from_static(b"order"),
        dedupe_id: Some("o-1".into()),
        ..NewMessage::default()
    };
    q.publish(vec![first.clone()]).await.unwrap();
    let started = std::time::Instant::now();
    let err = queues.request("q", first, Duration::from_secs(10)).await.unwrap_err();
    assert_eq!(err, QueueError::Duplicate(0));
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Every restart appends to groups.log: acks made after one restart survive the next.
#[tokio::test]
async fn acks_across_several_restarts_all_survive() {
    let dir = tempfile::tempdir().unwrap();
    {
        let queues = open(dir.path(), spec());
        publish_n(&queues, 40).await;
        let q = queues.get("q").unwrap();
        q.fetch("g", fetch_all()).await.unwrap();
        q.ack("g", &(0..10).collect::<Vec<_>>()).await.unwrap();
        queues.close();
    }
    for round in 1..=3u64 {
        let queues = open(dir.path(), spec());
        let q = queues.get("q").unwrap();
        let got = q.fetch("g", fetch_all()).await.unwrap();
        assert!(!got.is_empty(), "round {round}: {:?}", q.stats());
        assert_eq!(got[0].offset, 10 * round, "round {round}: earlier acks kept");
        assert_eq!(got.len() as u64, 40 - 10 * round);
        let acks: Vec<u64> = (10 * round..10 * round + 10).collect();
        q.ack("g", &acks).await.unwrap();
        queues.close();
    }
    let queues = open(dir.path(), spec());
    let q = queues.get("q").unwrap();
    assert_eq!(q.stats().groups[0].floor, 40, "the floor moves over deletes at open");
    assert!(q.fetch("g", fetch_all()).await.unwrap().is_empty());
}

/// Lowering max_message_bytes later refuses new large messages but keeps serving the
/// stored ones.
#[tokio::test]
async fn stored_messages_outlive_a_lower_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let big = Bytes::from(vec![b'b'; 5000]);
    {
        let queues = open(dir.path(), spec());
        let q = queues.get("q").unwrap();
        q.publish(vec![NewMessage::new(big.clone()), NewMessage::new(big.clone())])
            .await
            .unwrap();
        queues.close();
    }
    let queues = open(
        dir.path(),
        QueueSpec {
            max_message_bytes: 100,
            ..spec()
        },
    );
    let q = queues.get("q").unwrap();
    assert_eq!(q.stats().corrupt, 0);
    assert_eq!(q.stats().next_offset, 2);
    let got = q.fetch("g", fetch_all()).await.unwrap();
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|m| m.payload == big));
    assert!(matches!(
        q.publish(vec![NewMessage::new(big.clone())]).await,
        Err(QueueError::TooLarge { .. })
    ));
}

/// A record header zeroed in the middle of a segment (bit rot, a bad sector) once made
/// recovery take it for the end of the log: every later record was zeroed and its
/// offsets handed out again. Only the damaged record may be lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zeroed_header_mid_segment_loses_only_that_record() {
    let dir = tempfile::tempdir().unwrap();
    {
        let queues = open(dir.path(), spec());
        // Several commits, so the damage is followed by later ones.
        let q = queues.get("q").unwrap();
        for k in 0..4 {
            let msgs = (25 * k..25 * (k + 1)).map(|i| NewMessage::new(payload(i))).collect();
            q.publish(msgs).await.unwrap();
        }
        queues.close();
    }
    let seg = dir.path().join("q").join(format!("{:020}.log", 0));
    let file = std::fs::OpenOptions::new().read(true).write(true).open(&seg).unwrap();
    // The 8-byte header (length and checksum) of record 40, zeroed.
    file.write_all_at(&[0u8; 8], position(40)).unwrap();
    drop(file);
    let queues = open(dir.path(), spec());
    let q = queues.get("q").unwrap();
    let stats = q.stats();
    assert_eq!(stats.next_offset, 100, "records after the damage are kept: {stats:?}");
    assert_eq!(stats.corrupt, 1, "the damaged record is reported: {stats:?}");
    assert_eq!(stats.repairs.len(), 1, "{stats:?}");
    assert!(
        stats.repairs[0].contains("offsets 40..41 are lost"),
        "the repair says what was lost: {:?}",
        stats.repairs
    );
    let got = q.fetch("g", fetch_all()).await.unwrap();
    let offsets: Vec<u64> = got.iter().map(|m| m.offset).collect();
    assert_eq!(got.len(), 99);
    assert!(!offsets.contains(&40));
    for m in &got {
        assert_eq!(m.payload, payload(m.offset as usize), "offset {}", m.offset);
    }
    // A new publish takes a new offset: none of the kept ones is handed out again.
    let next = q.publish(vec![NewMessage::new(&b"new"[..])]).await.unwrap()[0];
    assert_eq!(next.offset, 100);
    queues.close();
    drop(queues);
    // The repair holds across another open.
    let queues = open(dir.path(), spec());
    let q = queues.get("q").unwrap();
    assert_eq!(q.stats().next_offset, 101);
    assert_eq!(q.fetch("h", fetch_all()).await.unwrap().len(), 100);
}

/// Lowering `segment_bytes` once made records written under the old size read as torn,
/// and they were zeroed. A record is bounded by the segment file it is in.
#[tokio::test]
async fn lowering_segment_bytes_keeps_records_written_under_the_old_size() {
    let dir = tempfile::tempdir().unwrap();
    let big = Bytes::from(vec![b'b'; 200 << 10]);
    {
        let queues = open(
            dir.path(),
            QueueSpec {
                segment_bytes: 1 << 20,
                max_message_bytes: 512 << 10,
                ..spec()
            },
        );
        let q = queues.get("q").unwrap();
        q.publish(vec![NewMessage::new(big.clone()), NewMessage::new(&b"small"[..])])
            .await
            .unwrap();
        queues.close();
    }
    let queues = open(
        dir.path(),
        QueueSpec {
            segment_bytes: 64 << 10,
            max_message_bytes: 1024,
            ..spec()
        },
    );
    let q = queues.get("q").unwrap();
    let stats = q.stats();
    assert_eq!((stats.next_offset, stats.corrupt), (2, 0), "{stats:?}");
    let got = q.fetch("g", fetch_all()).await.unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].payload, big);
    assert_eq!(got[1].payload, &b"small"[..]);
}

/// A record the disk cannot give back (here: the file cut short under an open queue)
/// goes back to its group; the readable ones are served.
#[tokio::test]
async fn an_unreadable_record_does_not_hold_back_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    {
        let queues = open(dir.path(), spec());
        publish_n(&queues, 10).await;
        queues.close();
    }
    let queues = open(dir.path(), spec());
    let q = queues.get("q").unwrap();
    let seg = dir.path().join("q").join(format!("{:020}.log", 0));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(position(7))
        .unwrap();
    let got = q.fetch("g", fetch_all()).await.unwrap();
    let offsets: Vec<u64> = got.iter().map(|m| m.offset).collect();
    assert_eq!(offsets, [0, 1, 2, 3, 4, 5, 6]);
    let stats = q.stats();
    assert_eq!(stats.groups[0].unread, 3, "7, 8, 9 wait to be tried again: {stats:?}");
    assert_eq!(stats.corrupt, 0, "an unreadable record is not declared corrupt");
}

/// Copies the files of `from` into `to` as they are now: what a kill -9 of the process
/// leaves (the OS has every write, synced or not).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A message fetched, nacked and fetched again, with nothing else written after: its
/// delivery counts reach the OS within moments, so a process killed then (the copy of
/// its files) brings the message back with its count, and the last delivery allowed
/// dead-letters it instead of serving it forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_counts_outlive_a_kill_without_any_later_write() {
    let dir = tempfile::tempdir().unwrap();
    let spec = QueueSpec {
        max_deliveries: 3,
        ..spec()
    };
    let queues = open(dir.path(), spec.clone());
    publish_n(&queues, 1).await;
    let q = queues.get("q").unwrap();
    for want in [1, 2] {
        let got = q.fetch("g", fetch_all()).await.unwrap();
        assert_eq!(got[0].deliveries, want);
        assert_eq!(q.nack("g", &[0]).unwrap(), (1, 0));
    }
    // Killed now and then (a copy of its files each time), until the copy brings the
    // counts back: within moments, not at the next commit (none comes).
    let give_up = std::time::Instant::now() + Duration::from_secs(5);
    let (_killed, killed_queues) = loop {
        let killed = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), killed.path());
        let copy = open(killed.path(), spec.clone());
        let got = copy.get("q").unwrap().fetch("g", fetch_all()).await.unwrap();
        if got[0].deliveries == 3 {
            break (killed, copy);
        }
        assert!(
            std::time::Instant::now() < give_up,
            "the counts never reached the files: delivery {}",
            got[0].deliveries
        );
        copy.close();
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    queues.close();
    let queues = killed_queues;
    let q = queues.get("q").unwrap();
    q.nack("g", &[0]).unwrap();
    let got = q
        .fetch(
            "g",
            FetchOptions {
                wait: Duration::from_millis(200),
                ..fetch_all()
            },
        )
        .await
        .unwrap();
    assert!(got.is_empty(), "its last delivery was the third: {got:?}");
    let dead = queues.get("q.dlq").unwrap().fetch("audit", fetch_all()).await.unwrap();
    assert_eq!(dead.len(), 1, "dead-lettered");
    queues.close();
}
