//! The keyspace operations on hashes: one read ([`Keyspace::hash_read`]) and one write
//! ([`Keyspace::hash_write`]) that every hash command is made of, each one lock of the
//! key's shard (or the shard the keyspace holds). A write goes through the shard's
//! `modify` or `insert_as`, so it is charged, may evict, and marks the key's watchers
//! like a string write; a hash left empty is removed, as Redis removes it.

use super::{Keyspace, WrongType};
use crate::hash::HashValue;
use crate::shard::{Deadlines, Encoding, Value};

impl Keyspace<'_> {
    /// Calls `f` with `key`'s hash (`None`: no such key) while its shard is locked
    /// (counts a hit or a miss); a key holding a string is [`WrongType`].
    pub fn hash_read<R>(&mut self, key: &[u8], f: impl FnOnce(Option<&HashValue>) -> R) -> Result<R, WrongType> {
        let now = self.now;
        let mut s = self.shard(key);
        let mut f = Some(f);
        let r = s.with_live(key, now, |e| match &e.value {
            Value::Hash(h) => Ok((f.take().expect("called once"))(Some(h))),
            Value::Str(_) => Err(WrongType),
        });
        s.count_read(r.is_some());
        match r {
            Some(r) => r,
            None => Ok((f.take().expect("not called yet"))(None)),
        }
    }

    /// Calls `f` to change `key`'s hash, an empty one if there is no such key; `f`
    /// answers its result and whether it changed the hash. A new hash is stored only if
    /// `f` left fields in it; a hash `f` leaves empty is removed. Keeps the key's
    /// deadline. A key holding a string is [`WrongType`], and `f` is not called.
    pub fn hash_write<R>(
        &mut self,
        key: &[u8],
        f: impl FnOnce(&mut HashValue) -> (R, bool),
    ) -> Result<R, WrongType> {
        let now = self.now;
        let mut s = self.shard(key);
        let mut f = Some(f);
        let r = s.modify(key, now, |e| match &mut e.value {
            Value::Hash(h) => {
                let (r, changed) = (f.take().expect("called once"))(h);
                (Ok((r, h.is_empty())), changed)
            }
            Value::Str(_) => (Err(WrongType), false),
        });
        match r {
            Some(Err(WrongType)) => Err(WrongType),
            Some(Ok((r, empty))) => {
                if empty {
                    s.remove(key, now);
                }
                Ok(r)
            }
            None => {
                let mut h = HashValue::default();
                let (r, _) = (f.take().expect("not called yet"))(&mut h);
                if !h.is_empty() {
                    s.insert_as(key, Value::Hash(Box::new(h)), Deadlines::NONE, now, Encoding::Whole);
                }
                Ok(r)
            }
        }
    }

    /// A random number from `key`'s shard (HRANDFIELD).
    pub fn random_for(&mut self, key: &[u8]) -> u64 {
        self.shard(key).random()
    }
}
