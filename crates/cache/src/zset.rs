//! [`ZsetValue`]: a Redis sorted set as a shard holds it, its ranges (by score, by
//! lex), and the encoding Redis would report (OBJECT ENCODING).
//!
//! The members are kept twice: in a [`BTreeSet`] ordered by (score, member bytes), the
//! order of Redis' listpack and skiplist alike, and in a [`HashMap`] from member to
//! score. Redis 7.0 reports `listpack` while a sorted set has at most
//! `zset-max-listpack-entries` (128) members none longer than `zset-max-listpack-value`
//! (64 bytes), and converts to a `skiplist` for good when an added member breaks the
//! rule; a stored result (ZRANGESTORE, ZUNIONSTORE, ...) is a listpack again if it fits.
//! Both encodings answer in the same order, so the representation is the same for both.
//!
//! Scores are `f64`s, never NaN (parsed and printed in `score`). Two scores compare as
//! C compares doubles (`-0` equals `0`), so a tie orders by member bytes, as Redis
//! does. A listpack holds `-0` as `0` (Redis writes it as text and reads back 0).

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;

use crate::score::parse_bound;
use crate::stored::Stored;

/// Redis' `zset-max-listpack-entries`.
pub(crate) const LISTPACK_MAX_ENTRIES: usize = 128;
/// Redis' `zset-max-listpack-value`.
pub(crate) const LISTPACK_MAX_VALUE: usize = 64;
/// Bytes charged per member on top of its text: its entry in the tree (member and
/// score, and the node's spare room) and in the map (member and score, and the
/// table's spare room).
pub(crate) const MEMBER_OVERHEAD: usize = 128;

/// One member and its score, ordered as Redis orders them.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub score: f64,
    pub member: Stored,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Entry) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Entry) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for Entry {
    fn cmp(&self, o: &Entry) -> Ordering {
        self.score
            .partial_cmp(&o.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| self.member.as_slice().cmp(o.member.as_slice()))
    }
}

/// A probe in the tree: the least entry of `score`.
fn least(score: f64) -> Entry {
    Entry {
        score,
        member: Stored::copy_from(b""),
    }
}

/// ZADD's conditions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AddFlags {
    pub nx: bool,
    pub xx: bool,
    pub gt: bool,
    pub lt: bool,
    pub incr: bool,
}

/// What one ZADD of a member did (Redis' `zsetAdd` out flags).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Added {
    /// A new member, with this score.
    New(f64),
    /// The member's score changed to this.
    Updated(f64),
    /// The member was processed and keeps this score.
    Same(f64),
    /// A condition (NX, XX, GT, LT) left it alone.
    Nop,
    /// The score (or the sum, with INCR) is not a number: nothing changed.
    NotANumber,
}

/// A score range (`min`, `max`, each inclusive unless `(`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ScoreRange {
    pub min: f64,
    pub minex: bool,
    pub max: f64,
    pub maxex: bool,
}

impl ScoreRange {
    /// Redis' `zslParseRange`; None: "min or max is not a float".
    pub fn parse(min: &[u8], max: &[u8]) -> Option<ScoreRange> {
        let (min, minex) = parse_bound(min)?;
        let (max, maxex) = parse_bound(max)?;
        Some(ScoreRange { min, minex, max, maxex })
    }

    /// Whether no score can be in it.
    fn is_empty(&self) -> bool {
        self.min > self.max || (self.min == self.max && (self.minex || self.maxex))
    }
}

/// One end of a lex range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LexBound {
    /// `-`: below every member.
    Min,
    /// `+`: above every member.
    Max,
    Incl(Vec<u8>),
    Excl(Vec<u8>),
}

impl LexBound {
    /// Redis' `zslParseLexRangeItem`.
    fn parse(b: &[u8]) -> Option<LexBound> {
        match b.first()? {
            b'+' if b.len() == 1 => Some(LexBound::Max),
            b'-' if b.len() == 1 => Some(LexBound::Min),
            b'(' => Some(LexBound::Excl(b[1..].to_vec())),
            b'[' => Some(LexBound::Incl(b[1..].to_vec())),
            _ => None,
        }
    }

    fn text(&self) -> Option<&[u8]> {
        match self {
            LexBound::Incl(t) | LexBound::Excl(t) => Some(t),
            _ => None,
        }
    }

    fn exclusive(&self) -> bool {
        !matches!(self, LexBound::Incl(_))
    }
}

/// Redis' `sdscmplex`: `v` against a bound.
fn cmp_lex(v: &[u8], b: &LexBound) -> Ordering {
    match b {
        LexBound::Min => Ordering::Greater,
        LexBound::Max => Ordering::Less,
        LexBound::Incl(t) | LexBound::Excl(t) => v.cmp(t),
    }
}

/// A lex range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LexRange {
    pub min: LexBound,
    pub max: LexBound,
}

impl LexRange {
    /// Redis' `zslParseLexRange`; None: "min or max not valid string range item".
    pub fn parse(min: &[u8], max: &[u8]) -> Option<LexRange> {
        Some(LexRange {
            min: LexBound::parse(min)?,
            max: LexBound::parse(max)?,
        })
    }

    fn gte_min(&self, v: &[u8]) -> bool {
        let c = cmp_lex(v, &self.min);
        c == Ordering::Greater || (c == Ordering::Equal && !self.min.exclusive())
    }

    fn lte_max(&self, v: &[u8]) -> bool {
        let c = cmp_lex(v, &self.max);
        c == Ordering::Less || (c == Ordering::Equal && !self.max.exclusive())
    }

    /// Whether no member can be in it (Redis compares the bounds themselves).
    fn is_empty(&self) -> bool {
        let c = match (&self.min, &self.max) {
            (a, b) if a == b && a.text().is_none() => Ordering::Equal,
            (LexBound::Min, _) | (_, LexBound::Max) => Ordering::Less,
            (LexBound::Max, _) | (_, LexBound::Min) => Ordering::Greater,
            (a, b) => a.text().cmp(&b.text()),
        };
        c == Ordering::Greater || (c == Ordering::Equal && (self.min.exclusive() || self.max.exclusive()))
    }
}

/// A sorted set's members.
#[derive(Debug, Clone, Default)]
pub(crate) struct ZsetValue {
    tree: BTreeSet<Entry>,
    scores: HashMap<Stored, f64>,
    /// Converted to a skiplist (never back, as in Redis).
    skiplist: bool,
    /// Σ member lengths.
    text: usize,
}

impl ZsetValue {
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    /// Bytes charged for the members.
    pub fn bytes(&self) -> usize {
        self.text + self.len() * MEMBER_OVERHEAD
    }

    /// Whether Redis would hold it as a listpack.
    pub fn is_listpack(&self) -> bool {
        !self.skiplist
    }

    /// OBJECT ENCODING's answer.
    pub fn encoding(&self) -> &'static str {
        if self.skiplist {
            "skiplist"
        } else {
            "listpack"
        }
    }

    pub fn score(&self, member: &[u8]) -> Option<f64> {
        self.scores.get(member).copied()
    }

    /// The members in order (lowest score first).
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Entry> + ExactSizeIterator {
        self.tree.iter()
    }

    /// `member`'s rank (0-based; from the top with `rev`).
    pub fn rank(&self, member: &[u8], rev: bool) -> Option<usize> {
        let score = self.score(member)?;
        let probe = Entry {
            score,
            member: Stored::copy_from(member),
        };
        let below = self.tree.range(..probe).count();
        Some(if rev { self.len() - 1 - below } else { below })
    }

    /// Adds `member` with `score` under `flags`, as Redis' `zsetAdd`.
    pub fn add(&mut self, score: f64, member: &[u8], flags: AddFlags) -> Added {
        if score.is_nan() {
            return Added::NotANumber;
        }
        if let Some(current) = self.score(member) {
            if flags.nx {
                return Added::Nop;
            }
            let score = if flags.incr { score + current } else { score };
            if score.is_nan() {
                return Added::NotANumber;
            }
            if (flags.lt && score >= current) || (flags.gt && score <= current) {
                return Added::Nop;
            }
            if score == current {
                return Added::Same(score);
            }
            let reply = score;
            let score = self.stored(score);
            let m = Stored::copy_from(member);
            self.tree.remove(&Entry {
                score: current,
                member: m.clone(),
            });
            self.tree.insert(Entry {
                score,
                member: m.clone(),
            });
            self.scores.insert(m, score);
            return Added::Updated(reply);
        }
        if flags.xx {
            return Added::Nop;
        }
        self.insert_new(score, member);
        Added::New(score)
    }

    /// `score` as the encoding keeps it: a listpack holds `-0` as `0` (its text `-0`
    /// is read back as 0), a skiplist holds the double.
    fn stored(&self, score: f64) -> f64 {
        if score == 0.0 && !self.skiplist {
            0.0
        } else {
            score
        }
    }

    fn insert_new(&mut self, score: f64, member: &[u8]) {
        if self.len() + 1 > LISTPACK_MAX_ENTRIES || member.len() > LISTPACK_MAX_VALUE {
            self.skiplist = true;
        }
        let score = self.stored(score);
        let m = Stored::copy_from(member);
        self.text += m.len();
        self.tree.insert(Entry {
            score,
            member: m.clone(),
        });
        self.scores.insert(m, score);
    }

    /// Removes `member`; true if it was there.
    pub fn remove(&mut self, member: &[u8]) -> bool {
        let Some((m, score)) = self.scores.remove_entry(member) else {
            return false;
        };
        self.text -= m.len();
        self.tree.remove(&Entry { score, member: m });
        true
    }

    /// Removes and answers the lowest (or with `max` the highest) member.
    pub fn pop(&mut self, max: bool) -> Option<Entry> {
        let e = if max {
            self.tree.pop_last()
        } else {
            self.tree.pop_first()
        }?;
        self.scores.remove(e.member.as_slice());
        self.text -= e.member.len();
        Some(e)
    }

    /// The members in `r`, in order (reversed with `rev`).
    pub fn in_score_range(&self, r: &ScoreRange, rev: bool) -> Box<dyn Iterator<Item = &Entry> + '_> {
        if r.is_empty() || self.is_empty() {
            return Box::new(std::iter::empty());
        }
        let lower = match (r.minex, r.min) {
            (true, m) if m == f64::INFINITY => return Box::new(std::iter::empty()),
            (true, m) => Bound::Included(least(m.next_up())),
            (false, m) => Bound::Included(least(m)),
        };
        let upper = match (r.maxex, r.max) {
            (true, m) => Bound::Excluded(least(m)),
            (false, m) if m == f64::INFINITY => Bound::Unbounded,
            (false, m) => Bound::Excluded(least(m.next_up())),
        };
        if let (Bound::Included(a), Bound::Excluded(b)) = (&lower, &upper) {
            if a > b {
                return Box::new(std::iter::empty());
            }
        }
        let it = self.tree.range((lower, upper));
        if rev {
            Box::new(it.rev())
        } else {
            Box::new(it)
        }
    }

    /// The members in `r`, in order (reversed with `rev`), found as Redis finds them in
    /// a listpack: from the first member (walking from the lowest, or with `rev` from
    /// the highest) on the range's side of its start, for as long as members stay on
    /// the near side of its end. That is the lex range when all scores are equal (what
    /// the lex commands are for); otherwise it is what a listpack answers.
    pub fn in_lex_range(&self, r: &LexRange, rev: bool) -> Vec<&Entry> {
        let (Some(first), Some(last)) = (self.tree.first(), self.tree.last()) else {
            return Vec::new();
        };
        if r.is_empty() || !r.gte_min(last.member.as_slice()) || !r.lte_max(first.member.as_slice()) {
            return Vec::new();
        }
        if first.score == last.score {
            // Ordered by member: a range of the tree.
            let at = |b: &LexBound| match b {
                LexBound::Min | LexBound::Max => Bound::Unbounded,
                LexBound::Incl(t) => Bound::Included(Entry {
                    score: first.score,
                    member: Stored::copy_from(t),
                }),
                LexBound::Excl(t) => Bound::Excluded(Entry {
                    score: first.score,
                    member: Stored::copy_from(t),
                }),
            };
            let it = self.tree.range((at(&r.min), at(&r.max)));
            return if rev { it.rev().collect() } else { it.collect() };
        }
        if rev {
            let mut it = self.tree.iter().rev().skip_while(|e| !r.lte_max(e.member.as_slice()));
            match it.next() {
                Some(e) if r.gte_min(e.member.as_slice()) => std::iter::once(e)
                    .chain(it.take_while(|e| r.gte_min(e.member.as_slice())))
                    .collect(),
                _ => Vec::new(),
            }
        } else {
            let mut it = self.tree.iter().skip_while(|e| !r.gte_min(e.member.as_slice()));
            match it.next() {
                Some(e) if r.lte_max(e.member.as_slice()) => std::iter::once(e)
                    .chain(it.take_while(|e| r.lte_max(e.member.as_slice())))
                    .collect(),
                _ => Vec::new(),
            }
        }
    }

    /// An empty sorted set that is a skiplist from the start (ZRANGESTORE of more
    /// members than a listpack holds).
    pub fn skiplist() -> ZsetValue {
        ZsetValue {
            skiplist: true,
            ..ZsetValue::default()
        }
    }

    /// A new sorted set of `entries` (distinct members), encoded as Redis encodes a
    /// stored result of ZUNIONSTORE, ZINTERSTORE, ZDIFFSTORE: a listpack if it fits one.
    pub fn collect(entries: impl IntoIterator<Item = (f64, Stored)>) -> ZsetValue {
        let entries: Vec<(f64, Stored)> = entries.into_iter().collect();
        let mut z = ZsetValue {
            skiplist: entries.len() > LISTPACK_MAX_ENTRIES || entries.iter().any(|(_, m)| m.len() > LISTPACK_MAX_VALUE),
            ..ZsetValue::default()
        };
        for (score, member) in entries {
            let score = z.stored(score);
            z.text += member.len();
            z.scores.insert(member.clone(), score);
            z.tree.insert(Entry { score, member });
        }
        z
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zset(pairs: &[(f64, &str)]) -> ZsetValue {
        let mut z = ZsetValue::default();
        for (s, m) in pairs {
            z.add(*s, m.as_bytes(), AddFlags::default());
        }
        z
    }

    fn members<'a>(it: impl IntoIterator<Item = &'a Entry>) -> Vec<String> {
        it.into_iter()
            .map(|e| String::from_utf8(e.member.as_slice().to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn orders_by_score_then_member_and_finds_ranges() {
        let z = zset(&[
            (2.0, "b"),
            (1.0, "z"),
            (2.0, "a"),
            (f64::INFINITY, "i"),
            (-0.0, "m"),
            (0.0, "l"),
        ]);
        assert_eq!(members(z.iter()), ["l", "m", "z", "a", "b", "i"]);
        assert_eq!(z.rank(b"a", false), Some(3));
        assert_eq!(z.rank(b"a", true), Some(2));
        let r = ScoreRange::parse(b"(1", b"inf").unwrap();
        assert_eq!(members(z.in_score_range(&r, false)), ["a", "b", "i"]);
        assert_eq!(members(z.in_score_range(&r, true)), ["i", "b", "a"]);
        let r = ScoreRange::parse(b"0", b"(2").unwrap();
        assert_eq!(members(z.in_score_range(&r, false)), ["l", "m", "z"]);
        let r = ScoreRange::parse(b"(2", b"(2").unwrap();
        assert_eq!(z.in_score_range(&r, false).count(), 0);
        let r = ScoreRange::parse(b"(inf", b"+inf").unwrap();
        assert_eq!(z.in_score_range(&r, false).count(), 0);
        let r = ScoreRange::parse(b"2", b"2").unwrap();
        assert_eq!(members(z.in_score_range(&r, false)), ["a", "b"]);
    }

    #[test]
    fn lex_ranges_as_redis() {
        let z = zset(&[(0.0, "a"), (0.0, "b"), (0.0, "c"), (0.0, "d")]);
        let r = |a: &str, b: &str| LexRange::parse(a.as_bytes(), b.as_bytes()).unwrap();
        assert_eq!(members(z.in_lex_range(&r("[b", "(d"), false)), ["b", "c"]);
        assert_eq!(members(z.in_lex_range(&r("-", "+"), true)), ["d", "c", "b", "a"]);
        assert!(z.in_lex_range(&r("+", "-"), false).is_empty());
        assert!(z.in_lex_range(&r("-", "-"), false).is_empty());
        assert!(z.in_lex_range(&r("(b", "(b"), false).is_empty());
        assert_eq!(members(z.in_lex_range(&r("[b", "[b"), false)), ["b"]);
        assert!(LexRange::parse(b"b", b"+").is_none());
        assert!(LexRange::parse(b"+x", b"+").is_none());
        // Mixed scores: what a listpack walk finds.
        let z = zset(&[(1.0, "c"), (2.0, "a"), (3.0, "d")]);
        assert_eq!(members(z.in_lex_range(&r("[b", "+"), false)), ["c", "a", "d"]);
        assert_eq!(members(z.in_lex_range(&r("[b", "[c"), false)), ["c", "a"]);
    }

    #[test]
    fn add_flags_and_encoding() {
        let mut z = ZsetValue::default();
        assert_eq!(z.add(1.0, b"a", AddFlags::default()), Added::New(1.0));
        let nx = AddFlags {
            nx: true,
            ..Default::default()
        };
        assert_eq!(z.add(5.0, b"a", nx), Added::Nop);
        let gt = AddFlags {
            gt: true,
            ..Default::default()
        };
        assert_eq!(z.add(0.0, b"a", gt), Added::Nop);
        assert_eq!(z.add(3.0, b"a", gt), Added::Updated(3.0));
        let incr = AddFlags {
            incr: true,
            ..Default::default()
        };
        assert_eq!(z.add(f64::INFINITY, b"a", incr), Added::Updated(f64::INFINITY));
        assert_eq!(z.add(f64::NEG_INFINITY, b"a", incr), Added::NotANumber);
        assert_eq!(z.add(-0.0, b"b", AddFlags::default()), Added::New(-0.0));
        assert_eq!(z.add(0.0, b"b", AddFlags::default()), Added::Same(0.0));
        assert_eq!(z.encoding(), "listpack");
        assert_eq!(z.bytes(), 2 + 2 * MEMBER_OVERHEAD);
        for i in 0..LISTPACK_MAX_ENTRIES - 2 {
            z.add(i as f64, i.to_string().as_bytes(), AddFlags::default());
        }
        assert_eq!(z.encoding(), "listpack");
        z.add(0.0, b"one more", AddFlags::default());
        assert_eq!(z.encoding(), "skiplist");
        while z.pop(false).is_some() {}
        assert_eq!((z.len(), z.bytes(), z.encoding()), (0, 0, "skiplist"));
        let long = "x".repeat(65);
        let mut z = zset(&[(1.0, "a")]);
        z.add(1.0, long.as_bytes(), AddFlags::default());
        assert_eq!(z.encoding(), "skiplist");
        assert!(z.remove(long.as_bytes()) && !z.remove(b"zz"));
        assert_eq!(z.bytes(), 1 + MEMBER_OVERHEAD);
        assert_eq!(
            ZsetValue::collect([(1.0, Stored::copy_from(b"a"))]).encoding(),
            "listpack"
        );
    }
}
