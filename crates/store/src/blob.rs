//! Blob body files, in `DIR/blobs/`.
//!
//! An upload streams into `tmp-TOKEN` (created new) on tokio's blocking pool, hashing as
//! it goes; at the end the file is synced and renamed to `NAMEHASH-TOKEN`, where
//! `NAMEHASH` is the start of the SHA-256 of the blob's table key and `TOKEN` is unique to
//! the upload, so a new body never overwrites the one readers may have open. The store
//! then hands the body's metadata to the writer, which syncs the directory once for every
//! blob in its batch (making the renames durable) before logging their metadata; a
//! replaced or deleted body is removed by the applier once redb has the change. A file no
//! committed metadata refers to is removed at open.

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::record::{hex, table_key};
use crate::StoreError;

const TEMP_PREFIX: &str = "tmp-";

/// What the async side of an upload hands to the blocking side.
pub(crate) enum Chunk {
    Data(Bytes),
    /// The body ended: sync and rename it.
    End,
}

/// Hands out file-name tokens unique to this store: the open time, then a counter.
pub(crate) struct Tokens {
    epoch: u64,
    next: AtomicU64,
}

impl Tokens {
    pub fn new() -> Tokens {
        let epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Tokens {
            epoch,
            next: AtomicU64::new(0),
        }
    }

    pub fn next(&self) -> String {
        format!("{:x}-{:x}", self.epoch, self.next.fetch_add(1, Ordering::Relaxed))
    }
}

/// Where one upload's body goes.
pub(crate) struct Upload {
    pub dir: PathBuf,
    pub ns: String,
    pub name: String,
    pub token: String,
}

/// A body written, synced and renamed into place, whose metadata is still to be
/// committed.
pub(crate) struct Body {
    pub size: u64,
    pub sha256: [u8; 32],
    /// Its file name in the blobs directory.
    pub file: String,
}

/// Writes the chunks to a temporary file while hashing them; at `End`, syncs the file
/// and renames it into place. When the chunks stop without `End` (the body failed or the
/// caller went away), the temporary file is removed and the answer is `None`. Runs on
/// the blocking pool.
pub(crate) fn ingest(up: &Upload, mut chunks: tokio::sync::mpsc::Receiver<Chunk>) -> Result<Option<Body>, StoreError> {
    let temp = up.dir.join(format!("{TEMP_PREFIX}{}", up.token));
    let written = (|| -> io::Result<Option<(u64, [u8; 32])>> {
        let mut file = {
            use std::os::unix::fs::OpenOptionsExt;
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temp)?
        };
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        loop {
            match chunks.blocking_recv() {
                Some(Chunk::Data(b)) => {
                    hasher.update(&b);
                    file.write_all(&b)?;
                    size += b.len() as u64;
                }
                Some(Chunk::End) => break,
                None => return Ok(None),
            }
        }
        file.sync_data()?;
        Ok(Some((size, hasher.finalize().into())))
    })();
    // Let the async side see at once that nothing more is taken.
    drop(chunks);
    let (size, sha256) = match written {
        Ok(Some(done)) => done,
        Ok(None) => {
            remove(&temp);
            return Ok(None);
        }
        Err(e) => {
            remove(&temp);
            return Err(StoreError::Io(format!("write the blob body: {e}")));
        }
    };
    let file = body_file_name(&up.ns, &up.name, &up.token);
    if let Err(e) = fs::rename(&temp, up.dir.join(&file)) {
        remove(&temp);
        return Err(StoreError::Io(format!("rename the blob body into place: {e}")));
    }
    Ok(Some(Body { size, sha256, file }))
}

/// The file name of one body of blob `name` in `ns`.
fn body_file_name(ns: &str, name: &str, token: &str) -> String {
    let digest = Sha256::digest(table_key(ns, name));
    format!("{}-{token}", hex(&digest[..16]))
}

/// Removes a body file; one already gone is fine.
pub(crate) fn remove(path: &Path) {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(file = %path.display(), "could not remove a blob file: {e}"),
    }
}

/// At open: removes every file in `dir` that `referenced` does not name (temporary files
/// of cut-short uploads, bodies whose metadata never committed). Returns how many.
pub(crate) fn clean(dir: &Path, referenced: &HashSet<String>) -> io::Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let keep = name.to_str().is_some_and(|n| referenced.contains(n));
        if !keep && entry.file_type()?.is_file() {
            remove(&entry.path());
            removed += 1;
        }
    }
    Ok(removed)
}
