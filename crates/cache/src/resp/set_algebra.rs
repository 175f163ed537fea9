//! The set commands on several keys: SINTER (and SMEMBERS, which is SINTER of one key
//! in Redis 7.0), SINTERCARD, SUNION, SDIFF, their *STORE forms, and SMOVE. The keyspace
//! holds every key's shard for the whole command (the table lists their keys; SINTERCARD's
//! come after its count), so each is atomic; they are made of several keyspace reads and
//! writes of sets.
//!
//! Results are computed as Redis 7.0 computes them, because the way decides the order
//! of a reply and the encoding of a stored result: SINTER walks the smallest set (the
//! first of equal ones) and keeps what every other set has, so it answers in that set's
//! order; SUNION and SDIFF build a new set (an intset until a member is no integer or
//! there are more than 512) and answer in its order; SDIFF chooses between Redis' two
//! algorithms by the same sizes, since one of them adds members the other never adds.

use super::parse::Args;
use super::reply::{Reply, SYNTAX, WRONGTYPE};
use super::sets::reply_members;
use crate::cache::parse_i64;
use crate::keyspace::{Keyspace, WrongType};
use crate::set::SetValue;
use crate::stored::Stored;

/// The sizes of the sets at `keys` (None: no such key), looked up in order as Redis
/// does: the first key holding another type is [`WrongType`].
fn sizes(ks: &mut Keyspace<'_>, keys: &[&[u8]]) -> Result<Vec<Option<usize>>, WrongType> {
    keys.iter().map(|k| ks.set_read(k, |s| s.map(SetValue::len))).collect()
}

/// The members of the set at `key` (none if no such key), in its order.
fn members_of(ks: &mut Keyspace<'_>, key: &[u8]) -> Vec<Stored> {
    ks.set_peek(key, |s| s.map(|s| s.iter().cloned().collect()))
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// The intersection of the sets at `keys`, in the order of the one Redis walks; empty
/// if a key is missing.
fn intersection(ks: &mut Keyspace<'_>, keys: &[&[u8]]) -> Result<Vec<Stored>, WrongType> {
    let sizes = sizes(ks, keys)?;
    if sizes.iter().any(Option::is_none) {
        return Ok(Vec::new());
    }
    let mut order: Vec<usize> = (0..keys.len()).collect();
    // Stable, as glibc's qsort (a merge sort) is for Redis.
    order.sort_by_key(|&i| sizes[i]);
    let mut found = members_of(ks, keys[order[0]]);
    for &j in &order[1..] {
        if found.is_empty() {
            break;
        }
        ks.set_peek(keys[j], |s| {
            let s = s.expect("looked up above");
            found.retain(|m| s.contains(m.as_slice()));
        })?;
    }
    Ok(found)
}

/// Which of SUNION and SDIFF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SetOp {
    Union,
    Diff,
}

/// SUNION's or SDIFF's result as the new set Redis builds.
fn union_or_diff(ks: &mut Keyspace<'_>, keys: &[&[u8]], op: SetOp) -> Result<SetValue, WrongType> {
    let sizes = sizes(ks, keys)?;
    let mut out = SetValue::default();
    if op == SetOp::Union {
        for (k, size) in keys.iter().zip(&sizes) {
            if size.is_some() {
                ks.set_peek(k, |s| {
                    s.into_iter().flat_map(SetValue::iter).for_each(|m| {
                        out.add(m.as_slice());
                    })
                })?;
            }
        }
        return Ok(out);
    }
    let Some(first) = sizes[0] else {
        return Ok(out);
    };
    let others: Vec<usize> = (1..keys.len()).filter(|&j| sizes[j].is_some()).collect();
    if others.iter().any(|&j| keys[j] == keys[0]) {
        return Ok(out);
    }
    // Redis' choice: walk the first set and test each member against the others (1), or
    // add the first set whole and remove the others' members (2).
    let one = (first as u64 * (others.len() as u64 + 1)) / 2;
    let two: u64 = sizes.iter().flatten().map(|&n| n as u64).sum();
    let members = members_of(ks, keys[0]);
    if one <= two {
        let mut left = members;
        for &j in &others {
            ks.set_peek(keys[j], |s| {
                let s = s.expect("looked up above");
                left.retain(|m| !s.contains(m.as_slice()));
            })?;
        }
        left.iter().for_each(|m| {
            out.add(m.as_slice());
        });
    } else {
        members.iter().for_each(|m| {
            out.add(m.as_slice());
        });
        for &j in &others {
            if out.is_empty() {
                break;
            }
            ks.set_peek(keys[j], |s| {
                s.into_iter().flat_map(SetValue::iter).for_each(|m| {
                    out.remove(m.as_slice());
                })
            })?;
        }
    }
    Ok(out)
}

fn keys_from(args: Args<'_>, first: usize) -> Vec<&[u8]> {
    (first..args.len()).map(|i| args.get(i)).collect()
}

/// SMEMBERS key: SINTER of one key, in one read.
pub(crate) fn smembers(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let done = ks.set_read(args.get(1), |s| match s {
        None => r.set(0),
        Some(s) => reply_members(r, s.len(), s.iter()),
    });
    if done.is_err() {
        r.error(WRONGTYPE);
    }
}

/// SINTER key [key ...].
pub(crate) fn sinter(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    match intersection(ks, &keys_from(args, 1)) {
        Ok(found) => reply_members(r, found.len(), found.iter()),
        Err(WrongType) => r.error(WRONGTYPE),
    }
}

/// SINTERSTORE destination key [key ...].
pub(crate) fn sinterstore(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    match intersection(ks, &keys_from(args, 2)) {
        Ok(found) => {
            let set = SetValue::collect(found.iter().map(Stored::as_slice));
            r.int(ks.set_store(args.get(1), set) as i64)
        }
        Err(WrongType) => r.error(WRONGTYPE),
    }
}

/// SINTERCARD numkeys key [key ...] [LIMIT limit].
pub(crate) fn sintercard(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let numkeys = match parse_i64(args.get(1)) {
        Some(n) if n >= 1 => n as u64,
        _ => return r.error("ERR numkeys should be greater than 0"),
    };
    if numkeys > (args.len() - 2) as u64 {
        return r.error("ERR Number of keys can't be greater than number of args");
    }
    let end = 2 + numkeys as usize;
    let mut limit = 0u64;
    let mut j = end;
    while j < args.len() {
        if args.get(j).eq_ignore_ascii_case(b"limit") && j + 1 < args.len() {
            j += 1;
            match parse_i64(args.get(j)) {
                Some(n) if n >= 0 => limit = n as u64,
                _ => return r.error("ERR LIMIT can't be negative"),
            }
        } else {
            return r.error(SYNTAX);
        }
        j += 1;
    }
    let keys: Vec<&[u8]> = (2..end).map(|i| args.get(i)).collect();
    match intersection(ks, &keys) {
        Ok(found) => {
            let n = found.len() as u64;
            r.int(if limit > 0 { n.min(limit) } else { n } as i64)
        }
        Err(WrongType) => r.error(WRONGTYPE),
    }
}

/// SUNION and SDIFF (`store`: SUNIONSTORE and SDIFFSTORE, the destination first).
pub(crate) fn sunion_or_diff(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>, op: SetOp, store: bool) {
    let first = if store { 2 } else { 1 };
    match union_or_diff(ks, &keys_from(args, first), op) {
        Err(WrongType) => r.error(WRONGTYPE),
        Ok(set) if store => r.int(ks.set_store(args.get(1), set) as i64),
        Ok(set) => reply_members(r, set.len(), set.iter()),
    }
}

/// SMOVE source destination member: Redis' order of checks (a missing source answers 0
/// before the destination's type is looked at).
pub(crate) fn smove(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let (src, dst, member) = (args.get(1), args.get(2), args.get(3));
    let has = match ks.set_peek(src, |s| s.map(|s| s.contains(member))) {
        Err(WrongType) => return r.error(WRONGTYPE),
        Ok(None) => return r.int(0),
        Ok(Some(has)) => has,
    };
    if ks.set_peek(dst, |_| ()).is_err() {
        return r.error(WRONGTYPE);
    }
    if src == dst || !has {
        return r.int(has as i64);
    }
    let moved = ks.set_write(src, |s| (s.remove(member), true)).unwrap_or(false);
    if moved {
        // The destination is a set or nothing (checked above, its shard held since).
        let _ = ks.set_write(dst, |s| {
            let added = s.add(member);
            (added, added)
        });
    }
    r.int(moved as i64);
}
