//! The sorted set commands on one key but the ranges (those are in `zranges`): ZADD,
//! ZINCRBY, ZREM, ZCARD, ZSCORE, ZMSCORE, ZRANK, ZREVRANK, ZCOUNT, ZLEXCOUNT, ZPOPMIN,
//! ZPOPMAX, ZMPOP (and the pops BZPOPMIN, BZPOPMAX and BZMPOP make, see `blocking`),
//! ZREMRANGEBYRANK, ZREMRANGEBYSCORE, ZREMRANGEBYLEX, ZRANDMEMBER, ZSCAN. Each
//! checks its arguments in Redis 7.0's order (so that the same bad command gets the
//! same error), then makes one keyspace read or write of the sorted set
//! ([`Keyspace::zset_read`], [`Keyspace::zset_write`]); replies are written while the
//! shard is locked where they can be.
//!
//! Scores are replied as Redis' `addReplyDouble` does: a bulk string in RESP2, a RESP3
//! double after `HELLO 3`, `%.17g` either way. Where Redis draws at random
//! (ZRANDMEMBER) the draws are strata's own, in the shape of Redis' answer.

use super::hashes::Picks;
use super::keys::{collection_scan_options, parse_cursor};
use super::lists::mpop_args;
use super::parse::Args;
use super::reply::{Reply, NOT_INT, SYNTAX, WRONGTYPE};
use super::strings::or_wrongtype;
use crate::cache::parse_i64;
use crate::keyspace::{Keyspace, WrongType};
use crate::score::{format_score, listpack_score, parse_score};
use crate::zset::{AddFlags, Added, Entry, LexRange, ScoreRange, ZsetValue};

pub(crate) const NOT_FLOAT: &str = "ERR value is not a valid float";
pub(crate) const SCORE_RANGE: &str = "ERR min or max is not a float";
pub(crate) const LEX_RANGE: &str = "ERR min or max not valid string range item";
const NAN: &str = "ERR resulting score is not a number (NaN)";

fn int_or_wrongtype(r: &mut Reply<'_>, n: Result<i64, WrongType>) {
    match n {
        Ok(n) => r.int(n),
        Err(WrongType) => r.error(WRONGTYPE),
    }
}

/// ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member [score member ...], and ZINCRBY
/// key increment member (`incr`), which is ZADD INCR in Redis, options included.
pub(crate) fn zadd(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>, incr: bool) {
    let mut flags = AddFlags {
        incr,
        ..AddFlags::default()
    };
    let mut ch = false;
    let mut i = 2;
    while i < args.len() {
        let o = args.get(i);
        if o.eq_ignore_ascii_case(b"nx") {
            flags.nx = true;
        } else if o.eq_ignore_ascii_case(b"xx") {
            flags.xx = true;
        } else if o.eq_ignore_ascii_case(b"ch") {
            ch = true;
        } else if o.eq_ignore_ascii_case(b"incr") {
            flags.incr = true;
        } else if o.eq_ignore_ascii_case(b"gt") {
            flags.gt = true;
        } else if o.eq_ignore_ascii_case(b"lt") {
            flags.lt = true;
        } else {
            break;
        }
        i += 1;
    }
    let rest = args.len() - i;
    if rest % 2 == 1 || rest == 0 {
        return r.error(SYNTAX);
    }
    if flags.nx && flags.xx {
        return r.error("ERR XX and NX options at the same time are not compatible");
    }
    if (flags.gt || flags.lt) && flags.nx || flags.gt && flags.lt {
        return r.error("ERR GT, LT, and/or NX options at the same time are not compatible");
    }
    if flags.incr && rest > 2 {
        return r.error("ERR INCR option supports a single increment-element pair");
    }
    let mut scores = Vec::with_capacity(rest / 2);
    for j in (i..args.len()).step_by(2) {
        match parse_score(args.get(j)) {
            Some(s) => scores.push(s),
            None => return r.error(NOT_FLOAT),
        }
    }
    let done = ks.zset_write(args.get(1), |z| {
        let (mut added, mut updated) = (0, 0);
        let mut last = None;
        for (n, score) in scores.iter().enumerate() {
            match z.add(*score, args.get(i + 1 + 2 * n), flags) {
                Added::NotANumber => return (Err(()), added + updated > 0),
                Added::New(s) => {
                    added += 1;
                    last = Some(s);
                }
                Added::Updated(s) => {
                    updated += 1;
                    last = Some(s);
                }
                Added::Same(s) => last = Some(s),
                Added::Nop => {}
            }
        }
        (Ok((added, updated, last)), added + updated > 0)
    });
    match done {
        Err(WrongType) => r.error(WRONGTYPE),
        Ok(Err(())) => r.error(NAN),
        Ok(Ok((_, _, last))) if flags.incr => match last {
            Some(s) => r.double(s),
            None => r.null(),
        },
        Ok(Ok((added, updated, _))) => r.int(if ch { added + updated } else { added }),
    }
}

pub(crate) fn zrem(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let removed = ks.zset_write(args.get(1), |z| {
        let mut n = 0;
        for i in 2..args.len() {
            if z.is_empty() {
                break;
            }
            n += z.remove(args.get(i)) as i64;
        }
        (n, n > 0)
    });
    int_or_wrongtype(r, removed);
}

pub(crate) fn zcard(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let n = ks.zset_read(args.get(1), |z| z.map_or(0, ZsetValue::len) as i64);
    int_or_wrongtype(r, n);
}

pub(crate) fn zscore(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let done = ks.zset_read(args.get(1), |z| match z.and_then(|z| z.score(args.get(2))) {
        Some(s) => r.double(s),
        None => r.null(),
    });
    or_wrongtype(r, done);
}

pub(crate) fn zmscore(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let done = ks.zset_read(args.get(1), |z| {
        r.array(args.len() - 2);
        for i in 2..args.len() {
            match z.and_then(|z| z.score(args.get(i))) {
                Some(s) => r.double(s),
                None => r.null(),
            }
        }
    });
    or_wrongtype(r, done);
}

/// ZRANK and ZREVRANK (`rev`).
pub(crate) fn zrank(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>, rev: bool) {
    let done = ks.zset_read(args.get(1), |z| match z.and_then(|z| z.rank(args.get(2), rev)) {
        Some(n) => r.int(n as i64),
        None => r.null(),
    });
    or_wrongtype(r, done);
}

pub(crate) fn zcount(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let Some(range) = ScoreRange::parse(args.get(2), args.get(3)) else {
        return r.error(SCORE_RANGE);
    };
    let n = ks.zset_read(args.get(1), |z| {
        z.map_or(0, |z| z.in_score_range(&range, false).count()) as i64
    });
    int_or_wrongtype(r, n);
}

pub(crate) fn zlexcount(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let Some(range) = LexRange::parse(args.get(2), args.get(3)) else {
        return r.error(LEX_RANGE);
    };
    let n = ks.zset_read(args.get(1), |z| {
        z.map_or(0, |z| z.in_lex_range(&range, false).len()) as i64
    });
    int_or_wrongtype(r, n);
}

/// ZPOPMIN and ZPOPMAX (`max`) key [count]: RESP2 a flat array of member and score;
/// RESP3 with a count an array of pairs.
pub(crate) fn zpop(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>, max: bool) {
    if args.len() > 3 {
        return r.error(SYNTAX);
    }
    let count = if args.len() == 3 {
        match parse_i64(args.get(2)) {
            Some(n) if n >= 0 => Some(n as u64),
            _ => return r.error("ERR value is out of range, must be positive"),
        }
    } else {
        None
    };
    let popped = ks.zset_write(args.get(1), |z| {
        let n = count.unwrap_or(1).min(z.len() as u64);
        let out: Vec<Entry> = (0..n).filter_map(|_| z.pop(max)).collect();
        let changed = !out.is_empty();
        (out, changed)
    });
    match popped {
        Err(WrongType) => r.error(WRONGTYPE),
        Ok(out) => {
            let nested = r.resp3 && count.is_some();
            r.array(if nested { out.len() } else { out.len() * 2 });
            for e in &out {
                if nested {
                    r.array(2);
                }
                r.bulk(e.member.as_slice());
                r.double(e.score);
            }
        }
    }
}

/// `MIN` or `MAX` (true), any case.
pub(crate) fn min_or_max(arg: &[u8]) -> Option<bool> {
    if arg.eq_ignore_ascii_case(b"min") {
        Some(false)
    } else if arg.eq_ignore_ascii_case(b"max") {
        Some(true)
    } else {
        None
    }
}

/// A key and the members popped from it.
pub(crate) type ZPopped<'k> = (&'k [u8], Vec<Entry>);

/// Pops up to `count` members (the lowest, or the highest with `max`) from the first
/// of `keys` that has any, as Redis' `genericZpopCommand` walks them: a missing key is
/// passed over, a key of another type before the first non-empty one is [`WrongType`].
pub(crate) fn zpop_first<'k>(
    ks: &mut Keyspace<'_>,
    keys: impl Iterator<Item = &'k [u8]>,
    max: bool,
    count: usize,
) -> Result<Option<ZPopped<'k>>, WrongType> {
    for key in keys {
        let popped = ks.zset_write(key, |z| {
            let out: Vec<Entry> = (0..count.min(z.len())).filter_map(|_| z.pop(max)).collect();
            let changed = !out.is_empty();
            (out, changed)
        })?;
        if !popped.is_empty() {
            return Ok(Some((key, popped)));
        }
    }
    Ok(None)
}

/// The reply of ZMPOP and BZMPOP: the key, and its members as pairs of member and
/// score.
pub(crate) fn reply_key_and_members(r: &mut Reply<'_>, key: &[u8], members: &[Entry]) {
    r.array(2);
    r.bulk(key);
    r.array(members.len());
    for e in members {
        r.array(2);
        r.bulk(e.member.as_slice());
        r.double(e.score);
    }
}

/// The reply of BZPOPMIN and BZPOPMAX: one flat array of key, member and score.
pub(crate) fn reply_key_member_score(r: &mut Reply<'_>, key: &[u8], e: &Entry) {
    r.array(3);
    r.bulk(key);
    r.bulk(e.member.as_slice());
    r.double(e.score);
}

/// ZMPOP numkeys key [key ...] MIN|MAX [COUNT count].
pub(crate) fn zmpop(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let (keys, max, count) = match mpop_args(args, 1, min_or_max) {
        Ok(a) => a,
        Err(e) => return r.error(e),
    };
    match zpop_first(ks, keys.map(|i| args.get(i)), max, count) {
        Ok(Some((key, members))) => reply_key_and_members(r, key, &members),
        Ok(None) => r.null_array(),
        Err(WrongType) => r.error(WRONGTYPE),
    }
}

/// How a range is given (ZREMRANGEBY*, ZRANGE's forms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum By {
    Rank,
    Score,
    Lex,
}

/// What ZREMRANGEBY* removes.
enum RemoveRange {
    Rank(i64, i64),
    Score(ScoreRange),
    Lex(LexRange),
}

/// ZREMRANGEBYRANK, ZREMRANGEBYSCORE, ZREMRANGEBYLEX.
pub(crate) fn zremrange(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>, by: By) {
    let (a, b) = (args.get(2), args.get(3));
    let range = match by {
        By::Rank => match (parse_i64(a), parse_i64(b)) {
            (Some(s), Some(e)) => RemoveRange::Rank(s, e),
            _ => return r.error(NOT_INT),
        },
        By::Score => match ScoreRange::parse(a, b) {
            Some(s) => RemoveRange::Score(s),
            None => return r.error(SCORE_RANGE),
        },
        By::Lex => match LexRange::parse(a, b) {
            Some(l) => RemoveRange::Lex(l),
            None => return r.error(LEX_RANGE),
        },
    };
    let removed = ks.zset_write(args.get(1), |z| {
        let gone: Vec<Vec<u8>> = match &range {
            RemoveRange::Rank(start, end) => match rank_range(z.len(), *start, *end) {
                None => Vec::new(),
                Some((start, n)) => z
                    .iter()
                    .skip(start)
                    .take(n)
                    .map(|e| e.member.as_slice().to_vec())
                    .collect(),
            },
            RemoveRange::Score(s) => z
                .in_score_range(s, false)
                .map(|e| e.member.as_slice().to_vec())
                .collect(),
            RemoveRange::Lex(l) => z
                .in_lex_range(l, false)
                .iter()
                .map(|e| e.member.as_slice().to_vec())
                .collect(),
        };
        gone.iter().for_each(|m| {
            z.remove(m);
        });
        (gone.len() as i64, !gone.is_empty())
    });
    int_or_wrongtype(r, removed);
}

/// Redis' sanitising of a rank range over `len` members: the first rank and how many,
/// or None when it is empty.
pub(crate) fn rank_range(len: usize, mut start: i64, mut end: i64) -> Option<(usize, usize)> {
    let len = len as i64;
    if start < 0 {
        start += len;
    }
    if end < 0 {
        end += len;
    }
    start = start.max(0);
    if start > end || start >= len {
        return None;
    }
    end = end.min(len - 1);
    Some((start as usize, (end - start + 1) as usize))
}

/// The most members ZRANDMEMBER draws with repeats (Redis has no bound).
const MAX_DRAWS: i64 = 1 << 24;

/// ZRANDMEMBER key [count [WITHSCORES]]: a negative count (or 1) draws with repeats; a
/// count at least the set's size answers the whole set, highest first (Redis' iterator
/// walks from the tail); a smaller one draws distinct members.
pub(crate) fn zrandmember(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let key = args.get(1);
    if args.len() == 2 {
        let seed = ks.random_for(key) | 1;
        let done = ks.zset_read(key, |z| match z {
            None => r.null(),
            Some(z) => {
                let i = Picks(seed).below(z.len());
                r.bulk(z.iter().nth(i).expect("below len").member.as_slice())
            }
        });
        return or_wrongtype(r, done);
    }
    let count = match parse_i64(args.get(2)) {
        None => return r.error(NOT_INT),
        Some(i64::MIN) => {
            return r
                .error("ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807")
        }
        Some(n) => n,
    };
    let with_scores = args.len() == 4;
    if args.len() > 4 || (with_scores && !args.get(3).eq_ignore_ascii_case(b"withscores")) {
        return r.error(SYNTAX);
    }
    if with_scores && !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&count) {
        return r.error("ERR value is out of range");
    }
    if count < -MAX_DRAWS {
        return r.error(&format!(
            "ERR count is out of range: strata draws at most {MAX_DRAWS} members with repeats"
        ));
    }
    let seed = ks.random_for(key) | 1;
    let resp3 = r.resp3;
    let done = ks.zset_read(key, |z| {
        let Some(z) = z.filter(|_| count != 0) else {
            return r.array(0);
        };
        let all: Vec<&Entry> = z.iter().collect();
        let mut picks = Picks(seed);
        let n = count
            .unsigned_abs()
            .min(if count > 0 { all.len() as u64 } else { u64::MAX }) as usize;
        let chosen: Vec<usize> = if count < 0 || count == 1 {
            (0..n).map(|_| picks.below(all.len())).collect()
        } else if n == all.len() {
            // Redis' iterator walks from the highest.
            (0..n).rev().collect()
        } else {
            // A partial shuffle: n distinct positions.
            let mut order: Vec<usize> = (0..all.len()).collect();
            for i in 0..n {
                let j = i + picks.below(all.len() - i);
                order.swap(i, j);
            }
            order.truncate(n);
            order
        };
        r.array(if with_scores && !resp3 { n * 2 } else { n });
        for i in chosen {
            if with_scores && resp3 {
                r.array(2);
            }
            r.bulk(all[i].member.as_slice());
            if with_scores {
                r.double(all[i].score);
            }
        }
    });
    or_wrongtype(r, done);
}

/// A score as a cursor key: the order of scores in the order of `u64`s (`-0` is `0`).
fn score_key(v: f64) -> u64 {
    let v = if v == 0.0 { 0.0 } else { v };
    let bits = v.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | 1 << 63
    }
}

fn key_score(k: u64) -> f64 {
    let bits = if k >> 63 == 1 { k & !(1 << 63) } else { !k };
    f64::from_bits(bits)
}

/// ZSCAN key cursor [MATCH pattern] [COUNT n]. A sorted set Redis would hold as a
/// listpack comes whole in one call (cursor 0), in its order, its scores as the
/// listpack holds them, as Redis answers. A skiplist is walked up by score: the cursor
/// is 1 + the score (as an order-keeping integer) where the walk goes on, each call
/// answering at least COUNT members and every member of its last score, so that a
/// member present with the same score for the whole scan is returned at least once.
pub(crate) fn zscan(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let Some(cursor) = parse_cursor(args.get(2)) else {
        return r.error("ERR invalid cursor");
    };
    let done = ks.zset_read(args.get(1), |z| {
        let Some(z) = z else {
            r.array(2);
            r.bulk(b"0");
            return r.array(0);
        };
        let (count, pattern) = match collection_scan_options(args) {
            Ok(options) => options,
            Err(e) => return r.error(e),
        };
        let matching = |e: &&Entry| pattern.is_none_or(|p| crate::glob::matches(p, e.member.as_slice(), false));
        let (found, next): (Vec<&Entry>, u64) = if z.is_listpack() {
            (z.iter().filter(matching).collect(), 0)
        } else {
            let from = if cursor == 0 {
                f64::NEG_INFINITY
            } else {
                key_score(cursor - 1)
            };
            if from.is_nan() {
                (Vec::new(), 0)
            } else {
                let range = ScoreRange {
                    min: from,
                    minex: false,
                    max: f64::INFINITY,
                    maxex: false,
                };
                let mut last = None;
                let mut next = 0;
                let mut found = Vec::new();
                for (walked, e) in z.in_score_range(&range, false).enumerate() {
                    if walked >= count && last != Some(e.score) {
                        next = score_key(e.score) + 1;
                        break;
                    }
                    last = Some(e.score);
                    if matching(&e) {
                        found.push(e);
                    }
                }
                (found, next)
            }
        };
        let text = |s: f64| {
            if z.is_listpack() {
                listpack_score(s)
            } else {
                format_score(s)
            }
        };
        r.array(2);
        r.bulk(next.to_string().as_bytes());
        r.array(found.len() * 2);
        for e in found {
            r.bulk(e.member.as_slice());
            r.bulk(text(e.score).as_bytes());
        }
    });
    or_wrongtype(r, done);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_keys_keep_the_order_of_scores() {
        let scores = [f64::NEG_INFINITY, -1e300, -1.0, -0.0, 0.0, 1e-300, 2.5, f64::INFINITY];
        for w in scores.windows(2) {
            assert!(score_key(w[0]) <= score_key(w[1]), "{w:?}");
        }
        for s in scores {
            assert_eq!(key_score(score_key(s)), if s == 0.0 { 0.0 } else { s });
        }
        assert!(score_key(f64::INFINITY) < u64::MAX);
    }
}
