//! The `strata` commands against a running node: validate, ps, scale, logs.

mod common;

use common::*;
use serde_json::{json, Value};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_names_the_field_that_is_wrong() {
    let app = App::new();
    let write = |text: &str| std::fs::write(app.path().join("strata.json"), text).unwrap();

    write(r#"{"strata": 1, "app": "shop", "services": {"web": {"run": ["x"], "instances": {"min": 5, "max": 2}}}}"#);
    let out = strata(app.path(), &["validate"]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("services.web.instances.min"), "{}", stderr(&out));
    assert!(stderr(&out).contains("at most instances.max (2)"), "{}", stderr(&out));

    write(r#"{"strata": 1, "app": "shop", "services": {"web": {"run": ["x"], "helth": {"path": "/"}}}}"#);
    let out = strata(app.path(), &["validate"]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("services.web.helth: unknown field"),
        "{}",
        stderr(&out)
    );

    write(r#"{"strata": 1, "app": "shop", "services": {"web": {"run": ["x"], "routes": ["/"]}}}"#);
    let out = strata(app.path(), &["validate"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("is valid"), "{}", stdout(&out));
    assert!(!stdout(&out).contains("note:"), "{}", stdout(&out));

    // Valid, with a note on a reference that nothing sets (a typo of PORT).
    write(r#"{"strata": 1, "app": "shop", "services": {"web": {"run": ["x", "${PROT}", "${PORT}"]}}}"#);
    let out = strata(app.path(), &["validate"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("note: services.web.run[1]: ${PROT} is set by nothing"),
        "{}",
        stdout(&out)
    );

    // An image that is not there: a path to nothing, a digest never imported.
    let zeros = "0".repeat(64);
    write(r#"{"strata": 1, "app": "shop", "services": {"a": {"driver": "oci", "image": "./nope.tar", "run": ["x"]}}}"#);
    let out = strata(app.path(), &["validate"]).await;
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("services.a.image: expected an OCI image layout folder or an image archive"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("found nothing at ./nope.tar"), "{}", stderr(&out));
    write(&format!(
        r#"{{"strata": 1, "app": "shop", "services": {{"b": {{"driver": "oci", "image": "sha256:{zeros}", "run": ["x"]}}}}}}"#
    ));
    // Valid (the image store is this machine's), with a note; `up` refuses it.
    let out = strata(app.path(), &["validate"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("note: services.b.image: expected an image imported with `strata image import`"),
        "{}",
        stdout(&out)
    );
    let out = strata(app.path(), &["up"]).await;
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(stderr(&out).contains("cannot run here"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("which the image store does not hold"),
        "{}",
        stderr(&out)
    );

    // A file given by name, from elsewhere, via --dir.
    std::fs::write(
        app.path().join("other.json"),
        r#"{"strata": 2, "app": "x", "services": {}}"#,
    )
    .unwrap();
    let out = strata(
        std::path::Path::new("/"),
        &["validate", "--dir", app.path().to_str().unwrap(), "other.json"],
    )
    .await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("strata: expected 1"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ps_scale_and_logs_talk_to_the_running_node() {
    let app = App::new();
    let spec = app.member(json!({ "instances": { "min": 1, "max": 4 }, "routes": ["/"] }));
    let mut config = app.config(app.manifest(json!({ "web": spec }), Value::Null));
    config.write_state_file = true;
    let node = app.start(config).await;
    wait_ready(&node, "web", 1).await;
    let dir = app.path().to_str().unwrap().to_string();
    let api_url = format!("http://{}", node.api_addr);
    let elsewhere = std::path::Path::new("/");

    // ps --json, finding the node through the app dir or given its API.
    for args in [["ps", "--json", "--dir", &dir], ["ps", "--json", "--api", &api_url]] {
        let out = strata(elsewhere, &args).await;
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let ps: Value = serde_json::from_str(&stdout(&out)).expect("ps --json prints JSON");
        assert_eq!(ps["gateway"], node.gateway_addr.to_string());
        assert_eq!(ps["app"], "test");
        assert_eq!(ps["services"][0]["name"], "web");
        assert_eq!(ps["services"][0]["ready"], 1);
        assert_eq!(ps["services"][0]["instances"][0]["state"], "ready");
    }
    let out = strata(app.path(), &["ps"]).await;
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(
        text.contains(&format!("gateway http://{}", node.gateway_addr)),
        "{text}"
    );
    assert!(text.contains("web-1") && text.contains("ready"), "{text}");

    // scale within the bounds, then out of them.
    let out = strata(app.path(), &["scale", "web", "3"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "web: scaling to 3 instance(s)");
    wait_ready(&node, "web", 3).await;
    let out = strata(app.path(), &["scale", "web", "9"]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("web can run between 1 and 4 instances") && stderr(&out).contains("9 is outside"),
        "{}",
        stderr(&out)
    );
    let out = strata(app.path(), &["scale", "nope", "2"]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no service named \"nope\""), "{}", stderr(&out));
    assert_eq!(service(&node, "web").desired, 3);

    // top --once: one frame, with the requests flowing through the gateway meanwhile.
    let gateway = node.gateway_addr;
    let load = tokio::spawn(async move {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        while std::time::Instant::now() < deadline {
            assert_eq!(get(gateway, "/").await.status, http::StatusCode::OK);
        }
    });
    let out = strata(app.path(), &["top", "--once", "--every", "1"]).await;
    load.await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let frame = stdout(&out);
    assert!(
        !frame.contains(['│', '─', '┌']) && !frame.contains("q quits"),
        "plain text, no boxes and no keys: {frame}"
    );
    assert!(frame.contains("services:") && frame.contains("instances:"), "{frame}");
    for id in ["web-1", "web-2", "web-3"] {
        assert!(frame.contains(id), "{frame}");
    }
    let row: Vec<&str> = frame
        .lines()
        .find(|l| l.contains("3/3"))
        .unwrap_or_else(|| panic!("no web row: {frame}"))
        .split_whitespace()
        .collect();
    assert_eq!(&row[..3], ["web", "running", "3/3"], "{frame}");
    let per_s: f64 = row[3].parse().unwrap_or_else(|_| panic!("REQ/S in {row:?}"));
    assert!(per_s > 0.0, "requests flowed: {frame}");
    assert!(row[5].parse::<f64>().is_ok(), "a p50 while requests flow: {frame}");

    // logs: the members' output, line by line, named by instance.
    let out = strata(app.path(), &["logs", "web"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for id in ["web-1", "web-2", "web-3"] {
        assert!(
            text.contains(&format!("{id} | member {id} listening on port")),
            "{text}"
        );
    }
    let out = strata(app.path(), &["logs", "web", "--instance", "web-2"]).await;
    let text = stdout(&out);
    assert!(
        text.contains("web-2 | member web-2") && !text.contains("web-1 |"),
        "{text}"
    );
    let out = strata(app.path(), &["logs", "nope"]).await;
    assert!(!out.status.success());
    stop(node).await;
}

/// A one-layer OCI image layout, written by Python's standard library (so that this
/// test checks strata against a layout it did not write itself); `media_type` is the
/// layer's.
fn python_layout(dir: &std::path::Path, media_type: &str) {
    let script = r#"
import hashlib, io, json, os, sys, tarfile
out, media = sys.argv[1], sys.argv[2]
os.makedirs(out + "/blobs/sha256", exist_ok=True)
def blob(data, mt):
    d = hashlib.sha256(data).hexdigest()
    open(out + "/blobs/sha256/" + d, "wb").write(data)
    return {"mediaType": mt, "digest": "sha256:" + d, "size": len(data)}
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w") as t:
    body = b"hello\n"
    info = tarfile.TarInfo("etc/greeting")
    info.size = len(body)
    t.addfile(info, io.BytesIO(body))
layer = buf.getvalue()
config = json.dumps({"os": "linux", "architecture": "amd64", "config": {"Env": ["A=1"]},
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]}}).encode()
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": blob(config, "application/vnd.oci.image.config.v1+json"),
    "layers": [blob(layer, media)]}).encode()
desc = blob(manifest, "application/vnd.oci.image.manifest.v1+json")
desc["annotations"] = {"org.opencontainers.image.ref.name": "tiny"}
json.dump({"schemaVersion": 2, "manifests": [desc]}, open(out + "/index.json", "w"))
open(out + "/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
"#;
    let status = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(dir)
        .arg(media_type)
        .status()
        .expect("python3");
    assert!(status.success());
}

#[test]
fn image_import_and_ls_keep_images_by_digest_and_refuse_a_lying_or_unknown_layer() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let image = |args: &[&str]| {
        std::process::Command::new(STRATA)
            .arg("image")
            .args(args)
            .env("STRATA_IMAGES", &store)
            .output()
            .expect("run strata image")
    };
    let good = dir.path().join("tiny");
    python_layout(&good, "application/vnd.oci.image.layer.v1.tar");
    let out = image(&["import", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("sha256:") && stdout(&out).contains("tiny"),
        "{}",
        stdout(&out)
    );
    let digest = stdout(&out).split_whitespace().next().unwrap().to_string();
    let out = image(&["ls", "--json"]);
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["images"][0]["digest"], digest.as_str(), "{listed:#}");
    assert_eq!(listed["images"][0]["env"], json!(["A=1"]));
    let rootfs = store.join("rootfs").join(digest.trim_start_matches("sha256:"));
    assert_eq!(std::fs::read(rootfs.join("etc/greeting")).unwrap(), b"hello\n");

    // A `docker save` archive (the legacy layout: manifest.json, the config and the layer
    // as files), its layer checked against the config's diff_ids.
    let docker = |name: &str, diff_id_of: &str| {
        let script = r#"
import hashlib, io, json, sys, tarfile
out, lie = sys.argv[1], sys.argv[2] == "lie"
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w") as t:
    body = b"from docker\n"
    info = tarfile.TarInfo("etc/greeting")
    info.size = len(body)
    t.addfile(info, io.BytesIO(body))
layer = buf.getvalue()
diff_id = hashlib.sha256(b"not the layer" if lie else layer).hexdigest()
config = json.dumps({"os": "linux", "architecture": "amd64", "config": {"Env": ["B=2"]},
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + diff_id]}}).encode()
cfg_name = hashlib.sha256(config).hexdigest() + ".json"
with tarfile.open(out, mode="w") as t:
    for name, data in [(cfg_name, config), ("abc/layer.tar", layer),
                       ("manifest.json", json.dumps([{"Config": cfg_name, "RepoTags": ["tiny:docker"],
                                                      "Layers": ["abc/layer.tar"]}]).encode())]:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
"#;
        let path = dir.path().join(name);
        let status = std::process::Command::new("python3")
            .args(["-c", script])
            .arg(&path)
            .arg(diff_id_of)
            .status()
            .expect("python3");
        assert!(status.success());
        path
    };
    let saved = docker("saved.tar", "layer");
    let out = image(&["import", saved.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("tiny:docker"), "{}", stdout(&out));
    let lying = docker("lying.tar", "lie");
    let out = image(&["import", lying.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("digest mismatch"), "{}", stderr(&out));

    let odd = dir.path().join("odd");
    python_layout(&odd, "application/vnd.example.layer.v1.tar+lz4");
    let out = image(&["import", odd.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unknown layer media type \"application/vnd.example.layer.v1.tar+lz4\""),
        "{}",
        stderr(&out)
    );
    let out = image(&["ls", "--json"]);
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        listed["images"].as_array().unwrap().len(),
        2,
        "the layout and the docker archive; nothing of the refused ones"
    );
}

/// `strata node` waiting for a NATS server that is not there stops at SIGTERM, not when
/// its 30 s of waiting are over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_waiting_for_nats_stops_at_sigterm() {
    let app = App::new();
    let mut node = tokio::process::Command::new(STRATA)
        .args(["node", "--nats", "nats://127.0.0.1:1", "--name", "lonely", "--data"])
        .arg(app.path().join("data"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(node.try_wait().unwrap().is_none(), "still waiting for NATS");
    signal(node.id().unwrap() as i32, libc::SIGTERM);
    let ended = tokio::time::timeout(std::time::Duration::from_secs(5), node.wait()).await;
    assert!(ended.is_ok(), "stopped within 5 s of SIGTERM");
}
