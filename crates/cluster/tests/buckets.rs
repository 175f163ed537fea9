//! The shared buckets' streams take the consumers a large cluster makes: every node's
//! watches and key listings are consumers, and nats-server 2.15 gives a stream 1,000
//! unless it says otherwise. A real three-server cluster.

use strata_cluster::{Nats, BUCKET_CONSUMERS, NODES, PLACEMENT};
use strata_testkit::nats::{nats_server, NatsCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_buckets_take_far_more_than_a_thousand_consumers() {
    if !strata_testkit::needs("the_buckets_take_far_more_than_a_thousand_consumers", nats_server()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cluster = tokio::task::block_in_place(|| NatsCluster::start(dir.path(), 3));
    let nats = Nats::connect(&cluster.urls())
        .await
        .expect("connect and open the buckets");
    for bucket in [NODES, PLACEMENT] {
        let mut stream = nats.js.get_stream(format!("KV_{bucket}")).await.unwrap();
        let limit = stream.info().await.unwrap().config.max_consumers;
        // Unlimited (-1) on servers before the default; raised where there is one.
        assert!(limit == -1 || limit >= BUCKET_CONSUMERS, "{bucket}: {limit}");
    }
    // A second node opening the same buckets keeps the limit.
    let again = Nats::connect(&cluster.urls()).await.unwrap();
    let mut stream = again.js.get_stream(format!("KV_{NODES}")).await.unwrap();
    let limit = stream.info().await.unwrap().config.max_consumers;
    assert!(limit == -1 || limit >= BUCKET_CONSUMERS, "{limit}");
}
