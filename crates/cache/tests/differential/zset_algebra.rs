//! The sorted set commands on several keys against redis-server: ZUNION, ZINTER, ZDIFF
//! (sorted sets and sets as sources, WEIGHTS, AGGREGATE, infinities and their NaN), their
//! *STORE forms (the result's encoding, the destination's deadline dropped, an empty
//! result deleting it) and ZINTERCARD, with every error in Redis' order. All of it is
//! deterministic: compared byte for byte. The random walk's cases are in `zsets/walk.rs`.

use super::*;

#[test]
fn zset_algebra_answers_as_redis() {
    let Some((redis, strata)) = setup("zset_algebra_answers_as_redis") else {
        return;
    };
    let mut b = Both::connect(&redis, &strata);
    for resp3 in [false, true] {
        if resp3 {
            b.both(&["HELLO", "3"]);
        }
        for c in [
            &["FLUSHALL"][..],
            &["ZADD", "a", "1", "x", "2", "y", "3", "z", "inf", "i"],
            &["ZADD", "b", "10", "y", "20", "z", "30", "w", "-inf", "i"],
            &["SADD", "s", "x", "w", "v"],
            &["SET", "str", "v"],
            &["ZUNION", "2", "a", "b", "WITHSCORES"],
            &["ZUNION", "3", "a", "b", "s", "WITHSCORES"],
            &["ZUNION", "2", "a", "b", "WEIGHTS", "2", "0.5", "WITHSCORES"],
            &["ZUNION", "2", "a", "b", "WEIGHTS", "0", "1", "WITHSCORES"],
            &["ZUNION", "2", "a", "b", "AGGREGATE", "MIN", "WITHSCORES"],
            &[
                "ZUNION",
                "2",
                "a",
                "b",
                "AGGREGATE",
                "max",
                "WEIGHTS",
                "1",
                "-1",
                "WITHSCORES",
            ],
            &["ZUNION", "2", "a", "nokey"],
            &["ZUNION", "1", "nokey"],
            &["ZINTER", "2", "a", "b", "WITHSCORES"],
            &["ZINTER", "2", "a", "b"],
            &["ZINTER", "3", "a", "b", "s"],
            &["ZINTER", "2", "a", "a", "WEIGHTS", "1", "2", "WITHSCORES"],
            &["ZINTER", "2", "a", "nokey"],
            &["ZINTER", "2", "s", "b", "AGGREGATE", "MAX", "WITHSCORES"],
            &["ZDIFF", "2", "a", "b", "WITHSCORES"],
            &["ZDIFF", "3", "a", "s", "nokey"],
            &["ZDIFF", "1", "nokey"],
            &["ZDIFF", "2", "a", "b", "WEIGHTS", "1", "1"],
            &["ZDIFF", "2", "a", "b", "AGGREGATE", "SUM"],
            &["ZINTERCARD", "2", "a", "b"],
            &["ZINTERCARD", "2", "a", "b", "LIMIT", "1"],
            &["ZINTERCARD", "2", "a", "b", "LIMIT", "0"],
            &["ZINTERCARD", "2", "a", "b", "LIMIT", "-1"],
            &["ZINTERCARD", "2", "a", "b", "WITHSCORES"],
            &["ZINTERCARD", "0", "a"],
            &["ZINTERCARD", "3", "a", "b"],
            &["ZINTERCARD", "x", "a"],
            // Errors, in Redis' order.
            &["ZUNION", "0", "a"],
            &["ZUNION", "-1", "a"],
            &["ZUNION", "x", "a"],
            &["ZUNION", "3", "a", "b"],
            &["ZUNION", "2", "a", "str"],
            &["ZUNION", "2", "a", "str", "BOGUS"],
            &["ZUNION", "2", "a", "b", "BOGUS"],
            &["ZUNION", "2", "a", "b", "WEIGHTS", "1"],
            &["ZUNION", "2", "a", "b", "WEIGHTS", "1", "x"],
            &["ZUNION", "2", "a", "b", "WEIGHTS", "1", "nan"],
            &["ZUNION", "2", "a", "b", "AGGREGATE", "AVG"],
            &["ZUNION", "2", "a", "b", "AGGREGATE"],
            &["ZUNIONSTORE", "d", "2", "a", "b", "WITHSCORES"],
            // The *STORE forms: the result's encoding, the destination's deadline.
            &["ZUNIONSTORE", "d", "2", "a", "b", "WEIGHTS", "1", "2"],
            &["ZRANGE", "d", "0", "-1", "WITHSCORES"],
            &["OBJECT", "ENCODING", "d"],
            &["EXPIRE", "d", "100"],
            &["ZINTERSTORE", "d", "2", "a", "b", "AGGREGATE", "MIN"],
            &["TTL", "d"],
            &["ZRANGE", "d", "0", "-1", "WITHSCORES"],
            &["ZDIFFSTORE", "d", "2", "a", "b"],
            &["ZRANGE", "d", "0", "-1", "WITHSCORES"],
            &["ZINTERSTORE", "d", "2", "a", "nokey"],
            &["EXISTS", "d"],
            &["ZUNIONSTORE", "str", "1", "a"],
            &["TYPE", "str"],
            &["ZDIFFSTORE", "d", "1", "str"],
            &["ZUNIONSTORE", "a", "2", "a", "b"],
            &["ZRANGE", "a", "0", "-1", "WITHSCORES"],
            &["ZADD", "neg", "-0", "m"],
            &["ZADD", "neg2", "0", "n"],
            &["ZUNION", "2", "neg", "neg2", "WITHSCORES"],
            &["ZUNIONSTORE", "d", "1", "neg", "WEIGHTS", "-1"],
            &["ZRANGE", "d", "0", "-1", "WITHSCORES"],
            &["ZUNIONSTORE"],
            &["ZINTERCARD", "1"],
        ] {
            b.same(c);
        }
        let mut c: Vec<String> = vec!["ZADD".into(), "big".into()];
        for i in 0..130 {
            c.push(format!("{i}"));
            c.push(format!("m{i}"));
        }
        let refs: Vec<&str> = c.iter().map(String::as_str).collect();
        b.same(&refs);
        b.same(&["ZUNIONSTORE", "d", "2", "big", "a"]);
        b.same(&["OBJECT", "ENCODING", "d"]);
        b.same(&["ZINTERSTORE", "d", "2", "big", "big"]);
        b.same(&["OBJECT", "ENCODING", "d"]);
        b.same(&["ZDIFFSTORE", "d", "2", "big", "a"]);
        b.same(&["OBJECT", "ENCODING", "d"]);
        b.same(&["ZREMRANGEBYRANK", "big", "0", "10"]);
        b.same(&["ZUNIONSTORE", "d", "1", "big"]);
        b.same(&["OBJECT", "ENCODING", "d"]);
    }
}
