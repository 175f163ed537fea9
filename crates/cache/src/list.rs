//! [`ListValue`]: a Redis list as a shard holds it, a double-ended queue of elements
//! with its charge kept exact as it changes.
//!
//! Redis 7.0 holds every list as a quicklist (a linked list of listpack nodes, each at
//! most 8 kB with the default `list-max-listpack-size -2`), so OBJECT ENCODING answers
//! `quicklist` for every list, however small; the `listpack` encoding of small lists
//! came with Redis 7.2. Here the elements are one [`VecDeque`]: O(1) at both ends, O(1)
//! by index, O(n) for an insertion or removal in the middle, as a quicklist is.

use std::collections::VecDeque;

use crate::stored::Stored;

/// Bytes charged per element on top of its own: its slot in the deque (a [`Stored`])
/// and the deque's spare room.
pub(crate) const ELEMENT_OVERHEAD: usize = 48;

/// Which end of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    Left,
    Right,
}

impl End {
    /// `LEFT` or `RIGHT`, any case.
    pub fn parse(arg: &[u8]) -> Option<End> {
        if arg.eq_ignore_ascii_case(b"left") {
            Some(End::Left)
        } else if arg.eq_ignore_ascii_case(b"right") {
            Some(End::Right)
        } else {
            None
        }
    }
}

/// A list's elements.
#[derive(Debug, Clone, Default)]
pub(crate) struct ListValue {
    items: VecDeque<Stored>,
    /// Σ (element + [`ELEMENT_OVERHEAD`]).
    bytes: usize,
}

fn cost(v: &Stored) -> usize {
    v.len() + ELEMENT_OVERHEAD
}

impl ListValue {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Bytes charged for the elements.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// OBJECT ENCODING's answer (Redis 7.0: always a quicklist).
    pub fn encoding(&self) -> &'static str {
        "quicklist"
    }

    pub fn push(&mut self, end: End, v: Stored) {
        self.bytes += cost(&v);
        match end {
            End::Left => self.items.push_front(v),
            End::Right => self.items.push_back(v),
        }
    }

    pub fn pop(&mut self, end: End) -> Option<Stored> {
        let v = match end {
            End::Left => self.items.pop_front(),
            End::Right => self.items.pop_back(),
        }?;
        self.bytes -= cost(&v);
        Some(v)
    }

    pub fn get(&self, i: usize) -> Option<&Stored> {
        self.items.get(i)
    }

    /// Replaces the `i`-th element (`i < len`).
    pub fn set(&mut self, i: usize, v: Stored) {
        self.bytes = self.bytes + v.len() - self.items[i].len();
        self.items[i] = v;
    }

    /// Inserts `v` before position `i` (`i <= len`).
    pub fn insert(&mut self, i: usize, v: Stored) {
        self.bytes += cost(&v);
        self.items.insert(i, v);
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Stored> + ExactSizeIterator {
        self.items.iter()
    }

    /// Elements `start..=end` (in bounds).
    pub fn range(&self, start: usize, end: usize) -> impl Iterator<Item = &Stored> {
        self.items.range(start..=end)
    }

    /// LREM: removes up to `count` elements equal to `v` from the head (`count > 0`),
    /// the tail (`count < 0`) or all of them (0); how many it removed.
    pub fn remove_equal(&mut self, count: i64, v: &[u8]) -> usize {
        let limit = if count == 0 {
            usize::MAX
        } else {
            count.unsigned_abs() as usize
        };
        let mut removed = 0;
        let mut freed = 0;
        if count >= 0 {
            self.items.retain(|x| {
                if removed < limit && x.as_slice() == v {
                    removed += 1;
                    freed += cost(x);
                    false
                } else {
                    true
                }
            });
        } else {
            let mut i = self.items.len();
            while i > 0 && removed < limit {
                i -= 1;
                if self.items[i].as_slice() == v {
                    let x = self.items.remove(i).expect("in bounds");
                    freed += cost(&x);
                    removed += 1;
                }
            }
        }
        self.bytes -= freed;
        removed
    }

    /// LTRIM: keeps elements `start..end` (in bounds, `start <= end`; an empty range
    /// empties the list).
    pub fn keep(&mut self, start: usize, end: usize) {
        let tail: usize = self.items.range(end..).map(cost).sum();
        self.items.truncate(end);
        let head: usize = self.items.range(..start).map(cost).sum();
        self.items.drain(..start);
        self.bytes -= head + tail;
    }
}

/// Redis' conversion of a start and end index (negative: from the tail) into a range
/// of a list of `len`: None when it selects nothing.
pub(crate) fn index_range(start: i64, end: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let start = if start < 0 { (len + start).max(0) } else { start };
    let end = if end < 0 { len + end } else { end };
    if start > end || start >= len {
        return None;
    }
    Some((start as usize, end.min(len - 1) as usize))
}

/// Redis' index (negative: from the tail) as a position in a list of `len`.
pub(crate) fn index(i: i64, len: usize) -> Option<usize> {
    let i = if i < 0 { i.checked_add(len as i64)? } else { i };
    (0..len as i64).contains(&i).then_some(i as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> ListValue {
        let mut l = ListValue::default();
        for i in items {
            l.push(End::Right, Stored::copy_from(i.as_bytes()));
        }
        l
    }

    fn items(l: &ListValue) -> Vec<String> {
        l.iter()
            .map(|v| String::from_utf8(v.as_slice().to_vec()).unwrap())
            .collect()
    }

    fn charge(l: &ListValue) -> usize {
        l.iter().map(cost).sum()
    }

    #[test]
    fn every_change_keeps_the_charge_exact() {
        let mut l = list(&["a", "bb", "a", "ccc", "a"]);
        assert_eq!(l.bytes(), charge(&l));
        l.push(End::Left, Stored::copy_from(b"zz"));
        assert_eq!(l.pop(End::Right).unwrap().as_slice(), b"a");
        l.set(1, Stored::copy_from(b"longer value"));
        l.insert(2, Stored::copy_from(b"x"));
        assert_eq!(l.bytes(), charge(&l));
        assert_eq!(items(&l), ["zz", "longer value", "x", "bb", "a", "ccc"]);
        assert_eq!(l.remove_equal(-1, b"a"), 1);
        assert_eq!(l.bytes(), charge(&l));
        l.keep(1, 3);
        assert_eq!(items(&l), ["longer value", "x"]);
        assert_eq!(l.bytes(), charge(&l));
        l.keep(0, 0);
        assert!(l.is_empty());
        assert_eq!(l.bytes(), 0);
    }

    #[test]
    fn lrem_counts_from_either_end() {
        let mut l = list(&["a", "b", "a", "c", "a"]);
        assert_eq!(l.remove_equal(2, b"a"), 2);
        assert_eq!(items(&l), ["b", "c", "a"]);
        let mut l = list(&["a", "b", "a", "c", "a"]);
        assert_eq!(l.remove_equal(-2, b"a"), 2);
        assert_eq!(items(&l), ["a", "b", "c"]);
        assert_eq!(l.remove_equal(0, b"x"), 0);
        assert_eq!(l.remove_equal(0, b"a"), 1);
    }

    #[test]
    fn indexes_as_redis_reads_them() {
        assert_eq!(index_range(0, -1, 3), Some((0, 2)));
        assert_eq!(index_range(-100, 100, 3), Some((0, 2)));
        assert_eq!(index_range(2, 1, 3), None);
        assert_eq!(index_range(3, 5, 3), None);
        assert_eq!(index_range(0, -4, 3), None);
        assert_eq!(index(-1, 3), Some(2));
        assert_eq!(index(-4, 3), None);
        assert_eq!(index(3, 3), None);
        assert_eq!(index(i64::MIN, 3), None);
    }
}
