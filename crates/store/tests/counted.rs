//! `Counted`: a backend's operations counted and its writes timed, as `/v1/metrics`
//! reads them for the JetStream store. Over the embedded store here (real files in a
//! temp dir); the figures are Counted's own, not the embedded store's.

use bytes::Bytes;
use strata_store::{Cond, Counted, Store, StoreBackend, StoreError, READ_KINDS, WRITE_KINDS};

#[tokio::test]
async fn operations_are_counted_and_decided_writes_timed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Counted::new(Store::open(dir.path()).unwrap());
    store.put("ns", "k", Bytes::from_static(b"1"), Cond::Any).await.unwrap();
    // Refused by its condition: decided, so counted and timed.
    let refused = store.put("ns", "k", Bytes::from_static(b"2"), Cond::Absent).await;
    assert!(matches!(refused, Err(StoreError::Conflict { .. })), "{refused:?}");
    // Refused before it was tried (a bad key): not counted.
    assert!(store.put("ns", "", Bytes::new(), Cond::Any).await.is_err());
    assert_eq!(store.get("ns", "k").await.unwrap().unwrap().value, &b"1"[..]);
    store.list("ns", "", None, 10).await.unwrap();
    let body: strata_store::BlobBody = Box::new(&b"blob"[..]);
    store.put_blob("ns", "b", "text/plain", body, Cond::Any).await.unwrap();
    assert!(store.delete("ns", "k", Cond::Any).await.unwrap());

    let f = store.figures().expect("Counted always has figures");
    let by_kind = |kinds: &[&str], counts: &[u64]| -> Vec<(String, u64)> {
        kinds
            .iter()
            .map(|k| k.to_string())
            .zip(counts.iter().copied())
            .collect()
    };
    assert_eq!(
        by_kind(&WRITE_KINDS, &f.writes),
        by_kind(&WRITE_KINDS, &[2, 1, 1, 0]),
        "put twice (one refused), delete, put_blob"
    );
    assert_eq!(by_kind(&READ_KINDS, &f.reads), by_kind(&READ_KINDS, &[1, 1, 0, 0]));
    assert_eq!(f.commits, 4, "one timed write each");
    assert_eq!(f.commit_time.count(), 4);
    assert_eq!(store.kind(), "embedded");
    store.close();
}
