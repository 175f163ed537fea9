//! The keyspace operations on sorted sets, as `sets` has them for sets: reads
//! ([`Keyspace::zset_read`]), a write in place ([`Keyspace::zset_write`]) and a whole new value ([`Keyspace::zset_store`]:
//! ZRANGESTORE, ZUNIONSTORE, ...). Each is one lock of the key's shard, or uses the shard
//! the keyspace holds (a command on several keys holds them all). A write goes through
//! the shard's `modify`, `insert_as` or `remove`, so it is charged, may evict, and marks
//! the key's watchers; a sorted set left empty is removed, as Redis removes it.

use super::{Keyspace, WrongType};
use crate::shard::{Deadlines, Encoding};
use crate::value::Value;
use crate::zset::ZsetValue;

impl Keyspace<'_> {
    /// Calls `f` with `key`'s sorted set (`None`: no such key) while its shard is locked
    /// (counts a hit or a miss); a key holding another type is [`WrongType`].
    pub fn zset_read<R>(&mut self, key: &[u8], f: impl FnOnce(Option<&ZsetValue>) -> R) -> Result<R, WrongType> {
        let now = self.now;
        let mut s = self.shard(key);
        let mut f = Some(f);
        let r = s.with_live(key, now, |e| match &e.value {
            Value::Zset(z) => Ok((f.take().expect("called once"))(Some(z))),
            _ => Err(WrongType),
        });
        s.count_read(r.is_some());
        match r {
            Some(r) => r,
            None => Ok((f.take().expect("not called yet"))(None)),
        }
    }

    /// Calls `f` to change `key`'s sorted set, an empty one if there is no such key; `f`
    /// answers its result and whether it changed the set (then the key's watchers are
    /// marked). A new sorted set is stored only if `f` left members in it; a sorted set `f` leaves
    /// empty is removed. Keeps the key's deadline. A key holding another type is
    /// [`WrongType`], and `f` is not called.
    pub fn zset_write<R>(&mut self, key: &[u8], f: impl FnOnce(&mut ZsetValue) -> (R, bool)) -> Result<R, WrongType> {
        let now = self.now;
        let mut s = self.shard(key);
        let mut f = Some(f);
        let r = s.modify(key, now, |e| match &mut e.value {
            Value::Zset(z) => {
                let (r, changed) = (f.take().expect("called once"))(z);
                (Ok((r, z.is_empty())), changed)
            }
            _ => (Err(WrongType), false),
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
                let mut z = ZsetValue::default();
                let (r, _) = (f.take().expect("not called yet"))(&mut z);
                if !z.is_empty() {
                    s.insert_as(key, Value::Zset(Box::new(z)), Deadlines::NONE, now, Encoding::Whole);
                }
                Ok(r)
            }
        }
    }

    /// Stores `z` under `key` whatever `key` held, without a deadline (Redis'
    /// `setKey`), or removes `key` if `z` is empty; answers its size.
    pub fn zset_store(&mut self, key: &[u8], z: ZsetValue) -> usize {
        let now = self.now;
        let len = z.len();
        let mut s = self.shard(key);
        let old = if len == 0 {
            s.remove(key, now)
        } else {
            s.insert_as(key, Value::Zset(Box::new(z)), Deadlines::NONE, now, Encoding::Whole)
        };
        // Freed after the lock is released.
        drop(s);
        drop(old);
        len
    }
}
