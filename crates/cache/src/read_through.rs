//! Read-through: a [`Cache`] in front of a store, loading misses through a [`Loader`].
//!
//! - **Coalescing**: concurrent misses of one key share one load (a *flight*); the
//!   first miss starts it, the others wait for its result.
//! - **Staleness**: a loaded value is fresh for `ttl`, then servable stale for `stale`
//!   more. A read of a stale value returns it at once and starts one background refresh
//!   (joined by any other read of the key meanwhile). Past the staleness bound the value
//!   is gone and the next read waits for a load.
//! - Loads run in their own tokio task, so a caller that gives up (its future dropped)
//!   does not cancel the load for the others waiting on it.
//! - [`ReadThrough::invalidate`] (after a write to the store) removes the cached value
//!   and detaches any load in flight, so a load that started before the write never
//!   stores its older value.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use crate::cache::{Cache, Lookup};

/// The future returned by [`Loader::load`].
pub type LoadFuture<'a> = Pin<Box<dyn Future<Output = Result<Option<Bytes>, String>> + Send + 'a>>;

/// Where a read-through cache loads what it misses from (a store namespace).
///
/// `Ok(None)`: the store has no such key (nothing is cached). `Err(message)`: the load
/// failed; the message is passed to every caller waiting on it.
pub trait Loader: Send + Sync + 'static {
    fn load<'a>(&'a self, key: &'a [u8]) -> LoadFuture<'a>;
}

/// The cache key under which the read-through cache `name` keeps the store's `key`.
pub fn read_through_key(name: &str, key: &str) -> String {
    format!("rt:{name}:{key}")
}

/// Freshness of loaded values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadThroughConfig {
    /// How long a loaded value is served without asking the store again.
    pub ttl: Duration,
    /// The staleness bound: how long after `ttl` the value may still be served while one
    /// refresh runs (zero: never serve stale).
    pub stale: Duration,
    /// A load taking longer fails its waiters with [`LoadError::Timeout`].
    pub load_timeout: Duration,
}

impl Default for ReadThroughConfig {
    fn default() -> Self {
        ReadThroughConfig {
            ttl: Duration::from_secs(60),
            stale: Duration::ZERO,
            load_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a read-through get has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("loading from the store failed: {0}")]
    Loader(String),
    #[error("loading from the store took longer than {0:?}")]
    Timeout(Duration),
    #[error("the load ended without a result (its task panicked or the runtime is shutting down)")]
    Abandoned,
}

/// Counters of a [`ReadThrough`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadThroughStats {
    /// Loads started (misses and refreshes).
    pub loads: u64,
    /// Misses that joined a load already in flight instead of starting one.
    pub coalesced: u64,
    /// Reads answered with a stale value.
    pub stale_served: u64,
    /// Background refreshes started.
    pub refreshes: u64,
    /// Loads that failed or timed out.
    pub load_errors: u64,
}

type Outcome = Option<Result<Option<Bytes>, LoadError>>;

struct Flight {
    id: u64,
    done: watch::Sender<Outcome>,
}

#[derive(Default)]
struct Counters {
    loads: AtomicU64,
    coalesced: AtomicU64,
    stale_served: AtomicU64,
    refreshes: AtomicU64,
    load_errors: AtomicU64,
}

/// A cache in front of a store namespace.
pub struct ReadThrough {
    cache: Arc<Cache>,
    loader: Arc<dyn Loader>,
    config: ReadThroughConfig,
    flights: Mutex<HashMap<Bytes, Arc<Flight>>>,
    next_id: AtomicU64,
    counters: Counters,
}

impl ReadThrough {
    pub fn new(cache: Arc<Cache>, loader: Arc<dyn Loader>, config: ReadThroughConfig) -> Arc<ReadThrough> {
        Arc::new(ReadThrough {
            cache,
            loader,
            config,
            flights: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            counters: Counters::default(),
        })
    }

    pub fn cache(&self) -> &Arc<Cache> {
        &self.cache
    }

    pub fn config(&self) -> &ReadThroughConfig {
        &self.config
    }

    /// The value of `key`: from the cache when fresh (or stale within the bound, starting
    /// a refresh), else loaded from the store, one load however many callers miss at once.
    /// Must be called within a tokio runtime (loads are spawned on it).
    pub async fn get(self: &Arc<Self>, key: &[u8]) -> Result<Option<Bytes>, LoadError> {
        match self.cache.lookup(key) {
            Lookup::Fresh(v) => Ok(Some(v)),
            Lookup::Stale(v) => {
                self.counters.stale_served.fetch_add(1, Ordering::Relaxed);
                self.flight(key, true);
                Ok(Some(v))
            }
            Lookup::Miss => {
                let mut done = self.flight(key, false);
                let outcome = match done.wait_for(|o| o.is_some()).await {
                    Ok(outcome) => outcome.clone().unwrap_or(Err(LoadError::Abandoned)),
                    Err(_) => Err(LoadError::Abandoned),
                };
                outcome
            }
        }
    }

    /// Forgets `key` (call it after the store's value changed): the next read loads it
    /// again, and a load already in flight will not store its result.
    pub fn invalidate(&self, key: &[u8]) {
        let mut flights = self.lock_flights();
        flights.remove(key);
        self.cache.delete(key);
    }

    pub fn stats(&self) -> ReadThroughStats {
        let c = &self.counters;
        ReadThroughStats {
            loads: c.loads.load(Ordering::Relaxed),
            coalesced: c.coalesced.load(Ordering::Relaxed),
            stale_served: c.stale_served.load(Ordering::Relaxed),
            refreshes: c.refreshes.load(Ordering::Relaxed),
            load_errors: c.load_errors.load(Ordering::Relaxed),
        }
    }

    fn lock_flights(&self) -> MutexGuard<'_, HashMap<Bytes, Arc<Flight>>> {
        self.flights.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Joins the flight loading `key`, or starts one.
    fn flight(self: &Arc<Self>, key: &[u8], refresh: bool) -> watch::Receiver<Outcome> {
        let mut flights = self.lock_flights();
        if let Some(f) = flights.get(key) {
            if !refresh {
                self.counters.coalesced.fetch_add(1, Ordering::Relaxed);
            }
            return f.done.subscribe();
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(None);
        let key = Bytes::copy_from_slice(key);
        let flight = Arc::new(Flight { id, done: tx });
        flights.insert(key.clone(), flight.clone());
        drop(flights);
        self.counters.loads.fetch_add(1, Ordering::Relaxed);
        if refresh {
            self.counters.refreshes.fetch_add(1, Ordering::Relaxed);
        }
        let this = self.clone();
        tokio::spawn(async move {
            let mut landing = Landing {
                rt: &this,
                key: &key,
                flight: &flight,
                outcome: None,
            };
            let result = match tokio::time::timeout(this.config.load_timeout, this.loader.load(&key)).await {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) => Err(LoadError::Loader(e)),
                Err(_) => Err(LoadError::Timeout(this.config.load_timeout)),
            };
            landing.outcome = Some(result);
        });
        rx
    }
}

/// Lands a flight when dropped: stores the value (if the flight is still the key's),
/// removes the flight, and wakes its waiters. Being a drop guard, it also lands a flight
/// whose loader panicked, as [`LoadError::Abandoned`].
struct Landing<'a> {
    rt: &'a ReadThrough,
    key: &'a Bytes,
    flight: &'a Flight,
    outcome: Option<Result<Option<Bytes>, LoadError>>,
}

impl Drop for Landing<'_> {
    fn drop(&mut self) {
        let outcome = self.outcome.take().unwrap_or(Err(LoadError::Abandoned));
        if let Err(e) = &outcome {
            self.rt.counters.load_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, key = %String::from_utf8_lossy(self.key), "cache load failed");
        }
        {
            let mut flights = self.rt.lock_flights();
            if flights.get(self.key).is_some_and(|f| f.id == self.flight.id) {
                match &outcome {
                    Ok(Some(v)) => {
                        self.rt
                            .cache
                            .put_loaded(self.key, v.clone(), self.rt.config.ttl, self.rt.config.stale)
                    }
                    // Gone from the store: do not keep serving a stale copy.
                    Ok(None) => {
                        self.rt.cache.delete(self.key);
                    }
                    // A failed refresh leaves the stale value to its deadline.
                    Err(_) => {}
                }
                flights.remove(self.key);
            }
        }
        self.flight.done.send_replace(Some(outcome));
    }
}
