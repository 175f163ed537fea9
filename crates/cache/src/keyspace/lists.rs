//! The keyspace operations on lists: one read ([`Keyspace::list_read`]) and one write
//! ([`Keyspace::list_write`]) that every list command is made of, each one lock of the
//! key's shard (or the shard the keyspace holds). A write goes through the shard's
//! `modify` or `insert_as`, so it is charged, may evict, and marks the key's watchers;
//! a list left empty is removed, as Redis removes it. A write that adds elements
//! signals the clients blocked on the key (`blocking`) before its shard is released.

use std::sync::Arc;

use super::{Keyspace, WrongType};
use crate::blocking::{Kind, Waiter};
use crate::list::ListValue;

use crate::value::Value;

impl Keyspace<'_> {
    /// Calls `f` with `key`'s list (`None`: no such key) while its shard is locked
    /// (counts a hit or a miss); a key holding another type is [`WrongType`].
    pub fn list_read<R>(&mut self, key: &[u8], f: impl FnOnce(Option<&ListValue>) -> R) -> Result<R, WrongType> {
        self.typed_read(key, f)
    }

    /// The elements of `kind` at `key` (0: none, or another type), not counted as a
    /// read: what its blocked clients of that kind may take.
    pub fn waitable_len(&mut self, key: &[u8], kind: Kind) -> usize {
        let now = self.now;
        self.shard(key)
            .peek(key, now, |e| match (&e.value, kind) {
                (Value::List(l), Kind::List) => l.len(),
                (Value::Zset(z), Kind::Zset) => z.len(),
                _ => 0,
            })
            .unwrap_or(0)
    }

    /// Registers a blocked client on `key` (`blocking`).
    pub fn block(&mut self, key: &[u8], waiter: &Arc<Waiter>) {
        self.shard(key).blocked.register(key, waiter);
    }

    /// Takes a blocked client off `key`.
    pub fn unblock(&mut self, key: &[u8], waiter: &Arc<Waiter>) {
        self.shard(key).blocked.deregister(key, waiter);
    }

    /// `n` elements of `kind` are at `key` for its blocked clients.
    pub fn signal_blocked(&mut self, key: &[u8], n: usize, kind: Kind) {
        self.shard(key).blocked.signal(key, n, kind);
    }

    /// Calls `f` to change `key`'s list, an empty one if there is no such key; `f`
    /// answers its result and whether it changed the list. A new list is stored only
    /// if `f` left elements in it; a list `f` leaves empty is removed. Keeps the key's
    /// deadline. A key holding another type is [`WrongType`], and `f` is not called.
    pub fn list_write<R>(&mut self, key: &[u8], f: impl FnOnce(&mut ListValue) -> (R, bool)) -> Result<R, WrongType> {
        self.typed_write(key, f, |s, key, n| s.blocked.signal(key, n, Kind::List))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::cache::{Cache, CacheConfig, Expiry};
    use crate::keyspace::Access;
    use crate::list::{End, ELEMENT_OVERHEAD};
    use crate::shard::ENTRY_OVERHEAD;
    use crate::stored::Stored;

    fn cache(max_bytes: u64) -> Cache {
        Cache::new(CacheConfig {
            shards: 1,
            max_bytes,
            eviction_samples: 16,
            ..CacheConfig::default()
        })
    }

    fn bytes(c: &Cache) -> u64 {
        c.stats().total.bytes
    }

    fn push(l: &mut ListValue, v: &str) -> (usize, bool) {
        l.push(End::Right, Stored::copy_from(v.as_bytes()));
        (l.len(), true)
    }

    #[test]
    fn a_list_is_charged_for_its_elements_and_an_empty_one_is_gone() {
        let c = cache(0);
        let mut ks = Keyspace::new(&c);
        assert_eq!(ks.list_write(b"l", |l| push(l, "12345")), Ok(1));
        let one = 1 + ENTRY_OVERHEAD + (5 + ELEMENT_OVERHEAD) as u64;
        assert_eq!(bytes(&c), one);
        assert_eq!(ks.list_write(b"l", |l| push(l, "ab")), Ok(2));
        assert_eq!(bytes(&c), one + (2 + ELEMENT_OVERHEAD) as u64);
        assert_eq!(ks.type_name(b"l", Access::Check), "list");
        assert_eq!(ks.object(b"l").map(|o| o.0), Some("quicklist"));
        assert_eq!(
            ks.list_write(b"l", |l| (
                l.pop(End::Left).is_some() && l.pop(End::Left).is_some(),
                true
            )),
            Ok(true)
        );
        assert_eq!(
            (ks.type_name(b"l", Access::Check), bytes(&c)),
            ("none", 0),
            "the emptied list was removed"
        );
        // Nothing is stored for a write that leaves a new list empty.
        assert_eq!(ks.list_write(b"l", |l| (l.pop(End::Left).is_some(), false)), Ok(false));
        assert_eq!((ks.type_name(b"l", Access::Check), bytes(&c)), ("none", 0));
        // Strings, hashes and lists refuse each other.
        c.set(b"s", Bytes::from_static(b"v"), Expiry::Never);
        assert_eq!(ks.list_write(b"s", |l| push(l, "a")), Err(WrongType));
        assert_eq!(ks.list_read(b"s", |l| l.is_some()), Err(WrongType));
        ks.list_write(b"l", |l| push(l, "a")).unwrap();
        assert_eq!(ks.hash_read(b"l", |h| h.is_some()), Err(WrongType));
        assert_eq!(ks.get_str_with(b"l", |_| ()), Err(WrongType));
        assert_eq!(c.get(b"l"), None, "the public string API sees no string");
        assert_eq!(c.incr_by(b"l", 1), Err(crate::CacheError::WrongType));
    }

    #[test]
    fn a_growing_list_evicts_other_keys_to_stay_in_bounds() {
        let c = cache(4096);
        for i in 0..10 {
            c.set(format!("k{i}").as_bytes(), Bytes::from(vec![b'v'; 100]), Expiry::Never);
        }
        let before = c.stats().total.evictions;
        let mut ks = Keyspace::new(&c);
        for i in 0..20 {
            ks.list_write(b"l", |l| push(l, &"x".repeat(50))).unwrap();
            assert!(bytes(&c) <= 4096, "over the bound after element {i}: {}", bytes(&c));
        }
        assert!(c.stats().total.evictions > before, "strings were evicted for the list");
        assert_eq!(ks.list_read(b"l", |l| l.map(ListValue::len)), Ok(Some(20)));
    }

    #[test]
    fn pushes_renames_and_copies_signal_blocked_clients() {
        let c = cache(0);
        let keys = [&b"a"[..], b"b", b"c"];
        let blocked = |ks: &mut Keyspace<'_>| {
            let w = Arc::new(Waiter::new(Kind::List));
            keys.iter().for_each(|k| ks.block(k, &w));
            w
        };
        let mut ks = Keyspace::new(&c);
        let w = blocked(&mut ks);
        ks.list_write(b"x", |l| push(l, "1")).unwrap();
        assert!(!w.was_woken(), "another key");
        ks.list_write(b"a", |l| push(l, "1")).unwrap();
        assert!(w.was_woken());
        keys.iter().for_each(|k| ks.unblock(k, &w));
        for change in ["rename", "copy"] {
            let mut ks = Keyspace::holding(&c, &crate::keyspace::ShardSet::all(1));
            let w = blocked(&mut ks);
            if change == "rename" {
                ks.rename(b"x", b"b", false).unwrap();
            } else {
                ks.copy(b"a", b"c", false);
            }
            assert!(w.was_woken(), "{change}");
            keys.iter().for_each(|k| ks.unblock(k, &w));
        }
        assert_eq!(c.shards()[0].lock().blocked.registered(), 0);
    }
}
