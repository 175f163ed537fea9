//! The cache ring over every node of a cluster, end to end: real nats-servers (three,
//! clustered, with JetStream), three real `strata node` processes, Redis clients on
//! their ports, kill -9 of a node and its return.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::{start_node, ClusterNode};
use common::{get, log_tails, STRATA};
use serde_json::{json, Value};
use strata_testkit::nats::{nats_server, NatsCluster};

fn strata_json(args: &[&str]) -> Value {
    let out = Command::new(STRATA).args(args).output().expect("run strata");
    assert!(
        out.status.success(),
        "strata {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// The app's cache ring as `strata cache stats --nats --json` shows it: node -> entry.
fn ring(urls: &str) -> BTreeMap<String, Value> {
    let v = strata_json(&["cache", "stats", "--json", "--nats", urls]);
    v["apps"]["ringtest"]["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| (n["node"].as_str().unwrap().to_string(), n.clone()))
        .collect()
}

/// Polls `check` every 100 ms until it gives Some, or fails after `within` with the
/// nodes' logs.
fn wait<T>(dir: &Path, what: &str, within: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(t) = check() {
            return t;
        }
        if start.elapsed() > within {
            let logs = log_tails(dir, 25);
            panic!("{what} did not happen within {within:?}{logs}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until every node of `addrs` sees the same cache ring, of exactly those nodes:
/// for each of 64 keys, WATCH through every node's Redis port is taken by one node (the
/// key's owner) and refused by the others naming that same owner (a key owned elsewhere
/// is never watched through a peer), and every node owns some of them. This is each
/// node's own ring, as it serves: not the heartbeats `ring` reads.
async fn rings_agree(dir: &Path, addrs: BTreeMap<String, SocketAddr>) {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let names: BTreeSet<String> = addrs.keys().cloned().collect();
        wait(
            &dir,
            &format!("every node's cache ring to be {names:?}"),
            Duration::from_secs(20),
            || {
                let mut conns: Vec<(&String, Redis)> = addrs.iter().map(|(n, a)| (n, Redis::connect(*a))).collect();
                let mut owners = BTreeSet::new();
                for i in 0..64 {
                    let key = format!("ring-probe-{i}");
                    let mut said = BTreeSet::new();
                    for (node, r) in conns.iter_mut() {
                        let reply = r.call(&["WATCH", &key]);
                        let owner = if reply == "+OK" {
                            assert_eq!(r.call(&["UNWATCH"]), "+OK");
                            node.to_string()
                        } else {
                            reply
                                .strip_prefix("-ERR key held by cache node ")
                                .and_then(|rest| rest.split_whitespace().next())?
                                .to_string()
                        };
                        said.insert(owner);
                    }
                    if said.len() != 1 {
                        return None;
                    }
                    owners.extend(said);
                }
                (owners == names).then_some(())
            },
        )
    })
    .await
    .unwrap();
}

/// A Redis client speaking raw RESP2.
struct Redis {
    reader: BufReader<TcpStream>,
}

impl Redis {
    fn connect(addr: SocketAddr) -> Redis {
        let stream = TcpStream::connect(addr).expect("connect to a node's Redis port");
        stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        Redis {
            reader: BufReader::new(stream),
        }
    }

    fn send(&mut self, commands: &[Vec<&str>]) {
        let mut out = Vec::new();
        for args in commands {
            out.extend(format!("*{}\r\n", args.len()).bytes());
            for a in args {
                out.extend(format!("${}\r\n{a}\r\n", a.len()).bytes());
            }
        }
        self.reader.get_mut().write_all(&out).unwrap();
    }

    /// One reply: a bulk string's text, `nil`, `+simple`, `-error` or `:n`.
    fn reply(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("a reply line");
        let line = line.trim_end().to_string();
        match line.as_bytes().first() {
            Some(b'$') if line == "$-1" => "nil".into(),
            Some(b'$') => {
                let n: usize = line[1..].parse().unwrap();
                let mut buf = vec![0; n + 2];
                self.reader.read_exact(&mut buf).unwrap();
                String::from_utf8_lossy(&buf[..n]).into_owned()
            }
            _ => line,
        }
    }

    fn call(&mut self, args: &[&str]) -> String {
        self.send(&[args.to_vec()]);
        self.reply()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_ring_spans_every_node_forgets_a_dead_node_s_keys_and_a_returning_node_serves_nothing_stale() {
    if !strata_testkit::needs("cluster_cache", nats_server()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let nats = NatsCluster::start(&d, 3);
    let urls = nats.urls();
    let app = d.join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/kv_member.py"),
        app.join("kv_member.py"),
    )
    .unwrap();
    let manifest = json!({
        "strata": 1,
        "app": "ringtest",
        "services": {
            "kv": {
                "run": ["python3", "kv_member.py"],
                "instances": { "min": 3, "max": 3 },
                "placement": { "spread": "power" },
                "routes": ["/"],
                "health": { "path": "/healthz", "interval_ms": 200 },
                "access": { "namespaces": ["data"], "cache_keys": true },
            },
        },
        "cache": { "listen": "127.0.0.1:6379" },
        "caches": { "users": { "namespace": "data", "ttl_ms": 60000 } },
    });
    let path = app.join("strata.json");
    std::fs::write(&path, manifest.to_string()).unwrap();
    let mut nodes: BTreeMap<&str, ClusterNode> = [("a", "A"), ("b", "B"), ("c", "C")]
        .into_iter()
        .map(|(n, p)| (n, start_node(&d, &urls, n, p)))
        .collect();
    let out = Command::new(STRATA)
        .args(["deploy", path.to_str().unwrap(), "--nats", &urls])
        .output()
        .unwrap();
    assert!(out.status.success(), "deploy: {}", String::from_utf8_lossy(&out.stderr));

    // Every node's cache on the ring, and an instance ready on each.
    let (d2, urls2) = (d.clone(), urls.clone());
    let addrs = tokio::task::spawn_blocking(move || {
        wait(
            &d2,
            "3 nodes on the cache ring, each with a ready instance",
            Duration::from_secs(60),
            || {
                let nodes = strata_json(&["nodes", "--json", "--nats", &urls2]);
                let ready = nodes["nodes"].as_array()?.iter().filter(|n| n["ready"] == 1).count();
                let r = ring(&urls2);
                (r.len() == 3 && ready == 3).then(|| {
                    r.iter()
                        .map(|(n, v)| (n.clone(), v["addr"].as_str().unwrap().parse::<SocketAddr>().unwrap()))
                        .collect::<BTreeMap<String, SocketAddr>>()
                })
            },
        )
    })
    .await
    .unwrap();
    let r = ring(&urls);
    let shares: f64 = r.values().map(|n| n["share"].as_f64().unwrap()).sum();
    assert!((shares - 1.0).abs() < 1e-6, "{r:?}");
    // Each node hears the others' heartbeats within a second, and recomputes its ring
    // within a quarter more: until then a key may be owned elsewhere as one node sees it.
    rings_agree(&d, addrs.clone()).await;

    // Written through a's Redis port, read through b's and c's.
    let mut a = Redis::connect(addrs["a"]);
    for i in 0..100 {
        assert_eq!(a.call(&["SET", &format!("k{i}"), &format!("v{i}")]), "+OK");
    }
    for node in ["b", "c"] {
        let mut r = Redis::connect(addrs[node]);
        for i in 0..100 {
            assert_eq!(
                r.call(&["GET", &format!("k{i}")]),
                format!("v{i}"),
                "k{i} through {node}"
            );
        }
        // A pipeline of 100 mixed commands on keys of every node: replies in order.
        let keys: Vec<String> = (0..100).map(|i| format!("p{node}{i}")).collect();
        let mut pipeline: Vec<Vec<&str>> = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            match i % 3 {
                0 => pipeline.push(vec!["SET", k, k]),
                1 => pipeline.push(vec!["INCR", k]),
                _ => pipeline.push(vec!["GET", &keys[i - 2]]),
            }
        }
        r.send(&pipeline);
        for (i, k) in keys.iter().enumerate() {
            let want = match i % 3 {
                0 => "+OK".to_string(),
                1 => ":1".to_string(),
                _ => keys[i - 2].clone(),
            };
            assert_eq!(r.reply(), want, "reply {i} of the pipeline through {node} ({k})");
        }
    }
    // Pub/sub spans the nodes: subscribers on b and c get what is published on a (PUBLISH
    // counts a's own receivers, none, as Redis Cluster does).
    let mut subscribers: Vec<Redis> = ["b", "c"]
        .iter()
        .map(|node| {
            let mut r = Redis::connect(addrs[*node]);
            r.send(&[vec!["SUBSCRIBE", "news"]]);
            let confirmed: Vec<String> = (0..4).map(|_| r.reply()).collect();
            assert_eq!(confirmed, ["*3", "subscribe", "news", ":1"], "through {node}");
            r
        })
        .collect();
    assert_eq!(a.call(&["PUBLISH", "news", "from a"]), ":0");
    for (node, r) in ["b", "c"].iter().zip(&mut subscribers) {
        let got: Vec<String> = (0..4).map(|_| r.reply()).collect();
        assert_eq!(got, ["*3", "message", "news", "from a"], "the message through {node}");
    }
    // The keys are spread: every node holds some (its heartbeat says so within a second).
    let (d2, urls2) = (d.clone(), urls.clone());
    let held = tokio::task::spawn_blocking(move || {
        wait(
            &d2,
            "every node's heartbeat to show its keys",
            Duration::from_secs(10),
            || {
                let r = ring(&urls2);
                let held: BTreeMap<String, u64> = r
                    .iter()
                    .map(|(n, v)| (n.clone(), v["keys"].as_u64().unwrap()))
                    .collect();
                (held.values().sum::<u64>() == 100 + 2 * 67 && held.values().all(|&k| k > 0)).then_some(held)
            },
        )
    })
    .await
    .unwrap();
    let table = Command::new(STRATA)
        .args(["cache", "stats", "--nats", &urls])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("app ringtest: a cache ring of 3 node(s)"), "{table}");
    assert!(table.contains("KEYS PER SHARD"), "{table}");

    let gateways: BTreeMap<String, SocketAddr> = strata_json(&["nodes", "--json", "--nats", &urls])["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap().to_string(),
                n["gateways"]["ringtest"].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    // The node API's raw keys are the ring's too: a key set through a's Redis port is
    // read through every node's instance, and one put through b's is read through c's
    // Redis port.
    for gw in gateways.values() {
        for i in (0..100).step_by(9) {
            let reply = get(*gw, &format!("/raw/k{i}")).await;
            assert_eq!(reply.status, http::StatusCode::OK, "{}", reply.text());
            assert_eq!(reply.json()["value"], format!("v{i}"));
        }
    }
    for i in 0..10 {
        let reply = get(gateways["b"], &format!("/rawset/api{i}/x{i}")).await;
        assert_eq!(reply.status, http::StatusCode::OK, "{}", reply.text());
    }
    let mut c = Redis::connect(addrs["c"]);
    for i in 0..10 {
        assert_eq!(c.call(&["GET", &format!("api{i}")]), format!("x{i}"));
    }

    // A read-through cache in front of the store: written through a gateway, read
    // through every node.
    for i in 0..20 {
        let reply = get(gateways["a"], &format!("/put/user{i}/old{i}")).await;
        assert_eq!(reply.status, http::StatusCode::OK, "{}", reply.text());
    }
    for gw in gateways.values() {
        for i in 0..10 {
            let reply = get(*gw, &format!("/cached/users/user{i}")).await;
            assert_eq!(reply.status, http::StatusCode::OK, "{}", reply.text());
            assert_eq!(reply.json()["value"], format!("old{i}"));
        }
    }

    // kill -9 c: reads through the read-through cache keep answering on a and b (the
    // keys never read before load from the store), and the ring shows two nodes.
    nodes.get_mut("c").unwrap().kill9();
    let killed = Instant::now();
    let mut reads = 0;
    while killed.elapsed() < Duration::from_secs(5) {
        for gw in [gateways["a"], gateways["b"]] {
            let i = reads % 20;
            let reply = get(gw, &format!("/cached/users/user{i}")).await;
            assert_eq!(reply.status, http::StatusCode::OK, "read {reads}: {}", reply.text());
            assert_eq!(reply.json()["value"], format!("old{i}"));
            reads += 1;
        }
    }
    let urls2 = urls.clone();
    let d2 = d.clone();
    tokio::task::spawn_blocking(move || {
        wait(&d2, "the ring to show two nodes", Duration::from_secs(10), || {
            let r = ring(&urls2);
            (r.keys().map(String::as_str).collect::<Vec<_>>() == ["a", "b"]).then_some(())
        })
    })
    .await
    .unwrap();
    let survivors: BTreeMap<String, SocketAddr> = addrs
        .iter()
        .filter(|(n, _)| *n != "c")
        .map(|(n, a)| (n.clone(), *a))
        .collect();
    rings_agree(&d, survivors).await;
    // c's keys went with it (soft state); a's and b's are served by either port.
    let mut a = Redis::connect(addrs["a"]);
    let mut b = Redis::connect(addrs["b"]);
    let mut gone = 0;
    for i in 0..100 {
        let k = format!("k{i}");
        let through_a = a.call(&["GET", &k]);
        assert_eq!(through_a, b.call(&["GET", &k]), "{k}");
        if through_a == "nil" {
            gone += 1;
        } else {
            assert_eq!(through_a, format!("v{i}"));
        }
    }
    assert!(
        gone > 0 && gone < 100 && gone <= held["c"],
        "{gone} keys gone, c held {held:?}"
    );

    // Meanwhile the store and the cache move on: new values everywhere.
    for i in 0..20 {
        let reply = get(gateways["a"], &format!("/put/user{i}/new{i}")).await;
        assert_eq!(reply.status, http::StatusCode::OK, "{}", reply.text());
    }
    for i in 0..100 {
        assert_eq!(a.call(&["SET", &format!("k{i}"), &format!("w{i}")]), "+OK");
    }
    // Written through a, the store's change feed drops b's read-through copies too.
    let deadline = Instant::now() + Duration::from_secs(2);
    for i in 0..10 {
        loop {
            let reply = get(gateways["b"], &format!("/cached/users/user{i}")).await;
            assert_eq!(reply.status, http::StatusCode::OK, "{}", reply.text());
            if reply.json()["value"] == format!("new{i}") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "b still serves {} for user{i}",
                reply.json()["value"]
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // c returns: back on the ring, it serves no value older than the store's, and no
    // key of the ranges it takes back holds an old value anywhere.
    nodes.insert("c", start_node(&d, &urls, "c", "C"));
    let urls2 = urls.clone();
    let d2 = d.clone();
    let c_addr = tokio::task::spawn_blocking(move || {
        wait(
            &d2,
            "c back on the ring, its instance ready",
            Duration::from_secs(60),
            || {
                let nodes = strata_json(&["nodes", "--json", "--nats", &urls2]);
                let c_ready = nodes["nodes"]
                    .as_array()?
                    .iter()
                    .any(|n| n["name"] == "c" && n["ready"] == 1);
                let r = ring(&urls2);
                (r.len() == 3 && c_ready).then(|| r["c"]["addr"].as_str().unwrap().parse::<SocketAddr>().unwrap())
            },
        )
    })
    .await
    .unwrap();
    let mut back = addrs.clone();
    back.insert("c".to_string(), c_addr);
    rings_agree(&d, back).await;
    let c_gateway: SocketAddr = strata_json(&["nodes", "--json", "--nats", &urls])["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "c")
        .unwrap()["gateways"]["ringtest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    for i in 0..20 {
        let reply = get(c_gateway, &format!("/cached/users/user{i}")).await;
        assert_eq!(reply.status, http::StatusCode::OK, "{}", reply.text());
        assert_eq!(reply.json()["value"], format!("new{i}"), "user{i} through c");
    }
    let mut c = Redis::connect(c_addr);
    let mut a = Redis::connect(addrs["a"]);
    let mut forgotten = 0;
    for i in 0..100 {
        let k = format!("k{i}");
        let through_c = c.call(&["GET", &k]);
        assert_eq!(through_c, a.call(&["GET", &k]), "{k}");
        assert!(
            through_c == format!("w{i}") || through_c == "nil",
            "{k} through c is {through_c}: older than its last write"
        );
        forgotten += (through_c == "nil") as usize;
    }
    assert!(forgotten > 0, "c's ranges start empty");
    drop(nats);
}
