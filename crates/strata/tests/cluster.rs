//! The cluster over NATS, end to end: real nats-server processes (three, clustered, with
//! JetStream), real `strata node` processes, a real deploy, kill -9 of nodes and of a
//! NATS server.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::*;
use common::{get, remember_token, Client};
use serde_json::{json, Value};
use strata_testkit::nats::{nats_server, NatsCluster};

/// The cluster tests start many processes: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_spread_a_pool_survive_a_dead_node_a_dead_scheduler_and_a_dead_nats_server() {
    if !strata_testkit::needs("cluster", nats_server()) {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut nats = NatsCluster::start(dir.path(), 3);
    let urls = nats.urls();
    remember_dir(&urls, dir.path());
    let record = dir.path().join("record.jsonl");
    let manifest = write_app(
        dir.path(),
        &record,
        json!({
            "web": {
                "instances": { "min": 3, "max": 3 },
                "placement": { "spread": "power" },
                "routes": [{ "path": "/" }, { "path": "/everyone", "mode": "all" }],
            },
            "huge": {
                "instances": { "min": 2, "max": 2 },
                "resources": { "memory_mb": 100000 },
                "routes": [{ "path": "/huge" }],
            },
        }),
    );
    let mut nodes: BTreeMap<String, ClusterNode> = [("a", "A"), ("b", "B"), ("c", "C")]
        .into_iter()
        .map(|(n, p)| (n.to_string(), start_node(dir.path(), &urls, n, p)))
        .collect();
    // Deployed before every node is known, the placement spreads once they are.
    let out = strata(&["deploy", manifest.to_str().unwrap(), "--nats", &urls]);
    assert!(out.status.success(), "deploy: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("sha256:"));

    // One web instance per power domain, each ready; huge fits nowhere and says why.
    wait_for(&urls, "one ready web instance per node", Duration::from_secs(60), |v| {
        ["a", "b", "c"].iter().all(|n| ready_on(v, n) == 1)
    });
    let v = nodes_json(&urls);
    assert_eq!(
        placed(&v, "web"),
        [("a".into(), 1), ("b".into(), 1), ("c".into(), 1)].into()
    );
    let unplaced = &v["apps"]["test"]["unplaced"]["huge"];
    assert_eq!(unplaced["count"], 2, "{v:#}");
    assert!(unplaced["reason"].as_str().unwrap().contains("100000 MB"), "{unplaced}");
    let table = strata(&["nodes", "--nats", &urls]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("test/huge: 2 unplaced"), "{table}");
    // `ps --nats`: every instance with its node. (An instance the first placement moved
    // once every node was known may still be stopping: it is drained for the other
    // nodes for 300 ms or more after it leaves its pool.)
    let want: BTreeSet<(String, String)> = ["a", "b", "c"]
        .iter()
        .map(|n| (n.to_string(), "ready".to_string()))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = strata(&["ps", "--json", "--nats", &urls]);
        assert!(
            out.status.success(),
            "ps --nats: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ps: Value = serde_json::from_slice(&out.stdout).unwrap();
        let web: BTreeSet<(String, String)> = ps["instances"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["app"] == "test" && i["service"] == "web")
            .map(|i| {
                (
                    i["node"].as_str().unwrap().to_string(),
                    i["state"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let stopping = web.iter().any(|(_, state)| state == "stopping");
        if web == want || !stopping || Instant::now() > deadline {
            assert_eq!(web, want, "{ps:#}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let table = strata(&["ps", "--nats", &urls]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("web/web-1") && table.contains("NODE"), "{table}");

    // ALL through node a's gateway reaches the member on every node exactly once (once
    // a has heard of the other nodes' members: they are published within ~100 ms of
    // becoming ready).
    let gw_a = gateway_of(&v, "a");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut attempt = 0;
    let id = loop {
        attempt += 1;
        let id = format!("all-across-{attempt}");
        let mut req = common::request(http::Method::GET, gw_a, "/everyone/x", bytes::Bytes::new());
        req.headers_mut().insert("x-request-id", id.parse().unwrap());
        let reply = common::send(gw_a, req).await.unwrap();
        assert_eq!(reply.status, http::StatusCode::OK, "{}", reply.text());
        let gathered = reply.json();
        if gathered.as_array().unwrap().len() == 3 {
            break id;
        }
        assert!(
            Instant::now() < deadline,
            "ALL through a never reached 3 members: {gathered:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let seen: Vec<i64> = records(&record)
        .iter()
        .filter(|r| r["request_id"] == id.as_str())
        .map(|r| r["pid"].as_i64().unwrap())
        .collect();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(
        seen.iter().collect::<BTreeSet<_>>().len(),
        3,
        "three members, once each: {seen:?}"
    );
    // `ps --nats` counts what each instance served through any node's gateway: b's and
    // c's members answered a's ALL, and nothing else reached them.
    common::wait_until(
        "ps --nats counting a's calls on b's and c's members",
        Duration::from_secs(10),
        || {
            let out = strata(&["ps", "--json", "--nats", &urls]);
            let ps: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            let served = |node: &str| {
                ps["instances"].as_array().into_iter().flatten().any(|i| {
                    i["service"] == "web"
                        && i["node"] == node
                        && i["state"] == "ready"
                        && i["served"].as_u64() >= Some(1)
                })
            };
            served("b") && served("c")
        },
    )
    .await;

    // A changed bundle rolls over on every node while requests keep coming through a's
    // gateway on one kept-alive connection: none fails, none is refused, and in the end
    // only new instances answer. Every other request is a POST without an idempotency
    // key, which the gateway never reissues: one that reached an old member on another
    // node is answered only if that node's stop drains it as a local one.
    // (The first placement may have moved an instance once every node was known: only
    // the members alive now are the old version.)
    let starts_before = records(&record).iter().filter(|r| r["kind"] == "start").count();
    let alive = || -> BTreeSet<i64> {
        records(&record)
            .iter()
            .filter(|r| r["kind"] == "start")
            .map(|r| r["pid"].as_i64().unwrap())
            .filter(|pid| unsafe { libc::kill(*pid as i32, 0) } == 0)
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive().len() != 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let old_pids = alive();
    assert_eq!(old_pids.len(), 3, "{old_pids:?}");
    let mut changed: Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    changed["services"]["web"]["env"]["VERSION"] = json!("2");
    std::fs::write(&manifest, serde_json::to_string_pretty(&changed).unwrap()).unwrap();
    // Four connections at once, so that the pick spreads them over the other nodes'
    // members too (alone, a request always finds a's own member idle and takes it).
    let rolled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loads: Vec<_> = (0..4)
        .map(|_| {
            let (old_pids, rolled) = (old_pids.clone(), rolled.clone());
            tokio::spawn(async move {
                let (mut ok, mut failed, mut new_pids) = (0u32, Vec::new(), BTreeSet::new());
                let mut client = Client::connect(gw_a).await;
                let deadline = Instant::now() + Duration::from_secs(90);
                // Until the roll is done and 100 more after it.
                let mut after = 0;
                let mut sent = 0u32;
                while after < 100 && Instant::now() < deadline {
                    sent += 1;
                    let (method, body) = match sent % 2 {
                        0 => (http::Method::POST, bytes::Bytes::from_static(b"x")),
                        _ => (http::Method::GET, bytes::Bytes::new()),
                    };
                    match client.send(method.clone(), "/n", body).await {
                        Ok(reply) if reply.status == http::StatusCode::OK => {
                            ok += 1;
                            let pid = reply.json()["pid"].as_i64().unwrap();
                            if !old_pids.contains(&pid) {
                                new_pids.insert(pid);
                            }
                        }
                        Ok(reply) => failed.push(format!("{ok}: {method} {} {}", reply.status, reply.text())),
                        Err(e) => {
                            failed.push(format!("{ok}: {method} {e}"));
                            client = Client::connect(gw_a).await;
                        }
                    }
                    if after > 0 || rolled.load(std::sync::atomic::Ordering::Relaxed) {
                        after += 1;
                    }
                }
                (ok, failed, new_pids)
            })
        })
        .collect();
    let out = strata(&["deploy", manifest.to_str().unwrap(), "--nats", &urls]);
    assert!(out.status.success(), "deploy: {}", String::from_utf8_lossy(&out.stderr));
    let (urls2, record2, old2) = (urls.clone(), record.clone(), old_pids.clone());
    let rolled_in = tokio::task::spawn_blocking(move || {
        wait_for(&urls2, "every node rolled over", Duration::from_secs(60), |v| {
            // Three new members started, the old three gone.
            let started = records(&record2).iter().filter(|r| r["kind"] == "start").count();
            let old_gone = old2.iter().all(|pid| unsafe { libc::kill(*pid as i32, 0) } != 0);
            started >= starts_before + 3 && old_gone && ["a", "b", "c"].iter().all(|n| ready_on(v, n) == 1)
        })
    })
    .await
    .unwrap();
    rolled.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed, mut new_pids) = (0, Vec::new(), BTreeSet::new());
    for load in loads {
        let (n, f, p) = load.await.unwrap();
        ok += n;
        failed.extend(f);
        new_pids.extend(p);
    }
    assert!(
        failed.is_empty(),
        "{} requests failed during the roll-over ({ok} answered): {:?}{}",
        failed.len(),
        &failed[..failed.len().min(5)],
        node_logs(&urls)
    );
    eprintln!("rolled over in {rolled_in:?}; {ok} requests answered, none failed");
    let answering: BTreeSet<i64> = {
        let mut pids = BTreeSet::new();
        for _ in 0..60 {
            pids.insert(get(gw_a, "/n").await.json()["pid"].as_i64().unwrap());
        }
        pids
    };
    assert!(
        answering.is_disjoint(&old_pids),
        "old instances still answer: {answering:?}"
    );
    assert!(!new_pids.is_empty());

    // 2,000 idempotent requests through a's gateway; node b is killed with SIGKILL after
    // the first 300. None fails, and b's instance is placed again elsewhere.
    let (at_300, reached_300) = tokio::sync::oneshot::channel();
    let load = tokio::spawn(async move {
        let mut at_300 = Some(at_300);
        let mut failed = Vec::new();
        let mut client = Client::connect(gw_a).await;
        for i in 0..2000 {
            let reply = match client.get("/n").await {
                Ok(r) => r,
                Err(_) => {
                    client = Client::connect(gw_a).await;
                    match client.get("/n").await {
                        Ok(r) => r,
                        Err(e) => {
                            failed.push(format!("{i}: {e}"));
                            continue;
                        }
                    }
                }
            };
            if reply.status != http::StatusCode::OK {
                failed.push(format!("{i}: {} {}", reply.status, reply.text()));
            }
            if i == 300 {
                let _ = at_300.take().expect("once").send(());
            }
        }
        failed
    });
    reached_300.await.unwrap();
    let mut b = nodes.remove("b").unwrap();
    b.child.kill().unwrap();
    let killed = Instant::now();
    let _ = b.child.wait();
    std::mem::forget(b);
    let failed = load.await.unwrap();
    assert!(
        failed.is_empty(),
        "{} of 2000 requests failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    let urls2 = urls.clone();
    tokio::task::spawn_blocking(move || {
        wait_for(&urls2, "b's instance ready elsewhere", Duration::from_secs(30), |v| {
            ready_on(v, "a") + ready_on(v, "c") == 3 && !placed(v, "web").contains_key("b")
        })
    })
    .await
    .unwrap();
    eprintln!("node b killed -> its instance ready elsewhere: {:?}", killed.elapsed());
    // a's `placed` event says why: b is dead (or, if a heard b's last heartbeat a moment
    // after the scheduler did, silent).
    let api_a = common::cluster::node_addr(&nodes_json(&urls), "a", "apis", "test");
    remember_token(api_a, &app_token_on(dir.path(), "a", "test"));
    let events = get(api_a, "/v1/events").await.json();
    assert!(
        events.as_array().unwrap().iter().any(|e| e["kind"] == "placed"
            && ["; b is dead (not heard from for ", "; b is silent (not heard from for "]
                .iter()
                .any(|why| e["message"].as_str().unwrap().contains(why))),
        "{events:#}"
    );
    // And its metrics: b dead, a and c live, a's heartbeat reaching the cluster, web's
    // three instances placed on a and c.
    let metrics = get(api_a, "/v1/metrics").await.text();
    let value = |series: &str| -> Option<f64> {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    };
    assert_eq!(
        value(r#"strata_cluster_nodes{app="test",state="dead"}"#),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        value(r#"strata_cluster_nodes{app="test",state="live"}"#),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        value(r#"strata_cluster_heartbeat_ok{app="test",node="a"}"#),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        value(r#"strata_cluster_node_heard_seconds{app="test",node="b"}"#).is_some_and(|s| s >= 3.0),
        "{metrics}"
    );
    let placed_web: f64 = ["a", "c"]
        .iter()
        .filter_map(|n| {
            value(&format!(
                r#"strata_cluster_placed{{app="test",service="web",node="{n}"}}"#
            ))
        })
        .sum();
    assert_eq!(placed_web, 3.0, "{metrics}");
    assert!(
        metrics.contains("strata_cluster_scheduler{app=\"test\",node=\""),
        "{metrics}"
    );
    // ps names the node and shows the placement (a service's bounds there are a's share).
    let ps = get(api_a, "/v1/ps").await.json();
    assert_eq!(ps["cluster"]["node"], "a", "{ps:#}");
    let web = ps["cluster"]["placement"]["web"].as_object().unwrap();
    assert_eq!(web.values().filter_map(Value::as_u64).sum::<u64>(), 3, "{ps:#}");

    // Kill the scheduler's node: the lease moves to the survivor, which places again.
    let holder = scheduler(&nodes_json(&urls)).expect("a scheduler");
    let survivor = if holder == "a" { "c" } else { "a" }.to_string();
    let mut dead = nodes.remove(&holder).unwrap();
    dead.child.kill().unwrap();
    let _ = dead.child.wait();
    std::mem::forget(dead);
    let (urls2, s2) = (urls.clone(), survivor.clone());
    tokio::task::spawn_blocking(move || {
        wait_for(
            &urls2,
            "the lease moved and web placed again",
            Duration::from_secs(30),
            |v| scheduler(v).as_deref() == Some(s2.as_str()) && ready_on(v, &s2) == 3,
        )
    })
    .await
    .unwrap();

    // Kill one NATS server: the survivor keeps serving and the cluster keeps answering.
    nats.kill(1);
    let gw = gateway_of(&nodes_json(&urls), &survivor);
    for i in 0..200 {
        let reply = get(gw, "/after-nats-loss").await;
        assert_eq!(reply.status, http::StatusCode::OK, "request {i}: {}", reply.text());
    }
    let v = nodes_json(&urls);
    assert_eq!(ready_on(&v, &survivor), 3, "{v:#}");
    drop(nodes);
}

/// A network namespace joined to this one by a veth pair: this side `10.231.N.1`, the
/// namespace's side `10.231.N.2`. Removed on drop.
struct Netns {
    name: String,
    veth: String,
    here: String,
    there: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Netns {
    fn create() -> Result<Netns, String> {
        let n = std::process::id() % 250;
        let name = format!("strata-t{}", std::process::id());
        let veth = format!("stv{n}a");
        let peer = format!("stv{n}b");
        let (here, there) = (format!("10.231.{n}.1"), format!("10.231.{n}.2"));
        let ns = Netns {
            name: name.clone(),
            veth: veth.clone(),
            here: here.clone(),
            there: there.clone(),
        };
        ip(&["netns", "add", &name])?;
        ip(&["link", "add", &veth, "type", "veth", "peer", "name", &peer])?;
        ip(&["link", "set", &peer, "netns", &name])?;
        ip(&["addr", "add", &format!("{here}/24"), "dev", &veth])?;
        ip(&["link", "set", &veth, "up"])?;
        ip(&[
            "netns",
            "exec",
            &name,
            "ip",
            "addr",
            "add",
            &format!("{there}/24"),
            "dev",
            &peer,
        ])?;
        ip(&["netns", "exec", &name, "ip", "link", "set", &peer, "up"])?;
        ip(&["netns", "exec", &name, "ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Cuts (or restores) the link between the namespace and this side.
    fn link(&self, up: bool) {
        ip(&["link", "set", &self.veth, if up { "up" } else { "down" }]).unwrap();
    }

    /// GET `url` from inside the namespace; the status, or None when nothing answered
    /// within 5 s.
    fn get(&self, url: &str) -> Option<u16> {
        self.get_marked(url).map(|(status, _)| status)
    }

    /// [`Netns::get`], with whether the answer was marked `X-Strata-Stale: true`.
    fn get_marked(&self, url: &str) -> Option<(u16, bool)> {
        self.get_delayed(url, 0, 5)
    }

    /// [`Netns::get_marked`] with `X-Delay-Ms: delay_ms` (the test member's /cached
    /// answers that much later), waiting up to `timeout_s` for the answer.
    fn get_delayed(&self, url: &str, delay_ms: u64, timeout_s: u64) -> Option<(u16, bool)> {
        get_in(&self.name, url, delay_ms, timeout_s)
    }
}

/// [`Netns::get_delayed`] in the namespace named `name` (from another thread).
fn get_in(name: &str, url: &str, delay_ms: u64, timeout_s: u64) -> Option<(u16, bool)> {
    let code = format!(
        "import urllib.request,sys\ntry:\n r = urllib.request.urlopen(urllib.request.Request('{url}', headers={{'X-Delay-Ms': '{delay_ms}'}}), timeout={timeout_s})\n print(r.status, r.headers.get('x-strata-stale') == 'true')\nexcept Exception as e:\n print(getattr(e, 'code', 0), False)"
    );
    let out = Command::new("ip")
        .args(["netns", "exec", name, "python3", "-c", &code])
        .output()
        .ok()?;
    let out = String::from_utf8_lossy(&out.stdout);
    let (status, stale) = out.trim().split_once(' ')?;
    let status: u16 = status.parse().ok().filter(|c| *c != 0)?;
    Some((status, stale == "True"))
}

/// In the namespace named `name`: a GET of `url` (with `X-Delay-Ms`) whose body is read to
/// its end: "whole" (every byte came), "broken" (the connection closed before the body's
/// end) or "waiting" (neither within `timeout_s`).
fn body_in(name: &str, url: &str, delay_ms: u64, timeout_s: u64) -> String {
    let code = format!(
        "import urllib.request,http.client,socket\ntry:\n r = urllib.request.urlopen(urllib.request.Request('{url}', headers={{'X-Delay-Ms': '{delay_ms}'}}), timeout={timeout_s})\n r.read()\n print('whole')\nexcept (socket.timeout, TimeoutError):\n print('waiting')\nexcept (http.client.IncompleteRead, ConnectionError):\n print('broken')"
    );
    let out = Command::new("ip")
        .args(["netns", "exec", name, "python3", "-c", &code])
        .output()
        .expect("ip netns exec python3");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.veth]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_keeps_serving_and_the_cluster_reconciles_when_it_returns() {
    if !strata_testkit::needs("cluster partition", nats_server()) {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let netns = Netns::create();
    if !strata_testkit::needs(
        "cluster partition",
        netns
            .as_ref()
            .map(|_| ())
            .map_err(|e| format!("network namespaces (root, iproute2): {e}")),
    ) {
        return;
    }
    let netns = netns.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsCluster::start_on(dir.path(), 3, &netns.here);
    let urls = nats.urls();
    remember_dir(&urls, dir.path());
    let record = dir.path().join("record.jsonl");
    let manifest = write_app(
        dir.path(),
        &record,
        json!({
            "web": {
                "instances": { "min": 2, "max": 2 },
                "placement": { "spread": "power" },
                "routes": [{ "path": "/" }],
            },
            "api": {
                "instances": { "min": 1, "max": 1 },
                "routes": [{ "path": "/api", "fallback": { "stale_if_error_s": 300 } }],
                // An attempt may wait long: one sent across the cut must not.
                "relay": { "timeout_ms": 40000, "attempt_timeout_ms": 30000 },
            },
        }),
    );
    // Node b on this side of the link, alone at first: api's one instance is placed
    // there, and stays (an instance placed on a live node stays where it is).
    let _b = start_node_in(dir.path(), &urls, "b", "B", None, &format!("{}:0", netns.here));
    let urls2 = urls.clone();
    tokio::task::spawn_blocking(move || wait_for(&urls2, "node b", Duration::from_secs(60), |v| ready_on(v, "b") == 0))
        .await
        .unwrap();
    let out = strata(&["deploy", manifest.to_str().unwrap(), "--nats", &urls]);
    assert!(out.status.success(), "deploy: {}", String::from_utf8_lossy(&out.stderr));
    let urls2 = urls.clone();
    tokio::task::spawn_blocking(move || {
        wait_for(&urls2, "every instance on b", Duration::from_secs(60), |v| {
            ready_on(v, "b") == 3
        })
    })
    .await
    .unwrap();
    // Node a on its own address in the namespace: web spreads to it.
    let _a = start_node_in(
        dir.path(),
        &urls,
        "a",
        "A",
        Some(&netns.name),
        &format!("{}:0", netns.there),
    );
    let urls2 = urls.clone();
    tokio::task::spawn_blocking(move || {
        wait_for(&urls2, "one web instance on a", Duration::from_secs(60), |v| {
            ready_on(v, "a") == 1 && ready_on(v, "b") == 2 && placed(v, "api") == [("b".to_string(), 1)].into()
        })
    })
    .await
    .unwrap();
    let gw_a = gateway_of(&nodes_json(&urls), "a");
    assert_eq!(netns.get(&format!("http://{gw_a}/x")), Some(200));
    // api's answer, through a's gateway from b's member, stored by a's gateway.
    let cached = format!("http://{gw_a}/api/cached?cc=max-age%3D0");
    let start = Instant::now();
    while netns.get_marked(&cached) != Some((200, false)) {
        assert!(start.elapsed() < Duration::from_secs(20), "a reaches api's member on b");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A GET that reached api's member on b and is answered 25 s later: the cut comes
    // while it waits.
    let delayed = std::thread::spawn({
        let name = netns.name.clone();
        let cached = cached.clone();
        move || {
            let answer = get_in(&name, &cached, 25_000, 35);
            (answer, Instant::now())
        }
    });
    // And a reply already streaming from it, its second half due 25 s later.
    let streaming = std::thread::spawn({
        let name = netns.name.clone();
        let url = format!("http://{gw_a}/api/trickle");
        move || (body_in(&name, &url, 25_000, 35), Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(700)).await;

    // Cut a off: b takes over a's share; a keeps serving its own member to its clients.
    netns.link(false);
    let cut_at = Instant::now();
    let urls2 = urls.clone();
    let moved = tokio::task::spawn_blocking(move || {
        wait_for(&urls2, "a's instance placed on b", Duration::from_secs(30), |v| {
            placed(v, "web") == [("b".to_string(), 2)].into() && ready_on(v, "b") == 3
        })
    })
    .await
    .unwrap();
    eprintln!("cut off -> a's share ready on b: {moved:?}");
    for i in 0..20 {
        assert_eq!(
            netns.get(&format!("http://{gw_a}/still-{i}")),
            Some(200),
            "a serves its local member while cut off"
        );
    }
    // api has no member on a. a, deaf, finds b's forwarders out of reach and takes
    // their members out of its pools: from then on it answers api from its store at
    // once, instead of sending each request across the cut to wait for its deadline
    // (before: the first GET waited past its 5 s, the next 2.3 s, and so on after each
    // 2 s the member was passed over).
    let log_a = dir.path().join("node-a.out");
    let start = Instant::now();
    while !std::fs::read_to_string(&log_a)
        .unwrap_or_default()
        .contains("cannot reach a forwarder of another node")
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "a finds b's forwarders out of reach{}",
            node_logs(&urls)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("a parked b's members {:?} after the 20 GETs", start.elapsed());
    // The GET waiting across the cut ended when a found b out of reach, with the stored
    // answer, not at its attempt's 30 s (or the client's 35 s).
    let (answer, at) = delayed.join().unwrap();
    assert_eq!(
        answer,
        Some((200, true)),
        "the GET waiting across the cut: stored answer"
    );
    let waited = at.duration_since(cut_at);
    eprintln!("the GET waiting across the cut answered {waited:?} after the cut");
    assert!(
        waited < Duration::from_secs(15),
        "the GET waiting across the cut ends when a finds b out of reach, not at its deadline: {waited:?}"
    );
    // The reply streaming across the cut was broken off then too, as a dead member's
    // would be, instead of leaving its client waiting on the partition.
    let (ended, at) = streaming.join().unwrap();
    let waited = at.duration_since(cut_at);
    eprintln!("the reply streaming across the cut: {ended} {waited:?} after the cut");
    assert_eq!(ended, "broken", "the reply streaming across the cut is broken off");
    assert!(
        waited < Duration::from_secs(15),
        "the reply streaming across the cut ends when a finds b out of reach: {waited:?}"
    );
    for i in 0..10 {
        let answer = netns.get_marked(&cached);
        assert_eq!(
            answer,
            Some((200, true)),
            "api's stored answer on a while cut off, GET {i}"
        );
    }

    // Back: a's power value gets its share again (spread) and every node reconciles to
    // the placement: the extra instance on b stops, nothing runs twice.
    netns.link(true);
    let urls2 = urls.clone();
    tokio::task::spawn_blocking(move || {
        wait_for(&urls2, "one instance per node again", Duration::from_secs(30), |v| {
            placed(v, "web") == [("a".to_string(), 1), ("b".to_string(), 1)].into()
                && ready_on(v, "a") == 1
                && ready_on(v, "b") == 2
        })
    })
    .await
    .unwrap();
    // And a's gateway now reaches b's members: api's answers are fresh again.
    assert_eq!(netns.get(&format!("http://{gw_a}/after")), Some(200));
    let start = Instant::now();
    while netns.get_marked(&cached) != Some((200, false)) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "a reaches api's member on b again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The store and the queues are the cluster's (JetStream): what an instance on one node
/// writes or publishes, an instance on another reads or takes, and it outlives the node
/// that wrote it. A timer function, run by every node, fires once per firing in the
/// cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_is_the_cluster_s_and_outlives_the_node_that_wrote() {
    if !strata_testkit::needs("cluster", nats_server()) {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsCluster::start(dir.path(), 3);
    let urls = nats.urls();
    remember_dir(&urls, dir.path());
    let app = dir.path().join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/kv_member.py"),
        app.join("kv_member.py"),
    )
    .unwrap();
    let manifest = json!({
        "strata": 1,
        "app": "kvtest",
        "services": {
            "kv": {
                "run": ["python3", "kv_member.py"],
                "instances": { "min": 3, "max": 3 },
                "placement": { "spread": "power" },
                "routes": ["/"],
                "health": { "path": "/healthz", "interval_ms": 200 },
                "access": { "namespaces": ["data"], "publishes": ["jobs"], "fetches": ["jobs"] },
            },
        },
        "queues": { "jobs": {} },
    });
    let path = app.join("strata.json");
    std::fs::write(&path, manifest.to_string()).unwrap();
    let mut nodes: BTreeMap<String, ClusterNode> = [("a", "A"), ("b", "B"), ("c", "C")]
        .into_iter()
        .map(|(n, p)| (n.to_string(), start_node(dir.path(), &urls, n, p)))
        .collect();
    let out = strata(&["deploy", path.to_str().unwrap(), "--nats", &urls]);
    assert!(out.status.success(), "deploy: {}", String::from_utf8_lossy(&out.stderr));
    let urls2 = urls.clone();
    tokio::task::spawn_blocking(move || {
        wait_for(&urls2, "one ready kv instance per node", Duration::from_secs(60), |v| {
            ["a", "b", "c"].iter().all(|n| ready_on(v, n) == 1)
        })
    })
    .await
    .unwrap();
    let v = nodes_json(&urls);
    let (gw_b, gw_c) = (gateway_of_app(&v, "b", "kvtest"), gateway_of_app(&v, "c", "kvtest"));

    // Written through b's gateway (its own instance first), read through c's.
    for i in 0..40 {
        let reply = get(gw_b, &format!("/put/k{i}/v{i}")).await;
        assert_eq!(reply.status, http::StatusCode::OK, "put {i}: {}", reply.text());
    }
    let read_all = |gw: SocketAddr| async move {
        let mut served_by = BTreeSet::new();
        for i in 0..40 {
            let reply = get(gw, &format!("/get/k{i}")).await;
            assert_eq!(reply.status, http::StatusCode::OK, "get {i}: {}", reply.text());
            let body = reply.json();
            assert_eq!(body["value"], format!("v{i}"), "{body}");
            served_by.insert(body["instance"].as_str().unwrap().to_string());
        }
        served_by
    };
    // Each instance's STRATA_INSTANCE names its node: `kv-1` runs on every node.
    let served_by = read_all(gw_c).await;
    assert!(
        !served_by.is_empty()
            && served_by.iter().all(|i| i
                .split_once('@')
                .is_some_and(|(id, node)| id.starts_with("kv-") && ["a", "b", "c"].contains(&node))),
        "{served_by:?}"
    );
    // Queued through b's gateway, taken through c's: each message once.
    for i in 0..30 {
        let reply = get(gw_b, &format!("/pub/m{i}")).await;
        assert_eq!(reply.status, http::StatusCode::OK, "pub {i}: {}", reply.text());
    }
    let mut taken = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while taken.len() < 30 && Instant::now() < deadline {
        let reply = get(gw_c, "/take").await;
        assert_eq!(reply.status, http::StatusCode::OK, "take: {}", reply.text());
        for body in reply.json()["bodies"].as_array().unwrap() {
            taken.push(body.as_str().unwrap().to_string());
        }
    }
    taken.sort();
    let mut want: Vec<String> = (0..30).map(|i| format!("m{i}")).collect();
    want.sort();
    assert_eq!(taken, want, "every message once");

    // A timer function (its own app, so that its instances do not count in the ready
    // kv instances above): every node runs the timer; each firing is claimed in the
    // cluster, so it is handled once, on the node that won it (started from zero there).
    let tick_app = dir.path().join("ticks");
    std::fs::create_dir_all(&tick_app).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/handler.py"),
        tick_app.join("handler.py"),
    )
    .unwrap();
    let ticks = dir.path().join("ticks.jsonl");
    let manifest = json!({
        "strata": 1,
        "app": "ticks",
        "functions": {
            "tick": {
                "run": ["python3", "handler.py"],
                "env": { "RECORD": ticks.display().to_string() },
                "health": { "path": "/healthz" },
                "trigger": { "timer": { "interval_ms": 500 } },
                "path": "/event",
                "keep_warm_ms": 60000,
            },
        },
    });
    let path = tick_app.join("strata.json");
    std::fs::write(&path, manifest.to_string()).unwrap();
    let out = strata(&["deploy", path.to_str().unwrap(), "--nats", &urls]);
    assert!(out.status.success(), "deploy: {}", String::from_utf8_lossy(&out.stderr));
    let scheduled = |ticks: &Path| -> Vec<u64> {
        records(ticks)
            .iter()
            .filter(|r| r["kind"] == "event" && r["trigger"] == "timer")
            .map(|r| r["event"]["scheduled_ms"].as_u64().unwrap())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while scheduled(&ticks).len() < 8 {
        assert!(
            Instant::now() < deadline,
            "8 timer firings within 30 s: {:?}",
            scheduled(&ticks)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let fired = scheduled(&ticks);
    let once: BTreeSet<u64> = fired.iter().copied().collect();
    assert_eq!(once.len(), fired.len(), "each firing once in the cluster: {fired:?}");
    assert!(once.iter().all(|ms| ms % 500 == 0), "aligned on the interval: {once:?}");

    // An autoscaled service is sized by the scheduler from every node's load: slow
    // requests through two gateways grow it past its minimum; at its maximum a gateway
    // sheds what no member has room for (503 + Retry-After, an event, the count in `ps`);
    // once the load stops it shrinks back.
    let elastic = dir.path().join("elastic");
    std::fs::create_dir_all(&elastic).unwrap();
    std::fs::copy(common::MEMBER, elastic.join("member.py")).unwrap();
    let manifest = json!({
        "strata": 1,
        "app": "elastic",
        "services": {
            "busy": {
                "run": ["python3", "member.py"],
                "env": { "RECORD": dir.path().join("elastic.jsonl").display().to_string() },
                "health": { "path": "/healthz", "interval_ms": 200 },
                "instances": { "min": 1, "max": 3 },
                "autoscale": { "concurrency": 1, "max_inflight": 1, "up_window_ms": 500, "down_window_ms": 1500 },
                "routes": ["/"],
            },
        },
    });
    let path = elastic.join("strata.json");
    std::fs::write(&path, manifest.to_string()).unwrap();
    let out = strata(&["deploy", path.to_str().unwrap(), "--nats", &urls]);
    assert!(out.status.success(), "deploy: {}", String::from_utf8_lossy(&out.stderr));
    let busy_placed = |v: &Value| -> u64 {
        v["apps"]["elastic"]["services"]["busy"]
            .as_object()
            .map_or(0, |m| m.values().map(|n| n.as_u64().unwrap()).sum())
    };
    let urls2 = urls.clone();
    let v = tokio::task::spawn_blocking(move || {
        wait_for(&urls2, "elastic deployed", Duration::from_secs(30), |v| {
            busy_placed(v) == 1
                && v["nodes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|n| n["gateways"]["elastic"].is_string())
        });
        nodes_json(&urls2)
    })
    .await
    .unwrap();
    let gateways = [gateway_of_app(&v, "b", "elastic"), gateway_of_app(&v, "c", "elastic")];
    // Both gateways reach the one instance before the load starts (its member is
    // published to the other nodes once ready).
    for gw in gateways {
        let deadline = Instant::now() + Duration::from_secs(30);
        while get(gw, "/sleep?ms=1").await.status != http::StatusCode::OK {
            assert!(Instant::now() < deadline, "busy never answered through {gw}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // A shed answer is a 503 that says when to come back; nothing else but a 200.
    let answered = |reply: &common::Reply| -> bool {
        if reply.status == http::StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(reply.header("retry-after"), Some("1"), "{}", reply.text());
            assert!(reply.text().contains("instances.max"), "{}", reply.text());
            return false;
        }
        assert_eq!(reply.status, http::StatusCode::OK, "{}", reply.text());
        true
    };
    let stop_load = tokio_util::sync::CancellationToken::new();
    let mut load = Vec::new();
    for i in 0..4 {
        let (gw, stop) = (gateways[i % 2], stop_load.clone());
        load.push(tokio::spawn(async move {
            let mut shed = 0;
            while !stop.is_cancelled() {
                if !answered(&get(gw, "/sleep?ms=300").await) {
                    shed += 1;
                }
            }
            shed
        }));
    }
    let urls2 = urls.clone();
    let grown = tokio::task::spawn_blocking(move || {
        wait_for(&urls2, "busy grown to 3", Duration::from_secs(30), |v| {
            busy_placed(v) == 3
                && ["a", "b", "c"]
                    .iter()
                    .map(|n| ready_on_app(v, n, "elastic", "busy"))
                    .sum::<u64>()
                    == 3
        })
    })
    .await
    .unwrap();
    // At the maximum (3 instances, 1 in flight each) with 2 clients per gateway
    // already: a burst of 6 more through b finds no member with room from b, and
    // most of it is shed.
    let deadline = Instant::now() + Duration::from_secs(15);
    let burst_shed = loop {
        let burst: Vec<_> = (0..6)
            .map(|_| tokio::spawn(async move { get(gateways[0], "/sleep?ms=300").await }))
            .collect();
        let mut shed = 0;
        for reply in burst {
            if !answered(&reply.await.unwrap()) {
                shed += 1;
            }
        }
        if shed > 0 {
            break shed;
        }
        // b may not see every member of c and a yet: shedding starts once it does.
        assert!(Instant::now() < deadline, "nothing shed at the maximum");
    };
    stop_load.cancel();
    let mut steady_shed = 0;
    for task in load {
        steady_shed += task.await.unwrap();
    }
    eprintln!("at the maximum: {burst_shed} of a burst of 6 shed through b; {steady_shed} of the steady clients'");
    // b says so: an event and the count (its autoscale status, as on one node).
    let api_b = common::cluster::node_addr(&nodes_json(&urls), "b", "apis", "elastic");
    remember_token(api_b, &app_token_on(dir.path(), "b", "elastic"));
    let events = get(api_b, "/v1/events").await.json();
    let shed_event = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["service"] == "busy" && e["kind"] == "shed");
    assert!(
        shed_event.is_some_and(|e| e["message"]
            .as_str()
            .unwrap()
            .contains("at instances.max (3) cluster-wide")),
        "{events:#}"
    );
    // The count in the status is the autoscaler's sample, taken up to a second after the
    // shedding (it samples once a second while the pool is quiet).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ps = get(api_b, "/v1/ps").await.json();
        let busy = ps["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "busy")
            .unwrap()
            .clone();
        if busy["autoscale"]["shed"].as_u64().unwrap() >= burst_shed {
            break;
        }
        assert!(Instant::now() < deadline, "{burst_shed} shed, the status says {busy:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let urls2 = urls.clone();
    let shrunk = tokio::task::spawn_blocking(move || {
        wait_for(&urls2, "busy back to 1", Duration::from_secs(30), |v| {
            busy_placed(v) == 1
        })
    })
    .await
    .unwrap();
    eprintln!("autoscaled across the cluster: up to 3 in {grown:?}, back to 1 in {shrunk:?}");

    // The node that wrote dies: nothing of what it wrote is lost.
    let mut b = nodes.remove("b").unwrap();
    b.child.kill().unwrap();
    let _ = b.child.wait();
    std::mem::forget(b);
    read_all(gw_c).await;
    drop(nodes);
    drop(nats);
}
