//! What a new user meets in the first hour, run as they would run it: `strata up` (the
//! binary) in app directories, instances that are real programs.
//!
//! - A node owns its addresses: a second `strata up` on a gateway or cache address in
//!   use stops at start and names the process holding it; the first keeps every
//!   connection. Apps have no Redis port unless they ask, so two apps side by side never
//!   answer with each other's values.
//! - Health checks are well-behaved clients: a stdlib `http.server` checked 100 times
//!   logs no connection reset.
//! - An instance that fails to start says why: what it printed is in `strata up`'s
//!   output and in `ps`; one that never listens on `$PORT` is reported within seconds.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `strata up ARGS` in `dir`, stdout and stderr to `dir/up.out`.
fn up(dir: &Path, args: &[&str]) -> Up {
    Up::spawn_with(dir, args, &[])
}

/// `N` different ports free now (the kernel's picks, let go again).
/// Ports that are free now, taken below the kernel's ephemeral range (32768 and up here):
/// a port the kernel hands out for `:0` could be given to another test's node between
/// this check and the node that is meant to take it.
fn free_ports<const N: usize>() -> [u16; N] {
    let seed = std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    let mut held: Vec<std::net::TcpListener> = Vec::new();
    let mut n = seed;
    while held.len() < N {
        n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let port = 20_000 + (n >> 33) as u16 % 12_000;
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            held.push(l);
        }
    }
    std::array::from_fn(|i| held[i].local_addr().unwrap().port())
}

/// An app of one test member with the given top-level additions (gateway, cache).
fn member_app(extra: Value) -> App {
    let app = App::new();
    let mut manifest = json!({
        "strata": 1,
        "app": "test",
        "services": { "web": app.member(json!({ "routes": ["/"] })) },
    });
    for (key, value) in extra.as_object().expect("an object") {
        manifest[key] = value.clone();
    }
    std::fs::write(app.path().join("strata.json"), manifest.to_string()).unwrap();
    app
}

/// Stops a `strata up` with `strata down` and waits for it to exit.
async fn down(node: &mut Up) {
    let out = strata(&node.dir, &["down"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    node.wait_exit(Duration::from_secs(30)).await;
}

/// One RESP command over a fresh connection; the reply as text.
async fn redis(addr: SocketAddr, args: &[&str]) -> String {
    let mut command = format!("*{}\r\n", args.len());
    for a in args {
        command.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    let mut conn = TcpStream::connect(addr).await.expect("connect to the Redis port");
    conn.write_all(command.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
        .await
        .expect("a reply within 5s")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_on_a_gateway_address_in_use_is_refused_naming_the_first() {
    let [port] = free_ports();
    let gateway = SocketAddr::from(([127, 0, 0, 1], port));
    let gateway_spec = json!({ "gateway": { "listen": gateway.to_string() } });
    let first_app = member_app(gateway_spec.clone());
    let mut first = up(first_app.path(), &[]);
    let info = first.node_file().await;
    assert_eq!(info["gateway"], gateway.to_string());
    let api = addr_of(info["api"].as_str().unwrap());
    let ps = first.wait_ready(api, 1).await;
    let first_pids = pids_in_ps(&ps);

    // The same gateway address, from another directory.
    let second_app = member_app(gateway_spec);
    let mut second = up(second_app.path(), &[]);
    let status = second.wait_exit(Duration::from_secs(20)).await;
    assert!(!status.success());
    let said = second.output();
    let expected = format!(
        "strata: the gateway cannot listen: {gateway} is already in use by pid {} (strata up, in {})",
        first.pid,
        first_app.path().canonicalize().unwrap().display()
    );
    assert!(said.contains(&expected), "wanted {expected:?} in:\n{said}");
    assert!(said.contains("choose another address (gateway.listen"), "{said}");
    assert!(
        !second_app.path().join(".strata/node.json").exists(),
        "the refused node wrote no node file"
    );

    // The first node still takes every connection.
    for i in 0..20 {
        let reply = get(gateway, &format!("/still-mine/{i}")).await;
        assert_eq!(reply.status, http::StatusCode::OK, "{}", reply.text());
        let pid = reply.json()["pid"].as_i64().unwrap() as i32;
        assert!(first_pids.contains(&pid), "answered by pid {pid}, not the first app's");
    }
    down(&mut first).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_side_by_side_have_their_own_cache_or_none() {
    // No cache.listen: no Redis port at all.
    let plain = member_app(json!({}));
    let mut plain_up = up(plain.path(), &["--listen", "127.0.0.1:0"]);
    let info = plain_up.node_file().await;
    assert!(info.get("cache").is_none(), "{info}");

    // Two apps, each with the Redis port it asked for, answer with their own values.
    let [port_a, port_b] = free_ports();
    let cache = |port: u16| json!({ "cache": { "listen": format!("127.0.0.1:{port}") } });
    let app_a = member_app(cache(port_a));
    let app_b = member_app(cache(port_b));
    let mut a = up(app_a.path(), &["--listen", "127.0.0.1:0"]);
    let mut b = up(app_b.path(), &["--listen", "127.0.0.1:0"]);
    let redis_a = addr_of(a.node_file().await["cache"].as_str().expect("a's Redis port"));
    let redis_b = addr_of(b.node_file().await["cache"].as_str().expect("b's Redis port"));
    assert_eq!((redis_a.port(), redis_b.port()), (port_a, port_b));
    assert_eq!(redis(redis_a, &["SET", "greeting", "from-a"]).await, "+OK\r\n");
    assert_eq!(redis(redis_b, &["SET", "greeting", "from-b"]).await, "+OK\r\n");
    assert_eq!(redis(redis_a, &["GET", "greeting"]).await, "$6\r\nfrom-a\r\n");
    assert_eq!(redis(redis_b, &["GET", "greeting"]).await, "$6\r\nfrom-b\r\n");

    // A third app asking for a's port is refused, naming a.
    let app_c = member_app(cache(port_a));
    let mut c = up(app_c.path(), &["--listen", "127.0.0.1:0"]);
    assert!(!c.wait_exit(Duration::from_secs(20)).await.success());
    let said = c.output();
    let expected = format!(
        "strata: the cache's Redis protocol cannot listen: 127.0.0.1:{port_a} is already in use by pid {} (strata up",
        a.pid
    );
    assert!(said.contains(&expected), "wanted {expected:?} in:\n{said}");
    assert_eq!(redis(redis_a, &["GET", "greeting"]).await, "$6\r\nfrom-a\r\n");

    for node in [&mut plain_up, &mut a, &mut b] {
        down(node).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_health_checks_of_a_stdlib_server_log_no_reset() {
    let app = App::new();
    let manifest = json!({"strata": 1, "app": "plain", "services": {"web": {
        "run": ["python3", "-m", "http.server", "${PORT}", "--bind", "127.0.0.1"],
        "routes": ["/"],
        "health": { "path": "/", "interval_ms": 20 },
    }}});
    let config = app.config(strata_manifest::parse(&manifest.to_string()).unwrap());
    let node = app.start(config).await;
    wait_ready(&node, "web", 1).await;
    let log = app.path().join(".strata/logs/web/web-1.log");
    let checks = |text: &str| text.lines().filter(|l| l.contains("\"GET / HTTP/1.1\" 200")).count();
    wait_until("100 health checks logged", Duration::from_secs(30), || {
        checks(&std::fs::read_to_string(&log).unwrap_or_default()) >= 100
    })
    .await;
    stop(node).await;
    let text = std::fs::read_to_string(&log).unwrap();
    for bad in ["Traceback", "Connection reset", "Errno 104", "BrokenPipe", "Exception"] {
        assert!(!text.contains(bad), "{bad:?} in the server's log:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_exits_at_start_shows_what_it_printed() {
    let app = App::new();
    let manifest = json!({"strata": 1, "app": "broken", "services": {"web": {
        "run": ["python3", "-c", "print('starting web', flush=True)\nimport flask_is_not_installed_here"],
        "routes": ["/"],
        "health": { "path": "/healthz" },
    }}});
    std::fs::write(app.path().join("strata.json"), manifest.to_string()).unwrap();
    let mut node = up(app.path(), &["--listen", "127.0.0.1:0"]);
    let api = addr_of(node.node_file().await["api"].as_str().unwrap());

    // ps: the reason and the last line in the detail, the lines in last_output.
    let instance = wait_for_async("web-1 to have exited three times", READY_TIMEOUT, || async {
        let ps = get(api, "/v1/ps").await.json();
        let i = ps["services"][0]["instances"][0].clone();
        (i["restarts"].as_u64()? >= 3).then_some(i)
    })
    .await;
    let detail = instance["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(
            "exited with status 1, its last line: ModuleNotFoundError: No module named 'flask_is_not_installed_here'"
        ),
        "{detail}"
    );
    let last: Vec<&str> = instance["last_output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(last.first(), Some(&"starting web"), "{last:?}");
    assert!(last.contains(&"Traceback (most recent call last):"), "{last:?}");
    let text = strata(app.path(), &["ps"]).await;
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("its last line: ModuleNotFoundError"), "{text}");

    // strata up: the lines under the exit, once however often the same output comes.
    let said = node.output();
    assert!(said.contains("[web-1] exited: exited with status 1 after"), "{said}");
    assert!(
        said.contains(&format!(
            "[web-1] its last {} line(s) of output (.strata/logs/web/web-1.log):",
            last.len()
        )),
        "{said}"
    );
    assert!(said.contains("[web-1]   starting web\n"), "{said}");
    assert!(
        said.contains("[web-1]   ModuleNotFoundError: No module named 'flask_is_not_installed_here'"),
        "{said}"
    );
    assert_eq!(said.matches("ModuleNotFoundError").count(), 1, "{said}");
    down(&mut node).await;
}

/// A program that is not there is named as missing (not a file of some other path); a
/// workdir that is not a folder, and a file to copy that is not there, are refused with
/// the path looked at before anything starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_program_file_or_workdir_is_named_as_such() {
    let app = App::new();
    let manifest = json!({"strata": 1, "app": "missing", "services": {
        "web": { "run": ["no-such-program-here"], "routes": ["/"] },
    }});
    std::fs::write(app.path().join("strata.json"), manifest.to_string()).unwrap();
    let mut node = up(app.path(), &["--listen", "127.0.0.1:0"]);
    let api = addr_of(node.node_file().await["api"].as_str().unwrap());
    let detail = wait_for_async("it failed to launch", READY_TIMEOUT, || async {
        let ps = get(api, "/v1/ps").await.json();
        let detail = ps["services"][0]["instances"][0]["detail"]
            .as_str()
            .map(str::to_string)?;
        detail.contains("could not launch").then_some(detail)
    })
    .await;
    assert!(
        detail.contains("start \"no-such-program-here\": no such program (on the PATH, or relative to "),
        "{detail:?}"
    );
    down(&mut node).await;

    // A workdir and a file to copy that are not there: strata up and strata validate
    // refuse the manifest (the file's copy failed at each launch, in a crash loop).
    let manifest = json!({"strata": 1, "app": "missing", "services": {
        "web": { "run": ["python3", "app.py"], "workdir": "srv", "routes": ["/"] },
        "cfg": { "run": ["python3", "-m", "http.server", "${PORT}"], "files": { "a.json": { "source": "nope.json" } } },
    }});
    std::fs::write(app.path().join("strata.json"), manifest.to_string()).unwrap();
    for args in [&["validate"][..], &["up", "--listen", "127.0.0.1:0"]] {
        let out = strata(app.path(), args).await;
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(
                "services.web.workdir: expected a folder, relative to the manifest's folder, found nothing at "
            ),
            "{args:?}: {err}"
        );
        assert!(
            err.contains(
                "services.cfg.files[\"a.json\"].source: expected a file, relative to the manifest's folder, found nothing at "
            ),
            "{args:?}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_ignores_port_is_reported_within_seconds() {
    let app = App::new();
    // Listens, but on a port of its own choosing (0: any), not on $PORT.
    let manifest = json!({"strata": 1, "app": "deaf", "services": {"web": {
        "run": ["python3", "-m", "http.server", "0", "--bind", "127.0.0.1"],
        "routes": ["/"],
        "health": { "path": "/" },
    }}});
    std::fs::write(app.path().join("strata.json"), manifest.to_string()).unwrap();
    let started = Instant::now();
    let mut node = up(app.path(), &["--listen", "127.0.0.1:0"]);
    let api = addr_of(node.node_file().await["api"].as_str().unwrap());
    let said = wait_for("the report in strata up's output", Duration::from_secs(20), || {
        let said = node.output();
        said.contains("[web-1] not ready after").then_some(said)
    })
    .await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(12), "reported after {took:?}");
    let ps = get(api, "/v1/ps").await.json();
    let i = &ps["services"][0]["instances"][0];
    let port = i["port"].as_u64().unwrap();
    let pid = i["pid"].as_u64().unwrap();
    let line = said
        .lines()
        .find(|l| l.contains("[web-1] not ready after"))
        .unwrap()
        .to_string();
    assert!(
        line.contains(&format!(
            "nothing listens on its port {port}: an instance must serve HTTP on 127.0.0.1:$PORT (it was started with PORT={port}); it listens on 127.0.0.1:"
        )),
        "{line}"
    );
    assert!(
        line.ends_with("instead; still waiting up to 60s in all (health.start_timeout_ms)"),
        "{line}"
    );
    // Still given its time: the same process, starting, with the reason in ps.
    assert_eq!(i["state"], "starting", "{i}");
    assert_eq!(i["restarts"], 0, "{i}");
    let detail = i["detail"].as_str().unwrap();
    assert!(detail.contains("must serve HTTP on 127.0.0.1:$PORT"), "{detail}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ps = get(api, "/v1/ps").await.json();
    assert_eq!(ps["services"][0]["instances"][0]["pid"].as_u64(), Some(pid));
    down(&mut node).await;
}
