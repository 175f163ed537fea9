//! The node-wide bounds on queues (`queue_limits`), on real files in temp dirs: a queue
//! made at run time cannot ask for huge segments (one create once preallocated 2 x 1 GiB)
//! nor pass the number of queues; the segments of all queues together stay within the
//! disk bound, a publish past it is refused naming the bound and stores nothing, what
//! was acknowledged is never dropped to make room, and deletes by consumers make room
//! again. A refused create leaves nothing behind.

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use strata_manifest::{QueueLimitsSpec, QueueSpec};
use strata_queue::{FetchOptions, NewMessage, QueueError, Queues, QueuesConfig};

const SEGMENT: u64 = 64 << 10;

fn spec() -> QueueSpec {
    QueueSpec {
        segment_bytes: SEGMENT,
        max_message_bytes: 8 << 10,
        ..QueueSpec::default()
    }
}

fn open(dir: &Path, declared: &[&str], limits: QueueLimitsSpec) -> Queues {
    let declared: BTreeMap<String, QueueSpec> = declared.iter().map(|n| (n.to_string(), spec())).collect();
    let config = QueuesConfig {
        limits,
        ..QueuesConfig::default()
    };
    Queues::open_with(dir, &declared, config).expect("open")
}

fn message(i: u64) -> NewMessage {
    let mut body = format!("{i:08}").into_bytes();
    body.resize(4000, b'.');
    NewMessage::new(Bytes::from(body))
}

fn all() -> FetchOptions {
    FetchOptions {
        max: usize::MAX,
        max_bytes: usize::MAX,
        ..FetchOptions::default()
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_queue_made_at_run_time_cannot_ask_for_huge_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let queues = open(tmp.path(), &["declared"], QueueLimitsSpec::default());
    let huge = QueueSpec {
        segment_bytes: 1 << 30,
        ..QueueSpec::default()
    };
    let e = queues.create("huge", huge.clone()).err().expect("refused");
    let QueueError::BadInput(text) = &e else {
        panic!("{e:?}")
    };
    assert!(
        text.contains("queues.huge.segment_bytes: 1073741824 is over queue_limits.max_segment_bytes (16777216)"),
        "{text}"
    );
    assert_eq!(names(tmp.path()), ["declared", "declared.dlq"], "nothing is left of it");
    // Within the bound it is made; a declared queue is the manifest's to size.
    queues.create("small", spec()).unwrap();
    let tmp2 = tempfile::tempdir().unwrap();
    let declared = BTreeMap::from([(
        "huge".to_string(),
        QueueSpec {
            segment_bytes: 1 << 20,
            ..QueueSpec::default()
        },
    )]);
    let limits = QueueLimitsSpec {
        max_segment_bytes: SEGMENT,
        ..QueueLimitsSpec::default()
    };
    let config = QueuesConfig {
        limits,
        ..QueuesConfig::default()
    };
    Queues::open_with(tmp2.path(), &declared, config).unwrap();
}

#[test]
fn the_number_of_queues_is_bounded_and_a_delete_makes_room() {
    let tmp = tempfile::tempdir().unwrap();
    let limits = QueueLimitsSpec {
        max_queues: 2,
        ..QueueLimitsSpec::default()
    };
    let queues = open(tmp.path(), &["declared"], limits.clone());
    queues.create("one", spec()).unwrap();
    // Asking for one that exists is no new queue.
    assert!(!queues.create("one", spec()).unwrap().1);
    let e = queues.create("two", spec()).err().expect("refused");
    let QueueError::Unavailable(text) = &e else {
        panic!("{e:?}")
    };
    assert!(
        text.contains("the node has 2 queues, its bound queue_limits.max_queues (2)"),
        "{text}"
    );
    assert!(!names(tmp.path()).iter().any(|n| n.starts_with("two")));
    queues.delete("one").unwrap();
    queues.create("two", spec()).unwrap();
    drop(queues);
    // A node whose stored queues are more than a lowered bound still opens them all.
    let queues = open(
        tmp.path(),
        &["declared"],
        QueueLimitsSpec {
            max_queues: 1,
            ..limits
        },
    );
    assert!(queues.get("two").is_ok());
    assert!(queues.create("three", spec()).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_past_the_disk_bound_are_refused_and_nothing_accepted_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    // Room for six segments: the queue's and its dead-letter queue's first, and four
    // more (the one prepared ahead included).
    let limits = QueueLimitsSpec {
        max_total_bytes: Some(6 * SEGMENT),
        ..QueueLimitsSpec::default()
    };
    let queues = open(tmp.path(), &["q"], limits.clone());
    assert_eq!(queues.disk_bytes(), 2 * SEGMENT);
    let q = queues.get("q").unwrap();
    let mut accepted = Vec::new();
    let refused = loop {
        let i = accepted.len() as u64;
        match q.publish(vec![message(i)]).await {
            Ok(p) => accepted.push(p[0].offset),
            Err(e) => break e,
        }
        assert!(i < 1000, "the bound never refused a publish");
    };
    let QueueError::Unavailable(text) = &refused else {
        panic!("{refused:?}")
    };
    assert!(text.starts_with("could not roll to a new segment"), "{text}");
    assert!(text.contains("queue_limits.max_total_bytes (393216 bytes)"), "{text}");
    assert!(queues.disk_bytes() <= 6 * SEGMENT, "{}", queues.disk_bytes());
    assert_eq!(
        q.stats().disk_bytes + SEGMENT,
        queues.disk_bytes(),
        "the dead-letter queue's segment"
    );
    // A new queue does not fit either, and leaves nothing.
    let e = queues.create("more", spec()).err().expect("refused");
    assert!(e.to_string().contains("queue_limits.max_total_bytes"), "{e}");
    assert!(!names(tmp.path()).iter().any(|n| n.starts_with("more")));
    // Everything acknowledged is there, in order.
    let got = q.fetch("g", all()).await.unwrap();
    assert_eq!(got.iter().map(|m| m.offset).collect::<Vec<_>>(), accepted);
    // Consumers delete: whole segments are freed, and publishes go in again.
    let offsets: Vec<u64> = got.iter().map(|m| m.offset).collect();
    q.ack("g", &offsets).await.unwrap();
    let more = q.publish(vec![message(9999)]).await.unwrap();
    assert_eq!(more[0].offset, *accepted.last().unwrap() + 1);
    assert!(queues.disk_bytes() < 6 * SEGMENT);
    drop((q, queues));
    // The bound never keeps stored queues from opening, even lowered below them.
    let queues = open(
        tmp.path(),
        &["q"],
        QueueLimitsSpec {
            max_total_bytes: Some(2 * SEGMENT),
            ..limits
        },
    );
    let q = queues.get("q").unwrap();
    let got = q.fetch("g", all()).await.unwrap();
    assert_eq!(got.iter().map(|m| m.offset).collect::<Vec<_>>(), [more[0].offset]);
}
