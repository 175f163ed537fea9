//! The set commands on one key: SADD, SREM, SISMEMBER, SMISMEMBER, SCARD, SPOP,
//! SRANDMEMBER, SSCAN (SMEMBERS is SINTER of one key, as in Redis 7.0: see
//! `set_algebra`). Each checks its arguments in Redis 7.0's order (so that the same bad
//! command gets the same error), then makes one keyspace read or write of the set
//! ([`Keyspace::set_read`], [`Keyspace::set_write`]); replies are written while the
//! shard is locked.
//!
//! Where Redis draws at random (SPOP, SRANDMEMBER) the draws are strata's own, but the
//! shape of the answer follows Redis' cases: which reply type, when the whole set comes
//! in its order, and (SPOP) when what is left is built anew as a new set, which decides
//! its encoding.

use super::hashes::Picks;
use super::keys::{collection_scan_options, parse_cursor};
use super::parse::Args;
use super::reply::{Reply, NOT_INT, SYNTAX, WRONGTYPE};
use super::strings::or_wrongtype;
use crate::cache::parse_i64;
use crate::keyspace::{Keyspace, WrongType};
use crate::set::SetValue;
use crate::stored::Stored;

/// Answers an integer, or WRONGTYPE.
fn int_or_wrongtype(r: &mut Reply<'_>, n: Result<i64, WrongType>) {
    match n {
        Ok(n) => r.int(n),
        Err(WrongType) => r.error(WRONGTYPE),
    }
}

/// Writes `members` as a RESP3 set (RESP2: an array).
pub(crate) fn reply_members<'m>(r: &mut Reply<'_>, len: usize, members: impl Iterator<Item = &'m Stored>) {
    r.set(len);
    for m in members {
        r.bulk(m.as_slice());
    }
}

pub(crate) fn sadd(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let added = ks.set_write(args.get(1), |s| {
        let n = (2..args.len()).filter(|&i| s.add(args.get(i))).count();
        (n as i64, n > 0)
    });
    int_or_wrongtype(r, added);
}

pub(crate) fn srem(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let removed = ks.set_write(args.get(1), |s| {
        let mut n = 0;
        for i in 2..args.len() {
            if s.is_empty() {
                break;
            }
            n += s.remove(args.get(i)) as i64;
        }
        (n, n > 0)
    });
    int_or_wrongtype(r, removed);
}

pub(crate) fn sismember(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let n = ks.set_read(args.get(1), |s| s.is_some_and(|s| s.contains(args.get(2))) as i64);
    int_or_wrongtype(r, n);
}

pub(crate) fn smismember(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let done = ks.set_read(args.get(1), |s| {
        r.array(args.len() - 2);
        for i in 2..args.len() {
            r.int(s.is_some_and(|s| s.contains(args.get(i))) as i64);
        }
    });
    or_wrongtype(r, done);
}

pub(crate) fn scard(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let n = ks.set_read(args.get(1), |s| s.map_or(0, SetValue::len) as i64);
    int_or_wrongtype(r, n);
}

/// What SPOP took.
enum Popped {
    /// No such key (or a count of 0).
    Nothing,
    One(Stored),
    Many(Vec<Stored>),
}

/// SPOP key [count]. A count at least the set's size answers the whole set (in the
/// order of a set built anew from it, as Redis' SUNION of it) and removes the key; a
/// smaller one draws that many members, unless what remains is less than a fifth of
/// the count: then Redis draws what remains instead, keeps it as a new set (which may
/// be an intset again) and answers the rest in the set's order. Strata does the same.
pub(crate) fn spop(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
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
    let key = args.get(1);
    let mut picks = Picks(ks.random_for(key) | 1);
    let popped = ks.set_write(key, |s| {
        let size = s.len();
        let Some(count) = count else {
            if size == 0 {
                return (Popped::Nothing, false);
            }
            return (Popped::One(s.remove_at(picks.below(size))), true);
        };
        if count == 0 || size == 0 {
            return (Popped::Nothing, false);
        }
        if count >= size as u64 {
            let whole = SetValue::collect(s.iter().map(Stored::as_slice));
            *s = SetValue::default();
            return (Popped::Many(whole.iter().cloned().collect()), true);
        }
        let count = count as usize;
        let remaining = size - count;
        if remaining * 5 > count {
            let out = (0..count).map(|_| s.remove_at(picks.below(s.len()))).collect();
            return (Popped::Many(out), true);
        }
        let keep: Vec<Stored> = (0..remaining).map(|_| s.remove_at(picks.below(s.len()))).collect();
        let out = s.iter().cloned().collect();
        *s = SetValue::collect(keep.iter().map(Stored::as_slice));
        (Popped::Many(out), true)
    });
    match popped {
        Err(WrongType) => r.error(WRONGTYPE),
        Ok(Popped::Nothing) if count.is_none() => r.null(),
        Ok(Popped::Nothing) => r.set(0),
        Ok(Popped::One(m)) => r.bulk(m.as_slice()),
        Ok(Popped::Many(out)) => reply_members(r, out.len(), out.iter()),
    }
}

/// The most members SRANDMEMBER draws with repeats (Redis has no bound, and would build
/// a reply of any size).
const MAX_DRAWS: i64 = 1 << 24;

/// SRANDMEMBER key [count]: a negative count (or 1) draws with repeats, in random order;
/// a count at least the set's size answers the whole set in its order; a smaller one
/// draws distinct members. Replies are arrays, also in RESP3 (as Redis).
pub(crate) fn srandmember(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let key = args.get(1);
    if args.len() > 3 {
        return r.error(SYNTAX);
    }
    let seed = ks.random_for(key) | 1;
    if args.len() == 2 {
        let done = ks.set_read(key, |s| match s {
            None => r.null(),
            Some(s) => r.bulk(s.at(Picks(seed).below(s.len())).as_slice()),
        });
        return or_wrongtype(r, done);
    }
    let count = match parse_i64(args.get(2)) {
        None => return r.error(NOT_INT),
        Some(i64::MIN) => {
            return r
                .error("ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807")
        }
        Some(n) if n < -MAX_DRAWS => {
            return r.error(&format!(
                "ERR count is out of range: strata draws at most {MAX_DRAWS} members with repeats"
            ))
        }
        Some(n) => n,
    };
    let done = ks.set_read(key, |s| {
        let Some(s) = s.filter(|_| count != 0) else {
            return r.array(0);
        };
        let mut picks = Picks(seed);
        let n = count.unsigned_abs();
        if count < 0 || n == 1 {
            r.array(n as usize);
            for _ in 0..n {
                r.bulk(s.at(picks.below(s.len())).as_slice());
            }
            return;
        }
        if n >= s.len() as u64 {
            return reply_members_array(r, s.len(), s.iter());
        }
        // A partial shuffle: n distinct positions.
        let n = n as usize;
        let mut all: Vec<usize> = (0..s.len()).collect();
        for i in 0..n {
            let j = i + picks.below(s.len() - i);
            all.swap(i, j);
        }
        reply_members_array(r, n, all[..n].iter().map(|&i| s.at(i)));
    });
    or_wrongtype(r, done);
}

fn reply_members_array<'m>(r: &mut Reply<'_>, len: usize, members: impl Iterator<Item = &'m Stored>) {
    r.array(len);
    for m in members {
        r.bulk(m.as_slice());
    }
}

/// SSCAN key cursor [MATCH pattern] [COUNT n]. An intset comes whole in one call
/// (cursor 0), sorted, as Redis answers; a hash table is walked down its member list
/// (cursor: the position below which the walk goes on), so that, as for SCAN, a member
/// present for the whole scan is returned at least once.
pub(crate) fn sscan(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let Some(cursor) = parse_cursor(args.get(2)) else {
        return r.error("ERR invalid cursor");
    };
    let done = ks.set_read(args.get(1), |s| {
        let Some(s) = s else {
            r.array(2);
            r.bulk(b"0");
            return r.array(0);
        };
        let (count, pattern) = match collection_scan_options(args) {
            Ok(options) => options,
            Err(e) => return r.error(e),
        };
        let (lo, hi) = if s.is_intset() {
            (0, s.len())
        } else {
            let hi = match cursor {
                0 => s.len(),
                c => usize::try_from(c).unwrap_or(usize::MAX).min(s.len()),
            };
            (hi.saturating_sub(count), hi)
        };
        let matching = |i: &usize| pattern.is_none_or(|p| crate::glob::matches(p, s.at(*i).as_slice(), false));
        // An intset in its order; a table's step from the top down.
        let found: Vec<usize> = if s.is_intset() {
            (lo..hi).filter(matching).collect()
        } else {
            (lo..hi).rev().filter(matching).collect()
        };
        r.array(2);
        r.bulk(lo.to_string().as_bytes());
        reply_members_array(r, found.len(), found.iter().map(|&i| s.at(i)));
    });
    or_wrongtype(r, done);
}
