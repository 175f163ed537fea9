//! The sorted set range commands: ZRANGE (BYSCORE, BYLEX, REV, LIMIT, WITHSCORES),
//! ZRANGESTORE, ZREVRANGE, ZRANGEBYSCORE, ZREVRANGEBYSCORE, ZRANGEBYLEX,
//! ZREVRANGEBYLEX, all one function as in Redis 7.0 (`zrangeGenericCommand`), so that
//! each accepts the options Redis accepts and refuses the rest with Redis' words.
//! ZRANGESTORE holds both keys' shards (the table lists both).
//!
//! Replies: RESP2 a flat array (member, score, ...); RESP3 WITHSCORES an array of
//! [member, double] pairs, as Redis answers.

use super::parse::Args;
use super::reply::{Reply, NOT_INT, SYNTAX, WRONGTYPE};
use super::zsets::{rank_range, By, LEX_RANGE, SCORE_RANGE};
use crate::cache::parse_i64;
use crate::keyspace::{Keyspace, WrongType};
use crate::zset::{AddFlags, Entry, LexRange, ScoreRange, ZsetValue, LISTPACK_MAX_ENTRIES};

/// Which ZRANGE form: the range kind and direction a command fixes (None: its options
/// choose, as ZRANGE's and ZRANGESTORE's do).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Form {
    pub by: Option<By>,
    pub rev: Option<bool>,
    /// ZRANGESTORE: the destination first, no WITHSCORES.
    pub store: bool,
}

impl Form {
    /// ZRANGE: its options choose.
    pub const ZRANGE: Form = Form {
        by: None,
        rev: None,
        store: false,
    };
    /// ZRANGESTORE: its options choose.
    pub const ZRANGESTORE: Form = Form {
        by: None,
        rev: None,
        store: true,
    };

    /// An older form that fixes the range's kind and direction (ZREVRANGE,
    /// ZRANGEBYSCORE, ZREVRANGEBYLEX, ...).
    pub const fn fixed(by: By, rev: bool) -> Form {
        Form {
            by: Some(by),
            rev: Some(rev),
            store: false,
        }
    }
}

enum Range {
    Rank(i64, i64),
    Score(ScoreRange),
    Lex(LexRange),
}

/// ZRANGE and its forms (Redis' `zrangeGenericCommand`).
pub(crate) fn zrange(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>, form: Form) {
    let first = if form.store { 2 } else { 1 };
    let key = args.get(first);
    let (mut by, mut rev) = (form.by, form.rev);
    let mut withscores = false;
    let (mut offset, mut limit) = (0i64, -1i64);
    let mut j = first + 3;
    while j < args.len() {
        let o = args.get(j);
        let left = args.len() - j - 1;
        if !form.store && o.eq_ignore_ascii_case(b"withscores") {
            withscores = true;
        } else if o.eq_ignore_ascii_case(b"limit") && left >= 2 {
            match (parse_i64(args.get(j + 1)), parse_i64(args.get(j + 2))) {
                (Some(a), Some(b)) => (offset, limit) = (a, b),
                _ => return r.error(NOT_INT),
            }
            j += 2;
        } else if form.rev.is_none() && o.eq_ignore_ascii_case(b"rev") {
            rev = Some(true);
        } else if form.by.is_none() && o.eq_ignore_ascii_case(b"bylex") {
            by = Some(By::Lex);
        } else if form.by.is_none() && o.eq_ignore_ascii_case(b"byscore") {
            by = Some(By::Score);
        } else {
            return r.error(SYNTAX);
        }
        j += 1;
    }
    let rev = rev.unwrap_or(false);
    let by = by.unwrap_or(By::Rank);
    if limit != -1 && by == By::Rank {
        return r.error("ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX");
    }
    if withscores && by == By::Lex {
        return r.error("ERR syntax error, WITHSCORES not supported in combination with BYLEX");
    }
    let (mut lo, mut hi) = (args.get(first + 1), args.get(first + 2));
    if rev && by != By::Rank {
        std::mem::swap(&mut lo, &mut hi);
    }
    let range = match by {
        By::Rank => match (parse_i64(lo), parse_i64(hi)) {
            (Some(a), Some(b)) => Range::Rank(a, b),
            _ => return r.error(NOT_INT),
        },
        By::Score => match ScoreRange::parse(lo, hi) {
            Some(s) => Range::Score(s),
            None => return r.error(SCORE_RANGE),
        },
        By::Lex => match LexRange::parse(lo, hi) {
            Some(l) => Range::Lex(l),
            None => return r.error(LEX_RANGE),
        },
    };
    let found = ks.zset_read(key, |z| {
        z.map(|z| {
            let found = select(z, &range, rev, offset, limit);
            found.into_iter().cloned().collect::<Vec<Entry>>()
        })
    });
    let found = match found {
        Err(WrongType) => return r.error(WRONGTYPE),
        Ok(found) => found,
    };
    if form.store {
        // Added one by one in the order found, to a listpack unless a rank range is
        // known to be longer (Redis' `zrangeResultBeginStore`): what is added before a
        // conversion to a skiplist went through the listpack (`-0` became `0`).
        let found = found.unwrap_or_default();
        let mut z = if by == By::Rank && found.len() > LISTPACK_MAX_ENTRIES {
            ZsetValue::skiplist()
        } else {
            ZsetValue::default()
        };
        for e in &found {
            z.add(e.score, e.member.as_slice(), AddFlags::default());
        }
        return r.int(ks.zset_store(args.get(1), z) as i64);
    }
    let found = found.unwrap_or_default();
    reply_entries(r, &found, withscores);
}

/// Writes `found` as ZRANGE does.
pub(crate) fn reply_entries(r: &mut Reply<'_>, found: &[Entry], withscores: bool) {
    let nested = withscores && r.resp3;
    r.array(if withscores && !nested {
        found.len() * 2
    } else {
        found.len()
    });
    for e in found {
        if nested {
            r.array(2);
        }
        r.bulk(e.member.as_slice());
        if withscores {
            r.double(e.score);
        }
    }
}

/// The members of `range` in `z`, in order (reversed with `rev`), after skipping
/// `offset` and taking at most `limit` (negative: all) of them. A negative offset
/// selects nothing, as in Redis (whose walk skips to the end).
fn select<'z>(z: &'z ZsetValue, range: &Range, rev: bool, offset: i64, limit: i64) -> Vec<&'z Entry> {
    let (skip, take) = match (offset, limit) {
        (o, _) if o < 0 => return Vec::new(),
        (o, l) if l < 0 => (o as usize, usize::MAX),
        (o, l) => (o as usize, l as usize),
    };
    match range {
        Range::Rank(start, end) => match rank_range(z.len(), *start, *end) {
            None => Vec::new(),
            Some((start, n)) if rev => z.iter().rev().skip(start).take(n).collect(),
            Some((start, n)) => z.iter().skip(start).take(n).collect(),
        },
        Range::Score(s) => z.in_score_range(s, rev).skip(skip).take(take).collect(),
        Range::Lex(l) => z.in_lex_range(l, rev).into_iter().skip(skip).take(take).collect(),
    }
}
