//! The blocking commands: on lists BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP; on sorted
//! sets BZPOPMIN, BZPOPMAX, BZMPOP. Each first
//! does what its non-blocking form does, holding its keys' shards; finding every key
//! empty, it registers a [`Waiter`] on them before releasing the shards, and the
//! connection waits ([`Blocked`]) for a signal, its timeout, or the client going away.
//! A signal makes it try again (and wait on in its place in the queue if another
//! client took the elements first); a timeout answers a null array; a client
//! that disconnects is taken off every key (and, if it had been picked for elements it
//! did not take, the next waiter is woken for them). Inside MULTI the commands run as
//! their non-blocking forms ([`run_once`]). See `crate::blocking` for why no wake-up
//! and no element is ever lost.
//!
//! While it waits, what a blocked client holds (its command's copy, its registration
//! on each key) is counted with the clients' query buffers ([`Blocked::held`]: INFO's
//! `mem_clients_normal`, under `maxmemory-clients`), as Redis counts a blocked client's
//! arguments; the connection gives its read buffer back meanwhile (`server`).
//!
//! WAIT waits here too, on no key: strata's cache has no replicas, so it answers as a
//! Redis master without replicas does: `:0` at once for 0 (or fewer) replicas or inside
//! MULTI, else `:0` at its timeout (0: it waits until the client goes away, as Redis).

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::lists::{move_one, mpop_args, pop_first, reply_key_and_items};
use super::parse::Args;
use super::reply::{Reply, NOT_INT, SYNTAX, WRONGTYPE};
use super::state::ConnectionContext;
use super::table::{Cmd, Spec};
use super::zsets::{min_or_max, reply_key_and_members, reply_key_member_score, zpop_first};
use crate::blocking::{Kind, Waiter};
use crate::cache::parse_i64;
use crate::keyspace::{Access, Keyspace, ShardSet, WrongType};
use crate::list::End;
use crate::long_double::{self, LongDouble};
use crate::stored::Stored;

/// A blocking command's arguments, checked.
#[derive(Debug, Clone)]
pub(crate) struct Blocking {
    /// How long to wait; None: for ever.
    timeout: Option<Duration>,
    /// The positions of the keys it waits on.
    keys: Range<usize>,
    from: End,
    to: End,
    /// The sorted set commands': pop the highest.
    max: bool,
    count: usize,
}

impl Blocking {
    /// What the command waits for.
    fn kind(&self, cmd: Cmd) -> Kind {
        match cmd {
            Cmd::Bzpopmin | Cmd::Bzpopmax | Cmd::Bzmpop => Kind::Zset,
            _ => Kind::List,
        }
    }
}

/// Redis' reading of a timeout in seconds: a float (as `strtold` reads it), times
/// 1000 in the same extended precision (rounded to 64 significant bits, to nearest,
/// ties to even), rounded up to whole milliseconds; 0 (or what rounds up to 0) is for
/// ever. Values too large for Redis' `long long` milliseconds turn negative there, and
/// so are refused as negative (infinities included).
fn timeout(arg: &[u8]) -> Result<Option<Duration>, &'static str> {
    const NEGATIVE: &str = "ERR timeout is negative";
    let v = long_double::parse(arg).ok_or("ERR timeout is not a float or out of range")?;
    let LongDouble::Finite { neg, mant, exp } = v else {
        return Err(NEGATIVE);
    };
    // The product mant * 1000 * 2^exp, rounded to 64 significant bits.
    let (mut n, mut exp) = (mant as u128 * 1000, exp);
    let bits = 128 - n.leading_zeros() as i64;
    if bits > 64 {
        let drop = (bits - 64) as u32;
        let rest = n & ((1u128 << drop) - 1);
        let half = 1u128 << (drop - 1);
        n >>= drop;
        exp += drop as i64;
        if rest > half || (rest == half && n & 1 == 1) {
            n += 1;
            if n >> 64 != 0 {
                n >>= 1;
                exp += 1;
            }
        }
    }
    // Its floor, and whether it has a fraction.
    let (floor, fraction) = if n == 0 {
        (0, false)
    } else if exp >= 0 {
        if exp >= 64 {
            return Err(NEGATIVE);
        }
        (n << exp, false)
    } else if -exp >= 128 {
        (0, true)
    } else {
        let shift = (-exp) as u32;
        (n >> shift, n & ((1u128 << shift) - 1) != 0)
    };
    // ceil(-x) is -floor(x): 0 (for ever) below one millisecond.
    let ms = if neg {
        floor.wrapping_neg() as i128
    } else {
        (floor + fraction as u128) as i128
    };
    if neg && floor > 0 || ms > i64::MAX as i128 {
        return Err(NEGATIVE);
    }
    Ok((ms > 0).then(|| Duration::from_millis(ms as u64)))
}

/// Checks a blocking command's arguments in Redis' order.
pub(crate) fn check(cmd: Cmd, args: Args<'_>) -> Result<Blocking, &'static str> {
    let n = args.len();
    let b = |timeout, keys, from, to, count| Blocking {
        timeout,
        keys,
        from,
        to,
        max: false,
        count,
    };
    let z = |timeout, keys, max, count| Blocking {
        max,
        ..b(timeout, keys, End::Left, End::Left, count)
    };
    Ok(match cmd {
        Cmd::Blpop => b(timeout(args.get(n - 1))?, 1..n - 1, End::Left, End::Left, 1),
        Cmd::Brpop => b(timeout(args.get(n - 1))?, 1..n - 1, End::Right, End::Right, 1),
        Cmd::Brpoplpush => b(timeout(args.get(3))?, 1..2, End::Right, End::Left, 1),
        Cmd::Blmove => {
            let (Some(from), Some(to)) = (End::parse(args.get(3)), End::parse(args.get(4))) else {
                return Err(SYNTAX);
            };
            b(timeout(args.get(5))?, 1..2, from, to, 1)
        }
        Cmd::Blmpop => {
            let t = timeout(args.get(1))?;
            let (keys, end, count) = mpop_args(args, 2, End::parse)?;
            b(t, keys, end, end, count)
        }
        Cmd::Bzpopmin => z(timeout(args.get(n - 1))?, 1..n - 1, false, 1),
        Cmd::Bzpopmax => z(timeout(args.get(n - 1))?, 1..n - 1, true, 1),
        Cmd::Bzmpop => {
            let t = timeout(args.get(1))?;
            let (keys, max, count) = mpop_args(args, 2, min_or_max)?;
            z(t, keys, max, count)
        }
        Cmd::Wait => {
            let numreplicas = parse_i64(args.get(1)).ok_or(NOT_INT)?;
            // Redis answers at once when as many replicas as asked have acknowledged
            // (none here, so only for 0 or fewer asked), else at the timeout.
            let waits = usize::from(numreplicas > 0);
            Blocking {
                count: waits,
                ..b(wait_timeout(args.get(2))?, 0..0, End::Left, End::Left, waits)
            }
        }
        _ => unreachable!("not a blocking command"),
    })
}

/// WAIT's timeout as Redis 7.0 reads it: whole milliseconds, 0 for ever (and so is one
/// too large for a deadline, as Redis 7.0 waits for ever past `long long` overflow).
fn wait_timeout(arg: &[u8]) -> Result<Option<Duration>, &'static str> {
    let ms = parse_i64(arg).ok_or("ERR timeout is not an integer or out of range")?;
    if ms < 0 {
        return Err("ERR timeout is negative");
    }
    Ok((ms > 0).then(|| Duration::from_millis(ms as u64)))
}

/// Does what the non-blocking form does; true if it answered (elements, or an error),
/// false if every key was empty (nothing written). `woken`: tried again after a signal,
/// when a key may since hold another type (pushed, then deleted and set anew before this
/// client ran): such a key is passed over as empty and the client waits on, as Redis
/// serves a blocked client only from a key of the type it waits for. Only the first
/// try answers a key of the wrong type with WRONGTYPE.
fn attempt(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, cmd: Cmd, args: Args<'_>, b: &Blocking, woken: bool) -> bool {
    if cmd == Cmd::Wait {
        // No replica ever acknowledges: answered at once only when none is asked for.
        if b.count == 0 {
            r.int(0);
        }
        return b.count == 0;
    }
    let mut keys: Vec<&[u8]> = b.keys.clone().map(|i| args.get(i)).collect();
    if woken {
        let waits_for = match b.kind(cmd) {
            Kind::Zset => "zset",
            Kind::List => "list",
        };
        keys.retain(|key| ks.type_name(key, Access::Check) == waits_for);
        if keys.is_empty() {
            return false;
        }
    }
    let keys = keys.into_iter();
    let done = match cmd {
        Cmd::Blpop | Cmd::Brpop => pop_first(ks, keys, b.from, 1).map(|popped| {
            popped.map(|(key, items)| {
                r.array(2);
                r.bulk(key);
                r.bulk(items[0].as_slice());
            })
        }),
        Cmd::Blmpop => pop_first(ks, keys, b.from, b.count)
            .map(|popped| popped.map(|(key, items)| reply_key_and_items(r, key, &items))),
        Cmd::Bzpopmin | Cmd::Bzpopmax => zpop_first(ks, keys, b.max, 1)
            .map(|popped| popped.map(|(key, members)| reply_key_member_score(r, key, &members[0]))),
        Cmd::Bzmpop => zpop_first(ks, keys, b.max, b.count)
            .map(|popped| popped.map(|(key, members)| reply_key_and_members(r, key, &members))),
        _ => move_one(ks, args.get(1), args.get(2), b.from, b.to).map(|v| v.map(|v| r.bulk(v.as_slice()))),
    };
    match done {
        Ok(answered) => answered.is_some(),
        Err(WrongType) => {
            r.error(WRONGTYPE);
            true
        }
    }
}

/// Inside a transaction: the non-blocking form (an empty result is null, as Redis
/// answers a blocking command that may not block).
pub(crate) fn run_once(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, cmd: Cmd, args: Args<'_>) {
    let b = match check(cmd, args) {
        Ok(b) => b,
        Err(e) => return r.error(e),
    };
    if !attempt(r, ks, cmd, args, &b, false) {
        match cmd {
            // Inside MULTI, WAIT answers the replicas acknowledged so far: none.
            Cmd::Wait => r.int(0),
            Cmd::Blmove | Cmd::Brpoplpush => r.null(),
            _ => r.null_array(),
        }
    }
}

/// What one registration on a key holds in its shard besides the key's bytes: the key's
/// slot in the map of waiters, its queue, and the queue's pointer to the waiter.
const REGISTRATION: usize =
    std::mem::size_of::<Stored>() + std::mem::size_of::<VecDeque<Arc<Waiter>>>() + std::mem::size_of::<Arc<Waiter>>();

/// A connection blocked in a command: the command (copied out of the input), its
/// waiter, registered on its keys, and its deadline. Dropped, it leaves the keys and
/// gives back what it counted.
pub(crate) struct Blocked {
    shared: Arc<ConnectionContext>,
    spec: &'static Spec,
    bytes: Vec<u8>,
    ranges: Vec<Range<usize>>,
    checked: Blocking,
    waiter: Arc<Waiter>,
    deadline: Option<Instant>,
    /// Still registered on its keys.
    registered: bool,
    /// The bytes counted in the server's clients' memory ([`Blocked::held`]).
    counted: usize,
}

impl Blocked {
    /// Runs a blocking command outside a transaction: answers it (into `r`) and
    /// returns None, or registers it and returns the connection's wait.
    pub fn start(
        r: &mut Reply<'_>,
        shared: &Arc<ConnectionContext>,
        spec: &'static Spec,
        args: Args<'_>,
    ) -> Option<Blocked> {
        let cache = &shared.cache;
        let checked = match check(spec.cmd, args) {
            Ok(b) => b,
            Err(e) => {
                r.error(e);
                return None;
            }
        };
        let mut set = ShardSet::new(cache.shard_count());
        spec.shards(args, cache, &mut set);
        let mut ks = Keyspace::holding(cache, &set);
        if attempt(r, &mut ks, spec.cmd, args, &checked, false) {
            return None;
        }
        // Sized to the command: the memory counted is what it needs.
        let mut bytes = Vec::with_capacity(args.iter().map(<[u8]>::len).sum());
        let mut ranges = Vec::with_capacity(args.len());
        for a in args.iter() {
            let at = bytes.len();
            bytes.extend_from_slice(a);
            ranges.push(at..bytes.len());
        }
        let deadline = checked.timeout.and_then(|t| Instant::now().checked_add(t));
        let waiter = Arc::new(Waiter::new(checked.kind(spec.cmd)));
        let mut blocked = Blocked {
            shared: shared.clone(),
            spec,
            bytes,
            ranges,
            checked,
            waiter,
            deadline,
            registered: true,
            counted: 0,
        };
        // Still holding the shards: a push after this sees the registration.
        blocked.keys().for_each(|key| ks.block(key, &blocked.waiter));
        cache.waiters().count_client(true);
        drop(ks);
        // Always granted, as a connection's first read buffer is: these bytes were in
        // its counted query buffer a moment ago (given back as it starts to wait).
        blocked.counted = blocked.held();
        shared.server.client_memory.take(blocked.counted);
        Some(blocked)
    }

    /// What the blocked client holds while it waits: its command's copy (the bytes and
    /// where each argument is), its waiter, and its registration on each key (a key's
    /// copy there is shared by the clients waiting on it: counted for each).
    pub fn held(&self) -> usize {
        self.bytes.capacity()
            + self.ranges.capacity() * std::mem::size_of::<Range<usize>>()
            + std::mem::size_of::<Waiter>()
            + self.keys().map(|key| key.len() + REGISTRATION).sum::<usize>()
    }

    fn args(&self) -> Args<'_> {
        Args::new(&self.bytes, &self.ranges)
    }

    fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.checked.keys.clone().map(|i| &self.bytes[self.ranges[i].clone()])
    }

    /// What the connection waits on: the waiter's signal, and the deadline.
    pub fn wait(&self) -> (Arc<Waiter>, Option<Instant>) {
        (self.waiter.clone(), self.deadline)
    }

    /// After a signal: tries again. True if it answered (and left every key); false if
    /// the keys were empty again (another client was first): it waits on, in its place.
    pub fn retry(&mut self, r: &mut Reply<'_>) -> bool {
        let cache = self.shared.cache.clone();
        let mut set = ShardSet::new(cache.shard_count());
        self.spec.shards(self.args(), &cache, &mut set);
        let mut ks = Keyspace::holding(&cache, &set);
        // With the keys' shards held, no signal for them comes in between.
        self.waiter.rearm();
        if attempt(r, &mut ks, self.spec.cmd, self.args(), &self.checked, true) {
            self.leave(&mut ks);
            return true;
        }
        false
    }

    /// Answered after a signal: leaves every key's queue, and passes the baton for
    /// what is left (a signal it was counted for may have been for more). `ks` holds
    /// the keys' shards.
    fn leave(&mut self, ks: &mut Keyspace<'_>) {
        self.keys().for_each(|key| ks.unblock(key, &self.waiter));
        let kind = self.checked.kind(self.spec.cmd);
        for key in self.keys() {
            let left = ks.waitable_len(key, kind);
            ks.signal_blocked(key, left, kind);
        }
        self.registered = false;
    }

    /// The deadline passed: takes elements it was signalled for in the meantime, if
    /// any; else answers a null array.
    pub fn time_out(&mut self, r: &mut Reply<'_>) {
        let cache = self.shared.cache.clone();
        let mut set = ShardSet::new(cache.shard_count());
        self.spec.shards(self.args(), &cache, &mut set);
        let mut ks = Keyspace::holding(&cache, &set);
        if self.waiter.was_woken() {
            self.waiter.rearm();
            if attempt(r, &mut ks, self.spec.cmd, self.args(), &self.checked, true) {
                return self.leave(&mut ks);
            }
        }
        self.keys().for_each(|key| ks.unblock(key, &self.waiter));
        self.registered = false;
        match self.spec.cmd {
            // No replica acknowledged in time.
            Cmd::Wait => r.int(0),
            _ => r.null_array(),
        }
    }
}

impl Drop for Blocked {
    fn drop(&mut self) {
        self.shared.server.client_memory.give_back(self.counted);
        self.shared.cache.waiters().count_client(false);
        if !self.registered {
            return;
        }
        // The client left while waiting: one key at a time, each its shard's lock.
        let cache = self.shared.cache.clone();
        let mut ks = Keyspace::new(&cache);
        self.keys().for_each(|key| ks.unblock(key, &self.waiter));
        if self.waiter.was_woken() {
            // Counted for an element it will not take: the next waiter takes it.
            let kind = self.checked.kind(self.spec.cmd);
            self.keys().for_each(|key| ks.signal_blocked(key, 1, kind));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{Cache, CacheConfig};
    use crate::resp::table::lookup;
    use crate::resp::RespConfig;

    /// A server's shared state over a cache of four shards.
    fn context() -> Arc<ConnectionContext> {
        let cache = Arc::new(Cache::new(CacheConfig {
            shards: 4,
            ..CacheConfig::default()
        }));
        Arc::new(ConnectionContext::new(cache, &RespConfig::default(), 1))
    }

    /// Runs `f` with `words` as a command's arguments.
    fn with_args<R>(words: &[&str], f: impl FnOnce(Args<'_>) -> R) -> R {
        let mut bytes = Vec::new();
        let mut ranges = Vec::new();
        for w in words {
            let at = bytes.len();
            bytes.extend_from_slice(w.as_bytes());
            ranges.push(at..bytes.len());
        }
        f(Args::new(&bytes, &ranges))
    }

    fn start(shared: &Arc<ConnectionContext>, words: &[&str], out: &mut Vec<u8>) -> Option<Blocked> {
        with_args(words, |args| {
            let spec = lookup(args.get(0)).unwrap();
            Blocked::start(&mut Reply { out, resp3: false }, shared, spec, args)
        })
    }

    fn push(cache: &Cache, key: &str, items: &[&str]) {
        Keyspace::new(cache)
            .list_write(key.as_bytes(), |l| {
                items
                    .iter()
                    .for_each(|i| l.push(End::Right, crate::stored::Stored::copy_from(i.as_bytes())));
                ((), true)
            })
            .unwrap();
    }

    #[test]
    fn a_blocked_command_is_woken_by_a_push_and_keeps_its_place_when_beaten() {
        let shared = context();
        let cache = shared.cache.clone();
        let mut out = Vec::new();
        let mut first = start(&shared, &["BLPOP", "a", "b", "0"], &mut out).expect("blocks");
        let mut second = start(&shared, &["BRPOP", "b", "5"], &mut out).expect("blocks");
        assert!(out.is_empty());
        assert_eq!(cache.waiters().clients(), 2);
        assert!(
            second.wait().1.is_some() && first.wait().1.is_none(),
            "0 waits for ever"
        );
        // One element on b: the first blocked is woken, not the second.
        push(&cache, "b", &["x"]);
        assert!(first.waiter.was_woken() && !second.waiter.was_woken());
        // Another client takes it first: the first waits on, still first.
        with_args(&["LPOP", "b"], |args| {
            let mut r = Reply {
                out: &mut out,
                resp3: false,
            };
            super::super::lists::pop(&mut r, &mut Keyspace::new(&cache), args, End::Left);
        });
        out.clear();
        assert!(!first.retry(&mut Reply {
            out: &mut out,
            resp3: false
        }));
        assert!(out.is_empty());
        push(&cache, "b", &["y", "z"]);
        assert!(first.waiter.was_woken() && second.waiter.was_woken());
        assert!(first.retry(&mut Reply {
            out: &mut out,
            resp3: false
        }));
        assert_eq!(out, b"*2\r\n$1\r\nb\r\n$1\r\ny\r\n");
        out.clear();
        drop(first);
        // The second, at its deadline, takes what it was woken for.
        second.time_out(&mut Reply {
            out: &mut out,
            resp3: false,
        });
        assert_eq!(out, b"*2\r\n$1\r\nb\r\n$1\r\nz\r\n");
        out.clear();
        drop(second);
        assert_eq!(cache.waiters().clients(), 0);
        // Woken for an element and gone: the next waiter is woken for it.
        let gone = start(&shared, &["BLPOP", "c", "0"], &mut out).expect("blocks");
        let next = start(&shared, &["BLPOP", "c", "0"], &mut out).expect("blocks");
        push(&cache, "c", &["e"]);
        assert!(gone.waiter.was_woken() && !next.waiter.was_woken());
        drop(gone);
        assert!(next.waiter.was_woken());
        // Timed out without a signal: a null array, and nothing left registered.
        let mut late = start(&shared, &["BLMOVE", "d", "e", "LEFT", "RIGHT", "1"], &mut out).expect("blocks");
        late.time_out(&mut Reply {
            out: &mut out,
            resp3: true,
        });
        assert_eq!(out, b"_\r\n");
        drop((late, next));
        for shard in cache.shards() {
            assert_eq!(shard.lock().blocked.registered(), 0);
        }
    }

    #[test]
    fn a_blocked_client_counts_what_it_holds_until_it_is_done() {
        let shared = context();
        let memory = &shared.server.client_memory;
        let mut out = Vec::new();
        let long = "k".repeat(1000);
        let mut first = start(&shared, &["BLPOP", &long, "short", "0"], &mut out).expect("blocks");
        // Its command's copy, and each key once more (its registration in the shard).
        let command = "BLPOP".len() + long.len() + "short".len() + "0".len();
        let held = memory.held();
        assert_eq!(held, first.held());
        assert!(held >= command + long.len() + "short".len(), "{held} bytes");
        assert!(held < command + long.len() + 512, "{held} bytes");
        let second = start(&shared, &["BZPOPMIN", "z", "1"], &mut out).expect("blocks");
        assert!(second.held() > 0);
        assert_eq!(memory.held(), held + second.held());
        // Answered after a signal: given back once the connection lets it go.
        push(&shared.cache, "short", &["x"]);
        assert!(first.retry(&mut Reply {
            out: &mut out,
            resp3: false
        }));
        drop(first);
        assert_eq!(memory.held(), second.held());
        // Timed out, or its client gone.
        drop(second);
        assert_eq!(memory.held(), 0);
        // Answered at once: it never waits, nothing is counted.
        push(&shared.cache, "short", &["y"]);
        assert!(start(&shared, &["BLPOP", "short", "0"], &mut out).is_none());
        assert_eq!(memory.held(), 0);
    }

    #[test]
    fn timeouts_read_as_redis_reads_them() {
        let ms = |s: &str| timeout(s.as_bytes()).map(|t| t.map(|d| d.as_millis() as u64));
        assert_eq!(ms("0"), Ok(None));
        assert_eq!(ms("-0.0001"), Ok(None), "rounds up to 0: for ever");
        assert_eq!(ms("0.1"), Ok(Some(100)));
        assert_eq!(ms("0.0001"), Ok(Some(1)));
        assert_eq!(ms("1e-4000"), Ok(Some(1)));
        assert_eq!(ms("2"), Ok(Some(2000)));
        assert_eq!(ms("0x10"), Ok(Some(16000)));
        assert_eq!(ms("1000000000.5"), Ok(Some(1_000_000_000_500)));
        assert_eq!(ms("9223372036854775"), Ok(Some(9_223_372_036_854_775_000)));
        assert_eq!(ms("9223372036854775.807"), Ok(Some(9_223_372_036_854_775_807)));
        assert_eq!(ms("-0"), Ok(None));
        assert_eq!(
            ms("-0.001"),
            Ok(None),
            "1000 x 0.001 is just below 1 in Redis' precision"
        );
        for negative in [
            "-1",
            "-0.002",
            "-0.0011",
            "inf",
            "-inf",
            "1e300",
            "9223372036854775.808",
        ] {
            assert_eq!(ms(negative), Err("ERR timeout is negative"), "{negative}");
        }
        for bad in ["x", "", " 1", "nan", "1 "] {
            assert_eq!(ms(bad), Err("ERR timeout is not a float or out of range"), "{bad}");
        }
    }
}
