//! The CLI the way a user meets it in the first hour: `strata ps` run from another
//! directory finds the node just started, `strata ls` lists the running ones, output
//! piped into `head` ends quietly, `strata down` returns once every process is gone,
//! `strata validate` names every problem, `strata cache stats` is a table, and every
//! command says what it does in `--help`.
//!
//! Each test gives its processes a registry of running nodes of its own
//! (`XDG_RUNTIME_DIR` in a temp dir), so nodes of other tests, or of the user, are never
//! seen.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A user's session: the registry of running nodes, as `XDG_RUNTIME_DIR` points to it.
struct User {
    runtime: tempfile::TempDir,
}

impl User {
    fn new() -> User {
        User {
            runtime: tempfile::Builder::new()
                .prefix("strata-runtime-")
                .tempdir()
                .expect("a runtime dir"),
        }
    }

    fn command(&self, program: &str, dir: &Path) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(program);
        cmd.current_dir(dir)
            .env("XDG_RUNTIME_DIR", self.runtime.path())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// `strata ARGS` run in `dir`.
    async fn strata(&self, dir: &Path, args: &[&str]) -> Output {
        let mut cmd = self.command(STRATA, dir);
        cmd.args(args);
        tokio::time::timeout(Duration::from_secs(60), cmd.output())
            .await
            .unwrap_or_else(|_| panic!("strata {args:?} did not finish within 60 s"))
            .expect("run strata")
    }

    /// `script` run by bash in `dir`, with `$STRATA` the binary and `pipefail` on, so the
    /// status is strata's own unless it is 0.
    async fn pipeline(&self, dir: &Path, script: &str) -> Output {
        let mut cmd = self.command("bash", dir);
        cmd.env("STRATA", STRATA)
            .arg("-c")
            .arg(format!("set -o pipefail; {script}"));
        tokio::time::timeout(Duration::from_secs(60), cmd.output())
            .await
            .unwrap_or_else(|_| panic!("{script:?} did not finish within 60 s"))
            .expect("run bash")
    }

    /// `strata up` of the app in `dir` (its gateway on port 0), registered in this
    /// user's registry; output to `dir/up.out`.
    fn up(&self, dir: &Path) -> Up {
        Up::spawn_with(
            dir,
            &["--listen", "127.0.0.1:0"],
            &[("XDG_RUNTIME_DIR", self.runtime.path())],
        )
    }
}

/// An app named `name` of `count` test members, with a queue, written to its dir.
fn member_app(name: &str, count: u32, extra: Value) -> App {
    let app = App::new();
    let mut web = app.member(json!({ "instances": { "min": count, "max": 4 }, "routes": ["/"] }));
    for (key, value) in extra.as_object().expect("an object") {
        web[key] = value.clone();
    }
    let manifest = json!({
        "strata": 1, "app": name,
        "services": { "web": web },
        "queues": { "jobs": {} },
    });
    std::fs::write(app.path().join("strata.json"), manifest.to_string()).unwrap();
    app
}

/// Starts the app with `strata up` and waits for `count` ready instances; the node file.
async fn up_ready(user: &User, app: &App, count: u64) -> (Up, Value) {
    let mut up = user.up(app.path());
    let node = up.node_file().await;
    up.wait_ready(addr_of(node["api"].as_str().unwrap()), count).await;
    (up, node)
}

/// A directory that is no app's.
fn elsewhere() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("strata-elsewhere-").tempdir().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_run_elsewhere_find_the_only_node_and_print_tables() {
    let user = User::new();
    let app = member_app("shop", 1, json!({}));
    let (mut up, node) = up_ready(&user, &app, 1).await;
    let home = elsewhere();

    // ps from a directory with no node finds the one the user started.
    let out = user.strata(home.path(), &["ps"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("gateway http://{}", node["gateway"].as_str().unwrap())),
        "{text}"
    );
    assert!(text.contains("web-1") && text.contains("ready"), "{text}");
    let out = user.strata(home.path(), &["ps", "--json"]).await;
    let ps: Value = serde_json::from_str(&stdout(&out)).expect("ps --json prints JSON");
    assert_eq!(ps["app"], "shop");

    // ls lists it, with the directory to pass as -C.
    let out = user.strata(home.path(), &["ls", "--json"]).await;
    let nodes: Value = serde_json::from_str(&stdout(&out)).expect("ls --json prints JSON");
    assert_eq!(nodes.as_array().unwrap().len(), 1, "{nodes}");
    assert_eq!(nodes[0]["app"], "shop");
    assert_eq!(nodes[0]["pid"], up.pid);
    assert_eq!(
        std::fs::canonicalize(nodes[0]["dir"].as_str().unwrap()).unwrap(),
        std::fs::canonicalize(app.path()).unwrap()
    );

    // cache stats and queues: tables with named columns; --json for programs.
    let out = user.strata(home.path(), &["cache", "stats"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let header = text
        .lines()
        .find(|l| l.starts_with("SHARD"))
        .unwrap_or_else(|| panic!("{text}"));
    for column in ["KEYS", "BYTES", "HITS", "MISSES", "EVICTIONS", "EXPIRED"] {
        assert!(header.contains(column), "{header}");
    }
    assert!(text.lines().any(|l| l.starts_with("total")), "{text}");
    assert!(text.contains("read-through caches: none declared"), "{text}");
    let out = user.strata(home.path(), &["cache", "stats", "--json"]).await;
    let stats: Value = serde_json::from_str(&stdout(&out)).expect("cache stats --json prints JSON");
    assert!(stats["shards"].is_array(), "{stats}");
    let out = user.strata(home.path(), &["queues"]).await;
    let text = stdout(&out);
    assert!(
        text.starts_with("QUEUE") && text.contains("STORED") && text.contains("BACKLOG"),
        "{text}"
    );
    assert!(text.contains("STORED: messages on disk"), "{text}");
    for args in [["queues", "--json"], ["events", "--json"]] {
        let out = user.strata(home.path(), &args).await;
        serde_json::from_str::<Value>(&stdout(&out)).unwrap_or_else(|e| panic!("{args:?}: {e}: {}", stdout(&out)));
    }

    let out = user.strata(home.path(), &["down"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    up.wait_exit(Duration::from_secs(30)).await;
    // Its entry went with it.
    let out = user.strata(home.path(), &["ls", "--json"]).await;
    assert_eq!(stdout(&out).trim(), "[]");
    let out = user.strata(home.path(), &["ps"]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no running strata node found"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_lists_two_nodes_and_a_command_asks_which() {
    let user = User::new();
    let one = member_app("one", 1, json!({}));
    let two = member_app("two", 1, json!({}));
    let (mut up_one, _) = up_ready(&user, &one, 1).await;
    let (mut up_two, _) = up_ready(&user, &two, 1).await;
    let home = elsewhere();

    // An entry left by a node killed before it could remove it: a pid that has exited.
    let mut gone = Command::new("true").spawn().unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    let nodes_dir = user.runtime.path().join("strata").join("nodes");
    let stale = nodes_dir.join("stale-0000000000000000.json");
    std::fs::write(
        &stale,
        json!({"app": "stale", "dir": "/nowhere", "gateway": "127.0.0.1:1", "api": "http://127.0.0.1:1", "pid": dead_pid})
            .to_string(),
    )
    .unwrap();

    let out = user.strata(home.path(), &["ls"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let apps: Vec<&str> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(apps, ["one", "two"], "{text}");
    assert!(text.lines().next().unwrap().starts_with("APP"), "{text}");
    for (app, up) in [(&one, &up_one), (&two, &up_two)] {
        let line = text.lines().find(|l| l.contains(&format!(" {} ", up.pid))).unwrap();
        assert!(line.ends_with(&app.path().display().to_string()), "{line}");
    }
    assert!(!stale.exists(), "the dead node's entry is removed");

    // With two running, a command from elsewhere names them and asks for -C DIR...
    let out = user.strata(home.path(), &["ps"]).await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("2 strata nodes are running") && err.contains("-C DIR"),
        "{err}"
    );
    assert!(
        err.contains(&one.path().display().to_string()) && err.contains(&two.path().display().to_string()),
        "{err}"
    );
    // ...which finds each; so does a command run in an app's subfolder.
    let out = user
        .strata(home.path(), &["-C", two.path().to_str().unwrap(), "ps", "--json"])
        .await;
    let ps: Value = serde_json::from_str(&stdout(&out)).expect("ps --json");
    assert_eq!(ps["app"], "two");
    let sub = one.path().join("static");
    std::fs::create_dir(&sub).unwrap();
    let out = user.strata(&sub, &["ps", "--json"]).await;
    let ps: Value = serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)));
    assert_eq!(ps["app"], "one");

    for (app, up) in [(&one, &mut up_one), (&two, &mut up_two)] {
        let out = user.strata(app.path(), &["down"]).await;
        assert!(out.status.success(), "{}", stderr(&out));
        up.wait_exit(Duration::from_secs(30)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_piped_into_head_ends_quietly() {
    let user = User::new();
    // The member prints 50,000 lines first: more than a pipe holds, so `head` goes away
    // while strata still writes.
    let app = member_app(
        "shop",
        1,
        json!({ "run": ["sh", "-c", "seq 1 50000; exec python3 \"$0\"", MEMBER] }),
    );
    let (mut up, _) = up_ready(&user, &app, 1).await;
    for script in [
        "$STRATA ps --json | head -1",
        "$STRATA ps | head -1",
        "$STRATA ls | head -1",
        "$STRATA logs web | head -1",
        "$STRATA events | head -1",
        "$STRATA queues | head -1",
        "$STRATA cache stats | head -1",
        // A reader that is gone before the first write.
        "$STRATA ps --json | true",
        "$STRATA logs web | true",
        "$STRATA top --once --every 1 | true",
    ] {
        let out = user.pipeline(app.path(), script).await;
        assert!(out.status.success(), "{script}: {}: {}", out.status, stderr(&out));
        assert_eq!(stderr(&out), "", "{script}: nothing on stderr");
        if script.contains("head -1") {
            assert_eq!(stdout(&out).lines().count(), 1, "{script}: {}", stdout(&out));
        }
    }
    let out = user.pipeline(app.path(), "$STRATA logs web | head -1").await;
    assert_eq!(stdout(&out).trim(), "web-1 | 1");
    // A service that is not there: the node's words on stderr, no JSON on stdout.
    let out = user.strata(app.path(), &["logs", "nosuch"]).await;
    assert!(!out.status.success());
    assert_eq!(stdout(&out), "", "{}", stderr(&out));
    assert!(
        stderr(&out).contains(r#"no service named "nosuch" in app "shop" (services: web)"#),
        "{}",
        stderr(&out)
    );
    let out = user.strata(app.path(), &["down"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    up.wait_exit(Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_returns_once_the_node_and_every_instance_are_gone() {
    let user = User::new();
    let app = member_app("shop", 2, json!({}));
    let (mut up, node) = up_ready(&user, &app, 2).await;
    let ps = get(addr_of(node["api"].as_str().unwrap()), "/v1/ps").await.json();
    let instances = pids_in_ps(&ps);
    assert_eq!(instances.len(), 2, "{ps}");

    let out = user.strata(app.path(), &["down"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "stopping");
    // Already gone when down returned: no waiting here.
    assert!(!alive(up.pid), "the node still runs after strata down returned");
    for pid in &instances {
        assert!(!alive(*pid), "instance pid {pid} still runs after strata down returned");
    }
    assert!(up.wait_exit(Duration::from_secs(1)).await.success());
    assert!(up.output().contains("strata: stopped"), "{}", up.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_that_waits_too_long_says_what_still_runs() {
    let user = User::new();
    let app = member_app("shop", 1, json!({}));
    let (mut up, _) = up_ready(&user, &app, 1).await;
    let out = user.strata(app.path(), &["down", "--timeout", "0"]).await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("has not stopped after 0 s"), "{err}");
    assert!(err.contains(&format!("the node (pid {})", up.pid)), "{err}");
    assert!(err.contains("--timeout"), "{err}");
    // It was asked to stop all the same.
    assert!(up.wait_exit(Duration::from_secs(30)).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_names_every_problem_in_one_run() {
    let user = User::new();
    let app = App::new();
    std::fs::write(
        app.path().join("strata.json"),
        r#"{"strata": 1, "app": "shop", "services": {"web": {
            "run": ["python3", "app.py"], "helth": {"path": "/"},
            "instances": {"min": 5, "max": 2}, "routes": ["web"]}}}"#,
    )
    .unwrap();
    let out = user.strata(app.path(), &["validate"]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("is not valid (3 problems)"), "{err}");
    for problem in [
        "services.web.helth: unknown field",
        "services.web.instances.min: expected at most instances.max (2), found 5",
        "services.web.routes[0]: expected a path starting with /, found \"web\"",
    ] {
        assert!(err.contains(problem), "{problem:?} missing from:\n{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_and_flag_says_what_it_does() {
    let user = User::new();
    let home = elsewhere();
    let commands: &[&[&str]] = &[
        &[],
        &["up"],
        &["init"],
        &["validate"],
        &["ls"],
        &["ps"],
        &["logs"],
        &["scale"],
        &["down"],
        &["events"],
        &["queues"],
        &["cache"],
        &["cache", "stats"],
        &["cache", "drop-shard"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.push("-h");
        let out = user.strata(home.path(), &args).await;
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let text = stdout(&out);
        let about = text.lines().next().unwrap_or_default();
        assert!(
            !about.is_empty() && !about.starts_with("Usage"),
            "{args:?} has no description:\n{text}"
        );
        // Every argument and flag line carries a description after its name.
        let mut in_list = false;
        for line in text.lines() {
            if line.ends_with(':') && !line.starts_with(' ') {
                in_list = matches!(line, "Arguments:" | "Options:" | "Commands:");
                continue;
            }
            let item = line.trim_start();
            if in_list && !item.is_empty() && line.starts_with("  ") && item.starts_with(['-', '<', '[']) {
                assert!(item.contains("  "), "{args:?}: {item:?} has no help text:\n{text}");
            }
        }
    }
}

/// The node's threads named as its gateway workers (`strata-gateway-N`, cut to 15 bytes).
fn gateway_threads(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter(|t| {
            let comm = std::fs::read_to_string(t.as_ref().unwrap().path().join("comm")).unwrap_or_default();
            comm.starts_with("strata-gateway")
        })
        .count()
}

/// `--workers N` (or `STRATA_WORKERS`) sets the threads of the node's own runtime, which
/// its metrics report; 0 is refused naming the flag. `gateway.workers` sets the
/// gateway's threads; unless set, one per core the node may run on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_sets_the_threads_of_the_nodes_runtime() {
    let user = User::new();
    let cores = std::thread::available_parallelism().unwrap().get();
    for (args, env, expect, gateway) in [
        (&["--listen", "127.0.0.1:0", "--workers", "3"][..], None, 3.0, Some(3)),
        (&["--listen", "127.0.0.1:0"][..], Some("1"), 1.0, None),
    ] {
        let app = member_app("shop", 1, json!({}));
        if let Some(n) = gateway {
            let path = app.path().join("strata.json");
            let mut manifest: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            manifest["gateway"] = json!({ "workers": n });
            std::fs::write(&path, manifest.to_string()).unwrap();
        }
        let mut vars = vec![("XDG_RUNTIME_DIR", user.runtime.path())];
        if let Some(n) = env {
            vars.push(("STRATA_WORKERS", Path::new(n)));
        }
        let mut up = Up::spawn_with(app.path(), args, &vars);
        let node = up.node_file().await;
        let api = addr_of(node["api"].as_str().unwrap());
        up.wait_ready(api, 1).await;
        let metrics = get(api, "/v1/metrics").await;
        assert_eq!(metrics.status, 200, "{}", metrics.text());
        assert_eq!(
            metric(&metrics.text(), "strata_runtime_workers{"),
            expect,
            "{args:?} {env:?}"
        );
        assert_eq!(
            gateway_threads(up.pid),
            gateway.unwrap_or(cores),
            "gateway.workers {gateway:?}"
        );
        let out = user.strata(app.path(), &["down"]).await;
        assert!(out.status.success(), "{}", stderr(&out));
        up.wait_exit(Duration::from_secs(30)).await;
    }
    let out = user.strata(elsewhere().path(), &["up", "--workers", "0"]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("invalid value '0' for '--workers <N>'"),
        "{}",
        stderr(&out)
    );
}

/// An app that does not come up (here its program exits at once) is still told where
/// its gateway, node API and dashboard are, and what it waits for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_says_where_everything_is_when_the_app_does_not_come_up() {
    let user = User::new();
    let app = member_app("shop", 1, json!({ "run": ["python3", "-c", "raise SystemExit(3)"] }));
    let mut up = user.up(app.path());
    let node = up.node_file().await;
    let said = wait_for(
        "strata up to say the app is not up yet",
        Duration::from_secs(40),
        || {
            let out = up.output();
            out.contains("is not up yet").then_some(out)
        },
    )
    .await;
    let gateway = node["gateway"].as_str().unwrap();
    assert!(
        said.contains(&format!(
            "strata: shop is not up yet after 15 s, no ready instance of: web (`strata ps`, `strata logs SERVICE`); gateway http://{gateway}"
        )),
        "{said}"
    );
    assert!(said.contains("strata: dashboard http://"), "{said}");
    assert!(!said.contains("is up:"), "{said}");
    let out = user.strata(app.path(), &["down"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    up.wait_exit(Duration::from_secs(30)).await;
}

/// A `--nats` URL where no server answers is said as such within seconds, not as a
/// JetStream timeout half a minute later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_url_with_no_server_is_named_as_such() {
    let user = User::new();
    let home = elsewhere();
    // A port just freed: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("nats://127.0.0.1:{port}");
    let out = user.strata(home.path(), &["nodes", "--nats", &url]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("no NATS server answered at {url} within 10 s")),
        "{}",
        stderr(&out)
    );
}
