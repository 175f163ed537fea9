//! Data files and dirs made through `OsDisk` are the owner's alone, whatever the umask
//! (the node's `.strata/` is 0700 too; a file there was once 0644).

use std::os::unix::fs::PermissionsExt;

use strata_os::disk::{Disk, Open, OsDisk};

#[test]
fn files_and_dirs_made_through_the_disk_are_the_owners_alone() {
    // SAFETY: umask(2) only sets the process's file mode mask.
    let before = unsafe { libc::umask(0o022) };
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("queues").join("q");
    OsDisk.create_dir_all(&sub).unwrap();
    let file = sub.join("0.log");
    drop(OsDisk.open(&file, Open::Create).unwrap());
    unsafe { libc::umask(before) };
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(&sub), 0o700);
    assert_eq!(mode(&dir.path().join("queues")), 0o700);
}
