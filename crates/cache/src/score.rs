//! A sorted set's scores as Redis reads and writes them: `string2d` (ZADD's, ZINCRBY's
//! and WEIGHTS' scores: all of the text, `strtod`'s decimal and hexadecimal forms and
//! `inf`, no NaN, no overflow or underflow to zero), `zslParseRange`'s ends of a range
//! (`strtod`, looser), `addReplyDouble`'s `%.17g` and a listpack's `d2string`.

/// Redis' `string2d` (ZADD's and ZINCRBY's scores): all of the text, no leading space,
/// no NaN, nothing that overflows to infinity or underflows to zero.
pub(crate) fn parse_score(b: &[u8]) -> Option<f64> {
    if b.is_empty() || is_c_space(b[0]) {
        return None;
    }
    let s = std::str::from_utf8(b).ok()?;
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let lower = body.to_ascii_lowercase();
    if lower == "inf" || lower == "infinity" {
        return Some(if s.starts_with('-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    if let Some((v, underflow)) = parse_hex(body.as_bytes()) {
        // ERANGE: overflow to infinity or underflow to zero.
        return (!underflow && v.is_finite()).then_some(if s.starts_with('-') { -v } else { v });
    }
    // Rust's parser takes what strtod takes in decimal but the words above and hex.
    if !body.bytes().next().is_some_and(|c| c.is_ascii_digit() || c == b'.') {
        return None;
    }
    let v: f64 = s.parse().ok()?;
    if v.is_infinite() {
        return None; // ERANGE: overflow
    }
    if v == 0.0
        && body
            .bytes()
            .take_while(|&c| c != b'e' && c != b'E')
            .any(|c| (b'1'..=b'9').contains(&c))
    {
        return None; // ERANGE: underflow to zero
    }
    Some(v)
}

/// `strtod`'s hexadecimal form without its sign (`0x1.8p3`, `0X10`, `0x.8`), all of
/// `b`: the value correctly rounded (to nearest, ties to even; infinite past the
/// largest double) and whether a nonzero value rounded to 0. None: no such form.
fn parse_hex(b: &[u8]) -> Option<(f64, bool)> {
    let b = b.strip_prefix(b"0x").or_else(|| b.strip_prefix(b"0X"))?;
    // The value is mant * 2^exp, plus something nonzero below it when `sticky`.
    let (mut mant, mut exp, mut sticky) = (0u64, 0i64, false);
    let (mut digits, mut point, mut i) = (0, false, 0);
    while i < b.len() {
        let c = b[i];
        if c == b'.' && !point {
            point = true;
        } else if let Some(d) = (c as char).to_digit(16) {
            digits += 1;
            if mant >> 56 == 0 {
                mant = mant << 4 | d as u64;
                exp -= 4 * point as i64;
            } else {
                sticky |= d != 0;
                exp += 4 * !point as i64;
            }
        } else {
            break;
        }
        i += 1;
    }
    if digits == 0 {
        return None;
    }
    if i < b.len() {
        if b[i] | 0x20 != b'p' {
            return None;
        }
        let rest = &b[i + 1..];
        let (neg, ds) = match rest.first() {
            Some(b'-') => (true, &rest[1..]),
            Some(b'+') => (false, &rest[1..]),
            _ => (false, rest),
        };
        if ds.is_empty() || !ds.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let e = ds.iter().fold(0i64, |e, d| (e * 10 + (d - b'0') as i64).min(1 << 20));
        exp += if neg { -e } else { e };
    }
    if mant == 0 {
        return Some((0.0, false));
    }
    let top = 63 - mant.leading_zeros() as i64;
    if top + exp > 1023 {
        return Some((f64::INFINITY, false));
    }
    // Significant bits a double keeps at this magnitude (fewer when subnormal).
    let keep = if top + exp >= -1022 {
        53
    } else {
        53 - (-1022 - (top + exp))
    };
    let shift = top + 1 - keep;
    let (q, e) = if shift <= 0 {
        (mant as u128, exp)
    } else if shift > 100 {
        (0, exp + shift)
    } else {
        let m = mant as u128;
        let dropped = m & ((1u128 << shift) - 1);
        let half = 1u128 << (shift - 1);
        let q = m >> shift;
        let up = dropped > half || (dropped == half && (sticky || q & 1 == 1));
        (q + up as u128, exp + shift)
    };
    if q == 0 {
        return Some((0.0, true));
    }
    let pow2 = |k: i64| f64::from_bits(((k + 1023) as u64) << 52);
    let v = if e >= -1022 {
        if e > 1023 {
            f64::INFINITY
        } else {
            q as f64 * pow2(e)
        }
    } else {
        // Exact: the result is representable (a subnormal), and so is every step.
        q as f64 * pow2(e + 1074) * f64::from_bits(1)
    };
    Some((v, false))
}

fn is_c_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// One end of a score range, as `zslParseRange` reads it with `strtod`: `(` makes it
/// exclusive; leading spaces and an empty number (0) are taken, text after a NUL byte
/// is ignored, NaN is refused; overflow is infinity.
pub(crate) fn parse_bound(b: &[u8]) -> Option<(f64, bool)> {
    let (b, ex) = match b.first() {
        Some(b'(') => (&b[1..], true),
        _ => (b, false),
    };
    let b = &b[..b.iter().position(|&c| c == 0).unwrap_or(b.len())];
    let start = b.iter().position(|&c| !is_c_space(c)).unwrap_or(b.len());
    let b = &b[start..];
    if b.is_empty() {
        return Some((0.0, ex));
    }
    let s = std::str::from_utf8(b).ok()?;
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let lower = body.to_ascii_lowercase();
    let neg = s.starts_with('-');
    if lower == "inf" || lower == "infinity" {
        return Some((if neg { f64::NEG_INFINITY } else { f64::INFINITY }, ex));
    }
    if let Some((v, _)) = parse_hex(body.as_bytes()) {
        return Some((if neg { -v } else { v }, ex));
    }
    if !body.bytes().next().is_some_and(|c| c.is_ascii_digit() || c == b'.') {
        return None;
    }
    let v: f64 = s.parse().ok()?;
    Some((v, ex))
}

/// A score as Redis replies it (`addReplyDouble`): `%.17g`, `inf` and `-inf`.
pub(crate) fn format_score(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // 17 significant digits, correctly rounded, then %g's choice of notation.
    let sci = format!("{:.16e}", v);
    let (mantissa, exp) = sci.split_once('e').expect("exponent");
    let exp: i32 = exp.parse().expect("an integer exponent");
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if (-4..17).contains(&exp) {
        let (int, frac) = if exp >= 0 {
            let (i, f) = digits.split_at(exp as usize + 1);
            (i.to_string(), f.to_string())
        } else {
            (
                "0".to_string(),
                format!("{}{}", "0".repeat((-exp - 1) as usize), digits),
            )
        };
        out.push_str(&int);
        let frac = frac.trim_end_matches('0');
        if !frac.is_empty() {
            out.push('.');
            out.push_str(frac);
        }
    } else {
        let (first, rest) = digits.split_at(1);
        out.push_str(first);
        let rest = rest.trim_end_matches('0');
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        out.push_str(&format!("e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs()));
    }
    out
}

/// A score as a listpack holds it (Redis' `d2string`, which ZSCAN of a listpack shows):
/// an integer in full while it is one below 2^62, else [`format_score`].
pub(crate) fn listpack_score(v: f64) -> String {
    const HALF: f64 = (i64::MAX / 2) as f64;
    if v != 0.0 && (-HALF..=HALF).contains(&v) && v.fract() == 0.0 {
        return (v as i64).to_string();
    }
    format_score(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_print_as_redis() {
        for (v, text) in [
            (1.5, "1.5"),
            (0.1, "0.10000000000000001"),
            (1e20, "1e+20"),
            (1e17, "1e+17"),
            (1e16, "10000000000000000"),
            (123456789.0, "123456789"),
            (-0.0, "-0"),
            (0.0001, "0.0001"),
            (0.00001, "1.0000000000000001e-05"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (-2.5e-300, "-2.5e-300"),
            (f64::MAX, "1.7976931348623157e+308"),
        ] {
            assert_eq!(format_score(v), text, "{v}");
        }
        assert_eq!(listpack_score(1e18), "1000000000000000000");
        assert_eq!(listpack_score(1e19), "1e+19");
        assert_eq!(listpack_score(2.5), "2.5");
    }

    #[test]
    fn scores_parse_as_redis() {
        for (t, v) in [
            ("1", Some(1.0)),
            ("-inf", Some(f64::NEG_INFINITY)),
            ("+Infinity", Some(f64::INFINITY)),
            (".5", Some(0.5)),
            ("1e3", Some(1000.0)),
            (" 1", None),
            ("1 ", None),
            ("nan", None),
            ("1e999", None),
            ("1e-999", None),
            ("0e-999", Some(0.0)),
            ("", None),
            ("abc", None),
        ] {
            assert_eq!(parse_score(t.as_bytes()), v, "{t}");
        }
        for (t, v) in [
            ("0x10", Some(16.0)),
            ("-0X1.8p1", Some(-3.0)),
            ("0x.8", Some(0.5)),
            ("0x1p-1074", Some(f64::from_bits(1))),
            ("0x1.8p-1075", Some(f64::from_bits(1))),
            ("0x1p-1075", None),
            ("0x1p1024", None),
            ("0x1.fffffffffffff8p1023", None),
            ("0x1.fffffffffffffp1023", Some(f64::MAX)),
            ("0x1.00000000000008p0", Some(1.0)),
            ("0x1.000000000000081p0", Some(1.0 + f64::EPSILON)),
            (
                "0x123456789abcdef0123p-40",
                Some(0x123456789abcdef0123u128 as f64 / (1u64 << 40) as f64),
            ),
            ("0x", None),
            ("0xp1", None),
            ("0x1p", None),
            ("0x1g", None),
        ] {
            assert_eq!(parse_score(t.as_bytes()), v, "{t}");
        }
        assert_eq!(parse_bound(b"(0x10"), Some((16.0, true)));
        assert_eq!(parse_bound(b"0x1p9999"), Some((f64::INFINITY, false)));
        assert_eq!(parse_bound(b"(1"), Some((1.0, true)));
        assert_eq!(parse_bound(b""), Some((0.0, false)));
        assert_eq!(parse_bound(b" 2"), Some((2.0, false)));
        assert_eq!(parse_bound(b"1e999"), Some((f64::INFINITY, false)));
        assert_eq!(parse_bound(b"(nan"), None);
        assert_eq!(parse_bound(b"x"), None);
    }
}
