//! strata's Redis port against a real `redis-server` (Debian's, 7.0): the same commands
//! to both, the replies compared byte for byte. Hand-written sequences for each command's
//! edge cases and errors (transactions with WATCH across two connections included), then
//! a seeded random walk over the string, hash, set, list, sorted set and key commands
//! on a small key space, alone and inside MULTI/EXEC, in RESP2 and RESP3. This file has
//! the two servers, the comparison of their replies and the random walk's generator; the
//! tests are in `differential/`. The string commands' hand-written sequences are in
//! `differential/strings.rs`, the expiry and key commands' in `differential/keys.rs`,
//! the transactions' (WATCH across two connections) in `differential/transactions.rs`,
//! the command table's, subcommand errors', CLIENT LIST's and COMMAND LIST's filters' and
//! INFO's keyspace hits and misses in `differential/introspection.rs`. The hash
//! commands' hand-written sequences are in `differential/hashes.rs`, the set commands'
//! in `differential/sets/` (with how set replies are compared where Redis draws at
//! random or lists a hash table in `differential/sets.rs`), the list commands' (the
//! blocking ones with several connections) in `differential/lists.rs`, the sorted set
//! commands' in `differential/zsets/` (likewise), `differential/zset_algebra.rs` and
//! (ZMPOP and the blocking pops, with several connections)
//! `differential/zset_blocking.rs`, pub/sub's (several connections, RESP2 and RESP3)
//! and AUTH's (against `--requirepass`) in `differential/pubsub.rs`; TOUCH, COMMAND
//! GETKEYS, CLIENT REPLY, WAIT, INFO's commandstats and errorstats, long inline
//! commands and SCAN's largest cursors in `differential/server_commands.rs`. The random
//! walk itself (its commands and the two tests, RESP2 and RESP3) is in
//! `differential/random_walk.rs`.
//!
//! The parser has no new paths for these types (they are ordinary commands), so
//! `tests/malformed.rs` has no case of its own for them.
//!
//! Where Redis' answer is random or depends on the moment, and only there, the comparison
//! is looser (each a documented difference, see docs/state.md):
//! - RANDOMKEY: both null, or both a key that exists;
//! - SCAN: cursors differ; a full scan's set of keys is compared instead (and errors
//!   exactly);
//! - KEYS: the same keys, in any order;
//! - TTL, PTTL, EXPIRETIME, PEXPIRETIME of relative deadlines: the two servers set and
//!   read them a moment apart (within a second, or 250 ms);
//! - OBJECT IDLETIME (within 2 s) and OBJECT REFCOUNT (Redis shares small integers);
//! - HGETALL, HKEYS, HVALS and HRANDFIELD listing the whole hash, of a hash strata
//!   reports as `hashtable` (more than 512 fields, or one longer than 64 bytes): the same
//!   fields and values in any order, also inside EXEC's array (a listpack's order is
//!   compared exactly);
//! - HRANDFIELD drawing at random (no count, a negative count, or one below the hash's
//!   size): a field that exists, or as many as Redis answered;
//! - HSCAN of a `hashtable` hash: cursors differ; a full scan's set of fields and values
//!   is compared instead.
//!
//! redis-server runs with `--databases 1` (strata has one database) and
//! `--proto-max-bulk-len 32mb` (strata's default largest value), so that SELECT, COPY DB,
//! SETRANGE and SETBIT meet the same bounds.
//!
//! Without `redis-server` the test is skipped, loudly, and fails under `CI=true`.
//! `STRATA_DIFF_SEED=N` replays one random walk; `STRATA_DIFF_STEPS=N` makes it longer.

mod common;
#[path = "differential/hashes.rs"]
mod hashes;
#[path = "differential/introspection.rs"]
mod introspection;
#[path = "differential/keys.rs"]
mod keys;
#[path = "differential/lists.rs"]
mod lists;
#[path = "differential/pubsub.rs"]
mod pubsub;
#[path = "differential/random_walk.rs"]
mod random_walk;
#[path = "differential/server_commands.rs"]
mod server_commands;
#[path = "differential/sets.rs"]
mod sets;
#[path = "differential/strings.rs"]
mod strings;
#[path = "differential/transactions.rs"]
mod transactions;
#[path = "differential/zset_algebra.rs"]
mod zset_algebra;
#[path = "differential/zset_blocking.rs"]
mod zset_blocking;
#[path = "differential/zsets.rs"]
mod zsets;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{cmd_bytes, Client, Server};

// ---------------------------------------------------------------------- redis-server

struct RedisServer {
    child: Child,
    addr: SocketAddr,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `redis-server` on a free port (chosen by binding port 0 first: redis-server
/// refuses `--port 0`), or None when it is not installed (and not under CI).
fn redis_server(test: &str) -> Option<RedisServer> {
    redis_server_with(test, &[])
}

/// [`redis_server`] with more arguments (`--requirepass`, ...).
fn redis_server_with(test: &str, extra: &[&str]) -> Option<RedisServer> {
    let has = strata_testkit::program("redis-server", "apt-get install redis-server");
    if !strata_testkit::needs(test, has) {
        return None;
    }
    for _ in 0..5 {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--databases", "1"])
            .args(["--proto-max-bulk-len", "33554432", "--logfile", ""])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let mut server = RedisServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = server.child.try_wait() {
                break; // the port was taken after all: try another
            }
            // One connection, kept: a probe then a second connect once met "connection
            // refused" in CI. A connect to a port nobody listens on yet can also meet
            // itself (TCP simultaneous open when the kernel picks the same port as the
            // source), so a connection whose two ends are one address is no server.
            let probe = TcpStream::connect(server.addr)
                .ok()
                .filter(|s| s.local_addr().ok() != Some(server.addr));
            if let Some(mut stream) = probe {
                // Read by hand: a connection reset here (the port met some other
                // process, under a parallel run) means "not this server yet", not a panic.
                let mut reply = [0u8; 7];
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let answered = stream
                    .write_all(&cmd_bytes(&[b"PING"]))
                    .and_then(|()| stream.read_exact(&mut reply))
                    .is_ok();
                if answered && (&reply == b"+PONG\r\n" || reply.starts_with(b"-NOAUTH")) {
                    return Some(server);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = server.child.kill();
    }
    panic!("redis-server did not start on a free port");
}

// ---------------------------------------------------------------------- replies

#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Null,
    Array(Vec<Value>),
    NullArray,
    /// Any other RESP3 type, raw.
    Other(Vec<u8>),
}

fn parse(raw: &[u8]) -> Value {
    fn line(raw: &[u8], at: usize) -> (&[u8], usize) {
        let end = at + raw[at..].windows(2).position(|w| w == b"\r\n").expect("CRLF");
        (&raw[at + 1..end], end + 2)
    }
    fn value(raw: &[u8], at: usize) -> (Value, usize) {
        let (body, next) = line(raw, at);
        let text = || String::from_utf8_lossy(body).into_owned();
        let n = || text().parse::<i64>().expect("a length");
        match raw[at] {
            b'+' => (Value::Simple(text()), next),
            b'-' => (Value::Error(text()), next),
            b':' => (Value::Int(n()), next),
            b'_' => (Value::Null, next),
            b'$' if n() < 0 => (Value::Null, next),
            b'$' => {
                let len = n() as usize;
                (Value::Bulk(raw[next..next + len].to_vec()), next + len + 2)
            }
            b'*' | b'~' if n() < 0 => (Value::NullArray, next),
            b'*' | b'~' | b'%' => {
                let count = if raw[at] == b'%' { 2 * n() } else { n() };
                let mut items = Vec::new();
                let mut at = next;
                for _ in 0..count {
                    let (v, n) = value(raw, at);
                    items.push(v);
                    at = n;
                }
                (Value::Array(items), at)
            }
            _ => (Value::Other(raw[at..next].to_vec()), next),
        }
    }
    value(raw, 0).0
}

fn show(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).replace("\r\n", "\\r\\n")
}

fn show_args(args: &[Vec<u8>]) -> String {
    args.iter()
        .map(|a| format!("{:?}", String::from_utf8_lossy(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------- both servers

/// One connection to each server; every command goes to both.
struct Both {
    redis: Client,
    strata: Client,
    /// The last commands, for the failure message.
    log: Vec<String>,
    seed: Option<u64>,
    /// The commands queued since MULTI (for EXEC's looser comparisons).
    queued: Option<Vec<Vec<Vec<u8>>>>,
}

impl Both {
    fn connect(redis: &RedisServer, strata: &Server) -> Both {
        Both {
            redis: Client::connect(redis.addr),
            strata: Client::connect(strata.addr),
            log: Vec::new(),
            seed: None,
            queued: None,
        }
    }

    fn send(&mut self, args: &[Vec<u8>]) -> (Vec<u8>, Vec<u8>) {
        let refs: Vec<&[u8]> = args.iter().map(|a| &a[..]).collect();
        let c = cmd_bytes(&refs);
        self.redis.send(&c);
        let r = self.redis.read_reply();
        self.strata.send(&c);
        let s = self.strata.read_reply();
        if self.log.len() >= 40 {
            self.log.remove(0);
        }
        self.log.push(format!("{} -> {}", show_args(args), show(&r)));
        match (&r[..], &mut self.queued) {
            (b"+OK\r\n", None) if args[0].eq_ignore_ascii_case(b"multi") => self.queued = Some(Vec::new()),
            (b"+QUEUED\r\n", Some(q)) => q.push(args.to_vec()),
            _ => {}
        }
        (r, s)
    }

    fn fail(&self, args: &[Vec<u8>], redis: &[u8], strata: &[u8], why: &str) -> ! {
        panic!(
            "{why}\n  command: {}\n  redis:   {}\n  strata:  {}\n  seed: {:?}\n  the commands before (with redis' replies):\n    {}",
            show_args(args),
            show(redis),
            show(strata),
            self.seed,
            self.log.join("\n    ")
        );
    }

    /// Sends to both; the replies must be the same, but for the documented differences.
    fn same_args(&mut self, args: &[Vec<u8>]) -> Value {
        let (r, s) = self.send(args);
        let queued = if args[0].eq_ignore_ascii_case(b"exec") || args[0].eq_ignore_ascii_case(b"discard") {
            self.queued.take()
        } else {
            None
        };
        if r == s {
            return parse(&r);
        }
        let (rv, sv) = (parse(&r), parse(&s));
        let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
        let sub = args.get(1).map(|a| String::from_utf8_lossy(a).to_ascii_lowercase());
        let ok = match (name.as_str(), &rv, &sv) {
            ("randomkey", Value::Bulk(_), Value::Bulk(k)) => {
                let exists = self.strata_only(&[b"EXISTS".to_vec(), k.clone()]);
                exists == Value::Int(1)
            }
            ("keys", Value::Array(a), Value::Array(b)) => sorted(a) == sorted(b),
            // Inside EXEC: a hash table's listing, in its order (see below; HRANDFIELD is
            // queued only with a count that lists the whole hash).
            ("exec", Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
                let queued = queued.unwrap_or_default();
                a.iter().zip(b).enumerate().all(|(i, (x, y))| {
                    let name = queued
                        .get(i)
                        .map(|c| String::from_utf8_lossy(&c[0]).to_ascii_lowercase());
                    let pairs = if name.as_deref() == Some("hgetall") { 2 } else { 1 };
                    x == y
                        || matches!(name.as_deref(), Some("hgetall" | "hkeys" | "hvals" | "hrandfield"))
                            && matches!((x, y), (Value::Array(x), Value::Array(y))
                                if sorted_chunks(x, pairs) == sorted_chunks(y, pairs))
                        || sets::same_in_exec(name.as_deref(), x, y)
                })
            }
            ("hgetall" | "hkeys" | "hvals", Value::Array(a), Value::Array(b)) => {
                let pairs = if name == "hgetall" { 2 } else { 1 };
                let table = self.strata_only(&[b"OBJECT".to_vec(), b"ENCODING".to_vec(), args[1].clone()]);
                table == Value::Bulk(b"hashtable".to_vec()) && sorted_chunks(a, pairs) == sorted_chunks(b, pairs)
            }
            ("hscan", Value::Array(a), Value::Array(b)) => {
                let table = self.strata_only(&[b"OBJECT".to_vec(), b"ENCODING".to_vec(), args[1].clone()]);
                table == Value::Bulk(b"hashtable".to_vec()) && a.len() == 2 && b.len() == 2
            }
            ("hrandfield", Value::Bulk(_), Value::Bulk(f)) => {
                let exists = self.strata_only(&[b"HEXISTS".to_vec(), args[1].clone(), f.clone()]);
                exists == Value::Int(1)
            }
            ("hrandfield", Value::Array(a), Value::Array(b)) => {
                let count: i64 = String::from_utf8_lossy(&args[2]).parse().unwrap_or(0);
                let len = self.strata_only(&[b"HLEN".to_vec(), args[1].clone()]);
                // The whole hash: in a hash table's order, so compared as a set.
                let mut whole = || {
                    let table = self.strata_only(&[b"OBJECT".to_vec(), b"ENCODING".to_vec(), args[1].clone()]);
                    let pairs = if args.len() == 4 && matches!(a.first(), Some(Value::Bulk(_))) {
                        2
                    } else {
                        1
                    };
                    table == Value::Bulk(b"hashtable".to_vec()) && sorted_chunks(a, pairs) == sorted_chunks(b, pairs)
                };
                a.len() == b.len() && (count < 0 || count < int_or_zero(&len) || whole())
            }
            ("scan", Value::Array(a), Value::Array(b)) => a.len() == 2 && b.len() == 2,
            ("ttl" | "expiretime", Value::Int(a), Value::Int(b)) => *a >= 0 && *b >= 0 && (a - b).abs() <= 1,
            ("pttl" | "pexpiretime", Value::Int(a), Value::Int(b)) => *a >= 0 && *b >= 0 && (a - b).abs() <= 250,
            ("object", Value::Int(a), Value::Int(b)) => match sub.as_deref() {
                Some("idletime") => (a - b).abs() <= 2,
                Some("refcount") => true,
                _ => false,
            },
            // The same reply type (a RESP3 set is no array) before a looser look.
            _ if sets::is_loose(&name) && r.first() == s.first() => sets::loosely_same(self, args, &rv, &sv),
            _ if zsets::is_loose(&name) => zsets::loosely_same(self, args, &rv, &sv),
            _ => false,
        };
        if !ok {
            self.fail(args, &r, &s, "the replies differ");
        }
        sv
    }

    fn same(&mut self, args: &[&str]) -> Value {
        let args: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
        self.same_args(&args)
    }

    /// Sends to both without comparing (HELLO: the version and ids differ).
    fn both(&mut self, args: &[&str]) {
        let args: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
        self.send(&args);
    }

    fn strata_only(&mut self, args: &[Vec<u8>]) -> Value {
        let refs: Vec<&[u8]> = args.iter().map(|a| &a[..]).collect();
        self.strata.send(&cmd_bytes(&refs));
        parse(&self.strata.read_reply())
    }

    /// A whole SCAN with these options on each server: the sets of keys must be equal
    /// (and errors the same).
    fn full_scan(&mut self, options: &[Vec<u8>]) {
        self.full_scan_of(&[b"SCAN".to_vec()], options)
    }

    /// A whole scan (`command`: SCAN, or HSCAN or SSCAN and its key) with these options
    /// on each server: the sets of what they found must be equal (and errors the same).
    /// For HSCAN each item is a field and its value.
    fn full_scan_of(&mut self, command: &[Vec<u8>], options: &[Vec<u8>]) {
        let pairs = command[0] == b"HSCAN" || command[0] == b"ZSCAN";
        let scan = |c: &mut Client| -> Result<BTreeSet<Vec<u8>>, Vec<u8>> {
            let mut cursor = b"0".to_vec();
            let mut keys = BTreeSet::new();
            for _ in 0..100_000 {
                let mut args = command.to_vec();
                args.push(cursor.clone());
                args.extend(options.iter().cloned());
                let refs: Vec<&[u8]> = args.iter().map(|a| &a[..]).collect();
                c.send(&cmd_bytes(&refs));
                let raw = c.read_reply();
                let Value::Array(parts) = parse(&raw) else {
                    return Err(raw);
                };
                let (Value::Bulk(next), Value::Array(found)) = (&parts[0], &parts[1]) else {
                    panic!("a SCAN reply that is not [cursor, keys]: {}", show(&raw));
                };
                for k in found.chunks(if pairs { 2 } else { 1 }) {
                    let mut item = Vec::new();
                    for part in k {
                        let Value::Bulk(part) = part else {
                            panic!("a key that is not a bulk string")
                        };
                        item.extend_from_slice(part);
                        item.push(0xff);
                    }
                    keys.insert(item);
                }
                if next == b"0" {
                    return Ok(keys);
                }
                cursor = next.clone();
            }
            panic!("a SCAN that never ended");
        };
        let r = scan(&mut self.redis);
        let s = scan(&mut self.strata);
        let mut args = command.to_vec();
        args[0].extend_from_slice(b"(full)");
        args.extend(options.iter().cloned());
        if self.log.len() >= 40 {
            self.log.remove(0);
        }
        self.log.push(format!("{} -> {r:?}", show_args(&args)));
        if r != s {
            let render = |x: &Result<BTreeSet<Vec<u8>>, Vec<u8>>| match x {
                Ok(keys) => format!(
                    "{:?}",
                    keys.iter()
                        .map(|k| String::from_utf8_lossy(k).into_owned())
                        .collect::<Vec<_>>()
                ),
                Err(raw) => show(raw),
            };
            self.fail(
                &args,
                render(&r).as_bytes(),
                render(&s).as_bytes(),
                "full scans found different keys",
            );
        }
    }
}

/// `v` cut into chunks of `n` (field and value pairs), sorted.
fn sorted_chunks(v: &[Value], n: usize) -> Vec<Vec<Value>> {
    let mut c: Vec<Vec<Value>> = v.chunks(n).map(<[Value]>::to_vec).collect();
    c.sort_by_key(|x| format!("{x:?}"));
    c
}

fn int_or_zero(v: &Value) -> i64 {
    match v {
        Value::Int(n) => *n,
        _ => 0,
    }
}

fn sorted(v: &[Value]) -> Vec<Value> {
    let mut v = v.to_vec();
    v.sort_by_key(|x| format!("{x:?}"));
    v
}

fn setup(test: &str) -> Option<(RedisServer, Server)> {
    let redis = redis_server(test)?;
    let strata = Server::start(2);
    Some((redis, strata))
}

// ---------------------------------------------------------------------- random walk

struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }

    fn key(&mut self) -> Vec<u8> {
        let k = self.pick(&["k0", "k1", "k2", "k3", "k4", "k5", "a*", "[b]", "", "k\u{0}"]);
        k.as_bytes().to_vec()
    }

    /// An integer argument: mostly small, sometimes at the edges or not one at all.
    fn int(&mut self) -> String {
        match self.below(20) {
            0 => self
                .pick(&[
                    "9223372036854775807",
                    "-9223372036854775808",
                    "9223372036854775808",
                    "abc",
                    "",
                    " 1",
                    "1.5",
                    "+1",
                    "-0",
                    "007",
                ])
                .to_string(),
            1..=4 => (self.below(2000) as i64 - 1000).to_string(),
            _ => (self.below(40) as i64 - 5).to_string(),
        }
    }

    fn float(&mut self) -> String {
        match self.below(4) {
            0 => self
                .pick(&[
                    "inf", "-inf", "nan", "1e5000", "1e-5000", "abc", "", " 1", "0x1p-3", "1e300", "-1e300", "5.",
                    ".5", "1e-20",
                ])
                .to_string(),
            1 => format!("{}", self.below(1000) as i64 - 500),
            _ => format!("{}.{}", self.below(200) as i64 - 100, self.below(1000)),
        }
    }

    fn value(&mut self) -> Vec<u8> {
        match self.below(10) {
            0 => Vec::new(),
            1 => self.float().into_bytes(),
            2 => b"x".repeat(self.below(60)),
            3 => vec![0, 0xff, b'\r', b'\n'],
            4..=6 => self.int().into_bytes(),
            _ => self
                .pick(&["hello", "world", "1", "10", "-1", "0", "3.5", "abc"])
                .as_bytes()
                .to_vec(),
        }
    }

    /// A hash field: a few names, sometimes one too long for a listpack.
    fn field(&mut self) -> Vec<u8> {
        if self.chance(2) {
            return b"F".repeat(65);
        }
        let f = self.pick(&["f0", "f1", "f2", "f3", "k1", "", "f\u{0}", "7"]);
        f.as_bytes().to_vec()
    }

    /// A hash value: as a string's, sometimes too long for a listpack.
    fn hash_value(&mut self) -> Vec<u8> {
        if self.chance(2) {
            return b"v".repeat(65);
        }
        self.value()
    }

    /// A list element: a few values, so that LREM, LPOS and LINSERT find them.
    fn element(&mut self) -> Vec<u8> {
        if self.chance(20) {
            return self.value();
        }
        self.pick(&["a", "b", "c", "1", ""]).as_bytes().to_vec()
    }

    /// A list index or count: mostly small, sometimes not one.
    fn index(&mut self) -> String {
        if self.chance(5) {
            return self.int();
        }
        (self.below(12) as i64 - 5).to_string()
    }

    fn pattern(&mut self) -> Vec<u8> {
        let p = self.pick(&[
            "*", "k*", "k?", "k[0-2]", "k[^1]", "*\\*", "\\[b\\]", "[[]b]", "?", "*k*", "a*", "[a-k]*", "", "k\\",
        ]);
        p.as_bytes().to_vec()
    }

    /// A relative TTL (in ms for `EX`-style units, else in seconds): far enough that
    /// nothing expires during the walk, or not in the future at all (the key goes at
    /// once), or invalid.
    fn ttl(&mut self, ms: bool) -> String {
        match self.below(10) {
            0 => self
                .pick(&["0", "-5", "abc", "9223372036854775", "9223372036854775807"])
                .to_string(),
            _ => {
                let s = self.pick(&["100", "1000", "10000", "100000"]);
                if ms {
                    format!("{s}000")
                } else {
                    s.to_string()
                }
            }
        }
    }

    /// An absolute time in seconds: long past or far ahead (fixed values, so that GT
    /// and LT compare them the same way on both servers), or invalid.
    fn unix_seconds(&mut self) -> String {
        self.pick(&[
            "1",
            "1000",
            "1600000000",
            "4102444800",
            "4102444801",
            "5000000000",
            "9223372036854775",
            "9223372036854776",
            "0",
            "-1",
            "x",
        ])
        .to_string()
    }

    fn expire_options(&mut self, comparisons: bool) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for _ in 0..self.below(3) {
            let choices: &[&str] = if comparisons {
                &["NX", "XX", "GT", "LT", "gt", "FOO"]
            } else {
                &["NX", "XX", "xx", "FOO"]
            };
            out.push(self.pick(choices).as_bytes().to_vec());
        }
        out
    }
}
