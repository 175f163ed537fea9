//! File-system calls whose durability rules are easy to get wrong.

use std::fs::File;
use std::io;
use std::path::Path;

/// Syncs the directory `dir` itself, so that the files created, renamed or removed in it
/// survive a crash. Syncing a file makes its contents durable, not its name: after a
/// rename into `dir`, call this before saying the rename happened.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syncs_a_directory_and_reports_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"x").unwrap();
        sync_dir(dir.path()).unwrap();
        let missing = sync_dir(&dir.path().join("gone")).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    }
}
