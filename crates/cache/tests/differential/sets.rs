//! The set commands against redis-server: hand-written sequences for every command's
//! edge cases and errors, WRONGTYPE both ways, OBJECT ENCODING's intset and hashtable
//! (Redis 7.0 has no listpack sets), the removal of an emptied set, deadlines kept by
//! set writes and dropped by the *STORE commands, WATCH on sets; and what the random
//! walk (in `random_walk.rs`) generates and how it compares set replies.
//!
//! This file has how set replies are compared; the rest is in `sets/`:
//! - `commands.rs`: the hand-written sequences of every command, and WATCH;
//! - `large.rs`: sets past an intset's bounds (hash tables), and random pops;
//! - `walk.rs`: what the random walk generates.
//!
//! Where Redis' answer is random, and only there, the comparison is looser (each a
//! documented difference, see docs/state.md):
//! - members listed in a hash table's order: SMEMBERS, SINTER (walking a set strata
//!   reports as `hashtable`), SUNION and SDIFF (a result that is no intset: a member that
//!   is no integer, or more than 512; for SDIFF also when the first set is a hash table,
//!   which one of Redis' algorithms copies whole), SPOP or SRANDMEMBER answering the whole set: the
//!   same members in any order, also inside EXEC's array; an intset's order (sorted) is
//!   compared exactly;
//! - SRANDMEMBER drawing at random (no count, a negative count, or one below the set's
//!   size): members that exist, as many as Redis answered, distinct for a positive
//!   count;
//! - SPOP drawing at random: as many members as Redis popped; then strata's copy of the
//!   set is brought back to Redis' (strata's draws added back, Redis' removed, which
//!   checks that they were members), so the walk goes on from equal states. The walk pops
//!   at random only 1 or 2 members (never Redis' "keep what remains" case, whose encoding
//!   depends on the draw); the hand-written cases check that case's encoding where it
//!   does not depend on the draw;
//! - SSCAN of a `hashtable` set: cursors differ; a full scan's set of members is compared
//!   instead.

use super::*;

#[path = "sets/commands.rs"]
mod commands;
#[path = "sets/large.rs"]
mod large;
#[path = "sets/walk.rs"]
mod walk;

pub(super) use walk::{command, WALK_KINDS};

// ---------------------------------------------------------------------- comparisons

const SET_COMMANDS: &[&str] = &["smembers", "sinter", "sunion", "sdiff", "spop", "srandmember", "sscan"];

/// Whether `name` (lowercase) is a set command whose replies [`loosely_same`] compares.
pub(super) fn is_loose(name: &str) -> bool {
    SET_COMMANDS.contains(&name)
}

/// Every member a canonical integer, and at most 512: a set built from them is an
/// intset, whose order is Redis' (sorted).
fn intset_of(members: &[Value]) -> bool {
    members.len() <= 512
        && members.iter().all(|m| match m {
            Value::Bulk(b) => {
                let t = String::from_utf8_lossy(b);
                t.parse::<i64>().is_ok_and(|n| n.to_string() == t)
            }
            _ => false,
        })
}

fn distinct(v: &[Value]) -> bool {
    sorted(v).windows(2).all(|w| w[0] != w[1])
}

fn args_of(parts: &[&[u8]], rest: &[Value]) -> Vec<Vec<u8>> {
    let mut c: Vec<Vec<u8>> = parts.iter().map(|p| p.to_vec()).collect();
    for v in rest {
        if let Value::Bulk(b) = v {
            c.push(b.clone());
        }
    }
    c
}

/// Whether differing replies to a set command are one of the documented differences.
/// For a random SPOP, brings strata's copy of the set back to Redis'.
pub(super) fn loosely_same(b: &mut Both, args: &[Vec<u8>], rv: &Value, sv: &Value) -> bool {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    let key = args.get(1).cloned().unwrap_or_default();
    let encoding = |b: &mut Both, k: &[u8]| b.strata_only(&[b"OBJECT".to_vec(), b"ENCODING".to_vec(), k.to_vec()]);
    let table = Value::Bulk(b"hashtable".to_vec());
    match (name.as_str(), rv, sv) {
        ("smembers", Value::Array(x), Value::Array(y)) => encoding(b, &key) == table && sorted(x) == sorted(y),
        ("sinter", Value::Array(x), Value::Array(y)) => {
            sorted(x) == sorted(y) && args[1..].iter().any(|k| encoding(b, k) == table)
        }
        ("sunion", Value::Array(x), Value::Array(y)) => !intset_of(x) && sorted(x) == sorted(y),
        // Redis' second algorithm adds the first set whole: a hash table if it is one.
        ("sdiff", Value::Array(x), Value::Array(y)) => {
            sorted(x) == sorted(y) && (!intset_of(x) || encoding(b, &key) == table)
        }
        ("sscan", Value::Array(x), Value::Array(y)) => encoding(b, &key) == table && x.len() == 2 && y.len() == 2,
        ("srandmember", Value::Bulk(_), Value::Bulk(m)) => {
            b.strata_only(&[b"SISMEMBER".to_vec(), key, m.clone()]) == Value::Int(1)
        }
        ("srandmember", Value::Array(x), Value::Array(y)) => {
            let count: i64 = String::from_utf8_lossy(&args[2]).parse().unwrap_or(0);
            let size = int_or_zero(&b.strata_only(&[b"SCARD".to_vec(), key.clone()]));
            let members = b.strata_only(&args_of(&[b"SMISMEMBER", &key], y));
            let all_members = matches!(&members, Value::Array(m) if m.iter().all(|v| *v == Value::Int(1)));
            x.len() == y.len()
                && all_members
                && (count < 0 || distinct(y) && (count < size || encoding(b, &key) == table && sorted(x) == sorted(y)))
        }
        ("spop", Value::Array(x), Value::Array(y)) if x.len() == y.len() && distinct(y) => {
            let count: i64 = String::from_utf8_lossy(&args[2]).parse().unwrap_or(0);
            let exists = b.strata_only(&[b"EXISTS".to_vec(), key.clone()]) == Value::Int(1);
            if !exists {
                // The whole set: in the order of a new set, Redis' own unless an intset.
                return (count as usize) >= y.len() && !intset_of(x) && sorted(x) == sorted(y);
            }
            b.strata_only(&args_of(&[b"SADD", &key], y));
            b.strata_only(&args_of(&[b"SREM", &key], x)) == Value::Int(x.len() as i64)
        }
        ("spop", Value::Bulk(x), Value::Bulk(y)) => {
            b.strata_only(&[b"SADD".to_vec(), key.clone(), y.clone()]);
            b.strata_only(&[b"SREM".to_vec(), key, x.clone()]) == Value::Int(1)
        }
        _ => false,
    }
}

/// Whether replies inside EXEC's array differ only by a hash table's order (the walk
/// queues only what does not depend on chance).
pub(super) fn same_in_exec(name: Option<&str>, x: &Value, y: &Value) -> bool {
    let (Value::Array(x), Value::Array(y)) = (x, y) else {
        return false;
    };
    match name {
        Some("smembers" | "sinter" | "srandmember" | "sdiff") => sorted(x) == sorted(y),
        Some("sunion" | "spop") => !intset_of(x) && sorted(x) == sorted(y),
        _ => false,
    }
}
