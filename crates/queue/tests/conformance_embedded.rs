//! The queue conformance suite (`tests/conformance/mod.rs`) against the embedded engine.

mod conformance;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use strata_manifest::QueueSpec;
use strata_queue::{QueueBackend, Queues};

/// Opens the embedded engine in a temp dir kept until the test ends.
#[derive(Default)]
struct Embedded {
    dirs: Mutex<Vec<tempfile::TempDir>>,
}

impl conformance::Open for Embedded {
    fn open(&self, spec: QueueSpec) -> Pin<Box<dyn Future<Output = Arc<dyn QueueBackend>> + Send + '_>> {
        Box::pin(async move {
            let dir = tempfile::tempdir().unwrap();
            let queues = Queues::open(dir.path(), &BTreeMap::from([("q".to_string(), spec)])).expect("open");
            self.dirs.lock().unwrap().push(dir);
            Arc::new(queues) as Arc<dyn QueueBackend>
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
                assert!(here.contains(&check), "conformance check {check} is not run against the embedded engine");
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
