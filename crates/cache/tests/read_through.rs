//! Read-through on an injected clock and a fake store: coalescing, staleness,
//! drop-shard refill, failures, invalidation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use strata_cache::{Cache, CacheConfig, LoadError, LoadFuture, Loader, ManualClock, ReadThrough, ReadThroughConfig};
use tokio::sync::Semaphore;

/// A store namespace: a map, a count of loads, and an optional gate that holds every
/// load until the test opens it.
#[derive(Default)]
struct Store {
    data: Mutex<HashMap<Vec<u8>, Bytes>>,
    loads: AtomicUsize,
    gate: Option<Semaphore>,
    fail: Mutex<bool>,
    delay: Option<Duration>,
}

impl Store {
    fn gated() -> Store {
        Store {
            gate: Some(Semaphore::new(0)),
            ..Store::default()
        }
    }

    fn put(&self, k: &str, v: &str) {
        self.data
            .lock()
            .unwrap()
            .insert(k.as_bytes().to_vec(), Bytes::copy_from_slice(v.as_bytes()));
    }

    fn open(&self) {
        if let Some(g) = &self.gate {
            g.add_permits(Semaphore::MAX_PERMITS / 2);
        }
    }

    fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }
}

impl Loader for Store {
    fn load<'a>(&'a self, key: &'a [u8]) -> LoadFuture<'a> {
        Box::pin(async move {
            self.loads.fetch_add(1, Ordering::SeqCst);
            if let Some(g) = &self.gate {
                let _permit = g.acquire().await.map_err(|e| e.to_string())?;
            }
            if let Some(d) = self.delay {
                tokio::time::sleep(d).await;
            }
            if *self.fail.lock().unwrap() {
                return Err("store unavailable".to_string());
            }
            Ok(self.data.lock().unwrap().get(key).cloned())
        })
    }
}

fn setup(store: Store, shards: usize, config: ReadThroughConfig) -> (Arc<ManualClock>, Arc<Store>, Arc<ReadThrough>) {
    let clock = Arc::new(ManualClock::new());
    let cache = Arc::new(Cache::with_clock(
        CacheConfig {
            shards,
            ..CacheConfig::default()
        },
        clock.clone(),
    ));
    let store = Arc::new(store);
    let rt = ReadThrough::new(cache, store.clone(), config);
    (clock, store, rt)
}

fn policy(ttl: u64, stale: u64) -> ReadThroughConfig {
    ReadThroughConfig {
        ttl: Duration::from_secs(ttl),
        stale: Duration::from_secs(stale),
        ..ReadThroughConfig::default()
    }
}

/// Yields until `cond` holds (the spawned loads run on the same runtime).
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for: {what}"
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_misses_make_one_load() {
    let (_clock, store, rt) = setup(Store::gated(), 4, policy(60, 0));
    store.put("k", "v");
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let rt = rt.clone();
            tokio::spawn(async move { rt.get(b"k").await })
        })
        .collect();
    until("99 misses to join the first", || rt.stats().coalesced == 99).await;
    assert_eq!(store.loads(), 1);
    store.open();
    for t in tasks {
        assert_eq!(t.await.unwrap(), Ok(Some(Bytes::from_static(b"v"))));
    }
    assert_eq!(store.loads(), 1);
    let s = rt.stats();
    assert_eq!((s.loads, s.coalesced), (1, 99));
    // Now cached: no more loads.
    assert_eq!(rt.get(b"k").await, Ok(Some(Bytes::from_static(b"v"))));
    assert_eq!(store.loads(), 1);
    assert_eq!(rt.cache().stats().total.misses, 100);
}

#[tokio::test]
async fn stale_values_are_served_while_one_refresh_runs() {
    let (clock, store, rt) = setup(Store::gated(), 2, policy(10, 5));
    store.put("k", "v1");
    store.open();
    assert_eq!(rt.get(b"k").await.unwrap().unwrap(), "v1");
    store.put("k", "v2");
    // Fresh for 10 s: no load.
    clock.advance(Duration::from_secs(9));
    assert_eq!(rt.get(b"k").await.unwrap().unwrap(), "v1");
    assert_eq!(store.loads(), 1);
    // Hold the next load at the gate.
    store.gate.as_ref().unwrap().forget_permits(usize::MAX);
    // Stale (within 5 s past the TTL): answered at once with v1, and one refresh however
    // many reads come while it runs.
    clock.advance(Duration::from_secs(2));
    for _ in 0..10 {
        assert_eq!(
            rt.get(b"k").await.unwrap().unwrap(),
            "v1",
            "stale value served without waiting"
        );
        tokio::task::yield_now().await;
    }
    until("the refresh to start", || store.loads() == 2).await;
    let s = rt.stats();
    assert_eq!((s.stale_served, s.refreshes, s.loads), (10, 1, 2));
    store.open();
    until("the refresh to land", || rt.cache().get(b"k").as_deref() == Some(b"v2")).await;
    // The refreshed value is fresh for another 10 s.
    clock.advance(Duration::from_secs(9));
    assert_eq!(rt.get(b"k").await.unwrap().unwrap(), "v2");
    assert_eq!(store.loads(), 2);
}

#[tokio::test]
async fn past_the_staleness_bound_a_read_waits_for_the_store() {
    let (clock, store, rt) = setup(Store::default(), 2, policy(10, 5));
    store.put("k", "v1");
    rt.get(b"k").await.unwrap();
    store.put("k", "v2");
    clock.advance(Duration::from_secs(15));
    assert_eq!(
        rt.get(b"k").await.unwrap().unwrap(),
        "v2",
        "never older than ttl + stale"
    );
    assert_eq!(rt.stats().stale_served, 0);
    assert_eq!(store.loads(), 2);
}

#[tokio::test]
async fn zero_staleness_never_serves_stale() {
    let (clock, store, rt) = setup(Store::default(), 1, policy(10, 0));
    store.put("k", "v1");
    rt.get(b"k").await.unwrap();
    store.put("k", "v2");
    clock.advance(Duration::from_secs(10));
    assert_eq!(rt.get(b"k").await.unwrap().unwrap(), "v2");
}

#[tokio::test]
async fn a_failed_refresh_keeps_the_stale_value_until_its_bound() {
    let (clock, store, rt) = setup(Store::default(), 2, policy(10, 5));
    store.put("k", "v1");
    rt.get(b"k").await.unwrap();
    *store.fail.lock().unwrap() = true;
    clock.advance(Duration::from_secs(12));
    assert_eq!(rt.get(b"k").await.unwrap().unwrap(), "v1");
    until("the refresh to fail", || rt.stats().load_errors == 1).await;
    assert_eq!(rt.get(b"k").await.unwrap().unwrap(), "v1", "still within the bound");
    clock.advance(Duration::from_secs(3));
    assert_eq!(rt.get(b"k").await, Err(LoadError::Loader("store unavailable".into())));
}

#[tokio::test]
async fn a_refresh_that_finds_the_key_gone_removes_it() {
    let (clock, store, rt) = setup(Store::default(), 2, policy(10, 5));
    store.put("k", "v1");
    rt.get(b"k").await.unwrap();
    store.data.lock().unwrap().clear();
    clock.advance(Duration::from_secs(12));
    assert_eq!(rt.get(b"k").await.unwrap().unwrap(), "v1");
    until("the refresh to remove the key", || !rt.cache().exists(b"k")).await;
    assert_eq!(rt.get(b"k").await, Ok(None));
}

#[tokio::test]
async fn dropped_shard_refills_from_the_store_on_demand() {
    let (_clock, store, rt) = setup(Store::default(), 4, policy(600, 0));
    let keys: Vec<String> = (0..1000).map(|i| format!("user:{i}")).collect();
    for k in &keys {
        store.put(k, &format!("value of {k}"));
    }
    for k in &keys {
        rt.get(k.as_bytes()).await.unwrap();
    }
    assert_eq!(store.loads(), 1000);
    let cache = rt.cache().clone();
    let in_shard = keys.iter().filter(|k| cache.shard_of(k.as_bytes()) == 1).count();
    assert_eq!(cache.drop_shard(1), Ok(in_shard));
    for k in &keys {
        assert_eq!(rt.get(k.as_bytes()).await.unwrap().unwrap(), format!("value of {k}"));
    }
    assert_eq!(
        store.loads(),
        1000 + in_shard,
        "only the dropped shard's keys were loaded again"
    );
    assert_eq!(
        cache.stats().shards[1].keys as usize,
        in_shard,
        "the shard is full again"
    );
    for k in &keys {
        rt.get(k.as_bytes()).await.unwrap();
    }
    assert_eq!(store.loads(), 1000 + in_shard);
}

#[tokio::test]
async fn a_failed_load_fails_every_waiter_and_is_not_cached() {
    let (_clock, store, rt) = setup(Store::gated(), 2, policy(60, 0));
    store.put("k", "v");
    *store.fail.lock().unwrap() = true;
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let rt = rt.clone();
            tokio::spawn(async move { rt.get(b"k").await })
        })
        .collect();
    until("every miss to wait", || rt.stats().coalesced == 9).await;
    store.open();
    for t in tasks {
        assert_eq!(t.await.unwrap(), Err(LoadError::Loader("store unavailable".into())));
    }
    *store.fail.lock().unwrap() = false;
    assert_eq!(rt.get(b"k").await.unwrap().unwrap(), "v");
    assert_eq!(store.loads(), 2);
    assert_eq!(rt.stats().load_errors, 1);
}

#[tokio::test]
async fn missing_keys_are_not_cached() {
    let (_clock, store, rt) = setup(Store::default(), 2, policy(60, 0));
    assert_eq!(rt.get(b"nope").await, Ok(None));
    assert_eq!(rt.get(b"nope").await, Ok(None));
    assert_eq!(store.loads(), 2);
}

#[tokio::test]
async fn invalidate_stops_an_older_load_from_landing() {
    let (_clock, store, rt) = setup(Store::gated(), 2, policy(60, 0));
    store.put("k", "old");
    let reader = {
        let rt = rt.clone();
        tokio::spawn(async move { rt.get(b"k").await })
    };
    until("the load to start", || store.loads() == 1).await;
    // The store is written (the load may already have read "old"), then the cache told.
    store.put("k", "new");
    rt.invalidate(b"k");
    store.open();
    reader.await.unwrap().unwrap();
    assert_eq!(rt.cache().get(b"k"), None, "the detached load did not store its value");
    assert_eq!(rt.get(b"k").await.unwrap().unwrap(), "new");
}

#[tokio::test]
async fn a_caller_giving_up_does_not_cancel_the_load_for_others() {
    let (_clock, store, rt) = setup(Store::gated(), 2, policy(60, 0));
    store.put("k", "v");
    let first = {
        let rt = rt.clone();
        tokio::spawn(async move { rt.get(b"k").await })
    };
    until("the load to start", || store.loads() == 1).await;
    let second = {
        let rt = rt.clone();
        tokio::spawn(async move { rt.get(b"k").await })
    };
    until("the second miss to join", || rt.stats().coalesced == 1).await;
    first.abort();
    store.open();
    assert_eq!(second.await.unwrap().unwrap().unwrap(), "v");
    assert_eq!(store.loads(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_slow_load_times_out() {
    let store = Store {
        delay: Some(Duration::from_secs(60)),
        ..Store::default()
    };
    let config = ReadThroughConfig {
        load_timeout: Duration::from_secs(2),
        ..policy(60, 0)
    };
    let (_clock, store, rt) = setup(store, 2, config);
    store.put("k", "v");
    assert_eq!(rt.get(b"k").await, Err(LoadError::Timeout(Duration::from_secs(2))));
}
