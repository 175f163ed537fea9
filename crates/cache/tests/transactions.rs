//! MULTI/EXEC/WATCH over real sockets, under concurrency: a transaction's effects are
//! never seen half done, whatever shards its keys are on, and neither are a multi-key
//! set command's (SMOVE against SUNION, SINTERCARD) or sorted set command's (ZUNION,
//! ZINTERCARD, ZUNIONSTORE against transactions); WATCH retry loops lose no
//! update; every command can be queued and EXEC'd without blocking; the queue is
//! bounded. (The replies themselves are checked against redis-server in
//! `differential.rs`.)

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::{cmd, Client, Server};
use strata_cache::{CacheConfig, RespConfig};

/// Two keys that live on different shards of `server`.
fn keys_on_two_shards(server: &Server) -> (String, String) {
    let a = "acct:a".to_string();
    let b = (0..)
        .map(|i| format!("acct:b{i}"))
        .find(|b| server.cache.shard_of(b.as_bytes()) != server.cache.shard_of(a.as_bytes()))
        .unwrap();
    (a, b)
}

fn int(reply: &[u8]) -> i64 {
    let s = String::from_utf8_lossy(reply);
    s.trim_start_matches([':', '$'])
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {s:?}"))
}

/// The integers in an array of bulk strings or integers (`*2 $1 5 :3`...).
fn ints(reply: &[u8]) -> Vec<i64> {
    let s = String::from_utf8_lossy(reply);
    let lines: Vec<&str> = s.split("\r\n").collect();
    let mut out = Vec::new();
    let mut i = 1;
    while i < lines.len() {
        let l = lines[i];
        if let Some(n) = l.strip_prefix(':') {
            out.push(n.parse().unwrap());
        } else if l == "$-1" {
            out.push(0);
        } else if l.starts_with('$') {
            i += 1;
            out.push(lines[i].parse().unwrap());
        }
        i += 1;
    }
    out
}

#[test]
fn a_transaction_is_never_seen_half_done() {
    let server = Server::start_with(
        2,
        CacheConfig {
            shards: 4,
            ..CacheConfig::default()
        },
        RespConfig::default(),
    );
    let (a, b) = keys_on_two_shards(&server);
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for _ in 0..3 {
        let (addr, a, b) = (server.addr, a.clone(), b.clone());
        writers.push(thread::spawn(move || {
            let mut c = Client::connect(addr);
            for _ in 0..300 {
                c.check(&["MULTI"], "+OK\r\n");
                c.check(&["INCR", &a], "+QUEUED\r\n");
                c.check(&["SET", "noise", "x"], "+QUEUED\r\n");
                c.check(&["INCR", &b], "+QUEUED\r\n");
                c.send(&cmd(&["EXEC"]));
                let reply = c.read_reply();
                assert!(reply.starts_with(b"*3\r\n:"), "{}", String::from_utf8_lossy(&reply));
            }
        }));
    }
    let mut readers = Vec::new();
    for r in 0..2 {
        let (addr, a, b, stop) = (server.addr, a.clone(), b.clone(), stop.clone());
        readers.push(thread::spawn(move || {
            let mut c = Client::connect(addr);
            let mut checks = 0;
            while !stop.load(Ordering::Relaxed) {
                let seen = if r == 0 {
                    c.send(&cmd(&["MGET", &a, &b]));
                    ints(&c.read_reply())
                } else {
                    c.check(&["MULTI"], "+OK\r\n");
                    c.check(&["GET", &a], "+QUEUED\r\n");
                    c.check(&["GET", &b], "+QUEUED\r\n");
                    c.send(&cmd(&["EXEC"]));
                    ints(&c.read_reply())
                };
                assert_eq!(seen[0], seen[1], "reader {r} saw a transaction half done: {seen:?}");
                checks += 1;
            }
            checks
        }));
    }
    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    let mut c = server.client();
    c.check(&["MGET", &a, &b], "*2\r\n$3\r\n900\r\n$3\r\n900\r\n");
}

#[test]
fn set_commands_across_shards_are_never_seen_half_done() {
    let server = Server::start_with(
        2,
        CacheConfig {
            shards: 4,
            ..CacheConfig::default()
        },
        RespConfig::default(),
    );
    let (a, b) = keys_on_two_shards(&server);
    let members: Vec<String> = (1..=20).map(|i| i.to_string()).collect();
    let mut c = server.client();
    let mut sadd = vec!["SADD", a.as_str()];
    sadd.extend(members.iter().map(String::as_str));
    c.check(&sadd, ":20\r\n");
    let stop = Arc::new(AtomicBool::new(false));
    // Members move between the two sets one SMOVE at a time, both ways, while a reader
    // looks at both sets at once 1,000 times.
    let mut movers = Vec::new();
    for w in 0..2 {
        let (addr, a, b, stop) = (server.addr, a.clone(), b.clone(), stop.clone());
        let (from, to) = if w == 0 { (a, b) } else { (b, a) };
        movers.push(thread::spawn(move || {
            let mut c = Client::connect(addr);
            let mut moves = 0;
            while !stop.load(Ordering::Relaxed) {
                let m = (1 + moves % 20).to_string();
                c.send(&cmd(&["SMOVE", &from, &to, &m]));
                let reply = c.read_reply();
                assert!(
                    reply == b":0\r\n" || reply == b":1\r\n",
                    "{}",
                    String::from_utf8_lossy(&reply)
                );
                moves += 1;
            }
            moves
        }));
    }
    let mut c = Client::connect(server.addr);
    for _ in 0..1000 {
        c.send(&cmd(&["SUNION", &a, &b]));
        let reply = c.read_reply();
        assert!(
            reply.starts_with(b"*20\r\n"),
            "a member was seen in neither set: {}",
            String::from_utf8_lossy(&reply)
        );
        c.check(&["SINTERCARD", "2", &a, &b], ":0\r\n");
        c.check(&["MULTI"], "+OK\r\n");
        c.check(&["SCARD", &a], "+QUEUED\r\n");
        c.check(&["SCARD", &b], "+QUEUED\r\n");
        c.send(&cmd(&["EXEC"]));
        let seen = ints(&c.read_reply());
        assert_eq!(seen[0] + seen[1], 20, "a transaction saw an SMOVE half done: {seen:?}");
    }
    stop.store(true, Ordering::Relaxed);
    for m in movers {
        assert!(m.join().unwrap() > 0);
    }
}

#[test]
fn zset_commands_across_shards_see_transactions_whole() {
    let server = Server::start_with(
        2,
        CacheConfig {
            shards: 4,
            ..CacheConfig::default()
        },
        RespConfig::default(),
    );
    let (a, b) = keys_on_two_shards(&server);
    let mut c = server.client();
    let mut zadd = vec!["ZADD".to_string(), a.clone()];
    for i in 1..=20 {
        zadd.extend([i.to_string(), format!("m{i}")]);
    }
    let zadd: Vec<&str> = zadd.iter().map(String::as_str).collect();
    c.check(&zadd, ":20\r\n");
    let stop = Arc::new(AtomicBool::new(false));
    // Members move between the two sorted sets in transactions (ZREM from one, ZADD to
    // the other), both ways, while a reader looks at both at once with ZUNION,
    // ZINTERCARD and ZUNIONSTORE 2,000 times each.
    let mut movers = Vec::new();
    for w in 0..2 {
        let (addr, a, b, stop) = (server.addr, a.clone(), b.clone(), stop.clone());
        let (from, to) = if w == 0 { (a, b) } else { (b, a) };
        movers.push(thread::spawn(move || {
            let mut c = Client::connect(addr);
            let mut moves = 0;
            while !stop.load(Ordering::Relaxed) {
                // Each member is in exactly one of the two at every moment: when it is
                // not in `from`, ZREM does nothing and ZADD only sets its score in `to`.
                let i = 1 + moves % 20;
                let m = format!("m{i}");
                let mut batch = cmd(&["MULTI"]);
                batch.extend(cmd(&["ZREM", &from, &m]));
                batch.extend(cmd(&["ZADD", &to, &i.to_string(), &m]));
                batch.extend(cmd(&["EXEC"]));
                c.send(&batch);
                for _ in 0..4 {
                    c.read_reply();
                }
                moves += 1;
            }
            moves
        }));
    }
    let mut c = Client::connect(server.addr);
    for _ in 0..2000 {
        c.send(&cmd(&["ZUNION", "2", &a, &b]));
        let reply = c.read_reply();
        assert!(
            reply.starts_with(b"*20\r\n"),
            "a member was seen in neither or both: {}",
            String::from_utf8_lossy(&reply)
        );
        c.check(&["ZINTERCARD", "2", &a, &b], ":0\r\n");
        c.check(&["ZUNIONSTORE", "u", "2", &a, &b], ":20\r\n");
    }
    stop.store(true, Ordering::Relaxed);
    for m in movers {
        assert!(m.join().unwrap() > 0);
    }
}

#[test]
fn watch_retry_loops_lose_no_update() {
    let server = Server::start(2);
    let mut threads = Vec::new();
    let per_thread = 150;
    for _ in 0..4 {
        let addr = server.addr;
        threads.push(thread::spawn(move || {
            let mut c = Client::connect(addr);
            let mut retries = 0;
            for _ in 0..per_thread {
                loop {
                    c.check(&["WATCH", "counter"], "+OK\r\n");
                    c.send(&cmd(&["GET", "counter"]));
                    let v = match c.read_reply() {
                        r if r == b"$-1\r\n" => 0,
                        r => int(&r),
                    };
                    c.check(&["MULTI"], "+OK\r\n");
                    c.check(&["SET", "counter", &(v + 1).to_string()], "+QUEUED\r\n");
                    c.send(&cmd(&["EXEC"]));
                    match c.read_reply() {
                        r if r == b"*-1\r\n" => retries += 1,
                        r => {
                            assert_eq!(r, b"*1\r\n+OK\r\n");
                            break;
                        }
                    }
                }
            }
            retries
        }));
    }
    let retries: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let mut c = server.client();
    c.check(&["GET", "counter"], "$3\r\n600\r\n");
    eprintln!("{retries} retries");
}

#[test]
fn every_command_can_run_inside_a_transaction() {
    let server = Server::start(2);
    let mut c = server.client();
    c.check(&["SET", "k", "v"], "+OK\r\n");
    c.check(&["WATCH", "k", "other"], "+OK\r\n");
    let commands: &[&[&str]] = &[
        &["GET", "k"],
        &["SET", "k", "1"],
        &["MGET", "k", "x", "y"],
        &["MSET", "x", "1", "y", "2"],
        &["INCR", "k"],
        &["DEL", "x", "nope"],
        &["UNLINK", "nope"],
        &["EXISTS", "k", "y"],
        &["EXPIRE", "k", "100"],
        &["PEXPIRE", "k", "100000"],
        &["EXPIREAT", "k", "4102444800"],
        &["PEXPIREAT", "k", "4102444800000"],
        &["TTL", "k"],
        &["PTTL", "k"],
        &["PERSIST", "k"],
        &["INCRBY", "k", "2"],
        &["DECR", "k"],
        &["DECRBY", "k", "2"],
        &["APPEND", "k", "0"],
        &["STRLEN", "k"],
        &["GETDEL", "y"],
        &["GETEX", "k", "EX", "100"],
        &["GETSET", "k", "5"],
        &["SETNX", "z", "1"],
        &["SETEX", "z", "10", "v"],
        &["PSETEX", "z", "10000", "v"],
        &["MSETNX", "m1", "1", "m2", "2"],
        &["INCRBYFLOAT", "f", "1.5"],
        &["GETRANGE", "k", "0", "-1"],
        &["SUBSTR", "k", "0", "-1"],
        &["SETRANGE", "k", "1", "x"],
        &["SETBIT", "bits", "7", "1"],
        &["GETBIT", "bits", "7"],
        &["BITCOUNT", "bits"],
        &["EXPIRETIME", "k"],
        &["PEXPIRETIME", "k"],
        &["TYPE", "k"],
        &["SCAN", "0", "COUNT", "100"],
        &["KEYS", "*"],
        &["RENAME", "m1", "m3"],
        &["RENAMENX", "m2", "m4"],
        &["COPY", "k", "kcopy", "REPLACE"],
        &["RANDOMKEY"],
        &["OBJECT", "ENCODING", "k"],
        &["HSET", "h", "a", "1", "b", "2"],
        &["HMSET", "h", "c", "3"],
        &["HSETNX", "h", "d", "4"],
        &["HGET", "h", "a"],
        &["HMGET", "h", "a", "x"],
        &["HDEL", "h", "d"],
        &["HEXISTS", "h", "a"],
        &["HLEN", "h"],
        &["HSTRLEN", "h", "a"],
        &["HKEYS", "h"],
        &["HVALS", "h"],
        &["HGETALL", "h"],
        &["HINCRBY", "h", "a", "1"],
        &["HINCRBYFLOAT", "h", "a", "1.5"],
        &["HRANDFIELD", "h", "2"],
        &["HSCAN", "h", "0"],
        &["TYPE", "h"],
        &["SADD", "s", "1", "2", "a"],
        &["SADD", "s2", "2", "3"],
        &["SREM", "s", "a"],
        &["SMEMBERS", "s"],
        &["SISMEMBER", "s", "1"],
        &["SMISMEMBER", "s", "1", "9"],
        &["SCARD", "s"],
        &["SRANDMEMBER", "s", "-2"],
        &["SINTER", "s", "s2"],
        &["SUNION", "s", "s2"],
        &["SDIFF", "s", "s2"],
        &["SINTERSTORE", "s3", "s", "s2"],
        &["SUNIONSTORE", "s3", "s", "s2"],
        &["SDIFFSTORE", "s3", "s", "s2"],
        &["SINTERCARD", "2", "s", "s2", "LIMIT", "1"],
        &["SMOVE", "s", "s2", "1"],
        &["SSCAN", "s2", "0"],
        &["SPOP", "s3", "1"],
        &["TYPE", "s"],
        &["RPUSH", "l", "a", "b", "c"],
        &["LPUSH", "l", "z"],
        &["RPUSHX", "l", "d"],
        &["LPUSHX", "l", "y"],
        &["LRANGE", "l", "0", "-1"],
        &["LINDEX", "l", "0"],
        &["LSET", "l", "0", "x"],
        &["LLEN", "l"],
        &["LREM", "l", "0", "x"],
        &["LINSERT", "l", "BEFORE", "a", "w"],
        &["LPOS", "l", "a"],
        &["LTRIM", "l", "0", "-1"],
        &["LPOP", "l"],
        &["RPOP", "l", "1"],
        &["LMOVE", "l", "l2", "LEFT", "RIGHT"],
        &["RPOPLPUSH", "l", "l2"],
        &["LMPOP", "2", "l", "l2", "LEFT"],
        &["BLPOP", "l", "l2", "0"],
        &["BRPOP", "l", "l2", "0"],
        &["BLMOVE", "l", "l2", "LEFT", "LEFT", "0"],
        &["BRPOPLPUSH", "l", "l2", "0"],
        &["BLMPOP", "0", "2", "l", "l2", "RIGHT"],
        &["TYPE", "l"],
        &["SUBSCRIBE", "ch"],
        &["PSUBSCRIBE", "c*"],
        &["PUBLISH", "nobody", "m"],
        &["PUBSUB", "NUMSUB", "ch"],
        &["UNSUBSCRIBE"],
        &["PUNSUBSCRIBE"],
        &["ZADD", "zs", "1", "a", "2", "b", "3", "c"],
        &["ZINCRBY", "zs", "1.5", "a"],
        &["ZREM", "zs", "c"],
        &["ZCARD", "zs"],
        &["ZSCORE", "zs", "a"],
        &["ZMSCORE", "zs", "a", "x"],
        &["ZRANK", "zs", "a"],
        &["ZREVRANK", "zs", "a"],
        &["ZCOUNT", "zs", "-inf", "+inf"],
        &["ZLEXCOUNT", "zs", "-", "+"],
        &["ZRANGE", "zs", "0", "-1", "WITHSCORES"],
        &["ZREVRANGE", "zs", "0", "-1"],
        &["ZRANGEBYSCORE", "zs", "(1", "inf"],
        &["ZREVRANGEBYSCORE", "zs", "inf", "(1"],
        &["ZRANGEBYLEX", "zs", "-", "+"],
        &["ZREVRANGEBYLEX", "zs", "+", "-"],
        &["ZRANGESTORE", "zs2", "zs", "0", "-1"],
        &["ZRANDMEMBER", "zs", "-2"],
        &["ZSCAN", "zs", "0"],
        &["ZPOPMIN", "zs2"],
        &["ZPOPMAX", "zs2"],
        &["ZADD", "zs2", "1", "a", "2", "b"],
        &["ZMPOP", "2", "nokey", "zs2", "MIN"],
        &["BZPOPMIN", "nokey", "zs2", "0"],
        &["BZPOPMAX", "nokey", "0"],
        &["BZMPOP", "0", "1", "zs2", "MAX", "COUNT", "5"],
        &["ZREMRANGEBYRANK", "zs", "0", "0"],
        &["ZREMRANGEBYSCORE", "zs", "-inf", "0"],
        &["ZREMRANGEBYLEX", "zs", "-", "(a"],
        &["ZUNION", "2", "zs", "s", "WITHSCORES"],
        &["ZINTER", "2", "zs", "s2"],
        &["ZDIFF", "2", "zs", "s2"],
        &["ZUNIONSTORE", "zs3", "2", "zs", "s", "WEIGHTS", "1", "2"],
        &["ZINTERSTORE", "zs3", "2", "zs", "zs", "AGGREGATE", "MAX"],
        &["ZDIFFSTORE", "zs3", "2", "zs", "s"],
        &["ZINTERCARD", "2", "zs", "zs3", "LIMIT", "1"],
        &["TYPE", "zs"],
        &["TOUCH", "zs", "nope"],
        &["WAIT", "1", "0"],
        &["UNWATCH"],
        &["PING"],
        &["ECHO", "hi"],
        &["SELECT", "0"],
        &["INFO", "keyspace"],
        &["DBSIZE"],
        &["COMMAND", "COUNT"],
        &["CLIENT", "ID"],
        &["HELLO", "2"],
        &["AUTH", "default", "x"],
        &["CONFIG", "GET", "maxmemory"],
        &["TIME"],
        &["FLUSHDB"],
        &["FLUSHALL"],
    ];
    c.check(&["MULTI"], "+OK\r\n");
    for args in commands {
        c.check(args, "+QUEUED\r\n");
    }
    c.send(&cmd(&["EXEC"]));
    let reply = c.read_reply();
    assert!(
        reply.starts_with(format!("*{}\r\n", commands.len()).as_bytes()),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    assert!(!String::from_utf8_lossy(&reply).contains("not allowed"));
    c.check(&["DBSIZE"], ":0\r\n");
    // Every command the table has is in the list above (but those never queued; the
    // subcommands, `client|id` and the like, run as their containers do).
    c.send(&cmd(&["COMMAND", "LIST"]));
    let listed = String::from_utf8_lossy(&c.read_reply()).to_string();
    for name in listed
        .split("\r\n")
        .filter(|l| !l.starts_with(['*', '$']) && !l.is_empty() && !l.contains('|'))
    {
        let never_queued = ["multi", "exec", "discard", "watch", "quit", "reset"];
        assert!(
            never_queued.contains(&name) || commands.iter().any(|c| c[0].eq_ignore_ascii_case(name)),
            "{name} is not exercised inside a transaction"
        );
    }
}

#[test]
fn the_queue_is_bounded_by_the_query_buffer_limit() {
    let server = Server::start_with(
        1,
        CacheConfig {
            shards: 2,
            ..CacheConfig::default()
        },
        RespConfig {
            max_query_bytes: 64 << 10,
            ..RespConfig::default()
        },
    );
    let mut c = server.client();
    c.check(&["MULTI"], "+OK\r\n");
    let value = "x".repeat(10_000);
    let mut refused = false;
    for i in 0..10 {
        c.send(&cmd(&["SET", &format!("k{i}"), &value]));
        let reply = c.read_reply();
        if reply.starts_with(b"-ERR the transaction's queued commands") {
            refused = true;
        } else {
            assert_eq!(reply, b"+QUEUED\r\n");
        }
    }
    assert!(refused, "ten 10 kB commands pass a 64 KiB limit");
    c.check(
        &["EXEC"],
        "-EXECABORT Transaction discarded because of previous errors.\r\n",
    );
    c.check(&["DBSIZE"], ":0\r\n");
    // The memory counted for the queue was given back.
    let mut c2 = server.client();
    c2.check(&["MULTI"], "+OK\r\n");
    c2.check(&["SET", "a", &value], "+QUEUED\r\n");
    c2.check(&["EXEC"], "*1\r\n+OK\r\n");
}

#[test]
fn a_closed_connection_leaves_no_watch_behind() {
    let server = Server::start(1);
    for _ in 0..50 {
        let mut c = server.client();
        c.check(&["WATCH", "a", "b", "c"], "+OK\r\n");
        c.check(&["MULTI"], "+OK\r\n");
        c.check(&["SET", "a", "1"], "+QUEUED\r\n");
        drop(c);
    }
    // The closes are handled by the server's worker: give it a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while server.cache.watched_keys() > 0 && std::time::Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(server.cache.watched_keys(), 0);
    assert_eq!(server.cache.len(), 0, "the unfinished transactions never ran");
}
