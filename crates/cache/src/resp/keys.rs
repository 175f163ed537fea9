//! The keyspace commands: DEL, EXISTS, the EXPIRE and TTL families, KEYS, SCAN,
//! RENAME, COPY, OBJECT, FLUSHDB. As in `strings`, arguments are checked in Redis'
//! order, so that a bad command gets Redis' error.

use super::parse::Args;
use super::reply::{truncated, Reply, NOT_INT, SYNTAX};
use crate::cache::{parse_i64, Ttl};
use crate::keyspace::{Access, Deadline, ExpireFlags, Keyspace, NoSuchKey};

/// DEL and UNLINK; the keyspace holds the keys' shards.
pub(crate) fn del(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let n = (1..args.len()).filter(|&i| ks.delete(args.get(i))).count();
    r.int(n as i64);
}

/// EXISTS (a key named twice counts twice, and so do its hits and misses in INFO); the
/// keyspace holds the keys' shards.
pub(crate) fn exists(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let n = (1..args.len())
        .filter(|&i| ks.exists(args.get(i), Access::Read))
        .count();
    r.int(n as i64);
}

/// TOUCH key [key ...]: how many exist, each marked used (as a read).
pub(crate) fn touch(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let n = (1..args.len()).filter(|&i| ks.touch(args.get(i))).count();
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
    match ks.ttl(args.get(1), Access::Read) {
        Ttl::Missing => r.int(-2),
        Ttl::Persistent => r.int(-1),
        Ttl::Remaining(d) => {
            let t = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
            r.int(if ms { t } else { t.saturating_add(500) / 1000 })
        }
    }
}

/// EXPIRETIME (seconds, rounded) and PEXPIRETIME.
pub(crate) fn expire_time(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>, ms: bool) {
    match ks.deadline(args.get(1)) {
        Deadline::Missing => r.int(-2),
        Deadline::Persistent => r.int(-1),
        Deadline::AtUnixMs(at) => {
            let at = at as i128;
            let v = if ms { at } else { (at + 500) / 1000 };
            r.int(i64::try_from(v).unwrap_or(i64::MAX))
        }
    }
}

/// KEYS; the keyspace holds every shard. The keys come shard after shard, each shard's
/// in its own order (Redis' order is its hash table's: neither is meaningful).
pub(crate) fn keys(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let keys = ks.keys_matching(args.get(1));
    r.array(keys.len());
    for k in &keys {
        r.bulk(k);
    }
}

/// SCAN's cursor packs the shard (high 16 bits) and the position in its key list below
/// which the scan goes on (low 48 bits; 0: start that shard from the top). Cursor 0
/// starts at shard 0 and, returned, means the scan is over.
const POSITION_BITS: u32 = 48;

/// The options of HSCAN, SSCAN and ZSCAN after their cursor: (COUNT, default 10; MATCH,
/// where `*` is no pattern), or the error Redis answers (in its order: a bad COUNT
/// value, then a COUNT below 1 or an unknown option, as a syntax error).
pub(crate) fn collection_scan_options<'a>(args: Args<'a>) -> Result<(usize, Option<&'a [u8]>), &'static str> {
    let mut count: usize = 10;
    let mut pattern: Option<&'a [u8]> = None;
    let mut i = 3;
    while i < args.len() {
        let o = args.get(i);
        let has_value = i + 1 < args.len();
        if o.eq_ignore_ascii_case(b"count") && has_value {
            match parse_i64(args.get(i + 1)) {
                None => return Err(NOT_INT),
                Some(n) if n < 1 => return Err(SYNTAX),
                Some(n) => count = usize::try_from(n).unwrap_or(usize::MAX),
            }
        } else if o.eq_ignore_ascii_case(b"match") && has_value {
            let p = args.get(i + 1);
            pattern = (p != b"*").then_some(p);
        } else {
            return Err(SYNTAX);
        }
        i += 2;
    }
    Ok((count, pattern))
}

/// A cursor as Redis reads one (C's `strtoul`: an optional sign, digits, nothing after;
/// the empty string is 0; a leading space or an overflow is an error).
pub(crate) fn parse_cursor(arg: &[u8]) -> Option<u64> {
    // The argument as C sees it: up to its first NUL.
    let arg = &arg[..arg.iter().position(|&b| b == 0).unwrap_or(arg.len())];
    if arg.is_empty() {
        return Some(0);
    }
    let (neg, digits) = match arg[0] {
        b'-' => (true, &arg[1..]),
        b'+' => (false, &arg[1..]),
        _ => (false, arg),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut v: u64 = 0;
    for &d in digits {
        v = v.checked_mul(10)?.checked_add((d - b'0') as u64)?;
    }
    Some(if neg { v.wrapping_neg() } else { v })
}

/// SCAN cursor [MATCH pattern] [COUNT n] [TYPE type]: visits about `n` key slots (10 by
/// default), shard after shard (see `ShardState::scan` for why every key present for a
/// whole scan is returned). The keyspace holds every shard.
pub(crate) fn scan(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let Some(cursor) = parse_cursor(args.get(1)) else {
        return r.error("ERR invalid cursor");
    };
    let mut count: i64 = 10;
    let mut pattern: Option<&[u8]> = None;
    let mut type_filter: Option<&[u8]> = None;
    let mut i = 2;
    while i < args.len() {
        let o = args.get(i);
        let has_value = i + 1 < args.len();
        if o.eq_ignore_ascii_case(b"count") && has_value {
            match parse_i64(args.get(i + 1)) {
                None => return r.error(NOT_INT),
                Some(n) if n < 1 => return r.error(SYNTAX),
                Some(n) => count = n,
            }
        } else if o.eq_ignore_ascii_case(b"match") && has_value {
            let p = args.get(i + 1);
            pattern = (p != b"*").then_some(p);
        } else if o.eq_ignore_ascii_case(b"type") && has_value {
            type_filter = Some(args.get(i + 1));
        } else {
            return r.error(SYNTAX);
        }
        i += 2;
    }
    let shards = ks.cache().shard_count();
    // Bits past the shards' count are no position, as Redis ignores a cursor's bits
    // past its table's size (2^63 starts a scan anew).
    let mut shard = (cursor >> POSITION_BITS) as usize & (shards.next_power_of_two() - 1);
    let position = cursor & ((1 << POSITION_BITS) - 1);
    let mut end = (position != 0).then_some(position as usize);
    let mut budget = usize::try_from(count).unwrap_or(usize::MAX);
    let mut found: Vec<Vec<u8>> = Vec::new();
    let next = loop {
        if shard >= shards {
            break 0;
        }
        let (at, visited) = ks.scan_shard(shard, end, budget, |k| {
            if pattern.is_none_or(|p| crate::glob::matches(p, k, false)) {
                found.push(k.to_vec());
            }
        });
        budget -= visited;
        if at == 0 {
            shard += 1;
            end = None;
        } else {
            end = Some(at);
        }
        if budget == 0 {
            break if shard >= shards {
                0
            } else {
                (shard as u64) << POSITION_BITS | end.unwrap_or(0) as u64
            };
        }
    };
    if let Some(t) = type_filter {
        // The keyspace holds every shard: the types are those the walk saw.
        // Each key's type is a read, a hit, as Redis counts it.
        found.retain(|k| t.eq_ignore_ascii_case(ks.type_name(k, Access::Read).as_bytes()));
    }
    r.array(2);
    r.bulk(next.to_string().as_bytes());
    r.array(found.len());
    for k in &found {
        r.bulk(k);
    }
}

/// RENAME and RENAMENX; the keyspace holds both keys' shards.
pub(crate) fn rename(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>, nx: bool) {
    match ks.rename(args.get(1), args.get(2), nx) {
        Err(NoSuchKey) => r.error("ERR no such key"),
        Ok(moved) if nx => r.int(moved as i64),
        Ok(_) => r.ok(),
    }
}

/// COPY source destination [DB 0] [REPLACE]; the keyspace holds both keys' shards.
/// There is one database, 0.
pub(crate) fn copy(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let mut replace = false;
    let mut j = 3;
    while j < args.len() {
        let o = args.get(j);
        if o.eq_ignore_ascii_case(b"replace") {
            replace = true;
        } else if o.eq_ignore_ascii_case(b"db") && j + 1 < args.len() {
            match parse_i64(args.get(j + 1)) {
                None => return r.error(NOT_INT),
                Some(n) if i32::try_from(n).is_err() => {
                    return r.error("ERR value is out of range, value must between -2147483648 and 2147483647")
                }
                Some(0) => {}
                Some(_) => return r.error("ERR DB index is out of range"),
            }
            j += 1;
        } else {
            return r.error(SYNTAX);
        }
        j += 1;
    }
    if args.get(1) == args.get(2) {
        return r.error("ERR source and destination objects are the same");
    }
    r.int(ks.copy(args.get(1), args.get(2), replace) as i64);
}

/// OBJECT ENCODING | FREQ | IDLETIME | REFCOUNT key, and OBJECT HELP (the subcommand
/// and its arity were checked at dispatch: `Spec::subcommand`).
pub(crate) fn object(r: &mut Reply<'_>, ks: &mut Keyspace<'_>, args: Args<'_>) {
    let sub = args.get(1).to_ascii_lowercase();
    if sub == b"help" {
        let lines = [
            "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "ENCODING <key>",
            "    Return the kind of internal representation used in order to store the value",
            "    associated with a <key>.",
            "FREQ <key>",
            "    Return the access frequency index of the <key>. The returned integer is",
            "    proportional to the logarithm of the recent access frequency of the key.",
            "IDLETIME <key>",
            "    Return the idle time of the <key>, that is the approximated number of",
            "    seconds elapsed since the last access to the key.",
            "REFCOUNT <key>",
            "    Return the number of references of the value associated with the specified",
            "    <key>.",
            "HELP",
            "    Prints this help.",
        ];
        r.array(lines.len());
        for l in lines {
            r.simple(l);
        }
        return;
    }
    let Some((encoding, idle_ms)) = ks.object(args.get(2)) else {
        return r.null();
    };
    match &sub[..] {
        b"encoding" => r.bulk(encoding.as_bytes()),
        b"idletime" => r.int((idle_ms / 1000) as i64),
        b"refcount" => r.int(1),
        // FREQ
        _ => r.error(
            "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
        ),
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

#[cfg(test)]
mod tests {
    use super::parse_cursor;

    #[test]
    fn cursors_parse_as_strtoul() {
        assert_eq!(parse_cursor(b""), Some(0));
        assert_eq!(parse_cursor(b"+0"), Some(0));
        assert_eq!(parse_cursor(b"-1"), Some(u64::MAX));
        assert_eq!(parse_cursor(b"007"), Some(7));
        assert_eq!(parse_cursor(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_cursor(b"18446744073709551616"), None);
        for bad in [&b" 0"[..], b"abc", b"1x", b"+", b"-", b"0 "] {
            assert_eq!(parse_cursor(bad), None, "{bad:?}");
        }
    }
}
