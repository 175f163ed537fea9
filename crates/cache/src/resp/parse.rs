//! The RESP request parser: multibulk (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`, what clients
//! send) and inline commands (`PING\r\n`, what a person types into telnet), incremental
//! and zero-copy.
//!
//! [`Parser::parse`] is given the unparsed bytes of a connection, starting at a
//! command's first byte. It answers `Ok(Some(consumed))` with the arguments available
//! through [`Parser::args`], `Ok(None)` when the command is not complete yet (it keeps
//! what it has parsed, as offsets relative to the command's start, and resumes there on
//! the next call), or a [`ProtocolError`], after which the connection must be closed
//! because the stream can no longer be framed.
//!
//! The limits are Redis': a header line (`*N` / `$N`) of at most 64 KiB, an inline
//! command refused only when more than 64 KiB of it came without its newline, and a bulk of at most `max_bulk` bytes. The argument count is bounded so that
//! a command's argument list takes no more than a query buffer ([`Limits::max_args`],
//! 4,194,304; Redis 7.0's, 2^31 - 1, is no bound in practice), and a long command's list
//! is let go once it is done.
//!
//! A count is a claim, not bytes: the parser reserves room for a multibulk's
//! arguments only as their bytes arrive ([`ranges_to_reserve`]), so a bare
//! `*10000000\r\n` costs nothing until ten million arguments' worth of bytes is sent.

use std::ops::Range;

/// Parser limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest bulk string (one argument), in bytes: 32 MiB by default, half of a
    /// connection's query buffer limit (`RespConfig::max_query_bytes`), as Redis'
    /// `proto-max-bulk-len` is half of its `client-query-buffer-limit`.
    pub max_bulk: usize,
    /// Most arguments in one command: by default 4,194,304 (`RANGE_BYTES` of bookkeeping
    /// each, so that a command's argument list takes no more than the default query
    /// buffer limit, 64 MiB, `RespConfig::max_query_bytes`: the list is not counted in
    /// that limit). A larger count is refused at its header. (This parser once refused
    /// more than 1,048,576, as old Redis versions did; Redis 7.0 takes up to 2^31 - 1,
    /// and clients send more than a million, `SADD` with 1,100,000 members for one.)
    pub max_args: usize,
    /// Longest inline command or header line, in bytes.
    pub max_inline: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk: 32 << 20,
            max_args: (64 << 20) / RANGE_BYTES,
            max_inline: 64 << 10,
        }
    }
}

/// Input that cannot be framed. `Display` is the text of Redis' reply (after `-ERR `).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("Protocol error: invalid multibulk length")]
    MultibulkLength,
    #[error("Protocol error: invalid bulk length")]
    BulkLength,
    #[error("Protocol error: expected '$', got '{}'", char::from(*.0))]
    ExpectedDollar(u8),
    #[error("Protocol error: expected CRLF after the bulk data")]
    MissingCrlf,
    #[error("Protocol error: too big mbulk count string")]
    MultibulkLineTooLong,
    #[error("Protocol error: too big bulk count string")]
    BulkLineTooLong,
    #[error("Protocol error: too big inline request")]
    InlineTooLong,
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    /// More than [`UNAUTHENTICATED_MAX_ARGS`] arguments before AUTH.
    #[error("Protocol error: unauthenticated multibulk length")]
    UnauthenticatedMultibulkLength,
    /// A bulk longer than [`UNAUTHENTICATED_MAX_BULK`] before AUTH.
    #[error("Protocol error: unauthenticated bulk length")]
    UnauthenticatedBulkLength,
}

/// The fewest bytes one argument of a multibulk takes (`$0\r\n\r\n`).
pub const MIN_ARG_BYTES: usize = 6;

/// What the parser keeps per argument (its range in the buffer).
const RANGE_BYTES: usize = std::mem::size_of::<Range<usize>>();

/// Argument ranges and inline bytes kept between commands: a larger list, left by one
/// long command, is let go once that command is done (as Redis frees a command's argv).
const KEEP_RANGES: usize = 1024;
const KEEP_INLINE: usize = 64 << 10;

/// Most arguments a command of a client that has yet to AUTH may have (Redis 7.0's
/// bound, so that nobody can make the server hold much without the password).
pub const UNAUTHENTICATED_MAX_ARGS: i64 = 10;
/// Longest argument a client that has yet to AUTH may send (Redis 7.0's bound).
pub const UNAUTHENTICATED_MAX_BULK: i64 = 16384;

/// The arguments of the last parsed command.
#[derive(Clone, Copy)]
pub struct Args<'a> {
    data: &'a [u8],
    ranges: &'a [Range<usize>],
}

impl<'a> Args<'a> {
    /// Arguments held elsewhere: `ranges` index into `data`.
    pub(crate) fn new(data: &'a [u8], ranges: &'a [Range<usize>]) -> Args<'a> {
        Args { data, ranges }
    }

    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Argument `i` (0 is the command name). Panics if out of range.
    pub fn get(&self, i: usize) -> &'a [u8] {
        &self.data[self.ranges[i].clone()]
    }

    /// The arguments after the first `n` (COMMAND GETKEYS' command).
    pub(crate) fn skip(&self, n: usize) -> Args<'a> {
        Args {
            data: self.data,
            ranges: &self.ranges[n.min(self.ranges.len())..],
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.ranges.iter().map(|r| &self.data[r.clone()])
    }
}

impl std::fmt::Debug for Args<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.iter().map(String::from_utf8_lossy))
            .finish()
    }
}

/// An incremental RESP request parser (one per connection).
#[derive(Debug, Default)]
pub struct Parser {
    limits: Limits,
    /// Argument ranges, relative to the command's start (or into `inline`).
    ranges: Vec<Range<usize>>,
    /// Inline commands: the unquoted arguments, back to back.
    inline: Vec<u8>,
    is_inline: bool,
    /// A multibulk in progress: its argument count and where its next element starts.
    partial: Option<(usize, usize)>,
    /// Bytes (from the command's start) needed before the parse can progress.
    want: usize,
    /// How far (from the command's start) the line being received has been searched
    /// for its end, so a line arriving byte by byte is not rescanned from its start.
    scanned: usize,
    /// The client has yet to AUTH: multibulk commands are held to Redis' small bounds
    /// for such clients.
    unauthenticated: bool,
}

impl Parser {
    pub fn new(limits: Limits) -> Parser {
        Parser {
            limits,
            ..Parser::default()
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether the client has yet to AUTH (then a multibulk command may have at most
    /// [`UNAUTHENTICATED_MAX_ARGS`] arguments of at most [`UNAUTHENTICATED_MAX_BULK`]
    /// bytes each, as in Redis).
    pub fn set_unauthenticated(&mut self, unauthenticated: bool) {
        self.unauthenticated = unauthenticated;
    }

    /// How many bytes from the command's start the parser needs to make progress (a
    /// hint for reserving buffer space for a large bulk); 0 when unknown.
    pub fn want(&self) -> usize {
        self.want
    }

    /// Parses the command at the start of `buf` (see the module documentation).
    pub fn parse(&mut self, buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
        let r = self.parse_command(buf);
        if r.is_err() {
            self.partial = None;
            self.scanned = 0;
            self.reset_args();
        }
        r
    }

    /// Forgets the last command's arguments, and the room a long one took.
    fn reset_args(&mut self) {
        self.ranges.clear();
        if self.ranges.capacity() > KEEP_RANGES {
            self.ranges = Vec::new();
        }
        if self.inline.capacity() > KEEP_INLINE {
            self.inline = Vec::new();
        }
    }

    fn parse_command(&mut self, buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
        self.want = 0;
        if self.partial.is_none() {
            let Some(&first) = buf.first() else {
                return Ok(None);
            };
            if first != b'*' {
                return self.parse_inline(buf);
            }
            self.is_inline = false;
            self.reset_args();
            let Some(end) = self.line_end(buf, 1, ProtocolError::MultibulkLineTooLong)? else {
                return Ok(None);
            };
            let n = parse_len(&buf[1..end]).ok_or(ProtocolError::MultibulkLength)?;
            if n > self.limits.max_args as i64 {
                return Err(ProtocolError::MultibulkLength);
            }
            if self.unauthenticated && n > UNAUTHENTICATED_MAX_ARGS {
                return Err(ProtocolError::UnauthenticatedMultibulkLength);
            }
            if n <= 0 {
                // `*0` and `*-1`: nothing to run.
                return Ok(Some(end + 2));
            }
            self.partial = Some((n as usize, end + 2));
        }
        let (argc, mut pos) = self.partial.expect("set above");
        self.ranges.reserve(ranges_to_reserve(
            argc,
            self.ranges.len(),
            buf.len().saturating_sub(pos),
        ));
        while self.ranges.len() < argc {
            let Some(&c) = buf.get(pos) else {
                self.partial = Some((argc, pos));
                return Ok(None);
            };
            if c != b'$' {
                return Err(ProtocolError::ExpectedDollar(c));
            }
            let end = match self.line_end(buf, pos + 1, ProtocolError::BulkLineTooLong) {
                Ok(Some(end)) => end,
                Ok(None) => {
                    self.partial = Some((argc, pos));
                    return Ok(None);
                }
                Err(e) => return Err(e),
            };
            let len = match parse_len(&buf[pos + 1..end]) {
                Some(n)
                    if n > UNAUTHENTICATED_MAX_BULK
                        && self.unauthenticated
                        && n as u64 <= self.limits.max_bulk as u64 =>
                {
                    return Err(ProtocolError::UnauthenticatedBulkLength)
                }
                Some(n) if n >= 0 && n as u64 <= self.limits.max_bulk as u64 => n as usize,
                _ => return Err(ProtocolError::BulkLength),
            };
            let start = end + 2;
            let stop = start + len;
            if buf.len() < stop + 2 {
                self.partial = Some((argc, pos));
                self.want = stop + 2;
                return Ok(None);
            }
            if &buf[stop..stop + 2] != b"\r\n" {
                return Err(ProtocolError::MissingCrlf);
            }
            self.ranges.push(start..stop);
            pos = stop + 2;
        }
        self.partial = None;
        Ok(Some(pos))
    }

    /// The arguments of the command the last `Ok(Some(_))` reported; `buf` must be the
    /// slice that call was given.
    pub fn args<'a>(&'a self, buf: &'a [u8]) -> Args<'a> {
        Args {
            data: if self.is_inline { &self.inline } else { buf },
            ranges: &self.ranges,
        }
    }

    /// Finds the `\r\n` ending the header line that starts at `from`: `Ok(Some(index of
    /// '\r'))`, `Ok(None)` if not there yet, `too_long` past `max_inline` bytes.
    fn line_end(&mut self, buf: &[u8], from: usize, too_long: ProtocolError) -> Result<Option<usize>, ProtocolError> {
        let max = self.limits.max_inline;
        let end = buf.len().min(from + max);
        let start = self.scanned.clamp(from, end.max(from));
        match buf[start.min(end)..end].iter().position(|&b| b == b'\r') {
            Some(i) => {
                let cr = start + i;
                match buf.get(cr + 1) {
                    Some(b'\n') => {
                        self.scanned = 0;
                        Ok(Some(cr))
                    }
                    Some(_) => Err(match too_long {
                        ProtocolError::MultibulkLineTooLong => ProtocolError::MultibulkLength,
                        _ => ProtocolError::BulkLength,
                    }),
                    None => {
                        self.scanned = cr;
                        Ok(None)
                    }
                }
            }
            None if buf.len() >= from + max => Err(too_long),
            None => {
                self.scanned = end;
                Ok(None)
            }
        }
    }

    /// An inline command: its line may be longer than `max_inline` when its end is
    /// already in `buf`, as Redis refuses only a buffer holding more than that without a
    /// newline (which read brings the newline depends on read sizes: Redis takes a line
    /// sent at once up to about 80 KiB, strata up to about 128 KiB; both refuse past).
    fn parse_inline(&mut self, buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
        let from = self.scanned.min(buf.len());
        let Some(nl) = buf[from..].iter().position(|&b| b == b'\n').map(|i| from + i) else {
            self.scanned = buf.len();
            return if buf.len() > self.limits.max_inline {
                Err(ProtocolError::InlineTooLong)
            } else {
                Ok(None)
            };
        };
        self.scanned = 0;
        let line = &buf[..nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        self.is_inline = true;
        self.reset_args();
        self.inline.clear();
        split_args(line, &mut self.inline, &mut self.ranges)?;
        if self.ranges.len() > self.limits.max_args {
            return Err(ProtocolError::MultibulkLength);
        }
        Ok(Some(nl + 1))
    }
}

/// How many more argument ranges to reserve for a multibulk that claims `claimed`
/// arguments, has `parsed` of them, and has `unparsed_bytes` more bytes in hand: no more
/// than those bytes can hold. The claim alone reserves nothing, so a header cannot make
/// the parser allocate in proportion to a count whose arguments it has not sent.
fn ranges_to_reserve(claimed: usize, parsed: usize, unparsed_bytes: usize) -> usize {
    claimed.saturating_sub(parsed).min(unparsed_bytes / MIN_ARG_BYTES)
}

/// A header's decimal length: optional '-', then digits; nothing else, and as Redis'
/// `string2ll` reads it: no leading zero (`01`), no `-0` (a client that sends them is
/// refused at once, not left waiting for bytes a zero length does not need).
fn parse_len(b: &[u8]) -> Option<i64> {
    let (neg, digits) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        _ => (false, b),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    if digits[0] == b'0' && (neg || digits.len() > 1) {
        return None;
    }
    let mut n: i64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + (c - b'0') as i64;
    }
    Some(if neg { -n } else { n })
}

/// Splits an inline command like Redis' `sdssplitargs`: whitespace-separated words,
/// "double quotes" with C escapes (`\n`, `\xHH`, ...), 'single quotes' with `\'`.
fn split_args(line: &[u8], out: &mut Vec<u8>, ranges: &mut Vec<Range<usize>>) -> Result<(), ProtocolError> {
    let mut i = 0;
    loop {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= line.len() {
            return Ok(());
        }
        let start = out.len();
        let mut in_dq = false;
        let mut in_sq = false;
        loop {
            if in_dq {
                let Some(&c) = line.get(i) else {
                    return Err(ProtocolError::UnbalancedQuotes);
                };
                if c == b'\\'
                    && i + 3 < line.len()
                    && line[i + 1] == b'x'
                    && hex(line[i + 2]).is_some()
                    && hex(line[i + 3]).is_some()
                {
                    out.push(hex(line[i + 2]).unwrap_or(0) * 16 + hex(line[i + 3]).unwrap_or(0));
                    i += 4;
                } else if c == b'\\' && i + 1 < line.len() {
                    out.push(match line[i + 1] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        other => other,
                    });
                    i += 2;
                } else if c == b'"' {
                    // The closing quote must be followed by a space or the end.
                    if line.get(i + 1).is_some_and(|c| !c.is_ascii_whitespace()) {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    i += 1;
                    break;
                } else {
                    out.push(c);
                    i += 1;
                }
            } else if in_sq {
                let Some(&c) = line.get(i) else {
                    return Err(ProtocolError::UnbalancedQuotes);
                };
                if c == b'\\' && line.get(i + 1) == Some(&b'\'') {
                    out.push(b'\'');
                    i += 2;
                } else if c == b'\'' {
                    if line.get(i + 1).is_some_and(|c| !c.is_ascii_whitespace()) {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    i += 1;
                    break;
                } else {
                    out.push(c);
                    i += 1;
                }
            } else {
                match line.get(i) {
                    None => break,
                    Some(c) if c.is_ascii_whitespace() => break,
                    Some(b'"') => in_dq = true,
                    Some(b'\'') => in_sq = true,
                    Some(&c) => out.push(c),
                }
                i += 1;
            }
        }
        ranges.push(start..out.len());
    }
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8]) -> Result<Vec<Vec<String>>, ProtocolError> {
        let mut p = Parser::new(Limits::default());
        let mut at = 0;
        let mut cmds = Vec::new();
        while let Some(n) = p.parse(&input[at..])? {
            let args = p.args(&input[at..]);
            if !args.is_empty() {
                cmds.push(args.iter().map(|a| String::from_utf8_lossy(a).into_owned()).collect());
            }
            at += n;
        }
        Ok(cmds)
    }

    #[test]
    fn multibulk_and_inline() {
        let cmds = parse_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\nset a \"b c\\x41\" 'd\\'e'\n*0\r\n\r\n").unwrap();
        assert_eq!(
            cmds,
            vec![vec!["GET", "k"], vec!["PING"], vec!["set", "a", "b cA", "d'e"]]
        );
    }

    #[test]
    fn resumes_across_every_split() {
        let input = b"*3\r\n$3\r\nSET\r\n$5\r\nhello\r\n$11\r\nhello world\r\n";
        for split in 0..input.len() {
            let mut p = Parser::new(Limits::default());
            assert_eq!(p.parse(&input[..split]).unwrap(), None, "split {split}");
            let n = p.parse(input).unwrap().unwrap();
            assert_eq!(n, input.len());
            let args: Vec<&[u8]> = p.args(input).iter().collect();
            assert_eq!(args, vec![&b"SET"[..], b"hello", b"hello world"]);
        }
    }

    #[test]
    fn errors_like_redis() {
        assert_eq!(parse_all(b"*x\r\n"), Err(ProtocolError::MultibulkLength));
        assert_eq!(parse_all(b"*2\r\n+3\r\n"), Err(ProtocolError::ExpectedDollar(b'+')));
        assert_eq!(parse_all(b"*1\r\n$-1\r\n"), Err(ProtocolError::BulkLength));
        assert_eq!(parse_all(b"*1\r\n$1\r\nab\r\n"), Err(ProtocolError::MissingCrlf));
        assert_eq!(
            parse_all(b"*2\r\n$4\r\nECHO\r\n$-0\r\n"),
            Err(ProtocolError::BulkLength)
        );
        assert_eq!(parse_all(b"*1\r\n$04\r\nPING\r\n"), Err(ProtocolError::BulkLength));
        assert_eq!(parse_all(b"*01\r\n$4\r\nPING\r\n"), Err(ProtocolError::MultibulkLength));
        assert_eq!(parse_all(b"*-0\r\n"), Err(ProtocolError::MultibulkLength));
        assert!(parse_all(b"*1\r\n$0\r\n\r\n").is_ok());
        assert_eq!(parse_all(b"*11184811\r\n"), Err(ProtocolError::MultibulkLength));
        assert_eq!(parse_all(b"GET \"a\n"), Err(ProtocolError::UnbalancedQuotes));
        assert_eq!(parse_all(&vec![b'a'; 70_000]), Err(ProtocolError::InlineTooLong));
        // With its newline in hand, a longer line is a command.
        let mut long = b"SET k ".to_vec();
        long.extend(std::iter::repeat_n(b'v', 100_000));
        long.extend_from_slice(b"\r\n");
        assert_eq!(parse_all(&long).unwrap()[0][2].len(), 100_000);
        let mut big = b"*1\r\n$".to_vec();
        big.extend(std::iter::repeat_n(b'1', 70_000));
        assert_eq!(parse_all(&big), Err(ProtocolError::BulkLineTooLong));
        let mut p = Parser::new(Limits {
            max_bulk: 10,
            ..Limits::default()
        });
        assert_eq!(p.parse(b"*1\r\n$11\r\n"), Err(ProtocolError::BulkLength));
    }

    #[test]
    fn wants_the_whole_bulk() {
        let mut p = Parser::new(Limits::default());
        assert_eq!(p.parse(b"*1\r\n$1000\r\nab").unwrap(), None);
        assert_eq!(p.want(), 4 + 7 + 1000 + 2);
    }

    #[test]
    fn a_command_with_more_than_a_million_arguments_parses() {
        // Redis 7.0 takes `SADD bigset` with 1,100,000 members (about 10 MB).
        let members = 1_100_000;
        let mut input = format!("*{}\r\n$4\r\nSADD\r\n$6\r\nbigset\r\n", members + 2).into_bytes();
        for i in 0..members {
            let m = format!("m{i}");
            input.extend_from_slice(format!("${}\r\n{m}\r\n", m.len()).as_bytes());
        }
        let mut p = Parser::new(Limits::default());
        assert_eq!(p.parse(&input), Ok(Some(input.len())));
        let args = p.args(&input);
        assert_eq!(args.len(), members + 2);
        assert_eq!(args.get(members + 1), b"m1099999");
        // The next command lets go of the long one's argument list.
        assert!(p.ranges.capacity() > KEEP_RANGES);
        assert_eq!(p.parse(b"*1\r\n$4\r\nPING\r\n"), Ok(Some(14)));
        assert!(p.ranges.capacity() <= KEEP_RANGES, "{}", p.ranges.capacity());
    }

    #[test]
    fn a_claimed_count_reserves_nothing_before_its_bytes_arrive() {
        assert_eq!(ranges_to_reserve(100_000_000, 0, 0), 0, "a bare header");
        assert_eq!(ranges_to_reserve(100_000_000, 0, 60), 10, "what 60 bytes can hold");
        assert_eq!(ranges_to_reserve(3, 0, 60_000), 3, "no more than claimed");
        assert_eq!(ranges_to_reserve(3, 3, 60_000), 0, "none once all are parsed");
        assert_eq!(ranges_to_reserve(10, 12, 60_000), 0);
        // Through the parser: the largest count allowed, and nothing behind it.
        let mut p = Parser::new(Limits::default());
        let header = format!("*{}\r\n", Limits::default().max_args);
        assert_eq!(p.parse(header.as_bytes()), Ok(None));
        assert_eq!(p.ranges.capacity(), 0);
        let mut some = header.into_bytes();
        some.extend_from_slice(b"$3\r\nSET\r\n$1\r\nk\r\n");
        assert_eq!(p.parse(&some), Ok(None));
        assert!(p.ranges.capacity() < 64, "{}", p.ranges.capacity());
    }
}
