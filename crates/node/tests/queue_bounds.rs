//! The manifest's bounds reach a running node, and `DELETE /v1/queues/NAME` works over
//! HTTP (issue 10): a queue created through the API cannot ask for huge segments nor
//! pass `queue_limits.max_queues`, a deleted queue is gone with its files, a declared one
//! is refused with 409 (that only the control token may delete is `strata-api`'s access
//! test), and a blob past
//! `store.max_blob_bytes` is refused with 413 naming it. A real node on port 0, raw
//! sockets.

use std::net::SocketAddr;

use strata_node::{Node, NodeConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// One HTTP/1.1 exchange on a fresh connection: (status, body).
async fn call(addr: SocketAddr, token: &str, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // The node may answer (413) and close before it read the whole body.
    let _ = stream.write_all(body).await;
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn code(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["code"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manifests_bounds_hold_and_a_queue_can_be_deleted_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = strata_manifest::parse(
        r#"{"strata": 1, "app": "t",
            "services": {"web": {"run": ["true"], "instances": {"min": 0, "max": 1}}},
            "queues": {"jobs": {}},
            "queue_limits": {"max_queues": 2, "max_segment_bytes": 65536},
            "store": {"max_blob_bytes": 65536}}"#,
    )
    .unwrap();
    let mut config = NodeConfig::new(manifest, dir.path().to_path_buf());
    config.gateway_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    let node = Node::start(config, CancellationToken::new())
        .await
        .expect("start the node");
    let api = node.api_addr;
    let token = node.control_token().to_string();
    let queues_dir = dir.path().join(".strata/queues");

    // Huge segments through the API: refused, nothing made.
    let (status, body) = call(
        api,
        &token,
        "PUT",
        "/v1/queues/big",
        br#"{"segment_bytes": 1073741824}"#,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("queue_limits.max_segment_bytes (65536)"), "{body}");
    assert!(!queues_dir.join("big").exists());

    let small = br#"{"segment_bytes": 65536, "max_message_bytes": 1024}"#;
    let (status, body) = call(api, &token, "PUT", "/v1/queues/temp", small).await;
    assert_eq!(status, 201, "{body}");
    // Two queues now (jobs and temp): a third is refused, naming the bound.
    let (status, body) = call(api, &token, "PUT", "/v1/queues/third", small).await;
    assert_eq!((status, code(&body).as_str()), (503, "unavailable"), "{body}");
    assert!(body.contains("queue_limits.max_queues (2)"), "{body}");

    let (status, body) = call(api, &token, "POST", "/v1/queues/temp/messages", br#"{"body": "x"}"#).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = call(api, &token, "DELETE", "/v1/queues/temp", b"").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, r#"{"deleted":"temp"}"#);
    let (status, body) = call(api, &token, "GET", "/v1/queues/temp", b"").await;
    assert_eq!((status, code(&body).as_str()), (404, "not_found"), "{body}");
    assert!(!queues_dir.join("temp").exists() && !queues_dir.join("temp.dlq").exists());
    // Its place is free again.
    let (status, body) = call(api, &token, "PUT", "/v1/queues/third", small).await;
    assert_eq!(status, 201, "{body}");

    let (status, body) = call(api, &token, "DELETE", "/v1/queues/jobs", b"").await;
    assert_eq!((status, code(&body).as_str()), (409, "conflict"), "{body}");
    assert!(body.contains("declared in the manifest"), "{body}");
    let (status, body) = call(api, &token, "DELETE", "/v1/queues/nope", b"").await;
    assert_eq!((status, code(&body).as_str()), (404, "not_found"), "{body}");

    // A blob one byte past the cap: 413 naming it, and nothing stored.
    let (status, body) = call(api, &token, "PUT", "/v1/blobs/files/big", &[7u8; 65537]).await;
    assert_eq!((status, code(&body).as_str()), (413, "payload_too_large"), "{body}");
    assert!(body.contains("store.max_blob_bytes"), "{body}");
    let (status, _) = call(api, &token, "GET", "/v1/blobs/files/big", b"").await;
    assert_eq!(status, 404);
    let (status, body) = call(api, &token, "PUT", "/v1/blobs/files/ok", &[7u8; 65536]).await;
    assert_eq!(status, 201, "{body}");

    node.stop();
    node.wait().await;
}
