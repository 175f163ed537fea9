//! The string commands: SET and its family, MSET, INCR, APPEND. Each parses and checks its arguments
//! in Redis' order (so that the same bad command gets the same error) and then makes
//! one keyspace operation, or several on shards the keyspace holds.

use super::parse::Args;
use super::reply::{Reply, NOT_INT, SYNTAX};
use crate::cache::{parse_i64, CacheError, Condition, Expiry, SetOptions};
use crate::keyspace::{Keyspace, TooLong};
use crate::stored::Stored;

const TOO_LONG: &str = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";

/// How an expiry argument counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    /// `EX`: seconds from now.
    Ex,
    /// `PX`: ms from now.
    Px,
    /// `EXAT`: a Unix time in seconds.
    Exat,
    /// `PXAT`: a Unix time in ms.
    Pxat,
}

/// The options of SET and GETEX (Redis' `parseExtendedStringArgumentsOrReply`).
#[derive(Default)]
struct StringOptions<'a> {
    nx: bool,
    xx: bool,
    get: bool,
    keepttl: bool,
    persist: bool,
    expire: Option<(Unit, &'a [u8])>,
}

/// Parses the options from argument `from` on; SET's when `set`, else GETEX's. Any
/// option that does not fit is a syntax error; the expiry's number is checked later.
fn parse_options(args: Args<'_>, from: usize, set: bool) -> Result<StringOptions<'_>, ()> {
    let mut o = StringOptions::default();
    let mut j = from;
    while j < args.len() {
        let opt = args.get(j);
        let next = (j + 1 < args.len()).then(|| args.get(j + 1));
        let is = |s: &str| opt.eq_ignore_ascii_case(s.as_bytes());
        let unit = o.expire.map(|(u, _)| u);
        let other_expiry = |u: Unit| unit.is_some_and(|x| x != u);
        if is("nx") && !o.xx && set {
            o.nx = true;
        } else if is("xx") && !o.nx && set {
            o.xx = true;
        } else if is("get") && set {
            o.get = true;
        } else if is("keepttl") && !o.persist && unit.is_none() && set {
            o.keepttl = true;
        } else if is("persist") && !set && unit.is_none() && !o.keepttl {
            o.persist = true;
        } else if let (Some(u), Some(v)) = (expire_unit(opt), next) {
            if o.keepttl || o.persist || other_expiry(u) {
                return Err(());
            }
            o.expire = Some((u, v));
            j += 1;
        } else {
            return Err(());
        }
        j += 1;
    }
    Ok(o)
}

fn expire_unit(o: &[u8]) -> Option<Unit> {
    if o.eq_ignore_ascii_case(b"ex") {
        Some(Unit::Ex)
    } else if o.eq_ignore_ascii_case(b"px") {
        Some(Unit::Px)
    } else if o.eq_ignore_ascii_case(b"exat") {
        Some(Unit::Exat)
    } else if o.eq_ignore_ascii_case(b"pxat") {
        Some(Unit::Pxat)
    } else {
        None
    }
}

/// An expiry argument as an absolute Unix time in ms (Redis'
/// `getExpireMillisecondsOrReply`): positive, and no overflow once converted.
fn expire_ms(unit: Unit, arg: &[u8], unix_now: u64, command: &str) -> Result<i64, String> {
    let n = parse_i64(arg).ok_or(NOT_INT)?;
    let invalid = || format!("ERR invalid expire time in '{command}' command");
    let seconds = matches!(unit, Unit::Ex | Unit::Exat);
    if n <= 0 || (seconds && n > i64::MAX / 1000) {
        return Err(invalid());
    }
    let ms = if seconds { n * 1000 } else { n };
    match unit {
        Unit::Ex | Unit::Px => ms.checked_add(unix_now as i64).ok_or_else(invalid),
        Unit::Exat | Unit::Pxat => Ok(ms),
    }
}

pub(crate) fn set(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let Ok(o) = parse_options(args, 3, true) else {
        return r.error(SYNTAX);
    };
    let expiry = match o.expire {
        Some((unit, arg)) => match expire_ms(unit, arg, ks.unix_ms(), "set") {
            Ok(at) => Expiry::AtUnixMs(at as u64),
            Err(e) => return r.error(&e),
        },
        None if o.keepttl => Expiry::Keep,
        None => Expiry::Never,
    };
    let condition = if o.nx {
        Condition::IfAbsent
    } else if o.xx {
        Condition::IfPresent
    } else {
        Condition::Always
    };
    let done = ks.set(
        args.get(1),
        Stored::copy_from(args.get(2)),
        SetOptions { expiry, condition },
    );
    if o.get {
        r.bulk_or_null(done.previous.as_deref());
    } else if done.stored {
        r.ok();
    } else {
        r.null();
    }
}

pub(crate) fn setex(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>, name: &str, unit: i64) {
    let unit = if unit == 1000 { Unit::Ex } else { Unit::Px };
    match expire_ms(unit, args.get(2), ks.unix_ms(), name) {
        Err(e) => r.error(&e),
        Ok(at) => {
            let options = SetOptions {
                expiry: Expiry::AtUnixMs(at as u64),
                condition: Condition::Always,
            };
            ks.set(args.get(1), Stored::copy_from(args.get(3)), options);
            r.ok();
        }
    }
}

pub(crate) fn setnx(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let options = SetOptions {
        expiry: Expiry::Never,
        condition: Condition::IfAbsent,
    };
    let done = ks.set(args.get(1), Stored::copy_from(args.get(2)), options);
    r.int(done.stored as i64);
}

pub(crate) fn getset(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let done = ks.set(args.get(1), Stored::copy_from(args.get(2)), SetOptions::default());
    r.bulk_or_null(done.previous.as_deref());
}

/// MSET; the keyspace holds the keys' shards.
pub(crate) fn mset(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    if args.len().is_multiple_of(2) {
        return r.error("ERR wrong number of arguments for 'mset' command");
    }
    for i in (1..args.len()).step_by(2) {
        ks.set(args.get(i), Stored::copy_from(args.get(i + 1)), SetOptions::default());
    }
    r.ok();
}

pub(crate) fn incr(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, key: &[u8], delta: i64) {
    match ks.incr_by(key, delta) {
        Ok(n) => r.int(n),
        Err(CacheError::Overflow) => r.error("ERR increment or decrement would overflow"),
        Err(_) => r.error(NOT_INT),
    }
}

pub(crate) fn append(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>, max: usize) {
    match ks.append(args.get(1), args.get(2), max) {
        Ok(n) => r.int(n as i64),
        Err(TooLong) => r.error(TOO_LONG),
    }
}
