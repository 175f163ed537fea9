//! The store on a disk that fails: a deterministic simulation of power cuts, failed
//! fsyncs and short reads under the write-ahead log and the database file, on
//! `strata_os::disk::FaultDisk` (in memory; blob bodies, not exercised here, stay on the
//! real file system).
//!
//! Each seed runs a few epochs. In an epoch, lanes of work run at once, each on keys of
//! its own — puts of random sizes (unconditional, create-only, compare-and-set with the
//! right version and with a stale one), deletes, gets, and bursts of puts to one key that
//! land in one group commit — while a fault comes: a power cut after a random number of
//! disk changes (inside a log append, a log switch, a checkpoint...), or at a random
//! operation (torn or not), or an fsync failing with EIO (then a restart, after a power
//! cut or not). The log files are small, so the log moves between its files often. Then
//! the store is reopened (sometimes with another fault during the reopen) and checked:
//! - every acknowledged put and delete is there: a key holds its last acknowledged value
//!   at its version, or a later write that was not acknowledged (never an older one);
//! - a version, once acknowledged, is never handed out again, and every version handed
//!   out after a reopen is above every version seen before it;
//! - in an epoch, reads see exactly what was acknowledged, conditions are decided against
//!   it, and after a write failed every later write fails too, saying to reopen.
//!
//! Seeds: `SIM_SEED=N` runs seed N alone; `SIM_SEEDS=N` runs seeds 1 to N (default
//! [`DEFAULT_SEEDS`]); `SIM_VERBOSE=1` prints each epoch's faults and recovery. A failing
//! seed prints itself; the workload and the fault points follow the seed, thread timing
//! may differ between runs, and the checks hold whatever it is.
//!
//! Known limit, left out by default: a fault *while the store opens* — a power cut
//! (even a whole one), a torn one, or a failed sync, in the middle of redb's own
//! recovery of its file — can leave a database that redb 2.6.4 refuses to open again
//! ("Primary is corrupted despite 2-phase commit", "All roots are corrupted", or a panic
//! on an assertion, which the node turns into a store out of service). It happens with
//! redb alone on this disk, without the store. Every fault while the store runs is in.
//! `SIM_REOPEN_FAULTS=1 SIM_SEEDS=100` adds faults while it opens, and shows it within a
//! few dozen seeds.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use strata_os::disk::FaultDisk;
use strata_store::{Cond, Store, StoreConfig, StoreError};

/// Seeds in a normal test run.
const DEFAULT_SEEDS: u64 = 16;
const EPOCHS: usize = 4;
const LANES: usize = 4;
const KEYS_PER_LANE: usize = 4;
const NS: &str = "app";

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

/// A value that names the write that made it and its key, and checks itself.
fn value(key: &str, op: u64, len: usize) -> Bytes {
    let mut out = Vec::with_capacity(14 + key.len() + len);
    out.extend_from_slice(&op.to_le_bytes());
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend((0..len).map(|i| filler(op, i)));
    Bytes::from(out)
}

fn filler(op: u64, i: usize) -> u8 {
    (op.wrapping_mul(0x9e37_79b9).wrapping_add(i as u64 * 17) >> 5) as u8
}

/// The write that made an intact value of `key`.
fn op_of(key: &str, v: &[u8]) -> Option<u64> {
    let op = u64::from_le_bytes(v.get(..8)?.try_into().ok()?);
    let klen = u16::from_le_bytes(v.get(8..10)?.try_into().ok()?) as usize;
    (v.get(10..10 + klen)? == key.as_bytes()).then_some(())?;
    let at = 10 + klen;
    let len = u32::from_le_bytes(v.get(at..at + 4)?.try_into().ok()?) as usize;
    let body = v.get(at + 4..)?;
    (body.len() == len && body.iter().enumerate().all(|(i, &b)| b == filler(op, i))).then_some(op)
}

/// A key as acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    Absent,
    /// Version, and the write whose value it holds.
    Present(u64, u64),
}

impl Known {
    fn version(self) -> Option<u64> {
        match self {
            Known::Absent => None,
            Known::Present(v, _) => Some(v),
        }
    }
}

/// A write whose outcome is unknown (it failed): it may or may not have happened.
#[derive(Debug, Clone, Copy)]
enum Uncertain {
    Put(u64),
    Delete,
}

#[derive(Default)]
struct Model {
    keys: HashMap<String, (Known, Vec<Uncertain>)>,
    /// Every version acknowledged or seen after a reopen.
    versions: BTreeSet<u64>,
    /// Every version handed out in this epoch must be above this.
    floor: u64,
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    CutAfterChanges(u64, bool),
    CutAtOp(u64, bool),
    FailSync(u64, &'static str, Then),
}

#[derive(Debug, Clone, Copy)]
enum Then {
    Restart,
    Cut,
    CutAfterChanges(u64),
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
fn acknowledged_writes_and_versions_survive_power_cuts_and_failed_syncs() {
    let started = std::time::Instant::now();
    for seed in seeds() {
        if let Err(panic) = std::panic::catch_unwind(|| run_seed(seed)) {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("a panic");
            panic!(
                "seed {seed} failed: {what}\nrerun it alone: SIM_SEED={seed} cargo test -p strata-store --test power_cut"
            );
        }
    }
    eprintln!("store simulation: {} seeds in {:?}", seeds().len(), started.elapsed());
}

fn run_seed(seed: u64) {
    let mut rng = Rng(seed);
    let runtime = if rng.chance(50) {
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

struct Shared {
    model: Mutex<Model>,
    next_op: AtomicU64,
    ops: AtomicU64,
}

async fn simulate(seed: u64, mut rng: Rng) {
    // Blob bodies live on the real file system, under the store's directory.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let mut disk = FaultDisk::new(tmp.path(), seed);
    disk.short_reads([0, 0, 5, 50][rng.below(4) as usize]);
    let config = StoreConfig {
        // Small, so that the log moves between its files (after a checkpoint) often.
        wal_file_bytes: 4096 + rng.below(64 << 10),
        ..StoreConfig::default()
    };
    let sim = Arc::new(Shared {
        model: Mutex::new(Model::default()),
        next_op: AtomicU64::new(1),
        ops: AtomicU64::new(0),
    });
    {
        let mut model = sim.model.lock().unwrap();
        for lane in 0..LANES {
            for k in 0..KEYS_PER_LANE {
                model.keys.insert(key(lane, k), (Known::Absent, Vec::new()));
            }
        }
    }
    let mut store = Arc::new(Store::open_on(&dir, config.clone(), disk.clone()).expect("open the store"));
    for epoch in 0..EPOCHS {
        let fault = match rng.below(3) {
            0 => Fault::CutAfterChanges(rng.below(1500), rng.chance(40)),
            1 => Fault::CutAtOp(rng.below(150), rng.chance(40)),
            _ => Fault::FailSync(
                rng.below(40),
                ["", "0.log", "1.log", "store.redb", "wal"][rng.below(5) as usize],
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
        let ops_per_lane = 20 + rng.below(40);
        let lanes: Vec<_> = (0..LANES)
            .map(|lane| {
                let work = run_lane(
                    sim.clone(),
                    store.clone(),
                    disk.clone(),
                    Rng(rng.next()),
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
        close(store);
        disk.disarm();
        disk = disk.restart();
        let when = format!("epoch {epoch} ({fault:?})");
        let how;
        (store, disk, how) = reopen(&dir, &config, disk, &mut rng, &when);
        let when = format!("{when}, reopened {how}");
        if std::env::var("SIM_VERBOSE").is_ok() {
            eprintln!(
                "seed {seed}: {when}: {:?}; failed syncs so far: {:?}",
                store.recovery(),
                disk.failed_sync_paths()
            );
        }
        check(&sim, &store, &when).await;
    }
    close(store);
    eprintln!("seed {seed}: {:?}", disk.counts());
}

/// `SIM_REOPEN_FAULTS=1`: power cuts (whole or torn) and failed syncs while the store
/// opens, too (see the module docs for why not by default).
fn reopen_faults() -> bool {
    std::env::var("SIM_REOPEN_FAULTS").is_ok_and(|v| v == "1")
}

fn key(lane: usize, k: usize) -> String {
    format!("l{lane}/k{k}")
}

/// Closes the store and waits for its threads; blocking.
fn close(store: Arc<Store>) {
    store.close();
    drop(store);
}

/// Opens the store after a restart; sometimes the power is cut during the open (while
/// the log is re-applied), or a sync fails in it, and the machine restarts again.
fn reopen(
    dir: &Path,
    config: &StoreConfig,
    mut disk: FaultDisk,
    rng: &mut Rng,
    when: &str,
) -> (Arc<Store>, FaultDisk, String) {
    let mut how = Vec::new();
    for attempt in 0..10 {
        let fault = attempt < 3 && rng.chance(30) && reopen_faults();
        if fault {
            let kind = rng.below(3);
            let n = rng.below(if kind == 2 { 10 } else { 60 });
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
        // redb may panic on a disk error while opening (the node turns that into an
        // error, as here).
        let opened = std::panic::catch_unwind(|| Store::open_on(dir, config.clone(), disk.clone()))
            .unwrap_or_else(|_| Err(StoreError::Io("opening panicked".into())));
        match opened {
            Ok(store) if !disk.is_cut() => {
                disk.disarm();
                how.push("clean".into());
                return (Arc::new(store), disk, how.join(", "));
            }
            Ok(store) => close(Arc::new(store)),
            Err(e) => assert!(fault, "{when}: open failed with no fault injected: {e}"),
        }
        if disk.is_cut() {
            disk = disk.restart();
        }
        disk.disarm();
    }
    panic!("{when}: no clean reopen in 10 attempts");
}

/// One lane of work on its own keys; records what was acknowledged and checks every
/// answer against it.
async fn run_lane(
    sim: Arc<Shared>,
    store: Arc<Store>,
    disk: FaultDisk,
    mut rng: Rng,
    ops: u64,
    fault: Fault,
    lane: usize,
) {
    // Set once a write failed: every later write must fail too.
    let mut failed: Option<String> = None;
    for _ in 0..ops {
        if disk.is_cut() {
            return;
        }
        let n = sim.ops.fetch_add(1, Ordering::SeqCst);
        if let Fault::CutAtOp(at, torn) = fault {
            if n == at {
                if torn {
                    disk.power_cut_torn();
                } else {
                    disk.power_cut();
                }
                return;
            }
        }
        let key = key(lane, rng.below(KEYS_PER_LANE as u64) as usize);
        let known = sim.model.lock().unwrap().keys[&key].0;
        let len = if rng.chance(10) {
            rng.below(6000) as usize
        } else {
            rng.below(200) as usize
        };
        let op = sim.next_op.fetch_add(1, Ordering::SeqCst);
        let wrote: Option<Result<(), StoreError>> = match rng.below(100) {
            0..=29 => Some(put(&sim, &store, &key, op, len, Cond::Any, known).await),
            30..=39 => Some(put(&sim, &store, &key, op, len, Cond::Absent, known).await),
            40..=54 => {
                let cond = match known {
                    Known::Present(v, _) if rng.chance(80) => Cond::Version(v),
                    // A stale or made-up version: a conflict.
                    Known::Present(v, _) => Cond::Version(v.saturating_sub(1 + rng.below(3))),
                    Known::Absent => Cond::Version(1 + rng.below(1000)),
                };
                Some(put(&sim, &store, &key, op, len, cond, known).await)
            }
            55..=64 => {
                // A burst: puts to one key sent together, likely decided in one batch.
                let n = 2 + rng.below(3);
                let puts = (0..n).map(|i| {
                    let op = if i == 0 {
                        op
                    } else {
                        sim.next_op.fetch_add(1, Ordering::SeqCst)
                    };
                    put(&sim, &store, &key, op, len, Cond::Any, known)
                });
                let results = join_all(puts.collect()).await;
                Some(results.into_iter().collect())
            }
            65..=79 => {
                let cond = match known {
                    Known::Present(v, _) if rng.chance(50) => Cond::Version(v),
                    _ => Cond::Any,
                };
                Some(delete(&sim, &store, &key, cond, known).await)
            }
            _ => {
                if let Ok(got) = store.get(NS, &key).await {
                    let found = got.map(|e| {
                        let op = op_of(&key, &e.value)
                            .unwrap_or_else(|| panic!("get {key}: a damaged value at version {}", e.version));
                        Known::Present(e.version, op)
                    });
                    assert_eq!(
                        found.unwrap_or(Known::Absent),
                        known,
                        "get {key}: the store shows another state than acknowledged"
                    );
                }
                None
            }
        };
        match (wrote, &failed) {
            (Some(Ok(())), Some(first)) if !disk.is_cut() => {
                panic!("lane {lane}: a write was acknowledged after an earlier one failed ({first})")
            }
            (Some(Err(e)), Some(_)) if !disk.is_cut() => assert!(
                matches!(&e, StoreError::Io(reason) if reason.contains("reopen the store")),
                "lane {lane}: a write after a failed one is refused saying why: {e}"
            ),
            (Some(Err(e)), None) => failed = Some(e.to_string()),
            _ => {}
        }
    }
}

/// Runs the futures together (polled in order, so sent to the writer in order).
async fn join_all<T, F: std::future::Future<Output = T>>(futures: Vec<F>) -> Vec<T> {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for (i, f) in futures.iter_mut().enumerate() {
            if out[i].is_none() {
                if let std::task::Poll::Ready(v) = f.as_mut().poll(cx) {
                    out[i] = Some(v);
                }
            }
        }
        if out.iter().all(Option::is_some) {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out.into_iter().map(|v| v.expect("ready")).collect()
}

/// A put, checked and recorded. Fails when it failed on the disk (outcome unknown); a
/// conflict is a definite answer, `Ok`.
async fn put(
    sim: &Shared,
    store: &Store,
    key: &str,
    op: u64,
    len: usize,
    cond: Cond,
    known: Known,
) -> Result<(), StoreError> {
    let result = store.put(NS, key, value(key, op, len), cond).await;
    let mut model = sim.model.lock().unwrap();
    let floor = model.floor;
    let expected_ok = match cond {
        Cond::Any => true,
        Cond::Absent => known == Known::Absent,
        Cond::Version(v) => known.version() == Some(v),
    };
    match result {
        Ok(version) => {
            assert!(expected_ok, "put {key} if {cond:?} succeeded over {known:?}");
            assert!(
                version > floor,
                "put {key}: version {version} is not above every version seen before the last reopen ({floor})"
            );
            assert!(
                model.versions.insert(version),
                "put {key}: version {version} handed out twice"
            );
            let entry = model.keys.get_mut(key).expect("a known key");
            if entry.0.version().is_none_or(|v| v < version) {
                entry.0 = Known::Present(version, op);
            }
            Ok(())
        }
        Err(StoreError::Conflict { current }) => {
            // A burst's other puts may move the version on; only a lone write is exact.
            if !matches!(cond, Cond::Any) {
                assert!(!expected_ok, "put {key} if {cond:?} conflicted over {known:?}");
                assert_eq!(
                    current,
                    known.version(),
                    "put {key}: the conflict names another version"
                );
            }
            Ok(())
        }
        Err(e) => {
            uncertain(&mut model, key, Uncertain::Put(op), &e);
            Err(e)
        }
    }
}

async fn delete(sim: &Shared, store: &Store, key: &str, cond: Cond, known: Known) -> Result<(), StoreError> {
    let result = store.delete(NS, key, cond).await;
    let mut model = sim.model.lock().unwrap();
    match result {
        Ok(existed) => {
            assert_eq!(existed, known != Known::Absent, "delete {key}: existed? over {known:?}");
            model.keys.get_mut(key).expect("a known key").0 = Known::Absent;
            Ok(())
        }
        Err(StoreError::Conflict { current }) => {
            panic!("delete {key} if {cond:?} conflicted ({current:?}) over {known:?}")
        }
        Err(e) => {
            uncertain(&mut model, key, Uncertain::Delete, &e);
            Err(e)
        }
    }
}

fn uncertain(model: &mut Model, key: &str, write: Uncertain, e: &StoreError) {
    assert!(
        matches!(e, StoreError::Io(_) | StoreError::Closed),
        "{key}: unexpected error {e}"
    );
    model.keys.get_mut(key).expect("a known key").1.push(write);
}

/// After a reopen: each key holds its last acknowledged state, or a later unacknowledged
/// write; versions are unique; a listing agrees. What is found becomes the known state.
async fn check(sim: &Shared, store: &Store, when: &str) {
    let mut found = BTreeMap::new();
    let keys: Vec<String> = sim.model.lock().unwrap().keys.keys().cloned().collect();
    for key in keys {
        let got = store
            .get(NS, &key)
            .await
            .unwrap_or_else(|e| panic!("{when}: get {key}: {e}"));
        let mut model = sim.model.lock().unwrap();
        let (known, uncertain) = model.keys[&key].clone();
        let now = match got {
            None => {
                let deleted = uncertain.iter().any(|u| matches!(u, Uncertain::Delete));
                assert!(
                    known == Known::Absent || deleted,
                    "{when}: {key} is gone, but its last acknowledged write was {known:?}"
                );
                Known::Absent
            }
            Some(e) => {
                let op = op_of(&key, &e.value)
                    .unwrap_or_else(|| panic!("{when}: {key}: a damaged value at version {}", e.version));
                let now = Known::Present(e.version, op);
                if now != known {
                    let later = uncertain.iter().any(|u| matches!(u, Uncertain::Put(o) if *o == op));
                    assert!(
                        later && known.version().is_none_or(|v| v < e.version),
                        "{when}: {key} holds {now:?}, neither its last acknowledged write {known:?} nor a later one"
                    );
                    assert!(
                        model.versions.insert(e.version),
                        "{when}: {key}: version {} of an unacknowledged write was acknowledged for another",
                        e.version
                    );
                }
                now
            }
        };
        model.keys.insert(key.clone(), (now, Vec::new()));
        if let Known::Present(v, _) = now {
            found.insert(key, v);
        }
    }
    let page = store
        .list(NS, "", None, 1000)
        .await
        .unwrap_or_else(|e| panic!("{when}: list: {e}"));
    let listed: BTreeMap<String, u64> = page.items.into_iter().map(|i| (i.key, i.version)).collect();
    assert_eq!(listed, found, "{when}: the listing disagrees with the reads");
    let mut model = sim.model.lock().unwrap();
    model.floor = model.versions.last().copied().unwrap_or(0);
}

/// The fsyncgate lesson: once a sync of the log failed, the store answers no write as
/// done — not even after a later sync would succeed — until it is reopened, and says
/// why; reads go on and never show the failed write. After a power cut, what was
/// acknowledged is there, and no acknowledged version is handed out again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_log_sync_refuses_every_later_write_until_the_store_is_reopened() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let disk = FaultDisk::new(tmp.path(), 7);
    let store = Store::open_on(&dir, StoreConfig::default(), disk.clone()).unwrap();
    let mut acked = Vec::new();
    for i in 0..20 {
        acked.push(
            store
                .put(NS, &format!("k{i}"), value("k", i, 50), Cond::Any)
                .await
                .unwrap(),
        );
    }
    let last = *acked.last().unwrap();

    disk.fail_sync(0, "wal/0.log");
    let failed = store
        .put(NS, "lost", value("lost", 99, 50), Cond::Any)
        .await
        .unwrap_err();
    assert!(
        matches!(&failed, StoreError::Io(r) if r.contains("write-ahead log")),
        "{failed}"
    );
    for _ in 0..2 {
        let again = store.put(NS, "k0", value("k0", 100, 50), Cond::Any).await.unwrap_err();
        assert!(
            matches!(&again, StoreError::Io(r) if r.contains("reopen the store")),
            "{again}"
        );
    }
    assert!(store.delete(NS, "k1", Cond::Any).await.is_err());
    assert_eq!(
        store.get(NS, "lost").await.unwrap(),
        None,
        "a failed write is never visible"
    );
    assert_eq!(store.get(NS, "k0").await.unwrap().unwrap().version, acked[0]);

    store.close();
    drop(store);
    disk.power_cut();
    let disk = disk.restart();
    let store = Store::open_on(&dir, StoreConfig::default(), disk).unwrap();
    for (i, version) in acked.iter().enumerate() {
        let got = store.get(NS, &format!("k{i}")).await.unwrap().expect("acknowledged");
        assert_eq!(got.version, *version);
    }
    let next = store
        .put(NS, "after", value("after", 101, 50), Cond::Any)
        .await
        .unwrap();
    assert!(
        next > last,
        "version {next} after the reopen, {last} acknowledged before"
    );
}

/// Seeds of the bit flip test.
const FLIP_SEEDS: u64 = 12;

/// Bits flipped on the medium (in the log or the database) are never served as a value:
/// what a read returns is intact, and an acknowledged write lost to the damage is
/// reported (the store's recovery, an error from open or from the read).
#[test]
fn flipped_bits_are_never_served_and_every_loss_is_reported() {
    for seed in 1..=FLIP_SEEDS {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
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
    use strata_os::disk::Disk;

    let mut rng = Rng(seed ^ 0xf11b);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let disk = FaultDisk::new(tmp.path(), seed);
    let store = Store::open_on(&dir, StoreConfig::default(), disk.clone()).unwrap();
    let mut acked = BTreeMap::new();
    for op in 0..40 {
        let key = format!("k{}", rng.below(25));
        let version = store
            .put(NS, &key, value(&key, op, rng.below(300) as usize), Cond::Any)
            .await
            .unwrap();
        acked.insert(key, (version, op));
    }
    // Half the time, the last writes are still only in the log; else all in the database.
    if rng.chance(50) {
        store.close();
    }
    disk.power_cut();
    drop(store);
    let disk = disk.restart();

    let files: Vec<PathBuf> = disk
        .files()
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| p.starts_with(&dir))
        .collect();
    for _ in 0..1 + rng.below(2) {
        let path = &files[rng.below(files.len() as u64) as usize];
        let data = disk.read(path).unwrap();
        let written = data.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1) as u64;
        if written > 0 {
            disk.flip_bit(path, rng.below(written * 8)).unwrap();
        }
    }

    let opened = std::panic::catch_unwind(|| Store::open_on(&dir, StoreConfig::default(), disk.clone()));
    let Ok(Ok(store)) = opened else {
        return; // refused (an error, or a panic the node turns into one): reported
    };
    let recovery = store.recovery();
    let reported = !recovery.lost_batches.is_empty() || recovery.torn_tail;
    // What `ps` shows says so too.
    assert_eq!(reported, !recovery.describe().is_empty(), "{recovery:?}");
    for (key, (version, op)) in &acked {
        match store.get(NS, key).await {
            Err(_) => {} // reported
            Ok(Some(e)) => {
                let got = op_of(key, &e.value).expect("a damaged value was served");
                assert!(
                    (e.version, got) == (*version, *op) || reported,
                    "{key}: version {} of write {got} served, {version} of {op} acknowledged, nothing reported",
                    e.version
                );
            }
            Ok(None) => assert!(
                reported,
                "{key}: acknowledged, lost with nothing reported ({recovery:?})"
            ),
        }
    }
}
