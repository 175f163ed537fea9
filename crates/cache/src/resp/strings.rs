//! The string commands: SET and its family, GETEX, MSET(NX), INCR(BYFLOAT), APPEND,
//! GETRANGE, SETRANGE, SETBIT, GETBIT, BITCOUNT. Each parses and checks its arguments
//! in Redis' order (so that the same bad command gets the same error) and then makes
//! one keyspace operation, or several on shards the keyspace holds.

use super::parse::Args;
use super::reply::{Reply, NOT_INT, SYNTAX, WRONGTYPE};
use crate::cache::{parse_i64, CacheError, Condition, Expiry, SetOptions};
use crate::keyspace::{Access, FloatError, GetEx, Keyspace, StringError, WrongType};
use crate::long_double;
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
    let (key, value, options) = (
        args.get(1),
        Stored::copy_from(args.get(2)),
        SetOptions { expiry, condition },
    );
    let done = if o.get {
        match ks.set_get(key, value, options) {
            Ok(done) => done,
            Err(WrongType) => return r.error(WRONGTYPE),
        }
    } else {
        ks.set(key, value, options)
    };
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
    match ks.set_get(args.get(1), Stored::copy_from(args.get(2)), SetOptions::default()) {
        Ok(done) => r.bulk_or_null(done.previous.as_deref()),
        Err(WrongType) => r.error(WRONGTYPE),
    }
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

/// MSETNX; the keyspace holds the keys' shards.
pub(crate) fn msetnx(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    if args.len().is_multiple_of(2) {
        return r.error("ERR wrong number of arguments for 'msetnx' command");
    }
    let pairs: Vec<(&[u8], &[u8])> = (1..args.len())
        .step_by(2)
        .map(|i| (args.get(i), args.get(i + 1)))
        .collect();
    r.int(ks.set_all_if_none_exist(&pairs) as i64);
}

pub(crate) fn getex(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let Ok(o) = parse_options(args, 2, false) else {
        return r.error(SYNTAX);
    };
    let change = match o.expire {
        Some((unit, arg)) => expire_ms(unit, arg, ks.unix_ms(), "getex").map(GetEx::AtUnixMs),
        None if o.persist => Ok(GetEx::Persist),
        None => Ok(GetEx::Keep),
    };
    match ks.get_ex(args.get(1), change) {
        Ok(v) => r.bulk_or_null(v.as_deref()),
        Err(e) => r.error(&e),
    }
}

pub(crate) fn incr(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, key: &[u8], delta: i64) {
    match ks.incr_by(key, delta) {
        Ok(n) => r.int(n),
        Err(CacheError::Overflow) => r.error("ERR increment or decrement would overflow"),
        Err(CacheError::WrongType) => r.error(WRONGTYPE),
        Err(_) => r.error(NOT_INT),
    }
}

pub(crate) fn incr_by_float(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    const NOT_FLOAT: &str = "ERR value is not a valid float";
    let Some(by) = long_double::parse(args.get(2)) else {
        // Redis checks the key's type before it parses the increment.
        if !matches!(ks.type_name(args.get(1), Access::Check), "string" | "none") {
            return r.error(WRONGTYPE);
        }
        return r.error(NOT_FLOAT);
    };
    match ks.incr_by_float(args.get(1), by) {
        Ok(v) => r.bulk(v.as_slice()),
        Err(FloatError::NotAFloat) => r.error(NOT_FLOAT),
        Err(FloatError::NotFinite) => r.error("ERR increment would produce NaN or Infinity"),
        Err(FloatError::WrongType) => r.error(WRONGTYPE),
    }
}

pub(crate) fn append(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>, max: usize) {
    match ks.append(args.get(1), args.get(2), max) {
        Ok(n) => r.int(n as i64),
        Err(e) => string_error(r, e),
    }
}

/// GETRANGE's slice of `v`, with Redis' rules for negative and out-of-range indexes.
fn range(v: &[u8], mut start: i64, mut end: i64) -> &[u8] {
    if start < 0 && end < 0 && start > end {
        return b"";
    }
    let len = v.len() as i64;
    if start < 0 {
        start += len;
    }
    if end < 0 {
        end += len;
    }
    start = start.max(0);
    end = end.max(0);
    if end >= len {
        end = len - 1;
    }
    if start > end || len == 0 {
        return b"";
    }
    &v[start as usize..=end as usize]
}

pub(crate) fn getrange(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let (Some(start), Some(end)) = (parse_i64(args.get(2)), parse_i64(args.get(3))) else {
        return r.error(NOT_INT);
    };
    let done = ks.get_str_with(args.get(1), |v| r.bulk(range(v.unwrap_or_default(), start, end)));
    or_wrongtype(r, done);
}

pub(crate) fn setrange(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>, max: usize) {
    let Some(offset) = parse_i64(args.get(2)) else {
        return r.error(NOT_INT);
    };
    if offset < 0 {
        return r.error("ERR offset is out of range");
    }
    match ks.set_range(args.get(1), offset as usize, args.get(3), max) {
        Ok(n) => r.int(n as i64),
        Err(e) => string_error(r, e),
    }
}

/// A bit offset (SETBIT, GETBIT): at most the bits of the largest value.
fn bit_offset(arg: &[u8], max: usize) -> Result<u64, &'static str> {
    match parse_i64(arg) {
        Some(n) if n >= 0 && ((n >> 3) as u64) < max as u64 => Ok(n as u64),
        _ => Err("ERR bit offset is not an integer or out of range"),
    }
}

pub(crate) fn setbit(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>, max: usize) {
    let offset = match bit_offset(args.get(2), max) {
        Ok(o) => o,
        Err(e) => return r.error(e),
    };
    let on = match parse_i64(args.get(3)) {
        Some(v @ (0 | 1)) => v == 1,
        _ => return r.error("ERR bit is not an integer or out of range"),
    };
    match ks.set_bit(args.get(1), offset, on) {
        Ok(old) => r.int(old as i64),
        Err(WrongType) => r.error(WRONGTYPE),
    }
}

pub(crate) fn getbit(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>, max: usize) {
    let offset = match bit_offset(args.get(2), max) {
        Ok(o) => o,
        Err(e) => return r.error(e),
    };
    let byte = (offset >> 3) as usize;
    let mask = 1u8 << (7 - (offset & 7));
    let done = ks.get_str_with(args.get(1), |v| {
        let set = v.and_then(|v| v.get(byte)).is_some_and(|b| b & mask != 0);
        r.int(set as i64);
    });
    or_wrongtype(r, done);
}

/// BITCOUNT key [start end [BYTE|BIT]]: as Redis, the key is looked up first (a missing
/// key counts 0 whatever the other arguments), then the range is parsed.
pub(crate) fn bitcount(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let done = ks.get_str_with(args.get(1), |v| match v {
        None => r.int(0),
        Some(v) => match count_bits(v, args) {
            Ok(n) => r.int(n),
            Err(e) => r.error(e),
        },
    });
    or_wrongtype(r, done);
}

/// Answers WRONGTYPE for a key of another type.
pub(crate) fn or_wrongtype(r: &mut Reply<'_>, done: Result<(), WrongType>) {
    if done.is_err() {
        r.error(WRONGTYPE);
    }
}

fn string_error(r: &mut Reply<'_>, e: StringError) {
    match e {
        StringError::TooLong => r.error(TOO_LONG),
        StringError::WrongType => r.error(WRONGTYPE),
    }
}

fn count_bits(v: &[u8], args: Args<'_>) -> Result<i64, &'static str> {
    let ones = |b: &[u8]| b.iter().map(|x| x.count_ones() as i64).sum::<i64>();
    match args.len() {
        2 => return Ok(ones(v)),
        4 | 5 => {}
        _ => return Err(SYNTAX),
    }
    let start = parse_i64(args.get(2)).ok_or(NOT_INT)?;
    let end = parse_i64(args.get(3)).ok_or(NOT_INT)?;
    if start < 0 && end < 0 && start > end {
        return Ok(0);
    }
    let bits = if args.len() == 5 {
        let unit = args.get(4);
        if unit.eq_ignore_ascii_case(b"bit") {
            true
        } else if unit.eq_ignore_ascii_case(b"byte") {
            false
        } else {
            return Err(SYNTAX);
        }
    } else {
        false
    };
    let total = v.len() as i64 * if bits { 8 } else { 1 };
    let (mut start, mut end) = (start, end);
    if start < 0 {
        start += total;
    }
    if end < 0 {
        end += total;
    }
    start = start.max(0);
    end = end.max(0);
    if end >= total {
        end = total - 1;
    }
    if start > end {
        return Ok(0);
    }
    if !bits {
        return Ok(ones(&v[start as usize..=end as usize]));
    }
    let (first, last) = ((start >> 3) as usize, (end >> 3) as usize);
    let mut n = ones(&v[first..=last]);
    // Take off the bits of the first and last bytes outside the range.
    let head = !(0xffu8 >> (start & 7));
    let tail = (1u16 << (7 - (end & 7))) as u8 - 1;
    n -= (v[first] & head).count_ones() as i64;
    n -= (v[last] & tail).count_ones() as i64;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::range;

    #[test]
    fn getrange_indexes_as_redis() {
        let v = b"hello";
        assert_eq!(range(v, 0, -1), b"hello");
        assert_eq!(range(v, -3, -5), b"");
        assert_eq!(range(v, -1, -3), b"");
        assert_eq!(range(v, 10, 20), b"");
        assert_eq!(range(v, 0, i64::MAX), b"hello");
        assert_eq!(range(v, i64::MIN, 2), b"hel");
        assert_eq!(range(b"", 0, -1), b"");
    }
}
