//! The `strata` commands against a running node: validate, ps, scale, logs.

mod common;

use common::*;
use serde_json::{json, Value};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_names_the_field_that_is_wrong() {
    let app = App::new();
    let write = |text: &str| std::fs::write(app.path().join("strata.json"), text).unwrap();

    write(r#"{"strata": 1, "app": "shop", "services": {"web": {"run": ["x"], "instances": {"min": 5, "max": 2}}}}"#);
    let out = strata(app.path(), &["validate"]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("services.web.instances.min"), "{}", stderr(&out));
    assert!(stderr(&out).contains("at most instances.max (2)"), "{}", stderr(&out));

    write(r#"{"strata": 1, "app": "shop", "services": {"web": {"run": ["x"], "helth": {"path": "/"}}}}"#);
    let out = strata(app.path(), &["validate"]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("services.web.helth: unknown field"),
        "{}",
        stderr(&out)
    );

    write(r#"{"strata": 1, "app": "shop", "services": {"web": {"run": ["x"], "routes": ["/"]}}}"#);
    let out = strata(app.path(), &["validate"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("is valid"), "{}", stdout(&out));

    // A file given by name, from elsewhere, via --dir.
    std::fs::write(
        app.path().join("other.json"),
        r#"{"strata": 2, "app": "x", "services": {}}"#,
    )
    .unwrap();
    let out = strata(
        std::path::Path::new("/"),
        &["validate", "--dir", app.path().to_str().unwrap(), "other.json"],
    )
    .await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("strata: expected 1"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ps_scale_and_logs_talk_to_the_running_node() {
    let app = App::new();
    let spec = app.member(json!({ "instances": { "min": 1, "max": 4 }, "routes": ["/"] }));
    let mut config = app.config(app.manifest(json!({ "web": spec }), Value::Null));
    config.write_state_file = true;
    let node = app.start(config).await;
    wait_ready(&node, "web", 1).await;
    let dir = app.path().to_str().unwrap().to_string();
    let api_url = format!("http://{}", node.api_addr);
    let elsewhere = std::path::Path::new("/");

    // ps --json, finding the node through the app dir or given its API.
    for args in [["ps", "--json", "--dir", &dir], ["ps", "--json", "--api", &api_url]] {
        let out = strata(elsewhere, &args).await;
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let ps: Value = serde_json::from_str(&stdout(&out)).expect("ps --json prints JSON");
        assert_eq!(ps["gateway"], node.gateway_addr.to_string());
        assert_eq!(ps["app"], "test");
        assert_eq!(ps["services"][0]["name"], "web");
        assert_eq!(ps["services"][0]["ready"], 1);
        assert_eq!(ps["services"][0]["instances"][0]["state"], "ready");
    }
    let out = strata(app.path(), &["ps"]).await;
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(
        text.contains(&format!("gateway http://{}", node.gateway_addr)),
        "{text}"
    );
    assert!(text.contains("web-1") && text.contains("ready"), "{text}");

    // scale within the bounds, then out of them.
    let out = strata(app.path(), &["scale", "web", "3"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "web: scaling to 3 instance(s)");
    wait_ready(&node, "web", 3).await;
    let out = strata(app.path(), &["scale", "web", "9"]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("web can run between 1 and 4 instances") && stderr(&out).contains("9 is outside"),
        "{}",
        stderr(&out)
    );
    let out = strata(app.path(), &["scale", "nope", "2"]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no service named \"nope\""), "{}", stderr(&out));
    assert_eq!(service(&node, "web").desired, 3);

    // logs: the members' output, line by line, named by instance.
    let out = strata(app.path(), &["logs", "web"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for id in ["web-1", "web-2", "web-3"] {
        assert!(
            text.contains(&format!("{id} | member {id} listening on port")),
            "{text}"
        );
    }
    let out = strata(app.path(), &["logs", "web", "--instance", "web-2"]).await;
    let text = stdout(&out);
    assert!(
        text.contains("web-2 | member web-2") && !text.contains("web-1 |"),
        "{text}"
    );
    let out = strata(app.path(), &["logs", "nope"]).await;
    assert!(!out.status.success());
    stop(node).await;
}
