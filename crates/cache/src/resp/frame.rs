//! Finding where one reply ends in bytes another node's Redis port sent ([`reply_len`]):
//! what forwarding (`forward`) needs to copy each forwarded command's reply back, in
//! order, without decoding it. RESP2 and RESP3: simple strings and errors, integers,
//! bulk strings and bulk errors, verbatim strings, nulls, booleans, doubles, big
//! numbers, arrays, sets, pushes, maps and attributes (which precede the reply they
//! annotate and belong to it). Streamed strings and aggregates (`$?`, `*?`) are never
//! sent by strata and are refused.
//!
//! A peer is another strata node, but its bytes are still checked: a reply that is
//! malformed, nested deeper than [`MAX_DEPTH`] or announcing more than
//! [`MAX_LEN`] bytes or elements is an error, and the connection it came on is dropped.

/// Deepest nesting of aggregates accepted.
pub(crate) const MAX_DEPTH: usize = 128;

/// Largest bulk string, and most elements of an aggregate, accepted (4 GiB, 2^32).
pub(crate) const MAX_LEN: i64 = 1 << 32;

/// Why bytes are not a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("unknown reply type byte {0:#04x}")]
    UnknownType(u8),
    #[error("a length or integer that is not a number")]
    BadNumber,
    #[error("a length out of range")]
    BadLength,
    #[error("a bulk string not ended by CRLF")]
    BadTerminator,
    #[error("a line holding a bare CR or LF")]
    BadLine,
    #[error("replies nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("a streamed string or aggregate, which strata never sends")]
    Streamed,
}

/// The length of the reply at the start of `buf`: `Ok(Some(n))` when the first `n`
/// bytes are one whole reply, `Ok(None)` when more bytes are needed, an error when
/// `buf` cannot start a reply.
pub(crate) fn reply_len(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    // Elements still to read at each open aggregate level, innermost last.
    let mut open: Vec<i64> = Vec::new();
    let mut at = 0;
    loop {
        let Some(&kind) = buf.get(at) else {
            return Ok(None);
        };
        if !b"+-:$*_#,(!=%~>|".contains(&kind) {
            return Err(FrameError::UnknownType(kind));
        }
        let Some(end) = line_end(buf, at + 1)? else {
            return Ok(None);
        };
        let line = &buf[at + 1..end];
        at = end + 2;
        // How many more elements this one opens (0: it is whole).
        let elements = match kind {
            b'+' | b'-' | b',' | b'(' => 0,
            b':' => {
                number(line)?;
                0
            }
            b'#' => {
                if line != b"t" && line != b"f" {
                    return Err(FrameError::BadNumber);
                }
                0
            }
            b'_' => {
                if !line.is_empty() {
                    return Err(FrameError::BadLength);
                }
                0
            }
            b'$' | b'!' | b'=' => {
                if line == b"?" {
                    return Err(FrameError::Streamed);
                }
                let n = number(line)?;
                if kind == b'$' && n == -1 {
                    0
                } else {
                    if !(0..=MAX_LEN).contains(&n) {
                        return Err(FrameError::BadLength);
                    }
                    let n = n as usize;
                    if buf.len() < at + n + 2 {
                        return Ok(None);
                    }
                    if &buf[at + n..at + n + 2] != b"\r\n" {
                        return Err(FrameError::BadTerminator);
                    }
                    at += n + 2;
                    0
                }
            }
            b'*' | b'~' | b'>' | b'%' | b'|' => {
                if line == b"?" {
                    return Err(FrameError::Streamed);
                }
                let n = number(line)?;
                if kind == b'*' && n == -1 {
                    0
                } else {
                    if !(0..=MAX_LEN).contains(&n) {
                        return Err(FrameError::BadLength);
                    }
                    let n = if kind == b'%' || kind == b'|' { n * 2 } else { n };
                    // An attribute annotates the reply after it: that one is read too.
                    if kind == b'|' {
                        n + 1
                    } else {
                        n
                    }
                }
            }
            other => return Err(FrameError::UnknownType(other)),
        };
        if elements > 0 {
            if open.len() >= MAX_DEPTH {
                return Err(FrameError::TooDeep);
            }
            open.push(elements);
            continue;
        }
        // One whole element: close every aggregate it completes.
        loop {
            match open.last_mut() {
                None => return Ok(Some(at)),
                Some(left) => {
                    *left -= 1;
                    if *left > 0 {
                        break;
                    }
                    open.pop();
                }
            }
        }
    }
}

/// Where the line starting at `from` ends (the index of its CR), if it is complete.
fn line_end(buf: &[u8], from: usize) -> Result<Option<usize>, FrameError> {
    let rest = buf.get(from..).unwrap_or_default();
    match rest.iter().position(|&b| b == b'\r' || b == b'\n') {
        None => Ok(None),
        Some(i) if rest[i] == b'\n' => Err(FrameError::BadLine),
        Some(i) => match rest.get(i + 1) {
            None => Ok(None),
            Some(b'\n') => Ok(Some(from + i)),
            Some(_) => Err(FrameError::BadLine),
        },
    }
}

fn number(line: &[u8]) -> Result<i64, FrameError> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or(FrameError::BadNumber)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(reply: &[u8]) {
        assert_eq!(
            reply_len(reply),
            Ok(Some(reply.len())),
            "{:?}",
            String::from_utf8_lossy(reply)
        );
        // Every proper prefix needs more.
        for cut in 0..reply.len() {
            assert_eq!(
                reply_len(&reply[..cut]),
                Ok(None),
                "prefix {cut} of {:?}",
                String::from_utf8_lossy(reply)
            );
        }
        // Followed by more bytes, the first reply still ends where it did.
        let mut two = reply.to_vec();
        two.extend_from_slice(b"+OK\r\n");
        assert_eq!(reply_len(&two), Ok(Some(reply.len())));
    }

    #[test]
    fn every_reply_type_is_framed_whole_and_every_prefix_needs_more() {
        for reply in [
            &b"+OK\r\n"[..],
            b"-ERR no such key\r\n",
            b":-42\r\n",
            b"$5\r\nhello\r\n",
            b"$0\r\n\r\n",
            b"$-1\r\n",
            b"$4\r\na\r\nb\r\n",
            b"*-1\r\n",
            b"*0\r\n",
            b"*3\r\n$1\r\na\r\n:1\r\n*2\r\n+x\r\n$-1\r\n",
            b"_\r\n",
            b"#t\r\n",
            b",3.14\r\n",
            b"(12345678901234567890\r\n",
            b"!9\r\nERR oops!\r\n",
            b"=8\r\ntxt:abcd\r\n",
            b"%2\r\n+a\r\n:1\r\n+b\r\n*1\r\n:2\r\n",
            b"~2\r\n:1\r\n:2\r\n",
            b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nm\r\n",
            b"|1\r\n+key\r\n+value\r\n*2\r\n:1\r\n:2\r\n",
            b"*1\r\n*1\r\n*1\r\n*0\r\n",
        ] {
            whole(reply);
        }
    }

    #[test]
    fn a_pipeline_of_replies_is_cut_one_at_a_time() {
        let pipeline = b"+OK\r\n$3\r\nabc\r\n*2\r\n:1\r\n$-1\r\n-ERR x\r\n";
        let mut at = 0;
        let mut lens = Vec::new();
        while at < pipeline.len() {
            let n = reply_len(&pipeline[at..]).unwrap().unwrap();
            lens.push(n);
            at += n;
        }
        assert_eq!(lens, [5, 9, 13, 8]);
    }

    #[test]
    fn malformed_replies_are_errors() {
        for (reply, want) in [
            (&b"?x\r\n"[..], FrameError::UnknownType(b'?')),
            (b"\r\n", FrameError::UnknownType(b'\r')),
            (b":12a\r\n", FrameError::BadNumber),
            (b"$abc\r\nx\r\n", FrameError::BadNumber),
            (b"$-2\r\n", FrameError::BadLength),
            (b"*-5\r\n", FrameError::BadLength),
            (b"%-1\r\n", FrameError::BadLength),
            (b"$99999999999\r\n", FrameError::BadLength),
            (b"$3\r\nabcde\r\n", FrameError::BadTerminator),
            (b"+OK\n", FrameError::BadLine),
            (b"+O\rK\r\n", FrameError::BadLine),
            (b"#x\r\n", FrameError::BadNumber),
            (b"_x\r\n", FrameError::BadLength),
            (b"$?\r\n", FrameError::Streamed),
            (b"*?\r\n", FrameError::Streamed),
            (b"*2\r\n:1\r\n!x\r\n", FrameError::BadNumber),
        ] {
            assert_eq!(reply_len(reply), Err(want), "{:?}", String::from_utf8_lossy(reply));
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = b"*1\r\n".repeat(MAX_DEPTH + 1);
        assert_eq!(reply_len(&deep), Err(FrameError::TooDeep));
        let mut ok = b"*1\r\n".repeat(MAX_DEPTH);
        ok.extend_from_slice(b":1\r\n");
        assert_eq!(reply_len(&ok), Ok(Some(ok.len())));
    }

    #[test]
    fn a_huge_announced_aggregate_needs_more_and_allocates_nothing() {
        // Two billion elements announced: no allocation by that count, just "more".
        assert_eq!(reply_len(b"*2000000000\r\n:1\r\n"), Ok(None));
    }
}
