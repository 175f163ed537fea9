//! [`Keyspace`]: the cache's keys as one command sees them, and every operation on them
//! (the semantics of Redis' string and key commands, in Rust types).
//!
//! # Atomicity
//!
//! A keyspace either locks the shard of each operation for that operation only (what a
//! single-key command needs: one lock, as before transactions existed), or holds a set
//! of shards, locked once in ascending shard order, until it is dropped. A command whose
//! keys may live on several shards (MGET, MSET, DEL, RENAME, ...) and a keyspace-wide one
//! (KEYS, FLUSHDB, DBSIZE, RANDOMKEY) holds all the shards it touches for its whole run,
//! and so does EXEC for the shards of every queued command and every watched key. That
//! is two-phase locking: every command, and every transaction, is atomic and serialisable
//! with respect to all others, and since every holder takes its locks in the same order
//! no two of them can deadlock. A lone GET or SET pays exactly what it paid before: one
//! lock of one shard.
//!
//! The alternative, a cache-wide reader-writer lock that every command takes shared and
//! EXEC exclusive, would put one more contended atomic (shared by every worker thread) on
//! every command and stop the whole cache for each transaction; locking only the shards
//! involved costs single-key commands nothing and lets transactions on different shards
//! run side by side.
//!
//! Time is read once, when the keyspace is made, before any lock is taken: all the
//! commands of a transaction see the same "now", as they would if they ran in no time.
//!
//! Here: the type, its locking, reads, whole-value writes, deadlines, RENAME and COPY;
//! `values`: the operations that change a value in place (INCR, APPEND, SETRANGE,
//! SETBIT, ...); `typed`: the read and write every collection type's commands make;
//! `hashes`: reads and writes of hashes; `sets`: of sets; `lists`: of
//! lists (and the signal to blocked clients); `zsets`: of sorted sets; `whole`: those
//! on every shard (KEYS, SCAN, FLUSHDB, ...) and WATCH.

use std::ops::{Deref, DerefMut};
use std::sync::MutexGuard;
use std::time::Duration;

use bytes::Bytes;

use crate::cache::{Cache, Condition, Expiry, SetOptions, SetOutcome, Ttl};
use crate::shard::{Deadlines, Entry, ShardState, NEVER};
use crate::stored::Stored;
use crate::value::Value;

mod hashes;
mod lists;
mod sets;
mod typed;
mod values;
mod whole;
mod zsets;

/// How a key is looked up, and so whether it counts in INFO's `keyspace_hits` / `keyspace_misses`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// A command reading the key (EXISTS, TYPE, TTL, SCAN's TYPE filter, ...): a hit if
    /// it is live, else a miss, as Redis' `lookupKeyRead` counts them.
    Read,
    /// A check on the way to something else (a destination's existence, a type checked
    /// before a read that counts itself): not counted, as Redis' lookups for writing
    /// are not.
    Check,
}

/// A set of shards, by number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ShardSet(Vec<bool>);

impl ShardSet {
    pub fn new(shards: usize) -> ShardSet {
        ShardSet(vec![false; shards])
    }

    pub fn all(shards: usize) -> ShardSet {
        ShardSet(vec![true; shards])
    }

    pub fn insert(&mut self, shard: usize) {
        self.0[shard] = true;
    }

    pub fn insert_all(&mut self) {
        self.0.iter_mut().for_each(|s| *s = true);
    }

    fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().filter(|(_, &on)| on).map(|(i, _)| i)
    }
}

/// Which deadline GETEX sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GetEx {
    /// None: GETEX is GET.
    Keep,
    /// Clear it (`PERSIST`).
    Persist,
    /// This Unix time in ms (`EX`, `PX`, `EXAT`, `PXAT`, converted); one not in the
    /// future deletes the key.
    AtUnixMs(i64),
}

/// EXPIRE's conditions (Redis 7's `NX`, `XX`, `GT`, `LT`; `XX` combines with `GT` or
/// `LT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ExpireFlags {
    pub nx: bool,
    pub xx: bool,
    pub gt: bool,
    pub lt: bool,
}

/// A key's deadline as an absolute time (EXPIRETIME).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deadline {
    Missing,
    Persistent,
    AtUnixMs(u64),
}

/// Why INCRBYFLOAT refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FloatError {
    /// The key's value is not a number.
    NotAFloat,
    /// The sum is infinite or not a number.
    NotFinite,
    /// The key holds another type.
    WrongType,
}

/// Why APPEND or SETRANGE refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StringError {
    /// The value would grow past the largest allowed (`proto-max-bulk-len`).
    TooLong,
    /// The key holds another type.
    WrongType,
}

/// The key holds a value of another type than the command works on (Redis'
/// WRONGTYPE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WrongType;

/// RENAME of a key that does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NoSuchKey;

/// What a write does to a key holding another type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnOtherType {
    Replace,
    Refuse,
}

/// The keys of a cache as one command sees them (see the module documentation).
pub(crate) struct Keyspace<'a> {
    cache: &'a Cache,
    now: u64,
    /// The shards held, indexed by shard number; None: each operation locks its own.
    held: Option<Vec<Option<MutexGuard<'a, ShardState>>>>,
}

/// One shard, locked for one operation or held by the keyspace.
enum Guard<'g, 'a> {
    Own(MutexGuard<'a, ShardState>),
    Held(&'g mut ShardState),
}

impl Deref for Guard<'_, '_> {
    type Target = ShardState;
    fn deref(&self) -> &ShardState {
        match self {
            Guard::Own(g) => g,
            Guard::Held(s) => s,
        }
    }
}

impl DerefMut for Guard<'_, '_> {
    fn deref_mut(&mut self) -> &mut ShardState {
        match self {
            Guard::Own(g) => g,
            Guard::Held(s) => s,
        }
    }
}

impl<'a> Keyspace<'a> {
    /// A keyspace whose operations lock their own shard.
    pub fn new(cache: &'a Cache) -> Keyspace<'a> {
        Keyspace {
            cache,
            now: cache.clock().now_ms(),
            held: None,
        }
    }

    /// A keyspace holding `shards` (locked now, in ascending order) until dropped.
    pub fn holding(cache: &'a Cache, shards: &ShardSet) -> Keyspace<'a> {
        let mut ks = Keyspace::new(cache);
        ks.hold(shards);
        ks
    }

    /// Holds `shards` from now on (a keyspace that holds shards already keeps them:
    /// they were taken for the whole transaction).
    pub fn hold(&mut self, shards: &ShardSet) {
        if let Some(held) = &self.held {
            debug_assert!(
                shards.iter().all(|i| held[i].is_some()),
                "a command inside a transaction touches a shard EXEC did not lock"
            );
            return;
        }
        let all = self.cache.shards();
        let mut held: Vec<Option<MutexGuard<'a, ShardState>>> = (0..all.len()).map(|_| None).collect();
        for i in shards.iter() {
            held[i] = Some(all[i].lock());
        }
        self.held = Some(held);
    }

    /// Holds every shard.
    pub fn hold_all(&mut self) {
        if self.held.is_none() {
            self.hold(&ShardSet::all(self.cache.shard_count()));
        }
    }

    pub fn cache(&self) -> &'a Cache {
        self.cache
    }

    /// The Unix time in ms at [`Keyspace::now`].
    pub fn unix_ms(&self) -> u64 {
        self.cache.clock().unix_at(self.now)
    }

    fn shard_at(&mut self, i: usize) -> Guard<'_, 'a> {
        match &mut self.held {
            Some(held) => Guard::Held(
                held[i]
                    .as_deref_mut()
                    .expect("a shard the command did not hold: its keys are missing from the command table"),
            ),
            None => Guard::Own(self.cache.shards()[i].lock()),
        }
    }

    fn shard(&mut self, key: &[u8]) -> Guard<'_, 'a> {
        let i = self.cache.shard_of(key);
        self.shard_at(i)
    }

    /// Converts an absolute Unix deadline to the monotonic clock of the entries.
    fn monotonic(&self, unix_ms: u64) -> u64 {
        let unix_now = self.unix_ms();
        if unix_ms <= unix_now {
            self.now
        } else {
            self.now.saturating_add(unix_ms - unix_now).min(NEVER - 1)
        }
    }

    fn deadlines(&self, expiry: Expiry) -> Deadlines {
        match expiry {
            Expiry::Never | Expiry::Keep => Deadlines::NONE,
            Expiry::After(ttl) => Deadlines {
                expires_at: deadline(self.now, ttl),
                ..Deadlines::NONE
            },
            Expiry::Sliding(ttl) => Deadlines {
                expires_at: deadline(self.now, ttl),
                idle_ttl: ms(ttl).max(1),
                ..Deadlines::NONE
            },
            Expiry::AtUnixMs(at) => Deadlines {
                expires_at: self.monotonic(at),
                ..Deadlines::NONE
            },
        }
    }

    // ------------------------------------------------------------------ reads

    /// The value of `key`, if it is live (counts a hit or a miss).
    pub fn get(&mut self, key: &[u8]) -> Option<Bytes> {
        let now = self.now;
        let mut s = self.shard(key);
        let v = s.with_live(key, now, |e| e.value.str().map(Stored::to_bytes)).flatten();
        s.count_read(v.is_some());
        v
    }

    /// Calls `f` with the value of `key` while its shard is locked, to copy it out
    /// without touching its reference count (counts a hit or a miss). `f` must be quick.
    /// A key holding another type than a string is `None` to `f` (MGET).
    pub fn get_with<R>(&mut self, key: &[u8], f: impl FnOnce(Option<&[u8]>) -> R) -> R {
        let mut f = Some(f);
        match self.get_str_with(key, |v| (f.take().expect("called once"))(v)) {
            Ok(r) => r,
            Err(WrongType) => (f.take().expect("not called yet"))(None),
        }
    }

    /// [`Keyspace::get_with`] for a command that works on strings only: a key holding
    /// another type is an error, and `f` is not called.
    pub fn get_str_with<R>(&mut self, key: &[u8], f: impl FnOnce(Option<&[u8]>) -> R) -> Result<R, WrongType> {
        let now = self.now;
        let mut s = self.shard(key);
        let mut f = Some(f);
        let r = s.with_live(key, now, |e| match &e.value {
            Value::Str(v) => Ok((f.take().expect("called once"))(Some(v.as_slice()))),
            _ => Err(WrongType),
        });
        s.count_read(r.is_some());
        match r {
            Some(r) => r,
            None => Ok((f.take().expect("not called yet"))(None)),
        }
    }

    /// Calls `f` with `key`'s live entry, without touching its recency or sliding its
    /// deadline (Redis' `LOOKUP_NOTOUCH`), counted as `access` says.
    fn look_up<R>(&mut self, key: &[u8], access: Access, f: impl FnOnce(&Entry) -> R) -> Option<R> {
        let now = self.now;
        let mut s = self.shard(key);
        let r = s.peek(key, now, f);
        if access == Access::Read {
            s.count_read(r.is_some());
        }
        r
    }

    /// TYPE's answer for `key` (`none`: no such key).
    pub fn type_name(&mut self, key: &[u8], access: Access) -> &'static str {
        self.look_up(key, access, |e| e.value.type_name()).unwrap_or("none")
    }

    /// The value of `key` and whether it is still fresh (read-through; counts a hit or a
    /// miss).
    pub fn get_fresh(&mut self, key: &[u8]) -> Option<(Bytes, bool)> {
        let now = self.now;
        let mut s = self.shard(key);
        let r = s
            .with_live(key, now, |e| Some((e.value.str()?.to_bytes(), e.fresh_until > now)))
            .flatten();
        s.count_read(r.is_some());
        r
    }

    /// Whether `key` exists (not a read for recency).
    pub fn exists(&mut self, key: &[u8], access: Access) -> bool {
        self.look_up(key, access, |_| ()).is_some()
    }

    /// TOUCH: whether `key` exists, marking it used (a read: counts a hit or a miss).
    pub fn touch(&mut self, key: &[u8]) -> bool {
        let now = self.now;
        let mut s = self.shard(key);
        let hit = s.with_live(key, now, |_| ()).is_some();
        s.count_read(hit);
        hit
    }

    /// `key`'s remaining time to live.
    pub fn ttl(&mut self, key: &[u8], access: Access) -> Ttl {
        let now = self.now;
        match self.look_up(key, access, |e| e.expires_at) {
            None => Ttl::Missing,
            Some(NEVER) => Ttl::Persistent,
            Some(at) => Ttl::Remaining(Duration::from_millis(at - now)),
        }
    }

    /// `key`'s deadline as a Unix time (EXPIRETIME; a read: counts a hit or a miss).
    pub fn deadline(&mut self, key: &[u8]) -> Deadline {
        let now = self.now;
        let unix_now = self.unix_ms();
        match self.look_up(key, Access::Read, |e| e.expires_at) {
            None => Deadline::Missing,
            Some(NEVER) => Deadline::Persistent,
            Some(at) => Deadline::AtUnixMs(unix_now + (at - now)),
        }
    }

    /// What OBJECT reports of `key`: its encoding's name and its idle time in ms (a
    /// read: counts a hit or a miss).
    pub fn object(&mut self, key: &[u8]) -> Option<(&'static str, u64)> {
        let now = self.now;
        self.look_up(key, Access::Read, |e| {
            let name = match &e.value {
                Value::Str(v) => e.encoding.name(v.as_slice()),
                Value::Hash(h) => h.encoding(),
                Value::Set(s) => s.encoding(),
                Value::List(l) => l.encoding(),
                Value::Zset(z) => z.encoding(),
            };
            (name, now.saturating_sub(e.last_access))
        })
    }

    // ------------------------------------------------------------------ writes

    /// Stores `value` under `key` if `options.condition` holds, replacing a value of
    /// any type (`previous`: the string it replaced).
    pub fn set(&mut self, key: &[u8], value: Stored, options: SetOptions) -> SetOutcome {
        match self.set_as(key, value, options, OnOtherType::Replace) {
            Ok(done) => done,
            Err(WrongType) => unreachable!("a value of another type is replaced"),
        }
    }

    /// SET ... GET and GETSET: [`Keyspace::set`], refusing (and writing nothing) when
    /// `key` holds another type than a string.
    pub fn set_get(&mut self, key: &[u8], value: Stored, options: SetOptions) -> Result<SetOutcome, WrongType> {
        self.set_as(key, value, options, OnOtherType::Refuse)
    }

    fn set_as(
        &mut self,
        key: &[u8],
        value: Stored,
        options: SetOptions,
        other: OnOtherType,
    ) -> Result<SetOutcome, WrongType> {
        let now = self.now;
        let fixed = self.deadlines(options.expiry);
        let mut s = self.shard(key);
        if other == OnOtherType::Refuse {
            // SET ... GET and GETSET read the key first, as GET does: a hit or a miss
            // (a key of another type too, as in Redis).
            let other_type = s.peek(key, now, |e| e.value.str().is_none());
            s.count_read(other_type.is_some());
            if other_type == Some(true) {
                return Err(WrongType);
            }
        }
        if options.condition == Condition::Always && options.expiry != Expiry::Keep {
            // The common SET: one map lookup (two for a new key).
            let previous = s.insert(key, value, fixed, now);
            // Freed after the lock is released.
            drop(s);
            return Ok(SetOutcome {
                stored: true,
                previous: previous.as_ref().and_then(Value::str).map(Stored::to_bytes),
            });
        }
        let current = s.peek(key, now, |e| {
            (e.value.str().map(Stored::to_bytes), e.expires_at, e.idle_ttl)
        });
        let allowed = match options.condition {
            Condition::Always => true,
            Condition::IfAbsent => current.is_none(),
            Condition::IfPresent => current.is_some(),
        };
        let previous = current.as_ref().and_then(|c| c.0.clone());
        if !allowed {
            return Ok(SetOutcome {
                stored: false,
                previous,
            });
        }
        let d = match (options.expiry, current) {
            (Expiry::Keep, Some((_, expires_at, idle_ttl))) => Deadlines {
                expires_at,
                idle_ttl,
                ..Deadlines::NONE
            },
            _ => fixed,
        };
        s.insert(key, value, d, now);
        Ok(SetOutcome { stored: true, previous })
    }

    /// Stores a loaded value, fresh for `ttl` and then servable stale for `stale` more.
    pub fn put_loaded(&mut self, key: &[u8], value: Bytes, ttl: Duration, stale: Duration) {
        let now = self.now;
        let fresh_until = deadline(now, ttl);
        let d = Deadlines {
            expires_at: deadline(fresh_until, stale),
            fresh_until,
            idle_ttl: 0,
        };
        self.shard(key).insert(key, Stored::from_bytes(value), d, now);
    }

    /// MSETNX: stores every pair if none of the keys exists; whether it did. The
    /// keyspace must hold the keys' shards.
    pub fn set_all_if_none_exist<'k>(&mut self, pairs: &[(&'k [u8], &'k [u8])]) -> bool {
        if pairs.iter().any(|(k, _)| self.exists(k, Access::Check)) {
            return false;
        }
        let now = self.now;
        for (k, v) in pairs {
            self.shard(k).insert(k, Stored::copy_from(v), Deadlines::NONE, now);
        }
        true
    }

    /// Removes `key`; true if it existed.
    pub fn delete(&mut self, key: &[u8]) -> bool {
        let now = self.now;
        self.shard(key).remove(key, now).is_some()
    }

    /// Removes `key` and returns its value (counts a hit or a miss); a key holding
    /// another type than a string stays.
    pub fn get_del(&mut self, key: &[u8]) -> Result<Option<Bytes>, WrongType> {
        let now = self.now;
        let mut s = self.shard(key);
        if s.peek(key, now, |e| e.value.str().is_none()) == Some(true) {
            return Err(WrongType);
        }
        let v = s.remove(key, now);
        s.count_read(v.is_some());
        Ok(v.as_ref().and_then(Value::str).map(Stored::to_bytes))
    }

    /// GETEX: the value of `key`, after changing its deadline as `change` says. `change`
    /// is only looked at when the key exists (Redis validates the expiry after finding
    /// the key).
    pub fn get_ex<E: From<WrongType>>(&mut self, key: &[u8], change: Result<GetEx, E>) -> Result<Option<Bytes>, E> {
        let now = self.now;
        let unix_now = self.unix_ms() as i64;
        let mut s = self.shard(key);
        let Some(value) = s.with_live(key, now, |e| e.value.str().map(Stored::to_bytes)) else {
            s.count_read(false);
            return Ok(None);
        };
        let value = value.ok_or(WrongType)?;
        s.count_read(true);
        match change? {
            GetEx::Keep => {}
            GetEx::Persist => {
                if s.peek(key, now, |e| e.expires_at != NEVER) == Some(true) {
                    s.set_deadline(key, now, NEVER, 0);
                }
            }
            GetEx::AtUnixMs(at) if at <= unix_now => {
                s.remove(key, now);
            }
            GetEx::AtUnixMs(at) => {
                let at = now.saturating_add((at - unix_now) as u64).min(NEVER - 1);
                s.set_deadline(key, now, at, 0);
            }
        }
        Ok(Some(value))
    }

    /// Sets `key`'s deadline to the Unix time `when` (ms, may be in the past: the key is
    /// then deleted) if the flags allow it, as Redis' EXPIRE family; false if no such key
    /// or a condition failed.
    pub fn expire_at(&mut self, key: &[u8], when: i64, flags: ExpireFlags) -> bool {
        let now = self.now;
        let unix_now = self.unix_ms() as i64;
        let mut s = self.shard(key);
        let Some(current) = s.peek(key, now, |e| e.expires_at) else {
            return false;
        };
        // Redis' view: the current deadline as a Unix time, -1 for none.
        let current: i128 = if current == NEVER {
            -1
        } else {
            unix_now as i128 + (current - now) as i128
        };
        let when128 = when as i128;
        if (flags.nx && current != -1)
            || (flags.xx && current == -1)
            || (flags.gt && (when128 <= current || current == -1))
            || (flags.lt && current != -1 && when128 >= current)
        {
            return false;
        }
        if when <= unix_now {
            s.remove(key, now);
            return true;
        }
        let at = now.saturating_add((when - unix_now) as u64).min(NEVER - 1);
        s.set_deadline(key, now, at, 0)
    }

    /// Sets `key`'s deadline as [`Cache::expire_with`] documents.
    pub fn expire_with(&mut self, key: &[u8], expiry: Expiry, flags: ExpireFlags) -> bool {
        let now = self.now;
        let (at, idle) = match expiry {
            Expiry::Never => return self.persist(key),
            Expiry::Keep => return self.exists(key, Access::Check),
            Expiry::After(ttl) => (deadline(now, ttl), 0),
            Expiry::Sliding(ttl) => (deadline(now, ttl), ms(ttl).max(1)),
            Expiry::AtUnixMs(at) => (self.monotonic(at), 0),
        };
        let mut s = self.shard(key);
        let Some(current) = s.peek(key, now, |e| e.expires_at) else {
            return false;
        };
        if (flags.nx && current != NEVER)
            || (flags.xx && current == NEVER)
            || (flags.gt && (current == NEVER || at <= current))
            || (flags.lt && at >= current)
        {
            return false;
        }
        if at <= now {
            s.remove(key, now);
            return true;
        }
        s.set_deadline(key, now, at, idle)
    }

    /// Clears `key`'s deadline; true if it had one.
    pub fn persist(&mut self, key: &[u8]) -> bool {
        let now = self.now;
        let mut s = self.shard(key);
        match s.peek(key, now, |e| e.expires_at) {
            Some(at) if at != NEVER => s.set_deadline(key, now, NEVER, 0),
            _ => false,
        }
    }

    /// RENAME (RENAMENX when `nx`): moves `from`'s value and deadline to `to`, replacing
    /// it (unless `nx`); whether it moved. The keyspace must hold both keys' shards.
    pub fn rename(&mut self, from: &[u8], to: &[u8], nx: bool) -> Result<bool, NoSuchKey> {
        let now = self.now;
        let Some((expires_at, idle_ttl, encoding)) = self
            .shard(from)
            .peek(from, now, |e| (e.expires_at, e.idle_ttl, e.encoding))
        else {
            return Err(NoSuchKey);
        };
        if from == to {
            return Ok(!nx);
        }
        if nx && self.exists(to, Access::Check) {
            return Ok(false);
        }
        // Held since the peek above, so still there.
        let Some(value) = self.shard(from).remove(from, now) else {
            return Err(NoSuchKey);
        };
        let d = Deadlines {
            expires_at,
            idle_ttl,
            ..Deadlines::NONE
        };
        let added = waited_for(&value);
        let mut s = self.shard(to);
        s.insert_as(to, value, d, now, encoding);
        if let Some((kind, n)) = added {
            s.blocked.signal(to, n, kind);
        }
        Ok(true)
    }

    /// COPY: copies `from`'s value and deadline to `to` unless `to` exists (replacing it
    /// with `replace`); whether it copied. Reading `from` counts a hit or a miss, as in
    /// Redis. The keyspace must hold both keys' shards.
    pub fn copy(&mut self, from: &[u8], to: &[u8], replace: bool) -> bool {
        let now = self.now;
        let Some((value, expires_at, idle_ttl, encoding)) = self.look_up(from, Access::Read, |e| {
            (e.value.clone(), e.expires_at, e.idle_ttl, e.encoding)
        }) else {
            return false;
        };
        if !replace && self.exists(to, Access::Check) {
            return false;
        }
        let d = Deadlines {
            expires_at,
            idle_ttl,
            ..Deadlines::NONE
        };
        let added = waited_for(&value);
        let mut s = self.shard(to);
        s.insert_as(to, value, d, now, encoding);
        if let Some((kind, n)) = added {
            s.blocked.signal(to, n, kind);
        }
        true
    }
}

/// The elements a value brings to a key clients may be blocked on (RENAME, COPY).
fn waited_for(v: &Value) -> Option<(crate::blocking::Kind, usize)> {
    match v {
        Value::List(l) => Some((crate::blocking::Kind::List, l.len())),
        Value::Zset(z) => Some((crate::blocking::Kind::Zset, z.len())),
        _ => None,
    }
}

pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX - 1)
}

pub(crate) fn deadline(now: u64, ttl: Duration) -> u64 {
    // NEVER is reserved for "no deadline".
    now.saturating_add(ms(ttl)).min(NEVER - 1)
}
