//! Reading an image where it is: an OCI image layout directory (or archive of one), or a
//! `docker save` archive. Every blob used is checked against its descriptor's size and
//! digest before anything is made of it.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Compression {
    None,
    Gzip,
}

/// One layer: its digest as stored, where it is, how it is compressed.
#[derive(Debug)]
pub(super) struct Layer {
    pub digest: String,
    pub size: u64,
    pub path: PathBuf,
    pub compression: Compression,
}

/// What the image config says the program starts with.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RunConfig {
    #[serde(rename = "Env", default)]
    pub env: Vec<String>,
    #[serde(rename = "WorkingDir", default)]
    pub working_dir: Option<String>,
    #[serde(rename = "Entrypoint", default)]
    pub entrypoint: Vec<String>,
    #[serde(rename = "Cmd", default)]
    pub cmd: Vec<String>,
    #[serde(rename = "User", default)]
    pub user: Option<String>,
}

/// An image found and verified.
#[derive(Debug)]
pub(super) struct Found {
    pub digest: String,
    pub tags: Vec<String>,
    pub layers: Vec<Layer>,
    pub config: RunConfig,
}

#[derive(Debug, Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Debug, Deserialize)]
struct Platform {
    os: String,
    architecture: String,
}

#[derive(Debug, Deserialize)]
struct Index {
    manifests: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
struct Manifest {
    config: Descriptor,
    layers: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    config: Option<RunConfig>,
    #[serde(default)]
    rootfs: Option<RootFs>,
}

#[derive(Debug, Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

/// `docker save`'s `manifest.json`: one entry per image.
#[derive(Debug, Deserialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
const MANIFEST_TYPES: [&str; 2] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// Reads the image at `path` (a directory, or an archive unpacked into `scratch`).
pub(super) fn read(path: &Path, scratch: &Path) -> Result<Found> {
    let meta = std::fs::metadata(path).with_context(|| format!("read {}", path.display()))?;
    let dir = if meta.is_dir() {
        path.to_path_buf()
    } else {
        let dir = scratch.join("archive");
        extract(path, &dir)?;
        dir
    };
    if dir.join("index.json").is_file() {
        layout(&dir)
    } else if dir.join("manifest.json").is_file() {
        docker(&dir)
    } else {
        bail!("neither an OCI image layout (no index.json) nor a docker save archive (no manifest.json)")
    }
}

/// Unpacks an archive (a tar file, plain or gzipped) into `dir`.
fn extract(path: &Path, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let reader = open_maybe_gzip(path)?;
    let mut archive = tar::Archive::new(reader);
    archive
        .unpack(dir)
        .with_context(|| format!("{} is not a tar archive", path.display()))
}

fn open_maybe_gzip(path: &Path) -> Result<Box<dyn Read>> {
    let mut file = BufReader::new(File::open(path).with_context(|| format!("open {}", path.display()))?);
    let mut magic = [0u8; 2];
    let n = file.read(&mut magic)?;
    let file = std::io::Cursor::new(magic[..n].to_vec()).chain(file);
    Ok(if magic == [0x1f, 0x8b] {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    })
}

/// An OCI image layout.
fn layout(dir: &Path) -> Result<Found> {
    let index: Index = json(&dir.join("index.json"))?;
    let (manifest_desc, tags) = pick(dir, index.manifests, 0)?;
    let manifest: Manifest = serde_json::from_slice(&blob_bytes(dir, &manifest_desc)?)
        .with_context(|| format!("manifest {} is not an image manifest", manifest_desc.digest))?;
    let config: ConfigFile = serde_json::from_slice(&blob_bytes(dir, &manifest.config)?)
        .with_context(|| format!("config {} is not an image config", manifest.config.digest))?;
    let mut layers = Vec::new();
    for desc in &manifest.layers {
        let compression = layer_compression(&desc.media_type)?;
        let path = blob(dir, desc)?;
        layers.push(Layer {
            digest: desc.digest.clone(),
            size: desc.size,
            path,
            compression,
        });
    }
    Ok(Found {
        digest: manifest_desc.digest,
        tags,
        layers,
        config: config.config.unwrap_or_default(),
    })
}

/// The image manifest to run among `descriptors` (following nested indexes): the first
/// for this machine's platform, or without one.
fn pick(dir: &Path, descriptors: Vec<Descriptor>, depth: usize) -> Result<(Descriptor, Vec<String>)> {
    if depth > 4 {
        bail!("indexes nested more than 4 deep");
    }
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let mut seen = Vec::new();
    for desc in descriptors {
        if let Some(p) = &desc.platform {
            if p.os != "linux" || p.architecture != arch {
                seen.push(format!("{}/{}", p.os, p.architecture));
                continue;
            }
        }
        let tags: Vec<String> = desc
            .annotations
            .get("org.opencontainers.image.ref.name")
            .cloned()
            .into_iter()
            .collect();
        if INDEX_TYPES.contains(&desc.media_type.as_str()) {
            let nested: Index = serde_json::from_slice(&blob_bytes(dir, &desc)?)
                .with_context(|| format!("index {} is not an image index", desc.digest))?;
            let (found, more) = pick(dir, nested.manifests, depth + 1)?;
            return Ok((found, if more.is_empty() { tags } else { more }));
        }
        if MANIFEST_TYPES.contains(&desc.media_type.as_str()) {
            return Ok((desc, tags));
        }
        bail!(
            "unknown media type {:?} for {} in the index (want an image manifest or index)",
            desc.media_type,
            desc.digest
        );
    }
    if seen.is_empty() {
        bail!("the index lists no image manifest");
    }
    bail!("no image for linux/{arch} (the index has {})", seen.join(", "))
}

/// How a layer of this media type is compressed; an error for one not supported.
fn layer_compression(media_type: &str) -> Result<Compression> {
    Ok(match media_type {
        "application/vnd.oci.image.layer.v1.tar" | "application/vnd.docker.image.rootfs.diff.tar" => Compression::None,
        "application/vnd.oci.image.layer.v1.tar+gzip" | "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
            Compression::Gzip
        }
        "application/vnd.oci.image.layer.v1.tar+zstd" => {
            bail!("zstd-compressed layers are not supported (re-export the image with gzip layers)")
        }
        other if other.contains("nondistributable") || other.contains("foreign") => {
            bail!("layer media type {other:?} (a non-distributable layer) is not supported")
        }
        other => bail!("unknown layer media type {other:?}"),
    })
}

/// A `docker save` archive (the legacy layout: `manifest.json`, the config as a file,
/// each layer a tar file checked against the config's `diff_ids`).
fn docker(dir: &Path) -> Result<Found> {
    let entries: Vec<DockerEntry> = json(&dir.join("manifest.json"))?;
    let entry = entries.into_iter().next().context("manifest.json lists no image")?;
    let config_path = inside(dir, &entry.config)?;
    let config_bytes = std::fs::read(&config_path).with_context(|| format!("missing config {}", entry.config))?;
    let digest = format!("sha256:{}", hex(&Sha256::digest(&config_bytes)));
    let config: ConfigFile =
        serde_json::from_slice(&config_bytes).with_context(|| format!("{} is not an image config", entry.config))?;
    let diff_ids = config.rootfs.map(|r| r.diff_ids).unwrap_or_default();
    if diff_ids.len() != entry.layers.len() {
        bail!(
            "manifest.json lists {} layers, the config's rootfs.diff_ids {}",
            entry.layers.len(),
            diff_ids.len()
        );
    }
    let mut layers = Vec::new();
    for (name, diff_id) in entry.layers.iter().zip(&diff_ids) {
        let path = inside(dir, name)?;
        let gzip = is_gzip(&path).with_context(|| format!("missing layer {name}"))?;
        // The diff id is the digest of the layer as a plain tar.
        let (plain, _) = hash(open_maybe_gzip(&path)?)?;
        if format!("sha256:{plain}") != *diff_id {
            bail!("layer {name}: digest mismatch: it hashes to sha256:{plain}, the config says {diff_id}");
        }
        let (stored, size) = hash(File::open(&path)?)?;
        layers.push(Layer {
            digest: format!("sha256:{stored}"),
            size,
            path,
            compression: if gzip { Compression::Gzip } else { Compression::None },
        });
    }
    Ok(Found {
        digest,
        tags: entry.repo_tags.unwrap_or_default(),
        layers,
        config: config.config.unwrap_or_default(),
    })
}

/// `name` under `dir`, refusing a path that leaves it.
fn inside(dir: &Path, name: &str) -> Result<PathBuf> {
    let rel = Path::new(name);
    if rel.is_absolute() || rel.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        bail!("path {name:?} leaves the archive");
    }
    Ok(dir.join(rel))
}

fn is_gzip(path: &Path) -> Result<bool> {
    let mut magic = [0u8; 2];
    let n = File::open(path)?.read(&mut magic)?;
    Ok(n == 2 && magic == [0x1f, 0x8b])
}

/// The blob `desc` names in a layout, its size and digest checked.
fn blob(dir: &Path, desc: &Descriptor) -> Result<PathBuf> {
    let Some(hex_digest) = desc.digest.strip_prefix("sha256:") else {
        bail!("digest {:?}: only sha256 digests are supported", desc.digest);
    };
    if hex_digest.len() != 64 || !hex_digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("digest {:?} is not sha256:64 hex digits", desc.digest);
    }
    let path = dir.join("blobs").join("sha256").join(hex_digest);
    let file = File::open(&path).with_context(|| format!("missing blob {} ({})", desc.digest, desc.media_type))?;
    let (found, size) = hash(file)?;
    if size != desc.size {
        bail!("blob {}: {size} bytes, the descriptor says {}", desc.digest, desc.size);
    }
    if found != hex_digest {
        bail!("blob {}: digest mismatch: it hashes to sha256:{found}", desc.digest);
    }
    Ok(path)
}

fn blob_bytes(dir: &Path, desc: &Descriptor) -> Result<Vec<u8>> {
    if desc.size > 4 << 20 {
        bail!(
            "{} {}: {} bytes is too large for a manifest or config",
            desc.media_type,
            desc.digest,
            desc.size
        );
    }
    Ok(std::fs::read(blob(dir, desc)?)?)
}

fn json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not what an image has there", path.display()))
}

/// SHA-256 (hex) and length of everything `r` reads.
fn hash(mut r: impl Read) -> Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex(&hasher.finalize()), total))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
