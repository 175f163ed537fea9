//! The command table: every command's name, arity, flags and key positions. It drives
//! dispatch and the arity check (`commands`) and `COMMAND`'s reply (`admin`).

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
    Incr,
    Incrby,
    Decr,
    Decrby,
    Append,
    Strlen,
    Getdel,
    Getset,
    Setnx,
    Setex,
    Psetex,
    Type,
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

const W: &[&str] = &["write", "denyoom"];
const R: &[&str] = &["readonly", "fast"];
const WF: &[&str] = &["write", "fast"];
const S: &[&str] = &["fast", "stale", "loading"];

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
    spec!("get", Get, 2, R, 1, 1, 1),
    spec!("set", Set, -3, W, 1, 1, 1),
    spec!("mget", Mget, -2, R, 1, -1, 1),
    spec!("mset", Mset, -3, W, 1, -1, 2),
    spec!("incr", Incr, 2, W, 1, 1, 1),
    spec!("del", Del, -2, &["write"], 1, -1, 1),
    spec!("unlink", Del, -2, WF, 1, -1, 1),
    spec!("exists", Exists, -2, R, 1, -1, 1),
    spec!("expire", Expire, -3, WF, 1, 1, 1),
    spec!("pexpire", Pexpire, -3, WF, 1, 1, 1),
    spec!("expireat", Expireat, -3, WF, 1, 1, 1),
    spec!("pexpireat", Pexpireat, -3, WF, 1, 1, 1),
    spec!("ttl", Ttl, 2, R, 1, 1, 1),
    spec!("pttl", Pttl, 2, R, 1, 1, 1),
    spec!("persist", Persist, 2, WF, 1, 1, 1),
    spec!("incrby", Incrby, 3, W, 1, 1, 1),
    spec!("decr", Decr, 2, W, 1, 1, 1),
    spec!("decrby", Decrby, 3, W, 1, 1, 1),
    spec!("append", Append, 3, W, 1, 1, 1),
    spec!("strlen", Strlen, 2, R, 1, 1, 1),
    spec!("getdel", Getdel, 2, WF, 1, 1, 1),
    spec!("getset", Getset, 3, W, 1, 1, 1),
    spec!("setnx", Setnx, 3, W, 1, 1, 1),
    spec!("setex", Setex, 4, W, 1, 1, 1),
    spec!("psetex", Psetex, 4, W, 1, 1, 1),
    spec!("type", Type, 2, R, 1, 1, 1),
    spec!("ping", Ping, -1, S, 0, 0, 0),
    spec!("echo", Echo, 2, S, 0, 0, 0),
    spec!("select", Select, 2, S, 0, 0, 0),
    spec!("info", Info, -1, &["stale", "loading"], 0, 0, 0),
    spec!("dbsize", Dbsize, 1, R, 0, 0, 0),
    spec!("flushdb", Flushdb, -1, &["write"], 0, 0, 0),
    spec!("flushall", Flushdb, -1, &["write"], 0, 0, 0),
    spec!("command", Command, -1, &["stale", "loading"], 0, 0, 0),
    spec!("client", Client, -2, &["stale", "loading"], 0, 0, 0),
    spec!("quit", Quit, -1, &["fast", "stale", "loading", "allow_busy"], 0, 0, 0),
    spec!("reset", Reset, 1, S, 0, 0, 0),
    spec!("hello", Hello, -1, S, 0, 0, 0),
    spec!("auth", Auth, -2, S, 0, 0, 0),
    spec!("config", Config, -2, &["admin", "stale", "loading"], 0, 0, 0),
    spec!("time", Time, 1, S, 0, 0, 0),
];

pub(crate) fn lookup(name: &[u8]) -> Option<&'static Spec> {
    COMMANDS
        .iter()
        .find(|s| s.name.len() == name.len() && s.name.as_bytes().eq_ignore_ascii_case(name))
}
