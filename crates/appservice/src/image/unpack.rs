//! Applying one layer to a root filesystem, as the OCI image spec says: first its
//! whiteouts remove what lower layers put there (`.wh.NAME` removes `NAME`,
//! `.wh..wh..opq` empties its directory), then its entries are written over what is
//! left. Two passes over the layer, so that a whiteout never removes what its own layer
//! adds, whatever the order of its entries.
//!
//! Nothing is written outside the root: an entry whose path has `..` or is absolute is
//! an error, a whiteout below a symbolic link is an error, and entries are written with
//! the `tar` crate's `unpack_in`, which refuses to write through a link that leaves the
//! root. Device nodes and FIFOs are skipped (containers get their own `/dev`).
//! Ownership is kept when strata runs as root, as it must to run containers.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use tar::EntryType;

use super::source::Compression;

const OPAQUE: &str = ".wh..wh..opq";
const WHITEOUT: &str = ".wh.";

/// Applies the layer in `blob` to `root`.
pub(super) fn apply(blob: &Path, compression: Compression, root: &Path) -> Result<()> {
    let mut whiteouts = Vec::new();
    for_each(blob, compression, |entry| {
        let rel = relative(&entry.path()?)?;
        let Some(name) = rel.file_name().and_then(|n| n.to_str()) else {
            return Ok(());
        };
        if name == OPAQUE || name.starts_with(WHITEOUT) {
            whiteouts.push(rel);
        }
        Ok(())
    })?;
    for rel in &whiteouts {
        let parent = rel.parent().unwrap_or(Path::new(""));
        let name = rel.file_name().and_then(|n| n.to_str()).expect("checked");
        let dir = no_links(root, parent)?;
        if name == OPAQUE {
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for e in entries.flatten() {
                    remove(&e.path())?;
                }
            }
        } else {
            remove(&dir.join(&name[WHITEOUT.len()..]))?;
        }
    }
    // SAFETY: geteuid has no preconditions and touches no memory.
    let root_user = unsafe { libc::geteuid() } == 0;
    for_each_archive(blob, compression, root_user, |mut entry| {
        let rel = relative(&entry.path()?)?;
        if rel.as_os_str().is_empty() {
            return Ok(());
        }
        if rel
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n == OPAQUE || n.starts_with(WHITEOUT))
        {
            return Ok(());
        }
        let kind = entry.header().entry_type();
        let is_dir = kind == EntryType::Directory;
        match kind {
            EntryType::Regular
            | EntryType::Continuous
            | EntryType::Directory
            | EntryType::Symlink
            | EntryType::Link
            | EntryType::GNUSparse => {}
            // Devices and FIFOs: a container has its own /dev.
            _ => return Ok(()),
        }
        // A file over a directory, or a directory over a file or link, replaces it.
        let target = root.join(&rel);
        if let Ok(meta) = std::fs::symlink_metadata(&target) {
            let was_dir = meta.is_dir();
            if was_dir != is_dir || (meta.file_type().is_symlink() && is_dir) {
                remove(&target)?;
            }
        }
        entry
            .unpack_in(root)
            .with_context(|| format!("write {}", rel.display()))?;
        Ok(())
    })
}

/// Calls `f` for each entry of the layer (headers only wanted).
fn for_each(
    blob: &Path,
    compression: Compression,
    mut f: impl FnMut(&tar::Entry<'_, Box<dyn Read>>) -> Result<()>,
) -> Result<()> {
    let mut archive = tar::Archive::new(open(blob, compression)?);
    for entry in archive.entries().context("read the layer")? {
        let entry = entry.context("read the layer")?;
        f(&entry)?;
    }
    Ok(())
}

fn for_each_archive(
    blob: &Path,
    compression: Compression,
    owners: bool,
    mut f: impl FnMut(tar::Entry<'_, Box<dyn Read>>) -> Result<()>,
) -> Result<()> {
    let mut archive = tar::Archive::new(open(blob, compression)?);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(owners);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    archive.set_unpack_xattrs(false);
    for entry in archive.entries().context("read the layer")? {
        f(entry.context("read the layer")?)?;
    }
    Ok(())
}

fn open(blob: &Path, compression: Compression) -> Result<Box<dyn Read>> {
    let file = BufReader::new(File::open(blob).with_context(|| format!("open {}", blob.display()))?);
    Ok(match compression {
        Compression::None => Box::new(file),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(file)),
    })
}

/// An entry's path made relative (`./a/b` → `a/b`); an error if it leaves the root.
fn relative(path: &Path) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                bail!("entry {} leaves the root filesystem", path.display())
            }
        }
    }
    Ok(out)
}

/// `root/rel`, refusing a path through a symbolic link (a whiteout must not remove
/// anything outside the root).
fn no_links(root: &Path, rel: &Path) -> Result<PathBuf> {
    let mut at = root.to_path_buf();
    for c in rel.components() {
        at.push(c);
        if std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
            bail!("a whiteout below {} goes through a symbolic link", rel.display());
        }
    }
    Ok(at)
}

/// Removes a file, link or directory tree; nothing there is fine.
fn remove(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path).with_context(|| format!("remove {}", path.display())),
        Ok(_) => std::fs::remove_file(path).with_context(|| format!("remove {}", path.display())),
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(dir: &Path, name: &str, entries: &[(&str, Option<&[u8]>)]) -> PathBuf {
        let path = dir.join(name);
        let mut b = tar::Builder::new(File::create(&path).unwrap());
        for (p, body) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            match body {
                Some(body) => {
                    h.set_entry_type(EntryType::Regular);
                    h.set_size(body.len() as u64);
                    h.set_mode(0o644);
                    b.append_data(&mut h, p, *body).unwrap();
                }
                None => {
                    h.set_entry_type(EntryType::Directory);
                    h.set_size(0);
                    h.set_mode(0o755);
                    b.append_data(&mut h, p, &[][..]).unwrap();
                }
            }
        }
        b.finish().unwrap();
        path
    }

    #[test]
    fn whiteouts_remove_what_lower_layers_put_and_never_what_their_own_adds() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let lower = layer(
            dir.path(),
            "lower.tar",
            &[
                ("www", None),
                ("www/old.txt", Some(b"old")),
                ("www/keep.txt", Some(b"keep")),
                ("opq", None),
                ("opq/a", Some(b"a")),
            ],
        );
        apply(&lower, Compression::None, &root).unwrap();
        // The whiteout comes after the new file in its layer: the new one stays.
        let upper = layer(
            dir.path(),
            "upper.tar",
            &[
                ("opq/b", Some(b"b")),
                ("opq/.wh..wh..opq", Some(b"")),
                ("www/.wh.old.txt", Some(b"")),
                ("www/new.txt", Some(b"new")),
            ],
        );
        apply(&upper, Compression::None, &root).unwrap();
        assert!(!root.join("www/old.txt").exists());
        assert_eq!(std::fs::read(root.join("www/keep.txt")).unwrap(), b"keep");
        assert_eq!(std::fs::read(root.join("www/new.txt")).unwrap(), b"new");
        assert!(
            !root.join("opq/a").exists(),
            "the opaque dir hides the lower layer's files"
        );
        assert_eq!(std::fs::read(root.join("opq/b")).unwrap(), b"b");
        assert!(!root.join("www/.wh.old.txt").exists() && !root.join("opq/.wh..wh..opq").exists());
    }

    #[test]
    fn an_entry_or_a_whiteout_that_leaves_the_root_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::os::unix::fs::symlink(dir.path(), root.join("out")).unwrap();
        std::fs::write(dir.path().join("victim"), b"x").unwrap();
        let evil = layer(dir.path(), "evil.tar", &[("out/.wh.victim", Some(b""))]);
        let e = apply(&evil, Compression::None, &root).unwrap_err();
        assert!(format!("{e:#}").contains("symbolic link"), "{e:#}");
        assert!(dir.path().join("victim").exists());
        // A path with `..` (written raw: the tar crate's own writer refuses it).
        let path = dir.path().join("dotdot.tar");
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..13].copy_from_slice(b"../escaped.tx");
        h.set_entry_type(EntryType::Regular);
        h.set_size(1);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        let mut bytes = h.as_bytes().to_vec();
        bytes.extend_from_slice(&[b'x'; 512]);
        bytes.extend_from_slice(&[0; 1024]);
        std::fs::write(&path, bytes).unwrap();
        let e = apply(&path, Compression::None, &root).unwrap_err();
        assert!(format!("{e:#}").contains("leaves the root"), "{e:#}");
        assert!(!dir.path().join("escaped.tx").exists());
    }
}
