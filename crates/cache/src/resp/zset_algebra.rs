//! The sorted set commands on several keys: ZUNION, ZINTER, ZDIFF, their *STORE forms,
//! and ZINTERCARD, one function as in Redis 7.0 (`zunionInterDiffGenericCommand`). The
//! keyspace holds every key's shard for the whole command (the table's key positions
//! follow numkeys), so each is atomic.
//!
//! As in Redis, a source may be a set (each member scores 1); scores are weighted, a
//! weighted NaN (0 × inf) is 0, and SUM's inf + -inf is 0. The sources are taken from
//! the smallest (a stable sort, as glibc's merge sort is), so that ZINTER adds the
//! weighted scores in Redis' order and so rounds the same. A result is sorted, so the
//! order in which Redis walks each source does not show.

use std::collections::HashMap;

use super::parse::Args;
use super::reply::{Reply, NOT_INT, SYNTAX, WRONGTYPE};
use super::zranges::reply_entries;
use crate::cache::parse_i64;
use crate::keyspace::{Access, Keyspace, WrongType};
use crate::score::parse_score;
use crate::set::SetValue;
use crate::stored::Stored;
use crate::zset::{Entry, ZsetValue};

/// Which of ZUNION, ZINTER, ZDIFF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ZsetOp {
    Union,
    Inter,
    Diff,
}

/// What the command answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    /// The members (ZUNION, ZINTER, ZDIFF).
    Reply,
    /// Stored at the key in argument 1 (the *STORE forms).
    Store,
    /// How many (ZINTERCARD).
    Cardinality,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aggregate {
    Sum,
    Min,
    Max,
}

fn aggregate(target: &mut f64, v: f64, how: Aggregate) {
    match how {
        Aggregate::Sum => {
            *target += v;
            if target.is_nan() {
                *target = 0.0;
            }
        }
        Aggregate::Min => {
            if v < *target {
                *target = v
            }
        }
        Aggregate::Max => {
            if v > *target {
                *target = v
            }
        }
    }
}

/// One input: its members and scores (none for a missing key), and its weight.
struct Source {
    members: Vec<(Stored, f64)>,
    index: HashMap<Stored, f64>,
    weight: f64,
}

/// The members of the sorted set or set at `key` (a set's score 1), or WRONGTYPE.
fn source(ks: &mut Keyspace<'_>, key: &[u8]) -> Result<Vec<(Stored, f64)>, WrongType> {
    // The read below counts the hit or miss.
    match ks.type_name(key, Access::Check) {
        "set" => ks.set_read(key, |s| {
            s.into_iter()
                .flat_map(SetValue::iter)
                .map(|m| (m.clone(), 1.0))
                .collect()
        }),
        _ => ks.zset_read(key, |z| {
            z.into_iter()
                .flat_map(ZsetValue::iter)
                .map(|e| (e.member.clone(), e.score))
                .collect()
        }),
    }
}

/// ZUNION, ZINTER, ZDIFF (`op`), their *STORE forms and ZINTERCARD (`out`).
pub(crate) fn zset_op(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>, op: ZsetOp, out: Output) {
    let numkeys_at = if out == Output::Store { 2 } else { 1 };
    let Some(setnum) = parse_i64(args.get(numkeys_at)) else {
        return r.error(NOT_INT);
    };
    if setnum < 1 {
        let name = String::from_utf8_lossy(args.get(0)).to_ascii_lowercase();
        return r.error(&format!("ERR at least 1 input key is needed for '{name}' command"));
    }
    if setnum > (args.len() - numkeys_at - 1) as i64 {
        return r.error(SYNTAX);
    }
    let setnum = setnum as usize;
    let mut sources = Vec::with_capacity(setnum);
    for i in 0..setnum {
        match source(ks, args.get(numkeys_at + 1 + i)) {
            Ok(members) => sources.push(Source {
                index: HashMap::new(),
                members,
                weight: 1.0,
            }),
            Err(WrongType) => return r.error(WRONGTYPE),
        }
    }
    let mut how = Aggregate::Sum;
    let mut withscores = false;
    let mut limit = 0u64;
    let mut j = numkeys_at + 1 + setnum;
    let options = op != ZsetOp::Diff && out != Output::Cardinality;
    while j < args.len() {
        let o = args.get(j);
        let remaining = args.len() - j;
        if options && remaining > setnum && o.eq_ignore_ascii_case(b"weights") {
            for (i, s) in sources.iter_mut().enumerate() {
                match parse_score(args.get(j + 1 + i)) {
                    Some(w) => s.weight = w,
                    None => return r.error("ERR weight value is not a float"),
                }
            }
            j += 1 + setnum;
        } else if options && remaining >= 2 && o.eq_ignore_ascii_case(b"aggregate") {
            let a = args.get(j + 1);
            how = if a.eq_ignore_ascii_case(b"sum") {
                Aggregate::Sum
            } else if a.eq_ignore_ascii_case(b"min") {
                Aggregate::Min
            } else if a.eq_ignore_ascii_case(b"max") {
                Aggregate::Max
            } else {
                return r.error(SYNTAX);
            };
            j += 2;
        } else if out == Output::Reply && o.eq_ignore_ascii_case(b"withscores") {
            withscores = true;
            j += 1;
        } else if out == Output::Cardinality && remaining >= 2 && o.eq_ignore_ascii_case(b"limit") {
            match parse_i64(args.get(j + 1)) {
                Some(n) if n >= 0 => limit = n as u64,
                _ => return r.error("ERR LIMIT can't be negative"),
            }
            j += 2;
        } else {
            return r.error(SYNTAX);
        }
    }
    if op != ZsetOp::Diff {
        sources.sort_by_key(|s| s.members.len());
    }
    let entries: Vec<(f64, Stored)> = match op {
        ZsetOp::Inter => {
            for s in &mut sources[1..] {
                s.index = s.members.iter().cloned().collect();
            }
            let (first, rest) = sources.split_first().expect("at least one key");
            let mut found = Vec::new();
            for (m, s) in &first.members {
                let mut score = first.weight * s;
                if score.is_nan() {
                    score = 0.0;
                }
                let all = rest.iter().all(|src| match src.index.get(m.as_slice()) {
                    Some(v) => {
                        aggregate(&mut score, v * src.weight, how);
                        true
                    }
                    None => false,
                });
                if all {
                    found.push((score, m.clone()));
                    if out == Output::Cardinality && limit > 0 && found.len() as u64 >= limit {
                        break;
                    }
                }
            }
            found
        }
        ZsetOp::Union => {
            let mut acc: HashMap<Stored, f64> = HashMap::new();
            let mut order = Vec::new();
            for src in &sources {
                for (m, s) in &src.members {
                    let mut score = src.weight * s;
                    if score.is_nan() {
                        score = 0.0;
                    }
                    match acc.get_mut(m.as_slice()) {
                        Some(t) => aggregate(t, score, how),
                        None => {
                            acc.insert(m.clone(), score);
                            order.push(m.clone());
                        }
                    }
                }
            }
            order.into_iter().map(|m| (acc[m.as_slice()], m)).collect()
        }
        ZsetOp::Diff => {
            for s in &mut sources[1..] {
                s.index = s.members.iter().cloned().collect();
            }
            let (first, rest) = sources.split_first().expect("at least one key");
            first
                .members
                .iter()
                .filter(|(m, _)| rest.iter().all(|src| !src.index.contains_key(m.as_slice())))
                .map(|(m, s)| (*s, m.clone()))
                .collect()
        }
    };
    match out {
        Output::Cardinality => r.int(entries.len() as i64),
        Output::Store => r.int(ks.zset_store(args.get(1), ZsetValue::collect(entries)) as i64),
        Output::Reply => {
            let mut found: Vec<Entry> = entries
                .into_iter()
                .map(|(score, member)| Entry { score, member })
                .collect();
            found.sort();
            reply_entries(r, &found, withscores);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_to_infinity_and_back_to_zero() {
        let mut t = f64::INFINITY;
        aggregate(&mut t, f64::NEG_INFINITY, Aggregate::Sum);
        assert_eq!(t, 0.0);
        let mut t = 1.0;
        aggregate(&mut t, 0.5, Aggregate::Min);
        assert_eq!(t, 0.5);
        aggregate(&mut t, 3.0, Aggregate::Max);
        assert_eq!(t, 3.0);
    }
}
