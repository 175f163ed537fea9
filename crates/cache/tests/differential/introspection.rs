//! The server's description of itself against redis-server: the command table (COMMAND,
//! the containers' subcommands in their entries, and COMMAND INFO of a subcommand by its
//! full name, `client|list`), subcommand errors (CLIENT, COMMAND, CONFIG, OBJECT,
//! PUBSUB), CLIENT LIST's and COMMAND LIST's filters, and INFO's keyspace hits and
//! misses.

use super::*;

/// Subcommands strata answers that Redis 7.0 does not have (7.2's, sent by newer clients
/// on connecting).
const NEWER_THAN_7_0: [&str; 2] = ["client|setinfo", "client|no-touch"];

/// A COMMAND entry's fields that strata fills as Redis does: name, arity, flags (in any
/// order), first key, last key, step (strata has no ACL categories, tips nor key specs).
fn entry_fields(v: &Value) -> Vec<Value> {
    let Value::Array(f) = v else {
        panic!("an entry that is not an array: {v:?}")
    };
    let mut f = f[..6].to_vec();
    if let Value::Array(flags) = &mut f[2] {
        flags.sort_by_key(|x| format!("{x:?}"));
    }
    f
}

/// The name of a COMMAND entry.
fn entry_name(v: &Value) -> String {
    match &entry_fields(v)[0] {
        Value::Bulk(n) => String::from_utf8_lossy(n).into_owned(),
        other => panic!("a command name that is not a bulk string: {other:?}"),
    }
}

/// A container's entries of its subcommands (an entry's last field), by name.
fn subcommand_entries(v: &Value) -> Vec<(String, Value)> {
    let Value::Array(f) = v else {
        panic!("an entry that is not an array: {v:?}")
    };
    let Value::Array(subs) = &f[9] else {
        panic!("subcommands that are not an array: {v:?}")
    };
    subs.iter().map(|s| (entry_name(s), s.clone())).collect()
}

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
    for entry in &ours {
        let name = entry_name(entry);
        let (r, s) = b.send(&[b"COMMAND".to_vec(), b"INFO".to_vec(), name.as_bytes().to_vec()]);
        let (Value::Array(r), Value::Array(s)) = (parse(&r), parse(&s)) else {
            panic!("COMMAND INFO answered no array")
        };
        assert_eq!(
            entry_fields(&s[0]),
            entry_fields(&r[0]),
            "COMMAND INFO {name}: name, arity, flags, first key, last key, step"
        );
        // A container's subcommands, in its entry: each as Redis has it (Redis has
        // more of them).
        let theirs = subcommand_entries(&r[0]);
        let ours = subcommand_entries(&s[0]);
        for (sub, ours) in &ours {
            match theirs.iter().find(|(n, _)| n == sub) {
                Some((_, theirs)) => {
                    assert_eq!(entry_fields(ours), entry_fields(theirs), "{sub} in COMMAND INFO {name}")
                }
                None => assert!(
                    NEWER_THAN_7_0.contains(&sub.as_str()),
                    "{sub}: Redis 7.0 has no such subcommand"
                ),
            }
        }
        // And none that strata has is left out.
        for (sub, _) in &theirs {
            let known = b.strata_only(&[b"COMMAND".to_vec(), b"INFO".to_vec(), sub.as_bytes().to_vec()]);
            let listed = ours.iter().any(|(n, _)| n == sub);
            assert_eq!(
                listed,
                known != Value::Array(vec![Value::Null]),
                "{sub} in COMMAND INFO {name}"
            );
        }
    }
}

#[test]
fn command_info_finds_subcommands_by_full_name_as_redis() {
    let Some((redis, strata)) = setup("command_info_finds_subcommands_by_full_name_as_redis") else {
        return;
    };
    let mut b = Both::connect(&redis, &strata);
    // Every subcommand strata lists, by its full name (`client|list`) and in upper case.
    let Value::Array(names) = b.strata_only(&[b"COMMAND".to_vec(), b"LIST".to_vec()]) else {
        panic!("COMMAND LIST did not answer an array")
    };
    let subcommands: Vec<Vec<u8>> = names
        .into_iter()
        .filter_map(|n| match n {
            Value::Bulk(n) if n.contains(&b'|') => Some(n),
            _ => None,
        })
        .collect();
    assert!(subcommands.len() >= 30, "{} subcommands listed", subcommands.len());
    for name in subcommands.iter().flat_map(|n| [n.clone(), n.to_ascii_uppercase()]) {
        let shown = String::from_utf8_lossy(&name).to_ascii_lowercase();
        let (r, s) = b.send(&[b"COMMAND".to_vec(), b"INFO".to_vec(), name.clone()]);
        let (Value::Array(r), Value::Array(s)) = (parse(&r), parse(&s)) else {
            panic!("COMMAND INFO {shown} answered no array")
        };
        assert_ne!(
            s[0],
            Value::Null,
            "COMMAND INFO {shown}: strata found no such subcommand"
        );
        if r[0] == Value::Null {
            assert!(NEWER_THAN_7_0.contains(&shown.as_str()), "Redis 7.0 has no {shown}");
            continue;
        }
        assert_eq!(
            entry_fields(&s[0]),
            entry_fields(&r[0]),
            "COMMAND INFO {shown}: name, arity, flags, first key, last key, step"
        );
        assert_eq!(subcommand_entries(&s[0]), [], "{shown} has no subcommands of its own");
    }
    // Names of nothing: unknown subcommands, subcommands of a command without any, more
    // than one level, empty parts; in COMMAND INFO, COMMAND DOCS (which leaves them out)
    // and COMMAND GETKEYS (which takes the subcommand as a word of its own).
    let unknown = [
        "client|nope",
        "get|x",
        "nosuch|list",
        "client|list|x",
        "client|",
        "|list",
        "|",
        "",
        "client list",
    ];
    for resp3 in [false, true] {
        if resp3 {
            b.both(&["HELLO", "3"]);
        }
        for name in unknown {
            b.same(&["COMMAND", "INFO", name]);
            b.same(&["COMMAND", "DOCS", name]);
        }
        b.same(&["COMMAND", "INFO", "client|nope", "get|x", "CONFIG|nope"]);
        b.same(&["COMMAND", "GETKEYS", "object|encoding", "k"]);
        b.same(&["COMMAND", "GETKEYS", "OBJECT", "ENCODING", "k"]);
        // Known and unknown names together: an entry for each known one, in order.
        let args: Vec<Vec<u8>> = [
            "COMMAND",
            "INFO",
            "get",
            "client|nope",
            "Object|Encoding",
            "get|x",
            "config",
        ]
        .iter()
        .map(|a| a.as_bytes().to_vec())
        .collect();
        let (r, s) = b.send(&args);
        let (Value::Array(r), Value::Array(s)) = (parse(&r), parse(&s)) else {
            panic!("COMMAND INFO answered no array")
        };
        let shape = |v: &[Value]| -> Vec<Option<Vec<Value>>> {
            v.iter().map(|e| (*e != Value::Null).then(|| entry_fields(e))).collect()
        };
        assert_eq!(shape(&s), shape(&r), "{}", show_args(&args));
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
