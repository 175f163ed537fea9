//! COMMAND GETKEYS: the keys of a command as Redis 7.0 finds them, for the commands
//! strata knows (an unknown one, such as EVAL or SORT, is `Invalid command specified`).
//! Redis reads its key specs first (a range, or a count of keys read as `string2ll`
//! reads it); when a count does not fit the command, it falls back to the command's own
//! `getkeys` function, which reads the count as C's `atoi` and lists a *STORE command's
//! destination after its keys.

use super::parse::Args;
use super::reply::Reply;
use super::table::{lookup, Cmd, Spec};
use crate::cache::parse_i64;
use crate::long_double::skip_sign;

/// COMMAND GETKEYS command [arg ...] (its arity, at least 4, is checked at dispatch).
pub(crate) fn getkeys(r: &mut Reply<'_>, args: Args<'_>) {
    let command = args.skip(2);
    let Some(spec) = lookup(command.get(0)) else {
        return r.error("ERR Invalid command specified");
    };
    let (arity, has_keys) = if spec.subcommands().is_empty() {
        (spec.arity, spec.first_key > 0 || spec.flags.contains(&"movablekeys"))
    } else {
        let given = command.get(1);
        let Some(sub) = spec
            .subcommands()
            .iter()
            .find(|s| s.name.as_bytes().eq_ignore_ascii_case(given))
        else {
            return r.error("ERR Invalid command specified");
        };
        (sub.arity, spec.cmd == Cmd::Object && sub.name != "help")
    };
    if !has_keys {
        return r.error("ERR The command has no key arguments");
    }
    let n = command.len() as i32;
    if (arity > 0 && arity != n) || n < -arity {
        return r.error("ERR Invalid number of arguments specified for command");
    }
    match key_positions(spec, command) {
        Some(keys) => {
            r.array(keys.len());
            for i in keys {
                r.bulk(command.get(i));
            }
        }
        None => r.error("ERR Invalid arguments specified for command"),
    }
}

/// Where a command that counts its keys has the count, and its first key; for the
/// *STORE forms, also the destination's position.
fn counted(cmd: Cmd) -> Option<(usize, usize, Option<usize>)> {
    Some(match cmd {
        Cmd::Sintercard | Cmd::Zunion | Cmd::Zinter | Cmd::Zdiff | Cmd::Zintercard | Cmd::Lmpop | Cmd::Zmpop => {
            (1, 2, None)
        }
        Cmd::Blmpop | Cmd::Bzmpop => (2, 3, None),
        Cmd::Zunionstore | Cmd::Zinterstore | Cmd::Zdiffstore => (2, 3, Some(1)),
        _ => return None,
    })
}

/// The positions of the keys in `command` (None: Redis finds none, an error).
fn key_positions(spec: &Spec, command: Args<'_>) -> Option<Vec<usize>> {
    let argc = command.len();
    if let Some((count_at, first, store)) = counted(spec.cmd) {
        // The key specs: the destination, then the counted keys.
        let by_spec = parse_i64(command.get(count_at))
            // No sum that can overflow: a count near i64::MAX is malformed input.
            .filter(|&k| k >= 1 && k <= argc as i64 - first as i64)
            .map(|k| store.into_iter().chain(first..first + k as usize).collect());
        // Else the command's own function: `atoi`, the destination last.
        return by_spec.or_else(|| {
            let k = atoi(command.get(count_at));
            (k >= 1 && k as usize <= argc.saturating_sub(first))
                .then(|| (first..first + k as usize).chain(store).collect())
        });
    }
    let (first, last, step) = match spec.cmd {
        Cmd::Object => (2, 2, 1),
        _ => (spec.first_key, spec.last_key, spec.step),
    };
    let last = if last < 0 { argc as i32 + last } else { last };
    if last >= argc as i32 || last < first || first >= argc as i32 {
        return None;
    }
    Some((first as usize..=last as usize).step_by(step.max(1) as usize).collect())
}

/// C's `atoi` (as glibc's `strtol`, cast to `int`): leading white space, a sign, digits
/// up to the first other byte; nothing read is 0.
fn atoi(b: &[u8]) -> i32 {
    let mut i = 0;
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
        i += 1;
    }
    let neg = skip_sign(b, &mut i);
    // The magnitude, past which strtol answers LONG_MIN or LONG_MAX.
    let mut v: i128 = 0;
    while let Some(d) = b.get(i).filter(|d| d.is_ascii_digit()) {
        v = (v * 10 + i128::from(d - b'0')).min(1 << 64);
        i += 1;
    }
    let long = if neg {
        (-v).max(i64::MIN.into())
    } else {
        v.min(i64::MAX.into())
    };
    long as i64 as i32
}

#[cfg(test)]
mod tests {
    use super::atoi;

    #[test]
    fn atoi_reads_as_c_does() {
        for (s, v) in [
            ("2", 2),
            (" +3x", 3),
            ("-1", -1),
            ("x", 0),
            ("", 0),
            ("007", 7),
            // strtol saturates at LONG_MIN / LONG_MAX, then the int keeps the low 32 bits.
            ("-9223372036854775808", 0),
            ("-99999999999999999999", 0),
            ("9223372036854775807", -1),
            ("99999999999999999999", -1),
            ("4294967298", 2),
        ] {
            assert_eq!(atoi(s.as_bytes()), v, "{s:?}");
        }
    }
}
