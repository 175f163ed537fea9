//! The Redis protocol (RESP2, and RESP3 after `HELLO 3`) in front of a [`crate::Cache`].
//!
//! Modules, bottom-up: each uses only the ones above it (named in parentheses).
//! - `parse`: the incremental request parser ([`Parser`], [`Limits`], [`ProtocolError`]).
//! - `frame`: where one reply ends in a peer node's bytes (the reply framer).
//! - `reply`: reply encoding for RESP2 and RESP3.
//! - `table` (parse, reply): the command table (names, arities, flags, key positions,
//!   and so which shards a command holds; the container commands' subcommands).
//! - `timeouts`: the idle and slow-command timeouts, kept by a sweep per worker thread.
//! - `query_buffer`: a connection's query buffer, bounded alone and with all the others.
//! - `transaction` (parse, table): a connection's MULTI queue and WATCHed keys.
//! - `pubsub` (parse, reply, table): SUBSCRIBE, PSUBSCRIBE, their UNSUBSCRIBEs,
//!   PUBLISH, PUBSUB, and a connection's subscriptions and mailbox (the registry is the
//!   crate's `pubsub`).
//! - `state` (parse, timeouts, query_buffer, transaction, pubsub, command_stats): what commands run
//!   against: the server's shared state, built from [`RespConfig`] (the pub/sub
//!   registry and the password among it), and one connection's session.
//! - `command_stats` (table): the figures by command and by error, and the traffic
//!   (INFO's commandstats, errorstats, `total_net_*`, `instantaneous_*`), per worker.
//! - `admin` (parse, reply, table, state): HELLO, AUTH (the password), CLIENT (REPLY
//!   included), COMMAND, CONFIG.
//! - `getkeys` (parse, reply, table): COMMAND GETKEYS.
//! - `info` (reply, state, command_stats): INFO.
//! - `strings` (parse, reply): the string commands (SET family, GETEX, INCRBYFLOAT,
//!   GETRANGE, SETRANGE, SETBIT, BITCOUNT, ...).
//! - `keys` (parse, reply): the keyspace commands (DEL, EXPIRE family, KEYS, SCAN,
//!   RENAME, COPY, OBJECT, ...).
//! - `hashes` (parse, reply, strings, keys): the hash commands (HSET, HGETALL,
//!   HINCRBY, HSCAN, ...).
//! - `sets` (parse, reply, strings, keys, hashes): the set commands on one key (SADD,
//!   SPOP, SRANDMEMBER, SSCAN, ...).
//! - `set_algebra` (parse, reply, sets): the set commands on several keys (SINTER and
//!   SMEMBERS, SUNION, SDIFF, their *STORE forms, SINTERCARD, SMOVE).
//! - `lists` (parse, reply, strings): the list commands that never wait (LPUSH, LRANGE,
//!   LPOS, LMOVE, LMPOP, ...).
//! - `blocking` (parse, reply, table, state, lists, zsets): BLPOP, BRPOP, BLMOVE,
//!   BRPOPLPUSH, BLMPOP, BZPOPMIN, BZPOPMAX, BZMPOP:
//!   their first try, and a blocked connection's wait (`Blocked`), registered in its
//!   keys' shards and counted in the clients' memory.
//! - `zsets` (parse, reply, strings, keys, hashes): the sorted set commands on one key
//!   but the ranges (ZADD, ZINCRBY, ZPOPMIN, ZRANDMEMBER, ZSCAN, ...).
//! - `zranges` (parse, reply, zsets): ZRANGE in all its forms (BYSCORE, BYLEX, REV,
//!   LIMIT; ZREVRANGE, ZRANGEBYSCORE, ZRANGEBYLEX, ...) and ZRANGESTORE.
//! - `zset_algebra` (parse, reply, zranges): the sorted set commands on several keys
//!   (ZUNION, ZINTER, ZDIFF, their *STORE forms, ZINTERCARD; WEIGHTS, AGGREGATE).
//! - `commands` (all of the above): dispatch, MULTI/EXEC/DISCARD/WATCH/UNWATCH.
//! - `forward` (frame, parse, reply, table, state): in a cluster, which node runs a
//!   command ([`crate::NodeRing`]), and the forwarding of a batch's commands to their
//!   owners over pooled peer connections, their replies put back in command order.
//! - `connection` (parse, reply, state, commands, blocking, forward): one client's protocol
//!   state, without the socket ([`Connection`]).
//! - `server` (timeouts, query_buffer, state, connection): [`spawn_resp`] (worker
//!   threads, one `SO_REUSEPORT` listener each, admitting at most `max_clients`) and the
//!   connection loop (which also waits on a subscribed connection's mailbox).
//!
//! Below all of them, outside `resp`: the crate's `keyspace` (every command runs against
//! one), `cache`, `glob`, `long_double`, `pubsub` (and `ring`'s hasher, for the run id); nothing
//! outside `resp` uses anything inside it but the re-exports below.

mod admin;
mod blocking;
mod command_stats;
mod commands;
mod connection;
mod forward;
mod frame;
mod getkeys;
mod hashes;
mod info;
mod keys;
mod lists;
mod parse;
mod pubsub;
mod query_buffer;
mod reply;
mod server;
mod set_algebra;
mod sets;
mod state;
mod strings;
mod table;
mod timeouts;
mod transaction;
mod zranges;
mod zset_algebra;
mod zsets;

pub use admin::REDIS_VERSION;
pub use connection::{Connection, Progress};
pub use forward::call_peer;
pub(crate) use forward::hello_command;
pub use parse::{Args, Limits, Parser, ProtocolError};
pub use server::{spawn_resp, spawn_resp_figures, spawn_resp_with, RespWorkers};
pub use state::{RespConfig, RespFigures, RespStats};
