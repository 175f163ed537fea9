//! The blob size cap (`StoreConfig::max_blob_bytes`, `store.max_blob_bytes` in the
//! manifest): blobs had no bound, so one upload could fill the disk. A body past the cap
//! is refused while it streams (a body that never ends included), names the limit, and
//! leaves nothing: no file, no metadata, the blob it would have replaced intact.

use std::path::Path;

use strata_store::{Cond, Store, StoreConfig, StoreError};
use tokio::io::AsyncReadExt;

const LIMIT: u64 = (1 << 20) + 10;

fn open(dir: &Path) -> Store {
    Store::open_with(
        dir,
        StoreConfig {
            max_blob_bytes: LIMIT,
            ..StoreConfig::default()
        },
    )
    .unwrap()
}

fn blob_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_past_the_cap_is_refused_while_it_streams_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let at_limit = vec![7u8; LIMIT as usize];
    let meta = store
        .put_blob("ns", "kept", "", &at_limit[..], Cond::Any)
        .await
        .expect("a blob of exactly the cap is taken");
    assert_eq!(meta.size, LIMIT);
    let files = blob_files(dir.path());
    assert_eq!(files.len(), 1);

    // One byte over.
    let over = vec![1u8; LIMIT as usize + 1];
    let e = store
        .put_blob("ns", "over", "", &over[..], Cond::Any)
        .await
        .unwrap_err();
    assert_eq!(e, StoreError::BlobTooLarge { limit: LIMIT });
    assert!(
        e.to_string().contains("limit of 1048586 bytes (store.max_blob_bytes"),
        "{e}"
    );
    // A body that never ends: refused once past the cap, not read forever.
    let endless = tokio::io::repeat(b'x');
    let e = store.put_blob("ns", "kept", "", endless, Cond::Any).await.unwrap_err();
    assert_eq!(e, StoreError::BlobTooLarge { limit: LIMIT });

    // Nothing of either is left; the blob the second would have replaced is intact.
    assert_eq!(blob_files(dir.path()), files);
    assert!(store.head_blob("ns", "over").await.unwrap().is_none());
    let (meta, mut body) = store.get_blob("ns", "kept").await.unwrap().expect("kept");
    assert_eq!(meta.size, LIMIT);
    let mut read = Vec::new();
    body.read_to_end(&mut read).await.unwrap();
    assert_eq!(read, at_limit);
    store.close();
    drop(store);
    // Nor after a restart.
    let store = open(dir.path());
    assert!(store.head_blob("ns", "over").await.unwrap().is_none());
    assert_eq!(blob_files(dir.path()), files);
}

#[test]
fn the_default_cap_is_five_gib() {
    assert_eq!(StoreConfig::default().max_blob_bytes, 5 << 30);
}
