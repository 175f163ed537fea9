//! Redis' glob patterns (its `stringmatchlen`), for KEYS, SCAN's MATCH and CONFIG GET:
//! `*` any run of bytes, `?` one byte, `[abc]`, `[^abc]`, `[a-z]` one byte of (or not
//! of) a set, `\x` the byte `x` itself.
//!
//! Redis' quirks are kept, since clients' patterns must select the same keys: a `[` with
//! no `]` takes the rest of the pattern as its set; a range compares bytes as C's signed
//! `char` (bytes from 0x80 up sort below 0); `[a-]` is the range from `a` to `]`; the
//! empty string matches only the empty pattern (callers treat the pattern `*` alone as
//! "everything" before matching, as Redis does); and a pattern whose 1001st `*` is
//! reached with text left to match matches nothing (Redis' guard against abusive
//! patterns).
//!
//! Redis matches recursively and stops retrying earlier `*`s once a later one has failed
//! everywhere; this is the same search without recursion, so that no pattern, however
//! long, can exhaust the stack: only the last `*` is ever retried, one byte further on.

/// How many `*`s a match may go through (Redis' nesting limit).
const MAX_STARS: usize = 1000;

/// Whether `text` matches `pattern` (ASCII letters compared without case if `nocase`).
pub(crate) fn matches(pattern: &[u8], text: &[u8], nocase: bool) -> bool {
    if text.is_empty() {
        return pattern.is_empty();
    }
    let eq = |a: u8, b: u8| a == b || (nocase && a.eq_ignore_ascii_case(&b));
    let (mut p, mut i) = (0usize, 0usize);
    // The last `*`: where the rest of the pattern starts, and where in the text the rest
    // was last tried.
    let mut star: Option<(usize, usize)> = None;
    let mut stars = 0;
    loop {
        // Invariant: text is left (i < text.len()).
        let matched = if p == pattern.len() {
            false
        } else {
            match pattern[p] {
                b'*' => {
                    while p + 1 < pattern.len() && pattern[p + 1] == b'*' {
                        p += 1;
                    }
                    if p + 1 == pattern.len() {
                        return true;
                    }
                    stars += 1;
                    if stars > MAX_STARS {
                        return false;
                    }
                    p += 1;
                    star = Some((p, i));
                    continue;
                }
                b'?' => {
                    p += 1;
                    true
                }
                b'[' => {
                    let (m, end) = class(pattern, p + 1, text[i], nocase);
                    p = end + 1;
                    m
                }
                b'\\' if p + 1 < pattern.len() => {
                    p += 2;
                    eq(pattern[p - 1], text[i])
                }
                c => {
                    p += 1;
                    eq(c, text[i])
                }
            }
        };
        if matched {
            i += 1;
            if i < text.len() {
                continue;
            }
            while p < pattern.len() && pattern[p] == b'*' {
                p += 1;
            }
            if p == pattern.len() {
                return true;
            }
        }
        // No match from here: try the rest after the last `*` one byte further on.
        match star {
            Some((rest, tried)) if tried + 1 < text.len() => {
                star = Some((rest, tried + 1));
                p = rest;
                i = tried + 1;
            }
            _ => return false,
        }
    }
}

/// A `[...]` set starting at `p` (just after the `[`), tried on byte `c`: whether it
/// matches, and where the set ends (its `]`, or the pattern's last byte when there is
/// none).
fn class(pattern: &[u8], mut p: usize, c: u8, nocase: bool) -> (bool, usize) {
    let len = pattern.len();
    let not = p < len && pattern[p] == b'^';
    if not {
        p += 1;
    }
    let lower = |b: u8| -> i32 {
        let b = if nocase { b.to_ascii_lowercase() } else { b };
        b as i8 as i32
    };
    let mut matched = false;
    loop {
        if p >= len {
            p = len - 1;
            break;
        }
        let ch = pattern[p];
        if ch == b'\\' && len - p >= 2 {
            p += 1;
            if pattern[p] == c {
                matched = true;
            }
        } else if ch == b']' {
            break;
        } else if len - p >= 3 && pattern[p + 1] == b'-' {
            let (mut start, mut end) = (lower(pattern[p]), lower(pattern[p + 2]));
            if start > end {
                std::mem::swap(&mut start, &mut end);
            }
            let v = lower(c);
            if v >= start && v <= end {
                matched = true;
            }
            p += 2;
        } else if ch == c || (nocase && ch.eq_ignore_ascii_case(&c)) {
            matched = true;
        }
        p += 1;
    }
    (matched != not, p)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Redis' `stringmatchlen_impl`, transcribed as it is (recursive), to check
    /// [`matches`] against on many patterns.
    fn redis(pattern: &[u8], text: &[u8], nocase: bool) -> bool {
        fn imp(pat: &[u8], s: &[u8], nocase: bool, skip: &mut bool, nesting: usize) -> bool {
            if nesting > 1000 {
                return false;
            }
            // The C code reads one byte past the pattern (its NUL terminator) in places.
            let at = |p: &[u8], i: usize| p.get(i).copied().unwrap_or(0);
            let (mut p, mut pl, mut si, mut sl) = (0usize, pat.len(), 0usize, s.len());
            let low = |b: u8| if nocase { b.to_ascii_lowercase() } else { b };
            while pl > 0 && sl > 0 {
                match pat[p] {
                    b'*' => {
                        while pl > 0 && at(pat, p + 1) == b'*' {
                            p += 1;
                            pl -= 1;
                        }
                        if pl == 1 {
                            return true;
                        }
                        while sl > 0 {
                            if imp(&pat[p + 1..p + pl], &s[si..si + sl], nocase, skip, nesting + 1) {
                                return true;
                            }
                            if *skip {
                                return false;
                            }
                            si += 1;
                            sl -= 1;
                        }
                        *skip = true;
                        return false;
                    }
                    b'?' => {
                        si += 1;
                        sl -= 1;
                    }
                    b'[' => {
                        p += 1;
                        pl -= 1;
                        let not = at(pat, p) == b'^';
                        if not {
                            p += 1;
                            pl -= 1;
                        }
                        let mut m = false;
                        loop {
                            if at(pat, p) == b'\\' && pl >= 2 {
                                p += 1;
                                pl -= 1;
                                if pat[p] == s[si] {
                                    m = true;
                                }
                            } else if at(pat, p) == b']' {
                                break;
                            } else if pl == 0 {
                                p -= 1;
                                pl += 1;
                                break;
                            } else if pl >= 3 && pat[p + 1] == b'-' {
                                let (mut a, mut b) = (low(pat[p]) as i8 as i32, low(pat[p + 2]) as i8 as i32);
                                if a > b {
                                    std::mem::swap(&mut a, &mut b);
                                }
                                let c = low(s[si]) as i8 as i32;
                                p += 2;
                                pl -= 2;
                                if c >= a && c <= b {
                                    m = true;
                                }
                            } else if low(pat[p]) == low(s[si]) {
                                m = true;
                            }
                            p += 1;
                            pl -= 1;
                        }
                        if not {
                            m = !m;
                        }
                        if !m {
                            return false;
                        }
                        si += 1;
                        sl -= 1;
                    }
                    c => {
                        let c = if c == b'\\' && pl >= 2 {
                            p += 1;
                            pl -= 1;
                            pat[p]
                        } else {
                            c
                        };
                        if low(c) != low(s[si]) {
                            return false;
                        }
                        si += 1;
                        sl -= 1;
                    }
                }
                p += 1;
                pl -= 1;
                if sl == 0 {
                    while at(pat, p) == b'*' && pl > 0 {
                        p += 1;
                        pl -= 1;
                    }
                    break;
                }
            }
            pl == 0 && sl == 0
        }
        imp(pattern, text, nocase, &mut false, 0)
    }

    #[test]
    fn redis_examples() {
        let keys: &[&[u8]] = &[b"a", b"b", b"", b"ab", b"a*"];
        let select = |pat: &[u8]| -> Vec<&[u8]> { keys.iter().copied().filter(|k| matches(pat, k, false)).collect() };
        // As redis-server 7.0.15 answered KEYS (the bare `*` is the caller's shortcut).
        assert_eq!(select(b"**"), vec![&b"a"[..], b"b", b"ab", b"a*"]);
        assert_eq!(select(b"a?"), vec![&b"ab"[..], b"a*"]);
        assert_eq!(select(b"[a-b]"), vec![&b"a"[..], b"b"]);
        assert_eq!(select(b"[^a]"), vec![&b"b"[..]]);
        assert_eq!(select(b"[a-"), vec![&b"a"[..]]);
        assert_eq!(select(b"a["), Vec::<&[u8]>::new());
        assert_eq!(select(b"a\\*"), vec![&b"a*"[..]]);
        // `[a-]...` is the range a to ], and the set goes on to the pattern's end.
        assert!(matches(b"h[a-]llo", b"h]", false) && matches(b"h[a-]llo", b"ho", false));
        assert!(!matches(b"h[a-]llo", b"h]llo", false));
        assert!(matches(b"[z-a]", b"m", false), "reversed ranges are swapped");
        assert!(matches(b"[\\]]", b"]", false));
        assert!(matches(b"HELLO", b"hello", true) && !matches(b"HELLO", b"hello", false));
        // Signed bytes: 0xff is -1, 0x80 is -128, so [\x01-\xff] is -1..=1.
        assert!(matches(b"[\x01-\xff]", b"\x00", false) && matches(b"[\x01-\xff]", b"\xff", false));
        assert!(!matches(b"[\x01-\xff]", b"\x80", false));
        assert!(!matches(b"[a-\xff]", b"b", false), "the range -1..=97");
    }

    #[test]
    fn stars_past_a_thousand_match_nothing() {
        let text = vec![b'a'; 3000];
        for (n, want) in [(999, true), (1000, true), (1001, false), (2000, false)] {
            assert_eq!(matches(&b"*a".repeat(n), &text, false), want, "*a x {n}");
        }
        for (n, want) in [(1000, true), (1001, true), (1002, false)] {
            assert_eq!(matches(&b"a*".repeat(n), &text, false), want, "a* x {n}");
        }
        // Long patterns cost no stack and no exponential time.
        let mut p = b"*a".repeat(900);
        p.push(b'b');
        assert!(!matches(&p, &text, false));
        assert!(!matches(&vec![b'['; 1 << 20], b"x", false));
    }

    #[test]
    fn same_answers_as_redis_on_random_patterns() {
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let pattern_bytes = b"ab*?[]^-\\Az\x80";
        let text_bytes = b"ab]-^\\*?Az\x80";
        for _ in 0..200_000 {
            let pattern: Vec<u8> = (0..next(9)).map(|_| pattern_bytes[next(pattern_bytes.len())]).collect();
            let text: Vec<u8> = (0..next(7)).map(|_| text_bytes[next(text_bytes.len())]).collect();
            let nocase = next(4) == 0;
            assert_eq!(
                matches(&pattern, &text, nocase),
                redis(&pattern, &text, nocase),
                "pattern {:?} text {:?} nocase {nocase}",
                String::from_utf8_lossy(&pattern),
                String::from_utf8_lossy(&text)
            );
        }
    }
}
