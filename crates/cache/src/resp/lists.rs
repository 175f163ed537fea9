//! The list commands that never wait: LPUSH, RPUSH, LPUSHX, RPUSHX, LPOP, RPOP, LRANGE,
//! LINDEX, LSET, LLEN, LREM, LTRIM, LINSERT, LPOS, LMOVE, RPOPLPUSH, LMPOP. Each checks
//! its arguments in Redis 7.0's order (so that the same bad command gets the same
//! error), then makes keyspace reads and writes of lists ([`Keyspace::list_read`],
//! [`Keyspace::list_write`]). LMOVE, RPOPLPUSH and LMPOP run holding their keys' shards
//! (the command table says which), so they are atomic. The blocking forms are in
//! `blocking`, built from [`move_one`] and [`pop_first`].

use super::parse::Args;
use super::reply::{Reply, NOT_INT, SYNTAX, WRONGTYPE};
use super::strings::or_wrongtype;
use crate::cache::parse_i64;
use crate::keyspace::{Access, Keyspace, WrongType};
use crate::list::{index, index_range, End, ListValue};
use crate::stored::Stored;

/// LPUSH, RPUSH (`only_existing`: LPUSHX, RPUSHX): the list's new length.
pub(crate) fn push(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>, end: End, only_existing: bool) {
    let len = ks.list_write(args.get(1), |l| {
        // A list is never stored empty: an empty one here is a new key.
        if only_existing && l.is_empty() {
            return (0, false);
        }
        for i in 2..args.len() {
            l.push(end, Stored::copy_from(args.get(i)));
        }
        (l.len(), true)
    });
    match len {
        Ok(n) => r.int(n as i64),
        Err(WrongType) => r.error(WRONGTYPE),
    }
}

/// LPOP, RPOP key [count].
pub(crate) fn pop(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>, end: End) {
    if args.len() > 3 {
        let name = String::from_utf8_lossy(args.get(0)).to_ascii_lowercase();
        return r.error(&format!("ERR wrong number of arguments for '{name}' command"));
    }
    let count = if args.len() == 3 {
        match parse_i64(args.get(2)) {
            Some(n) if n >= 0 => Some(n as usize),
            _ => return r.error("ERR value is out of range, must be positive"),
        }
    } else {
        None
    };
    let popped = ks.list_write(args.get(1), |l| {
        if l.is_empty() {
            return (None, false);
        }
        let n = count.unwrap_or(1).min(l.len());
        let items: Vec<Stored> = (0..n).filter_map(|_| l.pop(end)).collect();
        (Some(items), n > 0)
    });
    match (popped, count) {
        (Err(WrongType), _) => r.error(WRONGTYPE),
        (Ok(None), None) => r.null(),
        (Ok(None), Some(_)) => r.null_array(),
        (Ok(Some(items)), None) => r.bulk(items[0].as_slice()),
        (Ok(Some(items)), Some(_)) => {
            r.array(items.len());
            items.iter().for_each(|v| r.bulk(v.as_slice()));
        }
    }
}

pub(crate) fn lrange(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let (Some(start), Some(end)) = (parse_i64(args.get(2)), parse_i64(args.get(3))) else {
        return r.error(NOT_INT);
    };
    let done = ks.list_read(args.get(1), |l| {
        match l.and_then(|l| Some((l, index_range(start, end, l.len())?))) {
            None => r.array(0),
            Some((l, (a, b))) => {
                r.array(b - a + 1);
                l.range(a, b).for_each(|v| r.bulk(v.as_slice()));
            }
        }
    });
    or_wrongtype(r, done);
}

pub(crate) fn lindex(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    // Redis looks the key up first: no such key is null whatever the index.
    let done = ks.list_read(args.get(1), |l| {
        let Some(l) = l else { return r.null() };
        match parse_i64(args.get(2)) {
            None => r.error(NOT_INT),
            Some(i) => r.bulk_or_null(index(i, l.len()).and_then(|i| l.get(i)).map(Stored::as_slice)),
        }
    });
    or_wrongtype(r, done);
}

pub(crate) fn lset(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    // Redis looks the key up (and at its type) before it reads the index.
    let done = ks.list_write(args.get(1), |l| {
        if l.is_empty() {
            return (Err("ERR no such key"), false);
        }
        let Some(i) = parse_i64(args.get(2)) else {
            return (Err(NOT_INT), false);
        };
        match index(i, l.len()) {
            None => (Err("ERR index out of range"), false),
            Some(i) => {
                l.set(i, Stored::copy_from(args.get(3)));
                (Ok(()), true)
            }
        }
    });
    match done {
        Ok(Ok(())) => r.ok(),
        Ok(Err(e)) => r.error(e),
        Err(WrongType) => r.error(WRONGTYPE),
    }
}

pub(crate) fn llen(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    match ks.list_read(args.get(1), |l| l.map_or(0, ListValue::len)) {
        Ok(n) => r.int(n as i64),
        Err(WrongType) => r.error(WRONGTYPE),
    }
}

pub(crate) fn lrem(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let Some(count) = parse_i64(args.get(2)) else {
        return r.error(NOT_INT);
    };
    let removed = ks.list_write(args.get(1), |l| {
        let n = l.remove_equal(count, args.get(3));
        (n, n > 0)
    });
    match removed {
        Ok(n) => r.int(n as i64),
        Err(WrongType) => r.error(WRONGTYPE),
    }
}

pub(crate) fn ltrim(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let (Some(start), Some(end)) = (parse_i64(args.get(2)), parse_i64(args.get(3))) else {
        return r.error(NOT_INT);
    };
    let done = ks.list_write(args.get(1), |l| {
        let len = l.len();
        match index_range(start, end, len) {
            None => l.keep(0, 0),
            Some((a, b)) => l.keep(a, b + 1),
        }
        ((), l.len() != len)
    });
    match done {
        Ok(()) => r.ok(),
        Err(WrongType) => r.error(WRONGTYPE),
    }
}

/// LINSERT key BEFORE|AFTER pivot element: the new length, -1 without the pivot, 0
/// without the key.
pub(crate) fn linsert(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let after = match args.get(2) {
        a if a.eq_ignore_ascii_case(b"before") => false,
        a if a.eq_ignore_ascii_case(b"after") => true,
        _ => return r.error(SYNTAX),
    };
    let (pivot, value) = (args.get(3), args.get(4));
    let len = ks.list_write(args.get(1), |l| {
        if l.is_empty() {
            return (0, false);
        }
        let Some(at) = l.iter().position(|v| v.as_slice() == pivot) else {
            return (-1, false);
        };
        l.insert(at + after as usize, Stored::copy_from(value));
        (l.len() as i64, true)
    });
    match len {
        Ok(n) => r.int(n),
        Err(WrongType) => r.error(WRONGTYPE),
    }
}

/// LPOS key element [RANK rank] [COUNT num-matches] [MAXLEN len].
pub(crate) fn lpos(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let (mut rank, mut count, mut maxlen): (i64, Option<i64>, i64) = (1, None, 0);
    let mut i = 3;
    while i < args.len() {
        let o = args.get(i);
        let value = (i + 1 < args.len()).then(|| parse_i64(args.get(i + 1)));
        match value {
            Some(n) if o.eq_ignore_ascii_case(b"rank") => match n {
                None => return r.error(NOT_INT),
                Some(0) => return r.error("ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list"),
                Some(n) => rank = n,
            },
            Some(n) if o.eq_ignore_ascii_case(b"count") => match n {
                Some(n) if n >= 0 => count = Some(n),
                _ => return r.error("ERR COUNT can't be negative"),
            },
            Some(n) if o.eq_ignore_ascii_case(b"maxlen") => match n {
                Some(n) if n >= 0 => maxlen = n,
                _ => return r.error("ERR MAXLEN can't be negative"),
            },
            _ => return r.error(SYNTAX),
        }
        i += 2;
    }
    let element = args.get(2);
    let done = ks.list_read(args.get(1), |l| {
        let Some(l) = l else {
            return if count.is_some() { r.array(0) } else { r.null() };
        };
        // As Redis computes it, overflow included: RANK i64::MIN reads as "from the
        // tail, any match", and then COUNT never ends the search.
        let from_tail = rank < 0;
        let rank = if from_tail { rank.wrapping_neg() } else { rank };
        let mut found: Vec<i64> = Vec::new();
        let mut matches: i64 = 0;
        let positions: Box<dyn Iterator<Item = (usize, &Stored)>> = if from_tail {
            Box::new(l.iter().enumerate().rev())
        } else {
            Box::new(l.iter().enumerate())
        };
        for (scanned, (at, v)) in positions.enumerate() {
            if maxlen != 0 && scanned as i64 >= maxlen {
                break;
            }
            if v.as_slice() != element {
                continue;
            }
            matches += 1;
            if matches >= rank {
                found.push(at as i64);
                match count {
                    None => break,
                    Some(c) if c != 0 && matches.wrapping_sub(rank).wrapping_add(1) >= c => break,
                    _ => {}
                }
            }
        }
        match count {
            None => match found.first() {
                Some(&at) => r.int(at),
                None => r.null(),
            },
            Some(_) => {
                r.array(found.len());
                found.iter().for_each(|&at| r.int(at));
            }
        }
    });
    or_wrongtype(r, done);
}

/// Moves one element from `src`'s `from` end to `dst`'s `to` end, as LMOVE (the
/// keyspace holds both keys' shards): the element, None when `src` has none. A
/// destination of another type is an error and nothing moves.
pub(crate) fn move_one(
    ks: &mut Keyspace<'_>,
    src: &[u8],
    dst: &[u8],
    from: End,
    to: End,
) -> Result<Option<Stored>, WrongType> {
    // Type checks, not reads: Redis counts no hit or miss for LMOVE.
    match ks.type_name(src, Access::Check) {
        "list" => {}
        "none" => return Ok(None),
        _ => return Err(WrongType),
    }
    if src == dst {
        // One write: the list is never empty in between (its deadline stays).
        return ks.list_write(src, |l| {
            let v = l.pop(from).expect("a stored list has elements");
            l.push(to, v.clone());
            (Some(v), true)
        });
    }
    if !matches!(ks.type_name(dst, Access::Check), "list" | "none") {
        return Err(WrongType);
    }
    let v = ks
        .list_write(src, |l| (l.pop(from), true))?
        .expect("a stored list has elements");
    ks.list_write(dst, |l| {
        l.push(to, v.clone());
        ((), true)
    })?;
    Ok(Some(v))
}

/// LMOVE, RPOPLPUSH.
pub(crate) fn lmove(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>, ends: Option<(End, End)>) {
    let (from, to) = match ends {
        Some(ends) => ends,
        None => match (End::parse(args.get(3)), End::parse(args.get(4))) {
            (Some(f), Some(t)) => (f, t),
            _ => return r.error(SYNTAX),
        },
    };
    match move_one(ks, args.get(1), args.get(2), from, to) {
        Ok(v) => r.bulk_or_null(v.as_ref().map(Stored::as_slice)),
        Err(WrongType) => r.error(WRONGTYPE),
    }
}

/// A key and the elements popped from it.
pub(crate) type Popped<'k> = (&'k [u8], Vec<Stored>);

/// Pops up to `count` elements from the first of `keys` that has any, as LMPOP and
/// BLPOP look: a key of another type met before one with elements is an error.
pub(crate) fn pop_first<'k>(
    ks: &mut Keyspace<'_>,
    keys: impl Iterator<Item = &'k [u8]>,
    end: End,
    count: usize,
) -> Result<Option<Popped<'k>>, WrongType> {
    for key in keys {
        let items = ks.list_write(key, |l| {
            let items: Vec<Stored> = (0..count.min(l.len())).filter_map(|_| l.pop(end)).collect();
            let changed = !items.is_empty();
            (items, changed)
        })?;
        if !items.is_empty() {
            return Ok(Some((key, items)));
        }
    }
    Ok(None)
}

/// LMPOP's and BLMPOP's (and ZMPOP's and BZMPOP's) arguments after the timeout: the
/// keys' positions, the side (`side` reads LEFT|RIGHT, or MIN|MAX) and the count, or
/// the error Redis answers. `at`: the position of numkeys.
pub(crate) fn mpop_args<S>(
    args: Args<'_>,
    at: usize,
    side: fn(&[u8]) -> Option<S>,
) -> Result<(std::ops::Range<usize>, S, usize), &'static str> {
    let numkeys = match parse_i64(args.get(at)) {
        Some(n) if n >= 1 => n as usize,
        _ => return Err("ERR numkeys should be greater than 0"),
    };
    let where_at = match at.checked_add(numkeys).and_then(|w| w.checked_add(1)) {
        Some(w) if w < args.len() => w,
        _ => return Err(SYNTAX),
    };
    let end = side(args.get(where_at)).ok_or(SYNTAX)?;
    let mut count = None;
    let mut j = where_at + 1;
    while j < args.len() {
        if count.is_none() && args.get(j).eq_ignore_ascii_case(b"count") && j + 1 < args.len() {
            j += 1;
            match parse_i64(args.get(j)) {
                Some(n) if n >= 1 => count = Some(n as usize),
                _ => return Err("ERR count should be greater than 0"),
            }
        } else {
            return Err(SYNTAX);
        }
        j += 1;
    }
    Ok((at + 1..where_at, end, count.unwrap_or(1)))
}

/// The reply of LMPOP and BLMPOP: the key, and its elements.
pub(crate) fn reply_key_and_items(r: &mut Reply<'_>, key: &[u8], items: &[Stored]) {
    r.array(2);
    r.bulk(key);
    r.array(items.len());
    items.iter().for_each(|v| r.bulk(v.as_slice()));
}

pub(crate) fn lmpop(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let (keys, end, count) = match mpop_args(args, 1, End::parse) {
        Ok(a) => a,
        Err(e) => return r.error(e),
    };
    match pop_first(ks, keys.map(|i| args.get(i)), end, count) {
        Ok(Some((key, items))) => reply_key_and_items(r, key, &items),
        Ok(None) => r.null_array(),
        Err(WrongType) => r.error(WRONGTYPE),
    }
}
