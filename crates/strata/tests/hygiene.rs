//! Process hygiene: scratch dirs are unique per incarnation of the node, and what a
//! node killed with SIGKILL left under `.strata/run/` is cleared at the next start.

mod common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_scratch_dirs_are_cleared_and_never_handed_to_a_new_instance() {
    let app = App::new();
    let run = app.path().join(".strata").join("run");
    // What a node killed by SIGKILL left: its pid's dir (that pid is not running), and a
    // dir of the old flat layout with the same name a new instance would get.
    let dead = run.join("4194303").join("web-1.1");
    let flat = run.join("web-1.1");
    for dir in [&dead, &flat] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("left-behind"), b"secret of the last incarnation").unwrap();
    }
    let manifest = app.manifest(json!({ "web": app.member(json!({})) }), json!(null));
    let node = app.start(app.config(manifest)).await;
    wait_ready(&node, "web", 1).await;
    assert!(!run.join("4194303").exists(), "a dead node's scratch dirs are removed");
    assert!(!flat.exists(), "the old layout's dirs are removed");
    let mine = run.join(std::process::id().to_string()).join("web-1.1");
    assert!(mine.is_dir(), "the instance's scratch dir is under this node's pid");
    assert!(
        !mine.join("left-behind").exists(),
        "a new instance starts with an empty scratch dir"
    );
    stop(node).await;
    assert!(!mine.exists(), "the scratch dir is removed when the instance stops");
}
