//! [`HashValue`]: a Redis hash as a shard holds it, a map from field to value that
//! remembers what Redis' encoding would be (OBJECT ENCODING) and keeps Redis' order
//! where Redis has a meaningful one.
//!
//! Redis 7.0 holds a small hash as a listpack (fields in insertion order, a deleted
//! field closes its gap) and converts it for good to a hash table once it has more than
//! `hash-max-listpack-entries` fields (512, the built-in default; Redis' sample
//! `redis.conf` sets 128) or a field or value longer than `hash-max-listpack-value`
//! (64 bytes). Here the fields are one vector in that same order while the hash would
//! be a listpack, so HGETALL, HKEYS, HVALS and HSCAN answer what Redis answers; once it
//! would be a hash table, a removal moves the last field into the gap (O(1)) and the
//! order is as meaningless as Redis' own.

use std::collections::HashMap;

use crate::stored::Stored;

/// Redis' `hash-max-listpack-entries`.
pub(crate) const LISTPACK_MAX_ENTRIES: usize = 512;
/// Redis' `hash-max-listpack-value`.
pub(crate) const LISTPACK_MAX_VALUE: usize = 64;

/// Bytes charged per field on top of its name and value: its slot in the vector (two
/// [`Stored`]), its slot in the index (a [`Stored`] and a position) and the tables'
/// spare room.
pub(crate) const FIELD_OVERHEAD: usize = 112;

/// A hash's fields and values.
#[derive(Debug, Clone, Default)]
pub(crate) struct HashValue {
    /// The fields in Redis' order while a listpack.
    entries: Vec<(Stored, Stored)>,
    /// Field → its position in `entries`.
    index: HashMap<Stored, u32>,
    /// Converted to a hash table (never back, as in Redis).
    table: bool,
    /// Σ (field + value + [`FIELD_OVERHEAD`]).
    bytes: usize,
}

impl HashValue {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Bytes charged for the fields and values.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// OBJECT ENCODING's answer.
    pub fn encoding(&self) -> &'static str {
        if self.table {
            "hashtable"
        } else {
            "listpack"
        }
    }

    pub fn get(&self, field: &[u8]) -> Option<&Stored> {
        self.index.get(field).map(|&i| &self.entries[i as usize].1)
    }

    /// The fields and values, in Redis' order while a listpack.
    pub fn iter(&self) -> impl Iterator<Item = (&Stored, &Stored)> {
        self.entries.iter().map(|(f, v)| (f, v))
    }

    /// The `i`-th field and value (`i < len`).
    pub fn at(&self, i: usize) -> (&Stored, &Stored) {
        let (f, v) = &self.entries[i];
        (f, v)
    }

    /// Converts to a hash table, as Redis does before writing a long field or value.
    pub fn fit(&mut self, field_len: usize, value_len: usize) {
        if field_len > LISTPACK_MAX_VALUE || value_len > LISTPACK_MAX_VALUE {
            self.table = true;
        }
    }

    /// Sets `field` to `value`; true if the field is new.
    pub fn set(&mut self, field: &[u8], value: Stored) -> bool {
        self.fit(field.len(), value.len());
        if let Some(&i) = self.index.get(field) {
            let slot = &mut self.entries[i as usize].1;
            self.bytes = self.bytes + value.len() - slot.len();
            *slot = value;
            return false;
        }
        let f = Stored::copy_from(field);
        self.bytes += f.len() + value.len() + FIELD_OVERHEAD;
        self.index.insert(f.clone(), self.entries.len() as u32);
        self.entries.push((f, value));
        if self.entries.len() > LISTPACK_MAX_ENTRIES {
            self.table = true;
        }
        true
    }

    /// Removes `field`; true if it was there.
    pub fn remove(&mut self, field: &[u8]) -> bool {
        let Some(i) = self.index.remove(field) else {
            return false;
        };
        let i = i as usize;
        let (f, v) = if self.table {
            let gone = self.entries.swap_remove(i);
            if let Some((moved, _)) = self.entries.get(i) {
                self.index.insert(moved.clone(), i as u32);
            }
            gone
        } else {
            let gone = self.entries.remove(i);
            for (later, _) in &self.entries[i..] {
                *self.index.get_mut(later.as_slice()).expect("indexed") -= 1;
            }
            gone
        };
        self.bytes -= f.len() + v.len() + FIELD_OVERHEAD;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(h: &HashValue) -> Vec<String> {
        h.iter()
            .map(|(f, _)| String::from_utf8(f.as_slice().to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn a_listpack_keeps_insertion_order_through_removals() {
        let mut h = HashValue::default();
        for f in ["a", "b", "c", "d"] {
            assert!(h.set(f.as_bytes(), Stored::copy_from(b"v")));
        }
        assert!(!h.set(b"b", Stored::copy_from(b"longer")));
        assert!(h.remove(b"b"));
        assert!(!h.remove(b"b"));
        assert_eq!(fields(&h), ["a", "c", "d"]);
        assert_eq!(h.get(b"d").unwrap().as_slice(), b"v");
        assert_eq!(h.bytes(), 3 * (2 + FIELD_OVERHEAD));
        assert_eq!(h.encoding(), "listpack");
    }

    #[test]
    fn converts_to_a_table_as_redis_does_and_stays_consistent() {
        let mut h = HashValue::default();
        h.set(&[b'x'; 65], Stored::copy_from(b"v"));
        assert_eq!(h.encoding(), "hashtable");
        let mut h = HashValue::default();
        for i in 0..=LISTPACK_MAX_ENTRIES {
            assert_eq!(h.encoding(), "listpack");
            h.set(i.to_string().as_bytes(), Stored::copy_from(b"v"));
        }
        assert_eq!(h.encoding(), "hashtable");
        for i in (0..=LISTPACK_MAX_ENTRIES).step_by(3) {
            assert!(h.remove(i.to_string().as_bytes()));
        }
        for (i, (f, _)) in h.entries.iter().enumerate() {
            assert_eq!(h.index[f.as_slice()] as usize, i);
        }
        assert_eq!(h.encoding(), "hashtable", "never converted back");
    }
}
