//! The list commands against redis-server, hand-written: every command's edge cases and
//! errors, WRONGTYPE both ways, OBJECT ENCODING, the removal of an emptied list,
//! deadlines kept by list writes, WATCH on a list, and the blocking commands with two
//! connections (served when another pushes, FIFO among waiters, several keys, timeouts,
//! inside MULTI).

use super::*;

#[test]
fn lists_answer_as_redis() {
    let Some((redis, strata)) = setup("lists_answer_as_redis") else {
        return;
    };
    let mut b = Both::connect(&redis, &strata);
    let long = "x".repeat(100);
    for resp3 in [false, true] {
        if resp3 {
            b.both(&["HELLO", "3"]);
        }
        for c in [
            &["FLUSHALL"][..],
            &["RPUSH", "l", "a", "b", "c"],
            &["LPUSH", "l", "z", "y"],
            &["LRANGE", "l", "0", "-1"],
            &["LLEN", "l"],
            &["TYPE", "l"],
            &["OBJECT", "ENCODING", "l"],
            &["RPUSH", "l"],
            &["LPUSH"],
            &["RPUSHX", "l", "d", "e"],
            &["LPUSHX", "nokey", "a"],
            &["RPUSHX", "nokey", "a", "b"],
            &["EXISTS", "nokey"],
            &["LPUSHX", "l"],
            // LRANGE's indexes.
            &["LRANGE", "l", "1", "2"],
            &["LRANGE", "l", "-3", "-1"],
            &["LRANGE", "l", "-100", "100"],
            &["LRANGE", "l", "5", "2"],
            &["LRANGE", "l", "100", "200"],
            &["LRANGE", "l", "0", "-100"],
            &["LRANGE", "l", "x", "1"],
            &["LRANGE", "l", "0", "1.5"],
            &["LRANGE", "nokey", "0", "-1"],
            &["LRANGE", "nokey", "x", "1"],
            &["LRANGE", "l", "9223372036854775807", "-9223372036854775808"],
            &["LRANGE", "l", "-9223372036854775808", "9223372036854775807"],
            &["LRANGE", "l", "0"],
            // LINDEX, LSET.
            &["LINDEX", "l", "0"],
            &["LINDEX", "l", "-1"],
            &["LINDEX", "l", "100"],
            &["LINDEX", "l", "-100"],
            &["LINDEX", "l", "x"],
            &["LINDEX", "nokey", "x"],
            &["LINDEX", "nokey", "0"],
            &["LINDEX", "l", "-9223372036854775808"],
            &["LSET", "l", "0", "first"],
            &["LSET", "l", "-1", "last"],
            &["LSET", "l", "100", "x"],
            &["LSET", "l", "x", "y"],
            &["LSET", "nokey", "0", "x"],
            &["LSET", "nokey", "x", "x"],
            &["LRANGE", "l", "0", "-1"],
            // LPOP, RPOP with and without a count.
            &["LPOP", "l"],
            &["RPOP", "l"],
            &["LPOP", "l", "2"],
            &["RPOP", "l", "0"],
            &["LPOP", "l", "-1"],
            &["LPOP", "l", "x"],
            &["LPOP", "l", "1", "2"],
            &["LPOP", "nokey"],
            &["LPOP", "nokey", "0"],
            &["RPOP", "nokey", "3"],
            &["RPOP", "l", "100"],
            &["EXISTS", "l"],
            &["LLEN", "l"],
            &["LLEN", "nokey"],
            // LREM, LTRIM.
            &["RPUSH", "r", "a", "b", "a", "c", "a", "b", "a"],
            &["LREM", "r", "2", "a"],
            &["LRANGE", "r", "0", "-1"],
            &["LREM", "r", "-1", "a"],
            &["LRANGE", "r", "0", "-1"],
            &["LREM", "r", "0", "b"],
            &["LREM", "r", "0", "zz"],
            &["LREM", "r", "x", "a"],
            &["LREM", "nokey", "1", "a"],
            &["LREM", "r", "0", "a"],
            &["LREM", "r", "0", "c"],
            &["EXISTS", "r"],
            &["RPUSH", "t", "0", "1", "2", "3", "4", "5", "6"],
            &["LTRIM", "t", "1", "-2"],
            &["LRANGE", "t", "0", "-1"],
            &["LTRIM", "t", "-100", "100"],
            &["LTRIM", "t", "x", "1"],
            &["LTRIM", "nokey", "0", "1"],
            &["LTRIM", "t", "2", "2"],
            &["LRANGE", "t", "0", "-1"],
            &["LTRIM", "t", "5", "1"],
            &["EXISTS", "t"],
            // LINSERT.
            &["RPUSH", "i", "a", "b", "a"],
            &["LINSERT", "i", "BEFORE", "a", "x"],
            &["LINSERT", "i", "after", "a", "y"],
            &["LINSERT", "i", "AFTER", "zz", "y"],
            &["LINSERT", "i", "MIDDLE", "a", "y"],
            &["LINSERT", "nokey", "BEFORE", "a", "y"],
            &["LINSERT", "nokey", "MIDDLE", "a", "y"],
            &["LINSERT", "i", "BEFORE", "a"],
            &["LRANGE", "i", "0", "-1"],
            // LPOS.
            &["DEL", "p"],
            &["RPUSH", "p", "a", "b", "c", "a", "b", "a", "c"],
            &["LPOS", "p", "a"],
            &["LPOS", "p", "c"],
            &["LPOS", "p", "zz"],
            &["LPOS", "p", "a", "RANK", "2"],
            &["LPOS", "p", "a", "RANK", "-1"],
            &["LPOS", "p", "a", "RANK", "-3"],
            &["LPOS", "p", "a", "RANK", "4"],
            &["LPOS", "p", "a", "RANK", "0"],
            &["LPOS", "p", "a", "RANK", "x"],
            &["LPOS", "p", "a", "RANK"],
            &["LPOS", "p", "a", "COUNT", "0"],
            &["LPOS", "p", "a", "COUNT", "2"],
            &["LPOS", "p", "a", "COUNT", "2", "RANK", "-1"],
            &["LPOS", "p", "a", "COUNT", "0", "RANK", "2"],
            &["LPOS", "p", "a", "COUNT", "-1"],
            &["LPOS", "p", "a", "COUNT", "x"],
            &["LPOS", "p", "zz", "COUNT", "3"],
            &["LPOS", "p", "a", "MAXLEN", "3"],
            &["LPOS", "p", "a", "MAXLEN", "3", "COUNT", "0"],
            &["LPOS", "p", "c", "MAXLEN", "2"],
            &["LPOS", "p", "c", "MAXLEN", "2", "RANK", "-1"],
            &["LPOS", "p", "a", "MAXLEN", "-1"],
            &["LPOS", "p", "a", "MAXLEN", "x"],
            &["LPOS", "p", "a", "FOO", "1"],
            &["LPOS", "p", "a", "rank", "1", "count", "1", "maxlen", "0", "rank", "2"],
            &["LPOS", "p", "a", "RANK", "-9223372036854775808"],
            &["LPOS", "p", "a", "RANK", "-9223372036854775808", "COUNT", "1"],
            &["LPOS", "p", "a", "RANK", "9223372036854775807"],
            &["LPOS", "nokey", "a"],
            &["LPOS", "nokey", "a", "COUNT", "1"],
            &["LPOS", "nokey", "a", "RANK", "0"],
            &["LPOS", "p"],
            // LMOVE, RPOPLPUSH.
            &["DEL", "src", "dst"],
            &["RPUSH", "src", "1", "2", "3"],
            &["LMOVE", "src", "dst", "LEFT", "RIGHT"],
            &["LMOVE", "src", "dst", "right", "left"],
            &["LMOVE", "src", "dst", "UP", "LEFT"],
            &["LMOVE", "src", "dst", "LEFT", "DOWN"],
            &["LMOVE", "nokey", "dst", "LEFT", "LEFT"],
            &["LMOVE", "nokey", "dst", "UP", "LEFT"],
            &["LRANGE", "dst", "0", "-1"],
            &["RPOPLPUSH", "src", "dst"],
            &["EXISTS", "src"],
            &["RPOPLPUSH", "src", "dst"],
            &["RPOPLPUSH", "dst", "dst"],
            &["LMOVE", "dst", "dst", "LEFT", "RIGHT"],
            &["LRANGE", "dst", "0", "-1"],
            &["RPUSH", "one", "x"],
            &["EXPIRE", "one", "1000"],
            &["LMOVE", "one", "one", "LEFT", "RIGHT"],
            &["TTL", "one"],
            // LMPOP.
            &["DEL", "m1", "m2"],
            &["RPUSH", "m2", "a", "b", "c"],
            &["LMPOP", "2", "m1", "m2", "LEFT"],
            &["LMPOP", "2", "m1", "m2", "RIGHT", "COUNT", "5"],
            &["LMPOP", "2", "m1", "m2", "RIGHT"],
            &["LMPOP", "0", "m1", "LEFT"],
            &["LMPOP", "-1", "m1", "LEFT"],
            &["LMPOP", "x", "m1", "LEFT"],
            &["LMPOP", "1", "m1", "MIDDLE"],
            &["LMPOP", "1", "m1", "LEFT", "COUNT", "0"],
            &["LMPOP", "1", "m1", "LEFT", "COUNT", "x"],
            &["LMPOP", "1", "m1", "LEFT", "COUNT"],
            &["LMPOP", "1", "m1", "LEFT", "COUNT", "1", "COUNT", "1"],
            &["LMPOP", "1", "m1", "LEFT", "FOO"],
            &["LMPOP", "3", "m1", "m2", "LEFT"],
            &["LMPOP", "9223372036854775807", "m1", "LEFT"],
            &["LMPOP", "1", "m1"],
            // Long elements, and binary ones.
            &["RPUSH", "long", &long, "", "\u{0}\r\n"],
            &["LRANGE", "long", "0", "-1"],
            &["OBJECT", "ENCODING", "long"],
            &["LPOS", "long", ""],
            // Deadlines are kept by writes; an emptied list takes its deadline away.
            &["DEL", "e"],
            &["RPUSH", "e", "a"],
            &["EXPIRE", "e", "1000"],
            &["RPUSH", "e", "b"],
            &["LSET", "e", "0", "c"],
            &["TTL", "e"],
            &["LPOP", "e", "2"],
            &["RPUSH", "e", "a"],
            &["TTL", "e"],
            // Key commands on lists.
            &["RPUSH", "k", "1", "2"],
            &["RENAME", "k", "k2"],
            &["LRANGE", "k2", "0", "-1"],
            &["COPY", "k2", "k3"],
            &["RPUSH", "k3", "3"],
            &["LRANGE", "k2", "0", "-1"],
            &["LRANGE", "k3", "0", "-1"],
            &["OBJECT", "ENCODING", "k3"],
            &["DEL", "k2", "k3"],
        ] {
            b.same(c);
        }
        // WRONGTYPE both ways.
        b.same(&["SET", "s", "v"]);
        b.same(&["HSET", "h", "f", "v"]);
        b.same(&["RPUSH", "wl", "a"]);
        for key in ["s", "h"] {
            for c in [
                &["LPUSH", key, "a"][..],
                &["RPUSHX", key, "a"],
                &["LPOP", key],
                &["RPOP", key, "0"],
                &["LRANGE", key, "0", "-1"],
                &["LINDEX", key, "0"],
                &["LSET", key, "0", "a"],
                &["LLEN", key],
                &["LREM", key, "0", "a"],
                &["LTRIM", key, "0", "1"],
                &["LINSERT", key, "BEFORE", "a", "b"],
                &["LPOS", key, "a"],
                &["LMOVE", key, "wl", "LEFT", "LEFT"],
                &["LMOVE", "wl", key, "LEFT", "LEFT"],
                &["RPOPLPUSH", "wl", key],
                &["LMPOP", "2", "nokey", key, "LEFT"],
                &["LMPOP", "2", "wl", key, "LEFT"],
                &["BLPOP", key, "0.01"],
                &["BLMOVE", "wl", key, "LEFT", "LEFT", "0.01"],
                &["LRANGE", "wl", "0", "-1"],
            ] {
                b.same(c);
            }
        }
        b.same(&["RPUSH", "wl", "a"]);
        for c in [
            &["GET", "wl"][..],
            &["SET", "wl", "x", "GET"],
            &["INCR", "wl"],
            &["INCRBYFLOAT", "wl", "x"],
            &["APPEND", "wl", "x"],
            &["STRLEN", "wl"],
            &["HSET", "wl", "f", "v"],
            &["HGET", "wl", "f"],
            &["GETDEL", "wl"],
            &["MGET", "wl", "s"],
            &["SCAN", "0", "TYPE", "list"],
            &["SET", "wl", "x"],
            &["TYPE", "wl"],
        ] {
            b.same(c);
        }
        // A list in a transaction, and WATCH.
        b.same(&["DEL", "w"]);
        b.same(&["WATCH", "w"]);
        let mut other = Both::connect(&redis, &strata);
        other.same(&["RPUSH", "w", "x"]);
        b.same(&["MULTI"]);
        b.same(&["LPUSH", "w", "y"]);
        b.same(&["EXEC"]);
        b.same(&["WATCH", "w"]);
        other.same(&["LRANGE", "w", "0", "-1"]);
        other.same(&["LINDEX", "w", "0"]);
        b.same(&["MULTI"]);
        for c in [
            &["LPUSH", "w", "y"][..],
            &["RPOPLPUSH", "w", "w2"],
            &["LMPOP", "2", "w", "w2", "RIGHT", "COUNT", "2"],
            &["BLPOP", "nokey", "0"],
            &["BLMOVE", "nokey", "w", "LEFT", "LEFT", "0"],
            &["BRPOPLPUSH", "w2", "w", "0"],
            &["BLMPOP", "0", "2", "nokey", "w", "LEFT"],
            &["BLPOP", "w", "x"],
            &["LRANGE", "w", "0", "-1"],
        ] {
            b.same(c);
        }
        b.same(&["EXEC"]);
    }
}

/// Sends `args` to both servers on this pair of connections without reading a reply.
pub(super) fn send_both(b: &mut Both, args: &[&str]) {
    let refs: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    let c = cmd_bytes(&refs);
    b.redis.send(&c);
    b.strata.send(&c);
}

/// Reads one reply from each server; they must be the same.
pub(super) fn read_same(b: &mut Both, what: &str) -> Vec<u8> {
    let (r, s) = (b.redis.read_reply(), b.strata.read_reply());
    assert_eq!(show(&s), show(&r), "{what}");
    r
}

/// Waits until each server has `n` blocked clients.
pub(super) fn blocked_clients(b: &mut Both, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let want = format!("blocked_clients:{n}\r\n");
    loop {
        let (r, s) = b.send(&[b"INFO".to_vec(), b"clients".to_vec()]);
        let has = |raw: &[u8]| String::from_utf8_lossy(raw).contains(&want);
        if has(&r) && has(&s) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never {n} blocked clients: {} / {}",
            show(&r),
            show(&s)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn blocking_commands_answer_as_redis() {
    let Some((redis, strata)) = setup("blocking_commands_answer_as_redis") else {
        return;
    };
    let mut a = Both::connect(&redis, &strata);
    let mut c = Both::connect(&redis, &strata);
    let mut pusher = Both::connect(&redis, &strata);
    for resp3 in [false, true] {
        if resp3 {
            a.both(&["HELLO", "3"]);
            c.both(&["HELLO", "3"]);
        }
        pusher.same(&["FLUSHALL"]);
        // Errors and immediate answers.
        for cmd in [
            &["BLPOP", "q", "x"][..],
            &["BLPOP", "q", "-1"],
            &["BLPOP", "q", "inf"],
            &["BLPOP", "q", "nan"],
            &["BLPOP", "q", " 1"],
            &["BLPOP", "q"],
            &["BRPOP", "q", "-0.5"],
            &["BLMOVE", "q", "d", "UP", "LEFT", "x"],
            &["BLMOVE", "q", "d", "LEFT", "LEFT", "x"],
            &["BLMOVE", "q", "d", "LEFT", "LEFT"],
            &["BRPOPLPUSH", "q", "d", "-1"],
            &["BLMPOP", "x", "1", "q", "LEFT"],
            &["BLMPOP", "0", "0", "q", "LEFT"],
            &["BLMPOP", "0", "1", "q", "MIDDLE"],
            &["BLMPOP", "0", "1", "q", "LEFT", "COUNT", "0"],
            &["BLMPOP", "0", "2", "q", "LEFT"],
            &["RPUSH", "q", "1", "2", "3"],
            &["BLPOP", "nokey", "q", "0"],
            &["BRPOP", "q", "0"],
            &["BLMOVE", "q", "d", "LEFT", "RIGHT", "0"],
            &["BRPOPLPUSH", "d", "q", "0"],
            &["BLMPOP", "0", "2", "nokey", "q", "RIGHT", "COUNT", "10"],
            &["EXISTS", "q"],
        ] {
            a.same(cmd);
        }
        // Timeouts read as Redis reads them (a string key answers at once what passed).
        a.same(&["SET", "str", "v"]);
        for t in [
            "0.1",
            "-0.001",
            "-0.002",
            "-0",
            "1e-4000",
            "-1e-4000",
            "0x10",
            "9223372036854775.807",
            "9223372036854775.808",
            "92233720368547758",
            "1e18",
            "+5",
            "5.",
            ".5",
            "1e",
        ] {
            a.same(&["BLPOP", "str", t]);
        }
        // Timeouts: a null array.
        for cmd in [
            &["BLPOP", "q", "0.1"][..],
            &["BRPOP", "q", "q2", "0.05"],
            &["BLMOVE", "q", "d", "LEFT", "LEFT", "0.05"],
            &["BRPOPLPUSH", "q", "d", "0.05"],
            &["BLMPOP", "0.05", "1", "q", "LEFT"],
        ] {
            a.same(cmd);
        }
        // Blocked, then served by a push from another connection.
        send_both(&mut a, &["BLPOP", "q1", "q2", "0"]);
        blocked_clients(&mut pusher, 1);
        pusher.same(&["RPUSH", "q2", "x", "y"]);
        read_same(&mut a, "BLPOP served by the second key");
        pusher.same(&["LRANGE", "q2", "0", "-1"]);
        // Two waiters on one key: the first blocked is served first.
        send_both(&mut a, &["BRPOP", "f", "0"]);
        blocked_clients(&mut pusher, 1);
        send_both(&mut c, &["BLPOP", "f", "10"]);
        blocked_clients(&mut pusher, 2);
        pusher.same(&["LPUSH", "f", "one"]);
        read_same(&mut a, "the first waiter");
        pusher.same(&["LPUSH", "f", "two"]);
        read_same(&mut c, "the second waiter");
        // BLMOVE waiting; the destination's own waiter is served by the move.
        send_both(&mut a, &["BLMOVE", "src", "dst", "RIGHT", "LEFT", "0"]);
        blocked_clients(&mut pusher, 1);
        send_both(&mut c, &["BLPOP", "dst", "0"]);
        blocked_clients(&mut pusher, 2);
        pusher.same(&["RPUSH", "src", "moved"]);
        read_same(&mut a, "BLMOVE");
        read_same(&mut c, "BLPOP on BLMOVE's destination");
        // BLMPOP and BRPOPLPUSH waiting, served by RENAME and LMOVE.
        send_both(&mut a, &["BLMPOP", "0", "2", "m1", "m2", "LEFT", "COUNT", "5"]);
        blocked_clients(&mut pusher, 1);
        pusher.same(&["RPUSH", "tmp", "a", "b", "c"]);
        pusher.same(&["RENAME", "tmp", "m2"]);
        read_same(&mut a, "BLMPOP served by RENAME");
        send_both(&mut a, &["BRPOPLPUSH", "b1", "b2", "0"]);
        blocked_clients(&mut pusher, 1);
        pusher.same(&["RPUSH", "tmp", "z"]);
        pusher.same(&["LMOVE", "tmp", "b1", "LEFT", "LEFT"]);
        read_same(&mut a, "BRPOPLPUSH served by LMOVE");
        pusher.same(&["LRANGE", "b2", "0", "-1"]);
        // Served by a transaction's push, after EXEC.
        send_both(&mut a, &["BLPOP", "tx", "0"]);
        blocked_clients(&mut pusher, 1);
        pusher.same(&["MULTI"]);
        pusher.same(&["RPUSH", "tx", "1", "2"]);
        pusher.same(&["LPOP", "tx"]);
        pusher.same(&["EXEC"]);
        read_same(&mut a, "BLPOP served after EXEC");
        // A waiter that times out while another key gets elements later.
        send_both(&mut a, &["BLPOP", "late", "0.1"]);
        read_same(&mut a, "timed out");
        pusher.same(&["RPUSH", "late", "kept"]);
        pusher.same(&["LRANGE", "late", "0", "-1"]);
        // Commands pipelined behind a blocked one run after it.
        send_both(&mut a, &["BLPOP", "pipe", "0"]);
        send_both(&mut a, &["LLEN", "pipe"]);
        blocked_clients(&mut pusher, 1);
        pusher.same(&["RPUSH", "pipe", "a", "b"]);
        read_same(&mut a, "BLPOP before the pipelined command");
        read_same(&mut a, "the pipelined LLEN");
        blocked_clients(&mut pusher, 0);
    }
}

#[test]
fn a_client_gone_while_blocked_leaves_the_wait() {
    let Some((redis, strata)) = setup("a_client_gone_while_blocked_leaves_the_wait") else {
        return;
    };
    let mut pusher = Both::connect(&redis, &strata);
    {
        let mut gone = Both::connect(&redis, &strata);
        send_both(&mut gone, &["BLPOP", "gq", "0"]);
        blocked_clients(&mut pusher, 1);
    }
    blocked_clients(&mut pusher, 0);
    pusher.same(&["RPUSH", "gq", "x"]);
    pusher.same(&["LRANGE", "gq", "0", "-1"]);
}
