//! What only the JetStream store shows, beyond the conformance suite: what becomes of
//! blob bodies (over the cap, refused by a condition, replaced while read, left by an
//! upload cut short) and the limits a NATS message sets. One three-server cluster for
//! the whole binary.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::TryStreamExt;
use strata_cluster::{JetStreamStore, JetStreamStoreConfig};
use strata_store::{BlobBody, Cond, StoreBackend, StoreError};
use strata_testkit::nats::{nats_server, NatsCluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn cluster() -> &'static NatsCluster {
    static CLUSTER: OnceLock<NatsCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| NatsCluster::start_for_process(3))
}

async fn connect() -> async_nats::jetstream::Context {
    let urls = tokio::task::block_in_place(|| cluster().urls());
    let servers: Vec<String> = urls.split(',').map(String::from).collect();
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(servers.as_slice())
        .await
        .expect("connect to the test cluster");
    async_nats::jetstream::new(client)
}

fn fresh_prefix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("js{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

async fn open(js: &async_nats::jetstream::Context, prefix: &str, config: JetStreamStoreConfig) -> JetStreamStore {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match JetStreamStore::open(js, prefix, 3, config.clone()).await {
            Ok(store) => return store,
            Err(e) if Instant::now() < deadline => {
                eprintln!("store not open yet: {e:#}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("open the JetStream store: {e:#}"),
        }
    }
}

/// The objects of the store's blob bucket (bodies, finished or not).
async fn objects(js: &async_nats::jetstream::Context, prefix: &str) -> Vec<String> {
    let bucket = js.get_object_store(format!("{prefix}_blobs")).await.unwrap();
    let list = bucket.list().await.unwrap();
    list.map_ok(|info| info.name).try_collect().await.unwrap()
}

/// Messages left in the blob bucket's stream (chunks and object infos).
async fn blob_messages(js: &async_nats::jetstream::Context, prefix: &str) -> u64 {
    let mut stream = js.get_stream(format!("OBJ_{prefix}_blobs")).await.unwrap();
    stream.info().await.unwrap().state.messages
}

fn bytes_of(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed)).collect()
}

fn body_of(data: &[u8]) -> BlobBody {
    Box::new(std::io::Cursor::new(data.to_vec()))
}

macro_rules! needs_nats {
    ($name:literal) => {
        if !strata_testkit::needs($name, nats_server()) {
            return;
        }
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_over_the_cap_leaves_nothing() {
    needs_nats!("a_blob_over_the_cap_leaves_nothing");
    let js = connect().await;
    let prefix = fresh_prefix();
    let config = JetStreamStoreConfig {
        max_blob_bytes: 300_000,
        ..Default::default()
    };
    let store = open(&js, &prefix, config).await;
    // Two chunks of 128 KiB are stored before the byte past the cap arrives.
    let err = store
        .put_blob("app", "big", "", body_of(&bytes_of(400_000, 1)), Cond::Any)
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::BlobTooLarge { limit: 300_000 });
    assert_eq!(blob_messages(&js, &prefix).await, 0);
    assert!(store.get_blob("app", "big").await.unwrap().is_none());
    // Exactly the cap is fine.
    let meta = store
        .put_blob("app", "big", "", body_of(&bytes_of(300_000, 1)), Cond::Any)
        .await
        .unwrap();
    assert_eq!(meta.size, 300_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_is_capped_by_what_a_nats_message_carries() {
    needs_nats!("a_value_is_capped_by_what_a_nats_message_carries");
    let js = connect().await;
    let store = open(&js, &fresh_prefix(), JetStreamStoreConfig::default()).await;
    assert_eq!(store.kind(), "jetstream");
    assert_eq!(store.failure(), None);
    // The test servers keep NATS's default max_payload of 1 MiB.
    let limit = (1 << 20) - 1024;
    let err = store
        .put("app", "k", Bytes::from(vec![0u8; limit + 1]), Cond::Any)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::TooLarge {
            size: limit as u64 + 1,
            limit: limit as u64
        }
    );
    let v = store
        .put("app", "k", Bytes::from(vec![7u8; limit]), Cond::Any)
        .await
        .unwrap();
    let entry = store.get("app", "k").await.unwrap().unwrap();
    assert_eq!((entry.version, entry.value.len()), (v, limit));
    let page = store.list("app", "", None, 10).await.unwrap();
    assert_eq!(page.items[0].size, limit as u64);
    // Closed: every call says so.
    store.close();
    assert_eq!(store.get("app", "k").await.unwrap_err(), StoreError::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_keeps_its_body_through_a_replace_and_a_refused_write_leaves_nothing() {
    needs_nats!("a_reader_keeps_its_body_through_a_replace_and_a_refused_write_leaves_nothing");
    let js = connect().await;
    let prefix = fresh_prefix();
    let config = JetStreamStoreConfig {
        reader_grace: Duration::from_secs(5),
        ..Default::default()
    };
    let store = open(&js, &prefix, config).await;
    let old = bytes_of(1_000_000, 3);
    let v0 = store
        .put_blob("app", "b", "", body_of(&old), Cond::Any)
        .await
        .unwrap()
        .version;
    let (_, mut reader) = store.get_blob("app", "b").await.unwrap().unwrap();
    let mut got = vec![0u8; 1000];
    reader.read_exact(&mut got).await.unwrap();

    // A write over v0 whose body is still streaming when another write replaces v0:
    // its condition fails at the metadata write, and its body is removed.
    let store = std::sync::Arc::new(store);
    let (mut tx, rx) = tokio::io::duplex(64 << 10);
    let racing = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .put_blob("app", "b", "", Box::new(rx) as BlobBody, Cond::Version(v0))
                .await
        })
    };
    tx.write_all(&bytes_of(200_000, 4)).await.unwrap();
    let v1 = store
        .put_blob("app", "b", "", body_of(&bytes_of(500, 5)), Cond::Any)
        .await
        .unwrap()
        .version;
    // The reader that opened v0 reads all of it, replaced as it is.
    reader.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, old);
    drop(tx);
    assert_eq!(
        racing.await.unwrap().unwrap_err(),
        StoreError::Conflict { current: Some(v1) }
    );

    // After the grace only the current body is left.
    let deadline = Instant::now() + Duration::from_secs(30);
    while objects(&js, &prefix).await.len() > 1 {
        assert!(Instant::now() < deadline, "the replaced body was not removed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (meta, mut reader) = store.get_blob("app", "b").await.unwrap().unwrap();
    let mut now = Vec::new();
    reader.read_to_end(&mut now).await.unwrap();
    assert_eq!((now, meta.size), (bytes_of(500, 5), 500));
    // A delete leaves nothing either, once the grace is over.
    assert!(store.delete_blob("app", "b", Cond::Any).await.unwrap());
    while blob_messages(&js, &prefix).await > 0 {
        assert!(Instant::now() < deadline, "the deleted body was not removed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_at_open_removes_the_body_of_an_upload_cut_short() {
    needs_nats!("the_sweep_at_open_removes_the_body_of_an_upload_cut_short");
    let js = connect().await;
    let prefix = fresh_prefix();
    let store = open(&js, &prefix, JetStreamStoreConfig::default()).await;
    let kept = bytes_of(200_000, 9);
    store
        .put_blob("app", "kept", "text/plain", body_of(&kept), Cond::Any)
        .await
        .unwrap();
    // An upload whose caller goes away midway: chunks stored, no metadata.
    let (mut tx, rx) = tokio::io::duplex(64 << 10);
    let cut = store.put_blob("app", "cut", "", Box::new(rx) as BlobBody, Cond::Any);
    let feed = async {
        tx.write_all(&bytes_of(400_000, 2)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    tokio::select! {
        _ = cut => panic!("the upload ended without its body's end"),
        _ = feed => {}
    }
    drop(tx);
    assert_eq!(objects(&js, &prefix).await.len(), 2);
    assert!(store.get_blob("app", "cut").await.unwrap().is_none());
    store.close();

    // Young leftovers may be an upload in progress elsewhere: kept.
    let store = open(&js, &prefix, JetStreamStoreConfig::default()).await;
    assert_eq!(objects(&js, &prefix).await.len(), 2);
    store.close();
    // Old enough: removed; what metadata refers to stays.
    let config = JetStreamStoreConfig {
        sweep_age: Duration::ZERO,
        ..Default::default()
    };
    let store = open(&js, &prefix, config).await;
    assert_eq!(objects(&js, &prefix).await.len(), 1);
    let (meta, mut reader) = store.get_blob("app", "kept").await.unwrap().unwrap();
    let mut data = Vec::new();
    reader.read_to_end(&mut data).await.unwrap();
    assert_eq!((data, meta.content_type.as_str()), (kept, "text/plain"));
}

/// Stores sharing a feed (one per node of a cluster): each change reaches exactly one of
/// them, and changes made while none is open wait for the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_feed_hands_each_change_to_one_store() {
    let js = connect().await;
    let prefix = fresh_prefix();
    let shared = JetStreamStoreConfig {
        shared_feed: Some(format!("{prefix}-triggers")),
        ..JetStreamStoreConfig::default()
    };
    let a = open(&js, &prefix, shared.clone()).await;
    let b = open(&js, &prefix, shared.clone()).await;
    let (mut ra, mut rb) = (a.subscribe(), b.subscribe());
    let writer = open(&js, &prefix, JetStreamStoreConfig::default()).await;
    for i in 0..200 {
        writer
            .put("app/ns", &format!("k{i}"), Bytes::from("v"), Cond::Any)
            .await
            .unwrap();
    }
    writer
        .put_blob("app/ns", "blob", "", body_of(b"x"), Cond::Any)
        .await
        .unwrap();
    let mut seen = std::collections::BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen.values().map(|v: &Vec<char>| v.len()).sum::<usize>() < 201 {
        let (who, change) = tokio::select! {
            c = ra.recv() => ('a', c.unwrap()),
            c = rb.recv() => ('b', c.unwrap()),
            _ = tokio::time::sleep_until(deadline) => panic!("only {} changes arrived", seen.len()),
        };
        seen.entry((change.key, change.version))
            .or_insert_with(Vec::new)
            .push(who);
    }
    assert_eq!(seen.len(), 201, "every change once");
    assert!(seen.values().all(|v| v.len() == 1), "no change twice");
    // Nothing more arrives.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(ra.try_recv().is_err() && rb.try_recv().is_err());

    // With no store of the feed open, a change waits for the next one.
    a.close();
    b.close();
    drop((a, b));
    writer.delete("app/ns", "k0", Cond::Any).await.unwrap();
    let c = open(&js, &prefix, shared).await;
    let mut rc = c.subscribe();
    let change = tokio::time::timeout(Duration::from_secs(20), rc.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((change.key.as_str(), change.deleted), ("k0", true));
}

/// `ps` says where the store's data is: each of its three buckets' streams with its
/// three copies, the leader named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_names_the_servers_holding_each_bucket() {
    needs_nats!("the_store_names_the_servers_holding_each_bucket");
    let js = connect().await;
    let prefix = fresh_prefix();
    let store = open(&js, &prefix, JetStreamStoreConfig::default()).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let placement = loop {
        let lines = store.placement();
        if lines.len() == 3 && lines.iter().all(|l| l.contains("3 copies: ") && l.contains("(leader)")) {
            break lines;
        }
        assert!(
            Instant::now() < deadline,
            "three buckets with three copies each: {lines:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for (line, stream) in placement.iter().zip([
        format!("KV_{prefix}_kv"),
        format!("KV_{prefix}_blobmeta"),
        format!("OBJ_{prefix}_blobs"),
    ]) {
        assert!(line.starts_with(&format!("store bucket {stream}: ")), "{line}");
    }
}
