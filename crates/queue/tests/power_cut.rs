//! The queue on a disk that fails: a deterministic simulation of power cuts, failed
//! fsyncs and short reads, on `strata_os::disk::FaultDisk` (in memory).
//!
//! Each seed runs a few epochs. In an epoch, lanes of work run at once — publishes of
//! random sizes and batches, fetches, deletes (acks) out of order, nacks, on two groups —
//! while a fault comes: a power cut after a random number of disk changes (so it lands
//! inside a commit, a segment roll, a `groups.log` rewrite...), a power cut at a random
//! operation (torn or not: unsynced writes all lost, or some kept), or an fsync failing
//! with EIO (then a restart, with or without a power cut). Then the queues are reopened
//! on what the disk kept, and checked:
//! - every acknowledged publish is served to each group that did not delete it, with its
//!   payload, at its offset, and no acknowledged offset is ever handed out again;
//! - no message whose delete was acknowledged comes back (in the epoch or after);
//! - what is served is intact (each payload carries its own checksum), and a message never
//!   acknowledged may appear (at least once), but only as published;
//! - after a write failed on a failed sync, the queue refuses every later write until it
//!   is reopened (no retry-and-acknowledge), saying why.
//!
//! Seeds: `SIM_SEED=N` runs seed N alone; `SIM_SEEDS=N` runs seeds 1 to N (default
//! [`DEFAULT_SEEDS`]). A failing seed prints itself; the workload and the fault points
//! follow the seed, thread timing may differ between runs, and the checks hold whatever
//! it is.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use strata_manifest::{FsyncPolicy, QueueSpec};
use strata_os::disk::{Disk, FaultDisk};
use strata_queue::{FetchOptions, NewMessage, QueueError, Queues, QueuesConfig};

/// Seeds in a normal test run.
const DEFAULT_SEEDS: u64 = 24;
const EPOCHS: usize = 5;
const LANES: usize = 3;
const GROUPS: [&str; 2] = ["a", "b"];

/// splitmix64: small, seedable, good enough to pick workloads.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A payload that names its message and checks itself: id, length, then bytes derived
/// from both.
fn payload(id: u64, len: usize) -> Bytes {
    let mut out = Vec::with_capacity(12 + len);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend((0..len).map(|i| filler(id, i)));
    Bytes::from(out)
}

fn filler(id: u64, i: usize) -> u8 {
    (id.wrapping_mul(0x9e37_79b9).wrapping_add(i as u64 * 31) >> 3) as u8
}

/// The id of an intact payload.
fn id_of(p: &[u8]) -> Option<u64> {
    let id = u64::from_le_bytes(p.get(..8)?.try_into().ok()?);
    let len = u32::from_le_bytes(p.get(8..12)?.try_into().ok()?) as usize;
    let body = p.get(12..)?;
    (body.len() == len && body.iter().enumerate().all(|(i, &b)| b == filler(id, i))).then_some(id)
}

/// What was acknowledged, which is what must hold after any fault.
#[derive(Default)]
struct Model {
    /// Offset -> id of every acknowledged publish.
    published: BTreeMap<u64, u64>,
    /// Ids published (acknowledged or not), for "only as published".
    attempted: HashSet<u64>,
    /// Per group: ids whose delete was acknowledged.
    deleted: HashMap<&'static str, HashSet<u64>>,
    /// Per group: ids whose delete failed (it may or may not have happened).
    maybe_deleted: HashMap<&'static str, HashSet<u64>>,
}

/// What the lanes of a seed share.
#[derive(Default)]
struct Shared {
    model: Mutex<Model>,
    next_id: AtomicU64,
    /// Counts operations across lanes, for a cut at a chosen one.
    ops: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// A power cut after this many disk changes (torn or not).
    CutAfterChanges(u64, bool),
    /// A power cut when the lanes have started this many operations.
    CutAtOp(u64, bool),
    /// The sync after this many (of paths ending so) fails with EIO; then a restart,
    /// after a power cut or not, or a power cut after this many more changes.
    FailSync(u64, &'static str, Then),
}

#[derive(Debug, Clone, Copy)]
enum Then {
    Restart,
    Cut,
    CutAfterChanges(u64),
}

fn spec() -> QueueSpec {
    QueueSpec {
        fsync: FsyncPolicy::Always,
        segment_bytes: 64 << 10,
        max_message_bytes: 8 << 10,
        lease_ms: 600_000,
        max_deliveries: 0,
        ..QueueSpec::default()
    }
}

fn declared() -> BTreeMap<String, QueueSpec> {
    BTreeMap::from([("q".to_string(), spec())])
}

fn seeds() -> Vec<u64> {
    if let Some(seed) = std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        return vec![seed];
    }
    let n = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEEDS);
    (1..=n).collect()
}

#[test]
fn acknowledged_publishes_and_deletes_survive_power_cuts_and_failed_syncs() {
    let started = std::time::Instant::now();
    for seed in seeds() {
        let outcome = std::panic::catch_unwind(|| run_seed(seed));
        if let Err(panic) = outcome {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("a panic");
            panic!(
                "seed {seed} failed: {what}\nrerun it alone: SIM_SEED={seed} cargo test -p strata-queue --test power_cut"
            );
        }
    }
    eprintln!("queue simulation: {} seeds in {:?}", seeds().len(), started.elapsed());
}

fn run_seed(seed: u64) {
    let mut rng = Rng(seed);
    let multi_thread = rng.chance(50);
    let runtime = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    }
    .unwrap();
    runtime.block_on(simulate(seed, rng));
}

async fn simulate(seed: u64, mut rng: Rng) {
    let root = PathBuf::from("/sim");
    let dir = root.join("queues");
    let mut disk = FaultDisk::new(&root, seed);
    disk.short_reads([0, 0, 3, 20][rng.below(4) as usize]);
    // Small, so that groups.log is rewritten often.
    let compact_bytes = 512 + rng.below(8 << 10);
    let config = |disk: &FaultDisk| QueuesConfig {
        compact_bytes,
        ..QueuesConfig::on(disk.clone())
    };
    let sim = Arc::new(Shared::default());
    sim.next_id.store(1, Ordering::SeqCst);
    let mut queues: Arc<Queues<FaultDisk>> = Arc::new(open(&dir, config(&disk)));
    start_groups(&sim, &queues).await;
    for epoch in 0..EPOCHS {
        let fault = match rng.below(3) {
            0 => Fault::CutAfterChanges(rng.below(600), rng.chance(40)),
            1 => Fault::CutAtOp(rng.below(120), rng.chance(40)),
            _ => Fault::FailSync(
                rng.below(40),
                ["", "q", "groups.log", "q/groups.log.tmp"][rng.below(4) as usize],
                [Then::Restart, Then::Cut, Then::CutAfterChanges(rng.below(300))][rng.below(3) as usize],
            ),
        };
        match fault {
            Fault::CutAfterChanges(n, false) => disk.power_cut_after(n),
            Fault::CutAfterChanges(n, true) => disk.torn_power_cut_after(n),
            Fault::FailSync(n, part, then) => {
                disk.fail_sync(n, part);
                if let Then::CutAfterChanges(k) = then {
                    disk.power_cut_after(k);
                }
            }
            Fault::CutAtOp(..) => {}
        }
        sim.ops.store(0, Ordering::SeqCst);
        let ops_per_lane = 20 + rng.below(30);
        let lanes: Vec<_> = (0..LANES)
            .map(|lane| {
                let lane_rng = Rng(rng.next());
                let work = run_lane(
                    sim.clone(),
                    queues.clone(),
                    disk.clone(),
                    lane_rng,
                    ops_per_lane,
                    fault,
                    lane,
                );
                tokio::spawn(work)
            })
            .collect();
        for lane in lanes {
            match tokio::time::timeout(Duration::from_secs(60), lane).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => std::panic::resume_unwind(e.into_panic()),
                Err(_) => panic!("epoch {epoch} ({fault:?}): a lane hung"),
            }
        }
        let cut = !matches!(fault, Fault::FailSync(_, _, Then::Restart));
        if cut && !disk.is_cut() {
            match fault {
                Fault::CutAfterChanges(_, true) | Fault::CutAtOp(_, true) => disk.power_cut_torn(),
                _ => disk.power_cut(),
            }
        }
        // The machine stops (its threads find a dead disk), and boots again.
        close(queues);
        disk.disarm();
        disk = disk.restart();
        let when = format!("epoch {epoch} ({fault:?})");
        let reopened;
        (queues, disk, reopened) = reopen(&dir, disk, &config, &mut rng, &when);
        check(&sim, &queues, &format!("{when}, reopened {reopened}")).await;
    }
    close(queues);
    eprintln!("seed {seed}: {:?}", disk.counts());
}

fn close(queues: Arc<Queues<FaultDisk>>) {
    queues.close();
    drop(queues);
}

fn open(dir: &Path, config: QueuesConfig<FaultDisk>) -> Queues<FaultDisk> {
    let queues = Queues::open_with(dir, &declared(), config).expect("open the queues");
    let failures = queues.failures();
    assert!(
        failures.is_empty(),
        "queues out of service after a reopen: {failures:?}"
    );
    queues
}

/// Opens the queues after a restart; sometimes the power is cut during the open (while
/// recovery repairs), or a sync fails in it, and the machine restarts again.
fn reopen(
    dir: &Path,
    mut disk: FaultDisk,
    config: &impl Fn(&FaultDisk) -> QueuesConfig<FaultDisk>,
    rng: &mut Rng,
    when: &str,
) -> (Arc<Queues<FaultDisk>>, FaultDisk, String) {
    let mut how = Vec::new();
    for attempt in 0.. {
        assert!(attempt < 10, "{when}: no clean reopen in 10 attempts");
        let fault = attempt < 3 && rng.chance(30);
        if fault {
            let kind = rng.below(3);
            let n = rng.below(if kind == 2 { 10 } else { 40 });
            match kind {
                0 => disk.power_cut_after(n),
                1 => disk.torn_power_cut_after(n),
                _ => disk.fail_sync(n, ""),
            }
            how.push(format!(
                "{} after {n}",
                ["cut", "torn cut", "failed sync"][kind as usize]
            ));
        }
        let opened = Queues::open_with(dir, &declared(), config(&disk));
        let clean = !disk.is_cut() && opened.as_ref().is_ok_and(|q| q.failures().is_empty());
        match opened {
            Ok(queues) if clean => {
                disk.disarm();
                how.push("clean".into());
                return (Arc::new(queues), disk, how.join(", "));
            }
            Ok(queues) => close(Arc::new(queues)),
            Err(e) => assert!(fault, "{when}: open failed with no fault injected: {e}"),
        }
        if !fault {
            panic!("{when}: queues out of service after a clean reopen");
        }
        if disk.is_cut() {
            disk = disk.restart();
        }
        disk.disarm();
    }
    unreachable!()
}

/// Creates both groups durably: each fetches and deletes a first message.
async fn start_groups(sim: &Shared, queues: &Queues<FaultDisk>) {
    let q = queues.get("q").unwrap();
    let id = sim.next_id.fetch_add(1, Ordering::SeqCst);
    let published = q.publish(vec![NewMessage::new(payload(id, 10))]).await.unwrap();
    {
        let mut model = sim.model.lock().unwrap();
        model.attempted.insert(id);
        model.published.insert(published[0].offset, id);
    }
    for group in GROUPS {
        let got = q.fetch(group, FetchOptions::default()).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(q.ack(group, &[got[0].offset]).await.unwrap(), (1, 0));
        sim.model.lock().unwrap().deleted.entry(group).or_default().insert(id);
    }
}

/// One lane of work: publishes, fetches, acks and nacks at random; records what was
/// acknowledged; checks what it is served.
async fn run_lane(
    sim: Arc<Shared>,
    queues: Arc<Queues<FaultDisk>>,
    disk: FaultDisk,
    mut rng: Rng,
    ops: u64,
    fault: Fault,
    lane: usize,
) {
    let q = queues.get("q").unwrap();
    // Per group: (offset, id) leased to this lane.
    let mut held: HashMap<&'static str, Vec<(u64, u64)>> = HashMap::new();
    // Set once a write failed on a failed sync: every later write must fail too.
    let mut refused: Option<String> = None;
    for _ in 0..ops {
        if disk.is_cut() {
            return;
        }
        let op = sim.ops.fetch_add(1, Ordering::SeqCst);
        if let Fault::CutAtOp(at, torn) = fault {
            if op == at {
                if torn {
                    disk.power_cut_torn();
                } else {
                    disk.power_cut();
                }
                return;
            }
        }
        let group = GROUPS[rng.below(2) as usize];
        let wrote: Option<Result<(), QueueError>> = match rng.below(100) {
            0..=34 => {
                let n = 1 + rng.below(6) as usize;
                let ids: Vec<u64> = (0..n).map(|_| sim.next_id.fetch_add(1, Ordering::SeqCst)).collect();
                let msgs = ids
                    .iter()
                    .map(|&id| {
                        let len = if rng.chance(10) {
                            rng.below(8000) as usize
                        } else {
                            rng.below(300) as usize
                        };
                        NewMessage::new(payload(id, len))
                    })
                    .collect();
                sim.model.lock().unwrap().attempted.extend(&ids);
                let result = q.publish(msgs).await;
                if let Ok(published) = &result {
                    let mut model = sim.model.lock().unwrap();
                    assert_eq!(published.len(), n);
                    for (p, id) in published.iter().zip(&ids) {
                        assert!(!p.duplicate);
                        if let Some(old) = model.published.insert(p.offset, *id) {
                            panic!(
                                "offset {} of acknowledged message {old} handed out again (to {id})",
                                p.offset
                            );
                        }
                    }
                }
                Some(result.map(drop))
            }
            35..=64 => {
                let opts = FetchOptions {
                    max: 1 + rng.below(8) as usize,
                    max_bytes: usize::MAX,
                    wait: Duration::ZERO,
                    lease: None,
                };
                if let Ok(messages) = q.fetch(group, opts).await {
                    let model = sim.model.lock().unwrap();
                    for m in &messages {
                        let id = served(&model, group, m.offset, &m.payload, "fetch in an epoch");
                        held.entry(group).or_default().push((m.offset, id));
                    }
                }
                None
            }
            65..=89 => {
                let pool = held.entry(group).or_default();
                if pool.is_empty() {
                    continue;
                }
                let n = 1 + rng.below(pool.len().min(5) as u64) as usize;
                let mut picked = Vec::new();
                for _ in 0..n {
                    let i = rng.below(pool.len() as u64) as usize;
                    picked.push(pool.swap_remove(i));
                }
                let offsets: Vec<u64> = picked.iter().map(|p| p.0).collect();
                let result = q.ack(group, &offsets).await;
                let mut model = sim.model.lock().unwrap();
                match &result {
                    Ok((deleted, ignored)) => {
                        assert_eq!(
                            (*deleted, *ignored),
                            (n, 0),
                            "an ack of messages leased to the group deletes them all"
                        );
                        model
                            .deleted
                            .entry(group)
                            .or_default()
                            .extend(picked.iter().map(|p| p.1));
                    }
                    Err(_) => model
                        .maybe_deleted
                        .entry(group)
                        .or_default()
                        .extend(picked.iter().map(|p| p.1)),
                }
                Some(result.map(drop))
            }
            _ => {
                let pool = held.entry(group).or_default();
                let n = rng.below(pool.len().min(3) as u64 + 1) as usize;
                let back: Vec<u64> = pool.drain(..n).map(|p| p.0).collect();
                if !back.is_empty() {
                    let _ = q.nack(group, &back);
                }
                None
            }
        };
        match (wrote, &refused) {
            (Some(Ok(())), Some(reason)) if !disk.is_cut() => {
                panic!("lane {lane}: a write was acknowledged after an earlier one failed ({reason})")
            }
            (Some(Err(QueueError::Io(reason))), None) if matches!(fault, Fault::FailSync(..)) && !disk.is_cut() => {
                assert!(
                    reason.contains("refuses writes"),
                    "a failed write says the queue refuses writes: {reason}"
                );
                refused = Some(reason);
            }
            _ => {}
        }
    }
}

/// Checks one message served to `group`: intact, the one acknowledged at its offset if
/// any, published at all, and not deleted by the group. Returns its id.
fn served(model: &Model, group: &str, offset: u64, payload: &[u8], when: &str) -> u64 {
    let id = id_of(payload).unwrap_or_else(|| panic!("{when}: offset {offset} served a damaged payload"));
    assert!(
        model.attempted.contains(&id),
        "{when}: offset {offset} served message {id}, never published"
    );
    if let Some(&acked) = model.published.get(&offset) {
        assert_eq!(
            id, acked,
            "{when}: offset {offset} holds another message than acknowledged"
        );
    }
    assert!(
        !model.deleted.get(group).is_some_and(|d| d.contains(&id)),
        "{when}: message {id} (offset {offset}) came back to group {group} after its delete was acknowledged"
    );
    id
}

/// After a reopen: each group is served everything acknowledged it did not delete, and
/// nothing it deleted; then every message is given back.
async fn check(sim: &Shared, queues: &Queues<FaultDisk>, when: &str) {
    let q = queues.get("q").unwrap();
    let all = FetchOptions {
        max: 1000,
        max_bytes: usize::MAX,
        wait: Duration::ZERO,
        lease: None,
    };
    for group in GROUPS {
        let mut got = BTreeMap::new();
        loop {
            let batch = q
                .fetch(group, all)
                .await
                .unwrap_or_else(|e| panic!("{when}: fetch: {e}"));
            if batch.is_empty() {
                break;
            }
            let model = sim.model.lock().unwrap();
            for m in batch {
                let id = served(&model, group, m.offset, &m.payload, when);
                assert!(
                    got.insert(m.offset, id).is_none(),
                    "{when}: offset {} served twice",
                    m.offset
                );
            }
        }
        let ids: BTreeSet<u64> = got.values().copied().collect();
        assert_eq!(ids.len(), got.len(), "{when}: one message served at two offsets");
        let model = sim.model.lock().unwrap();
        let deleted = model.deleted.get(group);
        let maybe = model.maybe_deleted.get(group);
        for (&offset, &id) in &model.published {
            let gone = deleted.is_some_and(|d| d.contains(&id)) || maybe.is_some_and(|d| d.contains(&id));
            if !gone {
                assert_eq!(
                    got.get(&offset),
                    Some(&id),
                    "{when}: acknowledged message {id} at offset {offset} is lost for group {group}; {:?}",
                    q.stats()
                );
            }
        }
        drop(model);
        let offsets: Vec<u64> = got.keys().copied().collect();
        for chunk in offsets.chunks(500) {
            q.nack(group, chunk).unwrap();
        }
    }
}

/// The fsyncgate lesson: once a sync failed, the queue answers no write as done — not
/// even after a later sync would succeed — until it is reopened, and says why.
#[tokio::test]
async fn a_failed_sync_refuses_every_later_write_until_the_queue_is_reopened() {
    let root = PathBuf::from("/failed-sync");
    let dir = root.join("queues");
    let disk = FaultDisk::new(&root, 7);
    let queues = Queues::open_with(&dir, &declared(), QueuesConfig::on(disk.clone())).unwrap();
    let q = queues.get("q").unwrap();
    let kept = q.publish(vec![NewMessage::new(payload(1, 100))]).await.unwrap()[0].offset;
    let got = q.fetch("g", FetchOptions::default()).await.unwrap();
    assert_eq!(got[0].offset, kept);

    disk.fail_sync(0, "q/00000000000000000000.log");
    let failed = q.publish(vec![NewMessage::new(payload(2, 100))]).await.unwrap_err();
    let QueueError::Io(reason) = &failed else {
        panic!("a failed sync is a disk error: {failed}")
    };
    assert!(reason.contains("sync") && reason.contains("refuses writes"), "{reason}");
    // The disk would sync now; the queue does not trust it with anything more.
    for _ in 0..2 {
        let again = q.publish(vec![NewMessage::new(payload(3, 100))]).await.unwrap_err();
        assert_eq!(again, failed);
    }
    assert_eq!(q.ack("g", &[kept]).await.unwrap_err(), failed);
    // What failed was never made visible.
    let got = q
        .fetch(
            "other",
            FetchOptions {
                max: 10,
                ..FetchOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(got.iter().map(|m| m.offset).collect::<Vec<_>>(), [kept]);

    queues.close();
    drop((q, queues));
    disk.power_cut();
    let disk = disk.restart();
    let queues = Queues::open_with(&dir, &declared(), QueuesConfig::on(disk.clone())).unwrap();
    let q = queues.get("q").unwrap();
    let got = q
        .fetch(
            "g",
            FetchOptions {
                max: 10,
                ..FetchOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(got[0].offset, kept, "the acknowledged message survives");
    assert_eq!(id_of(&got[0].payload), Some(1));
    // Reopened, it takes writes again.
    q.publish(vec![NewMessage::new(payload(4, 100))]).await.unwrap();
    q.ack("g", &[kept]).await.unwrap();
}

/// Seeds of the bit flip test.
const FLIP_SEEDS: u64 = 16;

/// Bits flipped on the medium are never served as a message: what is served is intact,
/// and every acknowledged message lost to the damage, or delete undone by it, is
/// reported (the queue's repairs). Bits flipped on the way out of a read are never
/// served either.
#[test]
fn flipped_bits_are_never_served_and_every_loss_is_reported() {
    for seed in 1..=FLIP_SEEDS {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        if let Err(panic) = std::panic::catch_unwind(|| runtime.block_on(flips(seed))) {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("a panic");
            panic!("bit flips, seed {seed}: {what}");
        }
    }
}

async fn flips(seed: u64) {
    let mut rng = Rng(seed ^ 0xf11b);
    let root = PathBuf::from("/flips");
    let dir = root.join("queues");
    let disk = FaultDisk::new(&root, seed);
    let queues = Queues::open_with(&dir, &declared(), QueuesConfig::on(disk.clone())).unwrap();
    let q = queues.get("q").unwrap();
    let mut published = BTreeMap::new();
    let mut id = 0;
    for _ in 0..20 {
        let n = 1 + rng.below(4);
        let msgs: Vec<NewMessage> = (0..n)
            .map(|i| NewMessage::new(payload(id + i, rng.below(400) as usize)))
            .collect();
        for (i, p) in q.publish(msgs).await.unwrap().iter().enumerate() {
            published.insert(p.offset, id + i as u64);
        }
        id += n;
    }
    let got = q
        .fetch(
            "g",
            FetchOptions {
                max: 40,
                ..FetchOptions::default()
            },
        )
        .await
        .unwrap();
    let acked: Vec<u64> = got.iter().map(|m| m.offset).filter(|_| rng.chance(50)).collect();
    q.ack("g", &acked).await.unwrap();
    let deleted: HashSet<u64> = acked.iter().map(|o| published[o]).collect();
    queues.close();
    drop((q, queues));
    disk.power_cut();
    let disk = disk.restart();

    // Damage: a few bits anywhere in the written part of the queue's files.
    let files: Vec<PathBuf> = disk
        .files()
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| p.parent() == Some(&dir.join("q")) && p.file_name().is_some_and(|n| n != "queue.json"))
        .collect();
    for _ in 0..1 + rng.below(3) {
        let path = &files[rng.below(files.len() as u64) as usize];
        let data = disk.read(path).unwrap();
        let written = data.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1) as u64;
        if written > 0 {
            disk.flip_bit(path, rng.below(written * 8)).unwrap();
        }
    }

    let queues = Queues::open_with(&dir, &declared(), QueuesConfig::on(disk.clone())).unwrap();
    let Ok(q) = queues.get("q") else {
        return; // out of service, with its reason: reported
    };
    let stats = q.stats();
    let reported = !stats.repairs.is_empty() || stats.corrupt > 0;
    let all = FetchOptions {
        max: 1000,
        max_bytes: usize::MAX,
        ..FetchOptions::default()
    };
    let served = q.fetch("g", all).await.unwrap();
    let mut seen = HashSet::new();
    for m in &served {
        let got = id_of(&m.payload).expect("a damaged payload was served");
        assert_eq!(
            published.get(&m.offset),
            Some(&got),
            "offset {} served another message",
            m.offset
        );
        assert!(
            !deleted.contains(&got) || reported,
            "a deleted message came back with no repair reported"
        );
        seen.insert(got);
    }
    for (offset, id) in &published {
        assert!(
            seen.contains(id) || deleted.contains(id) || reported,
            "message {id} at offset {offset} is lost with no repair reported: {stats:?}"
        );
    }
    // Flipped on the way out: never served.
    disk.flip_on_read(3);
    for m in q.fetch("t", all).await.unwrap_or_default() {
        let got = id_of(&m.payload).expect("a payload flipped on read was served");
        assert_eq!(published.get(&m.offset), Some(&got));
    }
}

/// A bit flipped on the way out of a read is not taken for damage on the disk: the
/// record is read again, and served, not dropped for every group.
#[tokio::test]
async fn a_bit_flipped_on_the_way_is_read_again_not_dropped() {
    let root = PathBuf::from("/flipped-read");
    let dir = root.join("queues");
    let disk = FaultDisk::new(&root, 3);
    let queues = Queues::open_with(&dir, &declared(), QueuesConfig::on(disk.clone())).unwrap();
    let msgs = (1..=3).map(|id| NewMessage::new(payload(id, 200))).collect();
    queues.get("q").unwrap().publish(msgs).await.unwrap();
    queues.close();
    drop(queues);
    // Reopened, nothing is kept in memory: the fetch reads the segment.
    let queues = Queues::open_with(&dir, &declared(), QueuesConfig::on(disk.clone())).unwrap();
    let q = queues.get("q").unwrap();
    disk.flip_next_reads(1);
    let got = q
        .fetch(
            "g",
            FetchOptions {
                max: 10,
                ..FetchOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(disk.counts().flipped_reads, 1);
    let ids: Vec<Option<u64>> = got.iter().map(|m| id_of(&m.payload)).collect();
    assert_eq!(ids, [Some(1), Some(2), Some(3)]);
    assert_eq!(q.stats().corrupt, 0);
}

/// When the directory cannot be synced after `groups.log` was rewritten, either file may
/// be the one a crash brings back: the queue takes no more deletes (nor publishes), so
/// none is answered that the file it went to could lose.
#[tokio::test]
async fn a_failed_directory_sync_after_rewriting_groups_log_refuses_writes() {
    let root = PathBuf::from("/failed-rewrite");
    let dir = root.join("queues");
    let disk = FaultDisk::new(&root, 5);
    let config = || QueuesConfig {
        compact_bytes: 64,
        ..QueuesConfig::on(disk.clone())
    };
    let queues = Queues::open_with(&dir, &declared(), config()).unwrap();
    let q = queues.get("q").unwrap();
    let msgs = (1..=20).map(|id| NewMessage::new(payload(id, 10))).collect();
    q.publish(msgs).await.unwrap();
    let got = q
        .fetch(
            "g",
            FetchOptions {
                max: 20,
                ..FetchOptions::default()
            },
        )
        .await
        .unwrap();
    // The next sync of the queue's directory is that of a rewrite.
    disk.fail_sync(0, "q");
    let mut deleted = Vec::new();
    let mut refused = None;
    for m in &got {
        match q.ack("g", &[m.offset]).await {
            Ok(_) if refused.is_none() => deleted.push(m.offset),
            Ok(_) => panic!("a delete was answered after the queue refused one"),
            Err(e) => refused = Some(e),
        }
    }
    let refused = refused.expect("a rewrite ran, and its directory sync failed");
    assert!(
        matches!(&refused, QueueError::Io(r) if r.contains("refuses writes")),
        "{refused}"
    );
    queues.close();
    drop((q, queues));
    // Restarted as it is (no power cut): every answered delete holds.
    let queues = Queues::open_with(&dir, &declared(), config()).unwrap();
    let q = queues.get("q").unwrap();
    let again = q
        .fetch(
            "g",
            FetchOptions {
                max: 20,
                ..FetchOptions::default()
            },
        )
        .await
        .unwrap();
    for m in again {
        assert!(!deleted.contains(&m.offset), "deleted offset {} came back", m.offset);
    }
}
