//! redis-cli and redis-benchmark (Debian package redis-tools) against the RESP server,
//! as child processes. Skipped, with the reason printed, when they are not installed.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::Server;

fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    let test = std::thread::current().name().unwrap_or("a redis tool test").to_string();
    if found.is_none() && !strata_testkit::needs(&test, strata_testkit::program(name, "apt-get install redis-tools")) {
        return None;
    }
    found
}

fn cli(bin: &PathBuf, server: &Server, args: &[&str]) -> String {
    let out = Command::new(bin)
        .args(["-h", "127.0.0.1", "-p", &server.addr.port().to_string()])
        .args(args)
        .output()
        .expect("run redis-cli");
    assert!(
        out.status.success(),
        "redis-cli {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim_end().to_string()
}

#[test]
fn redis_cli_smoke() {
    let Some(bin) = tool("redis-cli") else { return };
    let server = Server::start(2);
    assert_eq!(cli(&bin, &server, &["PING"]), "PONG");
    assert_eq!(cli(&bin, &server, &["SET", "greeting", "hello world"]), "OK");
    assert_eq!(cli(&bin, &server, &["GET", "greeting"]), "hello world");
    assert_eq!(cli(&bin, &server, &["INCR", "visits"]), "1");
    assert_eq!(cli(&bin, &server, &["INCRBY", "visits", "41"]), "42");
    assert_eq!(cli(&bin, &server, &["EXPIRE", "greeting", "100"]), "1");
    let ttl: u64 = cli(&bin, &server, &["TTL", "greeting"]).parse().unwrap();
    assert!((99..=100).contains(&ttl), "{ttl}");
    assert_eq!(
        cli(&bin, &server, &["MGET", "greeting", "nope", "visits"]),
        "hello world\n\n42"
    );
    assert_eq!(cli(&bin, &server, &["-3", "GET", "nope"]), "");
    assert_eq!(cli(&bin, &server, &["DBSIZE"]), "2");
    assert!(cli(&bin, &server, &["NOSUCH", "x"]).starts_with("ERR unknown command 'NOSUCH'"));
    let info = cli(&bin, &server, &["INFO", "keyspace"]);
    assert!(info.contains("db0:keys=2,expires=1"), "{info}");
    // Several commands on one connection from stdin (-x is not needed: plain lines).
    let mut child = Command::new(&bin)
        .args(["-h", "127.0.0.1", "-p", &server.addr.port().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"SET a 1\nAPPEND a 23\nGET a\nSTRLEN a\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "OK\n3\n123\n3\n");
}

#[test]
fn redis_cli_pipe_mode() {
    let Some(bin) = tool("redis-cli") else { return };
    let server = Server::start(2);
    let mut input = Vec::new();
    for i in 0..10_000 {
        input.extend(common::cmd(&["SET", &format!("key:{i}"), &format!("value:{i}")]));
    }
    let mut child = Command::new(&bin)
        .args(["-h", "127.0.0.1", "-p", &server.addr.port().to_string(), "--pipe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text} {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("errors: 0, replies: 10000"), "{text}");
    assert_eq!(server.cache.len(), 10_000);
}

#[test]
fn redis_benchmark_runs_against_it() {
    let Some(bin) = tool("redis-benchmark") else { return };
    let server = Server::start(2);
    let out = Command::new(&bin)
        .args(["-h", "127.0.0.1", "-p", &server.addr.port().to_string()])
        .args([
            "-t",
            "set,get,incr,mset",
            "-n",
            "2000",
            "-c",
            "4",
            "-r",
            "1000",
            "-P",
            "4",
            "--csv",
        ])
        .output()
        .expect("run redis-benchmark");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for test in ["\"SET\"", "\"GET\"", "\"INCR\"", "\"MSET (10 keys)\""] {
        assert!(
            text.contains(test),
            "no {test} line in:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("ERR"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
