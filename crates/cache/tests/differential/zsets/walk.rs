//! What the random walk (in `random_walk.rs`) generates for the sorted set commands.

use super::*;

/// How many kinds of sorted set command [`command`] makes.
pub(crate) const WALK_KINDS: usize = 18;

fn member(g: &mut Gen) -> Vec<u8> {
    g.pick(&["a", "b", "c", "d", "e", "aa", "ab", "1", "2", "", "m\u{0}", "z"])
        .as_bytes()
        .to_vec()
}

fn score(g: &mut Gen) -> Vec<u8> {
    g.pick(&[
        "0", "1", "2", "2", "3", "-1", "1.5", "0.1", "-0", "inf", "-inf", "+inf", "1e300", "x", "(1", "5e-324",
    ])
    .as_bytes()
    .to_vec()
}

fn bound(g: &mut Gen) -> Vec<u8> {
    g.pick(&["-inf", "+inf", "0", "1", "(1", "2", "(2", "1.5", "(-inf", "x", "3"])
        .as_bytes()
        .to_vec()
}

fn lex(g: &mut Gen) -> Vec<u8> {
    g.pick(&["-", "+", "[a", "(a", "[b", "(c", "[d", "(", "[", "a", "[aa"])
        .as_bytes()
        .to_vec()
}

fn limit(g: &mut Gen, c: &mut Vec<Vec<u8>>) {
    if g.chance(30) {
        c.push(b"LIMIT".to_vec());
        c.push(g.pick(&["0", "1", "2", "-1", "x"]).as_bytes().to_vec());
        c.push(g.pick(&["1", "2", "-1", "0", "10"]).as_bytes().to_vec());
    }
}

/// The `kind`-th sorted set command on `k` (and other keys), or None to draw again.
/// Inside a transaction only what does not depend on chance.
pub(crate) fn command(g: &mut Gen, in_tx: bool, k: &[u8], kind: usize) -> Option<Vec<Vec<u8>>> {
    let s = |x: &str| x.as_bytes().to_vec();
    let k = k.to_vec();
    let c = match kind {
        0..=2 => {
            let mut c = vec![s("ZADD"), k];
            for _ in 0..g.below(3) {
                c.push(s(g.pick(&["NX", "XX", "GT", "LT", "CH", "INCR"])));
            }
            for _ in 0..1 + g.below(3) {
                c.push(score(g));
                c.push(member(g));
            }
            c
        }
        3 => vec![s("ZINCRBY"), k, score(g), member(g)],
        4 => {
            let mut c = vec![s("ZREM"), k];
            for _ in 0..1 + g.below(3) {
                c.push(member(g));
            }
            c
        }
        5 => {
            let mut c = vec![s(g.pick(&["ZSCORE", "ZRANK", "ZREVRANK", "ZCARD"])), k, member(g)];
            if c[0] == b"ZCARD" {
                c.pop();
            }
            c
        }
        6 => vec![s("ZMSCORE"), k, member(g), member(g)],
        7 => {
            let mut c = vec![
                s(g.pick(&["ZRANGE", "ZREVRANGE"])),
                k,
                s(g.pick(&["0", "1", "-1", "-3", "x"])),
                s(g.pick(&["-1", "2", "0", "100"])),
            ];
            if g.chance(40) {
                c.push(s("WITHSCORES"));
            }
            if g.chance(10) {
                c.push(s("REV"));
            }
            c
        }
        8 => {
            let rev = g.chance(50);
            let mut c = vec![
                s(if rev { "ZREVRANGEBYSCORE" } else { "ZRANGEBYSCORE" }),
                k,
                bound(g),
                bound(g),
            ];
            if g.chance(40) {
                c.push(s("WITHSCORES"));
            }
            limit(g, &mut c);
            c
        }
        9 => {
            // BYLEX: compared while a listpack (or all scores equal); see `zsets.rs`' header.
            let rev = g.chance(50);
            let name = g.pick(&["ZRANGEBYLEX", "ZLEXCOUNT", "ZRANGE"]);
            let mut c = vec![s(name), k];
            if name == "ZRANGEBYLEX" && rev {
                c[0] = s("ZREVRANGEBYLEX");
            }
            c.push(lex(g));
            c.push(lex(g));
            if name == "ZRANGE" {
                c.push(s("BYLEX"));
                if rev {
                    c.push(s("REV"));
                }
            }
            if name != "ZLEXCOUNT" {
                limit(g, &mut c);
            }
            c
        }
        10 => {
            let mut c = vec![s("ZRANGE"), k, bound(g), bound(g), s("BYSCORE")];
            if g.chance(50) {
                c.push(s("REV"));
            }
            if g.chance(40) {
                c.push(s("WITHSCORES"));
            }
            limit(g, &mut c);
            c
        }
        11 => {
            let mut c = vec![s("ZRANGESTORE"), g.key(), k];
            if g.chance(50) {
                c.extend([bound(g), bound(g), s("BYSCORE")]);
            } else {
                c.extend([s(g.pick(&["0", "1", "-2"])), s(g.pick(&["-1", "1", "x"]))]);
            }
            c
        }
        12 => match g.below(4) {
            0 | 1 => {
                let mut c = vec![s(g.pick(&["ZPOPMIN", "ZPOPMAX"])), k];
                if g.chance(60) {
                    c.push(s(g.pick(&["0", "1", "2", "10", "-1", "x"])));
                }
                c
            }
            // ZMPOP, and the blocking pops with a short timeout (never 0: a command made
            // for a transaction may also run alone) or a bad one.
            2 => {
                let mut c = vec![s("ZMPOP"), s("2"), k, g.key(), s(g.pick(&["MIN", "MAX", "max", "MID"]))];
                if g.chance(50) {
                    c.extend([s("COUNT"), s(g.pick(&["1", "2", "10", "0", "x"]))]);
                }
                c
            }
            _ => {
                let t = s(g.pick(&["0.01", "0.01", "x", "-1"]));
                match g.below(3) {
                    0 => vec![s("BZPOPMIN"), k, g.key(), t],
                    1 => vec![s("BZPOPMAX"), k, t],
                    _ => vec![s("BZMPOP"), t, s("2"), k, g.key(), s("MAX"), s("COUNT"), s("2")],
                }
            }
        },
        13 => {
            let name = g.pick(&["ZREMRANGEBYRANK", "ZREMRANGEBYSCORE", "ZCOUNT", "ZREMRANGEBYLEX"]);
            let mut c = vec![s(name), k];
            match name {
                "ZREMRANGEBYRANK" => c.extend([s(g.pick(&["0", "-1", "1", "x"])), s(g.pick(&["0", "-1", "1"]))]),
                "ZREMRANGEBYLEX" => c.extend([lex(g), lex(g)]),
                _ => c.extend([bound(g), bound(g)]),
            }
            c
        }
        14 => {
            let mut c = vec![s("ZRANDMEMBER"), k];
            match g.below(4) {
                _ if in_tx => c.push(s(g.pick(&["0", "x", "1000"]))),
                0 => {}
                1 => c.push(s(g.pick(&["1", "2", "-3", "-1"]))),
                2 => c.extend([s(g.pick(&["2", "-2", "1000"])), s("WITHSCORES")]),
                _ => c.push(s("1000")),
            }
            c
        }
        15 if !in_tx => {
            if g.chance(50) {
                vec![s("ZSCAN(full)"), k]
            } else {
                let mut c = vec![s("ZSCAN"), k, s("0")];
                if g.chance(40) {
                    c.extend([s("MATCH"), s(g.pick(&["*", "a*", "[a-c]"]))]);
                }
                c
            }
        }
        16 | 17 => {
            let name = g.pick(&[
                "ZUNION",
                "ZINTER",
                "ZDIFF",
                "ZUNIONSTORE",
                "ZINTERSTORE",
                "ZDIFFSTORE",
                "ZINTERCARD",
            ]);
            let n = 1 + g.below(3);
            let mut c = vec![s(name)];
            if name.ends_with("STORE") {
                c.push(g.key());
            }
            c.extend([s(&n.to_string()), k]);
            for _ in 1..n {
                c.push(g.key());
            }
            if g.chance(30) && !matches!(name, "ZDIFF" | "ZDIFFSTORE" | "ZINTERCARD") {
                c.push(s("WEIGHTS"));
                for _ in 0..n {
                    c.push(s(g.pick(&["1", "2", "-1", "0", "0.5", "inf"])));
                }
            }
            if g.chance(30) && !matches!(name, "ZDIFF" | "ZDIFFSTORE" | "ZINTERCARD") {
                c.extend([s("AGGREGATE"), s(g.pick(&["SUM", "MIN", "MAX", "x"]))]);
            }
            if g.chance(30) && name == "ZINTERCARD" {
                c.extend([s("LIMIT"), s(g.pick(&["0", "1", "-1"]))]);
            }
            if g.chance(40) && !name.ends_with("STORE") && name != "ZINTERCARD" {
                c.push(s("WITHSCORES"));
            }
            c
        }
        _ => return None,
    };
    Some(c)
}
