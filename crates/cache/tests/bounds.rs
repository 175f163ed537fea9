//! Every connection to the RESP port is bounded, over real sockets on port 0: idle and
//! slow (slowloris) connections are closed, a query buffer past its limit closes its
//! connection and not the others, all query buffers together are bounded (a blocked
//! client's command counted with them), and no more than `max_clients` connections are
//! admitted. Timeouts are configured short (hundreds
//! of milliseconds); the tests wait for events, not for fixed times.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use common::{cmd, Client, Server, CLOSE_WITHIN};
use strata_cache::resp::Limits;
use strata_cache::{CacheConfig, RespConfig};

const MIB: usize = 1 << 20;

fn server(threads: usize, config: RespConfig) -> Server {
    Server::start_with(threads, CacheConfig::default(), config)
}

/// A field of INFO (all sections), as a number.
fn info(c: &mut Client, field: &str) -> u64 {
    c.send(&cmd(&["INFO", "everything"]));
    let text = String::from_utf8(c.read_reply()).unwrap();
    let prefix = format!("{field}:");
    text.split("\r\n")
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("INFO lacks {field}:\n{text}"))
        .parse()
        .unwrap()
}

/// Asks INFO until `field` satisfies `ok` (the server updates it asynchronously).
fn wait_for_info(c: &mut Client, field: &str, ok: impl Fn(u64) -> bool) -> u64 {
    let deadline = Instant::now() + CLOSE_WITHIN;
    loop {
        let value = info(c, field);
        if ok(value) {
            return value;
        }
        assert!(Instant::now() < deadline, "{field} stayed at {value}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Reads what the server sends until it closes the connection.
fn read_until_closed(c: &mut Client) -> Vec<u8> {
    let mut got = Vec::new();
    c.stream.set_read_timeout(Some(CLOSE_WITHIN)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match c.stream.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return got,
            Err(e) => panic!(
                "waiting for the server to close (got {:?}): {e}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
}

#[test]
fn an_idle_connection_is_closed_quietly_and_a_busy_one_is_not() {
    let server = server(
        1,
        RespConfig {
            idle_timeout: Some(Duration::from_millis(300)),
            command_timeout: Some(Duration::from_millis(300)),
            ..RespConfig::default()
        },
    );
    let mut idle = server.client();
    idle.check(&["PING"], "+PONG\r\n");
    // A subscriber waits for messages, not for commands: spared, as by Redis' `timeout`.
    let mut subscriber = server.client();
    subscriber.check(&["SUBSCRIBE", "c"], "*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n");
    let mut busy = server.client();
    // Busy for four idle periods: a command every 50 ms keeps it open.
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1200) {
        busy.check(&["PING"], "+PONG\r\n");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Meanwhile the idle one was closed, with no reply (Redis' `timeout` says nothing
    // either: a pooled client would read an error as the reply to its next command).
    idle.assert_closed("after the idle timeout");
    busy.check(&["PING"], "+PONG\r\n");
    busy.check(&["PUBLISH", "c", "still here"], ":1\r\n");
    assert_eq!(
        subscriber.read_reply(),
        b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$10\r\nstill here\r\n"
    );
    assert!(info(&mut busy, "strata_idle_disconnections") >= 1);
    let mut config = server.client();
    config.send(&cmd(&["CONFIG", "GET", "timeout"]));
    assert_eq!(
        config.read_reply(),
        b"*2\r\n$7\r\ntimeout\r\n$1\r\n1\r\n",
        "whole seconds, as Redis, rounded up"
    );
}

#[test]
fn a_slowloris_command_is_dropped_with_an_error() {
    let server = server(
        1,
        RespConfig {
            command_timeout: Some(Duration::from_millis(300)),
            ..RespConfig::default()
        },
    );
    // A command trickled a byte every 20 ms: active all the time, never complete.
    let mut slow = server.client();
    slow.check(&["PING"], "+PONG\r\n");
    let started = Instant::now();
    slow.send(b"*2\r\n$3\r\nSET\r\n$1000\r\n");
    slow.stream.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        assert!(started.elapsed() < CLOSE_WITHIN, "still open after {CLOSE_WITHIN:?}");
        // Writes fail once the server has closed; the reply is what matters.
        let _ = slow.stream.write_all(b"x");
        match slow.stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!(
                "reading the slow client's reply (got {:?}): {e}",
                String::from_utf8_lossy(&got)
            ),
        }
        if got.ends_with(b"\r\n") {
            break;
        }
    }
    let took = started.elapsed();
    assert_eq!(
        String::from_utf8_lossy(&got),
        "-ERR timeout: the command was still incomplete 300ms after its first bytes arrived\r\n"
    );
    // Up to a tick (30 ms) early: the worker's clock is coarse.
    assert!(took >= Duration::from_millis(250), "closed after {took:?}");
    slow.assert_closed("after the command timeout");
    let mut c = server.client();
    assert_eq!(info(&mut c, "strata_slow_command_disconnections"), 1);
}

#[test]
fn commands_that_keep_completing_are_not_slow() {
    let server = server(
        1,
        RespConfig {
            command_timeout: Some(Duration::from_millis(200)),
            ..RespConfig::default()
        },
    );
    // A pipeline sent in pieces cut through commands, over five command timeouts: a
    // piece always ends inside a command, but every piece completes some.
    let mut c = server.client();
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for i in 0..400 {
        batch.extend(cmd(&["INCR", "n"]));
        expected.extend(format!(":{}\r\n", i + 1).into_bytes());
    }
    for piece in batch.chunks(batch.len() / 20 + 1) {
        c.send(piece);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(c.read_n(expected.len()), expected);
    // A large value on a slow link: 4 MiB in 1 MiB pieces, 100 ms apart, longer than
    // the timeout but at more than 1 MiB/s (a second more per MiB received).
    let value = vec![b'v'; 4 * MIB];
    let set = common::cmd_bytes(&[b"SET", b"big", &value]);
    for piece in set.chunks(MIB) {
        c.send(piece);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(c.read_n(5), b"+OK\r\n");
    c.check(&["STRLEN", "big"], ":4194304\r\n");
    assert_eq!(info(&mut c, "strata_slow_command_disconnections"), 0);
}

#[test]
fn a_query_buffer_past_its_limit_closes_that_connection_only() {
    let server = server(
        1,
        RespConfig {
            limits: Limits {
                max_bulk: 4 * MIB,
                ..Limits::default()
            },
            max_query_bytes: MIB,
            ..RespConfig::default()
        },
    );
    let mut other = server.client();
    other.check(&["SET", "k", "v"], "+OK\r\n");
    // A bulk that cannot fit is refused as soon as its header arrives: the value is
    // never received, let alone held.
    let mut big = server.client();
    big.send(b"*3\r\n$3\r\nSET\r\n$1\r\nb\r\n$2097152\r\n");
    let reply = read_until_closed(&mut big);
    assert_eq!(
        String::from_utf8_lossy(&reply),
        "-ERR Protocol error: query buffer limit exceeded\r\n"
    );
    // Many small arguments (no size announced) past the limit: closed once it is passed.
    let mut many = server.client();
    let mut args = b"*1000000\r\n".to_vec();
    while args.len() <= MIB + 100_000 {
        args.extend_from_slice(b"$1\r\nx\r\n");
    }
    // The server may close before taking all of it.
    let _ = many.stream.write_all(&args);
    let reply = read_until_closed(&mut many);
    assert_eq!(
        String::from_utf8_lossy(&reply),
        "-ERR Protocol error: query buffer limit exceeded\r\n"
    );
    // The other connection did not notice; a value just within the limit is taken.
    other.check(&["GET", "k"], "$1\r\nv\r\n");
    let value = vec![b'v'; MIB - 100];
    other.send(&common::cmd_bytes(&[b"SET", b"fits", &value]));
    assert_eq!(other.read_n(5), b"+OK\r\n");
    assert_eq!(info(&mut other, "client_query_buffer_limit_disconnections"), 2);
    other.send(&cmd(&["CONFIG", "GET", "client-query-buffer-limit"]));
    assert_eq!(
        other.read_reply(),
        b"*2\r\n$25\r\nclient-query-buffer-limit\r\n$7\r\n1048576\r\n"
    );
}

#[test]
fn a_command_with_more_than_a_million_arguments_runs_as_in_redis() {
    let server = server(1, RespConfig::default());
    let mut c = server.client();
    // Redis 7.0 takes this SADD (about 13 MB): the count is within what the query
    // buffer limit can hold, so it is not refused at its header.
    let members: Vec<String> = (0..1_100_000).map(|i| format!("m{i}")).collect();
    let mut args: Vec<&[u8]> = vec![b"SADD", b"bigset"];
    args.extend(members.iter().map(|m| m.as_bytes()));
    c.send(&common::cmd_bytes(&args));
    assert_eq!(String::from_utf8_lossy(&c.read_reply()), ":1100000\r\n");
    c.check(&["SISMEMBER", "bigset", "m1099999"], ":1\r\n");
    // A count no query buffer of 64 MiB could hold is refused at once.
    let mut huge = server.client();
    huge.send(b"*100000000\r\n");
    assert_eq!(
        String::from_utf8_lossy(&read_until_closed(&mut huge)),
        "-ERR Protocol error: invalid multibulk length\r\n"
    );
}

#[test]
fn the_query_buffers_of_all_connections_are_bounded_together() {
    let total = 6 * MIB;
    let server = server(
        1,
        RespConfig {
            limits: Limits {
                max_bulk: 8 * MIB,
                ..Limits::default()
            },
            max_query_bytes: 8 * MIB,
            max_query_bytes_total: total,
            ..RespConfig::default()
        },
    );
    let mut observer = server.client();
    let base = info(&mut observer, "mem_clients_normal");
    assert_eq!(base, 16 << 10, "the observer's read buffer, while it runs INFO");
    assert_eq!(info(&mut observer, "maxmemory_clients"), total as u64);
    // The first connection sends most of a 4 MiB value: its buffer grows to hold it.
    let value = vec![b'a'; 4 * MIB];
    let set = common::cmd_bytes(&[b"SET", b"first", &value]);
    let (head, rest) = set.split_at(3 * MIB + MIB / 2);
    let mut first = server.client();
    first.send(head);
    let held = wait_for_info(&mut observer, "mem_clients_normal", |held| held >= (4 * MIB) as u64);
    assert!(held <= total as u64, "{held} bytes held");
    // The second one's buffer would take the total past its bound: it is closed, with
    // the reason, while it grows (it sends only a little past that point, so that the
    // server can read what is left and the error reaches it before the close).
    let mut second = server.client();
    second.send(&common::cmd_bytes(&[b"SET", b"second", &vec![b'b'; 4 * MIB]])[..3 * MIB / 2]);
    let reply = read_until_closed(&mut second);
    assert_eq!(
        String::from_utf8_lossy(&reply),
        format!(
            "-ERR client evicted: the query buffers of all clients would exceed maxmemory-clients ({total} bytes)\r\n"
        )
    );
    assert_eq!(info(&mut observer, "evicted_clients"), 1);
    // The first completes its command; afterwards a connection with nothing pending
    // holds no buffer: only the observer's, while it runs INFO, is counted.
    first.send(rest);
    assert_eq!(first.read_n(5), b"+OK\r\n");
    first.check(&["STRLEN", "first"], ":4194304\r\n");
    first.check(&["EXISTS", "second"], ":0\r\n");
    wait_for_info(&mut observer, "mem_clients_normal", |held| held == 16 << 10);
    // Nor do a hundred more idle ones.
    let idle: Vec<Client> = (0..100)
        .map(|_| {
            let mut c = server.client();
            c.check(&["PING"], "+PONG\r\n");
            c
        })
        .collect();
    assert_eq!(info(&mut observer, "mem_clients_normal"), 16 << 10);
    drop(idle);
}

#[test]
fn a_blocked_client_counts_its_command_and_no_read_buffer() {
    let server = server(1, RespConfig::default());
    let mut observer = server.client();
    let base = info(&mut observer, "mem_clients_normal");
    assert_eq!(base, 16 << 10, "the observer's read buffer, while it runs INFO");
    // Twenty clients blocked on small keys: each gives its read buffer back while it
    // waits (as an idle one does), and what it holds (its command, its registration on
    // the key) is counted instead: a few hundred bytes each.
    let mut small: Vec<Client> = (0..20)
        .map(|i| {
            let mut c = server.client();
            c.send(&cmd(&["BLPOP", &format!("list{i}"), "0"]));
            c
        })
        .collect();
    wait_for_info(&mut observer, "blocked_clients", |n| n == 20);
    let held = wait_for_info(&mut observer, "mem_clients_normal", |held| held < base + 20 * 1024) - base;
    assert!(
        held >= 20 * "BLPOPlist00".len() as u64,
        "{held} bytes for 20 blocked clients"
    );
    // One blocked on a key of 1 MiB: its copy of the command and its registration on
    // the key, both counted (as Redis counts a blocked client's arguments), and no read
    // buffer of the size of the command.
    let key = "k".repeat(MIB);
    let mut big = server.client();
    big.send(&cmd(&["BLPOP", &key, "0"]));
    wait_for_info(&mut observer, "blocked_clients", |n| n == 21);
    let expected = base + held + 2 * MIB as u64;
    wait_for_info(&mut observer, "mem_clients_normal", |now| {
        (expected..expected + 1024).contains(&now)
    });
    // Answered, each gives it all back.
    for i in 0..20 {
        observer.check(&["RPUSH", &format!("list{i}"), "x"], ":1\r\n");
    }
    observer.check(&["RPUSH", &key, "x"], ":1\r\n");
    for (i, c) in small.iter_mut().enumerate() {
        let name = format!("list{i}");
        assert_eq!(
            String::from_utf8_lossy(&c.read_reply()),
            format!("*2\r\n${}\r\n{name}\r\n$1\r\nx\r\n", name.len())
        );
    }
    assert_eq!(
        big.read_reply(),
        format!("*2\r\n${MIB}\r\n{key}\r\n$1\r\nx\r\n").into_bytes()
    );
    assert_eq!(info(&mut observer, "blocked_clients"), 0);
    wait_for_info(&mut observer, "mem_clients_normal", |now| now == base);
}

#[test]
fn past_max_clients_a_connection_gets_the_redis_error() {
    let server = server(
        2,
        RespConfig {
            max_clients: 3,
            ..RespConfig::default()
        },
    );
    let mut admitted: Vec<Client> = (0..3).map(|_| server.client()).collect();
    for c in &mut admitted {
        c.check(&["PING"], "+PONG\r\n");
    }
    let mut refused = server.client();
    let reply = read_until_closed(&mut refused);
    assert_eq!(
        String::from_utf8_lossy(&reply),
        "-ERR max number of clients reached\r\n"
    );
    assert_eq!(info(&mut admitted[0], "connected_clients"), 3);
    assert_eq!(info(&mut admitted[0], "maxclients"), 3);
    assert_eq!(info(&mut admitted[0], "rejected_connections"), 1);
    // A place is free again once a client leaves.
    admitted.pop();
    let deadline = Instant::now() + CLOSE_WITHIN;
    loop {
        let mut c = server.client();
        c.send(&cmd(&["PING"]));
        let reply = c.read_reply();
        if reply == b"+PONG\r\n" {
            break;
        }
        assert_eq!(reply, b"-ERR max number of clients reached\r\n");
        assert!(Instant::now() < deadline, "no place freed");
        std::thread::sleep(Duration::from_millis(10));
    }
}
