//! The queue conformance suite (`crates/queue/tests/conformance/mod.rs`) against the
//! JetStream backend, on one 3-server NATS cluster that every test of this binary shares
//! (each check under its own prefix); then what only a cluster shows: an offset handed
//! out by one node settled on another, a queue made or deleted on one node seen on
//! another, a lease longer than the queue's kept.

#[path = "../../queue/tests/conformance/mod.rs"]
mod conformance;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use strata_cluster::{JetStreamQueues, Nats};
use strata_manifest::QueueSpec;
use strata_queue::{FetchOptions, NewMessage, QueueBackend, QueueError};
use strata_testkit::nats::{nats_server, NatsCluster};

/// The cluster every test here uses, started by the first that needs it. A static is
/// never dropped: the servers end with the test process (testkit's watchdog).
struct Shared {
    _dir: tempfile::TempDir,
    _nats: NatsCluster,
    urls: String,
}

fn cluster() -> &'static Shared {
    static CLUSTER: OnceLock<Shared> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let nats = NatsCluster::start(dir.path(), 3);
        let urls = nats.urls();
        Shared {
            _dir: dir,
            _nats: nats,
            urls,
        }
    })
}

/// A prefix no other test of this binary uses.
fn fresh_prefix() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("t{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A node's queue backend under `prefix`, on its own connection (waiting for JetStream to
/// be ready, as a node does).
async fn node(prefix: &str, declared: &BTreeMap<String, QueueSpec>) -> (JetStreamQueues, Nats) {
    let nats = Nats::connect(&cluster().urls).await.expect("connect to the cluster");
    let queues = JetStreamQueues::open(nats.js.clone(), prefix, 3, declared)
        .await
        .expect("open the queues");
    assert!(queues.failures().is_empty(), "{:?}", queues.failures());
    (queues, nats)
}

/// Opens a fresh backend (its own prefix) with `q` declared.
#[derive(Default)]
struct JetStream;

impl conformance::Open for JetStream {
    fn open(&self, spec: QueueSpec) -> Pin<Box<dyn Future<Output = Arc<dyn QueueBackend>> + Send + '_>> {
        Box::pin(async move {
            let (queues, _nats) = node(&fresh_prefix(), &BTreeMap::from([("q".to_string(), spec)])).await;
            Arc::new(queues) as Arc<dyn QueueBackend>
        })
    }
}

fn have_nats() -> bool {
    strata_testkit::needs("the JetStream queue tests", nats_server())
}

macro_rules! checks {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                if !have_nats() {
                    return;
                }
                conformance::$name(&JetStream).await;
            }
        )*

        #[test]
        fn every_check_of_the_suite_runs_here() {
            let here = [$(stringify!($name)),*];
            for check in conformance::CHECKS {
                assert!(here.contains(&check), "conformance check {check} is not run against the JetStream backend");
            }
        }
    };
}

checks!(
    groups_have_their_own_positions,
    expired_lease_redelivers_with_its_count_and_nack_at_once,
    long_poll_wakes_on_publish,
    dead_letter_after_max_deliveries,
    dedupe_within_the_window,
    request_reply_round_trip_and_deadline,
    concurrent_publishers_keep_their_order,
    a_placed_batch_is_stored_before_the_next,
    bad_input_is_refused_and_loses_nothing,
    delete_ends_a_queue_and_spares_declared_ones,
);

fn spec(lease_ms: u64) -> QueueSpec {
    QueueSpec {
        lease_ms,
        ..conformance::spec()
    }
}

fn all() -> FetchOptions {
    FetchOptions {
        max: usize::MAX,
        max_bytes: usize::MAX,
        ..FetchOptions::default()
    }
}

/// Waits up to 5 s for `what` to hold.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let end = tokio::time::Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(tokio::time::Instant::now() < end, "{what} within 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Node A hands out offsets; node B acks and nacks them by offset (an ack subject rebuilt
/// from the consumer, the stream sequence and the consumer's last delivery, which
/// nats-server accepts). What was not leased to the group is ignored on either node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offset_handed_out_by_one_node_is_settled_on_another() {
    if !have_nats() {
        return;
    }
    let prefix = fresh_prefix();
    let declared = BTreeMap::from([("jobs".to_string(), spec(2_000))]);
    let (a, _na) = node(&prefix, &declared).await;
    let (b, _nb) = node(&prefix, &declared).await;
    let qa = a.get("jobs").unwrap();
    let qb = b.get("jobs").unwrap();
    let mut msgs: Vec<NewMessage> = (0..4)
        .map(|i| NewMessage::new(Bytes::from(format!("job-{i}"))))
        .collect();
    // Attributes are any text; a header is one line of visible ASCII.
    msgs[0].correlation_id = Some("line\r\nInjected: yes ü 100%".into());
    msgs[0].reply_to = Some("queue:jobs".into());
    qa.publish(msgs).await.unwrap();
    let got = qa.fetch("g", all()).await.unwrap();
    assert_eq!(got.iter().map(|m| m.offset).collect::<Vec<_>>(), [0, 1, 2, 3]);
    assert_eq!(got[0].correlation_id.as_deref(), Some("line\r\nInjected: yes ü 100%"));
    assert_eq!(got[0].reply_to.as_deref(), Some("queue:jobs"));

    assert_eq!(
        qb.ack("g", &[0, 9]).await.unwrap(),
        (1, 1),
        "0 acked through B, 9 never existed"
    );
    assert_eq!(qb.nack("g", &[1]).await.unwrap(), (1, 0));
    let again = qa.fetch("g", all()).await.unwrap();
    assert_eq!(
        again.iter().map(|m| (m.offset, m.deliveries)).collect::<Vec<_>>(),
        [(1, 2)],
        "the nack through B gave 1 back at once"
    );
    // A second ack of 0 is ignored: B sees it under the group's ack floor. (A still holds
    // 0 as its own lease and would count it: counts are exact on the node that handed
    // the offset out, or settled it, see docs/queues.md.)
    assert_eq!(qb.ack("g", &[0]).await.unwrap(), (0, 1));
    assert_eq!(qa.ack("g", &[1, 2]).await.unwrap(), (2, 0));
    assert_eq!(qb.ack("g", &[3]).await.unwrap(), (1, 0));
    assert!(matches!(qb.ack("nobody", &[0]).await, Err(QueueError::UnknownGroup(_))));
    // Nothing comes back after the lease: every ack went through.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(qa.fetch("g", all()).await.unwrap().is_empty());
    assert!(qb.fetch("g", all()).await.unwrap().is_empty());
    let stats = qa.stats();
    assert_eq!((stats.groups[0].name.as_str(), stats.groups[0].backlog), ("g", 0));
    assert_eq!(a.leases_held(), 0, "every lease A handed out left its table");
}

/// A queue made on one node appears on another within about a second; deleted there, it
/// goes here too, and a fetch waiting here on it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_made_or_deleted_on_one_node_is_seen_on_another() {
    if !have_nats() {
        return;
    }
    let prefix = fresh_prefix();
    let (a, _na) = node(&prefix, &BTreeMap::new()).await;
    let (b, _nb) = node(&prefix, &BTreeMap::new()).await;
    let (qa, created) = a.create("made-on-a", spec(30_000)).await.unwrap();
    assert!(created);
    qa.publish(vec![NewMessage::new(&b"hello"[..])]).await.unwrap();
    eventually("the queue appears on B", || b.get("made-on-a").is_ok()).await;
    assert!(b.get("made-on-a.dlq").is_ok());
    let qb = b.get("made-on-a").unwrap();
    assert_eq!(qb.spec().lease_ms, 30_000, "its spec travels with it");
    eventually("B's figures show the message", || qb.stats().next_offset == 1).await;
    let (_, created) = b.create("made-on-a", spec(1_000)).await.unwrap();
    assert!(!created, "it exists: B's create gets A's queue");
    let got = qb.fetch("g", all()).await.unwrap();
    assert_eq!(got[0].payload, &b"hello"[..]);
    let waiter = tokio::spawn({
        let qb = qb.clone();
        async move {
            qb.fetch(
                "g",
                FetchOptions {
                    wait: Duration::from_secs(60),
                    ..FetchOptions::default()
                },
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.delete("made-on-a").await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the fetch waiting on B ends")
        .unwrap();
    assert!(matches!(ended, Err(QueueError::UnknownQueue(_))), "{ended:?}");
    eventually("the queue goes from B", || b.get("made-on-a").is_err()).await;
    assert!(b.list().is_empty());
}

/// A fetch's own lease, longer than the queue's (the consumer's ack_wait), is kept by
/// the node that handed the message out; a shorter one gives it back when it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_lease_longer_than_the_queues_is_kept() {
    if !have_nats() {
        return;
    }
    let (a, _na) = node(&fresh_prefix(), &BTreeMap::from([("q".to_string(), spec(1_000))])).await;
    let q = a.get("q").unwrap();
    q.publish(vec![NewMessage::new(&b"long"[..])]).await.unwrap();
    let long = FetchOptions {
        lease: Some(Duration::from_millis(3_000)),
        ..FetchOptions::default()
    };
    let started = tokio::time::Instant::now();
    assert_eq!(q.fetch("g", long).await.unwrap().len(), 1);
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    assert!(
        q.fetch("g", FetchOptions::default()).await.unwrap().is_empty(),
        "still leased at 2 s, twice the queue's lease"
    );
    let back = q
        .fetch(
            "g",
            FetchOptions {
                wait: Duration::from_secs(5),
                ..FetchOptions::default()
            },
        )
        .await
        .unwrap();
    let at = started.elapsed();
    assert_eq!(back[0].deliveries, 2);
    assert!(
        at >= Duration::from_millis(2_900) && at < Duration::from_millis(4_500),
        "back when its own lease ended, at {at:?}"
    );
}

/// A publish on one node wakes `changed()` on another (announced over core NATS, well
/// before the next refresh), and a dead letter moved by one node is counted on every
/// node (its group's dead letters in the dead-letter queue's stream).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_and_dead_letters_are_seen_on_every_node() {
    if !have_nats() {
        return;
    }
    let prefix = fresh_prefix();
    let declared = BTreeMap::from([(
        "q".to_string(),
        QueueSpec {
            max_deliveries: 1,
            ..spec(30_000)
        },
    )]);
    let (a, _na) = node(&prefix, &declared).await;
    let (b, _nb) = node(&prefix, &declared).await;
    let qa = a.get("q").unwrap();
    let qb = b.get("q").unwrap();
    let woken = qb.changed();
    let started = tokio::time::Instant::now();
    qa.publish(vec![NewMessage::new(&b"poison"[..])]).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), woken)
        .await
        .expect("B's changed() resolves");
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "woken by the announcement, not a refresh: {:?}",
        started.elapsed()
    );

    assert_eq!(qa.fetch("g", all()).await.unwrap().len(), 1);
    qa.nack("g", &[0]).await.unwrap();
    assert!(
        qa.fetch("g", all()).await.unwrap().is_empty(),
        "moved to q.dlq on its second delivery"
    );
    let dead_on_b = || {
        qb.stats()
            .groups
            .iter()
            .any(|g| g.name == "g" && g.dead_lettered == 1 && g.backlog == 0)
    };
    eventually("B counts the dead letter", dead_on_b).await;
    let dlq = b.get("q.dlq").unwrap();
    eventually("B sees it in q.dlq", || dlq.stats().next_offset == 1).await;
    let dead = dlq.fetch("inspect", all()).await.unwrap();
    assert_eq!(dead[0].payload, &b"poison"[..]);
}

/// Where a queue's copies are shows in its stats (`strata queues`): three servers of
/// the cluster, one of them the leader, each named once; the embedded queue has none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_s_stats_name_the_servers_holding_its_copies() {
    if !have_nats() {
        return;
    }
    let (queues, _nats) = node(&fresh_prefix(), &BTreeMap::from([("q".to_string(), spec(30_000))])).await;
    let q = queues.get("q").unwrap();
    q.publish(vec![NewMessage::new("one")]).await.unwrap();
    eventually("the queue's copies to be read", || {
        q.stats()
            .replicas
            .is_some_and(|r| r.servers.len() == 3 && r.servers.iter().all(|c| c.current))
    })
    .await;
    let r = q.stats().replicas.unwrap();
    assert_eq!(r.wanted, 3);
    let leader = r.leader.clone().expect("a leader");
    assert_eq!(r.servers[0].server, leader, "the leader first: {r:?}");
    let names: std::collections::BTreeSet<&str> = r.servers.iter().map(|c| c.server.as_str()).collect();
    assert_eq!(names.len(), 3, "three distinct servers: {r:?}");
    assert!(
        r.describe().starts_with(&format!("3 copies: {leader} (leader), ")),
        "{}",
        r.describe()
    );
}
