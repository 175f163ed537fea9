//! Python's `redis` package (redis-py) against the RESP server, RESP2 and RESP3,
//! including its pipelines, transactions (WATCH retry loops included), `scan_iter`, and
//! lists (a pipeline, BLPOP timing out and served by another client), pub/sub
//! (`pubsub()`) and a password (`Redis(password=...)`).
//! Skipped, with the reason printed, when python3 or the package is missing
//! (`python3 -m pip install redis`); failed under `CI=true`.

mod common;

use std::process::Command;

const SCRIPT: &str = r#"
import re, sys, threading, redis
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
    assert info["redis_version"] == "7.0.0", info
    # As rq reads it, and as packaging.version would.
    assert tuple(int(i) for i in info["redis_version"].split(".")[:3]) == (7, 0, 0)
    assert re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", info["strata_version"]), info
    assert "db0" in info and info["db0"]["keys"] >= 500, info
    assert "keyspace_hits" in r.info("stats")
    # Sets: a transaction of set commands, SSCAN through a hash-table set.
    with r.pipeline() as p:
        p.sadd("s", 3, 1, 2, "x").srem("s", "x").smembers("s").sismember("s", 1).sinter("s", "s").scard("s")
        out = p.execute()
    members = {b"1", b"2", b"3"}
    assert out[:2] == [4, 1] and out[2] == members and out[3] in (1, True) and out[4] == members and out[5] == 3, out
    big = ["m%d" % i for i in range(1000)]
    assert r.sadd("big", *big) == 1000
    assert set(r.sscan_iter("big", count=50)) == {m.encode() for m in big}
    assert set(r.sscan_iter("big", match="m1*")) == {m.encode() for m in big if m.startswith("m1")}
    assert r.smove("s", "t", 1) in (1, True) and r.smembers("t") == {b"1"}
    assert set(r.spop("s", 5)) == {b"2", b"3"} and r.exists("s") == 0
    # Sorted sets: ZADD and ZRANGE WITHSCORES in a pipeline (scores come back floats,
    # RESP2 bulk strings and RESP3 doubles alike), ZSCAN through a skiplist.
    with r.pipeline() as p:
        p.zadd("z", {"a": 1, "b": 2.5, "c": float("-inf")}).zincrby("z", 0.1, "a")
        p.zrange("z", 0, -1, withscores=True).zscore("z", "b").zrangebyscore("z", "(1", "+inf")
        out = p.execute()
    assert out[0] == 3 and out[1] == 1.1 and out[3] == 2.5 and out[4] == [b"a", b"b"], out
    assert [tuple(x) for x in out[2]] == [(b"c", float("-inf")), (b"a", 1.1), (b"b", 2.5)], out
    assert r.zadd("z", {"a": 5}, gt=True, ch=True) == 1
    assert r.zpopmax("z") in ([(b"a", 5.0)], [b"a", 5.0])  # RESP3: redis-py leaves it flat
    assert r.zunionstore("zu", {"z": 2, "s": 1}) == 2 and r.zscore("zu", "b") == 5.0
    zbig = {"m%d" % i: i for i in range(300)}
    assert r.zadd("zbig", zbig) == 300
    assert dict(r.zscan_iter("zbig", count=20)) == {k.encode(): float(v) for k, v in zbig.items()}
    try:
        r.execute_command("NOSUCH", "x")
        raise SystemExit("an unknown command did not raise")
    except redis.ResponseError as e:
        assert "unknown command" in str(e)
    assert r.ping() is True, "the connection survived the error"
    # Lists: a pipeline, the blocking pops (timed out, and served by another client).
    p = r.pipeline(transaction=False)
    p.rpush("l", "a", "b", "c").lpush("l", "z").lrange("l", 0, -1).lpos("l", "b").llen("l")
    assert p.execute() == [3, 4, [b"z", b"a", b"b", b"c"], 2, 4]
    assert r.lmpop(2, "none", "l", direction="RIGHT", count=2) == [b"l", [b"c", b"b"]]
    assert r.blpop(["empty"], timeout=0.1) is None
    assert r.brpoplpush("l", "l2", timeout=1) == b"a"
    pusher = redis.Redis(host="127.0.0.1", port=port, protocol=protocol)
    threading.Timer(0.05, lambda: pusher.rpush("q", "job")).start()
    got = r.blpop(["q0", "q"], timeout=5)
    assert list(got) == [b"q", b"job"], got
    pusher.close()
    r.close()
print("ok")
"#;

/// redis-py's transactions (its default `pipeline()`), a WATCH retry loop against a
/// concurrent writer, and `scan_iter` over 10,000 keys while another thread adds and
/// deletes keys: every key present throughout the scan is seen.
const TRANSACTIONS_AND_SCAN: &str = r#"
import random, sys, threading, time, redis
port = int(sys.argv[1])
for protocol in (2, 3):
    r = redis.Redis(host="127.0.0.1", port=port, protocol=protocol)
    r.flushdb()
    with r.pipeline() as p:
        p.set("a", 1).incr("a").incrbyfloat("a", 0.5).get("a").mset({"b": "1", "c": "2"}).mget("a", "b", "c")
        assert p.execute() == [True, 2, 2.5, b"2.5", True, [b"2.5", b"1", b"2"]]
    # A queued command the server refuses: the whole transaction is discarded.
    p = r.pipeline()
    p.set("x", 1)
    p.execute_command("NOSUCHCOMMAND")
    try:
        p.execute()
        raise SystemExit("EXECABORT did not raise")
    except redis.exceptions.ExecAbortError:
        pass
    except redis.ResponseError as e:
        assert "EXECABORT" in str(e) or "unknown command" in str(e), e
    assert r.get("x") is None
    # A runtime error is one reply among the others.
    p = r.pipeline()
    p.set("s", "text").incr("s").get("s")
    out = p.execute(raise_on_error=False)
    assert out[0] is True and isinstance(out[1], redis.ResponseError) and out[2] == b"text", out

    # WATCH: a retry loop against a writer incrementing the same key.
    r.set("balance", 0)
    stop = threading.Event()
    writes = [0]
    def writer():
        w = redis.Redis(host="127.0.0.1", port=port, protocol=protocol)
        while not stop.is_set():
            w.incr("balance")
            writes[0] += 1
            # A pause between writes: with none, the writer wins nearly every race
            # against the watcher's four round trips and the loop ran for minutes in CI.
            time.sleep(0.0005)
        w.close()
    t = threading.Thread(target=writer)
    t.start()
    retries = 0
    for _ in range(300):
        with r.pipeline() as pipe:
            while True:
                try:
                    pipe.watch("balance")
                    v = int(pipe.get("balance"))
                    pipe.multi()
                    pipe.set("balance", v + 1)
                    pipe.execute()
                    break
                except redis.WatchError:
                    retries += 1
    stop.set()
    t.join()
    assert int(r.get("balance")) == writes[0] + 300, (r.get("balance"), writes[0])
    # The helper that wraps the same loop.
    def add_ten(pipe):
        v = int(pipe.get("balance"))
        pipe.multi()
        pipe.set("balance", v + 10)
    r.transaction(add_ten, "balance")
    assert int(r.get("balance")) == writes[0] + 310

    # scan_iter over 10,000 keys while another connection deletes keys stored among
    # them (so that keys move inside the server) and adds new ones.
    r.flushdb()
    with r.pipeline(transaction=False) as p:
        for i in range(10000):
            p.set("stable:%d" % i, i)
            p.set("doomed:%d" % i, i)
        p.execute()
    doomed = ["doomed:%d" % i for i in range(10000)]
    random.Random(protocol).shuffle(doomed)
    stop = threading.Event()
    def churn():
        w = redis.Redis(host="127.0.0.1", port=port, protocol=protocol)
        i = 0
        while not stop.is_set() and i < len(doomed):
            w.delete(doomed[i])
            w.set("new:%d" % i, i)
            i += 1
        w.close()
    t = threading.Thread(target=churn)
    t.start()
    seen = set()
    for k in r.scan_iter(count=50):
        seen.add(k)
    stop.set()
    t.join()
    stable = {b"stable:%d" % i for i in range(10000)}
    missing = stable - seen
    assert not missing, "%d stable keys never returned, e.g. %r" % (len(missing), sorted(missing)[:5])
    assert set(r.scan_iter(match="stable:99*", count=1000)) == {k for k in stable if k.startswith(b"stable:99")}
    assert len(list(r.scan_iter(_type="string", count=1000))) == r.dbsize()
    r.close()
print("ok")
"#;

/// redis-py against a server with a password: `Redis(password=...)`, the errors without
/// it or with a wrong one, and `pubsub()`: subscribe, psubscribe, get_message, a
/// message handler, unsubscribe, in RESP2 and RESP3.
const PUBSUB_AND_PASSWORD: &str = r#"
import sys, time, redis
from redis.backoff import NoBackoff
from redis.retry import Retry
port, password = int(sys.argv[1]), sys.argv[2]
for protocol in (2, 3):
    for wrong in (None, "not-the-password"):
        try:
            # No retries: redis-py retries a refused handshake for seconds otherwise.
            redis.Redis(host="127.0.0.1", port=port, protocol=protocol, password=wrong, retry=Retry(NoBackoff(), 0)).ping()
            raise SystemExit("no error with password %r" % wrong)
        except redis.AuthenticationError:
            pass
    r = redis.Redis(host="127.0.0.1", port=port, protocol=protocol, password=password)
    assert r.ping() is True
    assert r.set("k", "v") is True and r.get("k") == b"v"
    p = r.pubsub()
    p.subscribe("news")
    m = p.get_message(timeout=2)
    assert m["type"] == "subscribe" and m["channel"] == b"news" and m["data"] == 1, m
    p.psubscribe("ne*")
    m = p.get_message(timeout=2)
    assert m["type"] == "psubscribe" and m["data"] == 2, m
    assert r.publish("news", "hello") == 2
    assert r.pubsub_numsub("news") == [(b"news", 1)]
    assert r.pubsub_numpat() == 1
    assert r.pubsub_channels() == [b"news"]
    m = p.get_message(timeout=2)
    assert m["type"] == "message" and m["channel"] == b"news" and m["data"] == b"hello", m
    m = p.get_message(timeout=2)
    assert m["type"] == "pmessage" and m["pattern"] == b"ne*" and m["data"] == b"hello", m
    got = []
    p.subscribe(**{"alerts": lambda m: got.append(m["data"])})
    p.get_message(timeout=2)
    for i in range(100):
        assert r.publish("alerts", str(i)) == 1
    deadline = time.time() + 5
    while len(got) < 100 and time.time() < deadline:
        p.get_message(timeout=0.1)
    assert got == [str(i).encode() for i in range(100)], got
    p.unsubscribe()
    p.punsubscribe()
    kinds = set()
    for _ in range(3):
        kinds.add(p.get_message(timeout=2)["type"])
    assert kinds == {"unsubscribe", "punsubscribe"}, kinds
    assert r.publish("news", "nobody") == 0
    p.close()
    r.close()
print("ok")
"#;

#[test]
fn python_redis_pubsub_and_password() {
    let has = strata_testkit::python_module("redis", "python3 -m pip install redis");
    if !strata_testkit::needs("python_redis_pubsub_and_password", has) {
        return;
    }
    let password = "a-password-for-redis-py";
    let server = common::Server::start_with(
        2,
        strata_cache::CacheConfig {
            shards: 2,
            ..Default::default()
        },
        strata_cache::RespConfig {
            password: Some(password.into()),
            ..Default::default()
        },
    );
    let out = Command::new("python3")
        .args(["-c", PUBSUB_AND_PASSWORD, &server.addr.port().to_string(), password])
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

#[test]
fn python_redis_transactions_watch_and_scan() {
    let has = strata_testkit::python_module("redis", "python3 -m pip install redis");
    if !strata_testkit::needs("python_redis_transactions_watch_and_scan", has) {
        return;
    }
    let server = common::Server::start(2);
    let out = Command::new("python3")
        .args(["-c", TRANSACTIONS_AND_SCAN, &server.addr.port().to_string()])
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
