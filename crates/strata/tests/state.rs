//! The stateful tier through a real node: key-value with compare-and-set and pagination,
//! a 200 MiB blob streamed through the binary with bounded memory, read-through caching
//! with drop-shard and refill, the Redis port with redis-cli, and bad input.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use http::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn manifest(caches: Value) -> strata_manifest::Manifest {
    let m = json!({
        "strata": 1, "app": "state",
        "caches": caches,
        "services": { "idle": { "run": ["sleep", "100000"], "instances": { "min": 0, "max": 1 } } }
    });
    strata_manifest::parse(&m.to_string()).expect("a valid manifest")
}

async fn put(api: SocketAddr, path: &str, body: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = request(Method::PUT, api, path, body.to_string());
    for (k, v) in headers {
        let name = http::HeaderName::from_bytes(k.as_bytes()).unwrap();
        req.headers_mut().insert(name, v.parse().unwrap());
    }
    send(api, req).await.expect("an answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_value_versions_compare_and_set_and_pages() {
    let app = App::new();
    let node = app.start(app.config(manifest(json!({})))).await;
    let api = node.api_addr;

    let created = put(api, "/v1/kv/carts/alice", "book", &[("if-none-match", "*")]).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let v1 = created.json()["version"].as_u64().unwrap();
    assert_eq!(created.header("etag"), Some(format!("\"{v1}\"").as_str()));
    // Create-once refuses a second create, naming the current version.
    let again = put(api, "/v1/kv/carts/alice", "pen", &[("if-none-match", "*")]).await;
    assert_eq!(again.status, 412);
    assert_eq!(again.json()["current"], v1);
    // Compare-and-set: the right version wins once, a stale one loses.
    let cas = put(api, "/v1/kv/carts/alice", "book,pen", &[("if-match", &v1.to_string())]).await;
    assert_eq!(cas.status, 201);
    let v2 = cas.json()["version"].as_u64().unwrap();
    assert!(v2 > v1);
    let stale = put(api, "/v1/kv/carts/alice", "lost", &[("if-match", &v1.to_string())]).await;
    assert_eq!(stale.status, 412);
    assert_eq!(stale.json()["current"], v2);
    let got = get(api, "/v1/kv/carts/alice").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.text(), "book,pen");
    assert_eq!(got.header("x-strata-version"), Some(v2.to_string().as_str()));
    // A reader holding that version is told so (304), one holding an older one is not.
    let conditional = |etag: String| {
        let mut req = request(Method::GET, api, "/v1/kv/carts/alice", "");
        req.headers_mut().insert("if-none-match", etag.parse().unwrap());
        send(api, req)
    };
    let same = conditional(format!("\"{v2}\"")).await.unwrap();
    assert_eq!(same.status, 304, "{}", same.text());
    assert_eq!(same.header("etag"), Some(format!("\"{v2}\"").as_str()));
    assert!(same.text().is_empty());
    let older = conditional(format!("\"{v1}\"")).await.unwrap();
    assert_eq!((older.status.as_u16(), older.text().as_str()), (200, "book,pen"));

    // 25 keys, pages of 10, with a prefix; another namespace is not listed.
    for i in 0..25 {
        assert_eq!(
            put(api, &format!("/v1/kv/carts/user-{i:02}"), "x", &[]).await.status,
            201
        );
    }
    put(api, "/v1/kv/other/user-99", "x", &[]).await;
    let mut keys = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut path = "/v1/kv/carts?prefix=user-&limit=10".to_string();
        if let Some(a) = &after {
            path.push_str(&format!("&after={a}"));
        }
        let page = get(api, &path).await.json();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 10);
        keys.extend(items.iter().map(|i| i["key"].as_str().unwrap().to_string()));
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => break,
        }
    }
    let want: Vec<String> = (0..25).map(|i| format!("user-{i:02}")).collect();
    assert_eq!(keys, want);

    let deleted = send(api, request(Method::DELETE, api, "/v1/kv/carts/user-00", ""))
        .await
        .unwrap();
    assert_eq!(deleted.status, 200);
    assert_eq!(get(api, "/v1/kv/carts/user-00").await.status, 404);

    // Bad input: clear 4xx, nothing written.
    for (method, path, headers, status, says) in [
        (
            Method::PUT,
            "/v1/kv/carts/x",
            vec![("if-match", "seven")],
            400,
            "If-Match takes a version",
        ),
        (
            Method::PUT,
            "/v1/kv/carts/x",
            vec![("if-none-match", "\"3\"")],
            400,
            "If-None-Match takes only *",
        ),
        (Method::GET, "/v1/kv/carts?limit=0", vec![], 400, "limit must be"),
        // A namespace access.namespaces could never grant (walk of stop 51: stored).
        (
            Method::PUT,
            "/v1/kv/Carts/x",
            vec![],
            400,
            "\"Carts\" is not a namespace name",
        ),
        (
            Method::PUT,
            "/v1/blobs/my%20ns/x",
            vec![],
            400,
            "is not a namespace name",
        ),
        // Read as before: what was written under such a name is not stranded.
        (
            Method::GET,
            "/v1/kv/a.b/x",
            vec![],
            404,
            "no key \"x\" in namespace \"a.b\"",
        ),
        (Method::GET, "/v1/kv/carts?colour=red", vec![], 400, "unknown parameter"),
        (Method::GET, "/v1/caches/nope/x", vec![], 404, "no cache named"),
        (
            Method::POST,
            "/v1/cache/shards/x/drop",
            vec![],
            400,
            "not a whole number",
        ),
        (Method::POST, "/v1/cache/shards/999/drop", vec![], 404, "no shard 999"),
        (Method::PUT, "/v1/cache/keys/k?ttl_ms=0", vec![], 400, "ttl_ms must be"),
        (
            Method::PUT,
            "/v1/cache/keys/k?sliding=true",
            vec![],
            400,
            "sliding needs ttl_ms",
        ),
        (
            Method::PUT,
            "/v1/cache/keys/k?ttl_ms=5&sliding=maybe",
            vec![],
            400,
            "sliding must be",
        ),
    ] {
        let mut req = request(method.clone(), api, path, "v");
        for (k, v) in &headers {
            req.headers_mut().insert(*k, v.parse().unwrap());
        }
        let reply = send(api, req).await.unwrap();
        assert_eq!(reply.status, status, "{method} {path}: {}", reply.text());
        let error = reply.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(error.contains(says), "{method} {path}: {error:?} should say {says:?}");
    }
    let long_key = format!("/v1/kv/carts/{}", "k".repeat(2000));
    assert_eq!(put(api, &long_key, "v", &[]).await.status, 400);
    assert_eq!(
        get(api, "/v1/kv/carts/x").await.status,
        404,
        "refused writes stored nothing"
    );
    stop(node).await;
}

/// A blob's GET serves one byte range (206, Content-Range), refuses one past its end
/// (416) and ignores what RFC 9110 lets a server ignore (several ranges, a changed
/// If-Range): a browser's <video> seeks with these (walk of stop 51: Range ignored).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_get_serves_one_byte_range() {
    let app = App::new();
    let node = app.start(app.config(manifest(json!({})))).await;
    let api = node.api_addr;
    let text: String = (0..1000u32).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let created = put(api, "/v1/blobs/media/clip", &text, &[]).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let etag = format!("\"{}\"", created.json()["etag"].as_str().unwrap());
    let ranged = |range: &str, if_range: Option<&str>| {
        let mut req = request(Method::GET, api, "/v1/blobs/media/clip", "");
        req.headers_mut().insert("range", range.parse().unwrap());
        if let Some(v) = if_range {
            req.headers_mut().insert("if-range", v.parse().unwrap());
        }
        send(api, req)
    };
    for (range, first, last) in [
        ("bytes=10-19", 10, 19),
        ("bytes=-5", 995, 999),
        ("bytes=990-", 990, 999),
    ] {
        let part = ranged(range, None).await.unwrap();
        assert_eq!(part.status, 206, "{range}: {}", part.text());
        assert_eq!(
            part.header("content-range"),
            Some(format!("bytes {first}-{last}/1000").as_str()),
            "{range}"
        );
        assert_eq!(part.text(), text[first..=last], "{range}");
    }
    let refused = ranged("bytes=1000-", None).await.unwrap();
    assert_eq!(refused.status, 416, "{}", refused.text());
    assert_eq!(refused.header("content-range"), Some("bytes */1000"));
    for (range, if_range) in [("bytes=0-1,5-6", None), ("bytes=0-9", Some("\"not-it\""))] {
        let whole = ranged(range, if_range).await.unwrap();
        assert_eq!(whole.status, 200, "{range} {if_range:?}");
        assert_eq!(whole.text(), text);
        assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    }
    let part = ranged("bytes=0-2", Some(&etag)).await.unwrap();
    assert_eq!((part.status.as_u16(), part.text().as_str()), (206, "abc"));
    // A HEAD ignores Range (RFC 9110: ranges are for GET).
    let mut head = request(Method::HEAD, api, "/v1/blobs/media/clip", "");
    head.headers_mut().insert("range", "bytes=10-19".parse().unwrap());
    let head = send(api, head).await.unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("1000"));
    // An empty blob has no byte to range over: it comes whole (empty), as before.
    assert_eq!(put(api, "/v1/blobs/media/empty", "", &[]).await.status, 201);
    let mut req = request(Method::GET, api, "/v1/blobs/media/empty", "");
    req.headers_mut().insert("range", "bytes=0-".parse().unwrap());
    let empty = send(api, req).await.unwrap();
    assert_eq!((empty.status.as_u16(), empty.text().as_str()), (200, ""));
    stop(node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_through_loads_once_serves_writes_and_refills_a_dropped_shard() {
    let app = App::new();
    let caches = json!({ "hist": { "namespace": "history", "ttl_ms": 60000 } });
    let node = app.start(app.config(manifest(caches))).await;
    let api = node.api_addr;
    let loads = |stats: &Value| stats["read_through"]["hist"]["loads"].as_u64().unwrap();

    for i in 0..40 {
        put(api, &format!("/v1/kv/history/c{i}"), &format!("order-{i}"), &[]).await;
    }
    for i in 0..40 {
        let r = get(api, &format!("/v1/caches/hist/c{i}")).await;
        assert_eq!(r.text(), format!("order-{i}"));
    }
    let after_first = get(api, "/v1/cache").await.json();
    assert_eq!(loads(&after_first), 40);
    // Served from the cache now: no more loads.
    for i in 0..40 {
        get(api, &format!("/v1/caches/hist/c{i}")).await;
    }
    assert_eq!(loads(&get(api, "/v1/cache").await.json()), 40);
    // A write through the API is seen at once.
    put(api, "/v1/kv/history/c0", "order-0b", &[]).await;
    assert_eq!(get(api, "/v1/caches/hist/c0").await.text(), "order-0b");
    assert_eq!(get(api, "/v1/caches/hist/missing").await.status, 404);
    let long = get(api, &format!("/v1/caches/hist/{}", "k".repeat(2000))).await;
    assert_eq!(
        long.status,
        400,
        "a key the store refuses is bad input: {}",
        long.text()
    );

    // Shard 0 gets amnesia; its keys load again, the others' do not.
    let before = get(api, "/v1/cache").await.json();
    let in_shard0 = before["read_through_shards"][0]["keys"].as_u64().unwrap();
    assert!(in_shard0 > 0, "shard 0 holds some keys: {before}");
    let dropped = send(api, request(Method::POST, api, "/v1/cache/shards/0/drop", ""))
        .await
        .unwrap();
    assert_eq!(dropped.status, 200, "{}", dropped.text());
    assert_eq!(dropped.json()["dropped_keys"].as_u64().unwrap(), in_shard0);
    for i in 0..40 {
        let want = if i == 0 {
            "order-0b".to_string()
        } else {
            format!("order-{i}")
        };
        assert_eq!(get(api, &format!("/v1/caches/hist/c{i}")).await.text(), want);
    }
    let refilled = loads(&get(api, "/v1/cache").await.json()) - loads(&before);
    assert_eq!(refilled, in_shard0, "exactly the dropped keys were loaded again");
    stop(node).await;
}

/// Read-through entries once shared the raw keyspace (`rt:NAME:KEY`): a raw write there
/// replaced what the read-through cache served, past its TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_cache_write_cannot_replace_a_read_through_value() {
    let app = App::new();
    let caches = json!({ "prices": { "namespace": "catalog", "ttl_ms": 60000 } });
    let node = app.start(app.config(manifest(caches))).await;
    let api = node.api_addr;
    put(api, "/v1/kv/catalog/price", "10", &[]).await;
    assert_eq!(get(api, "/v1/caches/prices/price").await.text(), "10");
    // The raw keyspace is what the Redis port serves too.
    for raw in ["/v1/cache/keys/rt:prices:price", "/v1/cache/keys/price"] {
        let r = put(api, raw, "0", &[]).await;
        assert_eq!(r.status, 204, "{}", r.text());
    }
    assert_eq!(
        get(api, "/v1/caches/prices/price").await.text(),
        "10",
        "the read-through value is the store's"
    );
    assert_eq!(get(api, "/v1/cache/keys/rt:prices:price").await.text(), "0");
    stop(node).await;
}

/// `strata up` on a temp app with the cache on a free port; returns (api, cache port).
async fn spawn_up(app: &App) -> (Up, SocketAddr, SocketAddr) {
    let m = json!({
        "strata": 1, "app": "state",
        "services": { "idle": { "run": ["sleep", "100000"], "instances": { "min": 0, "max": 1 } } }
    });
    std::fs::write(app.path().join("strata.json"), m.to_string()).unwrap();
    let mut up = Up::spawn(app.path(), &[]);
    let file = up.node_file().await;
    let api = addr_of(file["api"].as_str().unwrap());
    let cache: SocketAddr = file["cache"].as_str().expect("a cache address").parse().unwrap();
    (up, api, cache)
}

fn peak_rss_kb(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// Bytes of the test body: a pattern that is not all one value.
fn pattern(offset: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        let n = offset + i as u64;
        *b = (n ^ (n >> 11) ^ (n >> 23)) as u8;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mib_blob_streams_through_the_binary_with_bounded_memory() {
    const SIZE: u64 = 200 << 20;
    let app = App::new();
    let (mut up, api, _) = spawn_up(&app).await;
    let before = peak_rss_kb(up.pid);

    // Upload: head, then the body in 1 MiB pieces, hashed as it goes.
    let mut stream = tokio::net::TcpStream::connect(api).await.unwrap();
    let head = format!(
        "PUT /v1/blobs/media/big.bin HTTP/1.1\r\nHost: {api}\r\n{}Content-Type: application/x-test\r\nContent-Length: {SIZE}\r\n\r\n",
        auth_line(api)
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut sent = 0u64;
    while sent < SIZE {
        pattern(sent, &mut buf);
        hasher.update(&buf);
        stream.write_all(&buf).await.unwrap();
        sent += buf.len() as u64;
    }
    let etag = format!("{:x}", hasher.finalize());
    let (text, _) = read_until_close_or_body(&mut stream).await;
    assert_eq!(status_of(&text), Some(201), "{text}");
    let meta: Value = serde_json::from_str(body_of(&text)).unwrap();
    assert_eq!(meta["size"], SIZE);
    assert_eq!(meta["etag"], etag);

    // Download: stream it back, hashing as it arrives.
    let mut stream = tokio::net::TcpStream::connect(api).await.unwrap();
    let req = format!(
        "GET /v1/blobs/media/big.bin HTTP/1.1\r\nHost: {api}\r\n{}Connection: close\r\n\r\n",
        auth_line(api)
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut hasher = Sha256::new();
    let mut head: Option<Vec<u8>> = None;
    let mut pending = Vec::new();
    let mut got = 0u64;
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let n = stream.read(&mut chunk).await.unwrap();
        if n == 0 {
            break;
        }
        if head.is_some() {
            hasher.update(&chunk[..n]);
            got += n as u64;
            continue;
        }
        // Still in the head: split it off once its end arrives.
        pending.extend_from_slice(&chunk[..n]);
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            hasher.update(&pending[end + 4..]);
            got += (pending.len() - end - 4) as u64;
            pending.truncate(end + 4);
            head = Some(std::mem::take(&mut pending));
        }
    }
    let head = head.expect("a reply head");
    let head = String::from_utf8_lossy(&head).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains(&format!("etag: \"{etag}\"")),
        "{head}"
    );
    assert_eq!(got, SIZE);
    assert_eq!(format!("{:x}", hasher.finalize()), etag);

    let after = peak_rss_kb(up.pid);
    eprintln!("strata peak RSS: {before} kB before, {after} kB after 200 MiB in and out");
    assert!(after < 100 * 1024, "peak RSS {after} kB: the blob was not streamed");
    signal(up.pid, libc::SIGTERM);
    up.wait_exit(Duration::from_secs(20)).await;
}

/// Reads an HTTP reply with a Content-Length body (or until close).
async fn read_until_close_or_body(stream: &mut tokio::net::TcpStream) -> (String, bool) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(60), stream.read(&mut chunk))
            .await
            .expect("a reply within 60 s")
            .unwrap();
        if n == 0 {
            return (String::from_utf8_lossy(&buf).to_string(), true);
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_string())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return (text, false);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_works_against_the_node() {
    let has = strata_testkit::program("redis-cli", "apt-get install redis-tools");
    if !strata_testkit::needs("redis_cli_works_against_the_node", has) {
        return;
    }
    let app = App::new();
    let (mut up, _api, cache) = spawn_up(&app).await;
    let port = cache.port().to_string();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port])
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(cli(&["PING"]), "PONG");
    assert_eq!(cli(&["SET", "greeting", "hello", "EX", "100"]), "OK");
    assert_eq!(cli(&["GET", "greeting"]), "hello");
    assert_eq!(cli(&["INCR", "hits"]), "1");
    assert_eq!(cli(&["INCRBY", "hits", "41"]), "42");
    let ttl: i64 = cli(&["TTL", "greeting"]).parse().unwrap();
    assert!((1..=100).contains(&ttl), "{ttl}");
    assert_eq!(cli(&["MGET", "greeting", "nope", "hits"]), "hello\n\n42");
    assert!(cli(&["NOSUCHCOMMAND", "x"]).starts_with("ERR unknown command"));
    assert_eq!(cli(&["DBSIZE"]), "2");
    signal(up.pid, libc::SIGTERM);
    up.wait_exit(Duration::from_secs(20)).await;
}
