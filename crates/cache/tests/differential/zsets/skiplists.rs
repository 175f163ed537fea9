//! Sorted sets past a listpack's bounds against redis-server: 129 members make a
//! skiplist (ranges, ranks, pops, lex ranges over equal scores, full ZSCANs), and the
//! random walk's sorted set commands over skiplists.

use super::*;

#[test]
fn large_zsets_answer_as_redis() {
    let Some((redis, strata)) = setup("large_zsets_answer_as_redis") else {
        return;
    };
    let mut b = Both::connect(&redis, &strata);
    for resp3 in [false, true] {
        if resp3 {
            b.both(&["HELLO", "3"]);
        }
        b.same(&["FLUSHALL"]);
        // 128 members: a listpack; the 129th makes a skiplist.
        let mut c: Vec<String> = vec!["ZADD".into(), "big".into()];
        for i in 0..128 {
            c.push(format!("{}", (i * 7) % 13));
            c.push(format!("m{i:03}"));
        }
        let refs: Vec<&str> = c.iter().map(String::as_str).collect();
        b.same(&refs);
        b.same(&["OBJECT", "ENCODING", "big"]);
        b.same(&["ZADD", "big", "0.5", "one more"]);
        b.same(&["OBJECT", "ENCODING", "big"]);
        for c in [
            &["ZRANGE", "big", "0", "-1", "WITHSCORES"][..],
            &["ZRANGE", "big", "10", "20", "REV"],
            &["ZRANGE", "big", "(3", "7", "BYSCORE", "LIMIT", "5", "10", "WITHSCORES"],
            &["ZREVRANGEBYSCORE", "big", "7", "(3", "LIMIT", "5", "10"],
            &["ZCOUNT", "big", "(3", "7"],
            &["ZRANK", "big", "m050"],
            &["ZREVRANK", "big", "m050"],
            &["ZRANDMEMBER", "big", "1000", "WITHSCORES"],
            &["ZPOPMIN", "big", "3"],
            &["ZPOPMAX", "big", "3"],
            &["ZREMRANGEBYRANK", "big", "0", "9"],
            &["ZREMRANGEBYSCORE", "big", "(11", "+inf"],
            &["ZRANGESTORE", "small", "big", "0", "9"],
            &["OBJECT", "ENCODING", "small"],
            &["ZRANGESTORE", "notsmall", "big", "0", "-1"],
            &["OBJECT", "ENCODING", "notsmall"],
            &["ZCARD", "big"],
            &["OBJECT", "ENCODING", "big"],
        ] {
            b.same(c);
        }
        // Lex ranges over a skiplist of equal scores.
        let mut c: Vec<String> = vec!["ZADD".into(), "lex".into()];
        for i in 0..200 {
            c.push("0".into());
            c.push(format!("w{i:03}"));
        }
        let refs: Vec<&str> = c.iter().map(String::as_str).collect();
        b.same(&refs);
        for c in [
            &["OBJECT", "ENCODING", "lex"][..],
            &["ZRANGEBYLEX", "lex", "[w100", "(w110"],
            &["ZREVRANGEBYLEX", "lex", "[w100", "(w090", "LIMIT", "2", "3"],
            &["ZLEXCOUNT", "lex", "(w010", "+"],
            &["ZREMRANGEBYLEX", "lex", "-", "[w150"],
            &["ZRANGE", "lex", "0", "5"],
        ] {
            b.same(c);
        }
        b.full_scan_of(&[b"ZSCAN".to_vec(), b"big".to_vec()], &[]);
        b.full_scan_of(
            &[b"ZSCAN".to_vec(), b"lex".to_vec()],
            &[b"MATCH".to_vec(), b"w1*".to_vec(), b"COUNT".to_vec(), b"7".to_vec()],
        );
    }
}

/// The walk's sorted set commands over skiplists: every key the walk uses starts with a
/// member longer than 64 bytes. No lex command: over a skiplist of different scores
/// Redis' answer depends on its nodes' random levels (see `zsets.rs`' header).
#[test]
fn random_zset_commands_over_skiplists_answer_as_redis() {
    let Some((redis, strata)) = setup("random_zset_commands_over_skiplists_answer_as_redis") else {
        return;
    };
    let seed = std::env::var("STRATA_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_2507u64);
    let mut g = Gen(seed | 1);
    let mut b = Both::connect(&redis, &strata);
    b.seed = Some(seed);
    let long = "L".repeat(70);
    for resp3 in [false, true] {
        if resp3 {
            b.both(&["HELLO", "3"]);
        }
        b.same(&["FLUSHALL"]);
        for k in ["k0", "k1", "k2", "k3", "k4", "k5", "a*", "[b]", "", "k\u{0}"] {
            b.same(&["ZADD", k, "1.5", &long]);
            b.same(&["OBJECT", "ENCODING", k]);
        }
        let mut step = 0;
        while step < 1500 {
            let k = g.key();
            let kind = g.below(WALK_KINDS);
            let Some(c) = command(&mut g, false, &k, kind) else {
                continue;
            };
            let lex = |a: &[u8]| a.eq_ignore_ascii_case(b"bylex") || a.to_ascii_uppercase().ends_with(b"BYLEX");
            if kind == 9 || c.iter().any(|a| lex(a)) || c[0] == b"ZLEXCOUNT" {
                continue;
            }
            if c[0] == b"ZSCAN(full)" {
                b.full_scan_of(&[b"ZSCAN".to_vec(), c[1].clone()], &c[2..]);
            } else {
                b.same_args(&c);
            }
            step += 1;
        }
    }
}
