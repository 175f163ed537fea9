//! The sorted set commands against redis-server: hand-written sequences for every
//! command's edge cases and errors (infinite and exclusive scores, lex ranges, LIMIT,
//! ZADD's conditions, NaN), WRONGTYPE both ways, OBJECT ENCODING's listpack and
//! skiplist, the removal of an emptied sorted set, deadlines kept by writes and dropped
//! by ZRANGESTORE, WATCH on sorted sets; and what the random walk (in `random_walk.rs`)
//! generates and how it compares sorted set replies. ZUNION, ZINTER, ZDIFF (sets as
//! sources too, WEIGHTS, AGGREGATE), their *STORE forms and ZINTERCARD have their
//! hand-written sequences in `zset_algebra.rs`.
//!
//! This file has how sorted set replies are compared; the rest is in `zsets/`:
//! - `commands.rs`: the hand-written sequences of every command, and WATCH;
//! - `skiplists.rs`: sorted sets past a listpack's bounds, and the random walk's sorted
//!   set commands over skiplists;
//! - `walk.rs`: what the random walk generates.
//!
//! Where Redis' answer is random, and only there, the comparison is looser (each a
//! documented difference, see docs/state.md):
//! - ZRANDMEMBER drawing at random (no count, a negative count, or one below the
//!   size): members that exist, as many as Redis answered, distinct for a positive
//!   count (with WITHSCORES each member's score is its own); a count at least the size
//!   answers the whole sorted set in its order, compared exactly;
//! - ZSCAN of a `skiplist`: cursors differ; a full scan's set of members and scores is
//!   compared instead (a listpack's single answer is compared exactly).
//!
//! Lex ranges over members of different scores are what Redis calls undefined; strata
//! answers what a listpack answers, so the walk compares them while a sorted set is a
//! listpack and the hand-written cases give lex ranges equal scores when larger.

use super::*;

#[path = "zsets/commands.rs"]
mod commands;
#[path = "zsets/skiplists.rs"]
mod skiplists;
#[path = "zsets/walk.rs"]
mod walk;

pub(super) use walk::{command, WALK_KINDS};

// ---------------------------------------------------------------------- comparisons

/// Whether `name` (lowercase) is a sorted set command whose replies [`loosely_same`]
/// compares.
pub(super) fn is_loose(name: &str) -> bool {
    matches!(name, "zrandmember" | "zscan")
}

/// Whether differing replies to a sorted set command are one of the documented
/// differences.
pub(super) fn loosely_same(b: &mut Both, args: &[Vec<u8>], rv: &Value, sv: &Value) -> bool {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    let key = args.get(1).cloned().unwrap_or_default();
    let encoding = b.strata_only(&[b"OBJECT".to_vec(), b"ENCODING".to_vec(), key.clone()]);
    let score_of = |b: &mut Both, m: &[u8]| b.strata_only(&[b"ZSCORE".to_vec(), key.clone(), m.to_vec()]);
    match (name.as_str(), rv, sv) {
        ("zscan", Value::Array(x), Value::Array(y)) => {
            encoding == Value::Bulk(b"skiplist".to_vec()) && x.len() == 2 && y.len() == 2
        }
        ("zrandmember", Value::Bulk(_), Value::Bulk(m)) => score_of(b, m) != Value::Null,
        ("zrandmember", Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            let count: i64 = String::from_utf8_lossy(&args[2]).parse().unwrap_or(0);
            let size = int_or_zero(&b.strata_only(&[b"ZCARD".to_vec(), key.clone()]));
            if count >= size {
                return false; // the whole sorted set, in order: compared exactly
            }
            let with_scores = args.len() == 4;
            let mut members = Vec::new();
            let items: Vec<Value> = if with_scores && !matches!(y.first(), Some(Value::Array(_))) {
                y.chunks(2).map(|c| Value::Array(c.to_vec())).collect()
            } else {
                y.clone()
            };
            for item in &items {
                let (m, score) = match item {
                    Value::Bulk(m) => (m.clone(), None),
                    Value::Array(p) if p.len() == 2 => match &p[0] {
                        Value::Bulk(m) => (m.clone(), Some(p[1].clone())),
                        _ => return false,
                    },
                    _ => return false,
                };
                let own = score_of(b, &m);
                if own == Value::Null {
                    return false;
                }
                if let Some(s) = score {
                    // RESP3 doubles come raw; RESP2 as bulk strings, as ZSCORE answers.
                    if s != own {
                        return false;
                    }
                }
                members.push(Value::Bulk(m));
            }
            count < 0 || sorted(&members).windows(2).all(|w| w[0] != w[1])
        }
        _ => false,
    }
}
