//! The keyspace operations on sorted sets, as `sets` has them for sets: reads
//! ([`Keyspace::zset_read`]), a write in place ([`Keyspace::zset_write`]) and a whole
//! new value ([`Keyspace::zset_store`]: ZRANGESTORE, ZUNIONSTORE, ...). Each is one lock
//! of the key's shard, or uses the shard the keyspace holds (a command on several keys
//! holds them all). A write goes through the shard's `modify`, `insert_as` or `remove`,
//! so it is charged, may evict, and marks the key's watchers; a sorted set left empty is
//! removed, as Redis removes it. A write that adds members signals the clients blocked
//! on the key (BZPOPMIN & co., `blocking`) before its shard is released.

use super::{Keyspace, WrongType};
use crate::blocking::Kind;
use crate::zset::ZsetValue;

impl Keyspace<'_> {
    /// Calls `f` with `key`'s sorted set (`None`: no such key) while its shard is locked
    /// (counts a hit or a miss); a key holding another type is [`WrongType`].
    pub fn zset_read<R>(&mut self, key: &[u8], f: impl FnOnce(Option<&ZsetValue>) -> R) -> Result<R, WrongType> {
        self.typed_read(key, f)
    }

    /// Calls `f` to change `key`'s sorted set, an empty one if there is no such key; `f`
    /// answers its result and whether it changed the set (then the key's watchers are
    /// marked). A new sorted set is stored only if `f` left members in it; one `f`
    /// leaves empty is removed. Keeps the key's deadline. A key holding another type is
    /// [`WrongType`], and `f` is not called.
    pub fn zset_write<R>(&mut self, key: &[u8], f: impl FnOnce(&mut ZsetValue) -> (R, bool)) -> Result<R, WrongType> {
        self.typed_write(key, f, |s, key, n| s.blocked.signal(key, n, Kind::Zset))
    }

    /// Stores `z` under `key` whatever `key` held, without a deadline (Redis'
    /// `setKey`), or removes `key` if `z` is empty; answers its size.
    pub fn zset_store(&mut self, key: &[u8], z: ZsetValue) -> usize {
        self.typed_store(key, z, |s, key, n| s.blocked.signal(key, n, Kind::Zset))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::cache::{Cache, CacheConfig, Expiry};
    use crate::keyspace::Access;
    use crate::shard::ENTRY_OVERHEAD;
    use crate::stored::Stored;
    use crate::zset::{AddFlags, MEMBER_OVERHEAD};

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

    fn add(z: &mut ZsetValue, score: f64, member: &[u8]) -> bool {
        z.add(score, member, AddFlags::default()) != crate::zset::Added::Nop
    }

    #[test]
    fn a_sorted_set_is_charged_for_its_members_and_an_empty_one_is_gone() {
        let c = cache(0);
        let mut ks = Keyspace::new(&c);
        assert_eq!(ks.zset_write(b"z", |z| (add(z, 1.0, b"12345"), true)), Ok(true));
        let one = 1 + ENTRY_OVERHEAD + (5 + MEMBER_OVERHEAD) as u64;
        assert_eq!(bytes(&c), one);
        assert_eq!(
            (ks.type_name(b"z", Access::Check), ks.object(b"z").map(|o| o.0)),
            ("zset", Some("listpack"))
        );
        // A member longer than 64 bytes makes a skiplist, charged for its text.
        let long = [b'x'; 65];
        assert_eq!(ks.zset_write(b"z", |z| (add(z, 2.0, &long), true)), Ok(true));
        assert_eq!(bytes(&c), one + (65 + MEMBER_OVERHEAD) as u64);
        assert_eq!(ks.object(b"z").map(|o| o.0), Some("skiplist"));
        // A changed score costs nothing more.
        assert_eq!(ks.zset_write(b"z", |z| (add(z, 7.0, b"12345"), true)), Ok(true));
        assert_eq!(bytes(&c), one + (65 + MEMBER_OVERHEAD) as u64);
        assert_eq!(
            ks.zset_write(b"z", |z| (z.remove(b"12345") && z.remove(&long), true)),
            Ok(true)
        );
        assert_eq!(
            (ks.type_name(b"z", Access::Check), bytes(&c)),
            ("none", 0),
            "the emptied zset was removed"
        );
        // Nothing is stored for a write that leaves a new sorted set empty (ZADD XX).
        let xx = AddFlags {
            xx: true,
            ..AddFlags::default()
        };
        ks.zset_write(b"z", |z| (z.add(1.0, b"a", xx), false)).unwrap();
        assert_eq!((ks.type_name(b"z", Access::Check), bytes(&c)), ("none", 0));
        // WRONGTYPE both ways; a stored sorted set replaces a string, without its deadline.
        c.set(
            b"k",
            Bytes::from_static(b"v"),
            Expiry::After(std::time::Duration::from_secs(60)),
        );
        assert_eq!(ks.zset_write(b"k", |z| (add(z, 1.0, b"a"), true)), Err(WrongType));
        assert_eq!(ks.zset_read(b"k", |z| z.is_some()), Err(WrongType));
        let z = ZsetValue::collect([(1.0, Stored::copy_from(b"a")), (2.0, Stored::copy_from(b"b"))]);
        assert_eq!(ks.zset_store(b"k", z), 2);
        assert_eq!(ks.type_name(b"k", Access::Check), "zset");
        assert_eq!(
            ks.ttl(b"k", Access::Check),
            crate::Ttl::Persistent,
            "a stored zset has no deadline"
        );
        assert_eq!(bytes(&c), 1 + ENTRY_OVERHEAD + (2 + 2 * MEMBER_OVERHEAD) as u64);
        assert_eq!(ks.get_str_with(b"k", |_| ()), Err(WrongType));
        assert_eq!(c.get(b"k"), None, "the public string API sees no string");
        assert_eq!(ks.set_read(b"k", |_| ()), Err(WrongType));
        assert_eq!(ks.hash_read(b"k", |_| ()), Err(WrongType));
        // RENAME and COPY carry it whole.
        assert_eq!(ks.rename(b"k", b"k2", false), Ok(true));
        assert!(ks.copy(b"k2", b"k3", false));
        assert_eq!(ks.zset_read(b"k3", |z| z.map(ZsetValue::len)), Ok(Some(2)));
        assert_eq!(bytes(&c), 2 * (2 + ENTRY_OVERHEAD + (2 + 2 * MEMBER_OVERHEAD) as u64));
        assert_eq!(ks.zset_store(b"k2", ZsetValue::default()), 0);
        assert!(ks.delete(b"k3"));
        assert_eq!(bytes(&c), 0);
    }

    #[test]
    fn a_growing_sorted_set_evicts_other_keys_to_stay_in_bounds() {
        let c = cache(4096);
        for i in 0..10 {
            c.set(format!("k{i}").as_bytes(), Bytes::from(vec![b'v'; 100]), Expiry::Never);
        }
        let before = c.stats().total.evictions;
        let mut ks = Keyspace::new(&c);
        for i in 0..16 {
            let m = format!("member{i}-{}", "x".repeat(40));
            ks.zset_write(b"z", |z| (add(z, i as f64, m.as_bytes()), true)).unwrap();
            assert!(bytes(&c) <= 4096, "over the bound after member {i}: {}", bytes(&c));
        }
        assert!(c.stats().total.evictions > before, "strings were evicted for the zset");
        assert_eq!(ks.zset_read(b"z", |z| z.map(ZsetValue::len)), Ok(Some(16)));
        // A stored sorted set counts against the bound too.
        let members = (0..12).map(|i| (i as f64, Stored::copy_from(format!("{i:0>60}").as_bytes())));
        ks.zset_store(b"t", ZsetValue::collect(members));
        assert!(bytes(&c) <= 4096, "over the bound after a store: {}", bytes(&c));
    }

    #[test]
    fn a_sorted_set_expires_with_its_key() {
        let clock = std::sync::Arc::new(crate::ManualClock::new());
        let c = Cache::with_clock(
            CacheConfig {
                shards: 1,
                ..CacheConfig::default()
            },
            clock.clone(),
        );
        let mut ks = Keyspace::new(&c);
        ks.zset_write(b"z", |z| (add(z, 1.0, b"a"), true)).unwrap();
        assert!(ks.expire_with(
            b"z",
            Expiry::After(std::time::Duration::from_secs(5)),
            Default::default()
        ));
        drop(ks);
        clock.advance(std::time::Duration::from_secs(6));
        let mut ks = Keyspace::new(&c);
        assert_eq!(ks.zset_read(b"z", |z| z.is_none()), Ok(true));
        assert_eq!(bytes(&c), 0);
    }
}
