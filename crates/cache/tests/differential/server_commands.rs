//! TOUCH, COMMAND GETKEYS, CLIENT REPLY, WAIT, INFO's commandstats and errorstats, long
//! inline commands and SCAN's largest cursors, against redis-server.

use std::collections::BTreeMap;
use std::io::Read;
use std::time::{Duration, Instant};

use super::common::{cmd_bytes, Client};
use super::{parse, setup, show, Both, Value};

#[test]
fn touch_answers_as_redis() {
    let Some((redis, strata)) = setup("touch_answers_as_redis") else {
        return;
    };
    let mut b = Both::connect(&redis, &strata);
    for c in [
        &["TOUCH"][..],
        &["TOUCH", "a"],
        &["SET", "a", "1"],
        &["RPUSH", "l", "x"],
        &["TOUCH", "a", "b", "a", "l"],
        &["PEXPIRE", "a", "1"],
    ] {
        b.same(c);
    }
    std::thread::sleep(Duration::from_millis(20));
    b.same(&["TOUCH", "a", "l"]);
    b.same(&["MULTI"]);
    b.same(&["TOUCH", "l", "nope"]);
    b.same(&["EXEC"]);
}

#[test]
fn command_getkeys_answers_as_redis() {
    let Some((redis, strata)) = setup("command_getkeys_answers_as_redis") else {
        return;
    };
    let mut b = Both::connect(&redis, &strata);
    // The commands both know (strata has Redis 7.2's CLIENT SETINFO and NO-TOUCH too).
    let (r, s) = b.send(&[b"COMMAND".to_vec(), b"LIST".to_vec()]);
    let (Value::Array(theirs), Value::Array(names)) = (parse(&r), parse(&s)) else {
        panic!("COMMAND LIST answered no array")
    };
    let names: Vec<Value> = names.into_iter().filter(|n| theirs.contains(n)).collect();
    // Arguments in shapes that fit counted keys, fixed ones and options.
    let shapes: [&[&str]; 9] = [
        // Counts no command could have, near the ends of i64 (malformed input).
        &["9223372036854775807", "k1", "k2"],
        &["d", "9223372036854775807", "k1", "k2"],
        &["-9223372036854775808", "k1", "k2"],
        &["k1", "k2", "k3", "k4", "k5", "k6"],
        &["2", "k1", "k2", "k3", "k4", "k5"],
        &["0", "2", "k1", "k2", "k3", "k4"],
        &["d", "2", "k1", "k2", "WEIGHTS", "1"],
        &["d", "+1", "k1", "k2", "k3", "k4"],
        &["9", "k1", "k2", "k3", "k4", "k5"],
    ];
    for name in &names {
        let Value::Bulk(name) = name else {
            panic!("a command name that is not a bulk string")
        };
        let name = String::from_utf8_lossy(name).into_owned();
        let words: Vec<&str> = name.split('|').collect();
        for shape in shapes {
            for n in 0..=shape.len() {
                let mut args = vec!["COMMAND", "GETKEYS"];
                args.extend(&words);
                args.extend(&shape[..n]);
                b.same(&args);
            }
        }
    }
    for c in [
        &["COMMAND", "GETKEYS"][..],
        &["COMMAND", "GETKEYS", "get"],
        &["COMMAND", "GETKEYS", "nosuch", "k"],
        &["COMMAND", "GETKEYS", "client", "nosuch"],
        &["COMMAND", "GETKEYS", "OBJECT", "Encoding", "k"],
        &["COMMAND", "GETKEYS", "zunionstore", "d", "x", "a"],
        &["COMMAND", "GETKEYS", "zunion", " 1", "a"],
        &["COMMAND", "GETKEYS", "lmpop", "2", "a", "left"],
    ] {
        b.same(c);
    }
}

/// Sends raw bytes to a client, then `CLIENT REPLY ON` and `ECHO end`, and reads up to
/// the end's reply.
fn raw_exchange(c: &mut Client, bytes: &[u8]) -> Vec<u8> {
    c.send(bytes);
    c.send(b"CLIENT REPLY ON\r\nECHO end\r\n");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(b"$3\r\nend\r\n") {
        let n = c.stream.read(&mut buf).expect("a reply");
        assert!(n > 0, "the server closed the connection after {}", show(&got));
        got.extend_from_slice(&buf[..n]);
    }
    got
}

#[test]
fn client_reply_answers_as_redis() {
    let Some((redis, strata)) = setup("client_reply_answers_as_redis") else {
        return;
    };
    let mut b = Both::connect(&redis, &strata);
    let cases: &[&[u8]] = &[
        b"CLIENT REPLY OFF\r\nSET a 1\r\nGET a\r\nNOSUCH\r\nGET\r\n",
        b"CLIENT REPLY SKIP\r\nGET a\r\nGET a\r\n",
        b"CLIENT REPLY SKIP\r\nCLIENT REPLY SKIP\r\nGET a\r\nGET a\r\n",
        b"CLIENT REPLY SKIP\r\nNOSUCH\r\nGET a\r\n",
        b"CLIENT REPLY SKIP\r\nGET\r\nGET a\r\n",
        b"CLIENT REPLY OFF\r\nCLIENT REPLY SKIP\r\nGET a\r\n",
        b"CLIENT REPLY maybe\r\nCLIENT REPLY\r\nCLIENT REPLY on x\r\n",
        b"CLIENT REPLY SKIP\r\nMULTI\r\nSET b 4\r\nEXEC\r\n",
        b"MULTI\r\nCLIENT REPLY SKIP\r\nSET b 3\r\nEXEC\r\nGET b\r\nGET b\r\n",
        b"MULTI\r\nCLIENT REPLY OFF\r\nSET b 2\r\nEXEC\r\nGET b\r\n",
        b"CLIENT REPLY OFF\r\nMULTI\r\nCLIENT REPLY ON\r\nGET b\r\nEXEC\r\n",
        b"CLIENT REPLY SKIP\r\nBLPOP nolist 0.01\r\nGET b\r\n",
        b"CLIENT REPLY OFF\r\nRESET\r\nGET b\r\n",
        b"CLIENT REPLY OFF\r\nSUBSCRIBE ch\r\nUNSUBSCRIBE ch\r\nPING\r\n",
        // An EXEC that runs nothing answers nothing while replies are off either.
        b"RESET\r\nCLIENT REPLY OFF\r\nEXEC\r\nCLIENT REPLY ON\r\nPING\r\n",
        b"RESET\r\nCLIENT REPLY OFF\r\nMULTI\r\nNOSUCH\r\nEXEC\r\nCLIENT REPLY ON\r\nPING\r\n",
        b"RESET\r\nSET w 1\r\nWATCH w\r\nSET w 2\r\nCLIENT REPLY OFF\r\nMULTI\r\nGET w\r\nEXEC\r\nCLIENT REPLY ON\r\nPING\r\n",
        b"RESET\r\nCLIENT REPLY SKIP\r\nEXEC\r\nPING\r\n",
    ];
    for case in cases {
        let r = raw_exchange(&mut b.redis, case);
        let s = raw_exchange(&mut b.strata, case);
        assert_eq!(show(&s), show(&r), "replies to {}", show(case));
    }
}

#[test]
fn wait_answers_as_redis() {
    let Some((redis, strata)) = setup("wait_answers_as_redis") else {
        return;
    };
    let mut b = Both::connect(&redis, &strata);
    for c in [
        &["WAIT", "0", "0"][..],
        &["WAIT", "-1", "100000"],
        &["WAIT", "1"],
        &["WAIT", "x", "0"],
        &["WAIT", "1", "x"],
        &["WAIT", "1", "1.5"],
        &["WAIT", "0", "-1"],
        &["MULTI"],
        &["WAIT", "1", "0"],
        &["EXEC"],
    ] {
        b.same(c);
    }
    // Asked for a replica: each answers 0 once the timeout has passed.
    for c in [&mut b.redis, &mut b.strata] {
        let started = Instant::now();
        c.send(&cmd_bytes(&[b"WAIT", b"1", b"150"]));
        assert_eq!(c.read_reply(), b":0\r\n");
        assert!(
            started.elapsed() >= Duration::from_millis(150),
            "{:?}",
            started.elapsed()
        );
    }
}

/// INFO `section` of one server as its fields.
fn info(c: &mut Client, section: &str) -> BTreeMap<String, String> {
    c.send(&cmd_bytes(&[b"INFO", section.as_bytes()]));
    let Value::Bulk(text) = parse(&c.read_reply()) else {
        panic!("INFO answered no bulk string")
    };
    String::from_utf8(text)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `cmdstat_*` lines without the times: `calls=..,rejected_calls=..,failed_calls=..`.
fn counts(stats: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    stats
        .iter()
        .filter(|(k, _)| k.starts_with("cmdstat_"))
        .map(|(k, v)| {
            let kept: Vec<&str> = v.split(',').filter(|f| !f.starts_with("usec")).collect();
            (k.clone(), kept.join(","))
        })
        .collect()
}

#[test]
fn commandstats_and_errorstats_answer_as_redis() {
    let Some((redis, strata)) = setup("commandstats_and_errorstats_answer_as_redis") else {
        return;
    };
    let mut b = Both::connect(&redis, &strata);
    // As redis-server's start was checked.
    b.strata_only(&[b"PING".to_vec()]);
    for c in [
        &["SET", "k", "v"][..],
        &["GET", "k"],
        &["GET"],
        &["LPUSH", "k", "x"],
        &["NOSUCH"],
        &["CLIENT", "NOSUCH"],
        &["CLIENT", "GETNAME", "x"],
        &["CLIENT", "SETNAME", "me"],
        &["MULTI"],
        &["INCR", "n"],
        &["INCR", "k"],
        &["EXEC"],
        &["MULTI"],
        &["GET"],
        &["EXEC"],
        &["AUTH", "x"],
        // Blocking commands refused as they start: failed calls too.
        &["BLPOP", "nolist", "-1"],
        &["BLPOP", "k", "0.01"],
        &["BLPOP", "nolist", "0.01"],
        &["WAIT", "x", "0"],
    ] {
        b.same(c);
    }
    let r = info(&mut b.redis, "commandstats");
    let s = info(&mut b.strata, "commandstats");
    assert_eq!(counts(&s), counts(&r), "INFO commandstats, without the times");
    for (name, line) in &s {
        assert!(
            line.contains(",usec=") && line.contains(",usec_per_call="),
            "{name}:{line}"
        );
    }
    assert_eq!(info(&mut b.strata, "errorstats"), info(&mut b.redis, "errorstats"));
    let everything = info(&mut b.strata, "everything");
    for field in ["cmdstat_get", "errorstat_ERR", "total_error_replies"] {
        assert!(everything.contains_key(field), "INFO everything lacks {field}");
    }
    assert!(
        !info(&mut b.strata, "").contains_key("cmdstat_get"),
        "not in the default set"
    );
    let stats = info(&mut b.strata, "stats");
    let redis_stats = info(&mut b.redis, "stats");
    assert_eq!(stats["total_error_replies"], redis_stats["total_error_replies"]);
    // What dashboards read, measured: traffic both ways, the peak of memory.
    for field in [
        "instantaneous_ops_per_sec",
        "total_net_input_bytes",
        "total_net_output_bytes",
        "instantaneous_input_kbps",
        "instantaneous_output_kbps",
    ] {
        assert!(stats.contains_key(field), "INFO stats lacks {field}");
    }
    let n = |m: &BTreeMap<String, String>, f: &str| m[f].parse::<u64>().unwrap();
    assert!(n(&stats, "total_net_input_bytes") > 100, "{stats:?}");
    assert!(n(&stats, "total_net_output_bytes") > 100, "{stats:?}");
    let memory = info(&mut b.strata, "memory");
    assert!(
        n(&memory, "used_memory_peak") >= n(&memory, "used_memory"),
        "{memory:?}"
    );
    b.same(&["DEL", "k"]);
    let after = info(&mut b.strata, "memory");
    assert_eq!(after["used_memory_peak"], memory["used_memory_peak"], "the peak stays");
    // The rate: a burst of commands shows in the next samples (every 100 ms).
    let burst: Vec<u8> = (0..2000).flat_map(|_| cmd_bytes(&[b"PING"])).collect();
    b.strata.send(&burst);
    for _ in 0..2000 {
        b.strata.read_reply();
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(n(&info(&mut b.strata, "stats"), "instantaneous_ops_per_sec") > 0);

    // CONFIG RESETSTAT starts INFO's counters again, as in Redis.
    b.same(&["CONFIG", "RESETSTAT"]);
    for c in [
        &["SET", "k", "v"][..],
        &["GET", "k"],
        &["GET", "nokey"],
        &["GET"],
        &["NOSUCH"],
    ] {
        b.same(c);
    }
    let r = info(&mut b.redis, "commandstats");
    let s = info(&mut b.strata, "commandstats");
    assert_eq!(counts(&s), counts(&r), "INFO commandstats after CONFIG RESETSTAT");
    assert_eq!(
        info(&mut b.strata, "errorstats"),
        info(&mut b.redis, "errorstats"),
        "INFO errorstats after CONFIG RESETSTAT"
    );
    let (s, r) = (info(&mut b.strata, "stats"), info(&mut b.redis, "stats"));
    for field in ["keyspace_hits", "keyspace_misses", "total_error_replies"] {
        assert_eq!(s[field], r[field], "{field} after CONFIG RESETSTAT");
    }
    assert!(
        n(&s, "total_net_input_bytes") < 1000 && n(&s, "total_commands_processed") < 20,
        "traffic and commands counted from the reset: {s:?}"
    );
}

#[test]
fn long_inline_commands_answer_as_redis() {
    let Some((redis, strata)) = setup("long_inline_commands_answer_as_redis") else {
        return;
    };
    // Sent at once: both take a line a little past 64 KiB, both refuse a much longer one
    // (between, which read brings the newline decides: see docs/state.md).
    for len in [60_000, 70_000, 80_000, 300_000] {
        let mut line = b"SET k ".to_vec();
        line.extend(std::iter::repeat_n(b'v', len));
        line.extend_from_slice(b"\r\nSTRLEN k\r\n");
        let mut replies = Vec::new();
        for addr in [redis.addr, strata.addr] {
            let mut c = Client::connect(addr);
            c.send(&line);
            let first = c.read_reply();
            let second = if first.starts_with(b"-") {
                Vec::new()
            } else {
                c.read_reply()
            };
            replies.push((show(&first), show(&second)));
        }
        assert_eq!(
            replies[1], replies[0],
            "an inline SET of {len} bytes (redis, then strata)"
        );
    }
}

#[test]
fn scan_reads_cursors_as_unsigned_64_bit() {
    let Some((redis, strata)) = setup("scan_reads_cursors_as_unsigned_64_bit") else {
        return;
    };
    let mut b = Both::connect(&redis, &strata);
    for c in [
        &["SCAN", "18446744073709551616"][..],
        &["SCAN", "99999999999999999999"],
        &["SCAN", "0x10"],
        &["SSCAN", "s", "18446744073709551616"],
    ] {
        b.same(c);
    }
    b.same(&["MSET", "a", "1", "b", "2", "c", "3"]);
    // A cursor's bits above the table's size are no position: 2^63 starts a scan
    // anew in Redis; u64::MAX is the last step of one (which keys it finds depends on
    // the layout: only its next cursor, 0, is compared).
    b.full_scan_of(&[b"SCAN".to_vec()], &[]);
    let args = [
        b"SCAN".to_vec(),
        b"18446744073709551615".to_vec(),
        b"COUNT".to_vec(),
        b"1000".to_vec(),
    ];
    let (r, s) = b.send(&args);
    let (Value::Array(r), Value::Array(s)) = (parse(&r), parse(&s)) else {
        panic!("SCAN 18446744073709551615 answered no array");
    };
    assert_eq!(s[0], r[0], "SCAN 18446744073709551615: the next cursor");
    for cursor in ["9223372036854775808", "4294967296"] {
        let args = [
            b"SCAN".to_vec(),
            cursor.as_bytes().to_vec(),
            b"COUNT".to_vec(),
            b"1000".to_vec(),
        ];
        let (r, s) = b.send(&args);
        let (Value::Array(r), Value::Array(s)) = (parse(&r), parse(&s)) else {
            panic!("SCAN {cursor} answered no array");
        };
        assert_eq!(s[0], r[0], "SCAN {cursor}: the next cursor");
        let (Value::Array(rk), Value::Array(sk)) = (&r[1], &s[1]) else {
            panic!("SCAN {cursor}: no keys array")
        };
        assert_eq!(super::sorted(sk), super::sorted(rk), "SCAN {cursor}: the keys");
    }
}
