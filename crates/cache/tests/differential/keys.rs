//! The key commands against redis-server, hand-written: the expiry commands (EXPIRE and
//! its relatives, TTL, PTTL, EXPIRETIME, PERSIST, GETEX), and DEL, UNLINK, EXISTS, TYPE,
//! RENAME, COPY, KEYS, SCAN, RANDOMKEY, DBSIZE, SELECT and the flushes.

use super::*;

#[test]
fn expiry_commands_answer_as_redis() {
    let Some((redis, strata)) = setup("expiry_commands_answer_as_redis") else {
        return;
    };
    let mut b = Both::connect(&redis, &strata);
    for c in [
        &["SET", "a", "1"][..],
        &["EXPIRE", "a", "10", "lt", "xx"],
        &["EXPIRE", "a", "10", "gt", "xx"],
        &["EXPIRE", "a", "10", "xx", "lt"],
        &["EXPIRE", "a", "10", "nx", "gt"],
        &["EXPIRE", "a", "10", "gt", "lt"],
        &["EXPIRE", "a", "10", "xx", "nx"],
        &["EXPIRE", "a", "x", "foo"],
        &["EXPIRE", "a", "x", "nx"],
        &["EXPIRE", "a", "10", "nx", "foo"],
        &["EXPIRE", "a", "9223372036854775"],
        &["EXPIRE", "a", "9223372036854774"],
        &["EXPIRE", "a", "-9223372036854776"],
        &["PEXPIRE", "a", "9223372036854775807"],
        &["EXPIREAT", "a", "9223372036854776"],
        &["EXPIREAT", "a", "9223372036854775"],
        &["PEXPIRETIME", "a"],
        &["EXPIRETIME", "a"],
        &["PEXPIREAT", "a", "9223372036854775807"],
        &["PEXPIRETIME", "a"],
        &["EXPIRETIME", "a"],
        &["EXPIREAT", "a", "4102444800", "gt"],
        &["EXPIREAT", "a", "4102444800", "lt"],
        &["EXPIREAT", "a", "4102444801", "lt", "xx"],
        &["EXPIREAT", "a", "4102444802", "gt", "xx"],
        &["EXPIRETIME", "a"],
        &["PEXPIREAT", "a", "4102444800123"],
        &["PEXPIRETIME", "a"],
        &["EXPIRETIME", "a"],
        &["PERSIST", "a"],
        &["EXPIREAT", "a", "4102444800", "gt"],
        &["EXPIREAT", "a", "4102444800", "xx"],
        &["EXPIREAT", "a", "4102444800", "lt"],
        &["EXPIRETIME", "nokey"],
        &["PEXPIRETIME", "nokey"],
        &["EXPIREAT", "nokey", "1"],
        &["SET", "b", "1"],
        &["EXPIRETIME", "b"],
        &["PEXPIREAT", "b", "1500000000000"],
        &["EXISTS", "b"],
        &["SET", "b", "1"],
        &["EXPIRE", "b", "-1", "lt"],
        &["EXISTS", "b"],
        &["SET", "b", "1"],
        &["EXPIRE", "b", "0"],
        &["EXISTS", "b"],
        &["SET", "c", "1"],
        &["GETEX", "c"],
        &["GETEX", "c", "ex", "0"],
        &["GETEX", "c", "ex", "-1"],
        &["GETEX", "c", "ex", "x"],
        &["GETEX", "c", "persist", "ex", "10"],
        &["GETEX", "c", "ex", "10", "px", "10"],
        &["GETEX", "c", "ex", "10", "ex", "20"],
        &["TTL", "c"],
        &["GETEX", "c", "persist"],
        &["TTL", "c"],
        &["GETEX", "c", "persist", "persist"],
        &["GETEX", "c", "px", "9223372036854775807"],
        &["GETEX", "c", "exat", "9223372036854776"],
        &["GETEX", "c", "exat", "4102444800"],
        &["EXPIRETIME", "c"],
        &["GETEX", "c", "pxat", "4102444800999"],
        &["PEXPIRETIME", "c"],
        &["GETEX", "c", "pxat", "0"],
        &["GETEX", "c", "exat", "1"],
        &["EXISTS", "c"],
        &["GETEX", "nokey", "ex", "10"],
        &["GETEX", "nokey", "ex", "0"],
        &["GETEX", "nokey", "ex", "abc"],
        &["GETEX", "nokey", "foo"],
        &["GETEX", "c", "ex"],
        &["GETEX", "c", "keepttl"],
        &["SET", "d", "5", "px", "9223372036854775807"],
        &["SET", "d", "5", "ex", "9223372036854775"],
        &["SET", "d", "5", "ex", "10", "ex", "20"],
        &["TTL", "d"],
        &["SET", "d", "5", "ex", "abc", "nx", "xx"],
        &["SET", "d", "5", "px", "100", "ex", "10"],
        &["SET", "d", "5", "keepttl", "ex", "10"],
        &["SET", "d", "5", "ex", "10", "keepttl"],
        &["SET", "d", "5", "nx", "nx"],
        &["SET", "d", "6", "get", "get"],
        &["SET", "d", "5", "ex", "0", "nx"],
        &["SET", "d", "5", "ex"],
        &["SET", "d", "5", "exat", "0"],
        &["SET", "d", "5", "persist"],
        &["SET", "d", "5", "exat", "9223372036854775"],
        &["PEXPIRETIME", "d"],
        &["SET", "d", "5", "exat", "9223372036854776"],
        &["SET", "d", "5", "pxat", "1"],
        &["EXISTS", "d"],
        &["SETEX", "d", "9223372036854775", "x"],
        &["SETEX", "d", "0", "x"],
        &["SETEX", "d", "x", "x"],
        &["PSETEX", "d", "9223372036854775807", "x"],
        &["PSETEX", "d", "100000", "x"],
        &["PTTL", "d"],
        &["TTL", "d"],
    ] {
        b.same(c);
    }
}

#[test]
fn key_commands_answer_as_redis() {
    let Some((redis, strata)) = setup("key_commands_answer_as_redis") else {
        return;
    };
    let mut b = Both::connect(&redis, &strata);
    for c in [
        &["RANDOMKEY"][..],
        &[
            "MSET", "a", "1", "b", "2", "", "3", "ab", "4", "a*", "5", "[x]", "6", "h]", "7",
        ],
        &["KEYS", "*"],
        &["KEYS", "**"],
        &["KEYS", "a?"],
        &["KEYS", "[a-b]"],
        &["KEYS", "[b-a]"],
        &["KEYS", "[^a]"],
        &["KEYS", "a\\*"],
        &["KEYS", "\\[x\\]"],
        &["KEYS", "[\\[]x*"],
        &["KEYS", "[a-"],
        &["KEYS", "a["],
        &["KEYS", "h[a-]"],
        &["KEYS", "?"],
        &["KEYS", ""],
        &["KEYS", "*a*"],
        &["KEYS", "*\\"],
        &["KEYS"],
        &["RANDOMKEY"],
        &["TYPE", "a"],
        &["TYPE", "nokey"],
        &["COPY", "ab", "ab"],
        &["COPY", "ab", "nab"],
        &["COPY", "ab", "nab"],
        &["COPY", "ab", "nab", "replace"],
        &["COPY", "ab", "nab", "REPLACE", "db", "0"],
        &["COPY", "ab", "nab", "db", "0"],
        &["COPY", "ab", "nab", "db", "1"],
        &["COPY", "ab", "nab", "db", "-1"],
        &["COPY", "ab", "nab", "db", "x"],
        &["COPY", "ab", "nab", "db", "4294967296"],
        &["COPY", "ab", "nab", "db"],
        &["COPY", "ab", "nab", "foo"],
        &["COPY", "nokey", "nab"],
        &["COPY", "nokey", "nokey"],
        &["EXPIREAT", "ab", "4102444800"],
        &["COPY", "ab", "ttlcopy"],
        &["EXPIRETIME", "ttlcopy"],
        &["RENAME", "nokey", "x"],
        &["RENAME", "nokey", "nokey"],
        &["RENAME", "ab", "ab"],
        &["RENAMENX", "ab", "ab"],
        &["RENAMENX", "ab", "nab"],
        &["RENAME", "ab", "moved"],
        &["EXPIRETIME", "moved"],
        &["EXISTS", "ab"],
        &["RENAMENX", "nokey", "nab"],
        &["RENAMENX", "moved", "fresh"],
        &["GET", "fresh"],
        &["RENAME", "fresh", "a"],
        &["GET", "a"],
        &["DEL", "a", "b", "nokey", "a"],
        &["UNLINK", "[x]", "h]"],
        &["EXISTS", "a", "b", "", ""],
        &["DBSIZE"],
        &["SCAN", "abc"],
        &["SCAN", " 0"],
        &["SCAN", "18446744073709551616"],
        &["SCAN", "x", "count", "0"],
        &["SCAN", "0", "count", "0"],
        &["SCAN", "0", "count", "-1"],
        &["SCAN", "0", "count", "x"],
        &["SCAN", "0", "count"],
        &["SCAN", "0", "foo", "bar"],
        &["SCAN", "0", "match"],
        &["SCAN", "0", "type"],
        &["SELECT", "1"],
        &["SELECT", "0"],
        &["FLUSHDB", "foo"],
        &["FLUSHDB", "async", "sync"],
        &["FLUSHALL", "sync"],
        &["DBSIZE"],
        &["RANDOMKEY"],
        &["KEYS", "*"],
    ] {
        b.same(c);
    }
    for i in 0..500 {
        b.same(&["SET", &format!("key:{i}"), "v"]);
    }
    for options in [
        &[][..],
        &["COUNT", "1"],
        &["COUNT", "7", "MATCH", "key:1*"],
        &["MATCH", "*"],
        &["MATCH", "key:[2-3]?", "COUNT", "1000"],
        &["TYPE", "string"],
        &["TYPE", "STRING", "COUNT", "3"],
        &["TYPE", "hash"],
        &["TYPE", "nosuchtype"],
        &["MATCH", "nothing*"],
        &["count", "2", "count", "5"],
    ] {
        let options: Vec<Vec<u8>> = options.iter().map(|o| o.as_bytes().to_vec()).collect();
        b.full_scan(&options);
    }
    // KEYS and SCAN MATCH with every byte value around.
    for c in 0u8..=255 {
        let key = vec![b'z', c];
        b.same_args(&[b"SET".to_vec(), key, b"1".to_vec()]);
    }
    for pattern in [
        &b"z[\x01-\xff]"[..],
        b"z[a-\xff]",
        b"z[\x80-\x90]",
        b"z[^\x00-\x7f]",
        b"Z?",
        b"z\\",
        b"z[",
        b"z[]",
        b"z[]]",
        b"z[\\",
        b"z[^]",
    ] {
        b.same_args(&[b"KEYS".to_vec(), pattern.to_vec()]);
        b.full_scan(&[b"MATCH".to_vec(), pattern.to_vec(), b"COUNT".to_vec(), b"50".to_vec()]);
    }
    // A pattern past Redis' limit of a thousand stars.
    b.same(&["SET", &"a".repeat(3000), "1"]);
    for n in [999, 1000, 1001, 2000] {
        b.same(&["KEYS", &"*a".repeat(n)]);
    }
}
