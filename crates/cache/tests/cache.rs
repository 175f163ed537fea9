//! The cache's own semantics on an injected clock: TTLs, sliding expiry, conditions,
//! counters, drop-shard, and eviction under the memory bound.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use strata_cache::{
    Cache, CacheConfig, CacheError, Clock, Condition, ExpireCondition, Expiry, ManualClock, SetOptions, Ttl,
    ENTRY_OVERHEAD,
};

fn cache(shards: usize, max_bytes: u64) -> (Arc<ManualClock>, Cache) {
    let clock = Arc::new(ManualClock::new());
    let config = CacheConfig {
        shards,
        max_bytes,
        ..CacheConfig::default()
    };
    (clock.clone(), Cache::with_clock(config, clock))
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

#[test]
fn ttl_expires_on_the_injected_clock() {
    let (clock, c) = cache(4, 0);
    c.set(b"k", b("v"), Expiry::After(Duration::from_secs(10)));
    c.set(b"p", b("v"), Expiry::Never);
    assert_eq!(c.ttl(b"k"), Ttl::Remaining(Duration::from_secs(10)));
    assert_eq!(c.ttl(b"p"), Ttl::Persistent);
    assert_eq!(c.ttl(b"nope"), Ttl::Missing);
    clock.advance(Duration::from_millis(9_999));
    assert_eq!(c.get(b"k"), Some(b("v")));
    assert_eq!(c.ttl(b"k"), Ttl::Remaining(Duration::from_millis(1)));
    clock.advance(Duration::from_millis(1));
    assert_eq!(c.get(b"k"), None);
    assert!(!c.exists(b"k"));
    assert_eq!(c.get(b"p"), Some(b("v")));
    let t = c.stats().total;
    assert_eq!((t.keys, t.expires, t.expired), (1, 0, 1));
}

#[test]
fn sliding_expiry_restarts_on_each_read() {
    let (clock, c) = cache(2, 0);
    c.set(b"s", b("v"), Expiry::Sliding(Duration::from_secs(5)));
    for _ in 0..10 {
        clock.advance(Duration::from_secs(4));
        assert_eq!(c.get(b"s"), Some(b("v")), "each read within 5 s keeps it");
    }
    clock.advance(Duration::from_secs(5));
    assert_eq!(c.get(b"s"), None);
}

#[test]
fn expire_persist_and_conditions() {
    let (clock, c) = cache(2, 0);
    assert!(!c.expire(b"missing", Duration::from_secs(1)));
    c.set(b"k", b("v"), Expiry::Never);
    assert!(!c.expire_with(b"k", Expiry::After(Duration::from_secs(5)), ExpireCondition::IfSome));
    assert!(c.expire_with(b"k", Expiry::After(Duration::from_secs(5)), ExpireCondition::IfNone));
    assert!(!c.expire_with(b"k", Expiry::After(Duration::from_secs(9)), ExpireCondition::IfNone));
    assert!(!c.expire_with(b"k", Expiry::After(Duration::from_secs(1)), ExpireCondition::IfLater));
    assert!(c.expire_with(b"k", Expiry::After(Duration::from_secs(9)), ExpireCondition::IfLater));
    assert!(c.expire_with(b"k", Expiry::After(Duration::from_secs(2)), ExpireCondition::IfEarlier));
    assert_eq!(c.ttl(b"k"), Ttl::Remaining(Duration::from_secs(2)));
    assert!(c.persist(b"k"));
    assert!(!c.persist(b"k"));
    assert_eq!(c.stats().total.expires, 0);
    clock.advance(Duration::from_secs(60));
    assert_eq!(c.get(b"k"), Some(b("v")));
    // A deadline that is not in the future deletes the key.
    assert!(c.expire(b"k", Duration::ZERO));
    assert!(!c.exists(b"k"));
    // Absolute deadlines use the Unix clock.
    c.set(b"a", b("v"), Expiry::AtUnixMs(clock.unix_ms() + 3_000));
    assert_eq!(c.ttl(b"a"), Ttl::Remaining(Duration::from_secs(3)));
}

#[test]
fn set_conditions_keepttl_and_previous_value() {
    let (_clock, c) = cache(2, 0);
    let nx = SetOptions {
        expiry: Expiry::Never,
        condition: Condition::IfAbsent,
    };
    let xx = SetOptions {
        expiry: Expiry::Never,
        condition: Condition::IfPresent,
    };
    assert!(!c.set_with(b"k", b("1"), xx).stored);
    let first = c.set_with(b"k", b("1"), nx);
    assert!(first.stored && first.previous.is_none());
    let second = c.set_with(b"k", b("2"), nx);
    assert!(!second.stored);
    assert_eq!(second.previous, Some(b("1")));
    let third = c.set_with(b"k", b("3"), xx);
    assert!(third.stored);
    assert_eq!(third.previous, Some(b("1")));
    c.expire(b"k", Duration::from_secs(30));
    c.set_with(
        b"k",
        b("4"),
        SetOptions {
            expiry: Expiry::Keep,
            condition: Condition::Always,
        },
    );
    assert_eq!(c.ttl(b"k"), Ttl::Remaining(Duration::from_secs(30)));
    c.set(b"k", b("5"), Expiry::Never);
    assert_eq!(c.ttl(b"k"), Ttl::Persistent, "a plain set clears the deadline");
}

#[test]
fn incr_append_strlen_getdel() {
    let (_clock, c) = cache(2, 0);
    assert_eq!(c.incr_by(b"n", 5), Ok(5));
    assert_eq!(c.incr_by(b"n", -7), Ok(-2));
    c.set(b"n", b(&i64::MAX.to_string()), Expiry::Never);
    assert_eq!(c.incr_by(b"n", 1), Err(CacheError::Overflow));
    c.set(b"s", b("abc"), Expiry::Never);
    assert_eq!(c.incr_by(b"s", 1), Err(CacheError::NotAnInteger));
    c.set(b"s", b(" 1"), Expiry::Never);
    assert_eq!(c.incr_by(b"s", 1), Err(CacheError::NotAnInteger));
    assert_eq!(c.append(b"a", b"hello"), Ok(5));
    assert_eq!(c.append(b"a", b" world"), Ok(11));
    assert_eq!(c.strlen(b"a"), 11);
    assert_eq!(c.get_del(b"a"), Some(b("hello world")));
    assert_eq!(c.get_del(b"a"), None);
    assert_eq!(c.strlen(b"a"), 0);
}

#[test]
fn counters_and_bytes() {
    let (_clock, c) = cache(3, 0);
    c.set(b"key", b("value"), Expiry::Never);
    c.get(b"key");
    c.get(b"key");
    c.get(b"other");
    let t = c.stats().total;
    assert_eq!((t.hits, t.misses, t.keys), (2, 1, 1));
    assert_eq!(t.bytes, 3 + 5 + ENTRY_OVERHEAD);
    assert_eq!(c.stats().shards.len(), 3);
    c.delete(b"key");
    assert_eq!(c.stats().total.bytes, 0);
}

#[test]
fn drop_shard_empties_only_that_shard() {
    let (_clock, c) = cache(4, 0);
    for i in 0..1000 {
        c.set(format!("k{i}").as_bytes(), b("v"), Expiry::Never);
    }
    let before = c.stats();
    let victim = 2;
    let held = before.shards[victim].keys as usize;
    assert!(held > 100, "the ring spreads keys: {held}");
    assert_eq!(c.drop_shard(victim), Ok(held));
    let after = c.stats();
    assert_eq!(after.shards[victim].keys, 0);
    assert_eq!(after.shards[victim].bytes, 0);
    assert_eq!(after.shards[victim].drops, 1);
    assert_eq!(after.total.keys as usize, 1000 - held);
    for i in 0..1000 {
        let k = format!("k{i}");
        assert_eq!(c.get(k.as_bytes()).is_some(), c.shard_of(k.as_bytes()) != victim);
    }
    assert_eq!(c.drop_shard(4), Err(CacheError::NoSuchShard { shard: 4, last: 3 }));
}

#[test]
fn eviction_keeps_every_shard_under_its_bound() {
    let max = 200_000;
    let (clock, c) = cache(2, max);
    let value = Bytes::from(vec![b'x'; 100]);
    for i in 0..10_000 {
        clock.advance(Duration::from_millis(1));
        c.set(format!("key:{i:06}").as_bytes(), value.clone(), Expiry::Never);
    }
    let s = c.stats();
    for sh in &s.shards {
        assert!(sh.bytes <= sh.max_bytes, "shard over its bound: {sh:?}");
        assert!(sh.bytes > sh.max_bytes * 9 / 10, "shard evicted far too much: {sh:?}");
    }
    assert_eq!(s.total.max_bytes, max);
    let per_entry = 10 + 100 + ENTRY_OVERHEAD;
    assert_eq!(s.total.keys, s.total.bytes / per_entry);
    assert_eq!(s.total.evictions, 10_000 - s.total.keys);
}

#[test]
fn eviction_prefers_least_recently_used_keys() {
    let (clock, c) = cache(1, 100 * (8 + 10 + ENTRY_OVERHEAD));
    let value = Bytes::from(vec![b'x'; 10]);
    for i in 0..100 {
        clock.advance(Duration::from_millis(1));
        c.set(format!("old:{i:04}").as_bytes(), value.clone(), Expiry::Never);
    }
    // Read the first half again: they become the most recently used.
    for i in 0..50 {
        clock.advance(Duration::from_millis(1));
        c.get(format!("old:{i:04}").as_bytes());
    }
    for i in 0..50 {
        clock.advance(Duration::from_millis(1));
        c.set(format!("new:{i:04}").as_bytes(), value.clone(), Expiry::Never);
    }
    let survivors =
        |range: std::ops::Range<usize>| range.filter(|i| c.exists(format!("old:{i:04}").as_bytes())).count();
    let hot = survivors(0..50);
    let cold = survivors(50..100);
    assert!(
        hot > cold * 2,
        "recently read keys should survive eviction more: hot {hot}, cold {cold}"
    );
    assert_eq!(c.stats().total.evictions, 50);
}

#[test]
fn oversized_value_is_kept_alone_rather_than_evicting_itself() {
    let (_clock, c) = cache(1, 1_000);
    c.set(b"small", b("v"), Expiry::Never);
    c.set(b"big", Bytes::from(vec![0u8; 5_000]), Expiry::Never);
    assert!(c.exists(b"big"));
    assert!(!c.exists(b"small"));
}

#[test]
fn sweeping_removes_expired_keys_nobody_reads() {
    let (clock, c) = cache(2, 0);
    for i in 0..500 {
        c.set(
            format!("t{i}").as_bytes(),
            b("v"),
            Expiry::After(Duration::from_secs(1)),
        );
    }
    for i in 0..500 {
        c.set(format!("p{i}").as_bytes(), b("v"), Expiry::Never);
    }
    clock.advance(Duration::from_secs(2));
    let mut removed = 0;
    for _ in 0..200 {
        removed += c.sweep_expired(20);
    }
    assert!(removed > 400, "removed {removed}");
    let t = c.stats().total;
    assert_eq!(t.expired as usize, removed);
    assert_eq!(t.keys as usize, 1000 - removed);
}

#[tokio::test(start_paused = true)]
async fn the_sweeper_looks_at_an_empty_cache_once_a_second_and_at_others_ten_times() {
    let (clock, c) = cache(2, 0);
    let c = Arc::new(c);
    let every = Duration::from_millis(100);
    let token = tokio_util::sync::CancellationToken::new();
    let sweeper = tokio::spawn(strata_cache::run_sweeper(c.clone(), every, token.clone()));
    // Its first look finds the cache empty: the next is a second later.
    tokio::time::advance(Duration::from_millis(10)).await;
    for i in 0..10 {
        c.set(
            format!("t{i}").as_bytes(),
            b("v"),
            Expiry::After(Duration::from_secs(1)),
        );
    }
    clock.advance(Duration::from_secs(2));
    tokio::time::advance(Duration::from_millis(500)).await;
    assert_eq!(c.len(), 10, "swept before its second");
    // Then at `every` while it holds keys: the expired ones go within a few sweeps.
    tokio::time::advance(strata_cache::EMPTY_SWEEP_EVERY).await;
    for _ in 0..30 {
        if c.is_empty() {
            break;
        }
        tokio::time::advance(every).await;
    }
    assert!(c.is_empty(), "{} expired keys left", c.len());
    // A cache that holds a key is looked at ten times a second.
    tokio::time::advance(strata_cache::EMPTY_SWEEP_EVERY * 2).await;
    c.set(b"kept", b("v"), Expiry::Never);
    tokio::time::advance(strata_cache::EMPTY_SWEEP_EVERY).await;
    c.set(b"t", b("v"), Expiry::After(Duration::from_secs(1)));
    clock.advance(Duration::from_secs(2));
    let mut waited = Duration::ZERO;
    while c.len() > 1 && waited < Duration::from_secs(3) {
        tokio::time::advance(every).await;
        waited += every;
    }
    assert_eq!(c.len(), 1, "the expired key was not swept");
    assert!(waited < strata_cache::EMPTY_SWEEP_EVERY, "swept only after {waited:?}");
    token.cancel();
    sweeper.await.unwrap();
}

#[test]
fn concurrent_writers_keep_accounting_exact() {
    let (_clock, c) = cache(4, 0);
    let c = Arc::new(c);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let c = c.clone();
            std::thread::spawn(move || {
                for i in 0..5_000 {
                    let k = format!("k{}", (i * 7 + t) % 1_000);
                    match i % 4 {
                        0 => {
                            c.delete(k.as_bytes());
                        }
                        1 => {
                            c.append(k.as_bytes(), b"ab").expect("only strings here");
                        }
                        _ => c.set(k.as_bytes(), Bytes::from(vec![b'v'; i % 50]), Expiry::Never),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = c.stats();
    let mut bytes = 0;
    for i in 0..1_000 {
        let k = format!("k{i}");
        if let Some(v) = c.get(k.as_bytes()) {
            bytes += k.len() as u64 + v.len() as u64 + ENTRY_OVERHEAD;
        }
    }
    assert_eq!(s.total.bytes, bytes);
}
