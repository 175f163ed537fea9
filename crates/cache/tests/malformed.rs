//! Malformed and hostile input never crashes the server: every file of the corpus in
//! `tests/corpus/`, whole and in pieces, every prefix and every single-byte mutation of
//! valid pipelines. Each run must produce well-formed replies, and the connection may
//! close only after a protocol error reply (or QUIT).

mod common;

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use strata_cache::resp::{Connection, Limits, Parser, Progress};
use strata_cache::{Cache, CacheConfig, RespConfig};

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("the corpus directory")
        .map(|e| {
            let path = e.unwrap().path();
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&path).unwrap(),
            )
        })
        .collect();
    files.sort();
    assert!(files.len() >= 30, "the corpus has {} files", files.len());
    files
}

fn connection() -> Connection {
    let cache = Arc::new(Cache::new(CacheConfig {
        shards: 2,
        max_bytes: 16 << 20,
        ..CacheConfig::default()
    }));
    let config = RespConfig {
        limits: Limits {
            max_bulk: 1 << 20,
            ..Limits::default()
        },
        ..RespConfig::default()
    };
    Connection::detached(cache, &config)
}

/// Feeds `input` to a fresh connection in pieces of `chunk` bytes; returns the replies
/// and whether the connection asked to be closed.
fn run(input: &[u8], chunk: usize) -> (Vec<u8>, bool) {
    let mut conn = connection();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for piece in input.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match conn.process(&mut buf, &mut out) {
                Progress::NeedInput => break,
                Progress::Flush => continue,
                Progress::Close => return (out, true),
                Progress::Blocked => return (out, false),
            }
        }
    }
    (out, false)
}

/// Splits `out` into RESP replies; fails if any is malformed or cut short.
fn replies(out: &[u8]) -> Result<Vec<&[u8]>, String> {
    fn line(out: &[u8], at: usize) -> Result<(&[u8], usize), String> {
        let rest = &out[at..];
        let i = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| format!("no CRLF after offset {at}"))?;
        Ok((&rest[1..i], at + i + 2))
    }
    fn value(out: &[u8], at: usize) -> Result<usize, String> {
        let kind = *out.get(at).ok_or("reply cut short")?;
        let (body, next) = line(out, at)?;
        let n = || -> Result<i64, String> {
            std::str::from_utf8(body)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("bad length {body:?}"))
        };
        match kind {
            b'+' | b'-' | b':' | b'_' => Ok(next),
            b'$' | b'=' => match n()? {
                -1 => Ok(next),
                len if len >= 0 => {
                    let end = next + len as usize;
                    if out.get(end..end + 2) != Some(b"\r\n") {
                        return Err(format!("bulk at {at} not ended by CRLF"));
                    }
                    Ok(end + 2)
                }
                _ => Err("negative bulk length".into()),
            },
            b'*' | b'~' | b'%' => {
                let count = n()?;
                let count = if kind == b'%' { count * 2 } else { count };
                let mut at = next;
                for _ in 0..count.max(0) {
                    at = value(out, at)?;
                }
                Ok(at)
            }
            other => Err(format!("unknown reply type {:?} at {at}", other as char)),
        }
    }
    let mut all = Vec::new();
    let mut at = 0;
    while at < out.len() {
        let next = value(out, at)?;
        all.push(&out[at..next]);
        at = next;
    }
    Ok(all)
}

fn check(name: &str, input: &[u8], chunk: usize) {
    let (out, closed) = run(input, chunk);
    let all = replies(&out).unwrap_or_else(|e| panic!("{name} (chunk {chunk}): malformed output: {e}"));
    if closed {
        let last = all.last().unwrap_or_else(|| panic!("{name}: closed without a reply"));
        assert!(
            last.starts_with(b"-ERR Protocol error") || *last == b"+OK\r\n",
            "{name}: closed after {:?}",
            String::from_utf8_lossy(last)
        );
    }
}

#[test]
fn corpus_files_get_error_replies_and_no_crash() {
    for (name, data) in corpus() {
        for chunk in [usize::MAX, 1, 2, 3, 7, 64, 4096] {
            check(&name, &data, chunk);
        }
        // The parser alone, on every prefix (small files) : never a panic.
        if data.len() <= 4096 {
            for end in 0..=data.len() {
                let mut p = Parser::new(Limits::default());
                let _ = p.parse(&data[..end]);
            }
        }
    }
}

#[test]
fn corpus_files_get_the_expected_protocol_errors() {
    let expect = [
        (
            "bad_multibulk_len.bin",
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
        ("negative_bulk_len.bin", "-ERR Protocol error: invalid bulk length\r\n"),
        (
            "huge_multibulk_len.bin",
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
        ("huge_bulk_len.bin", "-ERR Protocol error: invalid bulk length\r\n"),
        ("missing_dollar.bin", "-ERR Protocol error: expected '$', got ':'\r\n"),
        ("nested_array.bin", "-ERR Protocol error: expected '$', got '*'\r\n"),
        (
            "unbalanced_double_quote.bin",
            "-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
        ("inline_too_long.bin", "-ERR Protocol error: too big inline request\r\n"),
        (
            "bulk_header_too_long.bin",
            "-ERR Protocol error: too big bulk count string\r\n",
        ),
        (
            "multibulk_header_too_long.bin",
            "-ERR Protocol error: too big mbulk count string\r\n",
        ),
    ];
    let files: std::collections::HashMap<String, Vec<u8>> = corpus().into_iter().collect();
    for (name, reply) in expect {
        let (out, closed) = run(&files[name], usize::MAX);
        assert!(closed, "{name} closes the connection");
        assert_eq!(String::from_utf8_lossy(&out), reply, "{name}");
    }
    // Not errors: empty and null multibulks are skipped, binary-safe bulks work.
    let (out, closed) = run(&files["empty_multibulk.bin"], usize::MAX);
    assert_eq!((String::from_utf8_lossy(&out).as_ref(), closed), ("+PONG\r\n", false));
    let (out, _) = run(&files["nul_in_bulk.bin"], 1);
    assert_eq!(out, b"$3\r\na\x00b\r\n");
    let (out, closed) = run(&files["truncated_command.bin"], usize::MAX);
    assert_eq!((out.len(), closed), (0, false), "an incomplete command waits for more");
}

fn valid_inputs() -> Vec<Vec<u8>> {
    let pipeline = [
        common::cmd(&["SET", "k", "v", "EX", "100"]),
        common::cmd(&["GET", "k"]),
        common::cmd(&["INCRBY", "n", "41"]),
        common::cmd(&["MSET", "a", "1", "b", "22"]),
        common::cmd(&["MGET", "a", "b", "c"]),
        common::cmd(&["EXPIRE", "a", "10", "GT"]),
        common::cmd(&["HELLO", "3"]),
        common::cmd(&["GET", "nope"]),
        common::cmd(&["CLIENT", "SETNAME", "x"]),
    ]
    .concat();
    let transaction = [
        common::cmd(&["WATCH", "k", "n"]),
        common::cmd(&["MULTI"]),
        common::cmd(&["GETEX", "k", "PX", "100"]),
        common::cmd(&["INCRBYFLOAT", "n", "1.5"]),
        common::cmd(&["SETRANGE", "k", "3", "xy"]),
        common::cmd(&["SETBIT", "b", "9", "1"]),
        common::cmd(&["BITCOUNT", "b", "0", "-1", "BIT"]),
        common::cmd(&["EXEC"]),
        common::cmd(&["SCAN", "0", "MATCH", "k*", "COUNT", "5"]),
        common::cmd(&["COPY", "k", "j", "REPLACE"]),
        common::cmd(&["RENAME", "j", "i"]),
        common::cmd(&["OBJECT", "ENCODING", "i"]),
        common::cmd(&["EXPIRE", "i", "10", "GT", "XX"]),
    ]
    .concat();
    vec![
        pipeline,
        transaction,
        b"PING\r\nSET \"a b\" 'c\\'d' EX 5\r\nGET \"a\\x20b\"\r\nECHO \"\\n\\t\"\r\n".to_vec(),
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10\r\n0123456789\r\n*2\r\n$6\r\nGETDEL\r\n$1\r\nk\r\n".to_vec(),
    ]
}

#[test]
fn every_prefix_and_single_byte_mutation_of_valid_input_is_safe() {
    let bytes = [
        0u8, b'\r', b'\n', b'*', b'$', b'-', b'0', b'9', b'"', b'\'', b'\\', b' ', 0x7f, 0xff,
    ];
    let mut runs = 0;
    for input in valid_inputs() {
        for end in 0..=input.len() {
            check("prefix", &input[..end], usize::MAX);
            runs += 1;
        }
        for i in 0..input.len() {
            for b in bytes
                .iter()
                .copied()
                .chain([input[i].wrapping_add(1), input[i].wrapping_sub(1)])
            {
                if b == input[i] {
                    continue;
                }
                let mut m = input.clone();
                m[i] = b;
                check("mutation", &m, usize::MAX);
                check("mutation in pieces", &m, 5);
                runs += 2;
            }
        }
    }
    assert!(runs > 5_000, "{runs} runs");
}

#[test]
fn the_server_survives_the_corpus_over_sockets() {
    let server = common::Server::start(2);
    for (name, data) in corpus() {
        let mut c = server.client();
        c.send(&data);
        // Half-close: the server runs what it got, answers, and closes on end of input.
        c.stream.shutdown(std::net::Shutdown::Write).unwrap();
        let mut got = Vec::new();
        c.stream
            .read_to_end(&mut got)
            .unwrap_or_else(|e| panic!("{name}: reading the replies: {e}"));
        replies(&got).unwrap_or_else(|e| panic!("{name}: malformed output over the socket: {e}"));
        server.client().check(&["PING"], "+PONG\r\n");
    }
}

/// The parser's bounds for a client that has yet to AUTH (10 arguments, 16 KiB each,
/// as Redis 7.0), in pieces of every size; after AUTH they no longer apply.
#[test]
fn unauthenticated_clients_are_held_to_small_commands() {
    let connection = || {
        let cache = Arc::new(Cache::new(CacheConfig::default()));
        let config = RespConfig {
            password: Some("0123456789abcdef".into()),
            ..RespConfig::default()
        };
        Connection::detached(cache, &config)
    };
    let args: Vec<String> = (0..11).map(|i| format!("k{i}")).collect();
    let mut many = vec!["DEL"];
    many.extend(args.iter().map(String::as_str));
    let long = "x".repeat(16385);
    let cases = [
        (
            common::cmd(&many),
            "-ERR Protocol error: unauthenticated multibulk length\r\n",
        ),
        (
            common::cmd(&["GET", &long]),
            "-ERR Protocol error: unauthenticated bulk length\r\n",
        ),
    ];
    for (input, reply) in &cases {
        for chunk in [usize::MAX, 1, 5, 100] {
            let mut conn = connection();
            let (mut buf, mut out) = (Vec::new(), Vec::new());
            let mut closed = false;
            for piece in input.chunks(chunk) {
                buf.extend_from_slice(piece);
                if conn.process(&mut buf, &mut out) == Progress::Close {
                    closed = true;
                    break;
                }
            }
            assert!(closed, "chunk {chunk}");
            assert_eq!(String::from_utf8_lossy(&out), *reply, "chunk {chunk}");
        }
        // Authenticated first (in the same read): the command runs.
        let mut conn = connection();
        let mut buf = common::cmd(&["AUTH", "0123456789abcdef"]);
        buf.extend_from_slice(input);
        let mut out = Vec::new();
        assert_eq!(conn.process(&mut buf, &mut out), Progress::NeedInput);
        assert!(
            out.starts_with(b"+OK\r\n") && !out.starts_with(b"+OK\r\n-"),
            "{:?}",
            String::from_utf8_lossy(&out)
        );
    }
}
