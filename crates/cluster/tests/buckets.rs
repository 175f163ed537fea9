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
        // Set: -1 would be the server's default (1,000 on 2.15), not unlimited.
        assert!(limit >= BUCKET_CONSUMERS, "{bucket}: {limit}");
    }
    // A second node opening the same buckets keeps the limit.
    let again = Nats::connect(&cluster.urls()).await.unwrap();
    let mut stream = again.js.get_stream(format!("KV_{NODES}")).await.unwrap();
    let limit = stream.info().await.unwrap().config.max_consumers;
    assert!(limit >= BUCKET_CONSUMERS, "{limit}");
    // Not only the setting: more than a thousand consumers of the placement bucket's
    // stream are made at once (each node's watch and key listings are consumers; at 300
    // nodes bench/sim.sh saw the stream stop at exactly 1,000 while its config said -1).
    let stream = nats.js.get_stream(format!("KV_{PLACEMENT}")).await.unwrap();
    let config = async_nats::jetstream::consumer::pull::Config {
        inactive_threshold: std::time::Duration::from_secs(60),
        ..Default::default()
    };
    let made = futures_util::future::join_all((0..1_100).map(|_| stream.create_consumer(config.clone()))).await;
    let refused: Vec<String> = made
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| e.to_string()))
        .collect();
    assert!(
        refused.is_empty(),
        "{} of 1,100 consumers refused, first: {:?}",
        refused.len(),
        refused.first()
    );
}
