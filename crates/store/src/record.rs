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

use std::ops::Bound;

use redb::{ReadableTable, TableDefinition};

use crate::overlay::{Pending, PendingValue};
use crate::{BlobItem, BlobMeta, ListItem, Page, StoreError};

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

/// The start of a listing (exclusive: the cursor; inclusive: the prefix) and the
/// prefix every table key of it starts with.
pub(crate) fn list_bounds(ns: &str, prefix: &str, after: Option<&str>) -> (Vec<u8>, bool, Vec<u8>) {
    let prefix_key = table_key(ns, prefix);
    match after.map(|a| table_key(ns, a)) {
        Some(a) if a >= prefix_key => (a, true, prefix_key),
        _ => (prefix_key.clone(), false, prefix_key),
    }
}

pub(crate) fn list_values(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    ns: &str,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
    pending: Vec<(Vec<u8>, Pending<PendingValue>)>,
) -> Result<Page<ListItem>, StoreError> {
    let pending = pending.into_iter().map(|(k, p)| {
        let version = p.version;
        (k, p.item.map(|v| ((v.updated_ms, v.value.len() as u64), version)))
    });
    scan(
        table,
        ns,
        prefix,
        after,
        limit,
        pending,
        |stored| {
            let (version, updated_ms) = value_header(stored)?;
            Ok(((updated_ms, (stored.len() - VALUE_HEADER) as u64), version))
        },
        |key, ((updated_ms, size), version)| ListItem {
            key,
            version,
            size,
            updated_ms,
        },
    )
}

pub(crate) fn list_blobs(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    ns: &str,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
    pending: Vec<(Vec<u8>, Pending<BlobRecord>)>,
) -> Result<Page<BlobItem>, StoreError> {
    let pending = pending.into_iter().map(|(k, p)| (k, p.item.map(|r| r.meta())));
    scan(
        table,
        ns,
        prefix,
        after,
        limit,
        pending.map(|(k, m)| (k, m.map(|m| (m, 0)))),
        |stored| Ok((BlobRecord::decode(stored)?.meta(), 0)),
        |name, (meta, _)| BlobItem { name, meta },
    )
}

/// Up to `limit` entries of `ns` whose key starts with `prefix` and sorts after `after`,
/// in key order, and whether more follow: the table's entries, overridden by `pending`
/// (the overlay's entries of that range, in key order; None: deleted).
#[allow(clippy::too_many_arguments)]
fn scan<D, T>(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    ns: &str,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
    pending: impl Iterator<Item = (Vec<u8>, Option<D>)>,
    decode: impl Fn(&[u8]) -> Result<D, StoreError>,
    item: impl Fn(String, D) -> T,
) -> Result<Page<T>, StoreError> {
    let (start, exclusive, prefix_key) = list_bounds(ns, prefix, after);
    let lower = match exclusive {
        true => Bound::Excluded(start.as_slice()),
        false => Bound::Included(start.as_slice()),
    };
    let mut stored = table
        .range::<&[u8]>((lower, Bound::Unbounded))
        .map_err(crate::store::db_err)?;
    let mut next_stored = || -> Result<Option<(Vec<u8>, D)>, StoreError> {
        match stored.next() {
            None => Ok(None),
            Some(entry) => {
                let (k, v) = entry.map_err(crate::store::db_err)?;
                let k = k.value();
                if !k.starts_with(&prefix_key) {
                    return Ok(None);
                }
                Ok(Some((k.to_vec(), decode(v.value())?)))
            }
        }
    };
    let mut pending = pending.filter(|(k, _)| !exclusive || *k > start).peekable();
    let skip = ns.len() + 1;
    let mut items = Vec::new();
    let mut last: Option<String> = None;
    let mut next = None;
    let mut from_table = next_stored()?;
    loop {
        // The smaller key of the two; on a tie the overlay's entry wins.
        let take_pending = match (pending.peek(), &from_table) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some((pk, _)), Some((tk, _))) => pk <= tk,
        };
        let (k, d) = if take_pending {
            let (k, d) = pending.next().expect("peeked");
            if from_table.as_ref().is_some_and(|(tk, _)| *tk == k) {
                from_table = next_stored()?;
            }
            match d {
                Some(d) => (k, d),
                None => continue,
            }
        } else {
            let entry = from_table.take().expect("checked");
            from_table = next_stored()?;
            entry
        };
        if items.len() == limit {
            next = last.take();
            break;
        }
        let key = String::from_utf8(k[skip..].to_vec()).map_err(|_| corrupt("key"))?;
        last = Some(key.clone());
        items.push(item(key, d));
    }
    Ok(Page { items, next })
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
