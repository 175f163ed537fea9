//! An image's own configuration on a real runtime (runc), with images built here from
//! Debian's busybox-static: its `Entrypoint` and `Cmd` run when the service has no
//! `run`, with its `Env` under the manifest's, in its `WorkingDir`, as its `User` (a
//! name from its own `/etc/passwd`); a `run` replaces them; an image without a shell
//! runs its program as the container's first process; an image with nothing to run
//! is refused naming the service and the image.
//!
//! Like `oci.rs`, these need runc, root and busybox-static; under `CI=true` a missing
//! one fails them, elsewhere they say SKIPPED.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use strata_appservice::{container_prefix, AppConfig, AppService, InstanceState, NodeResources};
use strata_bus::Bus;
use tokio_util::sync::CancellationToken;

#[path = "support/image.rs"]
mod image;
use image::{layer_tar, write_layout, Item};

/// Whether runc, root and busybox-static are here; under CI a missing one fails.
fn here(test: &str) -> bool {
    let runc = if runc().is_some() {
        Ok(())
    } else {
        Err("runc (apt-get install runc)".to_string())
    };
    // SAFETY: geteuid has no preconditions and touches no memory.
    let root = if unsafe { libc::geteuid() } == 0 {
        Ok(())
    } else {
        Err("root: runc runs rootful containers here".to_string())
    };
    strata_testkit::needs(test, runc)
        && strata_testkit::needs(test, root)
        && strata_testkit::needs(
            test,
            strata_testkit::program("busybox", "apt-get install busybox-static"),
        )
}

fn runc() -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join("runc"))
        .find(|p| p.is_file())
}

/// One image store for the tests of this file (the node reads `$STRATA_IMAGES`, set
/// once, to the same value, whichever test comes first).
fn use_store() {
    static STORE: OnceLock<PathBuf> = OnceLock::new();
    STORE.get_or_init(|| {
        let store = Path::new(env!("CARGO_TARGET_TMPDIR")).join("oci-image-config-store");
        std::env::set_var("STRATA_IMAGES", &store);
        store
    });
}

fn busybox() -> Vec<u8> {
    std::fs::read("/usr/bin/busybox").expect("busybox-static")
}

/// An app directory readable by any container user, with the layout `name` built in
/// it by `build`.
fn app_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn start(dir: &Path, service: Value) -> AppService {
    let state_dir = dir.join(".strata");
    std::fs::create_dir_all(&state_dir).unwrap();
    let text = json!({"strata": 1, "app": "imaged", "services": {"web": service}}).to_string();
    let config = AppConfig {
        cluster_node: None,
        grpc_probe: None,
        manifest: strata_manifest::parse(&text).expect("a valid manifest"),
        app_dir: dir.to_path_buf(),
        state_dir,
        api_url: "http://127.0.0.1:1".into(),
        tokens: BTreeMap::new(),
        node: NodeResources::detect(),
    };
    AppService::start(config, Bus::new(), CancellationToken::new()).expect("start the app")
}

/// The ready instance's port; its log in the panic if none gets ready.
async fn ready_port(app: &AppService, dir: &Path) -> u16 {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let snapshot = app.snapshot();
        if let Some(instance) = snapshot[0].instances.first() {
            if instance.state == InstanceState::Ready {
                return instance.port.unwrap();
            }
        }
        assert!(
            Instant::now() < until,
            "no ready instance: {snapshot:#?}\n{:#?}\nits log:\n{}",
            app.recent_events(),
            std::fs::read_to_string(dir.join(".strata/logs/web/web-1.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// GET `path` from 127.0.0.1:`port`: (status, body).
async fn fetch(port: u16, path: &str) -> (u16, String) {
    let path = path.to_string();
    tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
        let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        (status, body.to_string())
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_run_the_image_runs_its_command_with_its_env_workdir_and_named_user() {
    let test = "with_no_run_the_image_runs_its_command_with_its_env_workdir_and_named_user";
    if !here(test) {
        return;
    }
    use_store();
    let dir = app_dir();
    // `/data`, its WorkingDir, is in no layer: strata makes it. `app` is a name of the
    // image's /etc/passwd, whose group 2345 is its primary one.
    let layer = layer_tar(&[
        Item::Dir("bin"),
        Item::File("bin/busybox", 0o755, busybox()),
        Item::Link("bin/sh", "busybox"),
        Item::Dir("etc"),
        Item::File(
            "etc/passwd",
            0o644,
            b"root:x:0:0:root:/root:/bin/sh\napp:x:1234:2345:app:/data:/bin/sh\n".to_vec(),
        ),
        Item::File("etc/group", 0o644, b"root:x:0:\napp:x:2345:\n".to_vec()),
    ]);
    let cmd = "mkdir -p /tmp/www && { busybox id -u; busybox id -g; pwd; echo \"$GREETING $ONLY_IMAGE $STRATA_SERVICE\"; } > /tmp/www/info.txt && exec busybox httpd -f -p \"$PORT\" -h /tmp/www";
    write_layout(
        &dir.path().join("configured"),
        &[(layer, true)],
        json!({
            "Entrypoint": ["/bin/sh", "-c"],
            "Cmd": [cmd],
            "Env": ["PATH=/bin", "GREETING=from-image", "ONLY_IMAGE=kept"],
            "WorkingDir": "/data",
            "User": "app",
        }),
        "configured",
    );
    let app = start(
        dir.path(),
        json!({
            "driver": "oci", "image": "./configured",
            "env": {"GREETING": "from-manifest"},
            "health": {"path": "/info.txt", "interval_ms": 100, "timeout_ms": 2000},
        }),
    );
    let port = ready_port(&app, dir.path()).await;
    let (status, body) = fetch(port, "/info.txt").await;
    assert_eq!(status, 200);
    assert_eq!(
        body, "1234\n2345\n/data\nfrom-manifest kept web\n",
        "uid and gid of `app`, the WorkingDir, the image's Env under the manifest's and strata's"
    );
    app.stop().await;

    // The manifest's `user` and `workdir` win over the image's.
    let app = start(
        dir.path(),
        json!({
            "driver": "oci", "image": "./configured", "user": "4321:77", "workdir": ".",
            "health": {"path": "/info.txt", "interval_ms": 100, "timeout_ms": 2000},
        }),
    );
    let port = ready_port(&app, dir.path()).await;
    let (_, body) = fetch(port, "/info.txt").await;
    let app_path = dir.path().canonicalize().unwrap();
    assert_eq!(body, format!("4321\n77\n{}\nfrom-image kept web\n", app_path.display()));
    app.stop().await;

    // The manifest's `user` by name, looked up in the image (and root by name too: the
    // manifest may ask for it).
    let app = start(
        dir.path(),
        json!({
            "driver": "oci", "image": "./configured", "user": "app:root",
            "health": {"path": "/info.txt", "interval_ms": 100, "timeout_ms": 2000},
        }),
    );
    let port = ready_port(&app, dir.path()).await;
    let (_, body) = fetch(port, "/info.txt").await;
    assert!(body.starts_with("1234\n0\n"), "{body:?}");
    app.stop().await;

    // A name the image does not have: no launch, and why, in the instance's detail.
    let app = start(
        dir.path(),
        json!({
            "driver": "oci", "image": "./configured", "user": "ghost",
            "health": {"path": "/info.txt", "interval_ms": 100, "timeout_ms": 2000},
        }),
    );
    let until = Instant::now() + Duration::from_secs(30);
    let why = loop {
        let snapshot = app.snapshot();
        let instance = snapshot[0].instances.first().cloned();
        let text = instance
            .map(|i| format!("{} {}", i.detail.unwrap_or_default(), i.last_exit.unwrap_or_default()))
            .unwrap_or_default();
        if text.contains("ghost") {
            break text;
        }
        assert!(Instant::now() < until, "no word of the unknown user: {snapshot:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(why.contains("no user \"ghost\" in the image's /etc/passwd"), "{why}");
    assert_ne!(app.snapshot()[0].instances[0].state, InstanceState::Ready);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_replaces_the_image_command_and_an_image_without_a_shell_runs_its_program_as_pid_1() {
    let test = "run_replaces_the_image_command_and_an_image_without_a_shell_runs_its_program_as_pid_1";
    if !here(test) {
        return;
    }
    use_store();
    let dir = app_dir();
    // No /bin/sh: nothing but busybox and the files it serves.
    let layer = layer_tar(&[
        Item::Dir("bin"),
        Item::File("bin/busybox", 0o755, busybox()),
        Item::Dir("www"),
        Item::File("www/hello.txt", 0o644, b"hello without a shell\n".to_vec()),
    ]);
    write_layout(
        &dir.path().join("shell-less"),
        &[(layer, false)],
        json!({"Entrypoint": ["/bin/busybox"], "Cmd": ["false"], "User": "0"}),
        "shell-less",
    );
    let app = start(
        dir.path(),
        json!({
            "run": ["/bin/busybox", "httpd", "-f", "-p", "${PORT}", "-h", "/www"],
            "driver": "oci", "image": "./shell-less",
            "health": {"path": "/hello.txt", "interval_ms": 100, "timeout_ms": 2000},
            "stop_grace_ms": 500,
        }),
    );
    let port = ready_port(&app, dir.path()).await;
    assert_eq!(
        fetch(port, "/hello.txt").await,
        (200, "hello without a shell\n".to_string())
    );
    // The container's first process is the program itself, as the non-root default
    // (root in the image's config is not enough for root).
    let id = format!("{}web-1.1", container_prefix(&dir.path().join(".strata")));
    let out = Command::new(runc().unwrap()).args(["state", &id]).output().unwrap();
    let state: Value = serde_json::from_slice(&out.stdout).expect("runc state JSON");
    let pid = state["pid"].as_u64().expect("a pid");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(
        cmdline.starts_with(b"/bin/busybox\0httpd\0"),
        "{}",
        String::from_utf8_lossy(&cmdline)
    );
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(uid.contains("65534"), "{uid}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_with_nothing_to_run_and_no_run_is_refused_naming_both() {
    let test = "an_image_with_nothing_to_run_and_no_run_is_refused_naming_both";
    if !here(test) {
        return;
    }
    use_store();
    let dir = app_dir();
    let layer = layer_tar(&[Item::Dir("bin"), Item::File("bin/busybox", 0o755, busybox())]);
    write_layout(
        &dir.path().join("silent"),
        &[(layer, false)],
        json!({"Env": ["PATH=/bin"]}),
        "silent",
    );
    let app = start(dir.path(), json!({"driver": "oci", "image": "./silent"}));
    let until = Instant::now() + Duration::from_secs(30);
    let said = loop {
        let found = app
            .recent_events()
            .into_iter()
            .map(|e| e.message)
            .find(|m| m.contains("says nothing to run"));
        if let Some(m) = found {
            break m;
        }
        assert!(Instant::now() < until, "not refused: {:#?}", app.recent_events());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        said.contains("services.web: image ./silent (")
            && said.contains("neither Entrypoint nor Cmd; give the service a \"run\""),
        "{said}"
    );
    assert!(app.snapshot()[0]
        .instances
        .iter()
        .all(|i| i.state != InstanceState::Ready));
    app.stop().await;
}
