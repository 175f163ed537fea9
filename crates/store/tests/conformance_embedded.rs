//! The store conformance suite (`tests/conformance/mod.rs`) against the embedded store.

mod conformance;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use strata_store::{Store, StoreBackend};

/// Opens the embedded store in a temp dir kept until the test ends.
#[derive(Default)]
struct Embedded {
    dirs: Mutex<Vec<tempfile::TempDir>>,
}

impl conformance::Open for Embedded {
    fn open(&self) -> Pin<Box<dyn Future<Output = Arc<dyn StoreBackend>> + Send + '_>> {
        Box::pin(async move {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).expect("open");
            self.dirs.lock().unwrap().push(dir);
            Arc::new(store) as Arc<dyn StoreBackend>
        })
    }
}

macro_rules! checks {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                conformance::$name(&Embedded::default()).await;
            }
        )*

        #[test]
        fn every_check_of_the_suite_runs_here() {
            let here = [$(stringify!($name)),*];
            for check in conformance::CHECKS {
                assert!(here.contains(&check), "conformance check {check} is not run against the embedded store");
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
