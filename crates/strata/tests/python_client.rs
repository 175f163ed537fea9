//! The Python client (`clients/python`, the package `strata_client`) against a live node:
//! the package is installed with pip into a temp dir (which builds it as a user's
//! `pip install ./clients/python` does), and its unittest suites, the sync `Client`'s
//! and the `AsyncClient`'s, run from there with `STRATA_URL` pointing at the node API of
//! a node started here. The node runs two test members (`echo`) so that calls are
//! covered too (an ALL call must reach each once), and declares a read-through cache
//! (`hist`, over the store namespace `history`, with a TTL no test outlasts, so that its
//! load count moves only on a miss) for the cache tests. A second test type-checks the
//! package with mypy --strict, as its `py.typed` marker promises.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::json;

/// The whole suite, with its long polls and lease expiries, takes seconds; allow for a
/// busy machine.
const SUITE_TIMEOUT: Duration = Duration::from_secs(180);

/// pip builds the package in an isolated environment, whose build backend it may have
/// to download first.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(240);

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

    let root = repo_root();
    let suites = [
        "clients/python/test_strata_client.py",
        "clients/python/test_strata_client_aio.py",
    ];
    for suite in suites {
        assert!(root.join(suite).exists(), "{suite} is in the repo");
    }
    let site = tempfile::Builder::new().prefix("strata-pyclient-").tempdir().unwrap();
    let installed = install_client(&root, site.path()).await;
    let mut cmd = tokio::process::Command::new("python3");
    cmd.args(["-m", "unittest", "-v"]).args(suites).current_dir(&root);
    if installed {
        // The suites import the installed package, and check that they did.
        cmd.env("PYTHONPATH", site.path())
            .env("STRATA_TEST_CLIENT_INSTALLED_AT", site.path());
    }
    // The suites act as the operator: the control token reaches every queue, namespace
    // and service (a service's token reaches what its manifest entry declares).
    cmd.env("STRATA_URL", format!("http://{}", node.api_addr))
        .env("STRATA_TOKEN", node.control_token())
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

/// `clients/python` type-checks under `mypy --strict` (its pyproject.toml's settings).
#[test]
fn python_client_type_checks() {
    let has = strata_testkit::python_module("mypy", "python3 -m pip install mypy");
    if !strata_testkit::needs("python_client_type_checks", has) {
        return;
    }
    let out = std::process::Command::new("python3")
        .args(["-m", "mypy", "--no-incremental", "--cache-dir", "/dev/null"])
        .current_dir(repo_root().join("clients/python"))
        .stdin(Stdio::null())
        .output()
        .expect("run python3 -m mypy");
    assert!(
        out.status.success(),
        "mypy --strict finds type errors in clients/python/strata_client:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Installs `clients/python` into `site` with pip, as a user would (pip builds it in an
/// isolated environment, fetching its build backend, hatchling, from the package index
/// when its cache lacks it) → true. Without pip: fails under CI; elsewhere says so,
/// and the suites run from the source tree instead (false).
async fn install_client(root: &Path, site: &Path) -> bool {
    let has_pip = strata_testkit::python_module("pip", "apt-get install python3-pip");
    if !strata_testkit::needs(
        "python_client_suite_passes_against_a_node (installing clients/python with pip; \
         the suites run from the source tree instead)",
        has_pip,
    ) {
        return false;
    }
    let mut pip = tokio::process::Command::new("python3");
    pip.args(["-m", "pip", "install", "--quiet", "--target"])
        .arg(site)
        .arg(root.join("clients/python"))
        .env("PIP_ROOT_USER_ACTION", "ignore")
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(INSTALL_TIMEOUT, pip.output())
        .await
        .unwrap_or_else(|_| panic!("pip install ./clients/python did not finish within {INSTALL_TIMEOUT:?}"))
        .expect("run python3 -m pip");
    assert!(
        out.status.success(),
        "pip install ./clients/python failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for file in ["__init__.py", "aio.py", "py.typed"] {
        assert!(
            site.join("strata_client").join(file).is_file(),
            "the installed package has strata_client/{file}"
        );
    }
    true
}
