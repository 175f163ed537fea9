//! ZMPOP and the blocking sorted set pops (BZPOPMIN, BZPOPMAX, BZMPOP) against
//! redis-server, hand-written, in RESP2 and RESP3: malformed input (arity, timeout,
//! numkeys, MIN|MAX, COUNT), WRONGTYPE, immediate answers, timeouts, and with several
//! connections: served by ZADD, ZINCRBY, ZUNIONSTORE, RENAME and a transaction's ZADD,
//! first blocked first served, a list's waiter left waiting by a sorted set (and the
//! other way round), and the non-blocking forms inside MULTI. Their COMMAND INFO
//! entries are compared with every other command's in `command_table_matches_redis`.

use super::lists::{blocked_clients, read_same, send_both};
use super::*;

#[test]
fn sorted_set_pops_answer_as_redis() {
    let Some((redis, strata)) = setup("sorted_set_pops_answer_as_redis") else {
        return;
    };
    let mut a = Both::connect(&redis, &strata);
    let mut c = Both::connect(&redis, &strata);
    let mut writer = Both::connect(&redis, &strata);
    for resp3 in [false, true] {
        if resp3 {
            a.both(&["HELLO", "3"]);
            c.both(&["HELLO", "3"]);
        }
        writer.same(&["FLUSHALL"]);
        // Malformed input, then immediate answers.
        for cmd in [
            &["ZMPOP"][..],
            &["ZMPOP", "1", "z"],
            &["ZMPOP", "0", "z", "MIN"],
            &["ZMPOP", "-1", "z", "MIN"],
            &["ZMPOP", "x", "z", "MIN"],
            &["ZMPOP", "1", "z", "MIDDLE"],
            &["ZMPOP", "2", "z", "MIN"],
            &["ZMPOP", "1", "z", "MIN", "COUNT"],
            &["ZMPOP", "1", "z", "MIN", "COUNT", "0"],
            &["ZMPOP", "1", "z", "MIN", "COUNT", "-1"],
            &["ZMPOP", "1", "z", "MIN", "COUNT", "x"],
            &["ZMPOP", "1", "z", "MIN", "COUNT", "1", "COUNT", "2"],
            &["ZMPOP", "1", "z", "MIN", "LIMIT", "1"],
            &["ZMPOP", "1", "z", "MIN"],
            &["BZPOPMIN", "z"],
            &["BZPOPMAX"],
            &["BZPOPMIN", "z", "x"],
            &["BZPOPMIN", "z", "-1"],
            &["BZPOPMAX", "z", "inf"],
            &["BZPOPMAX", "z", "nan"],
            &["BZPOPMIN", "z", " 1"],
            &["BZMPOP", "0", "1", "z"],
            &["BZMPOP", "x", "1", "z", "MIN"],
            &["BZMPOP", "-1", "1", "z", "MIN"],
            &["BZMPOP", "0", "0", "z", "MIN"],
            &["BZMPOP", "0", "1", "z", "UP"],
            &["BZMPOP", "0", "2", "z", "MIN"],
            &["BZMPOP", "0", "1", "z", "MAX", "COUNT", "0"],
            &["BZMPOP", "0", "1", "z", "MAX", "COUNT"],
            &[
                "ZADD", "z", "1", "a", "2", "b", "3", "c", "4", "d", "-inf", "lo", "inf", "hi",
            ],
            &["ZMPOP", "2", "nokey", "z", "MIN"],
            &["ZMPOP", "1", "z", "max", "COUNT", "2"],
            &["BZPOPMIN", "nokey", "z", "0"],
            &["BZPOPMAX", "z", "0"],
            &["BZMPOP", "0", "2", "nokey", "z", "MIN", "COUNT", "10"],
            &["EXISTS", "z"],
            &["ZMPOP", "1", "z", "MIN"],
        ] {
            a.same(cmd);
        }
        // WRONGTYPE: a key of another type before the first non-empty sorted set.
        a.same(&["SET", "str", "v"]);
        a.same(&["ZADD", "y", "1.5", "m"]);
        for cmd in [
            &["ZMPOP", "2", "nokey", "str", "MIN"][..],
            &["BZPOPMIN", "str", "0"],
            &["BZPOPMAX", "nokey", "str", "y", "0"],
            &["BZMPOP", "0", "2", "str", "y", "MAX"],
            &["BZMPOP", "0", "2", "y", "str", "MAX"],
            &["RPUSH", "list", "x"],
            &["ZMPOP", "1", "list", "MIN"],
            &["BZPOPMIN", "list", "0"],
            &["BZPOPMIN", "str", "0.01"],
        ] {
            a.same(cmd);
        }
        // Timeouts: a null array.
        for cmd in [
            &["BZPOPMIN", "e", "0.05"][..],
            &["BZPOPMAX", "e", "e2", "0.05"],
            &["BZMPOP", "0.05", "1", "e", "MIN"],
        ] {
            a.same(cmd);
        }
        // Blocked, then served by a ZADD from another connection, on the second key.
        send_both(&mut a, &["BZPOPMIN", "z1", "z2", "0"]);
        blocked_clients(&mut writer, 1);
        writer.same(&["ZADD", "z2", "2", "b", "1", "a"]);
        read_same(&mut a, "BZPOPMIN served by the second key");
        writer.same(&["ZRANGE", "z2", "0", "-1", "WITHSCORES"]);
        // Two waiters on one key: the first blocked is served first.
        send_both(&mut a, &["BZPOPMAX", "f", "0"]);
        blocked_clients(&mut writer, 1);
        send_both(&mut c, &["BZPOPMIN", "f", "10"]);
        blocked_clients(&mut writer, 2);
        writer.same(&["ZADD", "f", "1", "one"]);
        read_same(&mut a, "the first waiter");
        writer.same(&["ZINCRBY", "f", "5", "two"]);
        read_same(&mut c, "the second waiter, served by ZINCRBY");
        // BZMPOP with a count, served by ZUNIONSTORE and by RENAME.
        send_both(&mut a, &["BZMPOP", "0", "2", "m1", "m2", "MAX", "COUNT", "2"]);
        blocked_clients(&mut writer, 1);
        writer.same(&["ZADD", "src", "1", "a", "2", "b", "3", "c"]);
        writer.same(&["ZUNIONSTORE", "m2", "1", "src"]);
        read_same(&mut a, "BZMPOP served by ZUNIONSTORE");
        send_both(&mut a, &["BZMPOP", "0", "1", "m3", "MIN", "COUNT", "5"]);
        blocked_clients(&mut writer, 1);
        writer.same(&["RENAME", "src", "m3"]);
        read_same(&mut a, "BZMPOP served by RENAME");
        // Served by a transaction's ZADD, after EXEC.
        send_both(&mut a, &["BZPOPMIN", "tx", "0"]);
        blocked_clients(&mut writer, 1);
        writer.same(&["MULTI"]);
        writer.same(&["ZADD", "tx", "1", "a", "2", "b"]);
        writer.same(&["ZPOPMIN", "tx"]);
        writer.same(&["EXEC"]);
        read_same(&mut a, "BZPOPMIN served after EXEC");
        // A sorted set does not serve a list's waiter, nor a list a sorted set's: each
        // times out, while a waiter of the right type on the same key is served.
        send_both(&mut a, &["BLPOP", "mixed", "0.3"]);
        blocked_clients(&mut writer, 1);
        send_both(&mut c, &["BZPOPMIN", "mixed", "0"]);
        blocked_clients(&mut writer, 2);
        writer.same(&["ZADD", "mixed", "1", "m"]);
        read_same(&mut c, "the sorted set's waiter, second in line");
        read_same(&mut a, "the list's waiter timed out");
        send_both(&mut a, &["BZPOPMAX", "other", "0.2"]);
        blocked_clients(&mut writer, 1);
        writer.same(&["RPUSH", "other", "x"]);
        read_same(&mut a, "the sorted set's waiter timed out");
        writer.same(&["LRANGE", "other", "0", "-1"]);
        // Commands pipelined behind a blocked one run after it.
        send_both(&mut a, &["BZPOPMIN", "pipe", "0"]);
        send_both(&mut a, &["ZCARD", "pipe"]);
        blocked_clients(&mut writer, 1);
        writer.same(&["ZADD", "pipe", "1", "a", "2", "b"]);
        read_same(&mut a, "BZPOPMIN before the pipelined command");
        read_same(&mut a, "the pipelined ZCARD");
        blocked_clients(&mut writer, 0);
        // Inside MULTI: the non-blocking forms (a null array when empty), errors at EXEC.
        a.same(&["MULTI"]);
        for cmd in [
            &["BZPOPMIN", "nokey", "0"][..],
            &["BZPOPMAX", "nokey", "pipe", "0"],
            &["BZMPOP", "0", "1", "nokey", "MIN"],
            &["BZMPOP", "0", "1", "pipe", "MIN", "COUNT", "3"],
            &["ZMPOP", "1", "nokey", "MAX"],
            &["BZPOPMIN", "nokey", "x"],
            &["BZMPOP", "0", "1", "nokey", "SIDEWAYS"],
        ] {
            a.same(cmd);
        }
        a.same(&["EXEC"]);
    }
}
