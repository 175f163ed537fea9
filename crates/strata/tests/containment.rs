//! Every descendant of every instance ends with it, however it detached: an instance
//! whose program `setsid`s one sleeper and double-forks another (both out of reach of a
//! process-group kill) leaves nothing running after a node stop, `strata down`, a
//! SIGKILL of `strata up`, or its own exit; with the cgroup containment this machine
//! gives and with the subreaper shims (`STRATA_CONTAINMENT=subreaper`). Each program
//! records, as its first action, what contains it: it is contained before it runs.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const GONE_TIMEOUT: Duration = Duration::from_secs(15);

/// The program: in `$PIDS/INSTANCE-PID/` it records its cgroup and its parent (first),
/// then the pids of a `setsid`'d sleeper, a double-forked sleeper and its own; then it
/// serves as the test member, or, with `$THEN_EXIT`, exits at once.
const DAEMONIZING: &str = r#"
d="$PIDS/$STRATA_INSTANCE-$$"; mkdir -p "$d"
while read -r cg; do case "$cg" in 0::*) echo "$cg" > "$d/first-cgroup" ;; esac; done < /proc/self/cgroup
read -r parent < /proc/$PPID/stat; echo "$parent" > "$d/first-parent"
setsid sh -c 'echo $$ > "$1/setsid.pid"; exec sleep 300' sh "$d" </dev/null >/dev/null 2>&1 &
(sh -c 'echo $$ > "$1/double.pid"; exec sleep 300' sh "$d" </dev/null >/dev/null 2>&1 &)
if [ -n "$THEN_EXIT" ]; then
  while [ ! -s "$d/setsid.pid" ] || [ ! -s "$d/double.pid" ]; do sleep 0.01; done
  echo $$ > "$d/program.pid"
  exit 1
fi
echo $$ > "$d/program.pid"
exec python3 "$MEMBER"
"#;

/// A service of `count` instances running [`DAEMONIZING`].
fn daemonizing(app: &App, pids: &Path, count: u32, then_exit: bool) -> Value {
    let mut env = json!({ "PIDS": pids.display().to_string(), "MEMBER": MEMBER });
    if then_exit {
        env["THEN_EXIT"] = json!("1");
    }
    json!({ "web": app.member(json!({
        "run": ["sh", "-c", DAEMONIZING],
        "instances": { "min": count, "max": count },
        "env": env,
    })) })
}

/// What one launch of the program recorded.
#[derive(Debug)]
struct Launch {
    dir: PathBuf,
    program: i32,
    setsid: i32,
    double: i32,
    first_cgroup: String,
    first_parent: String,
}

impl Launch {
    fn pids(&self) -> [i32; 3] {
        [self.program, self.setsid, self.double]
    }

    fn by_cgroup(&self) -> bool {
        self.first_cgroup.contains("/strata-")
    }

    /// How the program was contained when it first ran; panics if it was not.
    fn containment(&self) -> &'static str {
        if self.by_cgroup() {
            "cgroup"
        } else if self.first_parent.contains("(strata-shim)") {
            "subreaper"
        } else {
            panic!("{} was not contained when it started: {self:?}", self.dir.display())
        }
    }
}

/// Every launch whose three pids are recorded.
fn launches(pids: &Path) -> Vec<Launch> {
    let read = |dir: &Path, name: &str| std::fs::read_to_string(dir.join(name)).ok();
    let pid = |dir: &Path, name: &str| read(dir, name)?.trim().parse::<i32>().ok();
    let mut out = Vec::new();
    for entry in std::fs::read_dir(pids).into_iter().flatten().flatten() {
        let dir = entry.path();
        if let (Some(program), Some(setsid), Some(double)) = (
            pid(&dir, "program.pid"),
            pid(&dir, "setsid.pid"),
            pid(&dir, "double.pid"),
        ) {
            out.push(Launch {
                program,
                setsid,
                double,
                first_cgroup: read(&dir, "first-cgroup").unwrap_or_default().trim().to_string(),
                first_parent: read(&dir, "first-parent").unwrap_or_default(),
                dir,
            });
        }
    }
    out
}

async fn wait_launches(pids: &Path, count: usize) -> Vec<Launch> {
    wait_for(&format!("{count} launches to record their pids"), READY_TIMEOUT, || {
        let all = launches(pids);
        (all.len() >= count).then_some(all)
    })
    .await
}

/// [`wait_launches`] of launches still running: on a loaded machine a launch may have
/// failed its first checks and been replaced (its pid dir stays).
async fn wait_running_launches(pids: &Path, count: usize) -> Vec<Launch> {
    wait_for(&format!("{count} running launches"), READY_TIMEOUT, || {
        let all: Vec<Launch> = launches(pids)
            .into_iter()
            .filter(|l| proc_stat(l.program).is_some())
            .collect();
        (all.len() >= count).then_some(all)
    })
    .await
}

/// Checks that the sleepers run and escaped the program's process group and session
/// (what a process-group kill misses), and that each launch was contained from its
/// first instruction; returns the containment used.
fn check_escaped_but_contained(launches: &[Launch]) -> &'static str {
    for launch in launches {
        let program = proc_stat(launch.program).expect("the program runs");
        let setsid = proc_stat(launch.setsid).expect("the setsid'd sleeper runs");
        assert_eq!(setsid.comm, "sleep");
        assert_ne!(
            setsid.pgrp, program.pgrp,
            "the setsid'd sleeper left the instance's group"
        );
        assert!(alive(launch.double), "the double-forked sleeper runs");
    }
    let how = launches[0].containment();
    assert!(launches.iter().all(|l| l.containment() == how));
    how
}

/// Kills whatever a failed test left behind.
struct KillOnDrop(Vec<i32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if alive(pid) {
                // SAFETY: kill(2) touches no memory.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

fn all_pids(launches: &[Launch]) -> KillOnDrop {
    KillOnDrop(launches.iter().flat_map(Launch::pids).collect())
}

/// Waits until none of `pids` runs; returns how long that took.
async fn wait_all_gone(pids: &KillOnDrop, since: Instant) -> Duration {
    wait_until("every process of the instances' trees to end", GONE_TIMEOUT, || {
        pids.0.iter().all(|&p| !alive(p))
    })
    .await;
    since.elapsed()
}

/// The directory of a cgroup path (`/strata-1-0/3-web-1.1`) on this machine's cgroup2
/// mount.
fn cgroup_dir(path: &str) -> PathBuf {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mount = mountinfo
        .lines()
        .find(|l| l.split(" - ").nth(1).is_some_and(|f| f.starts_with("cgroup2 ")))
        .and_then(|l| l.split(' ').nth(4))
        .expect("a cgroup2 mount");
    Path::new(mount).join(path.trim_start_matches('/'))
}

/// With cgroups: the node's cgroup (the parent of the launches' cgroups) is removed.
async fn wait_node_cgroup_removed(launch: &Launch) {
    if !launch.by_cgroup() {
        return;
    }
    let leaf = cgroup_dir(launch.first_cgroup.trim_start_matches("0::"));
    let node = leaf.parent().unwrap().to_path_buf();
    wait_until(&format!("{} to be removed", node.display()), GONE_TIMEOUT, || {
        !node.exists()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_stop_ends_every_descendant_of_every_instance() {
    let app = App::new();
    let pids = app.path().join("pids");
    let node = app
        .start(app.config(app.manifest(daemonizing(&app, &pids, 2, false), Value::Null)))
        .await;
    wait_ready(&node, "web", 2).await;
    let launches = wait_launches(&pids, 2).await;
    let left = all_pids(&launches);
    let how = check_escaped_but_contained(&launches);
    let since = Instant::now();
    stop(node).await;
    let took = wait_all_gone(&left, since).await;
    eprintln!("containment {how}: node stop ended every descendant within {took:?}");
    wait_node_cgroup_removed(&launches[0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_exits_takes_its_daemons_with_it() {
    let app = App::new();
    let pids = app.path().join("pids");
    let node = app
        .start(app.config(app.manifest(daemonizing(&app, &pids, 1, true), Value::Null)))
        .await;
    // It exits at once, so it is launched again and again (with a back-off): each
    // launch's sleepers must be gone once that launch ended, while the node runs on.
    let launches = wait_launches(&pids, 2).await;
    let left = all_pids(&launches);
    check_contained(&launches);
    let first = launches.iter().min_by_key(|l| l.program).unwrap();
    wait_until("the sleepers of the first launch to end with it", GONE_TIMEOUT, || {
        first.pids().iter().all(|&p| !alive(p))
    })
    .await;
    stop(node).await;
    wait_all_gone(&left, Instant::now()).await;
}

/// Each launch was contained from its first instruction.
fn check_contained(launches: &[Launch]) {
    for launch in launches {
        launch.containment();
    }
}

/// `strata up` with the daemonizing service and `env`; its node ready, and the launches.
async fn up_with(app: &App, env: &[(&str, &Path)]) -> (Up, Vec<Launch>) {
    let pids = app.path().join("pids");
    app.write_manifest(daemonizing(app, &pids, 2, false), Value::Null);
    let args = ["--listen", "127.0.0.1:0", "--cache-listen", "127.0.0.1:0"];
    let mut up = Up::spawn_with(app.path(), &args, env);
    let node = up.node_file().await;
    let api = addr_of(node["api"].as_str().unwrap());
    up.wait_ready(api, 2).await;
    let launches = wait_running_launches(&pids, 2).await;
    (up, launches)
}

const SUBREAPER: [(&str, &str); 1] = [("STRATA_CONTAINMENT", "subreaper")];

fn env_of<'a>(pairs: &'a [(&'a str, &'a str)]) -> Vec<(&'a str, &'a Path)> {
    pairs.iter().map(|(k, v)| (*k, Path::new(*v))).collect()
}

async fn sigkill_leaves_nothing(env: &[(&str, &str)], want: Option<&str>) {
    let app = App::new();
    let (mut up, launches) = up_with(&app, &env_of(env)).await;
    let left = all_pids(&launches);
    let how = check_escaped_but_contained(&launches);
    if let Some(want) = want {
        assert_eq!(how, want);
    }
    let since = Instant::now();
    signal(up.pid, libc::SIGKILL);
    up.wait_exit(Duration::from_secs(10)).await;
    let took = wait_all_gone(&left, since).await;
    eprintln!("containment {how}: after SIGKILL of strata up, every descendant ended within {took:?}");
    wait_node_cgroup_removed(&launches[0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_strata_up_ends_every_descendant() {
    sigkill_leaves_nothing(&[], None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_strata_up_ends_every_descendant_with_subreaper_shims() {
    sigkill_leaves_nothing(&SUBREAPER, Some("subreaper")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strata_down_ends_every_descendant_with_subreaper_shims() {
    let app = App::new();
    let (mut up, launches) = up_with(&app, &env_of(&SUBREAPER)).await;
    let left = all_pids(&launches);
    assert_eq!(check_escaped_but_contained(&launches), "subreaper");
    let since = Instant::now();
    let down = strata(app.path(), &["down"]).await;
    assert!(
        down.status.success(),
        "strata down: {}",
        String::from_utf8_lossy(&down.stderr)
    );
    let status = up.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "strata up ended with {status}:\n{}", up.output());
    let took = wait_all_gone(&left, since).await;
    eprintln!("containment subreaper: strata down ended every descendant within {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_containment_is_refused_by_name() {
    let app = App::new();
    app.write_manifest(daemonizing(&app, &app.path().join("pids"), 1, false), Value::Null);
    let mut up = Up::spawn_with(
        app.path(),
        &["--listen", "127.0.0.1:0"],
        &env_of(&[("STRATA_CONTAINMENT", "jail")]),
    );
    // The start fails after the gateway started: what it started stops and strata exits.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = up.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "strata up did not exit:\n{}",
            up.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.success(), "strata up refused the setting with {status}");
    let out = up.output();
    assert!(
        out.contains("STRATA_CONTAINMENT=\"jail\"") && out.contains("cgroup, subreaper or auto"),
        "{out}"
    );
    assert!(!app.path().join("pids").exists(), "no instance was started");
}
