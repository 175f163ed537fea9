//! The tables of the database file and how entries are encoded in them.
//!
//! Both data tables are keyed by `NAMESPACE \0 KEY`: a namespace holds no NUL, so the
//! first NUL ends it, and byte order of the table key is (namespace, key) order. A
//! namespace's keys with a given prefix are one contiguous range.
//!
//! - `values`: `version u64 | updated_ms u64 | value bytes` (little-endian).
//! - `blobs`: `version u64 | updated_ms u64 | size u64 | sha256 [32] | content type
//!   length u16 | content type | body file name` (the rest).
//! - `meta`, written by checkpoints only: `seq` (the last version handed out), `applied`
//!   (the last batch of the write-ahead log applied), `wal_file` and `wal_pos` (where the
//!   log goes on).

use redb::TableDefinition;

use crate::{BlobMeta, StoreError};

pub(crate) const VALUES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("values");
pub(crate) const BLOBS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("blobs");
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(crate) const SEQ: &str = "seq";
/// The id of the last batch applied by the last checkpoint.
pub(crate) const APPLIED: &str = "applied";
/// Where the write-ahead log goes on after the last checkpoint: file (0 or 1), position.
pub(crate) const WAL_FILE: &str = "wal_file";
pub(crate) const WAL_POS: &str = "wal_pos";

const VALUE_HEADER: usize = 16;
const BLOB_FIXED: usize = 8 + 8 + 8 + 32 + 2;

/// The table key of `key` in `ns`.
pub(crate) fn table_key(ns: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(ns.len() + 1 + key.len());
    k.extend_from_slice(ns.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

/// A database error, as the store reports it.
pub(crate) fn db_err(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Io(format!("database: {}", e.into()))
}

pub(crate) fn corrupt(what: &str) -> StoreError {
    StoreError::Io(format!("corrupt {what} in the database"))
}

/// The header of a stored value: (version, updated_ms).
pub(crate) fn value_header(stored: &[u8]) -> Result<(u64, u64), StoreError> {
    if stored.len() < VALUE_HEADER {
        return Err(corrupt("value"));
    }
    Ok((u64_at(stored, 0), u64_at(stored, 8)))
}

/// The value of a stored value, after its header.
pub(crate) fn value_body(stored: &[u8]) -> &[u8] {
    &stored[VALUE_HEADER..]
}

/// Writes a value record into `out`, which is `value_len(value)` bytes long.
pub(crate) fn encode_value(out: &mut [u8], version: u64, updated_ms: u64, value: &[u8]) {
    out[0..8].copy_from_slice(&version.to_le_bytes());
    out[8..16].copy_from_slice(&updated_ms.to_le_bytes());
    out[16..].copy_from_slice(value);
}

pub(crate) fn value_len(value: &[u8]) -> usize {
    VALUE_HEADER + value.len()
}

/// A blob's metadata as stored, with the name of its body file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BlobRecord {
    pub version: u64,
    pub updated_ms: u64,
    pub size: u64,
    pub sha256: [u8; 32],
    pub content_type: String,
    pub file: String,
}

impl BlobRecord {
    pub fn encoded_len(&self) -> usize {
        BLOB_FIXED + self.content_type.len() + self.file.len()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.updated_ms.to_le_bytes());
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.sha256);
        out.extend_from_slice(&(self.content_type.len() as u16).to_le_bytes());
        out.extend_from_slice(self.content_type.as_bytes());
        out.extend_from_slice(self.file.as_bytes());
        out
    }

    pub fn decode(b: &[u8]) -> Result<BlobRecord, StoreError> {
        if b.len() < BLOB_FIXED {
            return Err(corrupt("blob metadata"));
        }
        let ct_len = u16::from_le_bytes([b[56], b[57]]) as usize;
        if b.len() < BLOB_FIXED + ct_len {
            return Err(corrupt("blob metadata"));
        }
        let text = |s: &[u8]| String::from_utf8(s.to_vec()).map_err(|_| corrupt("blob metadata"));
        Ok(BlobRecord {
            version: u64_at(b, 0),
            updated_ms: u64_at(b, 8),
            size: u64_at(b, 16),
            sha256: b[24..56].try_into().expect("32 bytes"),
            content_type: text(&b[BLOB_FIXED..BLOB_FIXED + ct_len])?,
            file: text(&b[BLOB_FIXED + ct_len..])?,
        })
    }

    pub fn meta(&self) -> BlobMeta {
        BlobMeta {
            size: self.size,
            etag: hex(&self.sha256),
            content_type: self.content_type.clone(),
            version: self.version,
            updated_ms: self.updated_ms,
        }
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_record_round_trips() {
        let r = BlobRecord {
            version: 7,
            updated_ms: 1_700_000_000_000,
            size: 12345,
            sha256: [0xab; 32],
            content_type: "image/png".into(),
            file: "00ff-1a".into(),
        };
        assert_eq!(BlobRecord::decode(&r.encode()).unwrap(), r);
        assert_eq!(r.meta().etag, "ab".repeat(32));
    }

    #[test]
    fn table_keys_sort_by_namespace_then_key() {
        // "a" < "a b" as namespaces, whatever the keys.
        assert!(table_key("a", "zzz") < table_key("a b", ""));
        assert!(table_key("a", "k") < table_key("a", "k\u{0}"));
    }
}
