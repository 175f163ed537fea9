//! A copy of one of the repo's examples, laid out as in the repo (`examples/NAME` beside
//! `clients/python`, which the shop's setup steps install from `../../../clients/python`).

use std::path::{Path, PathBuf};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if [".strata", ".deps", "__pycache__", ".mypy_cache", "build", "dist"]
            .iter()
            .any(|skip| name == *skip)
        {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A copy of `examples/NAME` and `clients/python`, laid out as in the repo → (the
/// temp dir holding both, the example's dir in it, its manifest).
pub fn example(name: &str) -> (tempfile::TempDir, PathBuf, strata_manifest::Manifest) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::Builder::new().prefix("strata-example-").tempdir().unwrap();
    let app = dir.path().join("examples").join(name);
    copy_dir(&root.join("examples").join(name), &app);
    copy_dir(&root.join("clients/python"), &dir.path().join("clients/python"));
    let manifest =
        strata_manifest::load(&app.join("strata.json")).unwrap_or_else(|e| panic!("examples/{name}/strata.json: {e}"));
    (dir, app, manifest)
}
