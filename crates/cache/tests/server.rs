//! The RESP server over real sockets on port 0: every command, pipelining, RESP3,
//! errors that keep the connection and errors that close it, shutdown.

mod common;

use std::time::Duration;

use common::{cmd, cmd_bytes, Server};
use strata_cache::{CacheConfig, RespConfig};

#[test]
fn string_commands_answer_like_redis() {
    let server = Server::start(1);
    let mut c = server.client();
    c.check(&["PING"], "+PONG\r\n");
    c.check(&["ping", "hi"], "$2\r\nhi\r\n");
    c.check(&["ECHO", "hello"], "$5\r\nhello\r\n");
    c.check(&["GET", "k"], "$-1\r\n");
    c.check(&["SET", "k", "v"], "+OK\r\n");
    c.check(&["GET", "k"], "$1\r\nv\r\n");
    c.check(&["SET", "k", "w", "NX"], "$-1\r\n");
    c.check(&["SET", "k", "w", "XX", "GET"], "$1\r\nv\r\n");
    c.check(&["SET", "k2", "w", "XX"], "$-1\r\n");
    c.check(&["SET", "k", "x", "NX", "XX"], "-ERR syntax error\r\n");
    c.check(&["SET", "k", "x", "EX", "10", "PX", "100"], "-ERR syntax error\r\n");
    c.check(
        &["SET", "k", "x", "EX", "0"],
        "-ERR invalid expire time in 'set' command\r\n",
    );
    c.check(
        &["SET", "k", "x", "EX", "ten"],
        "-ERR value is not an integer or out of range\r\n",
    );
    c.check(&["SET", "k", "x", "EX", "100"], "+OK\r\n");
    c.check(&["TTL", "k"], ":100\r\n");
    c.check(&["SET", "k", "y", "KEEPTTL"], "+OK\r\n");
    c.check(&["TTL", "k"], ":100\r\n");
    c.check(&["SET", "k", "z", "PX", "5000"], "+OK\r\n");
    c.check(&["TTL", "k"], ":5\r\n");
    c.check(&["PERSIST", "k"], ":1\r\n");
    c.check(&["PERSIST", "k"], ":0\r\n");
    c.check(&["TTL", "k"], ":-1\r\n");
    c.check(&["TTL", "nope"], ":-2\r\n");
    c.check(&["PTTL", "nope"], ":-2\r\n");
    c.check(&["EXPIRE", "k", "50"], ":1\r\n");
    c.check(&["EXPIRE", "k", "50", "NX"], ":0\r\n");
    c.check(&["EXPIRE", "k", "60", "GT"], ":1\r\n");
    c.check(
        &["EXPIRE", "k", "60", "NX", "XX"],
        "-ERR NX and XX, GT or LT options at the same time are not compatible\r\n",
    );
    c.check(&["EXPIRE", "nope", "50"], ":0\r\n");
    c.check(&["PEXPIRE", "k", "100000"], ":1\r\n");
    c.check(&["TTL", "k"], ":100\r\n");
    c.check(&["EXPIRE", "k", "-1"], ":1\r\n");
    c.check(&["EXISTS", "k"], ":0\r\n");
    c.check(&["MSET", "a", "1", "b", "2"], "+OK\r\n");
    c.check(
        &["MSET", "a", "1", "b"],
        "-ERR wrong number of arguments for 'mset' command\r\n",
    );
    c.check(&["MGET", "a", "nope", "b"], "*3\r\n$1\r\n1\r\n$-1\r\n$1\r\n2\r\n");
    c.check(&["EXISTS", "a", "b", "a", "nope"], ":3\r\n");
    c.check(&["INCR", "a"], ":2\r\n");
    c.check(&["INCRBY", "a", "10"], ":12\r\n");
    c.check(&["DECR", "a"], ":11\r\n");
    c.check(&["DECRBY", "a", "20"], ":-9\r\n");
    c.check(
        &["INCRBY", "a", "x"],
        "-ERR value is not an integer or out of range\r\n",
    );
    c.check(&["SET", "big", "9223372036854775807"], "+OK\r\n");
    c.check(&["INCR", "big"], "-ERR increment or decrement would overflow\r\n");
    c.check(&["INCR", "k2"], ":1\r\n");
    c.check(&["SET", "s", "text"], "+OK\r\n");
    c.check(&["INCR", "s"], "-ERR value is not an integer or out of range\r\n");
    c.check(&["APPEND", "s", "book"], ":8\r\n");
    c.check(&["STRLEN", "s"], ":8\r\n");
    c.check(&["STRLEN", "nope"], ":0\r\n");
    c.check(&["GETDEL", "s"], "$8\r\ntextbook\r\n");
    c.check(&["GETDEL", "s"], "$-1\r\n");
    c.check(&["SETNX", "n", "1"], ":1\r\n");
    c.check(&["SETNX", "n", "2"], ":0\r\n");
    c.check(&["GETSET", "n", "3"], "$1\r\n1\r\n");
    c.check(&["SETEX", "e", "10", "v"], "+OK\r\n");
    c.check(&["TTL", "e"], ":10\r\n");
    c.check(
        &["PSETEX", "e", "0", "v"],
        "-ERR invalid expire time in 'psetex' command\r\n",
    );
    c.check(&["TYPE", "e"], "+string\r\n");
    c.check(&["TYPE", "nope"], "+none\r\n");
    c.check(&["DEL", "a", "b", "nope"], ":2\r\n");
    c.check(&["UNLINK", "n"], ":1\r\n");
    c.check(&["SELECT", "0"], "+OK\r\n");
    c.check(&["SELECT", "1"], "-ERR DB index is out of range\r\n");
    c.check(&["DBSIZE"], ":3\r\n");
    c.check(&["FLUSHDB"], "+OK\r\n");
    c.check(&["DBSIZE"], ":0\r\n");
    c.check(&["FLUSHALL", "ASYNC"], "+OK\r\n");
    c.check(&["CLIENT", "GETNAME"], "$-1\r\n");
    c.check(&["CLIENT", "SETNAME", "worker-1"], "+OK\r\n");
    c.check(&["CLIENT", "GETNAME"], "$8\r\nworker-1\r\n");
    c.check(
        &["CLIENT", "SETNAME", "bad name"],
        "-ERR Client names cannot contain spaces, newlines or special characters.\r\n",
    );
    c.check(&["CLIENT", "SETINFO", "LIB-NAME", "redis-py"], "+OK\r\n");
    c.check(&["AUTH", "pw"], "-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n");
    c.check(&["QUIT"], "+OK\r\n");
    c.assert_closed("after QUIT");
}

#[test]
fn unknown_commands_and_wrong_arity_keep_the_connection() {
    let server = Server::start(1);
    let mut c = server.client();
    c.check(
        &["FOO", "bar", "baz"],
        "-ERR unknown command 'FOO', with args beginning with: 'bar' 'baz' \r\n",
    );
    // A script says why it is refused (a lock library's release sends EVALSHA).
    c.send(&cmd(&["evalsha", "abc", "1", "lock"]));
    let reply = String::from_utf8_lossy(&c.read_reply()).to_string();
    assert!(
        reply.starts_with("-ERR unknown command 'evalsha': strata's cache runs no Lua scripts"),
        "{reply}"
    );
    c.check(&["GET"], "-ERR wrong number of arguments for 'get' command\r\n");
    c.check(
        &["get", "a", "b"],
        "-ERR wrong number of arguments for 'get' command\r\n",
    );
    c.check(&["PING"], "+PONG\r\n");
}

#[test]
fn subcommand_errors_are_redis_7s() {
    let server = Server::start(1);
    let mut c = server.client();
    for (args, reply) in [
        (
            &["CLIENT", "NOSUCH"][..],
            "-ERR unknown subcommand 'NOSUCH'. Try CLIENT HELP.\r\n",
        ),
        (
            &["CLIENT", "GETNAME", "extra"],
            "-ERR wrong number of arguments for 'client|getname' command\r\n",
        ),
        (
            &["COMMAND", "COUNT", "x"],
            "-ERR wrong number of arguments for 'command|count' command\r\n",
        ),
        (
            &["CONFIG", "GET"],
            "-ERR wrong number of arguments for 'config|get' command\r\n",
        ),
        (
            &["COMMAND", "NOSUCH"],
            "-ERR unknown subcommand 'NOSUCH'. Try COMMAND HELP.\r\n",
        ),
        (
            &["config", "nosuch"],
            "-ERR unknown subcommand 'nosuch'. Try CONFIG HELP.\r\n",
        ),
        (&["CLIENT"], "-ERR wrong number of arguments for 'client' command\r\n"),
    ] {
        c.check(args, reply);
    }
    // Each error points at a HELP that answers.
    for container in ["CLIENT", "COMMAND", "CONFIG"] {
        c.send(&cmd(&[container, "HELP"]));
        let help = String::from_utf8(c.read_reply()).unwrap();
        assert!(
            help.starts_with('*') && help.contains(&format!("+{container} <subcommand>")),
            "{help}"
        );
    }
    // Refused when queued, as an unknown command is: EXEC discards the transaction.
    c.check(&["MULTI"], "+OK\r\n");
    c.check(
        &["CLIENT", "NOSUCH"],
        "-ERR unknown subcommand 'NOSUCH'. Try CLIENT HELP.\r\n",
    );
    c.check(
        &["EXEC"],
        "-EXECABORT Transaction discarded because of previous errors.\r\n",
    );
}

#[test]
fn client_list_filters_to_this_connection_and_names_the_command_run() {
    let server = Server::start(1);
    let mut c = server.client();
    c.send(&cmd(&["CLIENT", "ID"]));
    let id: u64 = String::from_utf8(c.read_reply()).unwrap()[1..].trim().parse().unwrap();
    let list = |c: &mut common::Client, args: &[&str]| {
        c.send(&cmd(args));
        let reply = String::from_utf8(c.read_reply()).unwrap();
        let (len, text) = reply.split_once("\r\n").unwrap();
        assert_eq!(len, format!("${}", text.len() - 2), "{reply:?}");
        text.strip_suffix("\r\n").unwrap().to_string()
    };
    let all = list(&mut c, &["CLIENT", "LIST"]);
    assert!(
        all.starts_with(&format!("id={id} ")) && all.contains(" cmd=client|list ") && all.ends_with('\n'),
        "{all}"
    );
    let info = list(&mut c, &["CLIENT", "INFO"]);
    assert!(info.contains(" cmd=client|info "), "{info}");
    assert_eq!(list(&mut c, &["CLIENT", "LIST", "TYPE", "normal"]).lines().count(), 1);
    assert_eq!(
        list(&mut c, &["CLIENT", "LIST", "TYPE", "pubsub"]),
        "",
        "not subscribed"
    );
    assert_eq!(
        list(&mut c, &["CLIENT", "LIST", "ID", &id.to_string()]).lines().count(),
        1
    );
    let twice = list(
        &mut c,
        &["CLIENT", "LIST", "ID", &id.to_string(), "999999", &id.to_string()],
    );
    assert_eq!(twice.lines().count(), 2, "an id given twice lists twice, as Redis");
    assert_eq!(list(&mut c, &["CLIENT", "LIST", "ID", &(id + 1).to_string()]), "");
    c.check(
        &["CLIENT", "LIST", "TYPE", "bogus"],
        "-ERR Unknown client type 'bogus'\r\n",
    );
    c.check(&["CLIENT", "LIST", "ID", "x"], "-ERR Invalid client ID\r\n");
    c.check(&["CLIENT", "LIST", "foo"], "-ERR syntax error\r\n");
    c.check(&["CLIENT", "NO-EVICT", "maybe"], "-ERR syntax error\r\n");
    c.check(&["CLIENT", "NO-EVICT", "on"], "+OK\r\n");
    c.check(&["CLIENT", "NO-TOUCH", "maybe"], "-ERR syntax error\r\n");
    c.check(
        &["COMMAND", "LIST", "FILTERBY", "PATTERN", "getr*"],
        "*1\r\n$8\r\ngetrange\r\n",
    );
    c.check(
        &["COMMAND", "LIST", "FILTERBY", "PATTERN", "CLIENT|L*"],
        "*1\r\n$11\r\nclient|list\r\n",
    );
    c.check(&["COMMAND", "LIST", "FILTERBY", "MODULE", "json"], "*0\r\n");
    c.check(
        &["COMMAND", "LIST", "FILTERBY", "ACLCAT", "string"],
        "-ERR COMMAND LIST FILTERBY ACLCAT is not supported: strata's commands have no ACL categories\r\n",
    );
    // Subscribed (RESP3, so that CLIENT may run): now of type pubsub.
    c.send(&cmd(&["HELLO", "3"]));
    c.read_reply();
    c.send(&cmd(&["SUBSCRIBE", "news"]));
    c.read_reply();
    c.send(&cmd(&["CLIENT", "LIST", "TYPE", "pubsub"]));
    let subscribed = String::from_utf8(c.read_reply()).unwrap();
    assert!(
        subscribed.contains(&format!("txt:id={id} ")) && subscribed.contains(" flags=P "),
        "{subscribed}"
    );
    c.check(&["CLIENT", "LIST", "TYPE", "normal"], "=4\r\ntxt:\r\n");
}

#[test]
fn pipelined_commands_are_answered_in_order() {
    let server = Server::start(2);
    let mut c = server.client();
    let mut batch = Vec::new();
    let mut expected = String::new();
    for i in 0..2000 {
        batch.extend(cmd(&["SET", &format!("key:{i}"), &format!("v{i}")]));
        expected.push_str("+OK\r\n");
        batch.extend(cmd(&["GET", &format!("key:{i}")]));
        expected.push_str(&format!("${}\r\nv{i}\r\n", format!("v{i}").len()));
    }
    // Split the batch at awkward places: the server must reassemble commands.
    for chunk in batch.chunks(777) {
        c.send(chunk);
    }
    let got = c.read_n(expected.len());
    assert_eq!(String::from_utf8_lossy(&got), expected);
    c.check(&["DBSIZE"], ":2000\r\n");
}

#[test]
fn inline_commands_work() {
    let server = Server::start(1);
    let mut c = server.client();
    c.send(b"PING\r\nSET greeting \"hello world\"\r\nGET greeting\n\r\nEXISTS greeting\r\n");
    let expected = "+PONG\r\n+OK\r\n$11\r\nhello world\r\n:1\r\n";
    assert_eq!(String::from_utf8_lossy(&c.read_n(expected.len())), expected);
}

#[test]
fn protocol_errors_are_answered_then_the_connection_closes() {
    let server = Server::start(1);
    for (input, reply) in [
        (&b"*1\r\n$x\r\n"[..], "-ERR Protocol error: invalid bulk length\r\n"),
        (
            b"*2\r\n$3\r\nGET\r\n+k\r\n",
            "-ERR Protocol error: expected '$', got '+'\r\n",
        ),
        (b"*abc\r\n", "-ERR Protocol error: invalid multibulk length\r\n"),
        (
            b"SET k \"unterminated\r\n",
            "-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
    ] {
        let mut c = server.client();
        c.send(b"PING\r\n");
        c.send(input);
        let expected = format!("+PONG\r\n{reply}");
        assert_eq!(String::from_utf8_lossy(&c.read_n(expected.len())), expected);
        c.assert_closed(&format!("after {:?}", String::from_utf8_lossy(input)));
    }
    // The server is still fine.
    server.client().check(&["PING"], "+PONG\r\n");
}

#[test]
fn hello_switches_protocol_versions() {
    let server = Server::start(1);
    let mut c = server.client();
    c.check(&["HELLO", "4"], "-NOPROTO unsupported protocol version\r\n");
    c.check(
        &["HELLO", "x"],
        "-ERR Protocol version is not an integer or out of range\r\n",
    );
    c.send(&cmd(&["HELLO", "3", "AUTH", "default", "anything", "SETNAME", "me"]));
    let hello = String::from_utf8(c.read_reply()).unwrap();
    assert!(hello.starts_with("%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n"), "{hello}");
    assert!(hello.contains("$5\r\nproto\r\n:3\r\n"), "{hello}");
    assert!(hello.contains("$7\r\nversion\r\n$5\r\n7.0.0\r\n"), "{hello}");
    c.check(&["GET", "nope"], "_\r\n");
    c.check(&["CLIENT", "GETNAME"], "$2\r\nme\r\n");
    c.send(&cmd(&["CONFIG", "GET", "save"]));
    assert_eq!(c.read_reply(), b"%1\r\n$4\r\nsave\r\n$0\r\n\r\n");
    c.send(&cmd(&["INFO", "server"]));
    let info = String::from_utf8(c.read_reply()).unwrap();
    assert!(info.starts_with('=') && info.contains("txt:# Server"), "{info}");
    c.send(&cmd(&["HELLO", "2"]));
    let hello = String::from_utf8(c.read_reply()).unwrap();
    assert!(hello.starts_with("*14\r\n"), "{hello}");
    c.check(&["GET", "nope"], "$-1\r\n");
    c.check(
        &["HELLO", "3", "AUTH", "someone", "pw"],
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n",
    );
}

#[test]
fn info_has_the_sections_clients_read() {
    let server = Server::start(1);
    let mut c = server.client();
    c.check(&["SET", "a", "1", "EX", "100"], "+OK\r\n");
    c.check(&["SET", "b", "2"], "+OK\r\n");
    c.check(&["GET", "a"], "$1\r\n1\r\n");
    c.check(&["GET", "zz"], "$-1\r\n");
    c.send(&cmd(&["INFO"]));
    let info = String::from_utf8(c.read_reply()).unwrap();
    for needle in [
        "# Server\r\n",
        // A plain dotted version (clients parse it), strata's own beside it.
        "redis_version:7.0.0\r\nstrata_version:",
        "# Clients\r\nconnected_clients:1\r\n",
        "# Memory\r\nused_memory:",
        "# Stats\r\n",
        "keyspace_hits:1\r\n",
        "keyspace_misses:1\r\n",
        "evicted_keys:0\r\n",
        "# Keyspace\r\ndb0:keys=2,expires=1,avg_ttl=0\r\n",
        &format!("tcp_port:{}\r\n", server.addr.port()),
    ] {
        assert!(info.contains(needle), "INFO lacks {needle:?}:\n{info}");
    }
    c.send(&cmd(&["INFO", "keyspace"]));
    let ks = String::from_utf8(c.read_reply()).unwrap();
    assert!(!ks.contains("# Server") && ks.contains("# Keyspace"), "{ks}");
    c.send(&cmd(&["INFO", "shards"]));
    let shards = String::from_utf8(c.read_reply()).unwrap();
    assert!(
        shards.contains("shard0:keys=") && shards.contains("shard1:keys="),
        "{shards}"
    );
}

#[test]
fn key_lookups_count_keyspace_hits_and_misses_as_redis() {
    let server = Server::start(1);
    let mut c = server.client();
    let stats = |c: &mut common::Client| -> (u64, u64) {
        c.send(&cmd(&["INFO", "stats"]));
        let info = String::from_utf8(c.read_reply()).unwrap();
        let field = |name: &str| -> u64 {
            let line = info.lines().find_map(|l| l.strip_prefix(name));
            line.unwrap_or_else(|| panic!("INFO lacks {name}:\n{info}"))
                .parse()
                .unwrap()
        };
        (field("keyspace_hits:"), field("keyspace_misses:"))
    };
    c.check(&["SET", "k", "v"], "+OK\r\n");
    for (args, missing, present) in [
        (["EXISTS", "_"], ":0\r\n", ":1\r\n"),
        (["TYPE", "_"], "+none\r\n", "+string\r\n"),
        (["TTL", "_"], ":-2\r\n", ":-1\r\n"),
        (["PTTL", "_"], ":-2\r\n", ":-1\r\n"),
        (["EXPIRETIME", "_"], ":-2\r\n", ":-1\r\n"),
    ] {
        let before = stats(&mut c);
        c.check(&[args[0], "nope"], missing);
        assert_eq!(
            stats(&mut c),
            (before.0, before.1 + 1),
            "{} of a missing key is a miss",
            args[0]
        );
        c.check(&[args[0], "k"], present);
        assert_eq!(
            stats(&mut c),
            (before.0 + 1, before.1 + 1),
            "{} of a key is a hit",
            args[0]
        );
    }
    // Each key of EXISTS counts.
    let before = stats(&mut c);
    c.check(&["EXISTS", "k", "nope", "k"], ":2\r\n");
    assert_eq!(stats(&mut c), (before.0 + 2, before.1 + 1));
}

#[test]
fn command_replies_enough_for_handshakes() {
    let server = Server::start(1);
    let mut c = server.client();
    c.send(&cmd(&["COMMAND", "COUNT"]));
    let count = String::from_utf8(c.read_reply()).unwrap();
    let n: usize = count.trim_start_matches(':').trim().parse().unwrap();
    assert!(n >= 30, "{count}");
    c.send(&cmd(&["COMMAND"]));
    let all = c.read_reply();
    assert!(all.starts_with(format!("*{n}\r\n*10\r\n$3\r\nget\r\n:2\r\n").as_bytes()));
    c.send(&cmd(&["COMMAND", "INFO", "set", "nosuch"]));
    let info = String::from_utf8(c.read_reply()).unwrap();
    assert!(
        info.starts_with("*2\r\n*10\r\n$3\r\nset\r\n:-3\r\n") && info.ends_with("$-1\r\n"),
        "{info}"
    );
    c.check(&["COMMAND", "DOCS"], "*0\r\n");
}

#[test]
fn large_values_arrive_in_pieces() {
    let server = Server::start(1);
    let mut c = server.client();
    let value: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let set = cmd_bytes(&[b"SET", b"big", &value]);
    for chunk in set.chunks(65_000) {
        c.send(chunk);
    }
    assert_eq!(c.read_n(5), b"+OK\r\n");
    c.send(&cmd(&["GET", "big"]));
    let reply = c.read_reply();
    let header = b"$3000000\r\n";
    assert_eq!(&reply[..header.len()], header);
    assert_eq!(&reply[header.len()..reply.len() - 2], &value[..]);
    c.check(&["STRLEN", "big"], ":3000000\r\n");
}

#[test]
fn limits_close_the_connection_with_an_error() {
    let config = RespConfig {
        limits: strata_cache::resp::Limits {
            max_bulk: 1000,
            ..Default::default()
        },
        max_query_bytes: 4096,
        ..RespConfig::default()
    };
    let server = Server::start_with(1, CacheConfig::default(), config);
    let mut c = server.client();
    c.send(b"*2\r\n$4\r\nECHO\r\n$1001\r\n");
    let e = "-ERR Protocol error: invalid bulk length\r\n";
    assert_eq!(String::from_utf8_lossy(&c.read_n(e.len())), e);
    c.assert_closed("after a bulk over the limit");
    // Many small arguments past the query buffer limit.
    let mut c = server.client();
    let mut big = b"*100000\r\n".to_vec();
    for _ in 0..2000 {
        big.extend_from_slice(b"$1\r\nx\r\n");
    }
    c.send(&big);
    let e = "-ERR Protocol error: query buffer limit exceeded\r\n";
    assert_eq!(String::from_utf8_lossy(&c.read_n(e.len())), e);
    c.assert_closed("after the query buffer went over the limit");
}

#[test]
fn many_connections_on_several_workers() {
    let server = Server::start(2);
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let addr = server.addr;
            std::thread::spawn(move || {
                let mut c = common::Client::connect(addr);
                for i in 0..200 {
                    let k = format!("t{t}:{i}");
                    c.check(&["SET", &k, &k], "+OK\r\n");
                    c.check(&["INCR", &format!("own:{t}")], &format!(":{}\r\n", i + 1));
                    c.send(&cmd(&["INCR", "shared"]));
                    assert_eq!(c.read_reply()[0], b':');
                    c.check(&["GET", &k], &format!("${}\r\n{k}\r\n", k.len()));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a client thread failed");
    }
    let mut c = server.client();
    c.check(&["GET", "shared"], "$4\r\n3200\r\n");
    c.check(&["DBSIZE"], &format!(":{}\r\n", 16 * 200 + 16 + 1));
}

#[test]
fn shutdown_stops_the_workers_and_closes_connections() {
    let mut server = Server::start(2);
    let mut c = server.client();
    c.check(&["PING"], "+PONG\r\n");
    server.stop();
    c.assert_closed("after the server stopped");
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        std::net::TcpStream::connect(server.addr).is_err(),
        "nothing listens after shutdown"
    );
}

/// The element of a `*2 key element` BRPOP reply (None: a timeout).
fn popped(reply: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(reply).to_string();
    if text == "*-1\r\n" {
        return None;
    }
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert_eq!(lines[0], "*2", "{text:?}");
    Some(lines[4].to_string())
}

/// Waits until `n` clients are blocked.
fn blocked(c: &mut common::Client, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        c.send(&cmd(&["INFO", "clients"]));
        if String::from_utf8_lossy(&c.read_reply()).contains(&format!("blocked_clients:{n}\r\n")) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "never {n} blocked clients");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Work queues across worker threads: 4 consumers in BRPOP (on several workers), two
/// producers LPUSHing 1,000 items each one by one, and a client RPOPping without
/// blocking meanwhile (so woken consumers often find the list empty again): every item
/// is received exactly once.
#[test]
fn blocked_consumers_on_several_workers_receive_every_item_once() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let server = Server::start(4);
    let consumers: Vec<_> = (0..4)
        .map(|_| {
            let addr = server.addr;
            std::thread::spawn(move || {
                let mut c = common::Client::connect(addr);
                let mut got = Vec::new();
                loop {
                    c.send(&cmd(&["BRPOP", "queue", "other", "5"]));
                    match popped(&c.read_reply()).expect("an item within 5 s") {
                        item if item == "stop" => return got,
                        item => got.push(item),
                    }
                }
            })
        })
        .collect();
    let producing = std::sync::Arc::new(AtomicBool::new(true));
    let stealer = {
        let (addr, producing) = (server.addr, producing.clone());
        std::thread::spawn(move || {
            let mut c = common::Client::connect(addr);
            let mut got = Vec::new();
            while producing.load(Ordering::Relaxed) {
                c.send(&cmd(&["RPOP", "queue"]));
                let reply = String::from_utf8_lossy(&c.read_reply()).to_string();
                if reply != "$-1\r\n" {
                    got.push(reply.split("\r\n").nth(1).expect("a bulk string").to_string());
                }
            }
            got
        })
    };
    let mut producer = server.client();
    blocked(&mut producer, 4);
    let producers: Vec<_> = (0..2)
        .map(|p| {
            let addr = server.addr;
            std::thread::spawn(move || {
                let mut c = common::Client::connect(addr);
                for i in 0..1000 {
                    c.send(&cmd(&["LPUSH", "queue", &format!("item{p}:{i}")]));
                    assert_eq!(c.read_reply()[0], b':');
                }
            })
        })
        .collect();
    for p in producers {
        p.join().expect("a producer failed");
    }
    producing.store(false, Ordering::Relaxed);
    let mut all: Vec<String> = stealer.join().expect("the stealer failed");
    for _ in 0..4 {
        producer.send(&cmd(&["LPUSH", "queue", "stop"]));
        assert_eq!(producer.read_reply()[0], b':');
    }
    for c in consumers {
        let got = c.join().expect("a consumer failed");
        all.extend(got);
    }
    let distinct: std::collections::BTreeSet<&String> = all.iter().collect();
    assert_eq!(all.len(), 2000, "no item lost or duplicated");
    assert_eq!(distinct.len(), 2000, "no item received twice");
    producer.check(&["EXISTS", "queue"], ":0\r\n");
    blocked(&mut producer, 0);
}

/// Blocked clients are served first blocked, first served; one woken for an element
/// another client took first goes back to waiting.
#[test]
fn blocked_clients_are_served_in_order_and_none_loses_its_place_for_nothing() {
    let server = Server::start(2);
    let mut pusher = server.client();
    let mut waiters: Vec<common::Client> = Vec::new();
    for i in 0..3 {
        let mut c = server.client();
        c.send(&cmd(&["BLPOP", "fifo", "0"]));
        blocked(&mut pusher, i + 1);
        waiters.push(c);
    }
    // Pushed and taken within one transaction: the waiters are woken and wait on.
    pusher.check(&["MULTI"], "+OK\r\n");
    pusher.check(&["RPUSH", "fifo", "gone"], "+QUEUED\r\n");
    pusher.check(&["LPOP", "fifo"], "+QUEUED\r\n");
    pusher.check(&["EXEC"], "*2\r\n:1\r\n$4\r\ngone\r\n");
    blocked(&mut pusher, 3);
    for (i, w) in waiters.iter_mut().enumerate() {
        pusher.check(&["RPUSH", "fifo", &format!("e{i}")], ":1\r\n");
        assert_eq!(
            String::from_utf8_lossy(&w.read_reply()),
            format!("*2\r\n$4\r\nfifo\r\n$2\r\ne{i}\r\n"),
            "waiter {i}"
        );
    }
    pusher.check(&["EXISTS", "fifo"], ":0\r\n");
    // Timeouts too far for the clock wait for ever, and are served like any other.
    for timeout in ["100000000", "9223372036854775"] {
        let mut far = server.client();
        far.send(&cmd(&["BRPOP", "far", timeout]));
        blocked(&mut pusher, 1);
        pusher.check(&["LPUSH", "far", "x"], ":1\r\n");
        assert_eq!(far.read_reply(), b"*2\r\n$3\r\nfar\r\n$1\r\nx\r\n");
    }
    // A timeout while nothing comes; RESP3's null.
    let mut c = server.client();
    c.send(&cmd(&["HELLO", "3"]));
    let _ = c.read_reply();
    let started = std::time::Instant::now();
    c.check(&["BLPOP", "fifo", "0.1"], "_\r\n");
    assert!(started.elapsed() >= Duration::from_millis(100));
}

/// A blocked client woken for a key that holds another type by the time it runs
/// (pushed, deleted and set anew in one transaction) waits on, as Redis' does, instead
/// of answering WRONGTYPE; with several keys it takes from one of the type it waits for.
/// Only its first try answers a key of the wrong type with WRONGTYPE.
#[test]
fn a_blocked_client_woken_for_a_key_of_another_type_waits_on() {
    let server = Server::start(2);
    let mut pusher = server.client();
    pusher.check(&["SET", "str", "v"], "+OK\r\n");
    let wrongtype = "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";
    pusher.check(&["BLPOP", "str", "0"], wrongtype);
    pusher.check(&["BZPOPMIN", "str", "0"], wrongtype);
    let cases: [(&[&str], &[&str], &[&str]); 2] = [
        (&["BLPOP", "k", "0"], &["RPUSH", "k", "x"], &["SET", "k", "s"]),
        (
            &["BZPOPMIN", "k", "0"],
            &["ZADD", "k", "1", "m"],
            &["HSET", "k", "f", "v"],
        ),
    ];
    for (block, push, other) in cases {
        let mut w = server.client();
        w.send(&cmd(block));
        blocked(&mut pusher, 1);
        pusher.check(&["MULTI"], "+OK\r\n");
        pusher.check(push, "+QUEUED\r\n");
        pusher.check(&["DEL", "k"], "+QUEUED\r\n");
        pusher.check(other, "+QUEUED\r\n");
        pusher.send(&cmd(&["EXEC"]));
        let exec = String::from_utf8_lossy(&pusher.read_reply()).to_string();
        assert!(!exec.contains("-ERR"), "{exec}");
        // Still blocked; served once the key holds its type again.
        std::thread::sleep(Duration::from_millis(50));
        blocked(&mut pusher, 1);
        pusher.check(&["DEL", "k"], ":1\r\n");
        pusher.send(&cmd(push));
        assert_eq!(pusher.read_reply()[0], b':');
        let reply = String::from_utf8_lossy(&w.read_reply()).to_string();
        assert!(
            reply.starts_with("*"),
            "{block:?} got its element, not an error: {reply:?}"
        );
        assert!(reply.contains("$1\r\nk\r\n"), "{reply:?}");
        blocked(&mut pusher, 0);
    }
    // Two keys, the first of another type by the time the client runs: the second's.
    let mut w = server.client();
    w.send(&cmd(&["BLPOP", "k1", "k2", "0"]));
    blocked(&mut pusher, 1);
    pusher.check(&["MULTI"], "+OK\r\n");
    for c in [
        &["RPUSH", "k1", "a"][..],
        &["RPUSH", "k2", "b"],
        &["DEL", "k1"],
        &["SET", "k1", "s"],
    ] {
        pusher.check(c, "+QUEUED\r\n");
    }
    pusher.send(&cmd(&["EXEC"]));
    let _ = pusher.read_reply();
    assert_eq!(
        String::from_utf8_lossy(&w.read_reply()),
        "*2\r\n$2\r\nk2\r\n$1\r\nb\r\n"
    );
}

/// The idle timeout does not close a blocked client (as in Redis), and counts again
/// from its answer.
#[test]
fn a_blocked_client_is_not_idle() {
    let server = Server::start_with(
        1,
        CacheConfig {
            shards: 2,
            ..CacheConfig::default()
        },
        RespConfig {
            idle_timeout: Some(Duration::from_millis(200)),
            ..RespConfig::default()
        },
    );
    let mut c = server.client();
    c.check(&["BLPOP", "nothing", "0.6"], "*-1\r\n");
    c.check(&["PING"], "+PONG\r\n");
    c.assert_closed("idle after its answer");
}

/// Reads one pub/sub message (RESP2 array or RESP3 push) and gives its payload.
fn payload(c: &mut common::Client) -> String {
    let reply = String::from_utf8_lossy(&c.read_reply()).to_string();
    let parts: Vec<&str> = reply.split("\r\n").collect();
    assert!(
        parts[2] == "message" || parts[2] == "pmessage",
        "not a message: {reply:?}"
    );
    parts[parts.len() - 2].to_string()
}

#[test]
fn published_messages_reach_subscribers_on_every_worker_once_and_in_order() {
    // Eight subscribers over 4 workers (SO_REUSEPORT spreads connections: all on one
    // worker is a 1-in-16,384 chance), channel and pattern, RESP2 and RESP3.
    let server = Server::start(4);
    let mut subscribers: Vec<common::Client> = (0..8)
        .map(|i| {
            let mut c = server.client();
            if i % 3 == 2 {
                c.send(&cmd(&["HELLO", "3"]));
                c.read_reply();
            }
            let (kind, name) = if i % 2 == 0 {
                ("SUBSCRIBE", "news")
            } else {
                ("PSUBSCRIBE", "ne*")
            };
            c.send(&cmd(&[kind, name]));
            let confirm = String::from_utf8_lossy(&c.read_reply()).to_string();
            assert!(confirm.ends_with(":1\r\n"), "{confirm:?}");
            c
        })
        .collect();
    let mut publisher = server.client();
    publisher.check(&["PUBSUB", "NUMSUB", "news"], "*2\r\n$4\r\nnews\r\n:4\r\n");
    publisher.check(&["PUBSUB", "NUMPAT"], ":1\r\n");
    // Pipelined, in batches, while the subscribers' sockets fill.
    for batch in 0..10 {
        let mut bytes = Vec::new();
        for i in 0..100 {
            let n = (batch * 100 + i).to_string();
            bytes.extend_from_slice(&cmd(&["PUBLISH", "news", &n]));
        }
        publisher.send(&bytes);
        for _ in 0..100 {
            assert_eq!(publisher.read_reply(), b":8\r\n");
        }
    }
    for (i, s) in subscribers.iter_mut().enumerate() {
        for n in 0..1000 {
            assert_eq!(payload(s), n.to_string(), "subscriber {i}");
        }
    }
    // Nothing more: a PING answers next.
    for s in subscribers.iter_mut() {
        s.send(&cmd(&["PING"]));
        let pong = s.read_reply();
        assert!(
            pong == b"*2\r\n$4\r\npong\r\n$0\r\n\r\n" || pong == b"+PONG\r\n",
            "{pong:?}"
        );
    }
    drop(subscribers);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        publisher.send(&cmd(&["PUBLISH", "news", "gone"]));
        if publisher.read_reply() == b":0\r\n" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "closed subscribers still receive");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_subscriber_that_does_not_read_is_closed_past_the_output_bound() {
    let server = Server::start(2);
    let mut slow = server.client();
    slow.check(&["SUBSCRIBE", "c"], "*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n");
    let mut publisher = server.client();
    let payload = "x".repeat(1 << 20);
    // 64 MiB: past the 32 MiB bound plus what the sockets hold. The publisher is never
    // held up by the slow subscriber.
    let started = std::time::Instant::now();
    for _ in 0..64 {
        publisher.send(&cmd(&["PUBLISH", "c", &payload]));
        let n = publisher.read_reply();
        assert!(n == b":1\r\n" || n == b":0\r\n", "{n:?}");
    }
    assert!(started.elapsed() < Duration::from_secs(20));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        publisher.send(&cmd(&["INFO", "stats"]));
        let info = String::from_utf8_lossy(&publisher.read_reply()).to_string();
        if info.contains("client_output_buffer_limit_disconnections:1\r\n") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never closed: {info}");
        std::thread::sleep(Duration::from_millis(10));
    }
    publisher.check(&["PUBSUB", "NUMSUB", "c"], "*2\r\n$1\r\nc\r\n:0\r\n");
    // What the client reads now is whole messages, then the end.
    slow.stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut sink = Vec::new();
    use std::io::Read;
    let _ = slow.stream.read_to_end(&mut sink);
    assert!(sink.len() < 40 << 20, "{} bytes", sink.len());
}
