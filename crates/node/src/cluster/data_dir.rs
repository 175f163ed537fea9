//! One node per data dir (`--data`): a second node there would overwrite the first's
//! control tokens and share its logs.

use anyhow::{bail, Context as _, Result};

/// Takes `data_dir/node.lock` for this process (an exclusive `flock`, let go when the
/// file closes, however the process ends) and writes its pid there.
pub(super) fn lock(data_dir: &std::path::Path) -> Result<std::fs::File> {
    use std::io::Write as _;
    use strata_os::disk::DiskFile as _;
    std::fs::create_dir_all(data_dir).with_context(|| format!("create the data dir {}", data_dir.display()))?;
    let path = data_dir.join("node.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("open {}", path.display()))?;
    if let Err(e) = file.try_lock_exclusive() {
        if e.kind() == std::io::ErrorKind::WouldBlock {
            let pid = std::fs::read_to_string(&path).unwrap_or_default();
            bail!(
                "another strata node (pid {}) uses the data dir {}: give this one a --data of its own",
                pid.trim(),
                data_dir.display()
            );
        }
        return Err(e).with_context(|| format!("lock {}", path.display()));
    }
    file.set_len(0)?;
    write!(file, "{}", std::process::id())?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::lock;

    #[test]
    fn a_data_dir_takes_one_node_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("node-b");
        let first = lock(&data).expect("the first node takes it");
        let second = lock(&data).expect_err("a second node is refused");
        let said = format!("{second:#}");
        assert!(
            said.contains(&format!("another strata node (pid {})", std::process::id())),
            "{said}"
        );
        drop(first);
        lock(&data).expect("free once the first stopped");
    }
}
