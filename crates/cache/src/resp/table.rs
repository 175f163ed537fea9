//! The command table: every command's name, arity, flags and key positions, as Redis
//! 7.0 declares them (`COMMAND INFO`), and the subcommands of the container commands
//! (CLIENT, COMMAND, CONFIG, OBJECT, PUBSUB) with their arities and flags. It drives
//! dispatch and the arity and subcommand checks (`commands`), `COMMAND`'s reply
//! (`admin`, which finds a subcommand by its full name, `client|list`, with
//! [`lookup_full`]), and which shards a command holds while it runs or EXEC locks for it
//! ([`Spec::shards`]).

use super::parse::Args;
use super::reply::truncated;
use crate::keyspace::ShardSet;
use crate::Cache;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cmd {
    Get,
    Set,
    Del,
    Exists,
    Expire,
    Pexpire,
    Expireat,
    Pexpireat,
    Ttl,
    Pttl,
    Persist,
    Mget,
    Mset,
    Msetnx,
    Incr,
    Incrby,
    Incrbyfloat,
    Decr,
    Decrby,
    Append,
    Strlen,
    Getdel,
    Getex,
    Getset,
    Getrange,
    Setrange,
    Setbit,
    Getbit,
    Bitcount,
    Setnx,
    Setex,
    Psetex,
    Expiretime,
    Pexpiretime,
    Type,
    Keys,
    Scan,
    Rename,
    Renamenx,
    Copy,
    Randomkey,
    Object,
    Multi,
    Exec,
    Discard,
    Watch,
    Unwatch,
    Ping,
    Echo,
    Select,
    Info,
    Dbsize,
    Flushdb,
    Command,
    Client,
    Quit,
    Reset,
    Hello,
    Auth,
    Config,
    Time,
    Hset,
    Hmset,
    Hsetnx,
    Hget,
    Hmget,
    Hdel,
    Hlen,
    Hexists,
    Hstrlen,
    Hkeys,
    Hvals,
    Hgetall,
    Hincrby,
    Hincrbyfloat,
    Hrandfield,
    Hscan,
    Sadd,
    Srem,
    Smembers,
    Sismember,
    Smismember,
    Scard,
    Spop,
    Srandmember,
    Sinter,
    Sunion,
    Sdiff,
    Sinterstore,
    Sunionstore,
    Sdiffstore,
    Sintercard,
    Smove,
    Sscan,
    Lpush,
    Rpush,
    Lpushx,
    Rpushx,
    Lpop,
    Rpop,
    Lrange,
    Lindex,
    Lset,
    Llen,
    Lrem,
    Ltrim,
    Linsert,
    Lpos,
    Lmove,
    Rpoplpush,
    Lmpop,
    Blpop,
    Brpop,
    Blmove,
    Brpoplpush,
    Blmpop,
    Bzpopmin,
    Bzpopmax,
    Bzmpop,
    Subscribe,
    Unsubscribe,
    Psubscribe,
    Punsubscribe,
    Publish,
    Pubsub,
    Zadd,
    Zincrby,
    Zrem,
    Zcard,
    Zscore,
    Zmscore,
    Zrank,
    Zrevrank,
    Zcount,
    Zlexcount,
    Zpopmin,
    Zpopmax,
    Zmpop,
    Zremrangebyrank,
    Zremrangebyscore,
    Zremrangebylex,
    Zrandmember,
    Zscan,
    Zrange,
    Zrangestore,
    Zrevrange,
    Zrangebyscore,
    Zrevrangebyscore,
    Zrangebylex,
    Zrevrangebylex,
    Zunionstore,
    Zinterstore,
    Zdiffstore,
    Zunion,
    Zinter,
    Zdiff,
    Zintercard,
    Touch,
    Wait,
}

impl Cmd {
    /// Whether the command runs at once inside MULTI rather than being queued (Redis:
    /// EXEC, DISCARD, MULTI, WATCH, QUIT and RESET).
    pub fn runs_inside_multi(self) -> bool {
        matches!(
            self,
            Cmd::Exec | Cmd::Discard | Cmd::Multi | Cmd::Watch | Cmd::Quit | Cmd::Reset
        )
    }

    /// Whether the command may wait for elements (outside a transaction).
    pub fn is_blocking(self) -> bool {
        matches!(
            self,
            Cmd::Blpop
                | Cmd::Brpop
                | Cmd::Blmove
                | Cmd::Brpoplpush
                | Cmd::Blmpop
                | Cmd::Bzpopmin
                | Cmd::Bzpopmax
                | Cmd::Bzmpop
                | Cmd::Wait
        )
    }

    /// Whether the command reads or changes the whole keyspace (or every shard's
    /// figures): it holds every shard while it runs.
    pub fn touches_every_shard(self) -> bool {
        matches!(
            self,
            Cmd::Keys | Cmd::Scan | Cmd::Randomkey | Cmd::Dbsize | Cmd::Flushdb | Cmd::Info | Cmd::Config
        )
    }
}

/// One command's entry: its name, arity (Redis' convention: `n` exactly n arguments
/// including the name, `-n` at least n), flags and key positions.
pub(crate) struct Spec {
    pub name: &'static str,
    pub cmd: Cmd,
    pub arity: i32,
    pub flags: &'static [&'static str],
    pub first_key: i32,
    pub last_key: i32,
    pub step: i32,
}

/// Whether `n` arguments (the name included) fit `arity` (Redis' convention).
fn arity_ok(arity: i32, n: usize) -> bool {
    let n = n as i32;
    (arity > 0 && n == arity) || (arity < 0 && n >= -arity)
}

/// A subcommand of a container command: its name as Redis 7.0 declares it (lowercase),
/// its arity, the container's name included (`client|getname` is 2: `CLIENT
/// GETNAME`), its flags, and where its key is (OBJECT's take one, second: 2; 0 for
/// none), as `COMMAND INFO client|getname` answers them.
pub(crate) struct Subcommand {
    pub name: &'static str,
    pub arity: i32,
    pub flags: &'static [&'static str],
    pub key: i32,
}

const fn sub(name: &'static str, arity: i32, flags: &'static [&'static str]) -> Subcommand {
    Subcommand {
        name,
        arity,
        flags,
        key: 0,
    }
}

/// OBJECT's subcommands that read their key.
const fn keyed(name: &'static str) -> Subcommand {
    Subcommand {
        key: 2,
        ..sub(name, 3, R)
    }
}

/// Most subcommands' flags, and the admin ones' (CLIENT LIST, CONFIG GET, ...), and
/// PUBSUB's.
const LS: &[&str] = &["loading", "stale"];
const NLS: &[&str] = &["noscript", "loading", "stale"];
const ADMIN: &[&str] = &["admin", "noscript", "loading", "stale"];
const PLS: &[&str] = &["pubsub", "loading", "stale"];

/// The subcommands strata has, with Redis 7.0's arities and flags (SETINFO and NO-TOUCH
/// are 7.2's, sent by newer clients on connecting). Those Redis has and strata does not
/// (CLIENT KILL and TRACKING, CONFIG REWRITE, COMMAND GETKEYSANDFLAGS, ...) are unknown
/// here, as they would be to a Redis without them.
const CLIENT_SUBCOMMANDS: &[Subcommand] = &[
    sub("getname", 2, NLS),
    sub("help", 2, LS),
    sub("id", 2, NLS),
    sub("info", 2, NLS),
    sub("list", -2, ADMIN),
    sub("no-evict", 3, ADMIN),
    sub("no-touch", 3, NLS),
    sub("reply", 3, NLS),
    sub("setinfo", 4, NLS),
    sub("setname", 3, NLS),
];
const COMMAND_SUBCOMMANDS: &[Subcommand] = &[
    sub("count", 2, LS),
    sub("docs", -2, LS),
    sub("getkeys", -4, LS),
    sub("help", 2, LS),
    sub("info", -2, LS),
    sub("list", -2, LS),
];
const CONFIG_SUBCOMMANDS: &[Subcommand] = &[
    sub("get", -3, ADMIN),
    sub("help", 2, LS),
    sub("resetstat", 2, ADMIN),
    sub("set", -4, ADMIN),
];
const OBJECT_SUBCOMMANDS: &[Subcommand] = &[
    keyed("encoding"),
    keyed("freq"),
    sub("help", 2, LS),
    keyed("idletime"),
    keyed("refcount"),
];
const PUBSUB_SUBCOMMANDS: &[Subcommand] = &[
    sub("channels", -2, PLS),
    sub("help", 2, LS),
    sub("numpat", 2, PLS),
    sub("numsub", -2, PLS),
    sub("shardchannels", -2, PLS),
    sub("shardnumsub", -2, PLS),
];

/// Redis 7.0's reply to a container command's unknown subcommand `sub`.
pub(crate) fn unknown_subcommand(container: &str, sub: &[u8]) -> String {
    format!(
        "ERR unknown subcommand '{}'. Try {} HELP.",
        truncated(sub, 128),
        container.to_ascii_uppercase()
    )
}

impl Spec {
    /// Whether `n` arguments (the name included) fit the arity.
    pub fn arity_ok(&self, n: usize) -> bool {
        arity_ok(self.arity, n)
    }

    /// A container command's subcommands (none for other commands).
    pub fn subcommands(&self) -> &'static [Subcommand] {
        match self.cmd {
            Cmd::Client => CLIENT_SUBCOMMANDS,
            Cmd::Command => COMMAND_SUBCOMMANDS,
            Cmd::Config => CONFIG_SUBCOMMANDS,
            Cmd::Object => OBJECT_SUBCOMMANDS,
            Cmd::Pubsub => PUBSUB_SUBCOMMANDS,
            _ => &[],
        }
    }

    /// The subcommand `args` name, checked as Redis 7.0 checks it before a command runs
    /// or is queued (after the container's own arity): known, and with its arity. None
    /// for a command without subcommands, or a container given none (`COMMAND`). The
    /// error is Redis' reply, word for word.
    pub fn subcommand(&self, args: Args<'_>) -> Result<Option<&'static Subcommand>, String> {
        let subs = self.subcommands();
        if subs.is_empty() || args.len() < 2 {
            return Ok(None);
        }
        let given = args.get(1);
        let Some(sub) = subs.iter().find(|s| s.name.as_bytes().eq_ignore_ascii_case(given)) else {
            return Err(unknown_subcommand(self.name, given));
        };
        if !arity_ok(sub.arity, args.len()) {
            return Err(format!(
                "ERR wrong number of arguments for '{}|{}' command",
                self.name, sub.name
            ));
        }
        Ok(Some(sub))
    }

    /// The positions of the command's keys in `args` (Redis' first/last/step; OBJECT's
    /// subcommands take their key second; SINTERCARD's keys follow their count, and so do
    /// ZUNION's, ZINTER's, ZDIFF's, ZINTERCARD's and, after their destination, the *STORE
    /// forms'; LMPOP and BLMPOP count theirs, as `movablekeys` says).
    pub fn key_positions(&self, args: Args<'_>) -> impl Iterator<Item = usize> {
        let n = args.len() as i32;
        let counted = |at: i32| match crate::cache::parse_i64(args.get(at as usize)) {
            Some(k) if k >= 1 && k < n as i64 - at as i64 => (at + 1, at + k as i32, 1),
            _ => (0, 0, 0),
        };
        // The sorted set *STORE commands' destination, besides their keys.
        let mut also = None;
        let (first, last, step) = match self.cmd {
            Cmd::Object => (2, 2, 1),
            Cmd::Sintercard | Cmd::Zunion | Cmd::Zinter | Cmd::Zdiff | Cmd::Zintercard => {
                match crate::cache::parse_i64(args.get(1)) {
                    Some(k) if k >= 1 => (2, k.min(n as i64) as i32 + 1, 1),
                    _ => (0, 0, 0),
                }
            }
            Cmd::Zunionstore | Cmd::Zinterstore | Cmd::Zdiffstore => {
                also = Some(1);
                match crate::cache::parse_i64(args.get(2)) {
                    Some(k) if k >= 1 => (3, k.min(n as i64) as i32 + 2, 1),
                    _ => (0, 0, 0),
                }
            }
            Cmd::Lmpop | Cmd::Zmpop if n > 1 => counted(1),
            Cmd::Blmpop | Cmd::Bzmpop if n > 2 => counted(2),
            _ => (self.first_key, self.last_key, self.step),
        };
        let last = if last < 0 { n + last } else { last.min(n - 1) };
        let range = if first <= 0 || step <= 0 || first > last {
            0..0
        } else {
            first as usize..last as usize + 1
        };
        range.step_by(step.max(1) as usize).chain(also)
    }

    /// Adds the shards the command touches to `set`: its keys' shards, or all of them.
    pub fn shards(&self, args: Args<'_>, cache: &Cache, set: &mut ShardSet) {
        if self.cmd.touches_every_shard() {
            set.insert_all();
            return;
        }
        for i in self.key_positions(args) {
            set.insert(cache.shard_of(args.get(i)));
        }
    }

    /// Whether the command must hold its shards for its whole run: several keys (which
    /// may live on several shards), or the whole keyspace. Single-key commands are one
    /// keyspace operation each, which locks its shard by itself.
    pub fn holds_shards(&self) -> bool {
        self.cmd.touches_every_shard()
            || self.cmd == Cmd::Sintercard
            || matches!(self.cmd, Cmd::Lmpop | Cmd::Blmpop | Cmd::Zmpop | Cmd::Bzmpop)
            || matches!(
                self.cmd,
                Cmd::Zunion
                    | Cmd::Zinter
                    | Cmd::Zdiff
                    | Cmd::Zintercard
                    | Cmd::Zunionstore
                    | Cmd::Zinterstore
                    | Cmd::Zdiffstore
            )
            || self.step > 0 && (self.last_key < 0 || self.last_key > self.first_key)
    }
}

const R: &[&str] = &["readonly"];
const RF: &[&str] = &["readonly", "fast"];
const W: &[&str] = &["write"];
const WD: &[&str] = &["write", "denyoom"];
const WF: &[&str] = &["write", "fast"];
const WDF: &[&str] = &["write", "denyoom", "fast"];
const LSF: &[&str] = &["loading", "stale", "fast"];
/// MULTI, DISCARD, WATCH, UNWATCH.
const TX: &[&str] = &["noscript", "loading", "stale", "fast", "allow_busy"];
/// QUIT, RESET, HELLO, AUTH.
const CONN: &[&str] = &["noscript", "loading", "stale", "fast", "no_auth", "allow_busy"];
/// BLPOP, BRPOP.
const BLOCKING: &[&str] = &["write", "noscript", "blocking"];
/// BLMOVE, BRPOPLPUSH.
const BLOCKING_D: &[&str] = &["write", "denyoom", "noscript", "blocking"];
/// BZPOPMIN, BZPOPMAX.
const BLOCKING_F: &[&str] = &["write", "noscript", "fast", "blocking"];
/// SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE, PUNSUBSCRIBE.
const PUBSUB: &[&str] = &["pubsub", "noscript", "loading", "stale"];
/// Commands with subcommands: their flags are their subcommands'.
const CONTAINER: &[&str] = &[];

macro_rules! spec {
    ($name:literal, $cmd:ident, $arity:literal, $flags:expr, $first:literal, $last:literal, $step:literal) => {
        Spec {
            name: $name,
            cmd: Cmd::$cmd,
            arity: $arity,
            flags: $flags,
            first_key: $first,
            last_key: $last,
            step: $step,
        }
    };
}

/// Every command, the hottest first (dispatch scans the table).
pub(crate) static COMMANDS: &[Spec] = &[
    spec!("get", Get, 2, RF, 1, 1, 1),
    spec!("set", Set, -3, WD, 1, 1, 1),
    spec!("mget", Mget, -2, RF, 1, -1, 1),
    spec!("mset", Mset, -3, WD, 1, -1, 2),
    spec!("incr", Incr, 2, WDF, 1, 1, 1),
    spec!("del", Del, -2, W, 1, -1, 1),
    spec!("unlink", Del, -2, WF, 1, -1, 1),
    spec!("exists", Exists, -2, RF, 1, -1, 1),
    spec!("expire", Expire, -3, WF, 1, 1, 1),
    spec!("pexpire", Pexpire, -3, WF, 1, 1, 1),
    spec!("expireat", Expireat, -3, WF, 1, 1, 1),
    spec!("pexpireat", Pexpireat, -3, WF, 1, 1, 1),
    spec!("ttl", Ttl, 2, RF, 1, 1, 1),
    spec!("pttl", Pttl, 2, RF, 1, 1, 1),
    spec!("persist", Persist, 2, WF, 1, 1, 1),
    spec!("incrby", Incrby, 3, WDF, 1, 1, 1),
    spec!("decr", Decr, 2, WDF, 1, 1, 1),
    spec!("decrby", Decrby, 3, WDF, 1, 1, 1),
    spec!("append", Append, 3, WDF, 1, 1, 1),
    spec!("strlen", Strlen, 2, RF, 1, 1, 1),
    spec!("getdel", Getdel, 2, WF, 1, 1, 1),
    spec!("getex", Getex, -2, WF, 1, 1, 1),
    spec!("getset", Getset, 3, WDF, 1, 1, 1),
    spec!("setnx", Setnx, 3, WDF, 1, 1, 1),
    spec!("setex", Setex, 4, WD, 1, 1, 1),
    spec!("psetex", Psetex, 4, WD, 1, 1, 1),
    spec!("msetnx", Msetnx, -3, WD, 1, -1, 2),
    spec!("incrbyfloat", Incrbyfloat, 3, WDF, 1, 1, 1),
    spec!("getrange", Getrange, 4, R, 1, 1, 1),
    spec!("substr", Getrange, 4, R, 1, 1, 1),
    spec!("setrange", Setrange, 4, WD, 1, 1, 1),
    spec!("setbit", Setbit, 4, WD, 1, 1, 1),
    spec!("getbit", Getbit, 3, RF, 1, 1, 1),
    spec!("bitcount", Bitcount, -2, R, 1, 1, 1),
    spec!("expiretime", Expiretime, 2, RF, 1, 1, 1),
    spec!("pexpiretime", Pexpiretime, 2, RF, 1, 1, 1),
    spec!("type", Type, 2, RF, 1, 1, 1),
    spec!("touch", Touch, -2, RF, 1, -1, 1),
    spec!("wait", Wait, 3, &["noscript"], 0, 0, 0),
    spec!("multi", Multi, 1, TX, 0, 0, 0),
    spec!(
        "exec",
        Exec,
        1,
        &["noscript", "loading", "stale", "skip_slowlog"],
        0,
        0,
        0
    ),
    spec!("discard", Discard, 1, TX, 0, 0, 0),
    spec!("watch", Watch, -2, TX, 1, -1, 1),
    spec!("unwatch", Unwatch, 1, TX, 0, 0, 0),
    spec!("scan", Scan, -2, R, 0, 0, 0),
    spec!("keys", Keys, 2, R, 0, 0, 0),
    spec!("rename", Rename, 3, W, 1, 2, 1),
    spec!("renamenx", Renamenx, 3, WF, 1, 2, 1),
    spec!("copy", Copy, -3, WD, 1, 2, 1),
    spec!("randomkey", Randomkey, 1, R, 0, 0, 0),
    spec!("object", Object, -2, CONTAINER, 0, 0, 0),
    spec!("ping", Ping, -1, &["fast"], 0, 0, 0),
    spec!("echo", Echo, 2, LSF, 0, 0, 0),
    spec!("select", Select, 2, LSF, 0, 0, 0),
    spec!("info", Info, -1, &["loading", "stale"], 0, 0, 0),
    spec!("dbsize", Dbsize, 1, RF, 0, 0, 0),
    spec!("flushdb", Flushdb, -1, W, 0, 0, 0),
    spec!("flushall", Flushdb, -1, W, 0, 0, 0),
    spec!("command", Command, -1, &["loading", "stale"], 0, 0, 0),
    spec!("client", Client, -2, CONTAINER, 0, 0, 0),
    spec!("quit", Quit, -1, CONN, 0, 0, 0),
    spec!("reset", Reset, 1, CONN, 0, 0, 0),
    spec!("hello", Hello, -1, CONN, 0, 0, 0),
    spec!("auth", Auth, -2, CONN, 0, 0, 0),
    spec!("config", Config, -2, CONTAINER, 0, 0, 0),
    spec!("time", Time, 1, LSF, 0, 0, 0),
    spec!("hset", Hset, -4, WDF, 1, 1, 1),
    spec!("hmset", Hmset, -4, WDF, 1, 1, 1),
    spec!("hsetnx", Hsetnx, 4, WDF, 1, 1, 1),
    spec!("hget", Hget, 3, RF, 1, 1, 1),
    spec!("hmget", Hmget, -3, RF, 1, 1, 1),
    spec!("hdel", Hdel, -3, WF, 1, 1, 1),
    spec!("hlen", Hlen, 2, RF, 1, 1, 1),
    spec!("hexists", Hexists, 3, RF, 1, 1, 1),
    spec!("hstrlen", Hstrlen, 3, RF, 1, 1, 1),
    spec!("hkeys", Hkeys, 2, R, 1, 1, 1),
    spec!("hvals", Hvals, 2, R, 1, 1, 1),
    spec!("hgetall", Hgetall, 2, R, 1, 1, 1),
    spec!("hincrby", Hincrby, 4, WDF, 1, 1, 1),
    spec!("hincrbyfloat", Hincrbyfloat, 4, WDF, 1, 1, 1),
    spec!("hrandfield", Hrandfield, -2, R, 1, 1, 1),
    spec!("hscan", Hscan, -3, R, 1, 1, 1),
    spec!("sadd", Sadd, -3, WDF, 1, 1, 1),
    spec!("srem", Srem, -3, WF, 1, 1, 1),
    spec!("smembers", Smembers, 2, R, 1, 1, 1),
    spec!("sismember", Sismember, 3, RF, 1, 1, 1),
    spec!("smismember", Smismember, -3, RF, 1, 1, 1),
    spec!("scard", Scard, 2, RF, 1, 1, 1),
    spec!("spop", Spop, -2, WF, 1, 1, 1),
    spec!("srandmember", Srandmember, -2, R, 1, 1, 1),
    spec!("sinter", Sinter, -2, R, 1, -1, 1),
    spec!("sunion", Sunion, -2, R, 1, -1, 1),
    spec!("sdiff", Sdiff, -2, R, 1, -1, 1),
    spec!("sinterstore", Sinterstore, -3, WD, 1, -1, 1),
    spec!("sunionstore", Sunionstore, -3, WD, 1, -1, 1),
    spec!("sdiffstore", Sdiffstore, -3, WD, 1, -1, 1),
    spec!("sintercard", Sintercard, -3, &["readonly", "movablekeys"], 0, 0, 0),
    spec!("smove", Smove, 4, WF, 1, 2, 1),
    spec!("sscan", Sscan, -3, R, 1, 1, 1),
    spec!("lpush", Lpush, -3, WDF, 1, 1, 1),
    spec!("rpush", Rpush, -3, WDF, 1, 1, 1),
    spec!("lpushx", Lpushx, -3, WDF, 1, 1, 1),
    spec!("rpushx", Rpushx, -3, WDF, 1, 1, 1),
    spec!("lpop", Lpop, -2, WF, 1, 1, 1),
    spec!("rpop", Rpop, -2, WF, 1, 1, 1),
    spec!("lrange", Lrange, 4, R, 1, 1, 1),
    spec!("lindex", Lindex, 3, R, 1, 1, 1),
    spec!("lset", Lset, 4, WD, 1, 1, 1),
    spec!("llen", Llen, 2, RF, 1, 1, 1),
    spec!("lrem", Lrem, 4, W, 1, 1, 1),
    spec!("ltrim", Ltrim, 4, W, 1, 1, 1),
    spec!("linsert", Linsert, 5, WD, 1, 1, 1),
    spec!("lpos", Lpos, -3, R, 1, 1, 1),
    spec!("lmove", Lmove, 5, WD, 1, 2, 1),
    spec!("rpoplpush", Rpoplpush, 3, WD, 1, 2, 1),
    spec!("lmpop", Lmpop, -4, &["write", "movablekeys"], 0, 0, 0),
    spec!("blpop", Blpop, -3, BLOCKING, 1, -2, 1),
    spec!("brpop", Brpop, -3, BLOCKING, 1, -2, 1),
    spec!("blmove", Blmove, 6, BLOCKING_D, 1, 2, 1),
    spec!("brpoplpush", Brpoplpush, 4, BLOCKING_D, 1, 2, 1),
    spec!("blmpop", Blmpop, -5, &["write", "blocking", "movablekeys"], 0, 0, 0),
    spec!("subscribe", Subscribe, -2, PUBSUB, 0, 0, 0),
    spec!("unsubscribe", Unsubscribe, -1, PUBSUB, 0, 0, 0),
    spec!("psubscribe", Psubscribe, -2, PUBSUB, 0, 0, 0),
    spec!("punsubscribe", Punsubscribe, -1, PUBSUB, 0, 0, 0),
    spec!("publish", Publish, 3, &["pubsub", "loading", "stale", "fast"], 0, 0, 0),
    spec!("pubsub", Pubsub, -2, CONTAINER, 0, 0, 0),
    spec!("zadd", Zadd, -4, WDF, 1, 1, 1),
    spec!("zincrby", Zincrby, 4, WDF, 1, 1, 1),
    spec!("zrem", Zrem, -3, WF, 1, 1, 1),
    spec!("zcard", Zcard, 2, RF, 1, 1, 1),
    spec!("zscore", Zscore, 3, RF, 1, 1, 1),
    spec!("zmscore", Zmscore, -3, RF, 1, 1, 1),
    spec!("zrank", Zrank, 3, RF, 1, 1, 1),
    spec!("zrevrank", Zrevrank, 3, RF, 1, 1, 1),
    spec!("zcount", Zcount, 4, RF, 1, 1, 1),
    spec!("zlexcount", Zlexcount, 4, RF, 1, 1, 1),
    spec!("zpopmin", Zpopmin, -2, WF, 1, 1, 1),
    spec!("zpopmax", Zpopmax, -2, WF, 1, 1, 1),
    spec!("zmpop", Zmpop, -4, &["write", "movablekeys"], 0, 0, 0),
    spec!("bzpopmin", Bzpopmin, -3, BLOCKING_F, 1, -2, 1),
    spec!("bzpopmax", Bzpopmax, -3, BLOCKING_F, 1, -2, 1),
    spec!("bzmpop", Bzmpop, -5, &["write", "blocking", "movablekeys"], 0, 0, 0),
    spec!("zremrangebyrank", Zremrangebyrank, 4, W, 1, 1, 1),
    spec!("zremrangebyscore", Zremrangebyscore, 4, W, 1, 1, 1),
    spec!("zremrangebylex", Zremrangebylex, 4, W, 1, 1, 1),
    spec!("zrandmember", Zrandmember, -2, R, 1, 1, 1),
    spec!("zscan", Zscan, -3, R, 1, 1, 1),
    spec!("zrange", Zrange, -4, R, 1, 1, 1),
    spec!("zrangestore", Zrangestore, -5, WD, 1, 2, 1),
    spec!("zrevrange", Zrevrange, -4, R, 1, 1, 1),
    spec!("zrangebyscore", Zrangebyscore, -4, R, 1, 1, 1),
    spec!("zrevrangebyscore", Zrevrangebyscore, -4, R, 1, 1, 1),
    spec!("zrangebylex", Zrangebylex, -4, R, 1, 1, 1),
    spec!("zrevrangebylex", Zrevrangebylex, -4, R, 1, 1, 1),
    spec!(
        "zunionstore",
        Zunionstore,
        -4,
        &["write", "denyoom", "movablekeys"],
        1,
        1,
        1
    ),
    spec!(
        "zinterstore",
        Zinterstore,
        -4,
        &["write", "denyoom", "movablekeys"],
        1,
        1,
        1
    ),
    spec!(
        "zdiffstore",
        Zdiffstore,
        -4,
        &["write", "denyoom", "movablekeys"],
        1,
        1,
        1
    ),
    spec!("zunion", Zunion, -3, &["readonly", "movablekeys"], 0, 0, 0),
    spec!("zinter", Zinter, -3, &["readonly", "movablekeys"], 0, 0, 0),
    spec!("zdiff", Zdiff, -3, &["readonly", "movablekeys"], 0, 0, 0),
    spec!("zintercard", Zintercard, -3, &["readonly", "movablekeys"], 0, 0, 0),
];

pub(crate) fn lookup(name: &[u8]) -> Option<&'static Spec> {
    COMMANDS
        .iter()
        .find(|s| s.name.len() == name.len() && s.name.as_bytes().eq_ignore_ascii_case(name))
}

/// A command or a subcommand by its full name, as Redis 7.0's `lookupCommandBySds` finds
/// it for COMMAND INFO and COMMAND DOCS: `get`, or `client|list` (any case). One level of
/// subcommands only: `client|list|x`, `get|x` (no subcommands), `client|` and `|list`
/// name nothing; a container by its own name (`client`) is the container.
pub(crate) fn lookup_full(name: &[u8]) -> Option<(&'static Spec, Option<&'static Subcommand>)> {
    let Some(bar) = name.iter().position(|&b| b == b'|') else {
        return lookup(name).map(|spec| (spec, None));
    };
    let (container, sub) = (&name[..bar], &name[bar + 1..]);
    let spec = lookup(container)?;
    let sub = spec
        .subcommands()
        .iter()
        .find(|s| s.name.len() == sub.len() && s.name.as_bytes().eq_ignore_ascii_case(sub))?;
    Some((spec, Some(sub)))
}
