//! The store conformance suite (`crates/store/tests/conformance/mod.rs`) against the
//! JetStream store, on one three-server NATS cluster shared by the whole test binary
//! (started on first use; its servers and dir go when the binary exits). Each check
//! connects its own client and opens the store under a prefix of its own, so it starts
//! empty.

#[path = "../../store/tests/conformance/mod.rs"]
mod conformance;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use strata_cluster::{JetStreamStore, JetStreamStoreConfig};
use strata_store::StoreBackend;
use strata_testkit::nats::{nats_server, NatsCluster};

/// The cluster every check of this binary uses.
fn cluster() -> &'static NatsCluster {
    static CLUSTER: OnceLock<NatsCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| NatsCluster::start_for_process(3))
}

/// Opens a JetStream store with a fresh prefix on the shared cluster.
struct JetStream;

impl conformance::Open for JetStream {
    fn open(&self) -> Pin<Box<dyn Future<Output = Arc<dyn StoreBackend>> + Send + '_>> {
        Box::pin(async move { Arc::new(open_store().await) as Arc<dyn StoreBackend> })
    }
}

async fn open_store() -> JetStreamStore {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let urls = tokio::task::block_in_place(|| cluster().urls());
    let servers: Vec<String> = urls.split(',').map(String::from).collect();
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(servers.as_slice())
        .await
        .expect("connect to the test cluster");
    let js = async_nats::jetstream::new(client);
    let prefix = format!("check{}", NEXT.fetch_add(1, Ordering::Relaxed));
    // A fresh cluster elects its JetStream leaders a moment after it listens.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match JetStreamStore::open(&js, &prefix, 3, JetStreamStoreConfig::default()).await {
            Ok(store) => return store,
            Err(e) if Instant::now() < deadline => {
                eprintln!("store not open yet: {e:#}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("open the JetStream store on {urls}: {e:#}"),
        }
    }
}

macro_rules! checks {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                if !strata_testkit::needs(stringify!($name), nats_server()) {
                    return;
                }
                conformance::$name(&JetStream).await;
            }
        )*

        #[test]
        fn every_check_of_the_suite_runs_here() {
            let here = [$(stringify!($name)),*];
            for check in conformance::CHECKS {
                assert!(here.contains(&check), "conformance check {check} is not run against the JetStream store");
            }
        }
    };
}

checks!(
    put_then_get_returns_value_and_version,
    compare_and_set_conflicts,
    versions_increase_per_key,
    only_one_of_racing_compare_and_sets_wins,
    listing_pages_through_a_prefix_with_a_cursor,
    namespaces_are_isolated,
    the_change_feed_sees_committed_changes_in_version_order,
    an_acknowledged_write_is_seen_by_every_later_read,
    blobs_list_in_pages_per_namespace,
    a_blob_round_trips_with_its_metadata,
);
