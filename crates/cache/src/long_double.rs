//! INCRBYFLOAT's arithmetic: the x87 80-bit extended precision ("long double" on
//! x86-64 Linux) that Redis computes it in. Rust has no such type, and an `f64` answers
//! differently (`INCRBYFLOAT k 0.1` is `0.1` in Redis, `0.10000000000000001` in
//! binary64), so this module emulates, exactly, the three operations Redis uses:
//!
//! - [`parse`]: Redis' `string2ld`, glibc's `strtold` (correctly rounded, decimal and
//!   hexadecimal, `inf`) that must take the whole string; NaN, overflow and underflow
//!   to zero are refused.
//! - [`add`]: one rounded addition (round half to even, 64-bit significand,
//!   gradual underflow).
//! - [`format`]: `ld2string(..., LD_STR_HUMAN)`: `%.17Lf` with the trailing zeros (and
//!   a trailing `.`) removed, and `-0` written `0`.
//!
//! The answers are those of Redis on x86-64 on every platform strata runs on (Redis
//! itself answers differently where `long double` is wider, as on aarch64).

use std::cmp::Ordering;

/// Bits in the significand (the x87 format keeps its integer bit explicit).
const BITS: i64 = 64;
/// The exponent of the least significant bit of a subnormal: 2^-16445 is the smallest
/// positive value.
const MIN_EXP: i64 = -16445;
/// The largest exponent of the least significant bit of a finite value.
const MAX_EXP: i64 = 16383 - 63;
/// Longest input `string2ld` accepts (its buffer is `MAX_LONG_DOUBLE_CHARS`, 5 KiB).
const MAX_INPUT: usize = 5 * 1024;

/// An extended-precision value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LongDouble {
    /// `(-1)^neg * mant * 2^exp`: zero when `mant` is 0; otherwise either normal
    /// (bit 63 of `mant` set) or subnormal (`exp == MIN_EXP`).
    Finite {
        neg: bool,
        mant: u64,
        exp: i64,
    },
    Inf {
        neg: bool,
    },
    Nan,
}

impl LongDouble {
    pub fn is_finite(self) -> bool {
        matches!(self, LongDouble::Finite { .. })
    }
}

/// Parses `s` as Redis' `string2ld` does: all of it, no leading space, no NaN, nothing
/// that overflows to infinity or underflows to zero.
pub(crate) fn parse(s: &[u8]) -> Option<LongDouble> {
    if s.is_empty() || s.len() >= MAX_INPUT || s[0].is_ascii_whitespace() || s[0] == 0x0b {
        return None;
    }
    let (neg, body) = match s[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if body.eq_ignore_ascii_case(b"inf") || body.eq_ignore_ascii_case(b"infinity") {
        return Some(LongDouble::Inf { neg });
    }
    let exact = if body.len() > 2 && body[0] == b'0' && (body[1] | 0x20) == b'x' {
        parse_hex(&body[2..])?
    } else {
        parse_decimal(body)?
    };
    match exact {
        Exact::Zero => Some(LongDouble::Finite { neg, mant: 0, exp: 0 }),
        Exact::Overflow => None,
        Exact::Underflow => None,
        Exact::Value { n, exp, sticky } => match round(neg, &n, exp, sticky) {
            LongDouble::Finite { mant: 0, .. } | LongDouble::Inf { .. } => None,
            v => Some(v),
        },
    }
}

/// `a + b`, rounded as the x87 unit rounds it.
pub(crate) fn add(a: LongDouble, b: LongDouble) -> LongDouble {
    use LongDouble::*;
    match (a, b) {
        (Nan, _) | (_, Nan) => Nan,
        (Inf { neg: x }, Inf { neg: y }) if x != y => Nan,
        (Inf { neg }, _) | (_, Inf { neg }) => Inf { neg },
        (
            Finite {
                neg: na,
                mant: ma,
                exp: ea,
            },
            Finite {
                neg: nb,
                mant: mb,
                exp: eb,
            },
        ) => {
            if ma == 0 {
                return if mb == 0 {
                    Finite {
                        neg: na && nb,
                        mant: 0,
                        exp: 0,
                    }
                } else {
                    b
                };
            }
            if mb == 0 {
                return a;
            }
            let e = ea.min(eb);
            let x = Big::from_u64(ma).shl((ea - e) as usize);
            let y = Big::from_u64(mb).shl((eb - e) as usize);
            let (neg, n) = if na == nb {
                (na, x.add(&y))
            } else {
                match x.cmp(&y) {
                    Ordering::Equal => {
                        return Finite {
                            neg: false,
                            mant: 0,
                            exp: 0,
                        }
                    }
                    Ordering::Greater => (na, x.sub(&y)),
                    Ordering::Less => (nb, y.sub(&x)),
                }
            };
            round(neg, &n, e, false)
        }
    }
}

/// `%.17Lf` with trailing zeros removed, as Redis prints INCRBYFLOAT's result.
/// Only for finite values (Redis refuses to store the others).
pub(crate) fn format(v: LongDouble) -> String {
    let LongDouble::Finite { neg, mant, exp } = v else {
        return match v {
            LongDouble::Inf { neg: true } => "-inf".into(),
            LongDouble::Inf { neg: false } => "inf".into(),
            _ => "nan".into(),
        };
    };
    let mut s = String::new();
    if neg {
        s.push('-');
    }
    if exp >= 0 {
        // An integer: every fractional digit is zero, and all of them are trimmed.
        s.push_str(&Big::from_u64(mant).shl(exp as usize).to_decimal());
    } else {
        // floor or round(value * 10^17): mant * 10^17 < 2^121 fits a u128.
        const SCALE: u128 = 100_000_000_000_000_000;
        let x = mant as u128 * SCALE;
        let shift = (-exp) as u32;
        let q = if shift >= 128 {
            0
        } else {
            let q = x >> shift;
            let rem = x & ((1u128 << shift) - 1);
            let half = 1u128 << (shift - 1);
            if rem > half || (rem == half && q & 1 == 1) {
                q + 1
            } else {
                q
            }
        };
        let int = q / SCALE;
        let frac = q % SCALE;
        s.push_str(&int.to_string());
        if frac != 0 {
            let digits = format!("{frac:017}");
            s.push('.');
            s.push_str(digits.trim_end_matches('0'));
        }
    }
    if s == "-0" {
        s = "0".into();
    }
    s
}

/// Steps `i` over an optional `-` or `+` at `s[i]`: whether it was `-`. The sign of an
/// exponent here, and of C's `atoi` in COMMAND GETKEYS.
pub(crate) fn skip_sign(s: &[u8], i: &mut usize) -> bool {
    match s.get(*i) {
        Some(b'-') => {
            *i += 1;
            true
        }
        Some(b'+') => {
            *i += 1;
            false
        }
        _ => false,
    }
}

/// A parsed number before rounding: `n * 2^exp`, plus whether anything nonzero was
/// cut off below it.
enum Exact {
    Zero,
    Value {
        n: Big,
        exp: i64,
        sticky: bool,
    },
    /// Certainly past the largest finite value.
    Overflow,
    /// Certainly nonzero and below half the smallest subnormal.
    Underflow,
}

/// Decimal: digits, an optional `.` and digits (at least one digit in all), an optional
/// exponent `e[+-]digits`.
fn parse_decimal(s: &[u8]) -> Option<Exact> {
    let mut i = 0;
    let mut digits: Vec<u8> = Vec::new();
    let mut point_shift: i64 = 0;
    let mut seen_digit = false;
    while i < s.len() && s[i].is_ascii_digit() {
        seen_digit = true;
        digits.push(s[i] - b'0');
        i += 1;
    }
    if i < s.len() && s[i] == b'.' {
        i += 1;
        while i < s.len() && s[i].is_ascii_digit() {
            seen_digit = true;
            digits.push(s[i] - b'0');
            point_shift -= 1;
            i += 1;
        }
    }
    if !seen_digit {
        return None;
    }
    let mut exp10: i64 = 0;
    if i < s.len() && (s[i] | 0x20) == b'e' {
        i += 1;
        let neg = skip_sign(s, &mut i);
        let start = i;
        while i < s.len() && s[i].is_ascii_digit() {
            // Saturate: anything this large is past every bound below.
            exp10 = (exp10 * 10 + (s[i] - b'0') as i64).min(1 << 40);
            i += 1;
        }
        if i == start {
            return None;
        }
        if neg {
            exp10 = -exp10;
        }
    }
    if i != s.len() {
        return None;
    }
    // Significant digits only: leading zeros say nothing, trailing ones move the exponent.
    let first = digits.iter().position(|&d| d != 0);
    let Some(first) = first else {
        return Some(Exact::Zero);
    };
    let last = digits.iter().rposition(|&d| d != 0).expect("a nonzero digit");
    let trailing = (digits.len() - 1 - last) as i64;
    let digits = &digits[first..=last];
    let e = exp10 + point_shift + trailing;
    let count = digits.len() as i64;
    // The value is in [10^(count-1+e), 10^(count+e)).
    if count - 1 + e > 4933 {
        return Some(Exact::Overflow);
    }
    if count + e < -4952 {
        return Some(Exact::Underflow);
    }
    let mut d = Big::zero();
    for chunk in digits.chunks(9) {
        let mut v = 0u32;
        for &c in chunk {
            v = v * 10 + c as u32;
        }
        d = d.mul_small(10u32.pow(chunk.len() as u32)).add_small(v);
    }
    if e >= 0 {
        let n = d.mul_pow10(e as usize);
        return Some(Exact::Value {
            n,
            exp: 0,
            sticky: false,
        });
    }
    // d / 10^k with at least 66 bits of quotient: shift d left first.
    let divisor = Big::from_u64(1).mul_pow10((-e) as usize);
    let shift = (divisor.bits() as i64 - d.bits() as i64 + BITS + 2).max(0) as usize;
    let (q, rem_nonzero) = d.shl(shift).div(&divisor);
    Some(Exact::Value {
        n: q,
        exp: -(shift as i64),
        sticky: rem_nonzero,
    })
}

/// Hexadecimal after `0x`: hex digits, an optional `.` and hex digits (at least one
/// digit in all), an optional binary exponent `p[+-]digits`.
fn parse_hex(s: &[u8]) -> Option<Exact> {
    let mut i = 0;
    let mut n = Big::zero();
    let mut exp: i64 = 0;
    let mut seen_digit = false;
    let hex = |c: u8| (c as char).to_digit(16);
    while let Some(v) = s.get(i).and_then(|&c| hex(c)) {
        seen_digit = true;
        n = n.mul_small(16).add_small(v);
        i += 1;
    }
    if s.get(i) == Some(&b'.') {
        i += 1;
        while let Some(v) = s.get(i).and_then(|&c| hex(c)) {
            seen_digit = true;
            n = n.mul_small(16).add_small(v);
            exp -= 4;
            i += 1;
        }
    }
    if !seen_digit {
        return None;
    }
    if i < s.len() && (s[i] | 0x20) == b'p' {
        i += 1;
        let neg = skip_sign(s, &mut i);
        let start = i;
        let mut p: i64 = 0;
        while i < s.len() && s[i].is_ascii_digit() {
            p = (p * 10 + (s[i] - b'0') as i64).min(1 << 40);
            i += 1;
        }
        if i == start {
            return None;
        }
        exp += if neg { -p } else { p };
    }
    if i != s.len() {
        return None;
    }
    if n.is_zero() {
        return Some(Exact::Zero);
    }
    let top = n.bits() as i64 - 1 + exp;
    if top > MAX_EXP + BITS {
        return Some(Exact::Overflow);
    }
    if top < MIN_EXP - 2 {
        return Some(Exact::Underflow);
    }
    Some(Exact::Value { n, exp, sticky: false })
}

/// Rounds `(-1)^neg * (n + sticky) * 2^exp` to the nearest representable value, ties to
/// even.
fn round(neg: bool, n: &Big, exp: i64, sticky: bool) -> LongDouble {
    if n.is_zero() {
        return LongDouble::Finite { neg, mant: 0, exp: 0 };
    }
    let bits = n.bits() as i64;
    let target = (exp + bits - BITS).max(MIN_EXP);
    let shift = target - exp;
    let (mant, e) = if shift <= 0 {
        (n.low_u64() << (-shift), target)
    } else {
        let shift = shift as usize;
        let kept = n.shr(shift);
        let half = n.bit(shift - 1);
        let below = sticky || n.any_below(shift - 1);
        let mut m = kept.low_u64();
        if half && (below || m & 1 == 1) {
            let (sum, carry) = m.overflowing_add(1);
            if carry {
                // 2^64: one more bit, the exponent moves up.
                return finish(neg, 1 << 63, target + 1);
            }
            m = sum;
        }
        (m, target)
    };
    finish(neg, mant, e)
}

fn finish(neg: bool, mant: u64, exp: i64) -> LongDouble {
    if exp > MAX_EXP {
        LongDouble::Inf { neg }
    } else {
        LongDouble::Finite { neg, mant, exp }
    }
}

/// A small unsigned big integer (little-endian 32-bit limbs, no leading zero limbs):
/// just what exact parsing, addition and printing need.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Big(Vec<u32>);

impl Big {
    fn zero() -> Big {
        Big(Vec::new())
    }

    fn from_u64(v: u64) -> Big {
        let mut b = Big(vec![v as u32, (v >> 32) as u32]);
        b.trim();
        b
    }

    fn trim(&mut self) {
        while self.0.last() == Some(&0) {
            self.0.pop();
        }
    }

    fn is_zero(&self) -> bool {
        self.0.is_empty()
    }

    fn bits(&self) -> usize {
        match self.0.last() {
            None => 0,
            Some(&top) => (self.0.len() - 1) * 32 + (32 - top.leading_zeros() as usize),
        }
    }

    fn bit(&self, i: usize) -> bool {
        self.0.get(i / 32).is_some_and(|&l| l >> (i % 32) & 1 == 1)
    }

    /// Whether any of the bits below bit `i` is set.
    fn any_below(&self, i: usize) -> bool {
        let limb = i / 32;
        if self.0[..limb.min(self.0.len())].iter().any(|&l| l != 0) {
            return true;
        }
        let mask = (1u32 << (i % 32)).wrapping_sub(1);
        self.0.get(limb).is_some_and(|&l| l & mask != 0)
    }

    fn low_u64(&self) -> u64 {
        let lo = *self.0.first().unwrap_or(&0) as u64;
        let hi = *self.0.get(1).unwrap_or(&0) as u64;
        lo | hi << 32
    }

    fn mul_small(mut self, m: u32) -> Big {
        let mut carry = 0u64;
        for l in self.0.iter_mut() {
            let v = *l as u64 * m as u64 + carry;
            *l = v as u32;
            carry = v >> 32;
        }
        if carry > 0 {
            self.0.push(carry as u32);
        }
        self.trim();
        self
    }

    fn add_small(mut self, a: u32) -> Big {
        let mut carry = a as u64;
        for l in self.0.iter_mut() {
            if carry == 0 {
                break;
            }
            let v = *l as u64 + carry;
            *l = v as u32;
            carry = v >> 32;
        }
        if carry > 0 {
            self.0.push(carry as u32);
        }
        self
    }

    fn mul_pow10(mut self, mut k: usize) -> Big {
        while k >= 9 {
            self = self.mul_small(1_000_000_000);
            k -= 9;
        }
        self.mul_small(10u32.pow(k as u32))
    }

    fn shl(&self, bits: usize) -> Big {
        if self.is_zero() {
            return Big::zero();
        }
        let (limbs, b) = (bits / 32, bits % 32);
        let mut out = vec![0u32; limbs];
        if b == 0 {
            out.extend_from_slice(&self.0);
        } else {
            let mut carry = 0u32;
            for &l in &self.0 {
                out.push(l << b | carry);
                carry = l >> (32 - b);
            }
            out.push(carry);
        }
        let mut r = Big(out);
        r.trim();
        r
    }

    fn shr(&self, bits: usize) -> Big {
        let (limbs, b) = (bits / 32, bits % 32);
        if limbs >= self.0.len() {
            return Big::zero();
        }
        let src = &self.0[limbs..];
        let mut out = Vec::with_capacity(src.len());
        for i in 0..src.len() {
            let lo = src[i] >> b;
            let hi = if b == 0 {
                0
            } else {
                src.get(i + 1).map_or(0, |&h| h << (32 - b))
            };
            out.push(lo | hi);
        }
        let mut r = Big(out);
        r.trim();
        r
    }

    fn cmp(&self, o: &Big) -> Ordering {
        self.0
            .len()
            .cmp(&o.0.len())
            .then_with(|| self.0.iter().rev().cmp(o.0.iter().rev()))
    }

    fn add(&self, o: &Big) -> Big {
        let mut out = Vec::with_capacity(self.0.len().max(o.0.len()) + 1);
        let mut carry = 0u64;
        for i in 0..self.0.len().max(o.0.len()) {
            let v = *self.0.get(i).unwrap_or(&0) as u64 + *o.0.get(i).unwrap_or(&0) as u64 + carry;
            out.push(v as u32);
            carry = v >> 32;
        }
        if carry > 0 {
            out.push(carry as u32);
        }
        Big(out)
    }

    /// `self - o`, for `self >= o`.
    fn sub(&self, o: &Big) -> Big {
        let mut out = Vec::with_capacity(self.0.len());
        let mut borrow = 0i64;
        for i in 0..self.0.len() {
            let mut v = self.0[i] as i64 - *o.0.get(i).unwrap_or(&0) as i64 - borrow;
            borrow = 0;
            if v < 0 {
                v += 1 << 32;
                borrow = 1;
            }
            out.push(v as u32);
        }
        let mut r = Big(out);
        r.trim();
        r
    }

    /// `(self / d, self % d != 0)` for a quotient of at most a few hundred bits, by
    /// shift and subtract (the quotients here have 66 or 67 bits).
    fn div(&self, d: &Big) -> (Big, bool) {
        let mut rem = self.clone();
        let mut q = Big::zero();
        if rem.cmp(d) == Ordering::Less {
            return (q, !rem.is_zero());
        }
        let top = rem.bits() - d.bits();
        for i in (0..=top).rev() {
            let shifted = d.shl(i);
            if rem.cmp(&shifted) != Ordering::Less {
                rem = rem.sub(&shifted);
                q = q.add(&Big::from_u64(1).shl(i));
            }
        }
        (q, !rem.is_zero())
    }

    fn to_decimal(&self) -> String {
        if self.is_zero() {
            return "0".into();
        }
        let mut limbs = self.0.clone();
        let mut chunks: Vec<u32> = Vec::new();
        while !limbs.is_empty() {
            let mut rem = 0u64;
            for l in limbs.iter_mut().rev() {
                let v = rem << 32 | *l as u64;
                *l = (v / 1_000_000_000) as u32;
                rem = v % 1_000_000_000;
            }
            chunks.push(rem as u32);
            while limbs.last() == Some(&0) {
                limbs.pop();
            }
        }
        let mut s = chunks.pop().expect("nonzero").to_string();
        for c in chunks.iter().rev() {
            s.push_str(&format!("{c:09}"));
        }
        s
    }
}

#[cfg(test)]
mod tests;
