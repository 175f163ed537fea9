//! [`SetValue`]: a Redis set as a shard holds it, its members in the order Redis gives
//! where Redis' order is meaningful, and the encoding Redis would report (OBJECT
//! ENCODING).
//!
//! Redis 7.0 has two encodings for sets (listpack sets came with 7.2): an `intset`, a
//! sorted array of integers, while every member is an integer in its canonical text
//! (`string2ll`: no sign but `-`, no leading zero) and there are at most
//! `set-max-intset-entries` (512) of them; otherwise, for good, a `hashtable`. A new set
//! (SADD, SMOVE, the *STORE commands, SUNION's and SDIFF's results) starts as an intset
//! and converts when a member breaks the rule. Here, while an intset, the members are one
//! vector sorted by value, so SMEMBERS, SSCAN, SUNION and the others answer in Redis'
//! order; once a hash table, members are appended and a removal moves the last member
//! into the gap (O(1)), an order as meaningless as Redis' own.

use std::collections::HashMap;

use crate::cache::parse_i64;
use crate::stored::Stored;

/// Redis' `set-max-intset-entries`.
pub(crate) const INTSET_MAX_ENTRIES: usize = 512;

/// Bytes charged per member of an intset on top of its text: its slot in the vector.
pub(crate) const INTSET_MEMBER_OVERHEAD: usize = 32;
/// Bytes charged per member of a hash table on top of its text: its slot in the vector,
/// its slot in the index (a [`Stored`] and a position) and the index's spare room.
pub(crate) const TABLE_MEMBER_OVERHEAD: usize = 96;

/// A set's members.
#[derive(Debug, Clone, Default)]
pub(crate) struct SetValue {
    /// Sorted by integer value while an intset; any order once a hash table.
    members: Vec<Stored>,
    /// Member → its position in `members`; kept only once a hash table (an intset is
    /// searched by value).
    index: HashMap<Stored, u32>,
    /// Converted to a hash table (never back, as in Redis).
    table: bool,
    /// Σ member lengths.
    text: usize,
}

impl SetValue {
    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Bytes charged for the members.
    pub fn bytes(&self) -> usize {
        let per = if self.table {
            TABLE_MEMBER_OVERHEAD
        } else {
            INTSET_MEMBER_OVERHEAD
        };
        self.text + self.members.len() * per
    }

    /// Whether Redis would hold it as an intset.
    pub fn is_intset(&self) -> bool {
        !self.table
    }

    /// OBJECT ENCODING's answer.
    pub fn encoding(&self) -> &'static str {
        if self.table {
            "hashtable"
        } else {
            "intset"
        }
    }

    /// The members, in Redis' order while an intset.
    pub fn iter(&self) -> impl Iterator<Item = &Stored> {
        self.members.iter()
    }

    /// The `i`-th member (`i < len`).
    pub fn at(&self, i: usize) -> &Stored {
        &self.members[i]
    }

    /// Where `member` is in an intset (`Ok`) or would go (`Err`); None: not an integer.
    fn intset_position(&self, member: &[u8]) -> Option<Result<usize, usize>> {
        let n = parse_i64(member)?;
        Some(
            self.members
                .binary_search_by_key(&n, |m| parse_i64(m.as_slice()).expect("an intset holds integers")),
        )
    }

    pub fn contains(&self, member: &[u8]) -> bool {
        if self.table {
            self.index.contains_key(member)
        } else {
            matches!(self.intset_position(member), Some(Ok(_)))
        }
    }

    /// Converts to a hash table (as Redis' `setTypeConvert`).
    fn convert(&mut self) {
        self.table = true;
        self.index = self
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| (m.clone(), i as u32))
            .collect();
    }

    /// Adds `member`; true if it is new.
    pub fn add(&mut self, member: &[u8]) -> bool {
        if !self.table {
            match self.intset_position(member) {
                Some(Ok(_)) => return false,
                Some(Err(at)) => {
                    self.members.insert(at, Stored::copy_from(member));
                    self.text += member.len();
                    if self.members.len() > INTSET_MAX_ENTRIES {
                        self.convert();
                    }
                    return true;
                }
                None => self.convert(),
            }
        }
        if self.index.contains_key(member) {
            return false;
        }
        let m = Stored::copy_from(member);
        self.index.insert(m.clone(), self.members.len() as u32);
        self.members.push(m);
        self.text += member.len();
        true
    }

    /// Removes `member`; true if it was there.
    pub fn remove(&mut self, member: &[u8]) -> bool {
        let gone = if self.table {
            let Some(i) = self.index.remove(member) else {
                return false;
            };
            let i = i as usize;
            let gone = self.members.swap_remove(i);
            if let Some(moved) = self.members.get(i) {
                self.index.insert(moved.clone(), i as u32);
            }
            gone
        } else {
            let Some(Ok(i)) = self.intset_position(member) else {
                return false;
            };
            self.members.remove(i)
        };
        self.text -= gone.len();
        true
    }

    /// Removes and answers the `i`-th member (`i < len`).
    pub fn remove_at(&mut self, i: usize) -> Stored {
        let m = self.members[i].clone();
        self.remove(m.as_slice());
        m
    }

    /// A new set of `members`, added in order to an empty intset, as Redis builds the
    /// results of SUNION, SDIFF, the *STORE commands and what SPOP leaves.
    pub fn collect<'m>(members: impl IntoIterator<Item = &'m [u8]>) -> SetValue {
        let mut s = SetValue::default();
        for m in members {
            s.add(m);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(s: &SetValue) -> Vec<String> {
        s.iter()
            .map(|m| String::from_utf8(m.as_slice().to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn an_intset_is_sorted_by_value_and_holds_only_canonical_integers() {
        let mut s = SetValue::default();
        for m in ["10", "-3", "7", "10", "-9223372036854775808", "9223372036854775807"] {
            s.add(m.as_bytes());
        }
        assert_eq!(
            members(&s),
            ["-9223372036854775808", "-3", "7", "10", "9223372036854775807"]
        );
        assert_eq!(s.encoding(), "intset");
        assert!(s.contains(b"7") && !s.contains(b"07") && !s.contains(b"x"));
        assert!(!s.remove(b"+7") && s.remove(b"7") && !s.contains(b"7"));
        assert_eq!(s.bytes(), (20 + 2 + 2 + 19) + 4 * INTSET_MEMBER_OVERHEAD);
        for odd in ["07", "-0", "+1", " 1", "9223372036854775808"] {
            let mut t = SetValue::collect([&b"1"[..]]);
            assert!(t.add(odd.as_bytes()));
            assert_eq!(t.encoding(), "hashtable", "{odd}");
            assert!(t.contains(odd.as_bytes()) && t.contains(b"1"));
        }
    }

    #[test]
    fn converts_for_good_and_stays_consistent() {
        let mut s = SetValue::default();
        for i in 0..=INTSET_MAX_ENTRIES {
            assert_eq!(s.encoding(), "intset");
            s.add(i.to_string().as_bytes());
        }
        assert_eq!(s.encoding(), "hashtable");
        for i in (0..=INTSET_MAX_ENTRIES).step_by(3) {
            assert!(s.remove(i.to_string().as_bytes()));
        }
        for (i, m) in s.members.iter().enumerate() {
            assert_eq!(s.index[m.as_slice()] as usize, i);
        }
        assert_eq!(s.encoding(), "hashtable", "never converted back");
        let text: usize = s.iter().map(Stored::len).sum();
        assert_eq!(s.bytes(), text + s.len() * TABLE_MEMBER_OVERHEAD);
        assert_eq!(SetValue::collect([&b"a"[..], b"1"]).encoding(), "hashtable");
    }
}
