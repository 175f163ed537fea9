//! One bad file never stops the node: a queue whose settings file is garbage and a
//! store whose database file is cut short are reported as out of service, with the
//! reason, in `ps`, `queues` and their calls (503); everything else serves.

mod common;

use common::*;
use http::Method;
use serde_json::json;

fn manifest() -> strata_manifest::Manifest {
    let m = json!({
        "strata": 1, "app": "damaged",
        "queues": { "jobs": {} },
        "services": { "idle": { "run": ["sleep", "100000"], "instances": { "min": 0, "max": 1 } } }
    });
    strata_manifest::parse(&m.to_string()).expect("a valid manifest")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_queue_and_a_damaged_store_leave_the_rest_serving() {
    let app = App::new();
    {
        let node = app.start(app.config(manifest())).await;
        let api = node.api_addr;
        let created = send(api, request(Method::PUT, api, "/v1/queues/other", ""))
            .await
            .unwrap();
        assert_eq!(created.status, 201, "{}", created.text());
        for q in ["jobs", "other"] {
            let r = post(api, &format!("/v1/queues/{q}/messages"), r#"{"body": "kept"}"#).await;
            assert_eq!(r.status, 201, "{}", r.text());
        }
        let r = send(api, request(Method::PUT, api, "/v1/kv/ns/k", "v")).await.unwrap();
        assert_eq!(r.status, 201, "{}", r.text());
        stop(node).await;
    }
    let state = app.path().join(".strata");
    std::fs::write(state.join("queues/other/queue.json"), b"{ not json").unwrap();
    let db = state.join("store/store.redb");
    let len = std::fs::metadata(&db).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&db)
        .unwrap()
        .set_len(len / 3)
        .unwrap();

    let node = app.start(app.config(manifest())).await;
    let api = node.api_addr;
    let ps = get(api, "/v1/ps").await.json();
    let failures: Vec<String> = ps["failures"]
        .as_array()
        .expect("ps lists failures")
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(
        failures
            .iter()
            .any(|f| f.contains("queue \"other\"") && f.contains("queue.json")),
        "{failures:?}"
    );
    assert!(
        failures.iter().any(|f| f.contains("the store is out of service")),
        "{failures:?}"
    );

    // The damaged queue answers 503 with the reason; the declared one serves.
    let r = post(api, "/v1/queues/other/messages", r#"{"body": "x"}"#).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["code"], "unavailable");
    assert!(
        r.json()["error"].as_str().unwrap().contains("queue.json"),
        "{}",
        r.text()
    );
    let fetched = post(api, "/v1/queues/jobs/groups/g/fetch?max=all", "").await.json();
    assert_eq!(fetched["messages"][0]["body"], "kept", "{fetched}");
    let listed = get(api, "/v1/queues").await.json();
    assert_eq!(listed["failed"][0]["name"], "other", "{listed}");

    // The store answers 503 with the reason; the cache still serves.
    let r = get(api, "/v1/kv/ns/k").await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["code"], "unavailable");
    let r = send(api, request(Method::PUT, api, "/v1/cache/keys/c", "1"))
        .await
        .unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(get(api, "/v1/cache/keys/c").await.text(), "1");
    stop(node).await;
}
