//! Dispatch ([`execute`]: look the command up in the table, check its arity, queue it
//! inside MULTI or run it) and the transaction commands (MULTI, EXEC, DISCARD, WATCH,
//! UNWATCH). The commands themselves are in `strings` (values), `hashes`, `sets` and
//! `set_algebra`, `lists`, `blocking` (the list commands that wait), `zsets`, `zranges`
//! and `zset_algebra`, `keys` (the keyspace), `pubsub` (publish/subscribe) and `admin`
//! (the connection and the server); [`run`] calls them with a [`Keyspace`]: its own for
//! a command run alone, EXEC's for a queued one. A blocking command run alone is handed
//! back to the connection ([`Flow::Block`]), which may have to wait.
//!
//! Before a command runs: the unknown-command, arity and (for a container: CLIENT,
//! COMMAND, CONFIG, OBJECT, PUBSUB) subcommand checks, then NOAUTH while a password is
//! set and AUTH has not succeeded, and the pub/sub context's refusal for a RESP2
//! connection with subscriptions, in Redis' order.
//!
//! Errors say what Redis says, word for word where clients or people match on them.

use super::admin;
use super::blocking;
use super::command_stats::{slot_of, Call, WorkerStats};
use super::hashes::{self, Listing};
use super::info;
use super::keys;
use super::lists;
use super::parse::Args;
use super::pubsub;
use super::reply::{truncated, Reply, NOT_INT, WRONGTYPE};
use super::set_algebra::{self, SetOp};
use super::sets;
use super::state::{ConnectionContext, Session};
use super::strings;
use super::table::{lookup, Cmd, Spec};
use super::transaction::Queue;
use super::zranges::{self, Form};
use super::zset_algebra::{self, Output, ZsetOp};
use super::zsets::{self, By};
use crate::cache::parse_i64;
use crate::keyspace::{Access, Keyspace, ShardSet};
use crate::list::End;
use std::time::Instant;

/// What the connection does after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    /// Write what is buffered, then close (QUIT).
    Close,
    /// A blocking command outside a transaction, not run: the connection runs it
    /// (`blocking::Blocked::start`), as it may have to wait.
    Block,
}

const EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";

/// Runs one command (or queues it, inside MULTI), appending its reply (dropped while
/// CLIENT REPLY says so), and counts it in its worker's `stats`; its time runs from
/// `since` (moved to its end).
pub(crate) fn execute(
    args: Args<'_>,
    session: &mut Session,
    shared: &ConnectionContext,
    out: &mut Vec<u8>,
    stats: &WorkerStats,
    since: &mut Instant,
) -> Flow {
    // Messages that came before this command go out before its reply.
    let mut r = Reply {
        out,
        resp3: session.resp3,
    };
    if !session.subs.write_pending(&mut r, None) {
        over_output_limit(session, shared);
        return Flow::Close;
    }
    let at = out.len();
    let mut call = Call::Unknown;
    let flow = dispatch(args, session, shared, out, stats, &mut call);
    stats.record(call, &out[at..], since);
    match (flow, call) {
        // Answered when it stops waiting (`Connection`).
        (Flow::Block, _) => {}
        // EXEC dropped what it wrote while replies were quiet, piece by piece.
        (_, Call::Ran(_)) if args.get(0).eq_ignore_ascii_case(b"exec") => session.replies.finish(out, at, true),
        (_, Call::Ran(_)) if pushes(args.get(0)) => session.replies.finish(out, at, true),
        _ => session.replies.finish(out, at, false),
    }
    flow
}

/// Whether a command's reply is pub/sub's (a push: never dropped by CLIENT REPLY).
fn pushes(name: &[u8]) -> bool {
    [&b"subscribe"[..], b"unsubscribe", b"psubscribe", b"punsubscribe"]
        .iter()
        .any(|n| n.eq_ignore_ascii_case(name))
}

/// [`execute`] after the messages: checks, queues or runs; `call` says which.
fn dispatch(
    args: Args<'_>,
    session: &mut Session,
    shared: &ConnectionContext,
    out: &mut Vec<u8>,
    stats: &WorkerStats,
    call: &mut Call,
) -> Flow {
    let mut r = Reply {
        out,
        resp3: session.resp3,
    };
    let Some(spec) = lookup(args.get(0)) else {
        unknown_command(&mut r, args);
        session.tx.refuse();
        return Flow::Continue;
    };
    *call = Call::Rejected(slot_of(spec, None));
    if !spec.arity_ok(args.len()) {
        let why = format!("wrong number of arguments for '{}' command", spec.name);
        if spec.cmd == Cmd::Exec {
            // Redis answers a refused EXEC by discarding any transaction and the
            // watches, saying why.
            end_transaction(session, shared);
            r.error(&format!("EXECABORT Transaction discarded because of: {why}"));
        } else {
            session.tx.refuse();
            r.error(&format!("ERR {why}"));
        }
        return Flow::Continue;
    }
    // A container's subcommand is checked as its arity is: before NOAUTH and the pub/sub
    // context, and refusing the transaction it is queued in (Redis 7.0's order).
    let sub = match spec.subcommand(args) {
        Ok(sub) => sub,
        Err(e) => {
            // An unknown subcommand is no command (Redis counts only its error); a known
            // one's wrong arity is its rejection.
            let known = spec
                .subcommands()
                .iter()
                .find(|s| s.name.as_bytes().eq_ignore_ascii_case(args.get(1)));
            *call = known.map_or(Call::Unknown, |sub| Call::Rejected(slot_of(spec, Some(sub))));
            session.tx.refuse();
            r.error(&e);
            return Flow::Continue;
        }
    };
    if let Some(sub) = sub {
        *call = Call::Rejected(slot_of(spec, Some(sub)));
    }
    if !session.authenticated && !spec.flags.contains(&"no_auth") {
        refuse(&mut r, session, shared, spec, "NOAUTH Authentication required.");
        return Flow::Continue;
    }
    if !session.resp3 && session.subs.active() {
        if let Some(e) = pubsub::refused_while_subscribed(spec.cmd, args, spec.name) {
            refuse(&mut r, session, shared, spec, &e);
            return Flow::Continue;
        }
    }
    if session.tx.in_multi() && !spec.cmd.runs_inside_multi() {
        *call = Call::Queued;
        queue(&mut r, session, shared, spec, args);
        return Flow::Continue;
    }
    if let Call::Rejected(slot) = *call {
        *call = Call::Ran(slot);
    }
    let cache = &*shared.cache;
    match spec.cmd {
        Cmd::Multi => {
            if session.tx.in_multi() {
                r.error("ERR MULTI calls can not be nested");
            } else {
                session.tx.begin();
                r.ok();
            }
        }
        Cmd::Exec => exec(&mut r, session, shared, stats),
        Cmd::Discard => match session.tx.take_queue() {
            None => r.error("ERR DISCARD without MULTI"),
            Some(q) => {
                shared.server.client_memory.give_back(q.counted);
                session.tx.unwatch(&mut Keyspace::new(cache));
                r.ok();
            }
        },
        Cmd::Watch => {
            if session.tx.in_multi() {
                r.error("ERR WATCH inside MULTI is not allowed");
            } else {
                let mut ks = Keyspace::new(cache);
                for i in 1..args.len() {
                    session.tx.watch(&mut ks, args.get(i));
                }
                r.ok();
            }
        }
        cmd if cmd.is_blocking() => return Flow::Block,
        _ => {
            let mut ks = Keyspace::new(cache);
            if spec.holds_shards() {
                let mut set = ShardSet::new(cache.shard_count());
                spec.shards(args, cache, &mut set);
                ks.hold(&set);
            }
            return run(spec, args, session, shared, &mut ks, &mut r);
        }
    }
    Flow::Continue
}

/// The connection's mailbox went past its bound: counts it and says so; the connection
/// is closed without a reply, as Redis closes a client past its output buffer limit.
pub(crate) fn over_output_limit(session: &Session, shared: &ConnectionContext) {
    shared
        .server
        .closed
        .output_limit
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::warn!(peer = %session.peer, limit = crate::pubsub::MAILBOX_LIMIT, "cache client closed: a subscriber's pending messages went past the pub/sub output limit");
}

/// A command refused before it runs: its error, and the transaction fails (EXEC
/// itself answers EXECABORT, giving the reason, and ends the transaction), as Redis'
/// `rejectCommand`.
fn refuse(r: &mut Reply<'_>, session: &mut Session, shared: &ConnectionContext, spec: &Spec, msg: &str) {
    if spec.cmd == Cmd::Exec {
        end_transaction(session, shared);
        let why = msg.strip_prefix("ERR ").unwrap_or(msg);
        r.error(&format!("EXECABORT Transaction discarded because of: {why}"));
    } else {
        session.tx.refuse();
        r.error(msg);
    }
}

/// Ends the connection's transaction and watches (RESET, and a connection closing).
pub(crate) fn end_transaction(session: &mut Session, shared: &ConnectionContext) {
    if let Some(q) = session.tx.take_queue() {
        shared.server.client_memory.give_back(q.counted);
    }
    session.tx.unwatch(&mut Keyspace::new(&shared.cache));
}

/// Queues a command inside MULTI (`+QUEUED`). The queue counts against the connection's
/// query buffer limit and the server's bound on all query buffers, as the commands would
/// if they had not been run yet: past either, the command is refused and EXEC will
/// answer EXECABORT.
fn queue(r: &mut Reply<'_>, session: &mut Session, shared: &ConnectionContext, spec: &'static Spec, args: Args<'_>) {
    let server = &shared.server;
    let q = session.tx.queue_mut().expect("inside MULTI");
    let cost = Queue::cost(args);
    if q.counted + cost > server.max_query_bytes || !server.client_memory.try_take(cost) {
        q.failed = true;
        return r.error(&format!(
            "ERR the transaction's queued commands would take more than the query buffer limit ({} bytes for this client, {} for all): it is discarded",
            server.max_query_bytes,
            server.client_memory.max()
        ));
    }
    q.counted += cost;
    q.push(spec, args);
    r.simple("QUEUED");
}

/// EXEC: runs the queue holding every shard its commands and the watched keys touch,
/// unless a command was refused while queueing (EXECABORT) or a watched key changed
/// (a null array).
fn exec(r: &mut Reply<'_>, session: &mut Session, shared: &ConnectionContext, stats: &WorkerStats) {
    let cache = &*shared.cache;
    // An EXEC that runs nothing answers one piece, dropped while replies are quiet (its
    // queued commands' replies are dropped piece by piece below).
    let at = r.out.len();
    let Some(queue) = session.tx.take_queue() else {
        r.error("ERR EXEC without MULTI");
        return session.replies.finish_piece(r.out, at);
    };
    shared.server.client_memory.give_back(queue.counted);
    if queue.failed {
        session.tx.unwatch(&mut Keyspace::new(cache));
        r.error(EXECABORT);
        return session.replies.finish_piece(r.out, at);
    }
    let mut set = ShardSet::new(cache.shard_count());
    for i in 0..queue.len() {
        let (spec, args) = queue.get(i);
        spec.shards(args, cache, &mut set);
    }
    session.tx.watched_shards(&mut set);
    let mut ks = Keyspace::holding(cache, &set);
    if session.tx.changed(&mut ks) {
        r.null_array();
        session.replies.finish_piece(r.out, at);
    } else {
        // Each piece goes or is dropped as CLIENT REPLY's flags are when it is written.
        let header = r.out.len();
        r.array(queue.len());
        if session.replies.quiet() {
            r.out.truncate(header);
        }
        let mut since = Instant::now();
        for i in 0..queue.len() {
            let (spec, args) = queue.get(i);
            let at = r.out.len();
            // QUIT is never queued: nothing inside a transaction closes the connection.
            let _ = run(spec, args, session, shared, &mut ks, r);
            let sub = spec.subcommand(args).ok().flatten();
            stats.record(Call::Ran(slot_of(spec, sub)), &r.out[at..], &mut since);
            if session.replies.quiet() {
                r.out.truncate(at);
            }
        }
    }
    session.tx.unwatch(&mut ks);
}

/// Runs one command against `ks`, appending its reply.
pub(crate) fn run(
    spec: &Spec,
    args: Args<'_>,
    session: &mut Session,
    shared: &ConnectionContext,
    ks: &mut Keyspace<'_>,
    r: &mut Reply<'_>,
) -> Flow {
    let max = shared.server.limits.max_bulk;
    match spec.cmd {
        Cmd::Get => {
            let done = ks.get_str_with(args.get(1), |v| r.bulk_or_null(v));
            strings::or_wrongtype(r, done);
        }
        Cmd::Set => strings::set(r, ks, args),
        Cmd::Mget => {
            r.array(args.len() - 1);
            for i in 1..args.len() {
                ks.get_with(args.get(i), |v| r.bulk_or_null(v));
            }
        }
        Cmd::Mset => strings::mset(r, ks, args),
        Cmd::Msetnx => strings::msetnx(r, ks, args),
        Cmd::Incr => strings::incr(r, ks, args.get(1), 1),
        Cmd::Decr => strings::incr(r, ks, args.get(1), -1),
        Cmd::Incrby => match parse_i64(args.get(2)) {
            Some(d) => strings::incr(r, ks, args.get(1), d),
            None => r.error(NOT_INT),
        },
        Cmd::Decrby => match parse_i64(args.get(2)) {
            Some(i64::MIN) => r.error("ERR decrement would overflow"),
            Some(d) => strings::incr(r, ks, args.get(1), -d),
            None => r.error(NOT_INT),
        },
        Cmd::Incrbyfloat => strings::incr_by_float(r, ks, args),
        Cmd::Append => strings::append(r, ks, args, max),
        Cmd::Strlen => {
            let done = ks.get_str_with(args.get(1), |v| r.int(v.map_or(0, <[u8]>::len) as i64));
            strings::or_wrongtype(r, done);
        }
        Cmd::Getdel => match ks.get_del(args.get(1)) {
            Ok(v) => r.bulk_or_null(v.as_deref()),
            Err(_) => r.error(WRONGTYPE),
        },
        Cmd::Getex => strings::getex(r, ks, args),
        Cmd::Getset => strings::getset(r, ks, args),
        Cmd::Getrange => strings::getrange(r, ks, args),
        Cmd::Setrange => strings::setrange(r, ks, args, max),
        Cmd::Setbit => strings::setbit(r, ks, args, max),
        Cmd::Getbit => strings::getbit(r, ks, args, max),
        Cmd::Bitcount => strings::bitcount(r, ks, args),
        Cmd::Setnx => strings::setnx(r, ks, args),
        Cmd::Setex => strings::setex(r, ks, args, "setex", 1000),
        Cmd::Psetex => strings::setex(r, ks, args, "psetex", 1),
        Cmd::Del => keys::del(r, ks, args),
        Cmd::Exists => keys::exists(r, ks, args),
        Cmd::Expire => keys::expire(r, ks, args, "expire", 1000, true),
        Cmd::Pexpire => keys::expire(r, ks, args, "pexpire", 1, true),
        Cmd::Expireat => keys::expire(r, ks, args, "expireat", 1000, false),
        Cmd::Pexpireat => keys::expire(r, ks, args, "pexpireat", 1, false),
        Cmd::Ttl => keys::ttl(r, ks, args, false),
        Cmd::Pttl => keys::ttl(r, ks, args, true),
        Cmd::Expiretime => keys::expire_time(r, ks, args, false),
        Cmd::Pexpiretime => keys::expire_time(r, ks, args, true),
        Cmd::Persist => r.int(ks.persist(args.get(1)) as i64),
        Cmd::Type => r.simple(ks.type_name(args.get(1), Access::Read)),
        Cmd::Hset => hashes::hset(r, ks, args, "hset"),
        Cmd::Hmset => hashes::hset(r, ks, args, "hmset"),
        Cmd::Hsetnx => hashes::hsetnx(r, ks, args),
        Cmd::Hget => hashes::hget(r, ks, args),
        Cmd::Hmget => hashes::hmget(r, ks, args),
        Cmd::Hdel => hashes::hdel(r, ks, args),
        Cmd::Hlen => hashes::hint(r, ks, args.get(1), |h| h.map_or(0, |h| h.len() as i64)),
        Cmd::Hexists => hashes::hint(r, ks, args.get(1), |h| {
            h.is_some_and(|h| h.get(args.get(2)).is_some()) as i64
        }),
        Cmd::Hstrlen => hashes::hint(r, ks, args.get(1), |h| {
            h.and_then(|h| h.get(args.get(2))).map_or(0, |v| v.len() as i64)
        }),
        Cmd::Hkeys => hashes::hgetall(r, ks, args.get(1), Listing::Fields),
        Cmd::Hvals => hashes::hgetall(r, ks, args.get(1), Listing::Values),
        Cmd::Hgetall => hashes::hgetall(r, ks, args.get(1), Listing::Both),
        Cmd::Hincrby => hashes::hincrby(r, ks, args),
        Cmd::Hincrbyfloat => hashes::hincrbyfloat(r, ks, args),
        Cmd::Hrandfield => hashes::hrandfield(r, ks, args),
        Cmd::Hscan => hashes::hscan(r, ks, args),
        Cmd::Sadd => sets::sadd(r, ks, args),
        Cmd::Srem => sets::srem(r, ks, args),
        Cmd::Sismember => sets::sismember(r, ks, args),
        Cmd::Smismember => sets::smismember(r, ks, args),
        Cmd::Scard => sets::scard(r, ks, args),
        Cmd::Spop => sets::spop(r, ks, args),
        Cmd::Srandmember => sets::srandmember(r, ks, args),
        Cmd::Sscan => sets::sscan(r, ks, args),
        Cmd::Smembers => set_algebra::smembers(r, ks, args),
        Cmd::Sinter => set_algebra::sinter(r, ks, args),
        Cmd::Sinterstore => set_algebra::sinterstore(r, ks, args),
        Cmd::Sintercard => set_algebra::sintercard(r, ks, args),
        Cmd::Sunion => set_algebra::sunion_or_diff(r, ks, args, SetOp::Union, false),
        Cmd::Sdiff => set_algebra::sunion_or_diff(r, ks, args, SetOp::Diff, false),
        Cmd::Sunionstore => set_algebra::sunion_or_diff(r, ks, args, SetOp::Union, true),
        Cmd::Sdiffstore => set_algebra::sunion_or_diff(r, ks, args, SetOp::Diff, true),
        Cmd::Smove => set_algebra::smove(r, ks, args),
        Cmd::Lpush => lists::push(r, ks, args, End::Left, false),
        Cmd::Rpush => lists::push(r, ks, args, End::Right, false),
        Cmd::Lpushx => lists::push(r, ks, args, End::Left, true),
        Cmd::Rpushx => lists::push(r, ks, args, End::Right, true),
        Cmd::Lpop => lists::pop(r, ks, args, End::Left),
        Cmd::Rpop => lists::pop(r, ks, args, End::Right),
        Cmd::Lrange => lists::lrange(r, ks, args),
        Cmd::Lindex => lists::lindex(r, ks, args),
        Cmd::Lset => lists::lset(r, ks, args),
        Cmd::Llen => lists::llen(r, ks, args),
        Cmd::Lrem => lists::lrem(r, ks, args),
        Cmd::Ltrim => lists::ltrim(r, ks, args),
        Cmd::Linsert => lists::linsert(r, ks, args),
        Cmd::Lpos => lists::lpos(r, ks, args),
        Cmd::Lmove => lists::lmove(r, ks, args, None),
        Cmd::Rpoplpush => lists::lmove(r, ks, args, Some((End::Right, End::Left))),
        Cmd::Lmpop => lists::lmpop(r, ks, args),
        // Inside EXEC: as their non-blocking forms.
        Cmd::Blpop
        | Cmd::Brpop
        | Cmd::Blmove
        | Cmd::Brpoplpush
        | Cmd::Blmpop
        | Cmd::Bzpopmin
        | Cmd::Bzpopmax
        | Cmd::Bzmpop
        | Cmd::Wait => blocking::run_once(r, ks, spec.cmd, args),
        Cmd::Zadd => zsets::zadd(r, ks, args, false),
        Cmd::Zincrby => zsets::zadd(r, ks, args, true),
        Cmd::Zrem => zsets::zrem(r, ks, args),
        Cmd::Zcard => zsets::zcard(r, ks, args),
        Cmd::Zscore => zsets::zscore(r, ks, args),
        Cmd::Zmscore => zsets::zmscore(r, ks, args),
        Cmd::Zrank => zsets::zrank(r, ks, args, false),
        Cmd::Zrevrank => zsets::zrank(r, ks, args, true),
        Cmd::Zcount => zsets::zcount(r, ks, args),
        Cmd::Zlexcount => zsets::zlexcount(r, ks, args),
        Cmd::Zpopmin => zsets::zpop(r, ks, args, false),
        Cmd::Zpopmax => zsets::zpop(r, ks, args, true),
        Cmd::Zmpop => zsets::zmpop(r, ks, args),
        Cmd::Zremrangebyrank => zsets::zremrange(r, ks, args, By::Rank),
        Cmd::Zremrangebyscore => zsets::zremrange(r, ks, args, By::Score),
        Cmd::Zremrangebylex => zsets::zremrange(r, ks, args, By::Lex),
        Cmd::Zrandmember => zsets::zrandmember(r, ks, args),
        Cmd::Zscan => zsets::zscan(r, ks, args),
        Cmd::Zrange => zranges::zrange(r, ks, args, Form::ZRANGE),
        Cmd::Zrangestore => zranges::zrange(r, ks, args, Form::ZRANGESTORE),
        Cmd::Zrevrange => zranges::zrange(r, ks, args, Form::fixed(By::Rank, true)),
        Cmd::Zrangebyscore => zranges::zrange(r, ks, args, Form::fixed(By::Score, false)),
        Cmd::Zrevrangebyscore => zranges::zrange(r, ks, args, Form::fixed(By::Score, true)),
        Cmd::Zrangebylex => zranges::zrange(r, ks, args, Form::fixed(By::Lex, false)),
        Cmd::Zrevrangebylex => zranges::zrange(r, ks, args, Form::fixed(By::Lex, true)),
        Cmd::Zunionstore => zset_algebra::zset_op(r, ks, args, ZsetOp::Union, Output::Store),
        Cmd::Zinterstore => zset_algebra::zset_op(r, ks, args, ZsetOp::Inter, Output::Store),
        Cmd::Zdiffstore => zset_algebra::zset_op(r, ks, args, ZsetOp::Diff, Output::Store),
        Cmd::Zunion => zset_algebra::zset_op(r, ks, args, ZsetOp::Union, Output::Reply),
        Cmd::Zinter => zset_algebra::zset_op(r, ks, args, ZsetOp::Inter, Output::Reply),
        Cmd::Zdiff => zset_algebra::zset_op(r, ks, args, ZsetOp::Diff, Output::Reply),
        Cmd::Zintercard => zset_algebra::zset_op(r, ks, args, ZsetOp::Inter, Output::Cardinality),
        Cmd::Keys => keys::keys(r, ks, args),
        Cmd::Scan => keys::scan(r, ks, args),
        Cmd::Rename => keys::rename(r, ks, args, false),
        Cmd::Renamenx => keys::rename(r, ks, args, true),
        Cmd::Copy => keys::copy(r, ks, args),
        Cmd::Randomkey => r.bulk_or_null(ks.random_key().as_ref().map(|k| k.as_slice())),
        Cmd::Object => keys::object(r, ks, args),
        Cmd::Dbsize => r.int(ks.len() as i64),
        Cmd::Flushdb => keys::flushdb(r, ks, args),
        Cmd::Unwatch => {
            session.tx.unwatch(ks);
            r.ok();
        }
        Cmd::Multi | Cmd::Exec | Cmd::Discard | Cmd::Watch => {
            // Run by `execute`, never queued.
            r.error(&format!("ERR {} is not allowed here", spec.name));
        }
        Cmd::Ping if args.len() <= 2 && !r.resp3 && session.subs.active() => pubsub::ping(r, args),
        Cmd::Ping => match args.len() {
            1 => r.simple("PONG"),
            2 => r.bulk(args.get(1)),
            _ => r.error("ERR wrong number of arguments for 'ping' command"),
        },
        Cmd::Echo => r.bulk(args.get(1)),
        Cmd::Select => match parse_i64(args.get(1)) {
            Some(0) => r.ok(),
            Some(_) => r.error("ERR DB index is out of range"),
            None => r.error(NOT_INT),
        },
        Cmd::Quit => {
            r.ok();
            return Flow::Close;
        }
        Cmd::Info => info::info(r, shared, ks, args),
        Cmd::Command => admin::command(r, args),
        Cmd::Touch => keys::touch(r, ks, args),
        Cmd::Client => admin::client(r, session, shared, args),
        Cmd::Reset => {
            if let Some(q) = session.tx.take_queue() {
                shared.server.client_memory.give_back(q.counted);
            }
            session.tx.unwatch(ks);
            session.subs.end(shared.cache.pubsub());
            session.reset(&shared.server);
            r.resp3 = false;
            r.simple("RESET");
        }
        Cmd::Hello => admin::hello(r, session, shared, args),
        Cmd::Auth => admin::auth(r, session, shared, args),
        Cmd::Subscribe => pubsub::subscribe(r, &mut session.subs, shared.cache.pubsub(), args),
        Cmd::Unsubscribe => pubsub::unsubscribe(r, &mut session.subs, shared.cache.pubsub(), args),
        Cmd::Psubscribe => pubsub::psubscribe(r, &mut session.subs, shared.cache.pubsub(), args),
        Cmd::Punsubscribe => pubsub::punsubscribe(r, &mut session.subs, shared.cache.pubsub(), args),
        Cmd::Publish => {
            let receivers = shared.cache.pubsub().publish(args.get(1), args.get(2));
            // A connection publishing to itself gets the message before the reply, as
            // from Redis.
            session.subs.write_pending(r, None);
            r.int(receivers as i64);
        }
        Cmd::Pubsub => pubsub::pubsub(r, shared.cache.pubsub(), args),
        Cmd::Config => admin::config(r, shared, ks, args),
        Cmd::Time => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            r.array(2);
            r.bulk(now.as_secs().to_string().as_bytes());
            r.bulk(now.subsec_micros().to_string().as_bytes());
        }
    }
    Flow::Continue
}

/// The scripting commands, which strata's cache does not serve: their error says so.
const SCRIPTING: [&[u8]; 8] = [
    b"EVAL",
    b"EVALSHA",
    b"EVAL_RO",
    b"EVALSHA_RO",
    b"SCRIPT",
    b"FUNCTION",
    b"FCALL",
    b"FCALL_RO",
];

/// `-ERR unknown command 'X', with args beginning with: 'a' 'b' `, as Redis 7 words it;
/// for a scripting command, why instead of the arguments.
pub(crate) fn unknown_command(r: &mut Reply<'_>, args: Args<'_>) {
    let name = args.get(0);
    if SCRIPTING.iter().any(|s| s.eq_ignore_ascii_case(name)) {
        return r.error(&format!(
            "ERR unknown command '{}': strata's cache runs no Lua scripts or functions (EVAL, EVALSHA, SCRIPT, FUNCTION, FCALL); see strata's docs/state.md for a lock released without a script",
            truncated(name, 128)
        ));
    }
    let mut msg = format!(
        "ERR unknown command '{}', with args beginning with: ",
        truncated(args.get(0), 128)
    );
    let mut listed = 0;
    for a in args.iter().skip(1) {
        if listed >= 128 {
            break;
        }
        let a = truncated(a, 128 - listed);
        listed += a.len() + 3;
        msg.push_str(&format!("'{a}' "));
    }
    r.error(&msg);
}
