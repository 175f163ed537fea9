//! The dashboard (`/ui`, docs/dashboard.md) in a real browser: `strata up` runs the
//! example shop and prints the dashboard's address; Debian's Chromium, headless and
//! driven by Playwright for Python (`fixtures/dashboard.py`), loads it and sees every
//! service and instance (and, once it took the token out of its address, again after a
//! reload), a request chart move while load runs through the gateway, an
//! instance's row change after the test SIGKILLs it (and its exit on the timeline), an
//! instance's log followed; then saves a screenshot that it decodes and finds not blank.
//! The page itself needs no token, its data does.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::example::example;
use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/dashboard.py");
const CHROMIUM: &str = "/usr/bin/chromium";
/// The shop's setup steps install Flask and the client package with pip.
const SETUP_TIMEOUT: Duration = Duration::from_secs(240);
/// Everything the browser script does.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);
/// The instance the test kills.
const VICTIM: &str = "images-1";

fn tools() -> Result<(), String> {
    if !Path::new(CHROMIUM).is_file() {
        return Err(format!("Debian's Chromium at {CHROMIUM} (apt-get install chromium)"));
    }
    strata_testkit::python_module("playwright", "python3 -m pip install playwright")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_shop_live_in_a_browser() {
    if !strata_testkit::needs("the_dashboard_shows_the_shop_live_in_a_browser", tools()) {
        return;
    }
    let (_dir, app, _manifest) = example("shop");
    let mut up = Up::spawn(&app, &[]);
    let node = up.node_file().await;
    let api = addr_of(node["api"].as_str().expect("the API's address"));
    let gateway = node["gateway"].as_str().expect("the gateway's address").to_string();
    let url = wait_for("strata up prints the dashboard's address", SETUP_TIMEOUT, || {
        up.output()
            .lines()
            .find_map(|l| l.strip_prefix("strata: dashboard "))
            .map(str::to_string)
    })
    .await;
    let token = token_of(api).expect("the node's control token");
    assert_eq!(url, format!("http://{api}/ui#token={token}"), "{}", up.output());

    // The page and its files answer without a token; the stream of its data does not.
    let host = format!("Host: {api}\r\nConnection: close\r\n\r\n");
    for path in ["/ui", "/ui/dashboard.js", "/ui/dashboard.css"] {
        let (reply, _) = raw(api, format!("GET {path} HTTP/1.1\r\n{host}").as_bytes()).await;
        assert_eq!(status_of(&reply), Some(200), "{path} without a token: {reply}");
    }
    let (reply, _) = raw(api, format!("GET /v1/stream HTTP/1.1\r\n{host}").as_bytes()).await;
    assert_eq!(status_of(&reply), Some(401), "the stream without a token: {reply}");

    // Every instance ready (the app is up with one ready per service).
    let ps = wait_for_async("every instance of the shop ready", SETUP_TIMEOUT, || async {
        let ps = get(api, "/v1/ps").await.json();
        let services = ps["services"].as_array()?;
        let all_ready = services.iter().all(|s| {
            s["ready"].as_u64() >= s["min"].as_u64()
                && s["instances"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .all(|i| i["state"] == "ready")
        });
        all_ready.then_some(ps)
    })
    .await;
    let services: Vec<&str> = ps["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    let instances: Vec<&str> = ps["services"]
        .as_array()
        .expect("services")
        .iter()
        .flat_map(|s| s["instances"].as_array().into_iter().flatten())
        .filter(|i| i["state"] == "ready")
        .filter_map(|i| i["id"].as_str())
        .collect();
    assert!(
        services.len() == 6 && instances.contains(&VICTIM) && instances.contains(&"frontend-1"),
        "the shop's services and instances: {ps}"
    );
    let expected = json!({ "services": services, "instances": instances, "kill": VICTIM });
    let screenshot = app.join("dashboard.png");

    let mut browser = tokio::process::Command::new("python3")
        .arg(SCRIPT)
        .arg(&url)
        .arg(&gateway)
        .arg(expected.to_string())
        .arg(&screenshot)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run python3 with the dashboard script");
    let mut to_script = browser.stdin.take().expect("the script's stdin");
    let mut lines = BufReader::new(browser.stdout.take().expect("the script's stdout")).lines();
    let mut said = Vec::new();
    let talk = async {
        while let Some(line) = lines.next_line().await.expect("read the script's output") {
            said.push(line.clone());
            let Some(rest) = line.strip_prefix("kill ") else {
                continue;
            };
            // The pid the page shows is the one ps has; the test kills it.
            let pid = pid_of(&get(api, "/v1/ps").await.json(), VICTIM);
            assert_eq!(rest, format!("{VICTIM} {pid}"), "the page shows the instance's pid");
            signal(pid, 9);
            to_script.write_all(b"killed\n").await.expect("tell the script");
        }
    };
    let finished = tokio::time::timeout(SCRIPT_TIMEOUT, talk).await;
    let out = browser.wait_with_output().await.expect("the script's end");
    let report = format!(
        "script said:\n{}\n{}\n\nstrata up:\n{}",
        said.join("\n"),
        String::from_utf8_lossy(&out.stderr),
        up.output()
    );
    assert!(
        finished.is_ok(),
        "the browser script did not finish in {SCRIPT_TIMEOUT:?}: {report}"
    );
    assert!(
        out.status.success() && said.last().map(String::as_str) == Some("ok"),
        "the browser script failed ({}): {report}",
        out.status
    );

    // The screenshot the script found not blank (it decoded its pixels): kept for people.
    let png = std::fs::read(&screenshot).expect("the screenshot");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
    let kept = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::copy(&screenshot, &kept);
    eprintln!("{}\nscreenshot: {}", said.join("\n"), kept.display());

    signal(up.pid, 15);
    assert!(up.wait_exit(Duration::from_secs(30)).await.success(), "{}", up.output());
}

fn pid_of(ps: &Value, instance: &str) -> i32 {
    ps["services"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["instances"].as_array().into_iter().flatten())
        .find(|i| i["id"] == instance)
        .and_then(|i| i["pid"].as_i64())
        .unwrap_or_else(|| panic!("no pid of {instance} in {ps}")) as i32
}
