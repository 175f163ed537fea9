//! Images built by the tests: layers as tar files, written as an OCI image layout
//! (blobs by digest, `index.json`, `oci-layout`), as a registry or `docker build` would.

use std::io::Write;
use std::path::Path;

use serde_json::{json, Value};

/// A file in the layer being built: its path, mode, and contents or link target.
pub enum Item<'a> {
    Dir(&'a str),
    File(&'a str, u32, Vec<u8>),
    Link(&'a str, &'a str),
}

/// A layer's tar file, every entry owned by root.
pub fn layer_tar(items: &[Item<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for item in items {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1);
        match item {
            Item::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, p, &[][..]).unwrap();
            }
            Item::File(p, mode, body) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(body.len() as u64);
                b.append_data(&mut h, p, &body[..]).unwrap();
            }
            Item::Link(p, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, p, target).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(bytes);
    format!("sha256:{}", d.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// Writes `bytes` as a blob of the layout at `dir`; returns its descriptor.
pub fn put_blob(dir: &Path, media_type: &str, bytes: &[u8]) -> Value {
    let digest = sha256(bytes);
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(blobs.join(digest.trim_start_matches("sha256:")), bytes).unwrap();
    json!({"mediaType": media_type, "digest": digest, "size": bytes.len()})
}

/// Writes an OCI image layout at `dir`: `layers` (plain tar files, lowest first; each
/// gzipped where its flag says), an image config whose `config` is `run_config`, and
/// an index naming it `tag`.
pub fn write_layout(dir: &Path, layers: &[(Vec<u8>, bool)], run_config: Value, tag: &str) {
    let config = json!({
        "architecture": "amd64", "os": "linux",
        "config": run_config,
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|(l, _)| sha256(l)).collect::<Vec<_>>()},
    });
    let descriptors: Vec<Value> = layers
        .iter()
        .map(|(layer, gzipped)| {
            if *gzipped {
                put_blob(dir, "application/vnd.oci.image.layer.v1.tar+gzip", &gzip(layer))
            } else {
                put_blob(dir, "application/vnd.oci.image.layer.v1.tar", layer)
            }
        })
        .collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": put_blob(dir, "application/vnd.oci.image.config.v1+json", config.to_string().as_bytes()),
        "layers": descriptors,
    });
    let mut desc = put_blob(
        dir,
        "application/vnd.oci.image.manifest.v1+json",
        manifest.to_string().as_bytes(),
    );
    desc["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
    desc["platform"] = json!({"os": "linux", "architecture": "amd64"});
    std::fs::write(
        dir.join("index.json"),
        json!({"schemaVersion": 2, "manifests": [desc]}).to_string(),
    )
    .unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}
