//! Reads and writes of one collection type under a key (a hash, a set, a list or a
//! sorted set: [`Collection`]), as every type's commands make them: one lock of the
//! key's shard (or the shard the keyspace holds), a key of another type is
//! [`WrongType`], a collection left empty is removed, a new one is stored only if it
//! has something in it, and a write goes through the shard's `modify`, `insert_as` or
//! `remove` (charged, may evict, marks the key's watchers).

use super::{Keyspace, WrongType};
use crate::shard::{Deadlines, Encoding, ShardState};
use crate::value::Collection;

impl Keyspace<'_> {
    /// Calls `f` with `key`'s `T` (`None`: no such key) while its shard is locked
    /// (counts a hit or a miss); a key holding another type is [`WrongType`].
    pub(crate) fn typed_read<T: Collection, R>(
        &mut self,
        key: &[u8],
        f: impl FnOnce(Option<&T>) -> R,
    ) -> Result<R, WrongType> {
        let now = self.now;
        let mut s = self.shard(key);
        let mut f = Some(f);
        let r = s.with_live(key, now, |e| match T::of(&e.value) {
            Some(c) => Ok((f.take().expect("called once"))(Some(c))),
            None => Err(WrongType),
        });
        s.count_read(r.is_some());
        match r {
            Some(r) => r,
            None => Ok((f.take().expect("not called yet"))(None)),
        }
    }

    /// Calls `f` to change `key`'s `T`, an empty one if there is no such key; `f`
    /// answers its result and whether it changed the value (then the key's watchers are
    /// marked). Keeps the key's deadline. `grown` is told, under the shard's lock, how
    /// many elements the write added (a list's blocked clients are signalled there). A
    /// key holding another type is [`WrongType`], and `f` is not called.
    pub(crate) fn typed_write<T: Collection, R>(
        &mut self,
        key: &[u8],
        f: impl FnOnce(&mut T) -> (R, bool),
        grown: impl FnOnce(&mut ShardState, &[u8], usize),
    ) -> Result<R, WrongType> {
        let now = self.now;
        let mut s = self.shard(key);
        let mut f = Some(f);
        let r = s.modify(key, now, |e| match T::of_mut(&mut e.value) {
            Some(c) => {
                let before = c.count();
                let (r, changed) = (f.take().expect("called once"))(c);
                (Ok((r, before, c.count())), changed)
            }
            None => (Err(WrongType), false),
        });
        match r {
            Some(Err(WrongType)) => Err(WrongType),
            Some(Ok((r, before, after))) => {
                if after == 0 {
                    s.remove(key, now);
                } else if after > before {
                    grown(&mut s, key, after - before);
                }
                Ok(r)
            }
            None => {
                let mut c = T::default();
                let (r, _) = (f.take().expect("not called yet"))(&mut c);
                let n = c.count();
                if n > 0 {
                    s.insert_as(key, c.into_value(), Deadlines::NONE, now, Encoding::Whole);
                    grown(&mut s, key, n);
                }
                Ok(r)
            }
        }
    }
}

impl Keyspace<'_> {
    /// Stores `value` under `key` whatever `key` held, without a deadline (Redis'
    /// `setKey`, as the *STORE commands do), or removes `key` if `value` is empty;
    /// answers its size. What it replaced is freed after the lock is released. `grown`
    /// is told, under the shard's lock, how many elements the key now holds.
    pub(crate) fn typed_store<T: Collection>(
        &mut self,
        key: &[u8],
        value: T,
        grown: impl FnOnce(&mut ShardState, &[u8], usize),
    ) -> usize {
        let now = self.now;
        let len = value.count();
        let mut s = self.shard(key);
        let old = if len == 0 {
            s.remove(key, now)
        } else {
            let old = s.insert_as(key, value.into_value(), Deadlines::NONE, now, Encoding::Whole);
            grown(&mut s, key, len);
            old
        };
        drop(s);
        drop(old);
        len
    }
}

/// For [`Keyspace::typed_write`] of a type nobody waits on.
pub(crate) fn nobody_waits(_: &mut ShardState, _: &[u8], _: usize) {}
