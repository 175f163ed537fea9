use super::*;

fn put(s: &mut ShardState, k: &str, v: &str, now: u64) {
    s.insert(k.as_bytes(), Stored::copy_from(v.as_bytes()), Deadlines::NONE, now);
}

#[test]
fn accounting_follows_inserts_overwrites_and_removes() {
    let shard = Shard::new(0, 5, 7);
    let mut s = shard.lock();
    put(&mut s, "a", "12345", 0);
    assert_eq!(s.stats().bytes, charge(1, 5));
    put(&mut s, "a", "1", 0);
    assert_eq!(s.stats().bytes, charge(1, 1));
    put(&mut s, "bb", "", 0);
    assert_eq!(s.stats().bytes, charge(1, 1) + charge(2, 0));
    assert!(s.remove(b"a", 0).is_some());
    assert_eq!(s.stats().bytes, charge(2, 0));
    assert_eq!(s.stats().keys, 1);
    s.modify(b"bb", 0, |e| {
        e.value = Stored::copy_from(b"xyz").into();
        ((), true)
    });
    assert_eq!(s.stats().bytes, charge(2, 3));
}

#[test]
fn slots_stay_consistent_through_swap_removes() {
    let shard = Shard::new(0, 5, 7);
    let mut s = shard.lock();
    for i in 0..100 {
        put(&mut s, &format!("k{i}"), "v", 0);
    }
    for i in (0..100).step_by(3) {
        assert!(s.remove(format!("k{i}").as_bytes(), 0).is_some());
    }
    for (i, k) in s.keys.iter().enumerate() {
        assert_eq!(s.map[k].slot as usize, i);
    }
    assert_eq!(s.keys.len(), s.map.len());
}

/// SCAN's guarantee under every kind of change between its steps: random inserts,
/// deletions, expiries and evictions-like removals of other keys, in random order
/// with random step sizes. Every key present throughout is seen.
#[test]
fn a_scan_sees_every_key_present_throughout() {
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    for round in 0..200 {
        let shard = Shard::new(0, 5, round + 1);
        let mut s = shard.lock();
        let stable: Vec<String> = (0..next(300)).map(|i| format!("stable{i}")).collect();
        let mut volatile: Vec<String> = Vec::new();
        for k in &stable {
            put(&mut s, k, "v", 0);
            if next(2) == 0 {
                let v = format!("volatile{}", volatile.len());
                put(&mut s, &v, "v", 0);
                volatile.push(v);
            }
        }
        let mut seen = std::collections::HashSet::new();
        let mut end = s.len();
        let mut fresh = 0;
        loop {
            // Some changes to keys that are not stable.
            for _ in 0..next(6) {
                match next(3) {
                    0 => {
                        let v = format!("new{fresh}");
                        fresh += 1;
                        put(&mut s, &v, "v", 0);
                        volatile.push(v);
                    }
                    1 if !volatile.is_empty() => {
                        let v = volatile.swap_remove(next(volatile.len() as u64) as usize);
                        s.remove(v.as_bytes(), 0);
                    }
                    _ if !volatile.is_empty() => {
                        // Expires, found by the sampler or by a read.
                        let v = volatile.swap_remove(next(volatile.len() as u64) as usize);
                        s.remove_with(v.as_bytes(), Cause::Expired);
                    }
                    _ => {}
                }
            }
            let budget = 1 + next(10) as usize;
            let (at, _) = s.scan(end, budget, 0, |k| {
                seen.insert(String::from_utf8(k.to_vec()).unwrap());
            });
            if at == 0 {
                break;
            }
            end = at;
        }
        for k in &stable {
            assert!(seen.contains(k), "round {round}: {k} present throughout and never seen");
        }
    }
}

#[test]
fn scan_skips_and_removes_expired_keys() {
    let shard = Shard::new(0, 5, 7);
    let mut s = shard.lock();
    for i in 0..10 {
        let d = Deadlines {
            expires_at: if i % 2 == 0 { 5 } else { NEVER },
            ..Deadlines::NONE
        };
        s.insert(format!("k{i}").as_bytes(), Stored::copy_from(b"v"), d, 0);
    }
    let mut seen = Vec::new();
    let end = s.len();
    let (at, visited) = s.scan(end, 100, 10, |k| seen.push(k.to_vec()));
    assert_eq!((at, visited), (0, 10));
    assert_eq!(seen.len(), 5);
    assert_eq!(s.len(), 5, "the expired keys met were removed");
}

#[test]
fn watchers_are_marked_by_every_kind_of_change() {
    let shard = Shard::new(0, 5, 7);
    let mut s = shard.lock();
    type Change = Box<dyn Fn(&mut ShardState)>;
    let changes: Vec<(&str, Change)> = vec![
        ("insert", Box::new(|s| put(s, "k", "new", 0))),
        ("remove", Box::new(|s| assert!(s.remove(b"k", 0).is_some()))),
        ("clear", Box::new(|s| assert_eq!(s.clear(), 2))),
        ("deadline", Box::new(|s| assert!(s.set_deadline(b"k", 0, 100, 0)))),
        (
            "modify",
            Box::new(|s| assert!(s.modify(b"k", 0, |e| ((), e.value.charge() == 1)).is_some())),
        ),
        (
            "expiry",
            Box::new(|s| assert!(s.remove_with(b"k", Cause::Expired).is_some())),
        ),
    ];
    for (name, change) in changes {
        s.clear();
        put(&mut s, "k", "v", 0);
        put(&mut s, "other", "v", 0);
        let w = Arc::new(Watcher::default());
        assert!(s.watch(b"k", 0, &w));
        put(&mut s, "other", "w", 0);
        assert!(s.with_live(b"k", 0, |_| ()).is_some());
        assert!(!w.is_dirty(), "{name}: other keys and reads change nothing");
        change(&mut s);
        assert!(w.is_dirty(), "{name} marks the watcher");
        s.unwatch(b"k", &w);
        assert!(s.watched.is_empty());
    }
    // A flush marks only watchers of keys that were there.
    let w = Arc::new(Watcher::default());
    assert!(!s.watch(b"absent", 0, &w));
    s.clear();
    assert!(!w.is_dirty());
    // A key already expired when watched is gone: its removal is no change.
    let d = Deadlines {
        expires_at: 5,
        ..Deadlines::NONE
    };
    s.insert(b"e", Stored::copy_from(b"v"), d, 0);
    let w = Arc::new(Watcher::default());
    assert!(!s.watch(b"e", 10, &w), "expired: not live");
    s.clear();
    assert!(!w.is_dirty());
}

#[test]
fn expired_entries_are_removed_on_access() {
    let shard = Shard::new(0, 5, 7);
    let mut s = shard.lock();
    let d = Deadlines {
        expires_at: 100,
        ..Deadlines::NONE
    };
    s.insert(b"k", Stored::copy_from(b"v"), d, 0);
    assert_eq!(s.stats().expires, 1);
    assert!(s.with_live(b"k", 99, |_| ()).is_some());
    assert!(s.with_live(b"k", 100, |_| ()).is_none());
    let st = s.stats();
    assert_eq!((st.keys, st.expires, st.expired, st.bytes), (0, 0, 1, 0));
}
