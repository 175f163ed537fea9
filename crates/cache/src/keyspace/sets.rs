//! The keyspace operations on sets: reads ([`Keyspace::set_read`], and
//! [`Keyspace::set_peek`] which counts no read), a write in place
//! ([`Keyspace::set_write`]) and a whole new value ([`Keyspace::set_store`], the *STORE
//! commands). Each is one lock of the key's shard, or uses the shard the keyspace holds:
//! a command on several sets (SINTER, SMOVE, ...) holds them all and makes several of
//! these. A write goes through the shard's `modify`, `insert_as` or `remove`, so it is
//! charged, may evict, and marks the key's watchers; a set left empty is removed, as Redis
//! removes it.

use super::{typed, Keyspace, WrongType};
use crate::set::SetValue;
use crate::value::Value;

impl Keyspace<'_> {
    /// Calls `f` with `key`'s set (`None`: no such key) while its shard is locked
    /// (counts a hit or a miss); a key holding another type is [`WrongType`].
    pub fn set_read<R>(&mut self, key: &[u8], f: impl FnOnce(Option<&SetValue>) -> R) -> Result<R, WrongType> {
        self.typed_read(key, f)
    }

    /// [`Keyspace::set_read`] as a write command looks a key up: no read counted, no
    /// recency.
    pub fn set_peek<R>(&mut self, key: &[u8], f: impl FnOnce(Option<&SetValue>) -> R) -> Result<R, WrongType> {
        let now = self.now;
        let mut f = Some(f);
        let r = self.shard(key).peek(key, now, |e| match &e.value {
            Value::Set(set) => Ok((f.take().expect("called once"))(Some(set))),
            _ => Err(WrongType),
        });
        match r {
            Some(r) => r,
            None => Ok((f.take().expect("not called yet"))(None)),
        }
    }

    /// Calls `f` to change `key`'s set, an empty one if there is no such key; `f`
    /// answers its result and whether it changed the set (then the key's watchers are
    /// marked). A new set is stored only if `f` left members in it; a set `f` leaves
    /// empty is removed. Keeps the key's deadline. A key holding another type is
    /// [`WrongType`], and `f` is not called.
    pub fn set_write<R>(&mut self, key: &[u8], f: impl FnOnce(&mut SetValue) -> (R, bool)) -> Result<R, WrongType> {
        self.typed_write(key, f, typed::nobody_waits)
    }

    /// Stores `set` under `key` whatever `key` held, without a deadline (Redis'
    /// `setKey`), or removes `key` if `set` is empty; answers the set's size.
    pub fn set_store(&mut self, key: &[u8], set: SetValue) -> usize {
        self.typed_store(key, set, typed::nobody_waits)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::cache::{Cache, CacheConfig, Expiry};
    use crate::keyspace::Access;
    use crate::set::{INTSET_MEMBER_OVERHEAD, TABLE_MEMBER_OVERHEAD};
    use crate::shard::ENTRY_OVERHEAD;

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

    #[test]
    fn a_set_is_charged_for_its_members_and_an_empty_one_is_gone() {
        let c = cache(0);
        let mut ks = Keyspace::new(&c);
        assert_eq!(ks.set_write(b"s", |s| (s.add(b"12345"), true)), Ok(true));
        let one = 1 + ENTRY_OVERHEAD + (5 + INTSET_MEMBER_OVERHEAD) as u64;
        assert_eq!(bytes(&c), one);
        assert_eq!(ks.object(b"s").map(|o| o.0), Some("intset"));
        // A member that is no integer makes it a hash table, charged as one.
        assert_eq!(ks.set_write(b"s", |s| (s.add(b"ab"), true)), Ok(true));
        assert_eq!(
            bytes(&c),
            1 + ENTRY_OVERHEAD + (5 + 2 + 2 * TABLE_MEMBER_OVERHEAD) as u64
        );
        assert_eq!(
            (ks.type_name(b"s", Access::Check), ks.object(b"s").map(|o| o.0)),
            ("set", Some("hashtable"))
        );
        assert_eq!(
            ks.set_write(b"s", |s| (s.remove(b"12345") && s.remove(b"ab"), true)),
            Ok(true)
        );
        assert_eq!(
            (ks.type_name(b"s", Access::Check), bytes(&c)),
            ("none", 0),
            "the emptied set was removed"
        );
        // Nothing is stored for a write that leaves a new set empty.
        assert_eq!(ks.set_write(b"s", |s| (s.remove(b"a"), false)), Ok(false));
        assert_eq!((ks.type_name(b"s", Access::Check), bytes(&c)), ("none", 0));
        // A stored set replaces a string; an empty one removes the key.
        c.set(
            b"k",
            Bytes::from_static(b"v"),
            Expiry::After(std::time::Duration::from_secs(60)),
        );
        assert_eq!(ks.set_write(b"k", |s| (s.add(b"1"), true)), Err(WrongType));
        assert_eq!(ks.set_read(b"k", |s| s.is_some()), Err(WrongType));
        assert_eq!(ks.set_store(b"k", SetValue::collect([&b"1"[..], b"2"])), 2);
        assert_eq!(ks.type_name(b"k", Access::Check), "set");
        assert_eq!(
            ks.ttl(b"k", Access::Check),
            crate::Ttl::Persistent,
            "a stored set has no deadline"
        );
        assert_eq!(bytes(&c), 1 + ENTRY_OVERHEAD + (2 + 2 * INTSET_MEMBER_OVERHEAD) as u64);
        assert_eq!(ks.get_str_with(b"k", |_| ()), Err(WrongType));
        assert_eq!(c.get(b"k"), None, "the public string API sees no string");
        assert_eq!(c.incr_by(b"k", 1), Err(crate::CacheError::WrongType));
        assert_eq!(ks.hash_read(b"k", |_| ()), Err(WrongType));
        assert_eq!(ks.set_store(b"k", SetValue::default()), 0);
        assert_eq!((ks.type_name(b"k", Access::Check), bytes(&c)), ("none", 0));
    }

    #[test]
    fn a_growing_set_evicts_other_keys_to_stay_in_bounds() {
        let c = cache(4096);
        for i in 0..10 {
            c.set(format!("k{i}").as_bytes(), Bytes::from(vec![b'v'; 100]), Expiry::Never);
        }
        let before = c.stats().total.evictions;
        let mut ks = Keyspace::new(&c);
        for i in 0..20 {
            let m = format!("member{i}-{}", "x".repeat(40));
            ks.set_write(b"s", |s| (s.add(m.as_bytes()), true)).unwrap();
            assert!(bytes(&c) <= 4096, "over the bound after member {i}: {}", bytes(&c));
        }
        assert!(c.stats().total.evictions > before, "strings were evicted for the set");
        assert_eq!(ks.set_read(b"s", |s| s.map(SetValue::len)), Ok(Some(20)));
        // A stored set counts against the bound too.
        let members: Vec<String> = (0..15).map(|i| format!("{i:0>60}")).collect();
        ks.set_store(b"t", SetValue::collect(members.iter().map(String::as_bytes)));
        assert!(bytes(&c) <= 4096, "over the bound after a store: {}", bytes(&c));
    }
}
