//! The JetStream store while a nats-server dies: eight writers do compare-and-set
//! increments on shared counters and put blobs while the leader of the values' stream
//! is killed with SIGKILL and, 20 s later, restarted. Writes go on with two servers of
//! three (once a new leader is elected and the requests to the dead one have timed out:
//! 5 to 10 s here); every acknowledged increment and blob is there afterwards, and the
//! change feed goes on.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use strata_cluster::{JetStreamStore, JetStreamStoreConfig};
use strata_store::{BlobBody, Cond, StoreBackend, StoreError};
use strata_testkit::nats::{nats_server, NatsCluster};
use tokio::io::AsyncReadExt;

const WRITERS: usize = 8;
const COUNTERS: usize = 4;
const NS: &str = "app/crash";

/// What one writer saw acknowledged, and how many writes it could not tell.
#[derive(Default)]
struct Record {
    /// (counter, the value its acknowledged increment wrote).
    increments: Vec<(usize, u64)>,
    /// Increments acknowledged while a server was down, and when the first was.
    while_down: usize,
    first_while_down: Option<Instant>,
    /// Increments answered with an error other than a conflict: stored or not.
    unknown_increments: BTreeMap<usize, u64>,
    /// (name, ETag, size) of acknowledged blob puts.
    blobs: Vec<(String, String, u64)>,
    unknown_blobs: usize,
}

fn body(writer: usize, n: usize) -> Vec<u8> {
    let size = (n * 7919 + writer * 104_729) % 300_000;
    (0..size)
        .map(|j| (j as u64 * 31 + (writer * 7 + n) as u64) as u8)
        .collect()
}

fn sha_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

async fn connect(urls: &str) -> async_nats::jetstream::Context {
    let servers: Vec<String> = urls.split(',').map(String::from).collect();
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(servers.as_slice())
        .await
        .expect("connect to the test cluster");
    async_nats::jetstream::new(client)
}

async fn open(js: &async_nats::jetstream::Context) -> JetStreamStore {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match JetStreamStore::open(js, "crash", 3, JetStreamStoreConfig::default()).await {
            Ok(store) => return store,
            Err(e) if Instant::now() < deadline => {
                eprintln!("store not open yet: {e:#}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("open the JetStream store: {e:#}"),
        }
    }
}

/// Where the test is: 0 all servers up, 1 one killed, 2 restarted.
type Phase = Arc<AtomicU8>;

async fn writer(store: Arc<JetStreamStore>, w: usize, stop: Arc<AtomicBool>, phase: Phase) -> Record {
    let mut record = Record::default();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let counter = (w + n) % COUNTERS;
        let key = format!("counter/{counter}");
        // One increment: read, then write over the version read; again on a conflict.
        let current = match store.get(NS, &key).await {
            Ok(Some(e)) => e,
            Ok(None) => panic!("{key} vanished"),
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let value: u64 = std::str::from_utf8(&current.value).unwrap().parse().unwrap();
        let next = Bytes::from((value + 1).to_string());
        match store.put(NS, &key, next, Cond::Version(current.version)).await {
            Ok(_) => {
                record.increments.push((counter, value + 1));
                if phase.load(Ordering::Relaxed) == 1 {
                    record.first_while_down.get_or_insert_with(Instant::now);
                    record.while_down += 1;
                }
            }
            Err(StoreError::Conflict { .. }) => {}
            Err(_) => *record.unknown_increments.entry(counter).or_default() += 1,
        }
        if n % 4 == 0 {
            let data = body(w, n);
            let name = format!("w{w}/{n}");
            let reader: BlobBody = Box::new(std::io::Cursor::new(data.clone()));
            match store.put_blob(NS, &name, "application/x-test", reader, Cond::Any).await {
                Ok(meta) => {
                    assert_eq!(meta.etag, sha_hex(&data));
                    record.blobs.push((name, meta.etag, meta.size));
                }
                Err(_) => record.unknown_blobs += 1,
            }
        }
    }
    record
}

/// The index of the server leading `stream` (servers are named `n0`, `n1`, ...).
async fn leader(js: &async_nats::jetstream::Context, stream: &str) -> usize {
    let stream = js.get_stream(stream).await.expect("stream info");
    let leader = stream
        .cached_info()
        .cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .expect("a leader");
    leader.trim_start_matches('n').parse().expect("a server named nI")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_increments_and_blobs_survive_a_killed_server() {
    if !strata_testkit::needs("store_crash", nats_server()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut nats = NatsCluster::start(dir.path(), 3);
    let js = connect(&nats.urls()).await;
    let store = Arc::new(open(&js).await);
    for c in 0..COUNTERS {
        store
            .put(NS, &format!("counter/{c}"), Bytes::from("0"), Cond::Absent)
            .await
            .unwrap();
    }
    let mut changes = store.subscribe();

    let stop = Arc::new(AtomicBool::new(false));
    let phase = Phase::default();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(writer(store.clone(), w, stop.clone(), phase.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let killed = leader(&js, "KV_crash_kv").await;
    nats.kill(killed);
    let killed_at = Instant::now();
    phase.store(1, Ordering::Relaxed);
    eprintln!("killed n{killed}, the leader of the values");
    tokio::time::sleep(Duration::from_secs(20)).await;
    phase.store(2, Ordering::Relaxed);
    nats.restart(killed);
    eprintln!("restarted n{killed}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::Relaxed);
    let mut records = Vec::new();
    for w in writers {
        records.push(w.await.unwrap());
    }

    // Every counter holds at least every acknowledged increment, and at most those and
    // the ones whose answer was lost; no two acknowledged increments wrote one value.
    let mut acked = 0;
    for c in 0..COUNTERS {
        let key = format!("counter/{c}");
        let value: u64 = std::str::from_utf8(&store.get(NS, &key).await.unwrap().unwrap().value)
            .unwrap()
            .parse()
            .unwrap();
        let written: Vec<u64> = records
            .iter()
            .flat_map(|r| r.increments.iter().filter(|(k, _)| *k == c).map(|(_, v)| *v))
            .collect();
        let distinct: BTreeSet<u64> = written.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            written.len(),
            "{key}: two acknowledged increments wrote one value"
        );
        let unknown: u64 = records
            .iter()
            .map(|r| r.unknown_increments.get(&c).copied().unwrap_or(0))
            .sum();
        let n = written.len() as u64;
        assert!(
            n <= value && value <= n + unknown,
            "{key} is {value}: {n} acknowledged increments, {unknown} unknown"
        );
        assert!(written.iter().all(|v| *v <= value), "{key}");
        acked += n;
    }

    // Every acknowledged blob reads back whole.
    let mut blobs = 0;
    for r in &records {
        for (name, etag, size) in &r.blobs {
            let (meta, mut reader) = store.get_blob(NS, name).await.unwrap().expect(name);
            assert_eq!((&meta.etag, meta.size), (etag, *size), "{name}");
            let mut data = Vec::new();
            reader.read_to_end(&mut data).await.unwrap();
            assert_eq!(&sha_hex(&data), etag, "{name}");
            blobs += 1;
        }
    }
    let mut listed = 0;
    let mut after: Option<String> = None;
    loop {
        let page = store.list_blobs(NS, "w", after.as_deref(), 1000).await.unwrap();
        listed += page.items.len();
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert!(listed >= blobs, "{listed} blobs listed, {blobs} acknowledged");
    let unknown: u64 = records.iter().flat_map(|r| r.unknown_increments.values()).sum();
    let unknown_blobs: usize = records.iter().map(|r| r.unknown_blobs).sum();
    let while_down: usize = records.iter().map(|r| r.while_down).sum();
    eprintln!(
        "{acked} acknowledged increments ({while_down} while a server was down, {unknown} unknown), \
         {blobs} acknowledged blobs ({unknown_blobs} unknown), all there"
    );
    assert!(
        acked >= 20 && blobs >= 5,
        "too little was written: {acked} increments, {blobs} blobs"
    );
    assert!(while_down > 0, "no write was acknowledged while a server was down");
    let resumed = records.iter().filter_map(|r| r.first_while_down).min().unwrap();
    eprintln!(
        "the first increment after the kill was acknowledged {:?} after it",
        resumed - killed_at
    );

    // The change feed lived through it: a write now is seen.
    let v = store.put(NS, "after", Bytes::from("x"), Cond::Any).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, changes.recv()).await {
            Ok(Ok(c)) if c.key == "after" => {
                assert_eq!(c.version, v);
                break;
            }
            Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(e)) => panic!("the change feed ended: {e}"),
            Err(_) => panic!("the change feed did not see a write after the restart"),
        }
    }
    store.close();
}
