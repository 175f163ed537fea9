//! The JetStream queue backend when machines fail, on real nats-server processes:
//! acknowledged publishes survive the queue's stream leader killed with SIGKILL (and
//! restarted) in the middle of 16 concurrent publishers; a message leased by a node that
//! goes away is redelivered to another node after its lease; a group whose consumer's
//! server is lost keeps every message it has not acknowledged while the others go on.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use strata_cluster::{JetStreamQueues, Nats};
use strata_manifest::QueueSpec;
use strata_queue::{FetchOptions, NewMessage, QueueBackend};
use strata_testkit::nats::{nats_server, NatsCluster};
use tokio::time::Instant;

const PUBLISHERS: usize = 16;
const MESSAGES: usize = 10_000;

fn spec(lease_ms: u64) -> QueueSpec {
    QueueSpec {
        lease_ms,
        ..QueueSpec::default()
    }
}

async fn node(urls: &str, prefix: &str, declared: &BTreeMap<String, QueueSpec>) -> (JetStreamQueues, Nats) {
    let nats = Nats::connect(urls).await.expect("connect to the cluster");
    let queues = JetStreamQueues::open(nats.js.clone(), prefix, 3, declared)
        .await
        .expect("open the queues");
    assert!(queues.failures().is_empty(), "{:?}", queues.failures());
    (queues, nats)
}

/// Which server (`n0`, `n1`, `n2`: testkit's names) leads `stream`, or with `group`
/// that group's consumer on it.
async fn leader_of(nats: &Nats, stream: &str, group: Option<&str>) -> usize {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let mut s = nats.js.get_stream(stream).await.expect("the queue's stream");
        let cluster = match group {
            None => s.info().await.ok().and_then(|i| i.cluster.clone()),
            Some(group) => s.consumer_info(group).await.ok().and_then(|i| i.cluster.clone()),
        };
        let leader = cluster.and_then(|c| c.leader);
        if let Some(i) = leader.and_then(|l| l.strip_prefix('n').and_then(|n| n.parse().ok())) {
            return i;
        }
        assert!(Instant::now() < end, "{stream} {group:?} has a leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// 16 publishers, each publishing its share one message at a time (waiting for the ack,
/// its sequence number in the body, a dedupe id so that a publish sent again after a
/// failure is stored once), while the leader of the queue's stream is killed with
/// SIGKILL after 3,000 acks and restarted 3 s later. No publish fails (the queue sends
/// again what lost its ack or found no leader); then a group reads everything: every
/// acknowledged message is there once, at the offset its ack gave, and each publisher's
/// messages are in its order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_publishes_survive_a_server_killed_mid_stream() {
    if !strata_testkit::needs(
        "acknowledged_publishes_survive_a_server_killed_mid_stream",
        nats_server(),
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cluster = NatsCluster::start(dir.path(), 3);
    let urls = cluster.urls();
    let declared = BTreeMap::from([("orders".to_string(), spec(30_000))]);
    let (queues, nats) = node(&urls, "crash", &declared).await;
    let victim = leader_of(&nats, "crash_q_orders", None).await;

    let acked = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicUsize::new(0));
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let q = queues.get("orders").unwrap();
        let (acked, retries) = (acked.clone(), retries.clone());
        publishers.push(tokio::spawn(async move {
            let mut offsets = Vec::new();
            for i in (p..MESSAGES).step_by(PUBLISHERS) {
                let message = NewMessage {
                    payload: Bytes::from(format!("{p}:{i}")),
                    dedupe_id: Some(format!("{p}-{i}")),
                    ..NewMessage::default()
                };
                let give_up = Instant::now() + Duration::from_secs(120);
                let published = loop {
                    match q.publish(vec![message.clone()]).await {
                        Ok(mut p) => break p.remove(0),
                        Err(e) => {
                            assert!(Instant::now() < give_up, "publisher {p} gave up on {i}: {e}");
                            retries.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                };
                acked.fetch_add(1, Ordering::Relaxed);
                offsets.push((i, published.offset));
            }
            offsets
        }));
    }

    let chaos = tokio::spawn({
        let acked = acked.clone();
        async move {
            let mut cluster = cluster;
            while acked.load(Ordering::Relaxed) < 3_000 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let mut cluster = tokio::task::spawn_blocking(move || {
                cluster.kill(victim);
                cluster
            })
            .await
            .unwrap();
            let killed_at = acked.load(Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(3)).await;
            cluster.restart(victim);
            (cluster, killed_at)
        }
    });

    // Offset -> (publisher, sequence number) as the acks gave them.
    let mut by_offset: HashMap<u64, (usize, usize)> = HashMap::new();
    for (p, t) in publishers.into_iter().enumerate() {
        let offsets = t.await.unwrap();
        assert!(
            offsets.windows(2).all(|w| w[0].1 < w[1].1),
            "publisher {p}'s acknowledged offsets follow its order"
        );
        for (i, offset) in offsets {
            assert!(
                by_offset.insert(offset, (p, i)).is_none(),
                "offset {offset} acknowledged twice"
            );
        }
    }
    let (_cluster, killed_at) = chaos.await.unwrap();
    assert_eq!(by_offset.len(), MESSAGES);
    assert!(killed_at < MESSAGES, "the server died while publishers were at work");

    // Everything, read back by a group (on a node connected after the restart too).
    let q = queues.get("orders").unwrap();
    let mut delivered: HashMap<u64, Bytes> = HashMap::new();
    let end = Instant::now() + Duration::from_secs(120);
    while delivered.len() < MESSAGES {
        assert!(
            Instant::now() < end,
            "every message read back in time ({} of {MESSAGES})",
            delivered.len()
        );
        let batch = match q
            .fetch(
                "audit",
                FetchOptions {
                    max: 1000,
                    max_bytes: usize::MAX,
                    wait: Duration::from_secs(2),
                    lease: None,
                },
            )
            .await
        {
            Ok(batch) => batch,
            Err(e) => {
                // A consumer leader still being elected after the restart.
                eprintln!("fetch: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let offsets: Vec<u64> = batch.iter().map(|m| m.offset).collect();
        for m in batch {
            delivered.insert(m.offset, m.payload);
        }
        q.ack("audit", &offsets).await.expect("ack");
    }
    let extra = q
        .fetch(
            "audit",
            FetchOptions {
                wait: Duration::from_millis(500),
                ..FetchOptions::default()
            },
        )
        .await
        .unwrap();
    assert!(extra.is_empty(), "nothing but what was acknowledged: {extra:?}");
    let mut last_seen: HashMap<usize, usize> = HashMap::new();
    let mut offsets: Vec<u64> = delivered.keys().copied().collect();
    offsets.sort_unstable();
    for offset in offsets {
        let (p, i) = by_offset[&offset];
        assert_eq!(delivered[&offset], Bytes::from(format!("{p}:{i}")), "offset {offset}");
        if let Some(&before) = last_seen.get(&p) {
            assert!(before < i, "publisher {p}: {before} before {i} in the queue");
        }
        last_seen.insert(p, i);
    }
    eprintln!(
        "{MESSAGES} acknowledged messages all delivered; server n{victim} killed after {killed_at} acks; \
         {} publishes tried again by the publishers",
        retries.load(Ordering::Relaxed)
    );
    // Every publish carried a dedupe id: the queue sent again what lost its ack or found
    // no leader, so the publishers saw latency, not errors.
    assert_eq!(
        retries.load(Ordering::Relaxed),
        0,
        "publishes with dedupe ids through a leader's loss answer once stored, not with an error"
    );
}

/// Node A fetches a message and goes away (its connection closed) without settling it:
/// node B, long-polling the same group, gets it once A's lease (the queue's, 2 s) runs
/// out, with its delivery count raised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_leased_by_a_node_that_goes_away_is_redelivered_to_another() {
    if !strata_testkit::needs(
        "a_message_leased_by_a_node_that_goes_away_is_redelivered_to_another",
        nats_server(),
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let _cluster = NatsCluster::start(dir.path(), 3);
    let urls = _cluster.urls();
    let declared = BTreeMap::from([("work".to_string(), spec(2_000))]);
    let (a, nats_a) = node(&urls, "nodes", &declared).await;
    let (b, _nats_b) = node(&urls, "nodes", &declared).await;
    let qa = a.get("work").unwrap();
    qa.publish(vec![NewMessage::new(&b"job"[..])]).await.unwrap();
    let taken = qa.fetch("workers", FetchOptions::default()).await.unwrap();
    assert_eq!((taken[0].offset, taken[0].deliveries), (0, 1));
    let fetched_at = Instant::now();

    // A goes away: its queues closed, its connection drained.
    a.close();
    a.closed().await;
    drop((qa, a));
    nats_a.client.drain().await.unwrap();

    let qb = b.get("work").unwrap();
    let got = qb
        .fetch(
            "workers",
            FetchOptions {
                wait: Duration::from_secs(10),
                ..FetchOptions::default()
            },
        )
        .await
        .unwrap();
    let after = fetched_at.elapsed();
    assert_eq!(got.len(), 1, "redelivered to B");
    assert_eq!(
        (got[0].offset, got[0].deliveries, &got[0].payload[..]),
        (0, 2, &b"job"[..])
    );
    assert!(
        after >= Duration::from_millis(1_500) && after < Duration::from_secs(6),
        "after A's lease, at {after:?}"
    );
    assert_eq!(qb.ack("workers", &[0]).await.unwrap(), (1, 0));
}

/// Group `behind` holds offset 0 unacknowledged while group `fast` publishes, reads and
/// acknowledges on, through server 0; the server leading `behind`'s consumer (and
/// nothing else) is killed for 14 s, during which JetStream's listing of the consumers
/// leaves `behind` out (`missing`). Space is reclaimed only below what every group is
/// done with: offset 0 is still there for `behind` afterwards. (Before the fix the node
/// purged below `fast`'s floor from such a listing: offsets 0-160 were lost.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_whose_consumers_server_is_lost_keeps_its_messages() {
    if !strata_testkit::needs(
        "a_group_whose_consumers_server_is_lost_keeps_its_messages",
        nats_server(),
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = NatsCluster::start(dir.path(), 3);
    // The node speaks to server 0 only: the one killed is another.
    let url = cluster.urls().split(',').next().unwrap().to_string();
    let declared = BTreeMap::from([("jobs".to_string(), spec(3_000))]);
    let (queues, nats) = node(&url, "lost", &declared).await;
    let q = queues.get("jobs").unwrap();
    q.publish(vec![NewMessage::new(&b"first"[..])]).await.unwrap();
    let held = q.fetch("behind", FetchOptions::default()).await.unwrap();
    assert_eq!(held[0].offset, 0);
    q.fetch("fast", FetchOptions::default()).await.unwrap();
    q.ack("fast", &[0]).await.unwrap();
    // The server to kill leads behind's consumer, and neither the stream nor fast's
    // consumer, nor is it the node's (as when a listing leaves only behind out): the
    // consumers' leaders are moved until so.
    let stepdown = |group: &str| format!("$JS.API.CONSUMER.LEADER.STEPDOWN.lost_q_jobs.{group}");
    let mut victim = None;
    for _ in 0..40 {
        let stream = leader_of(&nats, "lost_q_jobs", None).await;
        let fast = leader_of(&nats, "lost_q_jobs", Some("fast")).await;
        let behind = leader_of(&nats, "lost_q_jobs", Some("behind")).await;
        let taken = [0, stream, fast];
        if !taken.contains(&behind) {
            victim = Some(behind);
            break;
        }
        // Every other server taken: fast's consumer moves, else behind's.
        let moved = if (0..3).all(|i| taken.contains(&i)) {
            "fast"
        } else {
            "behind"
        };
        let _ = nats.client.request(stepdown(moved), Bytes::new()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let victim = victim.expect("behind's consumer led by a server of its own");
    let mut fast_read = 0usize;
    let start = Instant::now();
    let mut killed = false;
    while start.elapsed() < Duration::from_secs(15) {
        if !killed && start.elapsed() > Duration::from_secs(1) {
            cluster = tokio::task::spawn_blocking(move || {
                cluster.kill(victim);
                cluster
            })
            .await
            .unwrap();
            killed = true;
        }
        // Errors while a leader is elected are the servers', not what this checks.
        let _ = q.publish((0..5).map(|_| NewMessage::new(&b"more"[..])).collect()).await;
        let all = FetchOptions {
            max: usize::MAX,
            ..FetchOptions::default()
        };
        if let Ok(batch) = q.fetch("fast", all).await {
            let offsets: Vec<u64> = batch.iter().map(|m| m.offset).collect();
            if q.ack("fast", &offsets).await.is_ok() {
                fast_read += offsets.len();
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cluster.restart(victim);
    assert!(fast_read > 20, "fast went on reading: {fast_read}");
    // Offset 0 is still stored, and comes back to behind once its lease ran out.
    let end = Instant::now() + Duration::from_secs(30);
    let again = loop {
        match q.fetch("behind", FetchOptions::default()).await {
            Ok(batch) if !batch.is_empty() => break batch,
            Ok(_) => {}
            Err(e) => eprintln!("fetch: {e}"),
        }
        assert!(Instant::now() < end, "behind gets a message again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        (again[0].offset, &again[0].payload[..]),
        (0, &b"first"[..]),
        "behind's unacknowledged message was kept (stats: {:?})",
        q.stats()
    );
}
