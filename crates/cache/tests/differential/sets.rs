//! The set commands against redis-server: hand-written sequences for every command's
//! edge cases and errors, WRONGTYPE both ways, OBJECT ENCODING's intset and hashtable
//! (Redis 7.0 has no listpack sets), the removal of an emptied set, deadlines kept by
//! set writes and dropped by the *STORE commands, WATCH on sets; and what the random
//! walk (in `random_walk.rs`) generates and how it compares set replies.
//!
//! Where Redis' answer is random, and only there, the comparison is looser (each a
//! documented difference, see docs/state.md):
//! - members listed in a hash table's order: SMEMBERS, SINTER (walking a set strata
//!   reports as `hashtable`), SUNION and SDIFF (a result that is no intset: a member that
//!   is no integer, or more than 512; for SDIFF also when the first set is a hash table,
//!   which one of Redis' algorithms copies whole), SPOP or SRANDMEMBER answering the whole set: the
//!   same members in any order, also inside EXEC's array; an intset's order (sorted) is
//!   compared exactly;
//! - SRANDMEMBER drawing at random (no count, a negative count, or one below the set's
//!   size): members that exist, as many as Redis answered, distinct for a positive
//!   count;
//! - SPOP drawing at random: as many members as Redis popped; then strata's copy of the
//!   set is brought back to Redis' (strata's draws added back, Redis' removed, which
//!   checks that they were members), so the walk goes on from equal states. The walk pops
//!   at random only 1 or 2 members (never Redis' "keep what remains" case, whose encoding
//!   depends on the draw); the hand-written cases check that case's encoding where it
//!   does not depend on the draw;
//! - SSCAN of a `hashtable` set: cursors differ; a full scan's set of members is compared
//!   instead.

use super::*;

#[test]
fn sets_answer_as_redis() {
    let Some((redis, strata)) = setup("sets_answer_as_redis") else {
        return;
    };
    let mut b = Both::connect(&redis, &strata);
    let long = "x".repeat(65);
    for resp3 in [false, true] {
        if resp3 {
            b.both(&["HELLO", "3"]);
        }
        for c in [
            &["FLUSHALL"][..],
            // SADD, SREM, SCARD, SISMEMBER, SMISMEMBER; an intset sorted by value.
            &["SADD", "s", "3", "1", "2", "1", "-7", "10"],
            &["SMEMBERS", "s"],
            &["OBJECT", "ENCODING", "s"],
            &["TYPE", "s"],
            &["SCARD", "s"],
            &["SADD", "s", "9223372036854775807", "-9223372036854775808"],
            &["SMEMBERS", "s"],
            &["SADD", "s"],
            &["SADD", "s", "2"],
            &["SISMEMBER", "s", "2"],
            &["SISMEMBER", "s", "02"],
            &["SISMEMBER", "s", "x"],
            &["SISMEMBER", "nokey", "x"],
            &["SISMEMBER", "s"],
            &["SMISMEMBER", "s", "1", "x", "-7", "1"],
            &["SMISMEMBER", "nokey", "1", "2"],
            &["SMISMEMBER", "s"],
            &["SCARD", "nokey"],
            &["SCARD"],
            &["SREM", "s", "1", "1", "x", "01"],
            &["SREM", "s"],
            &["SREM", "nokey", "a"],
            &["SMEMBERS", "s"],
            &["SMEMBERS", "nokey"],
            &["SMEMBERS"],
            &["SMEMBERS", "s", "x"],
            // Members that are no canonical integer make a hash table, for good.
            &["SADD", "i", "1", "2"],
            &["SADD", "i", "01"],
            &["OBJECT", "ENCODING", "i"],
            &["SREM", "i", "01"],
            &["OBJECT", "ENCODING", "i"],
            &["SADD", "i2", "-0"],
            &["OBJECT", "ENCODING", "i2"],
            &["SADD", "i3", "9223372036854775808"],
            &["OBJECT", "ENCODING", "i3"],
            &["SADD", "i4", "+1"],
            &["OBJECT", "ENCODING", "i4"],
            &["SADD", "i5", " 1"],
            &["OBJECT", "ENCODING", "i5"],
            &["SADD", "i6", "a", "1"],
            &["OBJECT", "ENCODING", "i6"],
            &["SADD", "i7", ""],
            &["SMEMBERS", "i7"],
            &["OBJECT", "ENCODING", "i7"],
            &["SADD", "i8", &long],
            &["OBJECT", "ENCODING", "i8"],
            // An emptied set is gone; its deadline is kept by writes.
            &["SADD", "e", "a", "b"],
            &["SREM", "e", "a", "b", "c"],
            &["EXISTS", "e"],
            &["SADD", "t", "1", "2", "3", "4", "5", "6", "7"],
            &["EXPIRE", "t", "100"],
            &["SADD", "t", "8"],
            &["SREM", "t", "8"],
            &["SPOP", "t", "0"],
            &["SPOP", "t", "100"],
            &["EXISTS", "t"],
            &["TTL", "t"],
            // SPOP: errors, counts, the whole set.
            &["SADD", "p", "5", "3", "1"],
            &["SPOP", "p", "-1"],
            &["SPOP", "p", "x"],
            &["SPOP", "p", "1", "2"],
            &["SPOP", "p", "0"],
            &["SPOP", "nokey"],
            &["SPOP", "nokey", "3"],
            &["SPOP", "nokey", "0"],
            &["SPOP", "nokey", "-1"],
            &["SPOP", "p", "3"],
            &["EXISTS", "p"],
            &["SADD", "p", "a"],
            &["SPOP", "p"],
            &["SPOP", "p"],
            &["SPOP"],
            // SRANDMEMBER: what does not depend on chance.
            &["SADD", "r", "30", "10", "20"],
            &["SRANDMEMBER", "nokey"],
            &["SRANDMEMBER", "nokey", "5"],
            &["SRANDMEMBER", "nokey", "-5"],
            &["SRANDMEMBER", "nokey", "0"],
            &["SRANDMEMBER", "r", "0"],
            &["SRANDMEMBER", "r", "3"],
            &["SRANDMEMBER", "r", "100"],
            &["SRANDMEMBER", "r", "x"],
            &["SRANDMEMBER", "r", "1", "2"],
            &["SRANDMEMBER", "r", "-9223372036854775808"],
            &["SRANDMEMBER", "r", "9223372036854775807"],
            &["SRANDMEMBER", "nokey", "x"],
            &["SRANDMEMBER"],
            // SINTER, SUNION, SDIFF and their stores; SINTERCARD.
            &["SADD", "a", "1", "2", "3", "4"],
            &["SADD", "b", "3", "4", "5"],
            &["SADD", "c", "4", "5", "6", "x"],
            &["SINTER", "a", "b"],
            &["SINTER", "b", "a"],
            &["SINTER", "a", "b", "c"],
            &["SINTER", "a", "nokey"],
            &["SINTER", "nokey", "a"],
            &["SINTER", "a"],
            &["SINTER", "a", "a"],
            &["SINTER"],
            &["SUNION", "a", "b"],
            &["SUNION", "a", "nokey", "b"],
            &["SUNION", "nokey"],
            &["SUNION", "b", "a", "b"],
            &["SDIFF", "a", "b"],
            &["SDIFF", "b", "a"],
            &["SDIFF", "a", "b", "c"],
            &["SDIFF", "a", "nokey"],
            &["SDIFF", "nokey", "a"],
            &["SDIFF", "a", "a"],
            &["SDIFF", "a", "nokey", "a"],
            &["SDIFF", "c", "a", "b"],
            &["SINTERSTORE", "d", "a", "b"],
            &["SMEMBERS", "d"],
            &["OBJECT", "ENCODING", "d"],
            &["SINTERSTORE", "d", "a", "nokey"],
            &["EXISTS", "d"],
            &["SINTERSTORE", "d", "nokey"],
            &["SUNIONSTORE", "d", "a", "b"],
            &["SMEMBERS", "d"],
            &["EXPIRE", "d", "100"],
            &["SUNIONSTORE", "d", "d", "a"],
            &["TTL", "d"],
            &["SUNIONSTORE", "d", "nokey"],
            &["EXISTS", "d"],
            &["SDIFFSTORE", "d", "a", "b"],
            &["SMEMBERS", "d"],
            &["SDIFFSTORE", "d", "a", "a"],
            &["EXISTS", "d"],
            &["SET", "str", "v"],
            &["SUNIONSTORE", "str", "a"],
            &["TYPE", "str"],
            &["SINTERSTORE", "d"],
            &["SINTERCARD", "2", "a", "b"],
            &["SINTERCARD", "3", "a", "b", "c"],
            &["SINTERCARD", "1", "a"],
            &["SINTERCARD", "2", "a", "nokey"],
            &["SINTERCARD", "2", "a", "b", "LIMIT", "1"],
            &["SINTERCARD", "2", "a", "b", "limit", "0"],
            &["SINTERCARD", "2", "a", "b", "LIMIT", "100"],
            &["SINTERCARD", "1", "a", "LIMIT", "3"],
            &["SINTERCARD", "2", "a", "b", "LIMIT", "-1"],
            &["SINTERCARD", "2", "a", "b", "LIMIT", "x"],
            &["SINTERCARD", "2", "a", "b", "LIMIT"],
            &["SINTERCARD", "2", "a", "b", "FOO", "1"],
            &["SINTERCARD", "0", "a"],
            &["SINTERCARD", "-1", "a"],
            &["SINTERCARD", "x", "a"],
            &["SINTERCARD", "3", "a", "b"],
            &["SINTERCARD", "1"],
            &["SINTERCARD", "1", "LIMIT", "5"],
            // SMOVE.
            &["SMOVE", "a", "m", "1"],
            &["SMEMBERS", "m"],
            &["OBJECT", "ENCODING", "m"],
            &["SMOVE", "a", "m", "1"],
            &["SMOVE", "a", "m", "2"],
            &["SMOVE", "c", "m", "x"],
            &["OBJECT", "ENCODING", "m"],
            &["SMOVE", "a", "a", "3"],
            &["SMOVE", "a", "a", "nomember"],
            &["SMOVE", "nokey", "m", "1"],
            &["SMOVE", "nokey", "str", "1"],
            &["SMOVE", "a", "str", "3"],
            &["SMOVE", "str", "m", "3"],
            &["SMOVE", "a", "m", "4"],
            &["SMOVE", "a", "m", "3"],
            &["EXISTS", "a"],
            &["SMOVE", "m", "a", "x"],
            &["OBJECT", "ENCODING", "a"],
            &["SMOVE", "a", "m"],
            // WRONGTYPE, both ways.
            &["HSET", "h", "f", "v"],
            &["SADD", "str", "a"],
            &["SADD", "h", "a"],
            &["SREM", "str", "a"],
            &["SMEMBERS", "str"],
            &["SISMEMBER", "h", "a"],
            &["SMISMEMBER", "str", "a"],
            &["SCARD", "h"],
            &["SPOP", "str"],
            &["SPOP", "str", "1"],
            &["SPOP", "str", "0"],
            &["SPOP", "str", "-1"],
            &["SRANDMEMBER", "str"],
            &["SRANDMEMBER", "str", "1"],
            &["SRANDMEMBER", "str", "x"],
            &["SINTER", "b", "str"],
            &["SINTER", "nokey", "str"],
            &["SUNION", "b", "h"],
            &["SDIFF", "nokey", "str"],
            &["SDIFF", "str", "nokey"],
            &["SINTERSTORE", "b2", "b", "str"],
            &["SUNIONSTORE", "b2", "h"],
            &["SDIFFSTORE", "b2", "b", "h"],
            &["EXISTS", "b2"],
            &["SINTERCARD", "2", "b", "str"],
            &["SSCAN", "str", "0"],
            &["SSCAN", "h", "x"],
            &["GET", "b"],
            &["STRLEN", "b"],
            &["APPEND", "b", "x"],
            &["INCR", "b"],
            &["INCRBYFLOAT", "b", "x"],
            &["SETRANGE", "b", "0", "x"],
            &["GETRANGE", "b", "0", "-1"],
            &["GETDEL", "b"],
            &["GETSET", "b", "x"],
            &["SET", "b", "v", "GET"],
            &["MGET", "b", "str"],
            &["HSET", "b", "f", "v"],
            &["HGET", "b", "f"],
            &["HGETALL", "b"],
            &["HSCAN", "b", "0"],
            &["TYPE", "b"],
            // Copies, renames and overwrites keep or replace the whole set.
            &["COPY", "b", "b3"],
            &["SMEMBERS", "b3"],
            &["OBJECT", "ENCODING", "b3"],
            &["COPY", "c", "c3"],
            &["OBJECT", "ENCODING", "c3"],
            &["SCARD", "c3"],
            &["COPY", "str", "b3"],
            &["COPY", "str", "b3", "REPLACE"],
            &["TYPE", "b3"],
            &["RENAME", "b", "b4"],
            &["SMEMBERS", "b4"],
            &["EXISTS", "b"],
            &["SET", "b4", "now a string"],
            &["TYPE", "b4"],
            &["DEL", "c", "b3", "c3"],
            // SSCAN of an intset: whole, sorted, cursor 0.
            &["SADD", "sc", "5", "1", "3", "11"],
            &["SSCAN", "sc", "0"],
            &["SSCAN", "sc", "7"],
            &["SSCAN", "sc", "0", "MATCH", "1*"],
            &["SSCAN", "sc", "0", "COUNT", "1"],
            &["SSCAN", "sc", "0", "COUNT", "0"],
            &["SSCAN", "sc", "0", "COUNT", "x"],
            &["SSCAN", "sc", "0", "TYPE", "set"],
            &["SSCAN", "sc", "0", "MATCH"],
            &["SSCAN", "sc", "x"],
            &["SSCAN", "sc", "-1"],
            &["SSCAN", "nokey", "0", "COUNT", "x"],
            &["SSCAN", "sc"],
            &["SCAN", "0", "TYPE", "set", "COUNT", "1000"],
            &["SCAN", "0", "TYPE", "SET", "MATCH", "s*", "COUNT", "1000"],
        ] {
            b.same(c);
        }
    }
}

#[test]
fn large_and_random_sets_answer_as_redis() {
    let Some((redis, strata)) = setup("large_and_random_sets_answer_as_redis") else {
        return;
    };
    let mut b = Both::connect(&redis, &strata);
    // 512 integers are an intset, 513 a hash table.
    let mut c: Vec<String> = vec!["SADD".into(), "big".into()];
    c.extend((0..512).rev().map(|i| (i * 3).to_string()));
    b.same(&c.iter().map(String::as_str).collect::<Vec<_>>());
    for c in [
        &["OBJECT", "ENCODING", "big"][..],
        &["SMEMBERS", "big"],
        &["SRANDMEMBER", "big", "600"],
        &["SSCAN", "big", "0", "MATCH", "*5"],
        &["SUNIONSTORE", "u", "big", "big"],
        &["OBJECT", "ENCODING", "u"],
        &["SADD", "u", "-1"],
        &["OBJECT", "ENCODING", "u"],
        &["SADD", "big", "1536"],
        &["OBJECT", "ENCODING", "big"],
        &["SCARD", "big"],
        &["SMEMBERS", "big"],
        &["SISMEMBER", "big", "1536"],
        &["SREM", "big", "1536", "0"],
        &["OBJECT", "ENCODING", "big"],
        &["SRANDMEMBER", "big", "1000"],
        &["SRANDMEMBER", "big", "-5"],
        &["SRANDMEMBER", "big", "5"],
        &["SRANDMEMBER", "big"],
        // A hash table of integers: SUNION, SDIFF, SINTERSTORE build intsets again
        // where they hold at most 512.
        &["SADD", "few", "3", "6", "x"],
        &["SINTER", "few", "big"],
        &["SINTERSTORE", "fewi", "big", "few"],
        &["OBJECT", "ENCODING", "fewi"],
        &["SMEMBERS", "fewi"],
        &["SREM", "few", "x"],
        &["OBJECT", "ENCODING", "few"],
        &["SMEMBERS", "few"],
        &["SUNION", "few"],
        &["SDIFF", "few", "nokey"],
        &["SDIFF", "big", "few"],
        &["SDIFFSTORE", "dd", "big", "u"],
        &["OBJECT", "ENCODING", "dd"],
        &["SMEMBERS", "dd"],
        // SDIFF's two algorithms: the first set small against a large one walks the
        // first set (an intset results); a large first set against small ones adds it
        // whole (a hash table results, even when what is left are few integers).
        &["SADD", "words", "a", "1", "2"],
        &["SDIFFSTORE", "d1", "words", "big"],
        &["OBJECT", "ENCODING", "d1"],
        &["SDIFFSTORE", "d2", "words", "few"],
        &["OBJECT", "ENCODING", "d2"],
        &["SDIFFSTORE", "d3", "words", "words2", "words3"],
        &["OBJECT", "ENCODING", "d3"],
        &["SADD", "wa", "a"],
        &["SDIFFSTORE", "d4", "words", "wa"],
        &["OBJECT", "ENCODING", "d4"],
        &["SMEMBERS", "d4"],
        &["SDIFFSTORE", "d5", "words", "wa", "nokey", "nokey2"],
        &["OBJECT", "ENCODING", "d5"],
        &["SMEMBERS", "d5"],
        &["SADD", "w2", "a", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
        &["SADD", "wb", "5"],
        &["SDIFFSTORE", "d6", "w2", "wa", "wb"],
        &["OBJECT", "ENCODING", "d6"],
        &["SCARD", "d6"],
        &["SDIFF", "w2", "wa", "wb"],
        &["SDIFFSTORE", "d7", "w2", "wa"],
        &["OBJECT", "ENCODING", "d7"],
        // SPOP keeping what remains as a new set: a hash table of integers becomes an
        // intset; a smaller count keeps the hash table.
        &["SADD", "pp", "x", "1", "2", "3", "4", "5", "6"],
        &["SREM", "pp", "x"],
        &["COPY", "pp", "pq"],
        &["EXPIRE", "pp", "100"],
        &["SPOP", "pp", "1"],
        &["OBJECT", "ENCODING", "pp"],
        &["SCARD", "pp"],
        &["SPOP", "pp", "4"],
        &["OBJECT", "ENCODING", "pp"],
        &["SCARD", "pp"],
        &["TTL", "pp"],
        &["SPOP", "pq", "5"],
        &["OBJECT", "ENCODING", "pq"],
        &["SCARD", "pq"],
        &["SPOP", "big", "2000"],
        &["EXISTS", "big"],
    ] {
        b.same(c);
    }
    let mut c: Vec<String> = vec!["SADD".into(), "tb".into()];
    c.extend((0..300).map(|i| format!("m{i}")));
    b.same(&c.iter().map(String::as_str).collect::<Vec<_>>());
    for c in [
        &["SMEMBERS", "tb"][..],
        &["SRANDMEMBER", "tb", "300"],
        &["SUNION", "tb", "few"],
        &["SINTER", "tb", "tb"],
        &["SSCAN", "tb", "0"],
    ] {
        b.same(c);
    }
    for options in [&[][..], &["COUNT", "7"], &["MATCH", "m1*", "COUNT", "3"]] {
        let options: Vec<Vec<u8>> = options.iter().map(|o| o.as_bytes().to_vec()).collect();
        b.full_scan_of(&[b"SSCAN".to_vec(), b"tb".to_vec()], &options);
    }
    // Random pops, each followed by strata's copy brought back to Redis'.
    for c in [
        &["SPOP", "tb"][..],
        &["SPOP", "tb", "2"],
        &["SPOP", "tb", "1"],
        &["SPOP", "tb", "250"],
        &["SCARD", "tb"],
        &["SPOP", "tb", "10"],
        &["SCARD", "tb"],
    ] {
        b.same(c);
    }
}

#[test]
fn set_writes_touch_watched_keys_as_redis() {
    let Some((redis, strata)) = setup("set_writes_touch_watched_keys_as_redis") else {
        return;
    };
    let mut a = Both::connect(&redis, &strata);
    let mut other = Both::connect(&redis, &strata);
    a.same(&["SADD", "s", "1", "2"]);
    // Each write from the other connection: whether EXEC then runs.
    for write in [
        &["SADD", "s", "1"][..],
        &["SADD", "s", "3"],
        &["SREM", "s", "nomember"],
        &["SREM", "s", "3"],
        &["SPOP", "s", "0"],
        &["SMOVE", "s", "t", "nomember"],
        &["SMOVE", "t", "s", "1"],
        &["SMOVE", "s", "t", "1"],
        &["SMOVE", "t", "s", "1"],
        &["SADD", "t", "1"],
        &["SMOVE", "t", "s", "1"],
        &["SISMEMBER", "s", "1"],
        &["SMEMBERS", "s"],
        &["SINTERSTORE", "s", "s", "s"],
        &["SUNIONSTORE", "s", "s"],
        &["SDIFFSTORE", "nokey", "nokey2"],
        &["SDIFFSTORE", "s", "nokey"],
        &["SADD", "s", "1", "2"],
        &["SPOP", "s", "5"],
        &["SADD", "s", "1", "2"],
        &["SET", "s", "x"],
        &["DEL", "s"],
        &["SADD", "s", "1", "2"],
    ] {
        a.same(&["WATCH", "s"]);
        other.same(write);
        a.same(&["MULTI"]);
        a.same(&["SADD", "s", "9"]);
        a.same(&["SMEMBERS", "s"]);
        a.same(&["SREM", "s", "9"]);
        a.same(&["EXEC"]);
    }
    // Inside a transaction, errors are the command's own replies; multi-key commands
    // across shards.
    for c in [
        &["MULTI"][..],
        &["SET", "str", "1"],
        &["SADD", "str", "a"],
        &["SADD", "x1", "1", "2", "3"],
        &["SADD", "x2", "2", "3", "4"],
        &["SINTERSTORE", "x3", "x1", "x2"],
        &["SUNION", "x1", "x2", "x3"],
        &["SDIFF", "x1", "x2"],
        &["SINTERCARD", "3", "x1", "x2", "x3"],
        &["SMOVE", "x1", "x4", "1"],
        &["SMEMBERS", "x4"],
        &["SINTER", "x1", "str"],
        &["SPOP", "x3", "10"],
        &["SADD", "x1"],
        &["EXEC"],
        &["MULTI"],
        &["SREM", "x1", "2", "3"],
        &["EXISTS", "x1"],
        &["SCARD", "x2"],
        &["EXEC"],
    ] {
        a.same(c);
    }
}

// ---------------------------------------------------------------------- comparisons

const SET_COMMANDS: &[&str] = &["smembers", "sinter", "sunion", "sdiff", "spop", "srandmember", "sscan"];

/// Whether `name` (lowercase) is a set command whose replies [`loosely_same`] compares.
pub(super) fn is_loose(name: &str) -> bool {
    SET_COMMANDS.contains(&name)
}

/// Every member a canonical integer, and at most 512: a set built from them is an
/// intset, whose order is Redis' (sorted).
fn intset_of(members: &[Value]) -> bool {
    members.len() <= 512
        && members.iter().all(|m| match m {
            Value::Bulk(b) => {
                let t = String::from_utf8_lossy(b);
                t.parse::<i64>().is_ok_and(|n| n.to_string() == t)
            }
            _ => false,
        })
}

fn distinct(v: &[Value]) -> bool {
    sorted(v).windows(2).all(|w| w[0] != w[1])
}

fn args_of(parts: &[&[u8]], rest: &[Value]) -> Vec<Vec<u8>> {
    let mut c: Vec<Vec<u8>> = parts.iter().map(|p| p.to_vec()).collect();
    for v in rest {
        if let Value::Bulk(b) = v {
            c.push(b.clone());
        }
    }
    c
}

/// Whether differing replies to a set command are one of the documented differences.
/// For a random SPOP, brings strata's copy of the set back to Redis'.
pub(super) fn loosely_same(b: &mut Both, args: &[Vec<u8>], rv: &Value, sv: &Value) -> bool {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    let key = args.get(1).cloned().unwrap_or_default();
    let encoding = |b: &mut Both, k: &[u8]| b.strata_only(&[b"OBJECT".to_vec(), b"ENCODING".to_vec(), k.to_vec()]);
    let table = Value::Bulk(b"hashtable".to_vec());
    match (name.as_str(), rv, sv) {
        ("smembers", Value::Array(x), Value::Array(y)) => encoding(b, &key) == table && sorted(x) == sorted(y),
        ("sinter", Value::Array(x), Value::Array(y)) => {
            sorted(x) == sorted(y) && args[1..].iter().any(|k| encoding(b, k) == table)
        }
        ("sunion", Value::Array(x), Value::Array(y)) => !intset_of(x) && sorted(x) == sorted(y),
        // Redis' second algorithm adds the first set whole: a hash table if it is one.
        ("sdiff", Value::Array(x), Value::Array(y)) => {
            sorted(x) == sorted(y) && (!intset_of(x) || encoding(b, &key) == table)
        }
        ("sscan", Value::Array(x), Value::Array(y)) => encoding(b, &key) == table && x.len() == 2 && y.len() == 2,
        ("srandmember", Value::Bulk(_), Value::Bulk(m)) => {
            b.strata_only(&[b"SISMEMBER".to_vec(), key, m.clone()]) == Value::Int(1)
        }
        ("srandmember", Value::Array(x), Value::Array(y)) => {
            let count: i64 = String::from_utf8_lossy(&args[2]).parse().unwrap_or(0);
            let size = int_or_zero(&b.strata_only(&[b"SCARD".to_vec(), key.clone()]));
            let members = b.strata_only(&args_of(&[b"SMISMEMBER", &key], y));
            let all_members = matches!(&members, Value::Array(m) if m.iter().all(|v| *v == Value::Int(1)));
            x.len() == y.len()
                && all_members
                && (count < 0 || distinct(y) && (count < size || encoding(b, &key) == table && sorted(x) == sorted(y)))
        }
        ("spop", Value::Array(x), Value::Array(y)) if x.len() == y.len() && distinct(y) => {
            let count: i64 = String::from_utf8_lossy(&args[2]).parse().unwrap_or(0);
            let exists = b.strata_only(&[b"EXISTS".to_vec(), key.clone()]) == Value::Int(1);
            if !exists {
                // The whole set: in the order of a new set, Redis' own unless an intset.
                return (count as usize) >= y.len() && !intset_of(x) && sorted(x) == sorted(y);
            }
            b.strata_only(&args_of(&[b"SADD", &key], y));
            b.strata_only(&args_of(&[b"SREM", &key], x)) == Value::Int(x.len() as i64)
        }
        ("spop", Value::Bulk(x), Value::Bulk(y)) => {
            b.strata_only(&[b"SADD".to_vec(), key.clone(), y.clone()]);
            b.strata_only(&[b"SREM".to_vec(), key, x.clone()]) == Value::Int(1)
        }
        _ => false,
    }
}

/// Whether replies inside EXEC's array differ only by a hash table's order (the walk
/// queues only what does not depend on chance).
pub(super) fn same_in_exec(name: Option<&str>, x: &Value, y: &Value) -> bool {
    let (Value::Array(x), Value::Array(y)) = (x, y) else {
        return false;
    };
    match name {
        Some("smembers" | "sinter" | "srandmember" | "sdiff") => sorted(x) == sorted(y),
        Some("sunion" | "spop") => !intset_of(x) && sorted(x) == sorted(y),
        _ => false,
    }
}

// ---------------------------------------------------------------------- random walk

/// How many kinds of set command [`command`] makes.
pub(super) const WALK_KINDS: usize = 16;

/// A set member: mostly small integers (an intset, sorted), sometimes text (a hash
/// table).
fn member(g: &mut Gen) -> Vec<u8> {
    let m = g.pick(&[
        "1",
        "2",
        "3",
        "10",
        "-5",
        "0",
        "1",
        "2",
        "7",
        "a",
        "b",
        "f0",
        "07",
        "",
        "m\u{0}",
        "9223372036854775807",
    ]);
    m.as_bytes().to_vec()
}

/// The `kind`-th set command on `k` (and other keys), or None to draw again. Inside a
/// transaction only what does not depend on chance.
pub(super) fn command(g: &mut Gen, in_tx: bool, k: &[u8], kind: usize) -> Option<Vec<Vec<u8>>> {
    let s = |x: &str| x.as_bytes().to_vec();
    let k = k.to_vec();
    let c = match kind {
        0..=2 => {
            let mut c = vec![s("SADD"), k];
            for _ in 0..1 + g.below(4) {
                c.push(member(g));
            }
            c
        }
        3 => {
            let mut c = vec![s("SREM"), k];
            for _ in 0..g.below(3) {
                c.push(member(g));
            }
            c
        }
        4 => vec![s(g.pick(&["SMEMBERS", "SCARD"])), k],
        5 => vec![s("SISMEMBER"), k, member(g)],
        6 => {
            let mut c = vec![s("SMISMEMBER"), k];
            for _ in 0..1 + g.below(3) {
                c.push(member(g));
            }
            c
        }
        7 => {
            let mut c = vec![s("SPOP"), k];
            match g.below(6) {
                _ if in_tx => c.push(s(g.pick(&["0", "x", "-1", "1000"]))),
                0 => {}
                1 => c.push(s(g.pick(&["1", "2"]))),
                2 => c.push(s(g.pick(&["0", "x", "-1"]))),
                3 => c.extend([s("1"), s("2")]),
                _ => c.push(s("1000")),
            }
            c
        }
        8 => {
            let mut c = vec![s("SRANDMEMBER"), k];
            match g.below(5) {
                _ if in_tx => c.push(s(g.pick(&["0", "x", "1000"]))),
                0 => {}
                1 => c.push(s(g.pick(&["1", "2", "-3", "-1"]))),
                2 => c.push(s(g.pick(&["0", "x", "-9223372036854775808"]))),
                _ => c.push(s("1000")),
            }
            c
        }
        9..=11 => {
            let name = g.pick(&["SINTER", "SUNION", "SDIFF", "SINTERSTORE", "SUNIONSTORE", "SDIFFSTORE"]);
            let mut c = vec![s(name), k];
            for _ in 0..g.below(3) + name.ends_with("STORE") as usize {
                c.push(g.key());
            }
            c
        }
        12 => {
            let n = 1 + g.below(3);
            let mut c = vec![s("SINTERCARD"), s(&n.to_string()), k];
            for _ in 1..n {
                c.push(g.key());
            }
            if g.chance(30) {
                c.extend([s("LIMIT"), s(g.pick(&["0", "1", "2", "-1"]))]);
            }
            c
        }
        13 => vec![s("SMOVE"), k, g.key(), member(g)],
        14 if !in_tx => {
            if g.chance(30) {
                vec![s("SSCAN(full)"), k]
            } else {
                let mut c = vec![s("SSCAN"), k, s(g.pick(&["0", "0", "1", "x"]))];
                if g.chance(40) {
                    c.extend([s("MATCH"), s(g.pick(&["*", "1*", "[a-f]*", "?"]))]);
                }
                if g.chance(30) {
                    c.extend([s("COUNT"), s(g.pick(&["1", "100", "0", "x"]))]);
                }
                c
            }
        }
        15 => vec![s("OBJECT"), s("ENCODING"), k],
        _ => return None,
    };
    Some(c)
}
