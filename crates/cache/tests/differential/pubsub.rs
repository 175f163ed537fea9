//! Pub/sub and AUTH against redis-server, hand-written: subscribe, publish and
//! unsubscribe with three connections (channels and patterns), PUBSUB introspection,
//! the subscribed context's errors and PING, RESP2 arrays and RESP3 push frames, a
//! subscription inside MULTI, RESET and a disconnect dropping subscriptions; and, against
//! `--requirepass`, the NOAUTH / WRONGPASS / OK sequences of AUTH and HELLO.
//!
//! Compared looser (documented in docs/state.md): PUBSUB CHANNELS and an UNSUBSCRIBE
//! without arguments of several channels list a hash table in Redis, so their order
//! is not compared.

use super::*;
use strata_cache::{CacheConfig, RespConfig};

/// Sends `args` to both servers on this pair of connections without reading a reply.
fn send(b: &mut Both, args: &[&str]) {
    let refs: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    let c = cmd_bytes(&refs);
    b.redis.send(&c);
    b.strata.send(&c);
}

/// Reads `n` replies (or pushes) from each server; they must be the same, byte for byte.
fn read_same(b: &mut Both, n: usize, what: &str) {
    for _ in 0..n {
        let (r, s) = (b.redis.read_reply(), b.strata.read_reply());
        assert_eq!(show(&s), show(&r), "{what}");
    }
}

/// Sends `args`, then reads `n` replies that must be the same.
fn same_n(b: &mut Both, args: &[&str], n: usize) {
    send(b, args);
    read_same(b, n, &format!("{args:?}"));
}

/// Reads `n` replies from each server; the same replies in any order.
fn read_same_unordered(b: &mut Both, n: usize, what: &str) {
    let (mut r, mut s): (Vec<Vec<u8>>, Vec<Vec<u8>>) = (Vec::new(), Vec::new());
    for _ in 0..n {
        r.push(b.redis.read_reply());
        s.push(b.strata.read_reply());
    }
    // Counts fall one by one whatever the order: compare without them.
    let strip = |v: &mut Vec<Vec<u8>>| {
        for x in v.iter_mut() {
            let end = x.len() - 2;
            let colon = x[..end].iter().rposition(|&c| c == b':').unwrap_or(end);
            x.truncate(colon);
        }
        v.sort();
    };
    strip(&mut r);
    strip(&mut s);
    assert_eq!(s, r, "{what}");
}

/// Sends `args`; the replies must be arrays of the same elements in any order.
fn same_sorted(b: &mut Both, args: &[&str]) {
    send(b, args);
    let (r, s) = (b.redis.read_reply(), b.strata.read_reply());
    match (parse(&r), parse(&s)) {
        (Value::Array(r), Value::Array(s)) => assert_eq!(sorted(&s), sorted(&r), "{args:?}"),
        (r, s) => panic!("{args:?}: {r:?} / {s:?}"),
    }
}

/// Waits until NUMSUB of `channel` is `n` on both (a server drops a closed client's
/// subscriptions when it notices the close).
fn numsub(b: &mut Both, channel: &str, n: i64) {
    until(b, &["PUBSUB", "NUMSUB", channel], n)
}

/// Waits until the reply to `args` ends in the integer `n` on both.
fn until(b: &mut Both, args: &[&str], n: i64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let want = format!(":{n}\r\n");
    let args: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
    loop {
        let (r, s) = b.send(&args);
        if r.ends_with(want.as_bytes()) && s.ends_with(want.as_bytes()) {
            return;
        }
        assert!(Instant::now() < deadline, "never {n}: {} / {}", show(&r), show(&s));
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn pubsub_answers_as_redis() {
    let Some((redis, strata)) = setup("pubsub_answers_as_redis") else {
        return;
    };
    for resp3 in [false, true] {
        let mut sub = Both::connect(&redis, &strata);
        let mut psub = Both::connect(&redis, &strata);
        let mut publisher = Both::connect(&redis, &strata);
        if resp3 {
            sub.both(&["HELLO", "3"]);
            psub.both(&["HELLO", "3"]);
        }
        // Nobody listens yet.
        publisher.same(&["PUBLISH", "a", "nobody"]);
        publisher.same(&["PUBSUB", "NUMPAT"]);
        publisher.same(&["PUBSUB", "CHANNELS"]);
        publisher.same(&["PUBSUB", "NUMSUB"]);
        same_n(&mut sub, &["UNSUBSCRIBE"], 1);
        same_n(&mut sub, &["PUNSUBSCRIBE"], 1);
        same_n(&mut sub, &["SUBSCRIBE", "a", "b", "a"], 3);
        sub.same(&["SUBSCRIBE"]);
        sub.same(&["PING"]);
        sub.same(&["PING", "hi"]);
        sub.same(&["PING", "a", "b"]);
        // Only some commands in a RESP2 subscribed context; anything in RESP3.
        sub.same(&["GET", "k"]);
        if resp3 {
            sub.both(&["CLIENT", "ID"]); // ids differ
        } else {
            sub.same(&["CLIENT", "ID"]);
        }
        // RESP3: its own message, then the count.
        same_n(&mut sub, &["PUBLISH", "a", "self"], if resp3 { 2 } else { 1 });
        sub.same(&["NOSUCHCOMMAND"]);
        sub.same(&["GET"]);
        publisher.same(&["PUBLISH", "a", "hello"]);
        read_same(&mut sub, 1, "the message");
        publisher.same(&["PUBLISH", "b", ""]);
        read_same(&mut sub, 1, "an empty message");
        same_n(&mut psub, &["PSUBSCRIBE", "a*", "h?llo", "a*"], 3);
        publisher.same(&["PUBLISH", "a", "both"]);
        read_same(&mut sub, 1, "a's message");
        read_same(&mut psub, 1, "a*'s pmessage");
        publisher.same(&["PUBLISH", "hello", "world"]);
        read_same(&mut psub, 1, "h?llo's pmessage");
        publisher.same(&["PUBLISH", "hallo", "welt"]);
        read_same(&mut psub, 1, "h?llo's pmessage");
        publisher.same(&["PUBLISH", "nobody", "x"]);
        // Introspection.
        publisher.same(&["PUBSUB", "NUMSUB", "a", "b", "c", "a"]);
        publisher.same(&["PUBSUB", "NUMPAT"]);
        publisher.same(&["PUBSUB", "CHANNELS", "a"]);
        same_sorted(&mut publisher, &["PUBSUB", "CHANNELS", "[ab]"]);
        publisher.same(&["PUBSUB", "CHANNELS", "z*"]);
        same_sorted(&mut publisher, &["PUBSUB", "CHANNELS"]);
        for c in [
            &["PUBSUB", "CHANNELS", "a", "b"][..],
            &["PUBSUB", "NUMPAT", "x"],
            &["PUBSUB", "SHARDCHANNELS"],
            &["PUBSUB", "SHARDNUMSUB", "a"],
            &["PUBSUB", "HELP"],
            &["PUBSUB", "NOSUCH"],
            &["PUBSUB"],
            &["PUBLISH", "a"],
            &["PSUBSCRIBE"],
        ] {
            publisher.same(c);
        }
        // A second subscriber to a channel; both receive, in subscription order.
        let mut late = Both::connect(&redis, &strata);
        same_n(&mut late, &["SUBSCRIBE", "a"], 1);
        publisher.same(&["PUBLISH", "a", "two"]);
        read_same(&mut sub, 1, "first subscriber");
        read_same(&mut late, 1, "second subscriber");
        read_same(&mut psub, 1, "pattern subscriber");
        publisher.same(&["PUBSUB", "NUMSUB", "a"]);
        // A subscriber that goes away is forgotten.
        drop(late);
        numsub(&mut publisher, "a", 1);
        // Unsubscribing.
        same_n(&mut sub, &["UNSUBSCRIBE", "a", "nosuch"], 2);
        publisher.same(&["PUBLISH", "a", "gone"]);
        read_same(&mut psub, 1, "pattern still subscribed");
        same_n(&mut sub, &["UNSUBSCRIBE"], 1);
        same_n(&mut sub, &["UNSUBSCRIBE"], 1);
        sub.same(&["GET", "k"]);
        sub.same(&["PING"]);
        same_n(&mut psub, &["PUNSUBSCRIBE", "h?llo"], 1);
        same_n(&mut psub, &["SUBSCRIBE", "x", "y"], 2);
        same_n(&mut psub, &["PSUBSCRIBE", "p1", "p2"], 2);
        same_n(&mut psub, &["PUNSUBSCRIBE"], 3);
        send(&mut psub, &["UNSUBSCRIBE"]);
        read_same_unordered(&mut psub, 2, "UNSUBSCRIBE of two channels");
        same_n(&mut psub, &["PUNSUBSCRIBE"], 1);
        publisher.same(&["PUBSUB", "NUMPAT"]);
        // Inside a transaction; RESET drops subscriptions; QUIT while subscribed.
        sub.same(&["MULTI"]);
        sub.same(&["SUBSCRIBE", "t"]);
        sub.same(&["PUBLISH", "t", "from a transaction"]);
        sub.same(&["EXEC"]);
        // Its own message came inside EXEC's array, as Redis writes it: one more.
        read_same(&mut sub, 1, "EXEC's last reply");
        if !resp3 {
            // MULTI and EXEC refused while subscribed (EXEC's as an EXECABORT).
            sub.same(&["MULTI"]);
            sub.same(&["PUBLISH", "t", "inside"]);
            sub.same(&["UNSUBSCRIBE"]);
            sub.same(&["SUBSCRIBE", "t"]);
            sub.same(&["EXEC"]);
        }
        sub.same(&["PING"]);
        sub.same(&["RESET"]);
        publisher.same(&["PUBSUB", "NUMSUB", "t"]);
        sub.same(&["GET", "k"]);
        if resp3 {
            sub.both(&["HELLO", "3"]);
        }
        sub.same(&["MULTI"]);
        sub.same(&["SUBSCRIBE", "t"]);
        sub.same(&["PUBLISH", "t", "inside"]);
        sub.same(&["UNSUBSCRIBE"]);
        same_n(&mut sub, &["EXEC"], 2);
        same_n(&mut sub, &["PSUBSCRIBE", "q*"], 1);
        sub.same(&["QUIT"]);
        until(&mut publisher, &["PUBSUB", "NUMPAT"], 0);
    }
}

#[test]
fn resp3_subscribers_run_any_command() {
    let Some((redis, strata)) = setup("resp3_subscribers_run_any_command") else {
        return;
    };
    let mut sub = Both::connect(&redis, &strata);
    let mut publisher = Both::connect(&redis, &strata);
    sub.both(&["HELLO", "3"]);
    same_n(&mut sub, &["SUBSCRIBE", "c"], 1);
    sub.same(&["SET", "k", "v"]);
    publisher.same(&["PUBLISH", "c", "m1"]);
    // The push comes before the next reply.
    same_n(&mut sub, &["GET", "k"], 2);
    publisher.same(&["PUBLISH", "c", "m2"]);
    // Its own message before the reply.
    same_n(&mut sub, &["PUBLISH", "c", "own"], 3);
    sub.same(&["PING"]);
    // Back to RESP2 while subscribed: the context applies again.
    sub.both(&["HELLO", "2"]);
    sub.same(&["GET", "k"]);
    sub.same(&["PING"]);
    same_n(&mut sub, &["UNSUBSCRIBE"], 1);
    sub.same(&["GET", "k"]);
    // Blocked in BLPOP, a RESP3 subscriber still receives its messages.
    sub.both(&["HELLO", "3"]);
    same_n(&mut sub, &["SUBSCRIBE", "c"], 1);
    send(&mut sub, &["BLPOP", "list", "0"]);
    // A push held back until the answer fails here rather than hanging.
    sub.strata
        .stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (r, s) = publisher.send(&[b"INFO".to_vec(), b"clients".to_vec()]);
        let blocked = |raw: &[u8]| String::from_utf8_lossy(raw).contains("blocked_clients:1\r\n");
        if blocked(&r) && blocked(&s) {
            break;
        }
        assert!(Instant::now() < deadline, "never blocked");
        std::thread::sleep(Duration::from_millis(5));
    }
    publisher.same(&["PUBLISH", "c", "while blocked"]);
    read_same(&mut sub, 1, "a push while blocked");
    publisher.same(&["RPUSH", "list", "x"]);
    read_same(&mut sub, 1, "BLPOP's answer");
    same_n(&mut sub, &["UNSUBSCRIBE"], 1);
    sub.same(&["GET", "k"]);
}

#[test]
fn auth_answers_as_redis() {
    const PASSWORD: &str = "a-long-enough-password";
    let Some(redis) = redis_server_with("auth_answers_as_redis", &["--requirepass", PASSWORD]) else {
        return;
    };
    let strata = Server::start_with(
        2,
        CacheConfig {
            shards: 2,
            ..CacheConfig::default()
        },
        RespConfig {
            password: Some(PASSWORD.into()),
            ..RespConfig::default()
        },
    );
    let mut b = Both::connect(&redis, &strata);
    for c in [
        &["GET", "k"][..],
        &["PING"],
        &["SUBSCRIBE", "c"],
        &["PUBLISH", "c", "x"],
        &["MULTI"],
        &["NOSUCHCOMMAND"],
        &["GET"],
        // A container's subcommand is checked before AUTH is, as arity is.
        &["CLIENT", "NOSUCH"],
        &["CLIENT", "GETNAME", "x"],
        &["OBJECT", "NOSUCH"],
        &["CLIENT", "GETNAME"],
        &["HELLO"],
        &["HELLO", "3"],
        &["HELLO", "3", "SETNAME", "x"],
        &["HELLO", "3", "AUTH", "default"],
        &["HELLO", "4", "AUTH", "default", PASSWORD],
        &["HELLO", "3", "AUTH", "default", "wrong"],
        &["HELLO", "2", "AUTH", "nobody", PASSWORD],
        &["HELLO", "3", "AUTH", "default", "wrong", "SETNAME", "a b"],
        &["AUTH"],
        &["AUTH", "wrong"],
        &["AUTH", "default", "wrong"],
        &["AUTH", "nobody", PASSWORD],
        &["AUTH", "a", "b", "c"],
        &["AUTH", ""],
        &["GET", "k"],
        &["AUTH", PASSWORD],
        &["GET", "k"],
        &["AUTH", "wrong"],
        // A failed AUTH does not log an authenticated client out.
        &["GET", "k"],
        &["RESET"],
        &["GET", "k"],
        &["AUTH", "default", PASSWORD],
        &["SET", "k", "v"],
        &["RESET"],
        &["QUIT"],
    ] {
        b.same(c);
    }
    // Before AUTH, commands are held to 10 arguments of 16 KiB (a protocol error that
    // closes the connection), as in Redis; after it, not.
    let many: Vec<Vec<u8>> = std::iter::once(b"DEL".to_vec())
        .chain((0..10).map(|i| format!("k{i}").into_bytes()))
        .collect();
    let long = vec![b"GET".to_vec(), vec![b'x'; 16385]];
    let fits = vec![b"GET".to_vec(), vec![b'x'; 16384]];
    for args in [&many, &long, &fits] {
        let mut c = Both::connect(&redis, &strata);
        c.same_args(args);
    }
    let mut h = Both::connect(&redis, &strata);
    h.same(&["GET", "k"]);
    // The map's version and id differ: HELLO's reply is not compared, what follows is.
    h.both(&["HELLO", "3", "AUTH", "default", PASSWORD, "SETNAME", "me"]);
    h.same(&["GET", "k"]);
    h.same(&["CLIENT", "GETNAME"]);
    h.same(&["AUTH", "default", "wrong"]);
    h.same(&["GET", "k"]);
    h.same_args(&many);
    h.same_args(&long);
}
