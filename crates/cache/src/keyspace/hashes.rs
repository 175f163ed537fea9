//! The keyspace operations on hashes: one read ([`Keyspace::hash_read`]) and one write
//! ([`Keyspace::hash_write`]) that every hash command is made of, each one lock of the
//! key's shard (or the shard the keyspace holds). A write goes through the shard's
//! `modify` or `insert_as`, so it is charged, may evict, and marks the key's watchers
//! like a string write; a hash left empty is removed, as Redis removes it.

use super::{typed, Keyspace, WrongType};
use crate::hash::HashValue;

impl Keyspace<'_> {
    /// Calls `f` with `key`'s hash (`None`: no such key) while its shard is locked
    /// (counts a hit or a miss); a key holding a string is [`WrongType`].
    pub fn hash_read<R>(&mut self, key: &[u8], f: impl FnOnce(Option<&HashValue>) -> R) -> Result<R, WrongType> {
        self.typed_read(key, f)
    }

    /// Calls `f` to change `key`'s hash, an empty one if there is no such key; `f`
    /// answers its result and whether it changed the hash. A new hash is stored only if
    /// `f` left fields in it; a hash `f` leaves empty is removed. Keeps the key's
    /// deadline. A key holding a string is [`WrongType`], and `f` is not called.
    pub fn hash_write<R>(&mut self, key: &[u8], f: impl FnOnce(&mut HashValue) -> (R, bool)) -> Result<R, WrongType> {
        self.typed_write(key, f, typed::nobody_waits)
    }

    /// A random number from `key`'s shard (HRANDFIELD).
    pub fn random_for(&mut self, key: &[u8]) -> u64 {
        self.shard(key).random()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::cache::{Cache, CacheConfig, Expiry};
    use crate::hash::FIELD_OVERHEAD;
    use crate::keyspace::Access;
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

    #[test]
    fn a_hash_is_charged_for_its_fields_and_an_empty_one_is_gone() {
        let c = cache(0);
        let mut ks = Keyspace::new(&c);
        let set = |h: &mut HashValue, f: &str, v: &str| (h.set(f.as_bytes(), Stored::copy_from(v.as_bytes())), true);
        assert_eq!(ks.hash_write(b"h", |h| set(h, "a", "12345")), Ok(true));
        let one = 1 + ENTRY_OVERHEAD + (1 + 5 + FIELD_OVERHEAD) as u64;
        assert_eq!(bytes(&c), one);
        assert_eq!(ks.hash_write(b"h", |h| set(h, "bb", "1")), Ok(true));
        assert_eq!(bytes(&c), one + (2 + 1 + FIELD_OVERHEAD) as u64);
        assert_eq!(ks.hash_write(b"h", |h| set(h, "a", "")), Ok(false));
        assert_eq!(bytes(&c), one - 5 + (2 + 1 + FIELD_OVERHEAD) as u64);
        assert_eq!(ks.type_name(b"h", Access::Check), "hash");
        assert_eq!(
            ks.hash_write(b"h", |h| (h.remove(b"a") && h.remove(b"bb"), true)),
            Ok(true)
        );
        assert_eq!(ks.type_name(b"h", Access::Check), "none");
        assert_eq!(bytes(&c), 0, "the emptied hash was removed");
        // Nothing is stored for a write that leaves a new hash empty.
        assert_eq!(ks.hash_write(b"h", |h| (h.remove(b"a"), false)), Ok(false));
        assert_eq!((ks.type_name(b"h", Access::Check), bytes(&c)), ("none", 0));
        // Strings and hashes refuse each other.
        c.set(b"s", Bytes::from_static(b"v"), Expiry::Never);
        assert_eq!(ks.hash_write(b"s", |h| set(h, "a", "1")), Err(WrongType));
        assert_eq!(ks.hash_read(b"s", |h| h.is_some()), Err(WrongType));
        ks.hash_write(b"h", |h| set(h, "a", "1")).unwrap();
        assert_eq!(ks.get_str_with(b"h", |_| ()), Err(WrongType));
        assert_eq!(c.get(b"h"), None, "the public string API sees no string");
        assert_eq!(c.incr_by(b"h", 1), Err(crate::CacheError::WrongType));
        assert_eq!(c.append(b"h", b"x"), Err(crate::CacheError::WrongType));
    }

    #[test]
    fn a_growing_hash_evicts_other_keys_to_stay_in_bounds() {
        let c = cache(4096);
        for i in 0..10 {
            c.set(format!("k{i}").as_bytes(), Bytes::from(vec![b'v'; 100]), Expiry::Never);
        }
        let before = c.stats().total.evictions;
        let mut ks = Keyspace::new(&c);
        for i in 0..20 {
            let f = format!("field{i}");
            ks.hash_write(b"h", |h| (h.set(f.as_bytes(), Stored::copy_from(&[b'x'; 50])), true))
                .unwrap();
            assert!(bytes(&c) <= 4096, "over the bound after field {i}: {}", bytes(&c));
        }
        assert!(c.stats().total.evictions > before, "strings were evicted for the hash");
        assert_eq!(ks.hash_read(b"h", |h| h.map(HashValue::len)), Ok(Some(20)));
    }
}
