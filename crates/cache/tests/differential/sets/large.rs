//! Large sets against redis-server: 512 integers are an intset, 513 a hash table; the
//! set algebra and SDIFF's two algorithms building intsets or hash tables, SPOP keeping
//! what remains, a hash table's listings (compared as sets) and full SSCANs, then pops
//! at random.

use super::*;

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
