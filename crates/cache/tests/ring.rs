//! The cache ring over nodes, on real sockets: three RESP servers in one process, each
//! with its own cache and its own view of the same ring ([`NodeRing`]), forwarding the
//! commands whose keys another one owns.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use common::{cmd, Client, Server};
use strata_cache::{CacheConfig, NodeRing, Owner, RespConfig};

struct Node {
    server: Server,
    ring: Arc<NodeRing>,
}

const PASSWORD: &str = "a-long-enough-password";

fn start(names: &[&str]) -> Vec<Node> {
    let nodes: Vec<Node> = names
        .iter()
        .map(|name| {
            let ring = NodeRing::new(name);
            let server = Server::start_with(
                1,
                CacheConfig {
                    shards: 2,
                    node: name.to_string(),
                    ..CacheConfig::default()
                },
                RespConfig {
                    password: Some(PASSWORD.into()),
                    ring: Some(ring.clone()),
                    ..RespConfig::default()
                },
            );
            Node { server, ring }
        })
        .collect();
    let all: BTreeMap<String, SocketAddr> = names
        .iter()
        .zip(&nodes)
        .map(|(n, node)| (n.to_string(), node.server.addr))
        .collect();
    for node in &nodes {
        node.ring.set(&all, &node.server.cache);
    }
    nodes
}

fn client(node: &Node) -> Client {
    let mut c = node.server.client();
    c.check(&["AUTH", PASSWORD], "+OK\r\n");
    c
}

fn bulk(s: &str) -> String {
    format!("${}\r\n{s}\r\n", s.len())
}

#[test]
fn every_node_serves_every_key_and_each_key_lives_on_its_owner_only() {
    let nodes = start(&["a", "b", "c"]);
    let mut a = client(&nodes[0]);
    for i in 0..300 {
        a.check(&["SET", &format!("k{i}"), &format!("v{i}")], "+OK\r\n");
    }
    // Each key is held by its owner alone.
    let view = nodes[0].ring.view();
    let mut held = [0usize; 3];
    for i in 0..300 {
        let k = format!("k{i}");
        let owner = match view.owner(k.as_bytes()) {
            Owner::Here => 0,
            Owner::Peer(p) => ["a", "b", "c"].iter().position(|n| **n == **view.node(p).0).unwrap(),
        };
        held[owner] += 1;
        for (j, node) in nodes.iter().enumerate() {
            assert_eq!(node.server.cache.exists(k.as_bytes()), j == owner, "{k} on node {j}");
        }
    }
    assert!(held.iter().all(|&n| n > 50), "{held:?}");
    // Read through the others, one by one and as one pipeline of mixed commands.
    for node in &nodes[1..] {
        let mut c = client(node);
        for i in (0..300).step_by(7) {
            c.check(&["GET", &format!("k{i}")], &bulk(&format!("v{i}")));
        }
        let mut pipeline = Vec::new();
        let mut want = String::new();
        for i in 0..100 {
            match i % 4 {
                0 => {
                    pipeline.extend(cmd(&["GET", &format!("k{i}")]));
                    want.push_str(&bulk(&format!("v{i}")));
                }
                1 => {
                    pipeline.extend(cmd(&["INCR", &format!("n{i}")]));
                    want.push_str(":1\r\n");
                }
                2 => {
                    pipeline.extend(cmd(&["PING"]));
                    want.push_str("+PONG\r\n");
                }
                _ => {
                    pipeline.extend(cmd(&["EXISTS", &format!("k{i}"), &format!("k{i}")]));
                    want.push_str(":2\r\n");
                }
            }
        }
        c.send(&pipeline);
        let got = c.read_n(want.len());
        assert_eq!(String::from_utf8_lossy(&got), want);
        for i in (1..100).step_by(4) {
            c.check(&["DEL", &format!("n{i}")], ":1\r\n");
        }
    }
}

#[test]
fn keys_of_several_owners_transactions_and_waits_elsewhere_are_refused() {
    let nodes = start(&["a", "b"]);
    let view = nodes[0].ring.view();
    let (mut here, mut there) = (None, None);
    for i in 0.. {
        let k = format!("key{i}");
        match view.owner(k.as_bytes()) {
            Owner::Here => here = here.or(Some(k)),
            Owner::Peer(_) => there = there.or(Some(k)),
        }
        if here.is_some() && there.is_some() {
            break;
        }
    }
    let (here, there) = (here.unwrap(), there.unwrap());
    let mut a = client(&nodes[0]);
    a.check(
        &["MGET", &here, &there],
        "-CROSSSLOT Keys in request don't hash to the same slot\r\n",
    );
    a.check(&["MSET", &there, "1", &there, "2"], "+OK\r\n");
    a.check(&["GET", &there], "$1\r\n2\r\n");
    // A transaction on this node's keys runs; one touching a key held elsewhere is
    // refused at queue time and EXEC aborts.
    a.check(&["MULTI"], "+OK\r\n");
    a.check(&["SET", &here, "x"], "+QUEUED\r\n");
    a.check(&["EXEC"], "*1\r\n+OK\r\n");
    a.check(&["MULTI"], "+OK\r\n");
    a.send(&cmd(&["SET", &there, "x"]));
    let refused = String::from_utf8(a.read_reply()).unwrap();
    assert!(refused.starts_with("-ERR key held by cache node b"), "{refused}");
    a.check(
        &["EXEC"],
        "-EXECABORT Transaction discarded because of previous errors.\r\n",
    );
    a.send(&cmd(&["BLPOP", &there, "1"]));
    let refused = String::from_utf8(a.read_reply()).unwrap();
    assert!(refused.contains("blocking commands"), "{refused}");
    // RESP3 replies come back as RESP3.
    a.send(&cmd(&["HELLO", "3"]));
    a.read_reply();
    a.check(
        &["HSET", &there, "f", "v"],
        "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
    );
    a.check(&["DEL", &there], ":1\r\n");
    a.check(&["HSET", &there, "f", "v"], ":1\r\n");
    a.check(&["HGETALL", &there], "%1\r\n$1\r\nf\r\n$1\r\nv\r\n");
    a.check(&["GET", "never-set-anywhere-0"], "_\r\n");
}

#[test]
fn client_reply_off_and_skip_drop_the_replies_of_forwarded_commands_too() {
    let nodes = start(&["a", "b"]);
    let view = nodes[0].ring.view();
    let there: Vec<String> = (0..)
        .map(|i| format!("key{i}"))
        .filter(|k| view.owner(k.as_bytes()) != Owner::Here)
        .take(3)
        .collect();
    let here = (0..)
        .map(|i| format!("key{i}"))
        .find(|k| view.owner(k.as_bytes()) == Owner::Here)
        .unwrap();
    let mut a = client(&nodes[0]);
    // One pipeline: OFF, a forwarded SET and a local one (run, not answered), ON, then
    // SKIP before a forwarded GET (dropped) and one more GET (answered).
    let mut pipeline = cmd(&["CLIENT", "REPLY", "OFF"]);
    pipeline.extend(cmd(&["SET", &there[0], "1"]));
    pipeline.extend(cmd(&["GET", &there[1]]));
    pipeline.extend(cmd(&["SET", &here, "2"]));
    pipeline.extend(cmd(&["CLIENT", "REPLY", "ON"]));
    pipeline.extend(cmd(&["CLIENT", "REPLY", "SKIP"]));
    pipeline.extend(cmd(&["GET", &there[0]]));
    pipeline.extend(cmd(&["GET", &there[0]]));
    a.send(&pipeline);
    assert_eq!(a.read_reply(), b"+OK\r\n", "ON's answer comes first");
    assert_eq!(a.read_reply(), b"$1\r\n1\r\n", "only the GET after the skipped one");
    // Nothing else was written: the next command's reply is the next thing read.
    a.check(&["GET", &here], "$1\r\n2\r\n");
    // Run on the owner, for all that.
    assert!(nodes[1].server.cache.exists(there[0].as_bytes()));
}

#[test]
fn an_owner_that_cannot_be_reached_is_answered_with_tryagain_and_the_rest_runs() {
    let mut nodes = start(&["a", "b"]);
    let view = nodes[0].ring.view();
    let there = (0..)
        .map(|i| format!("key{i}"))
        .find(|k| view.owner(k.as_bytes()) != Owner::Here)
        .unwrap();
    let here = (0..)
        .map(|i| format!("key{i}"))
        .find(|k| view.owner(k.as_bytes()) == Owner::Here)
        .unwrap();
    let mut a = client(&nodes[0]);
    a.check(&["SET", &there, "1"], "+OK\r\n");
    nodes[1].server.stop();
    let mut pipeline = cmd(&["SET", &here, "2"]);
    pipeline.extend(cmd(&["GET", &there]));
    pipeline.extend(cmd(&["GET", &here]));
    a.send(&pipeline);
    assert_eq!(a.read_reply(), b"+OK\r\n");
    let err = String::from_utf8(a.read_reply()).unwrap();
    assert!(err.starts_with("-TRYAGAIN cache node b"), "{err}");
    assert_eq!(a.read_reply(), b"$1\r\n2\r\n");
    // The membership says b is gone: a serves b's range, from nothing (b's keys went
    // with it), and keeps its own keys.
    let only_a: BTreeMap<String, SocketAddr> = [("a".to_string(), nodes[0].server.addr)].into();
    nodes[0].ring.set(&only_a, &nodes[0].server.cache);
    a.check(&["GET", &there], "$-1\r\n");
    a.check(&["GET", &here], "$1\r\n2\r\n");
}

#[test]
fn a_forwarded_command_runs_where_it_arrives_even_if_that_node_sees_another_owner() {
    // a and b disagree for a moment (b has heard of a node z that a has not): what a
    // forwards to b runs on b, never sent on (one hop).
    let nodes = start(&["a", "b"]);
    let z: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let b_view: BTreeMap<String, SocketAddr> = [
        ("a".to_string(), nodes[0].server.addr),
        ("b".to_string(), nodes[1].server.addr),
        ("z".to_string(), z),
    ]
    .into();
    nodes[1].ring.set(&b_view, &nodes[1].server.cache);
    let (va, vb) = (nodes[0].ring.view(), nodes[1].ring.view());
    let key = (0..)
        .map(|i| format!("key{i}"))
        .find(|k| {
            let to_b = matches!(va.owner(k.as_bytes()), Owner::Peer(p) if &**va.node(p).0 == "b");
            let b_sees_z = matches!(vb.owner(k.as_bytes()), Owner::Peer(p) if &**vb.node(p).0 == "z");
            to_b && b_sees_z
        })
        .unwrap();
    let mut a = client(&nodes[0]);
    a.check(&["SET", &key, "here"], "+OK\r\n");
    assert!(nodes[1].server.cache.exists(key.as_bytes()), "run on b");
    a.check(&["GET", &key], "$4\r\nhere\r\n");
    // b's own clients go to z, which does not answer.
    let mut b = client(&nodes[1]);
    b.send(&cmd(&["GET", &key]));
    let err = String::from_utf8(b.read_reply()).unwrap();
    assert!(err.starts_with("-TRYAGAIN cache node z"), "{err}");
}
