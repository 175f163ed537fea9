//! The queue contract (`docs/queues.md`) as a conformance suite: every check takes an
//! [`Open`] that makes a fresh backend with one queue `q` of a given spec, so the same
//! checks run against the embedded engine (`tests/conformance_embedded.rs`) and against
//! any other implementation of [`QueueBackend`] (a JetStream test includes this file with
//! `#[path]`). What only one backend can show (files, restarts, corruption) is tested
//! beside that backend, not here.
#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use strata_manifest::{FsyncPolicy, QueueSpec};
use strata_queue::{DeadLetter, FetchOptions, NewMessage, Placed, QueueBackend, QueueError, Replied, Reply};

/// Makes a fresh backend whose queue `q` has `spec`; what it returns keeps the backend's
/// resources (temp dirs, servers) alive.
pub trait Open: Sync {
    fn open(&self, spec: QueueSpec) -> Pin<Box<dyn Future<Output = Arc<dyn QueueBackend>> + Send + '_>>;
}

/// Every check, by name, for a runner that wants them all.
pub const CHECKS: [&str; 10] = [
    "groups_have_their_own_positions",
    "expired_lease_redelivers_with_its_count_and_nack_at_once",
    "long_poll_wakes_on_publish",
    "dead_letter_after_max_deliveries",
    "dedupe_within_the_window",
    "request_reply_round_trip_and_deadline",
    "concurrent_publishers_keep_their_order",
    "a_placed_batch_is_stored_before_the_next",
    "bad_input_is_refused_and_loses_nothing",
    "delete_ends_a_queue_and_spares_declared_ones",
];

pub fn spec() -> QueueSpec {
    QueueSpec {
        segment_bytes: 1 << 20,
        max_message_bytes: 64 << 10,
        ..QueueSpec::default()
    }
}

fn payload(i: usize) -> Bytes {
    Bytes::from(format!("message-{i:06}"))
}

fn fetch_all() -> FetchOptions {
    FetchOptions {
        max: usize::MAX,
        max_bytes: usize::MAX,
        ..FetchOptions::default()
    }
}

async fn publish_n(queues: &Arc<dyn QueueBackend>, n: usize) {
    let q = queues.get("q").unwrap();
    let msgs = (0..n).map(|i| NewMessage::new(payload(i))).collect();
    let published = q.publish(msgs).await.expect("publish");
    assert_eq!(published.len(), n);
}

pub async fn dedupe_within_the_window(open: &dyn Open) {
    let with_id = |body: &'static [u8], id: &str| NewMessage {
        payload: Bytes::from_static(body),
        dedupe_id: Some(id.into()),
        ..NewMessage::default()
    };
    let queues = open
        .open(QueueSpec {
            dedupe_window_ms: 60_000,
            ..spec()
        })
        .await;
    let q = queues.get("q").unwrap();
    let a = q.publish(vec![with_id(b"a", "order-1")]).await.unwrap()[0];
    assert!(!a.duplicate);
    // A duplicate later, and a duplicate within one batch.
    let b = q
        .publish(vec![
            with_id(b"a again", "order-1"),
            with_id(b"x", "order-2"),
            with_id(b"x", "order-2"),
        ])
        .await
        .unwrap();
    assert_eq!(b[0].offset, a.offset);
    assert!(b[0].duplicate);
    assert!(!b[1].duplicate);
    assert_eq!((b[2].offset, b[2].duplicate), (b[1].offset, true));
    assert_eq!(q.stats().next_offset, 2, "duplicates store nothing");

    // Past the window the same id is a new message.
    let queues = open
        .open(QueueSpec {
            dedupe_window_ms: 50,
            ..spec()
        })
        .await;
    let q = queues.get("q").unwrap();
    q.publish(vec![with_id(b"a", "k")]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    let later = q.publish(vec![with_id(b"a", "k")]).await.unwrap()[0];
    assert_eq!((later.offset, later.duplicate), (1, false));
}

pub async fn groups_have_their_own_positions(open: &dyn Open) {
    let queues = open.open(spec()).await;
    publish_n(&queues, 3).await;
    let q = queues.get("q").unwrap();
    let a = q.fetch("a", fetch_all()).await.unwrap();
    let b = q.fetch("b", fetch_all()).await.unwrap();
    assert_eq!(a.len(), 3);
    assert_eq!(b.len(), 3);
    assert!(q.fetch("a", fetch_all()).await.unwrap().is_empty());
}

pub async fn expired_lease_redelivers_with_its_count_and_nack_at_once(open: &dyn Open) {
    let queues = open.open(spec()).await;
    publish_n(&queues, 2).await;
    let q = queues.get("q").unwrap();
    let short = FetchOptions {
        max: 1,
        lease: Some(Duration::from_millis(600)),
        ..FetchOptions::default()
    };
    let first = q.fetch("g", short).await.unwrap();
    assert_eq!((first[0].offset, first[0].deliveries), (0, 1));
    let second = q.fetch("g", short).await.unwrap();
    assert_eq!(second[0].offset, 1);
    // Nothing more until the first lease runs out; a long poll wakes for it.
    let started = std::time::Instant::now();
    let again = q
        .fetch(
            "g",
            FetchOptions {
                wait: Duration::from_secs(5),
                ..short
            },
        )
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "woken by the expiry, not the end of the wait"
    );
    assert_eq!((again[0].offset, again[0].deliveries), (0, 2));
    // Counted where the queue counts it (the embedded one; the second lease may have run
    // out by now too); JetStream's server keeps the ack waits and says nothing of expiries.
    let expiries = q.stats().groups[0].lease_expiries;
    assert!(matches!(expiries, Some(1 | 2) | None), "{expiries:?}");
    assert_eq!(q.nack("g", &[1, 7]).await.unwrap(), (1, 1));
    let nacked = q.fetch("g", short).await.unwrap();
    assert_eq!((nacked[0].offset, nacked[0].deliveries), (1, 2));
}

pub async fn long_poll_wakes_on_publish(open: &dyn Open) {
    let queues = open.open(spec()).await;
    let q = queues.get("q").unwrap();
    let waiter = tokio::spawn({
        let q = q.clone();
        async move {
            q.fetch(
                "g",
                FetchOptions {
                    wait: Duration::from_secs(10),
                    ..FetchOptions::default()
                },
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    q.publish(vec![NewMessage::new(&b"wake"[..])]).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(3), waiter)
        .await
        .expect("woken")
        .unwrap()
        .unwrap();
    assert_eq!(got[0].payload, &b"wake"[..]);
}

pub async fn dead_letter_after_max_deliveries(open: &dyn Open) {
    let queues = open
        .open(QueueSpec {
            max_deliveries: 2,
            ..spec()
        })
        .await;
    let q = queues.get("q").unwrap();
    q.publish(vec![
        NewMessage {
            payload: Bytes::from_static(b"poison"),
            correlation_id: Some("c-9".into()),
            traceparent: Some(TRACEPARENT.into()),
            ..NewMessage::default()
        },
        NewMessage::new(&b"fine"[..]),
    ])
    .await
    .unwrap();
    let one = FetchOptions::default();
    let mut published_at = 0;
    for round in 1..=2 {
        let m = q.fetch("g", one).await.unwrap();
        assert_eq!((m[0].offset, m[0].deliveries), (0, round));
        assert_eq!(m[0].dead_letter, None, "not a dead letter yet");
        published_at = m[0].timestamp_ms;
        assert_eq!(
            m[0].traceparent.as_deref(),
            Some(TRACEPARENT),
            "the publisher's trace travels"
        );
        q.nack("g", &[0]).await.unwrap();
    }
    // The third delivery would pass max_deliveries: it moves to q.dlq instead.
    let m = q.fetch("g", one).await.unwrap();
    assert_eq!(m[0].payload, &b"fine"[..]);
    q.ack("g", &[1]).await.unwrap();
    let stats = q.stats();
    assert_eq!(stats.groups[0].dead_lettered, 1);
    assert_eq!(stats.groups[0].backlog, 0);
    assert_eq!(stats.groups[0].acked, 1, "one ack went through");
    let dlq = queues.get("q.dlq").unwrap();
    let dead = dlq.fetch("inspect", fetch_all()).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].payload, &b"poison"[..]);
    assert_eq!(dead[0].correlation_id.as_deref(), Some("c-9"));
    assert_eq!(dead[0].traceparent.as_deref(), Some(TRACEPARENT));
    // It says where it came from: the group that gave up on it, its offset and publish
    // time in q, and how often that group had it.
    assert_eq!(
        dead[0].dead_letter,
        Some(DeadLetter {
            group: "g".into(),
            offset: 0,
            timestamp_ms: published_at,
            deliveries: 2,
        })
    );
}

const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const REPLY_TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-c7ad6b7169203332-01";

pub async fn request_reply_round_trip_and_deadline(open: &dyn Open) {
    let queues = open.open(spec()).await;
    let consumer = tokio::spawn({
        let queues = queues.clone();
        async move {
            let q = queues.get("q").unwrap();
            let m = q
                .fetch(
                    "workers",
                    FetchOptions {
                        wait: Duration::from_secs(5),
                        ..FetchOptions::default()
                    },
                )
                .await
                .unwrap()
                .remove(0);
            let reply = Reply {
                correlation_id: m.correlation_id.clone(),
                payload: Bytes::from(format!("done:{}", String::from_utf8_lossy(&m.payload))),
                traceparent: Some(REPLY_TRACEPARENT.to_string()),
            };
            let to = m.reply_to.clone().expect("reply_to set");
            assert_eq!(queues.reply(&to, reply).await.unwrap(), Replied::Inbox);
            q.ack("workers", &[m.offset]).await.unwrap();
            to
        }
    });
    let (published, reply) = queues
        .request("q", NewMessage::new(&b"job"[..]), Duration::from_secs(5))
        .await
        .expect("reply");
    assert_eq!(published.offset, 0);
    assert_eq!(reply.payload, &b"done:job"[..]);
    assert!(reply.correlation_id.is_some());
    assert_eq!(
        reply.traceparent.as_deref(),
        Some(REPLY_TRACEPARENT),
        "the replier's trace travels to the publisher"
    );
    let inbox = consumer.await.unwrap();
    // The inbox is gone once answered.
    let late = queues
        .reply(
            &inbox,
            Reply {
                correlation_id: None,
                payload: Bytes::new(),
                traceparent: None,
            },
        )
        .await;
    assert!(matches!(late, Err(QueueError::NoInbox(_))));
    // Nobody answers: the deadline passes, the message stays published.
    let err = queues
        .request("q", NewMessage::new(&b"ignored"[..]), Duration::from_millis(100))
        .await
        .unwrap_err();
    assert_eq!(err, QueueError::NoReply(100));
    assert_eq!(queues.get("q").unwrap().stats().next_offset, 2);
    // A reply to a queue is published there with its correlation id.
    let replied = queues
        .reply(
            "queue:q",
            Reply {
                correlation_id: Some("c".into()),
                payload: Bytes::from_static(b"r"),
                traceparent: Some(REPLY_TRACEPARENT.to_string()),
            },
        )
        .await
        .unwrap();
    assert_eq!(replied, Replied::Queue(2));
    let stored = queues.get("q").unwrap().fetch("replies", fetch_all()).await.unwrap();
    let stored = stored.iter().find(|m| m.offset == 2).expect("the reply is in q");
    assert_eq!(
        (stored.correlation_id.as_deref(), stored.traceparent.as_deref()),
        (Some("c"), Some(REPLY_TRACEPARENT)),
        "a reply into a queue keeps its correlation id and trace"
    );
    assert!(matches!(
        queues
            .reply(
                "elsewhere",
                Reply {
                    correlation_id: None,
                    payload: Bytes::new(),
                    traceparent: None,
                }
            )
            .await,
        Err(QueueError::BadInput(_))
    ));
}

pub async fn concurrent_publishers_keep_their_order(open: &dyn Open) {
    let queues = open.open(spec()).await;
    let mut tasks = Vec::new();
    for p in 0..32 {
        let q = queues.get("q").unwrap();
        tasks.push(tokio::spawn(async move {
            let mut offsets = Vec::new();
            for i in 0..50 {
                let m = NewMessage::new(Bytes::from(format!("{p}:{i}")));
                offsets.push(q.publish(vec![m]).await.unwrap()[0].offset);
            }
            offsets
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let offsets = t.await.unwrap();
        assert!(offsets.windows(2).all(|w| w[0] < w[1]));
        all.extend(offsets);
    }
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 32 * 50);
}

/// A batch started once the one before it is placed (`publish_placed`), while that one
/// may still be on its way to disk, is stored after it: 20 batches in flight together,
/// stored in the order they started.
pub async fn a_placed_batch_is_stored_before_the_next(open: &dyn Open) {
    let queues = open.open(spec()).await;
    let q = queues.get("q").unwrap();
    let mut tasks = Vec::new();
    for b in 0..20 {
        let (placed, is_placed) = tokio::sync::oneshot::channel::<()>();
        let placed = Placed::new(move || {
            let _ = placed.send(());
        });
        let messages = (0..50)
            .map(|i| NewMessage::new(Bytes::from(format!("{b}:{i}"))))
            .collect();
        let q = q.clone();
        tasks.push(tokio::spawn(async move {
            q.publish_placed(messages, placed).await.unwrap()
        }));
        is_placed.await.unwrap();
    }
    let mut last = None;
    for (b, t) in tasks.into_iter().enumerate() {
        for p in t.await.unwrap() {
            assert!(Some(p.offset) > last, "batch {b}: offset {} after {last:?}", p.offset);
            last = Some(p.offset);
        }
    }
    let fetched = q.fetch("g", fetch_all()).await.unwrap();
    let bodies: Vec<Bytes> = fetched.into_iter().map(|m| m.payload).collect();
    let sent: Vec<Bytes> = (0..20)
        .flat_map(|b| (0..50).map(move |i| Bytes::from(format!("{b}:{i}"))))
        .collect();
    assert!(bodies == sent, "fetched in another order than sent");
}

pub async fn bad_input_is_refused_and_loses_nothing(open: &dyn Open) {
    let queues = open
        .open(QueueSpec {
            max_message_bytes: 100,
            fsync: FsyncPolicy::None,
            ..spec()
        })
        .await;
    let q = queues.get("q").unwrap();
    q.publish(vec![NewMessage::new(&b"kept"[..])]).await.unwrap();
    let err = q
        .publish(vec![NewMessage::new(&b"ok"[..]), NewMessage::new(vec![0u8; 101])])
        .await
        .unwrap_err();
    assert_eq!(
        err,
        QueueError::TooLarge {
            index: 1,
            size: 101,
            limit: 100
        }
    );
    let err = q
        .fetch(
            "g",
            FetchOptions {
                max: 0,
                ..FetchOptions::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, QueueError::BadInput(_)));
    assert!(matches!(q.ack("nobody", &[0]).await, Err(QueueError::UnknownGroup(_))));
    assert!(matches!(queues.get("nope"), Err(QueueError::UnknownQueue(_))));
    assert!(matches!(
        queues.create("Bad Name", QueueSpec::default()).await,
        Err(QueueError::BadInput(_))
    ));
    let got = q.fetch("g", fetch_all()).await.unwrap();
    assert_eq!(got.len(), 1, "the refused batch stored nothing");
    assert_eq!(got[0].payload, &b"kept"[..]);
}

/// `q` is declared (the factory opens the backend with it): the manifest's, never
/// deleted. A queue created at run time is deleted with its dead-letter queue and every
/// message; a fetch waiting on it ends; its name can be used again, empty.
pub async fn delete_ends_a_queue_and_spares_declared_ones(open: &dyn Open) {
    let queues = open.open(spec()).await;
    assert_eq!(queues.delete("q").await, Err(QueueError::Declared("q".into())));
    assert!(matches!(queues.delete("q.dlq").await, Err(QueueError::BadInput(_))));
    assert!(queues.get("q").is_ok());
    let (temp, created) = queues.create("temp", spec()).await.unwrap();
    assert!(created);
    temp.publish(vec![NewMessage::new(&b"doomed"[..])]).await.unwrap();
    temp.fetch("g", fetch_all()).await.unwrap();
    let waiter = {
        let temp = temp.clone();
        tokio::spawn(async move {
            temp.fetch(
                "g",
                FetchOptions {
                    wait: Duration::from_secs(300),
                    ..FetchOptions::default()
                },
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    queues.delete("temp").await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("the waiting fetch ends")
        .unwrap();
    assert!(matches!(ended, Err(QueueError::UnknownQueue(_))), "{ended:?}");
    assert!(matches!(queues.get("temp"), Err(QueueError::UnknownQueue(_))));
    assert!(matches!(queues.get("temp.dlq"), Err(QueueError::UnknownQueue(_))));
    assert!(!queues.list().iter().any(|q| q.name().starts_with("temp")));
    assert!(matches!(queues.delete("temp").await, Err(QueueError::UnknownQueue(_))));
    let (again, created) = queues.create("temp", spec()).await.unwrap();
    assert!(created);
    assert!(again.fetch("g", fetch_all()).await.unwrap().is_empty());
    assert!(queues.get("q").is_ok(), "the declared queue is untouched");
}
