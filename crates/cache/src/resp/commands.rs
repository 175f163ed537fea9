//! Dispatch ([`execute`]: look the command up in the table, check its arity, run it)
//! and the keyspace commands (GET, SET, EXPIRE, INCR, ...). The connection and server
//! commands (HELLO, CLIENT, INFO, COMMAND, CONFIG) are in `admin`.
//!
//! Errors say what Redis says, word for word where clients or people match on them.

use std::time::Duration;

use super::admin;
use super::parse::Args;
use super::reply::{truncated, Reply};
use super::state::{ConnectionContext, Session};
use super::table::{lookup, Cmd};
use crate::cache::{parse_i64, CacheError, Condition, ExpireCondition, Expiry, SetOptions, Ttl};

/// What the connection does after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    /// Write what is buffered, then close (QUIT).
    Close,
}

const NOT_INT: &str = "ERR value is not an integer or out of range";
const SYNTAX: &str = "ERR syntax error";

/// Runs one command, appending its reply.
pub(crate) fn execute(args: Args<'_>, session: &mut Session, shared: &ConnectionContext, out: &mut Vec<u8>) -> Flow {
    let mut r = Reply {
        out,
        resp3: session.resp3,
    };
    let Some(spec) = lookup(args.get(0)) else {
        unknown_command(&mut r, args);
        return Flow::Continue;
    };
    let n = args.len() as i32;
    if (spec.arity > 0 && n != spec.arity) || (spec.arity < 0 && n < -spec.arity) {
        r.error(&format!("ERR wrong number of arguments for '{}' command", spec.name));
        return Flow::Continue;
    }
    let cache = &*shared.cache;
    match spec.cmd {
        Cmd::Get => cache.get_with(args.get(1), |v| r.bulk_or_null(v)),
        Cmd::Set => set(&mut r, shared, args),
        Cmd::Mget => {
            r.array(args.len() - 1);
            for i in 1..args.len() {
                cache.get_with(args.get(i), |v| r.bulk_or_null(v));
            }
        }
        Cmd::Mset => {
            if args.len().is_multiple_of(2) {
                r.error("ERR wrong number of arguments for 'mset' command");
            } else {
                for i in (1..args.len()).step_by(2) {
                    cache.set_slice(args.get(i), args.get(i + 1), SetOptions::default());
                }
                r.ok();
            }
        }
        Cmd::Incr => incr(&mut r, shared, args.get(1), 1),
        Cmd::Decr => incr(&mut r, shared, args.get(1), -1),
        Cmd::Incrby => match parse_i64(args.get(2)) {
            Some(d) => incr(&mut r, shared, args.get(1), d),
            None => r.error(NOT_INT),
        },
        Cmd::Decrby => match parse_i64(args.get(2)) {
            Some(i64::MIN) => r.error("ERR decrement would overflow"),
            Some(d) => incr(&mut r, shared, args.get(1), -d),
            None => r.error(NOT_INT),
        },
        Cmd::Del => {
            let n = (1..args.len()).filter(|&i| cache.delete(args.get(i))).count();
            r.int(n as i64);
        }
        Cmd::Exists => {
            let n = (1..args.len()).filter(|&i| cache.exists(args.get(i))).count();
            r.int(n as i64);
        }
        Cmd::Expire => expire(&mut r, shared, args, "expire", 1000, false),
        Cmd::Pexpire => expire(&mut r, shared, args, "pexpire", 1, false),
        Cmd::Expireat => expire(&mut r, shared, args, "expireat", 1000, true),
        Cmd::Pexpireat => expire(&mut r, shared, args, "pexpireat", 1, true),
        Cmd::Ttl | Cmd::Pttl => match cache.ttl(args.get(1)) {
            Ttl::Missing => r.int(-2),
            Ttl::Persistent => r.int(-1),
            Ttl::Remaining(d) => {
                let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
                r.int(if spec.cmd == Cmd::Pttl {
                    ms
                } else {
                    ms.saturating_add(500) / 1000
                })
            }
        },
        Cmd::Persist => r.int(cache.persist(args.get(1)) as i64),
        Cmd::Append => r.int(cache.append(args.get(1), args.get(2)) as i64),
        Cmd::Strlen => r.int(cache.strlen(args.get(1)) as i64),
        Cmd::Getdel => r.bulk_or_null(cache.get_del(args.get(1)).as_deref()),
        Cmd::Getset => {
            let prev = cache.set_slice(args.get(1), args.get(2), SetOptions::default());
            r.bulk_or_null(prev.previous.as_deref());
        }
        Cmd::Setnx => {
            let opts = SetOptions {
                expiry: Expiry::Never,
                condition: Condition::IfAbsent,
            };
            let done = cache.set_slice(args.get(1), args.get(2), opts);
            r.int(done.stored as i64);
        }
        Cmd::Setex | Cmd::Psetex => {
            let name = if spec.cmd == Cmd::Setex { "setex" } else { "psetex" };
            let unit = if spec.cmd == Cmd::Setex { 1000 } else { 1 };
            match parse_i64(args.get(2)) {
                None => r.error(NOT_INT),
                Some(t) => match t.checked_mul(unit).filter(|&ms| t > 0 && ms > 0) {
                    None => r.error(&format!("ERR invalid expire time in '{name}' command")),
                    Some(ms) => {
                        let expiry = Expiry::After(Duration::from_millis(ms as u64));
                        cache.set_slice(
                            args.get(1),
                            args.get(3),
                            SetOptions {
                                expiry,
                                condition: Condition::Always,
                            },
                        );
                        r.ok();
                    }
                },
            }
        }
        Cmd::Type => r.simple(if cache.exists(args.get(1)) { "string" } else { "none" }),
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
        Cmd::Dbsize => r.int(cache.len() as i64),
        Cmd::Flushdb => {
            let ok = (2..args.len()).all(|i| {
                let a = args.get(i);
                a.eq_ignore_ascii_case(b"async") || a.eq_ignore_ascii_case(b"sync")
            });
            if ok && args.len() <= 3 {
                cache.flush();
                r.ok();
            } else {
                r.error(SYNTAX);
            }
        }
        Cmd::Quit => {
            r.ok();
            return Flow::Close;
        }
        Cmd::Info => admin::info(&mut r, shared, args),
        Cmd::Command => admin::command(&mut r, args),
        Cmd::Client => admin::client(&mut r, session, shared, args),
        Cmd::Reset => {
            session.reset();
            r.simple("RESET");
        }
        Cmd::Hello => admin::hello(&mut r, session, args),
        Cmd::Auth => admin::auth(&mut r, args),
        Cmd::Config => admin::config(&mut r, shared, args),
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

/// `-ERR unknown command 'X', with args beginning with: 'a' 'b' `, as Redis 7 words it.
pub(crate) fn unknown_command(r: &mut Reply<'_>, args: Args<'_>) {
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

fn set(r: &mut Reply<'_>, shared: &ConnectionContext, args: Args<'_>) {
    let mut opts = SetOptions::default();
    let mut get = false;
    let mut expiry_given = false;
    let mut keepttl = false;
    let mut i = 3;
    while i < args.len() {
        let o = args.get(i);
        let next = (i + 1 < args.len()).then(|| args.get(i + 1));
        if o.eq_ignore_ascii_case(b"nx") && opts.condition != Condition::IfPresent {
            opts.condition = Condition::IfAbsent;
        } else if o.eq_ignore_ascii_case(b"xx") && opts.condition != Condition::IfAbsent {
            opts.condition = Condition::IfPresent;
        } else if o.eq_ignore_ascii_case(b"get") {
            get = true;
        } else if o.eq_ignore_ascii_case(b"keepttl") && !expiry_given {
            keepttl = true;
            opts.expiry = Expiry::Keep;
        } else if let (Some(unit), Some(v)) = (expire_unit(o), next) {
            if expiry_given || keepttl {
                return r.error(SYNTAX);
            }
            expiry_given = true;
            let Some(n) = parse_i64(v) else {
                return r.error(NOT_INT);
            };
            let Some(ms) = n.checked_mul(unit.0).filter(|&ms| n > 0 && ms > 0) else {
                return r.error("ERR invalid expire time in 'set' command");
            };
            opts.expiry = if unit.1 {
                Expiry::AtUnixMs(ms as u64)
            } else {
                Expiry::After(Duration::from_millis(ms as u64))
            };
            i += 1;
        } else {
            return r.error(SYNTAX);
        }
        i += 1;
    }
    let done = shared.cache.set_slice(args.get(1), args.get(2), opts);
    if get {
        r.bulk_or_null(done.previous.as_deref());
    } else if done.stored {
        r.ok();
    } else {
        r.null();
    }
}

/// `EX`/`PX`/`EXAT`/`PXAT`: (milliseconds per unit, absolute).
fn expire_unit(o: &[u8]) -> Option<(i64, bool)> {
    if o.eq_ignore_ascii_case(b"ex") {
        Some((1000, false))
    } else if o.eq_ignore_ascii_case(b"px") {
        Some((1, false))
    } else if o.eq_ignore_ascii_case(b"exat") {
        Some((1000, true))
    } else if o.eq_ignore_ascii_case(b"pxat") {
        Some((1, true))
    } else {
        None
    }
}

fn incr(r: &mut Reply<'_>, shared: &ConnectionContext, key: &[u8], delta: i64) {
    match shared.cache.incr_by(key, delta) {
        Ok(n) => r.int(n),
        Err(CacheError::Overflow) => r.error("ERR increment or decrement would overflow"),
        Err(_) => r.error(NOT_INT),
    }
}

fn expire(r: &mut Reply<'_>, shared: &ConnectionContext, args: Args<'_>, name: &str, unit: i64, absolute: bool) {
    let Some(n) = parse_i64(args.get(2)) else {
        return r.error(NOT_INT);
    };
    let mut cond = ExpireCondition::Always;
    for i in 3..args.len() {
        let o = args.get(i);
        let c = if o.eq_ignore_ascii_case(b"nx") {
            ExpireCondition::IfNone
        } else if o.eq_ignore_ascii_case(b"xx") {
            ExpireCondition::IfSome
        } else if o.eq_ignore_ascii_case(b"gt") {
            ExpireCondition::IfLater
        } else if o.eq_ignore_ascii_case(b"lt") {
            ExpireCondition::IfEarlier
        } else {
            return r.error(&format!("ERR Unsupported option {}", truncated(o, 128)));
        };
        if cond != ExpireCondition::Always && cond != c {
            let gt_lt = matches!(
                (cond, c),
                (ExpireCondition::IfLater, ExpireCondition::IfEarlier)
                    | (ExpireCondition::IfEarlier, ExpireCondition::IfLater)
            );
            return r.error(if gt_lt {
                "ERR GT and LT options at the same time are not compatible"
            } else {
                "ERR NX and XX, GT or LT options at the same time are not compatible"
            });
        }
        cond = c;
    }
    let Some(ms) = n.checked_mul(unit) else {
        return r.error(&format!("ERR invalid expire time in '{name}' command"));
    };
    let expiry = if absolute {
        Expiry::AtUnixMs(ms.max(0) as u64)
    } else {
        Expiry::After(Duration::from_millis(ms.max(0) as u64))
    };
    r.int(shared.cache.expire_with(args.get(1), expiry, cond) as i64);
}
