//! App bundles: what a node needs to run an app's services, stored in the object store
//! by content. A bundle is an index ([`BundleIndex`]: the manifest's name and every
//! file's path, size, mode and SHA-256) whose own SHA-256 is the bundle's digest; each
//! file is an object named by its SHA-256, so files shared by two versions are stored
//! once. A node fetches a bundle once per digest into its cache, verifies every file and
//! the index, and renames the finished dir into place (a half-fetched bundle is never
//! used).
//!
//! What goes in: the manifest's directory, without what is the node's or the setup
//! step's (`.strata/`, any dot-dir such as `.venv` or `.git`, `__pycache__`,
//! `node_modules`, `target`) and without symlinks. At most [`MAX_BYTES`] in all.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

/// Largest bundle, all files together.
pub const MAX_BYTES: u64 = 1 << 30;
/// Most files in a bundle.
pub const MAX_FILES: usize = 100_000;

const SKIPPED_DIRS: [&str; 3] = ["__pycache__", "node_modules", "target"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleFile {
    /// Relative to the app's directory, `/`-separated.
    pub path: String,
    pub size: u64,
    pub mode: u32,
    /// Hex SHA-256 of the content; the object's name is `file/` + this.
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleIndex {
    pub app: String,
    /// The manifest's file name inside the bundle.
    pub manifest: String,
    pub files: Vec<BundleFile>,
}

impl BundleIndex {
    fn digest(bytes: &[u8]) -> String {
        format!("sha256:{}", hex(&Sha256::digest(bytes)))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads the app around `manifest_path` into an index (hashing every file).
pub fn collect(app: &str, manifest_path: &Path) -> Result<(BundleIndex, BTreeMap<String, PathBuf>)> {
    let manifest_path = std::path::absolute(manifest_path)?;
    let dir = manifest_path.parent().context("the manifest has no directory")?;
    let manifest = manifest_path
        .file_name()
        .and_then(|n| n.to_str())
        .context("the manifest's file name is not UTF-8")?
        .to_string();
    let mut files = Vec::new();
    let mut sources = BTreeMap::new();
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&d)
            .with_context(|| format!("read {}", d.display()))?
            .collect::<std::io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                bail!(
                    "{}: a file name that is not UTF-8 cannot go in a bundle",
                    entry.path().display()
                );
            };
            let kind = entry.file_type()?;
            if kind.is_dir() {
                if !name.starts_with('.') && !SKIPPED_DIRS.contains(&name) {
                    stack.push(entry.path());
                }
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            let path = entry.path();
            let rel = path
                .strip_prefix(dir)?
                .to_str()
                .expect("UTF-8 checked above")
                .replace('\\', "/");
            let meta = entry.metadata()?;
            total += meta.len();
            if total > MAX_BYTES || files.len() >= MAX_FILES {
                bail!(
                    "the app in {} is over the bundle bound ({} MiB or {MAX_FILES} files); keep data out of the app's directory",
                    dir.display(),
                    MAX_BYTES >> 20
                );
            }
            let sha256 = hash_file(&path)?;
            use std::os::unix::fs::PermissionsExt;
            files.push(BundleFile {
                path: rel.clone(),
                size: meta.len(),
                mode: meta.permissions().mode() & 0o777,
                sha256,
            });
            sources.insert(rel, path);
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    if !files.iter().any(|f| f.path == manifest) {
        bail!("{} is not in the bundle", manifest_path.display());
    }
    Ok((
        BundleIndex {
            app: app.to_string(),
            manifest,
            files,
        },
        sources,
    ))
}

fn hash_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).with_context(|| format!("read {}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}

/// Stores the app around `manifest_path` in the object store; returns the digest. Files
/// already there (same content) are not sent again.
pub async fn upload(
    store: &async_nats::jetstream::object_store::ObjectStore,
    app: &str,
    manifest_path: &Path,
) -> Result<String> {
    let (index, sources) = collect(app, manifest_path)?;
    for file in &index.files {
        let name = format!("file/{}", file.sha256);
        if store.info(&name).await.is_ok() {
            continue;
        }
        let bytes = tokio::fs::read(&sources[&file.path]).await?;
        put(store, &name, &bytes)
            .await
            .with_context(|| format!("store {} in the cluster", file.path))?;
    }
    let bytes = serde_json::to_vec(&index)?;
    let digest = BundleIndex::digest(&bytes);
    put(store, &format!("bundle/{digest}"), &bytes)
        .await
        .context("store the bundle index")?;
    Ok(digest)
}

/// Puts one object, retrying for a few seconds: a stream just created on a cluster
/// answers "no stream found" until its replicas have elected a leader.
async fn put(store: &async_nats::jetstream::object_store::ObjectStore, name: &str, bytes: &[u8]) -> Result<()> {
    let mut tries = 0;
    loop {
        match store.put(name, &mut &bytes[..]).await {
            Ok(_) => return Ok(()),
            Err(e) if tries < 50 => {
                tracing::debug!("put {name}: {e}; retrying");
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(e) => return Err(anyhow::anyhow!("{e}")),
        }
    }
}

/// The bundle `digest`, fetched into `cache/DIGEST/` unless it is there already; returns
/// the dir. Every file and the index are checked against their digests.
pub async fn fetch(
    store: &async_nats::jetstream::object_store::ObjectStore,
    digest: &str,
    cache: &Path,
) -> Result<(PathBuf, BundleIndex)> {
    let Some(hexpart) = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    else {
        bail!("{digest:?} is not a bundle digest (sha256:64 hex digits)");
    };
    let dir = cache.join(hexpart);
    let index_bytes = read_object(store, &format!("bundle/{digest}"), 64 << 20).await?;
    if BundleIndex::digest(&index_bytes) != digest {
        bail!("the bundle index of {digest} does not match its digest");
    }
    let index: BundleIndex = serde_json::from_slice(&index_bytes).context("read the bundle index")?;
    if dir.is_dir() {
        return Ok((dir, index));
    }
    let tmp = cache.join(format!("{hexpart}.partial"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    for file in &index.files {
        if file.path.split('/').any(|p| p.is_empty() || p == "." || p == "..") {
            bail!("bundle {digest} has a path that leaves its directory: {:?}", file.path);
        }
        let bytes = read_object(store, &format!("file/{}", file.sha256), file.size).await?;
        if hex(&Sha256::digest(&bytes)) != file.sha256 {
            bail!("{} in bundle {digest} does not match its digest", file.path);
        }
        let path = tmp.join(&file.path);
        std::fs::create_dir_all(path.parent().expect("a file in a dir"))?;
        std::fs::write(&path, &bytes)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(file.mode & 0o777))?;
    }
    std::fs::rename(&tmp, &dir).with_context(|| format!("put bundle {digest} in place"))?;
    Ok((dir, index))
}

async fn read_object(
    store: &async_nats::jetstream::object_store::ObjectStore,
    name: &str,
    max: u64,
) -> Result<Vec<u8>> {
    let mut object = store
        .get(name)
        .await
        .map_err(|e| anyhow::anyhow!("fetch {name} from the cluster: {e}"))?;
    let mut bytes = Vec::new();
    (&mut object).take(max + 1).read_to_end(&mut bytes).await?;
    if bytes.len() as u64 > max {
        bail!("{name} is larger than its index says");
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_bundle_has_the_app_and_not_the_node_state() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("strata.json"), "{}").unwrap();
        std::fs::create_dir_all(d.join("web")).unwrap();
        std::fs::write(d.join("web/app.py"), "print(1)").unwrap();
        for skipped in [".strata", ".venv", "web/__pycache__"] {
            std::fs::create_dir_all(d.join(skipped)).unwrap();
            std::fs::write(d.join(skipped).join("x"), "x").unwrap();
        }
        let (index, _) = super::collect("shop", &d.join("strata.json")).unwrap();
        let paths: Vec<&str> = index.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["strata.json", "web/app.py"]);
        // Same content, same digest.
        let again = super::collect("shop", &d.join("strata.json")).unwrap().0;
        assert_eq!(
            super::BundleIndex::digest(&serde_json::to_vec(&index).unwrap()),
            super::BundleIndex::digest(&serde_json::to_vec(&again).unwrap())
        );
    }
}
