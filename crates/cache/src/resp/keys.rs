//! The keyspace commands: DEL, EXISTS, the EXPIRE and TTL families, FLUSHDB. As in `strings`, arguments are checked in Redis'
//! order, so that a bad command gets Redis' error.

use super::parse::Args;
use super::reply::{truncated, Reply, NOT_INT, SYNTAX};
use crate::cache::{parse_i64, Ttl};
use crate::keyspace::{ExpireFlags, Keyspace};

/// DEL and UNLINK; the keyspace holds the keys' shards.
pub(crate) fn del(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let n = (1..args.len()).filter(|&i| ks.delete(args.get(i))).count();
    r.int(n as i64);
}

/// EXISTS (a key named twice counts twice); the keyspace holds the keys' shards.
pub(crate) fn exists(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let n = (1..args.len()).filter(|&i| ks.exists(args.get(i))).count();
    r.int(n as i64);
}

/// EXPIRE, PEXPIRE (`relative`), EXPIREAT, PEXPIREAT: options first, then the number,
/// then the overflow checks, as Redis' `expireGenericCommand`.
pub(crate) fn expire(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>, name: &str, unit: i64, relative: bool) {
    let mut flags = ExpireFlags::default();
    for i in 3..args.len() {
        let o = args.get(i);
        if o.eq_ignore_ascii_case(b"nx") {
            flags.nx = true;
        } else if o.eq_ignore_ascii_case(b"xx") {
            flags.xx = true;
        } else if o.eq_ignore_ascii_case(b"gt") {
            flags.gt = true;
        } else if o.eq_ignore_ascii_case(b"lt") {
            flags.lt = true;
        } else {
            return r.error(&format!("ERR Unsupported option {}", truncated(o, 128)));
        }
    }
    if flags.nx && (flags.xx || flags.gt || flags.lt) {
        return r.error("ERR NX and XX, GT or LT options at the same time are not compatible");
    }
    if flags.gt && flags.lt {
        return r.error("ERR GT and LT options at the same time are not compatible");
    }
    let Some(n) = parse_i64(args.get(2)) else {
        return r.error(NOT_INT);
    };
    let base = if relative { ks.unix_ms() as i64 } else { 0 };
    let when = n
        .checked_mul(unit)
        .filter(|&when| when <= i64::MAX - base)
        .map(|when| when + base);
    match when {
        Some(when) => r.int(ks.expire_at(args.get(1), when, flags) as i64),
        None => r.error(&format!("ERR invalid expire time in '{name}' command")),
    }
}

/// TTL (seconds, rounded) and PTTL.
pub(crate) fn ttl(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>, ms: bool) {
    match ks.ttl(args.get(1)) {
        Ttl::Missing => r.int(-2),
        Ttl::Persistent => r.int(-1),
        Ttl::Remaining(d) => {
            let t = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
            r.int(if ms { t } else { t.saturating_add(500) / 1000 })
        }
    }
}

/// FLUSHDB and FLUSHALL [ASYNC|SYNC]: everything at once (the keyspace holds every
/// shard).
pub(crate) fn flushdb(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let ok = (1..args.len()).all(|i| {
        let a = args.get(i);
        a.eq_ignore_ascii_case(b"async") || a.eq_ignore_ascii_case(b"sync")
    });
    if ok && args.len() <= 2 {
        ks.flush();
        r.ok();
    } else {
        r.error(SYNTAX);
    }
}
