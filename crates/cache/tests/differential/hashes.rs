//! The hash commands against redis-server, hand-written: every command's edge cases and
//! errors, WRONGTYPE both ways, OBJECT ENCODING's listpack and hashtable, the removal of
//! an emptied hash, deadlines kept by hash writes, and WATCH on a hash.

use super::*;

#[test]
fn hashes_answer_as_redis() {
    let Some((redis, strata)) = setup("hashes_answer_as_redis") else {
        return;
    };
    let mut b = Both::connect(&redis, &strata);
    let long = "x".repeat(65);
    let edge = "y".repeat(64);
    for resp3 in [false, true] {
        if resp3 {
            b.both(&["HELLO", "3"]);
        }
        for c in [
            &["FLUSHALL"][..],
            &["HSET", "h", "a", "1", "b", "2", "c", "3"],
            &["HSET", "h", "b", "20", "d", "4"],
            &["HGETALL", "h"],
            &["HKEYS", "h"],
            &["HVALS", "h"],
            &["HLEN", "h"],
            &["TYPE", "h"],
            &["OBJECT", "ENCODING", "h"],
            &["HSET", "h"],
            &["HSET", "h", "a"],
            &["HSET", "h", "a", "1", "b"],
            &["HMSET", "h", "a", "1", "b"],
            &["HMSET", "h", "e", "5"],
            &["HSETNX", "h", "e", "6"],
            &["HSETNX", "h", "f", "6"],
            &["HSETNX", "h", "f"],
            &["HGET", "h", "e"],
            &["HGET", "h", "nofield"],
            &["HGET", "nokey", "a"],
            &["HGET", "h"],
            &["HMGET", "h", "a", "nofield", "b"],
            &["HMGET", "nokey", "a", "b"],
            &["HMGET", "h"],
            &["HEXISTS", "h", "a"],
            &["HEXISTS", "h", "nofield"],
            &["HEXISTS", "nokey", "a"],
            &["HSTRLEN", "h", "b"],
            &["HSTRLEN", "h", "nofield"],
            &["HSTRLEN", "nokey", "a"],
            &["HLEN", "nokey"],
            &["HKEYS", "nokey"],
            &["HVALS", "nokey"],
            &["HGETALL", "nokey"],
            &["HGETALL"],
            &["HDEL", "h", "b", "b", "nofield"],
            &["HGETALL", "h"],
            &["HDEL", "h"],
            &["HDEL", "nokey", "a"],
            // HINCRBY: integers, errors, overflow.
            &["HINCRBY", "h", "a", "5"],
            &["HINCRBY", "h", "new", "-7"],
            &["HINCRBY", "h", "a", "x"],
            &["HINCRBY", "h", "a", "1.5"],
            &["HINCRBY", "h", "a", ""],
            &["HINCRBY", "h", "a"],
            &["HSET", "h", "s", "abc", "z", "007", "sp", " 1"],
            &["HINCRBY", "h", "s", "1"],
            &["HINCRBY", "h", "z", "1"],
            &["HINCRBY", "h", "sp", "1"],
            &["HSET", "h", "max", "9223372036854775807", "min", "-9223372036854775808"],
            &["HINCRBY", "h", "max", "1"],
            &["HINCRBY", "h", "max", "0"],
            &["HINCRBY", "h", "min", "-1"],
            &["HINCRBY", "h", "min", "9223372036854775807"],
            &["HINCRBY", "h", "a", "9223372036854775808"],
            &["HINCRBY", "nokey2", "f", "-9223372036854775808"],
            &["HGETALL", "nokey2"],
            // HINCRBYFLOAT: floats, errors, infinities.
            &["HINCRBYFLOAT", "h", "fl", "1.5"],
            &["HINCRBYFLOAT", "h", "fl", "0.1"],
            &["HINCRBYFLOAT", "h", "a", "2.5"],
            &["HINCRBYFLOAT", "h", "fl", "abc"],
            &["HINCRBYFLOAT", "h", "fl", "inf"],
            &["HINCRBYFLOAT", "h", "fl", "-inf"],
            &["HINCRBYFLOAT", "h", "fl", "nan"],
            &["HINCRBYFLOAT", "h", "fl", ""],
            &["HINCRBYFLOAT", "h", "s", "1"],
            &["HINCRBYFLOAT", "h", "big", "1e308"],
            &["HINCRBYFLOAT", "h", "big", "1e308"],
            &["HINCRBYFLOAT", "h", "big", "1e4000"],
            &["HINCRBYFLOAT", "h", "big", "-1e308"],
            &["HINCRBYFLOAT", "h", "e3", "5.0e3"],
            &["HINCRBYFLOAT", "h", "hex", "0x10"],
            &["HINCRBYFLOAT", "nokey3", "f", "inf"],
            &["EXISTS", "nokey3"],
            &["HINCRBYFLOAT", "h", "fl"],
            &["HGETALL", "h"],
            &["OBJECT", "ENCODING", "h"],
            // WRONGTYPE, both ways.
            &["SET", "s", "str"],
            &["HSET", "s", "a", "1"],
            &["HSETNX", "s", "a", "1"],
            &["HGET", "s", "a"],
            &["HMGET", "s", "a"],
            &["HDEL", "s", "a"],
            &["HLEN", "s"],
            &["HEXISTS", "s", "a"],
            &["HSTRLEN", "s", "a"],
            &["HKEYS", "s"],
            &["HVALS", "s"],
            &["HGETALL", "s"],
            &["HINCRBY", "s", "a", "1"],
            &["HINCRBY", "s", "a", "x"],
            &["HINCRBYFLOAT", "s", "a", "1"],
            &["HRANDFIELD", "s"],
            &["HRANDFIELD", "s", "0"],
            &["HSCAN", "s", "0"],
            &["HSCAN", "s", "x"],
            &["GET", "h"],
            &["MGET", "h", "s", "nokey"],
            &["STRLEN", "h"],
            &["APPEND", "h", "x"],
            &["INCR", "h"],
            &["INCRBY", "h", "x"],
            &["DECRBY", "h", "1"],
            &["INCRBYFLOAT", "h", "1"],
            &["INCRBYFLOAT", "h", "x"],
            &["GETRANGE", "h", "0", "-1"],
            &["GETRANGE", "h", "x", "-1"],
            &["SETRANGE", "h", "0", "x"],
            &["SETRANGE", "h", "0", ""],
            &["SETRANGE", "h", "-1", "x"],
            &["SETBIT", "h", "1", "1"],
            &["SETBIT", "h", "x", "1"],
            &["GETBIT", "h", "1"],
            &["BITCOUNT", "h"],
            &["BITCOUNT", "h", "x", "y"],
            &["GETDEL", "h"],
            &["GETEX", "h"],
            &["GETEX", "h", "EX", "0"],
            &["GETEX", "h", "FOO"],
            &["GETSET", "h", "v"],
            &["SET", "h", "v", "GET"],
            &["SET", "h", "v", "NX", "GET"],
            &["SET", "h", "v", "NX"],
            &["SETNX", "h", "v"],
            &["MSETNX", "h", "v", "other", "v"],
            &["EXISTS", "other"],
            &["TYPE", "h"],
            &["TYPE", "s"],
            &["TYPE", "nokey"],
            // Copies, renames and overwrites keep or replace the whole hash.
            &["COPY", "h", "h2"],
            &["HGETALL", "h2"],
            &["OBJECT", "ENCODING", "h2"],
            &["COPY", "s", "h2"],
            &["COPY", "s", "h2", "REPLACE"],
            &["TYPE", "h2"],
            &["RENAME", "h", "h3"],
            &["HGETALL", "h3"],
            &["EXISTS", "h"],
            &["RENAMENX", "h3", "s"],
            &["RENAME", "s", "h3"],
            &["TYPE", "h3"],
            &["HSET", "h", "a", "1"],
            &["SET", "h", "now a string"],
            &["GET", "h"],
            &["HSET", "h", "a", "1"],
            &["MSET", "h", "string again"],
            &["TYPE", "h"],
            &["DEL", "h"],
            // An emptied hash is gone; its deadline is kept by writes.
            &["HSET", "e", "a", "1", "b", "2"],
            &["HDEL", "e", "a", "b"],
            &["EXISTS", "e"],
            &["TYPE", "e"],
            &["HSET", "t", "a", "1"],
            &["EXPIRE", "t", "100"],
            &["HSET", "t", "b", "2"],
            &["HINCRBY", "t", "c", "1"],
            &["HINCRBYFLOAT", "t", "c", "1.5"],
            &["HDEL", "t", "a"],
            &["HSETNX", "t", "d", "1"],
            &["TTL", "t"],
            &["PERSIST", "t"],
            &["TTL", "t"],
            &["PEXPIRE", "t", "0"],
            &["EXISTS", "t"],
            // OBJECT ENCODING: listpack up to 512 fields of up to 64 bytes.
            &["HSET", "lp", "f", &edge],
            &["OBJECT", "ENCODING", "lp"],
            &["HSET", "lp", &edge, "v"],
            &["OBJECT", "ENCODING", "lp"],
            &["HSET", "lp", "g", &long],
            &["OBJECT", "ENCODING", "lp"],
            &["HDEL", "lp", "g"],
            &["OBJECT", "ENCODING", "lp"],
            &["HSET", "lf", &long, "v"],
            &["OBJECT", "ENCODING", "lf"],
            &["HSETNX", "ln", "f", &long],
            &["OBJECT", "ENCODING", "ln"],
            &["HINCRBY", "li", &long, "1"],
            &["OBJECT", "ENCODING", "li"],
            &["HINCRBYFLOAT", "lfl", &long, "1"],
            &["OBJECT", "ENCODING", "lfl"],
            &["HSET", "lm", "a", "1", "b", &long],
            &["OBJECT", "ENCODING", "lm"],
            // HRANDFIELD: what does not depend on chance.
            &["HSET", "r", "a", "1", "b", "2", "c", "3"],
            &["HRANDFIELD", "nokey"],
            &["HRANDFIELD", "nokey", "5"],
            &["HRANDFIELD", "nokey", "5", "WITHVALUES"],
            &["HRANDFIELD", "r", "0"],
            &["HRANDFIELD", "r", "3"],
            &["HRANDFIELD", "r", "100", "WITHVALUES"],
            &["HRANDFIELD", "r", "100", "withvalues"],
            &["HRANDFIELD", "r", "x"],
            &["HRANDFIELD", "r", "1", "FOO"],
            &["HRANDFIELD", "r", "1", "WITHVALUES", "x"],
            &["HRANDFIELD", "r", "-9223372036854775808"],
            &["HRANDFIELD", "r", "9223372036854775807", "WITHVALUES"],
            &["HRANDFIELD", "r", "-4611686018427387904", "WITHVALUES"],
            &["HRANDFIELD", "r", "4611686018427387903", "WITHVALUES"],
            &["HRANDFIELD", "nokey", "x"],
            &["HRANDFIELD"],
            // HSCAN of a listpack: whole, in order, cursor 0.
            &["HSCAN", "r", "0"],
            &["HSCAN", "r", "7"],
            &["HSCAN", "r", "0", "MATCH", "[ab]"],
            &["HSCAN", "r", "0", "COUNT", "1"],
            &["HSCAN", "r", "0", "COUNT", "0"],
            &["HSCAN", "r", "0", "COUNT", "x"],
            &["HSCAN", "r", "0", "TYPE", "string"],
            &["HSCAN", "r", "0", "MATCH"],
            &["HSCAN", "r", "x"],
            &["HSCAN", "r", "-1"],
            &["HSCAN", "nokey", "0", "COUNT", "x"],
            &["HSCAN", "r"],
            &["SCAN", "0", "TYPE", "hash", "COUNT", "1000"],
            &["SCAN", "0", "TYPE", "HASH", "MATCH", "r*", "COUNT", "1000"],
            &["SCAN", "0", "TYPE", "string", "MATCH", "h*", "COUNT", "1000"],
        ] {
            b.same(c);
        }
    }
    // A hash table (513 fields): its order is Redis' hash table's; compared as sets.
    let mut c: Vec<String> = vec!["HSET".into(), "big".into()];
    for i in 0..513 {
        c.extend([format!("f{i}"), format!("v{i}")]);
    }
    let c: Vec<&str> = c.iter().map(String::as_str).collect();
    b.same(&c);
    for c in [
        &["OBJECT", "ENCODING", "big"][..],
        &["HLEN", "big"],
        &["HGETALL", "big"],
        &["HKEYS", "big"],
        &["HVALS", "big"],
        &["HDEL", "big", "f0", "f1", "f2"],
        &["HGET", "big", "f100"],
        &["HGETALL", "big"],
        &["HRANDFIELD", "big", "1000"],
        &["HRANDFIELD", "big", "-5"],
        &["HRANDFIELD", "big", "5", "WITHVALUES"],
        &["HRANDFIELD", "big"],
    ] {
        b.same(c);
    }
    for options in [&[][..], &["COUNT", "7"], &["MATCH", "f1*", "COUNT", "3"]] {
        let options: Vec<Vec<u8>> = options.iter().map(|o| o.as_bytes().to_vec()).collect();
        b.full_scan_of(&[b"HSCAN".to_vec(), b"big".to_vec()], &options);
    }
}

#[test]
fn hash_writes_touch_watched_keys_as_redis() {
    let Some((redis, strata)) = setup("hash_writes_touch_watched_keys_as_redis") else {
        return;
    };
    let mut a = Both::connect(&redis, &strata);
    let mut other = Both::connect(&redis, &strata);
    a.same(&["HSET", "h", "a", "1"]);
    // Each write from the other connection: whether EXEC then runs.
    for write in [
        &["HSET", "h", "a", "1"][..],
        &["HSET", "h", "b", "2"],
        &["HSETNX", "h", "a", "9"],
        &["HSETNX", "h", "c", "3"],
        &["HDEL", "h", "nofield"],
        &["HDEL", "h", "c"],
        &["HINCRBY", "h", "n", "1"],
        &["HINCRBY", "h", "a", "x"],
        &["HINCRBYFLOAT", "h", "n", "0.5"],
        &["HGET", "h", "a"],
        &["HGETALL", "h"],
        &["HMSET", "h", "a", "2"],
        &["HDEL", "h", "a", "b", "n"],
        &["HSET", "h", "a", "1"],
        &["SET", "h", "x"],
        &["HSET", "h", "a", "1"],
    ] {
        a.same(&["WATCH", "h"]);
        other.same(write);
        a.same(&["MULTI"]);
        a.same(&["HSET", "h", "t", "1"]);
        a.same(&["HGETALL", "h"]);
        a.same(&["HDEL", "h", "t"]);
        a.same(&["EXEC"]);
    }
    // Inside a transaction, errors are the command's own replies.
    for c in [
        &["MULTI"][..],
        &["SET", "s", "1"],
        &["HSET", "s", "a", "1"],
        &["HSET", "hh", "a", "1"],
        &["INCR", "hh"],
        &["HINCRBY", "hh", "a", "9223372036854775807"],
        &["HGETALL", "hh"],
        &["HSET", "hh"],
        &["EXEC"],
        &["MULTI"],
        &["HDEL", "hh", "a"],
        &["EXISTS", "hh"],
        &["HLEN", "hh"],
        &["EXEC"],
    ] {
        a.same(c);
    }
}
