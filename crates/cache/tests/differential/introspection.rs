//! The server's description of itself against redis-server: the command table (COMMAND),
//! subcommand errors (CLIENT, COMMAND, CONFIG, OBJECT, PUBSUB), CLIENT LIST's and
//! COMMAND LIST's filters, and INFO's keyspace hits and misses.

use super::*;

#[test]
fn command_table_matches_redis() {
    let Some((redis, strata)) = setup("command_table_matches_redis") else {
        return;
    };
    let mut b = Both::connect(&redis, &strata);
    let Value::Array(ours) = b.strata_only(&[b"COMMAND".to_vec()]) else {
        panic!("COMMAND did not answer an array")
    };
    let count = b.strata_only(&[b"COMMAND".to_vec(), b"COUNT".to_vec()]);
    assert_eq!(count, Value::Int(ours.len() as i64), "COMMAND COUNT and COMMAND agree");
    let fields = |v: &Value| -> Vec<Value> {
        let Value::Array(f) = v else {
            panic!("an entry that is not an array: {v:?}")
        };
        let mut f = f[..6].to_vec();
        if let Value::Array(flags) = &mut f[2] {
            flags.sort_by_key(|x| format!("{x:?}"));
        }
        f
    };
    for entry in &ours {
        let name = match &fields(entry)[0] {
            Value::Bulk(n) => n.clone(),
            other => panic!("a command name that is not a bulk string: {other:?}"),
        };
        let (r, s) = b.send(&[b"COMMAND".to_vec(), b"INFO".to_vec(), name.clone()]);
        let (Value::Array(r), Value::Array(s)) = (parse(&r), parse(&s)) else {
            panic!("COMMAND INFO answered no array")
        };
        assert_eq!(
            fields(&s[0]),
            fields(&r[0]),
            "COMMAND INFO {}: name, arity, flags, first key, last key, step",
            String::from_utf8_lossy(&name)
        );
    }
}

#[test]
fn subcommand_errors_answer_as_redis() {
    let Some((redis, strata)) = setup("subcommand_errors_answer_as_redis") else {
        return;
    };
    let mut b = Both::connect(&redis, &strata);
    let long = "X".repeat(200);
    for c in [
        &["CLIENT", "NOSUCH"][..],
        &["client", "nosuch"],
        &["CLIENT", &long],
        &["CLIENT"],
        &["CLIENT", "GETNAME", "extra"],
        &["CLIENT", "ID", "x"],
        &["CLIENT", "INFO", "x"],
        &["CLIENT", "SETNAME"],
        &["CLIENT", "SETNAME", "a", "b"],
        &["CLIENT", "NO-EVICT"],
        &["CLIENT", "HELP", "x"],
        &["COMMAND", "NOSUCH"],
        &["COMMAND", "COUNT", "x"],
        &["COMMAND", "HELP", "x"],
        &["CONFIG"],
        &["CONFIG", "NOSUCH"],
        &["CONFIG", "GET"],
        // What libraries read before relying on a feature or an encoding.
        &["CONFIG", "GET", "notify-keyspace-events"],
        &["CONFIG", "GET", "zset-max-listpack-entries"],
        &["CONFIG", "GET", "zset-max-ziplist-value"],
        &["CONFIG", "GET", "hash-max-listpack-entries"],
        &["CONFIG", "GET", "hash-max-ziplist-value"],
        &["CONFIG", "GET", "set-max-intset-entries"],
        &["CONFIG", "SET", "a"],
        &["CONFIG", "RESETSTAT", "x"],
        &["CONFIG", "HELP", "x"],
        &["OBJECT", "NOSUCH"],
        &["OBJECT", "ENCODING"],
        &["PUBSUB"],
        &["PUBSUB", "NOSUCH"],
        &["PUBSUB", "NUMPAT", "x"],
        &["PUBSUB", "HELP", "x"],
        // Checked inside PUBSUB, in Redis 7.0 too: the old wording.
        &["PUBSUB", "CHANNELS", "a", "b"],
        // Refused while queued: EXEC discards the transaction.
        &["MULTI"],
        &["SET", "k", "v"],
        &["CLIENT", "NOSUCH"],
        &["EXEC"],
        &["MULTI"],
        &["CONFIG", "GET"],
        &["EXEC"],
        &["GET", "k"],
        // Before the subscribed context's refusal.
        &["SUBSCRIBE", "c"],
        &["CLIENT", "NOSUCH"],
        &["CLIENT", "GETNAME", "x"],
        &["CLIENT", "GETNAME"],
    ] {
        b.same(c);
    }
}

#[test]
fn client_list_and_command_list_filters_answer_as_redis() {
    let Some((redis, strata)) = setup("client_list_and_command_list_filters_answer_as_redis") else {
        return;
    };
    let mut b = Both::connect(&redis, &strata);
    // Replies that list this connection differ (ids, addresses, ages): only the ones that
    // list nothing, and the errors, are compared here (tests/server.rs has the rest).
    for c in [
        &["CLIENT", "LIST", "TYPE", "pubsub"][..],
        &["CLIENT", "LIST", "TYPE", "Master"],
        &["CLIENT", "LIST", "TYPE", "replica"],
        &["CLIENT", "LIST", "TYPE", "slave"],
        &["CLIENT", "LIST", "TYPE", "bogus"],
        &["CLIENT", "LIST", "TYPE"],
        &["CLIENT", "LIST", "foo"],
        &["CLIENT", "LIST", "ID", "999999"],
        &["CLIENT", "LIST", "ID", "999999", "999998"],
        &["CLIENT", "LIST", "ID", "abc"],
        &["CLIENT", "LIST", "ID", "999999", "abc"],
        &["CLIENT", "LIST", "ID", "+5"],
        &["CLIENT", "LIST", "ID"],
        &["CLIENT", "LIST", "TYPE", "normal", "ID", "1"],
        &["CLIENT", "LIST", "ID", "1", "TYPE", "normal"],
        &["CLIENT", "NO-EVICT", "maybe"],
        &["CLIENT", "NO-EVICT", "1"],
        &["CLIENT", "NO-EVICT", "On"],
        &["CLIENT", "NO-EVICT", "off"],
        &["COMMAND", "LIST", "FILTERBY", "PATTERN", "getr*"],
        &["COMMAND", "LIST", "filterby", "pattern", "GETR*"],
        &["COMMAND", "LIST", "FILTERBY", "PATTERN", "client|l*"],
        &["COMMAND", "LIST", "FILTERBY", "PATTERN", "nosuch*"],
        &["COMMAND", "LIST", "FILTERBY", "MODULE", "x"],
        &["COMMAND", "LIST", "FILTERBY"],
        &["COMMAND", "LIST", "FILTERBY", "PATTERN"],
        &["COMMAND", "LIST", "FILTERBY", "PATTERN", "a", "b"],
        &["COMMAND", "LIST", "FILTERBY", "foo", "bar"],
        &["COMMAND", "LIST", "foo"],
    ] {
        b.same(c);
    }
    // Containers and their subcommands, listed in each server's own order.
    for pattern in ["object*", "pubsub*", "zr*"] {
        let args = [
            b"COMMAND".to_vec(),
            b"LIST".to_vec(),
            b"FILTERBY".to_vec(),
            b"PATTERN".to_vec(),
            pattern.as_bytes().to_vec(),
        ];
        let (r, s) = b.send(&args);
        let (Value::Array(r), Value::Array(s)) = (parse(&r), parse(&s)) else {
            panic!("COMMAND LIST FILTERBY PATTERN {pattern} answered no array");
        };
        assert_eq!(sorted(&s), sorted(&r), "COMMAND LIST FILTERBY PATTERN {pattern}");
    }
    b.both(&["HELLO", "3"]);
    b.same(&["CLIENT", "LIST", "TYPE", "pubsub"]);
    b.same(&["SUBSCRIBE", "c"]);
    b.same(&["CLIENT", "LIST", "TYPE", "normal"]);
}

#[test]
fn keyspace_hits_and_misses_count_as_redis() {
    let Some((redis, strata)) = setup("keyspace_hits_and_misses_count_as_redis") else {
        return;
    };
    let mut b = Both::connect(&redis, &strata);
    fn stats(c: &mut Client) -> (i64, i64) {
        c.send(&cmd_bytes(&[b"INFO", b"stats"]));
        let Value::Bulk(text) = parse(&c.read_reply()) else {
            panic!("INFO answered no bulk string")
        };
        let text = String::from_utf8(text).unwrap();
        let field = |name: &str| -> i64 {
            let line = text.lines().find_map(|l| l.strip_prefix(name));
            line.unwrap_or_else(|| panic!("INFO lacks {name}"))
                .trim()
                .parse()
                .unwrap()
        };
        (field("keyspace_hits:"), field("keyspace_misses:"))
    }
    let keys: [&[&str]; 5] = [
        &["SET", "k", "v"],
        &["HSET", "h", "f", "v"],
        &["SADD", "s", "a"],
        &["RPUSH", "l", "a"],
        &["ZADD", "z", "1", "a"],
    ];
    // Lookups that read no value (EXISTS, TYPE, TTL, ...), reads of other kinds, and
    // commands that only check a key (LMOVE, MSETNX, RENAMENX: not counted).
    let commands: &[&[&str]] = &[
        &["EXISTS", "k"],
        &["EXISTS", "k", "nope", "h"],
        &["TYPE", "k"],
        &["TYPE", "h"],
        &["TTL", "k"],
        &["PTTL", "k"],
        &["EXPIRETIME", "k"],
        &["PEXPIRETIME", "k"],
        &["OBJECT", "ENCODING", "k"],
        &["COPY", "k", "k2"],
        &["SET", "k", "w", "GET"],
        &["SET", "h", "w", "GET"],
        &["GETSET", "k", "w"],
        &["SCAN", "0", "TYPE", "hash", "COUNT", "100"],
        &["GET", "k"],
        &["MGET", "k", "nope"],
        &["HGET", "h", "f"],
        &["SISMEMBER", "s", "a"],
        &["LRANGE", "l", "0", "-1"],
        &["ZSCORE", "z", "a"],
        &["ZUNION", "2", "z", "s"],
        &["LMOVE", "l", "l2", "LEFT", "LEFT"],
        &["RPOPLPUSH", "l", "k"],
        &["MSETNX", "k", "v", "n", "v"],
        &["RENAMENX", "k", "h"],
        &["INCRBYFLOAT", "h", "x"],
        &["TOUCH", "k", "nope", "h"],
    ];
    for present in [false, true] {
        for c in commands {
            b.same(&["FLUSHALL"]);
            if present {
                for k in keys {
                    b.same(k);
                }
            }
            let before = (stats(&mut b.redis), stats(&mut b.strata));
            b.same(c);
            let after = (stats(&mut b.redis), stats(&mut b.strata));
            let redis = (after.0 .0 - before.0 .0, after.0 .1 - before.0 .1);
            let ours = (after.1 .0 - before.1 .0, after.1 .1 - before.1 .1);
            assert_eq!(
                ours,
                redis,
                "{c:?} ({}): strata's (hits, misses) against Redis'",
                if present { "the keys exist" } else { "no keys" }
            );
        }
    }
}
