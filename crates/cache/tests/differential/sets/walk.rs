//! What the random walk (in `random_walk.rs`) generates for the set commands.

use super::*;

/// How many kinds of set command [`command`] makes.
pub(crate) const WALK_KINDS: usize = 16;

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
pub(crate) fn command(g: &mut Gen, in_tx: bool, k: &[u8], kind: usize) -> Option<Vec<Vec<u8>>> {
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
