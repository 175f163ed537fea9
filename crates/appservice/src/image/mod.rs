//! Container images: an OCI image layout (a directory with `oci-layout` and
//! `index.json`), an OCI archive (that directory as a tar file) or a `docker save`
//! archive, imported into the node's image store, each blob checked against its digest,
//! and unpacked layer by layer into a root filesystem the OCI driver runs containers on.
//!
//! - `source`: reading an image where it is: the index or `manifest.json`, the image
//!   manifest and config, the layers' descriptors, each blob verified.
//! - `unpack`: applying a layer to a root filesystem, whiteouts honoured.
//! - `config`: what the image's config (`Entrypoint`, `Cmd`, `User`, `WorkingDir`)
//!   makes of a container launch, beside the manifest.
//!
//! The store (`$STRATA_IMAGES`, else `$XDG_DATA_HOME/strata/images`, else
//! `~/.local/share/strata/images`):
//! - `blobs/sha256/HEX`: every layer, config and manifest, once per digest, shared by
//!   every image that has it;
//! - `rootfs/HEX/`: an image's root filesystem (HEX: the image's digest), unpacked once,
//!   shared by every service that runs it, read-only to containers;
//! - `images/HEX.json`: what was imported from where ([`Image`]).
//!
//! An import writes the root filesystem under a temporary name and renames it into
//! place when every layer is applied: a half-unpacked image is never run. A bad image
//! (a missing blob, a digest or size that does not match, an unknown media type, a
//! compression not supported) is an error naming what and where, and nothing of it is
//! recorded.

pub mod config;
mod source;
mod unpack;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// An image in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// `sha256:HEX`: the image manifest's digest (for a `docker save` archive, its
    /// config's, which is Docker's image id).
    pub digest: String,
    /// Where it was imported from.
    pub source: String,
    /// The tags the archive or layout names (`org.opencontainers.image.ref.name`, or
    /// Docker's `RepoTags`).
    #[serde(default)]
    pub tags: Vec<String>,
    /// The layers' digests, lowest first.
    pub layers: Vec<String>,
    /// The layers' size, as stored (compressed where they are).
    pub size: u64,
    /// From the image config: `KEY=VALUE` pairs the program starts with.
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub cmd: Vec<String>,
    /// From the image config: who the program runs as (`NAME`, `UID`, with `:GROUP` or
    /// `:GID`), unless the manifest says (see `config::user`). Images imported before
    /// strata read it have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// When it was imported, ms since the Unix epoch.
    pub imported_ms: u64,
}

/// An image ready to run: its record and its root filesystem.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub image: Image,
    pub rootfs: PathBuf,
    /// Whether the image has `/bin/sh` for strata's init ([`config::has_shell`]).
    pub shell: bool,
}

impl Resolved {
    /// The image `image` of `store`, ready to run: its `WorkingDir` made if a layer did
    /// not make it, its shell looked for.
    pub fn of(store: &ImageStore, image: Image) -> Result<Resolved> {
        let rootfs = store.rootfs(&image);
        config::prepare(&rootfs, &image)
            .with_context(|| format!("make the image's WorkingDir in {}", rootfs.display()))?;
        Ok(Resolved {
            shell: config::has_shell(&rootfs),
            rootfs,
            image,
        })
    }
}

/// Imports run one at a time in a process (two services naming the same image wait for
/// the first to unpack it).
static IMPORTING: Mutex<()> = Mutex::new(());

/// The node's image store.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
}

impl ImageStore {
    /// The store's directory: `$STRATA_IMAGES`, else `$XDG_DATA_HOME/strata/images`,
    /// else `$HOME/.local/share/strata/images`.
    pub fn default_root() -> PathBuf {
        if let Some(dir) = std::env::var_os("STRATA_IMAGES").filter(|d| !d.is_empty()) {
            return PathBuf::from(dir);
        }
        if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
            return PathBuf::from(dir).join("strata").join("images");
        }
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
        home.join(".local").join("share").join("strata").join("images")
    }

    /// The store at [`ImageStore::default_root`].
    pub fn open_default() -> Result<ImageStore> {
        ImageStore::open(&Self::default_root())
    }

    pub fn open(root: &Path) -> Result<ImageStore> {
        for dir in ["blobs/sha256", "rootfs", "images", "tmp"] {
            std::fs::create_dir_all(root.join(dir))
                .with_context(|| format!("create the image store's {}", root.join(dir).display()))?;
        }
        Ok(ImageStore {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The root filesystem of an imported image.
    pub fn rootfs(&self, image: &Image) -> PathBuf {
        self.root.join("rootfs").join(hex(&image.digest))
    }

    /// Every image in the store, by digest.
    pub fn list(&self) -> Result<Vec<Image>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.root.join("images"))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "json") {
                let text = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
                let image: Image = serde_json::from_slice(&text)
                    .with_context(|| format!("{} is not an image record", path.display()))?;
                out.push(image);
            }
        }
        out.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(out)
    }

    /// The image with this digest (`sha256:HEX`, or a prefix of HEX of at least 12
    /// digits), if imported.
    pub fn get(&self, digest: &str) -> Result<Option<Image>> {
        let want = hex(digest);
        let found: Vec<Image> = self
            .list()?
            .into_iter()
            .filter(|i| hex(&i.digest).starts_with(want))
            .collect();
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.into_iter().next()),
            n => bail!("{digest:?} names {n} images; give more of the digest"),
        }
    }

    /// What the manifest's `"image"` names: a digest of an imported image, or a path
    /// (relative to `base`) to a layout directory or an archive, imported if it is not
    /// yet (an image already in the store is not unpacked again).
    pub fn resolve(&self, image: &str, base: &Path) -> Result<Image> {
        if image.starts_with("sha256:") {
            return self.get(image)?.with_context(|| {
                format!(
                    "image {image} is not in the store {} (strata image import FILE|DIR)",
                    self.root.display()
                )
            });
        }
        self.import(&base.join(image))
    }

    /// Imports the image at `path` (a layout directory, or an OCI or `docker save`
    /// archive, plain or gzipped): verifies every blob, keeps them by digest, unpacks the
    /// layers into the image's root filesystem, and records it.
    pub fn import(&self, path: &Path) -> Result<Image> {
        let _one = IMPORTING.lock().unwrap_or_else(|e| e.into_inner());
        let scratch = tempfile::Builder::new()
            .prefix("import-")
            .tempdir_in(self.root.join("tmp"))
            .context("make a scratch dir in the image store")?;
        let found = source::read(path, scratch.path()).with_context(|| format!("image {}", path.display()))?;
        let digest = found.digest.clone();
        let record = self.root.join("images").join(format!("{}.json", hex(&digest)));
        let rootfs = self.root.join("rootfs").join(hex(&digest));
        if record.exists() && rootfs.is_dir() {
            let text = std::fs::read(&record)?;
            return Ok(serde_json::from_slice(&text)?);
        }
        // Blobs are kept by digest: a layer another image has is not copied again.
        let mut size = 0;
        for layer in &found.layers {
            let kept = self.root.join("blobs/sha256").join(hex(&layer.digest));
            if !kept.exists() {
                let part = kept.with_extension("part");
                std::fs::copy(&layer.path, &part).with_context(|| format!("keep layer {}", layer.digest))?;
                std::fs::rename(&part, &kept)?;
            }
            size += layer.size;
        }
        let unpacking = self.root.join("tmp").join(format!("rootfs-{}", hex(&digest)));
        let _ = std::fs::remove_dir_all(&unpacking);
        std::fs::create_dir_all(&unpacking)?;
        for layer in &found.layers {
            let kept = self.root.join("blobs/sha256").join(hex(&layer.digest));
            unpack::apply(&kept, layer.compression, &unpacking)
                .with_context(|| format!("image {}: unpack layer {}", path.display(), layer.digest))?;
        }
        // Mount points the runtime needs, made here so that it never writes into a
        // shared root filesystem.
        for dir in ["proc", "sys", "dev", "tmp", "etc"] {
            let d = unpacking.join(dir);
            if std::fs::symlink_metadata(&d).is_err() {
                std::fs::create_dir_all(&d)?;
            }
        }
        // (`/tmp` is given the mode 1777 when the image is run: `config::prepare`.)
        let _ = std::fs::remove_dir_all(&rootfs);
        std::fs::rename(&unpacking, &rootfs)
            .with_context(|| format!("move the root filesystem to {}", rootfs.display()))?;
        let image = Image {
            digest,
            source: std::path::absolute(path)
                .unwrap_or_else(|_| path.to_path_buf())
                .display()
                .to_string(),
            tags: found.tags,
            layers: found.layers.iter().map(|l| l.digest.clone()).collect(),
            size,
            env: found.config.env,
            working_dir: found.config.working_dir,
            entrypoint: found.config.entrypoint,
            cmd: found.config.cmd,
            user: found.config.user,
            imported_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        };
        let part = record.with_extension("part");
        std::fs::write(&part, serde_json::to_vec_pretty(&image)?)?;
        std::fs::rename(&part, &record)?;
        Ok(image)
    }
}

/// The hex digits of a `sha256:HEX` digest.
fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}
