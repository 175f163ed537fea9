//! The Python client (`clients/python`) against a live node: its unittest suite runs with
//! `STRATA_URL` pointing at the node API of a node started here, which runs two test
//! members (`echo`) so that calls are covered too (an ALL call must reach each once), and
//! declares a read-through cache (`hist`, over the store namespace `history`, with a TTL
//! no test outlasts, so that its load count moves only on a miss) for the cache tests.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::json;

/// The whole suite, with its long polls and lease expiries, takes seconds; allow for a
/// busy machine.
const SUITE_TIMEOUT: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_suite_passes_against_a_node() {
    let app = App::new();
    let manifest = strata_manifest::parse(
        &json!({
            "strata": 1,
            "app": "test",
            "services": { "echo": app.member(json!({ "instances": { "min": 2, "max": 2 } })) },
            "caches": { "hist": { "namespace": "history", "ttl_ms": 600000, "stale_ms": 1000 } },
        })
        .to_string(),
    )
    .expect("a valid test manifest");
    let node = app.start(app.config(manifest)).await;
    wait_ready(&node, "echo", 2).await;

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let suite = "clients/python/test_strata_client.py";
    assert!(root.join(suite).exists(), "{suite} is in the repo");
    let mut cmd = tokio::process::Command::new("python3");
    cmd.args(["-m", "unittest", "-v", suite])
        .current_dir(&root)
        .env("STRATA_URL", format!("http://{}", node.api_addr))
        .env("STRATA_TEST_CALL_SERVICE", "echo")
        .env("STRATA_TEST_CACHE", "hist")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(SUITE_TIMEOUT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("the Python suite did not finish within {SUITE_TIMEOUT:?}"))
        .expect("run python3");
    // unittest reports on stderr.
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the Python client suite failed ({}):\n{report}",
        out.status
    );
    assert!(
        !report.contains("skipped"),
        "every test ran against the node, none was skipped:\n{report}"
    );
    eprintln!("{report}");
    stop(node).await;
}
