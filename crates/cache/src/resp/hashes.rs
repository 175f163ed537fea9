//! The hash commands: HSET, HMSET, HSETNX, HGET, HMGET, HDEL, HEXISTS, HLEN, HSTRLEN,
//! HKEYS, HVALS, HGETALL, HINCRBY, HINCRBYFLOAT, HRANDFIELD, HSCAN. Each checks its
//! arguments in Redis 7.0's order (so that the same bad command gets the same error),
//! then makes one keyspace read or write of the hash ([`Keyspace::hash_read`],
//! [`Keyspace::hash_write`]); replies are written while the shard is locked, which
//! copies the fields out once.

use super::keys::{collection_scan_options, parse_cursor};
use super::parse::Args;
use super::reply::{Reply, NOT_INT, SYNTAX, WRONGTYPE};
use super::strings::or_wrongtype;
use crate::cache::parse_i64;
use crate::hash::HashValue;
use crate::keyspace::{Keyspace, WrongType};
use crate::long_double;
use crate::stored::Stored;

/// HSET and HMSET (`name`): field value pairs.
pub(crate) fn hset(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>, name: &str) {
    if !args.len().is_multiple_of(2) {
        return r.error(&format!("ERR wrong number of arguments for '{name}' command"));
    }
    let added = ks.hash_write(args.get(1), |h| {
        let mut added = 0;
        for i in (2..args.len()).step_by(2) {
            // Redis converts before the first write if any argument is too long.
            h.fit(args.get(i).len(), args.get(i + 1).len());
        }
        for i in (2..args.len()).step_by(2) {
            added += h.set(args.get(i), Stored::copy_from(args.get(i + 1))) as i64;
        }
        (added, true)
    });
    match added {
        Err(WrongType) => r.error(WRONGTYPE),
        Ok(_) if name == "hmset" => r.ok(),
        Ok(n) => r.int(n),
    }
}

pub(crate) fn hsetnx(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let (field, value) = (args.get(2), args.get(3));
    let set = ks.hash_write(args.get(1), |h| {
        if h.get(field).is_some() {
            return (false, false);
        }
        h.fit(field.len(), value.len());
        h.set(field, Stored::copy_from(value));
        (true, true)
    });
    match set {
        Ok(set) => r.int(set as i64),
        Err(WrongType) => r.error(WRONGTYPE),
    }
}

pub(crate) fn hget(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let done = ks.hash_read(args.get(1), |h| {
        r.bulk_or_null(h.and_then(|h| h.get(args.get(2))).map(Stored::as_slice))
    });
    or_wrongtype(r, done);
}

pub(crate) fn hmget(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let done = ks.hash_read(args.get(1), |h| {
        r.array(args.len() - 2);
        for i in 2..args.len() {
            r.bulk_or_null(h.and_then(|h| h.get(args.get(i))).map(Stored::as_slice));
        }
    });
    or_wrongtype(r, done);
}

pub(crate) fn hdel(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let removed = ks.hash_write(args.get(1), |h| {
        let n = (2..args.len()).filter(|&i| h.remove(args.get(i))).count();
        (n as i64, n > 0)
    });
    match removed {
        Ok(n) => r.int(n),
        Err(WrongType) => r.error(WRONGTYPE),
    }
}

/// HLEN, HEXISTS, HSTRLEN: an integer from the hash (`f` of `None`: no such key).
pub(crate) fn hint(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, key: &[u8], f: impl FnOnce(Option<&HashValue>) -> i64) {
    match ks.hash_read(key, f) {
        Ok(n) => r.int(n),
        Err(WrongType) => r.error(WRONGTYPE),
    }
}

/// What HKEYS, HVALS and HGETALL list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listing {
    Fields,
    Values,
    Both,
}

pub(crate) fn hgetall(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, key: &[u8], what: Listing) {
    let done = ks.hash_read(key, |h| {
        let len = h.map_or(0, HashValue::len);
        if what == Listing::Both {
            r.map(len);
        } else {
            r.array(len);
        }
        for (f, v) in h.into_iter().flat_map(HashValue::iter) {
            if what != Listing::Values {
                r.bulk(f.as_slice());
            }
            if what != Listing::Fields {
                r.bulk(v.as_slice());
            }
        }
    });
    or_wrongtype(r, done);
}

pub(crate) fn hincrby(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let Some(by) = parse_i64(args.get(3)) else {
        return r.error(NOT_INT);
    };
    let field = args.get(2);
    let done = ks.hash_write(args.get(1), |h| {
        let old = match h.get(field) {
            None => 0,
            Some(v) => match parse_i64(v.as_slice()) {
                Some(n) => n,
                None => return (Err("ERR hash value is not an integer"), false),
            },
        };
        let Some(n) = old.checked_add(by) else {
            return (Err("ERR increment or decrement would overflow"), false);
        };
        h.set(field, Stored::from_i64(n));
        (Ok(n), true)
    });
    match done {
        Ok(Ok(n)) => r.int(n),
        Ok(Err(e)) => r.error(e),
        Err(WrongType) => r.error(WRONGTYPE),
    }
}

pub(crate) fn hincrbyfloat(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let Some(by) = long_double::parse(args.get(3)) else {
        return r.error("ERR value is not a valid float");
    };
    if !by.is_finite() {
        return r.error("ERR value is NaN or Infinity");
    }
    let field = args.get(2);
    let done = ks.hash_write(args.get(1), |h| {
        let old = match h.get(field) {
            None => long_double::parse(b"0").expect("a number"),
            Some(v) => match long_double::parse(v.as_slice()) {
                Some(n) => n,
                None => return (Err("ERR hash value is not a float"), false),
            },
        };
        let sum = long_double::add(old, by);
        if !sum.is_finite() {
            return (Err("ERR increment would produce NaN or Infinity"), false);
        }
        let text = Stored::copy_from(long_double::format(sum).as_bytes());
        h.set(field, text.clone());
        (Ok(text), true)
    });
    match done {
        Ok(Ok(v)) => r.bulk(v.as_slice()),
        Ok(Err(e)) => r.error(e),
        Err(WrongType) => r.error(WRONGTYPE),
    }
}

/// A tiny generator for HRANDFIELD's (and SPOP's, SRANDMEMBER's) picks, seeded from
/// the shard's.
pub(crate) struct Picks(pub u64);

impl Picks {
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// HRANDFIELD key [count [WITHVALUES]]: a negative count may repeat fields; a count
/// at least the hash's size answers the whole hash in its order.
pub(crate) fn hrandfield(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let key = args.get(1);
    if args.len() == 2 {
        let seed = ks.random_for(key) | 1;
        let done = ks.hash_read(key, |h| match h {
            None => r.null(),
            Some(h) => r.bulk(h.at(Picks(seed).below(h.len())).0.as_slice()),
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
    let with_values = args.len() == 4;
    if args.len() > 4 || (with_values && !args.get(3).eq_ignore_ascii_case(b"withvalues")) {
        return r.error(SYNTAX);
    }
    if with_values && !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&count) {
        return r.error("ERR value is out of range");
    }
    let seed = ks.random_for(key) | 1;
    let resp3 = r.resp3;
    let done = ks.hash_read(key, |h| {
        let Some(h) = h.filter(|_| count != 0) else {
            return r.array(0);
        };
        let mut picks = Picks(seed);
        let n = count
            .unsigned_abs()
            .min(if count > 0 { h.len() as u64 } else { u64::MAX }) as usize;
        let chosen: Vec<usize> = if count < 0 {
            (0..n).map(|_| picks.below(h.len())).collect()
        } else if n == h.len() {
            (0..n).collect()
        } else {
            // A partial shuffle: n distinct positions.
            let mut all: Vec<usize> = (0..h.len()).collect();
            for i in 0..n {
                let j = i + picks.below(h.len() - i);
                all.swap(i, j);
            }
            all.truncate(n);
            all
        };
        r.array(if with_values && !resp3 { n * 2 } else { n });
        for i in chosen {
            let (f, v) = h.at(i);
            if with_values && resp3 {
                r.array(2);
            }
            r.bulk(f.as_slice());
            if with_values {
                r.bulk(v.as_slice());
            }
        }
    });
    or_wrongtype(r, done);
}

/// HSCAN key cursor [MATCH pattern] [COUNT n]. A hash Redis would hold as a listpack
/// comes whole in one call (cursor 0), in its order, as Redis answers; a larger one is
/// walked down its field list (cursor: the position below which the walk goes on), so
/// that, as for SCAN, a field present for the whole scan is returned at least once.
pub(crate) fn hscan(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let Some(cursor) = parse_cursor(args.get(2)) else {
        return r.error("ERR invalid cursor");
    };
    let done = ks.hash_read(args.get(1), |h| {
        let Some(h) = h else {
            r.array(2);
            r.bulk(b"0");
            return r.array(0);
        };
        let (count, pattern) = match collection_scan_options(args) {
            Ok(options) => options,
            Err(e) => return r.error(e),
        };
        let (lo, hi) = if h.encoding() == "listpack" {
            (0, h.len())
        } else {
            let hi = match cursor {
                0 => h.len(),
                c => usize::try_from(c).unwrap_or(usize::MAX).min(h.len()),
            };
            (hi.saturating_sub(count), hi)
        };
        let matching = |i: &usize| pattern.is_none_or(|p| crate::glob::matches(p, h.at(*i).0.as_slice(), false));
        // A listpack in its order; a table's step from the top down.
        let found: Vec<usize> = if h.encoding() == "listpack" {
            (lo..hi).filter(matching).collect()
        } else {
            (lo..hi).rev().filter(matching).collect()
        };
        r.array(2);
        r.bulk(lo.to_string().as_bytes());
        r.array(found.len() * 2);
        for i in found {
            let (f, v) = h.at(i);
            r.bulk(f.as_slice());
            r.bulk(v.as_slice());
        }
    });
    or_wrongtype(r, done);
}
