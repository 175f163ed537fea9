//! Python's `redis` package (redis-py) against the RESP server, RESP2 and RESP3,
//! including its pipelines. Skipped, with the reason printed, when python3 or the
//! package is missing (`python3 -m pip install redis`).

mod common;

use std::process::Command;

const SCRIPT: &str = r#"
import sys, redis
port = int(sys.argv[1])
for protocol in (2, 3):
    r = redis.Redis(host="127.0.0.1", port=port, protocol=protocol, client_name="py-%d" % protocol)
    assert r.ping() is True
    assert r.flushdb() is True
    assert r.set("k", "v", ex=100) is True
    assert r.get("k") == b"v", r.get("k")
    assert 99 <= r.ttl("k") <= 100
    assert r.set("k", "w", nx=True) is None
    assert r.set("k", "w", xx=True, get=True) == b"v"
    assert r.incr("n") == 1
    assert r.incrby("n", 2) == 3
    assert r.mset({"a": "1", "b": "2"}) is True
    assert r.mget("a", "b", "zz") == [b"1", b"2", None]
    assert r.exists("a", "b", "zz") == 2
    assert r.getdel("a") == b"1"
    assert r.get("zz") is None
    assert r.client_getname() in ("py-%d" % protocol, b"py-%d" % protocol)
    p = r.pipeline(transaction=False)
    for i in range(500):
        p.set("p:%d" % i, i)
        p.get("p:%d" % i)
    out = p.execute()
    assert out[1::2] == [str(i).encode() for i in range(500)]
    info = r.info()
    assert info["redis_version"] == "7.0.0-strata-compatible", info
    assert "db0" in info and info["db0"]["keys"] >= 500, info
    assert "keyspace_hits" in r.info("stats")
    try:
        r.execute_command("NOSUCH", "x")
        raise SystemExit("an unknown command did not raise")
    except redis.ResponseError as e:
        assert "unknown command" in str(e)
    assert r.ping() is True, "the connection survived the error"
    r.close()
print("ok")
"#;

#[test]
fn python_redis_client_works_unchanged() {
    let has = strata_testkit::python_module("redis", "python3 -m pip install redis");
    if !strata_testkit::needs("python_redis_client_works_unchanged", has) {
        return;
    }
    let server = common::Server::start(2);
    let out = Command::new("python3")
        .args(["-c", SCRIPT, &server.addr.port().to_string()])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "redis-py failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}
