//! Store namespaces and keys as JetStream KV keys.
//!
//! A KV key allows only `[-/_=.a-zA-Z0-9]`, and its `.`-separated tokens must not be
//! empty; a store namespace (`APP/NS`) and a key are any strings. Both are encoded byte
//! by byte: `[-_/a-zA-Z0-9]` stays as it is, every other byte (the dot and `=`
//! included) becomes `=XX`, its hex in upper case. The KV key of `key` in `ns` is
//! `enc(ns).enc(key)`: neither part holds a dot, so a namespace is one subject token and
//! the filter `enc(ns).*` is exactly the namespace. The encoding of a concatenation is
//! the concatenation of the encodings, so a key prefix stays a prefix of the encoding
//! (byte order is not kept: listings sort after decoding).

use std::fmt::Write as _;

/// The KV key of `key` in namespace `ns`.
pub(crate) fn kv_key(ns: &str, key: &str) -> String {
    let mut out = encode(ns);
    out.push('.');
    out.push_str(&encode(key));
    out
}

/// The namespace and key a KV key stands for; None for a key this module did not make.
pub(crate) fn split(kv_key: &str) -> Option<(String, String)> {
    let (ns, key) = kv_key.split_once('.')?;
    Some((decode(ns)?, decode(key)?))
}

/// `s`, byte by byte, in the characters a KV key token allows.
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if kept(b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "={b:02X}");
        }
    }
    out
}

/// The string [`encode`] made `token` from; None if it did not.
pub(crate) fn decode(token: &str) -> Option<String> {
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'=' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let byte = (upper_hex(hex[0])? << 4) | upper_hex(hex[1])?;
                if kept(byte) {
                    return None;
                }
                out.push(byte);
                i += 3;
            }
            b if kept(b) => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

fn kept(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'/'
}

fn upper_hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What async-nats accepts as a KV key.
    fn valid_kv_key(k: &str) -> bool {
        !k.is_empty()
            && !k.starts_with('.')
            && !k.ends_with('.')
            && !k.contains("..")
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"-/_=.".contains(&b))
    }

    #[test]
    fn namespaces_and_keys_round_trip_through_valid_kv_keys() {
        let cases = [
            ("app/ns", "k"),
            ("a", "x"),
            ("app/ns", "."),
            ("app/ns", ".."),
            ("app.ns", "a.b.c"),
            ("app/ns", "="),
            ("app/ns", "=41"),
            ("app/ns", "*"),
            ("app/ns", ">"),
            ("app/ns", "a b\tc\n"),
            ("app/ns", "user/001"),
            ("äpp", "ключ/値/🦀"),
            ("app/ns", "\u{7f}\u{1}"),
            ("-_/", "-_/AZaz09"),
            ("app/ns", "%2E"),
        ];
        for (ns, key) in cases {
            let k = kv_key(ns, key);
            assert!(valid_kv_key(&k), "{ns:?} {key:?} -> {k:?}");
            assert_eq!(k.matches('.').count(), 1, "{k}");
            assert_eq!(split(&k), Some((ns.to_string(), key.to_string())), "{k}");
        }
        assert_eq!(kv_key("app/ns", "a.b"), "app/ns.a=2Eb");
        assert_eq!(encode("="), "=3D");
        assert_eq!(encode("é"), "=C3=A9");
    }

    #[test]
    fn a_key_prefix_stays_a_prefix_of_the_encoding() {
        for (prefix, rest) in [("user.", "001"), ("é", "x"), ("a=", "b"), ("", "z"), ("p/", "=.")] {
            let whole = format!("{prefix}{rest}");
            assert!(encode(&whole).starts_with(&encode(prefix)));
        }
    }

    #[test]
    fn foreign_tokens_do_not_decode() {
        for bad in ["a=", "a=4", "=4g", "=41", "=2e", "a b", "a.b", "=FF", "*"] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
        assert_eq!(split("nodot"), None);
        assert_eq!(decode("a=2Eb"), Some("a.b".into()));
    }
}
