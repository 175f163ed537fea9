//! MULTI, EXEC, DISCARD, WATCH and UNWATCH against redis-server, hand-written: queued
//! commands and refused ones (EXECABORT), keyspace-wide commands inside a transaction,
//! and WATCH across two connections (changes, deletions, flushes, expiries), in RESP2
//! and RESP3.

use super::*;

#[test]
fn transactions_answer_as_redis() {
    let Some((redis, strata)) = setup("transactions_answer_as_redis") else {
        return;
    };
    let mut a = Both::connect(&redis, &strata);
    let mut other = Both::connect(&redis, &strata);
    for c in [
        &["FLUSHALL"][..],
        &["MULTI"],
        &["MULTI"],
        &["SET", "a", "1"],
        &["WATCH", "a"],
        &["INCR", "a"],
        &["GET", "a"],
        &["EXEC"],
        &["MULTI"],
        &["NOSUCH", "x"],
        &["SET", "a", "3"],
        &["EXEC"],
        &["GET", "a"],
        &["MULTI"],
        &["SET", "a"],
        &["EXEC"],
        &["EXEC"],
        &["DISCARD"],
        &["MULTI"],
        &["SET", "a", "x"],
        &["INCR", "a"],
        &["GET", "a"],
        &["GETEX", "a", "ex", "0"],
        &["SETRANGE", "a", "-1", "x"],
        &["RENAME", "nokey", "x"],
        &["EXEC"],
        &["MULTI"],
        &["SET", "a", "y"],
        &["DISCARD"],
        &["GET", "a"],
        &["WATCH", "a"],
        &["MULTI"],
        &["UNWATCH"],
        &["EXEC"],
        &["MULTI"],
        &["EXEC"],
        &["UNWATCH"],
        &["WATCH"],
        &["MULTI", "x"],
        &["EXEC", "x"],
        // Keyspace-wide commands inside a transaction.
        &["MULTI"],
        &["MSET", "k1", "1", "k2", "2", "k3", "3"],
        &["DBSIZE"],
        &["MGET", "k1", "k2", "k3", "a"],
        &["RENAME", "k1", "k4"],
        &["COPY", "k2", "k5"],
        &["MSETNX", "k6", "6", "k1", "1"],
        &["DEL", "k2", "k3"],
        &["FLUSHDB"],
        &["DBSIZE"],
        &["EXEC"],
        &["RESET"],
    ] {
        a.same(c);
    }
    // WATCH: a change from another connection, or from this one, aborts EXEC; so do a
    // deletion, a flush of the key, an expiry; reads, and changes that change nothing,
    // do not.
    type Step<'a> = (bool, &'a [&'a str]);
    let scenarios: &[(&str, &[Step])] = &[
        ("other sets", &[(true, &["SET", "w", "2"])]),
        ("self sets", &[(false, &["SET", "w", "2"])]),
        ("other reads", &[(true, &["GET", "w"])]),
        ("other deletes", &[(true, &["DEL", "w"])]),
        ("other deletes nothing", &[(true, &["DEL", "nokey"])]),
        ("other flushes", &[(true, &["FLUSHDB"])]),
        ("other expires", &[(true, &["EXPIRE", "w", "100"])]),
        ("failed XX expire", &[(true, &["EXPIRE", "w", "100", "XX"])]),
        ("persist without a ttl", &[(true, &["PERSIST", "w"])]),
        ("append nothing", &[(true, &["APPEND", "w", ""])]),
        ("setrange nothing", &[(true, &["SETRANGE", "w", "0", ""])]),
        ("setrange same bytes", &[(true, &["SETRANGE", "w", "0", "1"])]),
        ("incrby 0", &[(true, &["INCRBY", "w", "0"])]),
        ("incrbyfloat 0", &[(true, &["INCRBYFLOAT", "w", "0"])]),
        ("setbit unchanged", &[(true, &["SETBIT", "w", "2", "1"])]),
        ("setbit changed", &[(true, &["SETBIT", "w", "0", "1"])]),
        ("getex no option", &[(true, &["GETEX", "w"])]),
        ("getex persist without ttl", &[(true, &["GETEX", "w", "PERSIST"])]),
        (
            "rename onto it",
            &[(true, &["SET", "src", "x"]), (true, &["RENAME", "src", "w"])],
        ),
        ("rename it away", &[(true, &["RENAME", "w", "elsewhere"])]),
        ("rename to itself", &[(true, &["RENAME", "w", "w"])]),
        (
            "copy onto it",
            &[(true, &["SET", "src", "x"]), (true, &["COPY", "src", "w", "REPLACE"])],
        ),
        ("failed copy", &[(true, &["COPY", "nokey", "w"])]),
        ("failed msetnx", &[(true, &["MSETNX", "w", "1", "z", "1"])]),
        ("set nx fails", &[(true, &["SET", "w", "x", "NX"])]),
        ("other key", &[(true, &["SET", "unwatched", "x"])]),
        ("getdel", &[(true, &["GETDEL", "w"])]),
        (
            "other writes then unwatch",
            &[(true, &["SET", "w", "3"]), (false, &["UNWATCH"])],
        ),
    ];
    for (name, steps) in scenarios {
        for c in [&["FLUSHALL"][..], &["SET", "w", "1"], &["WATCH", "w", "w2", "nokey"]] {
            a.same(c);
        }
        for (from_other, c) in steps.iter() {
            if *from_other {
                other.same(c);
            } else {
                a.same(c);
            }
        }
        a.same(&["MULTI"]);
        a.same(&["GET", "w"]);
        a.same(&["SET", "after", name]);
        let got = a.same(&["EXEC"]);
        assert!(
            matches!(got, Value::Array(_) | Value::NullArray),
            "{name}: EXEC answered {got:?}"
        );
    }
    // A watched key that does not exist, created (and even deleted again) by another.
    a.same(&["WATCH", "newkey"]);
    other.same(&["SET", "newkey", "1"]);
    other.same(&["DEL", "newkey"]);
    a.same(&["MULTI"]);
    a.same(&["EXEC"]);
    // A watched key expiring before EXEC, and one already expired when watched.
    a.same(&["SET", "e", "1", "PX", "100"]);
    a.same(&["WATCH", "e"]);
    std::thread::sleep(Duration::from_millis(250));
    a.same(&["MULTI"]);
    a.same(&["EXEC"]);
    a.same(&["SET", "e", "1", "PX", "10"]);
    std::thread::sleep(Duration::from_millis(60));
    a.same(&["WATCH", "e"]);
    other.same(&["GET", "e"]);
    a.same(&["MULTI"]);
    a.same(&["EXEC"]);
    // EXECABORT wins over a changed watched key; EXEC and DISCARD clear the watches.
    a.same(&["WATCH", "w"]);
    other.same(&["SET", "w", "9"]);
    a.same(&["MULTI"]);
    a.same(&["GET"]);
    a.same(&["EXEC"]);
    other.same(&["SET", "w", "10"]);
    a.same(&["MULTI"]);
    a.same(&["EXEC"]);
    a.same(&["WATCH", "w"]);
    a.same(&["MULTI"]);
    a.same(&["DISCARD"]);
    other.same(&["SET", "w", "11"]);
    a.same(&["MULTI"]);
    a.same(&["EXEC"]);
    // RESP3: the aborted EXEC is a null.
    a.both(&["HELLO", "3"]);
    a.same(&["WATCH", "w"]);
    other.same(&["SET", "w", "12"]);
    a.same(&["MULTI"]);
    a.same(&["INCR", "w"]);
    a.same(&["EXEC"]);
    a.same(&["MULTI"]);
    a.same(&["INCR", "w"]);
    a.same(&["EXEC"]);
}
