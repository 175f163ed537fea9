//! `strata_queue::repair` on real queue files in temp dirs: damage made by hand (a zeroed
//! stretch mid-segment, garbage to the end of a segment, a torn tail, a garbage
//! queue.json, a damaged and torn groups.log), a dry run that changes no byte, then the
//! repaired queue opened by the engine: every intact record at its offset, no repair
//! left for open to report, groups where they were.

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use strata_manifest::QueueSpec;
use strata_queue::repair::{self, Outcome, RepairOptions, Settings};
use strata_queue::{FetchOptions, NewMessage, Queues};

/// 100-byte payloads: a record takes 125 bytes, 524 of them fill a 64 KiB segment.
const RECORD: u64 = 125;
const PER_SEGMENT: u64 = 524;

fn spec() -> QueueSpec {
    QueueSpec {
        segment_bytes: 64 << 10,
        max_message_bytes: 4 << 10,
        ..QueueSpec::default()
    }
}

fn declared() -> BTreeMap<String, QueueSpec> {
    BTreeMap::from([("q".to_string(), spec())])
}

fn payload(i: u64) -> Bytes {
    Bytes::from(format!("{i:0100}"))
}

fn all() -> FetchOptions {
    FetchOptions {
        max: usize::MAX,
        max_bytes: usize::MAX,
        ..FetchOptions::default()
    }
}

fn segment(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

/// Overwrites `len` bytes at `pos` of `path` with `byte`.
fn smash(path: &Path, pos: u64, len: usize, byte: u8) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(&vec![byte; len], pos).unwrap();
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

/// Publishes `n` messages to `q`; group `g` deletes the first `acked`.
async fn fill(dir: &Path, n: u64, acked: u64) {
    let queues = Queues::open(dir, &declared()).unwrap();
    let q = queues.get("q").unwrap();
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        q.publish(chunk.iter().map(|&i| NewMessage::new(payload(i))).collect())
            .await
            .unwrap();
    }
    let got = q
        .fetch(
            "g",
            FetchOptions {
                max: acked as usize,
                ..all()
            },
        )
        .await
        .unwrap();
    for m in &got {
        q.ack("g", &[m.offset]).await.unwrap();
    }
    queues.close();
}

fn options(damaged: &Path, dry_run: bool) -> RepairOptions {
    RepairOptions {
        dry_run,
        declared: Some(spec()),
        damaged_dir: damaged.to_path_buf(),
    }
}

/// Opens the queues, checks that open repaired nothing, and returns the offsets group
/// `group` is handed, after checking each payload.
async fn served(dir: &Path, group: &str) -> Vec<u64> {
    let queues = Queues::open(dir, &declared()).unwrap();
    assert!(queues.failures().is_empty(), "{:?}", queues.failures());
    let q = queues.get("q").unwrap();
    let stats = q.stats();
    assert!(
        stats.repairs.is_empty(),
        "open found more to repair: {:?}",
        stats.repairs
    );
    assert_eq!(stats.corrupt, 0);
    let got = q.fetch(group, all()).await.unwrap();
    for m in &got {
        assert_eq!(m.payload, payload(m.offset), "offset {}", m.offset);
    }
    queues.close();
    got.iter().map(|m| m.offset).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_segments_keep_every_intact_record_at_its_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("queues");
    fill(&dir, 1200, 10).await;
    let q = dir.join("q");
    // A zeroed stretch in the middle of the first segment (records 20, 21, 22), and
    // garbage from record 1000 to the end of the second one.
    smash(&segment(&q, 0), 20 * RECORD, 3 * RECORD as usize, 0);
    let second = segment(&q, PER_SEGMENT);
    smash(&second, (1000 - PER_SEGMENT) * RECORD, 300, 0x5a);
    let from = (1001 - PER_SEGMENT) * RECORD;
    smash(
        &second,
        from,
        (std::fs::metadata(&second).unwrap().len() - from) as usize,
        0,
    );

    let before = files(&dir);
    let damaged = tmp.path().join("damaged");
    let dry = repair::repair(&dir, "q", &options(&damaged, true)).unwrap();
    assert_eq!(files(&dir), before, "a dry run changes no byte");
    assert!(!damaged.exists());
    assert_eq!(dry.outcome, Outcome::WouldRepair);
    let lost: Vec<(u64, u64)> = dry.lost.iter().map(|l| (l.from, l.to)).collect();
    assert_eq!(lost, [(20, 23), (1000, 2 * PER_SEGMENT)]);
    assert_eq!(dry.lost[0].bytes, 3 * RECORD);
    assert_eq!(dry.lost_records(), 3 + 2 * PER_SEGMENT - 1000);
    assert_eq!(dry.records, 1200 - dry.lost_records());

    let done = repair::repair(&dir, "q", &options(&damaged, false)).unwrap();
    let Outcome::Repaired { moved_to } = &done.outcome else {
        panic!("not repaired: {done:?}")
    };
    assert_eq!(moved_to, &damaged.join("queues/q"));
    assert_eq!(std::fs::read(segment(moved_to, 0)).unwrap(), before[&segment(&q, 0)]);
    assert_eq!(done.groups[0].floor, 10);
    assert!(done.to_string().contains("LOST offsets 20..23"), "{done}");

    let lost = |o: &u64| (20..23).contains(o) || (1000..2 * PER_SEGMENT).contains(o);
    let expected: Vec<u64> = (10..1200).filter(|o| !lost(o)).collect();
    assert_eq!(served(&dir, "g").await, expected);
    assert_eq!(
        served(&dir, "new").await,
        (0..1200).filter(|o| !lost(o)).collect::<Vec<_>>()
    );
    // A second repair finds nothing to do, and publishing goes on at the next offset.
    let again = repair::repair(&dir, "q", &options(&damaged, false)).unwrap();
    assert_eq!(again.outcome, Outcome::Intact, "{again}");
    let queues = Queues::open(&dir, &declared()).unwrap();
    let published = queues
        .get("q")
        .unwrap()
        .publish(vec![NewMessage::new(payload(1200))])
        .await;
    assert_eq!(published.unwrap()[0].offset, 1200);
    queues.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_queue_json_is_rebuilt_from_the_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("queues");
    {
        let queues = Queues::open(&dir, &BTreeMap::new()).unwrap();
        let (q, _) = queues.create("jobs", spec()).unwrap();
        q.publish((0..30).map(|i| NewMessage::new(payload(i))).collect())
            .await
            .unwrap();
        queues.close();
    }
    std::fs::write(dir.join("jobs/queue.json"), b"{ not json").unwrap();
    let queues = Queues::open(&dir, &BTreeMap::new()).unwrap();
    assert_eq!(queues.failures().len(), 1, "the queue is out of service first");
    drop(queues);

    let damaged = tmp.path().join("damaged");
    let options = RepairOptions {
        damaged_dir: damaged.clone(),
        ..RepairOptions::default()
    };
    let done = repair::repair(&dir, "jobs", &options).unwrap();
    let Settings::Rebuilt { reason, from } = &done.settings else {
        panic!("{done:?}")
    };
    assert!(reason.contains("not valid settings"), "{reason}");
    assert!(from.contains("files"), "{from}");
    assert_eq!(done.lost_records(), 0);
    let rebuilt: QueueSpec = serde_json::from_slice(&std::fs::read(dir.join("jobs/queue.json")).unwrap()).unwrap();
    assert_eq!(rebuilt.segment_bytes, 64 << 10, "the segment size of the files");
    assert_eq!(
        std::fs::read(damaged.join("queues/jobs/queue.json")).unwrap(),
        b"{ not json"
    );

    let queues = Queues::open(&dir, &BTreeMap::new()).unwrap();
    assert!(queues.failures().is_empty(), "{:?}", queues.failures());
    let got = queues.get("jobs").unwrap().fetch("g", all()).await.unwrap();
    assert_eq!(
        got.iter().map(|m| m.offset).collect::<Vec<_>>(),
        (0..30).collect::<Vec<_>>()
    );
    queues.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_groups_log_is_salvaged_up_to_its_last_intact_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("queues");
    fill(&dir, 100, 40).await;
    let log = dir.join("q/groups.log");
    let len = std::fs::metadata(&log).unwrap().len();
    // A flipped byte in an early record (the first fetch's delivery counts), and a torn
    // tail: half a record of garbage.
    let f = std::fs::OpenOptions::new().read(true).write(true).open(&log).unwrap();
    let mut byte = [0u8];
    f.read_exact_at(&mut byte, 30).unwrap();
    f.write_all_at(&[byte[0] ^ 0x10], 30).unwrap();
    f.write_all_at(&[0x33; 13], len).unwrap();
    drop(f);

    let damaged = tmp.path().join("damaged");
    let done = repair::repair(&dir, "q", &options(&damaged, false)).unwrap();
    assert!(matches!(done.outcome, Outcome::Repaired { .. }), "{done}");
    assert_eq!(done.groups_log_skipped, 1, "{done}");
    assert_eq!(done.groups_log_torn, 13);
    assert_eq!(done.lost_records(), 0);
    assert_eq!(done.groups[0].floor, 40, "the deletes after the damage are kept");
    assert_eq!(served(&dir, "g").await, (40..100).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_is_dropped_and_the_next_offset_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("queues");
    fill(&dir, 50, 50).await;
    // The last two records torn: their bytes are garbage, nothing intact after them.
    smash(&segment(&dir.join("q"), 0), 48 * RECORD, 2 * RECORD as usize, 0x77);
    let damaged = tmp.path().join("damaged");
    let done = repair::repair(&dir, "q", &options(&damaged, false)).unwrap();
    let torn = done.torn_tail.as_ref().expect("a torn tail");
    assert_eq!((torn.position, torn.bytes), (48 * RECORD, 2 * RECORD));
    assert_eq!(done.lost_records(), 0, "not known to be acknowledged");
    assert_eq!(done.next_offset, 48);
    assert_eq!(
        done.groups[0].lowered_from,
        Some(50),
        "the group had deleted offsets that are handed out again"
    );
    let queues = Queues::open(&dir, &declared()).unwrap();
    assert!(queues.get("q").unwrap().stats().repairs.is_empty());
    let published = queues
        .get("q")
        .unwrap()
        .publish(vec![NewMessage::new(payload(48))])
        .await;
    assert_eq!(published.unwrap()[0].offset, 48);
    queues.close();
}
