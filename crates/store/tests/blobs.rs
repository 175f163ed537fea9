//! Blobs: round trips, metadata, conditions, listing, replacing under a reader, and the
//! cleanup of files left by cut-short uploads. Real files in a temp dir.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use sha2::{Digest, Sha256};
use strata_store::{ChangeKind, Cond, Store, StoreError};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

fn sha_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

async fn read_all(mut f: tokio::fs::File) -> Vec<u8> {
    let mut out = Vec::new();
    f.read_to_end(&mut out).await.unwrap();
    out
}

fn blob_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Waits until the blobs directory holds `n` files: replaced and deleted bodies are
/// removed by the applier, shortly after the write is answered.
async fn settles_at(dir: &Path, n: usize) -> bool {
    for _ in 0..200 {
        if blob_files(dir).len() == n {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    false
}

/// The round trip itself is in the conformance suite; here, what it leaves on disk.
#[tokio::test]
async fn a_stored_blob_is_one_body_file_with_no_temporary_left() {
    let (dir, store) = open();
    let body: Vec<u8> = (0..1_000_003u32).map(|i| (i % 251) as u8).collect();
    let meta = store
        .put_blob("app", "img/cat.png", "image/png", &body[..], Cond::Any)
        .await
        .unwrap();
    assert_eq!(meta.etag, sha_hex(&body));
    assert_eq!(store.head_blob("app", "img/cat.png").await.unwrap(), Some(meta));
    assert_eq!(blob_files(dir.path()).len(), 1, "one body file, no temporary left");
}

#[tokio::test]
async fn replacing_and_deleting_keep_what_an_open_reader_reads() {
    let (dir, store) = open();
    let mut rx = store.subscribe();
    let m1 = store
        .put_blob("app", "doc", "text/plain", &b"first body"[..], Cond::Any)
        .await
        .unwrap();
    let (_, reader) = store.get_blob("app", "doc").await.unwrap().unwrap();

    let m2 = store
        .put_blob("app", "doc", "text/plain", &b"second"[..], Cond::Version(m1.version))
        .await
        .unwrap();
    assert!(m2.version > m1.version);
    assert!(settles_at(dir.path(), 1).await, "the replaced body is removed");
    assert_eq!(read_all(reader).await, b"first body", "the open reader keeps its body");
    let (_, reader) = store.get_blob("app", "doc").await.unwrap().unwrap();

    // Stale condition: refused before the body is read, and nothing is left behind.
    let e = store
        .put_blob("app", "doc", "text/plain", &b"third"[..], Cond::Version(m1.version))
        .await
        .unwrap_err();
    assert_eq!(
        e,
        StoreError::Conflict {
            current: Some(m2.version)
        }
    );
    let e = store
        .put_blob("app", "doc", "", &b"x"[..], Cond::Absent)
        .await
        .unwrap_err();
    assert_eq!(
        e,
        StoreError::Conflict {
            current: Some(m2.version)
        }
    );
    assert_eq!(
        store
            .delete_blob("app", "doc", Cond::Version(m1.version))
            .await
            .unwrap_err(),
        StoreError::Conflict {
            current: Some(m2.version)
        }
    );

    assert!(store
        .delete_blob("app", "doc", Cond::Version(m2.version))
        .await
        .unwrap());
    assert!(!store.delete_blob("app", "doc", Cond::Any).await.unwrap());
    assert!(store.get_blob("app", "doc").await.unwrap().is_none());
    assert!(settles_at(dir.path(), 0).await, "the deleted body is removed");
    assert_eq!(read_all(reader).await, b"second");

    let kinds: Vec<_> = (0..3)
        .map(|_| rx.try_recv().unwrap())
        .map(|c| (c.kind, c.deleted))
        .collect();
    assert_eq!(
        kinds,
        [
            (ChangeKind::Blob, false),
            (ChangeKind::Blob, false),
            (ChangeKind::Blob, true)
        ]
    );
}

#[tokio::test]
async fn blob_conditions_race_and_only_one_create_wins() {
    let (dir, store) = open();
    let store = std::sync::Arc::new(store);
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let body = vec![i as u8; 100_000];
            store.put_blob("app", "once", "", &body[..], Cond::Absent).await
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => won += 1,
            Err(StoreError::Conflict { current: Some(_) }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(blob_files(dir.path()).len(), 1, "losers' bodies are removed");
}

/// A body that fails after some bytes, like a client that disconnects.
struct Failing {
    left: usize,
}

impl AsyncRead for Failing {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.left == 0 {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionReset, "client went away")));
        }
        let n = self.left.min(buf.remaining()).min(100_000);
        buf.put_slice(&vec![1; n]);
        self.left -= n;
        Poll::Ready(Ok(()))
    }
}

/// A body that never ends.
struct Stalled;

impl AsyncRead for Stalled {
    fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, _: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Poll::Pending
    }
}

#[tokio::test]
async fn a_cut_short_upload_writes_nothing_and_leaves_no_file() {
    let (dir, store) = open();
    store.put_blob("app", "b", "", &b"old"[..], Cond::Any).await.unwrap();
    let e = store
        .put_blob("app", "b", "", Failing { left: 3 << 20 }, Cond::Any)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Body(_)), "{e:?}");

    // A dropped upload (the caller's future cancelled mid-body).
    let dropped = tokio::time::timeout(
        std::time::Duration::from_millis(200),
        store.put_blob(
            "app",
            "b",
            "",
            tokio::io::AsyncReadExt::chain(&[7u8; 1 << 20][..], Stalled),
            Cond::Any,
        ),
    )
    .await;
    assert!(dropped.is_err());

    let (_, f) = store.get_blob("app", "b").await.unwrap().unwrap();
    assert_eq!(read_all(f).await, b"old");
    // The blocking side notices the abandoned upload and removes its temporary file.
    assert!(settles_at(dir.path(), 1).await);
}

#[tokio::test]
async fn open_removes_temporary_and_orphaned_files() {
    let dir = tempfile::tempdir().unwrap();
    let kept = {
        let store = Store::open(dir.path()).unwrap();
        store
            .put_blob("app", "keep", "", &b"kept"[..], Cond::Any)
            .await
            .unwrap()
    };
    let before = blob_files(dir.path());
    // What a crash can leave: an upload's temporary file, a body renamed into place
    // whose metadata never committed.
    std::fs::write(dir.path().join("blobs/tmp-1234-0"), b"partial").unwrap();
    std::fs::write(
        dir.path().join("blobs/0123456789abcdef0123456789abcdef-99-1"),
        b"orphan",
    )
    .unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(blob_files(dir.path()), before);
    let (meta, f) = store.get_blob("app", "keep").await.unwrap().unwrap();
    assert_eq!(meta, kept);
    assert_eq!(read_all(f).await, b"kept");
}
