//! The store contract (`docs/state.md`) as a conformance suite: every check takes an
//! [`Open`] that makes a fresh, empty backend, so the same checks run against the
//! embedded store (`tests/conformance_embedded.rs`) and against any other implementation
//! of [`StoreBackend`] (a JetStream test includes this file with `#[path]`). What only
//! one backend can show (its files, crash recovery, group commit) is tested beside it.
#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use strata_store::{BlobBody, ChangeKind, Cond, StoreBackend, StoreError};
use tokio::io::AsyncReadExt;

/// Makes a fresh, empty backend; it keeps its resources (temp dirs, servers) alive.
pub trait Open: Sync {
    fn open(&self) -> Pin<Box<dyn Future<Output = Arc<dyn StoreBackend>> + Send + '_>>;
}

/// Every check, by name, for a runner that wants them all.
pub const CHECKS: [&str; 10] = [
    "put_then_get_returns_value_and_version",
    "compare_and_set_conflicts",
    "versions_increase_per_key",
    "only_one_of_racing_compare_and_sets_wins",
    "listing_pages_through_a_prefix_with_a_cursor",
    "namespaces_are_isolated",
    "the_change_feed_sees_committed_changes_in_version_order",
    "an_acknowledged_write_is_seen_by_every_later_read",
    "blobs_list_in_pages_per_namespace",
    "a_blob_round_trips_with_its_metadata",
];

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn body_of(data: &[u8]) -> BlobBody {
    Box::new(std::io::Cursor::new(data.to_vec()))
}

fn sha_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

async fn read_all(mut body: BlobBody) -> Vec<u8> {
    let mut out = Vec::new();
    body.read_to_end(&mut out).await.unwrap();
    out
}

pub async fn a_blob_round_trips_with_its_metadata(open: &dyn Open) {
    let store = open.open().await;
    let body: Vec<u8> = (0..1_000_003u32).map(|i| (i % 251) as u8).collect();
    let meta = store
        .put_blob("app", "img/cat.png", "image/png", body_of(&body), Cond::Any)
        .await
        .unwrap();
    assert_eq!(meta.size, body.len() as u64);
    assert_eq!(meta.etag, sha_hex(&body));
    assert_eq!(meta.content_type, "image/png");
    let (got, reader) = store.get_blob("app", "img/cat.png").await.unwrap().unwrap();
    assert_eq!(got, meta);
    assert_eq!(read_all(reader).await, body);

    // Empty body, default content type.
    let empty = store
        .put_blob("app", "empty", "", body_of(b""), Cond::Any)
        .await
        .unwrap();
    assert_eq!(empty.size, 0);
    assert_eq!(empty.etag, sha_hex(b""));
    assert_eq!(empty.content_type, "application/octet-stream");
    let (_, reader) = store.get_blob("app", "empty").await.unwrap().unwrap();
    assert!(read_all(reader).await.is_empty());

    assert!(store.get_blob("app", "nope").await.unwrap().is_none());
    assert!(store.get_blob("other", "img/cat.png").await.unwrap().is_none());
    assert!(matches!(
        store.put_blob("app", "x", "bad\ntype", body_of(b""), Cond::Any).await,
        Err(StoreError::BadInput(_))
    ));
    // A create-only write of a blob that exists is a conflict; a delete removes it.
    assert!(matches!(
        store.put_blob("app", "empty", "", body_of(b"x"), Cond::Absent).await,
        Err(StoreError::Conflict { current: Some(_) })
    ));
    assert!(store.delete_blob("app", "empty", Cond::Any).await.unwrap());
    assert!(store.get_blob("app", "empty").await.unwrap().is_none());
}

pub async fn put_then_get_returns_value_and_version(open: &dyn Open) {
    let store = open.open().await;
    assert_eq!(store.get("app", "k").await.unwrap(), None);
    let v = store.put("app", "k", b("hello"), Cond::Any).await.unwrap();
    let e = store.get("app", "k").await.unwrap().unwrap();
    assert_eq!(e.value, b("hello"));
    assert_eq!(e.version, v);
    assert!(e.updated_ms > 1_600_000_000_000);
}

pub async fn compare_and_set_conflicts(open: &dyn Open) {
    let store = open.open().await;
    let v1 = store.put("app", "k", b("1"), Cond::Absent).await.unwrap();

    // Absent on an existing key.
    let e = store.put("app", "k", b("x"), Cond::Absent).await.unwrap_err();
    assert_eq!(e, StoreError::Conflict { current: Some(v1) });

    // Version match, then the old version no longer matches.
    let v2 = store.put("app", "k", b("2"), Cond::Version(v1)).await.unwrap();
    assert!(v2 > v1);
    let e = store.put("app", "k", b("x"), Cond::Version(v1)).await.unwrap_err();
    assert_eq!(e, StoreError::Conflict { current: Some(v2) });

    // Version on a missing key.
    let e = store.put("app", "nope", b("x"), Cond::Version(v2)).await.unwrap_err();
    assert_eq!(e, StoreError::Conflict { current: None });

    // Delete with a stale version fails and deletes nothing; with the current one it works.
    let e = store.delete("app", "k", Cond::Version(v1)).await.unwrap_err();
    assert_eq!(e, StoreError::Conflict { current: Some(v2) });
    assert_eq!(store.get("app", "k").await.unwrap().unwrap().value, b("2"));
    assert!(store.delete("app", "k", Cond::Version(v2)).await.unwrap());
    assert_eq!(store.get("app", "k").await.unwrap(), None);

    // Deleting what is gone: Any answers false, Version is a conflict.
    assert!(!store.delete("app", "k", Cond::Any).await.unwrap());
    let e = store.delete("app", "k", Cond::Version(v2)).await.unwrap_err();
    assert_eq!(e, StoreError::Conflict { current: None });

    // Re-created after the delete: the version moved on, so a stale CAS cannot match.
    let v3 = store.put("app", "k", b("3"), Cond::Absent).await.unwrap();
    assert!(v3 > v2);
    assert!(store.put("app", "k", b("x"), Cond::Version(v2)).await.is_err());
}

pub async fn versions_increase_per_key(open: &dyn Open) {
    let store = open.open().await;
    let mut last = 0;
    for i in 0..50 {
        let v = store.put("app", "k", b(&i.to_string()), Cond::Any).await.unwrap();
        assert!(v > last, "version {v} after {last}");
        last = v;
        // Other keys in between do not break the order.
        store.put("app", &format!("other{i}"), b("x"), Cond::Any).await.unwrap();
    }
    assert_eq!(store.get("app", "k").await.unwrap().unwrap().version, last);
}

pub async fn only_one_of_racing_compare_and_sets_wins(open: &dyn Open) {
    let store = open.open().await;
    let v0 = store.put("app", "counter", b("0"), Cond::Any).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.put("app", "counter", b(&format!("{i}")), Cond::Version(v0)).await
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => won += 1,
            Err(StoreError::Conflict { current: Some(v) }) => assert!(v > v0),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(won, 1);
}

pub async fn listing_pages_through_a_prefix_with_a_cursor(open: &dyn Open) {
    let store = open.open().await;
    for i in 0..57 {
        store
            .put("app", &format!("user/{i:03}"), b(&"x".repeat(i)), Cond::Any)
            .await
            .unwrap();
    }
    // Keys around the prefix, in this namespace and others, must not show up.
    for k in ["user", "user.", "usea/1", "users/1", "zzz", "a"] {
        store.put("app", k, b("no"), Cond::Any).await.unwrap();
    }
    store.put("app2", "user/000", b("other ns"), Cond::Any).await.unwrap();
    store.put("ap", "puser/000", b("other ns"), Cond::Any).await.unwrap();

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = store.list("app", "user/", after.as_deref(), 10).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 10);
        for item in &page.items {
            let i: usize = item.key["user/".len()..].parse().unwrap();
            assert_eq!(item.size, i as u64);
            assert!(item.version > 0);
        }
        seen.extend(page.items.into_iter().map(|i| i.key));
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(pages, 6, "57 keys in pages of 10");
    let want: Vec<String> = (0..57).map(|i| format!("user/{i:03}")).collect();
    assert_eq!(seen, want, "every key once, in order");

    // A page that ends exactly at the last key says there is nothing more.
    let page = store.list("app", "user/", Some("user/046"), 10).await.unwrap();
    assert_eq!(page.items.len(), 10);
    assert_eq!(page.next, None);

    // No prefix: the whole namespace in byte order.
    let all = store.list("app", "", None, 1000).await.unwrap();
    assert_eq!(all.items.len(), 63);
    assert_eq!(all.items[0].key, "a");
    let keys: Vec<_> = all.items.iter().map(|i| i.key.clone()).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);

    // A cursor before the prefix starts at the prefix; one past it gives nothing.
    let page = store.list("app", "user/", Some("a"), 2).await.unwrap();
    assert_eq!(page.items[0].key, "user/000");
    let page = store.list("app", "user/", Some("v"), 2).await.unwrap();
    assert!(page.items.is_empty() && page.next.is_none());

    // Limits.
    assert!(matches!(
        store.list("app", "", None, 0).await,
        Err(StoreError::BadInput(_))
    ));
    assert_eq!(store.list("app", "", None, 1_000_000).await.unwrap().items.len(), 63);
}

pub async fn namespaces_are_isolated(open: &dyn Open) {
    let store = open.open().await;
    store.put("a", "k", b("in a"), Cond::Any).await.unwrap();
    store.put("b", "k", b("in b"), Cond::Any).await.unwrap();
    // A namespace that is a prefix of another, and keys that look like namespaces.
    store.put("ab", "c", b("in ab"), Cond::Any).await.unwrap();
    assert_eq!(store.get("a", "k").await.unwrap().unwrap().value, b("in a"));
    assert_eq!(store.get("b", "k").await.unwrap().unwrap().value, b("in b"));
    assert_eq!(store.get("a", "bc").await.unwrap(), None);
    assert_eq!(store.list("a", "", None, 100).await.unwrap().items.len(), 1);
    assert!(store.delete("a", "k", Cond::Any).await.unwrap());
    assert_eq!(store.get("b", "k").await.unwrap().unwrap().value, b("in b"));
    assert_eq!(
        store.put("b", "k", b("x"), Cond::Absent).await.unwrap_err(),
        StoreError::Conflict {
            current: Some(store.get("b", "k").await.unwrap().unwrap().version)
        }
    );
}

pub async fn the_change_feed_sees_committed_changes_in_version_order(open: &dyn Open) {
    let store = open.open().await;
    let mut rx = store.subscribe();
    let v1 = store.put("app", "a", b("1"), Cond::Any).await.unwrap();
    let _ = store.put("app", "a", b("x"), Cond::Absent).await; // conflict: no change
    assert!(!store.delete("app", "missing", Cond::Any).await.unwrap()); // no change
    assert!(store.delete("app", "a", Cond::Any).await.unwrap());
    let c = rx.recv().await.unwrap();
    assert_eq!(
        (c.ns.as_str(), c.key.as_str(), c.kind, c.version, c.deleted),
        ("app", "a", ChangeKind::Value, v1, false)
    );
    let c = rx.recv().await.unwrap();
    assert!(c.deleted && c.version > v1);
    assert!(rx.try_recv().is_err());
}

pub async fn an_acknowledged_write_is_seen_by_every_later_read(open: &dyn Open) {
    // Writes are answered before the database has them (they are in the log and the
    // overlay); reads must still see each one at once, while the applier catches up.
    let store = open.open().await;
    let mut tasks = Vec::new();
    for t in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let prefix = format!("t{t:02}/");
            for i in 0..60usize {
                let key = format!("{prefix}{i:03}");
                let v = store.put("app", &key, b(&key), Cond::Absent).await.unwrap();
                let e = store.get("app", &key).await.unwrap().expect("just written");
                assert_eq!((e.version, e.value), (v, b(&key)));
                let page = store.list("app", &prefix, None, 1000).await.unwrap();
                // The keys kept so far (the even ones below i), and this one.
                let kept = i.div_ceil(2);
                assert_eq!(page.items.len(), kept + 1, "{key}");
                assert_eq!(page.items.last().unwrap().key, key);
                if i % 2 == 1 {
                    // Every other key is deleted again: the listing must not show it.
                    assert!(store.delete("app", &key, Cond::Version(v)).await.unwrap());
                    assert_eq!(store.get("app", &key).await.unwrap(), None);
                }
                let page = store.list("app", &prefix, None, 1000).await.unwrap();
                assert_eq!(page.items.len(), kept + 1 - i % 2, "{key}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let all = store.list("app", "", None, 1000).await.unwrap();
    assert_eq!(all.items.len(), 16 * 30);
}

pub async fn blobs_list_in_pages_per_namespace(open: &dyn Open) {
    let store = open.open().await;
    for i in 0..25 {
        let body = vec![b'x'; i];
        store
            .put_blob("app", &format!("pics/{i:02}"), "image/jpeg", body_of(&body), Cond::Any)
            .await
            .unwrap();
    }
    store
        .put_blob("app", "pics", "", body_of(b""), Cond::Any)
        .await
        .unwrap();
    store
        .put_blob("app2", "pics/00", "", body_of(b""), Cond::Any)
        .await
        .unwrap();
    let mut names = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.list_blobs("app", "pics/", after.as_deref(), 7).await.unwrap();
        for item in &page.items {
            let i: usize = item.name[5..].parse().unwrap();
            assert_eq!(item.meta.size, i as u64);
            assert_eq!(item.meta.content_type, "image/jpeg");
        }
        names.extend(page.items.into_iter().map(|i| i.name));
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(names, (0..25).map(|i| format!("pics/{i:02}")).collect::<Vec<_>>());
    // Values and blobs are separate: the value listing of the namespace is empty.
    assert!(store.list("app", "", None, 10).await.unwrap().items.is_empty());
}
