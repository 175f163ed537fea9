//! Writing replies into a connection's output buffer, in RESP2 or RESP3 (chosen per
//! connection by `HELLO`). Only the types whose encoding differs between the two know
//! the protocol version: nulls, maps and verbatim strings.

/// Errors several commands answer, word for word as Redis.
pub(crate) const NOT_INT: &str = "ERR value is not an integer or out of range";
pub(crate) const SYNTAX: &str = "ERR syntax error";
pub(crate) const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

impl From<crate::keyspace::WrongType> for String {
    fn from(_: crate::keyspace::WrongType) -> String {
        WRONGTYPE.to_string()
    }
}

/// A connection's output buffer and protocol version.
pub struct Reply<'a> {
    pub out: &'a mut Vec<u8>,
    pub resp3: bool,
}

impl Reply<'_> {
    pub fn simple(&mut self, s: &str) {
        self.out.push(b'+');
        self.out.extend_from_slice(s.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    pub fn ok(&mut self) {
        self.out.extend_from_slice(b"+OK\r\n");
    }

    /// An error reply; `msg` starts with its code (`ERR ...`, `WRONGPASS ...`).
    pub fn error(&mut self, msg: &str) {
        self.out.push(b'-');
        // A newline would end the reply early; Redis replaces them with spaces.
        self.out
            .extend(msg.bytes().map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }));
        self.out.extend_from_slice(b"\r\n");
    }

    pub fn int(&mut self, n: i64) {
        self.out.push(b':');
        push_int(self.out, n);
        self.out.extend_from_slice(b"\r\n");
    }

    pub fn bulk(&mut self, b: &[u8]) {
        self.out.reserve(b.len() + 16);
        self.out.push(b'$');
        push_int(self.out, b.len() as i64);
        self.out.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(b);
        self.out.extend_from_slice(b"\r\n");
    }

    pub fn bulk_or_null(&mut self, b: Option<&[u8]>) {
        match b {
            Some(b) => self.bulk(b),
            None => self.null(),
        }
    }

    /// The null bulk string (RESP2 `$-1`, RESP3 `_`).
    pub fn null(&mut self) {
        self.out
            .extend_from_slice(if self.resp3 { b"_\r\n" } else { b"$-1\r\n" });
    }

    /// The null array (RESP2 `*-1`, RESP3 `_`): EXEC when a watched key changed.
    pub fn null_array(&mut self) {
        self.out
            .extend_from_slice(if self.resp3 { b"_\r\n" } else { b"*-1\r\n" });
    }

    pub fn array(&mut self, len: usize) {
        self.out.push(b'*');
        push_int(self.out, len as i64);
        self.out.extend_from_slice(b"\r\n");
    }

    /// A push frame of `len` elements (pub/sub messages; RESP2: an array).
    pub fn push(&mut self, len: usize) {
        self.out.push(if self.resp3 { b'>' } else { b'*' });
        push_int(self.out, len as i64);
        self.out.extend_from_slice(b"\r\n");
    }

    /// A map of `len` pairs (RESP2: a flat array of `2 * len`).
    pub fn map(&mut self, len: usize) {
        if self.resp3 {
            self.out.push(b'%');
            push_int(self.out, len as i64);
            self.out.extend_from_slice(b"\r\n");
        } else {
            self.array(len * 2);
        }
    }

    /// A set (RESP2: an array).
    pub fn set(&mut self, len: usize) {
        if self.resp3 {
            self.out.push(b'~');
            push_int(self.out, len as i64);
            self.out.extend_from_slice(b"\r\n");
        } else {
            self.array(len);
        }
    }

    /// A double (a sorted set's score): RESP3 `,`, RESP2 a bulk string; as Redis'
    /// `addReplyDouble` prints it (`%.17g`, `inf`, `-inf`).
    pub fn double(&mut self, v: f64) {
        let text = crate::score::format_score(v);
        if self.resp3 {
            self.out.push(b',');
            self.out.extend_from_slice(text.as_bytes());
            self.out.extend_from_slice(b"\r\n");
        } else {
            self.bulk(text.as_bytes());
        }
    }

    /// Text for people (INFO, CLIENT INFO): RESP3 verbatim `txt`, RESP2 bulk.
    pub fn verbatim(&mut self, text: &str) {
        if self.resp3 {
            self.out.push(b'=');
            push_int(self.out, text.len() as i64 + 4);
            self.out.extend_from_slice(b"\r\ntxt:");
            self.out.extend_from_slice(text.as_bytes());
            self.out.extend_from_slice(b"\r\n");
        } else {
            self.bulk(text.as_bytes());
        }
    }
}

/// Appends the decimal digits of `n`.
pub fn push_int(out: &mut Vec<u8>, n: i64) {
    if (0..10).contains(&n) {
        out.push(b'0' + n as u8);
        return;
    }
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let neg = n < 0;
    let mut m = n.unsigned_abs();
    while m > 0 {
        i -= 1;
        buf[i] = b'0' + (m % 10) as u8;
        m /= 10;
    }
    if neg {
        out.push(b'-');
    }
    out.extend_from_slice(&buf[i..]);
}

/// An argument as text in an error reply, as Redis' C formatting shows it: up to its
/// first NUL byte, at most `max` bytes of that, lossy UTF-8.
pub(crate) fn truncated(b: &[u8], max: usize) -> String {
    let b = &b[..b.iter().position(|&c| c == 0).unwrap_or(b.len())];
    String::from_utf8_lossy(&b[..b.len().min(max)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        let mut out = Vec::new();
        let mut r = Reply {
            out: &mut out,
            resp3: false,
        };
        r.int(-1234);
        r.int(0);
        r.int(i64::MIN);
        r.bulk(b"hi");
        r.null();
        r.map(1);
        r.error("ERR bad\r\nthing");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            ":-1234\r\n:0\r\n:-9223372036854775808\r\n$2\r\nhi\r\n$-1\r\n*2\r\n-ERR bad  thing\r\n"
        );
        let mut out = Vec::new();
        let mut r = Reply {
            out: &mut out,
            resp3: true,
        };
        r.null();
        r.map(2);
        r.verbatim("x");
        assert_eq!(String::from_utf8(out).unwrap(), "_\r\n%2\r\n=5\r\ntxt:x\r\n");
    }
}
